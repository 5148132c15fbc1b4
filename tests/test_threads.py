"""Backward passes in several Python threads at once (the engine releases the
interpreter during backward, so they really run concurrently)."""
import os
import threading

import numpy as np
import pytest

import rbe

REPS = int(os.environ.get("RBE_THREAD_REPS", "60"))


def _in_threads(fns):
    barrier = threading.Barrier(len(fns))
    errors = []
    results = [None] * len(fns)

    def run(i, f):
        try:
            barrier.wait()
            results[i] = f()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(fns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_concurrent_backward_into_a_leaf_with_a_grad_loses_nothing():
    for _ in range(REPS):
        w = rbe.zeros(1 << 18, requires_grad=True)
        w.grad = rbe.zeros(1 << 18)
        _in_threads([lambda: (w * 1.0).sum().backward(), lambda: (w * 2.0).sum().backward()])
        g = w.grad.numpy()
        assert g.min() == 3.0 and g.max() == 3.0


def test_concurrent_backward_into_a_leaf_without_a_grad():
    for _ in range(REPS):
        w = rbe.zeros(1 << 16, requires_grad=True)
        _in_threads([lambda k=k: (w * float(k)).sum().backward() for k in (1, 2, 4)])
        assert float(w.grad.min()) == 7.0 and float(w.grad.max()) == 7.0


def test_concurrent_backward_through_one_retained_graph():
    x = rbe.linspace(-1, 1, 1000, dtype=rbe.float64, requires_grad=True)
    y = (x.tanh() * x.exp()).sum()
    want = ((1 - np.tanh(x.detach().numpy()) ** 2) * np.exp(x.detach().numpy()) + np.tanh(x.detach().numpy()) * np.exp(x.detach().numpy()))
    for _ in range(REPS):
        x.grad = None
        _in_threads([lambda: y.backward(retain_graph=True)] * 2)
        np.testing.assert_allclose(x.grad.numpy(), 2 * want, rtol=1e-12, atol=1e-14)


def test_concurrent_autograd_grad_through_one_graph():
    x = rbe.linspace(-1, 1, 500, dtype=rbe.float64, requires_grad=True)
    y = (x.sin() ** 2).sum()
    for _ in range(REPS):
        gs = _in_threads([lambda: rbe.autograd.grad(y, [x], retain_graph=True)[0]] * 3)
        for g in gs:
            np.testing.assert_allclose(g.numpy(), np.sin(2 * x.detach().numpy()), rtol=1e-12, atol=1e-14)


def test_second_backward_without_retain_still_fails_cleanly():
    x = rbe.ones(3, requires_grad=True)
    y = x.exp().sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_forked_children_run_parallel_kernels():
    """After the worker pool has started, a child made by fork() builds its own
    (the parent's worker threads do not exist in the child)."""
    import subprocess
    import sys
    import textwrap

    prog = textwrap.dedent(
        """
        import multiprocessing as mp
        import rbe

        def work(i):
            a = rbe.ones(600, 600)
            return float((a @ a).sum())

        if __name__ == "__main__":
            rbe.set_num_threads(2)
            a = rbe.ones(600, 600)
            (a @ a).sum()
            with mp.get_context("fork").Pool(2) as p:
                print(p.map(work, range(4)))
        """
    )
    p = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-500:]
    assert p.stdout.strip() == str([216000000.0] * 4)
