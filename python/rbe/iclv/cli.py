"""``rbe iclv``: estimate a synthetic ICLV study with known true values.

By default the origin-shaped study (326 individuals x 18 binary probit
choice tasks, 3 latent variables with a hierarchical structure, 12
five-point ordered indicators, 100 Halton draws; 73 parameters) is
simulated, estimated from naive start values with a progress line per
iteration, and reported with the Apollo/Biogeme-style summary and the
recovery table (true value, estimate, robust s.e., whether the truth is
within 2 robust s.e.). ``--study drug`` runs the drug-choice-sized study
instead; ``--individuals``, ``--tasks``, ``--draws`` and
``--indicators-per-lv`` make it smaller.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional

import numpy as np

__all__ = ["main", "recovery_table"]


def recovery_table(results, truth) -> "object":
    """A pandas DataFrame: true value, estimate, robust s.e., (estimate -
    true) / robust s.e. and whether the truth is within 2 robust s.e."""
    import pandas as pd

    names = [n for n in results.names if n in truth]
    idx = [results.names.index(n) for n in names]
    est = results.estimates[idx]
    rse = results.robust_se[idx]
    tv = np.array([truth[n] for n in names])
    z = (est - tv) / rse
    return pd.DataFrame({"true": tv, "estimate": est, "robust_se": rse, "z": z, "within_2se": np.abs(z) <= 2}, index=names)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rbe iclv", description=__doc__.split("\n\n")[0])
    p.add_argument("--study", choices=["origin", "drug"], default="origin", help="origin-shaped (default) or drug-choice-sized")
    p.add_argument("--individuals", type=int, default=None, help="individuals (default 326 / 1000)")
    p.add_argument("--tasks", type=int, default=None, help="choice tasks per individual (default 18 / 10)")
    p.add_argument("--draws", type=int, default=100, help="draws per individual and latent variable (default 100)")
    p.add_argument("--indicators-per-lv", type=int, default=4, help="origin study: ordered indicators per latent variable (default 4)")
    p.add_argument("--draws-kind", default="halton", help="halton (default), sobol, mlhs, pseudo")
    p.add_argument("--method", default="bfgs", help="bfgs (default), lbfgsb, trust-exact, bhhh")
    p.add_argument("--seed", type=int, default=None, help="simulation seed")
    p.add_argument("--threads", type=int, default=None, help="worker threads of the engine")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--out", default=None, help="folder for results.json (the saved Results) and recovery.csv")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    import rbe

    from .simulate import drug_choice_study, origin_study

    if args.threads is not None:
        rbe.set_num_threads(args.threads)
    kw = {"n_draws": args.draws, "draws_kind": args.draws_kind}
    if args.individuals is not None:
        kw["n_individuals"] = args.individuals
    if args.tasks is not None:
        kw["n_tasks"] = args.tasks
    if args.seed is not None:
        kw["seed"] = args.seed
    if args.study == "origin":
        study = origin_study(n_indicators_per_lv=args.indicators_per_lv, **kw)
    else:
        study = drug_choice_study(**kw)
    model = study.model()
    d = study.data
    print(f"{study.name}: {d.n_individuals} individuals, {d.n_rows} rows, {args.draws} {args.draws_kind} draws, "
          f"{len(model.free_names)} free parameters, {rbe.get_num_threads()} threads")
    t0 = time.perf_counter()
    res = model.estimate(method=args.method, verbose=not args.quiet)
    wall = time.perf_counter() - t0
    print()
    print(res.summary())
    tab = recovery_table(res, study.truth)
    import pandas as pd

    with pd.option_context("display.max_rows", None, "display.width", 120, "display.float_format", "{:.4f}".format):
        print("\nRecovery (true value, estimate, robust s.e.):")
        print(tab.to_string())
    inside = int(tab["within_2se"].sum())
    print(f"\n{inside} of {len(tab)} true values within 2 robust s.e.; estimation with standard errors: {wall:.1f} s")
    if args.out:
        import os

        os.makedirs(args.out, exist_ok=True)
        res.save(os.path.join(args.out, "results.json"))
        tab.to_csv(os.path.join(args.out, "recovery.csv"))
        with open(os.path.join(args.out, "run.json"), "w") as f:
            json.dump({"study": study.name, "individuals": d.n_individuals, "rows": d.n_rows, "draws": args.draws,
                       "parameters": len(model.free_names), "converged": bool(res.converged), "wall_s": wall,
                       "within_2se": inside, "n_true": len(tab)}, f, indent=1)
    return 0 if res.converged else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
