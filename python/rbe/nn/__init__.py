"""Neural-network building blocks, as ``torch.nn``."""
from . import functional, init  # noqa: F401
from .parameter import Parameter, Buffer  # noqa: F401
from .modules import *  # noqa: F401,F403
from .modules import __all__ as _mods
from . import utils  # noqa: F401

__all__ = ["Parameter", "Buffer", "functional", "init", "utils"] + list(_mods)
