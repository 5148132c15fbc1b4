"""Riemannian Adam on the Poincare ball (Becigneul & Ganea, ICLR 2019).

Besides :class:`RiemannianAdam`, this module holds the Poincare-ball maths it
uses, as NumPy float64 functions on arrays whose last axis holds the ball
coordinates (curvature -1, points ``|z| < 1``): :func:`mobius_add`,
:func:`lambda_x`, :func:`expmap`, :func:`gyration`, :func:`transport`,
:func:`egrad2rgrad`, :func:`project`, and the RBE tangent chart
(:func:`chart_to_ball`, :func:`ball_to_chart`, :func:`chart_grad_to_ball`).
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from .. import _core
from ..optim.adam import _check_adam_args
from ..optim.optimizer import Optimizer, _check_grad

__all__ = [
    "RiemannianAdam",
    "R_MAX",
    "mobius_add",
    "lambda_x",
    "expmap",
    "gyration",
    "transport",
    "egrad2rgrad",
    "project",
    "chart_to_ball",
    "ball_to_chart",
    "chart_grad_to_ball",
]

#: Largest radius a point may have after a step: the spec's ``r_max = 1 - 2^-20``
#: (the radius at which an RBE atom reaches the grid's Nyquist frequency).
#: It is exactly representable in float32, and a float32 rounding of a point of
#: this radius stays inside the unit ball.
R_MAX = 1.0 - 2.0**-20

_MANIFOLDS = (None, "euclidean", "poincare")


# --------------------------------------------------------------------------
# Poincare-ball maths (NumPy float64; the last axis holds the coordinates)


def _sq(x: np.ndarray) -> np.ndarray:
    return np.sum(x * x, axis=-1, keepdims=True)


def _one_minus_sq(x: np.ndarray) -> np.ndarray:
    """``1 - |x|^2`` computed as ``(1 - |x|)(1 + |x|)`` (accurate near the rim)."""
    n = np.sqrt(_sq(x))
    return (1.0 - n) * (1.0 + n)


def lambda_x(x: np.ndarray) -> np.ndarray:
    """Conformal factor ``lambda_x = 2 / (1 - |x|^2)`` (keeps the last axis, size 1)."""
    return 2.0 / _one_minus_sq(x)


def mobius_add(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mobius addition ``x (+) y = ((1 + 2<x,y> + |y|^2) x + (1 - |x|^2) y) / (1 + 2<x,y> + |x|^2 |y|^2)``."""
    xy = np.sum(x * y, axis=-1, keepdims=True)
    x2, y2 = _sq(x), _sq(y)
    num = (1.0 + 2.0 * xy + y2) * x + _one_minus_sq(x) * y
    return num / (1.0 + 2.0 * xy + x2 * y2)


def expmap(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Exponential map ``exp_x(v) = x (+) tanh(lambda_x |v| / 2) v / |v|`` (``exp_x(0) = x``)."""
    nv = np.sqrt(_sq(v))
    lam = lambda_x(x)
    safe = np.where(nv > 0, nv, 1.0)
    # tanh(lam |v| / 2) / |v|  ->  lam / 2  as |v| -> 0
    scale = np.where(nv > 0, np.tanh(0.5 * lam * nv) / safe, 0.5 * lam)
    return mobius_add(x, scale * v)


def gyration(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``gyr[a, b] w = -(a (+) b) (+) (a (+) (b (+) w))``, in the closed form that is
    linear in ``w`` (Ungar), so ``w`` may be any tangent vector, not only a ball point."""
    a2, b2 = _sq(a), _sq(b)
    ab = np.sum(a * b, axis=-1, keepdims=True)
    aw = np.sum(a * w, axis=-1, keepdims=True)
    bw = np.sum(b * w, axis=-1, keepdims=True)
    ca = -aw * b2 + bw + 2.0 * ab * bw
    cb = -bw * a2 - aw
    d = 1.0 + 2.0 * ab + a2 * b2
    return w + 2.0 * (ca * a + cb * b) / d


def transport(x: np.ndarray, y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Parallel transport of the tangent vector ``v`` at ``x`` to ``y`` along the
    geodesic: ``(lambda_x / lambda_y) gyr[y, -x] v``."""
    return (_one_minus_sq(y) / _one_minus_sq(x)) * gyration(y, -x, v)


def egrad2rgrad(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Riemannian gradient ``((1 - |x|^2)^2 / 4) g`` of the Euclidean gradient ``g``."""
    return (0.25 * _one_minus_sq(x) ** 2) * g


def project(x: np.ndarray, r_max: float = R_MAX) -> np.ndarray:
    """Points of radius above ``r_max`` scaled back to radius ``r_max``; others unchanged."""
    n = np.sqrt(_sq(x))
    return np.where(n > r_max, x * (r_max / np.where(n > 0, n, 1.0)), x)


def chart_to_ball(p: np.ndarray) -> np.ndarray:
    """RBE tangent chart to disk: ``z = tanh(|p|) p / |p|`` (``z = 0`` at ``p = 0``)."""
    n = np.sqrt(_sq(p))
    return np.where(n > 0, np.tanh(n) / np.where(n > 0, n, 1.0), 1.0) * p


def _artanh_over_r(r: np.ndarray) -> np.ndarray:
    """``artanh(r) / r`` with its limit 1 at ``r = 0``."""
    return np.where(r > 0, np.arctanh(np.minimum(r, 1.0)) / np.where(r > 0, r, 1.0), 1.0)


def ball_to_chart(z: np.ndarray) -> np.ndarray:
    """Disk to RBE tangent chart: ``p = artanh(|z|) z / |z|`` (``p = 0`` at ``z = 0``)."""
    return _artanh_over_r(np.sqrt(_sq(z))) * z


def chart_grad_to_ball(z: np.ndarray, gp: np.ndarray) -> np.ndarray:
    """``dL/dz`` from ``dL/dp`` by the chain rule through ``p = artanh(|z|) z / |z|``.

    ``dp/dz = (1 / (1 - |z|^2)) u u^T + (artanh|z| / |z|)(I - u u^T)`` with
    ``u = z / |z|``; it is symmetric, so ``dL/dz = (dp/dz) dL/dp``. Its limit
    at ``z = 0`` is the identity.
    """
    r = np.sqrt(_sq(z))
    u = z / np.where(r > 0, r, 1.0)  # 0 at z = 0, where both terms below reduce to gp
    ug = np.sum(u * gp, axis=-1, keepdims=True)
    radial = ug * u
    return radial / _one_minus_sq(z) + _artanh_over_r(r) * (gp - radial)


def _ball_step(z, eg, m, v, step, lr, b1, b2, eps) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Riemannian Adam step for ball points ``z`` (already of radius <= R_MAX)
    with Euclidean gradient ``eg``, momentum ``m`` (tangent at ``z``) and scalar
    second moment ``v`` (last axis of size 1). Returns ``(z_new, m_new, v_new)``."""
    rg = egrad2rgrad(z, eg)
    m = b1 * m + (1.0 - b1) * rg
    v = b2 * v + (1.0 - b2) * (lambda_x(z) ** 2 * _sq(rg))
    bc1 = 1.0 - b1**step
    bc2 = 1.0 - b2**step
    direction = (m / bc1) / (np.sqrt(v / bc2) + eps)
    z_new = project(expmap(z, -lr * direction))
    return z_new, transport(z, z_new, m), v


def _adam_step_np(x, g, m, v, step, lr, b1, b2, eps, wd):
    """Adam (L2 weight decay) in NumPy, elementwise, as ``torch.optim.Adam``."""
    if wd:
        g = g + wd * x
    m = b1 * m + (1.0 - b1) * g
    v = b2 * v + (1.0 - b2) * g * g
    bc1 = 1.0 - b1**step
    bc2 = 1.0 - b2**step
    denom = np.sqrt(v) / math.sqrt(bc2) + eps
    return x - (lr / bc1) * m / denom, m, v


# --------------------------------------------------------------------------
# The optimizer


def _f64(t) -> np.ndarray:
    # a copy: Tensor.numpy() may share memory with the tensor
    return np.array(t.detach().numpy(), dtype=np.float64)


def _is_rbe_atoms(p) -> bool:
    return getattr(p, "_rbe_layer", None) is not None


class RiemannianAdam(Optimizer):
    r"""Riemannian Adam (Becigneul & Ganea, "Riemannian Adaptive Optimization
    Methods", ICLR 2019) on the Poincare ball of curvature -1.

    A parameter group's ``manifold`` option says how its parameters are treated:

    * ``None`` (default): RBE atoms (an ``RBELinear.atoms`` parameter, detected
      by its ``_rbe_layer`` attribute) take the RBE path below; every other
      parameter is Euclidean, and its update is exactly
      :class:`rbe.optim.Adam` (the same fused kernel, bit for bit).
    * ``"poincare"``: the last dimension of each parameter holds the
      coordinates of points of the Poincare ball (``|z| < 1``; a point on or
      outside the unit sphere raises ``ValueError``). RBE atoms still take the
      RBE path.
    * ``"euclidean"``: plain Adam for every parameter, RBE atoms included.

    **RBE atoms** ``(n_blocks, J, 4)`` holding ``(A, phi, px, py)``: ``A`` and
    ``phi`` get elementwise Adam; ``p = (px, py)`` is the tangent chart of a
    disk point ``z = tanh(|p|) p / |p|``. At every step ``z`` is derived from
    the current ``p`` (so edits of the parameter are respected), ``dL/dp`` is
    turned into ``dL/dz`` by the chain rule, ``z`` takes the Riemannian step
    and ``p = artanh(|z|) z / |z|`` is written back.

    **Ball step** (per point ``z``, with Euclidean gradient ``g``)::

        rgrad = ((1 - |z|^2)^2 / 4) g
        m     = beta1 m + (1 - beta1) rgrad                  (tangent at z)
        v     = beta2 v + (1 - beta2) lambda_z^2 |rgrad|^2   (one scalar per point)
        z'    = proj(exp_z(-lr (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)))
        m     = PT_{z -> z'}(m)

    with ``lambda_z = 2 / (1 - |z|^2)``, ``exp_z(u) = z (+) tanh(lambda_z |u| / 2) u / |u|``
    (Mobius addition) and ``PT_{x->y}(u) = (lambda_x / lambda_y) gyr[y, -x] u``.
    The second moment is the paper's (a product of balls: one scalar Riemannian
    squared norm per ball, which needs no transport).

    Choices where the paper is silent:

    * ``proj`` keeps points strictly inside the ball: a point of radius above
      ``R_MAX = 1 - 2^-20`` (the spec's ``r_max``) is scaled back to ``R_MAX``
      after each step. A point of radius in ``(R_MAX, 1)`` (or an RBE chart
      point with ``|p| > artanh(R_MAX)``, about 7.28, whose ``z`` may round to
      the rim) is first projected the same way, so all the maths runs at
      radius ``<= R_MAX``. For RBE atoms this caps ``|p|`` at ``artanh(R_MAX)``:
      the wave vector stays at or below the grid's Nyquist frequency.
    * Bias correction and ``eps`` as in Adam (``eps`` added to the corrected
      root of the second moment). The momentum that is transported is the
      uncorrected one.
    * ``weight_decay`` is an L2 penalty, as in :class:`rbe.optim.Adam`, on the
      Euclidean coordinates only (plain parameters, and ``A``, ``phi`` of RBE
      atoms); there is no canonical "decay towards zero" on the ball, so ball
      coordinates get none.
    * Ball and atom updates are computed in NumPy float64 and written back in
      the parameter's dtype; optimizer state is stored in the parameter's dtype.

    State per parameter: ``step``; ``exp_avg`` (shape of the parameter: for
    ball coordinates, the momentum as a tangent vector at the current point);
    ``exp_avg_sq``: Euclidean: shape of the parameter; ``"poincare"``: the
    parameter's shape with last dimension 1; RBE atoms: ``(n_blocks, J, 3)``
    holding the ``A`` and ``phi`` moments and the scalar of the disk point.
    ``state_dict`` / ``load_state_dict`` are the base class's.

    Args:
        params: parameters or parameter groups (dicts, optionally with ``manifold``).
        lr: learning rate (default 1e-3).
        betas: ``(beta1, beta2)`` (default ``(0.9, 0.999)``).
        eps: added to the denominator (default 1e-8).
        weight_decay: L2 penalty on Euclidean coordinates (default 0).
        manifold: default ``manifold`` of the groups (``None``, ``"euclidean"``
            or ``"poincare"``).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0, manifold=None):
        _check_adam_args(lr, eps, betas, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, manifold=manifold)
        super().__init__(params, defaults)

    def add_param_group(self, param_group) -> None:
        super().add_param_group(param_group)
        g = self.param_groups[-1]
        if g["manifold"] not in _MANIFOLDS:
            self.param_groups.pop()
            raise ValueError(f"RiemannianAdam: manifold must be one of {_MANIFOLDS}, got {g['manifold']!r}")
        try:
            for i, p in enumerate(g["params"]):
                kind = self._kind(g, p)
                if kind == "poincare":
                    self._check_ball(_f64(p), len(self.param_groups) - 1, i)
                elif kind == "rbe":
                    self._check_atoms(p)
        except ValueError:
            self.param_groups.pop()
            raise

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _kind(group, p) -> str:
        m = group["manifold"]
        if m == "euclidean":
            return "euclidean"
        if _is_rbe_atoms(p):
            return "rbe"
        return "poincare" if m == "poincare" else "euclidean"

    @staticmethod
    def _check_atoms(p) -> None:
        if p.dim() < 1 or p.shape[-1] != 4:
            raise ValueError(f"RiemannianAdam: an RBE atoms parameter must have last dimension 4 (A, phi, px, py), got shape {tuple(p.shape)}")

    @staticmethod
    def _check_ball(z: np.ndarray, gi: int, pi: int) -> None:
        if z.ndim < 1 or z.shape[-1] < 1:
            raise ValueError(f"RiemannianAdam: parameter {pi} of group {gi} (manifold='poincare') needs a last dimension holding ball coordinates, got shape {z.shape}")
        n = np.sqrt(np.sum(z * z, axis=-1))
        bad = ~(n < 1.0)  # also catches NaN
        if np.any(bad):
            worst = float(np.nanmax(n)) if np.any(np.isfinite(n)) else float("nan")
            raise ValueError(
                f"RiemannianAdam: parameter {pi} of group {gi} (manifold='poincare') has {int(bad.sum())} of {n.size} "
                f"point(s) on or outside the unit ball (or not finite) along its last dimension (largest norm {worst:.6g}); "
                "Poincare-ball points need |z| < 1, e.g. initialise them with small values"
            )

    @staticmethod
    def _state_tensor(arr: np.ndarray, dtype):
        from .. import tensor

        return tensor(arr, dtype=dtype)

    # ------------------------------------------------------------ step
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns the closure's loss if given."""
        from .. import no_grad, tensor, zeros_like

        loss = self._closure_loss(closure)
        # validate every parameter first, so that bad input changes nothing
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                kind = self._kind(group, p)
                if kind == "poincare":
                    self._check_ball(_f64(p), gi, pi)
                elif kind == "rbe":
                    self._check_atoms(p)
        for gi, group in enumerate(self.param_groups):
            lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
            b1, b2 = (float(b) for b in group["betas"])
            eparams, egrads, em, ev, evmax, esteps = [], [], [], [], [], []
            for pi, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                kind = self._kind(group, p)
                st = self.state[p]
                if len(st) == 0:
                    st["step"] = tensor(0.0)
                    st["exp_avg"] = zeros_like(p)
                    if kind == "euclidean":
                        st["exp_avg_sq"] = zeros_like(p)
                    else:
                        vshape = tuple(p.shape[:-1]) + ((1,) if kind == "poincare" else (3,))
                        st["exp_avg_sq"] = self._state_tensor(np.zeros(vshape), p.dtype)
                want = tuple(p.shape) if kind == "euclidean" else tuple(p.shape[:-1]) + ((1,) if kind == "poincare" else (3,))
                if tuple(st["exp_avg_sq"].shape) != want:
                    raise RuntimeError(
                        f"RiemannianAdam: the state of parameter {pi} of group {gi} does not fit its manifold "
                        f"({kind!r}: exp_avg_sq of shape {want}, found {tuple(st['exp_avg_sq'].shape)}); "
                        "was the group's manifold changed after stepping?"
                    )
                step = int(st["step"].item()) + 1
                st["step"] = tensor(float(step))
                if kind == "euclidean":
                    eparams.append(p)
                    egrads.append(_check_grad(p))
                    em.append(st["exp_avg"])
                    ev.append(st["exp_avg_sq"])
                    evmax.append(None)
                    esteps.append(step)
                    continue
                g = _f64(_check_grad(p))
                x = _f64(p)
                m = _f64(st["exp_avg"])
                v = _f64(st["exp_avg_sq"])
                if kind == "poincare":
                    self._check_ball(x, gi, pi)
                    z_new, m_new, v_new = _ball_step(project(x), g, m, v, step, lr, b1, b2, eps)
                    new = z_new
                else:
                    self._check_atoms(p)
                    new = np.empty_like(x)
                    m_new = np.empty_like(m)
                    v_new = np.empty_like(v)
                    # A, phi: elementwise Adam
                    new[..., 0:2], m_new[..., 0:2], v_new[..., 0:2] = _adam_step_np(
                        x[..., 0:2], g[..., 0:2], m[..., 0:2], v[..., 0:2], step, lr, b1, b2, eps, wd
                    )
                    # (px, py): Riemannian step of the disk point z(p)
                    z = project(chart_to_ball(x[..., 2:4]))
                    gz = chart_grad_to_ball(z, g[..., 2:4])
                    z_new, m_new[..., 2:4], v_new[..., 2:3] = _ball_step(z, gz, m[..., 2:4], v[..., 2:3], step, lr, b1, b2, eps)
                    new[..., 2:4] = ball_to_chart(z_new)
                with no_grad():
                    p.copy_(tensor(new, dtype=p.dtype))
                st["exp_avg"] = self._state_tensor(m_new, p.dtype)
                st["exp_avg_sq"] = self._state_tensor(v_new, p.dtype)
            if eparams:
                _core.adam_step(eparams, egrads, em, ev, evmax, esteps, lr, b1, b2, eps, wd, False, False, False)
        return loss
