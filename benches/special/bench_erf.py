"""Forward + backward time of rbe.special.log_ndtr / ndtr / rbe.erf / rbe.erfc
against torch's on a (326, 100, 18) float64 tensor, 1 and 2 threads (median
of repeats after warm-up; compare only ratios measured in one run).

    python benches/special/bench_erf.py [--repeats 15]
    # A/B against another build of rbe (e.g. an unpacked wheel of main):
    python benches/special/bench_erf.py --other /tmp/erf-old/site --rounds 5

With --other, each round runs one subprocess per build (this one and the one
found first on PYTHONPATH=OTHER), alternately, and the table gives the
medians over the rounds; torch is timed in both as a reference.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def _median_ms(fn, repeats):
    fn()
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts))


def measure(shape, repeats):
    import torch

    import rbe

    x = np.random.default_rng(0).normal(0.0, 3.0, shape)
    funcs = {
        "log_ndtr": (rbe.special.log_ndtr, torch.special.log_ndtr),
        "ndtr": (rbe.special.ndtr, torch.special.ndtr),
        "erf": (rbe.erf, torch.special.erf),
        "erfc": (rbe.erfc, torch.special.erfc),
    }
    res = {}
    for th in (1, 2):
        rbe.set_num_threads(th)
        torch.set_num_threads(th)
        for name, (fr, ft) in funcs.items():
            def run_rbe():
                xt = rbe.tensor(x, dtype=rbe.float64, requires_grad=True)
                fr(xt).sum().backward()
                return xt.grad

            def run_torch():
                xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
                ft(xt).sum().backward()
                return xt.grad

            res[f"{name}/{th}"] = (_median_ms(run_rbe, repeats), _median_ms(run_torch, repeats))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--shape", default="326,100,18")
    ap.add_argument("--other", help="PYTHONPATH entry holding another build of rbe to compare with")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    if args.json:
        print(json.dumps(measure(shape, args.repeats)))
        return
    if not args.other:
        res = measure(shape, args.repeats)
        print(f"shape {shape} float64, fwd+bwd, median of {args.repeats} (ms)")
        print(f"{'function':10s} {'threads':>7s} {'rbe':>8s} {'torch':>8s} {'rbe/torch':>9s}")
        for k, (a, b) in res.items():
            name, th = k.split("/")
            print(f"{name:10s} {th:>7s} {a:8.2f} {b:8.2f} {a / b:9.2f}")
        return
    cmd = [sys.executable, __file__, "--json", "--repeats", str(args.repeats), "--shape", args.shape]
    runs = {"this": [], "other": []}
    for _ in range(args.rounds):
        for which in ("other", "this"):
            env = dict(os.environ)
            if which == "other":
                env["PYTHONPATH"] = args.other + os.pathsep + env.get("PYTHONPATH", "")
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            runs[which].append(json.loads(out))
    print(f"shape {shape} float64, fwd+bwd (ms): medians over {args.rounds} interleaved rounds of medians of {args.repeats}")
    print(f"{'function':10s} {'threads':>7s} {'this':>8s} {'other':>8s} {'torch':>8s} {'this/torch':>10s} {'other/torch':>11s} {'this/other':>10s}")
    for k in runs["this"][0]:
        a = float(np.median([r[k][0] for r in runs["this"]]))
        b = float(np.median([r[k][0] for r in runs["other"]]))
        t = float(np.median([r[k][1] for r in runs["this"] + runs["other"]]))
        name, th = k.split("/")
        print(f"{name:10s} {th:>7s} {a:8.2f} {b:8.2f} {t:8.2f} {a / t:10.2f} {b / t:11.2f} {a / b:10.2f}")


if __name__ == "__main__":
    main()
