"""Old location of ``RBEHybrid`` (now ``rbe.structured.hybrid``), kept so that
existing imports and pickles (which name ``rbe.optim.rbe_hybrid.RBEHybrid``)
keep working."""
from ..structured.hybrid import RBEHybrid  # noqa: F401

__all__ = ["RBEHybrid"]
