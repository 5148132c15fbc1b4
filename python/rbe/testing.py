"""The fused-op test harness, Python side (the Rust side is ``rbe_core::testing``).

Every fused op a front-end adds goes through :func:`check_fused_op`:

1. **fused equals composite**: values and the gradient of a random
   projection of the outputs agree with a reference written with plain
   differentiable ops;
2. **derivatives to any order** (:func:`check_derivatives`): the gradient of
   ``S_1 = sum_j <u_j, f_j(x)>`` against central finite differences, then of
   ``S_2 = sum_i <v_i, dS_1/dx_i>`` (built with ``create_graph``), up to
   ``order`` (2 is gradgradcheck; the PINN front-end asks 3);
3. **identical bits with 1 and 2 threads**, outputs and gradients.

The projection weights come from a fixed seed, so a failure reproduces.

>>> import rbe
>>> from rbe.testing import check_fused_op
>>> x = rbe.randn(3, 4, dtype=rbe.float64)
>>> check_fused_op(lambda x: rbe.tanh(x), lambda x: (x.exp() - (-x).exp()) / (x.exp() + (-x).exp()), [x], order=3)
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from ._core import Tensor

__all__ = ["FusedOpCheckError", "check_fused_op", "check_derivatives", "check_matches_composite", "check_thread_bits"]

_Fn = Callable[..., Union[Tensor, Sequence[Tensor]]]


class FusedOpCheckError(AssertionError):
    """A fused op failed one of the harness's checks (the message says which, where, and by how much)."""


def _as_list(out) -> List[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    return [o for o in out if isinstance(o, Tensor)]


def _weights(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u = rng.uniform(0.5, 1.5, size=n)
    return u * rng.choice([-1.0, 1.0], size=n)


def _weighted_sum(ts: Sequence[Optional[Tensor]], seed: int) -> Optional[Tensor]:
    acc = None
    for k, t in enumerate(ts):
        if t is None or not t.is_floating_point():
            continue
        w = _core.from_numpy(_weights(t.numel(), seed + 7919 * k).reshape(tuple(t.shape))).to(t.dtype)
        s = (t * w).sum().to(_core.float64)
        acc = s if acc is None else acc + s
    return acc


def _leaves(values: Sequence[Tensor], diff: Sequence[bool]) -> List[Tensor]:
    out = []
    for v, d in zip(values, diff):
        t = v.detach().clone()
        if d:
            t.requires_grad_(True)
        out.append(t)
    return out


def _projected(f: _Fn, x: List[Tensor], diff: Sequence[bool], order: int, seed: int) -> Tensor:
    from .autograd import grad

    s = _weighted_sum(_as_list(f(*x)), seed)
    if s is None:
        raise FusedOpCheckError("the function has no floating point output")
    wrt = [t for t, d in zip(x, diff) if d]
    for level in range(2, order + 1):
        if not s.requires_grad:
            return s * 0.0
        g = grad(s, wrt, create_graph=True, allow_unused=True)
        nxt = _weighted_sum(list(g), seed + 104729 * level)
        s = nxt if nxt is not None else _core.zeros([], _core.float64, False)
    return s


def check_derivatives(
    f: _Fn,
    inputs: Sequence[Tensor],
    *,
    diff: Optional[Sequence[bool]] = None,
    order: int = 2,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
) -> None:
    """Derivatives of ``f`` of orders 1 to ``order`` against central finite differences.

    ``inputs`` are converted to float64; ``diff`` says which are differentiated
    (default: every floating point input). Raises :class:`FusedOpCheckError`
    naming the order, the input and the element of the first mismatch.
    """
    from .autograd import grad

    xs0 = [t.to(_core.float64) if t.is_floating_point() else t for t in inputs]
    diff = [t.is_floating_point() for t in xs0] if diff is None else list(diff)
    for o in range(1, order + 1):
        x = _leaves(xs0, diff)
        s = _projected(f, x, diff, o, seed)
        wrt = [t for t, d in zip(x, diff) if d]
        analytic = list(grad(s, wrt, allow_unused=True)) if s.requires_grad else [None] * len(wrt)
        k = 0
        for i, inp in enumerate(xs0):
            if not diff[i]:
                continue
            a = analytic[k].detach().numpy().ravel() if analytic[k] is not None else np.zeros(inp.numel())
            k += 1
            base = inp.detach().numpy().copy()
            for e in range(base.size):
                vals = []
                for delta in (eps, -eps):
                    v = base.copy().ravel()
                    v[e] += delta
                    xs = list(xs0)
                    xs[i] = _core.from_numpy(v.reshape(base.shape))
                    vals.append(float(_projected(f, _leaves(xs, diff), diff, o, seed).item()))
                num = (vals[0] - vals[1]) / (2 * eps)
                if not (abs(a[e] - num) <= atol + rtol * abs(num) or (np.isnan(a[e]) and np.isnan(num))):
                    raise FusedOpCheckError(
                        f"order {o}: d/d input {i} [element {e}]: analytic {a[e]!r} vs finite difference {num!r} (atol {atol}, rtol {rtol})"
                    )


def _values_and_grads(f: _Fn, inputs: Sequence[Tensor], diff: Sequence[bool], seed: int) -> Tuple[List[np.ndarray], List[Optional[np.ndarray]]]:
    from .autograd import grad

    x = _leaves(inputs, diff)
    outs = _as_list(f(*x))
    wrt = [t for t, d in zip(x, diff) if d]
    s = _weighted_sum(outs, seed)
    if s is not None and s.requires_grad and wrt:
        gs = [None if g is None else g.detach().numpy().copy() for g in grad(s, wrt, allow_unused=True)]
    else:
        gs = [None] * len(wrt)
    return [o.detach().numpy().copy() for o in outs], gs


def check_matches_composite(
    fused: _Fn,
    composite: _Fn,
    inputs: Sequence[Tensor],
    *,
    diff: Optional[Sequence[bool]] = None,
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> None:
    """Values and first-order gradients of ``fused`` and ``composite`` agree."""
    diff = [t.is_floating_point() for t in inputs] if diff is None else list(diff)
    fo, fg = _values_and_grads(fused, inputs, diff, 17)
    co, cg = _values_and_grads(composite, inputs, diff, 17)
    if len(fo) != len(co):
        raise FusedOpCheckError(f"fused has {len(fo)} outputs, composite {len(co)}")
    pairs = [(f"output {k}", a, b) for k, (a, b) in enumerate(zip(fo, co))]
    for k, (a, b) in enumerate(zip(fg, cg)):
        if a is None and b is None:
            continue
        a = np.zeros_like(b) if a is None else a
        b = np.zeros_like(a) if b is None else b
        pairs.append((f"gradient of differentiated input {k}", a, b))
    for what, a, b in pairs:
        if a.shape != b.shape:
            raise FusedOpCheckError(f"{what}: shapes differ, {a.shape} vs {b.shape}")
        bad = ~(np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True))
        if bad.any():
            e = int(np.flatnonzero(bad.ravel())[0])
            raise FusedOpCheckError(f"{what} [element {e}]: fused {a.ravel()[e]!r} vs composite {b.ravel()[e]!r} (atol {atol}, rtol {rtol})")


def check_thread_bits(f: _Fn, inputs: Sequence[Tensor], *, diff: Optional[Sequence[bool]] = None, threads: Sequence[int] = (1, 2)) -> None:
    """Outputs and gradients of ``f`` have identical bits for every thread count in ``threads``."""
    diff = [t.is_floating_point() for t in inputs] if diff is None else list(diff)
    prev = _core.get_num_threads()
    ref = None
    try:
        for n in threads:
            _core.set_num_threads(n)
            outs, grads = _values_and_grads(f, inputs, diff, 23)
            got = [a.tobytes() for a in outs] + [b"" if g is None else g.tobytes() for g in grads]
            if ref is None:
                ref = (n, got)
            elif got != ref[1]:
                k = next(i for i, (a, b) in enumerate(zip(ref[1], got)) if a != b)
                raise FusedOpCheckError(f"result {k} (outputs first, then gradients) differs between {ref[0]} and {n} threads")
    finally:
        _core.set_num_threads(prev)


def check_fused_op(
    fused: _Fn,
    composite: _Fn,
    inputs: Sequence[Tensor],
    *,
    diff: Optional[Sequence[bool]] = None,
    order: int = 2,
    fused_rtol: float = 1e-10,
    fused_atol: float = 1e-12,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    threads: Sequence[int] = (1, 2),
) -> None:
    """Everything a fused op must pass (see the module docstring).

    ``fused`` and ``composite`` take the tensors of ``inputs`` as positional
    arguments and return a tensor or a sequence of tensors. The comparison
    runs at the inputs' dtype (loosen ``fused_rtol`` for float32), the
    derivative check on float64 copies, the thread check at the inputs' dtype.
    """
    diff = [t.is_floating_point() for t in inputs] if diff is None else list(diff)
    if len(diff) != len(inputs):
        raise ValueError(f"check_fused_op: {len(inputs)} inputs but {len(diff)} diff flags")
    try:
        check_matches_composite(fused, composite, inputs, diff=diff, rtol=fused_rtol, atol=fused_atol)
    except FusedOpCheckError as e:
        raise FusedOpCheckError(f"fused vs composite: {e}") from None
    try:
        check_derivatives(fused, inputs, diff=diff, order=order, eps=eps, atol=atol, rtol=rtol)
    except FusedOpCheckError as e:
        raise FusedOpCheckError(f"derivatives of the fused op: {e}") from None
    try:
        check_thread_bits(fused, inputs, diff=diff, threads=threads)
    except FusedOpCheckError as e:
        raise FusedOpCheckError(f"thread counts: {e}") from None
