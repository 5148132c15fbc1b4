"""``rbe pinn <problem>``: train a PINN on a built-in problem with good
defaults, show progress, print the relative L2 error and the time, save the
figures.

Defaults: a float64 ``ChebyKANNet([d, 16, 16, 1], degree=5)`` with the
problem's box mapped affinely onto ``[-1, 1]``, Adam (lr 1e-2, exponential
decay, gradients clipped at norm 1) then L-BFGS (strong Wolfe), the PDE term
weighted by ``1 / source_scale^2``. Per-problem step counts and point numbers
are in ``DEFAULTS``; every one can be overridden.

Example: ``rbe pinn poisson2d --seed 1 --out pinn-out``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import List, Optional

from .problems import PROBLEMS

#: Per-problem defaults (the accuracy runs of the README use them).
DEFAULTS = {
    "poisson1d": dict(n_interior=1000, n_boundary=2, adam_steps=1000, lbfgs_steps=40),
    "poisson2d": dict(n_interior=2000, n_boundary=400, adam_steps=2000, lbfgs_steps=60),
    "poisson3d": dict(n_interior=3000, n_boundary=1200, adam_steps=3000, lbfgs_steps=60),
    "helmholtz2d": dict(n_interior=3000, n_boundary=400, adam_steps=3000, lbfgs_steps=60),
    "diffusion1d": dict(n_interior=3000, n_boundary=400, n_initial=200, adam_steps=3000, lbfgs_steps=60),
}
#: ``--quick``: seconds, for smoke runs.
QUICK = dict(n_interior=256, n_boundary=64, n_initial=64, adam_steps=60, lbfgs_steps=2, lbfgs_max_iter=20)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rbe pinn", description="Train a physics-informed ChebyKAN on a built-in problem.")
    p.add_argument("problem", choices=sorted(PROBLEMS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="rbe threads (default: rbe's)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--model", choices=("chebykan", "mlp"), default="chebykan")
    p.add_argument("--widths", type=str, default=None, help="hidden widths, e.g. 16,16 (default 16,16)")
    p.add_argument("--degree", type=int, default=5)
    p.add_argument("--layernorm", action="store_true")
    p.add_argument("--init", default="xavier")
    p.add_argument("--n-interior", type=int)
    p.add_argument("--n-boundary", type=int)
    p.add_argument("--n-initial", type=int)
    p.add_argument("--sampler", choices=("uniform", "sobol", "lhs"), default="sobol")
    p.add_argument("--adam-steps", type=int)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--scheduler", choices=("none", "exponential", "cosine", "plateau", "multistep"), default="exponential")
    p.add_argument("--gamma", type=float, default=None, help="exponential/multistep decay factor")
    p.add_argument("--lbfgs-steps", type=int)
    p.add_argument("--lbfgs-max-iter", type=int, default=50)
    p.add_argument("--clip", type=float, default=1.0, help="clip_grad_norm_ bound (<= 0: none)")
    p.add_argument("--pde-scaling", choices=("source", "none"), default="source")
    p.add_argument("--dynamic", action="store_true", help="DynamicWeightedLoss (gradient-norm balancing) in the Adam phase")
    p.add_argument("--resample", action="store_true", help="AdaptiveResidualSampler in the Adam phase")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--min-delta", type=float, default=0.0)
    p.add_argument("--max-time", type=float, default=None, help="wall-clock budget in seconds")
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--out", default="pinn-out", help="folder of the figures and the JSON summary")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds): a smoke run")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import rbe

    from . import AdaptiveResidualSampler, MLP, ChebyKANNet, Trainer, get_problem

    if args.threads is not None:
        rbe.set_num_threads(args.threads)
    save_figures = not args.no_figures
    if save_figures:
        from .plots import MISSING_MATPLOTLIB, have_matplotlib

        if not have_matplotlib():  # checked before training: figures are a default, not a requirement
            import warnings

            from ..errors import RbeWarning

            warnings.warn(MISSING_MATPLOTLIB, RbeWarning, stacklevel=2)
            save_figures = False
    dtype = rbe.float64 if args.dtype == "float64" else rbe.float32
    problem = get_problem(args.problem)
    cfg = dict(DEFAULTS[args.problem])
    if args.quick:
        cfg.update(QUICK)
    for k in ("n_interior", "n_boundary", "n_initial", "adam_steps", "lbfgs_steps"):
        v = getattr(args, k)
        if v is not None:
            cfg[k] = v
    if not args.quick:
        cfg["lbfgs_max_iter"] = args.lbfgs_max_iter
    hidden = [16, 16] if args.widths is None else [int(v) for v in args.widths.split(",") if v.strip()]
    widths = [problem.dim] + hidden + [1]
    rbe.manual_seed(args.seed)
    if args.model == "chebykan":
        model = ChebyKANNet(widths, degree=args.degree, box=problem.box, layernorm=args.layernorm, init=args.init, dtype=dtype)
    else:
        model = MLP(widths, box=problem.box, layernorm=args.layernorm, dtype=dtype)
    sched_params = {}
    if args.gamma is not None:
        if args.scheduler not in ("exponential", "multistep"):
            print("rbe pinn: --gamma applies to the exponential and multistep schedulers", file=sys.stderr)
            return 2
        sched_params["gamma"] = args.gamma
    resampler = None
    if args.resample:
        every = max(1, cfg["adam_steps"] // 5)
        resampler = AdaptiveResidualSampler(every=every, max_points=2 * cfg["n_interior"], candidates=cfg["n_interior"])
    tr = Trainer(problem, model, sampler=args.sampler, lr=args.lr, scheduler=args.scheduler, scheduler_params=sched_params,
                 clip=args.clip if args.clip > 0 else None, pde_scaling=args.pde_scaling, dynamic=True if args.dynamic else None,
                 resampler=resampler, batch_size=args.batch_size, patience=args.patience, min_delta=args.min_delta,
                 max_time=args.max_time, eval_every=args.eval_every, progress=not args.no_progress, seed=args.seed, dtype=dtype,
                 **cfg)
    nparams = sum(int(q.numel()) for q in tr.params)
    print(f"rbe pinn {args.problem}: {args.model} {widths} degree {args.degree}, {nparams} parameters, {args.dtype}, "
          f"{cfg['n_interior']} collocation points, Adam {cfg['adam_steps']} + L-BFGS {cfg['lbfgs_steps']} x {cfg['lbfgs_max_iter']}, "
          f"{rbe.get_num_threads()} thread(s), seed {args.seed}", flush=True)
    t0 = time.perf_counter()
    res = tr.train()
    wall = time.perf_counter() - t0
    print(f"  relative L2 error: {res.error:.3e}")
    print(f"  time: {wall:.1f} s (Adam {res.steps_adam} steps, L-BFGS {res.steps_lbfgs} steps), final loss {res.loss:.3e}")
    if res.message:
        print(f"  stopped: {res.stopped}: {res.message}")
    summary = dict(problem=args.problem, seed=args.seed, error=res.error, time=wall, steps_adam=res.steps_adam,
                   steps_lbfgs=res.steps_lbfgs, stopped=res.stopped, loss=res.loss, threads=rbe.get_num_threads(),
                   argv=list(argv) if argv is not None else sys.argv[1:], config=cfg)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{args.problem}_seed{args.seed}.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if save_figures:
        paths = tr.save_figures(args.out, f"{args.problem}_seed{args.seed}")
        print(f"  figures: {', '.join(paths)}")
    return 0 if res.stopped != "non_finite" else 1


if __name__ == "__main__":
    raise SystemExit(main())
