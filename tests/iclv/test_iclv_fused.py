"""The fused ICLV ops (crate rust/iclv, ``rbe._core.iclv``) that
``rbe.iclv.functional`` runs on the hot path:

- through ``rbe.testing.check_fused_op`` against the plain-op composites of
  ``rbe.iclv.functional`` (values and gradients, derivatives to second or
  third order against finite differences, identical bits at 1 and 2 threads);
- first and second derivatives of the ordered log-probability against
  mpmath in the far tails (1e-9 relative), no NaN at any order;
- the exact Hessian and per-individual scores of a whole model equal to the
  same model run on the composites (so the fused ``create_graph`` backward is
  the composite's derivative), bits independent of the thread count;
- errors that name the argument, and the ops composable with ordinary
  tensors in a user's own function.
"""
import math

import mpmath
import numpy as np
import pytest

import rbe
import rbe.iclv as iclv
from rbe.iclv.simulate import drug_choice_study, origin_study
from rbe import _core
from rbe.iclv import functional as F
from rbe.testing import check_fused_op

I = _core.iclv


def t(a, grad=False):
    x = rbe.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.float64)))
    return x.requires_grad_(True) if grad else x


def ti(a):
    return rbe.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.int64)))


def _ordered_case(rng, n, r, C):
    tau = np.sort(rng.normal(0, 1.2, C - 1))
    tau = tau + 0.3 * np.arange(C - 1)  # separated
    y = np.concatenate([np.arange(C), rng.integers(0, C, max(n - C, 0))])[:n]
    return t(rng.normal(0, 1.3, (n, r))), t(tau), ti(y)


@pytest.mark.parametrize("link", ["probit", "logit"])
@pytest.mark.parametrize("C", [2, 3, 5])
def test_ordered_harness(link, C):
    rng = np.random.default_rng(C)
    v, tau, y = _ordered_case(rng, 7, 3, C)
    check_fused_op(
        lambda v, tau: I.ordered_logprob(v, tau, y, link),
        lambda v, tau: F.composite_ordered_logprob(v, tau, y, link),
        [v, tau],
        order=3 if C == 3 else 2,
        fused_rtol=1e-9,
        fused_atol=1e-11,
    )


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_ordered_rho_harness(link):
    # rho_a, rho_b are -d/d lower and d/d upper threshold of log P: the composite
    # takes them from the composite's own gradient with create_graph
    rng = np.random.default_rng(11)
    v, tau, y = _ordered_case(rng, 6, 2, 4)
    yn = y.numpy()
    C1 = 3

    def composite(v, tau):
        z = rbe.zeros(1, dtype=rbe.float64)
        ext = rbe.cat([z, tau, z], 0)  # stand-ins at the infinite ends (masked)
        lo = ext.index_select(0, y).unsqueeze(1)
        hi = ext.index_select(0, ti(yn + 1)).unsqueeze(1)
        return _rho_plain(v, lo, hi, yn, C1, link)

    check_fused_op(
        lambda v, tau: tuple(I.ordered_rho(v, tau, y, link)),
        composite,
        [v, tau],
        order=2,
        fused_rtol=1e-9,
        fused_atol=1e-11,
    )


def _rho_plain(v, lo, hi, yn, C1, link):
    """(f(a)/P, f(b)/P) with plain ops (moderate arguments)."""
    a, b = lo - v, hi - v
    if link == "probit":
        cdf = rbe.special.ndtr
        pdf = lambda x: (x * x * -0.5).exp() * (1.0 / math.sqrt(2 * math.pi))  # noqa: E731
    else:
        cdf = lambda x: x.sigmoid()  # noqa: E731
        pdf = lambda x: x.sigmoid() * (1.0 - x.sigmoid())  # noqa: E731
    lo_inf = t((yn == 0).reshape(-1, 1)) > 0.5
    hi_inf = t((yn == C1).reshape(-1, 1)) > 0.5
    zero, one = rbe.zeros([], dtype=rbe.float64), rbe.ones([], dtype=rbe.float64)
    P = rbe.where(hi_inf, one, cdf(b)) - rbe.where(lo_inf, zero, cdf(a))
    return rbe.where(lo_inf, zero, pdf(a) / P), rbe.where(hi_inf, zero, pdf(b) / P)


@pytest.mark.parametrize("avail", [False, True])
def test_mnl_harness(avail):
    rng = np.random.default_rng(5)
    M, R = 6, 3
    us = [t(rng.normal(size=(M, R))), t(rng.normal(size=(M, 1))), t(rng.normal(size=(M, R)))]
    ch = rng.integers(0, 3, M)
    av = None
    if avail:
        a = rng.random((M, 3)) > 0.3
        a[np.arange(M), ch] = True
        av = rbe.from_numpy(a)
    check_fused_op(
        lambda *u: I.mnl_logprob(list(u), ti(ch), av),
        lambda *u: F.composite_mnl_logprob(list(u), ti(ch), av),
        us,
        order=3,
        fused_rtol=1e-9,
        fused_atol=1e-11,
    )


def test_panel_sum_and_log_mean_exp_harness():
    rng = np.random.default_rng(6)
    off = ti([0, 2, 2, 5, 6])
    check_fused_op(lambda x: I.panel_sum(x, off), lambda x: F.composite_panel_sum(x, off), [t(rng.normal(size=(6, 3)))], order=2)
    check_fused_op(lambda x: I.log_mean_exp(x), lambda x: F.composite_log_mean_exp(x), [t(2 * rng.normal(size=(4, 5)))], order=3)
    check_fused_op(
        lambda x, w: I.log_mean_exp(x, w),
        lambda x, w: F.composite_log_mean_exp(x, w),
        [t(2 * rng.normal(size=(4, 5))), t(rng.normal(size=5) - 1.6)],
        order=2,
    )


def test_log_mean_exp_rows_at_minus_inf():
    x = t([[-math.inf, -math.inf], [0.0, -math.inf]], grad=True)
    out = I.log_mean_exp(x)
    np.testing.assert_allclose(out.detach().numpy(), [-math.inf, math.log(0.5)])
    (g,) = rbe.autograd.grad(out[1] + 0.0 * out[0], [x])
    np.testing.assert_array_equal(g.numpy(), [[0.0, 0.0], [1.0, 0.0]])


def _mp_ordered_derivs(v, lo, hi, link):
    """log P and its first two derivatives in v at 500 digits (mpmath.diff;
    far in the tails P is 1 - 1e-185 and its log needs the digits)."""
    with mpmath.workdps(500):
        F_ = mpmath.ncdf if link == "probit" else (lambda x: 1 / (1 + mpmath.exp(-x)))

        def lp(x):
            pb = F_(mpmath.mpf(hi) - x) if hi != math.inf else mpmath.mpf(1)
            pa = F_(mpmath.mpf(lo) - x) if lo != -math.inf else mpmath.mpf(0)
            return mpmath.log(pb - pa)

        x = mpmath.mpf(v)
        return [float(mpmath.diff(lp, x, k)) for k in (0, 1, 2)]


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_ordered_derivatives_in_the_tails_match_mpmath(link):
    tau = np.array([-1.0, 0.5, 2.0])
    ext = np.concatenate([[-np.inf], tau, [np.inf]])
    vs = np.array([-30.0, -8.0, -2.0, 0.3, 2.5, 8.0, 30.0])
    for k in range(4):
        v = t(vs[:, None], grad=True)
        lp = I.ordered_logprob(v, t(tau), ti(np.full(len(vs), k)), link)
        (g,) = rbe.autograd.grad(lp.sum(), [v], create_graph=True)
        (h,) = rbe.autograd.grad(g.sum(), [v])
        got = np.stack([lp.detach().numpy()[:, 0], g.detach().numpy()[:, 0], h.numpy()[:, 0]], 1)
        assert np.isfinite(got).all(), (k, got)
        want = np.array([_mp_ordered_derivs(x, ext[k], ext[k + 1], link) for x in vs])
        # values and first derivatives to 1e-9 relative, however small
        np.testing.assert_allclose(got[:, :2], want[:, :2], rtol=1e-9, atol=1e-300)
        # the second derivative in v sums O(1) terms (d2/da2 + 2 d2/dadb + d2/db2)
        # to a value as small as 1e-13 where log P is nearly linear (both
        # thresholds in one tail): 1e-9 relative plus 1e-15 absolute
        np.testing.assert_allclose(got[:, 2], want[:, 2], rtol=1e-9, atol=1e-15)


def test_ordered_probit_middle_categories_match_mpmath_to_a_few_ulp():
    """Middle probit categories: the kernel forms P = Phi(b) - Phi(a) directly
    (or log1p of minus the two tail masses when P > 1/2) on rows where that
    is provably as accurate as the log-space formula, and keeps the latter
    on the others (narrow intervals, tiny P). Rows of each kind, and rows
    mixing P above and below 1/2: log P within 12 u of mpmath (the bound of
    the direct forms is 9.4 u plus the log's rounding), the derivative in v
    within 1e-13 of |rho_a| + |rho_b| (it is their difference)."""
    u = 2.0**-53
    tau = np.array([-2.0, -0.7, 0.7, 2.0, 2.05])
    ext = np.concatenate([[-np.inf], tau, [np.inf]])
    rows = [
        (1, np.linspace(-3.0, 3.0, 16)),  # P <= 1/2 throughout
        (2, np.linspace(-0.6, 0.6, 16)),  # P above and below 1/2
        (2, np.linspace(-0.05, 0.05, 16)),  # P > 1/2 throughout
        (3, np.linspace(0.0, 6.0, 16)),  # P <= 1/2, far into one tail
        (4, np.linspace(-1.0, 1.0, 16)),  # narrow interval: the log-space formula
        (2, np.linspace(-38.0, -30.0, 16)),  # P tiny
    ]
    v = t(np.stack([r for _, r in rows]), grad=True)
    y = np.array([k for k, _ in rows])
    lp = I.ordered_logprob(v, t(tau), ti(y), "probit")
    (g,) = rbe.autograd.grad(lp.sum(), [v])
    got_lp, got_g = lp.detach().numpy(), g.numpy()
    with mpmath.workdps(60):
        for i, (k, vs) in enumerate(rows):
            for j, x in enumerate(vs):
                a, b = mpmath.mpf(ext[k]) - mpmath.mpf(x), mpmath.mpf(ext[k + 1]) - mpmath.mpf(x)
                P = mpmath.ncdf(b) - mpmath.ncdf(a) if b <= -a else mpmath.ncdf(-a) - mpmath.ncdf(-b)
                want = mpmath.log(P)
                fa, fb = mpmath.npdf(a) / P, mpmath.npdf(b) / P
                err = abs((got_lp[i, j] - want) / want)
                assert err <= 12 * u, (k, x, float(err / u))
                gerr = abs(got_g[i, j] - (fa - fb)) / (fa + fb)
                assert gerr <= 1e-13, (k, x, float(gerr))


def test_thresholds_out_of_order_hessian_is_finite():
    tau = t([0.5, -0.5], grad=True)
    v = t(np.linspace(-2, 2, 6).reshape(3, 2), grad=True)
    lp = I.ordered_logprob(v, tau, ti([0, 1, 2]), "probit")
    assert (lp.detach().numpy()[1] == -math.inf).all()
    s = lp[0].sum() + lp[2].sum()
    gv, gt = rbe.autograd.grad(s, [v, tau], create_graph=True)
    (h,) = rbe.autograd.grad(gt.sum() + gv.sum(), [tau])
    assert np.isfinite(h.numpy()).all()
    np.testing.assert_array_equal(gv.detach().numpy()[1], [0.0, 0.0])


def test_errors_name_the_argument():
    v, tau = t(np.zeros((3, 2))), t([-1.0, 1.0])
    with pytest.raises(rbe.errors.RbeIndexError, match=r"y\[2\] = 7"):
        I.ordered_logprob(v, tau, ti([0, 1, 7]))
    with pytest.raises(ValueError, match="link must be 'probit' or 'logit'"):
        I.ordered_logprob(v, tau, ti([0, 1, 2]), "cloglog")
    with pytest.raises(TypeError, match="thresholds tau must be a float64"):
        I.ordered_logprob(v, tau.to(rbe.float32), ti([0, 1, 2]))
    with pytest.raises(ValueError, match="non-decreasing"):
        I.panel_sum(v, ti([0, 2, 1, 3]))
    with pytest.raises(ValueError, match="the last offset must be the number of rows 3"):
        I.panel_sum(v, ti([0, 2]))
    with pytest.raises(ValueError, match="unavailable"):
        I.mnl_logprob([v, v], ti([0, 1, 1]), rbe.from_numpy(np.array([[1, 1], [1, 0], [1, 1]], dtype=bool)))
    with pytest.raises(ValueError, match="log_weights must have shape"):
        I.log_mean_exp(v, t([0.0, 0.0, 0.0]))
    with pytest.raises(TypeError, match="expected a Tensor"):
        I.ordered_logprob(np.zeros((3, 2)), tau, ti([0, 1, 2]))


def test_composable_with_user_tensors():
    # a user's own function around the fused ops differentiates (twice)
    rng = np.random.default_rng(9)
    beta = t([0.7], grad=True)
    x = t(rng.normal(size=(5, 4)))
    tau = t([-0.5, 0.8], grad=True)
    y = ti([0, 1, 2, 1, 0])
    f = lambda beta, tau: I.log_mean_exp(I.ordered_logprob((beta * x).tanh() + x.sin(), tau, y) * 1.5).sum()  # noqa: E731
    g = lambda beta, tau: F.composite_log_mean_exp(F.composite_ordered_logprob((beta * x).tanh() + x.sin(), tau, y) * 1.5).sum()  # noqa: E731
    a = rbe.autograd.grad(f(beta, tau), [beta, tau], create_graph=True)
    b = rbe.autograd.grad(g(beta, tau), [beta, tau], create_graph=True)
    for p, q in zip(a, b):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-10)
    ha = rbe.autograd.grad(a[0].sum() + a[1].sum(), [beta, tau])
    hb = rbe.autograd.grad(b[0].sum() + b[1].sum(), [beta, tau])
    for p, q in zip(ha, hb):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-9)


def _composite_functional(monkeypatch):
    """Route rbe.iclv.functional's public ops to the plain-op composites."""
    monkeypatch.setattr(_core, "iclv", _Composites())


class _Composites:
    used = set()

    @staticmethod
    def ordered_logprob(v, tau, y, link="probit"):
        _Composites.used.add("ordered")
        return F.composite_ordered_logprob(v, tau, y, link)

    mnl_logprob = staticmethod(lambda us, ch, av=None: F.composite_mnl_logprob(us, ch, av))
    panel_sum = staticmethod(lambda x, off: F.composite_panel_sum(x, off))
    log_mean_exp = staticmethod(lambda x, w=None: F.composite_log_mean_exp(x, w))

    @staticmethod
    def expand_rows(x, off):
        o = off.numpy()
        ind = np.repeat(np.arange(len(o) - 1), np.diff(o))
        return x.index_select(0, ti(ind))


def test_model_hessian_and_scores_equal_the_composites(monkeypatch):
    st = drug_choice_study(n_individuals=40, n_tasks=3, n_draws=6)
    m = st.model()
    x = m._vector(None) + np.random.default_rng(1).normal(0, 0.1, len(m.free_names))
    ll, g, H, S = m.hessian_and_scores(x)
    st2 = origin_study(n_individuals=25, n_tasks=3, n_draws=5)
    m2 = st2.model()
    x2 = m2._vector(None) + np.random.default_rng(2).normal(0, 0.1, len(m2.free_names))
    ll2, g2, H2, S2 = m2.hessian_and_scores(x2)
    _composite_functional(monkeypatch)
    c = m.hessian_and_scores(x)
    c2 = m2.hessian_and_scores(x2)
    assert _Composites.used == {"ordered"}  # the composites did run
    for fused, comp in ((ll, c[0]), (g, c[1]), (H, c[2]), (S, c[3]), (ll2, c2[0]), (g2, c2[1]), (H2, c2[2]), (S2, c2[3])):
        np.testing.assert_allclose(fused, comp, rtol=1e-8, atol=1e-8 * (1 + np.max(np.abs(comp))))


def test_model_hessian_identical_bits_at_1_and_2_threads():
    # large enough (150 x 4 rows x 30 draws) that the fused kernels split their blocks over threads
    m = origin_study(n_individuals=150, n_tasks=4, n_draws=30).model()
    x = m._vector(None) + np.random.default_rng(3).normal(0, 0.1, len(m.free_names))
    saved = rbe.get_num_threads()
    try:
        out = []
        for th in (1, 2):
            rbe.set_num_threads(th)
            out.append(m.hessian_and_scores(x))
    finally:
        rbe.set_num_threads(saved)
    for a, b in zip(out[0], out[1]):
        np.testing.assert_array_equal(a, b)
