"""Optimizers, as ``torch.optim``: each ``step`` updates a parameter group in one call into Rust."""
from .optimizer import Optimizer
from .sgd import SGD
from .adam import Adam, AdamW
from .rmsprop import RMSprop
from .lbfgs import LBFGS
from . import lr_scheduler

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "LBFGS", "RiemannianAdam", "RBEHybrid", "lr_scheduler"]


def __getattr__(name: str):
    # RiemannianAdam and RBEHybrid live in the RBE front-end (rbe.structured);
    # resolved on first use, so importing rbe.optim does not import the front-end.
    if name in ("RiemannianAdam", "RBEHybrid"):
        from .. import structured

        return getattr(structured, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
