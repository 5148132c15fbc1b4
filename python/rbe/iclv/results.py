"""The results of an estimation: estimates, standard errors, fit statistics,
a summary in the style of Apollo's ``apollo_modelOutput`` and Biogeme's
``getEstimatedParameters``, ``to_pandas()``, and saving and loading (JSON).

Conventions (stated here and in ``docs/iclv.md``):

- t-ratios are against 0; p-values are two-sided, from the normal
  distribution (Biogeme's; Apollo prints t-ratios only by default).
- ``LL(0)`` is the log-likelihood with every free parameter at 0 (fixed ones
  at their values), reported only where it is finite ("where defined":
  a model with a standard deviation estimated freely has none, nor one
  with ordered thresholds, all equal at 0). Each component's own
  ``LL(0, component)`` is shown where it is finite (an MNL at zero
  utilities: the log of one over the number of available alternatives).
- rho-squared is ``1 - LL(final) / LL(0)``, adjusted ``1 - (LL(final) - K) / LL(0)``.
- AIC ``= -2 LL + 2 K``; BIC ``= -2 LL + K log(N)`` with ``N`` the number of
  individuals (the independent units of a panel, as Biogeme's sample size).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

__all__ = ["Results"]


def _pvalue(t: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    with np.errstate(invalid="ignore"):
        return 2.0 * ndtr(-np.abs(t))


def _se(cov: Optional[np.ndarray], K: int) -> np.ndarray:
    if cov is None:
        return np.full(K, np.nan)
    d = np.diag(cov).copy()
    with np.errstate(invalid="ignore"):
        return np.where(d >= 0, np.sqrt(np.abs(d)), np.nan)


@dataclass
class Results:
    """Estimation results. ``names`` lists every parameter (free and fixed);
    the vectors below follow it (fixed parameters have NaN standard errors)."""

    model_name: str
    method: str
    names: List[str]
    estimates: np.ndarray
    fixed: np.ndarray
    se: np.ndarray
    robust_se: np.ndarray
    bhhh_se: np.ndarray
    cov: Optional[np.ndarray]
    robust_cov: Optional[np.ndarray]
    bhhh_cov: Optional[np.ndarray]
    ll_start: float
    ll_final: float
    ll_zero: Optional[float]
    n_individuals: int
    n_rows: int
    n_draws: Optional[int]
    draws_kind: Optional[str]
    iterations: int
    converged: bool
    message: str
    time_estimation: float
    time_hessian: float
    gradient: np.ndarray
    component_ll: Dict[str, float] = field(default_factory=dict)
    hessian_ok: bool = True
    hessian_problem: List[str] = field(default_factory=list)
    unused: List[str] = field(default_factory=list)
    component_ll_zero: Dict[str, float] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_estimation(cls, model, x, method, ll_start, ll_final, ll_zero, gradient, hessian, scores, cov, iterations, converged, message,
                        time_estimation, time_hessian, component_ll, unused, component_ll_zero=None) -> "Results":
        params = model.params
        names = params.names
        free = params.free_names
        full = params.full_vector(x)
        K = len(names)
        pos = [names.index(n) for n in free]

        def embed_cov(c):
            if c is None:
                return None
            out = np.full((K, K), np.nan)
            out[np.ix_(pos, pos)] = c
            return out

        covs = cov or {}
        c, rc, bc = (embed_cov(covs.get("cov")), embed_cov(covs.get("robust_cov")), embed_cov(covs.get("bhhh_cov")))
        g = np.full(K, np.nan)
        g[pos] = gradient
        return cls(
            model_name=model.name,
            method=method,
            names=list(names),
            estimates=full,
            fixed=np.array([params.is_fixed(n) for n in names]),
            se=_se(c, K),
            robust_se=_se(rc, K),
            bhhh_se=_se(bc, K),
            cov=c,
            robust_cov=rc,
            bhhh_cov=bc,
            ll_start=float(ll_start),
            ll_final=float(ll_final),
            ll_zero=None if ll_zero is None else float(ll_zero),
            n_individuals=model.data.n_individuals,
            n_rows=model.data.n_rows,
            n_draws=None if model.draws is None else model.draws.n_draws,
            draws_kind=None if model.draws_spec is None else model.draws_spec.kind,
            iterations=int(iterations),
            converged=bool(converged),
            message=str(message),
            time_estimation=float(time_estimation),
            time_hessian=float(time_hessian),
            gradient=g,
            component_ll=dict(component_ll),
            hessian_ok=bool(covs.get("hessian_ok", True)),
            hessian_problem=list(covs.get("hessian_problem", [])),
            unused=list(unused),
            component_ll_zero=dict(component_ll_zero or {}),
        )

    # ------------------------------------------------------------------ statistics
    @property
    def n_parameters(self) -> int:
        """Number of estimated (free) parameters ``K``."""
        return int((~self.fixed).sum())

    @property
    def t_ratios(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.estimates / self.se

    @property
    def robust_t_ratios(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.estimates / self.robust_se

    @property
    def p_values(self) -> np.ndarray:
        return _pvalue(self.t_ratios)

    @property
    def robust_p_values(self) -> np.ndarray:
        return _pvalue(self.robust_t_ratios)

    @property
    def aic(self) -> float:
        return -2.0 * self.ll_final + 2.0 * self.n_parameters

    @property
    def bic(self) -> float:
        return -2.0 * self.ll_final + self.n_parameters * math.log(self.n_individuals)

    @property
    def rho_squared(self) -> Optional[float]:
        if self.ll_zero is None or self.ll_zero == 0:
            return None
        return 1.0 - self.ll_final / self.ll_zero

    @property
    def adj_rho_squared(self) -> Optional[float]:
        if self.ll_zero is None or self.ll_zero == 0:
            return None
        return 1.0 - (self.ll_final - self.n_parameters) / self.ll_zero

    @property
    def gradient_norm(self) -> float:
        """Euclidean norm of the gradient of LL at the estimates (free
        parameters; Biogeme's "Final gradient norm")."""
        g = self.gradient[~self.fixed]
        return float(np.sqrt(np.sum(g * g)))

    def __getitem__(self, name: str) -> float:
        return float(self.estimates[self.names.index(name)])

    @property
    def values(self) -> Dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, self.estimates)}

    # ------------------------------------------------------------------ output
    def to_pandas(self):
        """One row per parameter: estimate, s.e., t-ratio, p-value, robust
        s.e., robust t-ratio, robust p-value, BHHH s.e., fixed."""
        import pandas as pd

        return pd.DataFrame(
            {
                "estimate": self.estimates,
                "se": self.se,
                "t": self.t_ratios,
                "p": self.p_values,
                "robust_se": self.robust_se,
                "robust_t": self.robust_t_ratios,
                "robust_p": self.robust_p_values,
                "bhhh_se": self.bhhh_se,
                "fixed": self.fixed,
            },
            index=pd.Index(self.names, name="parameter"),
        )

    def summary(self) -> str:
        """The summary table, in the layout choice modellers know from Apollo."""
        L = []
        L.append(f"Model name                       : {self.model_name}")
        L.append(f"Estimation method                : {self.method}")
        diag = "Successful convergence" if self.converged else f"NOT CONVERGED: {self.message}"
        L.append(f"Model diagnosis                  : {diag}")
        if self.converged and self.message:
            L.append(f"Optimiser message                : {self.message}")
        L.append(f"Number of individuals            : {self.n_individuals}")
        L.append(f"Number of observations (rows)    : {self.n_rows}")
        if self.n_draws is not None:
            L.append(f"Number of draws                  : {self.n_draws} ({self.draws_kind})")
        L.append("")
        L.append(f"Number of estimated parameters   : {self.n_parameters}")
        n_fixed = int(self.fixed.sum())
        if n_fixed:
            L.append(f"Number of fixed parameters       : {n_fixed} ({', '.join(n for n, f in zip(self.names, self.fixed) if f)})")
        L.append(f"LL(start)                        : {self.ll_start:.4f}")
        L.append(f"LL(0, whole model)               : {'not defined' if self.ll_zero is None else f'{self.ll_zero:.4f}'}")
        L.append(f"LL(final, whole model)           : {self.ll_final:.4f}")
        rho, arho = self.rho_squared, self.adj_rho_squared
        L.append(f"Rho-squared vs LL(0)             : {'not defined' if rho is None else f'{rho:.4f}'}")
        L.append(f"Adj.Rho-squared vs LL(0)         : {'not defined' if arho is None else f'{arho:.4f}'}")
        L.append(f"AIC                              : {self.aic:.2f}")
        L.append(f"BIC                              : {self.bic:.2f}")
        for k, v in self.component_ll.items():
            if k in self.component_ll_zero:
                L.append(f"LL(0, {k})".ljust(33) + f": {self.component_ll_zero[k]:.4f}")
            L.append(f"LL(final, {k})".ljust(33) + f": {v:.4f}")
        L.append("")
        L.append(f"Time taken (estimation)          : {self.time_estimation:.2f} s")
        L.append(f"Time taken (Hessian, scores)     : {self.time_hessian:.2f} s")
        L.append(f"Time taken (total)               : {self.time_estimation + self.time_hessian:.2f} s")
        L.append(f"Iterations                       : {self.iterations}")
        L.append(f"Final gradient norm              : {self.gradient_norm:.4e}")
        if not self.hessian_ok:
            L.append(f"WARNING: singular or not negative definite Hessian; parameters involved: {self.hessian_problem}")
        L.append("")
        L.append("Estimates:")
        w = max([len(n) for n in self.names] + [9])
        head = f"{'':{w}} {'Estimate':>12} {'s.e.':>10} {'t.rat.(0)':>10} {'p(2-sid.)':>10} {'Rob.s.e.':>10} {'Rob.t.rat.(0)':>14} {'p(2-sid.)':>10}"
        L.append(head)
        t, rt, p, rp = self.t_ratios, self.robust_t_ratios, self.p_values, self.robust_p_values
        for i, n in enumerate(self.names):
            if self.fixed[i]:
                L.append(f"{n:{w}} {self.estimates[i]:12.6f} {'(fixed)':>10}")
                continue
            L.append(
                f"{n:{w}} {self.estimates[i]:12.6f} {_f(self.se[i], 10, 6)} {_f(t[i], 10, 3)} {_f(p[i], 10, 4)} "
                f"{_f(self.robust_se[i], 10, 6)} {_f(rt[i], 14, 3)} {_f(rp[i], 10, 4)}"
            )
        return "\n".join(L)

    def print_summary(self) -> None:
        print(self.summary())

    def __repr__(self) -> str:
        return f"Results({self.model_name!r}, LL = {self.ll_final:.4f}, {self.n_parameters} parameters, converged = {self.converged})"

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        def arr(a):
            return None if a is None else np.asarray(a, dtype=float).tolist()

        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k in ("estimates", "se", "robust_se", "bhhh_se", "cov", "robust_cov", "bhhh_cov", "gradient"):
            d[k] = arr(d[k])
        d["fixed"] = [bool(v) for v in self.fixed]
        d["format"] = "rbe.iclv.Results/1"
        return d

    def save(self, path) -> None:
        """Write the results to ``path`` as JSON (NaN as NaN)."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def load(cls, path) -> "Results":
        """Read results written by :meth:`save`."""
        from .errors import DataError

        with open(path, "r", encoding="utf-8") as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                raise DataError(f"Results.load: {path} is not a results file ({e})") from None
        if not isinstance(d, dict) or d.pop("format", None) != "rbe.iclv.Results/1":
            raise DataError(f"Results.load: {path} is not a results file written by Results.save")
        for k in ("estimates", "se", "robust_se", "bhhh_se", "gradient"):
            d[k] = np.asarray(d[k], dtype=float)
        for k in ("cov", "robust_cov", "bhhh_cov"):
            d[k] = None if d[k] is None else np.asarray(d[k], dtype=float)
        d["fixed"] = np.asarray(d["fixed"], dtype=bool)
        return cls(**d)


def _f(v: float, width: int, prec: int) -> str:
    if v is None or not np.isfinite(v):
        return f"{'NA':>{width}}"
    return f"{v:{width}.{prec}f}"
