"""Type stub for ``rbe._core.hmm``, the bindings of the HMM front-end
(``#[pymodule(submodule)] mod hmm`` in rust/py/src/hmm.rs, crate rust/hmm).
The Python front-end ``rbe.hmm`` builds on these.

CI checks it against the built module:
``python -m mypy.stubtest rbe._core rbe._core.hmm --allowlist .ci/stubtest-allowlist.txt``.
"""
from typing import Optional, Tuple

from rbe._core import Tensor

__all__ = ["log_likelihood", "posteriors", "viterbi"]

def log_likelihood(log_pi: Tensor, log_A: Tensor, log_emissions: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
    """``log P(x)`` per sequence, ``(B,)`` (the forward algorithm; differentiable to any order)."""

def posteriors(
    log_pi: Tensor, log_A: Tensor, log_emissions: Tensor, lengths: Optional[Tensor] = None, with_xi: bool = False,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Optional[Tensor]]:
    """``(log_likelihood, log_alpha, log_beta, gamma, xi or None)`` from one forward-backward pass."""

def viterbi(log_pi: Tensor, log_A: Tensor, log_emissions: Tensor, lengths: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """``(path, log_prob)``: the best state sequence (int64, -1 past each length) and its log-probability."""
