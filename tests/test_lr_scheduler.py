"""Learning-rate schedulers against torch.optim.lr_scheduler.

Both sides get the same optimizer setup (two param groups with different lrs)
and the same sequence of calls; the lrs must agree after every step (rel 1e-12;
in practice they are bit-identical since the float arithmetic is the same).
"""
import math
import warnings

import numpy as np
import pytest
import torch

import rbe
import rbe.nn as nn
from rbe.optim import lr_scheduler as rls
from torch.optim import lr_scheduler as tls

LRS = (0.1, 0.03)
N_STEPS = 30
REL = 1e-12


def make_opts(lrs=LRS, cls="SGD", **kw):
    rp = [nn.Parameter(rbe.zeros((2,), dtype=rbe.float64)) for _ in lrs]
    tp = [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)) for _ in lrs]
    ro = getattr(rbe.optim, cls)([{"params": [p], "lr": lr} for p, lr in zip(rp, lrs)], lr=lrs[0], **kw)
    to = getattr(torch.optim, cls)([{"params": [p], "lr": lr} for p, lr in zip(tp, lrs)], lr=lrs[0], **kw)
    return ro, to


def close(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert math.isclose(float(x), float(y), rel_tol=REL, abs_tol=1e-300), (a, b)


def group_lrs(opt):
    return [g["lr"] for g in opt.param_groups]


def check_same(rs, ts, ro, to):
    close(group_lrs(ro), group_lrs(to))
    close(rs.get_last_lr(), ts.get_last_lr())


def _lambda_fn(e):
    return 0.95 ** e + 0.01 * (e % 3)


class _Warmup:
    """A callable object (its __dict__ is saved in state_dict, as torch)."""

    def __init__(self, n):
        self.n = n

    def __call__(self, e):
        return min(1.0, (e + 1) / self.n)


# name -> (rbe factory, torch factory) taking (module, optimizer)
def _sched_cases():
    def mk(f):
        return f

    cases = {
        "StepLR": mk(lambda m, o: m.StepLR(o, step_size=4, gamma=0.5)),
        "MultiStepLR": mk(lambda m, o: m.MultiStepLR(o, milestones=[3, 7, 7, 20], gamma=0.3)),
        "ExponentialLR": mk(lambda m, o: m.ExponentialLR(o, gamma=0.9)),
        "CosineAnnealingLR": mk(lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=0.001)),
        "CosineAnnealingLR-0": mk(lambda m, o: m.CosineAnnealingLR(o, T_max=10)),
        "LambdaLR": mk(lambda m, o: m.LambdaLR(o, lr_lambda=lambda e: 1.0 / (1 + 0.1 * e))),
        "LambdaLR-list": mk(lambda m, o: m.LambdaLR(o, lr_lambda=[_lambda_fn, _Warmup(5)])),
        "MultiplicativeLR": mk(lambda m, o: m.MultiplicativeLR(o, lr_lambda=lambda e: 0.97)),
        "LinearLR": mk(lambda m, o: m.LinearLR(o, start_factor=0.25, end_factor=0.9, total_iters=8)),
        "LinearLR-down": mk(lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=12)),
        "ConstantLR": mk(lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=6)),
        "PolynomialLR": mk(lambda m, o: m.PolynomialLR(o, total_iters=20, power=2.0)),
        "SequentialLR": mk(
            lambda m, o: m.SequentialLR(
                o,
                schedulers=[m.LinearLR(o, start_factor=0.1, total_iters=5), m.CosineAnnealingLR(o, T_max=12, eta_min=1e-4)],
                milestones=[5],
            )
        ),
        "SequentialLR-3": mk(
            lambda m, o: m.SequentialLR(
                o,
                schedulers=[m.ConstantLR(o, factor=0.2, total_iters=3), m.ExponentialLR(o, gamma=0.8), m.StepLR(o, step_size=3, gamma=0.5)],
                milestones=[4, 15],
            )
        ),
        "ChainedScheduler": mk(lambda m, o: m.ChainedScheduler([m.ExponentialLR(o, gamma=0.95), m.MultiStepLR(o, milestones=[5, 10], gamma=0.5)])),
    }
    return cases


CASES = _sched_cases()


def _drive(sched, opt, n):
    out = []
    for _ in range(n):
        opt.step()
        sched.step()
        out.append((list(group_lrs(opt)), list(sched.get_last_lr())))
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_scheduler_matches_torch(name):
    ro, to = make_opts()
    rs, ts = CASES[name](rls, ro), CASES[name](tls, to)
    check_same(rs, ts, ro, to)  # after construction (the initial step)
    if not name.startswith(("ChainedScheduler", "SequentialLR")):
        assert rs.base_lrs == ts.base_lrs == list(LRS)
        assert rs.last_epoch == ts.last_epoch
    for g in ro.param_groups:
        assert "initial_lr" in g
    close([g["initial_lr"] for g in ro.param_groups], [g["initial_lr"] for g in to.param_groups])
    for _ in range(N_STEPS):
        ro.step()
        to.step()
        rs.step()
        ts.step()
        check_same(rs, ts, ro, to)
        assert getattr(rs, "last_epoch", None) == getattr(ts, "last_epoch", None)


@pytest.mark.parametrize("name", list(CASES))
def test_scheduler_state_dict_round_trip(name):
    k = 9
    ro, to = make_opts()
    rs, ts = CASES[name](rls, ro), CASES[name](tls, to)
    _drive(rs, ro, k)
    _drive(ts, to, k)
    sd_sched, sd_opt = rs.state_dict(), ro.state_dict()
    assert "optimizer" not in sd_sched
    # a fresh optimizer/scheduler pair resumes from the saved states
    ro2, _ = make_opts()
    rs2 = CASES[name](rls, ro2)
    ro2.load_state_dict(sd_opt)
    rs2.load_state_dict(sd_sched)
    close(rs2.get_last_lr(), ts.get_last_lr())
    a = _drive(rs2, ro2, N_STEPS - k)
    b = _drive(ts, to, N_STEPS - k)
    for (ga, la), (gb, lb) in zip(a, b):
        close(ga, gb)
        close(la, lb)
    # the original keeps going identically too
    c = _drive(rs, ro, N_STEPS - k)
    for (ga, la), (gc, lc) in zip(a, c):
        assert ga == gc and la == lc


def test_lambda_state_dict_saves_callable_objects_only():
    ro, _ = make_opts()
    w = _Warmup(5)
    s = rls.LambdaLR(ro, lr_lambda=[_lambda_fn, w])
    sd = s.state_dict()
    assert sd["lr_lambdas"] == [None, {"n": 5}]
    w2 = _Warmup(1)
    ro2, _ = make_opts()
    s2 = rls.LambdaLR(ro2, lr_lambda=[_lambda_fn, w2])
    s2.load_state_dict(sd)
    assert w2.n == 5 and s2.lr_lambdas[1] is w2


PLATEAU_CASES = [
    dict(),
    dict(mode="min", factor=0.5, patience=2),
    dict(mode="max", factor=0.3, patience=1, threshold=0.05, threshold_mode="abs"),
    dict(mode="max", factor=0.5, patience=0, threshold=0.01, threshold_mode="rel", cooldown=2),
    dict(mode="min", factor=0.5, patience=1, threshold=0.1, threshold_mode="abs", cooldown=1, min_lr=[0.02, 0.01]),
    dict(mode="min", factor=0.2, patience=1, min_lr=0.005, eps=1e-3),
    dict(mode="min", factor=0.9, patience=0, eps=0.02),
]


def _metrics(n=N_STEPS, seed=0):
    rng = np.random.default_rng(seed)
    # decreasing then noisy plateaus then increasing: exercises improvements, patience and cooldown
    base = np.concatenate([np.linspace(1.0, 0.5, 8), 0.5 + 0.01 * rng.standard_normal(12), np.linspace(0.5, 0.9, n - 20)])
    return [float(x) for x in base]


@pytest.mark.parametrize("kw", PLATEAU_CASES, ids=[str(i) for i in range(len(PLATEAU_CASES))])
def test_reduce_lr_on_plateau_matches_torch(kw):
    ro, to = make_opts()
    rs, ts = rls.ReduceLROnPlateau(ro, **kw), tls.ReduceLROnPlateau(to, **kw)
    check_same(rs, ts, ro, to)
    metrics = _metrics()
    for i, m in enumerate(metrics):
        ro.step()
        to.step()
        # feed rbe a 0-d tensor sometimes (float(metrics) as torch)
        rs.step(rbe.tensor(m, dtype=rbe.float64) if i % 3 == 0 else m)
        ts.step(m)
        check_same(rs, ts, ro, to)
        assert rs.num_bad_epochs == ts.num_bad_epochs
        assert rs.cooldown_counter == ts.cooldown_counter
        assert rs.best == ts.best
        assert rs.last_epoch == ts.last_epoch


@pytest.mark.parametrize("kw", PLATEAU_CASES[1:4], ids=["1", "2", "3"])
def test_reduce_lr_on_plateau_state_dict(kw):
    k = 11
    metrics = _metrics()
    ro, to = make_opts()
    rs, ts = rls.ReduceLROnPlateau(ro, **kw), tls.ReduceLROnPlateau(to, **kw)
    for m in metrics[:k]:
        rs.step(m)
        ts.step(m)
    sd, osd = rs.state_dict(), ro.state_dict()
    ro2, _ = make_opts()
    rs2 = rls.ReduceLROnPlateau(ro2)  # different settings: restored from the state dict
    ro2.load_state_dict(osd)
    rs2.load_state_dict(sd)
    assert rs2.mode == kw.get("mode", "min") and rs2.patience == kw["patience"]
    for m in metrics[k:]:
        rs2.step(m)
        ts.step(m)
        check_same(rs2, ts, ro2, to)


def test_reduce_lr_on_plateau_errors():
    ro, _ = make_opts()
    with pytest.raises(ValueError):
        rls.ReduceLROnPlateau(ro, factor=1.0)
    with pytest.raises(ValueError):
        rls.ReduceLROnPlateau(ro, mode="middle")
    with pytest.raises(ValueError):
        rls.ReduceLROnPlateau(ro, threshold_mode="percent")
    with pytest.raises(ValueError):
        rls.ReduceLROnPlateau(ro, min_lr=[0.1])


def test_step_with_epoch_uses_closed_form():
    for f in (
        lambda m, o: m.StepLR(o, step_size=3, gamma=0.5),
        lambda m, o: m.MultiStepLR(o, milestones=[2, 5, 5], gamma=0.5),
        lambda m, o: m.ExponentialLR(o, gamma=0.9),
        lambda m, o: m.CosineAnnealingLR(o, T_max=6, eta_min=0.01),
        lambda m, o: m.LinearLR(o, start_factor=0.5, total_iters=4),
        lambda m, o: m.LambdaLR(o, lambda e: 1 / (e + 1)),
    ):
        ro, to = make_opts()
        rs, ts = f(rls, ro), f(tls, to)
        for e in (3, 7, 1, 12):
            ro.step()
            to.step()
            with pytest.warns(UserWarning, match="epoch parameter"):
                rs.step(e)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ts.step(e)
            check_same(rs, ts, ro, to)


def test_warns_when_scheduler_steps_before_optimizer():
    ro, _ = make_opts()
    s = rls.StepLR(ro, step_size=2)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        s.step()

    ro, _ = make_opts()
    s = rls.StepLR(ro, step_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ro.step()
        s.step()
        s.step()


def test_warns_when_optimizer_step_overridden():
    ro, _ = make_opts()
    s = rls.ExponentialLR(ro, gamma=0.5)
    ro.step = lambda closure=None: None
    with pytest.warns(UserWarning, match="overridden"):
        s.step()


def test_optimizer_step_wrapped_once_and_still_works():
    rp = nn.Parameter(rbe.tensor([1.0, 2.0], dtype=rbe.float64))
    opt = rbe.optim.SGD([rp], lr=0.5)
    s1 = rls.StepLR(opt, step_size=1, gamma=0.5)
    s2 = rls.ExponentialLR(opt, gamma=1.0)
    assert opt.step._wrapped_by_lr_sched
    rp.grad = rbe.tensor([1.0, 1.0], dtype=rbe.float64)
    opt.step()
    np.testing.assert_allclose(rp.detach().numpy(), [0.5, 1.5])
    s1.step()
    s2.step()
    assert opt.param_groups[0]["lr"] == 0.25


def test_get_lr_outside_step_warns():
    ro, _ = make_opts()
    s = rls.StepLR(ro, step_size=2)
    with pytest.warns(UserWarning, match="get_last_lr"):
        s.get_lr()


def test_resume_with_last_epoch():
    ro, to = make_opts()
    with pytest.raises(KeyError):
        rls.StepLR(ro, step_size=2, last_epoch=4)
    for g in ro.param_groups:
        g["initial_lr"] = g["lr"]
    for g in to.param_groups:
        g["initial_lr"] = g["lr"]
    rs = rls.CosineAnnealingLR(ro, T_max=10, last_epoch=4)
    ts = tls.CosineAnnealingLR(to, T_max=10, last_epoch=4)
    check_same(rs, ts, ro, to)
    for _ in range(10):
        ro.step()
        to.step()
        rs.step()
        ts.step()
        check_same(rs, ts, ro, to)


def test_works_with_adam_and_other_optimizers():
    ro, to = make_opts(cls="Adam")
    rs = rls.SequentialLR(ro, [rls.LinearLR(ro, 0.1, total_iters=3), rls.StepLR(ro, 2, 0.7)], milestones=[3])
    ts = tls.SequentialLR(to, [tls.LinearLR(to, 0.1, total_iters=3), tls.StepLR(to, 2, 0.7)], milestones=[3])
    for _ in range(12):
        ro.step()
        to.step()
        rs.step()
        ts.step()
        check_same(rs, ts, ro, to)


def test_scheduled_lr_is_used_by_the_optimizer():
    # SGD on f(x) = x^2 / 2 (grad = x): x <- x (1 - lr_t)
    x = nn.Parameter(rbe.tensor([1.0], dtype=rbe.float64))
    opt = rbe.optim.SGD([x], lr=0.5)
    sched = rls.StepLR(opt, step_size=2, gamma=0.1)
    expect = 1.0
    for e in range(6):
        opt.zero_grad()
        (x * x / 2).sum().backward()
        opt.step()
        expect *= 1 - 0.5 * 0.1 ** (e // 2)
        sched.step()
    assert math.isclose(x.item(), expect, rel_tol=1e-14)


def test_sequential_and_chained_validation():
    ro, _ = make_opts()
    ro_other, _ = make_opts()
    a = rls.ExponentialLR(ro, 0.9)
    b = rls.StepLR(ro, 2)
    with pytest.raises(ValueError):
        rls.SequentialLR(ro, [a, b], milestones=[])
    with pytest.raises(ValueError):
        rls.SequentialLR(ro, [a, rls.StepLR(ro_other, 2)], milestones=[3])
    with pytest.raises(ValueError):
        rls.SequentialLR(ro, [a, rls.ReduceLROnPlateau(ro)], milestones=[3])
    with pytest.raises(ValueError):
        rls.SequentialLR(ro, [], milestones=[])
    with pytest.raises(ValueError):
        rls.ChainedScheduler([])


def test_legacy_name_and_custom_subclass():
    assert rls._LRScheduler is rls.LRScheduler
    assert rbe.optim.lr_scheduler is rls

    class Halve(rls._LRScheduler):
        def get_lr(self):
            if self.last_epoch == 0:
                return [g["lr"] for g in self.optimizer.param_groups]
            return [g["lr"] / 2 for g in self.optimizer.param_groups]

    ro, _ = make_opts()
    s = Halve(ro)
    for _ in range(3):
        ro.step()
        s.step()
    close(s.get_last_lr(), [lr / 8 for lr in LRS])
    with pytest.raises(TypeError):
        rls.StepLR(object(), step_size=1)
