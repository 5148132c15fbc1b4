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


def _context_transitions(model) -> bool:
    """Whether ``model`` is a neural model whose transitions depend on the context."""
    return getattr(model, "context_transitions", None) is not None and hasattr(model, "hmm_parameters")


def _num_states(model) -> Optional[int]:
    if isinstance(model, tuple):
        return int(np.asarray(model[0]).shape[-1])
    k = getattr(model, "num_states", None)
    return int(k) if k is not None else getattr(model, "n_components", None)


def _as_rows(a, name: str, dim: Optional[int] = None) -> np.ndarray:
    x = np.asarray(a.detach().numpy() if hasattr(a, "detach") else a)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ShapeError(f"{name} must have shape (T_chunk, {'D' if dim is None else dim}) (or (1, T_chunk, ...)), got {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ShapeError(f"{name} must have {dim} columns, got shape {x.shape}")
    return x


def _model_parameters(model, features: np.ndarray, context: Optional[np.ndarray] = None,
                      prev: Optional[Tuple[np.ndarray, np.ndarray]] = None):
    """``(log_pi (K,), transitions, log_e (T, K))`` of ``model`` for one chunk ``features (T, D)``.

    ``model`` is an ``rbe.hmm`` hmmlearn-style model (``GaussianHMM`` /
    ``CategoricalHMM``), a neural model with ``hmm_parameters`` (context-free
    or context-dependent transitions, a context when it has one), or a tuple
    ``(log_pi, log_A, emission_fn)`` with ``emission_fn(features) -> (T, K)``.

    ``transitions`` is ``(K, K)`` when they do not depend on the context, else
    ``(n, K, K)``: the transitions *into* the chunk's frames, built exactly as
    the model builds its per-step ``(B, T-1, K, K)`` transitions of one long
    sequence (the step into frame ``s`` from the context of frame ``s - 1``):
    ``prev = (last observation row, last context row)`` of the previous chunk
    is prepended, so ``n = T``; at the start of the stream ``n = T - 1``.
    """
    if isinstance(model, tuple):
        if context is not None:
            raise ArgumentError("context: this model takes no context")
        log_pi, log_a, fn = model
        return np.asarray(log_pi, np.float64), np.asarray(log_a, np.float64), np.asarray(fn(features), np.float64)
    if hasattr(model, "_log_emissions"):
        if context is not None:
            raise ArgumentError("context: this model takes no context")
        model._check_fitted()  # hand-set probabilities are checked when used, as in the model's own methods
        with np.errstate(divide="ignore"):
            return np.log(model.startprob_), np.log(model.transmat_), model._log_emissions(model._validate_X(features))
    if hasattr(model, "hmm_parameters"):
        import rbe

        dyn = _context_transitions(model)
        ctx_dim = int(getattr(model, "context_dim", 0) or 0)
        if ctx_dim == 0 and context is not None:
            raise ArgumentError("context: this model has context_dim=0 but a context was given")
        if ctx_dim > 0:
            if context is None:
                raise ArgumentError(f"context: this model needs a context of shape (T_chunk, {ctx_dim})")
            context = _as_rows(context, "context", ctx_dim)
            if len(context) != len(features):
                raise ShapeError(f"context has {len(context)} rows but features has {len(features)}")
        x, c, skip = features, context, 0
        if dyn and prev is not None:
            x, c, skip = np.concatenate([prev[0][None], x]), np.concatenate([prev[1][None], c]), 1
        dt = model.initial_logits.dtype
        with rbe.no_grad():
            xt = _t(x).unsqueeze(0).to(dt)
            ct = None if c is None else _t(c).unsqueeze(0).to(dt)
            pi, a, e = model.hmm_parameters(xt, ct)
        a = _np(a).astype(np.float64)
        k = a.shape[-1]
        if dyn:
            a = a[0] if a.ndim == 4 else np.zeros((0, k, k))  # one frame in all: no step
        return _np(pi).astype(np.float64), a, _np(e)[0, skip:].astype(np.float64)
    raise ArgumentError(f"model must be an rbe.hmm model or a tuple (log_pi, log_A, emission_fn), got {type(model).__name__}")


def _segment(log_prior: np.ndarray, log_a: np.ndarray, log_e: np.ndarray):
    """Forward-backward of one segment entered with the (normalised) prior message: ``(ll, log_alpha, log_beta, gamma)``."""
    r = hmm_posteriors(_t(log_prior), _t(log_a), _t(log_e[None]))
    return float(r.log_likelihood.numpy()[0]), r.log_alpha.numpy()[0], r.log_beta.numpy()[0], r.gamma.numpy()[0]


def _run(entry: np.ndarray, filtered: bool, log_a: np.ndarray, log_e: np.ndarray):
    """Forward-backward of frames ``log_e (n, K)`` entered from ``entry``: ``(ll, log_alpha, gamma)`` of those frames.

    ``filtered=False``: ``entry`` is the normalised initial distribution of
    the first frame (``log_a`` holds ``n - 1`` steps when per step).
    ``filtered=True``: ``entry`` is the normalised filtered message of the
    frame before, entered as a frame with zero log-emissions so the step into
    the first frame is the fused op's own (``log_a`` holds ``n`` steps when
    per step); its row is dropped from the results.
    """
    if filtered:
        log_e = np.concatenate([np.zeros((1, log_e.shape[1])), log_e])
    if log_a.ndim == 3:
        log_a = log_a[None] if len(log_e) > 1 else np.zeros(log_a.shape[1:])
    ll, la, _, g = _segment(entry, log_a, log_e)
    s = 1 if filtered else 0
    return ll, la[s:], g[s:]


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
    """Exact streaming inference: ``process_chunk(features, context=None)`` / ``reset()``.

    Filtering is exact: the filtered message of the last frame of each chunk
    (normalised, its log-normaliser in the running log-likelihood) enters
    the next chunk, so the streamed log-likelihood and filtered posteriors
    equal those of one pass over the whole stream.

    Neural models with a context take it per chunk (``(T_chunk,
    context_dim)``). With context-dependent transitions the step into the
    first frame of a chunk is built, exactly as :class:`NeuralHMM` builds the
    per-step transitions of one long sequence, from the context of the frame
    before it (the last frame of the previous chunk, which the processor
    keeps).

    With ``lag > 0`` each call also returns the fixed-lag smoothed posteriors
    ``P(z_s | x_0 .. x_{s+lag})`` of every frame ``s`` for which ``lag``
    further frames have now arrived, exactly (each from its predicted
    message ``P(z_s | x_0..x_{s-1})`` and the ``lag`` frames after it; the
    frames of one call in one batched forward-backward). The last ``lag``
    frames (their emissions, transitions and predicted messages) are kept
    for the next call. :meth:`flush` returns the frames still waiting,
    smoothed on everything seen.

    Bad input (a wrong shape, a missing or extra context) raises before the
    state changes.
    """

    #: sequences per batched forward-backward of the fixed-lag smoother (bounds its memory)
    smoothing_batch = 256

    def __init__(self, model, lag: int = 0):
        if int(lag) < 0:
            raise ArgumentError(f"lag must be >= 0, got {lag}")
        self.model = model
        self.lag = int(lag)
        self._dynamic = _context_transitions(model)
        self.reset()

    def reset(self) -> None:
        """Forget the stream (the next chunk starts a new sequence)."""
        self._log_lik = 0.0
        self._t = 0
        self._pi: Optional[np.ndarray] = None  # normalised initial distribution
        self._filt: Optional[np.ndarray] = None  # normalised filtered message of the last frame seen
        self._prev: Optional[Tuple[np.ndarray, np.ndarray]] = None  # last (observation, context) rows
        self._log_a: Optional[np.ndarray] = None  # (K, K) transitions of a context-free model
        self._k: Optional[int] = None
        # frames waiting for their lag: emissions, predicted messages, per-step transitions into them
        self._win_e: Optional[np.ndarray] = None
        self._win_pred: Optional[np.ndarray] = None
        self._win_a: Optional[np.ndarray] = None
        self._win_start = 0

    @property
    def frames_seen(self) -> int:
        return self._t

    def _smooth(self, pred: np.ndarray, log_a: np.ndarray, log_e: np.ndarray, n: int) -> np.ndarray:
        """``P(z_s | frames s..s+lag, predicted message of s)`` for ``s < n`` of the window arrays."""
        lag, k = self.lag, log_e.shape[1]
        out = np.empty((n, k))
        steps = np.arange(lag + 1)
        for lo in range(0, n, self.smoothing_batch):
            rows = np.arange(lo, min(n, lo + self.smoothing_batch))[:, None] + steps[None]
            a = log_a[rows[:, 1:]] if self._dynamic else log_a
            r = hmm_posteriors(_t(pred[rows[:, 0]]), _t(a), _t(log_e[rows]))
            out[lo:lo + len(rows)] = r.gamma.numpy()[:, 0]
        return out

    def process_chunk(self, features, context=None) -> ChunkResult:
        x = _as_rows(features, "features")
        k = self._k if self._k is not None else _num_states(self.model)
        if len(x) == 0:
            if context is not None and len(_as_rows(context, "context")) != 0:
                raise ShapeError("context has rows but features has none")
            k = k or 0
            return ChunkResult(self._log_lik, np.zeros((0, k)), np.zeros((0, k)), self._win_start)
        log_pi, log_a, log_e = _model_parameters(self.model, x, context, self._prev)
        n, k = log_e.shape
        # everything below is computed before the state changes
        log_lik, pi = self._log_lik, self._pi
        if pi is None:
            pi, c = _normalise(log_pi)
            log_lik += c
        if self._filt is None:
            ll, la, _ = _run(pi, False, log_a, log_e)
        else:
            ll, la, _ = _run(self._filt, True, log_a, log_e)
        log_lik += ll
        log_filt = la - logsumexp(la, axis=1, keepdims=True)
        filt = np.exp(log_filt)
        prev = None
        if self._dynamic:
            prev = (np.array(x[-1], np.float64), np.array(_as_rows(context, "context")[-1], np.float64))
        smoothed, start = filt, self._win_start
        win = (None, None, None, self._win_start + n)
        if self.lag > 0:
            # the per-step transitions into every chunk frame (a placeholder into the stream's first frame)
            a_in = log_a
            if self._dynamic and self._filt is None:
                a_in = np.concatenate([np.zeros((1, k, k)), log_a])
            # predicted messages P(z_s | x_0..x_{s-1}) of the chunk's frames
            before = log_filt[:-1] if self._filt is None else np.concatenate([self._filt[None], log_filt[:-1]])
            into = a_in[1:] if self._filt is None else a_in
            if not self._dynamic:
                into = log_a[None]
            pred = logsumexp(before[:, :, None] + into, axis=1)
            if self._filt is None:
                pred = np.concatenate([pi[None], pred])
            we = log_e if self._win_e is None else np.concatenate([self._win_e, log_e])
            wp = pred if self._win_pred is None else np.concatenate([self._win_pred, pred])
            wa = log_a
            if self._dynamic:
                wa = a_in if self._win_a is None else np.concatenate([self._win_a, a_in])
            n_final = max(0, len(we) - self.lag)
            smoothed = self._smooth(wp, wa, we, n_final)
            win = (we[n_final:], wp[n_final:], wa[n_final:] if self._dynamic else None, self._win_start + n_final)
        # commit
        self._log_lik, self._pi, self._k = log_lik, pi, k
        self._filt, _ = _normalise(la[-1])
        self._prev = prev
        if not self._dynamic:
            self._log_a = log_a
        self._t += n
        self._win_e, self._win_pred, self._win_a, self._win_start = win
        return ChunkResult(self._log_lik, filt, smoothed, start)

    def flush(self) -> Tuple[np.ndarray, int]:
        """The smoothed posteriors of the frames still in the lag window (given everything seen), and their start."""
        if self._win_e is None or len(self._win_e) == 0:
            return np.zeros((0, self._k or 0)), self._win_start
        a = self._win_a[1:] if self._dynamic else self._log_a
        _, _, wg = _run(self._win_pred[0], False, a, self._win_e)
        start = self._win_start
        self._win_start += len(self._win_e)
        self._win_e, self._win_pred = self._win_e[:0], self._win_pred[:0]
        if self._dynamic:
            self._win_a = self._win_a[:0]
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
