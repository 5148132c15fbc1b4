"""The vectorised erf, erfc, ndtr, log_ndtr (AVX-512/AVX2 with run-time
dispatch in rust/core/src/simd.rs) and their first-order backward, against
mpmath at 40 digits over the whole range: random points in every binade of
|x| from the smallest subnormal up to where the function or its derivative
underflows or saturates (log_ndtr to |x| = 1e300), both signs, plus a dense
grid; float32 is the float64 value rounded once; results do not depend on
the thread count or on the dispatch path (RBE_SIMD=avx2 / scalar in a
subprocess gives the same bits).

The bound asserted is 2 ulp (of the correctly rounded value) for the values
and for the derivatives as the backward computes them (the measured maximum
is below 1 ulp; docs/iclv.md has the table).
"""
import os
import subprocess
import sys

import mpmath
import numpy as np
import pytest

import rbe

mpmath.mp.dps = 40
MAX_ULP = 2.0
SQRT_PI = mpmath.sqrt(mpmath.pi)


def _points(top, seed, per_binade=3, grid=1500):
    """Random points in the binades of |x| up to `top` (every binade above
    2^-30, every 16th below), both signs, a uniform grid, and the kernels'
    region boundaries with their neighbours."""
    rng = np.random.default_rng(seed)
    xs = []
    for e in range(-1074, int(np.ceil(np.log2(top))) + 1):
        if (e < -30 or e > 30) and e % 16:
            continue
        lo = 2.0**e
        xs.append(lo * (1 + rng.random(per_binade)) if e > -1022 else rng.uniform(lo, 2 * lo, per_binade))
    edges = np.array([15 / 32, 0.5, 1.5, 3.0, 2.125, 4.25, 26.5, 27.3, 37.5, 38.6, 40.0])
    xs += [edges, np.nextafter(edges, 0), np.nextafter(edges, np.inf)]
    pos = np.concatenate(xs)
    pos = pos[pos <= top]
    g = np.linspace(-min(top, 40.0), min(top, 40.0), grid)
    return np.unique(np.concatenate([pos, -pos, g, [0.0]]))


def _mills_series(x):
    # Phi(x) = phi(x) / (-x) * S(x) for x <= -1e4 (12 terms: within 1e-90; mpmath's erfc overflows there)
    t = 1 / (x * x)
    return mpmath.fsum((-1) ** k * mpmath.fac2(2 * k - 1) * t**k for k in range(12))


def _mp_log_ndtr(x):
    if x > 1e4:
        return -mpmath.npdf(x) / x
    if x > 0:
        return mpmath.log1p(-mpmath.ncdf(-x))
    if x < -1e4:
        return -x * x / 2 - mpmath.log(-x) - mpmath.log(2 * mpmath.pi) / 2 + mpmath.log(_mills_series(x))
    return mpmath.log(mpmath.ncdf(x))


def _mp_ratio(x):
    # phi(x) / Phi(x) = d/dx log Phi(x)
    if x > 1e4:
        return mpmath.npdf(x)
    if x < -1e4:
        return -x / _mills_series(x)
    return mpmath.npdf(x) / mpmath.ncdf(x)


CASES = {
    # name: (function, value, derivative, largest |x|)
    "erf": (rbe.erf, mpmath.erf, lambda x: 2 / SQRT_PI * mpmath.exp(-x * x), 28.0),
    "erfc": (rbe.erfc, mpmath.erfc, lambda x: -2 / SQRT_PI * mpmath.exp(-x * x), 28.0),
    "ndtr": (rbe.special.ndtr, mpmath.ncdf, mpmath.npdf, 40.0),
    "log_ndtr": (rbe.special.log_ndtr, _mp_log_ndtr, _mp_ratio, 1e300),
}


def _ulps(got, exact):
    """|got - exact| in ulps of the correctly rounded exact value (of the
    smallest subnormal for subnormal and zero values): at most 0.5 when
    correctly rounded."""
    out = np.empty(len(got))
    for i, (g, e) in enumerate(zip(got, exact)):
        r = float(e)
        if np.isinf(r):
            out[i] = 0.0 if g == r else np.inf
        else:
            out[i] = float(abs(mpmath.mpf(float(g)) - e)) / float(np.spacing(abs(r)))
    return out


_REF = {}


def _reference(name):
    """(x, exact values, exact derivatives) of one function, computed once."""
    if name not in _REF:
        _, val, der, top = CASES[name]
        x = _points(top, seed=len(name))
        _REF[name] = (x, [val(mpmath.mpf(float(v))) for v in x], [der(mpmath.mpf(float(v))) for v in x])
    return _REF[name]


def _values_and_grads(name, x, g=None):
    f = CASES[name][0]
    xt = rbe.tensor(x, dtype=rbe.float64, requires_grad=True)
    y = f(xt)
    if g is None:
        y.sum().backward()
    else:
        (y * rbe.tensor(g, dtype=rbe.float64)).sum().backward()
    return y.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("name", sorted(CASES))
def test_float64_values_against_mpmath(name):
    x, val, _ = _reference(name)
    got = CASES[name][0](rbe.tensor(x, dtype=rbe.float64)).numpy()
    err = _ulps(got, val)
    assert err.max() <= MAX_ULP, f"{name}: {err.max()} ulp at x = {x[err.argmax()]!r}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_float64_derivative_against_mpmath(name):
    """The backward with an incoming gradient of 1 is the derivative itself;
    with other gradients it is g f'(x), within the same bound."""
    x, _, der = _reference(name)
    y, grad = _values_and_grads(name, x)
    err = _ulps(grad, der)
    assert err.max() <= MAX_ULP, f"{name}': {err.max()} ulp at x = {x[err.argmax()]!r}"
    # the values taken together with the gradient are the plain forward's
    np.testing.assert_array_equal(y, CASES[name][0](rbe.tensor(x, dtype=rbe.float64)).numpy())
    g = np.random.default_rng(1).uniform(0.5, 2.0, x.shape)
    _, grad_g = _values_and_grads(name, x, g)
    err = _ulps(grad_g, [mpmath.mpf(float(gv)) * d for gv, d in zip(g, der)])
    assert err.max() <= MAX_ULP, f"{name}' times g: {err.max()} ulp at x = {x[err.argmax()]!r}"


_PATHS_SCRIPT = """
import sys
import numpy as np
import rbe
x = np.load(sys.argv[1])
fs = [rbe.erf, rbe.erfc, rbe.special.ndtr, rbe.special.log_ndtr]
out = []
for f in fs:
    xt = rbe.tensor(x, dtype=rbe.float64, requires_grad=True)
    y = f(xt)
    y.sum().backward()
    out += [y.detach().numpy(), xt.grad.numpy(), f(rbe.tensor(x, dtype=rbe.float64)).numpy(), f(rbe.tensor(x.astype(np.float32))).numpy()]
np.save(sys.argv[2], np.stack([o.astype(np.float64) for o in out]))
"""


@pytest.mark.parametrize("path", ["avx2", "scalar"])
def test_every_dispatch_path_gives_the_same_bits(path, tmp_path):
    """RBE_SIMD caps the dispatch level (see rust/core/src/simd.rs): the AVX2
    and the baseline builds give the bits of the default (AVX-512 here) build."""
    x = np.concatenate([_reference(n)[0] for n in CASES] + [np.array([np.inf, -np.inf, np.nan, 5e-324, -5e-324])])
    np.save(tmp_path / "x.npy", x)
    runs = {}
    for p in ("avx512", path):
        subprocess.run([sys.executable, "-c", _PATHS_SCRIPT, str(tmp_path / "x.npy"), str(tmp_path / f"{p}.npy")],
                       check=True, env={**os.environ, "RBE_SIMD": p})
        runs[p] = np.load(tmp_path / f"{p}.npy")
    np.testing.assert_array_equal(runs["avx512"].view(np.uint64), runs[path].view(np.uint64))
    # and the subprocesses agree with this process (which runs the default path)
    here = rbe.special.log_ndtr(rbe.tensor(x, dtype=rbe.float64)).numpy()
    np.testing.assert_array_equal(here, runs[path][14])


def test_log_ndtr_chunks_near_the_origin_take_the_general_bits():
    """log_ndtr's kernels work in chunks of 8 and take a cheaper variant when
    every argument of a chunk lies in the first region of the erfcx fit
    (|x| < 2.125): the values and the gradient must be those of the same
    arguments in chunks that also hold a far one, and within 2 ulp of mpmath."""
    x = np.linspace(-2.124, 2.124, 803)  # 100 full chunks and a tail of 3
    mixed = x.copy()
    mixed[5::8] = -7.5  # one far argument in every chunk
    keep = np.ones(x.size, bool)
    keep[5::8] = False
    vals, grads = [], []
    for arr in (x, mixed):
        t = rbe.tensor(arr, dtype=rbe.float64, requires_grad=True)
        y = rbe.special.log_ndtr(t)
        y.sum().backward()
        vals.append(y.detach().numpy()[keep])
        grads.append(t.grad.numpy()[keep])
    np.testing.assert_array_equal(vals[0].view(np.uint64), vals[1].view(np.uint64))
    np.testing.assert_array_equal(grads[0].view(np.uint64), grads[1].view(np.uint64))
    exact = [_mp_log_ndtr(mpmath.mpf(v)) for v in x[keep][::7]]
    assert _ulps(vals[0][::7], exact).max() <= MAX_ULP


@pytest.mark.parametrize("name", sorted(CASES))
def test_special_values(name):
    f = CASES[name][0]
    x = np.array([np.inf, -np.inf, np.nan, 1e300, -1e300, 0.0, -0.0, 5e-324, -5e-324])
    got = f(rbe.tensor(x, dtype=rbe.float64)).numpy()
    ln_half = np.log(0.5)
    want = {
        "erf": [1.0, -1.0, np.nan, 1.0, -1.0, 0.0, -0.0, 5e-324, -5e-324],
        "erfc": [0.0, 2.0, np.nan, 0.0, 2.0, 1.0, 1.0, 1.0, 1.0],
        "ndtr": [1.0, 0.0, np.nan, 1.0, 0.0, 0.5, 0.5, 0.5, 0.5],
        "log_ndtr": [0.0, -np.inf, np.nan, 0.0, -np.inf, ln_half, ln_half, ln_half, ln_half],
    }[name]
    np.testing.assert_array_equal(got, want)
    # erf is odd, keeping the sign of zero and of subnormal arguments
    if name == "erf":
        np.testing.assert_array_equal(np.signbit(got[5:]), [False, True, False, True])
    # derivatives at the special points: finite where the argument is, NaN at NaN
    xt = rbe.tensor(x, dtype=rbe.float64, requires_grad=True)
    f(xt).sum().backward()
    d = xt.grad.numpy()
    assert np.isnan(d[2])
    assert np.all(np.isfinite(d[[3, 5, 6, 7, 8]]))
    if name != "log_ndtr":
        np.testing.assert_array_equal(d[[0, 1, 3, 4]], 0.0)
    else:
        np.testing.assert_array_equal(d[[0, 1, 3]], [0.0, np.inf, 0.0])
        assert d[4] == 1e300  # phi(x) / Phi(x) ~ -x


def test_subnormal_results_in_the_tails():
    """erfc and ndtr stay relatively accurate down to the subnormal range and
    round to zero beyond; log_ndtr's right tail likewise (-Phi(-x))."""
    x = np.array([26.6, 27.2, 27.3, 37.6, 38.3, 38.7])
    exact = [mpmath.erfc(mpmath.mpf(v)) for v in x[:3]] + [mpmath.ncdf(-mpmath.mpf(v)) for v in x[3:]]
    got = np.concatenate([rbe.erfc(rbe.tensor(x[:3], dtype=rbe.float64)).numpy(),
                          rbe.special.ndtr(rbe.tensor(-x[3:], dtype=rbe.float64)).numpy()])
    assert np.all(got[[0, 1, 3, 4]] > 0) and np.all(got[[0, 1, 3, 4]] < np.finfo(np.float64).tiny)
    assert _ulps(got, exact).max() <= MAX_ULP
    ln = rbe.special.log_ndtr(rbe.tensor(x[3:], dtype=rbe.float64)).numpy()
    assert _ulps(ln, [-e for e in exact[3:]]).max() <= MAX_ULP


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_is_the_rounded_float64_value(name):
    f = CASES[name][0]
    top = min(CASES[name][3], 45.0)
    x32 = _points(top, seed=3, grid=4000).astype(np.float32)
    got = f(rbe.tensor(x32)).numpy()
    assert got.dtype == np.float32
    want = f(rbe.tensor(x32.astype(np.float64), dtype=rbe.float64)).numpy().astype(np.float32)
    np.testing.assert_array_equal(got, want)
    xt = rbe.tensor(x32, requires_grad=True)
    f(xt).sum().backward()
    assert xt.grad.dtype == rbe.float32
    assert np.all(np.isfinite(xt.grad.numpy()))


def test_a_transposed_view_takes_the_same_values_and_gradients():
    x = np.random.default_rng(5).normal(0, 4, (40, 300))
    xt = rbe.tensor(x, dtype=rbe.float64, requires_grad=True)
    y = rbe.special.log_ndtr(xt.t())  # a transposed view
    np.testing.assert_array_equal(y.detach().numpy(), rbe.special.log_ndtr(rbe.tensor(x.T.copy(), dtype=rbe.float64)).numpy())
    y.sum().backward()
    want = [_mp_ratio(mpmath.mpf(v)) for v in x.ravel()[:500]]
    assert _ulps(xt.grad.numpy().ravel()[:500], want).max() <= MAX_ULP


def test_results_do_not_depend_on_the_thread_count():
    x = np.random.default_rng(2).normal(0, 5, (326, 10, 18))  # several parallel chunks
    saved = rbe.get_num_threads()
    out = []
    try:
        for th in (1, 2):
            rbe.set_num_threads(th)
            xt = rbe.tensor(x, dtype=rbe.float64, requires_grad=True)
            vals = [f(xt) for f, *_ in CASES.values()]
            sum(v.sum() for v in vals).backward()
            out.append([v.detach().numpy() for v in vals] + [xt.grad.numpy()])
    finally:
        rbe.set_num_threads(saved)
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def test_second_derivative_of_log_ndtr_still_exact_under_create_graph():
    x = rbe.tensor([-30.0, -3.0, 0.0, 2.0, 9.0], dtype=rbe.float64, requires_grad=True)
    (g,) = rbe.autograd.grad(rbe.special.log_ndtr(x).sum(), x, create_graph=True)
    (h,) = rbe.autograd.grad(g.sum(), x)
    want = [float(mpmath.diff(_mp_log_ndtr, mpmath.mpf(v), 2)) for v in x.detach().numpy()]
    np.testing.assert_allclose(h.numpy(), want, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradgradcheck(name):
    """Second derivatives (autograd of the backward) against finite differences."""
    f = CASES[name][0]
    x = rbe.tensor([-6.0, -2.5, -0.3, 0.0, 0.4, 1.7, 4.0], dtype=rbe.float64, requires_grad=True)
    assert rbe.autograd.gradcheck(f, (x,))
    assert rbe.autograd.gradgradcheck(f, (x,))


# float64 log, log1p, expm1 (vectorised in the core for the ICLV likelihood's log1mexp)
LOG_CASES = {
    "log": (rbe.log, mpmath.log, lambda rng: np.concatenate([np.exp(rng.uniform(-700, 700, 3000)), rng.uniform(0.5, 2.0, 2000)])),
    "log1p": (rbe.log1p, mpmath.log1p, lambda rng: np.concatenate([-np.exp(rng.uniform(-700, -1e-9, 2000)), np.exp(rng.uniform(-700, 700, 2000)),
                                                                   rng.uniform(-0.5, 1.0, 1000)])),
    "expm1": (rbe.expm1, mpmath.expm1, lambda rng: np.concatenate([rng.uniform(-45, 705, 2000), rng.uniform(-1, 1, 2000),
                                                                   np.exp(rng.uniform(-700, 0, 500)), -np.exp(rng.uniform(-700, 0, 500))])),
}


@pytest.mark.parametrize("name", sorted(LOG_CASES))
def test_float64_log_log1p_expm1_against_mpmath(name):
    f, ref, pts = LOG_CASES[name]
    x = pts(np.random.default_rng(11))
    got = f(rbe.tensor(x, dtype=rbe.float64)).numpy()
    want = [ref(mpmath.mpf(float(v))) for v in x]
    err = _ulps(got, want)
    assert err.max() <= 2.0, f"{name}: {err.max()} ulp at x = {x[err.argmax()]!r}"
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, 5e-324, -5e-324, 1.0])
    with np.errstate(all="ignore"):
        want_sp = {"log": np.log, "log1p": np.log1p, "expm1": np.expm1}[name](special)
    got_sp = f(rbe.tensor(special, dtype=rbe.float64)).numpy()
    np.testing.assert_array_equal(got_sp, want_sp)
    num = ~np.isnan(want_sp)  # (the sign of a NaN is not specified)
    np.testing.assert_array_equal(np.signbit(got_sp[num]), np.signbit(want_sp[num]))
