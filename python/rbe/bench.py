"""The benchmark suite behind ``rbe bench`` and ``benches/compare_torch.py``.

Each workload runs in rbe and in torch in the same process, with the same
dtype and the same number of threads, warm-up first, then the median of
repeated timings. Ratios (torch time / rbe time) measured in one run are the
figures to read: absolute times on a shared machine are noisy.
"""
from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from typing import Callable, Dict, List


def _median_time(fn: Callable[[], None], repeats: int, warmup: int, inner: int = 1) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        ts.append((time.perf_counter() - t0) / inner)
    return statistics.median(ts)


def _cpu_util(fn: Callable[[], None], seconds: float, threads: int) -> float:
    """CPU time / (wall time x threads) while running fn repeatedly."""
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    while time.perf_counter() - t0 < seconds or n < 2:
        fn()
        n += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return cpu / (wall * threads)


# ---------------------------------------------------------------- workloads
# Each builder gets the framework module m (rbe or torch) and a size scale,
# and returns a zero-argument callable doing one unit of work.

def w_per_op(m, q):
    x = m.randn(8, 8, requires_grad=True)
    y = m.randn(8, 8)

    def run():
        x * y

    return run


def w_linear_backward(m, q):
    nn = m.nn
    m.manual_seed(0)
    layer = nn.Linear(128, 128)
    x = m.randn(32, 128, requires_grad=True)

    def run():
        out = m.relu(layer(x))
        out.sum().backward()

    return run


def w_mlp_adam(m, q):
    nn = m.nn
    m.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    opt = m.optim.Adam(model.parameters(), lr=1e-3)
    x = m.randn(64, 784)
    y = m.randint(0, 10, (64,))
    loss_fn = nn.CrossEntropyLoss()

    def run():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    return run


def w_gemm(n):
    def build(m, q):
        a = m.randn(n, n)
        b = m.randn(n, n)

        def run():
            a @ b

        return run

    return build


def w_polyfit(m, q):
    steps = 400 if q else 4000
    x = m.linspace(-math.pi, math.pi, 2000)
    y = m.sin(x)

    def run():
        m.manual_seed(0)
        a, b, c, d = (m.randn((), requires_grad=True) for _ in range(4))
        for _ in range(steps):
            loss = (a + b * x + c * x**2 + d * x**3 - y).pow(2).sum()
            loss.backward()
            with m.no_grad():
                for p in (a, b, c, d):
                    p -= 1e-6 * p.grad
                    p.grad = None

    return run


def w_pinn(m, q):
    nn = m.nn
    m.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    opt = m.optim.Adam(net.parameters(), lr=1e-3)
    pts = m.rand(1024, 2)

    def run():
        x = pts.clone().requires_grad_(True)
        u = net(x)
        (g,) = m.autograd.grad(u.sum(), x, create_graph=True)
        lap = 0
        for d in range(2):
            (h,) = m.autograd.grad(g[:, d].sum(), x, create_graph=True)
            lap = lap + h[:, d]
        loss = (lap + 1.0).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return run


def _hmm(m, backward):
    nn = m.nn

    def build(mm, q):
        steps = 50 if q else 200
        m.manual_seed(0)
        emis = nn.Linear(80, 50)
        trans = m.randn(50, 50, requires_grad=True)
        init = m.randn(50, requires_grad=True)
        obs = m.randn(16, steps, 80)

        def run():
            log_a = m.log_softmax(trans, dim=1)
            log_b = m.log_softmax(emis(obs), dim=-1)  # (16, T, 50)
            alpha = m.log_softmax(init, dim=0) + log_b[:, 0]
            for t in range(1, steps):
                alpha = m.logsumexp(alpha.unsqueeze(2) + log_a, dim=1) + log_b[:, t]
            ll = m.logsumexp(alpha, dim=1).sum()
            if backward:
                ll.backward()
            else:
                ll.detach()

        return run

    return build


WORKLOADS = [
    ("1 per-op overhead (8x8 mul, requires_grad)", w_per_op, "us", 1e6, 2000),
    ("2 Linear(128,128)+ReLU fwd+bwd, batch 32", w_linear_backward, "us", 1e6, 50),
    ("3 MLP 784-512-512-10 Adam step, batch 64", w_mlp_adam, "ms", 1e3, 3),
    ("4a GEMM f32 256", w_gemm(256), "GFLOP/s", None, 20),
    ("4b GEMM f32 1024", w_gemm(1024), "GFLOP/s", None, 2),
    ("4c GEMM f32 2048", w_gemm(2048), "GFLOP/s", None, 1),
    ("5 polynomial fit, 2000 points x 4000 SGD steps", w_polyfit, "s", 1.0, 1),
    ("6 PINN step (MLP 2-64-64-64-1, tanh, Laplacian, Adam)", w_pinn, "ms", 1e3, 1),
    ("7a HMM log-space forward (B16, T200, K50)", None, "ms", 1e3, 1),
    ("7b HMM forward+backward", None, "ms", 1e3, 1),
]


def _cpu_info() -> Dict:
    """CPU model, nominal clock and vector width from /proc/cpuinfo (Linux), for the
    GEMM peak: 2 FMA pipes x lanes x 2 flop per cycle and core."""
    info = {"model": platform.processor() or platform.machine(), "mhz": None, "f32_flop_per_cycle": None}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return info
    for line in text.splitlines():
        k, _, v = line.partition(":")
        k, v = k.strip(), v.strip()
        if k == "model name" and info["model"] in (None, "", "x86_64", platform.machine()):
            info["model"] = v
        elif k == "cpu MHz" and info["mhz"] is None:
            info["mhz"] = float(v)
        elif k == "flags" and info["f32_flop_per_cycle"] is None:
            flags = v.split()
            info["f32_flop_per_cycle"] = 64 if "avx512f" in flags else 32 if "fma" in flags else 8
    return info


def add_peak(data: Dict) -> None:
    """Adds `pct_of_peak` (rbe and torch) to the GEMM rows: GFLOP/s over the nominal
    peak (cpuinfo MHz x flop/cycle x threads); turbo clocks can exceed it."""
    cpu = data["machine"].get("cpu") or {}
    if not cpu.get("mhz") or not cpu.get("f32_flop_per_cycle"):
        return
    for r in data["results"]:
        if r["unit"] == "GFLOP/s":
            peak = cpu["mhz"] * 1e-3 * cpu["f32_flop_per_cycle"] * r["threads"]
            r["peak_gflops"] = round(peak, 1)
            for fw in ("rbe", "torch"):
                if fw in r:
                    r[f"{fw}_pct_of_peak"] = round(100 * r[fw] / peak, 1)


def _gflops(name):
    n = int(name.split()[-1])
    return 2.0 * n**3 / 1e9


def run_suite(threads_list=None, quick: bool = False, repeats: int = 7, include_torch: bool = True, log=print) -> Dict:
    import rbe

    try:
        import torch
    except ImportError:
        torch = None
        include_torch = False
    if threads_list is None:
        threads_list = sorted({1, os.cpu_count() or 1})
    results: List[Dict] = []
    reps = 2 if quick else repeats
    for threads in threads_list:
        rbe.set_num_threads(threads)
        if include_torch:
            torch.set_num_threads(threads)
        for name, builder, unit, scale, inner in WORKLOADS:
            if name.startswith("7a"):
                builder_r, builder_t = _hmm(rbe, False), (_hmm(torch, False) if include_torch else None)
            elif name.startswith("7b"):
                builder_r, builder_t = _hmm(rbe, True), (_hmm(torch, True) if include_torch else None)
            else:
                builder_r = builder_t = builder
            if quick and name.startswith("4c"):
                continue
            inner_n = max(1, inner // 10) if quick else inner
            row = {"workload": name, "threads": threads, "unit": unit}
            for fw, mod, b in (("rbe", rbe, builder_r), ("torch", torch, builder_t)):
                if fw == "torch" and not include_torch:
                    continue
                fn = b(mod, quick)
                t = _median_time(fn, reps, 1 if quick else 2, inner_n)
                row[f"{fw}_seconds"] = t
                row[fw] = (_gflops(name) / t) if unit == "GFLOP/s" else t * scale
            if include_torch:
                row["ratio_torch_over_rbe"] = (row["rbe"] / row["torch"]) if unit == "GFLOP/s" else (row["torch_seconds"] / row["rbe_seconds"])
            results.append(row)
            log(_fmt_row(row))
    extra = {}
    if not quick:
        extra = _memory_and_cpu(rbe, torch if include_torch else None, threads_list)
        for k, v in extra.items():
            log(f"{k}: {v}")
    data = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "python": sys.version.split()[0], "cpu": _cpu_info()},
        "versions": {"rbe": rbe.__version__, "torch": torch.__version__ if torch else None},
        "results": results,
        "memory_cpu": extra,
    }
    add_peak(data)
    return data


def _memory_and_cpu(rbe, torch, threads_list) -> Dict:
    """Workload 8: peak resident memory of workload 3 over 100 steps (each framework in a fresh
    process), and CPU utilisation of workloads 3 and 4 with all threads."""
    import subprocess

    out = {}
    for fw in ("rbe", "torch") if torch else ("rbe",):
        # VmHWM (not ru_maxrss, which a child inherits from this process across exec);
        # the child imports only the framework it measures
        code = (
            "import sys\n"
            f"import {fw} as m\n"
            "sys.path.insert(0, %r)\n" % os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            + "from rbe.bench import w_mlp_adam\n"
            "st = lambda k: int([l.split()[1] for l in open('/proc/self/status') if l.startswith(k)][0])\n"
            "base = st('VmRSS:')\n"
            "f = w_mlp_adam(m, False)\n"
            "for _ in range(100): f()\n"
            "print(st('VmHWM:'), st('VmHWM:') - base)"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        if r.returncode == 0:
            peak, grow = (int(v) for v in r.stdout.split()[-2:])
            out[f"peak_rss_MiB_workload3_{fw}"] = round(peak / 1024, 1)
            out[f"peak_rss_growth_MiB_workload3_{fw}"] = round(grow / 1024, 1)
        else:
            out[f"peak_rss_MiB_workload3_{fw}"] = r.stderr[-300:]
    n = max(threads_list)
    rbe.set_num_threads(n)
    out[f"cpu_util_workload3_rbe_{n}threads"] = round(_cpu_util(w_mlp_adam(rbe, False), 2.0, n), 3)
    out[f"cpu_util_gemm1024_rbe_{n}threads"] = round(_cpu_util(w_gemm(1024)(rbe, False), 2.0, n), 3)
    if torch:
        torch.set_num_threads(n)
        out[f"cpu_util_workload3_torch_{n}threads"] = round(_cpu_util(w_mlp_adam(torch, False), 2.0, n), 3)
        out[f"cpu_util_gemm1024_torch_{n}threads"] = round(_cpu_util(w_gemm(1024)(torch, False), 2.0, n), 3)
    return out


def _fmt_row(row) -> str:
    r = f"{row['workload']:<58} thr={row['threads']}  rbe {row['rbe']:10.2f} {row['unit']}"
    if "torch" in row:
        r += f"  torch {row['torch']:10.2f} {row['unit']}  torch/rbe {row['ratio_torch_over_rbe']:6.2f}x"
    return r


def write_outputs(data: Dict, out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(data, f, indent=2)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = [r for r in data["results"] if "ratio_torch_over_rbe" in r]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.5))
    labels = [f"{r['workload']} [{r['threads']}t]" for r in rows]
    ratios = [r["ratio_torch_over_rbe"] for r in rows]
    colors = ["tab:green" if v >= 1 else "tab:red" for v in ratios]
    ax.barh(range(len(rows)), ratios, color=colors)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ticks = [t for t in (0.25, 0.5, 1, 2, 4, 8, 16) if min(ratios) / 1.5 <= t <= max(ratios) * 1.5]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_title(f"rbe vs torch ({data['machine'].get('cpu', {}).get('model', data['machine']['processor'])}, {data['machine']['cpus']} CPUs)", fontsize=9)
    ax.set_xlabel("speed-up of rbe over torch (torch time / rbe time; GEMM: rbe GFLOP/s / torch GFLOP/s)")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "results.png"), dpi=120)


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="rbe bench", description="rbe vs torch benchmark suite")
    p.add_argument("--quick", action="store_true", help="a few seconds: check that every workload runs (no timing value)")
    p.add_argument("--threads", type=int, nargs="*", help="thread counts (default: 1 and all)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default="bench-results", help="folder for results.json and results.png")
    p.add_argument("--no-torch", action="store_true")
    a = p.parse_args(argv)
    data = run_suite(a.threads, a.quick, a.repeats, not a.no_torch)
    write_outputs(data, a.out)
    print(f"wrote {os.path.join(a.out, 'results.json')}")
    return 0
