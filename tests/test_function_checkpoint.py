"""rbe.autograd.Function and rbe.utils.checkpoint."""
import numpy as np
import pytest
import torch

import rbe
import rbe.nn as nn
from rbe.utils.checkpoint import checkpoint, checkpoint_sequential


class ScaledCube(rbe.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, k):
        ctx.save_for_backward(x, w)
        ctx.k = k
        return (x ** 3) * w * k

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx = g * 3 * x ** 2 * w * ctx.k if ctx.needs_input_grad[0] else None
        gw = (g * x ** 3 * ctx.k).sum(0) if ctx.needs_input_grad[1] else None
        return gx, gw, None


class TorchScaledCube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, k):
        ctx.save_for_backward(x, w)
        ctx.k = k
        return (x ** 3) * w * k

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g * 3 * x ** 2 * w * ctx.k, (g * x ** 3 * ctx.k).sum(0), None


def test_function_matches_torch_and_records_its_node():
    rng = np.random.default_rng(0)
    xa, wa = rng.standard_normal((4, 3)), rng.standard_normal(3)
    res = []
    for m, F in ((rbe, ScaledCube), (torch, TorchScaledCube)):
        x = m.tensor(xa, requires_grad=True)
        w = m.tensor(wa, requires_grad=True)
        y = F.apply(x, w, 1.5)
        (y.sin()).sum().backward()
        res.append((y.detach().numpy(), x.grad.numpy(), w.grad.numpy()))
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    x = rbe.tensor(xa, requires_grad=True)
    assert ScaledCube.apply(x, rbe.tensor(wa), 2.0).grad_fn.name() == "ScaledCubeBackward"
    with rbe.no_grad():
        assert ScaledCube.apply(x, rbe.tensor(wa), 2.0).grad_fn is None


def test_function_gradcheck_first_and_second_order():
    x = rbe.randn(3, 2, dtype=rbe.float64, requires_grad=True)
    w = rbe.randn(2, dtype=rbe.float64, requires_grad=True)
    assert rbe.autograd.gradcheck(lambda a, b: ScaledCube.apply(a, b, 0.7), (x, w))
    assert rbe.autograd.gradgradcheck(lambda a, b: ScaledCube.apply(a, b, 0.7), (x, w))


def test_function_errors():
    class Wrong(rbe.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g, g  # one too many

    x = rbe.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="incorrect number of gradients"):
        Wrong.apply(x).sum().backward()

    class Modifies(rbe.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * 2

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * x

    y = rbe.ones(2, requires_grad=True) * 1
    out = Modifies.apply(y)
    y.add_(1)
    with pytest.raises(RuntimeError, match="inplace"):
        out.sum().backward()


def test_function_returning_an_input_keeps_the_leaf():
    class Ident(rbe.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 2

    x = rbe.ones(3, requires_grad=True)
    y = Ident.apply(x)
    assert x.is_leaf and y is not x
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])


def _deep_model():
    rbe.manual_seed(0)
    return nn.Sequential(*[nn.Sequential(nn.Linear(128, 128), nn.Tanh(), nn.Dropout(0.1)) for _ in range(8)])


def test_checkpoint_gives_the_same_gradients_with_less_memory():
    model = _deep_model()
    x = rbe.randn(256, 128, requires_grad=True)

    def run(segments):
        model.zero_grad()
        x.grad = None
        rbe.manual_seed(1)  # dropout masks must replay identically in the recomputation
        base = rbe.memory_allocated()
        h = checkpoint_sequential(model, segments, x) if segments else model(x)
        held = rbe.memory_allocated() - base
        (h * h).sum().backward()
        return held, [p.grad.numpy().copy() for p in model.parameters()], x.grad.numpy().copy()

    plain = run(0)
    ck = run(4)
    # activations kept between forward and backward: segment boundaries only
    assert ck[0] < 0.6 * plain[0], (ck[0], plain[0])
    for a, b in zip(plain[1], ck[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(plain[2], ck[2], rtol=1e-5, atol=1e-6)


def test_checkpoint_single_function_with_parameters_inside():
    lin = nn.Linear(4, 4).double()
    x = rbe.randn(3, 4, dtype=rbe.float64, requires_grad=True)
    y = checkpoint(lambda a: lin(a).tanh() * 2, x)
    y.sum().backward()
    g_ck = (x.grad.numpy().copy(), lin.weight.grad.numpy().copy())
    x.grad = None
    lin.zero_grad()
    (lin(x).tanh() * 2).sum().backward()
    np.testing.assert_allclose(g_ck[0], x.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(g_ck[1], lin.weight.grad.numpy(), rtol=1e-12)
