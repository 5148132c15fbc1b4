"""RBELinear.from_packed / to_packed on bad input: everything is checked
before the layer the header claims is allocated; nothing is clamped or
accepted silently."""
import time

import numpy as np
import pytest

import rbe
from rbe.structured import RBELinear


@pytest.fixture
def packed():
    return RBELinear(20, 30, block=(8, 8), atoms=2, residual=3, bias=True).to_packed()


def test_round_trip_still_exact(packed):
    q = RBELinear.from_packed(packed)
    again = q.to_packed()
    np.testing.assert_array_equal(again["records"], packed["records"])


def test_bogus_header_fails_before_allocating(packed):
    bad = dict(packed, header=dict(packed["header"], in_features=64000, out_features=64000))
    t = time.perf_counter()
    with pytest.raises(ValueError, match="records must be"):
        RBELinear.from_packed(bad)
    assert time.perf_counter() - t < 0.5


@pytest.mark.parametrize(
    "change",
    [
        {"header": None},
        {"residual_value": "nan"},
        {"bias": "nan"},
        {"bias": "short"},
        {"residual_index": "outside"},
        {"residual_index": "negative"},
        {"header_block": (0, 8)},
        {"header_atoms": -1},
        {"header_in": "x"},
    ],
)
def test_bad_records_are_refused(packed, change):
    p = dict(packed)
    p["header"] = dict(packed["header"])
    (key, val), = change.items()
    if key == "header":
        p["header"] = val
    elif key == "residual_value":
        p[key] = np.full_like(packed[key], np.nan)
    elif key == "bias":
        p[key] = np.full_like(packed[key], np.nan) if val == "nan" else packed[key][:-1]
    elif key == "residual_index":
        p[key] = packed[key].astype(np.int64) + (64 if val == "outside" else 0) - (1000 if val == "negative" else 0)
    elif key == "header_block":
        p["header"]["block"] = val
    elif key == "header_atoms":
        p["header"]["atoms"] = val
    elif key == "header_in":
        p["header"]["in_features"] = val
    with pytest.raises(ValueError):
        RBELinear.from_packed(p)


def test_to_packed_refuses_an_amplitude_it_cannot_store():
    layer = RBELinear(8, 8, block=(8, 8), atoms=1)
    with rbe.no_grad():
        layer.atoms[0, 0, 0] = 1e30
    with pytest.raises(ValueError, match="exceeds the largest storable"):
        layer.to_packed()
    with rbe.no_grad():
        layer.atoms[0, 0, 0] = 6.0e4  # below the top code: stored
    layer.to_packed()
