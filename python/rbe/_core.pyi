"""Type stub for ``rbe._core``, the PyO3 extension module of rbe (see rust/py/src/).

Keep in sync with the ``#[pyclass]`` / ``#[pymethods]`` / ``#[pyfunction]`` items of
rust/py/src/{lib,conv,functions}.rs and rust/py/src/tensor/*.rs, and with the methods
that ``rbe/__init__.py`` attaches to ``Tensor`` at import time. The submodules of the
front-ends (``rbe._core.structured``, bound in rust/py/src/structured.rs) have their own
stubs in ``python/rbe/_core/``. CI checks them against the built module:
``python -m mypy.stubtest rbe._core rbe._core.structured --allowlist .ci/stubtest-allowlist.txt``.
"""
from __future__ import annotations

import builtins
from typing import (
    Any,
    Dict,
    Iterator,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
    final,
    overload,
)

import numpy as np
from numpy.typing import NDArray
from typing_extensions import disjoint_base

from rbe import device as _Device
from rbe._core import hmm as hmm
from rbe._core import iclv as iclv
from rbe._core import structured as structured
from rbe._core import pinn as pinn
from rbe._size import Size

# PyO3 fills __all__ in the order of the declaration in rust/py/src/lib.rs: the exports
# (the front-end submodules last), then what #[pymodule_init] adds (the dtypes, __version__).
__all__ = [
    "dtype",
    "Generator",
    "Node",
    "Tensor",
    "arange",
    "bernoulli",
    "eye",
    "full",
    "linspace",
    "rand",
    "randint",
    "randn",
    "randperm",
    "zeros",
    "get_rng_state",
    "initial_seed",
    "manual_seed",
    "set_rng_state",
    "get_default_dtype",
    "is_grad_enabled",
    "set_default_dtype",
    "set_grad_enabled",
    "broadcast_shapes",
    "cat",
    "from_numpy",
    "stack",
    "where_",
    "dropout",
    "elu",
    "gelu",
    "leaky_relu",
    "linear",
    "log_ndtr",
    "ndtr",
    "ndtr_ratio",
    "pad_constant",
    "silu",
    "softplus",
    "attach_py_function",
    "run_backward",
    "adam_step",
    "class_coefficients",
    "cross_entropy",
    "rmsprop_step",
    "sgd_step",
    "empty_cache",
    "max_memory_allocated",
    "memory_allocated",
    "memory_stats",
    "reset_peak_memory_stats",
    "set_pool_limit",
    "get_num_threads",
    "set_num_threads",
    "hmm",
    "iclv",
    "structured",
    "pinn",
    "bool",
    "int64",
    "float32",
    "float64",
    "__version__",
]

# The module attribute ``bool`` (a dtype) and the Tensor methods ``bool``/``int``/``float``
# and property ``dtype`` shadow the builtins/classes, so the stub uses these aliases.
_bool = builtins.bool
_int = builtins.int
_float = builtins.float
_str = builtins.str

_TT = TypeVar("_TT", bound="Tensor")

_Number = Union[_float, _int, _bool]
_TensorOrNumber = Union["Tensor", _float, _int, _bool]
# An rbe dtype, a NumPy dtype or scalar type, a name ("float32", "rbe.int64", ...),
# or the Python types float/int/bool.
_DTypeLike = Union["dtype", Type[Any], _str, "np.dtype[Any]"]
_DeviceLike = Union[_str, _Device]
# ``*shape`` arguments: ints, or a single sequence of ints.
_ShapeArg = Union[_int, Sequence[_int]]
# ``dim`` of reductions: one dim or several.
_Dims = Union[_int, Sequence[_int]]
_IndexItem = Union[
    None,
    _int,
    _bool,
    slice,
    "builtins.ellipsis",
    "Tensor",
    Sequence[Any],
    "NDArray[Any]",
]
_Index = Union[_IndexItem, Tuple[_IndexItem, ...]]

class _ValuesIndices(NamedTuple):
    """``(values, indices)`` of ``max``/``min`` over a dim (runtime type: ``rbe._return_types.max``/``min``)."""

    values: Tensor
    indices: Tensor

@final
class dtype:
    """A dtype object (``rbe.float32``, ...). One instance per dtype."""

    @property
    def is_floating_point(self) -> _bool:
        """Whether this is float32 or float64."""
    @property
    def itemsize(self) -> _int:
        """Size of one element in bytes."""
    @property
    def name(self) -> _str:
        """The dtype's name, e.g. ``"float32"``."""
    def __reduce__(self) -> _str:
        """Pickled by name: ``rbe.float32`` (and so on) loads back as the same object."""
    def __copy__(self) -> dtype:
        """A dtype is a singleton: copies are the object itself."""
    def __deepcopy__(self, _memo: Any) -> dtype: ...
    def __repr__(self) -> _str: ...

_DType = dtype

@final
class Node:
    """A recorded backward node, as seen from Python (``tensor.grad_fn``)."""

    def name(self) -> _str:
        """The node's name, e.g. ``"MulBackward0"``."""
    @property
    def next_functions(self) -> Tuple[Tuple[Optional[Node], _int], ...]:
        """``(node, 0)`` for each input of the op (``None`` for inputs without grad)."""
    def __repr__(self) -> _str: ...

@final
class Generator:
    """A random number generator (Philox4x32-10): ``rbe.Generator().manual_seed(s)``."""

    def __new__(cls, device: _str = "cpu") -> Generator: ...
    def manual_seed(self, seed: _int) -> Generator:
        """Reseed this generator; returns it."""
    def initial_seed(self) -> _int:
        """The seed this generator was last seeded with."""
    def seed(self) -> _int:
        """Reseed from the clock; returns the new seed."""
    def get_state(self) -> Tuple[_int, _int]:
        """The generator state (for ``set_state``)."""
    def set_state(self, state: Tuple[_int, _int]) -> None:
        """Restore a state returned by ``get_state``."""
    def __reduce__(self) -> Tuple[Any, Tuple[_str], Tuple[_int, _int]]:
        """Pickled (and deep-copied) with its state: the copy continues the same stream."""
    def __setstate__(self, state: Tuple[_int, _int]) -> None: ...

@disjoint_base
class Tensor:
    """A multi-dimensional array with autograd support (float32/float64/int64/bool, CPU)."""

    def __new__(cls: Type[_TT], data: Any = None, *, requires_grad: _bool = False) -> _TT:
        """An alias of ``data`` (a Tensor; other data goes through ``rbe.tensor``) or an empty float tensor."""

    # ------------------------------------------------------------ attributes
    @property
    def shape(self) -> Size:
        """The tensor's shape."""
    @overload
    def size(self, dim: None = None) -> Size:
        """The shape, or the size of one dim."""
    @overload
    def size(self, dim: _int) -> _int: ...
    @property
    def dtype(self) -> _DType:
        """The element type."""
    @property
    def device(self) -> _Device:
        """Always the CPU."""
    @property
    def is_cuda(self) -> _bool: ...
    @property
    def ndim(self) -> _int:
        """Number of dimensions."""
    def dim(self) -> _int:
        """Number of dimensions."""
    def ndimension(self) -> _int: ...
    def numel(self) -> _int:
        """Number of elements."""
    def nelement(self) -> _int: ...
    def element_size(self) -> _int:
        """Size of one element in bytes."""
    @overload
    def stride(self, dim: None = None) -> Tuple[_int, ...]:
        """Strides in elements (all dims, or one dim)."""
    @overload
    def stride(self, dim: _int) -> _int: ...
    def storage_offset(self) -> _int: ...
    def data_ptr(self) -> _int: ...
    def is_contiguous(self) -> _bool: ...
    def is_floating_point(self) -> _bool: ...
    @property
    def requires_grad(self) -> _bool:
        """Whether operations on this tensor are recorded for autograd."""
    @requires_grad.setter
    def requires_grad(self, v: _bool) -> None: ...
    def requires_grad_(self: _TT, requires_grad: _bool = True) -> _TT:
        """Set ``requires_grad`` in place; returns self."""
    @property
    def is_leaf(self) -> _bool: ...
    @property
    def _version(self) -> _int:
        """Version counter of the tensor's memory (bumped by every in-place write)."""
        ...
    @property
    def grad_fn(self) -> Optional[Node]:
        """The node that created this tensor (``None`` for leaves)."""
    @property
    def grad(self) -> Optional[Tensor]:
        """The accumulated gradient, or ``None``."""
    @grad.setter
    def grad(self, g: Optional[Tensor]) -> None: ...
    @property
    def retains_grad(self) -> _bool: ...
    def retain_grad(self) -> None:
        """Keep ``.grad`` of this non-leaf tensor after ``backward``."""
    @property
    def data(self) -> Tensor:
        """A detached alias; assigning copies a tensor of the same shape and dtype into it."""
    @data.setter
    def data(self, other: Tensor) -> None: ...
    @property
    def T(self) -> Tensor:
        """All dims reversed."""
    @property
    def mT(self) -> Tensor:
        """The last two dims swapped."""
    def t(self) -> Tensor:
        """Transpose of a tensor with <= 2 dims."""

    # ------------------------------------------------------------ conversion
    def item(self) -> Union[_float, _int, _bool]:
        """The value of a one-element tensor as a Python number."""
    def tolist(self) -> Any:
        """Nested lists of Python numbers (a number for a 0-d tensor)."""
    def __float__(self) -> _float: ...
    def __int__(self) -> _int:
        """As Python's ``int(float)``: exact, ValueError for NaN, OverflowError for the infinities."""
    def _storage_key(self) -> _int:
        """An identity of the memory under this tensor, equal for tensors that share it (while they live)."""
    def _storage_copy(self) -> Tensor:
        """A copy of all the memory under this tensor, as a new 1-D contiguous tensor (for ``copy.deepcopy``)."""
    def _restride_onto(self, storage: Tensor) -> Tensor:
        """This tensor's shape, strides and offset over the memory of ``storage`` (made by ``_storage_copy``)."""
    def __index__(self) -> _int: ...
    def __bool__(self) -> _bool: ...
    def __len__(self) -> _int: ...
    def __hash__(self) -> _int: ...
    def __repr__(self) -> _str: ...
    @property
    def __array_interface__(self) -> Dict[_str, Any]: ...
    def numpy(self, *, force: _bool = False) -> NDArray[Any]:
        """A NumPy array sharing this tensor's memory."""
    def to(
        self,
        *args: Union[_DTypeLike, Tensor, _DeviceLike],
        dtype: Optional[_DTypeLike] = None,
        device: Optional[_DeviceLike] = None,
        copy: _bool = False,
        non_blocking: _bool = False,
    ) -> Tensor:
        """``to(dtype)`` / ``to(other)`` / ``to("cpu")``; returns self when nothing changes."""
    def double(self) -> Tensor:
        """Cast to float64 (self if already)."""
    def float(self) -> Tensor:
        """Cast to float32 (self if already)."""
    def long(self) -> Tensor:
        """Cast to int64 (self if already)."""
    def int(self) -> Tensor:
        """Cast to int64 (self if already)."""
    def bool(self) -> Tensor:
        """Cast to bool (self if already)."""
    def type_as(self, other: Tensor) -> Tensor: ...
    def cpu(self: _TT) -> _TT: ...
    def clone(self) -> Tensor:
        """A copy (differentiable)."""
    def detach(self) -> Tensor:
        """An alias cut from the autograd graph."""
    def detach_(self: _TT) -> _TT: ...
    def contiguous(self) -> Tensor: ...

    # ------------------------------------------------------------ autograd
    def backward(
        self,
        gradient: Optional[_TensorOrNumber] = None,
        retain_graph: Optional[_bool] = None,
        create_graph: _bool = False,
        inputs: Union[Tensor, Sequence[Tensor], None] = None,
    ) -> None:
        """Accumulate the gradient of this tensor into ``.grad`` of the leaves."""

    # ------------------------------------------------------------ arithmetic dunders
    def __add__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __radd__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __sub__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __rsub__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __mul__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __rmul__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __truediv__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __rtruediv__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __floordiv__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __rfloordiv__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __mod__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __rmod__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __pow__(self, other: _TensorOrNumber, mod: None = None, /) -> Tensor: ...
    def __rpow__(self, other: _TensorOrNumber, mod: None = None, /) -> Tensor: ...
    def __matmul__(self, other: Tensor, /) -> Tensor: ...
    def __rmatmul__(self, other: Tensor, /) -> Tensor: ...
    def __neg__(self) -> Tensor: ...
    def __pos__(self: _TT) -> _TT: ...
    def __abs__(self) -> Tensor: ...
    def __invert__(self) -> Tensor: ...
    def __and__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __rand__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __or__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __ror__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __xor__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __rxor__(self, other: _TensorOrNumber, /) -> Tensor: ...
    # ``==``/``!=`` with a non-numeric operand give a plain False/True.
    def __eq__(self, other: object, /) -> Tensor: ...  # type: ignore[override]
    def __ne__(self, other: object, /) -> Tensor: ...  # type: ignore[override]
    def __lt__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __le__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __gt__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __ge__(self, other: _TensorOrNumber, /) -> Tensor: ...
    def __iadd__(self: _TT, other: _TensorOrNumber, /) -> _TT: ...
    def __isub__(self: _TT, other: _TensorOrNumber, /) -> _TT: ...
    def __imul__(self: _TT, other: _TensorOrNumber, /) -> _TT: ...
    def __itruediv__(self: _TT, other: _TensorOrNumber, /) -> _TT: ...
    def __ipow__(self: _TT, other: _TensorOrNumber, /) -> _TT: ...  # type: ignore[misc]
    def __getitem__(self, key: _Index, /) -> Tensor:
        """NumPy-style indexing: ints, slices, ``...``, ``None``, int/bool tensors or lists."""
    def __setitem__(self, key: _Index, value: _TensorOrNumber, /) -> None:
        """Assign into the indexed elements (in place)."""

    # ------------------------------------------------------------ named arithmetic
    def add(self, other: _TensorOrNumber, *, alpha: Optional[_Number] = None) -> Tensor:
        """``self + alpha * other``."""
    def sub(self, other: _TensorOrNumber, *, alpha: Optional[_Number] = None) -> Tensor:
        """``self - alpha * other``."""
    def mul(self, o: _TensorOrNumber) -> Tensor:
        """Elementwise product."""
    def div(self, other: _TensorOrNumber, *, rounding_mode: Optional[_str] = None) -> Tensor:
        """Elementwise quotient: true division, or rounded with ``rounding_mode`` ``"floor"``/``"trunc"``."""
    def true_divide(self, o: _TensorOrNumber) -> Tensor: ...
    def floor_divide(self, o: _TensorOrNumber) -> Tensor: ...
    def remainder(self, o: _TensorOrNumber) -> Tensor: ...
    def pow(self, o: _TensorOrNumber) -> Tensor:
        """Elementwise power."""
    def maximum(self, o: Tensor) -> Tensor: ...
    def minimum(self, o: Tensor) -> Tensor: ...
    def atan2(self, o: Tensor) -> Tensor: ...
    def eq(self, o: _TensorOrNumber) -> Tensor: ...
    def ne(self, o: _TensorOrNumber) -> Tensor: ...
    def lt(self, o: _TensorOrNumber) -> Tensor: ...
    def le(self, o: _TensorOrNumber) -> Tensor: ...
    def gt(self, o: _TensorOrNumber) -> Tensor: ...
    def ge(self, o: _TensorOrNumber) -> Tensor: ...
    def logical_and(self, o: _TensorOrNumber) -> Tensor: ...
    def logical_or(self, o: _TensorOrNumber) -> Tensor: ...
    def logical_xor(self, o: _TensorOrNumber) -> Tensor: ...
    def logical_not(self) -> Tensor: ...
    def equal(self, o: Tensor) -> _bool:
        """True if both tensors have the same shape and elements."""
    def matmul(self, o: Tensor) -> Tensor:
        """Matrix product with NumPy broadcasting rules."""
    def mm(self, o: Tensor) -> Tensor: ...
    def bmm(self, o: Tensor) -> Tensor: ...
    def mv(self, o: Tensor) -> Tensor: ...
    def dot(self, o: Tensor) -> Tensor: ...
    def outer(self, o: Tensor) -> Tensor: ...

    # ------------------------------------------------------------ unary
    def neg(self) -> Tensor: ...
    def negative(self) -> Tensor: ...
    def abs(self) -> Tensor: ...
    def sign(self) -> Tensor: ...
    def exp(self) -> Tensor:
        """Elementwise exponential."""
    def expm1(self) -> Tensor: ...
    def log(self) -> Tensor:
        """Elementwise natural logarithm."""
    def log1p(self) -> Tensor: ...
    def log2(self) -> Tensor: ...
    def log10(self) -> Tensor: ...
    def sqrt(self) -> Tensor: ...
    def rsqrt(self) -> Tensor: ...
    def square(self) -> Tensor: ...
    def reciprocal(self) -> Tensor: ...
    def sin(self) -> Tensor: ...
    def cos(self) -> Tensor: ...
    def tan(self) -> Tensor: ...
    def asin(self) -> Tensor: ...
    def acos(self) -> Tensor: ...
    def atan(self) -> Tensor: ...
    def sinh(self) -> Tensor: ...
    def cosh(self) -> Tensor: ...
    def tanh(self) -> Tensor: ...
    def sigmoid(self) -> Tensor: ...
    def relu(self) -> Tensor: ...
    def erf(self) -> Tensor: ...
    def erfc(self) -> Tensor: ...
    def floor(self) -> Tensor: ...
    def ceil(self) -> Tensor: ...
    def round(self) -> Tensor: ...
    def trunc(self) -> Tensor: ...
    def frac(self) -> Tensor: ...
    def logit(self, eps: Optional[_float] = None) -> Tensor: ...
    def isnan(self) -> Tensor: ...
    def isinf(self) -> Tensor: ...
    def isfinite(self) -> Tensor: ...
    def clamp(self, min: Union[Tensor, _float, None] = None, max: Union[Tensor, _float, None] = None) -> Tensor:
        """Clamp elements into ``[min, max]`` (either bound may be None or a tensor)."""
    def clip(self, min: Union[Tensor, _float, None] = None, max: Union[Tensor, _float, None] = None) -> Tensor: ...

    # ------------------------------------------------------------ reductions
    def sum(self, dim: Optional[_Dims] = None, keepdim: _bool = False, *, dtype: Optional[_DTypeLike] = None) -> Tensor:
        """Sum over all elements or over ``dim``."""
    def mean(self, dim: Optional[_Dims] = None, keepdim: _bool = False, *, dtype: Optional[_DTypeLike] = None) -> Tensor:
        """Mean over all elements or over ``dim``."""
    def prod(self, dim: Optional[_Dims] = None, keepdim: _bool = False, *, dtype: Optional[_DTypeLike] = None) -> Tensor: ...
    def var(
        self,
        dim: Optional[_Dims] = None,
        unbiased: Optional[_bool] = None,
        keepdim: _bool = False,
        *,
        correction: Optional[_float] = None,
    ) -> Tensor:
        """Variance (Bessel-corrected unless ``unbiased=False`` or ``correction`` says otherwise)."""
    def std(
        self,
        dim: Optional[_Dims] = None,
        unbiased: Optional[_bool] = None,
        keepdim: _bool = False,
        *,
        correction: Optional[_float] = None,
    ) -> Tensor:
        """Standard deviation (Bessel-corrected unless ``unbiased=False`` or ``correction`` says otherwise)."""
    def amax(self, dim: Optional[_Dims] = None, keepdim: _bool = False) -> Tensor: ...
    def amin(self, dim: Optional[_Dims] = None, keepdim: _bool = False) -> Tensor: ...
    @overload
    def max(self, dim: None = None, keepdim: _bool = False) -> Tensor:
        """The maximum; ``(values, indices)`` over an int ``dim``; elementwise maximum with a tensor."""
    @overload
    def max(self, dim: _int, keepdim: _bool = False) -> _ValuesIndices: ...
    @overload
    def max(self, dim: Tensor, keepdim: _bool = False) -> Tensor: ...
    @overload
    def min(self, dim: None = None, keepdim: _bool = False) -> Tensor:
        """The minimum; ``(values, indices)`` over an int ``dim``; elementwise minimum with a tensor."""
    @overload
    def min(self, dim: _int, keepdim: _bool = False) -> _ValuesIndices: ...
    @overload
    def min(self, dim: Tensor, keepdim: _bool = False) -> Tensor: ...
    def argmax(self, dim: Optional[_int] = None, keepdim: _bool = False) -> Tensor:
        """Index of the maximum (of the flattened tensor when ``dim`` is None)."""
    def argmin(self, dim: Optional[_int] = None, keepdim: _bool = False) -> Tensor:
        """Index of the minimum (of the flattened tensor when ``dim`` is None)."""
    def logsumexp(self, dim: _Dims, keepdim: _bool = False) -> Tensor: ...
    def cumsum(self, dim: _int, *, dtype: Optional[_DTypeLike] = None) -> Tensor: ...
    def all(self, dim: Optional[_Dims] = None, keepdim: _bool = False) -> Tensor: ...
    def any(self, dim: Optional[_Dims] = None, keepdim: _bool = False) -> Tensor: ...
    def softmax(self, dim: _int, dtype: Optional[_DTypeLike] = None) -> Tensor:
        """Softmax along ``dim``."""
    def log_softmax(self, dim: _int, dtype: Optional[_DTypeLike] = None) -> Tensor:
        """Log-softmax along ``dim``."""
    def nonzero(self) -> Tensor:
        """Indices of the nonzero elements, shape ``(n, ndim)``."""

    # ------------------------------------------------------------ shape
    def reshape(self, *shape: _ShapeArg) -> Tensor:
        """A tensor with the same elements and a new shape (a view when possible; one dim may be -1)."""
    def view(self, *shape: _ShapeArg) -> Tensor:
        """A view with a new shape (one dim may be -1)."""
    def view_as(self, other: Tensor) -> Tensor: ...
    def reshape_as(self, other: Tensor) -> Tensor: ...
    def flatten(self, start_dim: _int = 0, end_dim: _int = -1) -> Tensor:
        """Merge dims ``start_dim..=end_dim`` into one."""
    def unflatten(self, dim: _int, sizes: Sequence[_int]) -> Tensor: ...
    def transpose(self, dim0: _int, dim1: _int) -> Tensor:
        """Swap two dims (a view)."""
    def swapaxes(self, dim0: _int, dim1: _int) -> Tensor: ...
    def permute(self, *dims: _ShapeArg) -> Tensor:
        """Reorder the dims (a view)."""
    def movedim(self, source: _Dims, destination: _Dims) -> Tensor: ...
    def squeeze(self, dim: Optional[_Dims] = None) -> Tensor:
        """Remove size-1 dims (all, or the given ones)."""
    def unsqueeze(self, dim: _int) -> Tensor:
        """Insert a size-1 dim at ``dim``."""
    def expand(self, *sizes: _ShapeArg) -> Tensor:
        """Broadcast to a larger shape (a view; -1 keeps a dim)."""
    def expand_as(self, other: Tensor) -> Tensor: ...
    def broadcast_to(self, shape: Sequence[_int]) -> Tensor: ...
    def repeat(self, *sizes: _ShapeArg) -> Tensor: ...
    def flip(self, *dims: _ShapeArg) -> Tensor: ...
    def split(self, split_size_or_sections: Union[_int, Sequence[_int]], dim: _int = 0) -> Tuple[Tensor, ...]:
        """Split into chunks of a given size, or of the given sizes."""
    def chunk(self, chunks: _int, dim: _int = 0) -> Tuple[Tensor, ...]: ...
    def unbind(self, dim: _int = 0) -> Tuple[Tensor, ...]: ...
    def narrow(self, dim: _int, start: _int, length: _int) -> Tensor: ...
    def select(self, dim: _int, index: _int) -> Tensor: ...
    def tril(self, diagonal: _int = 0) -> Tensor: ...
    def triu(self, diagonal: _int = 0) -> Tensor: ...

    # ------------------------------------------------------------ indexing ops
    def gather(self, dim: _int, index: Tensor) -> Tensor: ...
    def scatter_add(self, dim: _int, index: Tensor, src: Tensor) -> Tensor: ...
    def scatter(
        self,
        dim: _int,
        index: Tensor,
        src: Union[Tensor, _float, None] = None,
        *,
        value: Optional[_float] = None,
    ) -> Tensor: ...
    def index_select(self, dim: _int, index: Tensor) -> Tensor: ...
    def index_add(self, dim: _int, index: Tensor, source: _TensorOrNumber, *, alpha: Optional[_Number] = None) -> Tensor: ...
    def masked_fill(self, mask: Tensor, value: _TensorOrNumber) -> Tensor:
        """Replace elements where ``mask`` is true by ``value``."""
    def masked_select(self, mask: Tensor) -> Tensor: ...

    # ------------------------------------------------------------ in-place (return self)
    def add_(self: _TT, other: _TensorOrNumber, *, alpha: Optional[_Number] = None) -> _TT:
        """In-place ``self += alpha * other``."""
    def sub_(self: _TT, other: _TensorOrNumber, *, alpha: Optional[_Number] = None) -> _TT:
        """In-place ``self -= alpha * other``."""
    def mul_(self: _TT, other: _TensorOrNumber) -> _TT: ...
    def div_(self: _TT, other: _TensorOrNumber) -> _TT: ...
    def pow_(self: _TT, other: _TensorOrNumber) -> _TT: ...
    def zero_(self: _TT) -> _TT:
        """Fill with zeros in place."""
    def fill_(self: _TT, value: _TensorOrNumber) -> _TT:
        """Fill with a scalar in place."""
    def clamp_(self: _TT, min: Union[Tensor, _float, None] = None, max: Union[Tensor, _float, None] = None) -> _TT: ...
    def copy_(self: _TT, src: _TensorOrNumber) -> _TT:
        """Copy (broadcast) ``src`` into self."""
    def masked_fill_(self: _TT, mask: Tensor, value: _TensorOrNumber) -> _TT: ...
    def index_add_(self: _TT, dim: _int, index: Tensor, source: _TensorOrNumber, *, alpha: Optional[_Number] = None) -> _TT: ...
    def scatter_add_(self: _TT, dim: _int, index: Tensor, src: Tensor) -> _TT: ...
    def exp_(self: _TT) -> _TT: ...
    def log_(self: _TT) -> _TT: ...
    def sqrt_(self: _TT) -> _TT: ...
    def sigmoid_(self: _TT) -> _TT: ...
    def tanh_(self: _TT) -> _TT: ...
    def relu_(self: _TT) -> _TT: ...
    def neg_(self: _TT) -> _TT: ...
    def abs_(self: _TT) -> _TT: ...
    def uniform_(self: _TT, low: _float = 0.0, high: _float = 1.0, *, generator: Optional[Generator] = None) -> _TT:
        """Fill with samples uniform on ``[low, high)``."""
    def normal_(self: _TT, mean: _float = 0.0, std: _float = 1.0, *, generator: Optional[Generator] = None) -> _TT:
        """Fill with normal samples."""
    def bernoulli_(self: _TT, p: _float = 0.5, *, generator: Optional[Generator] = None) -> _TT:
        """Fill with Bernoulli(p) samples (0 or 1)."""

    # ------------------------------------------------------------ added by rbe/__init__.py
    def __iter__(self) -> Iterator[Tensor]:
        """Iterate over the first dim."""
    def new_zeros(
        self,
        *size: _ShapeArg,
        dtype: Optional[_DTypeLike] = None,
        device: Optional[_DeviceLike] = None,
        requires_grad: _bool = False,
    ) -> Tensor:
        """Zeros of the given shape, with this tensor's dtype unless given."""
    def new_ones(
        self,
        *size: _ShapeArg,
        dtype: Optional[_DTypeLike] = None,
        device: Optional[_DeviceLike] = None,
        requires_grad: _bool = False,
    ) -> Tensor:
        """Ones of the given shape, with this tensor's dtype unless given."""
    def new_empty(
        self,
        *size: _ShapeArg,
        dtype: Optional[_DTypeLike] = None,
        device: Optional[_DeviceLike] = None,
        requires_grad: _bool = False,
    ) -> Tensor:
        """An (zero-filled) tensor of the given shape, with this tensor's dtype unless given."""
    def new_full(
        self,
        size: _ShapeArg,
        fill_value: _TensorOrNumber,
        dtype: Optional[_DTypeLike] = None,
        device: Optional[_DeviceLike] = None,
        requires_grad: _bool = False,
    ) -> Tensor:
        """A tensor filled with ``fill_value``, with this tensor's dtype unless given."""
    def new_tensor(
        self,
        data: Any,
        dtype: Optional[_DTypeLike] = None,
        device: Optional[_DeviceLike] = None,
        requires_grad: _bool = False,
    ) -> Tensor:
        """``rbe.tensor(data)`` with this tensor's dtype unless given."""
    def __array__(self, dtype: Optional[_DTypeLike] = None, copy: Optional[_bool] = None) -> NDArray[Any]: ...
    def __reduce__(self) -> Tuple[Any, ...]: ...
    def __format__(self, spec: _str) -> _str: ...
    def __deepcopy__(self, memo: Dict[Any, Any]) -> Tensor: ...
    def __copy__(self) -> Tensor: ...
    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: Optional[Tuple[_int, _int]] = None,
        dl_device: Optional[Tuple[_int, _int]] = None,
        copy: Optional[_bool] = None,
    ) -> Any:
        """A DLPack capsule of this tensor's memory (via NumPy; not for tensors that require grad)."""
    def __dlpack_device__(self) -> Tuple[_int, _int]:
        """``(1, 0)``: kDLCPU, device 0."""

# ---------------------------------------------------------------- module attributes
float32: dtype
float64: dtype
int64: dtype
bool: dtype
__version__: _str

# ---------------------------------------------------------------- creation
def zeros(shape: Sequence[_int], dtype: Optional[_DTypeLike] = None, requires_grad: _bool = False) -> Tensor:
    """Zeros of ``shape`` (default dtype unless given)."""

def full(
    shape: Sequence[_int],
    fill_value: _Number,
    dtype: Optional[_DTypeLike] = None,
    requires_grad: _bool = False,
) -> Tensor:
    """A tensor of ``shape`` filled with ``fill_value`` (dtype inferred from it unless given)."""

def eye(n: _int, m: Optional[_int] = None, dtype: Optional[_DTypeLike] = None, requires_grad: _bool = False) -> Tensor:
    """The ``n x m`` identity matrix."""

def arange(
    start: _TensorOrNumber,
    end: _TensorOrNumber,
    step: _TensorOrNumber,
    dtype: Optional[_DTypeLike] = None,
    requires_grad: _bool = False,
) -> Tensor:
    """Values from ``start`` to ``end`` (exclusive) by ``step``; int64 when all are ints."""

def linspace(
    start: _float,
    end: _float,
    steps: _int,
    dtype: Optional[_DTypeLike] = None,
    requires_grad: _bool = False,
) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` (inclusive)."""

def rand(
    shape: Sequence[_int],
    low: _float = 0.0,
    high: _float = 1.0,
    dtype: Optional[_DTypeLike] = None,
    generator: Optional[Generator] = None,
    requires_grad: _bool = False,
) -> Tensor:
    """Uniform samples on ``[low, high)``."""

def randn(
    shape: Sequence[_int],
    mean: _float = 0.0,
    std: _float = 1.0,
    dtype: Optional[_DTypeLike] = None,
    generator: Optional[Generator] = None,
    requires_grad: _bool = False,
) -> Tensor:
    """Normal samples."""

def randint(
    low: _int,
    high: _int,
    shape: Sequence[_int],
    dtype: Optional[_DTypeLike] = None,
    generator: Optional[Generator] = None,
) -> Tensor:
    """Integers uniform on ``[low, high)`` (int64 unless given)."""

def randperm(n: _int, generator: Optional[Generator] = None) -> Tensor:
    """A random permutation of ``0..n`` (int64)."""

def bernoulli(input: Tensor, generator: Optional[Generator] = None) -> Tensor:
    """0/1 samples with the elementwise probabilities ``input``."""

# ---------------------------------------------------------------- random state, dtype and grad mode
def manual_seed(seed: _int) -> None:
    """Seed the default generator."""

def initial_seed() -> _int:
    """The seed of the default generator."""

def get_rng_state() -> Tuple[_int, _int]:
    """The state of the default generator."""

def set_rng_state(state: Tuple[_int, _int]) -> None:
    """Restore the default generator's state."""

def set_default_dtype(dtype: _DTypeLike) -> None:
    """Set the dtype of new floating tensors (float32 or float64)."""

def get_default_dtype() -> dtype:
    """The dtype of new floating tensors."""

def is_grad_enabled() -> _bool:
    """Whether gradient recording is on (for this thread)."""

def set_grad_enabled(mode: _bool) -> _bool:
    """Set grad mode for this thread; returns the previous mode."""

# ---------------------------------------------------------------- NumPy interop and ops
def from_numpy(arr: NDArray[Any]) -> Tensor:
    """A tensor sharing memory with a NumPy array (any strides, including negative ones)."""

def cat(tensors: Sequence[Tensor], dim: _int = 0) -> Tensor:
    """Concatenate along ``dim``."""

def stack(tensors: Sequence[Tensor], dim: _int = 0) -> Tensor:
    """Stack along a new dim ``dim``."""

def where_(condition: Tensor, input: _TensorOrNumber, other: _TensorOrNumber) -> Tensor:
    """``input`` where ``condition`` else ``other`` (``rbe.where``)."""

def leaky_relu(input: Tensor, negative_slope: _float = 0.01) -> Tensor: ...
def elu(input: Tensor, alpha: _float = 1.0) -> Tensor: ...
def gelu(input: Tensor, approximate: _str = "none") -> Tensor:
    """GELU; ``approximate`` is ``"none"`` (erf) or ``"tanh"``."""

def silu(input: Tensor) -> Tensor: ...
def softplus(input: Tensor, beta: _float = 1.0, threshold: _float = 20.0) -> Tensor: ...
def ndtr(input: Tensor) -> Tensor:
    """The standard normal CDF."""

def log_ndtr(input: Tensor) -> Tensor:
    """Log of the standard normal CDF."""

def ndtr_ratio(input: Tensor) -> Tensor: ...
def linear(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``input @ weight.T + bias``."""

def pad_constant(input: Tensor, pad: Sequence[_int], value: _float = 0.0) -> Tensor:
    """Pad the last dims (``pad`` as in ``torch.nn.functional.pad``) with a constant."""

def dropout(input: Tensor, p: _float = 0.5, training: _bool = True, generator: Optional[Generator] = None) -> Tensor:
    """Zero elements with probability ``p`` and scale the rest by ``1/(1-p)`` (identity unless training)."""

def broadcast_shapes(shapes: Sequence[Sequence[_int]]) -> Tuple[_int, ...]:
    """The broadcast shape of ``shapes``."""

# ---------------------------------------------------------------- autograd engine
@overload
def run_backward(
    outputs: Sequence[Tensor],
    grad_outputs: Sequence[Optional[_TensorOrNumber]],
    retain_graph: _bool,
    create_graph: _bool,
    inputs: None = None,
    allow_unused: _bool = False,
) -> None:
    """The engine entry point behind ``backward`` and ``autograd.grad``."""

@overload
def run_backward(
    outputs: Sequence[Tensor],
    grad_outputs: Sequence[Optional[_TensorOrNumber]],
    retain_graph: _bool,
    create_graph: _bool,
    inputs: Sequence[Tensor],
    allow_unused: _bool = False,
) -> Tuple[Optional[Tensor], ...]: ...


# ---------------------------------------------------------------- training support
def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = None,
    ignore_index: _int = -100,
    reduction: _str = "mean",
    label_smoothing: _float = 0.0,
) -> Tensor:
    """Cross-entropy of logits in one fused, stable op."""
    ...
def class_coefficients(
    target: Tensor, num_classes: _int, weight: Optional[Tensor], ignore_index: _int, label_smoothing: _float, dtype: _DTypeLike
) -> Tuple[Tensor, _float]: ...
def sgd_step(
    params: Sequence[Tensor], grads: Sequence[Tensor], bufs: Sequence[Optional[Tensor]], first: Sequence[_bool],
    lr: _float, momentum: _float, dampening: _float, weight_decay: _float, nesterov: _bool, maximize: _bool,
) -> None: ...
def adam_step(
    params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor], exp_avg_sqs: Sequence[Tensor],
    max_exp_avg_sqs: Sequence[Optional[Tensor]], steps: Sequence[_int], lr: _float, beta1: _float, beta2: _float,
    eps: _float, weight_decay: _float, amsgrad: _bool, maximize: _bool, decoupled: _bool,
) -> None: ...
def rmsprop_step(
    params: Sequence[Tensor], grads: Sequence[Tensor], square_avgs: Sequence[Tensor], grad_avgs: Sequence[Optional[Tensor]],
    momentum_buffers: Sequence[Optional[Tensor]], lr: _float, alpha: _float, eps: _float, weight_decay: _float,
    momentum: _float, centered: _bool, maximize: _bool,
) -> None: ...
def attach_py_function(outputs: Sequence[Tensor], inputs: Sequence[Tensor], backward: Any, name: _str, materialize_grads: _bool = ..., saved_outputs: Sequence[_int] = ...) -> None:
    """Record ``outputs`` as made from ``inputs`` by one Python function; ``backward(*grads)`` runs once per pass."""
    ...
def memory_allocated() -> _int:
    """Bytes currently held by tensor memory that rbe allocated."""
    ...
def max_memory_allocated() -> _int: ...
def reset_peak_memory_stats() -> None: ...
def memory_stats() -> Dict[str, _int]:
    """Buffer pool counters: ``allocated_bytes`` (live tensor memory), ``peak_bytes``,
    ``cached_bytes`` (freed buffers kept for reuse), ``pool_hits``, ``pool_misses``
    (requests that went to the system allocator) and ``pool_limit_bytes``."""
def empty_cache() -> None:
    """Return the calling thread's cached tensor buffers to the system."""
def set_pool_limit(nbytes: _int) -> None:
    """Most bytes of freed buffers one thread keeps for reuse (default 2 GiB, or ``RBE_POOL_LIMIT_MB``)."""
def set_num_threads(n: _int) -> None:
    """Threads used by parallel kernels (results do not depend on it)."""
    ...
def get_num_threads() -> _int: ...
