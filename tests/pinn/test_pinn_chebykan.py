"""The ChebyKAN ops and layer: the basis and its derivatives against NumPy's
chebval/chebder, the fused layer and its Taylor form through the harness
(fused vs a plain-op composite, derivatives to third order, 1 vs 2 threads),
the create_graph backward against the fused one, the layer module (maps,
boxes, inits, state) and its errors."""
import math

import numpy as np
import numpy.polynomial.chebyshev as C
import pytest

import rbe
import rbe.pinn as P
from rbe.pinn import functional as PF
from rbe.testing import check_fused_op, check_thread_bits

from conftest import t64


# ------------------------------------------------------------------ NumPy oracles
@pytest.mark.parametrize("degree", [0, 1, 2, 5, 9])
@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_pinn_basis_matches_numpy_chebval_chebder(degree, order):
    z = np.linspace(-1, 1, 41)
    got = PF.cheb_basis(t64(z), degree, order).numpy()
    assert got.shape == (41, degree + 1)
    for k in range(degree + 1):
        c = np.zeros(k + 1)
        c[k] = 1.0
        want = C.chebval(z, C.chebder(c, order)) if order <= k else np.zeros_like(z)
        np.testing.assert_allclose(got[:, k], want, rtol=1e-12, atol=1e-10 * max(1.0, float(np.abs(want).max(initial=0.0))))


def test_pinn_basis_outside_the_interval_and_float32():
    z = np.array([-2.5, -1.3, 1.7, 3.0])
    got = PF.cheb_basis(t64(z), 6, 1).numpy()
    for k in range(7):
        c = np.zeros(k + 1)
        c[k] = 1
        np.testing.assert_allclose(got[:, k], C.chebval(z, C.chebder(c)), rtol=1e-12)
    z32 = rbe.from_numpy(np.linspace(-1, 1, 9).astype(np.float32))
    b = PF.cheb_basis(z32, 5)
    assert b.dtype == rbe.float32
    np.testing.assert_allclose(b.numpy(), np.stack([C.chebval(np.linspace(-1, 1, 9), np.eye(6)[k]) for k in range(6)], 1), atol=2e-6)


def _layer_numpy(x, coeffs, map_="tanh", scale=None, shift=None):
    z = np.tanh(x) if map_ == "tanh" else x * np.asarray(scale) + np.asarray(shift)
    k1 = coeffs.shape[2]
    basis = np.stack([C.chebval(z, np.eye(k1)[k]) for k in range(k1)], -1)  # (N, I, K1)
    return np.einsum("nik,iok->no", basis, coeffs)


@pytest.mark.parametrize("map_", ["tanh", "affine"])
def test_pinn_layer_matches_a_numpy_reference(map_):
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 3, (50, 3))
    c = rng.normal(size=(3, 4, 6))
    scale, shift = PF.box_map([-2, -2, -2], [3, 3, 3]) if map_ == "affine" else (None, None)
    y = PF.chebykan(t64(x), t64(c), map_, scale, shift).numpy()
    np.testing.assert_allclose(y, _layer_numpy(x, c, map_, scale, shift), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ the harness
def _plain_basis(z, degree, orders):
    one, zero = z * 0.0 + 1.0, z * 0.0
    rows = []
    for m in range(orders):
        row = []
        for n in range(degree + 1):
            if n == 0:
                v = one if m == 0 else zero
            elif n == 1:
                v = z if m == 0 else (one if m == 1 else zero)
            else:
                v = 2.0 * z * row[n - 1] - row[n - 2]
                if m > 0:
                    v = v + (2.0 * m) * rows[m - 1][n - 1]
            row.append(v)
        rows.append(row)
    return [rbe.stack(r, -1) for r in rows]


def _plain_g(x, map_, scale, shift, degree, orders):
    if map_ == "tanh":
        z = x.tanh()
        p1 = 1.0 - z * z
        p2 = -2.0 * z * p1
    else:
        s, b = t64(scale).to(x.dtype), t64(shift).to(x.dtype)
        z = x * s + b
        p1 = x * 0.0 + s
        p2 = x * 0.0
    b = _plain_basis(z, degree, orders)
    p1, p2 = p1.unsqueeze(-1), p2.unsqueeze(-1)
    g = [b[0]]
    if orders > 1:
        g.append(b[1] * p1)
    if orders > 2:
        g.append(b[2] * p1 * p1 + b[1] * p2)
    return g


def _contract(p, c):
    nd = p.ndim
    return (p.unsqueeze(-2) * c).sum((nd - 2, nd))


def _plain_layer(x, c, map_, scale, shift):
    return _contract(_plain_g(x, map_, scale, shift, c.shape[2] - 1, 1)[0], c)


def _plain_taylor(x, j, s, c, mode, map_, scale, shift):
    n, i = x.shape
    g = _plain_g(x, map_, scale, shift, c.shape[2] - 1, 2 if mode == "gradient" else 3)
    if j is None:
        j = rbe.eye(i, dtype=x.dtype).unsqueeze(0).expand(n, i, i)
    ju = j.unsqueeze(-1)
    g1u = g[1].unsqueeze(1)
    out = [_contract(g[0], c), _contract(g1u * ju, c)]
    if mode == "hessian_diag":
        p = g[2].unsqueeze(1) * ju * ju
        if s is not None:
            p = p + g1u * s.unsqueeze(-1)
        out.append(_contract(p, c))
    elif mode == "laplacian":
        q = (j * j).sum(1).unsqueeze(-1)
        p = g[2] * q
        if s is not None:
            p = p + g[1] * s.unsqueeze(-1)
        out.append(_contract(p, c))
    return out


MAPS = [("tanh", None, None), ("affine", *PF.box_map([-1.0, -2.0], [2.0, 1.5]))]


@pytest.mark.parametrize("map_,scale,shift", MAPS, ids=["tanh", "affine"])
def test_pinn_layer_through_the_harness_to_third_order(map_, scale, shift):
    rng = np.random.default_rng(1)
    x, c = t64(rng.uniform(-1.2, 1.3, (3, 2))), t64(rng.uniform(-0.6, 0.6, (2, 2, 4)))
    fused = lambda x, c: PF.chebykan(x, c, map_, scale, shift)
    composite = lambda x, c: _plain_layer(x, c, map_, scale, shift)
    check_fused_op(fused, composite, [x, c], order=3, eps=1e-5)
    check_fused_op(fused, composite, [x.float(), c.float()], order=1, fused_rtol=1e-4, fused_atol=1e-5)


CASES = [("gradient", False, False), ("gradient", True, False), ("laplacian", False, False), ("laplacian", True, True),
         ("hessian_diag", False, False), ("hessian_diag", True, True)]


@pytest.mark.parametrize("map_,scale,shift", MAPS, ids=["tanh", "affine"])
@pytest.mark.parametrize("mode,given,with_second", CASES)
def test_pinn_taylor_layer_through_the_harness_to_third_order(map_, scale, shift, mode, given, with_second):
    rng = np.random.default_rng(2)
    n, i, d = 2, 2, 2
    inputs = [t64(rng.uniform(-1.2, 1.3, (n, i)))]
    if given:
        inputs.append(t64(rng.uniform(-1, 1, (n, d, i))))
    if with_second:
        inputs.append(t64(rng.uniform(-1, 1, (n, i) if mode == "laplacian" else (n, d, i))))
    inputs.append(t64(rng.uniform(-0.6, 0.6, (i, 2, 3))))

    def split(args):
        args = list(args)
        x, c = args[0], args[-1]
        j = args[1] if given else None
        s = args[2] if with_second else None
        return x, j, s, c

    def fused(*args):
        x, j, s, c = split(args)
        y, yj, ys = PF.chebykan_taylor(x, j, s, c, mode, map_, scale, shift)
        return [y, yj] + ([ys] if ys is not None else [])

    def composite(*args):
        x, j, s, c = split(args)
        return _plain_taylor(x, j, s, c, mode, map_, scale, shift)

    check_fused_op(fused, composite, inputs, order=3, eps=1e-5)


def test_pinn_create_graph_backward_equals_the_fused_backward():
    # the harness checks each order against its own path; compare the two paths' first derivatives
    rng = np.random.default_rng(3)
    x0, j0, s0 = rng.uniform(-1, 1, (4, 3)), rng.uniform(-1, 1, (4, 2, 3)), rng.uniform(-1, 1, (4, 2, 3))
    c0 = rng.normal(size=(3, 2, 5))
    w = [t64(rng.normal(size=s)) for s in ((4, 2), (4, 2, 2), (4, 2, 2))]
    grads = []
    for create_graph in (False, True):
        leaves = [t64(a).requires_grad_(True) for a in (x0, j0, s0, c0)]
        outs = PF.chebykan_taylor(leaves[0], leaves[1], leaves[2], leaves[3], "hessian_diag")
        loss = sum((o * wk).sum() for o, wk in zip(outs, w))
        grads.append([g.detach().numpy() for g in rbe.autograd.grad(loss, leaves, create_graph=create_graph)])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_pinn_thread_counts_give_identical_bits():
    rng = np.random.default_rng(4)
    x, c = t64(rng.uniform(-1, 1, (3000, 16))), t64(rng.normal(size=(16, 16, 6)) * 0.2)
    check_thread_bits(lambda x, c: PF.chebykan(x, c), [x, c])
    check_thread_bits(lambda x, c: PF.chebykan_taylor(x, None, None, c, "laplacian"), [x, c])
    check_thread_bits(lambda x, c: PF.chebykan_taylor(x, None, None, c, "hessian_diag"), [x[:1500], c])
    check_thread_bits(lambda x, c: [PF.chebykan(x, c)], [x.float(), c.float()])
    # only the coefficients differentiable: the layer keeps its basis matrices for the backward
    check_thread_bits(lambda x, c: PF.chebykan_taylor(x, None, None, c, "laplacian"), [x, c], diff=[False, True])
    j, s = t64(rng.uniform(-1, 1, (3000, 2, 16))), t64(rng.uniform(-1, 1, (3000, 16)))
    check_thread_bits(lambda x, j, s, c: PF.chebykan_taylor(x, j, s, c, "laplacian"), [x, j, s, c], diff=[False, False, False, True])
    check_thread_bits(lambda x, j, s, c: PF.chebykan_taylor(x, j, s, c, "laplacian"), [x, j, s, c])


# ------------------------------------------------------------------ the module
def test_pinn_module_maps_and_boxes(f64):
    rbe.manual_seed(0)
    lay = P.ChebyKAN(2, 3, degree=4, input_map="affine", box=([0.0, -6.0], [1.0, 6.0]))
    assert tuple(lay.coeffs.shape) == (2, 3, 5)
    x = rbe.rand(7, 2) * rbe.tensor([1.0, 12.0]) - rbe.tensor([0.0, 6.0])
    scale, shift = PF.box_map([0.0, -6.0], [1.0, 6.0])
    np.testing.assert_allclose(scale, [2.0, 2.0 / 12.0])
    want = _layer_numpy(x.numpy(), lay.coeffs.detach().numpy(), "affine", scale, shift)
    np.testing.assert_allclose(lay(x).detach().numpy(), want, rtol=1e-12, atol=1e-13)
    ident = P.ChebyKAN(2, 3, degree=2, input_map="identity")
    xi = rbe.rand(4, 2) * 2 - 1
    np.testing.assert_allclose(ident(xi).detach().numpy(), _layer_numpy(xi.numpy(), ident.coeffs.detach().numpy(), "affine", [1, 1], [0, 0]), rtol=1e-12, atol=1e-14)
    # leading dims
    assert tuple(lay(rbe.rand(2, 5, 2)).shape) == (2, 5, 3)
    # the chain-rule factor of the box, per axis: with z = s x + c, s = 2 / (hi - lo),
    # du/dx_j = s_j dg/dz_j and d2u/dx_j2 = s_j^2 d2g/dz_j2, where g is the same layer on [-1, 1]
    lo, hi = [0.0, -6.0], [1.0, 6.0]
    boxed = P.ChebyKAN(2, 1, 4, "affine", (lo, hi))
    unit = P.ChebyKAN(2, 1, 4, "identity")
    with rbe.no_grad():
        unit.coeffs.copy_(boxed.coeffs.detach())
    s_ = np.array([2.0 / (hi[0] - lo[0]), 2.0 / (hi[1] - lo[1])])  # 2 and 1/6: a different factor per axis
    xb = rbe.rand(9, 2) * rbe.tensor([1.0, 12.0]) - rbe.tensor([0.0, 6.0])
    zb = rbe.from_numpy(np.ascontiguousarray(xb.numpy() * s_ + (-1.0 - np.array(lo) * s_)))
    assert np.all(np.abs(zb.numpy()) <= 1.0)
    g_box = P.gradient(boxed, xb).detach().numpy().reshape(9, 2)
    g_unit = P.gradient(unit, zb).detach().numpy().reshape(9, 2)
    np.testing.assert_allclose(g_box, g_unit * s_, rtol=1e-12, atol=1e-13)
    h_box = P.hessian_diag(boxed, xb).detach().numpy().reshape(9, 2)
    h_unit = P.hessian_diag(unit, zb).detach().numpy().reshape(9, 2)
    np.testing.assert_allclose(h_box, h_unit * s_ ** 2, rtol=1e-12, atol=1e-13)
    lap_box = P.laplacian(boxed, xb).detach().numpy().reshape(9)
    np.testing.assert_allclose(lap_box, (h_unit * s_ ** 2).sum(axis=1), rtol=1e-12, atol=1e-13)
    # the factor matters: without it the Laplacian would be the unit layer's (not equal here)
    assert not np.allclose(lap_box, h_unit.sum(axis=1), rtol=1e-3)
    assert "box=" in repr(lay) and "input_map='affine'" in repr(lay)


def test_pinn_module_errors():
    with pytest.raises(rbe.errors.ArgumentError, match="needs box"):
        P.ChebyKAN(2, 3, input_map="affine")
    with pytest.raises(rbe.errors.ArgumentError, match="input_map must be one of"):
        P.ChebyKAN(2, 3, input_map="relu")
    with pytest.raises(rbe.errors.ArgumentError, match="box is only used"):
        P.ChebyKAN(2, 3, box=(0, 1))
    with pytest.raises(rbe.errors.ArgumentError, match="axis 1 must have finite bounds"):
        P.ChebyKAN(2, 3, input_map="affine", box=([0, 1], [1, 1]))
    with pytest.raises(rbe.errors.ShapeError, match="box lo has 3 values for 2"):
        P.ChebyKAN(2, 3, input_map="affine", box=([0, 0, 0], 1))
    with pytest.raises(rbe.errors.ArgumentError, match="degree must be >= 0"):
        P.ChebyKAN(2, 3, degree=-1)
    with pytest.raises(rbe.errors.ArgumentError, match="init must be one of"):
        P.ChebyKAN(2, 3, init="he")
    lay = P.ChebyKAN(3, 2, dtype=rbe.float64)
    with pytest.raises(rbe.errors.ShapeError, match=r"does not end in in_features = 3"):
        lay(rbe.zeros(4, 2, dtype=rbe.float64))
    with pytest.raises(rbe.errors.DTypeError, match="input has dtype float32 but coeffs have float64"):
        lay(rbe.zeros(4, 3, dtype=rbe.float32))
    with pytest.raises(RuntimeError):  # ShapeError is a RuntimeError, as torch's
        PF.chebykan_taylor(rbe.zeros(4, 3, dtype=rbe.float64), rbe.zeros(4, 2, 2, dtype=rbe.float64), None, lay.coeffs, "laplacian")
    with pytest.raises(rbe.errors.ArgumentError, match="mode must be one of"):
        PF.chebykan_taylor(rbe.zeros(4, 3, dtype=rbe.float64), None, None, lay.coeffs, "curl")
    with pytest.raises(rbe.errors.ShapeError, match=r"second must have shape \[4, 2, 3\]|second must have shape \(4, 2, 3\)"):
        PF.chebykan_taylor(rbe.zeros(4, 3, dtype=rbe.float64), rbe.zeros(4, 2, 3, dtype=rbe.float64), rbe.zeros(4, 3, dtype=rbe.float64), lay.coeffs, "hessian_diag")
    with pytest.raises(rbe.errors.ShapeError, match="scale has 2 values for 3 input features"):
        PF.chebykan(rbe.zeros(4, 3, dtype=rbe.float64), lay.coeffs, "affine", [1.0, 1.0], [0.0])
    with pytest.raises(rbe.errors.ArgumentError, match="cheb_basis: degree and order must be >= 0"):
        PF.cheb_basis(rbe.zeros(3), -1)
    # a failed call changes nothing
    before = lay.coeffs.detach().clone()
    with pytest.raises(rbe.errors.ShapeError):
        lay(rbe.zeros(4, 5, dtype=rbe.float64))
    assert rbe.equal(before, lay.coeffs.detach())


@pytest.mark.parametrize("scheme", P.INITS)
def test_pinn_inits_follow_their_definitions(scheme):
    rbe.manual_seed(1)
    i, o, k1 = 16, 24, 6
    c = P.ChebyKAN(i, o, degree=k1 - 1, init=scheme, dtype=rbe.float64).coeffs.detach().numpy()
    fan_in = i * k1
    if scheme == "xavier":
        assert abs(c.std() / math.sqrt(2 / (fan_in + o)) - 1) < 0.08
    elif scheme == "kaiming":
        assert abs(c.std() / math.sqrt(2 / fan_in) - 1) < 0.08
    elif scheme == "small_random":
        assert abs(c.std() / (1 / fan_in) - 1) < 0.08
    elif scheme == "orthogonal":
        m = c.transpose(1, 0, 2).reshape(o, i * k1)
        np.testing.assert_allclose(m @ m.T, np.eye(o), atol=1e-12)
    else:
        m2 = [1.0] + [0.5 * (1 - 1 / (4 * k * k - 1)) for k in range(1, k1)]
        for k in range(k1):
            want = math.sqrt(2 / ((i + o) * k1 * m2[k]))
            assert abs(c[:, :, k].std() / want - 1) < 0.15, (k, c[:, :, k].std(), want)
        # output variance about 2 in / (in + out) for inputs uniform on [-1, 1]
        z = np.random.default_rng(0).uniform(-1, 1, (20000, i))
        y = _layer_numpy(z, c, "affine", [1.0] * i, [0.0] * i)
        assert abs(y.var() / (2 * i / (i + o)) - 1) < 0.25


def test_pinn_state_dict_round_trip_and_lazy_export(tmp_path):
    import subprocess
    import sys

    net = P.ChebyKANNet([2, 5, 1], degree=3, box=([0, 0], [1, 1]), layernorm=True, dtype=rbe.float64)
    p = tmp_path / "m.safetensors"
    rbe.save(net.state_dict(), str(p))
    net2 = P.ChebyKANNet([2, 5, 1], degree=3, box=([0, 0], [1, 1]), layernorm=True, dtype=rbe.float64)
    net2.load_state_dict(rbe.load(str(p)))
    x = rbe.rand(6, 2, dtype=rbe.float64)
    assert rbe.equal(net(x), net2(x))
    assert rbe.nn.ChebyKAN is P.ChebyKAN
    code = "import sys, rbe, rbe.nn; assert 'rbe.pinn' not in sys.modules; rbe.nn.ChebyKAN; assert 'rbe.pinn' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
