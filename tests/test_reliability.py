"""Reliability items checked against torch: pickling and copying (dtypes,
generators, tensors that share memory), and from_numpy on ndarray subclasses
that lie about their layout (in a subprocess, so a crash fails the test)."""
import copy
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
