"""Fused backward kernels (tanh's g (1 - y^2) and its closed family) must give
the same derivatives as torch at every order."""
import numpy as np
import pytest
import torch

import rbe


def _derivs(m, x_np, w_np, order, dtype):
    x = m.tensor(x_np, dtype=dtype, requires_grad=True)
    w = m.tensor(w_np, dtype=dtype, requires_grad=True)
    y = m.tanh(x * w).sum()
    outs = []
    cur = y
    for _ in range(order):
        gx, gw = m.autograd.grad(cur, (x, w), create_graph=True)
        outs.append((gx.detach().numpy().copy(), gw.detach().numpy().copy()))
        cur = (gx * gx).sum() + gw.sum()
    return outs


@pytest.mark.parametrize("shapes", [((5, 4), (5, 4)), ((6, 3), (3,)), ((2, 3, 4), (1, 4))])
def test_tanh_derivatives_to_third_order_match_torch(shapes):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shapes[0])
    w = rng.standard_normal(shapes[1])
    got = _derivs(rbe, x, w, 3, rbe.float64)
    want = _derivs(torch, x, w, 3, torch.float64)
    for (a, b), (c, d) in zip(got, want):
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b, d, rtol=1e-10, atol=1e-12)


def test_fused_tanh_backward_gradcheck_float64():
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal((3, 4))

    def f(xn):
        x = rbe.tensor(xn, dtype=rbe.float64, requires_grad=True)
        (g,) = rbe.autograd.grad(rbe.tanh(x).pow(3).sum(), x, create_graph=True)
        (h,) = rbe.autograd.grad((g * g).sum(), x, create_graph=True)
        return x, (h * h.sin()).sum()

    x, out = f(x0)
    (grad,) = rbe.autograd.grad(out, x)
    eps = 1e-6
    num = np.zeros_like(x0)
    for i in np.ndindex(x0.shape):
        xp, xm = x0.copy(), x0.copy()
        xp[i] += eps
        xm[i] -= eps
        num[i] = (f(xp)[1].item() - f(xm)[1].item()) / (2 * eps)
    np.testing.assert_allclose(grad.numpy(), num, rtol=1e-6, atol=1e-7)


def test_tanh_backward_float32_matches_composite_formula():
    x = rbe.randn(64, 33, requires_grad=True)
    y = x.tanh()
    (g,) = rbe.autograd.grad(y.sum(), x)
    yd = y.detach()
    np.testing.assert_array_equal(g.numpy(), (1 - yd * yd).numpy())


@pytest.mark.parametrize("leaf", [True, False])
def test_many_slices_accumulate_like_torch(leaf):
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal((4, 30, 5))
    w0 = rng.standard_normal((30, 5))

    def run(m):
        x = m.tensor(x0, requires_grad=True)
        w = m.tensor(w0)
        y = x if leaf else x * 2.0
        total = (y[:, 3] * 0.5).sum()
        for t in range(30):
            total = total + (y[:, t] * w[t]).sum()
        total = total + y[:, 2:20:3].pow(2).sum() + y[1:3, ::7, 1:].sum() + y.sum()
        total.backward()
        return x.grad.numpy()

    np.testing.assert_allclose(run(rbe), run(torch), rtol=1e-12, atol=1e-12)


def test_slice_gradients_with_create_graph_stay_differentiable():
    x0 = np.random.default_rng(4).standard_normal((6, 4))
    def run(m):
        x = m.tensor(x0, requires_grad=True)
        y = sum((x[i] ** 3).sum() for i in range(6)) + (x[:, 1:3] ** 2).sum()
        (g,) = m.autograd.grad(y, x, create_graph=True)
        (h,) = m.autograd.grad((g * g).sum(), x)
        return g.detach().numpy(), h.numpy()
    for a, b in zip(run(rbe), run(torch)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
