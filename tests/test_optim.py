"""Optimizers against torch.optim from identical weights and data.

Tolerance: float64 rtol 1e-10 after 25 steps (the update formulas are the
same operation by operation); float32 rtol 1e-5.
"""
import numpy as np
import pytest
import torch

import rbe
import rbe.nn as nn


def make_pair(dtype):
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((5, 4)) * 0.5
    b1 = rng.standard_normal(5) * 0.1
    w2 = rng.standard_normal((3, 5)) * 0.5
    x = rng.standard_normal((16, 4))
    y = rng.integers(0, 3, 16)
    arrs = [a.astype(dtype) for a in (w1, b1, w2)]
    rp = [nn.Parameter(rbe.tensor(a)) for a in arrs]
    tp = [torch.nn.Parameter(torch.tensor(a)) for a in arrs]
    return rp, tp, x.astype(dtype), y


def loss_of(m, ps, x, y):
    h = (m.tensor(x) @ ps[0].T + ps[1]).tanh()
    return m.nn.functional.cross_entropy(h @ ps[2].T, m.tensor(y))


CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.3, maximize=False)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, weight_decay=0.05, amsgrad=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.005, alpha=0.9, eps=1e-6, maximize=True)),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,kw", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_optimizer_matches_torch(name, kw, dtype):
    rp, tp, x, y = make_pair(dtype)
    ro = getattr(rbe.optim, name)(rp, **kw)
    to = getattr(torch.optim, name)(tp, **kw)
    for _ in range(25):
        for o, ps, m in ((ro, rp, rbe), (to, tp, torch)):
            o.zero_grad()
            loss_of(m, ps, x, y).backward()
            o.step()
    rtol = 1e-10 if dtype == "float64" else 1e-5
    for a, b in zip(rp, tp):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=rtol, atol=rtol)


def test_param_groups_and_state_dict_resume():
    rp, tp, x, y = make_pair("float64")
    opt = rbe.optim.Adam([{"params": rp[:2]}, {"params": rp[2:], "lr": 0.05}], lr=0.01)
    assert opt.param_groups[1]["lr"] == 0.05 and opt.param_groups[0]["betas"] == (0.9, 0.999)
    for _ in range(3):
        opt.zero_grad()
        loss_of(rbe, rp, x, y).backward()
        opt.step()
    sd = opt.state_dict()
    assert sorted(sd["state"].keys()) == [0, 1, 2] and sd["param_groups"][1]["params"] == [2]
    # a second model continuing from a copy must follow the first exactly
    rp2 = [nn.Parameter(p.detach().clone()) for p in rp]
    opt2 = rbe.optim.Adam([{"params": rp2[:2]}, {"params": rp2[2:], "lr": 0.05}], lr=0.01)
    opt2.load_state_dict(sd)
    for _ in range(3):
        for o, ps in ((opt, rp), (opt2, rp2)):
            o.zero_grad()
            loss_of(rbe, ps, x, y).backward()
            o.step()
    for a, b in zip(rp, rp2):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())


def test_optimizer_argument_errors():
    p = [nn.Parameter(rbe.zeros(2))]
    with pytest.raises(ValueError):
        rbe.optim.SGD(p, lr=-1)
    with pytest.raises(ValueError):
        rbe.optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError):
        rbe.optim.Adam(p, betas=(1.0, 0.9))
    with pytest.raises(ValueError):
        rbe.optim.Adam([], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        rbe.optim.SGD([rbe.ones(2, requires_grad=True) * 2], lr=0.1)


def test_gradient_accumulation_equals_big_batch():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((32, 4)).astype(np.float64)
    y = rng.integers(0, 3, 32)
    rbe.manual_seed(0)
    m1 = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    m2 = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    m2.load_state_dict(m1.state_dict())
    o1 = rbe.optim.SGD(m1.parameters(), lr=0.1, momentum=0.9)
    o2 = rbe.optim.SGD(m2.parameters(), lr=0.1, momentum=0.9)
    lf = nn.CrossEntropyLoss()
    for _ in range(3):
        o1.zero_grad()
        lf(m1(rbe.tensor(x)), rbe.tensor(y)).backward()
        o1.step()
        o2.zero_grad()
        for k in range(4):
            sl = slice(8 * k, 8 * (k + 1))
            (lf(m2(rbe.tensor(x[sl])), rbe.tensor(y[sl])) / 4).backward()
        o2.step()
    for a, b in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kw", [{}, {"amsgrad": True, "weight_decay": 0.1}, {"maximize": True}])
def test_large_adam_step_same_bits_any_thread_count_and_matches_torch(kw):
    import torch

    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((700, 513)).astype(np.float32)
    grads = [rng.standard_normal(p0.shape).astype(np.float32) for _ in range(3)]
    outs = []
    for threads in (1, 2):
        rbe.set_num_threads(threads)
        p = rbe.nn.Parameter(rbe.tensor(p0))
        opt = rbe.optim.Adam([p], lr=1e-2, **kw)
        for g in grads:
            p.grad = rbe.tensor(g)
            opt.step()
        outs.append(p.detach().numpy().copy())
    rbe.set_num_threads(1)
    assert outs[0].tobytes() == outs[1].tobytes()
    tp = torch.nn.Parameter(torch.tensor(p0))
    topt = torch.optim.Adam([tp], lr=1e-2, **kw)
    for g in grads:
        tp.grad = torch.tensor(g)
        topt.step()
    np.testing.assert_allclose(outs[0], tp.detach().numpy(), rtol=1e-5, atol=1e-6)
