"""``x[idx]`` and ``x[idx] = v`` against torch's indexing rules (values and
result shapes; NumPy places an int next to a separated index array differently,
torch is the spec here) and torch / ``np.add.at`` (gradients); gather,
scatter_add, index_select, index_add and masked_fill against torch.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import rbe

SHAPE = (3, 4, 5)
RNG = np.random.default_rng(1234)
A = RNG.standard_normal(SHAPE)

M345 = RNG.random(SHAPE) < 0.5
M34 = np.array([[True, False, True, True], [False, False, False, False], [True, True, False, True]])
M3 = np.array([True, False, True])
M4 = np.array([False, True, True, False])
M5 = np.array([True, False, False, True, True])

_ = slice(None)
E = Ellipsis

# (id, index) with NumPy-style indices: ints, slices, None, Ellipsis, lists and np arrays.
BASIC = [
    ("int", 1),
    ("neg-int", -1),
    ("neg-int-first", -3),
    ("int-int", (0, -1)),
    ("int-int-int", (2, 3, 4)),
    ("neg-int3", (-1, -4, -5)),
    ("empty-tuple", ()),
    ("slice-step2", slice(None, None, 2)),
    ("slice-start-step", slice(1, None, 2)),
    ("slice-neg-start", slice(-2, None)),
    ("slice-neg-stop-step", (_, slice(None, -1, 3))),
    ("slice-out-of-range", slice(-100, 100)),
    ("slice-out-of-range-2", (_, slice(5, 10))),
    ("slice-neg-both", (slice(-3, -1), slice(-3, -1), slice(-4, -1, 2))),
    ("slice-empty", (_, slice(3, 1))),
    ("slice-past-end", slice(10, None)),
    ("slice-step-big", (_, _, slice(1, None, 7))),
    ("ellipsis-slice", (E, slice(None, None, 4))),
    ("none", None),
    ("none-int", (None, 0)),
    ("slice-none-int", (_, None, 1)),
    ("ellipsis-none", (E, None)),
    ("none-ellipsis-none", (None, E, None)),
    ("int-ellipsis", (1, E)),
    ("ellipsis-int", (E, 2)),
    ("int-ellipsis-int", (0, E, -1)),
    ("mixed-basic", (slice(-2, None), None, 3, slice(None, None, 2))),
]
ADVANCED = [
    ("mask-full", M345),
    ("mask-leading-2d", M34),
    ("mask-first-dim", M3),
    ("mask-all-false", np.zeros(3, dtype=bool)),
    ("mask-all-true", np.ones((3, 4), dtype=bool)),
    ("slice-mask", (_, M4)),
    ("ellipsis-mask", (E, M5)),
    ("mask-then-slice", (M3, slice(1, 3))),
    ("slice-mask-int", (_, M4, 2)),
    ("mask-and-intarray", (M3, _, [1, 3])),
    ("list", [2, 0, 2]),
    ("list-neg", [-1, 0]),
    ("list-empty", np.array([], dtype=np.int64)),
    ("list-2d", [[0, 1], [2, 2]]),
    ("adjacent-leading", ([0, 2], [1, 3])),
    ("adjacent-middle", (_, [0, 3], [1, 2])),
    ("non-adjacent", ([0, 2], _, [1, 4])),
    ("non-adjacent-ellipsis", ([0, 1], E, [2, 3])),
    ("none-separated", (None, [0, 1], None, [2, 3])),
    ("int-and-array-non-adjacent", (1, _, [0, 2])),
    ("int-and-array-adjacent", (_, 1, [0, 2])),
    ("array-int-adjacent", ([2, 0], 1)),
    ("broadcast-arrays", ([[0], [2]], _, [1, 3])),
    ("broadcast-arrays-adjacent", ([[0], [2]], [1, 3])),
    ("three-arrays", ([0, 1, 2], [3, 2, 1], [4, 0, 2])),
    ("array-slice-step", ([2, 1], slice(None, None, 2), slice(1, None, 2))),
    ("array-none", ([1, 2], None)),
]
CASES = BASIC + ADVANCED


def _is_array(o):
    return isinstance(o, (list, np.ndarray))


def to_form(idx, form):
    """Convert the array parts of a NumPy-style index for rbe/torch: 'list', 'numpy', 'rbe' or 'torch'."""
    if isinstance(idx, tuple):
        return tuple(to_form(i, form) for i in idx)
    if not _is_array(idx):
        return idx
    arr = np.asarray(idx)
    if arr.dtype != np.bool_:
        arr = arr.astype(np.int64)
    if form == "list":
        return arr.tolist() if arr.size else idx if isinstance(idx, list) else arr  # [] is ambiguous as a list
    if form == "numpy":
        return arr
    if form == "rbe":
        return rbe.tensor(arr)
    if form == "torch":
        return torch.tensor(arr)
    raise ValueError(form)


def np_idx(idx):
    if isinstance(idx, tuple):
        return tuple(np_idx(i) for i in idx)
    if _is_array(idx):
        return np.asarray(idx)
    return idx


def tget(a, idx):
    """The reference result of a[idx] under torch's indexing rules (an int next to an
    index array is a plain index, unlike NumPy where it joins the advanced indices)."""
    return torch.from_numpy(np.ascontiguousarray(a))[to_form(idx, "torch")].numpy()


def tset(a, idx, v):
    """a[idx] = v in place on the NumPy array `a` (any positive strides), under torch's rules."""
    t = torch.from_numpy(a)
    t[to_form(idx, "torch")] = torch.as_tensor(np.asarray(v)).to(t.dtype)


def as_np(t):
    return np.asarray(t.detach().numpy())


def has_advanced(idx):
    return any(_is_array(i) for i in (idx if isinstance(idx, tuple) else (idx,)))


def counts(idx):
    c = np.zeros(SHAPE, dtype=np.int64)
    np.add.at(c, np_idx(idx), 1)
    return c


# ----------------------------------------------------------------- getitem values
@pytest.mark.parametrize("form", ["list", "numpy", "rbe"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_getitem_matches_numpy(case, form):
    name, idx = case
    if form != "list" and not has_advanced(idx):
        form = "list"  # nothing to convert
    want = tget(A, idx)
    got = rbe.tensor(A)[to_form(idx, form)]
    assert tuple(got.shape) == want.shape, (tuple(got.shape), want.shape)
    np.testing.assert_array_equal(as_np(got), want)
    assert got.dtype == rbe.float64


@pytest.mark.parametrize("dt", [np.float32, np.int64, np.bool_])
def test_getitem_other_dtypes(dt):
    a = (A * 3).astype(dt)
    x = rbe.tensor(a)
    for _name, idx in (("a", (1, _, [0, 2])), ("b", M34), ("c", (E, slice(1, None, 2))), ("d", ([0, 2], [1, 3]))):
        got = x[to_form(idx, "numpy")]
        np.testing.assert_array_equal(as_np(got), tget(a, idx))
        assert as_np(got).dtype == a.dtype


def test_getitem_0d():
    x = rbe.tensor(3.5)
    assert tuple(x[None].shape) == np.asarray(3.5)[None].shape == (1,)
    assert tuple(x[...].shape) == ()
    assert tuple(x[()].shape) == ()
    assert x[()].item() == 3.5
    assert tuple(x[None, None].shape) == (1, 1)
    with pytest.raises(IndexError):
        x[0]


@pytest.mark.parametrize("val", [True, False])
def test_getitem_scalar_bool(val):
    """NumPy and torch: x[True] adds a dim of size 1, x[False] a dim of size 0."""
    want = A[val]
    got = rbe.tensor(A)[val]
    assert tuple(got.shape) == want.shape == tuple(torch.tensor(A)[val].shape)
    np.testing.assert_array_equal(as_np(got), want)
    got = rbe.tensor(A)[rbe.tensor(val)]
    assert tuple(got.shape) == want.shape


def test_basic_indexing_returns_a_view_advanced_a_copy():
    a = A.copy()
    y = rbe.tensor(a)
    v = y[1:, ::2]
    v.mul_(2.0)
    a_view = a[1:, ::2]
    a_view *= 2.0
    np.testing.assert_array_equal(as_np(y), a)
    w = y[0]
    w[1] = -1.0
    a[0][1] = -1.0
    np.testing.assert_array_equal(as_np(y), a)
    c = y[[0, 1]]
    c.add_(100.0)
    np.testing.assert_array_equal(as_np(y), a)  # advanced index: a copy, base unchanged


# ----------------------------------------------------------------- getitem gradients
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_getitem_gradient(case):
    name, idx = case
    want_shape = tget(A, idx).shape
    W = RNG.standard_normal(want_shape)
    x = rbe.tensor(A, requires_grad=True)
    out = x[to_form(idx, "rbe")]
    (out * rbe.tensor(W)).sum().backward()
    assert x.grad is not None and tuple(x.grad.shape) == SHAPE
    # oracle 1: NumPy scatter-add of the upstream gradient (duplicates accumulate),
    # wherever NumPy's placement of the result dims agrees with torch's
    if A[np_idx(idx)].shape == want_shape:
        g = np.zeros(SHAPE)
        np.add.at(g, np_idx(idx), W)
        np.testing.assert_allclose(as_np(x.grad), g, rtol=1e-12, atol=1e-12)
    # oracle 2: torch
    t = torch.tensor(A, requires_grad=True)
    (t[to_form(idx, "torch")] * torch.tensor(W)).sum().backward()
    np.testing.assert_allclose(as_np(x.grad), t.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_getitem_gradient_accumulates_over_two_uses():
    x = rbe.tensor(A, requires_grad=True)
    t = torch.tensor(A, requires_grad=True)
    for m, z in ((rbe, x), (torch, t)):
        idx = m.tensor([0, 0, 2])
        (z[idx, 1:3].sum() * 2 + (z[:, 1] ** 2).sum()).backward()
    np.testing.assert_allclose(as_np(x.grad), t.grad.numpy(), rtol=1e-12)


def test_getitem_second_order_gradient():
    x = rbe.tensor(A, requires_grad=True)
    t = torch.tensor(A, requires_grad=True)
    grads = []
    for m, z in ((rbe, x), (torch, t)):
        y = (z[[0, 2], :, 1:] ** 3).sum()
        (g,) = m.autograd.grad(y, z, create_graph=True)
        g[1:, [1, 3]].sum().backward()
        grads.append(z.grad)
    np.testing.assert_allclose(as_np(grads[0]), grads[1].numpy(), rtol=1e-12)


# ----------------------------------------------------------------- setitem values
def _value_for(rng, shape, kind):
    if kind == "scalar":
        return 7.25
    if kind == "full":
        return rng.standard_normal(shape)
    if kind == "broadcast-last":
        return rng.standard_normal(shape[-1:]) if shape else rng.standard_normal(())
    if kind == "broadcast-ones":
        return rng.standard_normal(tuple(1 for _ in shape))
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["scalar", "full", "broadcast-last", "broadcast-ones"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_setitem_matches_numpy(case, kind):
    name, idx = case
    res_shape = tget(A, idx).shape
    if kind != "scalar" and counts(idx).max() > 1:
        kind = "scalar"  # duplicate targets: only a constant has a defined result
    rng = np.random.default_rng(7)
    v = _value_for(rng, res_shape, kind)
    a = A.copy()
    tset(a, idx, v)
    for form in ("list", "rbe"):
        y = rbe.tensor(A)
        y[to_form(idx, form)] = v if kind == "scalar" else rbe.tensor(np.asarray(v))
        np.testing.assert_array_equal(as_np(y), a)


@pytest.mark.parametrize("dt", [np.float32, np.int64, np.bool_])
def test_setitem_other_dtypes(dt):
    a = (A * 3).astype(dt)
    y = rbe.tensor(a)
    val = dt(1)
    y[M34] = val.item()
    a[M34] = val
    y[:, [0, 2], 1:3] = rbe.tensor(np.zeros((3, 2, 2), dtype=dt))
    a[:, [0, 2], 1:3] = 0
    np.testing.assert_array_equal(as_np(y), a)
    assert as_np(y).dtype == a.dtype


@pytest.mark.parametrize("src_dt", [np.float64, np.float32, np.int64, np.bool_])
@pytest.mark.parametrize("dst_dt", [np.float64, np.float32, np.int64, np.bool_])
@pytest.mark.parametrize("idx", [0, (_, 1), [0, 2], M3], ids=["int", "slice-int", "list", "mask"])
def test_setitem_casts_value_to_destination_dtype_like_numpy(idx, dst_dt, src_dt):
    """NumPy (and torch's copy_ for basic indices) cast the value to the destination's dtype."""
    a = np.zeros((3, 2), dtype=dst_dt)
    src = (np.ones(tget(a, idx).shape[-1:]) * 1.5).astype(src_dt)
    y = rbe.tensor(a)
    y[to_form(idx, "rbe")] = rbe.tensor(src)
    tset(a, idx, src)
    assert as_np(y).dtype == a.dtype
    np.testing.assert_array_equal(as_np(y), a)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_getitem_and_setitem_on_a_permuted_view(case):
    """Indexing a non-contiguous view reads the right elements and writes through to the base."""
    name, idx = case
    if has_advanced(idx) and any(isinstance(i, np.ndarray) and i.dtype == np.bool_ and i.shape[0] != 5
                                 for i in (idx if isinstance(idx, tuple) else (idx,))):
        idx = (_, _, M3) if name.startswith("mask") else idx  # masks were built for (3, 4, 5)
    at = A.transpose(2, 0, 1)  # shape (5, 3, 4)
    try:
        want = tget(at, idx)
    except IndexError:
        return  # index was built for (3, 4, 5) and does not apply to (5, 3, 4)
    y = rbe.tensor(A)
    v = y.permute(2, 0, 1)
    np.testing.assert_array_equal(as_np(v[to_form(idx, "rbe")]), want)
    a = A.copy()
    tset(a.transpose(2, 0, 1), idx, -7.0)
    v[to_form(idx, "rbe")] = -7.0
    np.testing.assert_array_equal(as_np(y), a)


def test_setitem_shape_mismatch_raises():
    y = rbe.tensor(A)
    with pytest.raises((ValueError, RuntimeError)):
        y[0] = rbe.zeros(5, 4, dtype=rbe.float64)
    with pytest.raises((ValueError, RuntimeError)):
        y[[0, 1]] = rbe.zeros(3, dtype=rbe.float64)
    np.testing.assert_array_equal(as_np(y), A)  # nothing was written


# ----------------------------------------------------------------- setitem gradients
SET_CASES = [
    ("slices", (slice(1, None), 0)),
    ("int", 1),
    ("step", (_, slice(None, None, 2), slice(-3, None))),
    ("ellipsis", (E, 1)),
    ("mask", M34),
    ("mask-full", M345),
    ("list", [2, 0]),
    ("adjacent", (_, [0, 3], [1, 2])),
    ("non-adjacent", ([0, 2], _, [1, 4])),
    ("int-and-array-non-adjacent", (1, _, [0, 2])),
]


@pytest.mark.parametrize("broadcast_v", [False, True])
@pytest.mark.parametrize("case", SET_CASES, ids=[c[0] for c in SET_CASES])
def test_setitem_gradient_non_leaf(case, broadcast_v):
    name, idx = case
    res_shape = tget(A, idx).shape
    rng = np.random.default_rng(3)
    v = rng.standard_normal(res_shape[-1:] if broadcast_v else res_shape)
    W = rng.standard_normal(SHAPE)

    x = rbe.tensor(A, requires_grad=True)
    vr = rbe.tensor(v, requires_grad=True)
    y = x * 1
    y[to_form(idx, "rbe")] = vr
    assert y.requires_grad
    (y * rbe.tensor(W)).sum().backward()

    # NumPy oracle: written positions get no gradient into x; v gets the upstream
    # gradient at its targets, summed over the broadcast dims
    hit = counts(idx) > 0
    np.testing.assert_allclose(as_np(x.grad), np.where(hit, 0.0, W), rtol=1e-12)
    gv = tget(W, idx)
    if broadcast_v:
        gv = gv.reshape(-1, gv.shape[-1]).sum(0) if gv.ndim else gv
    assert tuple(vr.grad.shape) == v.shape
    np.testing.assert_allclose(as_np(vr.grad), gv, rtol=1e-12, atol=1e-12)

    # torch oracle where torch's placement agrees with NumPy's
    t = torch.tensor(A, requires_grad=True)
    if tuple(t[to_form(idx, "torch")].shape) == res_shape:
        vt = torch.tensor(v, requires_grad=True)
        yt = t * 1
        yt[to_form(idx, "torch")] = vt
        (yt * torch.tensor(W)).sum().backward()
        np.testing.assert_allclose(as_np(x.grad), t.grad.numpy(), rtol=1e-12)
        np.testing.assert_allclose(as_np(vr.grad), vt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_setitem_gradient_example_from_docs():
    a = np.arange(12.0).reshape(3, 4)
    vals = np.array([10.0, 20.0])
    grads = []
    for m in (rbe, torch):
        x = m.tensor(a, requires_grad=True)
        v = m.tensor(vals, requires_grad=True)
        y = x * 1
        y[1:, 0] = v
        (y * y).sum().backward()
        grads.append((x.grad, v.grad, y.detach()))
    np.testing.assert_allclose(as_np(grads[0][2]), grads[1][2].numpy())
    np.testing.assert_allclose(as_np(grads[0][0]), grads[1][0].numpy())
    np.testing.assert_allclose(as_np(grads[0][1]), grads[1][1].numpy())
    np.testing.assert_allclose(as_np(grads[0][1]), 2 * vals)


def test_setitem_gradient_scalar_value_and_chain():
    """Two successive assignments, the second overwriting part of the first."""
    res = []
    for m in (rbe, torch):
        x = m.tensor(A, requires_grad=True)
        v = m.tensor(A[0, :2] * 0 + 1.5, requires_grad=True)
        y = x.sin()  # sin saves its input, not its output: y may be overwritten
        y[0, :2] = v
        y[:, 1] = 0.0
        y[0] = y[0] * 3
        (y ** 2).sum().backward()
        res.append((x.grad, v.grad))
    np.testing.assert_allclose(as_np(res[0][0]), res[1][0].numpy(), rtol=1e-12)
    np.testing.assert_allclose(as_np(res[0][1]), res[1][1].numpy(), rtol=1e-12)


def test_setitem_through_a_view_of_a_non_leaf():
    res = []
    for m in (rbe, torch):
        x = m.tensor(A, requires_grad=True)
        v = m.tensor(np.array([2.0, 3.0]), requires_grad=True)
        y = x * 2
        row = y[1]
        row[0, 1:3] = v
        (y * m.tensor(A)).sum().backward()
        res.append((x.grad, v.grad, y.detach()))
    for r, t in zip(res[0], res[1]):
        np.testing.assert_allclose(as_np(r), t.numpy(), rtol=1e-12)


def test_setitem_on_leaf_requiring_grad():
    x = rbe.tensor(A, requires_grad=True)
    with pytest.raises(RuntimeError):
        x[0] = 1.0
    with pytest.raises(RuntimeError):
        x[M34] = 0.0
    np.testing.assert_array_equal(as_np(x), A)
    with rbe.no_grad():
        x[0] = 1.0
        x[:, [1, 2], 0] = rbe.tensor([5.0, 6.0], dtype=rbe.float64)
    a = A.copy()
    a[0] = 1.0
    a[:, [1, 2], 0] = [5.0, 6.0]
    np.testing.assert_array_equal(as_np(x), a)
    assert x.requires_grad and x.is_leaf and x.grad_fn is None
    # the leaf still works as a leaf afterwards
    (x * 2).sum().backward()
    np.testing.assert_array_equal(as_np(x.grad), np.full(SHAPE, 2.0))


def test_setitem_leaf_without_grad_is_fine():
    x = rbe.tensor(A)
    x[1:, 0] = 0.0
    a = A.copy()
    a[1:, 0] = 0.0
    np.testing.assert_array_equal(as_np(x), a)


# ----------------------------------------------------------------- indexing errors
@pytest.mark.parametrize("idx", [3, -4, (0, 4), (0, 0, 5), (0, 0, -6), (E, 7), (_, -5)])
def test_out_of_range_int_raises_index_error(idx):
    with pytest.raises(IndexError):
        A[idx]
    x = rbe.tensor(A)
    with pytest.raises(IndexError):
        x[idx]
    with pytest.raises(IndexError):
        x[idx] = 0.0


@pytest.mark.parametrize("idx", [[0, 3], [-4], ([0, 1], [0, 4]), (_, _, [5]), (_, [1, -5])])
def test_out_of_range_array_index_raises_index_error(idx):
    with pytest.raises(IndexError):
        tget(A, idx)
    x = rbe.tensor(A)
    for form in ("list", "numpy", "rbe"):
        with pytest.raises(IndexError):
            x[to_form(idx, form)]
        with pytest.raises(IndexError):
            x[to_form(idx, form)] = 1.0
    np.testing.assert_array_equal(as_np(x), A)


@pytest.mark.parametrize("idx", [(0, 0, 0, 0), (E, 0, 0, 0, 0), (_, _, _, _), (0, [0], 0, 0), (None, 0, 0, 0, 0)])
def test_too_many_indices_raises_index_error(idx):
    with pytest.raises(IndexError):
        tget(A, idx)
    x = rbe.tensor(A)
    with pytest.raises(IndexError):
        x[idx]
    with pytest.raises(IndexError):
        x[idx] = 0.0


@pytest.mark.parametrize("idx", [1.0, (0, 1.5), np.float64(1.0), [0.0, 1.0], (_, np.array([1.0]))])
def test_float_index_raises(idx):
    with pytest.raises((IndexError, TypeError)):
        A[idx]
    x = rbe.tensor(A)
    with pytest.raises((IndexError, TypeError)):
        x[idx]
    with pytest.raises((IndexError, TypeError)):
        x[rbe.tensor(np.asarray(idx, dtype=np.float64))] if not isinstance(idx, tuple) else x[_, rbe.tensor([1.0])]
    with pytest.raises((IndexError, TypeError)):
        x[idx] = 0.0


def test_wrong_mask_shape_raises_index_error():
    """A bool mask must match the indexed dims' sizes, even when its True entries are in range."""
    x = rbe.tensor(A)
    masks = (
        np.ones(2, dtype=bool),  # too short, every True in range
        np.array([True, False, True, False]),  # too long, every True in range
        np.ones((3, 5), dtype=bool),
        np.ones((4,), dtype=bool),
        np.ones((3, 3), dtype=bool),  # too short in dim 1
    )
    for mask in masks:
        with pytest.raises(IndexError):
            A[mask]
        with pytest.raises(IndexError):
            torch.tensor(A)[torch.tensor(mask)]
        for m in (rbe.tensor(mask), mask, mask.tolist()):
            with pytest.raises(IndexError):
                x[m]
            with pytest.raises(IndexError):
                x[m] = 0.0
        with pytest.raises(IndexError):
            x[:, rbe.tensor(np.ones(2, dtype=bool))]
    np.testing.assert_array_equal(as_np(x), A)


def test_two_ellipses_raise_index_error():
    with pytest.raises(IndexError):
        A[E, 0, E]
    with pytest.raises(IndexError):
        rbe.tensor(A)[E, 0, E]


def test_incompatible_advanced_index_shapes_raise():
    with pytest.raises(IndexError):
        A[[0, 1], [0, 1, 2]]
    with pytest.raises((IndexError, ValueError)):
        rbe.tensor(A)[[0, 1], [0, 1, 2]]


def test_negative_step_raises_value_error_like_torch():
    with pytest.raises(ValueError):
        torch.tensor(A)[::-1]
    with pytest.raises(ValueError):
        rbe.tensor(A)[::-1]
    with pytest.raises(ValueError):
        rbe.tensor(A)[:, 3:0:-2]


def test_zero_step_raises():
    with pytest.raises(ValueError):
        A[::0]
    with pytest.raises(ValueError):
        rbe.tensor(A)[::0]


# ----------------------------------------------------------------- gather & co. vs torch
def _both(a, requires_grad=False):
    return rbe.tensor(a, requires_grad=requires_grad), torch.tensor(a, requires_grad=requires_grad)


def _close(r, t, tol=1e-12):
    assert tuple(r.shape) == tuple(t.shape)
    np.testing.assert_allclose(as_np(r), t.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_gather_matches_torch(dim):
    rng = np.random.default_rng(dim + 10)
    size = list(SHAPE)
    size[dim] = 6  # more picks than the dim has: duplicates
    idx = rng.integers(0, SHAPE[dim], size=size)
    xr, xt = _both(A, True)
    out_r = xr.gather(dim, rbe.tensor(idx))
    out_t = xt.gather(dim, torch.tensor(idx))
    _close(out_r, out_t)
    _close(rbe.gather(xr, dim, rbe.tensor(idx)), out_t)
    W = rng.standard_normal(size)
    (out_r * rbe.tensor(W)).sum().backward()
    (out_t * torch.tensor(W)).sum().backward()
    _close(xr.grad, xt.grad)


def test_gather_smaller_index_matches_torch():
    idx = np.array([[[0, 2]], [[1, 1]]])  # shape (2, 1, 2): smaller than x in every dim
    xr, xt = _both(A, True)
    out_r, out_t = xr.gather(2, rbe.tensor(idx)), xt.gather(2, torch.tensor(idx))
    _close(out_r, out_t)
    out_r.sum().backward()
    out_t.sum().backward()
    _close(xr.grad, xt.grad)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_scatter_add_matches_torch(dim):
    rng = np.random.default_rng(dim + 20)
    size = list(SHAPE)
    size[dim] = 7
    idx = rng.integers(0, SHAPE[dim], size=size)
    src = rng.standard_normal(size)
    xr, xt = _both(A, True)
    sr, st_ = _both(src, True)
    out_r = xr.scatter_add(dim, rbe.tensor(idx), sr)
    out_t = xt.scatter_add(dim, torch.tensor(idx), st_)
    _close(out_r, out_t)
    W = rng.standard_normal(SHAPE)
    (out_r * rbe.tensor(W)).sum().backward()
    (out_t * torch.tensor(W)).sum().backward()
    _close(xr.grad, xt.grad)
    _close(sr.grad, st_.grad)
    # the in-place variant on a plain tensor
    y = rbe.tensor(A)
    y.scatter_add_(dim, rbe.tensor(idx), rbe.tensor(src))
    _close(y, torch.tensor(A).scatter_add_(dim, torch.tensor(idx), torch.tensor(src)))


@pytest.mark.parametrize("dim", [0, 1, 2, -2])
def test_index_select_matches_torch(dim):
    rng = np.random.default_rng(dim + 30)
    idx = rng.integers(0, SHAPE[dim], size=6)
    xr, xt = _both(A, True)
    out_r = xr.index_select(dim, rbe.tensor(idx))
    out_t = xt.index_select(dim, torch.tensor(idx))
    _close(out_r, out_t)
    _close(rbe.index_select(xr, dim, rbe.tensor(idx)), out_t)
    np.testing.assert_array_equal(as_np(out_r), np.take(A, idx, axis=dim))
    W = rng.standard_normal(tuple(out_t.shape))
    (out_r * rbe.tensor(W)).sum().backward()
    (out_t * torch.tensor(W)).sum().backward()
    _close(xr.grad, xt.grad)


@pytest.mark.parametrize("alpha", [1.0, -2.5])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_index_add_matches_torch(dim, alpha):
    rng = np.random.default_rng(dim + 40)
    idx = rng.integers(0, SHAPE[dim], size=6)
    ssize = list(SHAPE)
    ssize[dim] = 6
    src = rng.standard_normal(ssize)
    xr, xt = _both(A, True)
    sr, st_ = _both(src, True)
    out_r = xr.index_add(dim, rbe.tensor(idx), sr, alpha=alpha)
    out_t = xt.index_add(dim, torch.tensor(idx), st_, alpha=alpha)
    _close(out_r, out_t)
    W = rng.standard_normal(SHAPE)
    (out_r * rbe.tensor(W)).sum().backward()
    (out_t * torch.tensor(W)).sum().backward()
    _close(xr.grad, xt.grad)
    _close(sr.grad, st_.grad)
    y = rbe.tensor(A)
    y.index_add_(dim, rbe.tensor(idx), rbe.tensor(src), alpha=alpha)
    _close(y, torch.tensor(A).index_add_(dim, torch.tensor(idx), torch.tensor(src), alpha=alpha))


@pytest.mark.parametrize("mask_shape", [SHAPE, (4, 5), (5,), (3, 1, 5), ()])
def test_masked_fill_matches_torch(mask_shape):
    rng = np.random.default_rng(len(mask_shape))
    mask = np.asarray(rng.random(mask_shape) < 0.5)
    xr, xt = _both(A, True)
    out_r = xr.masked_fill(rbe.tensor(mask), -3.0)
    out_t = xt.masked_fill(torch.tensor(mask), -3.0)
    _close(out_r, out_t)
    np.testing.assert_array_equal(as_np(out_r), np.where(mask, -3.0, A))
    W = rng.standard_normal(SHAPE)
    (out_r * rbe.tensor(W)).sum().backward()
    (out_t * torch.tensor(W)).sum().backward()
    _close(xr.grad, xt.grad)
    np.testing.assert_array_equal(as_np(xr.grad), np.where(mask, 0.0, W))


def test_masked_fill_with_tensor_value_gradient():
    mask = M345
    res = []
    for m in (rbe, torch):
        x = m.tensor(A, requires_grad=True)
        v = m.tensor(0.5, dtype=m.float64, requires_grad=True)
        out = x.masked_fill(m.tensor(mask), v)
        (out * m.tensor(A)).sum().backward()
        res.append((out.detach(), x.grad, v.grad))
    for r, t in zip(res[0], res[1]):
        np.testing.assert_allclose(as_np(r), t.numpy(), rtol=1e-12)


def test_masked_fill_inplace_and_int():
    a = (A * 10).astype(np.int64)
    y = rbe.tensor(a)
    y.masked_fill_(rbe.tensor(M34[:, :, None]), 9)
    np.testing.assert_array_equal(as_np(y), np.where(M34[:, :, None], 9, a))
    assert y.dtype == rbe.int64


def test_gather_index_errors():
    x = rbe.tensor(A)
    with pytest.raises(IndexError):
        x.gather(1, rbe.tensor(np.full((3, 2, 5), 4)))
    with pytest.raises(IndexError):
        x.gather(2, rbe.tensor(np.full((3, 4, 1), -1)))
    with pytest.raises(IndexError):
        x.gather(3, rbe.tensor(np.zeros((3, 4, 5), dtype=np.int64)))
    with pytest.raises((TypeError, RuntimeError)):
        x.gather(0, rbe.tensor(np.zeros((3, 4, 5))))


def test_scatter_add_index_errors():
    x = rbe.tensor(A)
    src = rbe.tensor(np.ones((1, 4, 5)))
    with pytest.raises(IndexError):
        x.scatter_add(0, rbe.tensor(np.full((1, 4, 5), 3)), src)
    with pytest.raises(IndexError):
        x.scatter_add(0, rbe.tensor(np.full((1, 4, 5), -1)), src)
    with pytest.raises(IndexError):
        x.scatter_add_(0, rbe.tensor(np.full((1, 4, 5), 9)), src)
    np.testing.assert_array_equal(as_np(x), A)


def test_index_select_index_errors():
    x = rbe.tensor(A)
    with pytest.raises(IndexError):
        x.index_select(0, rbe.tensor([0, 3]))
    with pytest.raises(IndexError):
        x.index_select(2, rbe.tensor([-1]))
    with pytest.raises(IndexError):
        x.index_select(3, rbe.tensor([0]))


def test_index_add_index_errors():
    x = rbe.tensor(A)
    with pytest.raises(IndexError):
        x.index_add(1, rbe.tensor([0, 4]), rbe.tensor(np.ones((3, 2, 5))))
    with pytest.raises(IndexError):
        x.index_add(1, rbe.tensor([0, -1]), rbe.tensor(np.ones((3, 2, 5))))
    with pytest.raises(IndexError):
        x.index_add_(0, rbe.tensor([5]), rbe.tensor(np.ones((1, 4, 5))))
    np.testing.assert_array_equal(as_np(x), A)


def test_index_ops_on_non_contiguous_tensors_match_torch():
    """Transposed inputs, strided index tensors, and in-place variants writing through views."""
    rng = np.random.default_rng(99)
    a = rng.standard_normal((4, 5))
    idx = rng.integers(0, 4, size=(5, 6))
    m = rng.random((5, 4)) < 0.5
    res = {}
    for mod in (rbe, torch):
        x = mod.tensor(a).T  # (5, 4), strides (1, 5)
        i = mod.tensor(idx).T[:5, :4]  # strided index (5, 4)
        sel = mod.tensor([3, 0, 1, 2, 3, 3])[::2]
        out = [x.gather(1, i), x.index_select(1, sel), x.masked_fill(mod.tensor(m), 9.0)]
        b1 = mod.tensor(a)
        b1.T.masked_fill_(mod.tensor(m), 9.0)
        b2 = mod.tensor(a)
        b2.T.index_add_(0, mod.tensor([1, 1]), mod.ones(2, 4, dtype=mod.float64))
        b3 = mod.tensor(a)
        b3.T.scatter_add_(1, mod.tensor(idx[:, :2]), mod.ones(5, 2, dtype=mod.float64))
        res[mod] = out + [b1, b2, b3]
    for r, t in zip(res[rbe], res[torch]):
        _close(r, t)
