"""Neural-network building blocks. ``rbe.nn.functional`` holds the functions."""
from . import functional  # noqa: F401
