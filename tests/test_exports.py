"""The functions ``rbe.exp(x)`` & co. are Tensor's own methods, spelled out in ``rbe/__init__.py``."""
import rbe
from rbe import Tensor

METHOD_FUNCTIONS = """
abs neg negative sign exp log log1p log2 log10 sqrt rsqrt reciprocal sin cos tan asin acos atan sinh cosh tanh
floor ceil round trunc frac isnan isinf isfinite
add sub mul div true_divide floor_divide remainder pow maximum minimum atan2 eq ne lt le gt ge
logical_and logical_or logical_xor logical_not
matmul mm bmm mv dot outer
sum mean prod var std amax amin argmax argmin logsumexp cumsum all any nonzero
transpose swapaxes movedim unsqueeze narrow select
gather scatter scatter_add index_select index_add masked_fill masked_select
t clone detach
""".split()


def test_method_functions_are_the_tensor_methods():
    for name in METHOD_FUNCTIONS:
        assert getattr(rbe, name) is Tensor.__dict__[name], name


def test_aliases():
    assert rbe.multiply is Tensor.mul and rbe.subtract is Tensor.sub and rbe.divide is Tensor.div
    assert rbe.greater is Tensor.gt and rbe.less is Tensor.lt and rbe.absolute is Tensor.abs
    assert (rbe.arccos, rbe.arcsin, rbe.arctan) == (Tensor.acos, Tensor.asin, Tensor.atan)


def test_dlpack_methods():
    import numpy as np

    x = rbe.tensor([1.0, 2.0])
    assert x.__dlpack_device__() == (1, 0)
    assert np.from_dlpack(x).tolist() == [1.0, 2.0]
