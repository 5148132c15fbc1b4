"""Training of physics-informed networks: :class:`Trainer` (Adam, then
L-BFGS with a strong-Wolfe line search), :class:`DynamicWeightedLoss`
(gradient-norm balancing of the loss terms), :class:`AdaptiveResidualSampler`
(residual-based refinement of the collocation points) and
:func:`make_scheduler` (learning-rate schedules by name).

The loss is ``sum_t w_t L_t`` over the terms ``pde`` (mean squared residual
at the collocation points), ``bc`` (mean squared misfit of the Dirichlet
data), ``ic`` (of the initial data, time-dependent problems) and ``data``
(of observations, when given). The weights are fixed (``weights``), with the
PDE weight multiplied by ``1 / source_scale^2`` when ``pde_scaling="source"``
(the residual of ``-lap u = f`` is of the size of ``f``), or balanced during
the Adam phase by a :class:`DynamicWeightedLoss`.
"""
from __future__ import annotations

import math
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .. import _core
from .._core import Tensor
from ..autograd import grad as _grad
from ..errors import ArgumentError, ShapeError
from ..nn.utils import clip_grad_norm_
from ..optim import LBFGS, Adam
from ..optim import lr_scheduler as _sched
from ..utils.early_stopping import EarlyStopping
from .layers import ChebyKANNet
from .errors import NonFiniteLossError
from .problems import Problem, get_problem

__all__ = ["Trainer", "TrainingResult", "DynamicWeightedLoss", "AdaptiveResidualSampler", "make_scheduler", "SCHEDULERS",
           "NonFiniteLossError", "TERMS"]

#: The loss terms, in order.
TERMS = ("pde", "bc", "ic", "data")
#: Scheduler names of :func:`make_scheduler`.
SCHEDULERS = ("none", "exponential", "cosine", "plateau", "multistep")


def make_scheduler(name: Optional[str], optimizer, total_steps: int = 1000, **params):
    """A learning-rate scheduler by name:

    - ``"exponential"``: ``ExponentialLR(gamma=0.999)``;
    - ``"cosine"``: ``CosineAnnealingLR(T_max=total_steps, eta_min=0)``;
    - ``"plateau"``: ``ReduceLROnPlateau(factor=0.5, patience=100)`` (stepped with the loss);
    - ``"multistep"``: ``MultiStepLR(milestones=[total_steps/2, 3 total_steps/4], gamma=0.1)``;
    - ``"none"`` or ``None``: no scheduler (returns ``None``).

    ``params`` override the defaults (they are the classes' keyword arguments).
    """
    if name is None or name == "none":
        if params:
            raise ArgumentError(f"make_scheduler: parameters {sorted(params)} given without a scheduler")
        return None
    if name == "exponential":
        return _sched.ExponentialLR(optimizer, **{"gamma": 0.999, **params})
    if name == "cosine":
        return _sched.CosineAnnealingLR(optimizer, **{"T_max": max(1, int(total_steps)), "eta_min": 0.0, **params})
    if name == "plateau":
        return _sched.ReduceLROnPlateau(optimizer, **{"factor": 0.5, "patience": 100, **params})
    if name == "multistep":
        ms = [max(1, total_steps // 2), max(2, (3 * total_steps) // 4)]
        return _sched.MultiStepLR(optimizer, **{"milestones": ms, "gamma": 0.1, **params})
    raise ArgumentError(f"make_scheduler: name must be one of {SCHEDULERS}, got {name!r}")


class DynamicWeightedLoss:
    """Gradient-norm balancing of loss terms (the learning-rate annealing of
    Wang, Teng and Perdikaris, 2021, with the L2 norm).

    Every ``update_every`` calls of :meth:`update` after ``warmup`` of them,
    with ``g_t = ||grad_theta L_t||_2`` for each term, the target weight is
    ``hat w_t = w_ref g_ref / g_t`` (``ref`` is the reference term, ``"pde"``,
    whose weight stays fixed) and ``w_t <- (1 - alpha) w_t + alpha hat w_t``,
    clipped to ``[min_weight, max_weight]``. The start is conservative: the
    weights begin at ``initial`` (1 by default), ``alpha`` is small (0.1) and
    nothing moves before ``warmup`` updates.
    """

    def __init__(self, terms: Sequence[str], initial: Optional[Dict[str, float]] = None, reference: str = "pde",
                 alpha: float = 0.1, update_every: int = 10, warmup: int = 0, min_weight: float = 1e-3,
                 max_weight: float = 1e3):
        terms = list(terms)
        if reference not in terms:
            raise ArgumentError(f"DynamicWeightedLoss: reference {reference!r} is not one of the terms {terms}")
        if not 0.0 < alpha <= 1.0:
            raise ArgumentError(f"DynamicWeightedLoss: alpha must be in (0, 1], got {alpha}")
        if int(update_every) < 1 or int(warmup) < 0:
            raise ArgumentError(f"DynamicWeightedLoss: update_every must be >= 1 and warmup >= 0, got {update_every}, {warmup}")
        if not 0.0 < min_weight <= max_weight:
            raise ArgumentError(f"DynamicWeightedLoss: need 0 < min_weight <= max_weight, got {min_weight}, {max_weight}")
        initial = dict(initial or {})
        unknown = set(initial) - set(terms)
        if unknown:
            raise ArgumentError(f"DynamicWeightedLoss: initial names unknown terms {sorted(unknown)}")
        self.terms = terms
        self.reference = reference
        self.alpha = float(alpha)
        self.update_every = int(update_every)
        self.warmup = int(warmup)
        self.min_weight, self.max_weight = float(min_weight), float(max_weight)
        self.weights = {t: float(initial.get(t, 1.0)) for t in terms}
        self.calls = 0
        self.last_grad_norms: Dict[str, float] = {}

    def due(self) -> bool:
        """Whether the next :meth:`update` call will change the weights."""
        c = self.calls
        return c >= self.warmup and (c - self.warmup) % self.update_every == 0

    def update_from_norms(self, norms: Dict[str, float]) -> Dict[str, float]:
        """The update rule given the gradient norms of the terms (no call counting)."""
        gref = norms[self.reference]
        for t in self.terms:
            if t == self.reference:
                continue
            g = norms[t]
            if not (math.isfinite(g) and g > 0.0 and math.isfinite(gref)):
                continue
            target = self.weights[self.reference] * gref / g
            w = (1.0 - self.alpha) * self.weights[t] + self.alpha * target
            self.weights[t] = min(self.max_weight, max(self.min_weight, w))
        self.last_grad_norms = dict(norms)
        return dict(self.weights)

    def update(self, losses: Dict[str, Tensor], params: List[Tensor]) -> Dict[str, float]:
        """Count a step; when due, compute the terms' gradient norms (the graph
        of ``losses`` is retained) and update the weights. Returns the weights."""
        due = self.due()
        self.calls += 1
        if not due:
            return dict(self.weights)
        norms = {}
        for t in self.terms:
            gs = _grad(losses[t], params, retain_graph=True, allow_unused=True)
            sq = sum(float((g * g).sum()) for g in gs if g is not None)
            norms[t] = math.sqrt(sq)
        return self.update_from_norms(norms)

    def __call__(self, losses: Dict[str, Tensor]) -> Tensor:
        total = None
        for t in self.terms:
            v = losses[t] * self.weights[t]
            total = v if total is None else total + v
        return total


class AdaptiveResidualSampler:
    """Residual-based refinement of the collocation points (RAR).

    Every ``every`` steps (a refinement cycle), ``candidates`` new points are
    drawn in the box and their residuals ``|r|`` computed; those at or above
    the ``percentile``-th percentile of ``|r|`` over the candidates are
    eligible, and the largest ``ceil(refinement_ratio * n)`` of them (``n``
    the current number of points) are added, as long as the total stays at
    most ``max_points`` (the cap). ``cycles`` bounds the number of refinements.
    """

    def __init__(self, every: int = 500, refinement_ratio: float = 0.1, percentile: float = 90.0,
                 candidates: int = 4096, max_points: int = 8192, cycles: Optional[int] = None):
        if int(every) < 1:
            raise ArgumentError(f"AdaptiveResidualSampler: every must be >= 1, got {every}")
        if not 0.0 < refinement_ratio <= 1.0:
            raise ArgumentError(f"AdaptiveResidualSampler: refinement_ratio must be in (0, 1], got {refinement_ratio}")
        if not 0.0 <= percentile < 100.0:
            raise ArgumentError(f"AdaptiveResidualSampler: percentile must be in [0, 100), got {percentile}")
        if int(candidates) < 1 or int(max_points) < 1:
            raise ArgumentError(f"AdaptiveResidualSampler: candidates and max_points must be >= 1, got {candidates}, {max_points}")
        self.every = int(every)
        self.refinement_ratio = float(refinement_ratio)
        self.percentile = float(percentile)
        self.candidates = int(candidates)
        self.max_points = int(max_points)
        self.cycles = cycles
        self.done = 0

    def due(self, step: int) -> bool:
        """Whether step ``step`` (counted from 1) ends a refinement cycle."""
        if self.cycles is not None and self.done >= self.cycles:
            return False
        return step > 0 and step % self.every == 0

    def select(self, points: np.ndarray, candidates: np.ndarray, residual_abs: np.ndarray) -> np.ndarray:
        """The refined set: ``points`` plus the chosen ``candidates`` (rule above)."""
        residual_abs = np.abs(np.asarray(residual_abs, dtype=np.float64).reshape(-1))
        if residual_abs.shape[0] != candidates.shape[0]:
            raise ShapeError(f"AdaptiveResidualSampler: {residual_abs.shape[0]} residuals for {candidates.shape[0]} candidates")
        room = self.max_points - points.shape[0]
        want = min(int(math.ceil(self.refinement_ratio * points.shape[0])), max(room, 0))
        if want <= 0:
            return points
        finite = np.isfinite(residual_abs)
        if not finite.any():
            return points
        thresh = np.percentile(residual_abs[finite], self.percentile)
        eligible = np.flatnonzero(finite & (residual_abs >= thresh))
        order = eligible[np.argsort(-residual_abs[eligible], kind="stable")]
        return np.concatenate([points, candidates[order[:want]]], axis=0)

    def refine(self, points: np.ndarray, problem: Problem, residual_fn: Callable[[np.ndarray], np.ndarray],
               rng: np.random.Generator) -> np.ndarray:
        """Draw candidates in ``problem``'s box, evaluate ``residual_fn`` on them and :meth:`select`."""
        cand = problem.sample_interior(self.candidates, rng)
        self.done += 1
        return self.select(points, cand, residual_fn(cand))


class TrainingResult(dict):
    """What :meth:`Trainer.train` returns: ``error`` (relative L2 on the grid),
    ``time`` (seconds), ``steps_adam``, ``steps_lbfgs``, ``stopped`` (why it
    ended: ``"done"``, ``"early_stopping"``, ``"time_limit"`` or
    ``"non_finite"``), ``adam_stopped`` (why the Adam phase ended), ``message``, ``loss`` (the final total). Keys are
    attributes too."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k) from None


def _t(a: np.ndarray, dtype) -> Tensor:
    t = _core.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
    return t if t.dtype == dtype else t.to(dtype)


class Trainer:
    """Train a PINN on a :class:`~rbe.pinn.problems.Problem`.

    Args:
        problem: a Problem or a built-in name (``"poisson2d"``, ...).
        model: the network (default: float64 ``ChebyKANNet([d, 16, 16, 1], degree=5)`` on the problem's box).
        n_interior, n_boundary, n_initial: numbers of collocation, boundary and initial points.
        sampler: how collocation points are drawn (``"uniform"``, ``"sobol"``, ``"lhs"``).
        adam_steps, lr: the Adam phase; ``scheduler`` (a :data:`SCHEDULERS` name) with ``scheduler_params``.
        lbfgs_steps, lbfgs_max_iter, lbfgs_history: the L-BFGS phase (``lbfgs_steps`` calls of
            ``LBFGS.step``, each up to ``lbfgs_max_iter`` iterations, strong-Wolfe line search).
        clip: ``clip_grad_norm_`` bound before each Adam step (``None``: no clipping). The
            L-BFGS phase is deliberately not clipped: its strong-Wolfe line search needs the
            true gradient of the loss it evaluates, and a clipped gradient would make the
            directional derivatives inconsistent with the loss values (the Wolfe conditions
            would then test a different function and the search could fail or stall).
        weights: fixed weights of the terms (default 1 each).
        pde_scaling: ``"source"`` (PDE weight times ``1 / problem.source_scale^2``) or ``"none"``.
        dynamic: a :class:`DynamicWeightedLoss` (or ``True`` for the default one) balancing the
            weights during the Adam phase (the L-BFGS phase keeps the last weights).
        resampler: an :class:`AdaptiveResidualSampler` run in the Adam phase.
        batch_size: minibatches of collocation points through ``rbe.utils.data.DataLoader``
            (shuffled); ``None`` for the full batch.
        patience, min_delta: early stopping on the total loss (steps of Adam, outer steps of
            L-BFGS), restoring the best weights; ``patience=None`` turns it off.
        data: ``(x, u)`` NumPy observations for the ``data`` term.
        max_time: a wall-clock budget in seconds for the whole training.
        eval_every: relative L2 error on the grid every this many Adam steps (and after each
            L-BFGS step) into the history; 0 for only at the end.
        progress: a tqdm progress bar.
        figures: a folder: at the end of :meth:`train`, save the figures there (as
            :meth:`save_figures`; the paths in ``figure_paths``). Needs matplotlib (the ``plot``
            extra): without it the constructor raises
            :class:`~rbe.pinn.errors.MissingExtraError` (an ``ImportError``), before any training.
        seed: seeds the points (NumPy) and the default model (``rbe.manual_seed``).
    """

    def __init__(self, problem, model=None, *, n_interior: int = 2000, n_boundary: int = 400, n_initial: int = 200,
                 sampler: str = "sobol", adam_steps: int = 2000, lr: float = 1e-2, scheduler: Optional[str] = "exponential",
                 scheduler_params: Optional[dict] = None, lbfgs_steps: int = 20, lbfgs_max_iter: int = 50,
                 lbfgs_history: int = 50, clip: Optional[float] = 1.0, weights: Optional[Dict[str, float]] = None,
                 pde_scaling: str = "source", dynamic=None, resampler: Optional[AdaptiveResidualSampler] = None,
                 batch_size: Optional[int] = None, patience: Optional[int] = None, min_delta: float = 0.0, data=None,
                 max_time: Optional[float] = None, eval_every: int = 0, progress: bool = False, seed: int = 0,
                 dtype=None, degree: int = 5, widths: Optional[Sequence[int]] = None, method: str = "auto",
                 figures: Optional[str] = None):
        self.problem = get_problem(problem)
        self.problem.check()
        p = self.problem
        if pde_scaling not in ("source", "none"):
            raise ArgumentError(f"Trainer: pde_scaling must be 'source' or 'none', got {pde_scaling!r}")
        for name, v in (("adam_steps", adam_steps), ("lbfgs_steps", lbfgs_steps)):
            if int(v) < 0:
                raise ArgumentError(f"Trainer: {name} must be >= 0, got {v}")
        if int(lbfgs_max_iter) < 1 or int(n_interior) < 1 or int(n_boundary) < 1:
            raise ArgumentError("Trainer: lbfgs_max_iter, n_interior and n_boundary must be >= 1")
        if clip is not None and not clip > 0:
            raise ArgumentError(f"Trainer: clip must be > 0 or None, got {clip}")
        if batch_size is not None and int(batch_size) < 1:
            raise ArgumentError(f"Trainer: batch_size must be >= 1 or None, got {batch_size}")
        if patience is not None and int(patience) < 0:
            raise ArgumentError(f"Trainer: patience must be >= 0 or None, got {patience}")
        if figures is not None:
            from .plots import require_matplotlib

            require_matplotlib("Trainer(figures=...)")
        self.figures = None if figures is None else os.fspath(figures)
        self.figure_paths: List[str] = []
        if dtype is None:  # the model's, else float64
            mp = list(model.parameters()) if model is not None else []
            dtype = mp[0].dtype if mp else _core.float64
        self.dtype = dtype
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        if model is None:
            from .. import manual_seed

            manual_seed(self.seed)
            w = list(widths) if widths is not None else [p.dim, 16, 16, 1]
            model = ChebyKANNet(w, degree=degree, box=p.box, dtype=self.dtype)
        self.model = model
        self.params = [q for q in model.parameters() if q.requires_grad]
        if not self.params:
            raise ArgumentError("Trainer: the model has no trainable parameters")
        self.method = method
        # the terms and their data
        self.terms = ["pde", "bc"] + (["ic"] if p.time_dependent else []) + (["data"] if data is not None else [])
        base = {t: 1.0 for t in self.terms}
        for k, v in (weights or {}).items():
            if k not in self.terms:
                raise ArgumentError(f"Trainer: weights names {k!r}, not one of this problem's terms {self.terms}")
            if not (math.isfinite(float(v)) and float(v) >= 0):
                raise ArgumentError(f"Trainer: weight of {k!r} must be finite and >= 0, got {v}")
            base[k] = float(v)
        if pde_scaling == "source":
            base["pde"] /= p.source_scale ** 2
        self.weights = base
        if dynamic is True:
            dynamic = DynamicWeightedLoss(self.terms, initial=base)
        self.dynamic = dynamic
        if dynamic is not None:
            if sorted(dynamic.terms) != sorted(self.terms):
                raise ArgumentError(f"Trainer: the DynamicWeightedLoss terms {dynamic.terms} differ from {self.terms}")
            self.weights = dict(dynamic.weights)
        self.sampler = sampler
        self.x_int = p.sample_interior(n_interior, self.rng, sampler)
        self.x_bc, self.u_bc = p.sample_boundary(n_boundary, self.rng)
        self.x_ic = self.u_ic = None
        if p.time_dependent:
            self.x_ic, self.u_ic = p.sample_initial(n_initial, self.rng)
        self.data = None
        if data is not None:
            xd, ud = (np.asarray(a, dtype=np.float64) for a in data)
            if xd.ndim != 2 or xd.shape[1] != p.dim or ud.reshape(-1).shape[0] != xd.shape[0]:
                raise ShapeError(f"Trainer: data must be (x (N, {p.dim}), u (N,)), got shapes {xd.shape}, {ud.shape}")
            self.data = (xd, ud.reshape(-1))
        self.resampler = resampler
        self.batch_size = None if batch_size is None else int(batch_size)
        self.adam_steps, self.lr = int(adam_steps), float(lr)
        self.scheduler_name, self.scheduler_params = scheduler, dict(scheduler_params or {})
        self.lbfgs_steps, self.lbfgs_max_iter, self.lbfgs_history = int(lbfgs_steps), int(lbfgs_max_iter), int(lbfgs_history)
        self.clip = clip
        self.patience = None if patience is None else int(patience)
        self.min_delta = float(min_delta)
        self.max_time = max_time
        self.eval_every = int(eval_every)
        self.progress = bool(progress)
        self.history: Dict[str, list] = {k: [] for k in ("step", "phase", "loss", "lr", "grad_norm", "n_points", "time", "error")}
        for t in self.terms:
            self.history[f"loss_{t}"] = []
            self.history[f"weight_{t}"] = []
        self.result: Optional[TrainingResult] = None
        self._tensors_cache: dict = {}

    # ------------------------------------------------------------------ losses
    def _cached(self, key: str, a: np.ndarray) -> Tensor:
        hit = self._tensors_cache.get(key)
        if hit is None or hit[0] is not a:
            hit = (a, _t(a, self.dtype))
            self._tensors_cache[key] = hit
        return hit[1]

    def _mse_fit(self, x: Tensor, u: Tensor) -> Tensor:
        out = self.model(x)
        if out.ndim == 2:
            out = out[:, 0]
        e = out - u
        return (e * e).mean()

    def losses(self, x_int: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """The loss terms at the current parameters (collocation points ``x_int``, default all)."""
        if x_int is None:
            x_int = self._cached("int", self.x_int)
        r = self.problem.pde_residual(self.model, x_int, self.method)
        out = {"pde": (r * r).mean(), "bc": self._mse_fit(self._cached("xbc", self.x_bc), self._cached("ubc", self.u_bc))}
        if "ic" in self.terms:
            out["ic"] = self._mse_fit(self._cached("xic", self.x_ic), self._cached("uic", self.u_ic))
        if "data" in self.terms:
            out["data"] = self._mse_fit(self._cached("xd", self.data[0]), self._cached("ud", self.data[1]))
        return out

    def total(self, losses: Dict[str, Tensor]) -> Tensor:
        tot = None
        for t in self.terms:
            v = losses[t] * self.weights[t]
            tot = v if tot is None else tot + v
        return tot

    def residual_abs(self, x: np.ndarray) -> np.ndarray:
        """``|r|`` at NumPy points (for the resampler)."""
        xt = _t(x, self.dtype)
        r = self.problem.pde_residual(self.model, xt, self.method)
        return np.abs(r.detach().to(_core.float64).numpy())

    # ------------------------------------------------------------------ bookkeeping
    def _snapshot(self) -> List[Tensor]:
        return [q.detach().clone() for q in self.params]

    def _restore(self, snap: List[Tensor]) -> None:
        from .._grad import no_grad_ctx

        with no_grad_ctx():
            for q, s in zip(self.params, snap):
                q.copy_(s)

    def _record(self, step: int, phase: str, losses: Dict[str, float], total: float, lr: float, gnorm: float,
                t0: float, error: Optional[float]) -> None:
        h = self.history
        h["step"].append(step)
        h["phase"].append(phase)
        h["loss"].append(total)
        h["lr"].append(lr)
        h["grad_norm"].append(gnorm)
        h["n_points"].append(int(self.x_int.shape[0]))
        h["time"].append(time.perf_counter() - t0)
        h["error"].append(math.nan if error is None else error)
        for t in self.terms:
            h[f"loss_{t}"].append(losses[t])
            h[f"weight_{t}"].append(self.weights[t])

    def error(self) -> float:
        """The relative L2 error on the problem's grid."""
        return self.problem.relative_l2(self.model)

    def _batches(self):
        """An endless iterator of collocation batches (tensors)."""
        from ..utils.data import DataLoader, TensorDataset

        while True:
            if self.batch_size is None or self.batch_size >= self.x_int.shape[0]:
                yield self._cached("int", self.x_int)
                continue
            xs = self.x_int
            ds = TensorDataset(_t(xs, self.dtype))
            from .. import Generator

            g = Generator()
            g.manual_seed(int(self.rng.integers(0, 2**31 - 1)))
            for (xb,) in DataLoader(ds, batch_size=self.batch_size, shuffle=True, generator=g):
                yield xb
                if xs is not self.x_int:  # refined: start a new epoch over the new set
                    break

    # ------------------------------------------------------------------ training
    def train(self) -> TrainingResult:
        """Run the Adam phase then the L-BFGS phase; returns a :class:`TrainingResult`."""
        t0 = time.perf_counter()
        stopped, message = "done", ""
        step = 0
        last_good = self._snapshot()
        last_total = math.nan
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.adam_steps + self.lbfgs_steps, desc=f"pinn {self.problem.name}", leave=False)

        def out_of_time() -> bool:
            return self.max_time is not None and time.perf_counter() - t0 > self.max_time

        # ---------------- Adam
        opt = Adam(self.params, lr=self.lr)
        sched = make_scheduler(self.scheduler_name, opt, self.adam_steps, **self.scheduler_params) if self.adam_steps else None
        stopper = EarlyStopping(self.patience, self.min_delta, restore_best_weights=False) if self.patience is not None else None
        best_snap = last_good
        batches = self._batches()
        for step in range(1, self.adam_steps + 1):
            xb = next(batches)
            opt.zero_grad()
            losses = self.losses(xb)
            if self.dynamic is not None:
                self.weights = self.dynamic.update(losses, self.params)
            total = self.total(losses)
            tv = float(total)
            if not math.isfinite(tv):
                stopped, message = "non_finite", f"the loss became {tv} at Adam step {step}; the last good weights are kept"
                self._restore(last_good)
                break
            last_good = self._snapshot()
            last_total = tv
            total.backward()
            gnorm = float(clip_grad_norm_(self.params, self.clip)) if self.clip is not None else float(
                math.sqrt(sum(float((q.grad * q.grad).sum()) for q in self.params if q.grad is not None)))
            if not math.isfinite(gnorm):
                stopped, message = "non_finite", f"the gradient norm became {gnorm} at Adam step {step}; the last good weights are kept"
                self._restore(last_good)
                break
            lr_now = float(opt.param_groups[0]["lr"])
            opt.step()
            if sched is not None:
                if isinstance(sched, _sched.ReduceLROnPlateau):
                    sched.step(tv)
                else:
                    sched.step()
            err = self.error() if self.eval_every and step % self.eval_every == 0 else None
            self._record(step, "adam", {t: float(losses[t]) for t in self.terms}, tv, lr_now, gnorm, t0, err)
            if bar is not None:
                bar.update(1)
                if step % 50 == 0:
                    bar.set_postfix(loss=f"{tv:.3e}")
            if self.resampler is not None and self.resampler.due(step):
                self.x_int = self.resampler.refine(self.x_int, self.problem, self.residual_abs, self.rng)
            if stopper is not None:
                # tv is the loss of the weights before this step (last_good)
                stop = stopper.step(tv)
                if stopper.best_epoch == stopper.epoch:
                    best_snap = last_good
                if stop:
                    self._restore(best_snap)
                    stopped, message = "early_stopping", f"no improvement over {self.patience} Adam steps; best weights restored"
                    break
            if out_of_time():
                stopped, message = "time_limit", f"the time limit of {self.max_time} s was reached at Adam step {step}"
                break
        steps_adam = len([p for p in self.history["phase"] if p == "adam"])

        # ---------------- L-BFGS (full batch, the last weights)
        steps_lbfgs = 0
        adam_stopped = stopped
        if stopped in ("done", "early_stopping") and self.lbfgs_steps > 0:
            if stopped == "early_stopping" and stopper is not None:
                stopped = "done"
            lbfgs = LBFGS(self.params, lr=1.0, max_iter=self.lbfgs_max_iter, history_size=self.lbfgs_history,
                          tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe")
            xall = self._cached("int", self.x_int)
            stopper = EarlyStopping(self.patience, self.min_delta) if self.patience is not None else None
            best_lb = math.inf
            for k in range(1, self.lbfgs_steps + 1):
                before = self._snapshot()

                def closure():
                    lbfgs.zero_grad()
                    tot = self.total(self.losses(xall))
                    if math.isfinite(float(tot)):
                        tot.backward()
                    return tot

                try:
                    lbfgs.step(closure)
                except (FloatingPointError, RuntimeError, ValueError) as e:  # a failed line search on non-finite values
                    stopped, message = "non_finite", f"L-BFGS step {k} failed ({e}); the last good weights are kept"
                    self._restore(before)
                    break
                losses = self.losses(xall)
                total = self.total(losses)
                tv = float(total)
                if not math.isfinite(tv) or any(not math.isfinite(float(q.detach().abs().max())) for q in self.params):
                    stopped, message = "non_finite", f"the loss became {tv} at L-BFGS step {k}; the last good weights are kept"
                    self._restore(before)
                    break
                steps_lbfgs = k
                last_total = tv
                err = self.error() if self.eval_every else None
                gnorm = math.nan
                self._record(steps_adam + k, "lbfgs", {t: float(losses[t]) for t in self.terms}, tv, 1.0, gnorm, t0, err)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{tv:.3e}")
                if stopper is not None and stopper.step(tv, self.model):
                    message = f"L-BFGS: no improvement over {self.patience} steps; best weights restored"
                    last_total = stopper.best
                    break
                if tv >= best_lb:
                    if tv > best_lb:  # keep the weights of the lower loss
                        self._restore(before)
                        last_total = best_lb
                    break  # converged: the line search no longer lowers the loss
                best_lb = min(best_lb, tv)
                if out_of_time():
                    stopped, message = "time_limit", f"the time limit of {self.max_time} s was reached at L-BFGS step {k}"
                    break
        if bar is not None:
            bar.close()
        elapsed = time.perf_counter() - t0
        err = self.error()
        if stopped == "non_finite":
            import warnings

            warnings.warn(f"rbe.pinn.Trainer: {message}", RuntimeWarning, stacklevel=2)
        self.result = TrainingResult(error=err, time=elapsed, steps_adam=steps_adam, steps_lbfgs=steps_lbfgs, stopped=stopped,
                                     adam_stopped=adam_stopped, message=message, loss=last_total)
        if self.figures is not None:
            self.figure_paths = self.save_figures(self.figures)
        return self.result

    # ------------------------------------------------------------------ figures
    def save_figures(self, outdir: str, prefix: Optional[str] = None) -> List[str]:
        """Save ``<prefix>_solution.png`` (solution, reference, error) and
        ``<prefix>_loss.png`` (every term, the total and the weights) in
        ``outdir``; returns the paths. Without matplotlib (the ``plot`` extra) it raises
        :class:`~rbe.pinn.errors.MissingExtraError` and writes nothing."""
        from .plots import plot_loss, plot_solution, require_matplotlib

        require_matplotlib("Trainer.save_figures")
        os.makedirs(outdir, exist_ok=True)
        prefix = prefix or self.problem.name
        a = os.path.join(outdir, f"{prefix}_solution.png")
        b = os.path.join(outdir, f"{prefix}_loss.png")
        plot_solution(self.problem, self.model, a)
        plot_loss(self.history, self.terms, b)
        return [a, b]
