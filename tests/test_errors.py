"""The rbe.errors hierarchy: torch's exception classes, and exceptions raised
by user code that rbe calls back into coming out unchanged."""
import traceback

import pytest
import torch

import rbe
from rbe import errors


def _raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the test inspects the class
        return e
    raise AssertionError("no exception")


# (rbe call, torch call) pairs that must fail in both; rbe's exception must be
# an instance of torch's class, so `except <torch class>` written for torch works.
CASES = {
    "matmul shapes": lambda m: m.ones(2, 3) @ m.ones(2, 3),
    "add broadcast": lambda m: m.ones(2, 3) + m.ones(4),
    "view size": lambda m: m.ones(6).view(4),
    "cat shapes": lambda m: m.cat([m.ones(2, 3), m.ones(2, 4)]),
    "bool sub": lambda m: m.ones(3, dtype=m.bool) - m.ones(3, dtype=m.bool),
    "dim out of range": lambda m: m.ones(2, 3).sum(5),
    "index out of range": lambda m: m.ones(3)[7],
    "backward twice": lambda m: _twice(m),
    "grad of non-scalar": lambda m: m.ones(3, requires_grad=True).mul(2).backward(),
}


def _twice(m):
    x = m.ones(3, requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    y.backward()


@pytest.mark.parametrize("case", sorted(CASES))
def test_rbe_raises_an_instance_of_torchs_class(case):
    te = _raised(lambda: CASES[case](torch))
    re = _raised(lambda: CASES[case](rbe))
    assert isinstance(re, type(te)), (case, type(re).__mro__, type(te))
    assert isinstance(re, errors.RbeError)


def test_shape_error_is_runtime_and_value_error():
    e = _raised(lambda: rbe.ones(2, 3) @ rbe.ones(2, 3))
    assert type(e) is errors.ShapeError
    assert isinstance(e, RuntimeError) and isinstance(e, ValueError)
    assert "[2, 3]" in str(e)
    # torch code written as `except RuntimeError` keeps working
    try:
        rbe.ones(2, 3) + rbe.ones(4)
    except RuntimeError as caught:
        assert isinstance(caught, ValueError)


def test_dtype_error_is_runtime_and_type_error():
    e = _raised(lambda: rbe.ones(3, dtype=rbe.bool) - rbe.ones(3, dtype=rbe.bool))
    assert type(e) is errors.DTypeError
    assert isinstance(e, RuntimeError) and isinstance(e, TypeError) and isinstance(e, NotImplementedError)


def test_index_and_autograd_errors():
    assert type(_raised(lambda: rbe.ones(3)[7])) is errors.RbeIndexError
    assert isinstance(_raised(lambda: rbe.ones(3)[7]), IndexError)
    e = _raised(lambda: _twice(rbe))
    assert type(e) is errors.AutogradError and isinstance(e, RuntimeError)


def test_classes_are_exported():
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), (errors.RbeError, errors.RbeWarning))
    assert issubclass(errors.OutOfMemoryError, MemoryError) and issubclass(errors.OutOfMemoryError, RuntimeError)
    assert issubclass(errors.ConvergenceWarning, UserWarning)


class _MyError(Exception):
    pass


class _Raising(rbe.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        raise _MyError("raised inside backward")


def test_exception_in_function_backward_keeps_its_type_and_traceback():
    x = rbe.ones(3, requires_grad=True)
    y = _Raising.apply(x).sum()
    with pytest.raises(_MyError, match="raised inside backward") as info:
        y.backward()
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "backward" in frames, frames
    # also through autograd.grad, and nothing was accumulated
    y2 = _Raising.apply(x).sum()
    with pytest.raises(_MyError):
        rbe.autograd.grad(y2, [x])
    assert x.grad is None


class _BadGrad(rbe.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return rbe.ones(7)


def test_wrong_gradient_shape_from_function_is_a_shape_error():
    x = rbe.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"\[7\].*\[3\]") as info:
        _BadGrad.apply(x).sum().backward()
    assert isinstance(info.value, errors.ShapeError)
