"""Largest error in ulp of rbe's float64 erf, erfc, ndtr, log_ndtr and of
their derivatives (as the autograd backward computes them, incoming grad 1)
against mpmath at 50 digits, by interval of |x|, on every dispatch path
(RBE_SIMD=avx512 / avx2 / scalar, each in a subprocess).

Points: random points in every binade of |x| from 2^-1074 up to where the
function (or its derivative) underflows or saturates, both signs, plus a
dense uniform grid over the central range and the region boundaries of the
kernels. The error of a value y against the exact f(x) is
|y - f(x)| / ulp(f(x) rounded), so a correctly rounded result is within 0.5.

    python benches/special/erf_accuracy.py [--per-binade 40] [--grid 20000] [--paths avx512,avx2,scalar]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import mpmath
import numpy as np

mpmath.mp.dps = 50
SQRT_PI = mpmath.sqrt(mpmath.pi)


def _mills_series(x):
    """Phi(x) = phi(x) / (-x) * S(x) for x <= -1e4: the asymptotic series S,
    whose 12 terms are within 1e-90 there (mpmath's erfc overflows at such x)."""
    t = 1 / (x * x)
    return mpmath.fsum((-1) ** k * mpmath.fac2(2 * k - 1) * t**k for k in range(12))


def _log_ndtr(x):
    if x > 1e4:  # log1p(-Phi(-x)) ~ -Phi(-x), far below the smallest subnormal
        return -mpmath.npdf(x) / x
    if x > 0:
        return mpmath.log1p(-mpmath.ncdf(-x))
    if x < -1e4:
        return -x * x / 2 - mpmath.log(-x) - mpmath.log(2 * mpmath.pi) / 2 + mpmath.log(_mills_series(x))
    return mpmath.log(mpmath.ncdf(x))


def _ndtr_ratio(x):
    if x < -1e4:
        return -x / _mills_series(x)
    return mpmath.npdf(x) / mpmath.ncdf(x)


# name: (value reference, derivative reference, |x| range of the points, sign: both or one side)
FUNCS = {
    "erf": (mpmath.erf, lambda x: 2 / SQRT_PI * mpmath.exp(-x * x), 28.0),
    "erfc": (mpmath.erfc, lambda x: -2 / SQRT_PI * mpmath.exp(-x * x), 28.0),
    "ndtr": (mpmath.ncdf, mpmath.npdf, 39.0),
    "log_ndtr": (_log_ndtr, _ndtr_ratio, 1e300),
}
EDGES = [0.0, 1e-3, 0.5, 2.0, 4.5, 8.0, 27.5, 40.0, 1e5, np.inf]


def points(name, per_binade, grid, seed=0):
    rng = np.random.default_rng(seed)
    top = FUNCS[name][2]
    parts = []
    for e in range(-1074, int(np.ceil(np.log2(top))) + 1):
        lo = 2.0**e
        hi = 2.0 ** (e + 1)
        k = per_binade if e >= -60 else max(2, per_binade // 8)
        parts.append(lo * (1 + rng.random(k)) if e > -1022 else rng.uniform(lo, hi, k))
    pos = np.concatenate(parts)
    pos = pos[pos <= top]
    g = np.linspace(-min(top, 40.0), min(top, 40.0), grid)
    special = np.array([0.5, 0.46875, 1.5, 3.0, 2.125, 4.25, 27.25, 27.5, 37.5, 38.5, 40.0, 1e8, 1.1e8])
    x = np.concatenate([pos, -pos, g, special, -special, np.nextafter(special, 0), -np.nextafter(special, 0)])
    return np.unique(x[np.abs(x) <= top])


def reference(name, x):
    f, df, _ = FUNCS[name]
    val = [f(mpmath.mpf(float(v))) for v in x]
    der = [df(mpmath.mpf(float(v))) for v in x]
    return val, der


def ulps(got, exact):
    out = np.empty(len(got))
    for i, (g, e) in enumerate(zip(got, exact)):
        r = float(e)
        if np.isinf(r) or np.isnan(g):
            out[i] = 0.0 if (g == r) else np.inf
            continue
        out[i] = float(abs(mpmath.mpf(float(g)) - e)) / float(np.spacing(abs(r)))
    return out


def evaluate(xfile, outfile):
    import rbe

    x = np.load(xfile)
    res = {}
    for name in FUNCS:
        f = {"erf": rbe.erf, "erfc": rbe.erfc, "ndtr": rbe.special.ndtr, "log_ndtr": rbe.special.log_ndtr}[name]
        xs = x[name]
        xt = rbe.tensor(xs, dtype=rbe.float64, requires_grad=True)
        y = f(xt)
        y.sum().backward()
        res[name] = y.detach().numpy()
        res[name + "'"] = xt.grad.numpy()
    np.savez(outfile, **res)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-binade", type=int, default=40)
    ap.add_argument("--grid", type=int, default=20000)
    ap.add_argument("--paths", default="avx512,avx2,scalar")
    ap.add_argument("--evaluate", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.evaluate:
        return evaluate(*args.evaluate)
    xs = {n: points(n, args.per_binade, args.grid) for n in FUNCS}
    tmp = tempfile.mkdtemp()
    xfile = os.path.join(tmp, "x.npz")
    np.savez(xfile, **xs)
    outs = {}
    for path in args.paths.split(","):
        of = os.path.join(tmp, f"{path}.npz")
        subprocess.run([sys.executable, __file__, "--evaluate", xfile, of], check=True, env={**os.environ, "RBE_SIMD": path})
        outs[path] = dict(np.load(of))
    paths = list(outs)
    for p in paths[1:]:
        for k in outs[p]:
            same = np.array_equal(outs[p][k], outs[paths[0]][k], equal_nan=True)
            print(f"{k:10s} {p} bit-identical to {paths[0]}: {same}")
    header = "".join(f"[{a:g},{b:g})".rjust(14) for a, b in zip(EDGES, EDGES[1:]))
    print(f"\nmax ulp by interval of |x| (-: no points)\n{'':22s}{header}{'all':>8s}")
    for name in FUNCS:
        x = xs[name]
        val, der = reference(name, x)
        for kind, ref in ((name, val), (name + "'", der)):
            for p in paths:
                err = ulps(outs[p][kind], ref)
                cells = []
                for a, b in zip(EDGES, EDGES[1:]):
                    m = (np.abs(x) >= a) & (np.abs(x) < b)
                    cells.append(f"{err[m].max():14.2f}" if m.any() else f"{'-':>14s}")
                i = int(np.argmax(err))
                print(f"{kind:10s} {p:>10s} {''.join(cells)}{err.max():8.2f}  (n={len(x)}, worst at x={x[i]!r})")


if __name__ == "__main__":
    main()
