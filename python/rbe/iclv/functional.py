"""The differentiable building blocks of an ICLV likelihood, on tensors.

The public functions run the fused float64 ops of the ``rbe-iclv`` crate
(``rbe._core.iclv``, rust/iclv): one pass over the data per call, parallel
over fixed blocks of individuals or rows (identical bits for any thread
count), a fused first-order backward, and a ``create_graph`` backward built
from other fused ops (closed forms of the second derivatives), so the exact
Hessian by double backward costs about one gradient per pass. Their inputs
are ordinary ``rbe`` tensors and their outputs take part in any ``rbe``
graph, so a user's own model function differentiates through them.

- :func:`ordered_logprob`: ``log P(y | v)`` of an ordered probit or logit
  with thresholds ``tau`` (``P = F(tau_y - v) - F(tau_{y-1} - v)``, the
  outer thresholds are -inf and +inf);
- :func:`mnl_logprob`: multinomial logit log-probability of the chosen
  alternative, with availabilities;
- :func:`panel_sum`: sum of row-level terms over each individual's rows (the
  log of the panel product);
- :func:`log_mean_exp`: log of the (weighted) average over draws.

The ``composite_*`` functions are the same computations written with plain
``rbe`` ops (the references of tests/iclv/test_iclv_fused.py).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

import rbe as _rbe

from .. import _core
from ..errors import ArgumentError

__all__ = ["ordered_logprob", "mnl_logprob", "panel_sum", "log_mean_exp", "expand_to_rows", "log1mexp"]

_LINKS = ("probit", "logit")


def _f64(x):
    if not isinstance(x, _core.Tensor):
        x = _core.from_numpy(np.asarray(x, dtype=np.float64))
    elif x.dtype != _core.float64:
        x = x.to(_core.float64)
    return x


def _i64(x):
    if not isinstance(x, _core.Tensor):
        x = _core.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.int64)))
    return x


# ---------------------------------------------------------------------- public ops
def ordered_logprob(v, tau, y, link: str = "probit"):
    """``log P(y | v)`` of an ordered model.

    ``v`` is the latent index, shape ``(N, R)`` (or ``(N, 1)``); ``tau`` the
    ``C - 1`` thresholds (a 1-d tensor, in increasing order); ``y`` the int64
    codes ``0..C-1`` of shape ``(N,)``. ``link`` is ``"probit"`` (F = Phi)
    or ``"logit"`` (F = the logistic CDF). Returns ``(N, R)``.

    The probability is never clipped: tails go through ``log F`` (for probit
    ``log_ndtr``) and ``log(F(b) - F(a))`` is formed as
    ``log F(b) + log1mexp(log F(a) - log F(b))`` on the side where it is
    accurate. The outer thresholds are infinite: no NaN in values or
    gradients. If thresholds are out of order, categories with an empty
    interval get ``-inf`` (gradient 0): the optimiser backs off; nothing is
    reordered.
    """
    if link not in _LINKS:
        raise ArgumentError(f"ordered_logprob: link must be 'probit' or 'logit', got {link!r}")
    v, tau, y = _f64(v), _f64(tau), _i64(y)
    return _core.iclv.ordered_logprob(v, tau, y, link)


def mnl_logprob(utilities: Sequence, choice, avail=None):
    """Log-probability of the chosen alternative of a multinomial logit.

    ``utilities`` is a list of ``J`` tensors, each broadcastable to
    ``(M, R)`` (an alternative without draws in its utility can be
    ``(M, 1)``); ``choice`` the int64 codes ``0..J-1`` of shape ``(M,)``;
    ``avail`` None (all available) or a bool array ``(M, J)``. The chosen
    alternative must be available. Returns ``(M, R)``.
    """
    us = [_f64(u) for u in utilities]
    if len(us) < 2:
        raise ArgumentError(f"mnl_logprob: at least two alternatives are needed, got {len(us)}")
    choice = _i64(choice)
    if avail is not None and not isinstance(avail, _core.Tensor):
        avail = _core.from_numpy(np.ascontiguousarray(np.asarray(avail, dtype=bool)))
    M = choice.shape[0] if choice.dim() == 1 else -1
    fused = []
    for j, u in enumerate(us):
        if u.dim() == 0:
            u = u.reshape([1, 1])
        elif u.dim() == 1:
            u = u.unsqueeze(1)
        if u.dim() != 2 or u.shape[0] not in (1, M):
            raise ArgumentError(f"mnl_logprob: the utility of alternative {j} must broadcast to ({M}, R), got shape {tuple(u.shape)}")
        if u.shape[0] == 1 and M != 1:
            u = u.expand(M, u.shape[1])
        fused.append(u)
    return _core.iclv.mnl_logprob(fused, choice, avail)


def panel_sum(x, offsets):
    """``out[n] = sum of x[offsets[n]:offsets[n+1]]`` along the first
    dimension (rows of an individual are contiguous). ``x`` is ``(M, R)``,
    ``offsets`` int64 ``(N + 1,)`` from 0 to ``M``; returns ``(N, R)``."""
    x, offsets = _f64(x), _i64(offsets)
    return _core.iclv.panel_sum(x, offsets)


def log_mean_exp(x, log_weights=None):
    """``log(sum_r w_r exp(x[n, r]))`` over the last dimension of ``(N, R)``,
    with ``w_r = 1/R`` (``log_weights`` None) or ``exp(log_weights)`` (a 1-d
    tensor of ``R`` values, e.g. Gauss-Hermite weights). The shift (the row
    maximum) is subtracted first, so the gradient is exactly the
    importance-weighted one, ``softmax(x + log w)``, at full precision."""
    x = _f64(x)
    if log_weights is not None:
        log_weights = _f64(log_weights)
    return _core.iclv.log_mean_exp(x, log_weights)


def expand_to_rows(x, data):
    """``x[ind(m)]``: an individual-level tensor ``(N, ...)`` on the rows ``(M, ...)``."""
    if x.dim() == 0 or x.shape[0] == 1:
        return x
    if x.shape[0] != data.n_individuals:
        raise ArgumentError(f"expand: expected a tensor with {data.n_individuals} individuals in its first dimension, got shape {tuple(x.shape)}")
    if x.dtype == _core.float64:
        return _core.iclv.expand_rows(x, data.offsets)
    return x.index_select(0, data.ind_index)


def log1mexp(x):
    """``log(1 - exp(x))`` for ``x < 0`` (accurate on both sides of ``-log 2``); ``-inf`` for ``x >= 0``.

    Each branch is evaluated only at arguments where it is finite (the
    others get a harmless stand-in), so no NaN reaches values or gradients
    of any order through the branch that is not taken."""
    c = lambda v: _core.full([], v, _core.float64, False)  # noqa: E731
    neg = x < 0.0
    near = x > -math.log(2.0)
    xa = _rbe.where(neg & near, x, c(-0.5))  # in (-log 2, 0)
    xb = _rbe.where(near, c(-1.0), x)  # <= -log 2
    a = (-(xa.expm1())).log()
    b = (-(xb.exp())).log1p()
    return _rbe.where(neg, _rbe.where(near, a, b), c(-math.inf))


# ---------------------------------------------------------------------- composites (reference)
def _log_cdf(t, link: str):
    if link == "probit":
        return _core.log_ndtr(t)
    return _logsigmoid(t)


def _logsigmoid(t):
    # log sigmoid(t) = -softplus(-t) = min(t, 0) - log1p(exp(-|t|))
    zero = _core.full([], 0.0, _core.float64, False)
    return _rbe.minimum(t, zero) - (-(t.abs())).exp().log1p()


def composite_ordered_logprob(v, tau, y, link: str = "probit"):
    """:func:`ordered_logprob` written with plain ops.

    ``P = F(b) - F(a)`` with ``a = tau_{y-1} - v``, ``b = tau_y - v``, formed
    on the side where it is accurate: from the left tail
    ``log F(b) + log1mexp(log F(a) - log F(b))`` when ``F(b) <= F(-a)``, else
    from the right tail ``log F(-a) + log1mexp(log F(-b) - log F(-a))``; both
    are ``log F(p) + log1mexp(log F(q) - log F(p))`` with ``(p, q)`` chosen
    per element, so two ``log F`` evaluations per element. The lowest
    category is ``log F(b)``, the highest ``log F(-a)`` (their infinite
    threshold gets a finite stand-in that is never used, so no NaN reaches
    values or gradients); a binary model (one threshold) needs only that.
    The logit link uses the exact identity ``sigma(b) - sigma(a) =
    sigma(b) sigma(-a) (1 - exp(a - b))`` instead: ``log sigma(b) + log
    sigma(-a) + log1mexp(tau_{y-1} - tau_y)``, the last term per row, about
    half the element-wise work of the general form.
    """
    C = tau.shape[0] + 1
    z1 = _core.zeros([1], _core.float64, False)
    ext = _rbe.cat([z1, tau, z1], 0)  # stand-ins at both ends, never used
    yn = y.numpy()
    lo_inf_np = (yn == 0)
    if C == 2:
        # binary: log F(s (tau - v)) with s = +1 for y = 0, -1 for y = 1
        s = _core.from_numpy(np.where(lo_inf_np, 1.0, -1.0).reshape(-1, 1))
        return _log_cdf((tau - v) * s, link)
    lo = ext.index_select(0, y).unsqueeze(1)
    hi = ext.index_select(0, y + 1).unsqueeze(1)
    lo_inf = _core.from_numpy(lo_inf_np.reshape(-1, 1))
    hi_inf = _core.from_numpy((yn == C - 1).reshape(-1, 1))
    edge = lo_inf | hi_inf
    m1 = _core.full([], -1.0, _core.float64, False)
    zero = _core.full([], 0.0, _core.float64, False)
    if link == "logit":
        # sigma(b) - sigma(a) = sigma(b) sigma(-a) (1 - exp(a - b)) exactly, so
        # log P = log sigma(b) + log sigma(-a) + log1mexp(lo - hi): three terms
        # <= 0 (no cancellation in any tail), the last one per row only ((N, 1):
        # it does not depend on v); the infinite end drops its term
        lb = _rbe.where(hi_inf, zero, _logsigmoid(hi - v))
        la = _rbe.where(lo_inf, zero, _logsigmoid(v - lo))
        gap = _rbe.where(edge, zero, log1mexp(_rbe.where(edge, m1, lo - hi)))
        return lb + la + gap
    a = lo - v
    b = hi - v
    use_left = ((b <= -a) & ~hi_inf) | lo_inf
    p = _rbe.where(use_left, b, -a)
    q = _rbe.where(use_left, a, -b)
    lfp, lfq = _log_cdf(p, link), _log_cdf(q, link)
    tail = log1mexp(_rbe.where(edge, m1, lfq - lfp))
    return lfp + _rbe.where(edge, zero, tail)


def composite_mnl_logprob(us, choice, avail=None):
    """:func:`mnl_logprob` with plain ops, one alternative at a time on
    ``(M, R)`` (no ``(M, R, J)`` stack): ``(u_chosen - m) - log sum_j a_j
    exp(u_j - m)`` with ``m`` the largest available utility (taken as a
    constant: the value does not depend on it, so every derivative is exact)
    and unavailable alternatives at ``-inf`` (weight 0, gradient 0)."""
    ch = choice.numpy().reshape(-1)
    M = ch.shape[0]
    av = None if avail is None else avail.numpy().reshape(M, -1)
    shifted = []
    for j, u in enumerate(us):
        if av is not None and not av[:, j].all():
            u = u + _core.from_numpy(np.where(av[:, j], 0.0, -math.inf).reshape(M, 1))
        shifted.append(u)
    with _rbe.no_grad():
        m = shifted[0].detach()
        for u in shifted[1:]:
            m = _rbe.maximum(m, u.detach())
    s = None
    uc = None
    for j, (u, ua) in enumerate(zip(us, shifted)):
        e = (ua - m).exp()
        s = e if s is None else s + e
        pick = u * _core.from_numpy((ch == j).astype(np.float64).reshape(M, 1))
        uc = pick if uc is None else uc + pick
    return (uc - m) - s.log()


def composite_panel_sum(x, offsets):
    """:func:`panel_sum` with ``index_add``."""
    off = offsets.numpy()
    n = len(off) - 1
    ind = np.repeat(np.arange(n, dtype=np.int64), np.diff(off))
    out = _core.zeros([n] + list(x.shape[1:]), _core.float64, False)
    return out.index_add(0, _core.from_numpy(ind), x)


def composite_log_mean_exp(x, log_weights=None):
    """:func:`log_mean_exp` with ``logsumexp``."""
    R = x.shape[-1]
    if log_weights is None:
        return x.logsumexp(-1) - math.log(R)
    return (x + log_weights).logsumexp(-1)
