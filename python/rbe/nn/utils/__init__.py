"""Gradient clipping and parameter/vector conversion, as ``torch.nn.utils``."""
from __future__ import annotations

import math
from typing import Iterable, Union

from ... import _core
from ..._core import Tensor
from ..._grad import no_grad_ctx as _no_grad

__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters", "get_total_norm"]

_Params = Union[Tensor, Iterable[Tensor]]


def _grads(parameters: _Params):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def get_total_norm(tensors, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> Tensor:
    """The norm of the concatenation of ``tensors``."""
    from ... import tensor as mk, stack

    tensors = list(tensors)
    if not tensors:
        return mk(0.0)
    norm_type = float(norm_type)
    with _no_grad():
        if norm_type == math.inf:
            total = stack([t.detach().abs().amax().to(_core.float64) for t in tensors]).amax()
        else:
            parts = stack([(t.detach().abs().to(_core.float64) ** norm_type).sum() for t in tensors])
            total = parts.sum() ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total.item()):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it cannot be clipped. "
            "To disable this error and scale the gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    return total.to(tensors[0].dtype)


def clip_grad_norm_(parameters: _Params, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False, foreach=None) -> Tensor:
    """Scale all gradients together so that their total norm is at most ``max_norm``; returns the total norm before clipping."""
    grads = _grads(parameters)
    if not grads:
        from ... import tensor as mk

        return mk(0.0)
    total = get_total_norm(grads, norm_type, error_if_nonfinite)
    coef = float(max_norm) / (total.item() + 1e-6)
    if coef < 1.0:
        with _no_grad():
            for g in grads:
                g.mul_(coef)
    return total


def clip_grad_value_(parameters: _Params, clip_value: float, foreach=None) -> None:
    """Clamp every gradient element to [-clip_value, clip_value]."""
    clip_value = float(clip_value)
    with _no_grad():
        for g in _grads(parameters):
            g.clamp_(-clip_value, clip_value)


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    from ... import cat

    return cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    pointer = 0
    with _no_grad():
        for p in parameters:
            n = p.numel()
            p.copy_(vec[pointer:pointer + n].reshape(tuple(p.shape)))
            pointer += n
