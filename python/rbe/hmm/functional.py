"""Functional HMM inference ops (differentiable rbe ops).

Every op takes log-space inputs of one float dtype (float32 or float64):

- ``log_pi``: initial log-probabilities ``(K,)`` or one row per sequence ``(B, K)``;
- ``log_A``: transition log-probabilities ``log P(z_{t+1}=j | z_t=i)`` at ``[i, j]``:
  one matrix ``(K, K)``, one per sequence ``(B, K, K)`` or one per sequence and
  step ``(B, T-1, K, K)`` (context-dependent transitions);
- ``log_emissions``: ``(B, T, K)``;
- ``lengths``: optional int64 ``(B,)`` (ragged batches; rows past a length are not read).

``-inf`` entries are structural zeros and stay exact (no NaN in values or
gradients). NaN or ``+inf`` inputs raise ``rbe.errors`` value errors naming the
argument and the index. The ops are fused Rust kernels (one pass per sequence,
parallel over the batch, results independent of the thread count) whose
backward is the exact analytic one; under ``create_graph=True`` the backward
is recomputed through the same recursion written with differentiable ops, so
derivatives of any order work.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import numpy as np

from .. import _core
from .._core import Tensor
from .._core import hmm as _native
from ..errors import DTypeError, ShapeError

__all__ = ["hmm_log_likelihood", "hmm_posteriors", "hmm_viterbi", "Posteriors", "ViterbiResult", "as_lengths"]


class Posteriors(NamedTuple):
    """Outputs of :func:`hmm_posteriors` (rows past each length hold 0)."""

    log_likelihood: Tensor  #: ``(B,)``
    log_alpha: Tensor  #: ``(B, T, K)``, ``log P(x_0..x_t, z_t)``
    log_beta: Tensor  #: ``(B, T, K)``, ``log P(x_{t+1}.. | z_t)``
    gamma: Tensor  #: ``(B, T, K)``, ``P(z_t | x)``
    xi: Optional[Tensor]  #: expected transition counts ``(B, K, K)`` (``(B, T-1, K, K)`` per step), when asked


class ViterbiResult(NamedTuple):
    """Outputs of :func:`hmm_viterbi`."""

    path: Tensor  #: int64 ``(B, T)``, -1 past each length; ties go to the lowest state index
    log_prob: Tensor  #: ``(B,)``, ``log P(x, z*)`` (differentiable)


LengthsLike = Union[None, Tensor, Sequence[int], np.ndarray]


def as_lengths(lengths: LengthsLike) -> Optional[Tensor]:
    """``lengths`` as an int64 tensor (``None`` stays ``None``)."""
    if lengths is None or isinstance(lengths, Tensor):
        return lengths
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu":
        raise DTypeError(f"lengths must be integers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ShapeError(f"lengths must be one-dimensional, got shape {arr.shape}")
    return _core.from_numpy(np.ascontiguousarray(arr, dtype=np.int64))


def hmm_log_likelihood(log_pi: Tensor, log_A: Tensor, log_emissions: Tensor, lengths: LengthsLike = None) -> Tensor:
    """``log P(x)`` per sequence, ``(B,)``, by the forward algorithm.

    Gradients: ``d/d log_emissions`` is the posterior ``gamma``, ``d/d log_A``
    the expected transition counts, ``d/d log_pi`` ``gamma`` at ``t = 0``.
    """
    return _native.log_likelihood(log_pi, log_A, log_emissions, as_lengths(lengths))


def hmm_posteriors(log_pi: Tensor, log_A: Tensor, log_emissions: Tensor, lengths: LengthsLike = None,
                   with_xi: bool = False) -> Posteriors:
    """Forward-backward in one node: log-likelihood, ``log_alpha``, ``log_beta``,
    the posteriors ``gamma`` and, with ``with_xi``, the expected transition
    counts (all differentiable)."""
    return Posteriors(*_native.posteriors(log_pi, log_A, log_emissions, as_lengths(lengths), bool(with_xi)))


def hmm_viterbi(log_pi: Tensor, log_A: Tensor, log_emissions: Tensor, lengths: LengthsLike = None) -> ViterbiResult:
    """The most likely state path of each sequence and its log-probability."""
    return ViterbiResult(*_native.viterbi(log_pi, log_A, log_emissions, as_lengths(lengths)))
