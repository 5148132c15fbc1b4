"""``rbe bench iclv``: the ICLV benchmark of the README section rbe.iclv.

1. Log-likelihood + gradient of the origin-shaped model (326 x 18 binary
   probit tasks, 3 hierarchical latent variables, 12 five-point ordered
   probit indicators, 100 Halton draws, 73 parameters) in rbe (the model
   function of :func:`rbe.iclv.simulate.origin_study`), against the same
   model vectorised in torch (eager) and in JAX compiled with ``jax.jit``
   (when installed), with the same numerically safe formulas (``log_ndtr``
   of the accurate side, ``log1mexp``, log-sum-exp over draws), on 1 and 2
   threads; the three log-likelihoods and gradients are checked equal
   (1e-9 relative) before anything is timed. Medians of repeats after
   warm-up; ratios are of the same run. JAX runs in a subprocess per thread
   count (its thread pool is fixed at import: CPU affinity and XLA flags).
2. Full estimation of the origin-shaped study with classical and robust
   standard errors (wall time).
3. The drug-choice-sized 37-parameter ICLV (1,000 x 10 tasks, 4 ordered
   logit indicators, MNL over 4 alternatives, 100 draws): estimation plus
   classical and robust standard errors (wall time).

``--quick`` runs tiny sizes (the CI smoke test). ``--out DIR`` writes
``bench.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from typing import Dict, List, Optional

import numpy as np

__all__ = ["main", "origin_arrays"]


# ---------------------------------------------------------------------- the model as arrays
def origin_arrays(study, model) -> Dict[str, object]:
    """The origin-shaped study's data, draws and parameter layout as NumPy
    arrays (a balanced panel, rows grouped by individual)."""
    d = study.data
    N, M = d.n_individuals, d.n_rows
    T = M // N
    if T * N != M or not np.array_equal(d.ind_index_np, np.repeat(np.arange(N), T)):
        raise ValueError("origin_arrays: the benchmark needs a balanced panel with rows grouped by individual")
    names = list(model.free_names)
    inds = sorted({n[len("zeta_"):] for n in names if n.startswith("zeta_")})
    K = len(inds) // 3
    levels = [1, 2, 3, 4, 5]
    codes = np.stack([d.codes_array(nm, levels, "individual")[1] for nm in inds], axis=1)  # (N, 12)
    pos = {n: i for i, n in enumerate(names)}
    return {
        "N": N, "T": T, "R": model.draws.n_draws, "names": names, "inds": inds,
        "age": d.ind("age").numpy()[:, 0].copy(), "female": d.ind("female").numpy()[:, 0].copy(),
        "X": np.stack([d.row(c).numpy()[:, 0] for c in ("x1", "x2", "x3")], axis=1),
        "s": np.where(d.codes_array("choice", [0, 1], "row")[1] == 1, 1.0, -1.0),
        "codes": codes,
        "lv_of": np.repeat(np.arange(3), K),
        "draws": model.draws._array.copy(),
        "i_g": [[pos[f"g{l}_age"], pos[f"g{l}_female"]] for l in (1, 2, 3)],
        "i_b3": [pos["b31"], pos["b32"]],
        "i_asc": pos["asc"], "i_bx": [pos["b_x1"], pos["b_x2"], pos["b_x3"]], "i_lam": pos["lambda3"],
        "i_zeta": [pos[f"zeta_{nm}"] for nm in inds],
        "i_tau": [[pos[f"tau_{nm}_{k}"] for k in range(1, 5)] for nm in inds],
    }


def _generic_ll(xp, A, theta, log_ndtr, logsumexp, log1mexp, take):
    """The origin-shaped log-likelihood in a NumPy-like namespace ``xp``
    (torch or jax.numpy), vectorised over individuals, draws and indicators."""
    N, T, R = A["N"], A["T"], A["R"]
    age, fem, X, s, codes, draws = A["_age"], A["_female"], A["_X"], A["_s"], A["_codes"], A["_draws"]
    g = [theta[i[0]] * age[:, None] + theta[i[1]] * fem[:, None] for i in A["i_g"]]
    l1 = g[0] + draws[:, :, 0]
    l2 = g[1] + draws[:, :, 1]
    l3 = g[2] + theta[A["i_b3"][0]] * l1 + theta[A["i_b3"][1]] * l2 + draws[:, :, 2]
    lv = xp.stack([l1, l2, l3], 1)[:, A["_lv_of"], :]  # (N, 12, R)
    v = take(theta, A["_i_zeta"])[None, :, None] * lv
    tau = take(theta, A["_i_tau"])  # (12, 4)
    z = xp.zeros((tau.shape[0], 1), dtype=tau.dtype)
    ext = xp.concatenate([z, tau, z], 1)  # stand-ins at both ends
    j = A["_j"]
    lo = ext[j, codes][:, :, None]
    hi = ext[j, codes + 1][:, :, None]
    a, b = lo - v, hi - v
    lo_inf, hi_inf = A["_lo_inf"], A["_hi_inf"]
    edge = lo_inf | hi_inf
    use_left = ((b <= -a) & ~hi_inf) | lo_inf
    p = xp.where(use_left, b, -a)
    q = xp.where(use_left, a, -b)
    lfp, lfq = log_ndtr(p), log_ndtr(q)
    tail = log1mexp(xp.where(edge, -1.0, lfq - lfp))
    ind = (lfp + xp.where(edge, 0.0, tail)).sum(1)  # (N, R)
    Vx = theta[A["i_asc"]] + X @ take(theta, A["_i_bx"])  # (M,)
    V = Vx.reshape(N, T, 1) + theta[A["i_lam"]] * l3[:, None, :]  # (N, T, R)
    ch = log_ndtr(s.reshape(N, T, 1) * V).sum(1)  # (N, R)
    return (logsumexp(ind + ch, 1) - math.log(R)).sum()


def torch_value_and_grad(A):
    import torch

    t = lambda a, dt=torch.float64: torch.as_tensor(np.asarray(a), dtype=dt)  # noqa: E731
    B = dict(A)
    B.update(_age=t(A["age"]), _female=t(A["female"]), _X=t(A["X"]), _s=t(A["s"]), _codes=t(A["codes"], torch.long),
             _draws=t(A["draws"]), _lv_of=t(A["lv_of"], torch.long), _i_zeta=t(A["i_zeta"], torch.long),
             _i_tau=t(A["i_tau"], torch.long), _i_bx=t(A["i_bx"], torch.long),
             _j=torch.arange(len(A["inds"])).reshape(1, -1),
             _lo_inf=t(A["codes"] == 0, torch.bool)[:, :, None], _hi_inf=t(A["codes"] == 4, torch.bool)[:, :, None])

    def log1mexp(x):
        return torch.where(x > -math.log(2.0), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))

    class _XP:
        stack = staticmethod(torch.stack)
        zeros = staticmethod(torch.zeros)
        concatenate = staticmethod(torch.cat)
        where = staticmethod(torch.where)

    def f(x):
        theta = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        ll = _generic_ll(_XP, B, theta, torch.special.log_ndtr, torch.logsumexp, log1mexp, lambda v, i: v[i])
        ll.backward()
        return float(ll.item()), theta.grad.numpy()

    return f


def jax_value_and_grad(A):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.scipy.special import log_ndtr, logsumexp

    B = dict(A)
    B.update(_age=jnp.asarray(A["age"]), _female=jnp.asarray(A["female"]), _X=jnp.asarray(A["X"]), _s=jnp.asarray(A["s"]),
             _codes=jnp.asarray(A["codes"]), _draws=jnp.asarray(A["draws"]), _lv_of=np.asarray(A["lv_of"]),
             _i_zeta=np.asarray(A["i_zeta"]), _i_tau=np.asarray(A["i_tau"]), _i_bx=np.asarray(A["i_bx"]),
             _j=np.arange(len(A["inds"])).reshape(1, -1),
             _lo_inf=jnp.asarray(A["codes"] == 0)[:, :, None], _hi_inf=jnp.asarray(A["codes"] == 4)[:, :, None])

    def log1mexp(x):
        near = x > -math.log(2.0)
        xa = jnp.where(near, x, -1.0)
        xb = jnp.where(near, -1.0, x)
        return jnp.where(near, jnp.log(-jnp.expm1(xa)), jnp.log1p(-jnp.exp(xb)))

    def ll(theta):
        return _generic_ll(jnp, B, theta, log_ndtr, lambda x, ax: logsumexp(x, axis=ax), log1mexp, lambda v, i: v[i])

    vg = jax.jit(jax.value_and_grad(ll))

    def f(x):
        v, g = vg(jnp.asarray(x))
        g.block_until_ready()
        return float(v), np.asarray(g)

    return f


def rbe_value_and_grad(model):
    def f(x):
        return model.loglik_and_gradient(x)

    return f


def _median_ms(f, x, repeats: int) -> float:
    f(x)
    f(x)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(x)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1e3)


def _check_same(name, ref, got, rtol=1e-9):
    ll0, g0 = ref
    ll1, g1 = got
    if not (abs(ll1 - ll0) <= rtol * abs(ll0) and np.allclose(g1, g0, rtol=rtol, atol=rtol * np.abs(g0).max())):
        raise AssertionError(f"{name}: LL {ll1!r} vs rbe {ll0!r}; max gradient difference {np.abs(g1 - g0).max():.3e}")


def _study_kwargs(quick: bool) -> Dict[str, int]:
    return {"n_individuals": 40, "n_tasks": 4, "n_draws": 10} if quick else {}


def _jax_worker(argv: List[str]) -> int:
    """Subprocess: time jax on the given thread count, print JSON."""
    threads, quick, repeats = int(argv[0]), argv[1] == "1", int(argv[2])
    from .simulate import origin_study

    st = origin_study(**_study_kwargs(quick))
    model = st.model()
    A = origin_arrays(st, model)
    x = np.random.default_rng(0).normal(0, 0.1, len(A["names"])) + model._vector(None)
    f = jax_value_and_grad(A)
    ll, g = f(x)
    ref = model.loglik_and_gradient(x)
    _check_same("jax", ref, (ll, g))
    print(json.dumps({"threads": threads, "ms": _median_ms(f, x, repeats)}))
    return 0


def _run_jax(threads: int, quick: bool, repeats: int) -> Optional[float]:
    try:
        import jax  # noqa: F401
    except ImportError:
        return None
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}"
                        f" intra_op_parallelism_threads={threads}").strip()
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    code = (f"import os, sys; os.sched_setaffinity(0, {cpus!r}); from rbe.iclv.bench import _jax_worker; "
            f"sys.exit(_jax_worker([{str(threads)!r}, {'1' if quick else '0'!r}, {str(repeats)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"the jax worker failed:\n{r.stderr[-2000:]}")
    return float(json.loads(r.stdout.strip().splitlines()[-1])["ms"])


def _versions() -> Dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for m in ("torch", "jax", "scipy"):
        try:
            out[m] = __import__(m).__version__
        except ImportError:
            pass
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    out["cpu"] = cpu
    out["cores"] = str(os.cpu_count())
    try:
        out["load average"] = "%.2f" % os.getloadavg()[0]  # timings on a shared machine depend on it
    except OSError:
        pass
    return out


def _parser():
    p = argparse.ArgumentParser(prog="rbe bench iclv", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default 15, quick 3)")
    p.add_argument("--no-estimation", action="store_true", help="only the LL + gradient timings")
    p.add_argument("--no-jax", action="store_true", help="skip jax.jit (its compile and subprocesses take seconds)")
    p.add_argument("--out", default=None, help="folder for bench.json")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    import rbe

    from .simulate import drug_choice_study, origin_study

    repeats = args.repeats or (3 if args.quick else 15)
    out: Dict[str, object] = {"versions": _versions(), "quick": args.quick}
    st = origin_study(**_study_kwargs(args.quick))
    model = st.model()
    A = origin_arrays(st, model)
    x = np.random.default_rng(0).normal(0, 0.1, len(A["names"])) + model._vector(None)
    fr = rbe_value_and_grad(model)
    ref = fr(x)
    try:
        import torch
    except ImportError:
        torch = None
    ft = torch_value_and_grad(A) if torch is not None else None
    if ft is not None:
        _check_same("torch", ref, ft(x))
    print(f"origin-shaped LL + gradient ({A['N']} x {A['T']} tasks, {A['R']} draws, {len(A['names'])} parameters); "
          f"LL = {ref[0]:.6f} (rbe, torch{' and jax' if _has('jax') and not args.no_jax else ''} agree to 1e-9)")
    print(f"{'threads':>7} {'rbe ms':>9} {'torch ms':>9} {'jax.jit ms':>11} {'torch/rbe':>10} {'jax/rbe':>8}")
    rows = []
    saved = rbe.get_num_threads()
    for th in (1, 2):
        rbe.set_num_threads(th)
        r_ms = _median_ms(fr, x, repeats)
        t_ms = None
        if torch is not None:
            torch.set_num_threads(th)
            t_ms = _median_ms(ft, x, repeats)
        j_ms = None if args.no_jax else _run_jax(th, args.quick, repeats)
        rows.append({"threads": th, "rbe_ms": r_ms, "torch_ms": t_ms, "jax_ms": j_ms})
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        ratio = lambda v: "-" if v is None else f"{v / r_ms:.2f}"  # noqa: E731
        print(f"{th:>7} {r_ms:>9.1f} {fmt(t_ms):>9} {fmt(j_ms):>11} {ratio(t_ms):>10} {ratio(j_ms):>8}", flush=True)
    rbe.set_num_threads(saved)
    out["loglik_gradient"] = rows
    if not args.no_estimation:
        for key, mk in (("origin", lambda: origin_study(**_study_kwargs(args.quick))),
                        ("drug", lambda: drug_choice_study(**({"n_individuals": 60, "n_tasks": 3, "n_draws": 10} if args.quick else {})))):
            s = mk()
            m = s.model()
            t0 = time.perf_counter()
            res = m.estimate(verbose=False)
            wall = time.perf_counter() - t0
            ok = bool(np.all(np.isfinite(res.se)) and np.all(np.isfinite(res.robust_se)))
            out[f"estimation_{key}"] = {"parameters": len(m.free_names), "wall_s": wall, "estimation_s": res.time_estimation,
                                        "hessian_s": res.time_hessian, "iterations": res.iterations, "converged": bool(res.converged),
                                        "finite_se": ok, "threads": rbe.get_num_threads()}
            print(f"{s.name}: {len(m.free_names)} parameters, estimation {res.time_estimation:.2f} s ({res.iterations} iterations), "
                  f"exact Hessian + scores + classical/robust s.e. {res.time_hessian:.2f} s, total {wall:.2f} s, "
                  f"converged {res.converged}, {rbe.get_num_threads()} threads")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in out["versions"].items()))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "bench.json"), "w") as f:
            json.dump(out, f, indent=1)
    return 0


def _has(mod: str) -> bool:
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
