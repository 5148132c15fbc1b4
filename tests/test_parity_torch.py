"""Every op against torch: forward values and dtypes, then the gradient of
every float input under a random upstream gradient.

Tolerances: float64 rtol 1e-9 / atol 1e-10 (both sides compute in float64;
the slack covers different summation orders and libm implementations);
float32 rtol 1e-5 / atol 1e-5 unless the op states otherwise.
"""
import numpy as np
import pytest
import torch

import rbe
from _ops import OPS, make_inputs

TOL = {np.float64: (1e-9, 1e-10)}

CASES = []
for op in OPS:
    dts = [np.float32, np.float64] + ([np.int64] if op.ints else [])
    for dt in dts:
        for k, case in enumerate(op.cases):
            CASES.append(pytest.param(op, dt, case, id=f"{op.name}-{np.dtype(dt).name}-{k}"))


def _tol(op, dt):
    if dt == np.float64:
        return TOL[np.float64]
    if dt == np.float32:
        return (op.rtol32, op.atol32)
    return (0, 0)


def _to_both(arrays, requires_grad):
    r, t = [], []
    for a in arrays:
        rg = requires_grad and a.dtype.kind == "f"
        r.append(rbe.tensor(a, requires_grad=rg))
        t.append(torch.tensor(a, requires_grad=rg))
    return r, t


@pytest.mark.parametrize("op,dt,case", CASES)
def test_forward_and_backward_match_torch(op, dt, case):
    rng = np.random.default_rng(abs(hash((op.name, str(case), np.dtype(dt).name))) % 2**32)
    arrays = make_inputs(op, case, dt, rng)
    want_grad = op.grad and dt != np.int64
    r_in, t_in = _to_both(arrays, want_grad)
    try:
        t_out = op.fn(torch, *t_in)
    except (RuntimeError, IndexError, ValueError, TypeError) as e:
        # where torch refuses the input, rbe must refuse it too
        with pytest.raises((RuntimeError, IndexError, ValueError, TypeError)):
            op.fn(rbe, *r_in)
        return
    r_out = op.fn(rbe, *r_in)
    assert tuple(r_out.shape) == tuple(t_out.shape), f"shape {tuple(r_out.shape)} != torch {tuple(t_out.shape)}"
    assert r_out.dtype.name == str(t_out.dtype).replace("torch.", ""), f"dtype {r_out.dtype} != torch {t_out.dtype}"
    rtol, atol = _tol(op, dt)
    np.testing.assert_allclose(r_out.detach().numpy(), t_out.detach().numpy(), rtol=rtol, atol=atol)
    if not want_grad:
        return
    g = rng.standard_normal(tuple(t_out.shape)).astype(str(t_out.dtype).replace("torch.", ""))
    r_out.backward(rbe.tensor(g))
    t_out.backward(torch.tensor(g))
    for k, (ri, ti) in enumerate(zip(r_in, t_in)):
        if not ti.requires_grad:
            continue
        tg = ti.grad
        rg = ri.grad
        if tg is None:
            assert rg is None or np.all(rg.numpy() == 0), f"input {k}: torch has no grad, rbe has one"
            continue
        assert rg is not None, f"input {k}: rbe produced no gradient"
        assert tuple(rg.shape) == tuple(ri.shape)
        np.testing.assert_allclose(rg.numpy(), tg.numpy(), rtol=rtol * 10, atol=atol * 10, err_msg=f"grad of input {k}")
