"""The ordered-threshold and Cholesky parametrisations of rbe.iclv.components
against NumPy, and the Hessian warning when -H has a negative eigenvalue."""
import warnings

import numpy as np
import pytest

import rbe
import rbe.iclv as iclv
from rbe.iclv.errors import SpecificationError


def _leaf(v):
    return rbe.tensor(float(v), dtype=rbe.float64, requires_grad=True)


def test_ordered_thresholds_values_and_gradient():
    first, inc = -0.7, [0.3, -1.2, 0.5]
    p = [_leaf(first)] + [_leaf(v) for v in inc]
    tau = iclv.ordered_thresholds(p[0], p[1:])
    want = first + np.concatenate([[0.0], np.cumsum(np.exp(inc))])
    np.testing.assert_allclose(tau.detach().numpy(), want, rtol=1e-15)
    assert np.all(np.diff(tau.detach().numpy()) > 0)  # ordered whatever the increments
    # d tau_k / d first = 1; d tau_k / d inc_j = exp(inc_j) for j < k, else 0
    w = np.array([0.4, -1.0, 2.0, 0.25])
    (tau * rbe.tensor(w, dtype=rbe.float64)).sum().backward()
    assert p[0].grad.item() == pytest.approx(w.sum(), rel=1e-15)
    for j, v in enumerate(inc):
        assert p[j + 1].grad.item() == pytest.approx(np.exp(v) * w[j + 1:].sum(), rel=1e-14)


def test_lower_triangular_values_gradient_and_correlated_draws():
    vals = [1.0, 0.6, 0.8, -0.3, 0.2, 0.9]
    leaves = [_leaf(v) for v in vals]
    L = iclv.lower_triangular(leaves, 3)
    want = np.zeros((3, 3))
    want[np.tril_indices(3)] = vals  # row by row
    np.testing.assert_array_equal(L.detach().numpy(), want)
    # correlated errors as the docs use them: draws @ L.T
    z = np.random.RandomState(0).normal(size=(50, 7, 3))
    W = np.random.RandomState(1).normal(size=(50, 7, 3))
    e = rbe.tensor(z, dtype=rbe.float64) @ L.t()
    np.testing.assert_allclose(e.detach().numpy(), z @ want.T, rtol=1e-14, atol=1e-15)
    (e * rbe.tensor(W, dtype=rbe.float64)).sum().backward()
    # d/dL_ij sum W * (z L^T) = sum_nr W[..., i] z[..., j]
    gL = np.einsum("nri,nrj->ij", W, z)
    got = [leaf.grad.item() for leaf in leaves]
    np.testing.assert_allclose(got, gL[np.tril_indices(3)], rtol=1e-12)
    # the implied covariance of the errors is L L^T (a large sample)
    big = np.random.RandomState(2).normal(size=(400_000, 3))
    emp = np.cov((big @ want.T).T)
    np.testing.assert_allclose(emp, want @ want.T, atol=0.02)


def test_lower_triangular_wrong_count_is_refused():
    with pytest.raises(SpecificationError, match="3x3 factor needs 6 values, got 5"):
        iclv.lower_triangular([1.0] * 5, 3)


def test_hessian_not_negative_definite_warns_naming_parameters():
    names = ["a", "b", "c"]
    H = np.diag([-4.0, -2.0, 1.5])  # a saddle in c
    S = np.random.RandomState(0).normal(size=(30, 3))
    with pytest.warns(iclv.HessianWarning, match=r"not negative definite.*parameters involved: \['c'\]"):
        out = iclv.covariances(H, S, names)
    assert out["hessian_ok"] is False and out["hessian_problem"] == ["c"]
    # a negative definite one gives no warning and the inverse of -H
    with warnings.catch_warnings():
        warnings.simplefilter("error", iclv.HessianWarning)
        ok = iclv.covariances(np.diag([-4.0, -2.0, -0.5]), S, names)
    assert ok["hessian_ok"] is True
