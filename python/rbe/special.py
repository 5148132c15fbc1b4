"""Special functions (differentiable to any order), as ``torch.special``."""
from . import _core
from ._core import Tensor

__all__ = ["ndtr", "log_ndtr", "erf", "erfc", "expit", "logit", "expm1", "log1p", "logsumexp", "softmax", "log_softmax"]


def ndtr(input: Tensor) -> Tensor:
    """Standard normal CDF Phi(x), accurate in both tails."""
    return _core.ndtr(input)


def log_ndtr(input: Tensor) -> Tensor:
    """log Phi(x) to full relative precision for all x (log_ndtr(-40) ~ -804.608)."""
    return _core.log_ndtr(input)


def erf(input: Tensor) -> Tensor:
    return input.erf()


def erfc(input: Tensor) -> Tensor:
    return input.erfc()


def expit(input: Tensor) -> Tensor:
    """The logistic sigmoid 1 / (1 + exp(-x))."""
    return input.sigmoid()


def logit(input: Tensor, eps=None) -> Tensor:
    return input.logit(eps)


def expm1(input: Tensor) -> Tensor:
    return input.expm1()


def log1p(input: Tensor) -> Tensor:
    return input.log1p()


def logsumexp(input: Tensor, dim, keepdim: bool = False) -> Tensor:
    return input.logsumexp(dim, keepdim)


def softmax(input: Tensor, dim, dtype=None) -> Tensor:
    return input.softmax(dim, dtype)


def log_softmax(input: Tensor, dim, dtype=None) -> Tensor:
    return input.log_softmax(dim, dtype)
