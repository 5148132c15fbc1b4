"""Neural-network building blocks, as ``torch.nn``."""
from . import functional, init  # noqa: F401
from .parameter import Parameter, Buffer  # noqa: F401
from .modules import *  # noqa: F401,F403
from .modules import __all__ as _mods
from . import utils  # noqa: F401

__all__ = ["Parameter", "Buffer", "functional", "init", "utils"] + list(_mods) + ["RBELinear", "RBESizeReport"]
__all__ += ["ChebyKAN"]  # the PINN front-end (rbe.pinn), resolved lazily below


def __getattr__(name: str):
    # RBELinear and RBESizeReport live in the RBE front-end (rbe.structured);
    # resolved on first use, so importing rbe.nn does not import the front-end.
    if name in ("RBELinear", "RBESizeReport"):
        from .. import structured

        return getattr(structured, name)
    if name == "ChebyKAN":
        from .. import pinn

        return pinn.ChebyKAN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
