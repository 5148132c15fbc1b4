"""The data of an ICLV model: one row per choice task, an individual id.

:class:`Database` wraps a pandas DataFrame. Rows are grouped by individual
(individuals in the order of their first row, rows of an individual in their
original order; this is the order Apollo assigns draws in), and every column
the model reads is checked when it is first read:

- a missing column is a :class:`DataError` naming it (and close matches);
- NaN in a used column is an error naming the column and the individuals;
- an individual-level column (indicators, socio-demographics) must be
  constant within each individual: it is counted once per individual;
- coded columns (choices, ordered indicators) must take their declared
  values only; the error names the column, the values and the individuals.

Row-level columns come out as float64 tensors of shape ``(M, 1)`` and
individual-level ones as ``(N, 1)``, so they broadcast against ``(M, R)``
and ``(N, R)`` arrays of draws.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from .. import _core
from .errors import DataError, close_matches, fmt_ids

__all__ = ["Database"]


def _tensor(a: np.ndarray):
    return _core.from_numpy(np.ascontiguousarray(a))


class Database:
    """A panel of choice tasks.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per choice task.
    id_col : str
        The column holding the individual id (default ``"ID"``, Apollo's).
    individuals : pandas.DataFrame, optional
        Individual-level data (indicators, covariates), indexed by id or with
        an ``id_col`` column. Every id there must have rows in ``df`` and
        every id of ``df`` must be there.
    """

    def __init__(self, df, id_col: str = "ID", individuals=None):
        import pandas as pd

        if not isinstance(df, pd.DataFrame):
            raise DataError(f"Database: expected a pandas DataFrame, got {type(df).__name__}")
        if id_col not in df.columns:
            raise DataError(f"Database: the id column {id_col!r} is not in the data{close_matches(id_col, df.columns)}; columns: {list(df.columns)}")
        if len(df) == 0:
            raise DataError("Database: the data has no rows")
        ids = df[id_col]
        if ids.isna().any():
            bad = np.flatnonzero(ids.isna().to_numpy())
            raise DataError(f"Database: the id column {id_col!r} is missing (NaN) on rows {fmt_ids(bad)}")
        codes, uniq = pd.factorize(ids, sort=False)  # first-appearance order
        order = np.argsort(codes, kind="stable")
        self.id_col = id_col
        self.df = df.iloc[order].reset_index(drop=True)
        self.row_order = order  # position in the original data of each row here
        self.ids = np.asarray(uniq)
        self.n_individuals = len(uniq)
        self.n_rows = len(df)
        self.ind_index_np = codes[order].astype(np.int64)
        counts = np.bincount(self.ind_index_np, minlength=self.n_individuals)
        self.offsets_np = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.tasks_per_individual = counts
        self.ind_index = _tensor(self.ind_index_np)
        self.offsets = _tensor(self.offsets_np)
        self.individuals = None
        if individuals is not None:
            self._set_individuals(individuals)
        self._cache: Dict[tuple, object] = {}

    def _set_individuals(self, ind) -> None:
        import pandas as pd

        if not isinstance(ind, pd.DataFrame):
            raise DataError(f"Database: individuals must be a pandas DataFrame, got {type(ind).__name__}")
        if self.id_col in ind.columns:
            ind = ind.set_index(self.id_col)
        if ind.index.has_duplicates:
            dup = ind.index[ind.index.duplicated()].unique()
            raise DataError(f"Database: individuals {fmt_ids(dup)} appear more than once in the individual-level data")
        have = set(self.ids.tolist())
        extra = [i for i in ind.index if i not in have]
        if extra:
            raise DataError(f"Database: individuals {fmt_ids(extra)} of the individual-level data have no rows in the choice data")
        missing = [i for i in self.ids if i not in ind.index]
        if missing:
            raise DataError(f"Database: individuals {fmt_ids(missing)} have choice rows but no individual-level data")
        self.individuals = ind.loc[list(self.ids)]

    # ------------------------------------------------------------------ raw columns
    def __len__(self) -> int:
        return self.n_rows

    @property
    def columns(self) -> List[str]:
        cols = list(self.df.columns)
        if self.individuals is not None:
            cols += [c for c in self.individuals.columns if c not in cols]
        return cols

    def _raw(self, col: str, level: str) -> np.ndarray:
        """Values of ``col`` at ``level`` ('row' or 'individual'), as an ndarray, checked."""
        if not isinstance(col, str):
            raise DataError(f"expected a column name, got {type(col).__name__}")
        if level not in ("row", "individual"):
            raise DataError(f"level must be 'row' or 'individual', got {level!r}")
        if col in self.df.columns:
            v = self.df[col].to_numpy()
            if level == "row":
                self._check_nan(col, v, self.ind_index_np)
                return v
            self._check_nan(col, v, self.ind_index_np)
            first = v[self.offsets_np[:-1]]
            per_row = first[self.ind_index_np]
            differ = ~((per_row == v) | (_isnan(per_row) & _isnan(v)))
            if differ.any():
                who = np.unique(self.ind_index_np[differ])
                raise DataError(
                    f"column {col!r} is used at the individual level (counted once per individual) but varies within "
                    f"individuals {fmt_ids(self.ids[who])}"
                )
            return first
        if self.individuals is not None and col in self.individuals.columns:
            v = self.individuals[col].to_numpy()
            self._check_nan(col, v, np.arange(self.n_individuals))
            if level == "row":
                return v[self.ind_index_np]
            return v
        raise DataError(f"column {col!r} is not in the data{close_matches(col, self.columns)}")

    def _check_nan(self, col: str, v: np.ndarray, who: np.ndarray) -> None:
        nan = _isnan(v)
        if nan.any():
            ind = np.unique(who[nan])
            raise DataError(f"column {col!r} has missing values (NaN) for individuals {fmt_ids(self.ids[ind])}")

    # ------------------------------------------------------------------ tensors
    def row(self, col: str):
        """Row-level float64 column, shape ``(M, 1)``."""
        key = ("row", col)
        if key not in self._cache:
            v = self._numeric(col, self._raw(col, "row"))
            self._cache[key] = _tensor(v.reshape(-1, 1))
        return self._cache[key]

    def ind(self, col: str):
        """Individual-level float64 column, shape ``(N, 1)``; the column must
        be constant within each individual."""
        key = ("ind", col)
        if key not in self._cache:
            v = self._numeric(col, self._raw(col, "individual"))
            self._cache[key] = _tensor(v.reshape(-1, 1))
        return self._cache[key]

    def _numeric(self, col: str, v: np.ndarray) -> np.ndarray:
        try:
            out = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"column {col!r} is not numeric (dtype {v.dtype})") from None
        if not np.isfinite(out).all():
            bad = np.flatnonzero(~np.isfinite(out))
            raise DataError(f"column {col!r} has infinite values (first rows {fmt_ids(bad)})")
        return out

    def codes(self, col: str, levels: Sequence, level: str = "row"):
        """Integer codes (a tensor): see :meth:`codes_array`."""
        return self.codes_array(col, levels, level)[0]

    def codes_array(self, col: str, levels: Sequence, level: str = "row"):
        """``(tensor, ndarray)``: integer codes ``0..len(levels)-1`` of a categorical column (a
        choice or an ordered indicator), int64 of shape ``(M,)`` or ``(N,)``.
        A value outside ``levels`` is an error naming the column, the values
        and the individuals."""
        levels = list(levels)
        if len(levels) == 0:
            raise DataError(f"column {col!r}: no levels declared")
        if len(set(levels)) != len(levels):
            raise DataError(f"column {col!r}: the declared levels {levels} repeat a value")
        key = ("codes", col, tuple(levels), level)
        if key in self._cache:
            return self._cache[key]
        v = self._raw(col, level)
        out = np.full(v.shape, -1, dtype=np.int64)
        for k, lv in enumerate(levels):
            out[v == lv] = k
        bad = out < 0
        if bad.any():
            who = self.ind_index_np[bad] if level == "row" else np.flatnonzero(bad)
            vals = sorted({_plain(x) for x in v[bad]}, key=repr)
            raise DataError(
                f"column {col!r} takes values {vals[:10]} outside its declared categories {levels} "
                f"(individuals {fmt_ids(self.ids[np.unique(who)])})"
            )
        t = _tensor(out)
        self._cache[key] = (t, out)
        return self._cache[key]

    def flag(self, col, level: str = "row") -> np.ndarray:
        """A 0/1 column (availability) as a bool ndarray; a number is a constant."""
        n = self.n_rows if level == "row" else self.n_individuals
        if isinstance(col, (bool, int, float, np.integer, np.floating)):
            if col not in (0, 1):
                raise DataError(f"an availability constant must be 0 or 1, got {col!r}")
            return np.full(n, bool(col))
        v = self._raw(col, level)
        ok = (v == 0) | (v == 1)
        if not ok.all():
            who = self.ind_index_np[~ok] if level == "row" else np.flatnonzero(~ok)
            raise DataError(
                f"column {col!r} must be 0 or 1 (an availability), got {sorted({_plain(x) for x in v[~ok]}, key=repr)[:10]} "
                f"for individuals {fmt_ids(self.ids[np.unique(who)])}"
            )
        return v.astype(bool)

    # ------------------------------------------------------------------ panel structure
    def expand(self, x):
        """An individual-level tensor ``(N, ...)`` repeated on each of the
        individual's rows: ``(M, ...)`` (differentiable)."""
        from .functional import expand_to_rows

        return expand_to_rows(x, self)

    def panel_sum(self, x):
        """Sum of a row-level tensor ``(M, ...)`` over each individual's rows:
        ``(N, ...)`` (the log of the panel product; differentiable)."""
        from .functional import panel_sum

        return panel_sum(x, self.offsets)

    def __repr__(self) -> str:
        return f"Database({self.n_individuals} individuals, {self.n_rows} rows, id column {self.id_col!r})"


def _isnan(v: np.ndarray) -> np.ndarray:
    if v.dtype.kind in "fc":
        return np.isnan(v)
    if v.dtype.kind == "O":
        import pandas as pd

        return pd.isna(v)
    return np.zeros(v.shape, dtype=bool)


def _plain(x):
    try:
        return x.item()
    except AttributeError:
        return x
