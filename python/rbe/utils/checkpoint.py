"""Activation checkpointing: keep only a segment's inputs during forward and
recompute the segment in backward, trading compute for memory."""
from __future__ import annotations

from typing import Any, Callable

from .. import _core
from .._core import Tensor
from ..autograd.function import Function


class _Checkpoint(Function):
    @staticmethod
    def forward(ctx, run_fn, preserve_rng_state, *args):
        ctx.run_fn = run_fn
        ctx.rng_state = _core.get_rng_state() if preserve_rng_state else None
        ctx.inputs = [a.detach() if isinstance(a, Tensor) else a for a in args]
        ctx.input_requires_grad = [isinstance(a, Tensor) and a.requires_grad for a in args]
        return run_fn(*args)

    @staticmethod
    def backward(ctx, *grads):
        from ..autograd import backward as run_backward

        inputs = []
        for a, rg in zip(ctx.inputs, ctx.input_requires_grad):
            if isinstance(a, Tensor):
                a = a.detach()
                if rg:
                    a.requires_grad_(True)
            inputs.append(a)
        saved_rng = None
        if ctx.rng_state is not None:
            saved_rng = _core.get_rng_state()
            _core.set_rng_state(ctx.rng_state)
        prev = _core.set_grad_enabled(True)
        try:
            outs = ctx.run_fn(*inputs)
        finally:
            _core.set_grad_enabled(prev)
            if saved_rng is not None:
                _core.set_rng_state(saved_rng)
        outs = (outs,) if isinstance(outs, Tensor) else tuple(outs)
        pairs = [(o, g) for o, g in zip(outs, grads) if isinstance(o, Tensor) and o.requires_grad and g is not None]
        if pairs:
            # accumulates into the .grad of parameters used inside run_fn, as torch's reentrant checkpoint
            run_backward([o for o, _ in pairs], [g for _, g in pairs])
        return (None, None) + tuple(a.grad if isinstance(a, Tensor) and rg else None for a, rg in zip(inputs, ctx.input_requires_grad))


def checkpoint(function: Callable[..., Any], *args, use_reentrant: bool = True, preserve_rng_state: bool = True, **kwargs):
    """Run ``function(*args)`` without keeping its intermediate activations; they
    are recomputed during backward (random ops replay the same numbers when
    ``preserve_rng_state``). Parameters used inside ``function`` get their
    gradients during that recomputation."""
    if kwargs:
        raise ValueError(f"Unexpected keyword arguments: {','.join(kwargs)}")
    if _core.is_grad_enabled() and not any(isinstance(a, Tensor) and a.requires_grad for a in args):
        # no input carries a gradient: a checkpoint node would not be recorded and the
        # parameters inside `function` would get no gradient, so run it normally
        return function(*args)
    return _Checkpoint.apply(function, preserve_rng_state, *args)


def checkpoint_sequential(functions, segments: int, input, use_reentrant: bool = True, preserve_rng_state: bool = True):
    """Split a ``Sequential`` (or list of modules) into ``segments`` checkpointed chunks."""
    funcs = list(functions.children()) if hasattr(functions, "children") else list(functions)
    n = len(funcs)
    size = max(1, (n + segments - 1) // segments)

    def run(start, end):
        def f(x):
            for m in funcs[start:end]:
                x = m(x)
            return x

        return f

    x = input
    for start in range(0, n, size):
        end = min(start + size, n)
        if end == n:
            x = run(start, end)(x)
        else:
            x = checkpoint(run(start, end), x, preserve_rng_state=preserve_rng_state)
    return x
