"""The model: a Python function of the parameters, the data and the draws
returning log-likelihood components, and what autodiff makes of it.

The function returns a dict ``{name: tensor}`` (or one tensor) of
individual-level log-likelihood contributions, each ``(N, R)`` (depends on
the draws) or ``(N,)`` / ``(N, 1)`` (does not). The model's log-likelihood is

    LL = sum_n log( sum_r w_r exp( sum_c comp_c[n, r] ) )

(``w_r = 1/R`` for simulation, the quadrature weights for Gauss-Hermite):
the product over components and over an individual's tasks, averaged over
draws, in log space. Its gradient by reverse-mode autodiff is exactly the
importance-weighted gradient of simulated maximum likelihood.

Second derivatives: with per-individual weights ``u`` (all 1) the gradient
``g(theta, u) = sum_n u_n grad LL_n`` is built once with ``create_graph``;
one backward pass of ``g_k`` then gives row ``k`` of the exact Hessian
(``d g_k / d theta``) and column ``k`` of the per-individual scores
(``d g_k / d u_n``) together: ``K`` passes for both.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _core
from ..autograd import grad
from .data import Database
from .draws import Draws, DrawTensor
from .errors import EstimationError, SpecificationError, UnusedParameterWarning, close_matches
from .functional import log_mean_exp
from .parameters import Parameters, ParamView

__all__ = ["Model"]

ModelFn = Callable[[ParamView, Database, Optional[DrawTensor]], Union[Mapping[str, object], object]]


class Model:
    """An ICLV (or any simulated / closed-form) likelihood model.

    Parameters
    ----------
    loglik : callable
        ``loglik(p, data, draws)`` returning components (see the module docs).
    data : Database
    params : Parameters
    draws : Draws, optional
        Needed when the model uses random terms.
    name : str
        Shown in the summary.
    """

    def __init__(self, loglik: ModelFn, data: Database, params: Parameters, draws: Optional[Draws] = None, name: str = "iclv model"):
        if not callable(loglik):
            raise SpecificationError(f"Model: loglik must be a function (p, data, draws) -> components, got {type(loglik).__name__}")
        if not isinstance(data, Database):
            raise SpecificationError(f"Model: data must be an rbe.iclv.Database, got {type(data).__name__}")
        if not isinstance(params, Parameters):
            raise SpecificationError(f"Model: params must be rbe.iclv.Parameters, got {type(params).__name__}")
        if len(params.free_names) == 0:
            raise SpecificationError("Model: every parameter is fixed; nothing to estimate")
        self.fn = loglik
        self.data = data
        self.params = params
        self.draws_spec = draws
        self.name = name
        self.draws: Optional[DrawTensor] = None
        self.log_weights = None
        if draws is not None:
            arr = draws.generate(data.n_individuals)
            self.draws = DrawTensor(arr, draws.dims)
            w = draws.weights()
            if w is not None:
                self.log_weights = _core.from_numpy(np.log(w))
        self.n_evaluations = 0

    # ------------------------------------------------------------------ vectors
    @property
    def free_names(self):
        return self.params.free_names

    def _vector(self, values) -> np.ndarray:
        if values is None:
            return self.params.start_vector()
        if isinstance(values, Mapping):
            full = dict(self.params.start())
            for k, v in values.items():
                if k not in full:
                    raise SpecificationError(f"unknown parameter {k!r}{close_matches(k, full)}")
                full[k] = float(v)
            return np.array([full[n] for n in self.free_names])
        x = np.asarray(values, dtype=np.float64).reshape(-1)
        if x.shape[0] != len(self.free_names):
            raise SpecificationError(f"expected {len(self.free_names)} free parameter values, got {x.shape[0]}")
        return x

    # ------------------------------------------------------------------ evaluation
    def components(self, theta) -> Dict[str, object]:
        """The model function's components at the 1-d tensor ``theta`` of free parameters, checked."""
        p = ParamView(self.params, theta)
        out = self.fn(p, self.data, self.draws)
        if isinstance(out, _core.Tensor):
            out = {"model": out}
        if not isinstance(out, Mapping) or len(out) == 0:
            raise SpecificationError("the model function must return a tensor or a non-empty dict of tensors")
        N, M = self.data.n_individuals, self.data.n_rows
        R = self.draws.n_draws if self.draws is not None else 1
        comps = {}
        for k, v in out.items():
            if not isinstance(v, _core.Tensor):
                raise SpecificationError(f"component {k!r} is a {type(v).__name__}, not a tensor")
            if v.dtype != _core.float64:
                v = v.to(_core.float64)
            shp = tuple(v.shape)
            if len(shp) == 0 or shp[0] != N:
                hint = " (a row-level term: sum it over each individual's rows with data.panel_sum(...))" if shp[:1] == (M,) else ""
                raise SpecificationError(f"component {k!r} has shape {shp}; expected ({N} individuals, R) or ({N},){hint}")
            if len(shp) == 1:
                v = v.unsqueeze(1)
            elif len(shp) == 2 and shp[1] > 1 and self.draws is None:
                raise SpecificationError(
                    f"component {k!r} has shape {shp}: it seems to depend on draws but the model has none (Model(..., draws=Draws(...)))"
                )
            elif len(shp) != 2 or shp[1] not in (1, R):
                raise SpecificationError(f"component {k!r} has shape {shp}; expected ({N}, {R}) with R = {R} draws, ({N}, 1) or ({N},)")
            comps[k] = v
        return comps

    def _ll_n(self, theta, comps=None):
        """Per-individual log-likelihood ``(N,)`` (a tensor in the graph)."""
        comps = self.components(theta) if comps is None else comps
        total = None
        for v in comps.values():
            total = v if total is None else total + v
        self.n_evaluations += 1
        if total.shape[1] == 1:
            return total.squeeze(1)
        if self.draws is None:
            raise SpecificationError("the components depend on draws but the model has none (Model(..., draws=Draws(...)))")
        return log_mean_exp(total, self.log_weights)

    def _theta(self, x: np.ndarray, requires_grad: bool):
        return _core.from_numpy(np.array(x, dtype=np.float64)).requires_grad_(requires_grad)

    def loglik(self, values=None) -> float:
        """The log-likelihood at ``values`` (a dict by name, a vector of the
        free parameters, or None for the start values)."""
        with _core_no_grad():
            return float(self._ll_n(self._theta(self._vector(values), False)).sum().item())

    def loglik_per_individual(self, values=None) -> np.ndarray:
        with _core_no_grad():
            return self._ll_n(self._theta(self._vector(values), False)).numpy().copy()

    def component_loglik(self, values=None) -> Dict[str, float]:
        """Each component's own log-likelihood (integrated over the draws on
        its own), as Apollo reports per component."""
        with _core_no_grad():
            comps = self.components(self._theta(self._vector(values), False))
            out = {}
            for k, v in comps.items():
                if v.shape[1] == 1:
                    out[k] = float(v.sum().item())
                else:
                    out[k] = float(log_mean_exp(v, self.log_weights).sum().item())
            return out

    def loglik_and_gradient(self, values=None) -> Tuple[float, np.ndarray]:
        """The log-likelihood and its exact gradient (free parameters)."""
        theta = self._theta(self._vector(values), True)
        ll = self._ll_n(theta).sum()
        if not ll.requires_grad:
            return float(ll.item()), np.zeros(len(self.free_names))
        (g,) = grad(ll, [theta], allow_unused=True)
        gv = np.zeros(len(self.free_names)) if g is None else g.numpy().copy()
        return float(ll.item()), gv

    def gradient(self, values=None) -> np.ndarray:
        return self.loglik_and_gradient(values)[1]

    def hessian_and_scores(self, values=None) -> Tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """``(LL, gradient, Hessian (K, K), scores (N, K))``, all exact.

        Scores are the per-individual gradients ``d LL_n / d theta``; their
        column sums are the gradient."""
        x = self._vector(values)
        K, N = len(x), self.data.n_individuals
        theta = self._theta(x, True)
        u = _core.full([N], 1.0, _core.float64, True)
        ll_n = self._ll_n(theta)
        ll = (ll_n * u).sum()
        H = np.zeros((K, K))
        S = np.zeros((N, K))
        if not ll.requires_grad:
            return float(ll.item()), np.zeros(K), H, S
        (g,) = grad(ll, [theta], create_graph=True, allow_unused=True)
        if g is None:
            return float(ll.item()), np.zeros(K), H, S
        for k in range(K):
            gk = g[k]
            if not gk.requires_grad:
                continue
            hk, sk = grad(gk, [theta, u], retain_graph=True, allow_unused=True)
            if hk is not None:
                H[k] = hk.numpy()
            if sk is not None:
                S[:, k] = sk.numpy()
        H = 0.5 * (H + H.T)  # exact up to rounding; symmetric by construction
        return float(ll.item()), g.detach().numpy().copy(), H, S

    def hessian(self, values=None) -> np.ndarray:
        return self.hessian_and_scores(values)[2]

    def scores(self, values=None) -> np.ndarray:
        return self.hessian_and_scores(values)[3]

    def check_unused(self, values=None) -> Sequence[str]:
        """Free parameters that do not change the log-likelihood (gradient
        exactly 0 and no change under a perturbation); warns about them."""
        x = self._vector(values)
        ll, g = self.loglik_and_gradient(x)
        unused = []
        for k in np.flatnonzero(g == 0.0):
            y = x.copy()
            y[k] += 0.1 * max(1.0, abs(y[k]))
            if self.loglik(y) == ll:
                unused.append(self.free_names[k])
        if unused:
            warnings.warn(f"parameters {unused} do not enter the log-likelihood (fix them or remove them)", UnusedParameterWarning, stacklevel=2)
        return unused

    def estimate(self, **kwargs):
        """Maximum (simulated) likelihood estimation: see :func:`rbe.iclv.estimate`."""
        from .estimate import estimate

        return estimate(self, **kwargs)


class _core_no_grad:
    def __enter__(self):
        self.prev = _core.is_grad_enabled()
        _core.set_grad_enabled(False)

    def __exit__(self, *a):
        _core.set_grad_enabled(self.prev)
