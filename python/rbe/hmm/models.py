"""hmmlearn-compatible HMMs on the fused kernels: :class:`GaussianHMM`
(covariance types ``diag``, ``spherical``, ``full``, ``tied``) and
:class:`CategoricalHMM`.

Constructor arguments, attribute names and meanings, the ``params`` /
``init_params`` letters, the EM updates (with hmmlearn's priors), the
convergence monitor and the methods follow hmmlearn 0.3. The difference is
how the work is done: every sequence of the concatenated ``X`` (split by
``lengths``) goes in one padded batch through the fused forward-backward op
(parallel over sequences, exact in log space, length-1 sequences included),
and the diagonal / spherical Gaussian log-densities are three matrix products
(``X**2 @ (1/var).T``, ``X @ (mu/var).T`` and a per-state constant) rather
than a loop over states.

Bad input (probabilities negative or not summing to 1, wrong shapes, lengths
that do not add up to ``len(X)``, NaN observations, fewer samples than
states) raises an error of :mod:`rbe.errors` (``ArgumentError`` and
``ShapeError`` are ``ValueError`` s) naming the argument, and changes nothing:
``fit`` restores every attribute it may have touched before re-raising.
"""
from __future__ import annotations

import copy
import logging
import sys
from collections import deque
from typing import Callable, Optional, Tuple

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as _SkNotFittedError

from .. import _core
from ..errors import ArgumentError, ShapeError
from ..utils.progress import progress as _progress
from .functional import hmm_posteriors, hmm_viterbi

__all__ = ["ConvergenceMonitor", "GaussianHMM", "CategoricalHMM", "COVARIANCE_TYPES", "NotFittedError"]

COVARIANCE_TYPES = frozenset(("spherical", "diag", "full", "tied"))
_logger = logging.getLogger(__name__)
_LOG2PI = np.log(2 * np.pi)


class NotFittedError(ArgumentError, _SkNotFittedError):
    """A model used before its parameters were set or fitted: an
    :class:`rbe.errors.ArgumentError` that is also scikit-learn's
    ``NotFittedError`` (what hmmlearn raises), so hmmlearn-style
    ``except NotFittedError`` / ``except ValueError`` both catch it."""


class ConvergenceMonitor:
    """hmmlearn's convergence monitor: ``history`` of the log-probabilities
    reported by EM, ``iter``, and ``converged`` when ``n_iter`` iterations
    ran or the last improvement is below ``tol``. With ``verbose`` each report
    is printed to stderr (iteration, log-probability, change)."""

    _template = "{iter:>10d} {log_prob:>16.8f} {delta:>+16.8f}"

    def __init__(self, tol: float, n_iter: int, verbose: bool):
        self.tol = tol
        self.n_iter = n_iter
        self.verbose = verbose
        self.history: deque = deque()
        self.iter = 0
        self._gradient = False  # set by the gradient fit: steps may go down, and convergence is |change| < tol

    def __repr__(self) -> str:
        public = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        params = sorted(dict(public, history=list(self.history)).items())
        return "ConvergenceMonitor(\n" + "".join(f"    {k}={v},\n" for k, v in params) + ")"

    def _reset(self) -> None:
        self.iter = 0
        self.history.clear()

    def report(self, log_prob: float) -> None:
        if self.verbose:
            delta = log_prob - self.history[-1] if self.history else np.nan
            print(self._template.format(iter=self.iter + 1, log_prob=log_prob, delta=delta), file=sys.stderr)
        if not self._gradient and self.history and (log_prob - self.history[-1]) < -np.finfo(float).eps ** 0.5:
            _logger.warning("Model is not converging.  Current: %s is not greater than %s.", log_prob, self.history[-1])
        self.history.append(log_prob)
        self.iter += 1

    @property
    def converged(self) -> bool:
        if len(self.history) >= 2:
            delta = self.history[-1] - self.history[-2]
            if (abs(delta) if self._gradient else delta) < self.tol:
                return True
        return self.iter == self.n_iter


# ---------------------------------------------------------------- validation helpers
def _check_X(X, name: str = "X", *, integer: bool = False) -> np.ndarray:
    arr = np.asarray(X)
    if arr.ndim == 1:
        raise ShapeError(f"{name} must be 2-D (n_samples, n_features); got a 1-D array of shape {arr.shape} "
                         f"(reshape with X.reshape(-1, 1) for a single feature)")
    if arr.ndim != 2:
        raise ShapeError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if integer:
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise ArgumentError(f"{name} must hold integer symbols for a CategoricalHMM, got dtype {arr.dtype}")
        return arr.astype(np.int64)
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"{name} must be numeric: {e}") from None
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ArgumentError(f"{name} contains NaN or infinity (first at row {i}, column {j}, value {arr[i, j]})")
    return arr


def _check_lengths(lengths, n: int) -> np.ndarray:
    if lengths is None:
        return np.array([n], dtype=np.int64)
    ls = np.asarray(lengths)
    if ls.ndim != 1:
        raise ShapeError(f"lengths must be 1-D, got shape {ls.shape}")
    if ls.size and ls.dtype.kind not in "iu":
        if ls.dtype.kind != "f" or np.any(ls != np.round(ls)):
            raise ArgumentError(f"lengths must be integers, got {ls.dtype}")
    ls = ls.astype(np.int64)
    if (ls < 0).any():
        i = int(np.argmax(ls < 0))
        raise ArgumentError(f"lengths[{i}] = {ls[i]} is negative")
    if int(ls.sum()) != n:
        raise ArgumentError(f"lengths array {ls.tolist() if ls.size <= 20 else ls} sums to {int(ls.sum())}, "
                            f"but X has {n} samples; the lengths must add up to len(X)")
    return ls


def _check_probs(p, name: str, shape: Tuple[int, ...]) -> np.ndarray:
    arr = np.array(p, dtype=np.float64, copy=True)
    if arr.shape != shape:
        raise ShapeError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ArgumentError(f"{name} contains NaN or infinity")
    if (arr < 0).any():
        idx = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise ArgumentError(f"{name}{list(idx)} = {arr[idx]} is negative; probabilities must be >= 0")
    s = arr.sum(axis=-1)
    if not np.allclose(s, 1):
        where = int(np.argmax(~np.isclose(s, 1))) if s.ndim else None
        at = f" (row {where} sums to {np.atleast_1d(s)[where]:.6g})" if s.ndim else f" (got {float(s):.6g})"
        raise ArgumentError(f"{name} must sum to 1{' along each row' if s.ndim else ''}{at}")
    return arr


def _as_float_array(v, name: str) -> np.ndarray:
    """A float64 copy of an attribute assigned by hand. Like hmmlearn, the
    values are only checked when the model uses them (so ``m.startprob_ /=
    m.startprob_.sum()`` or a new shape before a new ``n_components`` work);
    here only what cannot become a float array is refused."""
    try:
        return np.array(v, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"{name} must be convertible to a float array: {e}") from None


def _check_n_components(n) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ArgumentError(f"n_components must be an integer >= 1, got {n!r}")


def _validate_probs_in_place(arr: np.ndarray, name: str, shape: Tuple[int, ...]) -> None:
    """Re-check probabilities that may have been edited in place
    (``model.transmat_[0] = ...``), as hmmlearn checks them before use."""
    _check_probs(arr, name, shape)


def _normalize(a: np.ndarray, axis=None) -> np.ndarray:
    s = a.sum(axis=axis, keepdims=True)
    s = np.where(s == 0, 1, s)
    return a / s


def _log(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(p)


def _pad(values: np.ndarray, lengths: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(N, ...)`` rows split by ``lengths`` into a zero-padded ``(B, T, ...)`` and the index of each row."""
    b, t = len(lengths), int(lengths.max()) if len(lengths) else 0
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if b else np.zeros(0, np.int64)
    seq = np.repeat(np.arange(b), lengths)
    pos = np.arange(len(values)) - np.repeat(starts, lengths)
    out = np.zeros((b, t) + values.shape[1:], dtype=values.dtype)
    out[seq, pos] = values
    return out, (seq, pos)


def _t(x: np.ndarray):
    return _core.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


def _mm(a: np.ndarray, b: np.ndarray, *, ta: bool = False, tb: bool = False) -> np.ndarray:
    """``a @ b`` (``a.T`` / ``b.T`` with ``ta`` / ``tb``) in float64 with rbe's
    GEMM: rbe's thread count and fixed partitions rather than the BLAS
    thread pool of numpy (which, on a loaded machine, costs far more than the
    product)."""
    x, y = _t(a), _t(b)
    x = x.t() if ta else x
    y = y.t() if tb else y
    return (x @ y).numpy()


class _BaseHMM(BaseEstimator):
    """What GaussianHMM and CategoricalHMM share: start/transition
    probabilities, EM driver, scoring and decoding through the fused ops.
    A scikit-learn estimator as hmmlearn's models are (``get_params``,
    ``set_params``, ``repr``, ``sklearn.base.clone``)."""

    _param_letters = "st"

    def __init__(self, n_components=1, startprob_prior=1.0, transmat_prior=1.0, algorithm="viterbi", random_state=None,
                 n_iter=10, tol=1e-2, verbose=False, params="st", init_params="st", implementation="log"):
        _check_n_components(n_components)
        if algorithm not in ("viterbi", "map"):
            raise ArgumentError(f"algorithm must be 'viterbi' or 'map', got {algorithm!r}")
        self.n_components = n_components
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.algorithm = algorithm
        self.random_state = random_state
        self.n_iter = n_iter
        self.tol = tol
        self.verbose = verbose
        self.params = params
        self.init_params = init_params
        self.implementation = implementation
        self.monitor_ = ConvergenceMonitor(self.tol, self.n_iter, self.verbose)

    # ------------------------------------------------------------ probabilities (validated when used, as hmmlearn)
    @property
    def startprob_(self) -> np.ndarray:
        return self._startprob

    @startprob_.setter
    def startprob_(self, v) -> None:
        self._startprob = _as_float_array(v, "startprob_")

    @property
    def transmat_(self) -> np.ndarray:
        return self._transmat

    @transmat_.setter
    def transmat_(self, v) -> None:
        self._transmat = _as_float_array(v, "transmat_")

    def _needs_init(self, code: str, name: str) -> bool:
        if code in self.init_params:
            if hasattr(self, name):
                _logger.warning("Even though the %r attribute is set, it will be overwritten during initialization "
                                "because 'init_params' contains %r", name, code)
            return True
        return not hasattr(self, name)

    def _rng(self, random_state=None) -> np.random.RandomState:
        """scikit-learn's ``check_random_state`` as hmmlearn: ``None`` is numpy's
        global generator (so ``np.random.seed`` makes runs repeatable), an int
        a fresh ``RandomState``, a ``RandomState`` itself."""
        from sklearn.utils import check_random_state

        rs = self.random_state if random_state is None else random_state
        try:
            return check_random_state(rs)
        except ValueError as e:
            raise ArgumentError(f"random_state: {e}") from None

    def _snapshot(self) -> dict:
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k != "monitor_"}), copy.deepcopy(self.monitor_)

    def _restore(self, snap) -> None:
        state, mon = snap
        self.__dict__.clear()
        self.__dict__.update(state)
        self.monitor_ = mon

    def _check_fitted(self) -> None:
        _check_n_components(self.n_components)
        if not hasattr(self, "_startprob") or not hasattr(self, "_transmat"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet: set startprob_, transmat_ and "
                                 f"the emission parameters, or call fit")
        k = self.n_components
        _validate_probs_in_place(self._startprob, "startprob_", (k,))
        _validate_probs_in_place(self._transmat, "transmat_", (k, k))
        self._check()

    # ------------------------------------------------------------ model selection (hmmlearn's)
    def _get_n_fit_scalars_per_param(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def aic(self, X, lengths=None) -> float:
        """Akaike information criterion ``-2 log P(X) + 2 p`` (``p``: the free
        scalars of every parameter letter, counted as hmmlearn counts them)."""
        n_params = sum(self._get_n_fit_scalars_per_param().values())
        return -2 * self.score(X, lengths=lengths) + 2 * n_params

    def bic(self, X, lengths=None) -> float:
        """Bayesian information criterion ``-2 log P(X) + p log(n_samples)``."""
        n_params = sum(self._get_n_fit_scalars_per_param().values())
        return -2 * self.score(X, lengths=lengths) + n_params * float(np.log(len(np.asarray(X))))

    def get_stationary_distribution(self) -> np.ndarray:
        """The stationary distribution of the states: the left eigenvector of
        ``transmat_`` for its largest eigenvalue (1), normalised to sum to 1."""
        if not hasattr(self, "_transmat"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet: set transmat_ or call fit")
        _validate_probs_in_place(self._transmat, "transmat_", (self.n_components, self.n_components))
        eigvals, eigvecs = scipy.linalg.eig(self._transmat.T)
        vec = np.real_if_close(eigvecs[:, np.argmax(eigvals)])
        return vec / vec.sum()

    def _check(self) -> None:
        """Checks of the emission parameters (run before every use)."""

    # ------------------------------------------------------------ the batched inference
    def _prepare(self, X, lengths):
        _check_n_components(self.n_components)
        if self.implementation not in ("log", "scaling"):
            raise ArgumentError(f"implementation must be 'log' or 'scaling', got {self.implementation!r} (both give "
                                f"the same results here: the fused ops work in log space)")
        X = self._validate_X(X)
        ls = _check_lengths(lengths, len(X))
        return X, ls

    def _log_emissions(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _batched(self, X: np.ndarray, ls: np.ndarray):
        le = self._log_emissions(X)
        keep = ls > 0
        lsn = ls[keep]
        pad, idx = _pad(le, lsn)
        return pad, lsn, idx

    def _posteriors(self, X, ls, with_xi=False):
        pad, lsn, idx = self._batched(X, ls)
        r = hmm_posteriors(_t(_log(self.startprob_)), _t(_log(self.transmat_)), _t(pad), lsn, with_xi=with_xi)
        return r, idx, lsn

    def _compute_log_likelihood(self, X) -> np.ndarray:
        """Per-sample, per-state emission log-densities ``(n_samples,
        n_components)`` (hmmlearn's hook of the same name)."""
        self._check_fitted()
        _check_n_components(self.n_components)
        return self._log_emissions(self._validate_X(X))

    def score_samples(self, X, lengths=None) -> Tuple[float, np.ndarray]:
        """``(log P(X), posteriors (n_samples, n_components))``."""
        self._check_fitted()
        X, ls = self._prepare(X, lengths)
        r, idx, _ = self._posteriors(X, ls)
        return float(r.log_likelihood.numpy().sum()), r.gamma.numpy()[idx]

    def score(self, X, lengths=None) -> float:
        """``log P(X)`` summed over the sequences."""
        self._check_fitted()
        X, ls = self._prepare(X, lengths)
        pad, lsn, _ = self._batched(X, ls)
        from .functional import hmm_log_likelihood

        ll = hmm_log_likelihood(_t(_log(self.startprob_)), _t(_log(self.transmat_)), _t(pad), lsn)
        return float(ll.numpy().sum())

    def predict_proba(self, X, lengths=None) -> np.ndarray:
        return self.score_samples(X, lengths)[1]

    def decode(self, X, lengths=None, algorithm=None) -> Tuple[float, np.ndarray]:
        """``(log_prob, state_sequence)`` as hmmlearn: Viterbi (the joint
        log-probability of the best path) or ``"map"`` (the posterior argmax,
        with hmmlearn's log_prob: the sum of the maximal posteriors)."""
        algorithm = algorithm or self.algorithm
        if algorithm not in ("viterbi", "map"):
            raise ArgumentError(f"algorithm must be 'viterbi' or 'map', got {algorithm!r}")
        self._check_fitted()
        X, ls = self._prepare(X, lengths)
        if algorithm == "map":
            r, idx, _ = self._posteriors(X, ls)
            post = r.gamma.numpy()[idx]
            return float(post.max(axis=1).sum()), post.argmax(axis=1)
        pad, lsn, idx = self._batched(X, ls)
        v = hmm_viterbi(_t(_log(self.startprob_)), _t(_log(self.transmat_)), _t(pad), lsn)
        return float(v.log_prob.numpy().sum()), v.path.numpy()[idx]

    def predict(self, X, lengths=None) -> np.ndarray:
        return self.decode(X, lengths)[1]

    # ------------------------------------------------------------ EM
    def _init(self, X: np.ndarray, ls: np.ndarray) -> None:
        init = 1.0 / self.n_components
        rs = self._rng()
        if self._needs_init("s", "startprob_"):
            self.startprob_ = rs.dirichlet(np.full(self.n_components, init))
        if self._needs_init("t", "transmat_"):
            self.transmat_ = rs.dirichlet(np.full(self.n_components, init), size=self.n_components)

    def _estep(self, X, ls):
        r, idx, lsn = self._posteriors(X, ls, with_xi="t" in self.params)
        gamma = r.gamma.numpy()
        post_rows = gamma[idx]
        stats = {
            "nobs": len(lsn),
            "start": gamma[:, 0].sum(axis=0),
            "trans": r.xi.numpy().sum(axis=0) if r.xi is not None else None,
            "post": post_rows.sum(axis=0),
        }
        self._emission_stats(stats, X, post_rows)
        return stats, float(r.log_likelihood.numpy().sum())

    def _emission_stats(self, stats, X, post) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _mstep(self, stats) -> None:
        if "s" in self.params:
            sp = np.maximum(self.startprob_prior - 1 + stats["start"], 0)
            self._startprob = _normalize(np.where(self._startprob == 0, 0, sp))
        if "t" in self.params:
            tm = np.maximum(self.transmat_prior - 1 + stats["trans"], 0)
            self._transmat = _normalize(np.where(self._transmat == 0, 0, tm), axis=1)

    def fit(self, X, lengths=None, *, optimizer: Optional[Callable] = None, progress: Optional[bool] = None):
        """Estimate the parameters.

        By default Baum-Welch EM exactly as hmmlearn (initialisation per
        ``init_params``, then up to ``n_iter`` iterations updating the
        ``params`` letters, stopping when the gain is below ``tol``;
        ``monitor_`` records the log-probability before each update). All
        sequences go through one batched forward-backward per iteration.

        With ``optimizer`` (a callable taking a list of parameters and
        returning an ``rbe.optim`` optimizer, e.g. ``lambda p:
        rbe.optim.Adam(p, lr=0.05)``) the mean log-likelihood per sample is
        maximised by gradient steps instead (``n_iter`` steps, same
        ``params`` letters; every covariance type: ``full`` / ``tied``
        through the Cholesky factor of the precision).

        ``progress`` shows a bar (default: when stderr is a terminal).
        """
        snap = self._snapshot()
        try:
            X, ls = self._prepare(X, lengths)
            if len(X) < self.n_components:
                raise ArgumentError(f"fit: X has {len(X)} samples but the model has n_components={self.n_components} "
                                    f"states; fitting needs at least as many samples as states")
            self._init(X, ls)
            self._check_fitted()
            per_param = self._get_n_fit_scalars_per_param()
            unknown = sorted(set(self.params) - set(per_param))
            if unknown:
                raise ArgumentError(f"params={self.params!r} holds unknown letter(s) {unknown}; "
                                    f"{type(self).__name__} fits {''.join(per_param)!r}")
            n_fit = sum(per_param[p] for p in self.params)
            if X.size < n_fit:
                _logger.warning("Fitting a model with %d free scalar parameters with only %d data points will result "
                                "in a degenerate solution.", n_fit, X.size)
            self.monitor_ = ConvergenceMonitor(self.tol, self.n_iter, self.verbose)
            if optimizer is not None:
                self._fit_gradient(X, ls, optimizer, progress)
                return self
            # a manual bar: one iterating a range counts an iteration only when the next starts
            bar = _progress(None, desc=f"{type(self).__name__} EM", total=self.n_iter,
                            disable=None if progress is None else not progress)
            try:
                for _ in range(self.n_iter):
                    stats, ll = self._estep(X, ls)
                    self._mstep(stats)
                    self.monitor_.report(ll)
                    if bar is not None:
                        bar.set_postfix(log_prob=f"{ll:.4f}", refresh=False)
                        bar.update(1)
                    if self.monitor_.converged:
                        break
            finally:
                if bar is not None:
                    bar.close()
            return self
        except BaseException:
            self._restore(snap)
            raise

    def _fit_gradient(self, X, ls, make_opt, progress) -> None:
        import rbe

        k = self.n_components
        fixed_s = _t(np.where(self.startprob_ == 0, -np.inf, 0.0))
        fixed_t = _t(np.where(self.transmat_ == 0, -np.inf, 0.0))
        s_logit = _t(np.where(self.startprob_ > 0, _log(np.maximum(self.startprob_, 1e-300)), 0.0)).requires_grad_("s" in self.params)
        t_logit = _t(np.where(self.transmat_ > 0, _log(np.maximum(self.transmat_, 1e-300)), 0.0)).requires_grad_("t" in self.params)
        em = self._emission_tensors()
        params = [p for p in [s_logit, t_logit] + list(em.values()) if p.requires_grad]
        if not params:
            return
        opt = make_opt(params)
        self.monitor_._gradient = True
        keep = ls > 0
        lsn = ls[keep]
        seq = np.repeat(np.arange(len(lsn)), lsn)
        pos = np.arange(len(X)) - np.repeat(np.concatenate([[0], np.cumsum(lsn)[:-1]]), lsn)
        flat = (seq * int(lsn.max()) + pos).astype(np.int64)
        flat_t = _core.from_numpy(flat)
        bsz, tmax = len(lsn), int(lsn.max())
        Xt = self._obs_tensor(X)
        bar = _progress(None, desc=f"{type(self).__name__} gradient fit", total=self.n_iter,
                        disable=None if progress is None else not progress)
        from .functional import hmm_log_likelihood

        for _ in range(self.n_iter):
            opt.zero_grad()
            log_pi = rbe.log_softmax(s_logit + fixed_s, dim=0)
            log_a = rbe.log_softmax(t_logit + fixed_t, dim=1)
            le = self._log_emissions_tensor(Xt, em)  # (N, K)
            padded = rbe.zeros(bsz * tmax, k, dtype=rbe.float64).index_add(0, flat_t, le).reshape(bsz, tmax, k)
            ll = hmm_log_likelihood(log_pi, log_a, padded, lsn).sum()
            (-ll / len(X)).backward()
            opt.step()
            self.monitor_.report(float(ll))
            if bar is not None:
                bar.update(1)
            if self.monitor_.converged:
                break
        if bar is not None:
            bar.close()
        with rbe.no_grad():
            self._startprob = np.exp(rbe.log_softmax(s_logit + fixed_s, dim=0).numpy())
            self._transmat = np.exp(rbe.log_softmax(t_logit + fixed_t, dim=1).numpy())
            self._set_emission_tensors(em)

    # ------------------------------------------------------------ sampling
    def sample(self, n_samples=1, random_state=None, currstate=None):
        """``(X, state_sequence)``: one sequence of ``n_samples`` drawn from
        the model (the same random draws as hmmlearn for the same seed)."""
        self._check_fitted()
        rs = self._rng(random_state)
        tcdf = np.cumsum(self.transmat_, axis=1)
        if currstate is None:
            currstate = int((np.cumsum(self.startprob_) > rs.rand()).argmax())
        states = [currstate]
        X = [self._generate_sample_from_state(currstate, rs)]
        for _ in range(n_samples - 1):
            currstate = int((tcdf[currstate] > rs.rand()).argmax())
            states.append(currstate)
            X.append(self._generate_sample_from_state(currstate, rs))
        return np.atleast_2d(X), np.array(states, dtype=int)


def _fill_covars(covars: np.ndarray, covariance_type: str, k: int, d: int) -> np.ndarray:
    if covariance_type == "full":
        return covars
    if covariance_type == "diag":
        return np.array([np.diag(c) for c in covars])
    if covariance_type == "tied":
        return np.tile(covars, (k, 1, 1))
    return np.array([np.eye(d) * c for c in covars])  # spherical


class GaussianHMM(_BaseHMM):
    """Hidden Markov model with Gaussian emissions, hmmlearn's
    ``GaussianHMM``: ``means_`` ``(K, D)``; ``covars_`` always returned as full
    matrices ``(K, D, D)`` and set in the shape of the covariance type
    (``spherical`` ``(K,)``, ``diag`` ``(K, D)``, ``full`` ``(K, D, D)``,
    ``tied`` ``(D, D)``)."""

    def __init__(self, n_components=1, covariance_type="diag", min_covar=1e-3, startprob_prior=1.0, transmat_prior=1.0,
                 means_prior=0, means_weight=0, covars_prior=1e-2, covars_weight=1, algorithm="viterbi",
                 random_state=None, n_iter=10, tol=1e-2, verbose=False, params="stmc", init_params="stmc",
                 implementation="log"):
        if covariance_type not in COVARIANCE_TYPES:
            raise ArgumentError(f"covariance_type must be one of {sorted(COVARIANCE_TYPES)}, got {covariance_type!r}")
        super().__init__(n_components, startprob_prior, transmat_prior, algorithm, random_state, n_iter, tol, verbose,
                         params, init_params, implementation)
        self.covariance_type = covariance_type
        self.min_covar = min_covar
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight

    # ------------------------------------------------------------ attributes
    @property
    def n_features(self) -> Optional[int]:
        """The observation dimension (from ``means_``); hmmlearn code may also
        set it, to the same value or before ``means_`` exists."""
        if hasattr(self, "_means") and self._means.ndim == 2:
            return self._means.shape[1]
        return self.__dict__.get("_n_features_set")

    @n_features.setter
    def n_features(self, v) -> None:
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise ArgumentError(f"n_features must be a positive integer, got {v!r}")
        if hasattr(self, "_means") and self._means.ndim == 2 and v != self._means.shape[1]:
            raise ShapeError(f"n_features={v} but means_ has {self._means.shape[1]} features")
        self._n_features_set = None if v is None else int(v)

    @property
    def means_(self) -> np.ndarray:
        return self._means

    @means_.setter
    def means_(self, v) -> None:
        self._means = _as_float_array(v, "means_")  # validated when used, as hmmlearn

    def _covar_dim(self, c) -> Optional[int]:
        return {"spherical": None, "diag": c.shape[-1], "full": c.shape[-1], "tied": c.shape[-1]}[self.covariance_type]

    @property
    def covars_(self) -> np.ndarray:
        """The covariances as full matrices ``(n_components, D, D)`` (as hmmlearn returns them)."""
        d = self.n_features if self.n_features is not None else (self._covar_dim(self._covars) or 1)
        return _fill_covars(self._covars, self.covariance_type, self.n_components, d)

    @covars_.setter
    def covars_(self, v) -> None:
        c = np.array(v, dtype=np.float64, copy=True)
        k, ct = self.n_components, self.covariance_type
        if ct == "spherical" and c.ndim == 2 and c.shape[0] == k and c.size:
            # hmmlearn's internal spherical layout (each state's variance tiled over the features)
            if not np.all(c == c[:, :1]):
                raise ShapeError(f"covars_ for covariance_type='spherical' must have shape (n_components,) (or "
                                 f"(n_components, n_features) with one value per row), got {c.shape} with rows "
                                 f"that differ")
            c = c[:, 0].copy()
        want = {"spherical": "(n_components,)", "diag": "(n_components, n_features)",
                "full": "(n_components, n_features, n_features)", "tied": "(n_features, n_features)"}[ct]
        ok = {"spherical": c.ndim == 1 and c.shape[0] == k, "diag": c.ndim == 2 and c.shape[0] == k,
              "full": c.ndim == 3 and c.shape[0] == k and c.shape[1] == c.shape[2],
              "tied": c.ndim == 2 and c.shape[0] == c.shape[1]}[ct]
        if not ok:
            raise ShapeError(f"covars_ for covariance_type={ct!r} must have shape {want}, got {c.shape}")
        if not np.all(np.isfinite(c)):
            raise ArgumentError("covars_ contains NaN or infinity")
        if ct in ("spherical", "diag"):
            if (c <= 0).any():
                raise ArgumentError(f"covars_ must be positive for covariance_type={ct!r}")
        else:
            mats = c if ct == "full" else c[None]
            for i, m in enumerate(mats):
                if not np.allclose(m, m.T) or np.any(np.linalg.eigvalsh(m) <= 0):
                    raise ArgumentError(f"covars_{'[' + str(i) + ']' if ct == 'full' else ''} must be symmetric, positive-definite")
        # the dimension against means_ is checked when used (as hmmlearn), so either may be set first
        self._covars = c

    @property
    def _covars_(self) -> np.ndarray:
        """hmmlearn's internal layout: ``spherical`` as ``(n_components, n_features)``
        (each variance tiled), otherwise the shape of the covariance type."""
        if self.covariance_type == "spherical" and self.n_features is not None:
            return np.tile(self._covars[:, None], (1, self.n_features))
        return self._covars

    @_covars_.setter
    def _covars_(self, v) -> None:
        self.covars_ = v

    def _get_n_fit_scalars_per_param(self) -> dict:
        nc, nf = self.n_components, self.n_features
        if nf is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet: set means_ or call fit")
        return {"s": nc - 1, "t": nc * (nc - 1), "m": nc * nf,
                "c": {"spherical": nc, "diag": nc * nf, "full": nc * nf * (nf + 1) // 2,
                      "tied": nf * (nf + 1) // 2}[self.covariance_type]}

    def _check(self) -> None:
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ArgumentError(f"covariance_type must be one of {sorted(COVARIANCE_TYPES)}, got {self.covariance_type!r}")
        if not hasattr(self, "_means"):
            raise NotFittedError("means_ is not set: set it or call fit")
        m = self._means
        if m.ndim != 2 or m.shape[0] != self.n_components:
            raise ShapeError(f"means_ must have shape (n_components, n_features) = ({self.n_components}, D), got {m.shape}")
        if not np.all(np.isfinite(m)):
            raise ArgumentError("means_ contains NaN or infinity")
        if not hasattr(self, "_covars"):
            raise NotFittedError("covars_ is not set: set it or call fit")
        if self._covar_dim(self._covars) not in (None, self.n_features):
            raise ShapeError(f"covars_ has dimension {self._covar_dim(self._covars)} but means_ has {self.n_features}")

    def _validate_X(self, X) -> np.ndarray:
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ArgumentError(f"covariance_type must be one of {sorted(COVARIANCE_TYPES)}, got {self.covariance_type!r}")
        X = _check_X(X)
        if self.n_features is not None and X.shape[1] != self.n_features:
            raise ShapeError(f"X has {X.shape[1]} features but the model has n_features={self.n_features}")
        return X

    def _diag_vars(self) -> np.ndarray:
        if self.covariance_type == "spherical":
            return np.repeat(self._covars[:, None], self.n_features, axis=1)
        return self._covars

    # ------------------------------------------------------------ emissions
    def _log_emissions(self, X: np.ndarray) -> np.ndarray:
        d = X.shape[1]
        if self.covariance_type in ("diag", "spherical"):
            var = self._diag_vars()
            prec = 1.0 / var
            mp = self._means * prec
            const = -0.5 * (d * _LOG2PI + np.log(var).sum(1) + (self._means * mp).sum(1))
            return const - 0.5 * _mm(X * X, prec, tb=True) + _mm(X, mp, tb=True)
        covs = self._covars if self.covariance_type == "full" else np.tile(self._covars, (self.n_components, 1, 1))
        out = np.empty((len(X), self.n_components))
        for c in range(self.n_components):
            try:
                chol = scipy.linalg.cholesky(covs[c], lower=True)
            except np.linalg.LinAlgError:
                chol = scipy.linalg.cholesky(covs[c] + self.min_covar * np.eye(d), lower=True)
            sol = scipy.linalg.solve_triangular(chol, (X - self._means[c]).T, lower=True)
            out[:, c] = -0.5 * ((sol * sol).sum(0) + d * _LOG2PI) - np.log(np.diagonal(chol)).sum()
        return out

    def _emission_stats(self, stats, X, post) -> None:
        if "m" in self.params or "c" in self.params:
            stats["obs"] = _mm(post, X, ta=True)
        if "c" in self.params:
            if self.covariance_type in ("spherical", "diag"):
                stats["obs**2"] = _mm(post, X * X, ta=True)
            else:
                stats["obs*obs.T"] = np.einsum("ij,ik,il->jkl", post, X, X, optimize=True)

    def _mstep(self, stats) -> None:
        super()._mstep(stats)
        mp, mw = self.means_prior, self.means_weight
        denom = stats["post"][:, None]
        if "m" in self.params:
            self._means = (mw * mp + stats["obs"]) / (mw + denom)
        if "c" in self.params:
            cp, cw = self.covars_prior, self.covars_weight
            meandiff = self._means - mp
            if self.covariance_type in ("spherical", "diag"):
                c_n = mw * meandiff**2 + stats["obs**2"] - 2 * self._means * stats["obs"] + self._means**2 * denom
                c_d = max(cw - 1, 0) + denom
                cv = (cp + c_n) / np.maximum(c_d, 1e-5)
                self._covars = cv.mean(1) if self.covariance_type == "spherical" else cv
            else:
                d = self.n_features
                obsmean = stats["obs"][:, :, None] * self._means[:, None, :]
                c_n = (mw * meandiff[:, :, None] * meandiff[:, None, :] + stats["obs*obs.T"] - obsmean
                       - obsmean.transpose(0, 2, 1) + self._means[:, :, None] * self._means[:, None, :] * stats["post"][:, None, None])
                cvw = max(cw - d, 0)
                if self.covariance_type == "tied":
                    self._covars = (cp + c_n.sum(0)) / (cvw + stats["post"].sum())
                else:
                    self._covars = (cp + c_n) / (cvw + stats["post"][:, None, None])

    def _init(self, X, ls) -> None:
        super()._init(X, ls)
        d = X.shape[1]
        if self._needs_init("m", "means_"):
            from sklearn import cluster

            km = cluster.KMeans(n_clusters=self.n_components, random_state=self.random_state, n_init=10)
            km.fit(X)
            if hasattr(self, "_covars") and self._covar_dim(self._covars) not in (None, d):
                del self._covars
            self._means = km.cluster_centers_.astype(np.float64)
        if self._needs_init("c", "covars_"):
            cv = np.atleast_2d(np.cov(X.T)) + self.min_covar * np.eye(d)
            k = self.n_components
            self._covars = {"spherical": np.full(k, cv.mean()), "diag": np.tile(np.diag(cv), (k, 1)),
                            "tied": cv, "full": np.tile(cv, (k, 1, 1))}[self.covariance_type]

    def _generate_sample_from_state(self, state, rs):
        return rs.multivariate_normal(self._means[state], self.covars_[state])

    # ------------------------------------------------------------ the gradient-fit parameterisation
    def _emission_tensors(self):
        """The parameters the gradient fit optimises: the means, and for
        ``diag`` / ``spherical`` the log-variances; for ``full`` / ``tied``
        the Cholesky factor ``U`` of each precision matrix
        (``inv(covars) = U U^T``, ``U`` lower-triangular with a positive
        diagonal): its strictly lower part free and its diagonal as logs,
        so every step gives a symmetric positive-definite covariance and the
        log-density needs only products (``-0.5 ||U^T (x - mu)||^2 +
        sum log diag U``), no solve."""
        em = {"means": _t(self._means).requires_grad_("m" in self.params)}
        if self.covariance_type in ("diag", "spherical"):
            em["log_var"] = _t(np.log(self._covars)).requires_grad_("c" in self.params)
            return em
        covs = self._covars if self.covariance_type == "full" else self._covars[None]
        chols = []
        for i, c in enumerate(covs):
            try:
                chols.append(np.linalg.cholesky(np.linalg.inv(c)))
            except np.linalg.LinAlgError:
                raise ArgumentError(f"covars_{'[' + str(i) + ']' if self.covariance_type == 'full' else ''} is not "
                                    f"positive-definite; the gradient fit cannot start from it") from None
        u = np.array(chols)
        if self.covariance_type == "tied":
            u = u[0]
        d = u.shape[-1]
        self._em_masks = (_t(np.tril(np.ones((d, d)), -1)), _t(np.eye(d)))
        em["prec_chol_lower"] = _t(np.tril(u, -1)).requires_grad_("c" in self.params)
        em["prec_chol_log_diag"] = _t(np.log(np.diagonal(u, axis1=-2, axis2=-1))).requires_grad_("c" in self.params)
        return em

    def _obs_tensor(self, X):
        return _t(X)

    def _prec_chol(self, em):
        lower, eye = self._em_masks
        return em["prec_chol_lower"] * lower + em["prec_chol_log_diag"].exp().unsqueeze(-1) * eye

    def _log_emissions_tensor(self, Xt, em):
        import rbe

        d = Xt.shape[1]
        if self.covariance_type in ("full", "tied"):
            u = self._prec_chol(em)  # (K, D, D) or (D, D)
            diff = Xt.unsqueeze(0) - em["means"].unsqueeze(1)  # (K, N, D)
            y = rbe.matmul(diff, u)  # rows (U^T (x - mu))^T
            logdet = em["prec_chol_log_diag"].sum(-1)  # (K,) or scalar
            quad = (y * y).sum(-1)  # (K, N)
            if self.covariance_type == "full":
                logdet = logdet.unsqueeze(1)
            return (logdet - 0.5 * quad - float(0.5 * d * _LOG2PI)).t()
        lv = em["log_var"]
        if self.covariance_type == "spherical":
            lv = lv.unsqueeze(1).expand(self.n_components, d)
        prec = rbe.exp(-lv)
        mp = em["means"] * prec
        const = (lv.sum(1) + (em["means"] * mp).sum(1) + float(d * _LOG2PI)) * -0.5
        return const - 0.5 * rbe.matmul(Xt * Xt, prec.t()) + rbe.matmul(Xt, mp.t())

    def _set_emission_tensors(self, em) -> None:
        import rbe

        self._means = em["means"].detach().numpy().copy()
        if self.covariance_type in ("diag", "spherical"):
            self._covars = np.exp(em["log_var"].detach().numpy())
            return
        with rbe.no_grad():
            u = self._prec_chol(em).numpy()
        del self._em_masks
        # covariance = inv(U U^T) = inv(U)^T inv(U), symmetric positive-definite by construction
        eye = np.eye(u.shape[-1])
        inv_u = np.array([scipy.linalg.solve_triangular(m, eye, lower=True) for m in (u if u.ndim == 3 else u[None])])
        cov = np.einsum("kji,kjl->kil", inv_u, inv_u)
        cov = 0.5 * (cov + cov.transpose(0, 2, 1))
        self._covars = cov if self.covariance_type == "full" else cov[0]


class CategoricalHMM(_BaseHMM):
    """Hidden Markov model with categorical emissions, hmmlearn's
    ``CategoricalHMM``: ``X`` holds integer symbols ``(n_samples, 1)``;
    ``emissionprob_`` ``(n_components, n_features)`` rows sum to 1."""

    def __init__(self, n_components=1, startprob_prior=1.0, transmat_prior=1.0, *, emissionprob_prior=1.0,
                 n_features=None, algorithm="viterbi", random_state=None, n_iter=10, tol=1e-2, verbose=False,
                 params="ste", init_params="ste", implementation="log"):
        super().__init__(n_components, startprob_prior, transmat_prior, algorithm, random_state, n_iter, tol, verbose,
                         params, init_params, implementation)
        self.emissionprob_prior = emissionprob_prior
        self.n_features = n_features

    @property
    def emissionprob_(self) -> np.ndarray:
        return self._emissionprob

    @emissionprob_.setter
    def emissionprob_(self, v) -> None:
        # validated when used, as hmmlearn (which also makes a single row 2-D)
        self._emissionprob = np.atleast_2d(_as_float_array(v, "emissionprob_"))

    def _nf(self) -> Optional[int]:
        """The number of symbols: ``n_features``, or the columns of a hand-set ``emissionprob_``."""
        if self.n_features is not None:
            return self.n_features
        return self._emissionprob.shape[1] if hasattr(self, "_emissionprob") else None

    def _validate_X(self, X) -> np.ndarray:
        X = _check_X(X, integer=True)
        if X.shape[1] != 1:
            raise ShapeError(f"X must have shape (n_samples, 1) for a CategoricalHMM, got {X.shape}")
        if (X < 0).any():
            raise ArgumentError(f"X holds negative symbol {int(X.min())}; symbols are 0..n_features-1")
        nf = self._nf()
        if nf is not None and X.size and int(X.max()) >= nf:
            raise ArgumentError(f"X holds symbol {int(X.max())} but n_features={nf} (symbols 0..{nf - 1})")
        return X

    def _check(self) -> None:
        if not hasattr(self, "_emissionprob"):
            raise NotFittedError("emissionprob_ is not set: set it or call fit")
        _validate_probs_in_place(self._emissionprob, "emissionprob_", (self.n_components, self._nf()))

    def _get_n_fit_scalars_per_param(self) -> dict:
        nc, nf = self.n_components, self._nf()
        if nf is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet: set emissionprob_ or call fit")
        return {"s": nc - 1, "t": nc * (nc - 1), "e": nc * (nf - 1)}

    def _init(self, X, ls) -> None:
        if self.n_features is None:
            keep_e = hasattr(self, "_emissionprob") and "e" not in self.init_params
            self.n_features = self._nf() if keep_e else int(X.max()) + 1
        super()._init(X, ls)
        # hmmlearn replaces random_state by its RandomState here (so a second fit continues its stream)
        self.random_state = self._rng()
        if self._needs_init("e", "emissionprob_"):
            e = self.random_state.rand(self.n_components, self.n_features)
            self._emissionprob = e / e.sum(1, keepdims=True)

    def _log_emissions(self, X: np.ndarray) -> np.ndarray:
        return _log(self._emissionprob).T[X[:, 0]]

    def _emission_stats(self, stats, X, post) -> None:
        if "e" in self.params:
            onehot = np.zeros((len(X), self.n_features))
            onehot[np.arange(len(X)), X[:, 0]] = 1
            stats["obs"] = post.T @ onehot

    def _mstep(self, stats) -> None:
        super()._mstep(stats)
        if "e" in self.params:
            self._emissionprob = _normalize(np.maximum(self.emissionprob_prior - 1 + stats["obs"], 0), axis=1)

    def _generate_sample_from_state(self, state, rs):
        cdf = np.cumsum(self._emissionprob[state, :])
        return [(cdf > rs.rand()).argmax()]

    def _emission_tensors(self):
        fixed = np.where(self._emissionprob == 0, -np.inf, 0.0)
        self._em_fixed = _t(fixed)
        return {"logits": _t(np.where(self._emissionprob > 0, _log(np.maximum(self._emissionprob, 1e-300)), 0.0)).requires_grad_("e" in self.params)}

    def _obs_tensor(self, X):
        onehot = np.zeros((len(X), self.n_features))
        onehot[np.arange(len(X)), X[:, 0]] = 1
        return _t(onehot)

    def _log_emissions_tensor(self, Xt, em):
        import rbe

        logp = rbe.log_softmax(em["logits"] + self._em_fixed, dim=1)  # (K, M)
        # one-hot rows times log-probabilities (a matrix product; -inf entries are masked to 0 first)
        finite = rbe.where(rbe.isfinite(logp), logp, rbe.zeros_like(logp))
        out = rbe.matmul(Xt, finite.t())
        impossible = rbe.matmul(Xt, (~rbe.isfinite(logp)).to(rbe.float64).t())
        return rbe.where(impossible > 0, rbe.full_like(out, float("-inf")), out)

    def _set_emission_tensors(self, em) -> None:
        import rbe

        with rbe.no_grad():
            self._emissionprob = np.exp(rbe.log_softmax(em["logits"] + self._em_fixed, dim=1).numpy())
        del self._em_fixed

