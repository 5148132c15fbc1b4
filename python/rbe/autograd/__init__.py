"""Reverse-mode differentiation: ``grad``, ``backward``, ``gradcheck`` and ``gradgradcheck``."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from .. import _core
from .._core import Tensor
from .._grad import no_grad_ctx as _no_grad

from .function import Function, FunctionCtx, once_differentiable  # noqa: E402

__all__ = ["grad", "backward", "gradcheck", "gradgradcheck", "GradcheckError", "Function", "FunctionCtx", "once_differentiable"]

_TensorOrSeq = Union[Tensor, Sequence[Tensor]]


def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, Tensor):
        return [x]
    return list(x)


def backward(tensors: _TensorOrSeq, grad_tensors=None, retain_graph: Optional[bool] = None, create_graph: bool = False, inputs=None) -> None:
    """Accumulate into ``.grad`` of the leaves the gradients of ``tensors``.

    With ``inputs``, only those tensors' ``.grad`` are accumulated.
    """
    outs = _as_list(tensors)
    gs = _as_list(grad_tensors) if grad_tensors is not None else [None] * len(outs)
    if retain_graph is None:
        retain_graph = create_graph
    if inputs is not None:
        ins = _as_list(inputs)
        res = _core.run_backward(outs, gs, retain_graph, create_graph, ins, True)
        for t, g in zip(ins, res):
            if g is None:
                continue
            g = g if create_graph else g.detach()
            if t.grad is None:
                t.grad = g if create_graph else g.clone()
            else:
                if create_graph:
                    t.grad = t.grad + g
                else:
                    with _no_grad():
                        t.grad.add_(g)
        return
    _core.run_backward(outs, gs, retain_graph, create_graph, None, False)



def grad(
    outputs: _TensorOrSeq,
    inputs: _TensorOrSeq,
    grad_outputs=None,
    retain_graph: Optional[bool] = None,
    create_graph: bool = False,
    allow_unused: Optional[bool] = None,
    materialize_grads: bool = False,
):
    """Gradients of ``outputs`` with respect to ``inputs`` (a tuple, one per input).

    With ``create_graph=True`` the result is itself differentiable (higher-order derivatives).
    """
    outs = _as_list(outputs)
    ins = _as_list(inputs)
    if not ins:
        from ..errors import AutogradError

        raise AutogradError("`inputs` argument to `grad()` cannot be empty.")
    gs = _as_list(grad_outputs) if grad_outputs is not None else [None] * len(outs)
    if len(gs) != len(outs):
        raise ValueError(f"grad_outputs has {len(gs)} entries but there are {len(outs)} outputs")
    if retain_graph is None:
        retain_graph = create_graph
    if allow_unused is None:
        allow_unused = materialize_grads
    res = _core.run_backward(outs, gs, retain_graph, create_graph, ins, bool(allow_unused))
    if materialize_grads:
        from .. import zeros_like

        res = tuple(zeros_like(i) if r is None else r for r, i in zip(res, ins))
    return tuple(res)


class GradcheckError(RuntimeError):
    """Raised by ``gradcheck`` when analytical and numerical gradients disagree."""


def _flat_inputs(inputs):
    if isinstance(inputs, Tensor):
        return (inputs,)
    return tuple(inputs)


def _outputs(fn, inputs):
    out = fn(*inputs)
    if isinstance(out, Tensor):
        return (out,)
    return tuple(o for o in out if isinstance(o, Tensor))


def _numerical_jacobian(fn, inputs, i, eps):
    """Central differences of every output with respect to input i, in float64."""
    x = inputs[i]
    base = x.detach().numpy()
    flat = base.reshape(-1).copy()
    cols = []
    for j in range(flat.size):
        orig = flat[j]
        vals = []
        for sgn in (1.0, -1.0):
            flat[j] = orig + sgn * eps
            xi = _core.from_numpy(flat.reshape(base.shape).copy())
            if x.requires_grad:
                xi.requires_grad_(True)
            args = list(inputs)
            args[i] = xi
            outs = _outputs(fn, args)
            vals.append(np.concatenate([o.detach().numpy().astype(np.float64).reshape(-1) for o in outs]) if outs else np.zeros(0))
        flat[j] = orig
        cols.append((vals[0] - vals[1]) / (2 * eps))
    if not cols:
        return np.zeros((0, 0))
    return np.stack(cols, axis=1)  # (n_out, n_in)


def _analytical_jacobian(fn, inputs, i, n_out_total):
    outs = _outputs(fn, inputs)
    x = inputs[i]
    rows = []
    for k, o in enumerate(outs):
        for j in range(o.numel()):
            g = np.zeros(o.numel(), dtype=np.float64)
            g[j] = 1.0
            gt = _core.from_numpy(g.reshape(tuple(o.shape)).astype(o.dtype.name))
            if not o.requires_grad:
                rows.append(np.zeros(x.numel()))
                continue
            (gx,) = grad([o], [x], [gt], retain_graph=True, allow_unused=True)
            rows.append(np.zeros(x.numel()) if gx is None else gx.detach().numpy().astype(np.float64).reshape(-1))
    if not rows:
        return np.zeros((0, x.numel()))
    return np.stack(rows, axis=0)


def gradcheck(
    func,
    inputs,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    nondet_tol: float = 0.0,
) -> bool:
    """Compare the analytical Jacobian of ``func`` with central finite differences.

    Inputs that require grad must be float64 (as torch requires for precision).
    Returns True, or raises ``GradcheckError`` (or returns False) naming the
    input and the largest disagreement.
    """
    inputs = _flat_inputs(inputs)
    diff_idx = [k for k, a in enumerate(inputs) if isinstance(a, Tensor) and a.requires_grad]
    if not diff_idx:
        raise ValueError("gradcheck expects at least one input tensor to require gradient")
    for k in diff_idx:
        if inputs[k].dtype.name != "float64":
            import warnings

            warnings.warn(f"Input #{k} requires gradient and is not a double precision floating point. gradcheck is only reliable in float64.")
    outs = _outputs(func, inputs)
    n_out = sum(o.numel() for o in outs)
    for k in diff_idx:
        num = _numerical_jacobian(func, inputs, k, eps)
        ana = _analytical_jacobian(func, inputs, k, n_out)
        if num.size == 0 and ana.size == 0:
            continue
        if num.shape != ana.shape:
            msg = f"Jacobian shape mismatch for input {k}: numerical {num.shape}, analytical {ana.shape}"
            if raise_exception:
                raise GradcheckError(msg)
            return False
        bad = np.abs(ana - num) > atol + rtol * np.abs(num)
        if np.any(bad):
            worst = np.unravel_index(np.argmax(np.abs(ana - num)), num.shape)
            msg = (
                f"Jacobian mismatch for output 0 with respect to input {k},\n"
                f"numerical:{num}\nanalytical:{ana}\n"
                f"largest difference at {tuple(int(w) for w in worst)}: analytical {ana[worst]:.10g} vs numerical {num[worst]:.10g}"
            )
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True


def gradgradcheck(
    func,
    inputs,
    grad_outputs=None,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    gen_non_contig_grad_outputs: bool = False,
    raise_exception: bool = True,
) -> bool:
    """Check second derivatives: gradcheck of the map (inputs, v) -> vector-Jacobian product."""
    inputs = _flat_inputs(inputs)
    outs = _outputs(func, inputs)
    rng = np.random.default_rng(0)
    if grad_outputs is None:
        grad_outputs = []
        for o in outs:
            v = rng.standard_normal(tuple(o.shape)).astype(np.float64)
            g = _core.from_numpy(v.astype(o.dtype.name))
            g.requires_grad_(True)
            grad_outputs.append(g)
    else:
        grad_outputs = list(_as_list(grad_outputs))
    n_in = len(inputs)
    diff_idx = [k for k, a in enumerate(inputs) if isinstance(a, Tensor) and a.requires_grad]

    def vjp(*args):
        xs = args[:n_in]
        vs = args[n_in:]
        os_ = _outputs(func, xs)
        keep = [(o, v) for o, v in zip(os_, vs) if o.requires_grad]
        if not keep:
            return tuple()
        gs = grad([o for o, _ in keep], [xs[k] for k in diff_idx], [v for _, v in keep], create_graph=True, allow_unused=True)
        return tuple(g for g in gs if g is not None)

    return gradcheck(vjp, tuple(inputs) + tuple(grad_outputs), eps=eps, atol=atol, rtol=rtol, raise_exception=raise_exception)
