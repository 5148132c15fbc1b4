"""Progress bars for long loops: tqdm on a terminal, silent otherwise."""
from __future__ import annotations

import sys


def progress(iterable, desc: str | None = None, total: int | None = None, disable: bool | None = None, **kwargs):
    """Wrap ``iterable`` in a tqdm bar when stderr is a terminal (and tqdm is installed)."""
    if disable is None:
        disable = not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
    if disable:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=desc, total=total, **kwargs)
