"""dtype promotion, creation and conversion against torch, and error messages."""
import itertools

import numpy as np
import pytest
import torch

import rbe

DT = ["bool", "int64", "float32", "float64"]


def make(m, name, zero_dim=False):
    dt = getattr(m, name)
    shape = () if zero_dim else (3,)
    return m.ones(shape, dtype=dt) if name != "bool" else m.ones(shape, dtype=dt)


def name_of(t):
    return str(t.dtype).replace("torch.", "").replace("rbe.", "")


@pytest.mark.parametrize("op", ["add", "mul", "div", "lt", "sub"])
@pytest.mark.parametrize("da,db", list(itertools.product(DT, DT)))
@pytest.mark.parametrize("kind", ["tensor", "zero_dim"])
def test_tensor_tensor_promotion_matches_torch(op, da, db, kind):
    f = {"add": lambda a, b: a + b, "mul": lambda a, b: a * b, "div": lambda a, b: a / b, "lt": lambda a, b: a < b, "sub": lambda a, b: a - b}[op]
    outs = []
    for m in (rbe, torch):
        a = make(m, da)
        b = make(m, db, zero_dim=(kind == "zero_dim"))
        try:
            outs.append(name_of(f(a, b)))
        except (RuntimeError, TypeError, ValueError) as e:
            outs.append(e)
    if isinstance(outs[1], Exception):
        # torch code catching torch's exception class catches rbe's too
        assert isinstance(outs[0], type(outs[1])), (outs[0], outs[1])
    else:
        assert outs[0] == outs[1]


@pytest.mark.parametrize("da", DT)
@pytest.mark.parametrize("scalar", [True, 2, 2.5])
@pytest.mark.parametrize("default", ["float32", "float64"])
def test_python_scalars_do_not_upcast(da, scalar, default):
    outs = []
    for m in (rbe, torch):
        m.set_default_dtype(getattr(m, default))
        try:
            a = make(m, da)
            outs.append((name_of(a + scalar), name_of(a * scalar), name_of(a / scalar) if scalar is not True else None))
        finally:
            m.set_default_dtype(m.float32)
    assert outs[0] == outs[1]


def test_creation_dtypes_match_torch():
    assert name_of(rbe.randint(0, 5, (3,))) == name_of(torch.randint(0, 5, (3,)))
    cases = [
        lambda m: m.tensor([1, 2, 3]),
        lambda m: m.tensor([1.0, 2.0]),
        lambda m: m.tensor([True, False]),
        lambda m: m.tensor(np.array([1.0], dtype=np.float64)),
        lambda m: m.arange(5),
        lambda m: m.arange(0, 1, 0.25),
        lambda m: m.zeros(2),
        lambda m: m.ones(2, dtype=m.int64),
        lambda m: m.full((2,), 3),
        lambda m: m.full((2,), 1.5),
        lambda m: m.full((2,), True),
        lambda m: m.linspace(0, 1, 5),
        lambda m: m.eye(3),
        lambda m: m.tensor([1, 2]).float(),
        lambda m: m.tensor([1.5, 2.5]).long(),
        lambda m: m.tensor([1.5, 0.0]).bool(),
        lambda m: m.tensor([1.5]).double(),
        lambda m: m.tensor([1, 2]).sum(),
        lambda m: m.tensor([True, True]).sum(),
        lambda m: m.tensor([1, 2]).exp(),
        lambda m: m.tensor([1, 2]).cumsum(0),
        lambda m: m.tensor([1.0]).to(m.float64),
    ]
    for c in cases:
        r, t = c(rbe), c(torch)
        assert name_of(r) == name_of(t), (name_of(r), name_of(t))
        np.testing.assert_allclose(r.numpy().astype(np.float64), t.numpy().astype(np.float64), rtol=1e-6)


def test_conversions_and_attributes():
    x = rbe.tensor([[1.5, -2.0], [3.0, 4.0]])
    assert x.shape == (2, 2) and x.size(1) == 2 and x.ndim == 2 and x.numel() == 4
    assert str(x.device) == "cpu" and x.dtype == rbe.float32 and x.dtype is rbe.float32
    assert x.tolist() == [[1.5, -2.0], [3.0, 4.0]]
    assert x[0, 0].item() == 1.5 and isinstance(x[0, 0].item(), float)
    assert rbe.tensor(3).item() == 3 and isinstance(rbe.tensor(3).item(), int)
    assert x.to(rbe.float64).dtype == rbe.float64 and x.to(rbe.float32) is x
    assert x.double().float().dtype == rbe.float32
    assert x.clone().numpy().tolist() == x.tolist()
    assert "tensor(" in repr(x) and "requires_grad=True" in repr(rbe.ones(2, requires_grad=True))
    assert "dtype=rbe.float64" in repr(x.double())
    assert x.t().is_contiguous() is False and x.t().contiguous().is_contiguous()
    assert float(rbe.tensor(2.5)) == 2.5 and int(rbe.tensor(7)) == 7
    assert len(x) == 2 and [r.tolist() for r in x] == x.tolist()


def test_default_dtype_roundtrip():
    try:
        rbe.set_default_dtype(rbe.float64)
        assert rbe.get_default_dtype() == rbe.float64
        assert rbe.tensor([1.0]).dtype == rbe.float64 and rbe.zeros(1).dtype == rbe.float64
        with pytest.raises(TypeError):
            rbe.set_default_dtype(rbe.int64)
    finally:
        rbe.set_default_dtype(rbe.float32)
    assert rbe.zeros(1).dtype == rbe.float32


def test_error_messages_name_what_is_wrong():
    with pytest.raises(ValueError) as e:
        rbe.zeros(2, 3) + rbe.zeros(4, 3)
    assert "[2, 3]" in str(e.value) and "[4, 3]" in str(e.value)
    with pytest.raises(ValueError) as e:
        rbe.zeros(2, 3) @ rbe.zeros(4, 5)
    assert "2x3" in str(e.value) and "4x5" in str(e.value)
    with pytest.raises(TypeError) as e:
        rbe.zeros(2, dtype=rbe.float32) @ rbe.zeros(2, dtype=rbe.float64)
    assert "float32" in str(e.value) and "float64" in str(e.value)
    with pytest.raises(IndexError, match="out of bounds|out of range"):
        rbe.zeros(3)[3]
    with pytest.raises(IndexError, match="Dimension out of range"):
        rbe.zeros(3).sum(2)
    with pytest.raises(ValueError, match="invalid for input of size 6"):
        rbe.zeros(2, 3).reshape(4, 2)
    with pytest.raises(TypeError):
        rbe.tensor([1, 2]) + "a"
    with pytest.raises(TypeError, match="can't be cast|Long"):
        x = rbe.tensor([1, 2])
        x += 1.5
    np.testing.assert_array_equal(x.numpy(), [1, 2])  # unchanged after the error
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(rbe.ones(2))
