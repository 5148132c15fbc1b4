"""The exceptions of :mod:`rbe.pinn`, all :class:`rbe.errors.RbeError` s.

Bad values raise :class:`~rbe.errors.ArgumentError` (also a ``ValueError``),
shapes that do not fit :class:`~rbe.errors.ShapeError` (also a
``ValueError`` and a ``RuntimeError``), a dtype the front-end refuses
:class:`~rbe.errors.DTypeError` (also a ``TypeError``); the classes below
cover the rest.
"""
from __future__ import annotations

from ..errors import RbeError, UnsupportedError

__all__ = ["ArgumentTypeError", "TaylorModeError", "NonFiniteLossError", "MissingExtraError"]


class ArgumentTypeError(RbeError, TypeError):
    """An argument of the wrong kind (not a tensor, not callable, not a class, ...)."""


class TaylorModeError(UnsupportedError, TypeError):
    """A module or operation that Taylor mode has no rule for (use ``method="autograd"``)."""


class NonFiniteLossError(RbeError, FloatingPointError):
    """A loss became NaN or infinite; training stopped with the last good weights."""


class MissingExtraError(RbeError, ImportError):
    """An optional dependency (an extra of ``rbe-autodiff``) that a requested feature needs is not installed."""
