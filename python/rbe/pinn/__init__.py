"""Physics-informed neural networks: the PINN front-end of rbe (see ``docs/pinn.md``).

- layers and models (``layers.py``): :class:`ChebyKAN` (Chebyshev
  Kolmogorov-Arnold layer, fused; also ``rbe.nn.ChebyKAN``),
  :class:`ChebyKANNet` (the scaled cPIKAN), :class:`MLP`, :class:`BoxScaling`,
  :class:`Sin`, :class:`OutputTransform`, :class:`InputTransform`;
- input derivatives in one forward sweep (``taylor.py``): :func:`gradient`,
  :func:`laplacian`, :func:`hessian_diag`, :func:`taylor`, :class:`Jet`;
- functional ops (``functional.py``): ``cheb_basis``, ``chebykan``,
  ``chebykan_taylor``.

The kernels are the Rust crate ``rust/pinn`` (``rbe-pinn``), bound as
``rbe._core.pinn``. This package imports from ``rbe``; ``rbe`` reaches it only
through the lazy ``rbe.nn.ChebyKAN``.
"""
from . import functional
from .layers import INITS, BoxScaling, ChebyKAN, ChebyKANNet, InputTransform, MLP, OutputTransform, Sin, init_chebykan_
from .taylor import MODES, Derivatives, Jet, TaylorModeError, gradient, hessian_diag, laplacian, propagate, register_taylor_rule, taylor

__all__ = [
    "ChebyKAN", "ChebyKANNet", "MLP", "BoxScaling", "Sin", "OutputTransform", "InputTransform", "INITS", "init_chebykan_",
    "Jet", "Derivatives", "TaylorModeError", "MODES", "taylor", "gradient", "laplacian", "hessian_diag", "propagate",
    "register_taylor_rule", "functional",
]
