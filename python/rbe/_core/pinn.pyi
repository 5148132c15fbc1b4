"""Type stub for ``rbe._core.pinn``, the bindings of the PINN front-end
(``#[pymodule(submodule)] mod pinn`` in rust/py/src/pinn.rs, crate rust/pinn).
The Python front-end ``rbe.pinn`` builds on these.

CI checks it against the built module:
``python -m mypy.stubtest rbe._core rbe._core.structured rbe._core.pinn --allowlist .ci/stubtest-allowlist.txt``.
"""
from typing import Optional, Sequence, Tuple

from rbe._core import Tensor

__all__ = ["basis", "box_map", "layer", "taylor"]

def basis(z: Tensor, degree: int, order: int = 0) -> Tensor:
    """``T_k^{(order)}(z)`` for ``k = 0..degree``, shape ``z.shape + (degree + 1,)``."""

def layer(
    input: Tensor, coeffs: Tensor, map: str = "tanh",
    scale: Optional[Sequence[float]] = None, shift: Optional[Sequence[float]] = None,
) -> Tensor:
    """The ChebyKAN layer ``sum_{i,k} C[i, o, k] T_k(phi(x_i))``; ``map`` is ``"tanh"`` or ``"affine"``."""

def taylor(
    x: Tensor, first: Optional[Tensor], second: Optional[Tensor], coeffs: Tensor,
    mode: str = "laplacian", map: str = "tanh",
    scale: Optional[Sequence[float]] = None, shift: Optional[Sequence[float]] = None,
) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """The layer in Taylor mode: value, first derivatives and the second-order stream."""

def box_map(lo: Sequence[float], hi: Sequence[float]) -> Tuple[list[float], list[float]]:
    """``(scale, shift)`` of the affine map of the box ``[lo, hi]`` onto ``[-1, 1]``."""
