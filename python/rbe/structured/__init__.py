"""RBE structured weights: the first front-end of rbe (see ``docs/rbe.md``).

A linear layer whose weight matrix is generated block by block from a few
128-bit atoms, its optimisers and its functional ops:

- :class:`RBELinear` (``layer.py``) and :data:`RBESizeReport`;
- :class:`RBEHybrid` (``hybrid.py``): Adam plus exact-checked track flips;
- :class:`RiemannianAdam` (``riemannian.py``, with the Poincare-ball maths);
- :func:`rbe_linear`, :func:`rbe_generate` (``functional.py``).

The kernels are the Rust crate ``rust/structured`` (``rbe-structured``),
bound as ``rbe._core.structured``. This package imports from ``rbe`` (``nn``,
``optim``, ``_core``); the core package reaches it only through lazy
re-exports kept for the old import paths (``rbe.nn.RBELinear``,
``rbe.nn.functional.rbe_linear``, ``rbe.optim.RBEHybrid``,
``rbe.optim.RiemannianAdam``, ``rbe.nn.modules.rbe_linear``, ...).
"""
from .functional import rbe_generate, rbe_linear
from .hybrid import RBEHybrid
from .layer import RBELinear, RBESizeReport, low_frequency_indices
from .riemannian import RiemannianAdam

__all__ = ["RBELinear", "RBESizeReport", "RBEHybrid", "RiemannianAdam", "rbe_linear", "rbe_generate", "low_frequency_indices"]
