"""``repr`` of tensors in torch's style, formatted with NumPy."""
import numpy as np

_DEFAULT_SHOWN = {"float32", "int64", "bool"}


def _body(t) -> str:
    a = t.detach().numpy()
    opts = dict(separator=", ", threshold=1000, edgeitems=3, prefix="tensor(", max_line_width=80)
    if a.dtype.kind != "f":
        return np.array2string(a, **opts)
    finite = np.abs(a[np.isfinite(a)])
    if finite.size == 0:
        return np.array2string(a, **opts)
    if np.all(finite == np.round(finite)) and finite.max() < 1e8:
        # integer-valued floats print as "1.", as torch does
        return np.array2string(a, floatmode="unique", **opts)
    nz = finite[finite > 0]
    big, small = finite.max(), (nz.min() if nz.size else 1.0)
    if big >= 1e8 or small < 1e-4 or big / small > 1e3:
        return np.array2string(a, formatter={"float_kind": lambda v: f"{v:.4e}"}, **opts)
    return np.array2string(a, precision=4, floatmode="fixed", **opts)


def tensor_repr(t) -> str:
    extras = []
    name = t.dtype.name
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
