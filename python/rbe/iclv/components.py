"""Model components, in the style of Apollo's ``apollo_op`` / ``apollo_ol`` /
``apollo_normalDensity`` / ``apollo_mnl``: each reads its dependent variable
from the :class:`~rbe.iclv.Database` by column name (checked, with errors
naming the column and the individuals) and returns log-likelihood
contributions as a tensor.

Measurement equations (indicators) work at the individual level by default:
the indicator column must be constant within each individual and counts
once per individual (Apollo's ``rows = (task == 1)``); they return
``(N, R)``. Choice models work at the row level and return ``(M, R)``; sum
them over each individual's tasks with :meth:`Database.panel_sum` (the log of
the panel product).
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np

import rbe as _rbe

from .. import _core
from .data import Database
from .errors import DataError, SpecificationError, fmt_ids
from .functional import mnl_logprob, ordered_logprob

__all__ = [
    "ordered_probit",
    "ordered_logit",
    "normal_density",
    "binary_logit",
    "binary_probit",
    "mnl",
    "ordered_thresholds",
    "lower_triangular",
]


def _as_tensor(x):
    if isinstance(x, _core.Tensor):
        return x if x.dtype == _core.float64 else x.to(_core.float64)
    return _core.from_numpy(np.asarray(x, dtype=np.float64))


def _thresholds(thresholds) -> object:
    if isinstance(thresholds, _core.Tensor):
        t = _as_tensor(thresholds)
    else:
        thresholds = list(thresholds)
        if thresholds and all(isinstance(v, _core.Tensor) for v in thresholds):
            t = _rbe.stack([_as_tensor(v).reshape([]) for v in thresholds], 0)
        else:
            t = _as_tensor(np.asarray(thresholds, dtype=np.float64))
    if t.dim() != 1:
        raise SpecificationError(f"thresholds must be a 1-d tensor or a list of scalars, got shape {tuple(t.shape)}")
    return t


def _check_index(data: Database, V, level: str, what: str):
    V = _as_tensor(V)
    n = data.n_individuals if level == "individual" else data.n_rows
    if V.dim() == 0:
        V = V.reshape([1, 1]).expand(n, 1)
    elif V.dim() == 1:
        V = V.unsqueeze(1)
    if V.dim() != 2 or V.shape[0] not in (1, n):
        lvl = f"{n} individuals" if level == "individual" else f"{n} rows"
        raise SpecificationError(f"{what}: the index must have shape ({lvl}, R) or ({lvl}, 1), got {tuple(V.shape)}")
    if V.shape[0] == 1 and n != 1:
        V = V.expand(n, V.shape[1])
    return V


def _ordered(data, indicator, V, thresholds, levels, level, link, name):
    tau = _thresholds(thresholds)
    levels = list(levels)
    if len(levels) != tau.shape[0] + 1:
        raise SpecificationError(
            f"{name}({indicator!r}): {len(levels)} categories {levels} need {len(levels) - 1} thresholds, got {tau.shape[0]}"
        )
    if len(levels) < 2:
        raise SpecificationError(f"{name}({indicator!r}): an ordered indicator needs at least two categories")
    y = data.codes(indicator, levels, level)
    V = _check_index(data, V, level, f"{name}({indicator!r})")
    return ordered_logprob(V, tau, y, link)


def ordered_probit(data: Database, indicator: str, V, thresholds, levels: Sequence, level: str = "individual"):
    """Ordered probit: ``P(y = k) = Phi(tau_k - V) - Phi(tau_{k-1} - V)``
    with ``tau_0 = -inf`` and ``tau_C = +inf`` (Apollo's ``apollo_op``).

    ``indicator`` is the column, ``levels`` its ``C`` categories in order
    (a value outside them is an error naming the individuals), ``V`` the
    latent index ``(N, R)`` (e.g. ``zeta * LV``), ``thresholds`` the
    ``C - 1`` thresholds: a tensor, a list of parameters (raw, as Apollo
    estimates them), or :func:`ordered_thresholds` (ordered by
    construction). Returns the log-probabilities ``(N, R)``.
    """
    return _ordered(data, indicator, V, thresholds, levels, level, "probit", "ordered_probit")


def ordered_logit(data: Database, indicator: str, V, thresholds, levels: Sequence, level: str = "individual"):
    """Ordered logit (Apollo's ``apollo_ol``): as :func:`ordered_probit` with the logistic CDF."""
    return _ordered(data, indicator, V, thresholds, levels, level, "logit", "ordered_logit")


def normal_density(data: Database, indicator: str, mean, sd, level: str = "individual"):
    """Continuous indicator, ``y ~ N(mean, sd^2)`` (Apollo's
    ``apollo_normalDensity``): the log density ``(N, R)``. A non-positive
    ``sd`` gives ``-inf`` (an infeasible point for the optimiser), never NaN."""
    y = data.ind(indicator) if level == "individual" else data.row(indicator)
    mean = _check_index(data, mean, level, f"normal_density({indicator!r})")
    sd = _as_tensor(sd)
    pos = sd > 0.0
    one = _core.full([], 1.0, _core.float64, False)
    sd_s = _rbe.where(pos, sd, one)
    z = (y - mean) / sd_s
    lp = z * z * (-0.5) - sd_s.log() - 0.5 * math.log(2 * math.pi)
    return _rbe.where(pos, lp, _core.full([], -math.inf, _core.float64, False))


def _binary(data, choice, V, levels, level, link, name):
    levels = list(levels)
    if len(levels) != 2:
        raise SpecificationError(f"{name}({choice!r}): a binary choice has two levels (the first is 'not chosen'), got {levels}")
    y = data.codes(choice, levels, level)
    V = _check_index(data, V, level, f"{name}({choice!r})")
    # P(y=1) = F(V): an ordered model with one threshold at 0 (y=0: F(0 - V))
    zero = _core.zeros([1], _core.float64, False)
    return ordered_logprob(V, zero, y, link)


def binary_logit(data: Database, choice: str, V, levels: Sequence = (0, 1), level: str = "row"):
    """Binary logit, ``P(y = levels[1]) = 1 / (1 + exp(-V))``: ``(M, R)`` log-probabilities."""
    return _binary(data, choice, V, levels, level, "logit", "binary_logit")


def binary_probit(data: Database, choice: str, V, levels: Sequence = (0, 1), level: str = "row"):
    """Binary probit, ``P(y = levels[1]) = Phi(V)`` (``log_ndtr`` in the tails): ``(M, R)``."""
    return _binary(data, choice, V, levels, level, "probit", "binary_probit")


def mnl(
    data: Database,
    utilities: Mapping[str, object],
    choice: str,
    alternatives: Mapping[str, object],
    avail: Optional[Mapping[str, Union[str, int]]] = None,
):
    """Multinomial logit (Apollo's ``apollo_mnl``).

    ``utilities`` maps each alternative's name to its utility (broadcastable
    to ``(M, R)``); ``alternatives`` maps the names to the values the
    ``choice`` column takes; ``avail`` maps names to 0/1 columns (or the
    constant 1); missing names are always available. A row whose chosen
    alternative is unavailable is an error naming the individuals.
    Returns ``(M, R)`` log-probabilities.
    """
    names = list(alternatives)
    if set(names) != set(utilities):
        raise SpecificationError(
            f"mnl: the utilities {sorted(utilities)} and the alternatives {sorted(names)} must name the same alternatives"
        )
    y, y_np = data.codes_array(choice, [alternatives[n] for n in names], "row")
    us = []
    for n in names:
        u = _as_tensor(utilities[n])
        if u.dim() == 0:
            u = u.reshape([1, 1])
        elif u.dim() == 1:
            u = u.unsqueeze(1)
        if u.dim() != 2 or u.shape[0] not in (1, data.n_rows):
            raise SpecificationError(f"mnl: the utility of {n!r} must have shape ({data.n_rows} rows, R) or ({data.n_rows}, 1), got {tuple(u.shape)}")
        us.append(u)
    av = None
    if avail is not None:
        for k in avail:
            if k not in alternatives:
                raise SpecificationError(f"mnl: availability given for unknown alternative {k!r}")
        cols = [data.flag(avail.get(n, 1)) for n in names]
        av_np = np.stack(cols, axis=1)
        chosen_ok = av_np[np.arange(data.n_rows), y_np]
        if not chosen_ok.all():
            bad = np.flatnonzero(~chosen_ok)
            raise DataError(
                f"mnl: the chosen alternative is unavailable on {len(bad)} rows (column {choice!r}; individuals "
                f"{fmt_ids(data.ids[np.unique(data.ind_index_np[bad])])})"
            )
        av = _core.from_numpy(np.ascontiguousarray(av_np))
    return mnl_logprob(us, y, av)


def ordered_thresholds(first, increments: Sequence):
    """Thresholds ordered by construction: ``tau_1 = first``,
    ``tau_k = tau_{k-1} + exp(increments[k-2])`` (the parametrisation
    Biogeme's examples use). Returns a 1-d tensor of ``1 + len(increments)``
    thresholds."""
    taus = [_as_tensor(first).reshape([])]
    for d in increments:
        taus.append(taus[-1] + _as_tensor(d).reshape([]).exp())
    return _rbe.stack(taus, 0)


def lower_triangular(values: Sequence, size: int):
    """A ``(size, size)`` lower-triangular matrix filled row by row from
    ``values`` (``size (size + 1) / 2`` scalars): the Cholesky factor of the
    covariance of correlated latent-variable errors, used as
    ``draws.all @ L.T``."""
    need = size * (size + 1) // 2
    values = list(values)
    if len(values) != need:
        raise SpecificationError(f"lower_triangular: a {size}x{size} factor needs {need} values, got {len(values)}")
    zero = _core.zeros([], _core.float64, False)
    rows, k = [], 0
    for i in range(size):
        row = []
        for j in range(size):
            if j <= i:
                row.append(_as_tensor(values[k]).reshape([]))
                k += 1
            else:
                row.append(zero)
        rows.append(_rbe.stack(row, 0))
    return _rbe.stack(rows, 0)
