"""First and second derivatives of every differentiable op, checked against
central finite differences in float64 (rbe.autograd.gradcheck /
gradgradcheck with torch's default tolerances: eps 1e-6, atol 1e-5, rtol 1e-3)."""
import numpy as np
import pytest

import rbe
from rbe.autograd import gradcheck, gradgradcheck, GradcheckError
from _ops import OPS, make_inputs

GRAD_CASES = []
for op in OPS:
    if not op.grad:
        continue
    for k, case in enumerate(op.cases):
        if any(0 in shape for shape in case):
            continue  # nothing to differentiate
        GRAD_CASES.append(pytest.param(op, case, id=f"{op.name}-{k}"))


def _inputs(op, case):
    rng = np.random.default_rng(1234)
    arrays = make_inputs(op, case, np.float64, rng)
    return tuple(rbe.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays)


@pytest.mark.parametrize("op,case", GRAD_CASES)
def test_gradcheck(op, case):
    xs = _inputs(op, case)
    assert gradcheck(lambda *a: op.fn(rbe, *a), xs)


@pytest.mark.parametrize("op,case", [c for c in GRAD_CASES if c.values[0].gradgrad])
def test_gradgradcheck(op, case):
    xs = _inputs(op, case)
    assert gradgradcheck(lambda *a: op.fn(rbe, *a), xs)


def test_gradcheck_detects_a_wrong_gradient():
    # a function whose backward is deliberately wrong must be caught
    x = rbe.randn(4, dtype=rbe.float64, requires_grad=True)

    def wrong(a):
        # value of a*a, but the gradient of 3*a*a (a detached term adds value without gradient)
        return a * a * 3 - (a * a * 2).detach()

    with pytest.raises(GradcheckError):
        gradcheck(wrong, (x,))
    assert gradcheck(wrong, (x,), raise_exception=False) is False


def test_laplacian_then_parameter_gradient():
    # the physics-informed pattern: d/dtheta of sum of second derivatives in x
    x = rbe.randn(5, 2, dtype=rbe.float64, requires_grad=True)
    w = rbe.randn(2, 3, dtype=rbe.float64, requires_grad=True)

    def f(x, w):
        return (x @ w).tanh().sum(-1)

    def laplacian_loss(x, w):
        u = f(x, w)
        (g,) = rbe.autograd.grad(u.sum(), x, create_graph=True)
        lap = 0
        for d in range(2):
            (h,) = rbe.autograd.grad(g[:, d].sum(), x, create_graph=True)
            lap = lap + h[:, d]
        return (lap ** 2).sum()

    assert gradcheck(laplacian_loss, (x, w))
