"""Utilities: ``checkpoint`` (activation recomputation), ``EarlyStopping``,
``progress`` (tqdm bars on a terminal)."""
from . import checkpoint, data  # noqa: F401
from .early_stopping import EarlyStopping  # noqa: F401
from .progress import progress  # noqa: F401
