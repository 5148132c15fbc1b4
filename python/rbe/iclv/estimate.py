"""Maximum (simulated) likelihood estimation and standard errors.

Optimisers (``method=``):

- ``"bfgs"`` (default): ``scipy.optimize.minimize(method="BFGS")`` with the
  exact autodiff gradient;
- ``"lbfgsb"``: L-BFGS-B, the only one of these that honours bounds
  (``Parameters.add(..., lower=, upper=)``);
- ``"trust-exact"``: a trust-region Newton method with the exact autodiff
  Hessian at every iteration (``"trust-constr"`` when there are bounds);
- ``"bhhh"``: Berndt-Hall-Hall-Hausman steps ``(S'S)^{-1} g`` from the
  per-individual scores ``S``, with a backtracking line search.

The objective handed to scipy is ``-LL / N`` (so tolerances do not depend on
the sample size); everything reported is on the scale of ``LL``. A
non-finite log-likelihood (raw thresholds out of order, a non-positive
standard deviation) is an infeasible trial point, never repaired (thresholds
are not reordered): scipy gets a finite value far above every objective value
seen so far with the last finite gradient, so every method rejects the step
(line searches back off, trust regions shrink; ``+inf`` would do for BFGS and
the trust-region methods, but L-BFGS-B's line search stops at the start point
with "success" on it). BHHH halves its step until the log-likelihood is
finite and increases. Success claimed by scipy with the gradient of ``LL / N``
above ``1000 gtol`` (away from bounds) is not believed.

A gradient (or Hessian, or score) that is not finite where the
log-likelihood is finite (the model is not differentiable there: ``sqrt``
of a parameter at 0, ``0 * inf``) stops the estimation with an
:class:`EstimationError` message naming the parameters and the point; the
results keep the best iterate (``converged`` False, a ``ConvergenceWarning``),
as any failed estimation. At the start values it is raised.

Standard errors at the estimates (``hessian=True``), from the exact Hessian
``H`` and the scores ``S`` (``N x K``):

- classical: ``(-H)^{-1}``;
- robust (sandwich, Huber-White, clustered by individual as Apollo's and
  Biogeme's robust errors): ``(-H)^{-1} (S'S) (-H)^{-1}``;
- BHHH: ``(S'S)^{-1}``.

A singular or not negative definite Hessian is a :class:`HessianWarning`
naming the parameters involved (those with weight in the offending
eigenvectors); the classical and robust errors are then NaN.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence, TextIO, Tuple

import numpy as np

from .errors import EstimationError, HessianWarning, SpecificationError
from .results import Results

__all__ = ["estimate", "covariances"]

METHODS = ("bfgs", "lbfgsb", "trust-exact", "trust-constr", "bhhh")


def non_finite_gradient_message(names: Sequence[str], x: np.ndarray, g: np.ndarray, what: str = "gradient") -> str:
    """The message of the :class:`EstimationError` for a finite log-likelihood
    whose gradient (or Hessian row / score) is not finite: names the
    parameters and gives the point."""
    bad = [n for n, v in zip(names, g) if not np.isfinite(v)]
    at = ", ".join(f"{n}={v:.6g}" for n, v in zip(names, x))
    return (
        f"the {what} of the log-likelihood is not finite (NaN or inf) for parameters {bad} where the log-likelihood itself is "
        f"finite, at {at}: the model is not differentiable there (e.g. sqrt or log of a parameter at 0, 0 * inf); "
        f"reparametrise (e.g. exp of a log-parameter) or change the start values"
    )


class _Tracker:
    """Keeps the best (highest finite LL) point seen and prints progress."""

    def __init__(self, model, verbose: bool, stream: TextIO, every: int):
        self.model = model
        self.N = model.data.n_individuals
        self.verbose = verbose
        self.stream = stream
        self.every = max(1, int(every))
        self.best_x: Optional[np.ndarray] = None
        self.best_ll = -math.inf
        self.last_x: Optional[np.ndarray] = None
        self.last_ll = -math.inf
        self.last_g: Optional[np.ndarray] = None
        self.iterations = 0
        self.t0 = time.perf_counter()
        self.cache: Dict[bytes, Tuple[float, np.ndarray]] = {}
        self.worst_f = -math.inf
        self.last_finite_g = np.zeros(len(model.free_names))
        self.n_infeasible = 0

    def start(self, x0: np.ndarray, ll0: float, g0: np.ndarray) -> None:
        self.best_x, self.best_ll = x0.copy(), ll0
        self.worst_f = -ll0 / self.N
        self.last_finite_g = -g0 / self.N

    def evaluate(self, x: np.ndarray) -> Tuple[float, np.ndarray]:
        key = x.tobytes()
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        ll, g = self.model.loglik_and_gradient(x)
        if not math.isfinite(ll):
            # an infeasible trial point (thresholds out of order, a non-positive standard
            # deviation): a finite value far above every objective value seen, with the last
            # finite gradient, so that every scipy method rejects the step and backs off.
            # (+inf works for BFGS and the trust-region methods, but L-BFGS-B's line search
            # then stops at the start point and reports success.)
            self.n_infeasible += 1
            r = (self.worst_f + 1e3 * (1.0 + abs(self.worst_f)), self.last_finite_g.copy())
        else:
            if not np.isfinite(g).all():
                raise EstimationError(non_finite_gradient_message(self.model.free_names, x, g))
            r = (-ll / self.N, -g / self.N)
            self.worst_f = max(self.worst_f, r[0])
            self.last_finite_g = r[1].copy()
            if ll > self.best_ll:
                self.best_ll, self.best_x = ll, x.copy()
        self.cache = {key: r}
        self.last_g = g
        return r

    def fun(self, x):
        return self.evaluate(np.asarray(x, dtype=np.float64))

    def callback(self, xk, *args):
        xk = np.asarray(getattr(xk, "x", xk), dtype=np.float64)
        self.iterations += 1
        f, g = self.evaluate(xk)
        self.last_x = xk.copy()
        self.last_ll = -f * self.N
        if self.verbose and (self.iterations % self.every == 0 or self.iterations == 1):
            gn = float(np.max(np.abs(g * self.N))) if g is not None else float("nan")
            print(
                f"  iteration {self.iterations:4d}   LL = {self.last_ll:.6f}   max|grad| = {gn:.3e}   "
                f"{time.perf_counter() - self.t0:7.2f} s",
                file=self.stream,
                flush=True,
            )


def covariances(H: np.ndarray, S: np.ndarray, names: Sequence[str]) -> Dict[str, object]:
    """Classical, robust and BHHH covariance matrices from the Hessian ``H``
    of ``LL`` and the scores ``S``; warns (naming parameters) when ``H`` is
    singular or not negative definite."""
    K = H.shape[0]
    out: Dict[str, object] = {"hessian_ok": True, "hessian_problem": []}
    A = -H
    nan = np.full((K, K), np.nan)
    w, V = np.linalg.eigh(A)
    scale = max(np.max(np.abs(w)), 1e-300)
    bad = w <= 1e-10 * scale
    if bad.any():
        involved: List[str] = []
        for j in np.flatnonzero(bad):
            vec = np.abs(V[:, j])
            for i in np.flatnonzero(vec >= 0.3 * vec.max()):
                if names[i] not in involved:
                    involved.append(names[i])
        kind = "singular" if np.all(np.abs(w[bad]) <= 1e-10 * scale) else "not negative definite"
        warnings.warn(
            f"the Hessian of the log-likelihood is {kind} at the estimates (eigenvalues of -H: {np.array2string(w[bad], precision=3)}); "
            f"parameters involved: {involved}. These may be unidentified (fix one of them) or the estimates are not a maximum; "
            f"classical and robust standard errors are not available.",
            HessianWarning,
            stacklevel=3,
        )
        out["hessian_ok"] = False
        out["hessian_problem"] = involved
        cov = nan
        robust = nan
    else:
        cov = (V / w) @ V.T
        B = S.T @ S
        robust = cov @ B @ cov
    B = S.T @ S
    try:
        bhhh = np.linalg.inv(B)
        if not np.isfinite(bhhh).all():
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        bhhh = nan
    out.update(cov=cov, robust_cov=robust, bhhh_cov=bhhh)
    return out


def estimate(
    model,
    method: str = "bfgs",
    start=None,
    maxiter: int = 1000,
    gtol: float = 1e-6,
    hessian: bool = True,
    verbose: bool = True,
    print_every: int = 1,
    stream: Optional[TextIO] = None,
    check_unused: bool = True,
    restarts: int = 5,
) -> Results:
    """Estimate ``model`` by maximum (simulated) likelihood; see the module docs.

    ``gtol`` is the tolerance on the gradient of ``LL / N`` (for ``"bhhh"``
    on ``g' (S'S)^{-1} g``, about twice the distance of LL to its maximum). ``verbose`` prints a progress line per
    iteration (every ``print_every``). Returns :class:`Results`; a run that
    stops early (iteration limit, line-search failure, an exception in the
    model function, Ctrl-C) keeps the best iterate and says why in
    ``results.message`` (``results.converged`` is False, with a
    ``ConvergenceWarning``). ``restarts``: how many times BFGS / L-BFGS-B is
    restarted from the best point with a fresh quasi-Newton matrix after a
    failed line search away from the optimum.
    """
    import scipy.optimize as so

    if method not in METHODS:
        raise SpecificationError(f"estimate: unknown method {method!r}; methods: {list(METHODS)}")
    params = model.params
    if params.has_bounds and method in ("bfgs", "trust-exact", "bhhh"):
        raise SpecificationError(
            f"estimate: method {method!r} cannot honour the bounds of {[n for n, b in zip(params.free_names, params.bounds()) if b != (None, None)]}; "
            "use method='lbfgsb' or 'trust-constr'"
        )
    stream = sys.stdout if stream is None else stream
    x0 = model._vector(start)
    names = model.free_names
    N = model.data.n_individuals
    t0 = time.perf_counter()
    ll0, g0 = model.loglik_and_gradient(x0)
    if not math.isfinite(ll0):
        comps = model.component_loglik(x0)
        badc = [k for k, v in comps.items() if not math.isfinite(v)]
        raise EstimationError(
            f"the log-likelihood is not finite at the start values (components {badc}: thresholds out of order, a non-positive "
            f"standard deviation or an impossible outcome); change the start values"
        )
    if not np.isfinite(g0).all():
        raise EstimationError("at the start values: " + non_finite_gradient_message(names, x0, g0))
    unused = model.check_unused(x0) if check_unused else []
    tr = _Tracker(model, verbose, stream, print_every)
    tr.start(x0, ll0, g0)
    if verbose:
        print(f"Estimating {model.name!r} ({len(names)} free parameters, {N} individuals, {model.data.n_rows} rows"
              + (f", {model.draws.n_draws} {model.draws_spec.kind} draws" if model.draws is not None else "")
              + f") with {method}", file=stream)
        print(f"  start          LL = {ll0:.6f}", file=stream, flush=True)
    message, converged, nit = "", False, 0
    x_hat = x0
    try:
        if method == "bhhh":
            x_hat, converged, message, nit = _bhhh(model, x0, maxiter, gtol, tr)
        else:
            kw: Dict[str, object] = dict(jac=True, callback=tr.callback)
            if method == "bfgs":
                kw.update(method="BFGS", options=dict(gtol=gtol, maxiter=maxiter))
            elif method == "lbfgsb":
                kw.update(method="L-BFGS-B", bounds=params.bounds(), options=dict(gtol=gtol, maxiter=maxiter, ftol=1e-15, maxcor=30))
            elif method == "trust-exact" and not params.has_bounds:
                kw.update(method="trust-exact", hess=lambda x: _hessian(model, x) / N, options=dict(gtol=gtol, maxiter=maxiter))
            else:
                kw.update(method="trust-constr", hess=lambda x: _hessian(model, x) / N, options=dict(gtol=gtol, maxiter=maxiter))
                if params.has_bounds:
                    b = params.bounds()
                    kw["bounds"] = so.Bounds([-np.inf if l is None else l for l, _ in b], [np.inf if h is None else h for _, h in b])
            xs = x0
            nit = 0
            for attempt in range(1 + restarts):
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", category=RuntimeWarning)
                    res = so.minimize(tr.fun, xs, **kw)
                nit += int(getattr(res, "nit", 0))
                x_hat = np.asarray(res.x, dtype=np.float64)
                converged = bool(res.success)
                message = str(res.message)
                ll_hat = model.loglik(x_hat)
                if not math.isfinite(ll_hat) or ll_hat < tr.best_ll - 1e-9 * abs(tr.best_ll):
                    x_hat = tr.best_x
                gmax = _projected_gmax(model, x_hat)
                if converged and not gmax <= 1e3 * gtol:
                    # scipy claims success far from a stationary point (e.g. L-BFGS-B after a
                    # line search that met infeasible points): do not believe it
                    converged = False
                    message += f" (but the gradient of LL/N at that point is {gmax:.2e}: not a maximum)"
                if converged or nit >= maxiter or method not in ("bfgs", "lbfgsb"):
                    break
                # a failed line search far from the optimum (the quasi-Newton matrix lost its
                # positive definiteness where the log-likelihood is not concave): restart from
                # the best point with a fresh matrix, as Apollo's and Biogeme's BFGS users do by hand
                if gmax <= 10 * gtol:
                    break
                if verbose:
                    print(f"  restarting {method} from the best point (the line search failed: {message})", file=stream, flush=True)
                xs = x_hat
                kw["options"] = dict(kw["options"], maxiter=max(1, maxiter - nit))
            if restarts and attempt > 0:
                message += f" (after {attempt} restart{'s' if attempt > 1 else ''})"
            if not converged and method != "bhhh":
                gmax = _projected_gmax(model, x_hat)
                if gmax <= 10 * gtol:
                    # scipy's line search gives up on precision loss at the optimum: the gradient says we are there
                    converged = True
                    message += f" (gradient of LL/N at the estimates {gmax:.2e} <= 10 gtol: accepted)"
    except KeyboardInterrupt:
        message = "interrupted (Ctrl-C); the estimates are the best iterate so far"
        x_hat = tr.best_x
        nit = tr.iterations
    except EstimationError as e:  # a non-finite gradient where the log-likelihood is finite
        message = f"stopped: {e}; the estimates are the best iterate so far"
        x_hat = tr.best_x
        nit = tr.iterations
        converged = False
    except Exception as e:  # the model function raised during estimation
        message = f"stopped: the model raised {type(e).__name__}: {e}; the estimates are the best iterate so far"
        x_hat = tr.best_x
        nit = tr.iterations
        converged = False
    t_est = time.perf_counter() - t0
    if not converged:
        from .errors import ConvergenceWarning

        warnings.warn(f"estimation of {model.name!r} did not converge: {message}", ConvergenceWarning, stacklevel=2)
    t1 = time.perf_counter()
    cov = None
    H = S = None
    try:
        if hessian:
            # one forward pass gives LL, the gradient, the exact Hessian and the scores
            ll_hat, g_hat, H, S = model.hessian_and_scores(x_hat)
            if np.isfinite(H).all() and np.isfinite(S).all() and np.isfinite(g_hat).all():
                cov = covariances(H, S, names)
            else:
                # name the source: a non-finite first derivative spreads through the Hessian
                for nonfinite in (~np.isfinite(g_hat), ~np.isfinite(np.diag(H)), ~(np.isfinite(H).all(axis=1) & np.isfinite(S).all(axis=0))):
                    if nonfinite.any():
                        break
                bad = [n for n, b in zip(names, nonfinite) if b]
                message += f"; no standard errors: the gradient, Hessian or scores are not finite at the estimates (parameters {bad})"
                H = S = None
        else:
            ll_hat, g_hat = model.loglik_and_gradient(x_hat)
    except Exception as e:  # the model fails at the estimates too: report what we have
        ll_hat, g_hat = tr.best_ll, np.full(len(x_hat), np.nan)
        message += f"; no standard errors ({type(e).__name__} at the estimates)"
    t_hess = time.perf_counter() - t1
    ll_zero = None
    try:
        z = model.loglik(np.zeros_like(x_hat))
        ll_zero = z if math.isfinite(z) else None
    except Exception:
        ll_zero = None
    comp_ll = {}
    try:
        comp_ll = model.component_loglik(x_hat)
    except Exception:
        pass
    comp_ll_zero = {}
    try:
        # each component's own LL(0) where it is finite (Apollo's "LL(0, component)"; e.g. an MNL at zero
        # utilities, log of 1 / the number of available alternatives, when the whole model has none)
        comp_ll_zero = {k: v for k, v in model.component_loglik(np.zeros_like(x_hat)).items() if math.isfinite(v)}
    except Exception:
        pass
    if verbose:
        print(f"  final          LL = {ll_hat:.6f}   ({nit} iterations, {t_est:.2f} s; Hessian and scores {t_hess:.2f} s)", file=stream, flush=True)
    return Results.from_estimation(
        model=model,
        x=x_hat,
        method=method,
        ll_start=ll0,
        ll_final=ll_hat,
        ll_zero=ll_zero,
        gradient=g_hat,
        hessian=H,
        scores=S,
        cov=cov,
        iterations=nit,
        converged=converged,
        message=message,
        time_estimation=t_est,
        time_hessian=t_hess,
        component_ll=comp_ll,
        unused=unused,
        component_ll_zero=comp_ll_zero,
    )


def _projected_gmax(model, x: np.ndarray) -> float:
    """``max |gradient of LL/N|`` over the free parameters, leaving out those
    held at a bound by a gradient pointing outside (a bounded optimum)."""
    g = model.gradient(x) / model.data.n_individuals
    for i, (lo, hi) in enumerate(model.params.bounds()):
        # (trust-constr's interior point stays a little inside its bounds)
        if (lo is not None and x[i] <= lo + 1e-6 * (1 + abs(lo)) and g[i] < 0) or (hi is not None and x[i] >= hi - 1e-6 * (1 + abs(hi)) and g[i] > 0):
            g[i] = 0.0
    return float(np.max(np.abs(g)))


def _hessian(model, x: np.ndarray) -> np.ndarray:
    """``-H`` for scipy's trust-region methods, checked finite."""
    _, g, H, _ = model.hessian_and_scores(x)
    if not np.isfinite(g).all():
        raise EstimationError(non_finite_gradient_message(model.free_names, x, g))
    if not np.isfinite(H).all():
        # a NaN derivative of one parameter spreads along its row and column: name the
        # parameters whose own second derivative is not finite (else every row involved)
        rows = ~np.isfinite(np.diag(H))
        if not rows.any():
            rows = ~np.isfinite(H).all(axis=1)
        raise EstimationError(non_finite_gradient_message(model.free_names, x, np.where(rows, np.nan, 0.0), "Hessian"))
    return -H


def _bhhh(model, x0, maxiter, gtol, tr) -> Tuple[np.ndarray, bool, str, int]:
    N = model.data.n_individuals
    x = x0.copy()
    for it in range(1, maxiter + 1):
        ll, g, _, S = model.hessian_and_scores(x)
        if not np.isfinite(g).all() or not np.isfinite(S).all():
            bad = np.where(np.isfinite(g) & np.isfinite(S).all(axis=0), 0.0, np.nan)
            raise EstimationError(non_finite_gradient_message(model.free_names, x, bad, "gradient (or a score)"))
        B = S.T @ S
        try:
            d = np.linalg.solve(B, g)
        except np.linalg.LinAlgError:
            return x, False, "BHHH: the outer product of the scores is singular (an unidentified parameter?)", it - 1
        crit = float(g @ d)  # about twice the distance to the maximum of LL
        if crit <= gtol:
            return x, True, f"BHHH converged: g'(S'S)^-1 g = {crit:.3e} <= {gtol}", it - 1
        step, accepted = 1.0, False
        for _ in range(40):
            y = x + step * d
            lly = model.loglik(y)
            if math.isfinite(lly) and lly >= ll + 1e-4 * step * float(g @ d):
                accepted = True
                break
            step *= 0.5
        if not accepted:
            return x, False, "BHHH: the line search found no increase along the BHHH direction", it - 1
        x = y
        tr.callback(x)
    return x, False, f"BHHH: iteration limit ({maxiter}) reached", maxiter
