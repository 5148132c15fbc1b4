"""``rbe.save`` / ``rbe.load``: state dicts in the safetensors format.

A flat ``{name: Tensor}`` dict (a module's ``state_dict()``) is stored as a
plain safetensors file that any safetensors reader (torch, NumPy, ...) opens,
with the tensors under their own names.

Nested dicts, lists and tuples holding tensors and plain values (an
optimizer's ``state_dict()``) are stored too: the structure as JSON in the
file's metadata (``rbe.structure``), where each tensor is named by its path.
A path is its keys joined with ``.``, each key encoded so that no two paths
share a name: an int key or a list index is written in decimal; in a str key
``%`` becomes ``%25``, ``.`` becomes ``%2E``, and a first character that is a
digit or ``-`` is written ``%XX`` (its code), so ``{0: a, '0': b}``,
``{'a.b': a, 'a': {'b': b}}`` and ``{'l': [a], 'l.0': b}`` keep every tensor.

``load`` reads the 8-byte header length first and refuses a header over
100 MB, a file shorter (or longer) than its header says, and every
inconsistency of the header (bad JSON, unknown dtypes, offsets outside the
data, overlapping or with gaps, a shape that does not match the byte length)
with :class:`rbe.errors.FileFormatError` naming the file, before it allocates
anything of the claimed size. Each tensor's bytes are then read straight into
the tensor's own buffer: loading takes about the file's size in memory.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from typing import Any, Dict, List, Tuple

import numpy as np

from . import _core
from ._core import Tensor
from .errors import ArgumentError, DTypeError, FileFormatError

_STRUCT = "rbe.structure"
_ORDER = "rbe.keys"
_RESERVED = (_STRUCT, _ORDER)

#: The largest header ``load`` accepts (the safetensors library's own limit).
MAX_HEADER_BYTES = 100_000_000

# safetensors dtype -> (NumPy dtype of the stored bytes, rbe dtype it loads as)
_LOAD_DTYPES = {
    "F64": (np.dtype("<f8"), np.float64),
    "F32": (np.dtype("<f4"), np.float32),
    "I64": (np.dtype("<i8"), np.int64),
    "BOOL": (np.dtype("u1"), np.bool_),
    # widened without loss to the dtypes rbe computes with
    "F16": (np.dtype("<f2"), np.float32),
    "BF16": (np.dtype("<u2"), np.float32),
    "I32": (np.dtype("<i4"), np.int64),
    "I16": (np.dtype("<i2"), np.int64),
    "I8": (np.dtype("i1"), np.int64),
    "U32": (np.dtype("<u4"), np.int64),
    "U16": (np.dtype("<u2"), np.int64),
    "U8": (np.dtype("u1"), np.int64),
}
_ITEMSIZE = {"U64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "C64": 8}
_SAVE_DTYPES = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.int64): "I64", np.dtype(np.bool_): "BOOL"}

_CHUNK = 1 << 24  # bytes read at a time from a stream of unknown length


# ------------------------------------------------------------------ saving
def _part(k) -> str:
    """One key of a path, encoded so that distinct keys never give the same text."""
    if isinstance(k, int):  # int dict keys (bool too: True == 1) and list indices
        return str(int(k))
    s = k.replace("%", "%25").replace(".", "%2E")
    if s[:1] in ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "-"):
        s = "%%%02X" % ord(s[0]) + s[1:]
    return s


def _tensor_name(path: List[str]) -> str:
    if not path:
        return "tensor"
    name = ".".join(path)
    # the one name safetensors reserves for itself
    return "%5F" + name[1:] if name == "__metadata__" else name


def _as_array(t: Tensor) -> np.ndarray:
    a = t.detach().numpy()
    if not a.flags.c_contiguous:
        a = a.copy(order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
    if sys.byteorder != "little":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a


def _flatten(obj, path: List[str], tensors: Dict[str, np.ndarray]):
    if isinstance(obj, Tensor):
        key = _tensor_name(path)
        assert key not in tensors, key  # the encoding is injective
        tensors[key] = _as_array(obj)
        return {"__tensor__": key}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"rbe.save: dict keys must be str or int, got {type(k).__name__}")
            items.append([k, _flatten(v, path + [_part(k)], tensors)])
        return {"__dict__": items}
    if isinstance(obj, (list, tuple)):
        kind = "__list__" if isinstance(obj, list) else "__tuple__"
        return {kind: [_flatten(v, path + [str(i)], tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"__value__": obj}
    raise TypeError(f"rbe.save cannot store an object of type {type(obj).__name__}; only tensors, dicts, lists, tuples, numbers, strings and None")


def _write(fh, tensors: Dict[str, np.ndarray], metadata: Dict[str, str]) -> None:
    header: Dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = metadata
    off = 0
    for name, a in tensors.items():
        header[name] = {"dtype": _SAVE_DTYPES[a.dtype.newbyteorder("=")], "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)  # as the safetensors library: data 8-byte aligned
    fh.write(len(hb).to_bytes(8, "little"))
    fh.write(hb)
    for a in tensors.values():
        if a.nbytes:
            fh.write(a.reshape(-1).view(np.uint8).data)


def save(obj: Any, f, metadata: Dict[str, str] | None = None) -> None:
    """Save a state dict (or a nest of dicts/lists/tuples holding tensors) to ``f`` in safetensors format.

    ``f`` is a path or a binary file object; ``metadata`` (str -> str) goes into the file's header."""
    meta = dict(metadata or {})
    for k, v in meta.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"rbe.save: metadata must map str to str, got {type(k).__name__} -> {type(v).__name__}")
        if k in _RESERVED:
            raise ArgumentError(f"rbe.save: the metadata key {k!r} is rbe's own; choose another name")
    tensors: Dict[str, np.ndarray] = {}
    flat_tensor_dict = (
        isinstance(obj, dict) and "__metadata__" not in obj and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )
    if flat_tensor_dict:
        for k, v in obj.items():
            tensors[k] = _as_array(v)
        meta[_ORDER] = json.dumps(list(obj.keys()))
    else:
        meta[_STRUCT] = json.dumps(_flatten(obj, [], tensors))
    if hasattr(f, "write"):
        _write(f, tensors, meta)
    else:
        with open(os.fspath(f), "wb") as fh:
            _write(fh, tensors, meta)


# ------------------------------------------------------------------ loading
class _Reader:
    """Exact reads from a path or a binary file object, knowing (where it can)
    how many bytes are left, so that no claim is believed beyond the file."""

    def __init__(self, f):
        self.own = not hasattr(f, "read")
        if self.own:
            path = os.fspath(f)
            self.name = os.fsdecode(path)
            self.fh = open(path, "rb")
            st = os.fstat(self.fh.fileno())
            # a regular file has a size; a device or a pipe is read as a stream
            self.left = st.st_size if stat.S_ISREG(st.st_mode) else None
        else:
            self.fh = f
            name = getattr(f, "name", None)
            self.name = name if isinstance(name, str) else f"<{type(f).__name__} object>"
            self.left = None
            try:
                if f.seekable():
                    pos = f.tell()
                    self.left = f.seek(0, os.SEEK_END) - pos
                    f.seek(pos)
            except (AttributeError, OSError, ValueError):
                self.left = None

    def close(self):
        if self.own:
            self.fh.close()

    def fail(self, msg: str):
        raise FileFormatError(f"rbe.load: {self.name}: {msg}")

    def _consumed(self, n: int):
        if self.left is not None:
            self.left -= n

    def read(self, n: int, what: str) -> bytes:
        """Exactly ``n`` bytes (``n`` is bounded by the caller), or a FileFormatError."""
        if self.left is not None and n > self.left:
            self.fail(f"the file ends before the {what} ({n} bytes claimed, {self.left} left)")
        parts, got = [], 0
        while got < n:
            b = self.fh.read(min(n - got, _CHUNK))
            if not b:
                self.fail(f"the file ends before the {what} ({n} bytes claimed, {got} read)")
            parts.append(b)
            got += len(b)
        self._consumed(n)
        return b"".join(parts)

    def read_into(self, buf: memoryview, what: str) -> None:
        """Fill ``buf`` (bytes) exactly."""
        n = len(buf)
        readinto = getattr(self.fh, "readinto", None)
        got = 0
        while got < n:
            if readinto is not None:
                k = readinto(buf[got:got + min(n - got, _CHUNK)])
            else:
                b = self.fh.read(min(n - got, _CHUNK))
                k = len(b)
                buf[got:got + k] = b
            if not k:
                self.fail(f"the file ends inside the {what} ({n} bytes claimed, {got} read)")
            got += k
        self._consumed(n)

    def read_stream(self, n: int, what: str) -> bytearray:
        """``n`` bytes from a stream of unknown length, growing the buffer only
        as the bytes arrive (a short stream fails having held what it sent)."""
        buf = bytearray()
        while len(buf) < n:
            b = self.fh.read(min(n - len(buf), _CHUNK))
            if not b:
                self.fail(f"the file ends inside the {what} ({n} bytes claimed, {len(buf)} read)")
            buf += b
        return buf


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _parse_header(r: _Reader, raw: bytes):
    """The tensors' entries (sorted by offset, checked to tile the data
    exactly) and the metadata, or a FileFormatError saying what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        r.fail(f"the header is not UTF-8 ({e}); this is not a safetensors file")
    if not text.lstrip().startswith("{"):
        r.fail("the header is not a JSON object; this is not a safetensors file")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as e:
        r.fail(f"the header is not valid JSON ({e})")
    if not isinstance(header, dict):
        r.fail("the header is not a JSON object")
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())):
        r.fail("the header's __metadata__ is not a map of strings to strings")
    entries = []
    for name, e in header.items():
        if not isinstance(e, dict) or not {"dtype", "shape", "data_offsets"} <= e.keys():
            r.fail(f"tensor {name!r}: the entry needs 'dtype', 'shape' and 'data_offsets'")
        dt, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        if not isinstance(dt, str) or (dt not in _LOAD_DTYPES and dt not in _ITEMSIZE):
            r.fail(f"tensor {name!r}: unknown dtype {dt!r}")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            r.fail(f"tensor {name!r}: the shape {shape!r} is not a list of non-negative integers")
        if not (isinstance(offs, list) and len(offs) == 2 and all(_is_int(o) for o in offs) and 0 <= offs[0] <= offs[1]):
            r.fail(f"tensor {name!r}: data_offsets {offs!r} are not [begin, end] with 0 <= begin <= end")
        itemsize = _LOAD_DTYPES[dt][0].itemsize if dt in _LOAD_DTYPES else _ITEMSIZE[dt]
        # each dim, and the product of the nonzero ones, must be addressable:
        # a huge shape is refused before anything is allocated for it
        extent = itemsize
        for d in shape:
            extent *= max(d, 1)
        if extent >= 2**62:
            r.fail(f"tensor {name!r}: the shape {shape} is too large")
        numel = 1
        for d in shape:
            numel *= d
        if numel * itemsize != offs[1] - offs[0]:
            r.fail(
                f"tensor {name!r}: dtype {dt} and shape {shape} take {numel * itemsize} bytes, but data_offsets {offs} span {offs[1] - offs[0]}"
            )
        entries.append((offs[0], offs[1], name, dt, tuple(shape)))
    entries.sort(key=lambda x: (x[0], x[1]))
    expect = 0
    for begin, end, name, _, _ in entries:
        if begin != expect:
            kind = "overlap the previous tensor" if begin < expect else "leave a gap after the previous tensor"
            r.fail(f"tensor {name!r}: data_offsets [{begin}, {end}] {kind} (expected to begin at {expect})")
        expect = end
    return entries, expect, meta


def _read_tensor(r: _Reader, name: str, dt: str, shape: Tuple[int, ...], nbytes: int) -> Tensor:
    if dt not in _LOAD_DTYPES:
        raise DTypeError(f"rbe.load: {r.name}: tensor {name!r} has dtype {dt}, which rbe cannot hold (float32, float64, int64, bool, or narrower ints and floats)")
    stored, target = _LOAD_DTYPES[dt]
    if r.left is None:
        buf = r.read_stream(nbytes, f"data of tensor {name!r}")
        arr = np.frombuffer(buf, dtype=stored).reshape(shape) if nbytes else np.empty(shape, dtype=stored)
    else:
        arr = np.empty(shape, dtype=stored)
        if nbytes:
            r.read_into(memoryview(arr.reshape(-1).view(np.uint8)), f"data of tensor {name!r}")
    if dt == "BOOL":
        # any nonzero byte is True (a byte other than 0 or 1 is no valid bool)
        arr = np.not_equal(arr, 0) if arr.size and arr.max() > 1 else arr.view(np.bool_)
    elif dt == "BF16":
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    if arr.dtype != target:  # widening, or to native byte order
        arr = arr.astype(target)
    return _core.from_numpy(arr)


def _unflatten(r: _Reader, node, tensors):
    if not isinstance(node, dict) or len(node) != 1:
        r.fail("the rbe.structure metadata is corrupt (a node is not a one-key object)")
    (kind, v), = node.items()
    if kind == "__tensor__":
        if not isinstance(v, str) or v not in tensors:
            r.fail(f"the rbe.structure metadata names a tensor {v!r} that the file does not hold")
        return tensors[v]
    if kind == "__dict__":
        if not isinstance(v, list) or not all(isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], (str, int)) for kv in v):
            r.fail("the rbe.structure metadata is corrupt (a dict is not a list of [key, value] pairs)")
        return {k: _unflatten(r, x, tensors) for k, x in v}
    if kind in ("__list__", "__tuple__"):
        if not isinstance(v, list):
            r.fail(f"the rbe.structure metadata is corrupt ({kind} is not a list)")
        items = [_unflatten(r, x, tensors) for x in v]
        return items if kind == "__list__" else tuple(items)
    if kind == "__value__":
        if not (v is None or isinstance(v, (bool, int, float, str))):
            r.fail("the rbe.structure metadata is corrupt (a value is not a number, a string or null)")
        return v
    r.fail(f"the rbe.structure metadata is corrupt (unknown node {kind!r})")


def load(f, map_location=None, weights_only: bool = True) -> Any:
    """Load what ``save`` stored (or any safetensors file, as a flat dict); tensors come back as rbe tensors.

    A corrupt, truncated or absurd file raises :class:`rbe.errors.FileFormatError`
    (a ``RuntimeError`` and a ``ValueError``) naming the file."""
    r = _Reader(f)
    try:
        n = int.from_bytes(r.read(8, "8-byte header length"), "little")
        if n > MAX_HEADER_BYTES:
            r.fail(f"the header length is {n} bytes, over the {MAX_HEADER_BYTES}-byte limit; this is not a safetensors file (or it is corrupt)")
        raw = r.read(n, "header")
        entries, data_len, meta = _parse_header(r, raw)
        if r.left is not None:
            if data_len > r.left:
                r.fail(f"the header claims {data_len} bytes of tensor data but only {r.left} follow it (truncated?)")
            if r.own and data_len < r.left:
                r.fail(f"{r.left - data_len} bytes follow the last tensor's data (the header claims {data_len} bytes of data)")
        tensors = {}
        for begin, end, name, dt, shape in entries:
            tensors[name] = _read_tensor(r, name, dt, shape, end - begin)
    finally:
        r.close()
    if meta and _STRUCT in meta:
        try:
            node = json.loads(meta[_STRUCT])
        except (ValueError, RecursionError) as e:
            r.fail(f"the rbe.structure metadata is not valid JSON ({e})")
        try:
            return _unflatten(r, node, tensors)
        except RecursionError:
            r.fail("the rbe.structure metadata is nested too deeply")
    if meta and _ORDER in meta:
        try:
            order = json.loads(meta[_ORDER])
        except (ValueError, RecursionError) as e:
            r.fail(f"the rbe.keys metadata is not valid JSON ({e})")
        if not isinstance(order, list) or not all(isinstance(k, str) for k in order):
            r.fail("the rbe.keys metadata is not a list of names")
        missing = [k for k in order if k not in tensors]
        if missing:
            r.fail(f"the rbe.keys metadata names tensors the file does not hold: {missing[:5]}")
        out = {k: tensors[k] for k in order}
        out.update((k, v) for k, v in tensors.items() if k not in out)
        return out
    return tensors
