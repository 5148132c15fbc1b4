"""The table of ops shared by the torch parity suite and the gradcheck suite.

Each entry runs the same lambda on module ``m`` (``rbe`` or ``torch``): the
APIs are meant to be the same, so one definition serves both sides.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np


def positive(a):
    return np.abs(a) + 0.5


def unit(a):
    # strictly inside (0, 1)
    return 1.0 / (1.0 + np.exp(-a))


def inside(a):
    # inside (-0.9, 0.9)
    return np.tanh(a) * 0.9


def away_from_zero(a):
    return np.where(np.abs(a) < 0.2, np.sign(a) * 0.2 + a, a) + (a == 0) * 0.3


def ident(a):
    return a


@dataclass
class Op:
    name: str
    fn: Callable  # fn(m, *tensors) -> tensor
    cases: Sequence[Sequence[tuple]]  # each case: one shape per tensor input
    domain: Sequence[Callable] = ()  # per input, maps raw normal samples into the domain
    grad: bool = True  # differentiable: compare gradients, run gradcheck
    gradgrad: bool = True  # run gradgradcheck
    ints: bool = False  # also compare forward on int64 inputs
    int_inputs: dict = field(default_factory=dict)  # input position -> (low, high) for integer index inputs
    bool_inputs: Sequence[int] = ()  # input positions that are masks
    rtol32: float = 1e-5
    atol32: float = 1e-5

    def dom(self, i):
        return self.domain[i] if i < len(self.domain) else ident

    @property
    def n_in(self):
        return len(self.cases[0])


U = [[()], [(5,)], [(3, 4)], [(2, 1, 3)], [(0, 3)]]
U_NE = [[()], [(5,)], [(3, 4)], [(2, 1, 3)]]  # non-empty
B = [[(3, 4), (3, 4)], [(3, 1), (1, 4)], [(4,), (2, 3, 4)], [(), (2, 3)], [(0, 3), (1, 3)], [(2, 1, 3), (4, 1)]]
R = [[(3, 4)], [(2, 3, 4)], [(5,)], [(2, 0, 3)]]  # reduction inputs
R_NE = [[(3, 4)], [(2, 3, 4)], [(5,)]]

OPS: list[Op] = [
    # ---------------------------------------------------------------- arithmetic
    Op("add", lambda m, a, b: a + b, B, ints=True),
    Op("add_alpha", lambda m, a, b: m.add(a, b, alpha=0.5), B),
    Op("sub", lambda m, a, b: a - b, B, ints=True),
    Op("mul", lambda m, a, b: a * b, B, ints=True),
    Op("div", lambda m, a, b: a / b, B, domain=[ident, away_from_zero]),
    Op("pow", lambda m, a, b: a ** b, B, domain=[positive, ident]),
    Op("pow_scalar", lambda m, a: a ** 3, U),
    Op("pow_half", lambda m, a: a ** 0.5, U, domain=[positive]),
    Op("rpow", lambda m, a: 2.0 ** a, U),
    Op("radd", lambda m, a: 1.5 + a, U, ints=True),
    Op("rsub", lambda m, a: 1.5 - a, U),
    Op("rmul", lambda m, a: 2.5 * a, U, ints=True),
    Op("rdiv", lambda m, a: 2.0 / a, U, domain=[away_from_zero]),
    Op("neg", lambda m, a: -a, U, ints=True),
    Op("maximum", lambda m, a, b: m.maximum(a, b), B, ints=True),
    Op("minimum", lambda m, a, b: m.minimum(a, b), B, ints=True),
    Op("where", lambda m, a, b: m.where(a > b, a, b * 2), B),
    Op("clamp", lambda m, a: m.clamp(a, -0.5, 0.7), U, gradgrad=True),
    Op("clamp_min", lambda m, a: a.clamp(min=-0.2), U),
    Op("clamp_tensor", lambda m, a, b: m.clamp(a, min=b), B),
    Op("atan2", lambda m, a, b: m.atan2(a, b), B, domain=[ident, away_from_zero]),
    # ---------------------------------------------------------------- unary math
    Op("abs", lambda m, a: m.abs(a), U, domain=[away_from_zero], ints=True),
    Op("sign", lambda m, a: m.sign(a), U, ints=True, gradgrad=False),
    Op("exp", lambda m, a: m.exp(a), U),
    Op("expm1", lambda m, a: m.expm1(a), U),
    Op("log", lambda m, a: m.log(a), U, domain=[positive]),
    Op("log1p", lambda m, a: m.log1p(a), U, domain=[positive]),
    Op("log2", lambda m, a: m.log2(a), U, domain=[positive]),
    Op("sqrt", lambda m, a: m.sqrt(a), U, domain=[positive]),
    Op("rsqrt", lambda m, a: m.rsqrt(a), U, domain=[positive]),
    Op("square", lambda m, a: m.square(a), U),
    Op("reciprocal", lambda m, a: m.reciprocal(a), U, domain=[away_from_zero]),
    Op("sin", lambda m, a: m.sin(a), U),
    Op("cos", lambda m, a: m.cos(a), U),
    Op("tan", lambda m, a: m.tan(a), U, domain=[inside]),
    Op("asin", lambda m, a: m.asin(a), U, domain=[inside]),
    Op("atan", lambda m, a: m.atan(a), U),
    Op("sinh", lambda m, a: m.sinh(a), U),
    Op("cosh", lambda m, a: m.cosh(a), U),
    Op("tanh", lambda m, a: m.tanh(a), U),
    Op("sigmoid", lambda m, a: m.sigmoid(a), U),
    Op("relu", lambda m, a: m.relu(a), U, domain=[away_from_zero]),
    Op("leaky_relu", lambda m, a: m.nn.functional.leaky_relu(a, 0.1), U, domain=[away_from_zero]),
    Op("elu", lambda m, a: m.nn.functional.elu(a, 1.3), U, domain=[away_from_zero]),
    Op("gelu", lambda m, a: m.nn.functional.gelu(a), U),
    Op("gelu_tanh", lambda m, a: m.nn.functional.gelu(a, approximate="tanh"), U),
    Op("silu", lambda m, a: m.nn.functional.silu(a), U),
    Op("softplus", lambda m, a: m.nn.functional.softplus(a, beta=2.0, threshold=3.0), U, domain=[away_from_zero]),
    Op("erf", lambda m, a: m.erf(a), U),
    Op("erfc", lambda m, a: m.erfc(a), U),
    Op("ndtr", lambda m, a: m.special.ndtr(a), U),
    Op("log_ndtr", lambda m, a: m.special.log_ndtr(a * 3), U),
    Op("logit", lambda m, a: m.logit(a), U, domain=[unit]),
    Op("logit_eps", lambda m, a: m.logit(a, eps=0.2), U, domain=[unit]),
    Op("expit", lambda m, a: m.special.expit(a), U),
    Op("floor", lambda m, a: m.floor(a * 3), U, gradgrad=False),
    # ---------------------------------------------------------------- reductions
    Op("sum", lambda m, a: a.sum(), R, ints=True),
    Op("sum_dim", lambda m, a: a.sum(-1), R, ints=True),
    Op("sum_dims_keep", lambda m, a: a.sum((0, -1), keepdim=True), [[(3, 4)], [(2, 3, 4)], [(2, 0, 3)]]),
    Op("mean", lambda m, a: a.mean(), R_NE),
    Op("mean_dim", lambda m, a: a.mean(0, keepdim=True), R),
    Op("prod", lambda m, a: a.prod(-1), R, domain=[away_from_zero]),
    Op("prod_all", lambda m, a: a.prod(), R_NE, domain=[away_from_zero]),
    Op("var", lambda m, a: a.var(-1), R_NE),
    Op("var_unbiased0", lambda m, a: a.var(0, unbiased=False, keepdim=True), R_NE),
    Op("std", lambda m, a: a.std(), R_NE),
    Op("std_corr", lambda m, a: a.std(-1, correction=0), R_NE),
    Op("amax", lambda m, a: a.amax(-1), R_NE, ints=True),
    Op("amin", lambda m, a: a.amin((0, -1)), [[(3, 4)], [(2, 3, 4)]]),
    Op("max_all", lambda m, a: a.max(), R_NE),
    Op("max_dim", lambda m, a: a.max(0).values, R_NE),
    Op("min_dim_keep", lambda m, a: a.min(-1, keepdim=True)[0], R_NE),
    Op("argmax", lambda m, a: a.argmax(-1), R_NE, grad=False, ints=True),
    Op("argmin_all", lambda m, a: a.argmin(), R_NE, grad=False),
    Op("logsumexp", lambda m, a: m.logsumexp(a, -1), R),
    Op("logsumexp_keep", lambda m, a: a.logsumexp((0,), keepdim=True), R_NE),
    Op("cumsum", lambda m, a: a.cumsum(-1), R, ints=True),
    Op("cumsum0", lambda m, a: m.cumsum(a, 0), R),
    Op("softmax", lambda m, a: m.softmax(a, -1), R),
    Op("log_softmax", lambda m, a: m.nn.functional.log_softmax(a, 0), R),
    # ---------------------------------------------------------------- linear algebra
    Op("matmul_2d", lambda m, a, b: a @ b, [[(3, 4), (4, 5)], [(1, 4), (4, 1)], [(0, 4), (4, 2)], [(3, 0), (0, 2)]], ints=True),
    Op("matmul_1d", lambda m, a, b: m.matmul(a, b), [[(4,), (4,)], [(4,), (4, 3)], [(3, 4), (4,)], [(2, 3, 4), (4,)], [(4,), (2, 4, 3)]]),
    Op("matmul_batched", lambda m, a, b: a @ b, [[(2, 3, 4), (2, 4, 5)], [(2, 1, 3, 4), (3, 4, 2)], [(3, 4), (2, 4, 2)], [(2, 3, 4), (4, 2)]]),
    Op("mm", lambda m, a, b: m.mm(a, b), [[(3, 4), (4, 2)]]),
    Op("bmm", lambda m, a, b: m.bmm(a, b), [[(2, 3, 4), (2, 4, 2)]]),
    Op("mv", lambda m, a, b: m.mv(a, b), [[(3, 4), (4,)]]),
    Op("dot", lambda m, a, b: m.dot(a, b), [[(5,), (5,)]]),
    Op("outer", lambda m, a, b: m.outer(a, b), [[(3,), (4,)]]),
    Op("linear", lambda m, x, w, b: m.nn.functional.linear(x, w, b), [[(5, 4), (3, 4), (3,)], [(2, 5, 4), (3, 4), (3,)], [(4,), (3, 4), (3,)], [(0, 4), (3, 4), (3,)]]),
    Op("linear_nobias", lambda m, x, w: m.nn.functional.linear(x, w), [[(5, 4), (3, 4)]]),
    # ---------------------------------------------------------------- shape
    Op("reshape", lambda m, a: a.reshape(4, -1), [[(2, 6)], [(4, 3)], [(2, 2, 2)]]),
    Op("view", lambda m, a: a.view(-1), [[(2, 6)], [(3, 1, 2)]]),
    Op("reshape_transposed", lambda m, a: a.t().reshape(-1), [[(2, 6)], [(3, 4)]]),
    Op("flatten", lambda m, a: a.flatten(1), [[(2, 3, 4)], [(2, 0, 3)]]),
    Op("unflatten", lambda m, a: a.unflatten(1, (2, 3)), [[(4, 6)], [(1, 6, 2)]]),
    Op("transpose", lambda m, a: a.transpose(0, -1), [[(2, 3, 4)], [(3, 4)]]),
    Op("permute", lambda m, a: a.permute(2, 0, 1), [[(2, 3, 4)]]),
    Op("T", lambda m, a: a.T, [[(3, 4)], [(5,)]]),
    Op("mT", lambda m, a: a.mT, [[(2, 3, 4)]]),
    Op("squeeze", lambda m, a: a.squeeze(), [[(1, 3, 1)], [(2, 1)]]),
    Op("squeeze_dim", lambda m, a: a.squeeze(-1), [[(3, 1)], [(3, 2)]]),
    Op("unsqueeze", lambda m, a: a.unsqueeze(1), [[(3, 4)], [(3,)]]),
    Op("unsqueeze_scalar", lambda m, a: a.unsqueeze(0), [[()]]),
    Op("expand", lambda m, a: a.expand(2, 3, 4), [[(3, 1)], [(1, 4)], [(4,)]]),
    Op("broadcast_to", lambda m, a: m.broadcast_to(a, (2, 3, 4)) if hasattr(m, "broadcast_to") else a.broadcast_to((2, 3, 4)), [[(3, 1)]]),
    Op("repeat", lambda m, a: a.repeat(2, 3), [[(2, 3)], [(4,)]]),
    Op("cat", lambda m, a, b: m.cat([a, b], 0), [[(2, 3), (4, 3)], [(0, 3), (2, 3)]]),
    Op("cat_dim1", lambda m, a, b: m.cat([a, b, a], dim=-1), [[(2, 3), (2, 1)]]),
    Op("stack", lambda m, a, b: m.stack([a, b], 1), [[(2, 3), (2, 3)]]),
    Op("split", lambda m, a: m.cat([p * (i + 1) for i, p in enumerate(a.split(2, 1))], 1), [[(3, 5)]]),
    Op("split_sizes", lambda m, a: m.cat([p * (i + 1) for i, p in enumerate(a.split([1, 3], 0))], 0), [[(4, 2)]]),
    Op("chunk", lambda m, a: m.cat([p * (i + 1) for i, p in enumerate(a.chunk(3, -1))], -1), [[(2, 7)], [(2, 6)]]),
    Op("unbind", lambda m, a: m.stack([p * (i + 1) for i, p in enumerate(a.unbind(1))], 0), [[(2, 3)]]),
    Op("flip", lambda m, a: a.flip(0, -1), [[(3, 4)], [(2, 3, 2)]]),
    Op("tril", lambda m, a: a.tril(), [[(4, 4)], [(2, 3, 5)]]),
    Op("triu", lambda m, a: a.triu(1), [[(4, 3)], [(2, 3, 3)]]),
    Op("narrow", lambda m, a: a.narrow(1, 1, 2), [[(3, 4)]]),
    Op("contiguous", lambda m, a: a.t().contiguous() * 2, [[(3, 4)]]),
    Op("getitem_basic", lambda m, a: a[1:, ::2, None, 0], [[(3, 4, 2)]]),
    Op("getitem_neg", lambda m, a: a[-2:, -1], [[(3, 4)]]),
    Op("getitem_ellipsis", lambda m, a: a[..., 1], [[(2, 3, 4)]]),
    Op("getitem_int_tensor", lambda m, a, i: a[i], [[(5, 3), (4,)], [(5, 3), (2, 2)]], int_inputs={1: (-5, 5)}),
    Op("getitem_two_tensors", lambda m, a, i, j: a[i, :, j], [[(4, 3, 5), (2,), (2,)]], int_inputs={1: (0, 4), 2: (0, 5)}),
    Op("getitem_mask", lambda m, a, k: a[k], [[(3, 4), (3, 4)], [(3, 4), (3,)]], bool_inputs=(1,)),
    Op("getitem_mixed", lambda m, a, i: a[1:, i, None], [[(3, 4), (3,)]], int_inputs={1: (0, 4)}),
    Op("setitem_slice", lambda m, a, v: _setitem(a, (slice(1, None), slice(None, None, 2)), v), [[(3, 4), (2, 2)], [(3, 4), (2,)]]),
    Op("setitem_int_tensor", lambda m, a, v, i: _setitem(a, i, v), [[(5, 3), (3,), (2,)]], int_inputs={2: (0, 5)}),
    Op("setitem_mask", lambda m, a, v, k: _setitem(a, k, v), [[(3, 4), (), (3, 4)]], bool_inputs=(2,)),
    Op("inplace_chain", lambda m, a, b: (a * 1).mul_(b).add_(b, alpha=2.0).sub_(0.5).div_(2.0), [[(3, 4), (3, 4)], [(3, 4), (1, 4)], [(2, 3, 4), (4,)]]),
    Op("inplace_unary", lambda m, a: (a * 1).neg_().exp_(), U),
    Op("inplace_unary2", lambda m, a: (a * 1).abs_().sqrt_(), U, domain=[away_from_zero]),
    # ---------------------------------------------------------------- comparisons (forward only)
    Op("eq", lambda m, a, b: a == b, B, grad=False, ints=True),
    Op("ne", lambda m, a, b: a != b, B, grad=False, ints=True),
    Op("lt", lambda m, a, b: a < b, B, grad=False, ints=True),
    Op("le", lambda m, a, b: m.le(a, b), B, grad=False, ints=True),
    Op("gt_scalar", lambda m, a: a > 0.1, U, grad=False, ints=True),
    Op("ge_scalar", lambda m, a: a >= 0, U, grad=False, ints=True),
    Op("where_scalar", lambda m, a: m.where(a > 0, a, 0.0), U),
    # ---------------------------------------------------------------- indexing ops
    Op("gather", lambda m, a, i: m.gather(a, 1, i), [[(3, 4), (3, 5)]], int_inputs={1: (0, 4)}),
    Op("scatter_add", lambda m, a, i, s: a.scatter_add(0, i, s), [[(3, 4), (2, 4), (2, 4)]], int_inputs={1: (0, 3)}),
    Op("index_select", lambda m, a, i: m.index_select(a, 0, i), [[(5, 3), (4,)]], int_inputs={1: (0, 5)}),
    Op("index_add", lambda m, a, i, s: a.index_add(1, i, s), [[(3, 4), (3,), (3, 3)]], int_inputs={1: (0, 4)}),
    Op("masked_fill", lambda m, a, k: a.masked_fill(k, 2.5), [[(3, 4), (3, 4)], [(3, 4), (1, 4)]], bool_inputs=(1,)),
    Op("pad", lambda m, a: m.nn.functional.pad(a, (1, 2, 0, 1), value=0.5), [[(3, 4)], [(2, 3, 4)]]),
    Op("pad_crop", lambda m, a: m.nn.functional.pad(a, (-1, 1)), [[(3, 4)]]),
]

OPS_BY_NAME = {op.name: op for op in OPS}


def _setitem(a, idx, v):
    """Out-of-place view of index assignment: y = a * 1; y[idx] = v * 2."""
    y = a * 1
    y[idx] = v * 2
    return y


def make_inputs(op: Op, case, np_dtype, rng):
    """NumPy inputs for one case."""
    arrays = []
    for i, shape in enumerate(case):
        if i in op.int_inputs:
            lo, hi = op.int_inputs[i]
            arrays.append(rng.integers(lo, hi, size=shape).astype(np.int64))
        elif i in op.bool_inputs:
            arrays.append(rng.random(shape) < 0.5)
        else:
            a = op.dom(i)(rng.standard_normal(shape))
            if np_dtype == np.int64:
                a = np.round(a * 3)
            arrays.append(np.asarray(a).astype(np_dtype))
    return arrays
