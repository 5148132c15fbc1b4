"""Old location of ``RBELinear`` (now ``rbe.structured.layer``), kept so that
existing imports and pickles (which name ``rbe.nn.modules.rbe_linear.RBELinear``)
keep working."""
from ...structured.layer import HEADER_BYTES, RBELinear, RBESizeReport, low_frequency_indices  # noqa: F401

__all__ = ["RBELinear", "RBESizeReport"]
