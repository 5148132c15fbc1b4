"""Parameters by name, with start values, fixed parameters and bounds.

>>> params = Parameters()
>>> params.add("b_cost", -0.5)
>>> params.add("sigma_1", 1.0, fixed=True)
>>> params.add("tau_1", -1.0, lower=-5, upper=5)

Inside the model function the parameters are a :class:`ParamView`:
``p["b_cost"]`` or ``p.b_cost`` is a 0-d float64 tensor (a slice of the
vector of free parameters, so everything computed from it differentiates),
``p.vector(["tau_1", "tau_2"])`` a 1-d tensor.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

import rbe as _rbe

from .. import _core
from .errors import SpecificationError, close_matches

__all__ = ["Parameters", "ParamView"]


class Parameters:
    """An ordered set of named parameters (Apollo's ``apollo_beta`` with
    ``apollo_fixed``; Biogeme's ``Beta(name, start, lower, upper, fixed)``)."""

    def __init__(self, values: Optional[Mapping[str, float]] = None, fixed: Iterable[str] = ()):
        self._names: List[str] = []
        self._start: Dict[str, float] = {}
        self._fixed: Dict[str, bool] = {}
        self._bounds: Dict[str, Tuple[Optional[float], Optional[float]]] = {}
        fixed = list(fixed)
        for n, v in (values or {}).items():
            self.add(n, v, fixed=n in fixed)
        for n in fixed:
            if n not in self._start:
                raise SpecificationError(f"fixed parameter {n!r} is not among the parameters{close_matches(n, self._names)}")

    def add(self, name: str, start: float, fixed: bool = False, lower: Optional[float] = None, upper: Optional[float] = None) -> "Parameters":
        if not isinstance(name, str) or not name:
            raise SpecificationError(f"a parameter name must be a non-empty string, got {name!r}")
        if name in self._start:
            raise SpecificationError(f"parameter {name!r} is defined twice")
        try:
            s = float(start)
        except (TypeError, ValueError):
            raise SpecificationError(f"parameter {name!r}: the start value must be a number, got {start!r}") from None
        if not math.isfinite(s):
            raise SpecificationError(f"parameter {name!r}: the start value {s} is not finite")
        lo = None if lower is None else float(lower)
        hi = None if upper is None else float(upper)
        if lo is not None and hi is not None and lo > hi:
            raise SpecificationError(f"parameter {name!r}: lower bound {lo} is above the upper bound {hi}")
        if (lo is not None and s < lo) or (hi is not None and s > hi):
            raise SpecificationError(f"parameter {name!r}: the start value {s} is outside its bounds [{lo}, {hi}]")
        self._names.append(name)
        self._start[name] = s
        self._fixed[name] = bool(fixed)
        self._bounds[name] = (lo, hi)
        return self

    def fix(self, *names: str, value: Optional[float] = None) -> "Parameters":
        """Fix parameters at their start value (or at ``value``)."""
        for n in names:
            self._check(n)
            self._fixed[n] = True
            if value is not None:
                self._start[n] = float(value)
        return self

    def set_start(self, values: Mapping[str, float]) -> "Parameters":
        """Change start values (e.g. to the estimates of a simpler model)."""
        for n, v in values.items():
            self._check(n)
            v = float(v)
            if not math.isfinite(v):
                raise SpecificationError(f"parameter {n!r}: the start value {v} is not finite")
            self._start[n] = v
        return self

    def _check(self, n: str) -> None:
        if n not in self._start:
            raise SpecificationError(f"unknown parameter {n!r}{close_matches(n, self._names)}")

    # ------------------------------------------------------------------ views
    @property
    def names(self) -> List[str]:
        return list(self._names)

    @property
    def free_names(self) -> List[str]:
        return [n for n in self._names if not self._fixed[n]]

    @property
    def fixed_names(self) -> List[str]:
        return [n for n in self._names if self._fixed[n]]

    def is_fixed(self, name: str) -> bool:
        self._check(name)
        return self._fixed[name]

    def start(self) -> Dict[str, float]:
        return dict(self._start)

    def start_vector(self) -> np.ndarray:
        """Start values of the free parameters, in order."""
        return np.array([self._start[n] for n in self.free_names], dtype=np.float64)

    def bounds(self) -> List[Tuple[Optional[float], Optional[float]]]:
        return [self._bounds[n] for n in self.free_names]

    @property
    def has_bounds(self) -> bool:
        return any(b != (None, None) for b in self.bounds())

    def full_vector(self, free: np.ndarray) -> np.ndarray:
        """All parameters (free from ``free``, fixed at their values), in order."""
        out = np.array([self._start[n] for n in self._names], dtype=np.float64)
        idx = [i for i, n in enumerate(self._names) if not self._fixed[n]]
        out[idx] = free
        return out

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: str) -> bool:
        return name in self._start

    def __repr__(self) -> str:
        return f"Parameters({len(self._names)} parameters, {len(self.free_names)} free)"


class ParamView(Mapping):
    """The parameters as tensors, inside the model function."""

    def __init__(self, params: Parameters, free):
        self._params = params
        self._free = free  # 1-d float64 tensor (a leaf requiring grad during estimation)
        self._pos = {n: i for i, n in enumerate(params.free_names)}
        self._cache: Dict[str, object] = {}

    def __getitem__(self, name: str):
        t = self._cache.get(name)
        if t is not None:
            return t
        if name in self._pos:
            t = self._free[self._pos[name]]
        elif name in self._params:
            t = _core.full([], self._params._start[name], _core.float64, False)
        else:
            raise SpecificationError(f"the model uses the unknown parameter {name!r}{close_matches(name, self._params.names)}")
        self._cache[name] = t
        return t

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def vector(self, names: Sequence[str]):
        """The named parameters as a 1-d tensor (e.g. thresholds)."""
        return _rbe.stack([self[n] for n in names], 0)

    def __iter__(self):
        return iter(self._params.names)

    def __len__(self) -> int:
        return len(self._params)
