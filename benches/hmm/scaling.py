"""rbe's own 1- vs 2-thread scaling on the ``rbe bench hmm`` neural workload
(B=16, T=200, K=50, D=80), each thread count in its own process, alternating;
per process the median of 41 calls after 5 warm-up calls of (a) the full
LL+grad step, (b) the fused HMM forward+backward alone, (c) the emission chain
(matmul, bias, log_softmax, forward and backward), and the process's CPU
seconds per wall second over those calls (about 1.0: never on two cores).
Usage: ``python benches/hmm/scaling.py [ROUNDS]`` (default 5).
"""
import json
import os
import statistics
import subprocess
import sys

W = r'''
import sys, time, statistics, json
import rbe
from rbe.hmm import hmm_log_likelihood
from rbe.hmm.bench import _neural_inputs, neural_rbe
n = int(sys.argv[1]); dt = sys.argv[2]; rbe.set_num_threads(n)
inp = _neural_inputs(16, 200, 50, 80)
full = neural_rbe(inp, dt)
W_, bias, trans, init = (rbe.from_numpy(inp[k].astype(dt)).requires_grad_() for k in ("W", "bias", "trans", "init"))
obs = rbe.from_numpy(inp["obs"].astype(dt))
with rbe.no_grad():
    lb0 = rbe.log_softmax(rbe.matmul(obs, W_.t()) + bias, dim=-1)
lbg = lb0.detach().requires_grad_()
la = rbe.log_softmax(trans, dim=1).detach(); lp = rbe.log_softmax(init, dim=0).detach()
def fb():
    ll = hmm_log_likelihood(lp, la, lbg).sum(); ll.backward(); lbg.grad = None
g = rbe.ones_like(lb0)
def em():
    y = rbe.log_softmax(rbe.matmul(obs, W_.t()) + bias, dim=-1); y.backward(g); W_.grad = None; bias.grad = None
out = {}
for name, f in (("full", full), ("hmm", fb), ("emissions", em)):
    for _ in range(5): f()
    ts = []; c0 = time.process_time(); t0 = time.perf_counter()
    for _ in range(41):
        a = time.perf_counter(); f(); ts.append(time.perf_counter() - a)
    out[name] = [statistics.median(ts) * 1e3, (time.process_time() - c0) / (time.perf_counter() - t0)]
print(json.dumps(out))
'''
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
res = {}
for r in range(rounds):
    for dt in ("float32", "float64"):
        for n in ((1, 2) if r % 2 == 0 else (2, 1)):
            o = json.loads(subprocess.run([sys.executable, "-c", W, str(n), dt], capture_output=True, text=True, check=True).stdout)
            for k, v in o.items():
                res.setdefault((dt, k, n), []).append(v)
print(f"load {os.getloadavg()}")
for dt in ("float32", "float64"):
    for k in ("full", "hmm", "emissions"):
        a = [v[0] for v in res[(dt, k, 1)]]; b = [v[0] for v in res[(dt, k, 2)]]
        cpu2 = statistics.median(v[1] for v in res[(dt, k, 2)])
        print(f"{dt} {k:9s} 1 thr {statistics.median(a):.3f} ms (min {min(a):.3f})  2 thr {statistics.median(b):.3f} ms (min {min(b):.3f})"
              f"  speed-up median {statistics.median(a)/statistics.median(b):.2f}x, best {min(a)/min(b):.2f}x; 2-thr CPU/wall {cpu2:.2f}")
