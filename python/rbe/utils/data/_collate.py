"""``default_collate`` and ``default_convert``, as ``torch.utils.data``.

Differences from torch, on purpose:

* Python floats collate to ``rbe.get_default_dtype()`` (torch gives float64);
* a batch of tuples collates to a tuple of columns (torch gives a list);
* NumPy dtypes that rbe lacks are widened: integer arrays/scalars become
  int64 and float16 becomes the default float dtype (rbe has float32,
  float64, int64 and bool only).
"""
from __future__ import annotations

import collections.abc
import copy

import numpy as np

from ..._core import Tensor

__all__ = ["default_collate", "default_convert"]

_ERR = "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def _numpy_ok(a) -> bool:
    # torch refuses string and object arrays
    return a.dtype.kind not in "OSUaV"


def _rebuild_mapping(elem, values: dict):
    if isinstance(elem, collections.abc.MutableMapping):
        try:
            clone = copy.copy(elem)
            clone.update(values)
            return clone
        except Exception:
            return values
    try:
        return type(elem)(values)
    except TypeError:
        return values


def _rebuild_sequence(elem, columns: list):
    if _is_namedtuple(elem):
        return type(elem)(*columns)
    if isinstance(elem, tuple):
        return tuple(columns)
    if isinstance(elem, collections.abc.MutableSequence) and type(elem) is not list:
        try:
            clone = copy.copy(elem)
            for i, c in enumerate(columns):
                clone[i] = c
            return clone
        except Exception:
            return columns
    return columns


def default_collate(batch):
    """Merge a list of samples into a batch.

    * rbe tensors are stacked along a new first dimension (``rbe.stack``); all
      must have the same shape (else RuntimeError);
    * NumPy arrays become tensors and are stacked; NumPy scalars become a 1-D
      tensor of their dtype;
    * Python ``bool`` -> bool tensor, ``int`` -> int64, ``float`` -> the
      default float dtype;
    * ``str``/``bytes`` are returned as the list they came in;
    * a dict (Mapping) gives a dict of collated values per key; a namedtuple
      gives the namedtuple of collated fields; a tuple a tuple of collated
      columns, a list a list (all samples must have equal length).

    >>> default_collate([(rbe.zeros(2), 0), (rbe.ones(2), 1)])   # doctest: +SKIP
    (tensor([[0., 0.], [1., 1.]]), tensor([0, 1]))
    """
    import rbe

    batch = list(batch)
    if not batch:
        raise ValueError("default_collate: the batch is empty")
    elem = batch[0]
    if isinstance(elem, Tensor):
        shapes = [tuple(b.shape) if isinstance(b, Tensor) else None for b in batch]
        if any(s is None for s in shapes):
            raise TypeError("default_collate: a batch mixes tensors and non-tensors")
        if any(s != shapes[0] for s in shapes):
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {sorted(set(shapes))} in one batch")
        return rbe.stack(batch, 0)
    if isinstance(elem, np.ndarray):
        if not _numpy_ok(elem):
            raise TypeError(_ERR.format(elem.dtype))
        shapes = [np.shape(b) for b in batch]
        if any(s != shapes[0] for s in shapes):
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {sorted(set(shapes))} in one batch")
        return rbe.as_tensor(np.stack(batch))
    if isinstance(elem, np.generic):
        if not _numpy_ok(np.asarray(elem)):
            raise TypeError(_ERR.format(type(elem)))
        return rbe.as_tensor(np.array(batch))
    if isinstance(elem, bool):
        return rbe.tensor(batch)
    if isinstance(elem, int):
        return rbe.tensor(batch)
    if isinstance(elem, float):
        return rbe.tensor(batch, dtype=rbe.get_default_dtype())
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return _rebuild_mapping(elem, {k: default_collate([d[k] for d in batch]) for k in elem})
    if isinstance(elem, collections.abc.Sequence):
        n = len(elem)
        if any(len(b) != n for b in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        return _rebuild_sequence(elem, [default_collate(list(col)) for col in zip(*batch)])
    raise TypeError(_ERR.format(type(elem)))


def default_convert(data):
    """Turn NumPy arrays/scalars into tensors, recursing into containers; anything else is returned as is.

    This is the ``collate_fn`` of a ``DataLoader`` with ``batch_size=None``
    (no batching).
    """
    import rbe

    if isinstance(data, Tensor):
        return data
    if isinstance(data, (np.ndarray, np.generic)):
        return rbe.as_tensor(data) if _numpy_ok(np.asarray(data)) else data
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, collections.abc.Mapping):
        return _rebuild_mapping(data, {k: default_convert(v) for k, v in data.items()})
    if isinstance(data, collections.abc.Sequence):
        return _rebuild_sequence(data, [default_convert(d) for d in data])
    return data
