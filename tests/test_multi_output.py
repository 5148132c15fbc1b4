"""Nodes with several outputs: one backward call receiving every output's
gradient, from ``rbe.autograd.Function`` (checked against torch)."""
import numpy as np
import pytest
import torch

import rbe


def make_function(m, calls, materialize=True):
    class SinCos(m.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            if not materialize:
                ctx.set_materialize_grads(False)
            ctx.save_for_backward(x)
            return x.sin(), x.cos()

        @staticmethod
        def backward(ctx, gs, gc):
            calls.append((gs, gc))
            (x,) = ctx.saved_tensors
            out = None
            if gs is not None:
                out = gs * x.cos()
            if gc is not None:
                out = -gc * x.sin() if out is None else out - gc * x.sin()
            return out

    return SinCos


def test_backward_runs_once_with_both_gradients_and_matches_torch():
    xv = np.linspace(-2, 2, 7)
    res = {}
    for m in (rbe, torch):
        calls = []
        f = make_function(m, calls)
        x = m.tensor(xv, dtype=m.float64, requires_grad=True)
        s, c = f.apply(x)
        (3 * s + c * c).sum().backward()
        assert len(calls) == 1
        res[m.__name__] = x.grad.detach().numpy().copy()
    np.testing.assert_allclose(res["rbe"], res["torch"], rtol=1e-12)
    np.testing.assert_allclose(res["rbe"], 3 * np.cos(xv) - 2 * np.cos(xv) * np.sin(xv), rtol=1e-12)


@pytest.mark.parametrize("materialize", [True, False])
def test_unused_output_gets_zeros_or_none(materialize):
    for m in (rbe, torch):
        calls = []
        f = make_function(m, calls, materialize)
        x = m.tensor([0.5, 1.0], dtype=m.float64, requires_grad=True)
        s, c = f.apply(x)
        s.sum().backward()
        assert len(calls) == 1
        gs, gc = calls[0]
        assert gs is not None
        if materialize:
            assert gc is not None and gc.shape == c.shape and float(gc.abs().sum()) == 0.0
        else:
            assert gc is None, m.__name__
        np.testing.assert_allclose(x.grad.detach().numpy(), np.cos([0.5, 1.0]), rtol=1e-12)


def test_second_order_through_a_multi_output_function():
    xv = np.array([0.3, -1.2, 2.0])
    res = {}
    for m in (rbe, torch):
        f = make_function(m, [])
        x = m.tensor(xv, dtype=m.float64, requires_grad=True)
        s, c = f.apply(x)
        (g,) = m.autograd.grad((s * c).sum(), [x], create_graph=True)
        (h,) = m.autograd.grad(g.sum(), [x])
        res[m.__name__] = (g.detach().numpy().copy(), h.detach().numpy().copy())
    for a, b in zip(res["rbe"], res["torch"]):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_outputs_share_one_node_and_know_their_index():
    f = make_function(rbe, [])
    x = rbe.ones(3, requires_grad=True)
    s, c = f.apply(x)
    assert s.grad_fn.name() == c.grad_fn.name()
    y = s + c
    nums = sorted(n for _, n in y.grad_fn.next_functions)
    assert nums == [0, 1]


def test_retain_grad_on_each_output():
    f = make_function(rbe, [])
    x = rbe.tensor([0.1, 0.2], dtype=rbe.float64, requires_grad=True)
    s, c = f.apply(x)
    s.retain_grad()
    c.retain_grad()
    (2 * s + 5 * c).sum().backward()
    np.testing.assert_array_equal(s.grad.numpy(), [2.0, 2.0])
    np.testing.assert_array_equal(c.grad.numpy(), [5.0, 5.0])


def test_grad_with_respect_to_one_output():
    f = make_function(rbe, [])
    x = rbe.tensor([0.1, 0.2], dtype=rbe.float64, requires_grad=True)
    s, c = f.apply(x)
    y = (s * c).sum()
    gs, gc = rbe.autograd.grad(y, [s, c])
    np.testing.assert_allclose(gs.numpy(), c.detach().numpy())
    np.testing.assert_allclose(gc.numpy(), s.detach().numpy())


def test_backward_twice_needs_retain_graph():
    calls = []
    f = make_function(rbe, calls)
    x = rbe.ones(2, requires_grad=True)
    s, c = f.apply(x)
    y = (s + c).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert len(calls) == 2
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
