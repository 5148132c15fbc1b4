"""Log-space kernels keep float32 precision at large offsets: the shift is
subtracted first ((x - max) - log(sum)), never x - (max + log(sum)), whose
rounded sum loses digits at the offset's scale. Reference: the same float32
inputs computed in float64."""
import numpy as np
import pytest

import rbe
import rbe.nn.functional as F

OFFSETS = [0.0, 1000.0, -1000.0, 1e5]


def rel_err(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def data(offset, shape=(5, 7), seed=0):
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32) + np.float32(offset)
    return x, x.astype(np.float64)


def ref_log_softmax(x64, axis):
    m = x64.max(axis=axis, keepdims=True)
    return (x64 - m) - np.log(np.exp(x64 - m).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("dim", [0, 1])
def test_softmax_and_log_softmax(offset, dim):
    x32, x64 = data(offset)
    ls = ref_log_softmax(x64, dim)
    assert rel_err(F.log_softmax(rbe.from_numpy(x32), dim=dim).numpy(), ls) < 1e-6
    assert rel_err(F.softmax(rbe.from_numpy(x32), dim=dim).numpy(), np.exp(ls)) < 1e-6


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("dims", [(1,), (0,), (0, 1)])
def test_logsumexp_gradient(offset, dims):
    x32, x64 = data(offset, (4, 6, 5))
    x = rbe.from_numpy(x32.copy()).requires_grad_(True)
    x.logsumexp(dim=dims).sum().backward()
    m = x64.max(axis=dims, keepdims=True)
    want = np.exp((x64 - m) - np.log(np.exp(x64 - m).sum(axis=dims, keepdims=True)))
    assert rel_err(x.grad.numpy(), want) < 1e-6


@pytest.mark.parametrize("offset", OFFSETS)
def test_logsumexp_second_order(offset):
    x32, x64 = data(offset, (3, 4))
    x = rbe.from_numpy(x32.copy()).requires_grad_(True)
    (g,) = rbe.autograd.grad(x.logsumexp(dim=1).sum(), [x], create_graph=True)
    p = np.exp(ref_log_softmax(x64, 1))
    assert rel_err(g.detach().numpy(), p) < 1e-6
    (h,) = rbe.autograd.grad((g * g).sum(), [x])
    # d/dx sum(p^2) = 2 p (p - sum p^2)
    want = 2 * p * (p - (p * p).sum(axis=1, keepdims=True))
    assert np.max(np.abs(h.numpy() - want)) < 1e-6


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_gradient(offset, smoothing):
    x32, x64 = data(offset, (6, 5))
    y = np.array([0, 4, 2, 2, 1, 3])
    z = rbe.from_numpy(x32.copy()).requires_grad_(True)
    F.cross_entropy(z, rbe.from_numpy(y), label_smoothing=smoothing).backward()
    t = np.eye(5)[y] * (1 - smoothing) + smoothing / 5
    want = (np.exp(ref_log_softmax(x64, 1)) - t) / 6
    assert np.max(np.abs(z.grad.numpy() - want)) < 1e-7
