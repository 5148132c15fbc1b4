"""Bugs found in review, each pinned by a test (torch is the oracle)."""
import numpy as np
import pytest
import torch

import rbe
import rbe.nn as nn


def test_freeing_a_very_long_graph_does_not_overflow_the_stack():
    w = rbe.ones(3, requires_grad=True)
    total = 0
    for _ in range(100_000):
        total = total + (w * 2).sum()
    del total  # used to recurse once per node and crash the interpreter
    y = w
    for _ in range(100_000):
        y = y * 1.0000001
    y.sum().backward()
    del y
    np.testing.assert_allclose(w.grad.numpy(), np.full(3, float(np.float32(1.0000001)) ** 100_000), rtol=1e-3)


@pytest.mark.parametrize("f", [lambda x: x.split(1), lambda x: x.chunk(2), lambda x: x.unbind(), lambda x: x.size(0), lambda x: x.stride(0), lambda x: x.narrow(0, 0, 1)])
def test_dim_ops_on_0d_tensors_raise_index_error(f):
    with pytest.raises(IndexError):
        f(rbe.tensor(1.0))


def test_int_next_to_index_array_follows_torch():
    a = np.arange(120.0).reshape(4, 5, 6)
    for idx in [(2, slice(None), [1, 2]), (slice(None), [1, 2], None, 2)]:
        r = rbe.tensor(a)[tuple(rbe.tensor(i) if isinstance(i, list) else i for i in idx)]
        t = torch.tensor(a)[tuple(torch.tensor(i) if isinstance(i, list) else i for i in idx)]
        assert tuple(r.shape) == tuple(t.shape)
        np.testing.assert_array_equal(r.numpy(), t.numpy())


def test_bce_gradient_is_finite_at_saturated_probabilities():
    res = []
    for m in (rbe, torch):
        x = m.tensor([20.0, -20.0, 0.3], requires_grad=True)
        m.nn.BCELoss()(x.sigmoid(), m.tensor([1.0, 0.0, 1.0])).backward()
        res.append(x.grad.numpy())
    assert np.all(np.isfinite(res[0]))
    np.testing.assert_allclose(res[0], res[1], rtol=1e-4, atol=1e-8)


def test_small_fixes_match_torch():
    assert rbe.linspace(0, 1, 1).tolist() == torch.linspace(0, 1, 1).tolist() == [0.0]
    r, t = rbe.tensor([1, 5]).clamp(1.5, 3.5), torch.tensor([1, 5]).clamp(1.5, 3.5)
    assert r.dtype == rbe.float32 and r.tolist() == t.tolist()
    with pytest.raises(TypeError, match="can't be cast"):  # a dtype error, TypeError in rbe
        rbe.tensor([1, 5]).clamp_(1.5, 3.5)
    with pytest.raises(RuntimeError, match="Overflow"):
        rbe.tensor(2**63)
    b = rbe.ones(3)
    with pytest.raises(RuntimeError, match="single memory location"):
        b.expand(2, 3).mul_(rbe.tensor([[2.0], [3.0]]))
    assert b.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        rbe.set_num_threads(100_000)
    with pytest.raises(ValueError):
        rbe.zeros(3).uniform_(0, 1e300)
    with pytest.raises(ValueError):
        rbe.zeros(3, dtype=rbe.float64).uniform_(-1e308, 1e308)


def test_prod_second_derivative_at_zero_refuses_instead_of_a_wrong_value():
    x = rbe.tensor([0.0, 2.0, 3.0], requires_grad=True)
    (g,) = rbe.autograd.grad(x.prod(), x)
    assert g.tolist() == [6.0, 0.0, 0.0]
    with pytest.raises(RuntimeError, match="not implemented"):
        rbe.autograd.grad(x.prod() + (x**2).sum(), x, create_graph=True)


def test_checkpoint_without_grad_inputs_still_trains_the_parameters_inside():
    from rbe.utils.checkpoint import checkpoint

    lin = nn.Linear(3, 2)
    checkpoint(lin, rbe.randn(4, 3)).sum().backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum().item() > 0
