"""``rbe.save`` / ``rbe.load``: state dicts in the safetensors format.

A flat ``{name: Tensor}`` dict (a module's ``state_dict()``) is stored as a
plain safetensors file that any safetensors reader (torch, NumPy, ...) opens.
Nested dicts and lists with tensors and plain values (an optimizer's
``state_dict()``) are stored too: tensors under dotted keys, everything else
as JSON in the file's metadata, and ``load`` rebuilds the structure.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict

import numpy as np

from . import _core
from ._core import Tensor

_STRUCT = "rbe.structure"
_ORDER = "rbe.keys"


def _flatten(obj, prefix, tensors):
    if isinstance(obj, Tensor):
        key = prefix or "tensor"
        tensors[key] = obj.detach().numpy().copy(order="C")
        return {"__tensor__": key}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"rbe.save: dict keys must be str or int, got {type(k).__name__}")
            items.append([k, _flatten(v, f"{prefix}.{k}" if prefix else str(k), tensors)])
        return {"__dict__": items}
    if isinstance(obj, (list, tuple)):
        kind = "__list__" if isinstance(obj, list) else "__tuple__"
        return {kind: [_flatten(v, f"{prefix}.{i}" if prefix else str(i), tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"__value__": obj}
    raise TypeError(f"rbe.save cannot store an object of type {type(obj).__name__}; only tensors, dicts, lists, tuples, numbers, strings and None")


def _unflatten(node, tensors):
    if "__tensor__" in node:
        return tensors[node["__tensor__"]]
    if "__dict__" in node:
        return {k: _unflatten(v, tensors) for k, v in node["__dict__"]}
    if "__list__" in node:
        return [_unflatten(v, tensors) for v in node["__list__"]]
    if "__tuple__" in node:
        return tuple(_unflatten(v, tensors) for v in node["__tuple__"])
    return node["__value__"]


def save(obj: Any, f, metadata: Dict[str, str] | None = None) -> None:
    """Save a state dict (or a nest of dicts/lists holding tensors) to ``f`` in safetensors format."""
    from safetensors.numpy import save as st_save

    tensors: Dict[str, np.ndarray] = {}
    flat_tensor_dict = isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    meta = dict(metadata or {})
    if flat_tensor_dict:
        for k, v in obj.items():
            tensors[k] = v.detach().numpy().copy(order="C")
        meta[_ORDER] = json.dumps(list(obj.keys()))
    else:
        meta[_STRUCT] = json.dumps(_flatten(obj, "", tensors))
    data = st_save(tensors, metadata=meta or None)
    if hasattr(f, "write"):
        f.write(data)
    else:
        with open(os.fspath(f), "wb") as fh:
            fh.write(data)


def load(f, map_location=None, weights_only: bool = True) -> Any:
    """Load what ``save`` stored; tensors come back as rbe tensors."""
    from safetensors.numpy import load as st_load

    if hasattr(f, "read"):
        raw = f.read()
    else:
        with open(os.fspath(f), "rb") as fh:
            raw = fh.read()
    arrays = st_load(raw)
    tensors = {k: _core.from_numpy(np.array(v, copy=True)) for k, v in arrays.items()}
    meta = _read_metadata(raw)
    if meta and _STRUCT in meta:
        return _unflatten(json.loads(meta[_STRUCT]), tensors)
    if meta and _ORDER in meta:
        return {k: tensors[k] for k in json.loads(meta[_ORDER])}
    return tensors


def _read_metadata(raw: bytes):
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    return header.get("__metadata__")
