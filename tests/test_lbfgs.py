"""L-BFGS against torch.optim.LBFGS from identical float64 starting points.

Both run the same algorithm operation by operation, so iterates agree up to
rounding: torch's ``add_(other, alpha=a)`` uses a fused multiply-add (one
rounding) where rbe rounds twice, and BLAS dot products sum in a different
order for long vectors. On the problems below those 1-ulp differences stay far below
the 1e-8 tolerance (Rosenbrock's curved valley amplifies them ~10x per few
iterations, so it runs fewer iterations); the number of function evaluations and
iterations must match exactly.
"""
import numpy as np
import pytest
import torch

import rbe
import rbe.nn as nn
from rbe.optim import LBFGS

RTOL = 1e-8


# ---------------------------------------------------------------- problems
def rosenbrock(m, ps, _data):
    (x,) = ps
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def rosen_init():
    return [np.array([-1.5, 2.0])]


def _ls_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4))
    W_true = rng.standard_normal((3, 4))
    Y = X @ W_true.T + 0.5 + 0.1 * rng.standard_normal((40, 3))
    return X, Y


def least_squares(m, ps, data):
    W, b = ps
    X, Y = data
    r = m.tensor(X) @ W.T + b - m.tensor(Y)
    return (r * r).mean()


def ls_init():
    rng = np.random.default_rng(1)
    return [rng.standard_normal((3, 4)) * 0.1, np.zeros(3)]


def _logit_data():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((60, 5))
    w = rng.standard_normal(5)
    y = (X @ w + 0.3 + 0.8 * rng.standard_normal(60) > 0).astype(np.float64)
    return X, y


def logistic(m, ps, data):
    w, b = ps
    X, y = data
    z = m.tensor(X) @ w + b
    return m.nn.functional.binary_cross_entropy_with_logits(z, m.tensor(y)) + 1e-3 * (w * w).sum()


def logit_init():
    return [np.full(5, 0.05), np.array(0.0)]


PROBLEMS = {
    "rosenbrock": (rosenbrock, rosen_init, lambda: None),
    "least_squares": (least_squares, ls_init, _ls_data),
    "logistic": (logistic, logit_init, _logit_data),
}


def run(m, problem, steps, **kw):
    f, init, data_fn = PROBLEMS[problem]
    data = data_fn()
    if m is rbe:
        ps = [nn.Parameter(rbe.tensor(a.copy(), dtype=rbe.float64)) for a in init()]
        opt = LBFGS(ps, **kw)
    else:
        ps = [torch.nn.Parameter(torch.tensor(a.copy(), dtype=torch.float64)) for a in init()]
        opt = torch.optim.LBFGS(ps, **kw)
    sign = -1.0 if kw.get("maximize") else 1.0

    def closure():
        opt.zero_grad()
        loss = sign * f(m, ps, data)
        loss.backward()
        return loss

    traj, losses = [], []
    for _ in range(steps):
        losses.append(opt.step(closure).item())
        traj.append([p.detach().numpy().copy() for p in ps])
    return ps, opt, traj, losses


CONFIGS = [
    ("rosenbrock", 5, dict(line_search_fn="strong_wolfe")),
    ("rosenbrock", 2, dict(line_search_fn="strong_wolfe", history_size=3, max_iter=7)),
    ("rosenbrock", 5, dict(lr=0.1)),
    ("rosenbrock", 1, dict()),
    ("rosenbrock", 3, dict(lr=0.5, history_size=2, max_iter=10, max_eval=12)),
    ("least_squares", 4, dict()),
    ("least_squares", 4, dict(lr=0.5, history_size=4, max_iter=6)),
    ("least_squares", 4, dict(line_search_fn="strong_wolfe")),
    ("least_squares", 5, dict(line_search_fn="strong_wolfe", history_size=2, max_iter=5)),
    ("logistic", 4, dict(max_iter=10)),
    ("logistic", 4, dict(line_search_fn="strong_wolfe", max_iter=10)),
    ("logistic", 3, dict(line_search_fn="strong_wolfe", max_iter=8, maximize=True)),
    ("logistic", 3, dict(max_iter=8, maximize=True, lr=0.8)),
]


def _assert_traj(a, b):
    for sa, sb in zip(a, b):
        for x, y in zip(sa, sb):
            np.testing.assert_allclose(x, y, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("problem,steps,kw", CONFIGS, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(CONFIGS)])
def test_lbfgs_matches_torch(problem, steps, kw):
    rps, ro, rtraj, rloss = run(rbe, problem, steps, **kw)
    tps, to, ttraj, tloss = run(torch, problem, steps, **kw)
    _assert_traj(rtraj, ttraj)
    np.testing.assert_allclose(rloss, tloss, rtol=RTOL)
    rs, ts = ro.state[rps[0]], to.state[tps[0]]
    assert rs["func_evals"] == ts["func_evals"]
    assert rs["n_iter"] == ts["n_iter"]
    assert len(rs["old_dirs"]) == len(ts["old_dirs"])
    assert len(rs["old_dirs"]) <= kw.get("history_size", 100)
    np.testing.assert_allclose(float(rs["t"]), float(ts["t"]), rtol=RTOL)
    np.testing.assert_allclose(rs["d"].numpy(), ts["d"].numpy(), rtol=1e-7, atol=1e-12)


def test_lbfgs_converges_on_least_squares():
    X, Y = _ls_data()
    ps, _, _, _ = run(rbe, "least_squares", 3, line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-15)
    A = np.hstack([X, np.ones((len(X), 1))])
    sol = np.linalg.lstsq(A, Y, rcond=None)[0]
    np.testing.assert_allclose(ps[0].detach().numpy(), sol[:4].T, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ps[1].detach().numpy(), sol[4], rtol=1e-6, atol=1e-8)


def test_lbfgs_state_dict_resume():
    kw = dict(line_search_fn="strong_wolfe", history_size=5, max_iter=4)
    _, _, full, _ = run(rbe, "least_squares", 4, **kw)
    _, _, tfull, _ = run(torch, "least_squares", 4, **kw)
    _assert_traj(full, tfull)

    f, init, data_fn = PROBLEMS["least_squares"]
    data = data_fn()

    def make():
        ps = [nn.Parameter(rbe.tensor(a.copy(), dtype=rbe.float64)) for a in init()]
        opt = LBFGS(ps, **kw)

        def closure():
            opt.zero_grad()
            loss = f(rbe, ps, data)
            loss.backward()
            return loss

        return ps, opt, closure

    ps, opt, closure = make()
    for _ in range(2):
        opt.step(closure)
    sd = opt.state_dict()
    assert list(sd["state"]) == [0]  # global state lives under the first parameter
    assert sd["param_groups"][0]["history_size"] == 5
    vals = [p.detach().numpy().copy() for p in ps]

    ps2, opt2, closure2 = make()
    with rbe.no_grad():
        for p, v in zip(ps2, vals):
            p.copy_(rbe.tensor(v))
    opt2.load_state_dict(sd)
    for k in range(2, 4):
        opt2.step(closure2)
        for x, y in zip(ps2, full[k]):
            np.testing.assert_allclose(x.detach().numpy(), y, rtol=1e-12, atol=1e-14)


def test_step_requires_closure():
    x = nn.Parameter(rbe.tensor([1.0, 2.0], dtype=rbe.float64))
    opt = LBFGS([x])
    with pytest.raises(TypeError):
        opt.step()
    with pytest.raises(TypeError):
        opt.step(None)


def test_closure_runs_with_grad_enabled_and_returns_initial_loss():
    x = nn.Parameter(rbe.tensor([3.0, -1.0], dtype=rbe.float64))
    opt = LBFGS([x], max_iter=5)
    seen = []

    def closure():
        seen.append(rbe.is_grad_enabled())
        opt.zero_grad()
        loss = (x * x).sum()
        loss.backward()
        return loss

    with rbe.no_grad():
        loss = opt.step(closure)
    assert all(seen) and len(seen) >= 2
    assert float(loss) == 10.0
    # a quadratic with identity Hessian: the first step (t = 1/|g|_1 * lr, then memory) reaches 0
    np.testing.assert_allclose(x.detach().numpy(), [0.0, 0.0], atol=1e-12)


def test_stops_at_optimum_without_moving():
    x = nn.Parameter(rbe.tensor([0.0, 0.0], dtype=rbe.float64))
    opt = LBFGS([x])
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = ((x - 0.0) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert len(calls) == 1
    assert opt.state[x]["func_evals"] == 1 and opt.state[x]["n_iter"] == 0
    np.testing.assert_array_equal(x.detach().numpy(), [0.0, 0.0])


def test_parameter_without_grad_and_validation():
    x = nn.Parameter(rbe.tensor([1.0, 2.0], dtype=rbe.float64))
    unused = nn.Parameter(rbe.tensor([5.0], dtype=rbe.float64))
    opt = LBFGS([x, unused], line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ((x - 1.5) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    np.testing.assert_allclose(x.detach().numpy(), [1.5, 1.5], atol=1e-9)
    assert unused.item() == 5.0

    with pytest.raises(ValueError):
        LBFGS([x], lr=-1.0)
    with pytest.raises(ValueError):
        LBFGS([{"params": [x]}, {"params": [unused], "lr": 0.1}])
    y = nn.Parameter(rbe.tensor([1.0, 2.0], dtype=rbe.float64))
    bad = LBFGS([y], line_search_fn="backtracking")  # as torch: rejected when stepping

    def closure_y():
        bad.zero_grad()
        loss = (y * y).sum()
        loss.backward()
        return loss

    with pytest.raises(RuntimeError, match="strong_wolfe"):
        bad.step(closure_y)
    assert LBFGS([x], max_iter=8).param_groups[0]["max_eval"] == 10
