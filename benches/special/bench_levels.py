"""Forward time of rbe.special.log_ndtr / ndtr / rbe.erf / rbe.erfc on
100,000 float64 points (normal(0, 3)), one thread, at each dispatch level
(RBE_SIMD=avx512 / avx2 / scalar, one subprocess each; median of repeats
after warm-up; compare only ratios measured in one run).

    python benches/special/bench_levels.py [--rounds 3] [--repeats 31]
    # A/B against another build of rbe (e.g. a copy of python/rbe of main):
    python benches/special/bench_levels.py --other /tmp/erf-old/site

Rounds alternate this build and the other; the table gives, per build,
level and function, the range (min-max) of the rounds' medians in ms.
"""
import argparse
import json
import os
import subprocess
import sys
import time

LEVELS = ("avx512", "avx2", "scalar")


def measure(n, repeats):
    import numpy as np

    import rbe

    rbe.set_num_threads(1)
    x = rbe.tensor(np.random.default_rng(0).normal(0.0, 3.0, n), dtype=rbe.float64)
    funcs = {"log_ndtr": rbe.special.log_ndtr, "ndtr": rbe.special.ndtr, "erf": rbe.erf, "erfc": rbe.erfc}
    res = {}
    for name, f in funcs.items():
        f(x)
        f(x)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f(x)
            ts.append(time.perf_counter() - t0)
        res[name] = 1e3 * float(np.median(ts))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=31)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--other", help="PYTHONPATH entry holding another build of rbe to compare with")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.json:
        print(json.dumps(measure(a.n, a.repeats)))
        return
    builds = {"this": None} if a.other is None else {"this": None, "other": a.other}
    runs = {}
    for _ in range(a.rounds):
        for lvl in LEVELS:
            for b, path in builds.items():
                env = dict(os.environ, RBE_SIMD=lvl)
                if path is not None:
                    env["PYTHONPATH"] = path + os.pathsep + env.get("PYTHONPATH", "")
                cmd = [sys.executable, os.path.abspath(__file__), "--json", "--n", str(a.n), "--repeats", str(a.repeats)]
                # run outside the source tree so that PYTHONPATH decides which rbe is imported
                out = subprocess.run(cmd, env=env, cwd="/", check=True, capture_output=True, text=True).stdout
                for f, ms in json.loads(out).items():
                    runs.setdefault((b, lvl, f), []).append(ms)
    print(f"ms per {a.n:,} forward evaluations, 1 thread (min-max over {a.rounds} rounds)")
    print(f"{'build':6} {'level':7} " + " ".join(f"{f:>13}" for f in ("log_ndtr", "ndtr", "erf", "erfc")))
    for b in builds:
        for lvl in LEVELS:
            cells = [runs[(b, lvl, f)] for f in ("log_ndtr", "ndtr", "erf", "erfc")]
            print(f"{b:6} {lvl:7} " + " ".join(f"{min(c):6.2f}-{max(c):6.2f}" for c in cells))


if __name__ == "__main__":
    main()
