"""Exceptions and warnings of the ICLV front-end.

Every class derives from the ``rbe.errors`` class that fits, so
``except ValueError`` / ``except RuntimeError`` keep working.
"""
from __future__ import annotations

import difflib
from typing import Iterable, Sequence

from ..errors import ArgumentError, ConvergenceError, ConvergenceWarning, RbeWarning

__all__ = ["DataError", "SpecificationError", "EstimationError", "HessianWarning", "ConvergenceWarning", "UnusedParameterWarning"]


class DataError(ArgumentError):
    """The data cannot be used as given: a missing column, NaN in a used
    column, a value outside its declared categories, an individual with no
    rows. The message names the column and the individuals involved."""


class SpecificationError(ArgumentError):
    """The model specification is inconsistent: an unknown parameter, a
    component of the wrong shape, thresholds out of order at the start
    values, bounds with a method that cannot use them."""


class EstimationError(ConvergenceError):
    """Estimation could not proceed (the log-likelihood is not finite at the
    start values, the objective raised)."""


class HessianWarning(RbeWarning):
    """The Hessian at the estimates is singular or not negative definite;
    the message names the parameters involved."""


class UnusedParameterWarning(RbeWarning):
    """A free parameter does not enter the log-likelihood."""


def close_matches(name: str, options: Iterable[str]) -> str:
    m = difflib.get_close_matches(str(name), [str(o) for o in options], n=3)
    return f" (did you mean {', '.join(repr(x) for x in m)}?)" if m else ""


def fmt_ids(ids: Sequence, limit: int = 5) -> str:
    ids = list(ids)
    s = ", ".join(repr(_py(i)) for i in ids[:limit])
    if len(ids) > limit:
        s += f", ... ({len(ids)} in all)"
    return s


def _py(v):
    try:
        return v.item()
    except AttributeError:
        return v
