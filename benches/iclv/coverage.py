"""Monte Carlo coverage of rbe.iclv's robust and classical standard errors
(out of CI; results in the README section rbe.iclv).

Each replication simulates a fresh data set of the origin-shaped study
(same true values, a new seed), estimates it from the naive start values,
and records for every parameter whether the true value lies within 1.96
robust (and classical) standard errors of the estimate. The nominal
coverage is 95%; with finitely many individuals and simulated likelihood
(draws) it is approximate.

    python benches/iclv/coverage.py --reps 40 --individuals 326 --tasks 18 --draws 100 --out benches/iclv/results

Writes ``coverage.json`` (per-parameter and overall coverage, failures)
and ``coverage.csv`` (per-parameter rates) into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=40)
    p.add_argument("--individuals", type=int, default=326)
    p.add_argument("--tasks", type=int, default=18)
    p.add_argument("--draws", type=int, default=100)
    p.add_argument("--indicators-per-lv", type=int, default=4)
    p.add_argument("--first-seed", type=int, default=1000)
    p.add_argument("--out", default="benches/iclv/results")
    args = p.parse_args(argv)
    import pandas as pd

    import rbe
    from rbe.iclv.simulate import origin_study

    rows, failures = [], []
    t0 = time.perf_counter()
    for rep in range(args.reps):
        seed = args.first_seed + rep
        st = origin_study(n_individuals=args.individuals, n_tasks=args.tasks, n_draws=args.draws, seed=seed,
                          n_indicators_per_lv=args.indicators_per_lv)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = st.model().estimate(verbose=False)
        if not res.converged:
            failures.append({"seed": seed, "message": res.message})
            continue
        for i, n in enumerate(res.names):
            if n not in st.truth:
                continue
            tv = st.truth[n]
            rows.append({"seed": seed, "param": n, "true": tv, "est": res.estimates[i], "se": res.se[i], "rse": res.robust_se[i]})
        print(f"replication {rep + 1}/{args.reps} (seed {seed}): LL {res.ll_final:.2f}, {res.iterations} iterations, "
              f"{time.perf_counter() - t0:.0f} s elapsed", flush=True)
    df = pd.DataFrame(rows)
    df["in_robust"] = (df.est - df.true).abs() <= 1.96 * df.rse
    df["in_classical"] = (df.est - df.true).abs() <= 1.96 * df.se
    per = df.groupby("param").agg(robust=("in_robust", "mean"), classical=("in_classical", "mean"),
                                  bias=("est", "mean"), sd=("est", "std"), mean_rse=("rse", "mean"))
    per["bias"] -= df.groupby("param")["true"].first()
    out = {
        "reps": args.reps, "converged": int(df.seed.nunique()), "failures": failures,
        "sizes": {"individuals": args.individuals, "tasks": args.tasks, "draws": args.draws, "indicators_per_lv": args.indicators_per_lv},
        "coverage_robust": float(df.in_robust.mean()), "coverage_classical": float(df.in_classical.mean()),
        "params_robust_below_0.85": per.index[per.robust < 0.85].tolist(),
        "wall_s": time.perf_counter() - t0, "threads": rbe.get_num_threads(),
    }
    os.makedirs(args.out, exist_ok=True)
    per.to_csv(os.path.join(args.out, "coverage.csv"))
    with open(os.path.join(args.out, "coverage.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
