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

How the neural rows are timed: every framework x threads x dtype cell runs
in a fresh worker process (``python -m rbe.hmm.bench --worker ...``) with
its thread settings in the environment before any import
(``RBE_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``; numpy's
``OPENBLAS_NUM_THREADS=1``, it only prepares inputs; then ``rbe.set_num_threads`` /
``torch.set_num_threads``; jax pinned to that many cores with
``sched_setaffinity`` and its XLA flags), so no framework's idle worker
threads (torch's spinning OpenMP pool) share the cores with another's timing.
The cells run in ``--rounds`` rounds, the frameworks alternating inside each
cell (rbe, torch, jax, then torch, jax, rbe, ...), so load drift on a shared
machine reaches all of them; each worker reports the median of its repeats
after warm-up, and a row's time is the median of its workers' medians. In
the first round the workers also return the log-likelihood and the
gradients, which are checked against rbe's (one correctness check per cell).

The hmmlearn rows run in this (the parent) process after the workers:
hmmlearn is single-threaded numpy/Cython, torch and jax are never imported
here, and rbe's own threads are set with ``rbe.set_num_threads`` (BLAS with
threadpoolctl), so nothing else competes for the cores.

Ratios (other / rbe) are the figures to read. Results go to
``OUT/results.json``, ``OUT/results.csv`` and a chart
``OUT/hmm_speedups.png`` (matplotlib).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional

import numpy as np

TARGETS = {"torch": 10.0, "jax": 5.0, "hmmlearn": 5.0}
FRAMEWORKS = ("rbe", "torch", "jax")
PARAMS = ("W", "bias", "trans", "init")
# agreement of the log-likelihood (relative) and of each gradient (max abs
# difference over max abs value) with rbe's, per dtype: the frameworks sum
# the same quantities in a different order (rbe's scaled matrix-product
# forward against a logsumexp per step). Seen at the full size: float32
# gradients within 6e-5, float64 within 3e-13, log-likelihoods within 2e-16.
TOLERANCES = {"float32": (1e-5, 1e-3), "float64": (1e-10, 1e-9)}


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
    """The rbe neural workload: ``run()`` returns the log-likelihood,
    ``run(True)`` also the gradients (numpy arrays by parameter name)."""
    import rbe
    from rbe.hmm import hmm_log_likelihood

    dt = rbe.float32 if dtype == "float32" else rbe.float64
    W, bias, trans, init = (rbe.from_numpy(inp[n].astype(dtype)).requires_grad_() for n in PARAMS)
    obs = rbe.from_numpy(inp["obs"].astype(dtype))
    assert obs.dtype == dt

    def run(with_grads=False):
        log_b = rbe.log_softmax(rbe.matmul(obs, W.t()) + bias, dim=-1)
        ll = hmm_log_likelihood(rbe.log_softmax(init, dim=0), rbe.log_softmax(trans, dim=1), log_b).sum()
        ll.backward()
        grads = {n: p.grad.numpy().copy() for n, p in zip(PARAMS, (W, bias, trans, init))} if with_grads else None
        for p in (W, bias, trans, init):
            p.grad = None
        return (float(ll), grads) if with_grads else float(ll)

    return run


def neural_torch(inp, dtype):
    """The same model op by op in torch (``run(True)`` also returns the gradients)."""
    import torch

    W, bias, trans, init = (torch.tensor(inp[n].astype(dtype), requires_grad=True) for n in PARAMS)
    obs = torch.tensor(inp["obs"].astype(dtype))
    steps = obs.shape[1]

    def run(with_grads=False):
        log_a = torch.log_softmax(trans, dim=1)
        log_b = torch.log_softmax(obs @ W.t() + bias, dim=-1)
        alpha = torch.log_softmax(init, dim=0) + log_b[:, 0]
        for t in range(1, steps):
            alpha = torch.logsumexp(alpha.unsqueeze(2) + log_a, dim=1) + log_b[:, t]
        ll = torch.logsumexp(alpha, dim=1).sum()
        ll.backward()
        grads = {n: p.grad.numpy().copy() for n, p in zip(PARAMS, (W, bias, trans, init))} if with_grads else None
        for p in (W, bias, trans, init):
            p.grad = None
        return (float(ll.detach()), grads) if with_grads else float(ll.detach())

    return run


def neural_jax(inp, dtype):
    """The same recursion under ``jax.jit(jax.value_and_grad(...))`` with ``lax.scan``
    (import jax only after the thread settings: see ``_worker``)."""
    import jax

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax import lax

    params = {n: jnp.asarray(inp[n].astype(dtype)) for n in PARAMS}
    obs = jnp.asarray(inp["obs"].astype(dtype))

    def loss(p, obs):
        log_a = jax.nn.log_softmax(p["trans"], axis=1)
        log_b = jax.nn.log_softmax(obs @ p["W"].T + p["bias"], axis=-1)
        alpha0 = jax.nn.log_softmax(p["init"]) + log_b[:, 0]

        def step(alpha, lb):
            return jax.scipy.special.logsumexp(alpha[:, :, None] + log_a, axis=1) + lb, None

        alpha, _ = lax.scan(step, alpha0, jnp.swapaxes(log_b[:, 1:], 0, 1))
        return jax.scipy.special.logsumexp(alpha, axis=1).sum()

    f = jax.jit(jax.value_and_grad(loss))

    def run(with_grads=False):
        v, g = f(params, obs)
        jax.block_until_ready(g)
        return (float(v), {n: np.asarray(g[n]) for n in PARAMS}) if with_grads else float(v)

    return run


# ---------------------------------------------------------------- workers


def _thread_env(threads: int) -> Dict[str, str]:
    """The environment of a worker: every thread pool it could start sized
    to ``threads`` before the interpreter imports anything."""
    env = dict(os.environ)
    n = str(threads)
    for var in ("RBE_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = n
    # numpy's OpenBLAS only prepares the inputs (torch computes with MKL,
    # jax with XLA); its idle threads would only take cycles from the timing
    env["OPENBLAS_NUM_THREADS"] = "1"
    if "XLA_FLAGS" not in os.environ:
        env["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} intra_op_parallelism_threads={n}"
    # the worker must import this same rbe (e.g. a source checkout on PYTHONPATH)
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _worker(framework: str, threads: int, dtype: str, inputs: str, repeats: int, warmup: int, values: bool) -> dict:
    """Times one cell in this (fresh) process and returns a JSON-able dict."""
    inp = dict(np.load(inputs))
    if framework == "rbe":
        import rbe

        rbe.set_num_threads(threads)
        run, version = neural_rbe(inp, dtype), getattr(rbe, "__version__", "?")
    elif framework == "torch":
        import torch

        torch.set_num_threads(threads)
        run, version = neural_torch(inp, dtype), torch.__version__
    elif framework == "jax":
        # XLA sizes its pools from the cores it may use
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
        import jax

        run, version = neural_jax(inp, dtype), jax.__version__
    else:
        raise ValueError(f"--worker: unknown framework {framework!r}")
    out: dict = {"framework": framework, "threads": threads, "dtype": dtype, "version": version}
    if values:
        ll, grads = run(True)
        out["value"] = ll
        out["grads"] = {n: g.tolist() for n, g in grads.items()}
    out["time"] = _median(run, repeats, warmup)
    return out


def _run_worker(framework: str, threads: int, dtype: str, inputs: str, repeats: int, warmup: int, values: bool) -> dict:
    cmd = [sys.executable, "-m", "rbe.hmm.bench", "--worker", framework, "--threads", str(threads), "--dtype", dtype,
           "--inputs", inputs, "--repeats", str(repeats), "--warmup", str(warmup)] + (["--values"] if values else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=_thread_env(threads))
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def check_values(ref: dict, other: dict, dtype: str) -> Optional[str]:
    """None when ``other``'s log-likelihood and gradients agree with ``ref``'s
    (rbe's) within ``TOLERANCES[dtype]``, else what differs."""
    tol_ll, tol_g = TOLERANCES[dtype]
    if abs(ref["value"] - other["value"]) > tol_ll * abs(ref["value"]):
        return f"log-likelihood {other['value']!r} against rbe's {ref['value']!r}"
    for n in PARAMS:
        a, b = np.asarray(ref["grads"][n]), np.asarray(other["grads"][n])
        if a.shape != b.shape:
            return f"gradient of {n}: shape {b.shape} against rbe's {a.shape}"
        scale = max(float(np.abs(a).max()), 1e-30)
        err = float(np.abs(a - b).max()) / scale
        if not err <= tol_g:
            return f"gradient of {n}: max difference {err:.3g} of its largest entry (tolerance {tol_g:g})"
    return None


def neural_rows(inp: dict, frameworks: List[str], threads: List[int], repeats: int, warmup: int, rounds: int,
                tmpdir: str, log: Optional[Callable[[str], None]] = None) -> tuple:
    """The neural rows: every framework x threads x dtype cell timed in
    ``rounds`` fresh workers, frameworks alternating; one row per cell pair
    (threads, dtype) with each framework's median of worker medians, the
    worker medians themselves and the correctness check of round 0.
    Returns ``(rows, versions)``."""
    if log is None:
        def log(s: str) -> None:
            print(s, flush=True)
    path = os.path.join(tmpdir, "hmm_bench_inputs.npz")
    np.savez(path, **inp)
    reps = {"rbe": repeats, "torch": max(3, repeats // 3), "jax": repeats}
    cells = [(n, dt) for n in threads for dt in ("float32", "float64")]
    runs: Dict[tuple, Dict[str, list]] = {c: {f: [] for f in frameworks} for c in cells}
    rows = {c: {"workload": "neural ll+grad", "dtype": c[1], "threads": c[0]} for c in cells}
    versions: Dict[str, str] = {}
    for r in range(rounds):
        for c in cells:
            order = frameworks[r % len(frameworks):] + frameworks[:r % len(frameworks)]
            got = {}
            for f in order:
                w = _run_worker(f, c[0], c[1], path, reps[f], warmup if f != "torch" else 1, values=(r == 0))
                if "time" in w:
                    runs[c][f].append(w["time"])
                    versions[f] = w.get("version", "?")
                else:
                    rows[c][f"{f}_error"] = w.get("error")
                got[f] = w
            if r == 0 and "value" in got.get("rbe", {}):
                for f in frameworks:
                    if f != "rbe" and "value" in got.get(f, {}):
                        bad = check_values(got["rbe"], got[f], c[1])
                        if bad is not None:
                            raise AssertionError(f"{f} and rbe disagree ({c[1]}, {c[0]} threads): {bad}")
                        rows[c].setdefault("checked", []).append(f)
            log(f"round {r + 1}/{rounds}, {c[0]} thr {c[1]}: " + "  ".join(
                f"{f} {runs[c][f][-1] * 1e3:.2f} ms" for f in order if runs[c][f] and f in got and "time" in got[f]))
    out = []
    for c in cells:
        row = rows[c]
        for f in frameworks:
            if runs[c][f]:
                row[f] = statistics.median(runs[c][f])
                row[f"{f}_workers"] = runs[c][f]
        if "rbe" in row:
            out.append(row)
        else:
            raise RuntimeError(f"the rbe worker failed ({c[1]}, {c[0]} threads): {row.get('rbe_error')}")
    return out, versions


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
    ap.add_argument("--out", default="bench-results/hmm", help="output folder (results.json, results.csv, hmm_speedups.png)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per worker (torch gets a third, at least 3)")
    ap.add_argument("--rounds", type=int, default=None, help="fresh workers per framework and cell (default 3, --quick 1)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--no-jax", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-hmmlearn", action="store_true")
    # the worker mode (one cell in a fresh process; used by the benchmark itself)
    ap.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    ap.add_argument("--dtype", choices=("float32", "float64"), help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=int, default=3, help=argparse.SUPPRESS)
    ap.add_argument("--values", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        threads = [int(x) for x in args.threads.split(",")]
    except ValueError:
        ap.error(f"--threads expects comma-separated integers, got {args.threads!r}")
    if not threads or min(threads) < 1:
        ap.error(f"--threads expects integers >= 1, got {args.threads!r}")
    for name in ("repeats", "rounds"):
        v = getattr(args, name)
        if v is not None and v < 1:
            ap.error(f"--{name} must be >= 1, got {v}")
    if args.worker:
        if args.dtype is None or args.inputs is None or len(threads) != 1:
            ap.error("--worker needs --dtype, --inputs and one --threads value")
        print(json.dumps(_worker(args.worker, threads[0], args.dtype, args.inputs, args.repeats or 15, args.warmup, args.values)))
        return 0

    b, t, k, d = (4, 30, 8, 6) if args.quick else (16, 200, 50, 80)
    repeats = args.repeats or (3 if args.quick else 15)
    rounds = args.rounds or (1 if args.quick else 3)
    warmup = 1 if args.quick else 3
    os.makedirs(args.out, exist_ok=True)
    frameworks = ["rbe"] + [f for f in ("torch", "jax") if not getattr(args, f"no_{f}") and _has(f) and not (f == "jax" and args.quick)]
    have_hl = not args.no_hmmlearn and _has("hmmlearn")
    inp = _neural_inputs(b, t, k, d)
    results = {"config": {"B": b, "T": t, "K": k, "D": d, "repeats": repeats, "rounds": rounds, "quick": args.quick,
                          "timing": "neural rows: median over rounds of per-worker medians, one fresh process per "
                                    "framework x threads x dtype per round; hmmlearn rows: in the parent process"},
               "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(), "load_before": _load()},
               "versions": {"rbe": _version("rbe-autodiff", "rbe"), "numpy": np.__version__, "python": platform.python_version()},
               "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        rows, versions = neural_rows(inp, frameworks, threads, repeats, warmup, rounds, tmp)
    results["versions"].update(versions)
    for row in rows:
        results["rows"].append(row)
        _print_row(row)
    if have_hl:
        import rbe

        results["versions"]["hmmlearn"] = _version("hmmlearn", "hmmlearn")
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover
            threadpool_limits = None
        prev = rbe.get_num_threads()
        try:
            for n in threads:
                rbe.set_num_threads(n)
                with threadpool_limits(n) if threadpool_limits else _Null():
                    for name, v in hmmlearn_workloads(b, t, k, d, max(3, repeats // 2), warmup).items():
                        row = {"workload": f"GaussianHMM {name}", "dtype": "float64", "threads": n, "rbe": v["rbe"], "hmmlearn": v["hmmlearn"]}
                        results["rows"].append(row)
                        _print_row(row)
        finally:
            rbe.set_num_threads(prev)
    results["machine"]["load_after"] = _load()
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    _write_csv(results, os.path.join(args.out, "results.csv"))
    _chart(results, os.path.join(args.out, "hmm_speedups.png"))
    print(f"results: {os.path.join(args.out, 'results.json')}")
    return 0


def _load() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def _version(dist: str, module: str) -> str:
    """A package's version without importing it (importing torch or jax here
    could start threads in the parent)."""
    from importlib import metadata

    for name in (dist, module):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if module == "rbe":
        import rbe

        return getattr(rbe, "__version__", "?")
    return "?"


def _write_csv(results: dict, path: str) -> None:
    cols = ["workload", "dtype", "threads", "rbe_ms"] + [f"{o}_ms" for o in ("torch", "jax", "hmmlearn")] + \
        [f"{o}_ratio" for o in ("torch", "jax", "hmmlearn")]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for row in results["rows"]:
            vals = [row["workload"], row["dtype"], row["threads"], f"{row['rbe'] * 1e3:.4f}"]
            vals += [f"{row[o] * 1e3:.4f}" if o in row else "" for o in ("torch", "jax", "hmmlearn")]
            vals += [f"{row[o] / row['rbe']:.3f}" if o in row else "" for o in ("torch", "jax", "hmmlearn")]
            w.writerow(vals)


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
