"""``Parameter``: a tensor that a ``Module`` registers as a learnable weight."""
from __future__ import annotations

from .._core import Tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad by default and is registered by ``Module``.

    ``Parameter(data)`` shares memory with ``data``.
    """

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True):
        if data is None:
            from .. import empty

            data = empty(0)
        return super().__new__(cls, data, requires_grad=requires_grad)

    def __init__(self, data=None, requires_grad: bool = True):
        pass

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        p = type(self)(self.detach().clone(), self.requires_grad)
        memo[id(self)] = p
        return p

    def __reduce__(self):
        return (_rebuild_parameter, (self.detach().numpy().copy(), self.requires_grad))


def _rebuild_parameter(arr, requires_grad):
    from .. import from_numpy

    return Parameter(from_numpy(arr), requires_grad)


class Buffer:
    """Marker for ``register_buffer``-style attributes (``nn.Buffer(t)``)."""

    def __init__(self, data: Tensor, persistent: bool = True):
        self.data = data
        self.persistent = persistent
