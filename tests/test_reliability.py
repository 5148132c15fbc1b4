"""Reliability items checked against torch: pickling and copying (dtypes,
generators, tensors that share memory), from_numpy on ndarray subclasses
that lie about their layout (in a subprocess, so a crash fails the test), and
arguments torch refuses that rbe used to accept silently (each must raise
torch's exception class, or give torch's result where torch does not raise)."""
import copy
import math
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import rbe
import rbe.nn.functional as F
from rbe import errors

MODS = {"torch": (torch, TF), "rbe": (rbe, F)}


def _raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the test inspects the class
        return e
    return None


# ------------------------------------------------------------------ pickling and copying
@pytest.mark.parametrize("name", ["float32", "float64", "int64", "bool"])
def test_dtypes_pickle_and_copy_to_the_same_singleton(name):
    for m in (torch, rbe):
        d = getattr(m, name)
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            assert pickle.loads(pickle.dumps(d, protocol=proto)) is d
        assert copy.copy(d) is d and copy.deepcopy(d) is d
        assert copy.deepcopy({"dt": d, "l": [d]})["l"][0] is d


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy"])
def test_generator_copies_keep_the_state_and_continue_the_stream(how):
    dup = {"pickle": lambda g: pickle.loads(pickle.dumps(g)), "deepcopy": copy.deepcopy, "copy": copy.copy}[how]
    draws = {}
    for name, m in (("torch", torch), ("rbe", rbe)):
        g = m.Generator()
        g.manual_seed(1234)
        m.rand(5, generator=g)  # advance past the start
        g2 = dup(g)
        assert g2 is not g and type(g2) is type(g) and g2.initial_seed() == 1234
        a, b = m.rand(4, generator=g), m.rand(4, generator=g2)
        assert a.tolist() == b.tolist()  # same stream from the same point
        m.rand(3, generator=g)  # the copies are independent
        assert m.rand(2, generator=g2).tolist() != m.rand(2, generator=g).tolist()
        draws[name] = a
    assert rbe.Generator().manual_seed(7).get_state() == pickle.loads(pickle.dumps(rbe.Generator().manual_seed(7))).get_state()


def _base_and_view_ops(m):
    b = m.zeros(4, 3)
    return {"base": b, "row": b[1], "col": b[:, 2], "t": b.t(), "other": m.ones(2)}


def test_deepcopy_keeps_memory_shared_between_a_tensor_and_its_views():
    res = {}
    for name, (m, _) in MODS.items():
        d = _base_and_view_ops(m)
        c = copy.deepcopy(d)
        c["row"][0] = 5.0
        c["col"][3] = 7.0
        c["t"][0, 2] = 9.0
        res[name] = (c["base"].tolist(), d["base"].tolist(), c["other"].tolist())
        assert c["row"].stride() == d["row"].stride() and c["t"].stride() == d["t"].stride()
        assert c["row"].storage_offset() == d["row"].storage_offset()
    assert res["rbe"] == res["torch"]
    assert res["rbe"][1] == [[0.0] * 3] * 4  # the original is untouched


def test_deepcopy_keeps_requires_grad_grad_and_subclass_attributes():
    for m in (torch, rbe):
        p = m.ones(3, requires_grad=True)
        (p * 2).sum().backward()
        c = copy.deepcopy([p, p])
        assert c[0] is c[1] and c[0] is not p
        assert c[0].requires_grad and c[0].grad.tolist() == [2.0, 2.0, 2.0]
        c[0].grad[0] = 9.0
        assert p.grad[0].item() == 2.0
        v = copy.deepcopy(m.arange(6.0)[1::2])  # a view alone: its storage comes along
        assert v.tolist() == [1.0, 3.0, 5.0]


def test_copy_copy_shares_memory_as_torch():
    res = {}
    for name, (m, _) in MODS.items():
        t = m.zeros(3, requires_grad=True)
        t.grad = m.ones(3)
        c = copy.copy(t)
        with m.no_grad():
            c[0] = 5.0
        res[name] = (t.tolist(), c is t, c.requires_grad, c.grad is None, type(c).__name__)
        p = m.nn.Parameter(m.zeros(2))
        cp = copy.copy(p)
        with m.no_grad():
            cp[1] = 3.0
        res[name] += (p.tolist(), type(cp).__name__, cp.requires_grad)
    assert res["rbe"] == res["torch"]
    assert res["rbe"][0] == [5.0, 0.0, 0.0]


def test_pickled_tensors_still_roundtrip():
    t = rbe.arange(6.0).reshape(2, 3).t()
    back = pickle.loads(pickle.dumps({"t": t, "d": rbe.float64}))
    assert back["t"].tolist() == t.tolist() and back["d"] is rbe.float64


# ------------------------------------------------------------------ from_numpy on lying subclasses
def test_from_numpy_reads_the_real_buffer_of_lying_subclasses():
    code = textwrap.dedent(
        """
        import numpy as np, rbe
        from rbe.errors import ArgumentError

        class Missing(np.ndarray):
            @property
            def __array_interface__(self):
                return {"version": 3}

        class TooLong(np.ndarray):
            @property
            def __array_interface__(self):
                d = dict(np.ndarray.__array_interface__.__get__(self))
                d["shape"] = (10**9,)
                d["strides"] = None
                return d

        class BadShape(np.ndarray):
            @property
            def shape(self):
                return (10**9,)

        base = np.arange(4.0)
        for cls in (Missing, TooLong, BadShape):
            a = base.view(cls)
            for f in (rbe.from_numpy, rbe.as_tensor, rbe.tensor):
                t = f(a)
                assert t.tolist() == [0.0, 1.0, 2.0, 3.0], (cls, f)
        t = rbe.from_numpy(base.view(TooLong))
        t[0] = 10.0
        assert base[0] == 10.0  # from_numpy still shares the memory
        # a view reaching past the memory under it is refused
        x = np.arange(10.0)
        try:
            rbe.from_numpy(np.lib.stride_tricks.as_strided(x, shape=(10**6,), strides=(8,)))
            print("accepted")
        except ArgumentError as e:
            print("refused:", e)
        # legitimate layouts still share memory
        assert rbe.from_numpy(np.lib.stride_tricks.as_strided(x, shape=(5,), strides=(16,))).tolist() == [0, 2, 4, 6, 8]
        assert rbe.from_numpy(x[::-3]).tolist() == [9, 6, 3, 0]
        assert tuple(rbe.from_numpy(np.broadcast_to(x, (3, 10))).shape) == (3, 10)
        assert rbe.from_numpy(np.frombuffer(bytes(16), dtype=np.float64)).tolist() == [0, 0]
        assert rbe.from_numpy(np.matrix([[1.0, 2.0]])).tolist() == [[1.0, 2.0]]
        assert tuple(rbe.from_numpy(np.zeros((0, 3))).shape) == (0, 3)
        print("ok")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    out = r.stdout.splitlines()
    assert out[-1] == "ok" and out[0].startswith("refused: from_numpy:"), r.stdout


# ------------------------------------------------------------------ silent accepts torch refuses
def _set(m, idx, v):
    x = m.zeros(3, dtype=m.int64)
    x[idx] = v
    return x


def _grad_empty(m):
    x = m.tensor(1.0, requires_grad=True)
    return m.autograd.grad(x * 2, [])


def _bn(m, eps, training):
    bn = m.nn.BatchNorm1d(3, eps=eps)
    bn.train(training)
    return bn(m.randn(4, 3))


REFUSED = {
    "full(nan, int64)": lambda m, F: m.full((2,), float("nan"), dtype=m.int64),
    "full(inf, int64)": lambda m, F: m.full((2,), float("inf"), dtype=m.int64),
    "full(-inf, int64)": lambda m, F: m.full((2,), -float("inf"), dtype=m.int64),
    "full(1e30, int64)": lambda m, F: m.full((2,), 1e30, dtype=m.int64),
    "full(2.0**63, int64)": lambda m, F: m.full((2,), 2.0**63, dtype=m.int64),
    "full(1e39, float32)": lambda m, F: m.full((2,), 1e39, dtype=m.float32),
    "full_like(nan, int64)": lambda m, F: m.full_like(m.zeros(2, dtype=m.int64), float("nan")),
    "new_full(nan, int64)": lambda m, F: m.zeros(2, dtype=m.int64).new_full((2,), float("nan")),
    "fill_(nan) int64": lambda m, F: m.zeros(2, dtype=m.int64).fill_(float("nan")),
    "fill_(inf) int64": lambda m, F: m.zeros(2, dtype=m.int64).fill_(float("inf")),
    "fill_(1e30) int64": lambda m, F: m.zeros(2, dtype=m.int64).fill_(1e30),
    "fill_(1e39) float32": lambda m, F: m.zeros(2).fill_(1e39),
    "x[0] = nan int64": lambda m, F: _set(m, 0, float("nan")),
    "x[:] = inf int64": lambda m, F: _set(m, slice(None), float("inf")),
    "x[mask] = 1e30 int64": lambda m, F: _set(m, m.tensor([True, False, True]), 1e30),
    "masked_fill(nan) int64": lambda m, F: m.zeros(2, dtype=m.int64).masked_fill(m.tensor([True, False]), float("nan")),
    "int(tensor(nan))": lambda m, F: int(m.tensor(float("nan"))),
    "int(tensor(inf))": lambda m, F: int(m.tensor(float("inf"))),
    "bce input > 1": lambda m, F: F.binary_cross_entropy(m.tensor([1.5]), m.tensor([0.5])),
    "bce input < 0": lambda m, F: F.binary_cross_entropy(m.tensor([-0.5, 0.5]), m.tensor([0.5, 0.5])),
    "bce input nan": lambda m, F: F.binary_cross_entropy(m.tensor([float("nan")]), m.tensor([0.5])),
    "bce target > 1": lambda m, F: F.binary_cross_entropy(m.tensor([0.5]), m.tensor([1.5])),
    "bce target < 0": lambda m, F: F.binary_cross_entropy(m.tensor([0.5]), m.tensor([-1.0])),
    "BCELoss input > 1": lambda m, F: m.nn.BCELoss()(m.tensor([2.0]), m.tensor([1.0])),
    "huber_loss delta=0": lambda m, F: F.huber_loss(m.tensor([0.5]), m.tensor([1.5]), delta=0.0),
    "huber_loss delta<0": lambda m, F: F.huber_loss(m.tensor([0.5]), m.tensor([1.5]), delta=-1.0),
    "huber_loss delta nan": lambda m, F: F.huber_loss(m.tensor([0.5]), m.tensor([1.5]), delta=float("nan")),
    "HuberLoss delta<0": lambda m, F: m.nn.HuberLoss(delta=-1.0)(m.tensor([0.5]), m.tensor([1.5])),
    "smooth_l1_loss beta<0": lambda m, F: F.smooth_l1_loss(m.tensor([0.5]), m.tensor([1.5]), beta=-1.0),
    "SmoothL1Loss beta<0": lambda m, F: m.nn.SmoothL1Loss(beta=-0.5)(m.tensor([0.5]), m.tensor([1.5])),
    "bernoulli p > 1": lambda m, F: m.bernoulli(m.tensor([0.5, 1.5])),
    "bernoulli p < 0": lambda m, F: m.bernoulli(m.tensor([-0.5])),
    "bernoulli p nan": lambda m, F: m.bernoulli(m.tensor([float("nan")])),
    "bernoulli p float64 > 1": lambda m, F: m.bernoulli(m.tensor([2.0], dtype=m.float64)),
    "bernoulli(x, p=1.5)": lambda m, F: m.bernoulli(m.zeros(2), 1.5),
    "bernoulli_(nan)": lambda m, F: m.zeros(2).bernoulli_(float("nan")),
    "isclose rtol<0": lambda m, F: m.isclose(m.ones(2), m.ones(2), rtol=-1.0),
    "isclose atol<0": lambda m, F: m.isclose(m.ones(2), m.ones(2), atol=-1.0),
    "isclose rtol nan": lambda m, F: m.isclose(m.ones(2), m.ones(2), rtol=float("nan")),
    "allclose atol<0": lambda m, F: m.allclose(m.ones(2), m.ones(2), atol=-1e-9),
    "trunc_normal_ a>b": lambda m, F: m.nn.init.trunc_normal_(m.zeros(3), a=2.0, b=-2.0),
    "trunc_normal_ b nan": lambda m, F: m.nn.init.trunc_normal_(m.zeros(3), a=-1.0, b=float("nan")),
    "BatchNorm1d eps<0 training": lambda m, F: _bn(m, -1.0, True),
    "BatchNorm1d eps=0 training": lambda m, F: _bn(m, 0.0, True),
    "BatchNorm1d eps<0 eval": lambda m, F: _bn(m, -1.0, False),
    "batch_norm eps<0": lambda m, F: F.batch_norm(m.randn(4, 3), m.zeros(3), m.ones(3), training=True, eps=-1.0),
    "Embedding padding_idx >= num": lambda m, F: m.nn.Embedding(5, 3, padding_idx=5),
    "Embedding padding_idx < -num": lambda m, F: m.nn.Embedding(5, 3, padding_idx=-6),
    "Embedding.from_pretrained padding_idx": lambda m, F: m.nn.Embedding.from_pretrained(m.zeros(5, 3), padding_idx=10),
    "F.embedding padding_idx": lambda m, F: F.embedding(m.tensor([1]), m.zeros(5, 3), padding_idx=10),
    "autograd.grad(y, [])": lambda m, F: _grad_empty(m),
}


@pytest.mark.parametrize("name", REFUSED)
def test_rbe_refuses_what_torch_refuses_with_torch_class(name):
    fn = REFUSED[name]
    te = _raised(lambda: fn(torch, TF))
    assert te is not None, f"torch accepts {name}: the case is wrong"
    re = _raised(lambda: fn(rbe, F))
    assert re is not None, f"rbe accepts {name}"
    assert isinstance(re, type(te)), (name, type(re).__mro__, type(te))
    assert str(re), name


def test_int_of_a_float_tensor_is_python_int_of_the_float():
    for v in (1e30, -2.7, 2.0**70, -(2.0**63), 0.0):
        assert int(rbe.tensor(v, dtype=rbe.float64)) == int(torch.tensor(v, dtype=torch.float64)) == int(v)
    assert str(_raised(lambda: int(rbe.tensor(float("nan"))))) == "cannot convert float NaN to integer"


def test_float_values_written_into_int64_truncate_exactly_as_torch():
    # accepted values: truncation toward zero, and the exact edges of the int64 range
    for v in (2.5, -2.5, -(2.0**63), 2.0**63 - 1024, 1e18):
        for m in (torch, rbe):
            assert m.full((1,), v, dtype=m.int64).item() == int(v)
            assert m.zeros(1, dtype=m.int64).fill_(v).item() == int(v)
            assert _set(m, 0, v)[0].item() == int(v)
    # Python ints are stored exactly (not rounded through a double)
    big = 2**62 + 1
    for m in (torch, rbe):
        assert m.full((1,), big, dtype=m.int64).item() == big
        assert m.zeros(1, dtype=m.int64).fill_(big).item() == big
        assert _set(m, 0, big)[0].item() == big
    # float32: infinities and NaN are values, not overflow
    for v in (float("inf"), -float("inf")):
        assert rbe.full((1,), v).item() == torch.full((1,), v).item()
    assert math.isnan(rbe.full((1,), float("nan")).item())


def test_a_refused_write_changes_nothing():
    x = rbe.tensor([1, 2, 3])
    for f in (lambda: x.fill_(float("nan")), lambda: x.__setitem__(slice(None), float("inf")), lambda: x.masked_fill_(x > 1, 1e30)):
        with pytest.raises(errors.ArgumentError):
            f()
        assert x.tolist() == [1, 2, 3]
    g = rbe.Generator().manual_seed(3)
    state = g.get_state()
    with pytest.raises(errors.ArgumentError):
        rbe.bernoulli(rbe.tensor([0.5, 1.5]), generator=g)
    assert g.get_state() == state  # nothing was drawn
    rbe.manual_seed(5)
    s = rbe.get_rng_state()
    with pytest.raises(errors.ArgumentError):
        rbe.bernoulli(rbe.tensor([float("nan")]))
    assert rbe.get_rng_state() == s


def test_valid_probabilities_and_edges_still_work():
    assert rbe.bernoulli(rbe.tensor([0.0, 1.0, 1.0])).tolist() == [0.0, 1.0, 1.0]
    assert rbe.bernoulli(rbe.zeros(3), 1.0).tolist() == [1.0, 1.0, 1.0]
    assert F.binary_cross_entropy(rbe.tensor([0.0, 1.0]), rbe.tensor([0.0, 1.0])).item() == 0.0
    assert F.smooth_l1_loss(rbe.tensor([0.5]), rbe.tensor([1.5]), beta=0.0).item() == TF.smooth_l1_loss(torch.tensor([0.5]), torch.tensor([1.5]), beta=0.0).item()
    assert rbe.isclose(rbe.ones(1), rbe.ones(1), rtol=0.0, atol=0.0).tolist() == [True]
    assert rbe.nn.init.trunc_normal_(rbe.zeros(3), a=1.0, b=1.0).tolist() == [1.0, 1.0, 1.0]
    assert rbe.nn.Embedding(5, 3, padding_idx=-5).padding_idx == torch.nn.Embedding(5, 3, padding_idx=-5).padding_idx == 0


@pytest.mark.parametrize("clip", [-1.0, 0.0, 0.5, 2.0])
def test_clip_grad_value_matches_torch_for_any_value(clip):
    # torch does not refuse a negative clip_value: it clamps to [-c, c] as
    # clamp_min(-c) then clamp_max(c), which for c < 0 gives c everywhere
    out = {}
    for name, m in (("torch", torch), ("rbe", rbe)):
        p = m.zeros(4, requires_grad=True)
        p.grad = m.tensor([3.0, -3.0, 0.25, -0.25])
        m.nn.utils.clip_grad_value_([p], clip)
        out[name] = p.grad.tolist()
    assert out["rbe"] == out["torch"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_to_int64_cast_matches_torch_out_of_range_and_nan(dtype):
    v = [float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 3.7, -3.7, 9.3e18, -9.223372036854775808e18, 0.0]
    want = torch.tensor(v, dtype=getattr(torch, dtype)).to(torch.int64).tolist()
    assert rbe.tensor(v, dtype=getattr(rbe, dtype)).to(rbe.int64).tolist() == want


def test_cross_entropy_with_every_target_ignored_has_zero_gradient_as_torch():
    res = []
    for m in (torch, rbe):
        z = m.tensor([[1.0, 2.0, 3.0], [0.5, 0.1, 0.2]], requires_grad=True)
        loss = m.nn.functional.cross_entropy(z, m.tensor([1, 1]), ignore_index=1)
        loss.backward()
        res.append((math.isnan(loss.item()), z.grad.tolist()))
    assert res[0] == res[1] == (True, [[0.0] * 3] * 2)
