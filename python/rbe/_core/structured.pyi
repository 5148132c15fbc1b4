"""Type stub for ``rbe._core.structured``, the bindings of the RBE front-end
(``#[pymodule(submodule)] mod structured`` in rust/py/src/structured.rs, crate
rust/structured). The Python front-end ``rbe.structured`` builds on these.

CI checks it against the built module:
``python -m mypy.stubtest rbe._core rbe._core.structured --allowlist .ci/stubtest-allowlist.txt``.
"""
from typing import Optional, Sequence, Tuple

from rbe._core import Tensor

__all__ = ["default_kappa", "generate", "linear", "pack", "phase_sin_cos", "unpack"]

def generate(
    layout_: Tuple[int, int, int, int, float], atoms: Tensor, tracks: Tensor,
    res_vals: Optional[Tensor] = None, res_idx: Optional[Tensor] = None,
) -> Tensor:
    """The RBE matrix of the atoms; ``layout_ = (out, in, Br, Bc, kappa)``."""

def linear(
    input: Tensor, layout_: Tuple[int, int, int, int, float], atoms: Tensor, tracks: Tensor,
    res_vals: Optional[Tensor] = None, res_idx: Optional[Tensor] = None, bias: Optional[Tensor] = None,
) -> Tensor:
    """``input @ W^T + bias`` for the RBE matrix ``W``, never materialised."""

def default_kappa(br: int, bc: int) -> float: ...
def pack(fields: Sequence[float], tracks: Sequence[int], chart: str = "auto") -> bytes:
    """Packed128 records of the atoms ``(A, phi, px, py)``, little-endian ``(hi, lo)`` each."""

def unpack(data: bytes) -> Tuple[list[float], bytes]:
    """Fields and tracks of validated Packed128 records."""

def phase_sin_cos(q: Sequence[int]) -> Tuple[list[float], list[float]]: ...
