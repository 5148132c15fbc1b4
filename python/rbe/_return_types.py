"""Named results of ops returning (values, indices), as ``torch.return_types``."""
from collections import namedtuple

max = namedtuple("max", ["values", "indices"])
min = namedtuple("min", ["values", "indices"])
_TYPES = {"max": max, "min": min}


def make(name, values, indices):
    return _TYPES[name](values, indices)
