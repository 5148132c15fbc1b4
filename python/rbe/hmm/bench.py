"""``rbe bench hmm``: the HMM workloads against torch op by op, hmmlearn and
(when installed) ``jax.jit`` + ``lax.scan``.

Configuration (the origin's): B = 16 sequences, T = 200 frames, K = 50
states, D = 80 observation dimensions; float32 and float64; 1 and 2 threads.

Workloads:

- ``neural``: log-likelihood + gradient of a neural-emission model
  (``Linear(80, 50)`` emission scores, ``log_softmax`` over states, learned
  initial and transition logits): rbe through the fused op, torch written op
  by op (the logsumexp recursion, today's ``rbe bench`` 7b), jax the same
  recursion under ``jax.jit(jax.value_and_grad(...))`` with ``lax.scan``;
- ``score``, ``decode``, ``fit`` (one EM iteration): ``rbe.hmm.GaussianHMM``
  against ``hmmlearn.hmm.GaussianHMM`` (diag covariances, float64,
  emissions included) on the same concatenated ``X`` and ``lengths``.

Times are medians of repeats after warm-up, all frameworks in one run;
ratios (other / rbe) are the figures to read. Thread counts: rbe and torch
``set_num_threads``, BLAS via threadpoolctl, jax in a subprocess pinned to
that many cores. Results go to ``OUT/results.json`` and a chart
``OUT/hmm_speedups.png`` (matplotlib).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np

TARGETS = {"torch": 10.0, "jax": 5.0, "hmmlearn": 5.0}


def _median(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _neural_inputs(b, t, k, d, seed=0):
    r = np.random.RandomState(seed)
    return {"W": r.normal(size=(k, d)) / np.sqrt(d), "bias": r.normal(size=k) * 0.1, "trans": r.normal(size=(k, k)),
            "init": r.normal(size=k), "obs": r.normal(size=(b, t, d))}


def neural_rbe(inp, dtype):
    import rbe
    from rbe.hmm import hmm_log_likelihood

    dt = rbe.float32 if dtype == "float32" else rbe.float64
    W, bias, trans, init = (rbe.from_numpy(inp[n].astype(dtype)).requires_grad_() for n in ("W", "bias", "trans", "init"))
    obs = rbe.from_numpy(inp["obs"].astype(dtype))
    assert obs.dtype == dt

    def run():
        log_b = rbe.log_softmax(rbe.matmul(obs, W.t()) + bias, dim=-1)
        ll = hmm_log_likelihood(rbe.log_softmax(init, dim=0), rbe.log_softmax(trans, dim=1), log_b).sum()
        ll.backward()
        for p in (W, bias, trans, init):
            p.grad = None
        return float(ll)

    return run


def neural_torch(inp, dtype):
    import torch

    W, bias, trans, init = (torch.tensor(inp[n].astype(dtype), requires_grad=True) for n in ("W", "bias", "trans", "init"))
    obs = torch.tensor(inp["obs"].astype(dtype))
    steps = obs.shape[1]

    def run():
        log_a = torch.log_softmax(trans, dim=1)
        log_b = torch.log_softmax(obs @ W.t() + bias, dim=-1)
        alpha = torch.log_softmax(init, dim=0) + log_b[:, 0]
        for t in range(1, steps):
            alpha = torch.logsumexp(alpha.unsqueeze(2) + log_a, dim=1) + log_b[:, t]
        ll = torch.logsumexp(alpha, dim=1).sum()
        ll.backward()
        for p in (W, bias, trans, init):
            p.grad = None
        return float(ll.detach())

    return run


_JAX_SCRIPT = r"""
import json, os, sys, time, statistics
os.sched_setaffinity(0, set(range(int(sys.argv[1]))))
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=%s intra_op_parallelism_threads=%s" % ("true" if int(sys.argv[1]) > 1 else "false", sys.argv[1]))
import numpy as np
import jax
dtype = sys.argv[2]
if dtype == "float64":
    jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from jax import lax
inp = np.load(sys.argv[3])
params = {n: jnp.asarray(inp[n].astype(dtype)) for n in ("W", "bias", "trans", "init")}
obs = jnp.asarray(inp["obs"].astype(dtype))
def loss(p, obs):
    log_a = jax.nn.log_softmax(p["trans"], axis=1)
    log_b = jax.nn.log_softmax(obs @ p["W"].T + p["bias"], axis=-1)
    alpha0 = jax.nn.log_softmax(p["init"]) + log_b[:, 0]
    def step(alpha, lb):
        alpha = jax.scipy.special.logsumexp(alpha[:, :, None] + log_a, axis=1) + lb
        return alpha, None
    alpha, _ = lax.scan(step, alpha0, jnp.swapaxes(log_b[:, 1:], 0, 1))
    return jax.scipy.special.logsumexp(alpha, axis=1).sum()
f = jax.jit(jax.value_and_grad(loss))
def run():
    v, g = f(params, obs)
    jax.block_until_ready(g)
    return float(v)
val = run()
for _ in range(3):
    run()
ts = []
for _ in range(int(sys.argv[4])):
    t0 = time.perf_counter(); run(); ts.append(time.perf_counter() - t0)
print(json.dumps({"time": statistics.median(ts), "value": val, "version": jax.__version__}))
"""


def neural_jax(inp, dtype, threads, repeats, tmpdir) -> Optional[dict]:
    try:
        import importlib.util

        if importlib.util.find_spec("jax") is None:
            return None
    except Exception:
        return None
    path = os.path.join(tmpdir, "hmm_bench_inputs.npz")
    np.savez(path, **inp)
    r = subprocess.run([sys.executable, "-c", _JAX_SCRIPT, str(threads), dtype, path, str(repeats)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def _gaussian_pair(k, d, seed=0):
    from hmmlearn import hmm as hl

    from rbe.hmm import GaussianHMM

    r = np.random.RandomState(seed)
    sp, tm = r.dirichlet(np.ones(k)), r.dirichlet(np.ones(k), size=k)
    means, covs = r.normal(size=(k, d)) * 2, r.uniform(0.5, 2.0, size=(k, d))
    ours = GaussianHMM(k, "diag", init_params="", n_iter=1, tol=-np.inf)
    ref = hl.GaussianHMM(k, "diag", init_params="", n_iter=1, tol=-np.inf, implementation="log")
    for m in (ours, ref):
        m.startprob_, m.transmat_, m.means_, m.covars_ = sp, tm, means, covs
    return ours, ref, (sp, tm, means, covs)


def hmmlearn_workloads(b, t, k, d, repeats, warmup) -> Dict[str, dict]:
    ours, ref, p = _gaussian_pair(k, d)
    X = np.concatenate([ref.sample(t, random_state=i)[0] for i in range(b)])
    lengths = [t] * b
    assert abs(ours.score(X, lengths) - ref.score(X, lengths)) < 1e-6 * abs(ref.score(X, lengths))

    def fit(m):
        def run():
            m.startprob_, m.transmat_, m.means_, m.covars_ = p
            m.fit(X, lengths)
        return run

    out = {}
    for name, fo, fr in [("score", lambda: ours.score(X, lengths), lambda: ref.score(X, lengths)),
                         ("decode", lambda: ours.decode(X, lengths), lambda: ref.decode(X, lengths)),
                         ("fit (1 EM iteration)", fit(ours), fit(ref))]:
        tr = _median(fo, repeats, warmup)
        th = _median(fr, repeats, warmup)
        out[name] = {"rbe": tr, "hmmlearn": th, "ratio": th / tr}
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="rbe bench hmm", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke run of seconds)")
    ap.add_argument("--out", default="bench-results/hmm", help="output folder (results.json, hmm_speedups.png)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--no-jax", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-hmmlearn", action="store_true")
    args = ap.parse_args(argv)
    import rbe

    b, t, k, d = (4, 30, 8, 6) if args.quick else (16, 200, 50, 80)
    repeats = args.repeats or (3 if args.quick else 15)
    warmup = 1 if args.quick else 3
    threads = [int(x) for x in args.threads.split(",")]
    os.makedirs(args.out, exist_ok=True)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        threadpool_limits = None
    have_torch = not args.no_torch and _has("torch")
    have_hl = not args.no_hmmlearn and _has("hmmlearn")
    have_jax = not args.no_jax and not args.quick and _has("jax")
    inp = _neural_inputs(b, t, k, d)
    versions = {"rbe": getattr(rbe, "__version__", "?"), "numpy": np.__version__, "python": platform.python_version()}
    for mod in ("torch", "hmmlearn", "jax"):
        if _has(mod):
            versions[mod] = __import__(mod).__version__
    results = {"config": {"B": b, "T": t, "K": k, "D": d, "repeats": repeats, "quick": args.quick},
               "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "platform": platform.platform()},
               "versions": versions, "rows": []}
    prev = rbe.get_num_threads()
    try:
        for n in threads:
            rbe.set_num_threads(n)
            if have_torch:
                import torch

                torch.set_num_threads(n)
            ctx = threadpool_limits(n) if threadpool_limits else _Null()
            with ctx:
                for dtype in ("float32", "float64"):
                    row = {"workload": "neural ll+grad", "dtype": dtype, "threads": n}
                    fr = neural_rbe(inp, dtype)
                    row["rbe"] = _median(fr, repeats, warmup)
                    if have_torch:
                        ft = neural_torch(inp, dtype)
                        vr, vt = fr(), ft()
                        assert abs(vr - vt) <= 1e-3 * abs(vt), (vr, vt)
                        row["torch"] = _median(ft, max(3, repeats // 3), 1)
                    if have_jax:
                        j = neural_jax(inp, dtype, n, max(5, repeats), args.out)
                        if j and "time" in j:
                            row["jax"] = j["time"]
                        elif j:
                            row["jax_error"] = j.get("error")
                    results["rows"].append(row)
                    _print_row(row)
                if have_hl:
                    for name, v in hmmlearn_workloads(b, t, k, d, max(3, repeats // 2), warmup).items():
                        row = {"workload": f"GaussianHMM {name}", "dtype": "float64", "threads": n, "rbe": v["rbe"], "hmmlearn": v["hmmlearn"]}
                        results["rows"].append(row)
                        _print_row(row)
    finally:
        rbe.set_num_threads(prev)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    _chart(results, os.path.join(args.out, "hmm_speedups.png"))
    print(f"results: {os.path.join(args.out, 'results.json')}")
    return 0


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _has(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _print_row(row: dict) -> None:
    parts = [f"{row['workload']:<34} {row['dtype']:<8} {row['threads']} thr  rbe {row['rbe'] * 1e3:8.2f} ms"]
    for other in ("torch", "jax", "hmmlearn"):
        if other in row:
            r = row[other] / row["rbe"]
            parts.append(f"{other} {row[other] * 1e3:8.2f} ms (x{r:.1f}{', target met' if r >= TARGETS[other] else ', target NOT met'})")
    print("  ".join(parts), flush=True)


def _chart(results: dict, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    labels, vals, colors = [], [], []
    cmap = {"torch": "tab:red", "jax": "tab:green", "hmmlearn": "tab:blue"}
    for row in results["rows"]:
        for other in ("torch", "jax", "hmmlearn"):
            if other in row:
                labels.append(f"{row['workload']}\n{row['dtype']}, {row['threads']} thr vs {other}")
                vals.append(row[other] / row["rbe"])
                colors.append(cmap[other])
    if not vals:
        return
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(vals) + 1.5))
    ax.barh(range(len(vals)), vals, color=colors)
    ax.set_yticks(range(len(vals)), labels, fontsize=6)
    ax.set_xscale("log")
    ax.axvline(1, color="k", lw=0.8)
    for v in set(TARGETS.values()):
        ax.axvline(v, color="gray", ls="--", lw=0.8)
    c = results["config"]
    ax.set_title(f"rbe.hmm speed-up (other time / rbe time), B={c['B']} T={c['T']} K={c['K']} D={c['D']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
