"""User-defined differentiable operations: ``rbe.autograd.Function``."""
from __future__ import annotations

from typing import Any, Tuple

from .. import _core
from .._core import Tensor


class _SavedOutput:
    """Stands in ``ctx`` for a saved output of the Function (see ``Function.apply``)."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index


class FunctionCtx:
    """The ``ctx`` passed to ``forward`` and ``backward``."""

    def __init__(self):
        self.needs_input_grad: Tuple[bool, ...] = ()
        self._saved = ()
        self._versions = ()
        self._non_differentiable = set()
        self._restored: Tuple[Any, ...] = ()
        self.materialize_grads = True

    def save_for_backward(self, *tensors) -> None:
        for t in tensors:
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(f"save_for_backward can only save tensors, but argument {type(t).__name__} is not a Tensor or None")
        self._saved = tensors
        self._versions = tuple(None if t is None else t._version for t in tensors)

    @property
    def saved_tensors(self) -> Tuple[Any, ...]:
        if any(isinstance(t, _SavedOutput) for t in self._saved):
            if not self._restored:
                raise RuntimeError("saved outputs of a Function can only be read during its backward")
            return tuple(self._restored[t.index] if isinstance(t, _SavedOutput) else t for t in self._saved)
        for t, v in zip(self._saved, self._versions):
            if t is not None and t._version != v:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by an inplace operation: "
                    f"a tensor of shape {tuple(t.shape)} saved with save_for_backward is at version {t._version}; expected version {v} instead."
                )
        return self._saved

    def mark_non_differentiable(self, *tensors) -> None:
        self._non_differentiable.update(id(t) for t in tensors)

    def mark_dirty(self, *tensors) -> None:
        pass

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = value


class _FunctionMeta(type):
    def __init__(cls, name, bases, attrs):
        super().__init__(name, bases, attrs)
        cls._backward_name = f"{name}Backward"


class Function(metaclass=_FunctionMeta):
    """Subclass with static ``forward(ctx, *args)`` and ``backward(ctx, *grad_outputs)``
    and call ``MyFunction.apply(*args)``.

    ``backward`` returns one gradient (or None) per ``forward`` argument. Written
    with rbe ops, it is itself differentiable, so higher-order derivatives work.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, *args: Any, **kwargs: Any) -> Any:
        # the subclass defines the computation
        raise NotImplementedError("You must implement the forward function for custom autograd.Function.")

    @staticmethod
    def backward(ctx: FunctionCtx, *grad_outputs: Any) -> Any:
        # the subclass defines the gradient
        raise NotImplementedError("You must implement the backward function for custom autograd.Function.")

    @classmethod
    def apply(cls, *args):
        ctx = FunctionCtx()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        prev = _core.set_grad_enabled(False)
        try:
            out = cls.forward(ctx, *args)
        finally:
            _core.set_grad_enabled(prev)
        tensor_pos = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        inputs = [args[i] for i in tensor_pos]
        single = not isinstance(out, tuple)
        outs = (out,) if single else tuple(out)
        # an input returned as an output must become a new tensor, or it would lose its leaf status
        fixed = []
        for o in outs:
            if isinstance(o, Tensor) and any(o is a for a in inputs):
                o = o.detach()
            fixed.append(o)
        outs = tuple(fixed)
        if not (_core.is_grad_enabled() and any(a.requires_grad for a in inputs)):
            return outs[0] if single else outs
        tensor_outs = [o for o in outs if isinstance(o, Tensor) and o.is_floating_point() and id(o) not in ctx._non_differentiable]
        if not tensor_outs:
            return outs[0] if single else outs
        n_args = len(args)
        name = cls.__name__

        # saved outputs are handed to the engine (kept without their history,
        # so ctx -> output -> node -> ctx is not a cycle) and come back in backward
        out_pos = {id(o): k for k, o in enumerate(tensor_outs)}
        saved_outputs = []
        if ctx._saved:
            saved = list(ctx._saved)
            for i, t in enumerate(saved):
                if t is not None and id(t) in out_pos:
                    saved[i] = _SavedOutput(len(saved_outputs))
                    saved_outputs.append(out_pos[id(t)])
            ctx._saved = tuple(saved)

        def backward_fn(restored, *grads):
            # one call per backward pass, with the gradient of every differentiable output
            ctx._restored = restored
            try:
                res = cls.backward(ctx, *grads)
            finally:
                ctx._restored = ()
            if not isinstance(res, tuple):
                res = (res,)
            if len(res) != n_args:
                raise RuntimeError(f"function {name}.backward returned an incorrect number of gradients (expected {n_args}, got {len(res)})")
            return tuple(res[i] for i in tensor_pos)

        _core.attach_py_function(tensor_outs, inputs, backward_fn, cls._backward_name, ctx.materialize_grads, saved_outputs)
        return outs[0] if single else outs


def once_differentiable(fn):
    """Marks a backward that cannot be differentiated again (kept for torch compatibility)."""
    return fn
