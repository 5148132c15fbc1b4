from .module import Module
from .linear import Identity, Linear, Flatten, Unflatten, Dropout, Embedding
from .container import Sequential, ModuleList, ModuleDict
from .activation import ReLU, LeakyReLU, ELU, GELU, SiLU, Softplus, Sigmoid, Tanh, Softmax, LogSoftmax
from .normalization import BatchNorm1d, LayerNorm
from .rbe_linear import RBELinear, RBESizeReport
from .loss import MSELoss, L1Loss, HuberLoss, SmoothL1Loss, CrossEntropyLoss, NLLLoss, BCELoss, BCEWithLogitsLoss

__all__ = [
    "Module", "Identity", "Linear", "Flatten", "Unflatten", "Dropout", "Embedding",
    "RBELinear", "RBESizeReport",
    "Sequential", "ModuleList", "ModuleDict",
    "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Softplus", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
    "BatchNorm1d", "LayerNorm",
    "MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss", "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss",
]
