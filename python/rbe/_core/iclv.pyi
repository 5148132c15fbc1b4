"""Type stub for ``rbe._core.iclv``, the bindings of the ICLV front-end
(``#[pymodule(submodule)] mod iclv`` in rust/py/src/iclv.rs, crate rust/iclv).
The Python front-end ``rbe.iclv`` builds on these (``rbe.iclv.functional``).

CI checks it against the built module:
``python -m mypy.stubtest rbe._core rbe._core.iclv --allowlist .ci/stubtest-allowlist.txt``.
"""
from typing import List, Optional, Sequence, Tuple

from rbe._core import Tensor

__all__ = ["expand_rows", "log_mean_exp", "mnl_logprob", "mnl_probs", "ordered_logprob", "ordered_rho", "panel_sum"]

def ordered_logprob(v: Tensor, tau: Tensor, y: Tensor, link: str = "probit") -> Tensor:
    """``log P(y | v)`` of an ordered probit or logit (float64 ``v (N, ...)``, ``tau (C-1,)``, int64 ``y (N,)``); the shape of ``v``."""

def ordered_rho(v: Tensor, tau: Tensor, y: Tensor, link: str = "probit") -> Tuple[Tensor, Tensor]:
    """``(f(a)/P, f(b)/P)``: the derivatives of ``log P`` in the lower and upper thresholds are ``-rho_a`` and ``rho_b``."""

def mnl_logprob(utilities: Sequence[Tensor], choice: Tensor, avail: Optional[Tensor] = None) -> Tensor:
    """Log-probability of the chosen alternative (utilities ``(M, R)`` or ``(M, 1)``, int64 ``choice (M,)``, bool ``avail (M, J)``); ``(M, R)``."""

def mnl_probs(utilities: Sequence[Tensor], choice: Tensor, avail: Optional[Tensor] = None) -> List[Tensor]:
    """The choice probabilities, one ``(M, R)`` tensor per alternative (0 where unavailable)."""

def panel_sum(x: Tensor, offsets: Tensor) -> Tensor:
    """Sum of each individual's rows: ``x (M, ...)``, int64 ``offsets (N + 1,)`` -> ``(N, ...)``."""

def expand_rows(x: Tensor, offsets: Tensor) -> Tensor:
    """Each individual's row repeated over its rows (the adjoint of ``panel_sum``): ``(N, ...)`` -> ``(offsets[N], ...)``."""

def log_mean_exp(x: Tensor, log_weights: Optional[Tensor] = None) -> Tensor:
    """``log sum_r w_r exp(x[n, r])`` over the draws of ``x (N, R)``, ``w_r = 1/R`` or ``exp(log_weights)``; ``(N,)``."""
