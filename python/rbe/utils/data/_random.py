"""Random draws for the data utilities (all go through rbe's generators)."""
from __future__ import annotations

from typing import List, Optional


def _generator(generator):
    """The generator to draw from (``None`` and ``rbe.default_generator`` both mean the default one)."""
    return generator


def randperm(n: int, generator=None) -> List[int]:
    """A random permutation of ``range(n)`` as a list, from ``rbe.randperm``."""
    import rbe

    return rbe.randperm(int(n), generator=_generator(generator)).tolist()


def randint(high: int, size: int, generator: Optional[object] = None) -> List[int]:
    """``size`` integers uniform on ``[0, high)`` as a list, from ``rbe.randint``."""
    import rbe

    return rbe.randint(0, int(high), (int(size),), generator=_generator(generator)).tolist()
