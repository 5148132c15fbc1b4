"""Hypothesis property tests: broadcasting, reductions and shape ops.

Oracles: NumPy for values and result shapes, torch for result dtypes (rbe
follows torch's promotion rules) and for gradients.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import rbe

# RBE_HYPOTHESIS_EXAMPLES scales the search up for a long bug hunt; the default keeps the file ~10 s.
_N = int(os.environ.get("RBE_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=_N, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=max(_N // 2, 10), deadline=None, suppress_health_check=[HealthCheck.too_slow])

NP_DT = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "bool": np.bool_}
TORCH_DT = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "bool": torch.bool}
RBE_DT = {"float32": rbe.float32, "float64": rbe.float64, "int64": rbe.int64, "bool": rbe.bool}

# ----------------------------------------------------------------- strategies
dims = st.integers(0, 4)
shapes = st.lists(dims, min_size=0, max_size=4).map(tuple)
seeds = st.integers(0, 2**32 - 1)


@st.composite
def broadcastable(draw, n=2):
    """``n`` shapes that broadcast together (size-1 dims, missing leading dims, empty dims)."""
    out = draw(shapes)
    res = []
    for _ in range(n):
        k = draw(st.integers(0, len(out)))
        suffix = out[len(out) - k:]
        s = tuple(1 if draw(st.booleans()) else d for d in suffix)
        res.append(s)
    return res


@st.composite
def incompatible(draw):
    """Two shapes that do not broadcast: some aligned dim has two different sizes, neither 1."""
    a, b = draw(broadcastable(2))
    a, b = list(a), list(b)
    # make sure at least one trailing dim is shared
    if not a:
        a = [draw(dims)]
    if not b:
        b = [draw(dims)]
    k = min(len(a), len(b))
    pos = draw(st.integers(1, k))  # counted from the right
    x = draw(st.sampled_from([0, 2, 3, 4]))
    y = draw(st.sampled_from([v for v in (0, 2, 3, 4) if v != x]))
    a[-pos], b[-pos] = x, y
    return tuple(a), tuple(b)


def make_array(rng, shape, dt, *, nonzero=False):
    return np.asarray(_make_array(rng, shape, dt, nonzero=nonzero))


def _make_array(rng, shape, dt, *, nonzero=False):
    if dt == "bool":
        return rng.random(shape) < 0.5
    if dt == "int64":
        a = rng.integers(-5, 6, size=shape).astype(np.int64)
        if nonzero:
            a[a == 0] = 3
        return a
    a = rng.standard_normal(shape).astype(NP_DT[dt])
    if nonzero:
        a = (np.sign(a) + (a == 0)) * (np.abs(a) + 0.5)
        a = a.astype(NP_DT[dt])
    return a


def as_np(t):
    return np.asarray(t.detach().numpy())


def check_same(got, want, dt_name=None, rtol=None):
    got_a = as_np(got)
    assert tuple(got.shape) == want.shape, (tuple(got.shape), want.shape)
    assert got_a.shape == want.shape
    if want.dtype.kind == "f":
        if rtol is None:
            rtol = 1e-5 if got_a.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got_a.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=rtol, equal_nan=True)
    else:
        np.testing.assert_array_equal(got_a, want)


# ----------------------------------------------------------------- binary ops
BINOPS = {
    "+": (lambda a, b: a + b, np.add),
    "-": (lambda a, b: a - b, np.subtract),
    "*": (lambda a, b: a * b, np.multiply),
    "/": (lambda a, b: a / b, np.true_divide),
    "maximum": (lambda a, b: rbe.maximum(a, b), np.maximum),
    "minimum": (lambda a, b: rbe.minimum(a, b), np.minimum),
    "==": (lambda a, b: a == b, np.equal),
    "!=": (lambda a, b: a != b, np.not_equal),
    "<": (lambda a, b: a < b, np.less),
    "<=": (lambda a, b: a <= b, np.less_equal),
    ">": (lambda a, b: a > b, np.greater),
    ">=": (lambda a, b: a >= b, np.greater_equal),
}
TORCH_BINOPS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


@SETTINGS
@given(
    shp=broadcastable(2),
    op=st.sampled_from(sorted(BINOPS)),
    dt=st.sampled_from(["float32", "float64", "int64", "bool"]),
    seed=seeds,
)
def test_binary_broadcast_same_dtype(shp, op, dt, seed):
    assume(not (dt == "bool" and op == "-"))  # bool - bool is an error (tested below)
    rng = np.random.default_rng(seed)
    a = make_array(rng, shp[0], dt)
    b = make_array(rng, shp[1], dt, nonzero=(op == "/"))
    rfn, nfn = BINOPS[op]
    got = rfn(rbe.tensor(a), rbe.tensor(b))
    with np.errstate(all="ignore"):
        want = nfn(a, b)
    assert want.shape == np.broadcast_shapes(shp[0], shp[1])
    # dtype: torch's promotion (int / int -> default float, comparisons -> bool)
    tdt = TORCH_BINOPS[op](torch.from_numpy(a), torch.from_numpy(b)).dtype
    assert str(got.dtype).split(".")[-1] == str(tdt).split(".")[-1], (got.dtype, tdt)
    if tdt == torch.float32:
        want = want.astype(np.float32)
    check_same(got, want)


@SETTINGS
@given(
    shp=broadcastable(2),
    op=st.sampled_from(["+", "*", "maximum", "minimum", "<", "==", "/"]),
    dts=st.tuples(*[st.sampled_from(["float32", "float64", "int64", "bool"])] * 2),
    seed=seeds,
)
def test_binary_broadcast_mixed_dtypes(shp, op, dts, seed):
    rng = np.random.default_rng(seed)
    a = make_array(rng, shp[0], dts[0])
    b = make_array(rng, shp[1], dts[1], nonzero=(op == "/"))
    rfn, nfn = BINOPS[op]
    got = rfn(rbe.tensor(a), rbe.tensor(b))
    tres = TORCH_BINOPS[op](torch.from_numpy(a), torch.from_numpy(b))
    assert str(got.dtype).split(".")[-1] == str(tres.dtype).split(".")[-1], (dts, got.dtype, tres.dtype)
    with np.errstate(all="ignore"):
        want = nfn(a.astype(np.float64) if a.dtype != np.bool_ else a, b.astype(np.float64) if b.dtype != np.bool_ else b)
    want = want.astype(tres.numpy().dtype) if tres.dtype != torch.bool else want
    check_same(got, want)


@SETTINGS
@given(shp=broadcastable(3), dt=st.sampled_from(["float32", "float64", "int64", "bool"]), seed=seeds)
def test_where_broadcast(shp, dt, seed):
    rng = np.random.default_rng(seed)
    c = np.asarray(rng.random(shp[0]) < 0.5)
    x = make_array(rng, shp[1], dt)
    y = make_array(rng, shp[2], dt)
    got = rbe.where(rbe.tensor(c), rbe.tensor(x), rbe.tensor(y))
    want = np.where(c, x, y)
    assert got.dtype == RBE_DT[dt]
    check_same(got, want)


@SETTINGS
@given(shp=broadcastable(2), op=st.sampled_from(sorted(BINOPS)), dt=st.sampled_from(["float32", "int64"]))
def test_binary_broadcast_result_shape(shp, op, dt):
    a = rbe.zeros(*shp[0], dtype=RBE_DT[dt])
    b = rbe.ones(*shp[1], dtype=RBE_DT[dt])
    assert tuple(BINOPS[op][0](a, b).shape) == np.broadcast_shapes(*shp)


SCALAR_OPS = {
    "t+s": lambda t, s: t + s,
    "s+t": lambda t, s: s + t,
    "t*s": lambda t, s: t * s,
    "s*t": lambda t, s: s * t,
    "t/s": lambda t, s: t / s,
    "t<s": lambda t, s: t < s,
    "s>=t": lambda t, s: s >= t,
    "t==s": lambda t, s: t == s,
}


@SETTINGS
@given(
    shape=shapes,
    op=st.sampled_from(sorted(SCALAR_OPS)),
    dt=st.sampled_from(["float32", "float64", "int64", "bool"]),
    scalar=st.sampled_from([2, -3, 0.5, -1.75, True]),
    seed=seeds,
)
def test_python_scalar_operand(shape, op, dt, scalar, seed):
    """A Python scalar broadcasts against any shape; dtype follows torch, values NumPy."""
    a = make_array(np.random.default_rng(seed), shape, dt)
    fn = SCALAR_OPS[op]
    got = fn(rbe.tensor(a), scalar)
    tres = fn(torch.from_numpy(a), scalar)
    assert str(got.dtype).split(".")[-1] == str(tres.dtype).split(".")[-1], (got.dtype, tres.dtype)
    with np.errstate(all="ignore"):
        want = np.asarray(fn(a.astype(np.float64) if a.dtype != np.bool_ else a, scalar))
    check_same(got, want.astype(tres.numpy().dtype))


@SETTINGS
@given(shp=broadcastable(2), op=st.sampled_from(["add_", "sub_", "mul_", "div_"]), seed=seeds)
def test_inplace_broadcast_matches_numpy(shp, op, seed):
    """``a.op_(b)``: b broadcasts into a's shape; when the broadcast shape is not a's, both refuse."""
    rng = np.random.default_rng(seed)
    a = make_array(rng, shp[0], "float64")
    b = make_array(rng, shp[1], "float64", nonzero=True)
    np_op = {"add_": np.add, "sub_": np.subtract, "mul_": np.multiply, "div_": np.true_divide}[op]
    t = rbe.tensor(a)
    if np.broadcast_shapes(a.shape, b.shape) != a.shape:
        with pytest.raises(ValueError):
            np_op(a, b, out=a.copy())
        with pytest.raises((ValueError, RuntimeError)):
            getattr(t, op)(rbe.tensor(b))
        check_same(t, a)  # unchanged
    else:
        getattr(t, op)(rbe.tensor(b))
        check_same(t, np_op(a, b))


def _shape_strs(s):
    s = list(s)
    return {str(s), str(tuple(s)), "(" + ", ".join(map(str, s)) + ")"}


def _names_shape(msg, s):
    return any(form in msg for form in _shape_strs(s))


@SETTINGS
@given(shp=incompatible(), op=st.sampled_from(sorted(BINOPS)))
def test_incompatible_shapes_raise_value_error(shp, op):
    a_shape, b_shape = shp
    with pytest.raises(ValueError):
        np.broadcast_shapes(a_shape, b_shape)  # the oracle agrees they are incompatible
    a = rbe.zeros(*a_shape)
    b = rbe.ones(*b_shape)
    with pytest.raises(ValueError) as ei:
        BINOPS[op][0](a, b)
    msg = str(ei.value)
    assert _names_shape(msg, a_shape) and _names_shape(msg, b_shape), msg


@SETTINGS
@given(shp=incompatible())
def test_incompatible_shapes_where_and_broadcast_shapes(shp):
    a_shape, b_shape = shp
    with pytest.raises(ValueError) as ei:
        rbe.broadcast_shapes(a_shape, b_shape)
    msg = str(ei.value)
    assert _names_shape(msg, a_shape) and _names_shape(msg, b_shape), msg
    with pytest.raises(ValueError):
        rbe.where(rbe.ones(*a_shape, dtype=rbe.bool), rbe.zeros(*b_shape), rbe.zeros(*b_shape))
    with pytest.raises(ValueError):
        rbe.where(rbe.ones(*b_shape, dtype=rbe.bool), rbe.zeros(*a_shape), 1.0)


@SETTINGS
@given(shp=st.one_of(broadcastable(2), broadcastable(3), broadcastable(1)))
def test_broadcast_shapes_matches_numpy(shp):
    got = rbe.broadcast_shapes(*shp)
    assert tuple(got) == np.broadcast_shapes(*shp)
    assert isinstance(got, rbe.Size)
    ts = rbe.broadcast_tensors(*[rbe.zeros(*s) for s in shp])
    for t in ts:
        assert tuple(t.shape) == np.broadcast_shapes(*shp)


@SETTINGS
@given(shp=broadcastable(2), op=st.sampled_from(["+", "-", "*", "/", "maximum", "minimum", "where"]), seed=seeds)
def test_broadcast_binary_gradients_match_torch(shp, op, seed):
    rng = np.random.default_rng(seed)
    a = np.asarray(rng.standard_normal(shp[0]))
    b = np.asarray(rng.standard_normal(shp[1]))
    if op == "/":
        b = np.asarray(np.sign(b) * (np.abs(b) + 0.5) + (b == 0))
    out_shape = np.broadcast_shapes(shp[0], shp[1])
    cond = np.asarray(rng.random(out_shape) < 0.5)
    g = np.asarray(rng.standard_normal(out_shape))

    def run(m, x, y):
        if op == "where":
            return m.where(m.tensor(cond) if m is rbe else torch.tensor(cond), x, y)
        if op in ("maximum", "minimum"):
            return getattr(m, op)(x, y)
        return TORCH_BINOPS[op](x, y)

    ra = rbe.tensor(a, requires_grad=True)
    rb = rbe.tensor(b, requires_grad=True)
    ta = torch.tensor(a, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    (run(rbe, ra, rb) * rbe.tensor(g)).sum().backward()
    (run(torch, ta, tb) * torch.tensor(g)).sum().backward()
    for r, t, s in ((ra, ta, shp[0]), (rb, tb, shp[1])):
        assert r.grad is not None
        assert tuple(r.grad.shape) == s
        np.testing.assert_allclose(as_np(r.grad), t.grad.numpy(), rtol=1e-10, atol=1e-12)


@SETTINGS
@given(shp=broadcastable(2), seed=seeds)
def test_broadcast_gradient_with_scalar_and_float32(shp, seed):
    """Gradient shapes for float32 and for python-scalar operands."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shp[0]).astype(np.float32)
    b = rng.standard_normal(shp[1]).astype(np.float32)
    ra = rbe.tensor(a, requires_grad=True)
    rb = rbe.tensor(b, requires_grad=True)
    ta = torch.tensor(a, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    ((ra * rb + 2.0) * 3.0 - rb).sum().backward()
    ((ta * tb + 2.0) * 3.0 - tb).sum().backward()
    assert ra.grad.dtype == rbe.float32 and rb.grad.dtype == rbe.float32
    np.testing.assert_allclose(as_np(ra.grad), ta.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(as_np(rb.grad), tb.grad.numpy(), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------- reductions
@st.composite
def shape_and_dims(draw, nonempty=True):
    if nonempty:
        s = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple))
    else:
        s = draw(st.lists(dims, min_size=1, max_size=4).map(tuple))
        assume(0 in s)
    nd = len(s)
    ds = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
    # use negative dims sometimes
    ds = [d - nd if draw(st.booleans()) else d for d in ds]
    return s, ds


REDUCE_NP = {
    "sum": np.sum,
    "mean": np.mean,
    "amax": np.amax,
    "amin": np.amin,
    "prod": np.prod,
}


def _reduce_rbe(t, name, ds, keepdim):
    if name == "prod":
        # torch/rbe prod takes one dim: reduce one dim at a time (highest first)
        nd = t.ndim
        for d in sorted((d % nd for d in ds), reverse=True):
            t = t.prod(d, keepdim=keepdim)
        return t
    return getattr(t, name)(dim=tuple(ds), keepdim=keepdim)


@SETTINGS
@given(
    sd=shape_and_dims(),
    name=st.sampled_from(sorted(REDUCE_NP)),
    keepdim=st.booleans(),
    dt=st.sampled_from(["float32", "float64", "int64"]),
    seed=seeds,
)
def test_reductions_match_numpy(sd, name, keepdim, dt, seed):
    shape, ds = sd
    assume(not (name == "mean" and dt == "int64"))
    rng = np.random.default_rng(seed)
    a = make_array(rng, shape, dt)
    if name == "prod" and dt != "int64":
        a = (a * 0.5 + np.sign(a)).astype(a.dtype)
    got = _reduce_rbe(rbe.tensor(a), name, ds, keepdim)
    want = np.asarray(REDUCE_NP[name](a.astype(np.float64) if dt != "int64" else a,
                                      axis=tuple(d % len(shape) for d in ds), keepdims=keepdim))
    want = want.astype(NP_DT[dt])
    assert got.dtype == RBE_DT[dt]
    check_same(got, want, rtol=1e-5 if dt == "float32" else 1e-12)


@SETTINGS
@given(shape=shapes, name=st.sampled_from(["sum", "amax", "amin", "prod", "mean"]),
       dt=st.sampled_from(["float64", "int64", "bool"]), seed=seeds)
def test_full_reductions_match_numpy_and_torch(shape, name, dt, seed):
    rng = np.random.default_rng(seed)
    a = make_array(rng, shape, dt)
    t = torch.from_numpy(a)
    try:
        want = getattr(torch, name)(t)
    except (RuntimeError, IndexError):
        # torch refuses (amax/amin of an empty tensor, mean of ints): rbe must refuse too
        with pytest.raises((RuntimeError, IndexError, TypeError, ValueError)):
            getattr(rbe.tensor(a), name)()
        return
    got = getattr(rbe.tensor(a), name)()
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
    assert tuple(got.shape) == ()
    np.testing.assert_allclose(as_np(got).astype(np.float64), want.numpy().astype(np.float64),
                               rtol=1e-12, equal_nan=True)
    if dt == "float64" and a.size:
        np.testing.assert_allclose(as_np(got), REDUCE_NP[name](a), rtol=1e-12)


@FEW
@given(
    sd=shape_and_dims(nonempty=False),
    name=st.sampled_from(["sum", "mean", "prod"]),
    keepdim=st.booleans(),
)
def test_reductions_over_empty_dims_match_numpy(sd, name, keepdim):
    """Reducing a tensor with a size-0 dim: sum -> 0, prod -> 1, mean -> nan (shape as NumPy)."""
    shape, ds = sd
    a = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    got = _reduce_rbe(rbe.tensor(a), name, ds, keepdim)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.asarray(REDUCE_NP[name](a, axis=tuple(d % len(shape) for d in ds), keepdims=keepdim))
    check_same(got, want)


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_sum_of_empty_is_positive_zero(dt):
    """NumPy and torch give +0.0 for an empty sum (1 / result is +inf, not -inf)."""
    a = np.zeros((0, 3), dtype=NP_DT[dt])
    for got, want in (
        (rbe.tensor(a).sum(), np.sum(a)),
        (rbe.tensor(a).sum(0), np.sum(a, axis=0)),
        (rbe.zeros(0, 3, dtype=RBE_DT[dt]).sum(0), torch.zeros(0, 3, dtype=TORCH_DT[dt]).sum(0).numpy()),
    ):
        check_same(got, want)
        np.testing.assert_array_equal(np.signbit(as_np(got)), np.signbit(want))


@FEW
@given(sd=shape_and_dims(nonempty=False), name=st.sampled_from(["amax", "amin"]), keepdim=st.booleans())
def test_amax_amin_over_empty_dims(sd, name, keepdim):
    """amax/amin: error exactly when a reduced dim has size 0 (NumPy raises ValueError, torch IndexError)."""
    shape, ds = sd
    a = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    axes = tuple(d % len(shape) for d in ds)
    t = rbe.tensor(a)
    if any(shape[d] == 0 for d in axes):
        with pytest.raises(ValueError):
            REDUCE_NP[name](a, axis=axes, keepdims=keepdim)
        with pytest.raises((IndexError, RuntimeError, ValueError)):
            getattr(t, name)(dim=tuple(ds), keepdim=keepdim)
    else:
        check_same(getattr(t, name)(dim=tuple(ds), keepdim=keepdim),
                   REDUCE_NP[name](a, axis=axes, keepdims=keepdim))


@SETTINGS
@given(sd=shape_and_dims(), keepdim=st.booleans(), seed=seeds,
       name=st.sampled_from(["sum", "mean", "amax", "amin"]))
def test_reduction_gradients_match_torch(sd, keepdim, seed, name):
    shape, ds = sd
    rng = np.random.default_rng(seed)
    a = np.asarray(rng.standard_normal(shape))
    r = rbe.tensor(a, requires_grad=True)
    t = torch.tensor(a, requires_grad=True)
    ro = getattr(r, name)(dim=tuple(ds), keepdim=keepdim)
    to = getattr(t, name)(dim=tuple(ds), keepdim=keepdim)
    g = np.asarray(rng.standard_normal(tuple(to.shape)))
    (ro * rbe.tensor(g)).sum().backward()
    (to * torch.tensor(g)).sum().backward()
    assert tuple(r.grad.shape) == shape
    np.testing.assert_allclose(as_np(r.grad), t.grad.numpy(), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------- shape ops
def _factorizations(n, k):
    """All ways of writing n as an ordered product of k positive ints (n > 0)."""
    if k == 1:
        return [(n,)]
    out = []
    for d in range(1, n + 1):
        if n % d == 0:
            for rest in _factorizations(n // d, k - 1):
                out.append((d,) + rest)
    return out


@SETTINGS
@given(shape=shapes, data=st.data(), dt=st.sampled_from(["float64", "int64", "bool"]), noncontig=st.booleans())
def test_reshape_matches_numpy(shape, data, dt, noncontig):
    rng = np.random.default_rng(0)
    a = make_array(rng, shape, dt)
    t = rbe.tensor(a)
    if noncontig and a.ndim >= 2:
        a = a.T
        t = t.permute(*reversed(range(t.ndim)))
    n = a.size
    k = data.draw(st.integers(0, 4))
    if n == 0:
        new = data.draw(st.lists(dims, min_size=max(k, 1), max_size=max(k, 1)).filter(lambda s: 0 in s).map(tuple))
    elif k == 0:
        assume(n == 1)
        new = ()
    else:
        new = data.draw(st.sampled_from(_factorizations(n, k)))
    want = a.reshape(new)
    check_same(t.reshape(*new), want)
    check_same(t.reshape(new), want)
    if len(new) >= 1 and n > 0:
        i = data.draw(st.integers(0, len(new) - 1))
        inferred = tuple(-1 if j == i else d for j, d in enumerate(new))
        check_same(t.reshape(inferred), a.reshape(inferred))


@SETTINGS
@given(shape=shapes, data=st.data(), seed=seeds)
def test_permute_transpose_matches_numpy(shape, data, seed):
    a = make_array(np.random.default_rng(seed), shape, "float64")
    t = rbe.tensor(a)
    nd = a.ndim
    perm = data.draw(st.permutations(list(range(nd))))
    check_same(t.permute(*perm), np.transpose(a, perm))
    check_same(t.permute(tuple(perm)), np.transpose(a, perm))
    if nd >= 1:
        i = data.draw(st.integers(-nd, nd - 1))
        j = data.draw(st.integers(-nd, nd - 1))
        check_same(t.transpose(i, j), np.swapaxes(a, i, j))
        check_same(rbe.transpose(t, i, j), np.swapaxes(a, i, j))
        # ops compose on the strided view: a permuted then transposed view, then arithmetic
        v = t.permute(*perm).transpose(i, j)
        check_same(v * 2 + 1, np.swapaxes(np.transpose(a, perm), i, j) * 2 + 1)
        check_same(v.contiguous(), np.swapaxes(np.transpose(a, perm), i, j))
    if nd == 2:
        check_same(t.t(), a.T)
        check_same(t.T, a.T)


@SETTINGS
@given(shape=shapes, data=st.data(), seed=seeds)
def test_flatten_matches_numpy(shape, data, seed):
    a = make_array(np.random.default_rng(seed), shape, "int64")
    t = rbe.tensor(a)
    check_same(t.flatten(), a.reshape(-1))
    nd = a.ndim
    if nd >= 1:
        s = data.draw(st.integers(0, nd - 1))
        e = data.draw(st.integers(s, nd - 1))
        want_shape = a.shape[:s] + (int(np.prod(a.shape[s:e + 1])),) + a.shape[e + 1:]
        neg_e = e - nd if data.draw(st.booleans()) else e
        check_same(t.flatten(s, neg_e), a.reshape(want_shape))
        check_same(rbe.flatten(t, start_dim=s, end_dim=neg_e), a.reshape(want_shape))
        # flatten of a non-contiguous view
        check_same(t.flip(0).flatten(s, e), a[::-1].reshape(want_shape))


@SETTINGS
@given(shp=broadcastable(2), seed=seeds)
def test_expand_matches_numpy(shp, seed):
    src, other = shp
    target = np.broadcast_shapes(src, other)
    a = make_array(np.random.default_rng(seed), src, "float32")
    t = rbe.tensor(a)
    want = np.broadcast_to(a, target)
    check_same(t.expand(*target), want)
    # -1 keeps a dim
    spec = tuple(-1 if (i >= len(target) - len(src) and src[i - (len(target) - len(src))] == target[i]) else d
                 for i, d in enumerate(target))
    check_same(t.expand(*spec), want)
    check_same(t.expand_as(rbe.zeros(*target)), want)
    check_same(rbe.broadcast_to(t, target) if hasattr(rbe, "broadcast_to") else t.broadcast_to(target), want)
    # values of an expanded view are usable in arithmetic and are materialised correctly
    check_same(t.expand(*target) + 0, want)
    check_same(t.expand(*target).contiguous(), want)


@SETTINGS
@given(shp=incompatible())
def test_expand_incompatible_raises(shp):
    src, target = shp
    assume(len(target) >= len(src))
    with pytest.raises(ValueError):
        np.broadcast_to(np.zeros(src), target)
    with pytest.raises((RuntimeError, ValueError)):
        rbe.zeros(*src).expand(*target)


@SETTINGS
@given(shape=st.lists(st.sampled_from([0, 1, 1, 2, 3]), min_size=0, max_size=4).map(tuple), data=st.data())
def test_squeeze_unsqueeze_match_numpy(shape, data):
    a = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    t = rbe.tensor(a)
    check_same(t.squeeze(), np.squeeze(a))
    check_same(rbe.squeeze(t), np.squeeze(a))
    nd = a.ndim
    if nd >= 1:
        d = data.draw(st.integers(-nd, nd - 1))
        # torch semantics: squeezing a dim whose size is not 1 is a no-op
        want = np.squeeze(a, axis=d) if a.shape[d] == 1 else a
        check_same(t.squeeze(d), want)
    u = data.draw(st.integers(-nd - 1, nd))
    check_same(t.unsqueeze(u), np.expand_dims(a, u))
    check_same(rbe.unsqueeze(t, u), np.expand_dims(a, u))
    with pytest.raises(IndexError):
        t.unsqueeze(nd + 2)
    # unsqueeze then squeeze that dim round-trips
    check_same(t.unsqueeze(u).squeeze(u), a)


@SETTINGS
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple), data=st.data(), seed=seeds)
def test_shape_op_chain_gradients_match_torch(shape, data, seed):
    """A chain of view ops then a weighted sum: gradients flow back to the input's shape."""
    rng = np.random.default_rng(seed)
    a = np.asarray(rng.standard_normal(shape))
    nd = len(shape)
    perm = data.draw(st.permutations(list(range(nd))))
    u = data.draw(st.integers(0, nd))

    def chain(x):
        y = x.permute(*perm).unsqueeze(u)
        y = y.expand(*([2 if i == u else -1 for i in range(nd + 1)]))
        return y.flatten().reshape(2, -1)

    r = rbe.tensor(a, requires_grad=True)
    t = torch.tensor(a, requires_grad=True)
    ro, to = chain(r), chain(t)
    check_same(ro, to.detach().numpy())
    g = np.asarray(rng.standard_normal(tuple(to.shape)))
    (ro * rbe.tensor(g)).sum().backward()
    (to * torch.tensor(g)).sum().backward()
    assert tuple(r.grad.shape) == shape
    np.testing.assert_allclose(as_np(r.grad), t.grad.numpy(), rtol=1e-10, atol=1e-12)
