"""rbe: a CPU automatic-differentiation engine in Rust with PyTorch's API.

>>> import rbe
>>> x = rbe.tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> (x ** 2).sum().backward()
>>> x.grad
tensor([2., 4., 6.])
"""
from __future__ import annotations

import builtins as _builtins
import contextlib as _contextlib
import functools as _functools

import numpy as _np

from . import _core
from ._core import Tensor, Generator, dtype  # noqa: F401
from ._core import (  # noqa: F401
    float32,
    float64,
    int64,
    bool,
    manual_seed as _manual_seed,
    initial_seed,
    get_rng_state,
    set_rng_state,
    get_default_dtype,
    is_grad_enabled,
    from_numpy,
    broadcast_shapes as _broadcast_shapes,
)
from ._size import Size

__version__ = _core.__version__

float = float32
double = float64
long = int64
cfloat = None  # complex types are not supported

_BUILTIN_FLOAT = _builtins.float
_BUILTIN_BOOL = _builtins.bool
_BUILTIN_INT = _builtins.int


def _dtype_from_name(name: str) -> dtype:
    return {"float32": float32, "float64": float64, "int64": int64, "bool": bool}[name]


class device:
    """A device descriptor. rbe computes on the CPU only."""

    def __init__(self, type: str = "cpu", index=None):
        if isinstance(type, device):
            type = type.type
        if not str(type).startswith("cpu"):
            raise RuntimeError(f"rbe runs on the CPU only; device '{type}' is not available")
        self.type = "cpu"
        self.index = None

    def __repr__(self) -> str:
        return "device(type='cpu')"

    def __str__(self) -> str:
        return "cpu"

    def __eq__(self, other) -> _BUILTIN_BOOL:
        return str(other) == "cpu"

    def __hash__(self) -> int:
        return hash("cpu")


def set_default_dtype(d) -> None:
    """Set the dtype of new floating tensors (float32 or float64)."""
    _core.set_default_dtype(d)


def is_tensor(obj) -> _BUILTIN_BOOL:
    return isinstance(obj, Tensor)


def is_floating_point(t: Tensor) -> _BUILTIN_BOOL:
    return t.is_floating_point()


def numel(t: Tensor) -> int:
    return t.numel()


# ---------------------------------------------------------------- grad mode
class _GradMode:
    """Base of the grad-mode context managers; also usable as decorators."""

    _mode: _BUILTIN_BOOL

    def __enter__(self):
        self._prev = _core.set_grad_enabled(self._mode)
        return self

    def __exit__(self, *exc):
        _core.set_grad_enabled(self._prev)
        return False

    def __call__(self, func):
        return _run_in_mode(self._mode, func)


def _run_in_mode(mode: _BUILTIN_BOOL, func):
    """Wrap ``func`` so that it runs with grad mode ``mode``."""

    @_functools.wraps(func)
    def wrapper(*args, **kwargs):
        prev = _core.set_grad_enabled(mode)
        try:
            return func(*args, **kwargs)
        finally:
            _core.set_grad_enabled(prev)

    return wrapper


class no_grad(_GradMode):
    """Disable gradient recording (context manager or decorator)."""

    _mode = False


class enable_grad(_GradMode):
    """Enable gradient recording (context manager or decorator)."""

    _mode = True


class inference_mode(_GradMode):
    """Same as ``no_grad`` in rbe (``inference_mode(False)`` enables grad)."""

    def __init__(self, mode: _BUILTIN_BOOL = True):
        self._mode = not mode


class set_grad_enabled(_GradMode):
    """Set grad mode: takes effect immediately, and as a context manager restores it on exit."""

    def __init__(self, mode: _BUILTIN_BOOL):
        self._mode = _BUILTIN_BOOL(mode)
        self._prev = _core.set_grad_enabled(self._mode)

    def __enter__(self):
        return self

    def __call__(self, func):
        # used as a decorator: undo the immediate switch, apply it per call
        _core.set_grad_enabled(self._prev)
        return _run_in_mode(self._mode, func)


# ---------------------------------------------------------------- creation
_NP_OF = {"float32": _np.float32, "float64": _np.float64, "int64": _np.int64, "bool": _np.bool_}


def _shape(size) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list, Size)):
        size = tuple(size[0])
    out = []
    for d in size:
        if isinstance(d, Tensor):
            d = d.item()
        if not isinstance(d, (_BUILTIN_INT, _np.integer)) or isinstance(d, _BUILTIN_BOOL):
            raise TypeError(f"size must be a tuple of ints, but got an element of type {type(d).__name__}")
        out.append(_BUILTIN_INT(d))
    return tuple(out)


def _check_device(device_) -> None:
    if device_ is not None:
        device(device_)


def _infer_np(data, dtype_):
    """NumPy array (a fresh copy) for ``tensor(data)`` with torch's dtype inference."""
    if isinstance(data, Tensor):
        arr = data.detach().numpy()
    else:
        arr = _np.array(_unwrap(data))
    if dtype_ is not None:
        target = _NP_OF[_dtype_name(dtype_)]
    elif arr.dtype == _np.bool_:
        target = _np.bool_
    elif arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.size and arr.max() > _np.iinfo(_np.int64).max:
            raise RuntimeError(f"Overflow when unpacking long: {arr.max()} does not fit in int64")
        target = _np.int64
    elif arr.dtype.kind == "f":
        if isinstance(data, (_np.ndarray, _np.generic, Tensor)) and arr.dtype in (_np.float32, _np.float64):
            target = arr.dtype.type
        else:
            target = _NP_OF[get_default_dtype().name]
    elif arr.dtype == object:
        raise TypeError("could not infer dtype: the data must be numbers, nested sequences of numbers, or tensors")
    else:
        raise TypeError(f"unsupported data type {arr.dtype} for rbe.tensor")
    return _np.array(arr, dtype=target, copy=True, order="C")


def _unwrap(data):
    if isinstance(data, Tensor):
        return data.detach().numpy()
    if isinstance(data, (list, tuple)):
        return [_unwrap(d) for d in data]
    return data


def _dtype_name(d) -> str:
    if isinstance(d, dtype):
        return d.name
    if d is _BUILTIN_FLOAT:
        return "float64"
    if d is _BUILTIN_INT:
        return "int64"
    if d is _BUILTIN_BOOL:
        return "bool"
    name = _np.dtype(d).name
    if name not in _NP_OF:
        raise TypeError(f"unsupported dtype {d}; rbe supports float32, float64, int64 and bool")
    return name


def tensor(data, dtype=None, device=None, requires_grad: _BUILTIN_BOOL = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (nested lists, NumPy arrays, numbers or tensors)."""
    _check_device(device)
    arr = _infer_np(data, dtype)
    t = _core.from_numpy(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like ``tensor``, but shares memory with a NumPy array or tensor when the dtype allows."""
    _check_device(device)
    if isinstance(data, Tensor):
        return data if dtype is None else data.to(dtype)
    if isinstance(data, _np.ndarray) and data.dtype.name in _NP_OF and data.dtype.byteorder in "=|<":
        if dtype is None or _dtype_name(dtype) == data.dtype.name:
            return _core.from_numpy(data)
    return tensor(data, dtype=dtype)


asarray = as_tensor


def zeros(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    _check_device(device)
    return _core.zeros(list(_shape(size)), dtype, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    _check_device(device)
    return _core.full(list(_shape(size)), 1.0 if dtype is None or _dtype_name(dtype) != "int64" else 1, dtype or get_default_dtype(), requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    _check_device(device)
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    return _core.full(list(_shape((size,) if isinstance(size, (tuple, list, Size)) else (size,))), fill_value, dtype, requires_grad)


def eye(n: int, m=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    _check_device(device)
    return _core.eye(n, m, dtype, requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Values from ``start`` to ``end`` (exclusive) by ``step``; int64 when all are ints."""
    _check_device(device)
    if end is None:
        start, end = 0, start
    return _core.arange(start, end, step, dtype, requires_grad)


def linspace(start, end, steps: int, dtype=None, device=None, requires_grad=False) -> Tensor:
    _check_device(device)
    return _core.linspace(_BUILTIN_FLOAT(start), _BUILTIN_FLOAT(end), steps, dtype, requires_grad)


def _like(t: Tensor, dtype):
    return dtype if dtype is not None else t.dtype


def zeros_like(input: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    return zeros(tuple(input.shape), dtype=_like(input, dtype), requires_grad=requires_grad)


def ones_like(input: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    return ones(tuple(input.shape), dtype=_like(input, dtype), requires_grad=requires_grad)


def empty_like(input: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    return zeros_like(input, dtype=dtype, requires_grad=requires_grad)


def full_like(input: Tensor, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full(tuple(input.shape), fill_value, dtype=_like(input, dtype), requires_grad=requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform samples on [0, 1)."""
    _check_device(device)
    return _core.rand(list(_shape(size)), 0.0, 1.0, dtype, generator, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal samples."""
    _check_device(device)
    return _core.randn(list(_shape(size)), 0.0, 1.0, dtype, generator, requires_grad)


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None) -> Tensor:
    """Integers uniform on [low, high): ``randint(high, size)`` or ``randint(low, high, size)``."""
    _check_device(device)
    if size is None:
        if high is None:
            raise TypeError("randint() missing required argument 'size'")
        low, high, size = 0, low, high
    elif high is None:
        low, high = 0, low
    return _core.randint(_BUILTIN_INT(low), _BUILTIN_INT(high), list(_shape((size,))), dtype, generator)


def rand_like(input: Tensor, dtype=None, generator=None) -> Tensor:
    return rand(tuple(input.shape), dtype=_like(input, dtype), generator=generator)


def randn_like(input: Tensor, dtype=None, generator=None) -> Tensor:
    return randn(tuple(input.shape), dtype=_like(input, dtype), generator=generator)


def randint_like(input: Tensor, low, high=None, dtype=None, generator=None) -> Tensor:
    return randint(low, high, tuple(input.shape), dtype=_like(input, dtype), generator=generator)


def randperm(n: int, *, generator=None, dtype=None, device=None) -> Tensor:
    t = _core.randperm(n, generator)
    return t if dtype is None else t.to(dtype)


def bernoulli(input: Tensor, p=None, *, generator=None) -> Tensor:
    """0/1 draws: with probability ``input`` elementwise, or ``p`` for every element."""
    if p is not None:
        return zeros_like(input).bernoulli_(_BUILTIN_FLOAT(p), generator=generator)
    return _core.bernoulli(input, generator)


def normal(mean=0.0, std=1.0, size=None, *, generator=None, dtype=None) -> Tensor:
    """Normal samples: scalar mean/std with ``size``, or tensors of means/stds."""
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        shape = _broadcast_shapes([list(getattr(mean, "shape", ())), list(getattr(std, "shape", ()))])
        ref = mean if isinstance(mean, Tensor) else std
        z = randn(tuple(shape), generator=generator, dtype=dtype or ref.dtype)
        return z * std + mean
    return _core.randn(list(_shape((size,))), _BUILTIN_FLOAT(mean), _BUILTIN_FLOAT(std), dtype, generator, False)


def manual_seed(seed: int):
    """Seed the default generator (every random op of rbe draws from it unless given a generator)."""
    _manual_seed(_BUILTIN_INT(seed))
    return _default_generator_proxy


class _DefaultGeneratorProxy:
    """``rbe.default_generator``: the process-wide generator; random functions accept it as ``generator=``."""

    _is_default_generator = True

    def manual_seed(self, seed):
        _manual_seed(_BUILTIN_INT(seed))
        return self

    def initial_seed(self):
        return initial_seed()

    def get_state(self):
        return get_rng_state()

    def set_state(self, s):
        set_rng_state(s)


_default_generator_proxy = _DefaultGeneratorProxy()
default_generator = _default_generator_proxy


def seed() -> int:
    import time

    s = time.time_ns() & 0xFFFFFFFFFFFF
    _manual_seed(s)
    return s


# ---------------------------------------------------------------- functions over tensors
def cat(tensors, dim: int = 0) -> Tensor:
    """Concatenate along ``dim``."""
    return _core.cat(list(tensors), dim)


concat = cat
concatenate = cat


def stack(tensors, dim: int = 0) -> Tensor:
    return _core.stack(list(tensors), dim)


def hstack(tensors) -> Tensor:
    tensors = list(tensors)
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors) -> Tensor:
    return cat([t.reshape(1, -1) if t.ndim == 1 else t for t in tensors], 0)


def where(condition, input=None, other=None):
    """``where(cond, x, y)`` picks from x where cond else y; ``where(cond)`` = ``cond.nonzero(as_tuple=True)``."""
    if input is None and other is None:
        nz = condition.nonzero()
        return tuple(nz[:, i] for i in range(nz.shape[1]))
    return _core.where_(condition, input, other)


def broadcast_shapes(*shapes) -> Size:
    return Size(_broadcast_shapes([list(s) if not isinstance(s, _BUILTIN_INT) else [s] for s in shapes]))


def broadcast_tensors(*tensors):
    shape = broadcast_shapes(*[t.shape for t in tensors])
    return tuple(t.expand(*shape) for t in tensors)


def clamp(input, min=None, max=None):
    return input.clamp(min, max)


clip = clamp


def softmax(input, dim, dtype=None):
    return input.softmax(dim, dtype)


def log_softmax(input, dim, dtype=None):
    return input.log_softmax(dim, dtype)


def sigmoid(input):
    return input.sigmoid()


def square(input):
    return input.square()


def split(tensor, split_size_or_sections, dim=0):
    return tensor.split(split_size_or_sections, dim)


def chunk(input, chunks, dim=0):
    return input.chunk(chunks, dim)


def flatten(input, start_dim=0, end_dim=-1):
    return input.flatten(start_dim, end_dim)


def unflatten(input, dim, sizes):
    return input.unflatten(dim, sizes)


def flip(input, dims):
    return input.flip(*dims) if isinstance(dims, (list, tuple)) else input.flip(dims)


def tril(input, diagonal=0):
    return input.tril(diagonal)


def triu(input, diagonal=0):
    return input.triu(diagonal)


def max(input, dim=None, keepdim=False):
    return input.max(dim, keepdim)


def min(input, dim=None, keepdim=False):
    return input.min(dim, keepdim)


def reshape(input, shape):
    return input.reshape(shape)


def permute(input, dims):
    return input.permute(dims)


def squeeze(input, dim=None):
    return input.squeeze(dim)


def expm1(input):
    return input.expm1()


def _check_tolerances(rtol, atol):
    for name, v in (("rtol", rtol), ("atol", atol)):
        if not v >= 0:  # NaN too
            from .errors import ArgumentError

            raise ArgumentError(f"{name} must be greater than or equal to zero, but got {v}")


def allclose(input, other, rtol=1e-5, atol=1e-8, equal_nan=False) -> _BUILTIN_BOOL:
    _check_tolerances(rtol, atol)
    return _BUILTIN_BOOL(_np.allclose(input.detach().numpy(), other.detach().numpy(), rtol=rtol, atol=atol, equal_nan=equal_nan))


def isclose(input, other, rtol=1e-5, atol=1e-8, equal_nan=False) -> Tensor:
    _check_tolerances(rtol, atol)
    return from_numpy(_np.isclose(input.detach().numpy(), other.detach().numpy(), rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(input, other) -> _BUILTIN_BOOL:
    return input.equal(other)


def erf(input):
    return input.erf()


def erfc(input):
    return input.erfc()


def logit(input, eps=None):
    return input.logit(eps)


def relu(input):
    return input.relu()


def broadcast_to(input, size):
    return input.broadcast_to(list(size))


def unbind(input, dim=0):
    return input.unbind(dim)


# Methods that double as functions taking the tensor first (``rbe.exp(x)``): the
# very method objects of Tensor (``rbe.exp is Tensor.exp``), spelled out so that
# type checkers see them. They shadow the builtins abs/pow/round/sum/all/any in
# this module: use ``_builtins`` here for those.
# elementwise
abs = Tensor.abs
neg = Tensor.neg
negative = Tensor.negative
sign = Tensor.sign
exp = Tensor.exp
log = Tensor.log
log1p = Tensor.log1p
log2 = Tensor.log2
log10 = Tensor.log10
sqrt = Tensor.sqrt
rsqrt = Tensor.rsqrt
reciprocal = Tensor.reciprocal
sin = Tensor.sin
cos = Tensor.cos
tan = Tensor.tan
asin = Tensor.asin
acos = Tensor.acos
atan = Tensor.atan
sinh = Tensor.sinh
cosh = Tensor.cosh
tanh = Tensor.tanh
floor = Tensor.floor
ceil = Tensor.ceil
round = Tensor.round
trunc = Tensor.trunc
frac = Tensor.frac
isnan = Tensor.isnan
isinf = Tensor.isinf
isfinite = Tensor.isfinite
# binary ops and comparisons
add = Tensor.add
sub = Tensor.sub
mul = Tensor.mul
div = Tensor.div
true_divide = Tensor.true_divide
floor_divide = Tensor.floor_divide
remainder = Tensor.remainder
pow = Tensor.pow
maximum = Tensor.maximum
minimum = Tensor.minimum
atan2 = Tensor.atan2
eq = Tensor.eq
ne = Tensor.ne
lt = Tensor.lt
le = Tensor.le
gt = Tensor.gt
ge = Tensor.ge
logical_and = Tensor.logical_and
logical_or = Tensor.logical_or
logical_xor = Tensor.logical_xor
logical_not = Tensor.logical_not
# matrix products
matmul = Tensor.matmul
mm = Tensor.mm
bmm = Tensor.bmm
mv = Tensor.mv
dot = Tensor.dot
outer = Tensor.outer
# reductions
sum = Tensor.sum
mean = Tensor.mean
prod = Tensor.prod
var = Tensor.var
std = Tensor.std
amax = Tensor.amax
amin = Tensor.amin
argmax = Tensor.argmax
argmin = Tensor.argmin
logsumexp = Tensor.logsumexp
cumsum = Tensor.cumsum
all = Tensor.all
any = Tensor.any
nonzero = Tensor.nonzero
# shape and indexing
transpose = Tensor.transpose
swapaxes = Tensor.swapaxes
movedim = Tensor.movedim
unsqueeze = Tensor.unsqueeze
narrow = Tensor.narrow
select = Tensor.select
gather = Tensor.gather
scatter = Tensor.scatter
scatter_add = Tensor.scatter_add
index_select = Tensor.index_select
index_add = Tensor.index_add
masked_fill = Tensor.masked_fill
masked_select = Tensor.masked_select
t = Tensor.t
clone = Tensor.clone
detach = Tensor.detach

multiply = mul
subtract = sub
divide = div
greater = gt
less = lt
absolute = abs
arccos, arcsin, arctan = acos, asin, atan


def _tensor_iter(self):
    if self.ndim == 0:
        raise TypeError("iteration over a 0-d tensor")
    return (self[i] for i in range(self.shape[0]))


def _tensor_new(kind):
    def f(self, *size, dtype=None, device=None, requires_grad=False):
        dt = dtype if dtype is not None else self.dtype
        if kind == "zeros":
            return zeros(*size, dtype=dt, requires_grad=requires_grad)
        return ones(*size, dtype=dt, requires_grad=requires_grad)

    f.__name__ = f"new_{kind}"
    return f


def _new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False):
    return full(size, fill_value, dtype=dtype if dtype is not None else self.dtype, requires_grad=requires_grad)


def _new_tensor(self, data, dtype=None, device=None, requires_grad=False):
    return tensor(data, dtype=dtype if dtype is not None else self.dtype, requires_grad=requires_grad)


def _array(self, dtype=None, copy=None):
    a = self.numpy()
    return a if dtype is None else a.astype(dtype)


def _reduce(self):
    return (_rebuild, (self.detach().numpy().copy(), self.requires_grad))


def _rebuild(arr, requires_grad):
    t = from_numpy(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _format(self, spec):
    if self.ndim == 0:
        return format(self.item(), spec)
    return repr(self)


def _as_type_of(self, c):
    """``c`` (a plain tensor) as an instance of ``type(self)`` sharing its memory, for subclasses."""
    if type(self) is Tensor:
        return c
    out = Tensor.__new__(type(self), c, requires_grad=c.requires_grad)
    return out


def _deepcopy(self, memo):
    """As torch: each storage is copied once per ``deepcopy`` call, so tensors
    that shared memory (a tensor and its views) still share it in the copy."""
    import copy as _copy

    if id(self) in memo:
        return memo[id(self)]
    key = ("rbe.storage", self._storage_key(), self.dtype.name)
    storage = memo.get(key)
    if storage is None:
        storage = self._storage_copy()
        memo[key] = storage
        _copy._keep_alive(self, memo)  # the original's storage (and its key) outlives the copy
    c = _as_type_of(self, self._restride_onto(storage))
    if self.requires_grad:
        c.requires_grad_(True)
    memo[id(self)] = c
    if self.grad is not None:
        c.grad = _copy.deepcopy(self.grad, memo)
    if hasattr(self, "__dict__"):
        c.__dict__.update(_copy.deepcopy(self.__dict__, memo))
    return c


def _shallow_copy(self):
    """``copy.copy(t)``, as torch: a new tensor object over the same memory
    (writes through either show in both), same ``requires_grad``, no ``grad``."""
    c = _as_type_of(self, self.detach())
    if self.requires_grad:
        c.requires_grad_(True)
    if hasattr(self, "__dict__"):
        c.__dict__.update(self.__dict__)
    return c


for _n, _f in {
    "__iter__": _tensor_iter,
    "new_zeros": _tensor_new("zeros"),
    "new_ones": _tensor_new("ones"),
    "new_empty": _tensor_new("zeros"),
    "new_full": _new_full,
    "new_tensor": _new_tensor,
    "__array__": _array,
    "__reduce__": _reduce,
    "__format__": _format,
    "__deepcopy__": _deepcopy,
    "__copy__": _shallow_copy,
}.items():
    setattr(Tensor, _n, _f)
del _n, _f

from . import autograd, special  # noqa: E402
from . import nn  # noqa: E402,F401
from . import optim  # noqa: E402,F401
from . import utils  # noqa: E402,F401
from .serialization import save, load  # noqa: E402,F401
from ._core import set_num_threads, get_num_threads  # noqa: E402,F401

_DETERMINISTIC = [False]


def use_deterministic_algorithms(mode: _BUILTIN_BOOL, *, warn_only: _BUILTIN_BOOL = False) -> None:
    """Accepted for torch-compatible code. rbe's kernels are always deterministic:
    the same inputs give the same bits whatever the number of threads."""
    _DETERMINISTIC[0] = _BUILTIN_BOOL(mode)


def are_deterministic_algorithms_enabled() -> _BUILTIN_BOOL:
    return _DETERMINISTIC[0]


def from_dlpack(ext) -> Tensor:
    """A tensor sharing memory with any DLPack-capable CPU array (torch, NumPy, ...)."""
    if isinstance(ext, Tensor):
        return ext
    return from_numpy(_np.from_dlpack(ext))


def _dlpack(self, *, stream=None, max_version=None, dl_device=None, copy=None):
    if self.requires_grad:
        raise RuntimeError("Can't export tensors that require gradient, use tensor.detach()")
    arr = self.numpy()
    kwargs = {}
    if max_version is not None:
        kwargs["max_version"] = max_version
    if copy is not None:
        kwargs["copy"] = copy
    return arr.__dlpack__(**kwargs)


def _dlpack_device(self):
    return (1, 0)  # kDLCPU, device 0


setattr(Tensor, "__dlpack__", _dlpack)
setattr(Tensor, "__dlpack_device__", _dlpack_device)
from ._core import memory_allocated, max_memory_allocated, reset_peak_memory_stats, memory_stats, empty_cache, set_pool_limit  # noqa: E402,F401
