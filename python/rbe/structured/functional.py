"""Functional forms of the RBE ops (``rbe.nn.functional`` style)."""
from __future__ import annotations

from .._core import Tensor
from .._core import structured as _native

__all__ = ["rbe_linear", "rbe_generate"]


def rbe_linear(input: Tensor, layout, atoms: Tensor, tracks: Tensor, residual: Tensor | None = None,
               residual_index: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
    """``input @ W^T + bias`` for the RBE matrix ``W`` of the given atoms,
    without materialising ``W``. ``layout = (out, in, Br, Bc, kappa)``; see
    ``rbe.structured.RBELinear`` for the parameter shapes."""
    return _native.linear(input, tuple(layout), atoms, tracks, residual, residual_index, bias)


def rbe_generate(layout, atoms: Tensor, tracks: Tensor, residual: Tensor | None = None,
                 residual_index: Tensor | None = None) -> Tensor:
    """The ``out x in`` RBE matrix of the given atoms (differentiable to any order)."""
    return _native.generate(tuple(layout), atoms, tracks, residual, residual_index)
