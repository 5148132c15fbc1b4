"""``rbe bench pinn``: the cost of one PINN training step.

One step is: the Laplacian of a float64 ChebyKAN ``[d, 16, 16, 1]`` (degree
5, the first layer mapping the box affinely, ``tanh`` before the others) at
``N`` points, the loss ``mean(lap^2)``, and its gradient with respect to
every parameter. Implementations:

- ``rbe taylor``: ``rbe.pinn.laplacian`` (one Taylor-mode sweep) + ``rbe.autograd.grad``;
- ``rbe nested``: nested ``rbe.autograd.grad(create_graph=True)`` (one per axis);
- ``torch nested``: the same model in torch, nested ``torch.autograd.grad``;
- ``jax hessian`` / ``jax jvp-grad``: ``jax.jit`` of ``vmap`` of the trace of
  ``jax.hessian``, or of ``jvp`` of ``grad`` along each axis, then ``jax.grad``.

Each thread count runs in a fresh interpreter pinned to that many CPUs
(``os.sched_setaffinity``; rbe and torch also get that thread count, jax
runs single-threaded Eigen at 1). There the implementations take turns,
``--repeats`` rounds after two warm-up rounds, and each gets the median of
its times; so a change of the (shared) machine's load hits them alike. The
ratios are against ``rbe taylor`` in the same rounds, and the run checks
that every implementation computes the same loss.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

import numpy as np

WIDTH, DEGREE = 16, 5


def _params_np(d: int, seed: int) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    w = [d, WIDTH, WIDTH, 1]
    return [rng.normal(0, (2.0 / (w[k] * (DEGREE + 1) + w[k + 1])) ** 0.5, (w[k], w[k + 1], DEGREE + 1)) for k in range(3)]


def _points(d: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 1).random((n, d))


# ------------------------------------------------------------------ rbe
def rbe_step(d: int, n: int, method: str, seed: int = 0):
    import rbe
    from rbe import pinn

    net = pinn.ChebyKANNet([d, WIDTH, WIDTH, 1], degree=DEGREE, box=([0.0] * d, [1.0] * d), dtype=rbe.float64)
    with rbe.no_grad():
        for layer, c in zip([m for m in net if isinstance(m, pinn.ChebyKAN)], _params_np(d, seed)):
            layer.coeffs.copy_(rbe.from_numpy(c))
    x = rbe.from_numpy(_points(d, n, seed))
    params = list(net.parameters())

    def step():
        lap = pinn.laplacian(net, x, method=method)
        loss = (lap * lap).mean()
        gs = rbe.autograd.grad(loss, params)
        return float(loss), gs

    return step


# ------------------------------------------------------------------ torch
def torch_step(d: int, n: int, seed: int = 0):
    import torch

    cs = [torch.tensor(c, dtype=torch.float64, requires_grad=True) for c in _params_np(d, seed)]
    x = torch.tensor(_points(d, n, seed), dtype=torch.float64, requires_grad=True)

    def cheb(z):
        t = [torch.ones_like(z), z]
        for _ in range(2, DEGREE + 1):
            t.append(2 * z * t[-1] - t[-2])
        return torch.stack(t, -1)  # (N, I, K+1)

    def model(x):
        h = 2.0 * x - 1.0  # the box [0, 1]^d onto [-1, 1]
        for k, c in enumerate(cs):
            z = h if k == 0 else torch.tanh(h)
            h = torch.einsum("nik,iok->no", cheb(z), c)
        return h

    def step():
        u = model(x)
        (g,) = torch.autograd.grad(u.sum(), x, create_graph=True)
        lap = 0
        for a in range(d):
            (h,) = torch.autograd.grad(g[:, a].sum(), x, create_graph=True)
            lap = lap + h[:, a]
        loss = (lap * lap).mean()
        gs = torch.autograd.grad(loss, cs)
        return float(loss.detach()), gs

    return step


# ------------------------------------------------------------------ jax
def jax_steps(d: int, n: int, seed: int = 0):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    cs = [jnp.asarray(c) for c in _params_np(d, seed)]
    x = jnp.asarray(_points(d, n, seed))

    def cheb(z):
        t = [jnp.ones_like(z), z]
        for _ in range(2, DEGREE + 1):
            t.append(2 * z * t[-1] - t[-2])
        return jnp.stack(t, -1)

    def u(cs, xp):  # one point (d,) -> scalar
        h = 2.0 * xp - 1.0
        for k, c in enumerate(cs):
            z = h if k == 0 else jnp.tanh(h)
            h = jnp.einsum("ik,iok->o", cheb(z), c)
        return h[0]

    def lap_hessian(cs, xp):
        return jnp.trace(jax.hessian(u, argnums=1)(cs, xp))

    def lap_jvp(cs, xp):
        g = lambda y: jax.grad(u, argnums=1)(cs, y)  # noqa: E731
        eye = jnp.eye(d, dtype=xp.dtype)
        return sum(jax.jvp(g, (xp,), (eye[a],))[1][a] for a in range(d))

    out = {}
    for name, lap in (("jax hessian", lap_hessian), ("jax jvp-grad", lap_jvp)):
        def loss(cs, lap=lap):
            v = jax.vmap(lambda xp: lap(cs, xp))(x)
            return jnp.mean(v * v)

        f = jax.jit(jax.value_and_grad(loss))

        def step(f=f):
            val, gs = f(cs)
            jax.block_until_ready(gs)
            return float(val), gs

        out[name] = step
    return out


def _interleaved(steps: Dict[str, object], repeats: int, warmup: int = 2) -> Dict[str, float]:
    """Median time of each step, the steps taking turns (so a change of the
    machine's load during the run hits them alike)."""
    for _ in range(warmup):
        for f in steps.values():
            f()
    ts: Dict[str, list] = {k: [] for k in steps}
    for _ in range(repeats):
        for k, f in steps.items():
            t = time.perf_counter()
            f()
            ts[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in ts.items()}


def measure(dims, n: int, threads: int, repeats: int, with_torch: bool, with_jax: bool) -> List[dict]:
    """The rows of one thread count, in this process (call it in a fresh one:
    jax and torch size their pools at first use)."""
    import rbe

    rbe.set_num_threads(threads)
    if with_torch:
        import torch

        torch.set_num_threads(threads)
    rows = []
    for d in dims:
        steps: Dict[str, object] = {"rbe taylor": rbe_step(d, n, "taylor"), "rbe nested": rbe_step(d, n, "autograd")}
        if with_torch:
            steps["torch nested"] = torch_step(d, n)
        if with_jax:
            steps.update(jax_steps(d, n))
        row: Dict[str, object] = {"d": d, "n": n, "threads": threads}
        row.update(_interleaved(steps, repeats))
        losses = {k: f()[0] for k, f in steps.items()}
        ref = losses["rbe taylor"]
        row["max rel. loss difference"] = max(abs(v - ref) / abs(ref) for v in losses.values())
        rows.append(row)
    return rows


def _worker(dims, n: int, threads: int, repeats: int, with_torch: bool, with_jax: bool) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > threads:
        os.sched_setaffinity(0, cpus[:threads])
    print("JSON" + json.dumps(measure(dims, n, threads, repeats, with_torch, with_jax)), flush=True)


def run(dims=(2, 3), n: int = 1500, threads=(1, 2), repeats: int = 7, with_torch: bool = True, with_jax: bool = True,
        subprocess_per_thread_count: bool = True) -> List[dict]:
    """Every row: each thread count in a fresh interpreter pinned to that many CPUs."""
    rows: List[dict] = []
    for t in threads:
        if not subprocess_per_thread_count:
            rows += measure(dims, n, t, repeats, with_torch, with_jax)
            continue
        env = dict(os.environ)
        if t == 1:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
        code = ("from rbe.pinn.bench import _worker; "
                f"_worker({list(dims)!r}, {n}, {t}, {repeats}, {with_torch}, {with_jax})")
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1800)
        got = [ln for ln in p.stdout.splitlines() if ln.startswith("JSON")]
        if p.returncode != 0 or not got:
            raise RuntimeError(f"rbe bench pinn: the run at {t} thread(s) failed: {p.stderr[-3000:]}")
        rows += json.loads(got[-1][4:])
    return rows


def _have(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


IMPLS = ("rbe taylor", "rbe nested", "torch nested", "jax hessian", "jax jvp-grad")


def table(rows: List[dict]) -> str:
    impls = [k for k in IMPLS if any(k in r for r in rows)]
    head = "| d | N | threads | " + " | ".join(f"{k} (ms)" for k in impls) + " | " + " | ".join(
        f"{k} / rbe taylor" for k in impls[1:]) + " |"
    lines = [head, "|" + "---|" * (3 + 2 * len(impls) - 1)]
    for r in rows:
        ms = [f"{1e3 * r[k]:.2f}" if k in r else "-" for k in impls]
        ratio = [f"{r[k] / r['rbe taylor']:.2f}" if k in r else "-" for k in impls[1:]]
        lines.append(f"| {r['d']} | {r['n']} | {r['threads']} | " + " | ".join(ms) + " | " + " | ".join(ratio) + " |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="rbe bench pinn", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1500, help="collocation points")
    p.add_argument("--dims", default="2,3")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-jax", action="store_true")
    p.add_argument("--quick", action="store_true", help="N=200, 3 repeats, 1 thread, no jax (a smoke run)")
    p.add_argument("--out", default=None, help="JSON file of the rows")
    a = p.parse_args(argv)
    dims = [int(v) for v in a.dims.split(",")]
    threads = [int(v) for v in a.threads.split(",")]
    n, repeats, with_jax = a.n, a.repeats, not a.no_jax and _have("jax")
    if a.quick:
        n, repeats, threads, with_jax = 200, 3, [1], False
    with_torch = not a.no_torch and _have("torch")
    rows = run(dims, n, threads, repeats, with_torch, with_jax)
    print("One PINN step (Laplacian + parameter gradient), float64 ChebyKAN [d, 16, 16, 1] degree 5, median of "
          f"{repeats} after warm-up:")
    print(table(rows))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)
    bad = [r for r in rows if not r["max rel. loss difference"] < 1e-8]
    if bad:
        print(f"implementations disagree on the loss: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
