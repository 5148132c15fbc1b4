"""Autograd semantics against torch: accumulation, retain_graph, freed graphs,
create_graph, in-place ops and version counters, grad modes, retain_grad."""
import numpy as np
import pytest
import torch

import rbe


def both(a, requires_grad=True):
    return rbe.tensor(a, requires_grad=requires_grad), torch.tensor(a, requires_grad=requires_grad)


def close(r, t, **kw):
    np.testing.assert_allclose(r.detach().numpy(), t.detach().numpy(), rtol=1e-6, atol=1e-7, **kw)


def test_grads_accumulate_across_backward_calls():
    r, t = both(np.array([1.0, -2.0, 3.0]))
    for m, x in ((rbe, r), (torch, t)):
        (x * x).sum().backward()
        (x.exp()).sum().backward()
    close(r.grad, t.grad)


def test_second_backward_through_freed_graph_raises():
    x = rbe.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    r, t = both(np.array([0.5, 1.5]))
    yr, yt = (r.sin() * r).sum(), (t.sin() * t).sum()
    yr.backward(retain_graph=True)
    yr.backward()
    yt.backward(retain_graph=True)
    yt.backward()
    close(r.grad, t.grad)


def test_backward_requires_scalar_or_gradient():
    x = rbe.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar outputs"):
        (x * 2).backward()
    (x * 2).backward(rbe.tensor([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0, 6.0])


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        rbe.ones(2).sum().backward()


def test_autograd_grad_does_not_touch_leaf_grad():
    x = rbe.tensor([1.0, 2.0], requires_grad=True)
    (g,) = rbe.autograd.grad((x ** 3).sum(), x)
    np.testing.assert_allclose(g.numpy(), [3.0, 12.0])
    assert x.grad is None


def test_autograd_grad_unused_input():
    x = rbe.tensor([1.0], requires_grad=True)
    z = rbe.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="not have been used"):
        rbe.autograd.grad((x * 2).sum(), [x, z])
    gx, gz = rbe.autograd.grad((x * 2).sum(), [x, z], allow_unused=True)
    assert gz is None and gx.item() == 2.0


@pytest.mark.parametrize("order", [2, 3, 4])
def test_higher_order_derivatives_match_torch(order):
    r, t = both(np.array([0.3, -0.7, 1.1]))
    gr, gt = (r.sin() * r.exp()).sum(), (t.sin() * t.exp()).sum()
    for _ in range(order):
        (gr,) = rbe.autograd.grad(gr, r, create_graph=True)
        (gt,) = torch.autograd.grad(gt, t, create_graph=True)
        gr, gt = gr.sum(), gt.sum()
    close(gr, gt)


def test_hessian_vector_product_matches_torch():
    a = np.random.default_rng(0).standard_normal((4,))
    v = np.random.default_rng(1).standard_normal((4,))
    res = []
    for m in (rbe, torch):
        x = m.tensor(a, requires_grad=True)
        y = (x.tanh() ** 2).sum() + (x[:-1] * x[1:]).sum()
        (g,) = m.autograd.grad(y, x, create_graph=True)
        (hv,) = m.autograd.grad(g, x, grad_outputs=m.tensor(v))
        res.append(hv.detach().numpy())
    np.testing.assert_allclose(res[0], res[1], rtol=1e-10)


def test_create_graph_backward_accumulates_differentiable_grad():
    r, t = both(np.array([0.4, 0.9]))
    for x in (r, t):
        (x ** 3).sum().backward(create_graph=True)
    assert r.grad.requires_grad and t.grad.requires_grad
    r.grad.sum().backward()
    t.grad.sum().backward()
    close(r.grad, t.grad)


def test_retain_grad_on_intermediate():
    r, t = both(np.array([1.0, 2.0]))
    outs = []
    for x in (r, t):
        h = x * 3
        h.retain_grad()
        (h * h).sum().backward()
        outs.append(h.grad)
    close(outs[0], outs[1])
    h2 = rbe.tensor([1.0], requires_grad=True) * 2
    (h2 * 5).sum().backward()
    assert h2.grad is None  # not retained


def test_no_grad_context_and_decorator():
    x = rbe.ones(2, requires_grad=True)
    with rbe.no_grad():
        y = x * 2
        with rbe.enable_grad():
            z = x * 3
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad

    @rbe.no_grad()
    def f(a):
        return a * 2

    assert not f(x).requires_grad
    assert rbe.is_grad_enabled()
    with rbe.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert rbe.is_grad_enabled()


def test_inplace_on_leaf_requiring_grad_raises_but_works_under_no_grad():
    x = rbe.ones(3, requires_grad=True)
    for f in (lambda: x.add_(1), lambda: x.mul_(2), lambda: x.zero_(), lambda: x.fill_(1.0), lambda: x.clamp_(0, 1)):
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
            f()
    with pytest.raises(RuntimeError, match="leaf"):
        x += 1
    np.testing.assert_array_equal(x.detach().numpy(), [1.0, 1.0, 1.0])  # nothing changed
    with rbe.no_grad():
        x -= 0.5
        x.mul_(4)
    np.testing.assert_array_equal(x.detach().numpy(), [2.0, 2.0, 2.0])
    assert x.is_leaf and x.requires_grad


def test_inplace_on_view_of_leaf_raises():
    x = rbe.ones(3, 2, requires_grad=True)
    with pytest.raises(RuntimeError, match="view of a leaf"):
        x[0].mul_(2)


def test_modified_saved_tensor_raises_at_backward():
    x = rbe.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    z = y.exp()  # exp saves its output
    w = y * y  # mul saves y
    y.add_(1)  # y's storage changes
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        w.sum().backward()
    z2 = z * 1
    z.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z2.sum().backward(retain_graph=True)
        (z.sum()).backward()


def test_inplace_ops_on_nonleaf_record_history_like_torch():
    a = np.array([0.5, -1.0, 2.0])
    grads = []
    for m in (rbe, torch):
        x = m.tensor(a, requires_grad=True)
        y = x * 2
        y.mul_(x)
        y.add_(x, alpha=3.0)
        y += 1
        y.clamp_(max=3.0)
        y.exp_()
        y.sum().backward()
        grads.append(x.grad.numpy().copy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-10)


def test_setitem_on_nonleaf_backpropagates_like_torch():
    a = np.arange(12.0).reshape(3, 4) / 10
    v = np.array([1.0, 2.0, 3.0])
    grads = []
    for m in (rbe, torch):
        x = m.tensor(a, requires_grad=True)
        val = m.tensor(v, requires_grad=True)
        y = x * 1
        y[:, 1] = val * 2
        (y * y).sum().backward()
        grads.append((x.grad.numpy().copy(), val.grad.numpy().copy()))
    np.testing.assert_allclose(grads[0][0], grads[1][0])
    np.testing.assert_allclose(grads[0][1], grads[1][1])


def test_detach_and_requires_grad_flags():
    x = rbe.ones(2, requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.is_leaf
    d[0] = 5.0  # shares memory
    assert x[0].item() == 5.0
    y = x * 2
    assert not y.is_leaf and y.grad_fn.name() == "MulBackward0"
    with pytest.raises(RuntimeError):
        y.requires_grad_(False)
    with pytest.raises(RuntimeError, match="floating point"):
        rbe.tensor([1, 2]).requires_grad_()


def test_gradient_with_respect_to_mixed_dtypes_is_cast_back():
    a = rbe.tensor([1.0, 2.0], dtype=rbe.float32, requires_grad=True)
    b = rbe.tensor([3.0, 4.0], dtype=rbe.float64, requires_grad=True)
    y = a * b
    assert y.dtype == rbe.float64
    y.sum().backward()
    assert a.grad.dtype == rbe.float32 and b.grad.dtype == rbe.float64
    np.testing.assert_allclose(a.grad.numpy(), [3.0, 4.0])


def test_grad_setter_checks_shape():
    x = rbe.ones(3, requires_grad=True)
    with pytest.raises(ValueError):
        x.grad = rbe.ones(2)
    x.grad = rbe.ones(3) * 2
    x.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0, 3.0])


def test_backward_with_inputs_accumulates_only_those():
    x = rbe.ones(2, requires_grad=True)
    w = rbe.ones(2, requires_grad=True)
    (x * w * 3).sum().backward(inputs=[w])
    assert x.grad is None
    np.testing.assert_allclose(w.grad.numpy(), [3.0, 3.0])
