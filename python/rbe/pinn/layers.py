"""Layers and models of the PINN front-end.

- :class:`ChebyKAN`: a Chebyshev Kolmogorov-Arnold layer (also ``rbe.nn.ChebyKAN``);
- :class:`ChebyKANNet`: a stack of them (the scaled cPIKAN of Mostajeran and
  Faroughi: the box of the problem mapped affinely onto ``[-1, 1]`` by the
  first layer, ``tanh`` at the inputs of the others, optional LayerNorm in
  between);
- :class:`MLP`: the plain multilayer perceptron, for comparison;
- :class:`BoxScaling`, :class:`Sin`: an input map and an activation for MLPs.

Every module here has a Taylor-mode rule (``rbe.pinn.taylor``), so
``rbe.pinn.laplacian(model, x)`` runs in one forward sweep.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _core
from .._core import Tensor
from .._grad import no_grad_ctx as _no_grad
from ..errors import ArgumentError, ShapeError
from ..nn import init as _init
from ..nn.modules.activation import Tanh
from ..nn.modules.container import Sequential
from ..nn.modules.linear import Linear
from ..nn.modules.module import Module
from ..nn.modules.normalization import LayerNorm
from ..nn.parameter import Parameter
from . import functional as F
from .errors import ArgumentTypeError
from .taylor import Jet, propagate, register_taylor_rule

__all__ = ["ChebyKAN", "ChebyKANNet", "MLP", "BoxScaling", "Sin", "OutputTransform", "InputTransform", "INITS", "init_chebykan_"]

#: Initialisation schemes of :class:`ChebyKAN` (see :func:`init_chebykan_`).
INITS = ("xavier", "kaiming", "orthogonal", "small_random", "basis_glorot")
_MAPS = ("tanh", "affine", "identity")

Box = Tuple[Union[float, Sequence[float]], Union[float, Sequence[float]]]


def _box_bounds(box: Box, n: int, what: str) -> Tuple[list, list]:
    try:
        lo, hi = box
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{what}: box must be a pair (lo, hi), got {box!r}") from None

    def widen(v, name):
        if isinstance(v, (int, float)):
            return [float(v)] * n
        v = [float(a) for a in v]
        if len(v) != n:
            raise ShapeError(f"{what}: box {name} has {len(v)} values for {n} input features")
        return v

    lo, hi = widen(lo, "lo"), widen(hi, "hi")
    for k, (a, b) in enumerate(zip(lo, hi)):
        if not (math.isfinite(a) and math.isfinite(b) and b > a):
            raise ArgumentError(f"{what}: box axis {k} must have finite bounds lo < hi, got [{a}, {b}]")
    return lo, hi


def _chebyshev_second_moments(k1: int) -> list:
    """``E[T_k(z)^2]`` for ``z`` uniform on ``[-1, 1]``: ``(1 - 1/(4k^2 - 1)) / 2`` (1 for k = 0)."""
    return [1.0 if k == 0 else 0.5 * (1.0 - 1.0 / (4.0 * k * k - 1.0)) for k in range(k1)]


def init_chebykan_(coeffs: Tensor, scheme: str = "xavier", gain: float = 1.0, generator=None) -> Tensor:
    """Initialise ChebyKAN coefficients ``(in, out, K+1)`` in place.

    With ``fan_in = in (K+1)`` (the terms summed into one output) and
    ``fan_out = out``:

    - ``"xavier"``: normal, ``std = gain sqrt(2 / (fan_in + fan_out))``;
    - ``"kaiming"``: normal, ``std = gain sqrt(2 / fan_in)`` (He);
    - ``"orthogonal"``: the ``out x in (K+1)`` matrix ``M[o, (i, k)] = C[i, o, k]``
      (semi-)orthogonal, times ``gain``;
    - ``"small_random"``: normal, ``std = gain / (in (K+1))`` (the original
      ChebyKAN layer's);
    - ``"basis_glorot"``: basis-aware Glorot: ``Var C[i, o, k] = gain^2 2 /
      ((in + out) (K+1) E[T_k^2])`` with ``E[T_k^2]`` the second moment of
      ``T_k`` for inputs uniform on ``[-1, 1]``, so every degree contributes
      the same variance and ``Var y ~ 2 in / (in + out)``.
    """
    if coeffs.ndim != 3:
        raise ShapeError(f"init_chebykan_: coeffs must have shape (in, out, degree + 1), got {tuple(coeffs.shape)}")
    if scheme not in INITS:
        raise ArgumentError(f"init_chebykan_: init must be one of {INITS}, got {scheme!r}")
    i, o, k1 = (int(v) for v in coeffs.shape)
    if coeffs.numel() == 0:
        return coeffs
    fan_in, fan_out = i * k1, o
    dt = coeffs.dtype
    if scheme == "orthogonal":
        m = _core.zeros([o, i * k1], dt, False)
        _init.orthogonal_(m, gain=gain, generator=generator)
        new = m.reshape(o, i, k1).permute(1, 0, 2)
    else:
        z = _core.randn([i, o, k1], 0.0, 1.0, dt, generator, False)
        if scheme == "xavier":
            new = z * (gain * math.sqrt(2.0 / (fan_in + fan_out)))
        elif scheme == "kaiming":
            new = z * (gain * math.sqrt(2.0 / fan_in))
        elif scheme == "small_random":
            new = z * (gain / fan_in)
        else:
            m2 = _chebyshev_second_moments(k1)
            std = _core.from_numpy(np.array([gain * math.sqrt(2.0 / ((i + o) * k1 * v)) for v in m2])).to(dt)
            new = z * std
    with _no_grad():
        coeffs.copy_(new)
    return coeffs


class ChebyKAN(Module):
    r"""A Chebyshev Kolmogorov-Arnold layer:
    ``y[..., o] = sum_{i, k} C[i, o, k] T_k(phi(x[..., i]))``, ``k = 0..degree``.

    The basis comes from the three-term recurrence and is contracted with the
    coefficients in one fused kernel (Rust, ``rust/pinn``), differentiable to
    any order; in Taylor mode (``rbe.pinn.laplacian``) the layer carries
    first and second derivatives in the same sweep.

    Args:
        in_features, out_features: as for ``nn.Linear``.
        degree: the highest Chebyshev degree ``K`` (coefficients ``(in, out, K + 1)``).
        input_map: ``"tanh"`` (``phi = tanh``, the published cPIKAN layer),
            ``"affine"`` (the map of ``box`` onto ``[-1, 1]``; derivatives with
            respect to ``x`` include its factor ``2 / (hi - lo)``, so a residual
            written in the problem's coordinates is right as it is), or
            ``"identity"`` (inputs already in ``[-1, 1]``).
        box: ``(lo, hi)``, numbers or one value per input feature; required by
            ``input_map="affine"``.
        init: one of :data:`INITS` (see :func:`init_chebykan_`).
        gain: scale of the initialisation.

    There is no separate bias: ``T_0 = 1``, so ``sum_i C[i, o, 0]`` is one.
    """

    def __init__(self, in_features: int, out_features: int, degree: int = 5, input_map: str = "tanh", box: Optional[Box] = None,
                 init: str = "xavier", gain: float = 1.0, dtype=None, generator=None):
        super().__init__()
        if int(in_features) < 1 or int(out_features) < 1:
            raise ArgumentError(f"ChebyKAN: in_features and out_features must be >= 1, got {in_features}, {out_features}")
        if int(degree) < 0:
            raise ArgumentError(f"ChebyKAN: degree must be >= 0, got {degree}")
        if input_map not in _MAPS:
            raise ArgumentError(f"ChebyKAN: input_map must be one of {_MAPS}, got {input_map!r}")
        if input_map == "affine" and box is None:
            raise ArgumentError("ChebyKAN: input_map='affine' needs box=(lo, hi), the domain of the inputs")
        if input_map != "affine" and box is not None:
            raise ArgumentError(f"ChebyKAN: box is only used with input_map='affine' (got input_map={input_map!r})")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.degree = int(degree)
        self.input_map = input_map
        self.init = init
        if input_map == "affine":
            lo, hi = _box_bounds(box, self.in_features, "ChebyKAN")
            self.box = (lo, hi)
            scale, shift = F.box_map(lo, hi)
            self._map = ("affine", list(scale), list(shift))
        elif input_map == "identity":
            self.box = None
            self._map = ("affine", [1.0] * self.in_features, [0.0] * self.in_features)
        else:
            self.box = None
            self._map = ("tanh", None, None)
        from .. import empty

        self.coeffs = Parameter(empty(self.in_features, self.out_features, self.degree + 1, dtype=dtype))
        init_chebykan_(self.coeffs, init, gain, generator)

    def forward(self, input: Tensor) -> Tensor:
        if isinstance(input, Jet):
            return _rule_chebykan(self, input)
        m, s, b = self._map
        return F.chebykan(input, self.coeffs, m, s, b)

    def taylor(self, x: Tensor, first: Optional[Tensor], second: Optional[Tensor], mode: str):
        """The layer in Taylor mode (see ``rbe.pinn.functional.chebykan_taylor``)."""
        m, s, b = self._map
        return F.chebykan_taylor(x, first, second, self.coeffs, mode, m, s, b)

    def extra_repr(self) -> str:
        r = f"in_features={self.in_features}, out_features={self.out_features}, degree={self.degree}, input_map={self.input_map!r}"
        if self.box is not None:
            r += f", box={self.box}"
        return r


class BoxScaling(Module):
    """The affine map of the box ``[lo, hi]`` onto ``[-1, 1]``, per feature (no parameters)."""

    def __init__(self, box: Box, features: int):
        super().__init__()
        lo, hi = _box_bounds(box, int(features), "BoxScaling")
        self.box = (lo, hi)
        self.scale, self.shift = (list(v) for v in F.box_map(lo, hi))
        self.features = int(features)

    def forward(self, input: Tensor) -> Tensor:
        s = _core.from_numpy(np.array(self.scale)).to(input.dtype)
        b = _core.from_numpy(np.array(self.shift)).to(input.dtype)
        return input * s + b  # a jet too: scales its derivatives by s

    def extra_repr(self) -> str:
        return f"box={self.box}"


class Sin(Module):
    """``sin(x)``, an activation used by PINN MLPs."""

    def forward(self, input: Tensor) -> Tensor:
        return input.sin()


class _JetSequential(Sequential):
    """A Sequential whose forward also takes a jet (so it works inside a
    user module's forward in Taylor mode)."""

    def forward(self, input):
        if isinstance(input, Jet):
            return propagate(self, input)
        return super().forward(input)


def _check_widths(widths, what: str) -> list:
    try:
        w = [int(v) for v in widths]
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{what}: widths must be a sequence of ints, got {widths!r}") from None
    if len(w) < 2 or any(v < 1 for v in w):
        raise ArgumentError(f"{what}: widths must list at least the input and output sizes, each >= 1, got {w}")
    return w


class ChebyKANNet(_JetSequential):
    """A stack of :class:`ChebyKAN` layers of ``widths = [d, h, ..., out]``.

    With ``box`` (the problem's domain) the first layer maps it affinely onto
    ``[-1, 1]`` (the *scaled* cPIKAN); without, it applies ``tanh`` as the
    others do. ``layernorm=True`` puts a ``LayerNorm`` before each hidden
    layer. Example: ``ChebyKANNet([2, 16, 16, 1], degree=5, box=([0, 0], [1, 1]))``.
    """

    def __init__(self, widths: Sequence[int], degree: int = 5, box: Optional[Box] = None, input_map: Optional[str] = None,
                 layernorm: bool = False, init: str = "xavier", gain: float = 1.0, dtype=None, generator=None):
        w = _check_widths(widths, "ChebyKANNet")
        if input_map is None:
            input_map = "affine" if box is not None else "tanh"
        mods: list = []
        for k in range(len(w) - 1):
            if k > 0 and layernorm:
                mods.append(LayerNorm(w[k], dtype=dtype))
            mods.append(ChebyKAN(w[k], w[k + 1], degree, input_map if k == 0 else "tanh", box if k == 0 else None, init, gain,
                                 dtype=dtype, generator=generator))
        super().__init__(*mods)
        self.widths = w


_ACTS = {"tanh": Tanh, "sin": Sin}


class MLP(_JetSequential):
    """The plain multilayer perceptron ``widths = [d, h, ..., out]`` with
    ``activation`` (``"tanh"`` or ``"sin"``), Xavier-normal weights and zero
    biases; with ``box``, the inputs are first mapped onto ``[-1, 1]``
    (:class:`BoxScaling`). ``layernorm=True`` adds a LayerNorm after each
    hidden linear layer."""

    def __init__(self, widths: Sequence[int], activation: str = "tanh", box: Optional[Box] = None, layernorm: bool = False,
                 dtype=None, generator=None):
        w = _check_widths(widths, "MLP")
        if activation not in _ACTS:
            raise ArgumentError(f"MLP: activation must be one of {tuple(_ACTS)}, got {activation!r}")
        mods: list = []
        if box is not None:
            mods.append(BoxScaling(box, w[0]))
        for k in range(len(w) - 1):
            lin = Linear(w[k], w[k + 1], dtype=dtype)
            _init.xavier_normal_(lin.weight, generator=generator)
            _init.zeros_(lin.bias)
            mods.append(lin)
            if k < len(w) - 2:
                if layernorm:
                    mods.append(LayerNorm(w[k + 1], dtype=dtype))
                mods.append(_ACTS[activation]())
        super().__init__(*mods)
        self.widths = w


class OutputTransform(Module):
    """``fn(x, net(x))``: a hard constraint around a network (DeepXDE's
    ``apply_output_transform``), e.g. ``OutputTransform(net, lambda x, u: x * (1 - x) * u)``
    for ``u(0) = u(1) = 0``. ``fn`` must use operations jets support (``+ - * /``,
    column indexing, ``sin exp ...`` as methods), so Taylor mode runs through it."""

    def __init__(self, net: Module, fn: Callable):
        super().__init__()
        if not callable(fn):
            raise ArgumentTypeError(f"OutputTransform: fn must be callable, got {type(fn).__name__}")
        self.net = net
        self.fn = fn

    def forward(self, input):
        if isinstance(input, Jet):
            return propagate(self, input)
        return self.fn(input, self.net(input))


class InputTransform(Module):
    """``net(fn(x))``: a feature map in front of a network (``fn`` as for :class:`OutputTransform`)."""

    def __init__(self, net: Module, fn: Callable):
        super().__init__()
        if not callable(fn):
            raise ArgumentTypeError(f"InputTransform: fn must be callable, got {type(fn).__name__}")
        self.net = net
        self.fn = fn

    def forward(self, input):
        if isinstance(input, Jet):
            return propagate(self, input)
        return self.net(self.fn(input))


def _rule_chebykan(m: ChebyKAN, jet: Jet) -> Jet:
    if int(jet.value.shape[1]) != m.in_features:
        raise ShapeError(f"ChebyKAN: input of {int(jet.value.shape[1])} features for in_features = {m.in_features}")
    y, yj, ys = m.taylor(jet.value, jet.first, jet.second, jet.mode)
    return Jet(y, yj, ys, jet.mode)


def _rule_box(m: BoxScaling, jet: Jet) -> Jet:
    s = _core.from_numpy(np.array(m.scale)).to(jet.dtype)
    b = _core.from_numpy(np.array(m.shift)).to(jet.dtype)
    return jet * s + b


register_taylor_rule(ChebyKAN, _rule_chebykan)
register_taylor_rule(BoxScaling, _rule_box)
register_taylor_rule(Sin, lambda m, jet: jet.sin())
register_taylor_rule(OutputTransform, lambda m, jet: m.fn(jet, propagate(m.net, jet)))
register_taylor_rule(InputTransform, lambda m, jet: propagate(m.net, m.fn(jet)))
