"""The Python side of the fused-op harness (rbe.testing), run over every fused
op reachable from Python, and checked to reject wrong ops."""
import numpy as np
import pytest

import rbe
import rbe.nn.functional as F
from rbe.testing import FusedOpCheckError, check_derivatives, check_fused_op, check_matches_composite, check_thread_bits


def r(*shape, seed=0, lo=-1.0, hi=1.0, dtype=rbe.float64):
    return rbe.from_numpy(np.random.default_rng(seed).uniform(lo, hi, size=shape)).to(dtype)


def tanh_composite(x):
    e = (2 * x).exp()
    return (e - 1) / (e + 1)


def test_tanh_to_third_order_f64_and_f32():
    check_fused_op(rbe.tanh, tanh_composite, [r(3, 4, seed=1, lo=-2, hi=2)], order=3)
    check_fused_op(rbe.tanh, tanh_composite, [r(40, seed=2, lo=-5, hi=5, dtype=rbe.float32)], order=2, fused_rtol=1e-5, fused_atol=1e-6)


@pytest.mark.parametrize("dims", [(1,), (0, 2), (-1,), (0, 1, 2)])
def test_logsumexp(dims):
    def composite(x):
        m = x.detach().amax(dim=dims, keepdim=True)
        return _squeeze((x - m).exp().sum(dim=dims, keepdim=True).log() + m, dims)

    check_fused_op(lambda x: x.logsumexp(dim=dims), composite, [r(2, 3, 4, seed=3, lo=-3, hi=3)], order=2)


def _squeeze(t, dims):
    for d in sorted((d % t.ndim for d in dims), reverse=True):
        t = t.squeeze(d)
    return t


@pytest.mark.parametrize("dim", [0, 1])
def test_softmax_and_log_softmax(dim):
    def fused(x):
        return F.softmax(x, dim=dim), F.log_softmax(x, dim=dim)

    def composite(x):
        ls = x - x.logsumexp(dim=dim, keepdim=True)
        return ls.exp(), ls

    check_fused_op(fused, composite, [r(3, 4, seed=4, lo=-2, hi=2)], order=2)


def test_linear():
    check_fused_op(F.linear, lambda x, w, b: x @ w.T + b, [r(2, 3, 4, seed=5), r(5, 4, seed=6), r(5, seed=7)], order=2)


def test_linear_thread_bits_above_the_parallel_threshold():
    check_thread_bits(F.linear, [r(256, 256, seed=8, dtype=rbe.float32), r(256, 256, seed=9, dtype=rbe.float32), r(256, seed=10, dtype=rbe.float32)])


def test_cross_entropy_soft_targets_and_indices():
    z = r(4, 5, seed=11, lo=-2, hi=2)
    p = F.softmax(r(4, 5, seed=12), dim=1)
    check_fused_op(
        lambda z, p: F.cross_entropy(z, p, label_smoothing=0.1),
        lambda z, p: -((p * 0.9 + 0.1 / 5) * F.log_softmax(z, dim=1)).sum(1).mean(),
        [z, p],
        diff=[True, False],
    )
    y = rbe.tensor([0, 3, 4, 1])
    check_fused_op(
        lambda z, y: F.cross_entropy(z, y, reduction="sum"),
        lambda z, y: -F.log_softmax(z, dim=1).gather(1, y.unsqueeze(1)).sum(),
        [z, y],
        diff=[True, False],
    )


class _SinCos(rbe.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin(), x.cos()

    @staticmethod
    def backward(ctx, gs, gc):
        (x,) = ctx.saved_tensors
        return gs * x.cos() - gc * x.sin()


def test_multi_output_function_through_the_harness():
    check_fused_op(_SinCos.apply, lambda x: (x.sin(), x.cos()), [r(5, seed=13)], order=3)


class _WrongSecond(rbe.autograd.Function):
    """sin with a first derivative that is right as a number but detached, so
    its own derivative is wrong (zero)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.detach().cos()


def test_harness_rejects_wrong_ops():
    x = r(4, seed=14)
    with pytest.raises(FusedOpCheckError, match="order 1"):
        check_derivatives(_HalfGrad.apply, [x], order=1)
    check_derivatives(_WrongSecond.apply, [x], order=1)
    with pytest.raises(FusedOpCheckError, match="order 2"):
        check_derivatives(_WrongSecond.apply, [x], order=2)
    with pytest.raises(FusedOpCheckError, match="output 0"):
        check_matches_composite(lambda x: x.exp(), lambda x: x.exp() * (1 + 1e-6), [x])
    with pytest.raises(FusedOpCheckError, match="fused vs composite"):
        check_fused_op(lambda x: x.exp(), lambda x: x.exp() * (1 + 1e-6), [x])


class _HalfGrad(rbe.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * x

    @staticmethod
    def backward(ctx, g):
        return g  # should be 2 x g


def test_harness_rejects_thread_dependent_results():
    def f(x):
        return x * (1.0 + rbe.get_num_threads() * 1e-15)

    with pytest.raises(FusedOpCheckError, match="threads"):
        check_thread_bits(f, [r(3, seed=15)])
