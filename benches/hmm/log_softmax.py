"""The core's ``log_softmax(x, dim=-1)`` on the ``rbe bench hmm`` emission
shape (16, 200, 50), forward alone and forward + backward, at 1 and 2
threads, each cell in its own process (median of 201 calls after 20 warm-up
calls), rounds alternating the order. With ``--before DIR`` the same cells
also run with the ``rbe`` package found in DIR (e.g. a copy of an older
build), interleaved, so both builds are measured in one run.
Usage: ``python benches/hmm/log_softmax.py [--rounds 3] [--before DIR]``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

W = r'''
import sys, time, statistics, json
import numpy as np
import rbe
n = int(sys.argv[1]); dt = sys.argv[2]; rbe.set_num_threads(n)
x0 = np.random.default_rng(0).normal(size=(16, 200, 50)).astype(dt) * 3
x = rbe.from_numpy(x0)
xg = rbe.from_numpy(x0).requires_grad_()
g = rbe.ones_like(x)
def fwd():
    rbe.log_softmax(x, dim=-1)
def fb():
    rbe.log_softmax(xg, dim=-1).backward(g); xg.grad = None
out = {}
for name, f in (("forward", fwd), ("fwd+bwd", fb)):
    for _ in range(20): f()
    ts = []
    for _ in range(201):
        a = time.perf_counter(); f(); ts.append(time.perf_counter() - a)
    out[name] = statistics.median(ts) * 1e3
print(json.dumps(out))
'''

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--before", default=None)
a = ap.parse_args()
builds = [("after", None)] + ([("before", a.before)] if a.before else [])
res = {}
for r in range(a.rounds):
    order = builds if r % 2 == 0 else builds[::-1]
    for dt in ("float32", "float64"):
        for n in ((1, 2) if r % 2 == 0 else (2, 1)):
            for b, path in order:
                env = dict(os.environ)
                if path:
                    env["PYTHONPATH"] = path
                o = json.loads(subprocess.run([sys.executable, "-c", W, str(n), dt], capture_output=True, text=True, check=True, env=env).stdout)
                for k, v in o.items():
                    res.setdefault((b, dt, k, n), []).append(v)
print(f"load {os.getloadavg()}")
for dt in ("float32", "float64"):
    for k in ("forward", "fwd+bwd"):
        for b, _ in builds:
            m1 = statistics.median(res[(b, dt, k, 1)]); m2 = statistics.median(res[(b, dt, k, 2)])
            print(f"{dt} {k:8s} {b:6s} 1 thr {m1:.3f} ms  2 thr {m2:.3f} ms  (1/2 = {m1 / m2:.2f}x)")
