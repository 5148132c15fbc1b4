"""Long and streaming sequences, all on the fused forward-backward op.

- :class:`StreamingHMMProcessor`: exact filtering by carrying the forward
  message between chunks (streamed log-likelihoods and filtered posteriors
  equal the one-shot ones), optional fixed-lag smoothing with a stated lag
  (the posterior of frame ``t`` given the frames up to ``t + lag``, exactly).
- :func:`checkpointed_posteriors`: exact smoothing of a sequence too long to
  hold its lattices, with O(sqrt(T)) messages in memory: one forward sweep
  keeps only the message entering each segment; a backward sweep over the
  segments recomputes each segment's forward-backward, the future entering
  through the segment's last emission row (``log_e[last] + log_beta_end``).
- :func:`overlap_window_posteriors`: the origin's overlap-window stitching,
  an **approximation** (each window restarts from the initial distribution
  and ignores everything outside it); it returns its error against the exact
  posteriors.

Messages are carried in log space and renormalised at every chunk boundary
(the normaliser goes into the running log-likelihood), so nothing underflows
however long the stream. Computation is float64 numpy around the fused op.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator, NamedTuple, Optional, Tuple, Union

import numpy as np
from scipy.special import logsumexp

from .. import _core
from ..errors import ArgumentError, ShapeError
from .functional import hmm_posteriors

__all__ = ["StreamingHMMProcessor", "ChunkResult", "checkpointed_posteriors", "overlap_window_posteriors", "WindowedResult"]


def _t(x: np.ndarray):
    return _core.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


def _np(x) -> np.ndarray:
    return x.detach().numpy() if hasattr(x, "detach") else np.asarray(x)


def _model_parameters(model, features: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(log_pi (K,), log_A (K, K), log_e (T, K))`` of ``model`` for one sequence ``features (T, D)``.

    ``model`` is an ``rbe.hmm`` hmmlearn-style model (``GaussianHMM`` /
    ``CategoricalHMM``), a neural model with ``hmm_parameters`` and
    context-free transitions, or a tuple ``(log_pi, log_A, emission_fn)``
    with ``emission_fn(features) -> (T, K)``.
    """
    if isinstance(model, tuple):
        log_pi, log_a, fn = model
        return np.asarray(log_pi, np.float64), np.asarray(log_a, np.float64), np.asarray(fn(features), np.float64)
    if hasattr(model, "_log_emissions"):
        with np.errstate(divide="ignore"):
            return np.log(model.startprob_), np.log(model.transmat_), model._log_emissions(model._validate_X(features))
    if hasattr(model, "hmm_parameters"):
        import rbe

        with rbe.no_grad():
            x = _t(features).unsqueeze(0)
            if x.dtype != model.initial_logits.dtype:
                x = x.to(model.initial_logits.dtype)
            pi, a, e = model.hmm_parameters(x, None)
        a = _np(a).astype(np.float64)
        if a.ndim != 2:
            raise ArgumentError("streaming needs transitions that do not depend on the context")
        return _np(pi).astype(np.float64), a, _np(e)[0].astype(np.float64)
    raise ArgumentError(f"model must be an rbe.hmm model or a tuple (log_pi, log_A, emission_fn), got {type(model).__name__}")


def _segment(log_prior: np.ndarray, log_a: np.ndarray, log_e: np.ndarray):
    """Forward-backward of one segment entered with the (normalised) prior message: ``(ll, log_alpha, log_beta, gamma)``."""
    r = hmm_posteriors(_t(log_prior), _t(log_a), _t(log_e[None]))
    return float(r.log_likelihood.numpy()[0]), r.log_alpha.numpy()[0], r.log_beta.numpy()[0], r.gamma.numpy()[0]


def _normalise(m: np.ndarray) -> Tuple[np.ndarray, float]:
    c = float(logsumexp(m))
    if not np.isfinite(c):
        return m, c
    return m - c, c


class ChunkResult(NamedTuple):
    """What :meth:`StreamingHMMProcessor.process_chunk` returns."""

    log_likelihood: float  #: ``log p(x_0 .. x_t)`` of everything seen so far
    filtered: np.ndarray  #: ``P(z_t | x_0..x_t)`` for the chunk's frames, ``(T_chunk, K)``
    smoothed: np.ndarray  #: fixed-lag posteriors ``P(z_s | x_0..x_{s+lag})`` of the frames that became final, ``(n, K)``
    smoothed_start: int  #: the index (in the stream) of the first row of ``smoothed``


class StreamingHMMProcessor:
    """Exact streaming inference: ``process_chunk(features)`` / ``reset()``.

    Filtering is exact: the forward message at the end of each chunk
    (normalised, its log-normaliser added to the running log-likelihood) is
    the initial distribution of the next, so the streamed log-likelihood and
    filtered posteriors equal those of one pass over the whole stream.

    With ``lag > 0`` each call also returns the fixed-lag smoothed posteriors
    ``P(z_s | x_0 .. x_{s+lag})`` of every frame ``s`` for which ``lag``
    further frames have now arrived (a window of the last ``lag`` frames is
    kept and re-smoothed with the message entering it). :meth:`flush` returns
    the remaining frames smoothed on what was seen.
    """

    def __init__(self, model, lag: int = 0):
        if int(lag) < 0:
            raise ArgumentError(f"lag must be >= 0, got {lag}")
        self.model = model
        self.lag = int(lag)
        self.reset()

    def reset(self) -> None:
        """Forget the stream (the next chunk starts a new sequence)."""
        self._log_lik = 0.0
        self._t = 0
        self._prior: Optional[np.ndarray] = None  # normalised predicted message for the next frame
        self._win_prior: Optional[np.ndarray] = None  # message entering the smoothing window
        self._win_e = None  # emissions of the window frames
        self._win_start = 0
        self._log_a: Optional[np.ndarray] = None

    @property
    def frames_seen(self) -> int:
        return self._t

    def process_chunk(self, features) -> ChunkResult:
        x = np.asarray(features)
        if x.ndim == 3 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != 2:
            raise ShapeError(f"features must have shape (T_chunk, D) (or (1, T_chunk, D)), got {x.shape}")
        log_pi, log_a, log_e = _model_parameters(self.model, x)
        k = log_e.shape[1]
        if self._prior is None:
            self._prior, c = _normalise(log_pi)
            self._log_lik += c
            self._log_a = log_a
            self._win_prior = self._prior
            self._win_e = np.zeros((0, k))
        if len(x) == 0:
            return ChunkResult(self._log_lik, np.zeros((0, k)), np.zeros((0, k)), self._win_start)
        ll, la, _, _ = _segment(self._prior, log_a, log_e)
        self._log_lik += ll
        filt = np.exp(la - logsumexp(la, axis=1, keepdims=True))
        nxt = logsumexp(la[-1][:, None] + log_a, axis=0)
        self._prior, _ = _normalise(nxt)
        self._t += len(x)
        if self.lag == 0:  # fixed lag 0 is filtering
            start = self._win_start
            self._win_start += len(x)
            return ChunkResult(self._log_lik, filt, filt, start)
        smoothed, start = np.zeros((0, k)), self._win_start
        self._win_e = np.concatenate([self._win_e, log_e])
        n_final = len(self._win_e) - self.lag
        if n_final > 0:
            _, wla, _, wg = _segment(self._win_prior, log_a, self._win_e)
            smoothed = wg[:n_final]
            self._win_prior, _ = _normalise(logsumexp(wla[n_final - 1][:, None] + log_a, axis=0))
            self._win_e = self._win_e[n_final:]
            self._win_start += n_final
        return ChunkResult(self._log_lik, filt, smoothed, start)

    def flush(self) -> Tuple[np.ndarray, int]:
        """The smoothed posteriors of the frames still in the lag window (given everything seen), and their start."""
        if self._win_e is None or len(self._win_e) == 0:
            k = 0 if self._log_a is None else self._log_a.shape[0]
            return np.zeros((0, k)), self._win_start
        _, _, _, wg = _segment(self._win_prior, self._log_a, self._win_e)
        start = self._win_start
        self._win_start += len(self._win_e)
        self._win_e = self._win_e[:0]
        return wg, start


EmissionsLike = Union[np.ndarray, Callable[[int, int], np.ndarray]]


def _emissions_fn(log_e: EmissionsLike, length: Optional[int]) -> Tuple[Callable[[int, int], np.ndarray], int]:
    if callable(log_e):
        if length is None:
            raise ArgumentError("checkpointed_posteriors: give length= when log_e is a function (start, stop) -> rows")
        return (lambda a, b: np.asarray(log_e(a, b), np.float64)), int(length)
    arr = np.asarray(log_e)
    if arr.ndim != 2:
        raise ShapeError(f"log_e must have shape (T, K), got {arr.shape}")
    return (lambda a, b: np.asarray(arr[a:b], np.float64)), arr.shape[0]


def checkpointed_posteriors(log_pi, log_a, log_e: EmissionsLike, length: Optional[int] = None,
                            segment: Optional[int] = None) -> Iterator[Tuple[int, np.ndarray]]:
    """Exact smoothed posteriors of one long sequence, yielded segment by
    segment **from the end** as ``(start, gamma (n, K))``, holding
    O(sqrt(T)) forward messages and one segment of lattices at a time.

    ``log_e`` is a ``(T, K)`` array (a ``numpy.memmap`` works) or a function
    ``(start, stop) -> rows`` with ``length=T`` (emissions recomputed on
    demand); ``segment`` defaults to ``ceil(sqrt(T))``. Each emission row is
    computed twice (once per sweep).
    """
    fn, t = _emissions_fn(log_e, length)
    log_pi, log_a = np.asarray(log_pi, np.float64), np.asarray(log_a, np.float64)
    s = int(segment) if segment else max(1, math.ceil(math.sqrt(max(t, 1))))
    bounds = list(range(0, t, s)) + [t]
    # forward sweep: the normalised message entering each segment
    priors = []
    prior, _ = _normalise(log_pi)
    for a, b in zip(bounds[:-1], bounds[1:]):
        priors.append(prior)
        _, la, _, _ = _segment(prior, log_a, fn(a, b))
        prior, _ = _normalise(logsumexp(la[-1][:, None] + log_a, axis=0))
    # backward sweep: the future enters through the last emission row
    beta_end = np.zeros(log_a.shape[0])
    for i in range(len(priors) - 1, -1, -1):
        a, b = bounds[i], bounds[i + 1]
        e = fn(a, b).copy()
        e[-1] = e[-1] + beta_end
        _, _, lb, g = _segment(priors[i], log_a, e)
        yield a, g
        # beta at the previous segment's last frame: sum_j A_ij e_a(j) beta_a(j) (normalised: only ratios matter)
        beta_first = lb[0] + e[0]
        beta_end, _ = _normalise(logsumexp(log_a + beta_first[None, :], axis=1))


def checkpointed_smooth(log_pi, log_a, log_e: EmissionsLike, length: Optional[int] = None,
                        segment: Optional[int] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
    """All of :func:`checkpointed_posteriors` written into ``out`` (``(T, K)``, e.g. a memmap) and returned."""
    fn, t = _emissions_fn(log_e, length)
    k = np.asarray(log_a).shape[0]
    out = np.empty((t, k)) if out is None else out
    for a, g in checkpointed_posteriors(log_pi, log_a, fn, length=t, segment=segment):
        out[a:a + len(g)] = g
    return out


class WindowedResult(NamedTuple):
    """What :func:`overlap_window_posteriors` returns."""

    posteriors: np.ndarray  #: the stitched (approximate) posteriors ``(T, K)``
    max_abs_error: float  #: ``max |approx - exact|`` over all frames and states
    mean_total_variation: float  #: mean over frames of ``0.5 * sum_k |approx - exact|``
    label_disagreement: float  #: fraction of frames whose argmax state differs from the exact one


def overlap_window_posteriors(log_pi, log_a, log_e, window: int, overlap: int) -> WindowedResult:
    """The origin's overlap-window stitching (**approximate**): windows of
    ``window`` frames overlapping by ``overlap``; each is smoothed on its own,
    starting from the initial distribution, and contributes its central part.
    The error against the exact posteriors (computed by
    :func:`checkpointed_smooth`) is returned with it."""
    le = np.asarray(log_e, np.float64)
    t, k = le.shape
    if window < 1 or overlap < 0 or 2 * overlap >= window:
        raise ArgumentError(f"need window >= 1 and 0 <= 2 * overlap < window, got window={window}, overlap={overlap}")
    log_pi, log_a = np.asarray(log_pi, np.float64), np.asarray(log_a, np.float64)
    prior, _ = _normalise(log_pi)
    approx = np.empty((t, k))
    step = window - 2 * overlap
    start = 0
    while start < t:
        a = max(0, start - overlap)
        b = min(t, start + step + overlap)
        _, _, _, g = _segment(prior, log_a, le[a:b])
        stop = min(t, start + step)
        approx[start:stop] = g[start - a:stop - a]
        start = stop
    exact = checkpointed_smooth(log_pi, log_a, le)
    diff = np.abs(approx - exact)
    return WindowedResult(approx, float(diff.max()) if diff.size else 0.0, float(0.5 * diff.sum(1).mean()) if t else 0.0,
                          float((approx.argmax(1) != exact.argmax(1)).mean()) if t else 0.0)
