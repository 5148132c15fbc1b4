"""Taylor-mode input derivatives (rbe.pinn.gradient / laplacian / hessian_diag):
closed forms (u = x*y gives 0, products of sines give -d pi^2 u, a sum of
squares gives 2d), nested reverse mode to 1e-10 in float64 for ChebyKAN, MLP
and LayerNorm stacks and every activation with a rule, parameter gradients
by finite differences, and the errors."""
import math

import numpy as np
import pytest

import rbe
import rbe.nn as nn
import rbe.pinn as P

from conftest import t64


def close(a, b, tol=1e-10):
    a, b = np.asarray(a.detach().numpy()), np.asarray(b.detach().numpy())
    assert a.shape == b.shape, (a.shape, b.shape)
    err = np.abs(a - b) / np.maximum(1.0, np.abs(b))
    assert err.max(initial=0.0) <= tol, f"max relative error {err.max()} > {tol}"


def pts(n, d, lo=-1.0, hi=1.0, seed=0):
    return t64(np.random.default_rng(seed).uniform(lo, hi, (n, d)))


# ------------------------------------------------------------------ closed forms
def test_pinn_xy_has_zero_laplacian_where_summing_the_hessian_gives_two():
    x = pts(20, 2)
    f = lambda x: x[:, 0:1] * x[:, 1:2]
    d = P.taylor(f, x, "hessian_diag")
    assert float(d.laplacian.abs().max()) == 0.0
    assert float(d.hessian_diag.abs().max()) == 0.0
    close(d.gradient, rbe.stack([x[:, 1], x[:, 0]], 1), 0)
    assert float(P.laplacian(f, x).abs().max()) == 0.0
    assert float(P.laplacian(f, x, method="autograd").abs().max()) == 0.0
    # the classic mistake: grad of the summed gradient adds every Hessian entry (here 2, not 0)
    xr = x.detach().requires_grad_(True)
    (g,) = rbe.autograd.grad(f(xr).sum(), xr, create_graph=True)
    (h,) = rbe.autograd.grad(g.sum(), xr)
    np.testing.assert_allclose(h.sum(1).numpy(), 2.0)


def test_pinn_xy_through_a_chebykan_network_is_exact():
    # x y = (T_2(x + y) - T_2(x - y)) / 8, two ChebyKAN layers with identity maps
    l1 = P.ChebyKAN(2, 2, degree=1, input_map="identity", dtype=rbe.float64)
    l2 = P.ChebyKAN(2, 1, degree=2, input_map="identity", dtype=rbe.float64)
    with rbe.no_grad():
        l1.coeffs.zero_()
        l1.coeffs[0, 0, 1] = 0.5
        l1.coeffs[1, 0, 1] = 0.5
        l1.coeffs[0, 1, 1] = 0.5
        l1.coeffs[1, 1, 1] = -0.5
        l2.coeffs.zero_()
        l2.coeffs[0, 0, 2] = 0.5
        l2.coeffs[1, 0, 2] = -0.5
    net = nn.Sequential(l1, l2)
    x = pts(30, 2, -0.9, 0.9)
    u = net(x)
    close(u[:, 0], x[:, 0] * x[:, 1], 1e-14)
    d = P.taylor(net, x, "hessian_diag")
    assert float(d.laplacian.abs().max()) < 1e-14
    close(d.gradient, rbe.stack([x[:, 1], x[:, 0]], 1), 1e-14)
    close(d.laplacian, P.laplacian(net, x, method="autograd"))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_pinn_product_of_sines_and_sum_of_squares(dim):
    x = pts(25, dim, 0, 1, seed=dim)

    def sines(x):
        u = (math.pi * x[:, 0:1]).sin()
        for a in range(1, dim):
            u = u * (math.pi * x[:, a:a + 1]).sin()
        return u

    u = sines(x).value if isinstance(sines(x), P.Jet) else sines(x)
    d = P.taylor(sines, x, "laplacian")
    close(d.laplacian, -dim * math.pi ** 2 * d.value[:, 0])
    want_u = np.prod(np.sin(np.pi * x.numpy()), axis=1)
    np.testing.assert_allclose(d.value[:, 0].numpy(), want_u, rtol=1e-14)
    hd = P.hessian_diag(sines, x)
    close(hd, (-math.pi ** 2) * d.value[:, 0:1].expand(25, dim))
    squares = lambda x: (x * x).sum(-1)
    np.testing.assert_allclose(P.laplacian(squares, x).numpy(), 2.0 * dim)
    np.testing.assert_allclose(P.hessian_diag(squares, x).numpy(), 2.0)
    close(P.gradient(squares, x), 2.0 * x, 1e-15)
    del u


# ------------------------------------------------------------------ against nested reverse mode
def _models(dim):
    rbe.manual_seed(dim)
    f = dict(dtype=rbe.float64)
    box = ([0.0] * dim, [1.0] * dim)
    yield "chebykan-box", P.ChebyKANNet([dim, 16, 16, 1], degree=5, box=box, **f)
    yield "chebykan-tanh", P.ChebyKANNet([dim, 8, 8, 1], degree=4, **f)
    yield "chebykan-layernorm", P.ChebyKANNet([dim, 8, 8, 1], degree=3, box=box, layernorm=True, **f)
    yield "mlp-tanh", P.MLP([dim, 16, 16, 1], "tanh", box=box, **f)
    yield "mlp-sin-layernorm", P.MLP([dim, 12, 12, 2], "sin", layernorm=True, **f)
    acts = [nn.Sigmoid(), nn.SiLU(), nn.Softplus(beta=2.0, threshold=3.0), nn.GELU(), nn.ELU(0.7), nn.LeakyReLU(0.2), nn.ReLU(), nn.Tanh()]
    yield "activations", nn.Sequential(*[m for a in acts for m in (nn.Linear(dim if a is acts[0] else 6, 6, dtype=rbe.float64), a)],
                                       nn.LayerNorm(6, dtype=rbe.float64), nn.Linear(6, 1, dtype=rbe.float64))
    yield "hard-bc", P.OutputTransform(P.ChebyKANNet([dim, 8, 1], degree=4, box=box, **f), lambda x, u: x[:, 0:1] * (1.0 - x[:, 0:1]) * u)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_pinn_taylor_equals_nested_autograd(dim):
    x = pts(40, dim, 0.0, 1.0, seed=10 + dim)
    for name, model in _models(dim):
        for mode in ("gradient", "laplacian", "hessian_diag"):
            a = P.taylor(model, x, mode)
            b = P.taylor(model, x, mode, method="autograd")
            close(a.value, b.value, 1e-13)
            close(a.gradient, b.gradient)
            if mode != "gradient":
                close(a.laplacian, b.laplacian)
            if mode == "hessian_diag":
                close(a.hessian_diag, b.hessian_diag)


def test_pinn_layer_norm_with_affine_and_odd_shapes():
    rbe.manual_seed(5)
    ln = nn.LayerNorm(5, dtype=rbe.float64)
    with rbe.no_grad():
        ln.weight.copy_(t64([0.5, 1.5, -1.0, 2.0, 0.3]))
        ln.bias.copy_(t64([0.1, -0.2, 0.3, 0.0, 1.0]))
    model = nn.Sequential(nn.Linear(3, 5, dtype=rbe.float64), nn.Tanh(), ln, nn.Linear(5, 2, dtype=rbe.float64))
    x = pts(17, 3, seed=6)
    for mode in ("laplacian", "hessian_diag"):
        a, b = P.taylor(model, x, mode), P.taylor(model, x, mode, method="autograd")
        assert tuple(a.gradient.shape) == (17, 2, 3) and tuple(a.laplacian.shape) == (17, 2)
        close(a.laplacian, b.laplacian)
        close(a.gradient, b.gradient)


def test_pinn_user_module_whose_forward_runs_on_jets():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = P.ChebyKANNet([2, 6, 1], degree=3, box=([0, 0], [1, 1]), dtype=rbe.float64)

        def forward(self, x):
            return x[:, 0:1] * (1 - x[:, 0:1]) * x[:, 1:2] * self.body(x) + (x[:, 1:2] * 3.0).exp() / 5.0

    x = pts(11, 2, 0, 1)
    m = Net()
    a, b = P.taylor(m, x, "hessian_diag"), P.taylor(m, x, "hessian_diag", method="autograd")
    close(a.hessian_diag, b.hessian_diag)
    close(a.gradient, b.gradient)
    # jet arithmetic: division, powers, sqrt, log, cos
    f = lambda x: (x[:, 0:1] + 2.0).sqrt() / (1.0 + x[:, 1:2] ** 2) + (x[:, 0:1] + 3.0).log() * x[:, 1:2].cos() - 2.0 / (x[:, 0:1] + 4.0)
    for mode in ("laplacian", "hessian_diag"):
        close(P.taylor(f, x, mode).laplacian, P.taylor(lambda t: _plain(f, t), x, mode, method="autograd").laplacian)


def _plain(f, t):
    return f(t)


def test_pinn_float32_agrees_with_float64():
    rbe.manual_seed(2)
    net = P.ChebyKANNet([2, 16, 16, 1], degree=5, box=([0, 0], [1, 1]), dtype=rbe.float64)
    x = pts(64, 2, 0, 1)
    ref = P.laplacian(net, x)
    net32 = P.ChebyKANNet([2, 16, 16, 1], degree=5, box=([0, 0], [1, 1]), dtype=rbe.float32)
    net32.load_state_dict({k: v.float() for k, v in net.state_dict().items()})
    got = P.laplacian(net32, x.float())
    assert got.dtype == rbe.float32
    np.testing.assert_allclose(got.detach().numpy(), ref.detach().numpy(), rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


# ------------------------------------------------------------------ differentiable w.r.t. the parameters
def _loss(model, x, method):
    d = P.taylor(model, x, "hessian_diag", method=method)
    return (d.laplacian ** 2).mean() + (d.gradient[:, 0] * d.value[:, 0]).mean() + (d.hessian_diag[:, -1] ** 2).mean()


@pytest.mark.parametrize("kind", ["chebykan", "mlp-layernorm"])
def test_pinn_parameter_gradients_by_finite_differences(kind):
    rbe.manual_seed(3)
    if kind == "chebykan":
        model = P.ChebyKANNet([2, 5, 4, 1], degree=4, box=([0, 0], [1, 1]), dtype=rbe.float64)
    else:
        model = P.MLP([2, 6, 6, 1], "tanh", layernorm=True, dtype=rbe.float64)
    x = pts(9, 2, 0, 1, seed=4)
    params = list(model.parameters())
    scale = float(_loss(model, x, "taylor"))  # compare on a loss of order 1 (finite differences lose digits on 3e7)
    grads = [g / scale for g in rbe.autograd.grad(_loss(model, x, "taylor"), params)]
    ref = [g / scale for g in rbe.autograd.grad(_loss(model, x, "autograd"), params)]
    for g, r in zip(grads, ref):
        close(g, r, 1e-9)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for p, g in zip(params, grads):
        flat = p.detach().numpy().reshape(-1)
        for e in rng.choice(flat.size, size=min(4, flat.size), replace=False):
            old = flat[e]
            with rbe.no_grad():
                flat[e] = old + eps
                lp = float(_loss(model, x, "taylor")) / scale
                flat[e] = old - eps
                lm = float(_loss(model, x, "taylor")) / scale
                flat[e] = old
            fd = (lp - lm) / (2 * eps)
            an = float(g.reshape(-1)[int(e)])
            assert abs(an - fd) <= 1e-6 * max(1.0, abs(fd)), (kind, e, an, fd)


def test_pinn_derivatives_with_respect_to_x_too():
    # the Laplacian's own gradient with respect to x (a third derivative) matches nested reverse mode
    rbe.manual_seed(4)
    net = P.ChebyKANNet([2, 6, 1], degree=4, box=([0, 0], [1, 1]), dtype=rbe.float64)
    x0 = pts(7, 2, 0, 1)
    out = []
    for method in ("taylor", "autograd"):
        x = x0.detach().clone().requires_grad_(True)
        lap = P.laplacian(net, x, method=method)
        (gx,) = rbe.autograd.grad((lap ** 2).sum(), x)
        out.append(gx)
    close(out[0], out[1], 1e-9)


# ------------------------------------------------------------------ errors
def test_pinn_taylor_errors_are_clear():
    x = pts(4, 2)
    bn = nn.Sequential(nn.Linear(2, 3, dtype=rbe.float64), nn.BatchNorm1d(3, dtype=rbe.float64))
    with pytest.raises(P.TaylorModeError, match="BatchNorm1d"):
        P.laplacian(bn, x)
    drop = nn.Sequential(nn.Linear(2, 3, dtype=rbe.float64), nn.Dropout(0.5))
    with pytest.raises(P.TaylorModeError, match="model.eval"):
        P.laplacian(drop, x)
    drop.eval()
    P.laplacian(drop, x)
    with pytest.raises(rbe.errors.ShapeError, match=r"x must have shape \(N, d\)"):
        P.laplacian(drop, x[:, 0])
    with pytest.raises(rbe.errors.ArgumentError, match="mode must be one of"):
        P.taylor(drop, x, "curl")
    with pytest.raises(rbe.errors.ArgumentError, match="method must be"):
        P.taylor(drop, x, method="jax")
    with pytest.raises(rbe.errors.DTypeError, match="must be float32 or float64"):
        P.laplacian(drop, rbe.zeros(3, 2, dtype=rbe.int64))
    # auto falls back to nested reverse mode, which works for row-wise models
    bn.eval()
    close(P.taylor(bn, x, method="auto").laplacian, P.taylor(bn, x, method="autograd").laplacian, 0)
    with pytest.raises(P.TaylorModeError, match="column"):
        P.laplacian(lambda x: x[0], x)
    with pytest.raises(P.TaylorModeError, match="returned Tensor"):
        P.laplacian(lambda x: x.value, x)


def test_pinn_errors_are_rbe_errors():
    # every error the front-end raises itself is an rbe.errors class (and the builtin one users expect)
    assert issubclass(P.TaylorModeError, rbe.errors.UnsupportedError) and issubclass(P.TaylorModeError, TypeError)
    assert issubclass(P.NonFiniteLossError, rbe.errors.RbeError) and issubclass(P.NonFiniteLossError, FloatingPointError)
    net = P.ChebyKANNet([2, 3, 1], degree=2, dtype=rbe.float64)
    with pytest.raises(P.ArgumentTypeError, match="OutputTransform: fn must be callable, got int"):
        P.OutputTransform(net, 3)
    with pytest.raises(P.ArgumentTypeError, match="x must be a tensor"):
        P.laplacian(net, [[0.0, 1.0]])
    with pytest.raises(P.ArgumentTypeError, match="widths must be a sequence of ints"):
        P.ChebyKANNet(["a", 1])
    with pytest.raises(rbe.errors.RbeIndexError, match="column 5 is out of range for 2 features"):
        P.laplacian(lambda j: j[:, 5], pts(3, 2))
    with pytest.raises(rbe.errors.ShapeError, match="input of 3 features for in_features = 2"):
        P.laplacian(net, pts(3, 3))
