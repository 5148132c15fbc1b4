"""Optimizers, as ``torch.optim``: each ``step`` updates a parameter group in one call into Rust."""
from .optimizer import Optimizer
from .sgd import SGD
from .adam import Adam, AdamW
from .rmsprop import RMSprop
from .lbfgs import LBFGS
from .riemannian import RiemannianAdam
from .rbe_hybrid import RBEHybrid
from . import lr_scheduler

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "LBFGS", "RiemannianAdam", "RBEHybrid", "lr_scheduler"]
