r"""Derivatives of a network with respect to its inputs, in one forward sweep.

``gradient(model, x)``, ``laplacian(model, x)`` and ``hessian_diag(model, x)``
push a :class:`Jet` through the model: at every point, the value, the first
derivatives along each input axis ``x_a`` and either every second derivative
``d^2/dx_a^2`` (``"hessian_diag"``) or only their sum (``"laplacian"``,
one stream whatever the dimension). This is Taylor mode (the "forward
Laplacian"): where nested reverse mode runs ``1 + d`` backward passes over
a graph that grows with each, the jet costs ``2 + d`` contractions per layer
(``1 + 2d`` for the Hessian diagonal), and the result stays differentiable
with respect to the parameters (and ``x``) for training.

Rules exist for :class:`~rbe.pinn.ChebyKAN` (the fused Rust kernel, which
also carries the Chebyshev derivatives ``T_n' = 2 T_{n-1} + 2 x T_{n-1}' -
T_{n-2}'``, ``T_n'' = 4 T_{n-1}' + 2 x T_{n-1}'' - T_{n-2}''``), ``nn.Linear``,
``nn.Sequential``, ``nn.LayerNorm``, the usual activations (``Tanh``,
``Sigmoid``, ``SiLU``, ``Softplus``, ``GELU``, ``ELU``, ``ReLU``,
``LeakyReLU``, ``Sin``), ``Identity`` and ``Dropout`` (off), and the
front-end's ``BoxScaling``, ``MLP``, ``ChebyKANNet``, ``OutputTransform``.
A plain function, or a module without a rule, is called with the jet: jets
support ``+ - * / **``, column indexing ``x[:, a:b]`` (which keeps the
column axis), ``@`` with a constant matrix, ``sum``/``mean`` over features
and ``sin cos exp log sqrt tanh sigmoid``; so ``laplacian(lambda x: x[:, 0:1]
* x[:, 1:2], x)`` works, and so does a module whose ``forward`` writes a hard
boundary condition around a ChebyKAN body. Anything else raises
:class:`TaylorModeError` naming the module; give it a ``taylor_forward(self,
jet)`` method, register a rule with :func:`register_taylor_rule`, or use
``method="autograd"`` (nested reverse mode, any model).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, NamedTuple, Optional, Type

from .. import _core
from .._core import Tensor
from ..errors import ArgumentError, DTypeError, RbeIndexError, ShapeError
from ..nn.modules.module import Module
from .errors import ArgumentTypeError, TaylorModeError

__all__ = [
    "Jet", "Derivatives", "TaylorModeError", "MODES", "taylor", "gradient", "laplacian", "hessian_diag",
    "register_taylor_rule", "propagate",
]

#: What a sweep carries: first derivatives only, their Laplacian, or the Hessian diagonal.
MODES = ("gradient", "laplacian", "hessian_diag")


def _is_jet(v) -> bool:
    return isinstance(v, Jet)


def _eye_jets(n: int, f: int, dtype) -> Tensor:
    return _core.eye(f, None, dtype, False).unsqueeze(0).expand(n, f, f)


def _u1(t: Tensor) -> Tensor:
    """A per-point quantity ``(N, F)`` broadcast against the directions ``(N, d, F)``."""
    return t.unsqueeze(1) if t.ndim == 2 else t


class Jet:
    """Value and derivatives of a quantity of shape ``(N, F)`` along ``d`` input directions.

    - ``value`` ``(N, F)``;
    - ``first`` ``(N, d, F)``, or ``None`` for the independent variable
      itself (the unit directions, ``d = F``);
    - ``second``: ``None`` (zero), ``(N, F)`` (the Laplacian, mode
      ``"laplacian"``) or ``(N, d, F)`` (each second derivative, mode
      ``"hessian_diag"``); always ``None`` in mode ``"gradient"``.
    """

    __slots__ = ("value", "first", "second", "mode")
    # jets win over tensors in mixed arithmetic (tensor * jet calls Jet.__rmul__)
    __array_priority__ = 1000

    def __init__(self, value: Tensor, first: Optional[Tensor], second: Optional[Tensor], mode: str):
        if mode not in MODES:
            raise ArgumentError(f"Jet: mode must be one of {MODES}, got {mode!r}")
        if value.ndim != 2:
            raise ShapeError(f"Jet: value must have shape (N, features), got {tuple(value.shape)}")
        self.value, self.first, self.second, self.mode = value, first, second, mode

    @staticmethod
    def seed(x: Tensor, mode: str) -> "Jet":
        """The jet of the independent variable ``x`` ``(N, d)``."""
        return Jet(x, None, None, mode)

    # ---------------------------------------------------------------- shapes
    @property
    def shape(self):
        return self.value.shape

    @property
    def dtype(self):
        return self.value.dtype

    @property
    def ndim(self) -> int:
        return 2

    @property
    def d(self) -> int:
        return int(self.value.shape[1]) if self.first is None else int(self.first.shape[1])

    def jacobian(self) -> Tensor:
        """``first``, with the unit directions materialised for a seed."""
        if self.first is not None:
            return self.first
        n, f = (int(v) for v in self.value.shape)
        return _eye_jets(n, f, self.value.dtype)

    def __repr__(self) -> str:
        return f"Jet(mode={self.mode!r}, shape={tuple(self.value.shape)}, d={self.d})"

    # ---------------------------------------------------------------- building blocks
    def _new(self, value, first, second) -> "Jet":
        return Jet(value, first, second if self.mode != "gradient" else None, self.mode)

    def _check(self, other: "Jet") -> None:
        if other.mode != self.mode:
            raise ArgumentError(f"Jet: cannot combine jets of modes {self.mode!r} and {other.mode!r}")
        if other.d != self.d:
            raise ArgumentError(f"Jet: cannot combine jets of {self.d} and {other.d} directions")

    def unary(self, y: Tensor, f1: Tensor, f2: Optional[Tensor]) -> "Jet":
        """``g(self)`` given ``y = g(v)``, ``f1 = g'(v)``, ``f2 = g''(v)`` (``None`` for zero)."""
        j = self.jacobian()
        first = _u1(f1) * j
        second = None
        if self.mode == "laplacian":
            second = f1 * self.second if self.second is not None else None
            if f2 is not None:
                t = f2 * (j * j).sum(1)
                second = t if second is None else second + t
            if second is None:
                second = y * 0.0
        elif self.mode == "hessian_diag":
            second = _u1(f1) * self.second if self.second is not None else None
            if f2 is not None:
                t = _u1(f2) * (j * j)
                second = t if second is None else second + t
            if second is None:
                second = first * 0.0
        return self._new(y, first, second)

    def linear(self, fn: Callable[[Tensor], Tensor], bias=None) -> "Jet":
        """A map linear in the features: ``fn`` applied to the value and every stream (``bias`` added to the value)."""
        first = fn(self.jacobian())
        second = fn(self.second) if self.second is not None else None
        v = fn(self.value)
        if bias is not None:
            v = v + bias
        return self._new(v, first, second)

    # ---------------------------------------------------------------- arithmetic
    def __add__(self, other):
        if _is_jet(other):
            self._check(other)
            s = _add_opt(self.second, other.second)
            return self._new(self.value + other.value, self.jacobian() + other.jacobian(), s)
        # a constant shifts the value only (a seed stays a seed: same unit directions)
        return self._new(self.value + other, self.first, self.second)

    __radd__ = __add__

    def __neg__(self):
        return self._new(-self.value, -self.jacobian(), -self.second if self.second is not None else None)

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        if _is_jet(other):
            self._check(other)
            u, v = self.value, other.value
            uj, vj = self.jacobian(), other.jacobian()
            first = uj * _u1(v) + _u1(u) * vj
            second = None
            if self.mode == "laplacian":
                second = 2.0 * (uj * vj).sum(1)
                if self.second is not None:
                    second = second + self.second * v
                if other.second is not None:
                    second = second + u * other.second
            elif self.mode == "hessian_diag":
                second = 2.0 * (uj * vj)
                if self.second is not None:
                    second = second + self.second * _u1(v)
                if other.second is not None:
                    second = second + _u1(u) * other.second
            return self._new(u * v, first, second)
        c = other
        s = None
        if self.second is not None:
            s = self.second * (_u1(c) if (self.mode == "hessian_diag" and isinstance(c, Tensor)) else c)
        return self._new(self.value * c, self.jacobian() * (_u1(c) if isinstance(c, Tensor) else c), s)

    __rmul__ = __mul__

    def reciprocal(self) -> "Jet":
        v = self.value
        r = 1.0 / v
        r2 = r * r
        return self.unary(r, -r2, 2.0 * r2 * r)

    def __truediv__(self, other):
        if _is_jet(other):
            return self * other.reciprocal()
        return self * (1.0 / other)

    def __rtruediv__(self, other):
        return self.reciprocal() * other

    def __pow__(self, p):
        if _is_jet(p) or isinstance(p, Tensor):
            raise TaylorModeError("Jet: only a constant number can be an exponent")
        p = float(p)
        v = self.value
        if p == 0.0:
            return self.unary(v * 0.0 + 1.0, v * 0.0, None)
        if p == 1.0:
            return self
        if p == 2.0:
            return self.unary(v * v, 2.0 * v, v * 0.0 + 2.0)
        return self.unary(v ** p, p * v ** (p - 1.0), p * (p - 1.0) * v ** (p - 2.0))

    def square(self) -> "Jet":
        return self ** 2

    def __matmul__(self, w: Tensor) -> "Jet":
        if _is_jet(w):
            raise TaylorModeError("Jet: matrix products of two jets are not supported (multiply columns instead)")
        return self.linear(lambda t: t @ w)

    def __getitem__(self, key) -> "Jet":
        if not isinstance(key, tuple) or len(key) != 2 or key[0] != slice(None) and key[0] is not Ellipsis:
            raise TaylorModeError(f"Jet: index a jet by columns, as x[:, k] or x[:, a:b] (got {key!r})")
        col = key[1]
        if isinstance(col, int):
            f = int(self.value.shape[1])
            if not -f <= col < f:
                raise RbeIndexError(f"Jet: column {col} is out of range for {f} features")
            col = col % f
            col = slice(col, col + 1)
        first = self.jacobian()[:, :, col]
        if self.second is None:
            second = None
        elif self.mode == "laplacian":
            second = self.second[:, col]
        else:
            second = self.second[:, :, col]
        return self._new(self.value[:, col], first, second)

    def sum(self, dim: int = -1, keepdim: bool = True) -> "Jet":
        """Sum over the features (the result keeps the column axis)."""
        if dim not in (-1, 1):
            raise TaylorModeError("Jet: sum runs over the features (dim=-1)")
        return self.linear(lambda t: t.sum(-1, keepdim=True))

    def mean(self, dim: int = -1, keepdim: bool = True) -> "Jet":
        if dim not in (-1, 1):
            raise TaylorModeError("Jet: mean runs over the features (dim=-1)")
        return self.linear(lambda t: t.mean(-1, keepdim=True))

    # ---------------------------------------------------------------- functions
    def sin(self):
        v = self.value
        s, c = v.sin(), v.cos()
        return self.unary(s, c, -s)

    def cos(self):
        v = self.value
        s, c = v.sin(), v.cos()
        return self.unary(c, -s, -c)

    def exp(self):
        e = self.value.exp()
        return self.unary(e, e, e)

    def log(self):
        v = self.value
        r = 1.0 / v
        return self.unary(v.log(), r, -(r * r))

    def sqrt(self):
        s = self.value.sqrt()
        return self.unary(s, 0.5 / s, -0.25 / (s * s * s))

    def tanh(self):
        y = self.value.tanh()
        f1 = 1.0 - y * y
        return self.unary(y, f1, -2.0 * y * f1)

    def sigmoid(self):
        y = self.value.sigmoid()
        f1 = y * (1.0 - y)
        return self.unary(y, f1, f1 * (1.0 - 2.0 * y))

    @staticmethod
    def cat(jets, dim: int = -1) -> "Jet":
        """Concatenate jets along the features."""
        jets = list(jets)
        if dim not in (-1, 1) or not jets:
            raise TaylorModeError("Jet.cat: concatenate a non-empty list of jets along the features (dim=-1)")
        for j in jets[1:]:
            jets[0]._check(j)
        mode = jets[0].mode
        value = _core.cat([j.value for j in jets], -1)
        first = _core.cat([j.jacobian() for j in jets], -1)
        second = None
        if mode != "gradient":
            parts = [j.second if j.second is not None else (j.value * 0.0 if mode == "laplacian" else j.jacobian() * 0.0) for j in jets]
            second = _core.cat(parts, -1)
        return Jet(value, first, second, mode)


def _add_opt(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


# ---------------------------------------------------------------- rules
_RULES: Dict[type, Callable[[Module, Jet], Jet]] = {}


def register_taylor_rule(cls: Type[Module], rule: Callable[[Module, Jet], Jet]) -> None:
    """Teach Taylor mode a module class: ``rule(module, jet) -> jet``
    (subclasses inherit the rule)."""
    if not isinstance(cls, type):
        raise ArgumentTypeError(f"register_taylor_rule: cls must be a class, got {cls!r}")
    _RULES[cls] = rule


def _find_rule(module) -> Optional[Callable]:
    for c in type(module).__mro__:
        r = _RULES.get(c)
        if r is not None:
            return r
    return None


def propagate(model, jet: Jet) -> Jet:
    """Push ``jet`` through ``model`` (a module with a rule, a module whose
    forward works on jets, or a plain function)."""
    if isinstance(model, Module):
        tf = getattr(model, "taylor_forward", None)
        if tf is not None:
            return _as_jet(tf(jet), model)
        rule = _find_rule(model)
        if rule is not None:
            return rule(model, jet)
        try:
            out = model.forward(jet)
        except TaylorModeError:
            raise
        except (TypeError, AttributeError) as e:
            raise TaylorModeError(
                f"Taylor mode has no rule for {type(model).__name__} and its forward does not run on jets ({e}); "
                f"give it a taylor_forward(self, jet) method, register one with rbe.pinn.register_taylor_rule, "
                f"or use method='autograd'"
            ) from None
        return _as_jet(out, model)
    if callable(model):
        return _as_jet(model(jet), model)
    raise ArgumentTypeError(f"taylor: model must be a module or a callable, got {type(model).__name__}")


def _as_jet(out, where) -> Jet:
    if not isinstance(out, Jet):
        name = type(where).__name__ if isinstance(where, Module) else getattr(where, "__name__", repr(where))
        raise TaylorModeError(f"Taylor mode: {name} returned {type(out).__name__}, not a jet (an operation it uses has no Taylor rule)")
    return out


def _rule_sequential(m, jet):
    for sub in m:
        jet = propagate(sub, jet)
    return jet


def _rule_linear(m, jet):
    w = m.weight
    if jet.value.shape[1] != w.shape[1]:
        raise ShapeError(f"Linear: input of {jet.value.shape[1]} features for in_features = {w.shape[1]}")
    if jet.first is None:
        # the seed's directions through W: row a of W^T
        n = int(jet.value.shape[0])
        v = _core.linear(jet.value, w, m.bias)
        first = w.t().unsqueeze(0).expand(n, int(w.shape[1]), int(w.shape[0]))
        second = None if jet.mode == "gradient" else (v * 0.0 if jet.mode == "laplacian" else first * 0.0)
        return Jet(v, first, second, jet.mode)
    wt = w.t()
    return jet.linear(lambda t: t @ wt, m.bias)


def _rule_identity(m, jet):
    return jet


def _rule_dropout(m, jet):
    if m.training and m.p > 0:
        raise TaylorModeError("Dropout in training mode is random: call model.eval() (or use p=0) before taking derivatives")
    return jet


def _rule_tanh(m, jet):
    return jet.tanh()


def _rule_sigmoid(m, jet):
    return jet.sigmoid()


def _rule_sin(m, jet):
    return jet.sin()


def _rule_silu(m, jet):
    v = jet.value
    s = v.sigmoid()
    ds = s * (1.0 - s)
    return jet.unary(v * s, s + v * ds, ds * (2.0 + v * (1.0 - 2.0 * s)))


def _where(c, a, b):
    from .. import where

    return where(c, a, b)


def _rule_softplus(m, jet):
    from ..nn import functional as F

    v = jet.value
    b = float(m.beta)
    lin = (v * b) > float(m.threshold)
    s = (v * b).sigmoid()
    f1 = _where(lin, v * 0.0 + 1.0, s)
    f2 = _where(lin, v * 0.0, b * s * (1.0 - s))
    return jet.unary(F.softplus(v, m.beta, m.threshold), f1, f2)


def _rule_gelu(m, jet):
    if getattr(m, "approximate", "none") != "none":
        raise TaylorModeError("Taylor mode supports GELU(approximate='none') only")
    from ..special import ndtr

    v = jet.value
    phi = (v * v * -0.5).exp() * (1.0 / math.sqrt(2.0 * math.pi))
    cdf = ndtr(v)
    return jet.unary(v * cdf, cdf + v * phi, phi * (2.0 - v * v))


def _rule_relu(m, jet):
    v = jet.value
    pos = (v > 0).to(v.dtype)
    return jet.unary(v * pos, pos, None)


def _rule_leaky_relu(m, jet):
    v = jet.value
    pos = (v > 0).to(v.dtype)
    f1 = pos + (1.0 - pos) * float(m.negative_slope)
    return jet.unary(v * f1, f1, None)


def _rule_elu(m, jet):
    v = jet.value
    pos = (v > 0).to(v.dtype)
    a = float(m.alpha)
    e = (v * (1.0 - pos)).exp() * a  # alpha e^v on the negative side
    y = v * pos + (e - a) * (1.0 - pos)
    f1 = pos + e * (1.0 - pos)
    return jet.unary(y, f1, e * (1.0 - pos))


def _rule_layer_norm(m, jet):
    if len(m.normalized_shape) != 1 or int(m.normalized_shape[0]) != int(jet.value.shape[1]):
        raise TaylorModeError(f"Taylor mode supports LayerNorm over the last axis of a (N, F) input only (normalized_shape={m.normalized_shape})")
    v = jet.value
    c = v - v.mean(-1, keepdim=True)
    var = (c * c).mean(-1, keepdim=True)
    r = (var + float(m.eps)).rsqrt()  # (N, 1)
    r3 = r * r * r
    j = jet.jacobian()  # (N, d, F)
    cj = j - j.mean(-1, keepdim=True)
    cu = c.unsqueeze(1)
    va = 2.0 * (cu * cj).mean(-1, keepdim=True)  # (N, d, 1)
    ra = -0.5 * r3.unsqueeze(1) * va  # (N, d, 1)
    ru = r.unsqueeze(1)
    first = cj * ru + cu * ra
    second = None
    if jet.mode != "gradient":
        r5 = r3 * r * r
        if jet.mode == "hessian_diag":
            s = jet.second if jet.second is not None else j * 0.0
            cs = s - s.mean(-1, keepdim=True)
            vaa = 2.0 * (cj * cj + cu * cs).mean(-1, keepdim=True)
            raa = 0.75 * r5.unsqueeze(1) * va * va - 0.5 * r3.unsqueeze(1) * vaa
            second = cs * ru + 2.0 * cj * ra + cu * raa
        else:
            s = jet.second if jet.second is not None else v * 0.0
            cs = s - s.mean(-1, keepdim=True)
            vaa = 2.0 * ((cj * cj).sum(1).mean(-1, keepdim=True) + (c * cs).mean(-1, keepdim=True))
            raa = 0.75 * r5 * (va * va).sum(1) - 0.5 * r3 * vaa
            second = cs * r + 2.0 * (cj * ra).sum(1) + c * raa
    y = c * r
    out = Jet(y, first, second, jet.mode)
    if m.weight is not None:
        out = out * m.weight
    if m.bias is not None:
        out = out + m.bias
    return out


def _install_core_rules() -> None:
    from ..nn.modules import activation as A
    from ..nn.modules import container as C
    from ..nn.modules import linear as L
    from ..nn.modules import normalization as N

    register_taylor_rule(C.Sequential, _rule_sequential)
    register_taylor_rule(L.Linear, _rule_linear)
    register_taylor_rule(L.Identity, _rule_identity)
    register_taylor_rule(L.Dropout, _rule_dropout)
    register_taylor_rule(N.LayerNorm, _rule_layer_norm)
    register_taylor_rule(A.Tanh, _rule_tanh)
    register_taylor_rule(A.Sigmoid, _rule_sigmoid)
    register_taylor_rule(A.SiLU, _rule_silu)
    register_taylor_rule(A.Softplus, _rule_softplus)
    register_taylor_rule(A.GELU, _rule_gelu)
    register_taylor_rule(A.ReLU, _rule_relu)
    register_taylor_rule(A.LeakyReLU, _rule_leaky_relu)
    register_taylor_rule(A.ELU, _rule_elu)


_install_core_rules()


# ---------------------------------------------------------------- the public helpers
class Derivatives(NamedTuple):
    """What one sweep computed; for a model with one output the output axis
    is dropped from the derivatives.

    - ``value``: the model's output ``(N, O)``;
    - ``gradient``: ``(N, d)`` (one output) or ``(N, O, d)``;
    - ``laplacian``: ``(N,)`` or ``(N, O)`` (``None`` in mode ``"gradient"``);
    - ``hessian_diag``: ``(N, d)`` or ``(N, O, d)`` (mode ``"hessian_diag"`` only).
    """

    value: Tensor
    gradient: Tensor
    laplacian: Optional[Tensor]
    hessian_diag: Optional[Tensor]


def _check_x(x, what: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise ArgumentTypeError(f"{what}: x must be a tensor of shape (N, d), got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] < 1:
        raise ShapeError(f"{what}: x must have shape (N, d) with d >= 1, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise DTypeError(f"{what}: x must be float32 or float64, got {x.dtype}")
    return x


def _finish(value: Tensor, grad: Tensor, lap: Optional[Tensor], hdiag: Optional[Tensor]) -> Derivatives:
    """``grad`` and ``hdiag`` ``(N, O, d)``, ``lap`` ``(N, O)``; drop O when it is 1."""
    if value.ndim == 1:
        value = value.unsqueeze(1)
    if int(value.shape[1]) == 1:
        grad = grad[:, 0]
        lap = lap[:, 0] if lap is not None else None
        hdiag = hdiag[:, 0] if hdiag is not None else None
    return Derivatives(value, grad, lap, hdiag)


def _taylor_sweep(model, x: Tensor, mode: str) -> Derivatives:
    out = propagate(model, Jet.seed(x, mode))
    j = out.jacobian().transpose(1, 2)  # (N, O, d)
    lap = hd = None
    if mode == "laplacian":
        lap = out.second if out.second is not None else out.value * 0.0
    elif mode == "hessian_diag":
        s = out.second if out.second is not None else out.jacobian() * 0.0
        hd = s.transpose(1, 2)
        lap = hd.sum(-1)
    return _finish(out.value, j, lap, hd)


def _nested(model, x: Tensor, mode: str) -> Derivatives:
    from ..autograd import grad as _grad

    xr = x if x.requires_grad else x.detach().requires_grad_(True)
    u = model(xr)
    if u.ndim == 1:
        u = u.unsqueeze(1)
    if u.ndim != 2 or int(u.shape[0]) != int(x.shape[0]):
        raise ShapeError(f"autograd: the model must map (N, d) to (N, O), got {tuple(u.shape)} for x of shape {tuple(x.shape)}")
    n, o = (int(v) for v in u.shape)
    d = int(x.shape[1])
    grads, diags = [], []
    for k in range(o):
        (g,) = _grad(u[:, k].sum(), xr, create_graph=True)
        grads.append(g)
        if mode != "gradient":
            hs = []
            for a in range(d):
                (h,) = _grad(g[:, a].sum(), xr, create_graph=True, allow_unused=True)
                hs.append(h[:, a] if h is not None else g[:, a] * 0.0)
            diags.append(_core.stack(hs, 1))
    g = _core.stack(grads, 1)  # (N, O, d)
    hd = _core.stack(diags, 1) if diags else None
    lap = hd.sum(-1) if hd is not None else None
    return _finish(u, g, lap, hd if mode == "hessian_diag" else None)


def taylor(model, x: Tensor, mode: str = "laplacian", method: str = "taylor") -> Derivatives:
    """Value and input derivatives of ``model`` at the points ``x`` ``(N, d)``.

    ``mode``: ``"gradient"``, ``"laplacian"`` or ``"hessian_diag"``.
    ``method``: ``"taylor"`` (one forward sweep; raises :class:`TaylorModeError`
    for a model it has no rule for), ``"autograd"`` (nested
    ``rbe.autograd.grad(create_graph=True)``, any model whose rows are
    independent), or ``"auto"`` (Taylor mode, else nested autograd).
    The result is differentiable with respect to the parameters (and to
    ``x`` when it requires grad).
    """
    if mode not in MODES:
        raise ArgumentError(f"taylor: mode must be one of {MODES}, got {mode!r}")
    if method not in ("taylor", "autograd", "auto"):
        raise ArgumentError(f"taylor: method must be 'taylor', 'autograd' or 'auto', got {method!r}")
    _check_x(x, "taylor")
    if method == "autograd":
        return _nested(model, x, mode)
    if method == "auto":
        try:
            return _taylor_sweep(model, x, mode)
        except TaylorModeError:
            return _nested(model, x, mode)
    return _taylor_sweep(model, x, mode)


def gradient(model, x: Tensor, method: str = "taylor") -> Tensor:
    """``du/dx`` at the points ``x`` ``(N, d)``: ``(N, d)`` for a model with one output, ``(N, O, d)`` otherwise."""
    return taylor(model, x, "gradient", method).gradient


def laplacian(model, x: Tensor, method: str = "taylor") -> Tensor:
    """``sum_a d^2 u / dx_a^2`` at the points ``x`` ``(N, d)``: ``(N,)`` for one output, ``(N, O)`` otherwise."""
    return taylor(model, x, "laplacian", method).laplacian


def hessian_diag(model, x: Tensor, method: str = "taylor") -> Tensor:
    """``d^2 u / dx_a^2`` for each axis ``a``: ``(N, d)`` for one output, ``(N, O, d)`` otherwise."""
    return taylor(model, x, "hessian_diag", method).hessian_diag

