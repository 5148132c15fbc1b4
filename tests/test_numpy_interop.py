"""NumPy interop: ``rbe.from_numpy`` and ``Tensor.numpy`` share memory, dtype
inference of ``rbe.tensor`` follows torch, ``tolist``/``item`` round-trip, and
arrays stay alive for as long as a tensor uses them.
"""
from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

import rbe

DTYPES = [np.float32, np.float64, np.int64, np.bool_]
RBE_OF = {np.float32: rbe.float32, np.float64: rbe.float64, np.int64: rbe.int64, np.bool_: rbe.bool}


def base_array(dt, shape=(4, 6)):
    a = np.arange(int(np.prod(shape))).reshape(shape)
    if dt == np.bool_:
        return (a % 3 == 0)
    return a.astype(dt)


LAYOUTS = {
    "contiguous": lambda a: a,
    "reversed": lambda a: a[::-1],
    "transposed": lambda a: a.T,
    "column-step": lambda a: a[:, ::2],
    "reversed-columns": lambda a: a[:, ::-1],
    "both-negative": lambda a: a[::-2, ::-3],
    "offset-slice": lambda a: a[1:3, 2:5],
}


@pytest.fixture
def default_dtype_guard():
    old = rbe.get_default_dtype()
    try:
        yield
    finally:
        rbe.set_default_dtype(old)
    assert rbe.get_default_dtype() == old


def _new_value(dt):
    return {np.float32: 42.5, np.float64: -3.25, np.int64: 77, np.bool_: True}[dt]


# ----------------------------------------------------------------- from_numpy shares memory
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
def test_from_numpy_reads_the_right_elements(dt, layout):
    a = LAYOUTS[layout](base_array(dt))
    t = rbe.from_numpy(a)
    assert t.dtype == RBE_OF[dt]
    assert tuple(t.shape) == a.shape
    np.testing.assert_array_equal(np.array(t.tolist(), dtype=dt).reshape(a.shape), a)
    # a computation on the strided tensor yields a fresh, correct result
    if dt != np.bool_:
        np.testing.assert_array_equal((t * 2).numpy(), a * 2)
    np.testing.assert_array_equal(t.contiguous().numpy(), a)
    np.testing.assert_array_equal(t.flatten().numpy(), a.reshape(-1))


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
def test_from_numpy_tensor_writes_are_seen_by_the_array(dt, layout):
    base = base_array(dt)
    a = LAYOUTS[layout](base)
    expect_base = base.copy()
    t = rbe.from_numpy(a)
    # in-place op on the whole tensor
    if dt == np.bool_:
        t.fill_(True)
        LAYOUTS[layout](expect_base)[...] = True
    else:
        t.add_(1)
        LAYOUTS[layout](expect_base)[...] += 1
    np.testing.assert_array_equal(a, LAYOUTS[layout](expect_base))
    np.testing.assert_array_equal(base, expect_base)  # elements outside the view are untouched
    # index assignment on the tensor
    v = _new_value(dt)
    t[0, 1] = v
    LAYOUTS[layout](expect_base)[0, 1] = v
    np.testing.assert_array_equal(base, expect_base)
    # an in-place op on a view of the tensor
    t[-1].zero_()
    LAYOUTS[layout](expect_base)[-1] = 0
    np.testing.assert_array_equal(base, expect_base)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
def test_from_numpy_array_writes_are_seen_by_the_tensor(dt, layout):
    base = base_array(dt)
    a = LAYOUTS[layout](base)
    t = rbe.from_numpy(a)
    v = _new_value(dt)
    a[0, 0] = v
    a[-1, -1] = v
    assert t[0, 0].item() == v and t[-1, -1].item() == v
    if dt == np.bool_:
        np.logical_not(a, out=a)
    else:
        a *= 3
    np.testing.assert_array_equal(t.numpy(), a)
    np.testing.assert_array_equal(np.array(t.tolist(), dtype=dt).reshape(a.shape), a)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_from_numpy_strides_and_pointer_match_numpy(layout):
    a = LAYOUTS[layout](base_array(np.float64))
    t = rbe.from_numpy(a)
    assert t.stride() == tuple(s // a.itemsize for s in a.strides)
    assert t.data_ptr() == a.ctypes.data
    assert t.is_contiguous() == a.flags.c_contiguous
    back = t.numpy()
    assert np.shares_memory(back, a)
    assert back.strides == a.strides


@pytest.mark.parametrize("shape", [(), (0,), (3, 0), (1,), (2, 1, 3)])
def test_from_numpy_odd_shapes(shape):
    a = np.asarray(np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) + 0.5)
    t = rbe.from_numpy(a)
    assert tuple(t.shape) == shape
    assert t.numel() == a.size
    np.testing.assert_array_equal(t.numpy(), a)
    t.mul_(2)
    np.testing.assert_array_equal(a, (np.arange(int(np.prod(shape))).reshape(shape) + 0.5) * 2)


@pytest.mark.parametrize("dt", [np.int32, np.int16, np.uint8, np.float16, np.complex64, np.complex128, object])
def test_from_numpy_unsupported_dtypes_raise_type_error(dt):
    a = np.zeros(3, dtype=dt)
    with pytest.raises(TypeError):
        rbe.from_numpy(a)


def test_from_numpy_strides_not_a_multiple_of_itemsize_raise_like_torch():
    s = np.zeros(4, dtype=[("x", "f8"), ("y", "f4")])
    field = s["x"]  # strides 12, itemsize 8
    with pytest.raises(ValueError):
        torch.from_numpy(field)
    with pytest.raises(ValueError):
        rbe.from_numpy(field)


def test_from_numpy_broadcast_array_zero_strides():
    b = np.broadcast_to(np.arange(3.0), (2, 3))
    t = rbe.from_numpy(b)
    assert t.stride() == tuple(x // 8 for x in b.strides) == (0, 1)
    np.testing.assert_array_equal(t.numpy(), b)
    np.testing.assert_array_equal((t * 2).numpy(), b * 2)
    np.testing.assert_array_equal(t.sum(0).numpy(), b.sum(0))


def test_from_numpy_rejects_non_arrays():
    with pytest.raises(TypeError):
        rbe.from_numpy([1.0, 2.0])
    with pytest.raises(TypeError):
        rbe.from_numpy(torch.zeros(2))


def test_from_numpy_read_only_array_is_not_written():
    a = np.arange(4.0)
    a.flags.writeable = False
    t = rbe.from_numpy(a)
    np.testing.assert_array_equal(t.numpy(), a)
    with pytest.raises((ValueError, RuntimeError)):
        a += 1  # the oracle: NumPy refuses too
    with pytest.raises((ValueError, RuntimeError)):
        t.add_(1)
    np.testing.assert_array_equal(a, np.arange(4.0))
    np.testing.assert_array_equal((t + 1).numpy(), np.arange(4.0) + 1)  # out of place is fine


def test_tensor_and_as_tensor_copy_vs_share():
    a = np.arange(5.0)
    copied = rbe.tensor(a)
    shared = rbe.as_tensor(a)
    a[0] = 100.0
    assert copied[0].item() == 0.0
    assert shared[0].item() == 100.0
    assert not np.shares_memory(copied.numpy(), a)
    assert np.shares_memory(shared.numpy(), a)
    # torch agrees on which of the two copies
    ta = np.arange(5.0)
    tc, ts = torch.tensor(ta), torch.as_tensor(ta)
    ta[0] = 100.0
    assert tc[0].item() == copied[0].item()
    assert ts[0].item() == shared[0].item()


# ----------------------------------------------------------------- numpy() is a view
@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
def test_numpy_is_a_view_both_ways(dt):
    t = rbe.tensor(base_array(dt))
    n = t.numpy()
    assert n.dtype == np.dtype(dt)
    assert n.shape == tuple(t.shape)
    assert n.flags.writeable
    v = _new_value(dt)
    n[1, 2] = v
    assert t[1, 2].item() == v
    t[2, 3] = v
    assert n[2, 3] == v
    if dt != np.bool_:
        t.mul_(2)
        np.testing.assert_array_equal(n, np.array(t.tolist(), dtype=dt))
    assert np.shares_memory(n, t.numpy())


@pytest.mark.parametrize("view", ["T", "slice", "select", "step"])
def test_numpy_of_a_view_is_a_view(view):
    base = rbe.tensor(np.arange(24.0).reshape(4, 6))
    ref = np.arange(24.0).reshape(4, 6)
    make = {
        "T": lambda x: x.T if not isinstance(x, np.ndarray) else x.T,
        "slice": lambda x: x[1:3, 2:],
        "select": lambda x: x[2],
        "step": lambda x: x[:, 1::2],
    }[view]
    n = make(base).numpy()
    r = make(ref)
    np.testing.assert_array_equal(n, r)
    n[...] = -1.0
    r[...] = -1.0
    np.testing.assert_array_equal(base.numpy(), ref)


def test_numpy_refuses_tensor_that_requires_grad():
    t = rbe.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        t.numpy()
    with pytest.raises(RuntimeError):
        torch.tensor([1.0, 2.0], requires_grad=True).numpy()  # the oracle
    y = t * 2  # a non-leaf requiring grad
    with pytest.raises(RuntimeError, match="detach"):
        y.numpy()
    d = t.detach().numpy()
    np.testing.assert_array_equal(d, [1.0, 2.0])
    assert np.shares_memory(d, t.detach().numpy())
    with rbe.no_grad():
        z = t * 3
    np.testing.assert_array_equal(z.numpy(), [3.0, 6.0])


def test_np_asarray_refuses_tensor_that_requires_grad():
    """np.asarray goes through the same check as .numpy() (torch raises here too)."""
    with pytest.raises(RuntimeError):
        np.asarray(torch.tensor([1.0, 2.0], requires_grad=True))  # the oracle
    t = rbe.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        np.asarray(t)
    with pytest.raises(RuntimeError, match="detach"):
        np.asarray(t * 2)
    np.testing.assert_array_equal(np.asarray(t.detach()), [1.0, 2.0])


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
def test_np_asarray_of_tensor(dt):
    a = base_array(dt)
    t = rbe.tensor(a)
    n = np.asarray(t)
    assert isinstance(n, np.ndarray)
    assert n.dtype == a.dtype
    np.testing.assert_array_equal(n, a)
    assert np.shares_memory(n, t.numpy())
    np.testing.assert_array_equal(np.asarray(t, dtype=np.float64), a.astype(np.float64))
    np.testing.assert_array_equal(np.array(t.T), a.T)
    # NumPy functions take tensors
    np.testing.assert_array_equal(np.sum(np.asarray(t[1:]), axis=0), a[1:].sum(axis=0))


# ----------------------------------------------------------------- dtype inference of rbe.tensor
@pytest.mark.parametrize(
    "data, want",
    [
        ([1, 2, 3], "int64"),
        ([[1, -2], [3, 4]], "int64"),
        (7, "int64"),
        ([1.0, 2.0], "float32"),
        ([1, 2.5], "float32"),
        (2.5, "float32"),
        ([True, False], "bool"),
        (True, "bool"),
        ([True, 1], "int64"),
        ([1.0, True], "float32"),
        ([], "float32"),
        ([[]], "float32"),
        (np.array([1.0, 2.0]), "float64"),
        (np.array([1.0, 2.0], dtype=np.float32), "float32"),
        (np.array(2.5), "float64"),
        (np.array([1, 2]), "int64"),
        (np.array([True]), "bool"),
        (np.float64(1.5), "float64"),
        (np.float32(1.5), "float32"),
        (np.int64(3), "int64"),
        (np.bool_(True), "bool"),
    ],
    ids=lambda v: repr(v) if not isinstance(v, str) else v,
)
def test_tensor_dtype_inference_matches_torch(data, want):
    # torch is the oracle for the expected dtype
    assert str(torch.tensor(data).dtype) == f"torch.{want}"
    t = rbe.tensor(data)
    assert t.dtype == getattr(rbe, want)
    assert tuple(t.shape) == tuple(torch.tensor(data).shape) == np.asarray(data).shape
    np.testing.assert_array_equal(t.numpy(), np.asarray(data).astype(want))


def test_tensor_explicit_dtype_wins():
    assert rbe.tensor([1, 2], dtype=rbe.float64).dtype == rbe.float64
    assert rbe.tensor([1.7, -2.2], dtype=rbe.int64).tolist() == torch.tensor([1.7, -2.2], dtype=torch.int64).tolist()
    assert rbe.tensor(np.array([1.0, 2.0]), dtype=rbe.float32).dtype == rbe.float32
    assert rbe.tensor([0, 2], dtype=rbe.bool).tolist() == [False, True]


def test_set_default_dtype_changes_inference(default_dtype_guard):
    assert rbe.get_default_dtype() == rbe.float32
    rbe.set_default_dtype(rbe.float64)
    assert rbe.get_default_dtype() == rbe.float64
    assert rbe.tensor([1.0, 2.0]).dtype == rbe.float64
    assert rbe.tensor(0.1).item() == 0.1  # no float32 rounding
    assert rbe.tensor([1, 2]).dtype == rbe.int64  # ints are unaffected
    assert rbe.tensor([True]).dtype == rbe.bool
    assert rbe.tensor(np.array([1.0], dtype=np.float32)).dtype == rbe.float32  # arrays keep theirs
    assert rbe.zeros(2).dtype == rbe.float64
    assert rbe.ones(2).dtype == rbe.float64
    assert rbe.arange(3).dtype == rbe.int64
    assert rbe.arange(0.0, 1.0, 0.5).dtype == rbe.float64
    assert (rbe.tensor([1, 2]) / 2).dtype == rbe.float64  # int true division: default dtype
    rbe.set_default_dtype(rbe.float32)
    assert rbe.tensor([1.0]).dtype == rbe.float32
    assert rbe.tensor(0.1).item() == float(np.float32(0.1))
    with pytest.raises((TypeError, ValueError)):
        rbe.set_default_dtype(rbe.int64)
    assert rbe.get_default_dtype() == rbe.float32


def test_default_dtype_is_restored_by_the_fixture():
    # runs after the test above: the fixture must have restored float32
    assert rbe.get_default_dtype() == rbe.float32
    assert rbe.tensor([0.5]).dtype == rbe.float32


# ----------------------------------------------------------------- tolist / item
@pytest.mark.parametrize(
    "data",
    [
        [[1, 2, 3], [4, 5, 6]],
        [[-1.5, 2.25], [0.0, 1e-3]],
        [True, False, True],
        [[[1]], [[2]]],
        [],
        [[], []],
        3,
        -2.5,
        False,
    ],
    ids=repr,
)
@pytest.mark.parametrize("dtype", [None, "float64"])
def test_tolist_round_trip(data, dtype):
    rd = None if dtype is None else rbe.float64
    td = None if dtype is None else torch.float64
    t = rbe.tensor(data, dtype=rd)
    got = t.tolist()
    want = torch.tensor(data, dtype=td).tolist()
    assert got == want
    assert type(got) is type(want)
    if isinstance(want, list):
        flat_g, flat_w = np.asarray(got).ravel().tolist(), np.asarray(want).ravel().tolist()
        assert [type(v) for v in flat_g] == [type(v) for v in flat_w]
    # and back again
    assert rbe.tensor(got, dtype=t.dtype).tolist() == got


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
def test_item_round_trip(dt):
    for v in ([3], [[1]], 0):
        a = np.asarray(v).astype(dt)
        t = rbe.from_numpy(a)
        x = t.item()
        assert x == a.item()
        assert type(x) is type(a.item())
        assert rbe.tensor(x, dtype=t.dtype).item() == x
    f64 = rbe.tensor(0.1, dtype=rbe.float64)
    assert f64.item() == 0.1
    assert rbe.tensor(0.1).item() == float(np.float32(0.1)) == torch.tensor(0.1).item()


def test_item_of_many_elements_raises():
    with pytest.raises((RuntimeError, ValueError)):
        np.arange(2.0).item()
    with pytest.raises((RuntimeError, ValueError)):
        rbe.tensor([1.0, 2.0]).item()
    with pytest.raises((RuntimeError, ValueError)):
        rbe.zeros(0).item()


def test_large_int64_values_survive():
    big = [2**62 + 1, -(2**63), 2**63 - 1]
    t = rbe.tensor(big)
    assert t.dtype == rbe.int64
    assert t.tolist() == big
    assert t.numpy().tolist() == big
    assert rbe.from_numpy(np.array(big, dtype=np.int64))[2].item() == 2**63 - 1


# ----------------------------------------------------------------- lifetime
def _churn():
    """Allocate and free memory so freed buffers would be overwritten."""
    junk = [np.full(64 + 7 * i, -12345.0) for i in range(300)]
    del junk


@pytest.mark.parametrize("layout", ["contiguous", "reversed", "column-step", "offset-slice"])
@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
def test_tensor_keeps_the_array_alive(dt, layout):
    want = LAYOUTS[layout](base_array(dt)).copy()
    a = LAYOUTS[layout](base_array(dt))
    t = rbe.from_numpy(a)
    del a
    gc.collect()
    _churn()
    np.testing.assert_array_equal(np.array(t.tolist(), dtype=dt).reshape(want.shape), want)
    np.testing.assert_array_equal(t.numpy(), want)
    if dt != np.bool_:
        t.add_(1)
        _churn()
        np.testing.assert_array_equal(t.numpy(), want + 1)


def test_view_of_a_tensor_keeps_the_array_alive():
    a = np.arange(100.0)
    t = rbe.from_numpy(a)[10:20:3]
    del a
    gc.collect()
    _churn()
    np.testing.assert_array_equal(t.numpy(), np.arange(100.0)[10:20:3])


def test_numpy_view_keeps_the_tensor_storage_alive():
    t = rbe.arange(50, dtype=rbe.float64) * 2
    n = t.numpy()
    del t
    gc.collect()
    _churn()
    np.testing.assert_array_equal(n, np.arange(50.0) * 2)
    n += 1  # still writable memory that is ours
    np.testing.assert_array_equal(n, np.arange(50.0) * 2 + 1)


def test_round_trip_through_both_keeps_memory_shared_and_alive():
    a = np.arange(12.0).reshape(3, 4)
    n = rbe.from_numpy(a).numpy()
    assert np.shares_memory(n, a)
    del a
    gc.collect()
    _churn()
    np.testing.assert_array_equal(n, np.arange(12.0).reshape(3, 4))
