from .module import Module
from .linear import Identity, Linear, Flatten, Unflatten, Dropout, Embedding
from .container import Sequential, ModuleList, ModuleDict
from .activation import ReLU, LeakyReLU, ELU, GELU, SiLU, Softplus, Sigmoid, Tanh, Softmax, LogSoftmax
from .normalization import BatchNorm1d, LayerNorm
from .loss import MSELoss, L1Loss, HuberLoss, SmoothL1Loss, CrossEntropyLoss, NLLLoss, BCELoss, BCEWithLogitsLoss

__all__ = [
    "Module", "Identity", "Linear", "Flatten", "Unflatten", "Dropout", "Embedding",
    "Sequential", "ModuleList", "ModuleDict",
    "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Softplus", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
    "BatchNorm1d", "LayerNorm",
    "MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss", "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss",
]


def __getattr__(name: str):
    # RBELinear and RBESizeReport live in the RBE front-end (rbe.structured),
    # resolved on first use (the module rbe_linear here is the old path).
    if name in ("RBELinear", "RBESizeReport"):
        from ... import structured

        return getattr(structured, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
