"""``repr`` of tensors in torch's style, formatted with NumPy."""
import numpy as np

_DEFAULT_SHOWN = {"float32", "int64", "bool"}


def _body(t) -> str:
    a = t.detach().numpy()
    if a.dtype == np.bool_:
        fmt = {"bool": lambda v: "True" if v else "False"}
    elif a.dtype.kind == "f":
        finite = a[np.isfinite(a)]
        ints = finite.size > 0 and np.all(finite == np.round(finite)) and np.max(np.abs(finite)) < 1e8
        if ints or finite.size == 0:
            fmt = {"float_kind": lambda v: (f"{v:.0f}." if np.isfinite(v) else str(v).replace("inf", "inf"))}
        else:
            big = np.max(np.abs(finite)) if finite.size else 0
            small = np.min(np.abs(finite[finite != 0])) if np.any(finite != 0) else 1
            if big >= 1e8 or small < 1e-4:
                fmt = {"float_kind": lambda v: f"{v:.4e}"}
            else:
                fmt = {"float_kind": lambda v: f"{v:.4f}"}
    else:
        fmt = None
    s = np.array2string(a, separator=", ", formatter=fmt, threshold=1000, edgeitems=3, prefix="tensor(", max_line_width=80)
    return s


def tensor_repr(t) -> str:
    extras = []
    name = t.dtype.name
    if t.numel() == 0 and t.ndim != 1 or name not in _DEFAULT_SHOWN:
        pass
    if t.numel() == 0:
        body = "[]"
        if t.ndim != 1:
            extras.append(f"size={tuple(t.shape)}")
    else:
        body = _body(t)
    from . import get_default_dtype

    if name != "int64" and name != "bool" and t.dtype != get_default_dtype():
        extras.append(f"dtype=rbe.{name}")
    elif name == "float32" and get_default_dtype().name != "float32":
        extras.append("dtype=rbe.float32")
    gf = t.grad_fn
    if gf is not None:
        extras.append(f"grad_fn=<{gf.name()}>")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    prefix = "Parameter containing:\n" if type(t).__name__ == "Parameter" else ""
    inner = ", ".join([body] + extras)
    return f"{prefix}tensor({inner})"
