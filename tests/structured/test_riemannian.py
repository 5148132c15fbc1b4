"""``rbe.structured.RiemannianAdam`` against independent oracles.

What is compared with what:

* Poincare-ball maths (Mobius addition, conformal factor, exponential map,
  gyration, parallel transport, Riemannian gradient, Riemannian inner product)
  against geoopt's ``PoincareBall`` (c = 1, float64) on random points, and
  against closed forms that do not share code with either: the Poincare
  distance ``arcosh(1 + 2|x-y|^2 / ((1-|x|^2)(1-|y|^2)))`` (the exponential map
  travels ``lambda_x |v|``), the gyration's defining composition of Mobius
  additions, and the isometry of parallel transport.
* Optimizer trajectory on ``manifold="poincare"`` parameters against
  ``geoopt.optim.RiemannianAdam``. geoopt's ``PoincareBall`` steps with a
  retraction (``retr_transp``: ``x + u`` then projection); ``PoincareBallExact``
  replaces it by ``expmap_transp`` (exactly the patch ``ball.retr_transp =
  ball.expmap_transp``), which is the paper's update and ours. geoopt's second
  moment is ``component_inner(x, g) = inner(x, g, keepdim=True)``, i.e. the
  *per-point scalar* ``lambda_x^2 |g|^2`` broadcast over the point's
  coordinates, which is the paper's second moment and ours (asserted below),
  so no correction is needed. Bias correction and eps placement are the same.
  What differs and is kept out of play: geoopt projects to radius ``1 - 1e-5``
  (we project to ``1 - 2^-20``) and clamps ``tanh``'s argument at 15; the
  trajectory stays below radius 0.99. Gradients come from torch autograd of the
  same loss at each optimizer's own current point, so only the optimizers are
  compared. The retraction variant is shown to differ (the test can fail).
* RBE atoms: the chart gradient conversion ``dL/dp -> dL/dz`` by central finite
  differences of the layer's loss as a function of ``z`` (via the test's own
  ``p(z)``), and by torch autograd of ``p(z)``; three optimizer steps on an
  ``RBELinear`` against a torch reference: a torch re-implementation of the
  layer's forward pass written in terms of ``(A, phi, z, bias)``, autograd for
  ``dL/dz``, the paper's update with geoopt's ``expmap`` and
  ``parallel_transport``, and ``torch.optim.Adam`` for ``A``, ``phi`` and the bias.
* Euclidean parameters against ``rbe.optim.Adam`` (bit for bit) and
  ``torch.optim.Adam``.
"""
import math
import warnings

import mpmath
import numpy as np
import pytest
import torch

import rbe
import rbe.nn as nn
from rbe.structured import RBELinear, RiemannianAdam
from rbe.structured import riemannian as R

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # geoopt uses torch.jit.script, deprecated in recent torch
    geoopt = pytest.importorskip("geoopt")
    from geoopt.manifolds.stereographic import math as gmath

F64 = torch.float64


def ball(exact=True):
    # c as a float64 tensor: geoopt stores softplus^-1(c) and would otherwise round c to float32
    cls = geoopt.PoincareBallExact if exact else geoopt.PoincareBall
    b = cls(c=torch.tensor(1.0, dtype=F64))
    assert b.c.item() == 1.0 and b.k.dtype == F64
    return b


def random_points(rng, n, d, rmax=0.999):
    """Points of the unit ball with radii spread up to ``rmax`` (uniform in radius, not volume)."""
    u = rng.standard_normal((n, d))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    return u * rng.uniform(0.0, rmax, (n, 1))


def poincare_dist(x, y):
    """Closed-form Poincare distance (NumPy), independent of Mobius addition."""
    num = 2.0 * np.sum((x - y) ** 2, -1)
    den = (1.0 - np.sum(x * x, -1)) * (1.0 - np.sum(y * y, -1))
    return np.arccosh(1.0 + num / den)


T = lambda a: torch.tensor(a, dtype=F64)  # noqa: E731


def mp_add(a, b):
    """Mobius addition of two mpmath row vectors, written from the spec's formula."""
    ab = sum(a[j] * b[j] for j in range(len(a)))
    a2 = sum(a[j] ** 2 for j in range(len(a)))
    b2 = sum(b[j] ** 2 for j in range(len(b)))
    d = 1 + 2 * ab + a2 * b2
    return [((1 + 2 * ab + b2) * a[j] + (1 - a2) * b[j]) / d for j in range(len(a))]


def mp_neg(a):
    return [-t for t in a]


# --------------------------------------------------------------------------
# Ball maths


@pytest.mark.parametrize("d", [2, 3, 5])
def test_ball_maths_match_geoopt(d):
    rng = np.random.default_rng(d)
    k = ball().k
    x, y = random_points(rng, 300, d), random_points(rng, 300, d)
    # tangent vectors scaled with 1 - |x|^2 so that lambda_x |v| / 2 stays well below geoopt's tanh clamp (15)
    v = rng.standard_normal((300, d)) * (1.0 - np.sum(x * x, -1, keepdims=True))
    w = rng.standard_normal((300, d)) * 3.0
    tol = dict(rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(R.mobius_add(x, y), gmath.mobius_add(T(x), T(y), k=k).numpy(), **tol)
    np.testing.assert_allclose(R.lambda_x(x)[:, 0], gmath.lambda_x(T(x), k=k).numpy(), **tol)
    np.testing.assert_allclose(R.expmap(x, v), gmath.expmap(T(x), T(v), k=k).numpy(), **tol)
    np.testing.assert_allclose(R.gyration(x, y, w), gmath.gyration(T(x), T(y), T(w), k=k).numpy(), **tol)
    np.testing.assert_allclose(R.transport(x, y, w), gmath.parallel_transport(T(x), T(y), T(w), k=k).numpy(), **tol)
    np.testing.assert_allclose(R.egrad2rgrad(x, w), gmath.egrad2rgrad(T(x), T(w), k=k).numpy(), **tol)
    # the second moment's summand: lambda^2 |rgrad|^2 is geoopt's inner product, one scalar per point
    rg = R.egrad2rgrad(x, w)
    ci = ball().component_inner(T(x), T(rg)).numpy()
    assert ci.shape == (300, 1)
    np.testing.assert_allclose(R.lambda_x(x) ** 2 * np.sum(rg * rg, -1, keepdims=True), ci, **tol)


def test_ball_maths_against_closed_forms():
    rng = np.random.default_rng(11)
    x, y = random_points(rng, 400, 3, 0.99), random_points(rng, 400, 3, 0.99)
    lam = R.lambda_x(x)[:, 0]
    # the exponential map follows a geodesic: d(x, exp_x(v)) = lambda_x |v|
    v = rng.standard_normal((400, 3)) * 0.3 / lam[:, None]
    np.testing.assert_allclose(poincare_dist(x, R.expmap(x, v)), lam * np.linalg.norm(v, axis=-1), rtol=1e-9)
    np.testing.assert_array_equal(R.expmap(x, np.zeros_like(x)), x)
    # gyration: closed form against the defining composition -(a (+) b) (+) (a (+) (b (+) w)) for w in
    # the ball, evaluated in 50-digit arithmetic (in float64 the composition itself loses ~1e-10 near the rim)
    w = random_points(rng, 400, 3, 0.9)
    n = 80
    with mpmath.workdps(50):
        X, Y, Wm = (mpmath.matrix(a[:n].tolist()) for a in (x, y, w))
        direct = np.array(
            [[float(c) for c in mp_add(mp_neg(mp_add(X[i, :], Y[i, :])), mp_add(X[i, :], mp_add(Y[i, :], Wm[i, :])))] for i in range(n)]
        )
    np.testing.assert_allclose(R.gyration(x[:n], y[:n], w[:n]), direct, rtol=1e-12, atol=1e-15)
    # parallel transport is an isometry: lambda_y |PT v| = lambda_x |v|
    u = rng.standard_normal((400, 3))
    pt = R.transport(x, y, u)
    np.testing.assert_allclose(R.lambda_x(y)[:, 0] * np.linalg.norm(pt, axis=-1), lam * np.linalg.norm(u, axis=-1), rtol=1e-10)
    # Riemannian gradient: <rgrad, u>_x = lambda_x^2 <rgrad, u> equals the Euclidean <g, u>
    g = rng.standard_normal((400, 3))
    np.testing.assert_allclose(lam**2 * np.sum(R.egrad2rgrad(x, g) * u, -1), np.sum(g * u, -1), rtol=1e-10)
    # projection
    big = np.array([[3.0, 4.0], [0.0, 1.0], [0.6, 0.0]])
    pr = R.project(big)
    np.testing.assert_allclose(np.linalg.norm(pr, axis=-1), [R.R_MAX, R.R_MAX, 0.6], rtol=1e-15)
    assert R.R_MAX == 1.0 - 2.0**-20


def test_chart_conversions():
    rng = np.random.default_rng(3)
    p = rng.standard_normal((200, 2)) * rng.uniform(0.0, 3.0, (200, 1))
    p[0] = 0.0
    z = R.chart_to_ball(p)
    n = np.linalg.norm(p, axis=-1)
    np.testing.assert_allclose(np.linalg.norm(z, axis=-1), np.tanh(n), rtol=1e-15)
    np.testing.assert_array_equal(z[0], [0.0, 0.0])
    # round trip: z is rounded to ~ulp(1), and d|p|/d|z| = 1 / (1 - |z|^2) = cosh^2 |p| amplifies that
    err = np.linalg.norm(R.ball_to_chart(z) - p, axis=-1)
    assert np.all(err <= 4 * 2.0**-52 * (np.cosh(n) ** 2 + n)), np.max(err / (np.cosh(n) ** 2 + n))
    assert np.all(err[n < 0.5] <= 1e-15 * np.maximum(n[n < 0.5], 1e-300))
    # dL/dz = (dp/dz)^T dL/dp with the Jacobian of p(z) from torch autograd
    gp = rng.standard_normal((200, 2))
    zt = torch.tensor(z[1:], dtype=F64, requires_grad=True)
    r = zt.norm(dim=-1, keepdim=True)
    pz = torch.atanh(r) / r * zt
    (gz,) = torch.autograd.grad(pz, zt, torch.tensor(gp[1:], dtype=F64))
    ours = R.chart_grad_to_ball(z, gp)
    # near the rim, 1 - |z| from rounded coordinates carries a relative error ~ ulp / (1 - |z|^2)
    # (in both computations; checked against 40-digit differentiation while writing this test)
    cond = 1.0 + 1.0 / (1.0 - np.sum(z[1:] ** 2, -1))
    rel = np.linalg.norm(ours[1:] - gz.numpy(), axis=-1) / np.linalg.norm(gz.numpy(), axis=-1)
    assert np.all(rel <= 8 * 2.0**-52 * cond), np.max(rel / cond)
    assert np.max(cond) > 1e4  # the check reaches close to the rim
    np.testing.assert_array_equal(ours[0], gp[0])  # identity at z = 0


# --------------------------------------------------------------------------
# Trajectory against geoopt


def sq_dist_loss_torch(x, targets):
    """sum_i d(x_i, t_i)^2 with the closed-form Poincare distance."""
    num = 2.0 * ((x - targets) ** 2).sum(-1)
    den = (1.0 - (x * x).sum(-1)) * (1.0 - (targets * targets).sum(-1))
    return (torch.acosh(1.0 + num / den) ** 2).sum()


def egrad_at(x_np, targets):
    x = torch.tensor(x_np, dtype=F64, requires_grad=True)
    loss = sq_dist_loss_torch(x, targets)
    loss.backward()
    return x.grad.numpy().copy(), loss.item()


def run_ours(x0, targets, steps, **kw):
    P = nn.Parameter(rbe.tensor(x0))
    opt = RiemannianAdam([{"params": [P], "manifold": "poincare"}], **kw)
    traj = []
    for _ in range(steps):
        g, _ = egrad_at(P.detach().numpy(), targets)
        P.grad = rbe.tensor(g)
        opt.step()
        traj.append(np.array(P.detach().numpy()))
    return np.array(traj), opt.state[P]


def run_geoopt(x0, targets, steps, exact=True, **kw):
    P = geoopt.ManifoldParameter(torch.tensor(x0, dtype=F64), manifold=ball(exact))
    opt = geoopt.optim.RiemannianAdam([P], **kw)
    traj = []
    for _ in range(steps):
        opt.zero_grad()
        sq_dist_loss_torch(P, targets).backward()
        opt.step()
        traj.append(P.detach().numpy().copy())
    return np.array(traj), opt.state[P]


def test_trajectory_matches_geoopt_exact_expmap():
    assert geoopt.PoincareBallExact.retr_transp is geoopt.manifolds.stereographic.Stereographic.expmap_transp
    rng = np.random.default_rng(7)
    x0 = random_points(rng, 6, 3, 0.7)
    targets = torch.tensor(random_points(rng, 6, 3, 0.8), dtype=F64)
    kw = dict(lr=0.05, betas=(0.8, 0.95), eps=1e-8)
    ours, st = run_ours(x0, targets, 30, **kw)
    ref, gst = run_geoopt(x0, targets, 30, **kw)
    assert np.max(np.linalg.norm(ours, axis=-1)) < 0.99  # neither projection is active
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    # optimizer state: momentum (tangent at the current point) and the per-point scalar second moment
    np.testing.assert_allclose(st["exp_avg"].numpy(), gst["exp_avg"].numpy(), rtol=1e-9, atol=1e-14)
    v = st["exp_avg_sq"].numpy()
    assert v.shape == (6, 1)
    np.testing.assert_allclose(np.broadcast_to(v, (6, 3)), gst["exp_avg_sq"].numpy(), rtol=1e-10)
    assert int(st["step"].item()) == 30
    # the run did something: the loss fell and points moved far
    l0 = egrad_at(x0, targets)[1]
    l1 = egrad_at(ours[-1], targets)[1]
    assert l1 < 0.5 * l0
    # geoopt's default (a first-order retraction) follows another path: the comparison can fail
    retr, _ = run_geoopt(x0, targets, 30, exact=False, **kw)
    assert np.max(np.abs(retr - ours)) > 1e-4


# --------------------------------------------------------------------------
# RBE atoms


def rbe_layer(seed=0):
    rbe.manual_seed(seed)
    return RBELinear(12, 10, block=(4, 4), atoms=2, dtype=rbe.float64)


def layer_loss(layer, x, y):
    return ((layer(x) - y) ** 2).mean()


def set_chart(layer, p):
    a = np.array(layer.atoms.detach().numpy())
    a[..., 2:4] = p
    with rbe.no_grad():
        layer.atoms.copy_(rbe.tensor(a))


def test_chart_gradient_by_finite_differences():
    layer = rbe_layer(1)
    rng = np.random.default_rng(1)
    x = rbe.tensor(rng.standard_normal((7, 12)))
    y = rbe.tensor(rng.standard_normal((7, 10)))
    # spread the disk points: one at the centre, one near the rim, the rest random
    z = random_points(rng, 18, 2, 0.95).reshape(9, 2, 2)
    z[0, 0] = 0.0
    z[4, 1] = [0.999 * 0.6, 0.999 * 0.8]
    p_of = lambda zz: np.where(  # noqa: E731 -- the test's own inverse chart
        np.linalg.norm(zz, axis=-1, keepdims=True) > 0,
        np.arctanh(np.linalg.norm(zz, axis=-1, keepdims=True)) / np.maximum(np.linalg.norm(zz, axis=-1, keepdims=True), 1e-300),
        1.0,
    ) * zz
    set_chart(layer, p_of(z))
    layer.zero_grad()
    layer_loss(layer, x, y).backward()
    gp = np.array(layer.atoms.grad.numpy())[..., 2:4]
    gz = R.chart_grad_to_ball(z, gp)
    fd = np.zeros_like(z)
    for idx in np.ndindex(*z.shape):
        h = 1e-6 * min(1.0, 10 * (1.0 - np.linalg.norm(z[idx[:2]])))
        vals = []
        for s in (1.0, -1.0):
            zz = z.copy()
            zz[idx] += s * h
            set_chart(layer, p_of(zz))
            with rbe.no_grad():
                vals.append(layer_loss(layer, x, y).item())
        fd[idx] = (vals[0] - vals[1]) / (2 * h)
    np.testing.assert_allclose(gz, fd, rtol=1e-6, atol=1e-9)
    # the rim point's radial derivative is amplified by 1 / (1 - |z|^2) ~ 500, and is checked too
    assert np.abs(gz[4, 1]).max() > 10 * np.abs(gp[4, 1]).max()


def torch_weight(A, phi, z, kappa, out, inp, br, bc, grid):
    """The RBELinear (SIN track) weight matrix from (A, phi, z) in torch."""
    r = z.norm(dim=-1, keepdim=True)
    p = torch.atanh(r) / r * z
    kx, ky = 2 * kappa * p[..., 0], 2 * kappa * p[..., 1]
    xs = torch.tensor((2 * np.arange(bc) + 1) / bc - 1, dtype=F64)
    ys = torch.tensor((2 * np.arange(br) + 1) / br - 1, dtype=F64)
    u = kx[..., None, None] * xs + ky[..., None, None] * ys[:, None] + phi[..., None, None]
    blocks = (A[..., None, None] * torch.sin(u)).sum(1)
    gr, gc = grid
    return blocks.reshape(gr, gc, br, bc).permute(0, 2, 1, 3).reshape(gr * br, gc * bc)[:out, :inp]


def test_rbe_steps_match_torch_reference():
    layer = rbe_layer(2)
    rng = np.random.default_rng(2)
    xn, yn = rng.standard_normal((9, 12)), rng.standard_normal((9, 10))
    x, y = rbe.tensor(xn), rbe.tensor(yn)
    lr, betas, eps = 0.05, (0.9, 0.99), 1e-8
    a0 = np.array(layer.atoms.detach().numpy())
    # reference state: A, phi and bias are plain Adam in torch; z is a disk point
    Aphi = torch.tensor(a0[..., 0:2], dtype=F64, requires_grad=True)
    bias = torch.tensor(np.array(layer.bias.detach().numpy()), dtype=F64, requires_grad=True)
    z = torch.tensor(R.chart_to_ball(a0[..., 2:4]), dtype=F64)
    tadam = torch.optim.Adam([Aphi, bias], lr=lr, betas=betas, eps=eps)
    m = torch.zeros_like(z)
    v = torch.zeros(z.shape[:-1] + (1,), dtype=F64)
    k = ball().k
    shape = (layer.out_features, layer.in_features, *layer.block, layer.grid)
    W0 = torch_weight(Aphi[..., 0], Aphi[..., 1], z, layer.kappa, *shape)
    np.testing.assert_allclose(W0.detach().numpy(), layer.to_dense().numpy(), rtol=1e-12, atol=1e-14)

    opt = RiemannianAdam(layer.parameters(), lr=lr, betas=betas, eps=eps)
    for t in range(1, 4):
        opt.zero_grad()
        layer_loss(layer, x, y).backward()
        opt.step()
        # reference step
        zl = z.clone().requires_grad_(True)
        tadam.zero_grad()
        W = torch_weight(Aphi[..., 0], Aphi[..., 1], zl, layer.kappa, *shape)
        loss = ((torch.tensor(xn) @ W.T + bias - torch.tensor(yn)) ** 2).mean()
        loss.backward()
        tadam.step()
        with torch.no_grad():
            rg = zl.grad * (1 - (z * z).sum(-1, keepdim=True)) ** 2 / 4
            lam = 2 / (1 - (z * z).sum(-1, keepdim=True))
            m = betas[0] * m + (1 - betas[0]) * rg
            v = betas[1] * v + (1 - betas[1]) * lam**2 * (rg * rg).sum(-1, keepdim=True)
            direction = (m / (1 - betas[0] ** t)) / ((v / (1 - betas[1] ** t)).sqrt() + eps)
            z_new = gmath.expmap(z, -lr * direction, k=k)
            m = gmath.parallel_transport(z, z_new, m, k=k)
            z = z_new
        got = np.array(layer.atoms.detach().numpy())
        np.testing.assert_allclose(got[..., 0:2], Aphi.detach().numpy(), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(R.chart_to_ball(got[..., 2:4]), z.numpy(), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(layer.bias.detach().numpy(), bias.detach().numpy(), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(opt.state[layer.atoms]["exp_avg"].numpy()[..., 2:4], m.numpy(), rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(opt.state[layer.atoms]["exp_avg_sq"].numpy()[..., 2:3], v.numpy(), rtol=1e-10)
    moved = poincare_dist(R.chart_to_ball(got[..., 2:4]), R.chart_to_ball(a0[..., 2:4]))
    assert moved.min() > 0.02  # every disk point took real steps (each of geodesic length <~ lr)
    assert np.all(np.linalg.norm(R.chart_to_ball(got[..., 2:4]), axis=-1) < 1)


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_rbe_amplitude_phase_columns_are_adam(wd):
    rng = np.random.default_rng(4)
    x, y = rbe.tensor(rng.standard_normal((9, 12))), rbe.tensor(rng.standard_normal((9, 10)))
    layers = [rbe_layer(4) for _ in range(3)]
    opts = [
        RiemannianAdam(layers[0].parameters(), lr=0.05, weight_decay=wd),
        rbe.optim.Adam(layers[1].parameters(), lr=0.05, weight_decay=wd),
        RiemannianAdam(layers[2].parameters(), lr=0.05, weight_decay=0.0),
    ]
    for layer, opt in zip(layers, opts):
        opt.zero_grad()
        layer_loss(layer, x, y).backward()
        opt.step()
    ra, ad, r0 = (np.array(l.atoms.detach().numpy()) for l in layers)
    np.testing.assert_allclose(ra[..., 0:2], ad[..., 0:2], rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(layers[0].bias.detach().numpy(), layers[1].bias.detach().numpy())
    assert np.max(np.abs(ra[..., 2:4] - ad[..., 2:4])) > 1e-4  # the disk coordinates are not Adam's
    # weight decay acts on the Euclidean coordinates only
    np.testing.assert_allclose(ra[..., 2:4], r0[..., 2:4], rtol=1e-14, atol=0)
    if wd:
        assert np.max(np.abs(ra[..., 0:2] - r0[..., 0:2])) > 1e-6


def test_rbe_external_edit_is_respected():
    layer = rbe_layer(5)
    rng = np.random.default_rng(5)
    x, y = rbe.tensor(rng.standard_normal((9, 12))), rbe.tensor(rng.standard_normal((9, 10)))
    opt = RiemannianAdam(layer.parameters(), lr=0.05)
    for _ in range(2):
        opt.zero_grad()
        layer_loss(layer, x, y).backward()
        opt.step()
    edit = rng.standard_normal((9, 2, 2))
    set_chart(layer, edit)
    opt.param_groups[0]["lr"] = 0.0
    opt.zero_grad()
    layer_loss(layer, x, y).backward()
    opt.step()  # a zero step from the edited point leaves it there (no cached z)
    np.testing.assert_allclose(np.array(layer.atoms.detach().numpy())[..., 2:4], edit, rtol=1e-12, atol=1e-15)


def test_points_stay_inside_the_ball():
    # ordinary ball parameters pushed hard outwards, float64 and float32
    for dt in (rbe.float64, rbe.float32):
        x0 = np.array([[0.9, 0.0], [0.0, -0.999], [0.3, 0.4], [1 - 2.0**-21, 0.0]])
        P = nn.Parameter(rbe.tensor(x0, dtype=dt))
        opt = RiemannianAdam([P], lr=10.0, manifold="poincare")
        for _ in range(5):
            P.grad = rbe.tensor(-1e6 * x0, dtype=dt)
            opt.step()
            n = np.linalg.norm(P.detach().double().numpy(), axis=-1)
            assert np.all(np.isfinite(n)) and np.all(n < 1.0)
            if dt == rbe.float64:
                assert np.all(n <= R.R_MAX * (1 + 1e-15))
        assert P.dtype == dt
    # RBE atoms: huge steps keep |p| <= artanh(R_MAX), a far-out chart point is pulled back
    layer = rbe_layer(6)
    a = np.array(layer.atoms.detach().numpy())
    a[0, 0, 2:4] = [30.0, 0.0]  # tanh(30) == 1.0 in float64
    with rbe.no_grad():
        layer.atoms.copy_(rbe.tensor(a))
    rng = np.random.default_rng(6)
    x, y = rbe.tensor(rng.standard_normal((9, 12))), rbe.tensor(rng.standard_normal((9, 10)))
    opt = RiemannianAdam(layer.parameters(), lr=5.0)
    for _ in range(5):
        opt.zero_grad()
        layer_loss(layer, x, y).backward()
        opt.step()
        p = np.array(layer.atoms.detach().numpy())[..., 2:4]
        assert np.all(np.isfinite(p))
        assert np.all(np.linalg.norm(p, axis=-1) <= math.atanh(R.R_MAX) * (1 + 1e-9))


# --------------------------------------------------------------------------
# Euclidean parameters, training, state dicts, bad input


def mlp_params(lib):
    rng = np.random.default_rng(0)
    arrs = [rng.standard_normal((5, 4)) * 0.5, rng.standard_normal(5) * 0.1, rng.standard_normal((3, 5)) * 0.5]
    x, y = rng.standard_normal((16, 4)), rng.integers(0, 3, 16)
    if lib is torch:
        return [torch.nn.Parameter(torch.tensor(a)) for a in arrs], x, y
    return [nn.Parameter(rbe.tensor(a)) for a in arrs], x, y


def mlp_loss(m, ps, x, y):
    h = (m.tensor(x) @ ps[0].T + ps[1]).tanh()
    return m.nn.functional.cross_entropy(h @ ps[2].T, m.tensor(y))


@pytest.mark.parametrize("kw", [dict(lr=0.01), dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)])
def test_euclidean_parameters_are_adam(kw):
    (rp, x, y), (ap, _, _), (tp, _, _) = mlp_params(rbe), mlp_params(rbe), mlp_params(torch)
    opts = [(RiemannianAdam(rp, **kw), rp, rbe), (rbe.optim.Adam(ap, **kw), ap, rbe), (torch.optim.Adam(tp, **kw), tp, torch)]
    for _ in range(25):
        for o, ps, m in opts:
            o.zero_grad()
            mlp_loss(m, ps, x, y).backward()
            o.step()
    for a, b, c in zip(rp, ap, tp):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
        np.testing.assert_allclose(a.detach().numpy(), c.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert np.max(np.abs(rp[0].detach().numpy() - mlp_params(rbe)[0][0].detach().numpy())) > 1e-2


def test_manifold_euclidean_makes_rbe_atoms_plain_adam():
    rng = np.random.default_rng(8)
    x, y = rbe.tensor(rng.standard_normal((9, 12))), rbe.tensor(rng.standard_normal((9, 10)))
    l1, l2 = rbe_layer(8), rbe_layer(8)
    o1 = RiemannianAdam(l1.parameters(), lr=0.05, manifold="euclidean")
    o2 = rbe.optim.Adam(l2.parameters(), lr=0.05)
    for _ in range(3):
        for layer, o in ((l1, o1), (l2, o2)):
            o.zero_grad()
            layer_loss(layer, x, y).backward()
            o.step()
    np.testing.assert_array_equal(l1.atoms.detach().numpy(), l2.atoms.detach().numpy())


def test_training_rbe_regression():
    rbe.manual_seed(1)
    teacher = RBELinear(16, 16, block=(8, 8), atoms=3, dtype=rbe.float64)
    student = RBELinear(16, 16, block=(8, 8), atoms=3, dtype=rbe.float64)
    x = rbe.tensor(np.random.default_rng(1).standard_normal((256, 16)))
    with rbe.no_grad():
        y = teacher(x).detach()
    opt = RiemannianAdam(student.parameters(), lr=0.05)
    losses = []
    for _ in range(400):
        opt.zero_grad()
        loss = ((student(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.15 * losses[0], (losses[0], losses[-1])
    p = np.array(student.atoms.detach().numpy())[..., 2:4]
    assert np.all(np.linalg.norm(p, axis=-1) <= math.atanh(R.R_MAX) * (1 + 1e-9))


def make_mixed(seed):
    rbe.manual_seed(seed)
    layer = RBELinear(12, 10, block=(4, 4), atoms=2, dtype=rbe.float64)
    rng = np.random.default_rng(seed)
    ballp = nn.Parameter(rbe.tensor(random_points(rng, 4, 3, 0.5)))
    eucl = nn.Parameter(rbe.tensor(rng.standard_normal((10,))))
    return layer, ballp, eucl


def mixed_step(opt, layer, ballp, eucl, x, y, targets):
    opt.zero_grad()
    (layer_loss(layer, x, y) + (eucl * eucl).sum()).backward()
    g, _ = egrad_at(ballp.detach().numpy(), targets)
    ballp.grad = rbe.tensor(g)
    opt.step()


def test_state_dict_resume():
    rng = np.random.default_rng(9)
    x, y = rbe.tensor(rng.standard_normal((9, 12))), rbe.tensor(rng.standard_normal((9, 10)))
    targets = torch.tensor(random_points(rng, 4, 3, 0.5), dtype=F64)
    groups = lambda l, b, e: [  # noqa: E731
        {"params": list(l.parameters())},
        {"params": [b], "manifold": "poincare", "lr": 0.02},
        {"params": [e], "weight_decay": 0.01},
    ]
    layer, ballp, eucl = make_mixed(9)
    opt = RiemannianAdam(groups(layer, ballp, eucl), lr=0.05, betas=(0.85, 0.99))
    for _ in range(3):
        mixed_step(opt, layer, ballp, eucl, x, y, targets)
    sd = opt.state_dict()
    assert [g["manifold"] for g in sd["param_groups"]] == [None, "poincare", None]
    shapes = {k: tuple(v["exp_avg_sq"].shape) for k, v in sd["state"].items()}
    assert shapes == {0: (9, 2, 3), 1: (10,), 2: (4, 1), 3: (10,)}
    # copies of the model at this point: one continues with the saved optimizer state, one without
    copies = []
    for _ in range(2):
        l2, b2, e2 = make_mixed(0)
        l2.load_state_dict(layer.state_dict())
        with rbe.no_grad():
            b2.copy_(ballp.detach())
            e2.copy_(eucl.detach())
        copies.append((l2, b2, e2))
    (layer2, ballp2, eucl2), (layer3, ballp3, eucl3) = copies
    opt2 = RiemannianAdam(groups(layer2, ballp2, eucl2))
    opt2.load_state_dict(sd)
    assert opt2.param_groups[1]["lr"] == 0.02 and opt2.param_groups[0]["betas"] == (0.85, 0.99)
    opt3 = RiemannianAdam(groups(layer3, ballp3, eucl3), lr=0.05, betas=(0.85, 0.99))
    for _ in range(3):
        mixed_step(opt, layer, ballp, eucl, x, y, targets)
        mixed_step(opt2, layer2, ballp2, eucl2, x, y, targets)
        mixed_step(opt3, layer3, ballp3, eucl3, x, y, targets)
    # the resumed copy follows the original exactly, the one with a fresh state does not
    for a, b, c in ((layer.atoms, layer2.atoms, layer3.atoms), (ballp, ballp2, ballp3), (eucl, eucl2, eucl3)):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
        assert np.max(np.abs(a.detach().numpy() - c.detach().numpy())) > 1e-6
    np.testing.assert_array_equal(layer.bias.detach().numpy(), layer2.bias.detach().numpy())


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(lr=-1e-3), "learning rate"),
        (dict(betas=(1.0, 0.999)), "beta parameter at index 0"),
        (dict(betas=(0.9, 1.0)), "beta parameter at index 1"),
        (dict(betas=(-0.1, 0.999)), "beta parameter at index 0"),
        (dict(eps=-1.0), "epsilon"),
        (dict(weight_decay=-0.1), "weight_decay"),
        (dict(manifold="hyperbolic"), "manifold must be one of"),
    ],
)
def test_bad_hyperparameters(kw, match):
    with pytest.raises(ValueError, match=match):
        RiemannianAdam([nn.Parameter(rbe.tensor([0.1, 0.2]))], **kw)


def test_points_outside_the_ball_are_rejected():
    outside = nn.Parameter(rbe.tensor(np.array([[0.1, 0.2], [0.0, 1.0], [1.2, 0.0]])))
    with pytest.raises(ValueError, match=r"manifold='poincare'.*2 of 3 point\(s\) on or outside the unit ball.*largest norm 1\.2"):
        RiemannianAdam([{"params": [outside], "manifold": "poincare"}])
    with pytest.raises(ValueError, match="outside the unit ball"):
        RiemannianAdam([nn.Parameter(rbe.tensor(np.array([[np.nan, 0.0]])))], manifold="poincare")
    # the same values are fine as a Euclidean parameter
    RiemannianAdam([outside])
    # an edit after construction is caught at the next step, before anything changes
    P = nn.Parameter(rbe.tensor(np.array([[0.1, 0.2], [0.3, 0.4]])))
    opt = RiemannianAdam([P], manifold="poincare")
    with rbe.no_grad():
        P.copy_(rbe.tensor(np.array([[0.1, 0.2], [3.0, 4.0]])))
    P.grad = rbe.tensor(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"largest norm 5"):
        opt.step()
    np.testing.assert_array_equal(P.detach().numpy(), [[0.1, 0.2], [3.0, 4.0]])
    # a parameter that claims to be RBE atoms must have 4 fields
    bad = nn.Parameter(rbe.tensor(np.zeros((3, 2, 3))))
    bad._rbe_layer = lambda: None
    with pytest.raises(ValueError, match="last dimension 4"):
        RiemannianAdam([bad])


def test_a_bad_point_in_a_later_group_changes_nothing():
    import numpy as np
    import pytest
    import rbe

    a = rbe.nn.Parameter(rbe.tensor([[0.1, 0.2], [0.3, -0.1]], dtype=rbe.float64))
    b = rbe.nn.Parameter(rbe.tensor([[0.5, 0.5]], dtype=rbe.float64))
    w = rbe.nn.Parameter(rbe.tensor([1.0, 2.0], dtype=rbe.float64))
    opt = RiemannianAdam([{"params": [a], "manifold": "poincare"}, {"params": [w]}, {"params": [b], "manifold": "poincare"}], lr=0.1)
    for p in (a, b, w):
        p.grad = rbe.ones_like(p)
    with rbe.no_grad():
        b.copy_(rbe.tensor([[0.9, 0.9]], dtype=rbe.float64))  # outside the ball
    before = [p.detach().numpy().copy() for p in (a, w)]
    with pytest.raises(ValueError, match="outside the unit ball"):
        opt.step()
    for p, v in zip((a, w), before):
        np.testing.assert_array_equal(p.detach().numpy(), v)
    assert len(opt.state) == 0
