"""Memory stays flat over many iterations (rbe.memory_allocated counts every
byte of tensor storage rbe allocated). Longer versions: RBE_LEAK_ITERS=20000."""
import gc
import os

import pytest

import rbe
import rbe.nn as nn

ITERS = int(os.environ.get("RBE_LEAK_ITERS", "1500"))


class ExpSavingOutput(rbe.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _growth(step, rss_limit=16 << 20):
    """Growth of rbe.memory_allocated() over ITERS steps (after a warm-up);
    the process's resident memory may not grow by more than `rss_limit` either."""
    for _ in range(50):  # warm the pool and the interpreter's caches
        step(0)
    gc.collect()
    before, rss0 = rbe.memory_allocated(), _rss()
    for i in range(ITERS):
        step(i)
    gc.collect()
    rss_growth = _rss() - rss0
    assert rss_growth <= rss_limit, f"resident memory grew by {rss_growth / 2**20:.1f} MiB over {ITERS} steps"
    return rbe.memory_allocated() - before


@pytest.mark.parametrize("how", ["dropped", "retain_graph", "exception"])
def test_function_saving_its_output_does_not_leak(how):
    x = rbe.ones(10_000, requires_grad=True)

    def step(i):
        y = ExpSavingOutput.apply(x)
        if how == "retain_graph":
            y.sum().backward(retain_graph=True)
        elif how == "exception":
            try:
                (y.sum() + rbe.ones(2)).backward()
            except RuntimeError:
                pass

    # x.grad (40 kB) may appear once; 1500 leaked outputs would be 60 MB
    assert _growth(step) <= 40_000


def test_saved_output_is_restored_with_its_history_for_higher_orders():
    x = rbe.tensor([0.5, -1.0], dtype=rbe.float64, requires_grad=True)
    (g,) = rbe.autograd.grad(ExpSavingOutput.apply(x).sum(), [x], create_graph=True)
    (h,) = rbe.autograd.grad(g.sum(), [x])
    assert rbe.allclose(h, x.detach().exp())


def test_own_grad_is_refused():
    x = rbe.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="own grad"):
        x.grad = x
    assert x.grad is None


def test_training_loop_memory_is_flat():
    rbe.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 1))
    opt = rbe.optim.Adam(model.parameters(), lr=1e-3)
    xb, yb = rbe.randn(64, 32), rbe.randn(64, 1)

    def step(i):
        opt.zero_grad()
        loss = ((model(xb) - yb) ** 2).mean()
        loss.backward()
        opt.step()

    assert _growth(step) == 0


def test_create_graph_loop_memory_is_flat():
    w = rbe.randn(16, requires_grad=True)

    def step(i):
        (g,) = rbe.autograd.grad((w.tanh() ** 3).sum(), [w], create_graph=True)
        (g * g).sum().backward()
        w.grad = None

    assert _growth(step) == 0
