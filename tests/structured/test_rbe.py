"""RBE structured weights: the tests of section 8 of the specification
(docs/rbe-spec.md), against independent oracles: central finite differences
in float64, a torch implementation of the generator written straight from the
definition, scipy's DCT, and closed forms."""
import math

import numpy as np
import pytest
import torch
from scipy.fft import dct

import rbe
from rbe.autograd import gradcheck, gradgradcheck
from rbe._core import structured as S
from rbe.structured import RBELinear


# ---------------------------------------------------------------- oracles
def dct_matrix(n):
    return dct(np.eye(n), norm="ortho", axis=0)  # row u = basis vector u


def torch_generate(atoms, tracks, res_vals, res_idx, out, inp, br, bc, kappa):
    """W from spec section 2, written with torch ops (differentiable)."""
    nbr, nbc = -(-out // br), -(-inp // bc)
    x = torch.tensor([(2 * j + 1) / bc - 1 for j in range(bc)], dtype=atoms.dtype)
    y = torch.tensor([(2 * i + 1) / br - 1 for i in range(br)], dtype=atoms.dtype)
    A, phi, px, py = (atoms[..., c, None, None] for c in range(4))
    al = tracks[..., None, None]
    u = 2 * kappa * px * x + 2 * kappa * py * y[:, None] + phi
    blk = (A * ((1 - al) * torch.sin(u) + al * torch.tanh(u))).sum(1)
    if res_vals is not None:
        Dr = torch.tensor(dct_matrix(br), dtype=atoms.dtype)
        Dc = torch.tensor(dct_matrix(bc), dtype=atoms.dtype)
        coef = torch.zeros(blk.shape[0], br * bc, dtype=atoms.dtype).scatter_add(1, res_idx, res_vals)
        blk = blk + Dr.T @ coef.reshape(-1, br, bc) @ Dc
    W = blk.reshape(nbr, nbc, br, bc).permute(0, 2, 1, 3).reshape(nbr * br, nbc * bc)
    return W[:out, :inp]


def random_params(rng, out, inp, br, bc, J, K, tracks="mixed", pscale=0.3):
    nb = -(-out // br) * -(-inp // bc)
    atoms = rng.normal(size=(nb, J, 4))
    atoms[..., 2:] *= pscale
    if tracks == "mixed":
        tr = rng.integers(0, 2, size=(nb, J)).astype(float)
    else:
        tr = np.full((nb, J), {"sin": 0.0, "tanh": 1.0}[tracks])
    rv = rng.normal(size=(nb, K))
    ri = np.stack([rng.choice(br * bc, K, replace=False) for _ in range(nb)]) if K else np.zeros((nb, 0), np.int64)
    return atoms, tr, rv, ri


SHAPES = [  # out, in, br, bc, J, K
    (13, 10, 5, 4, 3, 2),  # edge blocks in both directions, rectangular blocks
    (8, 8, 8, 8, 2, 0),  # one block, no residual
    (6, 17, 3, 8, 1, 5),
]


# ------------------------------------------------- generator and its VJP (1)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("tracks", ["sin", "tanh", "mixed"])
def test_generate_and_vjp_match_torch_definition(shape, tracks):
    out, inp, br, bc, J, K = shape
    rng = np.random.default_rng(sum(shape) + len(tracks))
    atoms, tr, rv, ri = random_params(rng, out, inp, br, bc, J, K, tracks)
    kappa = S.default_kappa(br, bc)
    lay = (out, inp, br, bc, kappa)
    tt = [torch.tensor(a, requires_grad=True) for a in (atoms, tr, rv)]
    Wt = torch_generate(tt[0], tt[1], tt[2] if K else None, torch.tensor(ri), out, inp, br, bc, kappa)
    G = rng.normal(size=(out, inp))
    (Wt * torch.tensor(G)).sum().backward()
    rt = [rbe.tensor(a, requires_grad=True) for a in (atoms, tr, rv)]
    W = S.generate(lay, rt[0], rt[1], rt[2] if K else None, rbe.tensor(ri) if K else None)
    np.testing.assert_allclose(W.detach().numpy(), Wt.detach().numpy(), rtol=0, atol=1e-12)
    (W * rbe.tensor(G)).sum().backward()
    for a, b in zip(rt[: 3 if K else 2], tt):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("r", [1e-3, 0.3, 0.95, 0.999])
@pytest.mark.parametrize("track", [0.0, 1.0])
def test_vjp_central_differences_tangent_and_polar_charts(r, track):
    """d/dA, d/dphi, d/dp and d/d(r, theta) of L = sum(G * W) against central
    differences in float64, with the spec's closed forms for dr and dtheta."""
    out, inp, br, bc = 7, 6, 7, 6
    kappa = S.default_kappa(br, bc)
    lay = (out, inp, br, bc, kappa)
    rng = np.random.default_rng(int(r * 1000) + int(track))
    G = rbe.tensor(rng.normal(size=(out, inp)))
    theta = 0.7
    tr = rbe.tensor([[track]], dtype=rbe.float64)

    def loss_tangent(a):
        return (S.generate(lay, a.reshape(1, 1, 4), tr) * G).sum()

    def fields(rr, th):
        n = 0.5 * (math.log1p(rr) - math.log1p(-rr))
        return np.array([0.8, 0.3, n * math.cos(th), n * math.sin(th)])

    a = rbe.tensor(fields(r, theta), requires_grad=True)
    L = loss_tangent(a)
    (g,) = rbe.autograd.grad(L, [a])
    g = g.numpy()
    h = 1e-6
    for c in range(4):
        e = np.zeros(4)
        e[c] = h
        fd = (loss_tangent(rbe.tensor(fields(r, theta) + e)).item() - loss_tangent(rbe.tensor(fields(r, theta) - e)).item()) / (2 * h)
        assert abs(g[c] - fd) <= 1e-6 * (1 + abs(fd)), (c, g[c], fd)
    # polar chart: closed forms from dk = dp / (2 kappa)
    dkx, dky = g[2] / (2 * kappa), g[3] / (2 * kappa)
    art = 0.5 * (math.log1p(r) - math.log1p(-r))
    dr = 2 * kappa / ((1 - r) * (1 + r)) * (dkx * math.cos(theta) + dky * math.sin(theta))
    dth = 2 * kappa * art * (-dkx * math.sin(theta) + dky * math.cos(theta))
    via = lambda rr, th: loss_tangent(rbe.tensor(fields(rr, th))).item()
    hr = 1e-6 * (1 - r)
    fd_r = (via(r + hr, theta) - via(r - hr, theta)) / (2 * hr)
    fd_t = (via(r, theta + h) - via(r, theta - h)) / (2 * h)
    assert abs(dr - fd_r) <= 1e-5 * (1 + abs(fd_r)), (dr, fd_r)
    # at tiny r the theta-gradient cancels: absolute floor
    assert abs(dth - fd_t) <= 1e-6 * (1 + abs(fd_t)) + 1e-8, (dth, fd_t)


def test_generate_supports_second_order():
    out, inp, br, bc, J, K = 6, 7, 4, 4, 2, 2
    rng = np.random.default_rng(3)
    atoms, tr, rv, ri = random_params(rng, out, inp, br, bc, J, K)
    lay = (out, inp, br, bc, S.default_kappa(br, bc))
    idx = rbe.tensor(ri)
    xs = (rbe.tensor(atoms, requires_grad=True), rbe.tensor(tr, requires_grad=True), rbe.tensor(rv, requires_grad=True))
    f = lambda a, t, v: S.generate(lay, a, t, v, idx).tanh()
    assert gradcheck(f, xs)
    assert gradgradcheck(f, xs)


# ------------------------------------------------------- charts (2), export
def test_both_charts_give_the_same_matrix():
    rbe.manual_seed(5)
    layer = RBELinear(40, 24, block=(8, 8), atoms=3, residual=2, track="mixed", dtype=rbe.float64)
    W = layer.to_dense().numpy()
    Wp = RBELinear.from_packed(layer.to_packed("polar"), dtype=rbe.float64).to_dense().numpy()
    Wt = RBELinear.from_packed(layer.to_packed("tangent"), dtype=rbe.float64).to_dense().numpy()
    scale = np.abs(W).max()
    # the two charts store the same atom up to f32 rounding of the frequency
    np.testing.assert_allclose(Wp, Wt, atol=1e-5 * scale)
    # and both are the continuous layer up to the export's quantisation
    np.testing.assert_allclose(Wp, W, atol=3e-3 * scale)
    assert not np.array_equal(layer.to_packed("polar")["records"], layer.to_packed("tangent")["records"])


def test_export_error_bounds():
    """Phase within pi/2^20, amplitude within 2^(1/4096)-1 relative, tangent
    frequencies exact in f32."""
    rng = np.random.default_rng(11)
    n = 5000
    f = np.stack([rng.choice([-1, 1], n) * np.exp(rng.uniform(-8, 8, n)), rng.uniform(-3, 3, n), rng.normal(size=n), rng.normal(size=n)], 1)
    raw = S.pack(f.reshape(-1).tolist(), [0] * n, "tangent")
    g, _ = S.unpack(raw)
    g = np.array(g).reshape(n, 4)
    dphi = np.angle(np.exp(1j * (g[:, 1] - f[:, 1])))
    assert np.abs(dphi).max() <= math.pi / 2**20 + 1e-15
    assert np.all(np.abs(g[:, 0] / f[:, 0] - 1) <= 2 ** (1 / 4096) - 1 + 1e-15)
    assert np.all(np.sign(g[:, 0]) == np.sign(f[:, 0]))
    np.testing.assert_array_equal(g[:, 2:], f[:, 2:].astype(np.float32).astype(np.float64))


# ------------------------------------------------- rank-2 path (3), linear (5)
@pytest.mark.parametrize("dtype,tol", [(rbe.float64, 1e-11), (rbe.float32, 2e-5)])
@pytest.mark.parametrize("tracks", ["sin", "mixed", "tanh"])
# batches up to 8 rows take the streaming kernel, larger ones the GEMM kernel
@pytest.mark.parametrize("lead", [(1,), (3,), (2, 5)])
def test_fused_linear_equals_materialised_path(dtype, tol, tracks, lead):
    out, inp, br, bc, J, K = 29, 37, 8, 8, 3, 4
    rng = np.random.default_rng(7)
    atoms, tr, rv, ri = random_params(rng, out, inp, br, bc, J, K, tracks)
    lay = (out, inp, br, bc, S.default_kappa(br, bc))
    idx = rbe.tensor(ri)
    X = rng.normal(size=lead + (inp,))
    GY = rng.normal(size=lead + (out,))

    def run(fused):
        ps = [rbe.tensor(a, dtype=dtype, requires_grad=True) for a in (atoms, tr, rv)]
        x = rbe.tensor(X, dtype=dtype, requires_grad=True)
        if fused:
            y = S.linear(x, lay, ps[0], ps[1], ps[2], idx)
        else:
            y = x @ S.generate(lay, ps[0], ps[1], ps[2], idx).T
        (y * rbe.tensor(GY, dtype=dtype)).sum().backward()
        return [y.detach().numpy(), x.grad.numpy()] + [p.grad.numpy() for p in ps]

    for a, b in zip(run(True), run(False)):
        scale = max(1.0, np.abs(b).max())
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale)


def test_linear_layer_gradcheck_and_gradgradcheck():
    rbe.manual_seed(2)
    layer = RBELinear(11, 9, block=(4, 5), atoms=2, residual=3, track="mixed", dtype=rbe.float64)
    layer.track_grad_enabled = True
    x = rbe.randn(3, 11, dtype=rbe.float64, requires_grad=True)
    f = lambda x, a, t, v, b: S.linear(x, layer.layout, a, t, v, layer.residual_index, b)
    xs = (x, layer.atoms, layer.tracks, layer.residual, layer.bias)
    assert gradcheck(f, xs)
    assert gradgradcheck(lambda x, a, v: f(x, a, layer.tracks, v, layer.bias), (x, layer.atoms, layer.residual))


def test_rbelinear_matches_dense_linear_and_trains():
    rbe.manual_seed(0)
    layer = RBELinear(50, 30, block=(16, 16), atoms=3, residual=4, track="mixed")
    x = rbe.randn(8, 50)
    dense = x.numpy() @ layer.to_dense().numpy().T + layer.bias.detach().numpy()
    np.testing.assert_allclose(layer(x).detach().numpy(), dense, atol=2e-5)
    # inside an ordinary model with an ordinary optimiser
    model = rbe.nn.Sequential(layer, rbe.nn.Tanh(), rbe.nn.Linear(30, 1))
    target = (x[:, :1] * 2).sin()
    opt = rbe.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = rbe.nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]


def test_bad_inputs_raise_clear_errors():
    layer = RBELinear(10, 6, block=4, atoms=2)
    with pytest.raises(ValueError, match="in_features = 10"):
        layer(rbe.randn(3, 9))
    with pytest.raises(TypeError, match="dtype"):
        layer(rbe.randn(3, 10, dtype=rbe.float64))
    lay = layer.layout
    with pytest.raises(ValueError, match=r"\(n_blocks, J, 4\)"):
        S.generate(lay, rbe.zeros(5, 2, 4), rbe.zeros(5, 2))
    with pytest.raises(IndexError, match="out of range"):
        S.generate(lay, layer.atoms, layer.tracks, rbe.zeros(6, 1), rbe.tensor([[16]] * 6))
    with pytest.raises(ValueError, match="together"):
        S.generate(lay, layer.atoms, layer.tracks, rbe.zeros(6, 1))
    with pytest.raises(ValueError, match="block"):
        RBELinear(10, 6, block=(0, 4))
    with pytest.raises(ValueError, match="track"):
        RBELinear(10, 6, track="cos")
    with pytest.raises(ValueError, match="NaN"):
        RBELinear.from_dense(np.full((4, 4), np.nan), block=4, atoms=1)


# ------------------------------------------------------------- residual (4)
def test_residual_is_the_inverse_dct_of_its_coefficients():
    br, bc = 6, 5
    rng = np.random.default_rng(4)
    C = rng.normal(size=(br, bc))
    # all coefficients: the block is exactly D_r^T C D_c (round trip)
    lay = (br, bc, br, bc, 1.0)
    W = S.generate(lay, rbe.zeros(1, 0, 4, dtype=rbe.float64), rbe.zeros(1, 0, dtype=rbe.float64),
                           rbe.tensor(C.reshape(1, -1)), rbe.tensor(np.arange(br * bc).reshape(1, -1))).numpy()
    Dr, Dc = dct_matrix(br), dct_matrix(bc)
    np.testing.assert_allclose(W, Dr.T @ C @ Dc, atol=1e-13)
    np.testing.assert_allclose(Dr @ W @ Dc.T, C, atol=1e-13)
    # and the residual mat-vec of the fused path equals the dense product
    x = rng.normal(size=(4, bc))
    y = S.linear(rbe.tensor(x), lay, rbe.zeros(1, 0, 4, dtype=rbe.float64), rbe.zeros(1, 0, dtype=rbe.float64),
                         rbe.tensor(C.reshape(1, -1)), rbe.tensor(np.arange(br * bc).reshape(1, -1))).numpy()
    np.testing.assert_allclose(y, x @ W.T, atol=1e-12)


# ------------------------------------------------------------ track bit (6)
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_gamma_matches_finite_differences_on_alpha(alpha):
    rbe.manual_seed(9)
    layer = RBELinear(12, 10, block=(5, 4), atoms=3, residual=1, track="mixed", dtype=rbe.float64)
    with rbe.no_grad():
        layer.tracks.fill_(alpha)
    layer.track_grad_enabled = True
    x = rbe.randn(6, 12, dtype=rbe.float64)
    t = rbe.randn(6, 10, dtype=rbe.float64)
    loss = lambda: ((layer(x) - t) ** 2).mean()
    loss().backward()
    gamma = layer.track_grad.numpy()
    h = 1e-6
    fd = np.zeros_like(gamma)
    base = layer.tracks.detach().numpy().copy()
    with rbe.no_grad():
        for i in np.ndindex(gamma.shape):
            for s in (1, -1):
                b = base.copy()
                b[i] += s * h
                layer.tracks.copy_(rbe.tensor(b))
                fd[i] += s * loss().item() / (2 * h)
        layer.tracks.copy_(rbe.tensor(base))
    np.testing.assert_allclose(gamma, fd, rtol=1e-6, atol=1e-9)
    # the same gamma from the materialised path
    layer.zero_grad()
    layer.tracks.grad = None
    ((x @ layer.weight_matrix().T + layer.bias - t) ** 2).mean().backward()
    np.testing.assert_allclose(layer.track_grad.numpy(), gamma, rtol=1e-10, atol=1e-13)


# -------------------------------------------------------- serialisation (7)
def test_packed_round_trip_is_bit_identical():
    rbe.manual_seed(1)
    for dtype, chart in [(rbe.float32, "tangent"), (rbe.float64, "polar"), (rbe.float64, "auto")]:
        layer = RBELinear(70, 45, block=(16, 8), atoms=3, residual=4, track="mixed", dtype=dtype)
        with rbe.no_grad():
            layer.residual.normal_()
        p = layer.to_packed(chart)
        assert p["records"].dtype == np.uint64 and p["records"].shape == (layer.n_blocks * 3, 2)
        q = RBELinear.from_packed(p, dtype=dtype).to_packed()
        for key in ("records", "residual_index", "residual_value", "bias"):
            assert np.array_equal(p[key], q[key]), (chart, key)
        assert q["header"] == p["header"]


def test_bad_records_are_rejected():
    layer = RBELinear(16, 16, block=8, atoms=1, bias=False)
    p = layer.to_packed()
    for word, bit in [(0, 0), (0, 23), (0, 63)]:  # reserved bits 23:0, track code 10
        bad = dict(p, records=p["records"].copy())
        bad["records"][2, word] ^= np.uint64(1 << bit)
        with pytest.raises(ValueError, match="record 2"):
            RBELinear.from_packed(bad)
    bad = dict(p, records=p["records"][:-1])
    with pytest.raises(ValueError, match="shape"):
        RBELinear.from_packed(bad)
    with pytest.raises(ValueError, match="16-byte"):
        S.unpack(b"\x00" * 17)
    with pytest.raises(ValueError, match="header"):
        RBELinear.from_packed({"records": p["records"]})


# ------------------------------------------------------- phase register (8)
def test_quarter_turn_of_the_phase_register_is_the_derivative_bit_exactly():
    q = np.arange(1 << 20, dtype=np.uint32)
    s, c = S.phase_sin_cos(q.tolist())
    s_shift, _ = S.phase_sin_cos(((q + (1 << 18)) % (1 << 20)).tolist())
    assert np.array_equal(np.array(s_shift).view(np.uint64), np.array(c).view(np.uint64))
    ang = 2 * np.pi * q / 2**20
    assert np.abs(np.array(s) - np.sin(ang)).max() < 1e-15
    # at the generator level: shifting an atom's register by 2^18 gives A cos(u) = dW/dphi
    layer = RBELinear(8, 8, block=8, atoms=1, bias=False, dtype=rbe.float64)
    p = layer.to_packed()
    hi = p["records"][0, 0]
    qreg = (int(hi) >> 42) & ((1 << 20) - 1)
    shifted = dict(p, records=p["records"].copy())
    shifted["records"][0, 0] = np.uint64((int(hi) & ~(((1 << 20) - 1) << 42)) | (((qreg + (1 << 18)) % (1 << 20)) << 42))
    W_shift = RBELinear.from_packed(shifted, dtype=rbe.float64).to_dense().numpy()
    base = RBELinear.from_packed(p, dtype=rbe.float64)
    base.atoms.grad = None
    G = np.random.default_rng(0).normal(size=(8, 8))
    (base.weight_matrix() * rbe.tensor(G)).sum().backward()
    # dL/dphi = sum G A cos(u) = sum G W_shift
    assert abs(base.atoms.grad.numpy()[0, 0, 1] - (G * W_shift).sum()) < 1e-12


# ------------------------------------------------------- Shannon guard (9)
@pytest.mark.parametrize("J,K", [(1, 0), (2, 8), (4, 0)])
def test_shannon_guard_on_gaussian_matrices(J, K):
    """On i.i.d. Gaussian W at R bits per weight no code can reach a relative
    RMSE below 2^-R; a result below that would be a measurement bug."""
    W = np.random.default_rng(J * 10 + K).normal(size=(48, 64))
    layer = RBELinear.from_dense(W, block=(16, 16), atoms=J, residual=K, refine_steps=60)
    rep = layer.size_report(W)
    R = rep.bits / W.size
    assert rep.rel_frob >= 2.0 ** (-R), (rep, R)
    assert 0 <= rep.energy <= 1
    assert rep.bits == layer.n_blocks * (128 * J + 32 * K) + 8 * 40


# ----------------------------------------------------- planted recovery (10)
def test_planted_sin_targets_are_recovered_to_the_quantisation_floor():
    rbe.manual_seed(0)
    teacher = RBELinear(96, 64, block=(16, 16), atoms=2, track="sin", bias=False)
    W = teacher.to_dense()
    student = RBELinear.from_dense(W, block=(16, 16), atoms=2, refine_steps=300)
    fit = student.size_report(W).rel_frob
    floor = teacher.size_report().rel_frob  # the teacher's own export error
    assert fit < 3 * floor + 1e-6, (fit, floor)
    assert floor < 1e-3


def test_fused_linear_random_layouts_and_edge_cases():
    # random shapes, blocks larger than the matrix, J = 0, K = 0, relaxed
    # tracks, empty batches, batches on both sides of the kernel switch (8 rows)
    rng = np.random.default_rng(0)
    for _ in range(40):
        out, inp = (int(v) for v in rng.integers(1, 40, 2))
        br, bc = (int(v) for v in rng.integers(1, 12, 2))
        J, K = int(rng.integers(0, 4)), int(rng.integers(0, min(4, br * bc) + 1))
        nb = -(-out // br) * -(-inp // bc)
        atoms = np.concatenate([rng.normal(size=(nb, J, 2)), rng.normal(size=(nb, J, 2)) * 0.3], -1)
        tr = rng.choice([0.0, 1.0, 0.3], size=(nb, J), p=[0.5, 0.4, 0.1])
        rv = rng.normal(size=(nb, K))
        ri = np.array([rng.choice(br * bc, K, replace=False) for _ in range(nb)], dtype=np.int64).reshape(nb, K)
        lay = (out, inp, br, bc, S.default_kappa(br, bc))
        n = int(rng.choice([0, 1, 5, 8, 9, 20]))
        X, GY = rng.normal(size=(n, inp)), rng.normal(size=(n, out))

        def run(fused):
            ps = [rbe.tensor(a, dtype=rbe.float64, requires_grad=True) for a in (atoms, tr, rv)]
            res = (ps[2], rbe.tensor(ri)) if K else (None, None)
            x = rbe.tensor(X, dtype=rbe.float64, requires_grad=True)
            if fused:
                y = S.linear(x, lay, ps[0], ps[1], *res)
            else:
                y = x @ S.generate(lay, ps[0], ps[1], *res).T
            (y * rbe.tensor(GY, dtype=rbe.float64)).sum().backward()
            grads = [p.grad for p in (x, ps[0], ps[1]) + ((ps[2],) if K else ())]
            return [y.detach().numpy()] + [np.zeros(0) if g is None else g.numpy() for g in grads]

        for a, b in zip(run(True), run(False)):
            scale = max(1.0, np.abs(b).max()) if b.size else 1.0
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * scale, err_msg=f"out={out} in={inp} block=({br},{bc}) J={J} K={K} n={n}")


@pytest.mark.parametrize("n,inp,out", [(3, 1024, 1024), (300, 200, 330)])
def test_fused_linear_bits_do_not_depend_on_thread_count(n, inp, out):
    # both kernels, with enough work that they split it across threads
    rbe.manual_seed(3)
    layer = RBELinear(inp, out, block=(16, 32), atoms=3, residual=2, track="mixed")
    layer.track_grad_enabled = True
    x0 = rbe.randn(n, inp)
    g = rbe.randn(n, out)
    results = []
    prev = rbe.get_num_threads()
    try:
        for threads in (1, 2):
            rbe.set_num_threads(threads)
            layer.zero_grad()
            layer.tracks.grad = None
            x = x0.clone().requires_grad_(True)
            y = layer(x)
            y.backward(g)
            results.append([t.detach().numpy().copy() for t in (y, x.grad, layer.atoms.grad, layer.tracks.grad, layer.residual.grad)])
    finally:
        rbe.set_num_threads(prev)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [3, 20])
def test_fused_linear_takes_an_upstream_gradient_of_another_dtype(n):
    rbe.manual_seed(0)
    layer = RBELinear(10, 6, block=(4, 4), atoms=2, residual=1, track="mixed")
    x = rbe.randn(n, 10, requires_grad=True)
    y = layer(x)
    g = rbe.randn(n, 6, dtype=rbe.float64)
    y.backward(g)
    x2 = x.detach().clone().requires_grad_(True)
    layer.zero_grad()
    (layer(x2) * g.float()).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), x2.grad.numpy(), rtol=1e-6, atol=1e-7)
