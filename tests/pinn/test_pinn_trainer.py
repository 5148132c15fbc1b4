"""rbe.pinn.problems and rbe.pinn.Trainer: the problems against their
definitions, the trainer's pieces (schedulers, clipping, early stopping,
dynamic weights, residual-based resampling, minibatches, non-finite losses)
against theirs, and smoke trainings on every problem."""
import math
import os
import warnings

import numpy as np
import pytest

import rbe
from rbe import pinn
from rbe.nn import Module
from rbe.pinn import problems as P
from rbe.pinn.trainer import make_scheduler


class Fn(Module):
    """A model given by a formula of its input (jets support the operations used)."""

    def __init__(self, f):
        super().__init__()
        self.f = f
        self.dummy = rbe.nn.Parameter(rbe.zeros(1, dtype=rbe.float64))

    def forward(self, x):
        return self.f(x)


PI = math.pi
EXACT = {
    "poisson1d": lambda x: (PI * x[:, 0:1]).sin(),
    "poisson2d": lambda x: (PI * x[:, 0:1]).sin() * (PI * x[:, 1:2]).sin(),
    "poisson3d": lambda x: (PI * x[:, 0:1]).sin() * (PI * x[:, 1:2]).sin() * (PI * x[:, 2:3]).sin(),
    "helmholtz2d": lambda x: (PI * x[:, 0:1]).sin() * (4 * PI * x[:, 1:2]).sin(),
    "diffusion1d": lambda x: (-0.1 * PI ** 2 * x[:, 1:2]).exp() * (PI * x[:, 0:1]).sin(),
}


def t64(a):
    return rbe.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.float64)))


# ---------------------------------------------------------------- problems
@pytest.mark.parametrize("name", sorted(P.PROBLEMS))
def test_exact_solution_has_zero_residual_and_error(name):
    p = P.get_problem(name)
    p.check()
    rng = np.random.default_rng(1)
    x = t64(p.sample_interior(64, rng))
    for method in ("taylor", "autograd"):
        r = p.pde_residual(Fn(EXACT[name]), x, method=method)
        assert tuple(r.shape) == (64,)
        assert float(r.abs().max()) < 1e-11 * p.source_scale
    assert p.relative_l2(Fn(EXACT[name])) < 1e-14
    # a wrong solution: u* + x0^2 has residual -2 (Poisson), 2 + x0^2 (Helmholtz) or -0.2 (diffusion)
    r = p.pde_residual(Fn(lambda x: EXACT[name](x) + x[:, 0:1] * x[:, 0:1]), x)
    expect = {"diffusion1d": -0.2 + 0 * x[:, 0], "helmholtz2d": 2.0 + x[:, 0] * x[:, 0]}.get(name, -2.0 + 0 * x[:, 0])
    assert float((r - expect).abs().max()) < 1e-10 * p.source_scale
    # twice the exact solution: error 1
    assert abs(p.relative_l2(Fn(lambda x: 2.0 * EXACT[name](x))) - 1.0) < 1e-12
    # the zero function: error exactly 1
    assert abs(p.relative_l2(Fn(lambda x: 0.0 * x[:, 0:1])) - 1.0) < 1e-15


def test_problem_definitions_by_hand():
    # the sources, at chosen points, written out
    x = t64([[0.3, 0.7]])
    zero = Fn(lambda x: 0.0 * x[:, 0:1])
    r = P.Poisson2D().pde_residual(zero, x)
    assert abs(float(r[0]) + 2 * PI ** 2 * math.sin(0.3 * PI) * math.sin(0.7 * PI)) < 1e-12
    h = P.Helmholtz2D()
    r = h.pde_residual(zero, x)
    q = (1.0 - PI ** 2 - 16 * PI ** 2) * math.sin(0.3 * PI) * math.sin(2.8 * PI)
    assert abs(float(r[0]) + q) < 1e-12
    assert h.box == ([-1.0, -1.0], [1.0, 1.0]) and abs(h.source_scale - (17 * PI ** 2 - 1)) < 1e-12
    d = P.Diffusion1D()
    assert d.box == ([-6.0, 0.0], [6.0, 1.0]) and d.time_dependent and d.nu == 0.1
    # u = x^2 t: u_t - 0.1 u_xx = x^2 - 0.2 t
    r = d.pde_residual(Fn(lambda x: x[:, 0:1] * x[:, 0:1] * x[:, 1:2]), t64([[1.5, 0.25]]))
    assert abs(float(r[0]) - (2.25 - 0.05)) < 1e-12
    p1 = P.Poisson1D()
    assert p1.box == ([-1.0], [1.0])
    r = p1.pde_residual(Fn(lambda x: x * x * x), t64([[0.5]]))  # -6x - pi^2 sin(pi x)
    assert abs(float(r[0]) - (-3.0 - PI ** 2)) < 1e-12


@pytest.mark.parametrize("name", sorted(P.PROBLEMS))
def test_boundary_and_initial_points(name):
    p = P.get_problem(name)
    rng = np.random.default_rng(2)
    xb, ub = p.sample_boundary(200, rng)
    assert xb.shape == (200, p.dim) and ub.shape == (200,)
    space = p.dim - 1 if p.time_dependent else p.dim
    on_face = np.isclose(xb[:, :space], p.lo[:space]) | np.isclose(xb[:, :space], p.hi[:space])
    assert on_face.any(axis=1).all()
    assert np.all(xb >= p.lo - 1e-15) and np.all(xb <= p.hi + 1e-15)
    np.testing.assert_allclose(ub, p.exact(xb), atol=0, rtol=0)
    if p.dim > 1:  # every face gets points
        for a in range(space):
            assert np.isclose(xb[:, a], p.lo[a]).any() and np.isclose(xb[:, a], p.hi[a]).any()
    if p.time_dependent:
        xi, ui = p.sample_initial(50, rng)
        assert np.all(xi[:, -1] == p.lo[-1])
        np.testing.assert_allclose(ui, np.sin(np.pi * xi[:, 0]), atol=1e-15)
    else:
        with pytest.raises(rbe.errors.ArgumentError, match="not time-dependent"):
            p.sample_initial(5, rng)
    for sampler in P.SAMPLERS:
        xi = p.sample_interior(128, rng, sampler)
        assert xi.shape == (128, p.dim) and np.all(xi >= p.lo) and np.all(xi <= p.hi)


def test_grid_and_errors():
    p = P.Poisson2D()
    x, shape = p.grid((3, 4))
    assert shape == (3, 4) and x.shape == (12, 2)
    np.testing.assert_allclose(x[:4, 1], [0, 1 / 3, 2 / 3, 1])
    with pytest.raises(rbe.errors.ArgumentError, match="grid needs 2 sizes"):
        p.grid((3,))
    with pytest.raises(rbe.errors.ShapeError, match="reference has 3 values"):
        p.relative_l2(Fn(lambda x: x[:, 0:1]), points=(3, 4), reference=np.zeros(3))
    with pytest.raises(rbe.errors.ArgumentError, match="unknown problem"):
        P.get_problem("poisson9d")
    with pytest.raises(rbe.errors.ArgumentError, match="sampler must be one of"):
        p.sample_interior(4, sampler="grid")

    class Bad(P.Problem):
        box = ([0.0, 1.0], [1.0, 0.5])

    with pytest.raises(rbe.errors.ArgumentError, match="lo < hi"):
        Bad().check()


class Cubic(P.Problem):
    """The docs' example: -u'' = -6x on [0, 1], u = x^3."""

    name = "cubic"
    box = ([0.0], [1.0])
    source_scale = 6.0

    def residual(self, x, d):
        return -d.laplacian + 6.0 * x[:, 0]

    def exact(self, x):
        return x[:, 0] ** 3


def test_user_defined_problem_trains():
    # 10 L-BFGS steps: after 5 the error sits near 1e-3 and rounding-level changes of the
    # gradient (5e-16 relative) move it across (2.7e-4 or 1.06e-3); after 10 it is 2.3e-4 either way
    tr = pinn.Trainer(Cubic(), n_interior=200, n_boundary=20, adam_steps=200, lbfgs_steps=10, seed=0)
    res = tr.train()
    assert res.stopped == "done"
    assert res.error < 1e-3, res


# ---------------------------------------------------------------- schedulers
def _lrs(name, steps, **kw):
    net = pinn.ChebyKANNet([1, 2, 1], degree=2, dtype=rbe.float64)
    opt = rbe.optim.Adam(net.parameters(), lr=0.1)
    s = make_scheduler(name, opt, steps, **kw)
    out = []
    for k in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if name == "plateau":
            s.step(1.0)  # never improves
        else:
            s.step()
    return np.array(out)


def test_schedulers_by_name():
    np.testing.assert_allclose(_lrs("exponential", 5, gamma=0.5), 0.1 * 0.5 ** np.arange(5), rtol=1e-12)
    k = np.arange(9)
    np.testing.assert_allclose(_lrs("cosine", 9), 0.1 * (1 + np.cos(np.pi * k / 9)) / 2, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(_lrs("multistep", 8), [0.1] * 4 + [0.01] * 2 + [0.001] * 2, rtol=1e-12)
    lr = _lrs("plateau", 8, patience=2, factor=0.5)
    # the first call sets the best; then 2 bad epochs are tolerated, the 3rd halves the rate
    assert lr[0] == 0.1 and lr[-1] < 0.1 and np.all(np.diff(lr) <= 0)
    assert make_scheduler("none", None) is None
    with pytest.raises(rbe.errors.ArgumentError, match="name must be one of"):
        make_scheduler("linear", None)


# ---------------------------------------------------------------- dynamic weights
def test_dynamic_weights_rule():
    dw = pinn.DynamicWeightedLoss(["pde", "bc", "ic"], initial={"pde": 0.5}, alpha=0.25, max_weight=100.0)
    w = dw.update_from_norms({"pde": 4.0, "bc": 1.0, "ic": 1000.0})
    # hat w_bc = 0.5 * 4 / 1 = 2 -> 0.75 * 1 + 0.25 * 2; hat w_ic = 0.002
    assert w["pde"] == 0.5
    assert abs(w["bc"] - (0.75 + 0.5)) < 1e-15
    assert abs(w["ic"] - (0.75 + 0.25 * 0.002)) < 1e-15
    dw2 = pinn.DynamicWeightedLoss(["pde", "bc"], alpha=1.0, max_weight=3.0)
    assert dw2.update_from_norms({"pde": 100.0, "bc": 1.0})["bc"] == 3.0  # clipped
    with pytest.raises(rbe.errors.ArgumentError, match="reference"):
        pinn.DynamicWeightedLoss(["bc"])


def test_dynamic_weights_use_gradient_norms():
    net = pinn.ChebyKANNet([1, 3, 1], degree=3, dtype=rbe.float64)
    params = list(net.parameters())
    x = t64(np.linspace(-1, 1, 7)[:, None])
    u = net(x)[:, 0]
    losses = {"pde": (u * u).mean(), "bc": (u - 1.0).abs().mean()}
    norms = {}
    for t, l in losses.items():
        gs = rbe.autograd.grad(l, params, retain_graph=True)
        norms[t] = math.sqrt(sum(float((g * g).sum()) for g in gs))
    dw = pinn.DynamicWeightedLoss(["pde", "bc"], alpha=0.5, update_every=2, warmup=1)
    assert dw.update(losses, params) == {"pde": 1.0, "bc": 1.0}  # warm-up
    w = dw.update(losses, params)
    assert abs(w["bc"] - (0.5 + 0.5 * norms["pde"] / norms["bc"])) < 1e-12
    assert dw.update(losses, params) == w  # not due (every 2)
    tot = dw(losses)
    assert abs(float(tot) - (float(losses["pde"]) + w["bc"] * float(losses["bc"]))) < 1e-12


# ---------------------------------------------------------------- resampling
def test_adaptive_sampler_selection():
    s = pinn.AdaptiveResidualSampler(every=3, refinement_ratio=0.5, percentile=50.0, max_points=7, cycles=2)
    pts = np.zeros((4, 1))
    cand = np.arange(10, dtype=float)[:, None]
    res = np.array([5, 1, 9, 3, 8, 2, 7, 0, 6, 4], dtype=float)
    out = s.select(pts, cand, res)
    # ceil(0.5 * 4) = 2 points, the largest residuals at or above the median: 9 (id 2) and 8 (id 4)
    np.testing.assert_array_equal(out[4:, 0], [2.0, 4.0])
    out2 = s.select(out, cand, res)  # 6 points, wants 3 but the cap leaves room for 1
    assert out2.shape[0] == 7 and out2[6, 0] == 2.0
    assert s.select(out2, cand, res).shape[0] == 7
    s2 = pinn.AdaptiveResidualSampler(refinement_ratio=1.0, percentile=90.0, max_points=100)
    out3 = s2.select(np.zeros((5, 1)), cand, res)  # only the top 10% (one point) is eligible
    np.testing.assert_array_equal(out3[5:, 0], [2.0])
    assert [s.due(k) for k in range(1, 7)] == [False, False, True, False, False, True]
    with pytest.raises(rbe.errors.ArgumentError, match="refinement_ratio"):
        pinn.AdaptiveResidualSampler(refinement_ratio=0.0)


# ---------------------------------------------------------------- the trainer's loop
def _small(problem="poisson1d", **kw):
    args = dict(n_interior=64, n_boundary=16, adam_steps=20, lbfgs_steps=0, widths=None, seed=3)
    args.update(kw)
    return pinn.Trainer(problem, **args)


def _gradnorm(params):
    return math.sqrt(sum(float((q.grad * q.grad).sum()) for q in params if q.grad is not None))


def test_clipping_before_each_step():
    tr = _small(adam_steps=1, clip=1e-3)
    tr.train()
    assert tr.history["grad_norm"][0] > 1e-3  # the norm before clipping, recorded
    assert _gradnorm(tr.params) <= 1e-3 * (1 + 1e-9)  # what Adam saw
    tr2 = _small(adam_steps=1, clip=None)
    tr2.train()
    assert abs(_gradnorm(tr2.params) - tr2.history["grad_norm"][0]) < 1e-9 * tr2.history["grad_norm"][0]


def test_early_stopping_restores_best():
    tr = _small(adam_steps=400, lr=0.3, scheduler=None, patience=5, clip=None)
    res = tr.train()
    assert res.stopped == "early_stopping" and res.steps_adam < 400
    h = np.array(tr.history["loss"])
    best = int(np.argmin(h))
    assert len(h) - 1 - best == 6  # patience + 1 steps without improvement
    now = float(tr.total(tr.losses()))
    assert abs(now - h.min()) <= 1e-12 * h.min()


def test_non_finite_loss_stops_and_keeps_last_good_weights():
    class Blows(P.Poisson1D):
        calls = 0

        def residual(self, x, d):
            Blows.calls += 1
            r = super().residual(x, d)
            return r * math.inf if Blows.calls > 5 else r

    tr = _small(Blows(), adam_steps=50)
    with pytest.warns(RuntimeWarning, match="the loss became"):
        res = tr.train()
    assert res.stopped == "non_finite" and res.steps_adam == 5
    assert "last good weights" in res.message
    assert all(np.isfinite(q.detach().numpy()).all() for q in tr.params)
    Blows.calls = -10**6  # finite again: the kept weights are those of the last recorded loss
    assert abs(float(tr.total(tr.losses())) - tr.history["loss"][-1]) < 1e-12 * tr.history["loss"][-1]


def test_resampling_and_minibatches_in_the_loop():
    seen = []

    class Rec(P.Poisson1D):
        def residual(self, x, d):
            seen.append(int(x.shape[0]))
            return super().residual(x, d)

    rs = pinn.AdaptiveResidualSampler(every=5, refinement_ratio=0.5, percentile=0.0, candidates=100, max_points=100)
    tr = _small(Rec(), adam_steps=12, batch_size=16, resampler=rs)
    tr.train()
    n = tr.history["n_points"]
    # recorded before the refinement of its step: 64 until step 5, 96 after, 100 (the cap) after step 10
    assert n[:6] == [64] * 5 + [96] and n[9] == 96 and n[10] == 100 and tr.x_int.shape == (100, 1)
    # the loop's residual calls: batches of 16, and the resampler's 100 candidates at steps 5 and 10
    assert seen.count(100) == 2
    assert set(seen) - {100} == {16}


def test_dynamic_weights_in_the_loop_and_history():
    tr = _small("diffusion1d", dynamic=pinn.DynamicWeightedLoss(["pde", "bc", "ic"], update_every=5), adam_steps=11)
    tr.train()
    h = tr.history
    assert set(tr.terms) == {"pde", "bc", "ic"}
    for t in tr.terms:
        assert len(h[f"loss_{t}"]) == 11 and len(h[f"weight_{t}"]) == 11
    assert h["weight_pde"] == [1.0] * 11
    wb = h["weight_bc"]
    assert wb[0] != 1.0 and wb[1:5] == [wb[0]] * 4 and wb[5] != wb[4]  # updated at calls 0, 5, 10


def test_pde_scaling_and_weights():
    tr = _small("poisson2d", weights={"bc": 10.0})
    assert tr.weights == {"pde": 1.0 / (2 * PI ** 2) ** 2, "bc": 10.0}
    tr = _small("poisson2d", pde_scaling="none")
    assert tr.weights == {"pde": 1.0, "bc": 1.0}
    with pytest.raises(rbe.errors.ArgumentError, match="not one of this problem's terms"):
        _small("poisson2d", weights={"ic": 1.0})
    xd = np.array([[0.1], [0.2]])
    tr = _small(data=(xd, np.sin(np.pi * xd[:, 0])))
    assert tr.terms == ["pde", "bc", "data"]
    with pytest.raises(rbe.errors.ShapeError, match="data must be"):
        _small(data=(xd, np.zeros(3)))


@pytest.mark.parametrize("name", sorted(P.PROBLEMS))
def test_smoke_training_loss_falls(name, tmp_path):
    tr = pinn.Trainer(name, n_interior=256, n_boundary=64, n_initial=64, adam_steps=60, lbfgs_steps=2, lbfgs_max_iter=20,
                      seed=0, eval_every=30)
    res = tr.train()
    h = np.array(tr.history["loss"])
    assert np.all(np.isfinite(h)) and res.stopped == "done"
    assert math.isfinite(res.error)
    assert res.loss < 0.05 * h[0], (h[0], res.loss)
    assert res.steps_lbfgs >= 1 and tr.history["phase"][-1] == "lbfgs"
    err = np.array(tr.history["error"])
    assert np.isfinite(err[29]) and np.isnan(err[28])
    paths = tr.save_figures(str(tmp_path))
    assert all(os.path.getsize(p) > 10000 for p in paths)


def test_trainer_argument_errors():
    with pytest.raises(rbe.errors.ArgumentError, match="pde_scaling"):
        _small(pde_scaling="max")
    with pytest.raises(rbe.errors.ArgumentError, match="batch_size"):
        _small(batch_size=0)
    with pytest.raises(rbe.errors.ArgumentError, match="adam_steps"):
        _small(adam_steps=-1)


# ---------------------------------------------------------------- the CLI
def test_cli_quick_run_through_rbe_dispatch(tmp_path, capsys):
    import json

    from rbe.cli import main as rbe_main

    rc = rbe_main(["pinn", "poisson1d", "--quick", "--no-progress", "--seed", "2", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "relative L2 error" in out and "time:" in out
    s = json.loads((tmp_path / "poisson1d_seed2.json").read_text())
    assert s["problem"] == "poisson1d" and s["seed"] == 2 and math.isfinite(s["error"]) and s["steps_adam"] == 60
    assert (tmp_path / "poisson1d_seed2_solution.png").stat().st_size > 10000
    from rbe.pinn.cli import main

    with pytest.raises(SystemExit):
        main(["poisson4d"])
    assert main(["poisson1d", "--quick", "--no-figures", "--no-progress", "--scheduler", "cosine", "--gamma", "0.5",
                 "--out", str(tmp_path)]) == 2


def test_bench_implementations_agree():
    from rbe.pinn import bench

    rows = bench.run(dims=(2, 3), n=40, threads=(1,), repeats=1, with_torch=True, with_jax=False, subprocess_per_thread_count=False)
    assert [r["d"] for r in rows] == [2, 3]
    for r in rows:
        assert r["max rel. loss difference"] < 1e-10
        assert all(r[k] > 0 for k in ("rbe taylor", "rbe nested", "torch nested"))
    assert "| 2 | 40 | 1 |" in bench.table(rows)


def test_float32_model_and_mlp_train():
    net = pinn.MLP([1, 16, 1], box=([-1.0], [1.0]), dtype=rbe.float32)
    tr = pinn.Trainer("poisson1d", net, n_interior=64, n_boundary=4, adam_steps=50, lbfgs_steps=0)
    assert tr.dtype == rbe.float32
    res = tr.train()
    h = tr.history["loss"]
    assert res.stopped == "done" and np.isfinite(h).all() and h[-1] < h[0]


def test_lbfgs_strong_wolfe_the_trainer_uses_solves_rosenbrock():
    from scipy.optimize import minimize, rosen

    x = rbe.nn.Parameter(t64([-1.2, 1.0]))
    opt = rbe.optim.LBFGS([x], lr=1.0, max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-15,
                          line_search_fn="strong_wolfe")

    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        f = 100.0 * (x[1] - x[0] * x[0]) ** 2 + (1.0 - x[0]) ** 2
        f.backward()
        return f

    opt.step(closure)
    ref = minimize(rosen, [-1.2, 1.0], method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15})
    np.testing.assert_allclose(x.detach().numpy(), [1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(ref.x, [1.0, 1.0], atol=1e-4)
    assert len(calls) < 300  # the line search converges, it does not crawl


# ---------------------------------------------------------------- second round: the pieces against their definitions
def test_early_stopping_in_adam_then_lbfgs_starts_from_the_restored_best(monkeypatch):
    from rbe.pinn import trainer as T

    starts = []

    class SpyLBFGS(T.LBFGS):
        def __init__(self, params, **kw):
            params = list(params)
            starts.append([q.detach().clone() for q in params])
            super().__init__(params, **kw)

    monkeypatch.setattr(T, "LBFGS", SpyLBFGS)
    tr = _small(adam_steps=400, lr=0.3, scheduler=None, patience=5, clip=None, lbfgs_steps=3)
    res = tr.train()
    assert res.adam_stopped == "early_stopping" and res.stopped == "done" and res.steps_lbfgs >= 1
    h = tr.history
    adam = [v for v, ph in zip(h["loss"], h["phase"]) if ph == "adam"]
    assert len(adam) - 1 - int(np.argmin(adam)) == 6
    # L-BFGS began at the best Adam weights, not at the last ones
    assert len(starts) == 1
    last = tr._snapshot()
    tr._restore(starts[0])
    at_start = float(tr.total(tr.losses()))
    tr._restore(last)
    assert abs(at_start - min(adam)) <= 1e-12 * min(adam)
    assert at_start < adam[-1]  # the last Adam weights were worse
    lb = [v for v, ph in zip(h["loss"], h["phase"]) if ph == "lbfgs"]
    assert lb[0] <= min(adam)  # strong-Wolfe steps lower the loss from there
    assert abs(float(tr.total(tr.losses())) - res.loss) <= 1e-12 * res.loss
    assert res.loss == min(lb)


def test_schedulers_by_name_take_their_parameters():
    k = np.arange(6)
    np.testing.assert_allclose(_lrs("cosine", 6, T_max=3, eta_min=0.01), 0.01 + (0.1 - 0.01) * (1 + np.cos(np.pi * k / 3)) / 2,
                               rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(_lrs("multistep", 6, milestones=[1, 4], gamma=0.5), [0.1, 0.05, 0.05, 0.05, 0.025, 0.025], rtol=1e-12)
    lr = _lrs("plateau", 6, patience=0, factor=0.1)
    np.testing.assert_allclose(lr, [0.1, 0.1, 0.01, 1e-3, 1e-4, 1e-5], rtol=1e-9)
    with pytest.raises(TypeError):
        _lrs("exponential", 2, not_a_parameter=1)
    # the trainer steps its scheduler once per Adam step, with the given parameters
    tr = _small(adam_steps=5, scheduler="exponential", scheduler_params={"gamma": 0.5}, lr=0.02)
    tr.train()
    np.testing.assert_allclose(tr.history["lr"], 0.02 * 0.5 ** np.arange(5), rtol=1e-12)


def test_dynamic_weights_start_conservatively():
    dw = pinn.DynamicWeightedLoss(["pde", "bc"])
    assert dw.alpha == 0.1 and dw.weights == {"pde": 1.0, "bc": 1.0}
    # a target 1000x away moves the weight by only a tenth of the way
    assert abs(dw.update_from_norms({"pde": 1000.0, "bc": 1.0})["bc"] - (0.9 + 0.1 * 1000.0)) < 1e-12
    tr = _small("poisson2d", dynamic=True)
    # dynamic=True starts from the fixed weights (the PDE one scaled by 1/source_scale^2)
    assert tr.dynamic.weights == {"pde": 1.0 / (2 * PI ** 2) ** 2, "bc": 1.0} == tr.weights
    assert tr.dynamic.alpha == 0.1


def test_sampler_refinement_counts_in_the_loop():
    rs = pinn.AdaptiveResidualSampler(every=2, refinement_ratio=0.25, percentile=50.0, candidates=40, max_points=90, cycles=3)
    tr = _small(adam_steps=10, resampler=rs)
    tr.train()
    # 64 -> +16 -> 80 -> +10 (the cap, 90) -> stays: the refinement ratio, the cap, then cycles=3 stops it
    assert rs.done == 3 and tr.x_int.shape == (90, 1)
    assert tr.history["n_points"][:6] == [64, 64, 80, 80, 90, 90]
    # the rule on fresh candidates: ceil(ratio n) of those at or above the median |r|, largest first
    rng = np.random.default_rng(1)
    cand = rng.uniform(-1, 1, (100, 1))
    r = tr.residual_abs(cand)
    out = pinn.AdaptiveResidualSampler(refinement_ratio=0.25, percentile=50.0, max_points=1000).select(tr.x_int, cand, r)
    added = out[90:]
    assert added.shape[0] == math.ceil(0.25 * 90)
    assert np.abs(tr.residual_abs(added)).min() >= np.percentile(r, 50.0)


def test_the_docs_user_defined_problem_runs():
    import re

    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "pinn.md")).read()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "class Cubic(pinn.Problem)" in b]
    assert len(blocks) == 1
    ns: dict = {}
    exec(compile(blocks[0], "docs/pinn.md", "exec"), ns)
    assert ns["res"].stopped == "done" and ns["res"].error < 1e-3, ns["res"]


def test_rbe_nn_chebykan_signature():
    layer = rbe.nn.ChebyKAN(3, 2, degree=4, dtype=rbe.float64)
    assert tuple(layer.coeffs.shape) == (3, 2, 5)
    layer = rbe.nn.ChebyKAN(3, 2, 4, "affine", ([0, 0, 0], [1, 2, 3]), dtype=rbe.float64)
    assert layer.degree == 4 and layer.box == ([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])
    net = pinn.ChebyKANNet([2, 4, 4, 1], degree=3, layernorm=True, dtype=rbe.float64)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["ChebyKAN", "LayerNorm", "ChebyKAN", "LayerNorm", "ChebyKAN"]


# ---------------------------------------------------------------- matplotlib is an extra
def test_cli_without_matplotlib_warns_once_and_trains(tmp_path):
    """A plain install (no matplotlib): ``rbe pinn`` warns once before training,
    then trains and writes its summary, without figures."""
    import subprocess
    import sys

    out = tmp_path / "out"
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from rbe.pinn.cli import main\n"
            f"raise SystemExit(main(['poisson1d', '--quick', '--no-progress', '--out', {str(out)!r}]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, r.stderr
    msg = "matplotlib not installed: figures skipped; pip install 'rbe-autodiff[plot]'"
    assert r.stderr.count(msg) == 1, r.stderr
    assert "relative L2 error" in r.stdout and "figures:" not in r.stdout
    files = sorted(os.listdir(out))
    assert files == ["poisson1d_seed0.json"], files


def test_trainer_figures_without_matplotlib_raise_before_training(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    with pytest.raises(pinn.errors.MissingExtraError, match=r"rbe-autodiff\[plot\]") as ei:
        _small(figures=str(tmp_path / "figs"))
    assert isinstance(ei.value, ImportError) and "Trainer(figures=...)" in str(ei.value)
    assert not (tmp_path / "figs").exists()
    tr = _small()
    with pytest.raises(ImportError, match=r"rbe-autodiff\[plot\]"):
        tr.save_figures(str(tmp_path / "later"))
    assert not (tmp_path / "later").exists()


def test_trainer_figures_saved_at_the_end(tmp_path):
    tr = _small(adam_steps=5, lbfgs_steps=0, figures=str(tmp_path))
    assert tr.figure_paths == []
    tr.train()
    assert [os.path.basename(p) for p in tr.figure_paths] == ["poisson1d_solution.png", "poisson1d_loss.png"]
    assert all(os.path.getsize(p) > 1000 for p in tr.figure_paths)


# ---------------------------------------------------------------- third round: min_delta, the L-BFGS optimiser, progress
def _stop_index(h, patience, min_delta):
    """The early-stopping rule written out: the index of the step at which
    ``patience + 1`` steps in a row failed to improve on the best by more than
    ``min_delta``, and the index of the best (None if it never stops)."""
    best, best_i, bad = math.inf, -1, 0
    for i, v in enumerate(h):
        if v < best - min_delta:
            best, best_i, bad = v, i, 0
        else:
            bad += 1
        if bad > patience:
            return i, best_i
    return None, best_i


def test_early_stopping_min_delta_small_improvements_count_as_none():
    kw = dict(adam_steps=40, lr=1e-5, scheduler=None, clip=None)
    free = _small(**kw)
    assert free.train().stopped == "done"
    h = np.array(free.history["loss"])
    drops = -np.diff(h)
    assert np.all(drops > 0)  # a steady descent: min_delta=0 never stops it
    assert _stop_index(h, 3, 0.0)[0] is None
    md = 4.0 * float(drops[:10].max())  # every single step improves by less than min_delta
    stop_i, best_i = _stop_index(h, 3, md)
    assert stop_i is not None and stop_i < len(h) - 1
    tr = _small(patience=3, min_delta=md, **kw)
    res = tr.train()
    assert res.stopped == "early_stopping" and res.steps_adam == stop_i + 1
    np.testing.assert_array_equal(np.array(tr.history["loss"]), h[: stop_i + 1])  # the same run up to there
    # the best weights (those the best loss was computed at) are back
    assert abs(float(tr.total(tr.losses())) - h[best_i]) <= 1e-12 * h[best_i]
    assert best_i < stop_i


def test_lbfgs_phase_is_built_with_strong_wolfe(monkeypatch):
    from rbe.pinn import trainer as T

    built = []

    class SpyLBFGS(T.LBFGS):
        def __init__(self, params, **kw):
            super().__init__(params, **kw)
            built.append(self)

    monkeypatch.setattr(T, "LBFGS", SpyLBFGS)
    tr = _small(adam_steps=3, lbfgs_steps=1, lbfgs_max_iter=5, lbfgs_history=7)
    tr.train()
    assert len(built) == 1
    g = built[0].param_groups[0]
    assert g["line_search_fn"] == "strong_wolfe"
    assert g["max_iter"] == 5 and g["history_size"] == 7 and g["lr"] == 1.0
    assert len(g["params"]) == len(tr.params)


def test_non_finite_loss_in_lbfgs_stops_and_keeps_last_good_weights(monkeypatch):
    from rbe.pinn import trainer as T

    class Arms(P.Poisson1D):
        armed = False

        def residual(self, x, d):
            r = super().residual(x, d)
            return r * math.nan if Arms.armed else r

    steps = []

    class ArmingLBFGS(T.LBFGS):
        def step(self, closure):
            steps.append(1)
            if len(steps) == 3:  # the third L-BFGS step meets a NaN loss
                Arms.armed = True
            return super().step(closure)

    monkeypatch.setattr(T, "LBFGS", ArmingLBFGS)
    tr = _small(Arms(), adam_steps=10, lbfgs_steps=5, lbfgs_max_iter=5)
    with pytest.warns(RuntimeWarning, match="last good weights are kept"):
        res = tr.train()
    assert res.stopped == "non_finite" and res.adam_stopped == "done" and res.steps_lbfgs == 2
    assert "L-BFGS step 3" in res.message and "last good weights are kept" in res.message
    assert all(np.isfinite(q.detach().numpy()).all() for q in tr.params)
    Arms.armed = False  # the weights are those of the last recorded (finite) L-BFGS loss
    h = tr.history
    assert h["phase"][-1] == "lbfgs" and len(h["loss"]) == 10 + 2
    assert abs(float(tr.total(tr.losses())) - h["loss"][-1]) <= 1e-12 * h["loss"][-1]
    assert math.isfinite(res.loss) and res.loss == h["loss"][-1]


def test_progress_bar_gives_the_same_result(capsys):
    kw = dict(adam_steps=60, lbfgs_steps=2, lbfgs_max_iter=10)
    quiet = _small(progress=False, **kw)
    r0 = quiet.train()
    assert "pinn poisson1d" not in capsys.readouterr().err
    shown = _small(progress=True, **kw)
    r1 = shown.train()
    assert "pinn poisson1d" in capsys.readouterr().err  # the tqdm bar ran
    assert r0.steps_lbfgs >= 1 and r1.steps_lbfgs == r0.steps_lbfgs
    assert r1.error == r0.error and r1.loss == r0.loss
    assert shown.history["loss"] == quiet.history["loss"]
    for a, b in zip(quiet.params, shown.params):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
