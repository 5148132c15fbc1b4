"""The tensor buffer pool: steady-state training makes no fresh allocation."""
import subprocess
import sys

import numpy as np
import pytest

import rbe
from rbe import nn


def _mlp_step_fn(threads, optim="adam"):
    rbe.set_num_threads(threads)
    rbe.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 64), nn.Tanh(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5))
    opt = rbe.optim.Adam(model.parameters(), lr=1e-3) if optim == "adam" else rbe.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = rbe.randn(128, 40)
    y = rbe.randint(0, 5, (128,))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step


@pytest.mark.parametrize("threads,optim", [(1, "adam"), (2, "adam"), (1, "sgd")])
def test_training_steps_after_warmup_allocate_nothing(threads, optim):
    step = _mlp_step_fn(threads, optim)
    for _ in range(3):
        step()
    before = rbe.memory_stats()
    losses = [step() for _ in range(5)]
    after = rbe.memory_stats()
    rbe.set_num_threads(1)
    assert after["pool_misses"] == before["pool_misses"], (before, after)
    assert after["pool_hits"] > before["pool_hits"] + 5 * 10
    # the same live memory at the end of every step, and training still moves
    assert after["allocated_bytes"] == before["allocated_bytes"]
    assert losses[-1] < losses[0]


def test_memory_stats_track_live_and_cached_bytes():
    rbe.empty_cache()
    base = rbe.memory_stats()
    t = rbe.zeros(1000, dtype=rbe.float64)
    mid = rbe.memory_stats()
    assert mid["allocated_bytes"] - base["allocated_bytes"] == 8000
    assert mid["peak_bytes"] >= mid["allocated_bytes"]
    del t
    freed = rbe.memory_stats()
    assert freed["allocated_bytes"] == base["allocated_bytes"]
    assert freed["cached_bytes"] >= base["cached_bytes"] + 8000
    # the same size again is served from the pool, and zeros() really is zero
    u = rbe.zeros(1000, dtype=rbe.float64)
    again = rbe.memory_stats()
    assert again["pool_hits"] == freed["pool_hits"] + 1
    assert again["pool_misses"] == freed["pool_misses"]
    assert not u.numpy().any()
    del u
    rbe.empty_cache()
    assert rbe.memory_stats()["cached_bytes"] <= base["cached_bytes"]


def test_reused_buffers_do_not_leak_old_values():
    a = rbe.full((257,), 7.0)
    del a
    b = rbe.zeros(257)
    np.testing.assert_array_equal(b.numpy(), np.zeros(257, np.float32))
    c = rbe.ones(257) * 3
    np.testing.assert_array_equal(c.numpy(), np.full(257, 3, np.float32))


def test_pool_limit_bounds_the_cache():
    with pytest.raises(ValueError, match="positive"):
        rbe.set_pool_limit(0)
    old = rbe.memory_stats()["pool_limit_bytes"]
    try:
        rbe.empty_cache()
        rbe.set_pool_limit(4096)
        ts = [rbe.empty(1000) for _ in range(10)]
        del ts
        assert rbe.memory_stats()["cached_bytes"] <= 4096
    finally:
        rbe.set_pool_limit(old)


def test_kernels_write_every_element_of_reused_buffers():
    # Fresh buffers filled with NaN bytes: an op that reads memory it did not
    # write would give NaN here.
    code = (
        "import rbe, numpy as np\n"
        "x = rbe.randn(37, 53, requires_grad=True); w = rbe.randn(29, 53, requires_grad=True)\n"
        "y = rbe.nn.functional.linear(x, w).tanh().logsumexp(1).sum() + (x @ x.T).sum(0).mean()\n"
        "y.backward()\n"
        "for t in (y, x.grad, w.grad, rbe.zeros(5), rbe.full((3,), 0.0), rbe.ones(4), x.cumsum(1), x.sum(1), x.max(0).values):\n"
        "    assert np.isfinite(t.detach().numpy()).all(), t\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**__import__("os").environ, "RBE_POISON_UNINIT": "1"})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_buffers_freed_on_another_thread_are_not_cached_there():
    import threading

    made = []

    def producer():
        for _ in range(20):
            made.append(rbe.ones(50_000))

    th = threading.Thread(target=producer)
    th.start()
    th.join()
    before = rbe.memory_stats()["cached_bytes"]
    made.clear()  # freed here, allocated by the producer thread
    after = rbe.memory_stats()
    assert after["cached_bytes"] == before
    assert after["allocated_bytes"] < 20 * 200_000
