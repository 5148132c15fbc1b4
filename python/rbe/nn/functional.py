"""Functional neural-network ops, as ``torch.nn.functional``."""
from __future__ import annotations

import math

from .. import _core
from .._core import Tensor
from .._grad import no_grad_ctx as _no_grad
from ..errors import ArgumentError

__all__ = [
    "relu", "leaky_relu", "elu", "gelu", "silu", "softplus", "sigmoid", "tanh",
    "softmax", "log_softmax", "linear", "pad", "dropout", "logsigmoid",
    "batch_norm", "layer_norm", "embedding", "mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss",
    "cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
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


# ---------------------------------------------------------------- normalisation and embedding
def batch_norm(input: Tensor, running_mean, running_var, weight=None, bias=None, training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise over the batch (and length) dims; updates running stats in training mode."""
    if input.ndim not in (2, 3):
        raise ValueError(f"expected 2D or 3D input (got {input.ndim}D input)")
    if training and not eps > 0:
        raise ArgumentError(f"batch_norm eps must be positive during training, but got {eps}")
    if not training and eps < 0:
        raise ArgumentError(f"batch_norm eps must be non-negative, but got {eps}")
    c = input.shape[1]
    dims = (0,) if input.ndim == 2 else (0, 2)
    shape = (1, c) if input.ndim == 2 else (1, c, 1)
    if training:
        n = input.numel() // c
        if n <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(input.shape)}")
        mean = input.mean(dims)
        var = input.var(dims, unbiased=False)
        if running_mean is not None:
            with _no_grad():
                running_mean.mul_(1 - momentum).add_(mean.detach() * momentum)
                running_var.mul_(1 - momentum).add_(var.detach() * (momentum * n / (n - 1)))
    else:
        if running_mean is None:
            raise ValueError("running_mean and running_var must be defined in evaluation mode")
        mean, var = running_mean, running_var
    y = (input - mean.reshape(shape)) * (var.reshape(shape) + eps).rsqrt()
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def layer_norm(input: Tensor, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalise over the last ``len(normalized_shape)`` dims."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(normalized_shape)
    k = len(normalized_shape)
    if tuple(input.shape[input.ndim - k:]) != normalized_shape:
        raise ValueError(
            f"Given normalized_shape={list(normalized_shape)}, expected input with shape [*, {', '.join(map(str, normalized_shape))}], but got input of size {list(input.shape)}"
        )
    dims = tuple(range(-k, 0))
    mean = input.mean(dims, keepdim=True)
    var = input.var(dims, unbiased=False, keepdim=True)
    y = (input - mean) * (var + eps).rsqrt()
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def embedding(input: Tensor, weight: Tensor, padding_idx=None) -> Tensor:
    """Rows of ``weight`` picked by the integer tensor ``input``; no gradient reaches ``padding_idx``."""
    if input.dtype != _core.int64:
        raise TypeError(f"Expected tensor for argument #1 'indices' to have scalar type Long; but got {input.dtype} instead")
    if padding_idx is not None:
        # torch's class (AssertionError) and message
        if not -weight.shape[0] <= padding_idx < weight.shape[0]:
            raise AssertionError("Padding_idx must be within num_embeddings")
        if padding_idx < 0:
            padding_idx += weight.shape[0]
    flat = input.reshape(-1)
    out = weight.index_select(0, flat)
    if padding_idx is not None:
        keep = (flat != padding_idx).unsqueeze(1)
        out = _core.where_(keep, out, out.detach())
    return out.reshape(*tuple(input.shape), weight.shape[1])



# ---------------------------------------------------------------- losses
def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{reduction} is not a valid value for reduction")


def _check_same_shape(input, target, name):
    if tuple(input.shape) != tuple(target.shape):
        import warnings

        warnings.warn(
            f"Using a target size ({tuple(target.shape)}) that is different to the input size ({tuple(input.shape)}) in {name}. "
            "This will likely lead to incorrect results due to broadcasting. Please ensure they have the same size.",
            stacklevel=3,
        )


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    _check_same_shape(input, target, "mse_loss")
    d = input - target
    return _reduce(d * d, reduction)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    _check_same_shape(input, target, "l1_loss")
    return _reduce((input - target).abs(), reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    if not delta > 0:
        raise ArgumentError(f"huber_loss does not support non-positive values for delta (got {delta}).")
    _check_same_shape(input, target, "huber_loss")
    d = input - target
    a = d.abs()
    loss = _core.where_(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta))
    return _reduce(loss, reduction)


def smooth_l1_loss(input: Tensor, target: Tensor, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    if not beta >= 0:
        raise ArgumentError(f"smooth_l1_loss does not support negative values for beta (got {beta}).")
    if beta == 0.0:
        return l1_loss(input, target, reduction)
    return _reduce(huber_loss(input, target, "none", beta) / beta, reduction)


def cross_entropy(input: Tensor, target: Tensor, weight=None, ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of logits ``input`` (class dim 1) with class indices or class probabilities,
    in one fused, stable op (log-sum-exp with the row maximum subtracted)."""
    return _core.cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)


def nll_loss(input: Tensor, target: Tensor, weight=None, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities ``input`` (class dim 1) at the target classes."""
    if input.ndim == 0:
        raise ValueError("nll_loss: input must have at least one dimension")
    cdim = 0 if input.ndim == 1 else 1
    c = input.shape[cdim]
    row_shape = tuple(s for i, s in enumerate(input.shape) if i != cdim)
    if tuple(target.shape) != row_shape:
        raise ValueError(f"Expected target of shape {row_shape} for input of shape {tuple(input.shape)}, got {tuple(target.shape)}")
    z = input.movedim(cdim, -1).reshape(-1, c)
    a, norm = _core.class_coefficients(target, c, weight, ignore_index, 0.0, input.dtype)
    rows = -(a * z).sum(-1)
    if reduction == "none":
        return rows.reshape(row_shape)
    if reduction == "sum":
        return rows.sum()
    if reduction == "mean":
        return rows.sum() / norm if norm != 0 else rows.sum() * float("nan")
    raise ValueError(f"{reduction} is not a valid value for reduction")


def binary_cross_entropy(input: Tensor, target: Tensor, weight=None, reduction: str = "mean") -> Tensor:
    """BCE of probabilities; the logs are clamped at -100 as torch does."""
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(
            f"Using a target size ({tuple(target.shape)}) that is different to the input size ({tuple(input.shape)}) is deprecated. Please ensure they have the same size."
        )
    for name, t in (("input", input), ("target", target)):
        v = t.detach().numpy()
        if v.size and not ((v >= 0) & (v <= 1)).all():  # NaN fails too, as in torch
            raise ArgumentError(f"binary_cross_entropy: all elements of {name} should be between 0 and 1")
    # torch clamps the logs at -100; clamping the argument instead keeps the
    # gradient finite (no 0 * inf) where a probability is exactly 0 or 1
    tiny = math.exp(-100.0)
    lp = input.clamp(min=tiny).log()
    lq = (1 - input).clamp(min=tiny).log()
    loss = -(target * lp + (1 - target) * lq)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight=None, reduction: str = "mean", pos_weight=None) -> Tensor:
    """BCE of logits, stable for any magnitude: (1 - t) x + (1 + (w - 1) t) softplus(-x)."""
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"Target size ({tuple(target.shape)}) must be the same as input size ({tuple(input.shape)})")
    sp = _core.softplus(-input, 1.0, 1e30)
    if pos_weight is not None:
        loss = (1 - target) * input + (1 + (pos_weight - 1) * target) * sp
    else:
        loss = (1 - target) * input + sp
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def __getattr__(name: str):
    # rbe_linear and rbe_generate moved to the RBE front-end (rbe.structured);
    # resolved on first use, so importing rbe.nn does not import the front-end.
    if name in ("rbe_linear", "rbe_generate"):
        from ..structured import functional as _structured

        return getattr(_structured, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
