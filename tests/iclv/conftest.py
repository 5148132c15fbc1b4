"""Tests of the ICLV front-end (rbe.iclv).

pytest imports test files by their base name, so every file here is named
``test_iclv_*.py`` (unique under tests/); there is no ``__init__.py``.
"""
import warnings

import numpy as np
import pytest


@pytest.fixture
def small_panel():
    """A tiny panel: 5 individuals, 1 to 4 rows each, rows not grouped by id."""
    import pandas as pd

    rng = np.random.default_rng(3)
    ids = np.array([3, 1, 3, 2, 5, 1, 4, 3, 2, 4, 4, 4])
    n = len(ids)
    per_ind = {i: rng.normal() for i in np.unique(ids)}
    q = {1: 1, 2: 3, 3: 5, 4: 2, 5: 4}
    df = pd.DataFrame(
        {
            "ID": ids,
            "x": rng.normal(size=n),
            "cost": rng.uniform(1, 3, size=n),
            "choice": rng.integers(0, 2, size=n),
            "mchoice": rng.integers(1, 4, size=n),
            "av3": np.ones(n, dtype=int),
            "age": [per_ind[i] for i in ids],
            "q1": [q[i] for i in ids],
            "cont": [per_ind[i] * 2 + 1 for i in ids],
        }
    )
    return df
