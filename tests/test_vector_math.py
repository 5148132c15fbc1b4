"""Accuracy of the vectorised float32 math kernels (exp, tanh, pow by constants,
sums) against float64 NumPy as the oracle."""
import numpy as np
import pytest

import rbe


def _ulp_err(got32, exact64):
    exact32 = exact64.astype(np.float32)
    ulp = np.spacing(np.abs(exact32)).astype(np.float64)
    ulp = np.where(ulp == 0, np.finfo(np.float32).smallest_subnormal, ulp)
    return np.abs(got32.astype(np.float64) - exact64) / ulp


@pytest.mark.parametrize("fn,ref,lo,hi,max_ulp", [
    ("tanh", np.tanh, -12.0, 12.0, 2.0),
    ("tanh", np.tanh, -0.7, 0.7, 2.0),
    ("tanh", np.tanh, -1e-3, 1e-3, 1.0),
    ("exp", np.exp, -87.0, 88.0, 2.0),
])
def test_float32_kernels_within_a_few_ulp(fn, ref, lo, hi, max_ulp):
    x = np.linspace(lo, hi, 200_003, dtype=np.float32)
    got = getattr(rbe.from_numpy(x), fn)().numpy()
    err = _ulp_err(got, ref(x.astype(np.float64)))
    assert err.max() <= max_ulp, (fn, float(err.max()), x[err.argmax()])


def test_tanh_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 20.0, -20.0, 0.5625, -0.5625], np.float32)
    got = rbe.from_numpy(x).tanh().numpy()
    want = np.tanh(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(got[[0, 2, 3, 5, 6, 7, 8]], want[[0, 2, 3, 5, 6, 7, 8]])
    assert np.signbit(got[1]) and got[1] == 0
    assert np.isnan(got[4])
    assert abs(got[9] - want[9]) <= np.spacing(want[9]) and abs(got[10] - want[10]) <= np.spacing(-want[10])


@pytest.mark.parametrize("e", [2, 3, 1, 0.5, -1, -2, 2.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pow_by_constant(e, dtype):
    x = np.random.default_rng(0).uniform(0.1, 3.0, 1000).astype(dtype)
    got = (rbe.from_numpy(x) ** e).numpy()
    np.testing.assert_allclose(got, np.power(x.astype(np.float64), e), rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("n", [1, 15, 16, 17, 255, 256, 257, 1000, 100_001])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sums_are_accurate(n, dtype):
    x = np.random.default_rng(n).standard_normal((3, n)).astype(dtype)
    exact = x.astype(np.float64).sum(1)
    got = rbe.from_numpy(x).sum(1).numpy()
    tol = np.abs(x.astype(np.float64)).sum(1) * np.finfo(dtype).eps * (2 if dtype == np.float32 else np.log2(n) + 2)
    assert (np.abs(got - exact) <= tol + 1e-300).all()
    assert abs(rbe.from_numpy(x).sum().item() - exact.sum()) <= tol.sum() * 2
