"""Functional forms of the ChebyKAN ops (``rbe.nn.functional`` style).

- :func:`cheb_basis`: ``T_k^{(order)}(z)`` for ``k = 0..degree``;
- :func:`chebykan`: the layer ``y[..., o] = sum_{i,k} C[i, o, k] T_k(phi(x_i))``;
- :func:`chebykan_taylor`: the layer in Taylor mode (value, first
  derivatives along ``d`` directions, and the Laplacian or the Hessian
  diagonal), one forward sweep.

``phi`` is ``"tanh"`` or ``"affine"`` (``z = scale * x + shift`` per input
feature; :func:`box_map` gives the map of a box onto ``[-1, 1]``). All three
are differentiable to any order (Rust crate ``rust/pinn``).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

from .._core import Tensor
from .._core import pinn as _native
from ..errors import ArgumentError

__all__ = ["cheb_basis", "chebykan", "chebykan_taylor", "box_map"]

_MODES = ("gradient", "laplacian", "hessian_diag")


def cheb_basis(z: Tensor, degree: int, order: int = 0) -> Tensor:
    """``T_k^{(order)}(z)`` for ``k = 0..degree`` (Chebyshev polynomials of the
    first kind and their ``order``-th derivatives), shape ``z.shape + (degree + 1,)``."""
    if int(degree) < 0 or int(order) < 0:
        raise ArgumentError(f"cheb_basis: degree and order must be >= 0, got degree={degree}, order={order}")
    return _native.basis(z, int(degree), int(order))


def box_map(lo: Sequence[float], hi: Sequence[float]) -> Tuple[list, list]:
    """``(scale, shift)`` of the affine map of the box ``[lo, hi]`` onto
    ``[-1, 1]``: ``z = 2 (x - lo) / (hi - lo) - 1``."""
    return _native.box_map([float(v) for v in lo], [float(v) for v in hi])


def _map_args(map: str, scale, shift):
    if map == "tanh":
        return "tanh", None, None
    if map == "affine":
        if scale is None or shift is None:
            raise ArgumentError("chebykan: map='affine' needs scale and shift (see rbe.pinn.functional.box_map)")
        return "affine", [float(v) for v in scale], [float(v) for v in shift]
    raise ArgumentError(f"chebykan: map must be 'tanh' or 'affine', got {map!r}")


def chebykan(input: Tensor, coeffs: Tensor, map: str = "tanh", scale: Optional[Sequence[float]] = None,
             shift: Optional[Sequence[float]] = None) -> Tensor:
    """The ChebyKAN layer: ``input`` ``(..., in)``, ``coeffs`` ``(in, out, degree + 1)``;
    returns ``(..., out)``. Basis and contraction run in one fused kernel."""
    m, s, b = _map_args(map, scale, shift)
    return _native.layer(input, coeffs, m, s, b)


def chebykan_taylor(x: Tensor, first: Optional[Tensor], second: Optional[Tensor], coeffs: Tensor,
                    mode: str = "laplacian", map: str = "tanh", scale: Optional[Sequence[float]] = None,
                    shift: Optional[Sequence[float]] = None) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """The layer in Taylor mode.

    ``x`` ``(N, in)``; ``first`` ``(N, d, in)``, the derivatives of ``x`` along
    ``d`` directions, or ``None`` when ``x`` is the independent variable
    (``d = in``, unit directions); ``second``: ``(N, in)`` (the Laplacian of
    ``x``, ``mode="laplacian"``) or ``(N, d, in)`` (each second derivative,
    ``mode="hessian_diag"``), ``None`` for zero. Returns ``(y, y_first, y_second)``
    with ``y_second`` ``None`` in ``mode="gradient"``.
    """
    if mode not in _MODES:
        raise ArgumentError(f"chebykan_taylor: mode must be one of {_MODES}, got {mode!r}")
    m, s, b = _map_args(map, scale, shift)
    return _native.taylor(x, first, second, coeffs, mode, m, s, b)
