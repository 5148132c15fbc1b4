"""rbe.iclv: integrated choice and latent variable models by simulated
maximum likelihood, with exact gradients and Hessians by autodiff (see
``docs/iclv.md``).

>>> import rbe.iclv as iclv
>>> data = iclv.Database(df, id_col="ID")
>>> params = iclv.Parameters({"asc": 0.0, "b_cost": -0.5, "lambda": 0.5, "zeta_1": 1.0, "tau_1_1": -1.0, "tau_1_2": 1.0})
>>> draws = iclv.Draws(100, ["eta"], kind="halton")
>>> def loglik(p, d, draws):
...     lv = p.gamma * d.ind("age") + draws["eta"]                       # structural equation (N, R)
...     ind = iclv.ordered_probit(d, "q1", p.zeta_1 * lv, [p.tau_1_1, p.tau_1_2], levels=[1, 2, 3])
...     V = p.asc + p.b_cost * d.row("cost") + p["lambda"] * d.expand(lv)  # utility (M, R)
...     choice = d.panel_sum(iclv.binary_probit(d, "choice", V))
...     return {"indicator": ind, "choice": choice}
>>> res = iclv.Model(loglik, data, params, draws).estimate()
>>> print(res.summary())

The likelihood blocks are plain ``rbe`` ops (the core's vectorised
``log_ndtr``, ``logsumexp``, ``index_add``...); this package imports from
``rbe`` and is never imported by it.
"""
from .components import (
    binary_logit,
    binary_probit,
    lower_triangular,
    mnl,
    normal_density,
    ordered_logit,
    ordered_probit,
    ordered_thresholds,
)
from .data import Database
from .draws import Draws, halton_sequence
from .errors import DataError, EstimationError, HessianWarning, SpecificationError, UnusedParameterWarning
from .estimate import covariances, estimate
from .functional import log_mean_exp, mnl_logprob, ordered_logprob, panel_sum
from .model import Model
from .parameters import Parameters
from .results import Results

__all__ = [
    "Database",
    "Parameters",
    "Draws",
    "Model",
    "Results",
    "estimate",
    "covariances",
    "ordered_probit",
    "ordered_logit",
    "normal_density",
    "binary_logit",
    "binary_probit",
    "mnl",
    "ordered_thresholds",
    "lower_triangular",
    "ordered_logprob",
    "mnl_logprob",
    "panel_sum",
    "log_mean_exp",
    "halton_sequence",
    "DataError",
    "SpecificationError",
    "EstimationError",
    "HessianWarning",
    "UnusedParameterWarning",
]
