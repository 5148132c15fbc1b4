"""Tests of the PINN front-end (rbe.pinn).

pytest's default (prepend) import mode imports test files by their base name,
so the names here must not repeat names elsewhere under tests/ (they all start
with ``test_pinn_``); there is no ``__init__.py``, so ``rbe`` resolves to the
installed package.
"""
import numpy as np
import pytest

import rbe


@pytest.fixture
def f64():
    """float64 as the default dtype for one test."""
    old = rbe.get_default_dtype()
    rbe.set_default_dtype(rbe.float64)
    try:
        yield
    finally:
        rbe.set_default_dtype(old)


def t64(a):
    return rbe.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.float64)))
