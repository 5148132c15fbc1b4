"""The exceptions rbe raises.

Every class derives from :class:`RbeError` and from the builtin exception
PyTorch raises in the same situation, so code written for torch keeps working:

=====================  =======================================  ==========================
class                  also a                                    raised for
=====================  =======================================  ==========================
``ShapeError``         ``RuntimeError``, ``ValueError``          shapes that do not fit
``DTypeError``         ``RuntimeError`` (through                 a dtype an op refuses
                       ``NotImplementedError``), ``TypeError``
``RbeIndexError``      ``IndexError``                            an index or dim out of range
``AutogradError``      ``RuntimeError``                          autograd misuse
``ArgumentError``      ``RuntimeError``, ``ValueError``          a bad argument value
``UnsupportedError``   ``RuntimeError``                          valid but not supported
``OutOfMemoryError``   ``MemoryError``, ``RuntimeError``         an allocation refused
``FileFormatError``    ``RuntimeError``, ``ValueError``          a file ``rbe.load`` refuses
                                                                 (corrupt, truncated, absurd
                                                                 sizes)
=====================  =======================================  ==========================

``except RuntimeError`` (torch's habit) and ``except ValueError`` (rbe's
earlier habit) both catch a shape error. An exception raised by your own code
that rbe calls back into (a ``Function.backward``) comes out unchanged, with
its own type and traceback.

Front-ends subclass these (for example a non-convergence error is an
``RbeError`` and a ``RuntimeError``) and warn with :class:`RbeWarning`
subclasses.
"""
from __future__ import annotations

__all__ = [
    "RbeError",
    "ShapeError",
    "DTypeError",
    "RbeIndexError",
    "AutogradError",
    "ArgumentError",
    "UnsupportedError",
    "OutOfMemoryError",
    "FileFormatError",
    "ConvergenceError",
    "RbeWarning",
    "ConvergenceWarning",
]


class RbeError(Exception):
    """Base class of every exception rbe raises itself."""


class ShapeError(RbeError, RuntimeError, ValueError):
    """Shapes that do not fit together (torch raises ``RuntimeError``)."""


class DTypeError(RbeError, NotImplementedError, TypeError):
    """A dtype the operation does not accept.

    torch raises ``RuntimeError``, its subclass ``NotImplementedError`` ("not
    implemented for 'Bool'") or ``TypeError`` here, depending on the op; this
    class is all three."""


class RbeIndexError(RbeError, IndexError):
    """An index or dimension out of range."""


class AutogradError(RbeError, RuntimeError):
    """Misuse of autograd: a freed graph, an in-place change of a saved tensor, ..."""


class ArgumentError(RbeError, RuntimeError, ValueError):
    """A bad argument value."""


class UnsupportedError(RbeError, RuntimeError):
    """Something valid that rbe does not support."""


class OutOfMemoryError(RbeError, MemoryError, RuntimeError):
    """An allocation that could not be served. Nothing was changed."""


class FileFormatError(RbeError, RuntimeError, ValueError):
    """A file that is not one ``rbe.load`` can read: not safetensors, truncated,
    corrupt (bad JSON, offsets outside the data or overlapping, a dtype and
    shape that do not match the byte length) or claiming absurd sizes. The
    message names the file. Nothing of the claimed size was allocated."""


class ConvergenceError(RbeError, RuntimeError):
    """An iterative fit (EM, an optimiser, a solver) did not converge and was asked to fail."""


class RbeWarning(UserWarning):
    """Base class of rbe's warnings."""


class ConvergenceWarning(RbeWarning):
    """An iterative fit stopped before its convergence criterion was met."""
