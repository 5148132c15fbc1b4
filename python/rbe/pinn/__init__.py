"""Physics-informed neural networks: the PINN front-end of rbe (see ``docs/pinn.md``).

- layers and models (``layers.py``): :class:`ChebyKAN` (Chebyshev
  Kolmogorov-Arnold layer, fused; also ``rbe.nn.ChebyKAN``),
  :class:`ChebyKANNet` (the scaled cPIKAN), :class:`MLP`, :class:`BoxScaling`,
  :class:`Sin`, :class:`OutputTransform`, :class:`InputTransform`;
- input derivatives in one forward sweep (``taylor.py``): :func:`gradient`,
  :func:`laplacian`, :func:`hessian_diag`, :func:`taylor`, :class:`Jet`;
- problems (``problems.py``): Poisson 1D/2D/3D, Helmholtz 2D, the
  Scaled-cPIKAN diffusion problem, and :class:`Problem` for one's own;
- training (``trainer.py``): :class:`Trainer` (Adam then L-BFGS),
  :class:`DynamicWeightedLoss`, :class:`AdaptiveResidualSampler`;
- functional ops (``functional.py``): ``cheb_basis``, ``chebykan``,
  ``chebykan_taylor``.

The kernels are the Rust crate ``rust/pinn`` (``rbe-pinn``), bound as
``rbe._core.pinn``. This package imports from ``rbe``; ``rbe`` reaches it only
through the lazy ``rbe.nn.ChebyKAN``.
"""
from . import errors, functional
from .errors import ArgumentTypeError
from .layers import INITS, BoxScaling, ChebyKAN, ChebyKANNet, InputTransform, MLP, OutputTransform, Sin, init_chebykan_
from .taylor import MODES, Derivatives, Jet, TaylorModeError, gradient, hessian_diag, laplacian, propagate, register_taylor_rule, taylor
from . import problems
from .problems import PROBLEMS, Diffusion1D, Helmholtz2D, Poisson1D, Poisson2D, Poisson3D, Problem, get_problem
from .trainer import (SCHEDULERS, AdaptiveResidualSampler, DynamicWeightedLoss, NonFiniteLossError, Trainer, TrainingResult,
                      make_scheduler)

__all__ = [
    "ChebyKAN", "ChebyKANNet", "MLP", "BoxScaling", "Sin", "OutputTransform", "InputTransform", "INITS", "init_chebykan_",
    "Jet", "Derivatives", "TaylorModeError", "MODES", "taylor", "gradient", "laplacian", "hessian_diag", "propagate",
    "register_taylor_rule", "functional",
    "problems", "Problem", "PROBLEMS", "get_problem", "Poisson1D", "Poisson2D", "Poisson3D", "Helmholtz2D", "Diffusion1D",
    "Trainer", "TrainingResult", "DynamicWeightedLoss", "AdaptiveResidualSampler", "make_scheduler", "SCHEDULERS",
    "NonFiniteLossError", "ArgumentTypeError", "errors",
]
