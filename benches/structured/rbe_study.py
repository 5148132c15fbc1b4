"""Reproducible study of the RBE structured layer (``rbe.structured.RBELinear``).

Run (from the repository root, with the package installed)::

    python benches/structured/rbe_study.py --out bench-results/structured     # full study
    python benches/structured/rbe_study.py --out /tmp/rbe-smoke --quick          # CI smoke: every part, tiny sizes
    python benches/structured/rbe_study.py --out DIR --parts memory,speed        # a subset of the parts

It writes ``DIR/results.json`` (every measured number, plus machine and
versions), ``DIR/study.md`` (markdown tables and a summary whose sentences
are generated from the numbers) and ``DIR/study.png`` (size/quality chart
and a speed panel; needs matplotlib). ``--quick`` only checks that everything
runs: its numbers mean nothing.

What each part measures (sizes of the full run):

1. ``memory``: an MLP 768-3072-768 (Linear, GELU, Linear) built from
   ``RBELinear(block=(64, 64), atoms=J, residual=K)`` against the same MLP
   from ``rbe.nn.Linear``. Bytes of parameters, gradients and Adam state,
   measured as deltas of ``rbe.memory_allocated()`` (live tensor memory; the
   buffer pool's cached bytes are not part of it) after building the model,
   after one forward/backward (activations and loss dropped, ``.grad``
   kept) and after one ``rbe.optim.Adam`` step; cross-checked against the
   analytic count ``numel * 4 bytes * 4`` (params, grad, m, v). Target of
   the issue: the RBE model at most 1/10 of the dense one.
2. ``speed``: forward+backward of a 768->3072 layer (loss ``(y * g).sum()``
   with a fixed random ``g``, input requiring grad, gradients reset to None
   before each call as ``zero_grad()`` does) for RBE J=4, J=4 K=8, J=8 and
   track="mixed" J=4 against ``rbe.nn.Linear`` and ``torch.nn.Linear``, at
   batch 1, 32 and 256, with 1 and 2 threads. Also forward only, under
   ``no_grad``. After a warm-up, the rbe cases run round-robin (one call of
   each per round), then the torch case (the two runtimes' spinning worker
   threads would otherwise compete for the cores); the median per case is
   reported. Target: RBE faster than the dense layer of the same shape.
3. ``accuracy``: scikit-learn digits (standardised; fixed split 1277 train,
   160 validation/calibration, 360 test), MLP 64-H-H-10 (H=256) whose two
   hidden layers are dense, RBE (sin / tanh / mixed, several J and K, and
   mixed trained by ``rbe.structured.RBEHybrid`` when it exists), low rank, or a
   narrower dense MLP, the last two sized to the RBE budgets. Adam, fixed
   epochs, several seeds; mean test accuracy against bits per weight.
4. ``distill``: a dense teacher 64-256-256-10 trained on the digits; the same
   student families trained by MSE to its logits on a transfer set (training
   digits plus mixup interpolations, labelled once by the teacher);
   relative error ``||S - T|| / ||T||`` of the logits and argmax agreement on
   the 360 held-out test digits, against bits per weight.

Choices (argued in study.md): one learning rate (3e-3) for every family,
not tuned per family; RBEHybrid with flip_every=25, cooldown=100 (the runs
are a few hundred steps long) and the 160 validation digits as its
calibration batch; an accuracy difference counts as a win only beyond the
seeds' standard deviation and one test digit.

Bits per weight (parts 3 and 4) = stored bits of the two replaced hidden
layers' weights / the 64H + H^2 dense weights they replace. RBE: the
``RBELinear.bits()`` of the layers (``n_blocks (128 J + 32 K)`` + a 40-byte
header each); dense, low rank and narrow dense: 32 bits per float. Biases
(float32 in every family) and the dense output layer are not counted there;
the tables' ``model KiB`` column counts everything.

Reproducibility: every training run seeds ``rbe.manual_seed`` and its own
NumPy generator from the run's seed, rbe's kernels give the same bits for
any thread count, and the runs of parts 3 and 4 are independent jobs, so
``--workers`` changes the wall time but not the numbers. Timings (part 2,
and the per-run training seconds) depend on the machine and its load; the
1-minute load average before each part is recorded and shown.

The full run takes about 6 minutes on a quiet 2-core machine (parts 3 and 4
in two worker processes; 10 minutes when something else shares the cores);
``--quick`` about 10 seconds.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

# --------------------------------------------------------------------------
# settings

FULL = dict(
    # part 1
    mem_shape=(768, 3072), mem_block=(64, 64), mem_batch=32, mem_variants=[(4, 0), (4, 8)],
    # part 2
    speed_shape=(768, 3072), speed_block=(64, 64), speed_batches=[1, 32, 256], speed_threads=[1, 2],
    speed_repeats=9, speed_warmup=2,
    # parts 3 and 4
    hidden=256, block=(16, 16), block_coarse=(32, 32), atoms=[1, 2, 4, 8], residuals=[0, 8],
    batch=128, lr=3e-3, acc_epochs=30, acc_seeds=[0, 1, 2],
    dist_epochs=20, dist_seeds=[0, 1], dist_mixup=2, teacher_epochs=30,
    flip_every=25, cooldown=100,
)

QUICK = dict(
    mem_shape=(128, 512), mem_block=(64, 64), mem_batch=4, mem_variants=[(4, 0), (4, 8)],
    speed_shape=(128, 256), speed_block=(64, 64), speed_batches=[1, 8], speed_threads=[1],
    speed_repeats=3, speed_warmup=1,
    hidden=32, block=(8, 8), block_coarse=(16, 16), atoms=[1, 2], residuals=[0, 4],
    batch=128, lr=3e-3, acc_epochs=2, acc_seeds=[0],
    dist_epochs=2, dist_seeds=[0], dist_mixup=1, teacher_epochs=3,
    flip_every=3, cooldown=5,
)

PARTS = ("memory", "speed", "accuracy", "distill")
N_IN, N_OUT = 64, 10  # digits: 8x8 pixels, 10 classes
SPLIT_SEED, N_TEST, N_VAL = 0, 360, 160
TEACHER_SEED, TEACHER_WIDTH, MIXUP_SEED = 1234, 256, 7


def _fmt_bytes(n: float) -> str:
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:.0f} B"


def _machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "logical_cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=10).stdout.strip()
        info["git_dirty"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _versions() -> dict:
    import rbe.structured  # binds rbe as well

    v = {"rbe": rbe.__version__, "numpy": np.__version__}
    for name in ("torch", "sklearn", "matplotlib"):
        try:
            v[name] = __import__(name).__version__
        except ImportError:
            v[name] = None
    try:
        from rbe.structured import RBEHybrid  # noqa: F401

        v["RBEHybrid"] = True
    except ImportError:
        v["RBEHybrid"] = False
    return v


# ==========================================================================
# Part 1: memory


def _mlp_768(rbe, dense: bool, shape, block, J: int, K: int):
    nn = rbe.nn
    d, h = shape
    if dense:
        return nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, d))
    RBELinear = rbe.structured.RBELinear
    return nn.Sequential(RBELinear(d, h, block=block, atoms=J, residual=K), nn.GELU(), RBELinear(h, d, block=block, atoms=J, residual=K))


def part_memory(S: dict) -> dict:
    import rbe.structured  # binds rbe as well

    rbe.set_num_threads(1)
    d, h = S["mem_shape"]
    variants = [("dense Linear", True, 0, 0)] + [(f"RBE J={J} K={K}", False, J, K) for J, K in S["mem_variants"]]
    rows = []
    for name, dense, J, K in variants:
        gc.collect()
        rbe.empty_cache()
        rbe.manual_seed(0)
        x = rbe.randn(S["mem_batch"], d)  # input data exists before the model; not counted
        base = rbe.memory_allocated()
        model = _mlp_768(rbe, dense, S["mem_shape"], S["mem_block"], J, K)
        after_build = rbe.memory_allocated() - base
        rbe.reset_peak_memory_stats()
        y = model(x)
        loss = y.sum()
        loss.backward()
        peak_fb = rbe.max_memory_allocated() - base
        del y, loss
        after_backward = rbe.memory_allocated() - base
        opt = rbe.optim.Adam(model.parameters(), lr=1e-3)
        opt.step()
        after_adam = rbe.memory_allocated() - base
        cached = rbe.memory_stats()["cached_bytes"]
        numel = sum(p.numel() for p in model.parameters())
        buffers = sum(b.numel() * b.element_size() for b in model.buffers() if b is not None)
        stored = 0
        for m in model.modules():
            if isinstance(m, rbe.structured.RBELinear):
                stored += m.bits() / 8 + (m.bias.numel() * 4 if m.bias is not None else 0)
            elif isinstance(m, rbe.nn.Linear):
                stored += 4 * sum(p.numel() for p in m.parameters())
        del opt, model, x
        gc.collect()
        leak = rbe.memory_allocated() - base + S["mem_batch"] * d * 4  # x was allocated before base
        row = dict(
            model=name, J=J, K=K, numel=numel,
            params_bytes=after_build, grads_bytes=after_backward - after_build, adam_bytes=after_adam - after_backward,
            total_bytes=after_adam, analytic_bytes=numel * 4 * 4, buffers_bytes=buffers,
            peak_forward_backward_bytes=peak_fb, cached_bytes_after=cached, stored_bytes=stored,
            leftover_after_free=leak,
        )
        rows.append(row)
        print(f"  {name:14s} params {_fmt_bytes(row['params_bytes']):>11s}  grads {_fmt_bytes(row['grads_bytes']):>11s}  "
              f"adam {_fmt_bytes(row['adam_bytes']):>11s}  total {_fmt_bytes(row['total_bytes']):>11s}  "
              f"analytic {_fmt_bytes(row['analytic_bytes']):>11s}  peak fwd/bwd {_fmt_bytes(peak_fb):>11s}", flush=True)
    dense_total = rows[0]["total_bytes"]
    dense_with_buffers = dense_total + rows[0]["buffers_bytes"]
    for r in rows:
        r["fraction_of_dense"] = r["total_bytes"] / dense_total
        r["fraction_of_dense_with_buffers"] = (r["total_bytes"] + r["buffers_bytes"]) / dense_with_buffers
    rbe.empty_cache()
    verdicts = []
    for r in rows[1:]:
        met = r["total_bytes"] <= dense_total / 10
        verdicts.append(
            f"{r['model']}: params+grads+Adam {_fmt_bytes(r['total_bytes'])} = 1/{dense_total / r['total_bytes']:.0f} of dense "
            f"({_fmt_bytes(dense_total)}); 1/{1 / r['fraction_of_dense_with_buffers']:.0f} counting the layers' buffers too; "
            f"target <= 1/10 {'MET' if met else 'NOT MET'}"
        )
    return dict(settings=dict(shape=S["mem_shape"], block=S["mem_block"], batch=S["mem_batch"], activation="GELU"), rows=rows, verdicts=verdicts)


# ==========================================================================
# Part 2: speed


def _speed_cases(rbe, torch, shape, block):
    d, h = shape
    nn = rbe.nn
    cases = [
        ("rbe Linear (dense)", "rbe", lambda: nn.Linear(d, h)),
        ("torch Linear (dense)", "torch", lambda: torch.nn.Linear(d, h)),
        ("RBE J=4", "rbe", lambda: rbe.structured.RBELinear(d, h, block=block, atoms=4)),
        ("RBE J=4 K=8", "rbe", lambda: rbe.structured.RBELinear(d, h, block=block, atoms=4, residual=8)),
        ("RBE J=8", "rbe", lambda: rbe.structured.RBELinear(d, h, block=block, atoms=8)),
        ("RBE mixed J=4", "rbe", lambda: rbe.structured.RBELinear(d, h, block=block, atoms=4, track="mixed")),
    ]
    return cases


def _time_round_robin(fns: Sequence[Callable[[], None]], repeats: int, warmup: int) -> List[float]:
    """Median seconds of each fn; one call of every fn per round, so that a
    slow phase of a shared machine hits all cases alike."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: List[List[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def _time_by_library(fns: Sequence[Callable[[], None]], libs: Sequence[str], repeats: int, warmup: int) -> List[float]:
    """Round-robin within each library, one library after the other, with a
    pause in between: torch's OpenMP threads spin-wait after a parallel
    region (and rbe's pool briefly too), so interleaving the two runtimes
    would make each steal the other's cores."""
    out = [0.0] * len(fns)
    for lib in dict.fromkeys(libs):
        idx = [i for i, l in enumerate(libs) if l == lib]
        time.sleep(0.5)
        for i, t in zip(idx, _time_round_robin([fns[i] for i in idx], repeats, warmup)):
            out[i] = t
    return out


def part_speed(S: dict) -> dict:
    import rbe.structured  # binds rbe as well

    try:
        import torch
    except ImportError:
        torch = None
    d, h = S["speed_shape"]
    rows = []
    old_threads = (rbe.get_num_threads(), torch.get_num_threads() if torch else None)
    for threads in S["speed_threads"]:
        rbe.set_num_threads(threads)
        if torch:
            torch.set_num_threads(threads)
        for batch in S["speed_batches"]:
            rng = np.random.RandomState(batch)
            xn = rng.randn(batch, d).astype(np.float32)
            gn = rng.randn(batch, h).astype(np.float32)
            fb, fw, names, libs = [], [], [], []
            for name, lib, make in _speed_cases(rbe, torch, S["speed_shape"], S["speed_block"]):
                if lib == "torch" and torch is None:
                    continue
                m = torch if lib == "torch" else rbe
                m.manual_seed(0)
                layer = make()
                x = m.tensor(xn, requires_grad=True)
                g = m.tensor(gn)
                params = list(layer.parameters())

                def fwd_bwd(layer=layer, x=x, g=g, params=params):
                    for p in params:
                        p.grad = None
                    x.grad = None
                    (layer(x) * g).sum().backward()

                def fwd(layer=layer, x=x, m=m):
                    with m.no_grad():
                        layer(x)

                fb.append(fwd_bwd)
                fw.append(fwd)
                names.append(name)
                libs.append(lib)
            t_fb = _time_by_library(fb, libs, S["speed_repeats"], S["speed_warmup"])
            t_fw = _time_by_library(fw, libs, S["speed_repeats"], S["speed_warmup"])
            dense_fb, dense_fw = t_fb[0], t_fw[0]
            torch_fb = t_fb[names.index("torch Linear (dense)")] if "torch Linear (dense)" in names else None
            for name, a, b in zip(names, t_fb, t_fw):
                rows.append(dict(threads=threads, batch=batch, layer=name, fwd_bwd_ms=a * 1e3, fwd_ms=b * 1e3,
                                 dense_over_this_fwd_bwd=dense_fb / a, dense_over_this_fwd=dense_fw / b,
                                 torch_over_this_fwd_bwd=torch_fb / a if torch_fb else None))
            line = "  ".join(f"{n.replace(' (dense)', '')} {a * 1e3:.2f}" for n, a in zip(names, t_fb))
            print(f"  threads {threads} batch {batch:4d} fwd+bwd ms: {line}", flush=True)
    rbe.set_num_threads(old_threads[0])
    if torch:
        torch.set_num_threads(old_threads[1])
    verdicts = []
    for name in ("RBE J=4", "RBE J=4 K=8", "RBE J=8", "RBE mixed J=4"):
        sel = [r for r in rows if r["layer"] == name]
        faster = [r for r in sel if r["dense_over_this_fwd_bwd"] > 1.0]
        detail = ", ".join(f"{r['threads']}t/b{r['batch']}: {r['dense_over_this_fwd_bwd']:.2f}x" for r in sel)
        status = "MET" if len(faster) == len(sel) else ("PARTLY MET" if faster else "NOT MET")
        vs_torch = [r for r in sel if r["torch_over_this_fwd_bwd"] and r["torch_over_this_fwd_bwd"] > 1.0]
        verdicts.append(f"{name} faster than rbe dense Linear (fwd+bwd) at {len(faster)} of {len(sel)} settings: {status} "
                        f"(dense time / RBE time: {detail}); faster than torch Linear at {len(vs_torch)} of {len(sel)}")
    return dict(settings=dict(shape=S["speed_shape"], block=S["speed_block"], batches=S["speed_batches"], threads=S["speed_threads"],
                              repeats=S["speed_repeats"], warmup=S["speed_warmup"]), rows=rows, verdicts=verdicts)


# ==========================================================================
# Parts 3 and 4: models, budgets, training jobs


def _digits() -> dict:
    """Standardised digits and the fixed split (train / validation-calibration / test)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    perm = np.random.RandomState(SPLIT_SEED).permutation(len(X))
    te, va, tr = perm[:N_TEST], perm[N_TEST:N_TEST + N_VAL], perm[N_TEST + N_VAL:]
    mu, sd = X[tr].mean(0), X[tr].std(0)
    sd[sd == 0] = 1.0
    Xs = ((X - mu) / sd).astype(np.float32)
    return dict(Xtr=Xs[tr], ytr=y[tr].astype(np.int64), Xva=Xs[va], yva=y[va].astype(np.int64), Xte=Xs[te], yte=y[te].astype(np.int64))


def _n_dense_weights(H: int) -> int:
    return N_IN * H + H * H


def _rbe_bits(rbe, H: int, block, J: int, K: int) -> int:
    return sum(rbe.structured.RBELinear(i, o, block=block, atoms=J, residual=K).bits() for i, o in ((N_IN, H), (H, H)))


def _budget_configs(S: dict, rbe_configs: List[dict]) -> List[dict]:
    """Low-rank and narrow-dense configs sized to the largest size that fits
    under each distinct RBE budget (never above it)."""
    H = S["hidden"]
    nd = _n_dense_weights(H)
    budgets = sorted({round(c["bpw"], 6) for c in rbe_configs})
    out, seen = [], set()
    for b in budgets:
        r = int(b * nd // (32 * (N_IN + 3 * H)))  # factors r x 64, H x r (first layer) and r x H, H x r (second)
        if r >= 1 and ("lr", r) not in seen:
            seen.add(("lr", r))
            out.append(dict(family="low-rank", rank=r, bpw=32 * r * (N_IN + 3 * H) / nd))
        hmax = int((-N_IN + math.sqrt(N_IN * N_IN + 4 * b * nd / 32)) / 2)
        while hmax > 0 and 32 * _n_dense_weights(hmax) > b * nd:
            hmax -= 1
        if hmax >= 1 and ("nd", hmax) not in seen:
            seen.add(("nd", hmax))
            out.append(dict(family="narrow dense", width=hmax, bpw=32 * _n_dense_weights(hmax) / nd))
    return out


def _configs(S: dict, hybrid_available: bool) -> List[dict]:
    """Every model config of parts 3 and 4 (without seeds)."""
    import rbe.structured  # binds rbe as well

    H = S["hidden"]
    nd = _n_dense_weights(H)
    cfgs = [dict(family="dense", width=H, bpw=32.0)]
    rbe_cfgs = []
    bl, bc = tuple(S["block"]), tuple(S["block_coarse"])
    fam = lambda track, block: f"RBE {track}" + ("" if block == bl else f" {block[0]}x{block[1]}")
    for J in S["atoms"]:
        for K in S["residuals"]:
            for track in ("sin", "tanh", "mixed"):
                if track == "mixed" and J == 1:
                    continue  # J=1 "mixed" is one SIN atom: the same model as sin
                rbe_cfgs.append(dict(family=fam(track, bl), track=track, block=bl, J=J, K=K, optim="adam"))
            if hybrid_available:
                rbe_cfgs.append(dict(family="RBE mixed + RBEHybrid", track="mixed", block=bl, J=J, K=K, optim="hybrid"))
        rbe_cfgs.append(dict(family=fam("sin", bc), track="sin", block=bc, J=J, K=0, optim="adam"))
    for c in rbe_cfgs:
        c["bpw"] = _rbe_bits(rbe, H, c["block"], c["J"], c["K"]) / nd
    return cfgs + rbe_cfgs + _budget_configs(S, rbe_cfgs)


def _cfg_label(c: dict) -> str:
    f = c["family"]
    if f.startswith("RBE"):
        return f"J={c['J']} K={c['K']}"
    if f == "low-rank":
        return f"rank {c['rank']}"
    return f"width {c['width']}"


def _cost(c: dict) -> float:
    """Rough relative cost of a run, to start the slowest jobs first."""
    if not c["family"].startswith("RBE"):
        return 1.0
    tanh = {"sin": 0, "tanh": c["J"], "mixed": c["J"] // 2}[c["track"]]
    if c["optim"] == "hybrid":
        tanh = c["J"]
    return 2.0 + c["J"] + 6.0 * tanh


def _low_rank(nn, i: int, o: int, r: int):
    """``Linear(i, r, bias=False)`` then ``Linear(r, o)``: an ``o x i`` weight of rank ``r``."""
    return nn.Sequential(nn.Linear(i, r, bias=False), nn.Linear(r, o))


def _build(rbe, c: dict, H: int):
    nn = rbe.nn
    f = c["family"]
    if f in ("dense", "narrow dense"):
        w = c["width"]
        layers = [nn.Linear(N_IN, w), nn.Linear(w, w)]
        H = w
    elif f == "low-rank":
        layers = [_low_rank(nn, N_IN, H, c["rank"]), _low_rank(nn, H, H, c["rank"])]
    else:
        layers = [rbe.structured.RBELinear(i, o, block=c["block"], atoms=c["J"], residual=c["K"], track=c["track"]) for i, o in ((N_IN, H), (H, H))]
    return nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(), nn.Linear(H, N_OUT))


def _model_bytes(rbe, model) -> float:
    """Stored bytes of the whole model: RBE layers by ``bits()`` (+ float32
    bias), everything else at 4 bytes per parameter."""
    total = 0.0
    for m in model.modules():
        if isinstance(m, rbe.structured.RBELinear):
            total += m.bits() / 8 + (4 * m.bias.numel() if m.bias is not None else 0)
        elif isinstance(m, rbe.nn.Linear):
            total += 4 * sum(p.numel() for p in m.parameters())
    return total


_DATA: dict = {}


def _worker_init(data: dict, threads: int = 1) -> None:
    import rbe.structured  # binds rbe as well

    rbe.set_num_threads(threads)
    _DATA.clear()
    _DATA.update(data)


def _train(rbe, model, X: np.ndarray, Y: np.ndarray, loss_fn, epochs: int, batch: int, lr: float, seed: int,
           optim: str, calib: Optional[Tuple[np.ndarray, np.ndarray]], S: dict):
    """Adam (or RBEHybrid) over shuffled minibatches; returns (optimizer, last loss)."""
    params = list(model.parameters())
    if optim == "hybrid":
        from rbe.structured import RBEHybrid

        Xc, Yc = rbe.tensor(calib[0]), rbe.tensor(calib[1])
        opt = RBEHybrid(params, lr=lr, flip_every=S["flip_every"], cooldown=S["cooldown"], calibration=lambda: loss_fn(model(Xc), Yc))
    else:
        opt = rbe.optim.Adam(params, lr=lr)
    Xt, Yt = rbe.tensor(X), rbe.tensor(Y)
    rng = np.random.RandomState(seed)
    n = len(X)
    last = float("nan")
    for _ in range(epochs):
        perm = rng.permutation(n)
        for i in range(0, n, batch):
            idx = rbe.tensor(perm[i:i + batch])
            opt.zero_grad()
            loss = loss_fn(model(Xt[idx]), Yt[idx])
            loss.backward()
            opt.step()
            last = loss.item()
    return opt, last


def _predict(rbe, model, X: np.ndarray) -> np.ndarray:
    with rbe.no_grad():
        return model(rbe.tensor(X)).numpy()


def _run_job(job: dict) -> dict:
    """One training run of part 3 (``task="accuracy"``) or part 4 (``"distill"``)."""
    import rbe.structured  # binds rbe as well

    c, seed, S, task = job["cfg"], job["seed"], job["S"], job["task"]
    D = _DATA
    F = rbe.nn.functional
    rbe.manual_seed(seed)
    model = _build(rbe, c, S["hidden"])
    t0 = time.perf_counter()
    if task == "accuracy":
        opt, last = _train(rbe, model, D["Xtr"], D["ytr"], F.cross_entropy, S["acc_epochs"], S["batch"], S["lr"], seed,
                           c.get("optim", "adam"), (D["Xva"], D["yva"]), S)
        secs = time.perf_counter() - t0
        out = dict(test_acc=float((_predict(rbe, model, D["Xte"]).argmax(1) == D["yte"]).mean()),
                   val_acc=float((_predict(rbe, model, D["Xva"]).argmax(1) == D["yva"]).mean()))
    else:
        opt, last = _train(rbe, model, D["Xtf"], D["Ttf"], F.mse_loss, S["dist_epochs"], S["batch"], S["lr"], seed,
                           c.get("optim", "adam"), (D["Xva"], D["Tva"]), S)
        secs = time.perf_counter() - t0
        P, T = _predict(rbe, model, D["Xte"]), D["Tte"]
        out = dict(rel_err=float(np.linalg.norm(P - T) / np.linalg.norm(T)),
                   agreement=float((P.argmax(1) == T.argmax(1)).mean()),
                   test_acc=float((P.argmax(1) == D["yte"]).mean()))
    out.update(final_train_loss=last, train_seconds=secs, model_bytes=_model_bytes(rbe, model),
               n_params=sum(p.numel() for p in model.parameters()))
    rbe_layers = [m for m in model.modules() if isinstance(m, rbe.structured.RBELinear)]
    if rbe_layers and c["track"] != "sin":
        tr = np.concatenate([m.tracks.detach().numpy().ravel() for m in rbe_layers])
        out["tanh_fraction"] = float(tr.mean())
    if c.get("optim") == "hybrid":
        out["flips"] = int(opt.flips)
    return dict(task=task, cfg={k: v for k, v in c.items()}, seed=seed, **out)


def _run_jobs(jobs: List[dict], data: dict, workers: int) -> List[dict]:
    jobs = sorted(jobs, key=lambda j: -_cost(j["cfg"]))
    results = []

    def report(r):
        c = r["cfg"]
        score = f"acc {r['test_acc']:.4f}" if r["task"] == "accuracy" else f"rel err {r['rel_err']:.4f} agree {r['agreement']:.3f}"
        extra = f" flips {r['flips']}" if "flips" in r else ""
        print(f"  [{len(results):3d}/{len(jobs)}] {c['family']:24s} {_cfg_label(c):12s} seed {r['seed']}  bpw {c['bpw']:7.3f}  "
              f"{score}  ({r['train_seconds']:.1f} s){extra}", flush=True)

    if workers <= 1:
        _worker_init(data)
        for j in jobs:
            results.append(_run_job(j))
            report(results[-1])
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers, initializer=_worker_init, initargs=(data,)) as pool:
            for r in pool.imap_unordered(_run_job, jobs):
                results.append(r)
                report(r)
    results.sort(key=lambda r: (r["cfg"]["family"], r["cfg"]["bpw"], r["seed"]))
    return results


def _aggregate(results: List[dict], metrics: Sequence[str]) -> List[dict]:
    """Mean and standard deviation over seeds, one row per config."""
    groups: Dict[str, List[dict]] = {}
    for r in results:
        key = json.dumps(r["cfg"], sort_keys=True)
        groups.setdefault(key, []).append(r)
    rows = []
    for key, rs in groups.items():
        c = rs[0]["cfg"]
        row = dict(family=c["family"], label=_cfg_label(c), bpw=c["bpw"], cfg=c, seeds=[r["seed"] for r in rs],
                   model_bytes=rs[0]["model_bytes"], train_seconds=float(np.mean([r["train_seconds"] for r in rs])))
        for m in list(metrics) + ["flips", "tanh_fraction"]:
            vals = [r[m] for r in rs if m in r]
            if vals:
                row[m] = float(np.mean(vals))
                row[m + "_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        rows.append(row)
    rows.sort(key=lambda r: (_family_order(r["family"]), r["bpw"]))
    return rows


def _family_order(f: str) -> Tuple[float, str]:
    order = ["dense", "RBE sin", "RBE tanh", "RBE mixed", "RBE mixed + RBEHybrid", "low-rank", "narrow dense"]
    if f in order:
        return (order.index(f), f)
    return (1.5 if f.startswith("RBE sin") else 4.5, f)  # e.g. "RBE sin 32x32" next to "RBE sin"


def _compare(rows: List[dict], metric: str, higher_better: bool, noise_floor: float) -> dict:
    """At each RBE budget: the best config of each family with bpw <= budget,
    and whether the best RBE beats the best baseline (low rank, narrow dense)."""
    budgets = sorted({r["bpw"] for r in rows if r["family"].startswith("RBE")})
    families = sorted({r["family"] for r in rows if r["family"] != "dense"}, key=_family_order)
    better = (lambda a, b: a > b) if higher_better else (lambda a, b: a < b)
    table = []
    for b in budgets:
        best = {}
        for f in families:
            cand = [r for r in rows if r["family"] == f and r["bpw"] <= b * (1 + 1e-9)]
            if cand:
                best[f] = max(cand, key=lambda r: r[metric] if higher_better else -r[metric])
        rbe_best = [best[f] for f in best if f.startswith("RBE")]
        base_best = [best[f] for f in best if not f.startswith("RBE")]
        entry = dict(budget=b, best={f: dict(label=r["label"], bpw=r["bpw"], value=r[metric], std=r.get(metric + "_std", 0.0)) for f, r in best.items()})
        if rbe_best:
            rb = max(rbe_best, key=lambda r: r[metric] if higher_better else -r[metric])
            entry["best_rbe"] = dict(family=rb["family"], label=rb["label"], bpw=rb["bpw"], value=rb[metric], std=rb.get(metric + "_std", 0.0))
        if base_best:
            bb = max(base_best, key=lambda r: r[metric] if higher_better else -r[metric])
            entry["best_baseline"] = dict(family=bb["family"], label=bb["label"], bpw=bb["bpw"], value=bb[metric], std=bb.get(metric + "_std", 0.0))
        if rbe_best and base_best:
            a, z = entry["best_rbe"], entry["best_baseline"]
            tol = max(a["std"], z["std"], noise_floor)
            if abs(a["value"] - z["value"]) <= tol:
                entry["outcome"] = "tie"
            else:
                entry["outcome"] = "RBE" if better(a["value"], z["value"]) else "baseline"
            entry["tolerance"] = tol
        table.append(entry)
    return dict(metric=metric, higher_better=higher_better, noise_floor=noise_floor, budgets=table)


def _comparison_verdict(comp: dict, what: str) -> str:
    rows = [e for e in comp["budgets"] if "outcome" in e]
    wins = [e for e in rows if e["outcome"] == "RBE"]
    losses = [e for e in rows if e["outcome"] == "baseline"]
    ties = [e for e in rows if e["outcome"] == "tie"]
    fmt = lambda es: ", ".join(f"{e['budget']:.3g}" for e in es) or "none"
    return (f"{what}: no numeric target in the issue; at equal size (best config with bits/weight <= budget) the best RBE "
            f"beats the best of low-rank / narrow dense at {len(wins)} of {len(rows)} budgets (budgets won: {fmt(wins)}; "
            f"lost: {fmt(losses)}; within noise: {fmt(ties)})")


def part_accuracy(S: dict, workers: int, hybrid: bool) -> dict:
    data = _digits()
    cfgs = _configs(S, hybrid)
    jobs = [dict(task="accuracy", cfg=c, seed=s, S=S) for c in cfgs for s in S["acc_seeds"]]
    print(f"  {len(cfgs)} configs x {len(S['acc_seeds'])} seeds = {len(jobs)} runs on {max(1, workers)} worker(s)", flush=True)
    results = _run_jobs(jobs, data, workers)
    rows = _aggregate(results, ["test_acc", "val_acc"])
    comp = _compare(rows, "test_acc", True, 1.0 / N_TEST)
    dense = next(r for r in rows if r["family"] == "dense")
    return dict(settings=dict(hidden=S["hidden"], block=S["block"], block_coarse=S["block_coarse"], epochs=S["acc_epochs"],
                              batch=S["batch"], lr=S["lr"], seeds=S["acc_seeds"], split=dict(train=len(data["Xtr"]), val=N_VAL, test=N_TEST),
                              flip_every=S["flip_every"], cooldown=S["cooldown"], hybrid=hybrid),
                dense_test_acc=dense["test_acc"], rows=rows, comparison=comp, runs=results,
                verdicts=[_comparison_verdict(comp, "accuracy (digits)")])


def _teacher(S: dict, data: dict) -> dict:
    """A dense 64-256-256-10 trained on the digits; returns the data plus its
    logits (divided by their RMS) on the transfer set, the calibration
    (validation) digits and the test digits, and a summary."""
    import rbe.structured  # binds rbe as well

    rbe.set_num_threads(1)
    F = rbe.nn.functional
    c = dict(family="dense", width=TEACHER_WIDTH, bpw=32.0)
    rbe.manual_seed(TEACHER_SEED)
    model = _build(rbe, c, TEACHER_WIDTH)
    _train(rbe, model, data["Xtr"], data["ytr"], F.cross_entropy, S["teacher_epochs"], S["batch"], S["lr"], TEACHER_SEED, "adam", None, S)
    rng = np.random.RandomState(MIXUP_SEED)
    Xtr = data["Xtr"]
    parts = [Xtr]
    for _ in range(S["dist_mixup"]):
        i, j = rng.randint(0, len(Xtr), len(Xtr)), rng.randint(0, len(Xtr), len(Xtr))
        lam = rng.rand(len(Xtr), 1).astype(np.float32)
        parts.append(lam * Xtr[i] + (1 - lam) * Xtr[j])
    Xtf = np.concatenate(parts).astype(np.float32)
    Ttf = _predict(rbe, model, Xtf)
    scale = float(np.sqrt(np.mean(Ttf ** 2)))
    out = dict(data)
    out.update(Xtf=Xtf, Ttf=(Ttf / scale).astype(np.float32), Tva=(_predict(rbe, model, data["Xva"]) / scale).astype(np.float32),
               Tte=(_predict(rbe, model, data["Xte"]) / scale).astype(np.float32))
    info = dict(test_acc=float((out["Tte"].argmax(1) == data["yte"]).mean()), logit_rms=scale, transfer_size=len(Xtf),
                seed=TEACHER_SEED, epochs=S["teacher_epochs"])
    return out, info


def part_distill(S: dict, workers: int, hybrid: bool) -> dict:
    data, info = _teacher(S, _digits())
    print(f"  teacher: test accuracy {info['test_acc']:.4f}, logit RMS {info['logit_rms']:.2f}, transfer set {info['transfer_size']} inputs", flush=True)
    cfgs = _configs(S, hybrid)
    jobs = [dict(task="distill", cfg=c, seed=s, S=S) for c in cfgs for s in S["dist_seeds"]]
    print(f"  {len(cfgs)} configs x {len(S['dist_seeds'])} seeds = {len(jobs)} runs on {max(1, workers)} worker(s)", flush=True)
    results = _run_jobs(jobs, data, workers)
    rows = _aggregate(results, ["rel_err", "agreement", "test_acc"])
    comp = _compare(rows, "rel_err", False, 0.0)
    dense = next(r for r in rows if r["family"] == "dense")
    return dict(settings=dict(hidden=S["hidden"], block=S["block"], epochs=S["dist_epochs"], batch=S["batch"], lr=S["lr"],
                              seeds=S["dist_seeds"], mixup_copies=S["dist_mixup"]),
                teacher=info, dense_rel_err=dense["rel_err"], rows=rows, comparison=comp, runs=results,
                verdicts=[_comparison_verdict(comp, "distillation (digits teacher)")])


# ==========================================================================
# Report: markdown and chart


def _md_table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _pm(mean: float, std: float, digits: int = 4, scale: float = 1.0) -> str:
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}" if std else f"{mean * scale:.{digits}f}"


def _md_memory(M: dict) -> str:
    s = M["settings"]
    rows = [[r["model"], f"{r['numel']:,}", _fmt_bytes(r["params_bytes"]), _fmt_bytes(r["grads_bytes"]), _fmt_bytes(r["adam_bytes"]),
             f"**{_fmt_bytes(r['total_bytes'])}**", _fmt_bytes(r["analytic_bytes"]), f"1/{1 / r['fraction_of_dense']:.0f}" if r["fraction_of_dense"] < 1 else "1",
             _fmt_bytes(r["buffers_bytes"]), f"1/{1 / r['fraction_of_dense_with_buffers']:.0f}" if r["fraction_of_dense_with_buffers"] < 1 else "1",
             _fmt_bytes(r["peak_forward_backward_bytes"]), _fmt_bytes(r["stored_bytes"])] for r in M["rows"]]
    out = [f"### 1. Memory: MLP {s['shape'][0]}-{s['shape'][1]}-{s['shape'][0]} ({s['activation']}), RBE block {s['block'][0]}x{s['block'][1]}",
           "",
           "Deltas of `rbe.memory_allocated()` (live tensor bytes; the buffer pool's cached bytes are not included) "
           f"after building the model, after one forward/backward at batch {s['batch']} (output and loss dropped, `.grad` kept) "
           "and after one `rbe.optim.Adam` step. *Analytic* = parameters x 4 bytes x 4 (params, grad, m, v). "
           "*Buffers* (`tracks`, float32, one per atom; `residual_index`, int64, one per residual coefficient) are NumPy-owned tensors, which `memory_allocated()` does not see; they are counted from their shapes and listed apart. "
           "*Peak fwd/bwd* = highest live bytes during the forward/backward above the input (parameters, activations, gradients, temporaries). "
           "*Stored* = the exported size (RBE: `bits()` + float32 bias).",
           "",
           _md_table(["model", "parameters", "params", "grads", "Adam m+v", "total", "analytic", "vs dense", "buffers", "vs dense with buffers", "peak fwd/bwd", "stored"], rows)]
    return "\n".join(out)


def _md_speed(P: dict) -> str:
    s = P["settings"]
    out = [f"### 2. Speed: layer {s['shape'][0]} -> {s['shape'][1]}, RBE block {s['block'][0]}x{s['block'][1]}",
           "",
           f"Median of {s['repeats']} repeats after {s['warmup']} warm-up calls, milliseconds; the rbe cases run round-robin "
           "(one call of each per round), the torch case after them. "
           "Forward+backward: loss `(y * g).sum()` with a fixed random `g`, input requires grad, gradients reset before each call. "
           "Forward: under `no_grad`. *dense/this* = rbe dense `Linear` time / this layer's time (above 1: faster than the dense layer).",
           ""]
    for threads in s["threads"]:
        sel = [r for r in P["rows"] if r["threads"] == threads]
        layers = list(dict.fromkeys(r["layer"] for r in sel))
        hdr = ["layer"] + [f"b={b} fwd+bwd" for b in s["batches"]] + [f"b={b} fwd" for b in s["batches"]]
        rows = []
        for name in layers:
            cells = [name]
            for key, ratio in (("fwd_bwd_ms", "dense_over_this_fwd_bwd"), ("fwd_ms", "dense_over_this_fwd")):
                for b in s["batches"]:
                    r = next(x for x in sel if x["layer"] == name and x["batch"] == b)
                    cells.append(f"{r[key]:.2f} ms ({r[ratio]:.2f}x)")
            rows.append(cells)
        out += [f"{threads} thread(s); in parentheses dense/this:", "", _md_table(hdr, rows), ""]
    return "\n".join(out)


def _md_sizes_table(R: dict, metric: str, label: str, digits: int, scale: float, extra: List[Tuple[str, str, int, float]]) -> str:
    hdr = ["family", "config", "bits/weight", "model KiB", label] + [e[0] for e in extra] + ["train s/run", "TANH share / flips"]
    rows = []
    for r in R["rows"]:
        tf = ""
        if "tanh_fraction" in r:
            tf = f"{r['tanh_fraction']:.2f}"
            if "flips" in r:
                tf += f" / {r['flips']:.0f}"
        rows.append([r["family"], r["label"], f"{r['bpw']:.3f}", f"{r['model_bytes'] / 1024:.1f}", _pm(r[metric], r[metric + "_std"], digits, scale)]
                    + [_pm(r[k], r[k + "_std"], d, sc) for _, k, d, sc in extra] + [f"{r['train_seconds']:.1f}", tf])
    return _md_table(hdr, rows)


def _md_budget_table(comp: dict, digits: int, scale: float) -> str:
    fams = []
    for e in comp["budgets"]:
        for f in e["best"]:
            if f not in fams:
                fams.append(f)
    fams.sort(key=_family_order)
    rows = []
    for e in comp["budgets"]:
        cells = [f"<= {e['budget']:.3f}"]
        for f in fams:
            b = e["best"].get(f)
            cells.append(f"{b['value'] * scale:.{digits}f} ({b['label']})" if b else "—")
        cells.append({"RBE": "RBE", "baseline": "baseline", "tie": "within noise"}.get(e.get("outcome"), "—"))
        rows.append(cells)
    return _md_table(["bits/weight"] + fams + ["better"], rows)


def _summary_sentences(comp: dict, unit: str, diff_unit: str, digits: int, scale: float, ref_name: str, ref_value: float) -> List[str]:
    """Comparative sentences generated from the budget comparison (``unit``
    follows values, ``diff_unit`` follows differences)."""
    out = []
    for e in comp["budgets"]:
        if "best_rbe" not in e:
            continue
        a = e["best_rbe"]
        s = (f"At <= {e['budget']:.3f} bits/weight the best RBE is {a['family']} {a['label']} "
             f"({a['value'] * scale:.{digits}f}{unit} at {a['bpw']:.3f} bits/weight)")
        if "best_baseline" in e:
            z = e["best_baseline"]
            s += f"; the best baseline is {z['family']} {z['label']} ({z['value'] * scale:.{digits}f}{unit} at {z['bpw']:.3f} bits/weight)"
            diff = (a["value"] - z["value"]) * scale
            if e["outcome"] == "tie":
                s += f": within noise (difference {diff:+.{digits}f}{diff_unit}, tolerance {e['tolerance'] * scale:.{digits}f}{diff_unit})."
            elif e["outcome"] == "RBE":
                s += f": **RBE wins** by {abs(diff):.{digits}f}{diff_unit}."
            else:
                s += f": **RBE loses** by {abs(diff):.{digits}f}{diff_unit}."
        else:
            s += "; no baseline fits this budget."
        gap = (a["value"] - ref_value) * scale
        s += f" Versus {ref_name} ({ref_value * scale:.{digits}f}{unit}): {gap:+.{digits}f}{diff_unit}."
        out.append("- " + s)
    return out


def _md_accuracy(A: dict) -> str:
    s = A["settings"]
    sp = s["split"]
    hyb = ("`rbe.structured.RBEHybrid` was available: the family *RBE mixed + RBEHybrid* trains track=\"mixed\" layers with it "
           f"(flip_every={s['flip_every']}, cooldown={s['cooldown']}, calibration = cross-entropy on the {sp['val']} validation digits)."
           if s["hybrid"] else "`rbe.structured.RBEHybrid` was not available in this run: the hybrid variant was skipped.")
    out = [f"### 3. Accuracy at equal size: digits, MLP 64-{s['hidden']}-{s['hidden']}-10",
           "",
           f"Split {sp['train']} train / {sp['val']} validation (also the RBEHybrid calibration batch) / {sp['test']} test, features standardised "
           f"on the training set. Both hidden layers (64->{s['hidden']}, {s['hidden']}->{s['hidden']}) are replaced. Adam lr {s['lr']} "
           f"(the same for every family, not tuned per family), batch {s['batch']}, {s['epochs']} epochs, seeds {s['seeds']}; "
           "mean ± standard deviation over seeds. Bits/weight = stored bits of the two hidden layers' weights / their dense weight count. "
           f"RBE block {s['block'][0]}x{s['block'][1]} unless the family name says otherwise; track=\"mixed\" with J=1 is one SIN atom "
           "(the same model as sin) and is not repeated. Low rank: each replaced layer is `Linear(in, r, bias=False)` then "
           "`Linear(r, out)`; narrow dense: the MLP 64-w-w-10. Both are sized to the largest rank / width that fits under each "
           "RBE budget. " + hyb,
           "",
           f"Dense reference (32 bits/weight): test accuracy {A['dense_test_acc'] * 100:.2f}%.",
           "",
           "Best test accuracy (%) per family at each budget (config with bits/weight <= the budget); *better* compares the best RBE "
           f"with the best baseline; differences within the seeds' standard deviation or one test digit ({100 / N_TEST:.2f} points) count as noise:",
           "",
           _md_budget_table(A["comparison"], 2, 100.0),
           "",
           *_summary_sentences(A["comparison"], "%", " points", 2, 100.0, "the dense MLP", A["dense_test_acc"]),
           "",
           "<details><summary>All configurations</summary>",
           "",
           _md_sizes_table(A, "test_acc", "test acc (%)", 2, 100.0, [("val acc (%)", "val_acc", 2, 100.0)]),
           "",
           "</details>"]
    return "\n".join(out)


def _md_distill(Dd: dict) -> str:
    s, t = Dd["settings"], Dd["teacher"]
    out = [f"### 4. Distilling a dense teacher (digits, 64-{TEACHER_WIDTH}-{TEACHER_WIDTH}-10)",
           "",
           "Why this teacher: a random teacher's weights are i.i.d. noise, the incompressible case (no structured layer can "
           "beat the rate-distortion bound there), while the question here is whether a small student can reproduce a function "
           "a real network learned on real inputs. The mixup points probe that function between the training digits, where "
           "plain training inputs say nothing. The relative error is more sensitive than accuracy, which saturates on digits.",
           "",
           f"Teacher: dense MLP trained on the digits ({t['epochs']} epochs, seed {t['seed']}), test accuracy {t['test_acc'] * 100:.2f}%. "
           f"Transfer set: the training digits plus {s['mixup_copies']} mixup copies (`lam x_i + (1 - lam) x_j`, lam ~ U(0, 1)), "
           f"{t['transfer_size']} inputs labelled once by the teacher; logits divided by their RMS ({t['logit_rms']:.2f}). "
           f"Students: MLP 64-{s['hidden']}-{s['hidden']}-10 families as in part 3, MSE to the teacher's logits, Adam lr {s['lr']}, "
           f"batch {s['batch']}, {s['epochs']} epochs, seeds {s['seeds']}. "
           "Measured on the 360 held-out test digits: relative error `||S - T||_F / ||T||_F` of the logits, "
           "argmax agreement with the teacher, and accuracy against the labels.",
           "",
           f"Dense student of the teacher's size (32 bits/weight): relative error {Dd['dense_rel_err']:.4f}.",
           "",
           "Lowest relative error per family at each budget; *better* compares the best RBE with the best baseline "
           "(differences within the seeds' standard deviation count as noise):",
           "",
           _md_budget_table(Dd["comparison"], 4, 1.0),
           "",
           *_summary_sentences(Dd["comparison"], "", "", 4, 1.0, "the dense student", Dd["dense_rel_err"]),
           "",
           "<details><summary>All configurations</summary>",
           "",
           _md_sizes_table(Dd, "rel_err", "relative error", 4, 1.0, [("agreement (%)", "agreement", 2, 100.0), ("test acc (%)", "test_acc", 2, 100.0)]),
           "",
           "</details>"]
    return "\n".join(out)


def render_markdown(R: dict) -> str:
    m, v = R["machine"], R["versions"]
    head = [f"## RBE study{' (--quick: smoke run, numbers mean nothing)' if R['quick'] else ''}",
            "",
            f"`python benches/structured/rbe_study.py --out {R['out']}{' --quick' if R['quick'] else ''}"
            f"{' --parts ' + ','.join(R['parts']) if set(R['parts']) != set(PARTS) else ''}`: "
            f"{m['cpu']} ({m['logical_cpus']} logical CPUs), Python {m['python']}, rbe {v['rbe']}"
            f"{' (commit ' + m['git_commit'] + (', modified tree' if m.get('git_dirty') else '') + ')' if m.get('git_commit') else ''}, "
            f"torch {v.get('torch')}, NumPy {v['numpy']}, scikit-learn {v.get('sklearn')}. "
            f"Wall time {R['wall_seconds'] / 60:.1f} min ({', '.join(f'{k} {t:.0f} s' for k, t in R['part_seconds'].items())}).",
            "",
            "Machine load: " + "; ".join(
                f"{k}: 1-min load average {L.get('loadavg_before', [None])[0] if L.get('loadavg_before') else 'n/a'} before, "
                f"CPU time / wall time {L['cpu_seconds'] / max(R['part_seconds'][k], 1e-9):.2f}"
                for k, L in R.get("load", {}).items() if "cpu_seconds" in L) + ".",
            "",
            "Verdicts (computed from the numbers below):",
            ""]
    for p in R["parts"]:
        for vd in R[p]["verdicts"]:
            head.append(f"- **{p}**: {vd}")
    body = []
    if "memory" in R["parts"]:
        body.append(_md_memory(R["memory"]))
    if "speed" in R["parts"]:
        sp = _md_speed(R["speed"])
        la = R.get("load", {}).get("speed", {}).get("loadavg_before")
        if la and la[0] >= 0.5:
            sp += (f"\n\nThe 1-minute load average was {la[0]:.2f} when this part started: something else was using the CPU, "
                   "so these timings may be inflated; ratios within one run are the figures to read.")
        body.append(sp)
    if "accuracy" in R["parts"]:
        body.append(_md_accuracy(R["accuracy"]))
    if "distill" in R["parts"]:
        body.append(_md_distill(R["distill"]))
    if any(p in R["parts"] for p in ("accuracy", "distill", "speed")):
        body.append("![RBE study](study.png)")
    return "\n".join(head) + "\n\n" + "\n\n".join(body) + "\n"


_STYLE = {
    "dense": ("k", "*"), "RBE sin": ("tab:blue", "o"), "RBE tanh": ("tab:orange", "s"), "RBE mixed": ("tab:green", "D"),
    "RBE mixed + RBEHybrid": ("tab:red", "P"), "low-rank": ("tab:purple", "v"), "narrow dense": ("tab:brown", "^"),
}


def _style(f: str):
    if f in _STYLE:
        return _STYLE[f]
    return ("tab:cyan", "o") if f.startswith("RBE sin") else ("tab:gray", "x")


def plot(R: dict, path: str) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart"
    panels = [p for p in ("accuracy", "distill", "speed") if p in R["parts"]]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.8), squeeze=False)
    for ax, p in zip(axes[0], panels):
        if p in ("accuracy", "distill"):
            P = R[p]
            key, ylab = ("test_acc", "test accuracy") if p == "accuracy" else ("rel_err", "relative error of the logits")
            fams = sorted({r["family"] for r in P["rows"]}, key=_family_order)
            lo = None
            if p == "accuracy":
                dense_acc = next(r[key] for r in P["rows"] if r["family"] == "dense")
                lo = 0.85 if dense_acc > 0.9 else None
            for f in fams:
                rs = sorted((r for r in P["rows"] if r["family"] == f), key=lambda r: r["bpw"])
                col, mk = _style(f)
                if lo is not None:
                    for r in (r for r in rs if r[key] < lo):  # below the axis: marker on the edge and the value
                        ax.plot(r["bpw"], lo + 0.004, "v", color=col, ms=6, mfc="none")
                        ax.annotate(f"{r[key]:.2f}", (r["bpw"], lo + 0.004), textcoords="offset points", xytext=(3, 4), fontsize=6, color=col)
                if f == "dense":
                    ax.axhline(rs[0][key], color="k", ls="--", lw=1, label=f"dense (32 bits/weight): {rs[0][key]:.3g}")
                    ax.plot([r["bpw"] for r in rs], [r[key] for r in rs], mk, color=col, ms=10)
                    continue
                ax.errorbar([r["bpw"] for r in rs], [r[key] for r in rs], yerr=[r[key + "_std"] for r in rs], fmt=mk, color=col,
                            ms=5, capsize=2, alpha=0.85, label=f)
                if not f.startswith("RBE"):
                    ax.plot([r["bpw"] for r in rs], [r[key] for r in rs], "-", color=col, lw=0.8, alpha=0.6)
            ax.set_xscale("log")
            if lo is not None:
                ax.set_ylim(bottom=lo)
            if p == "distill":
                ax.set_yscale("log")
                ax.set_title(f"4. distillation of a dense teacher (mean of {len(P['settings']['seeds'])} seed(s))")
            else:
                ax.set_title(f"3. digits, MLP 64-{P['settings']['hidden']}-{P['settings']['hidden']}-10 (mean of {len(P['settings']['seeds'])} seed(s))")
            ax.set_xlabel("bits per weight of the replaced layers (log)")
            ax.set_ylabel(ylab)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        else:
            P = R["speed"]
            t = min(P["settings"]["threads"])
            sel = [r for r in P["rows"] if r["threads"] == t]
            layers = list(dict.fromkeys(r["layer"] for r in sel))
            batches = P["settings"]["batches"]
            w = 0.8 / len(layers)
            for i, name in enumerate(layers):
                ys = [next(r["fwd_bwd_ms"] for r in sel if r["layer"] == name and r["batch"] == b) for b in batches]
                ax.bar(np.arange(len(batches)) + (i - (len(layers) - 1) / 2) * w, ys, w, label=name)
            ax.set_xticks(np.arange(len(batches)))
            ax.set_xticklabels([f"batch {b}" for b in batches])
            ax.set_yscale("log")
            lo_y, hi_y = ax.get_ylim()
            ax.set_ylim(lo_y, hi_y * 4)  # room for the legend above the bars
            ax.set_ylabel("forward+backward, ms (log)")
            s = P["settings"]["shape"]
            ax.set_title(f"2. speed, {s[0]}->{s[1]}, {t} thread(s)")
            ax.grid(True, axis="y", which="both", alpha=0.3)
            ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


# ==========================================================================
# main


def _loadavg() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker processes)."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    return str(o)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Reproducible study of the RBE structured layer (memory, speed, accuracy, distillation).")
    ap.add_argument("--out", default="bench-results/structured", help="output directory (results.json, study.md, study.png)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, every part, for a CI smoke run (numbers mean nothing)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--workers", type=int, default=None,
                    help="parallel processes for the training runs of parts 3 and 4 (default: min(2, CPUs); --quick: 1). "
                         "Changes the wall time, not the results.")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        ap.error(f"unknown part(s) {bad}; choose from {PARTS}")
    parts = [p for p in PARTS if p in parts]
    S = dict(QUICK if args.quick else FULL)
    workers = args.workers if args.workers is not None else (1 if args.quick else min(2, os.cpu_count() or 1))
    os.makedirs(args.out, exist_ok=True)

    import rbe.structured  # binds rbe as well

    try:
        from rbe.structured import RBEHybrid  # noqa: F401

        hybrid = True
    except ImportError:
        hybrid = False
    R = dict(out=args.out, quick=args.quick, parts=parts, settings=S, machine=_machine(), versions=_versions(), part_seconds={}, load={})
    t_all = time.perf_counter()
    for p in parts:
        print(f"== part {PARTS.index(p) + 1}: {p}", flush=True)
        if p in ("accuracy", "distill") and not hybrid:
            print("  note: rbe.structured.RBEHybrid is not available; the 'RBE mixed + RBEHybrid' variant is skipped", flush=True)
        t0 = time.perf_counter()
        cpu0 = _cpu_seconds()
        R["load"][p] = dict(loadavg_before=_loadavg())
        if p == "memory":
            R[p] = part_memory(S)
        elif p == "speed":
            R[p] = part_speed(S)
        elif p == "accuracy":
            R[p] = part_accuracy(S, workers, hybrid)
        else:
            R[p] = part_distill(S, workers, hybrid)
        R["part_seconds"][p] = time.perf_counter() - t0
        R["load"][p].update(loadavg_after=_loadavg(), cpu_seconds=_cpu_seconds() - cpu0)
        print(f"  ({R['part_seconds'][p]:.1f} s)", flush=True)
        for vd in R[p]["verdicts"]:
            print(f"  VERDICT [{p}] {vd}", flush=True)
    R["wall_seconds"] = time.perf_counter() - t_all
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(R, f, indent=1, default=_json_default)
    with open(os.path.join(args.out, "study.md"), "w") as f:
        f.write(render_markdown(R))
    note = plot(R, os.path.join(args.out, "study.png"))
    if note:
        print(f"  {note}")
    print(f"wrote {args.out}/results.json, study.md, study.png in {R['wall_seconds']:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
