"""CPU time per call (``time.thread_time``, 1 thread) of the ``rbe bench hmm``
neural workload (log-likelihood + gradient, B=16, T=200, K=50, D=80): rbe
through the fused op against torch op by op, the same functions as
``python -m rbe.hmm.bench``.

On a shared machine the wall-clock medians of the benchmark swing with the
other jobs (waiting for a core counts); the CPU time of the calling thread
does not include that wait, so its ratios are the steadier figure. Usage:
``python benches/hmm/cpu_time.py [REPEATS]`` (torch gets a third of them).
"""
import sys
import time

import torch

import rbe
from rbe.hmm.bench import _neural_inputs, neural_rbe, neural_torch


def cpu_median(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        ts.append(time.thread_time() - t0)
    ts.sort()
    return ts[len(ts) // 2] * 1e3


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 31
    torch.set_num_threads(1)
    rbe.set_num_threads(1)
    inp = _neural_inputs(16, 200, 50, 80)
    for dt in ("float32", "float64"):
        fr, ft = neural_rbe(inp, dt), neural_torch(inp, dt)
        vr, vt = fr(), ft()
        assert abs(vr - vt) <= 1e-3 * abs(vt), (vr, vt)
        a, b = cpu_median(fr, repeats), cpu_median(ft, max(3, repeats // 3))
        print(f"{dt}: rbe {a:.2f} ms  torch {b:.2f} ms  torch/rbe {b / a:.1f}x (CPU time, 1 thread)", flush=True)


if __name__ == "__main__":
    main()
