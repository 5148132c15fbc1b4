"""Functional neural-network ops, as ``torch.nn.functional``."""
from __future__ import annotations

from .. import _core
from .._core import Tensor

__all__ = [
    "relu", "leaky_relu", "elu", "gelu", "silu", "softplus", "sigmoid", "tanh",
    "softmax", "log_softmax", "linear", "pad", "dropout", "logsigmoid",
]


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return input.relu_() if inplace else input.relu()


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    out = _core.leaky_relu(input, negative_slope)
    return input.copy_(out) if inplace else out


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    out = _core.elu(input, alpha)
    return input.copy_(out) if inplace else out


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    return _core.gelu(input, approximate)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    out = _core.silu(input)
    return input.copy_(out) if inplace else out


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    return _core.softplus(input, beta, threshold)


def sigmoid(input: Tensor) -> Tensor:
    return input.sigmoid()


def tanh(input: Tensor) -> Tensor:
    return input.tanh()


def logsigmoid(input: Tensor) -> Tensor:
    return -_core.softplus(-input, 1.0, 20.0)


def softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    return input.softmax(dim, dtype)


def log_softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    return input.log_softmax(dim, dtype)


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias`` in one fused op."""
    return _core.linear(input, weight, bias)


def pad(input: Tensor, pad, mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad the last dims by (left, right) pairs, starting from the last dim."""
    if mode != "constant":
        raise ValueError(f"pad mode '{mode}' is not supported yet; only 'constant'")
    return _core.pad_constant(input, list(pad), 0.0 if value is None else float(value))


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, generator=None) -> Tensor:
    out = _core.dropout(input, p, training, generator)
    return input.copy_(out) if inplace else out
