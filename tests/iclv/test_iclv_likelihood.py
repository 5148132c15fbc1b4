"""Log-likelihood components of rbe.iclv at fixed parameters and draws
against independent NumPy / SciPy / mpmath computations (1e-9 relative),
(the components are plain-op composites); the
log-sum-exp form of the simulated likelihood against the naive average of
products; infinite outer thresholds, tails and thresholds out of order."""
import math

import mpmath
import numpy as np
import pytest
from scipy.special import expit, log_ndtr, ndtr
from scipy.stats import norm

import rbe
import rbe.iclv as iclv
from rbe.iclv import functional as F

RTOL = 1e-9


def t(a):
    return rbe.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.float64)))


def ti(a):
    return rbe.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.int64)))


def np_ordered(v, tau, y, link):
    cdf = ndtr if link == "probit" else expit
    ext = np.concatenate([[-np.inf], tau, [np.inf]])
    hi = ext[y + 1][:, None] - v
    lo = ext[y][:, None] - v
    return np.log(cdf(hi) - cdf(lo))


def mp_ordered(v, lo, hi, link):
    """log(F(hi - v) - F(lo - v)) at 800 digits (no cancellation left)."""
    with mpmath.workdps(800):
        v = mpmath.mpf(v)
        if link == "probit":
            F_ = mpmath.ncdf
        else:
            F_ = lambda x: 1 / (1 + mpmath.exp(-x))  # noqa: E731
        pb = F_(mpmath.mpf(hi) - v) if hi != math.inf else mpmath.mpf(1)
        pa = F_(mpmath.mpf(lo) - v) if lo != -math.inf else mpmath.mpf(0)
        return float(mpmath.log(pb - pa))


@pytest.mark.parametrize("C", [2, 3, 5])
@pytest.mark.parametrize("link", ["probit", "logit"])
def test_ordered_matches_scipy(link, C):
    rng = np.random.default_rng(C)
    N, R = 40, 7
    tau = {2: np.array([0.3]), 3: np.array([-0.4, 1.1]), 5: np.array([-1.7, -0.4, 0.3, 1.9])}[C]
    y = rng.integers(0, C, N)
    v = rng.normal(0, 1.5, (N, R))
    got = F.ordered_logprob(t(v), t(tau), ti(y), link).numpy()
    np.testing.assert_allclose(got, np_ordered(v, tau, y, link), rtol=RTOL)


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_ordered_tails_match_mpmath(link):
    # far tails, where the naive difference of CDFs underflows or cancels
    tau = np.array([-1.0, 0.5, 2.0])
    vs = np.array([-40.0, -12.0, -6.0, 0.0, 6.0, 12.0, 40.0])
    for k in range(4):
        y = np.full(len(vs), k)
        got = F.ordered_logprob(t(vs[:, None]), t(tau), ti(y), link).numpy()[:, 0]
        ext = np.concatenate([[-np.inf], tau, [np.inf]])
        want = [mp_ordered(v, ext[k], ext[k + 1], link) for v in vs]
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_infinite_outer_thresholds_no_nan_in_gradients(link):
    tau = t([-1.0, 1.0]).requires_grad_(True)
    v = t(np.array([[-1e3, -50.0, 0.0, 50.0, 1e3]]).T.repeat(3, axis=0).reshape(15, 1)).requires_grad_(True)
    y = ti(np.repeat([0, 1, 2], 5))
    lp = F.ordered_logprob(v, tau, y, link)
    assert not np.isnan(lp.detach().numpy()).any()
    gv, gt = rbe.autograd.grad(lp.sum(), [v, tau], create_graph=True)
    assert np.isfinite(gv.detach().numpy()).all() and np.isfinite(gt.detach().numpy()).all()
    # second order (the Hessian goes through it)
    (h,) = rbe.autograd.grad(gv.sum(), [tau], allow_unused=True)
    assert h is None or np.isfinite(h.numpy()).all()


@pytest.mark.parametrize("link", ["probit", "logit"])
def test_thresholds_out_of_order_give_minus_inf_not_nan(link):
    tau = t([0.5, -0.5]).requires_grad_(True)  # out of order
    v = t(np.zeros((3, 2))).requires_grad_(True)
    lp = F.ordered_logprob(v, tau, ti([0, 1, 2]), link)
    out = lp.detach().numpy()
    assert np.isfinite(out[0]).all() and np.isfinite(out[2]).all()
    assert (out[1] == -np.inf).all()  # the empty interval; nothing is reordered
    gv, gt = rbe.autograd.grad(lp[0].sum() + lp[2].sum(), [v, tau])
    assert np.isfinite(gv.detach().numpy()).all() and np.isfinite(gt.detach().numpy()).all()


def test_mnl_with_availability_matches_numpy():
    rng = np.random.default_rng(1)
    M, R, J = 30, 6, 4
    U = rng.normal(0, 2, (M, R, J))
    av = rng.uniform(size=(M, J)) < 0.75
    y = np.array([rng.choice(np.flatnonzero(a)) if a.any() else 0 for a in av])
    av[np.arange(M), y] = True
    us = [t(U[:, :, j]) for j in range(J)]
    us[2] = t(U[:, :1, 2])  # an alternative without draws: (M, 1)
    U[:, :, 2] = U[:, :1, 2]
    got = F.mnl_logprob(us, ti(y), av).numpy()
    Um = np.where(av[:, None, :], U, -np.inf)
    m = Um.max(-1, keepdims=True)
    want = Um[np.arange(M), :, y] - (m[..., 0] + np.log(np.exp(Um - m).sum(-1)))
    np.testing.assert_allclose(got, want, rtol=RTOL)


def test_mnl_gradient_and_hessian_match_torch_log_softmax():
    # the shift by the largest available utility is a constant: first and
    # second derivatives equal those of log_softmax (torch, autograd)
    import torch

    rng = np.random.default_rng(4)
    M, R, J = 12, 5, 3
    U = rng.normal(0, 3, (M, R, J))
    av = rng.uniform(size=(M, J)) < 0.7
    y = rng.integers(0, J, M)
    av[np.arange(M), y] = True
    w = rng.normal(size=(M, R))
    us = [t(U[:, :, j]).requires_grad_(True) for j in range(J)]
    lp = F.mnl_logprob(us, ti(y), av)
    gs = rbe.autograd.grad((lp * t(w)).sum(), us, create_graph=True)
    h = rbe.autograd.grad(sum(g.sum() for g in gs), us)
    Ut = torch.tensor(U, requires_grad=True)
    Um = torch.where(torch.tensor(av)[:, None, :], Ut, torch.tensor(-math.inf, dtype=torch.float64))
    lpt = Um.log_softmax(-1).gather(-1, torch.tensor(y).reshape(-1, 1, 1).expand(M, R, 1)).squeeze(-1)
    (gt,) = torch.autograd.grad((lpt * torch.tensor(w)).sum(), Ut, create_graph=True)
    (ht,) = torch.autograd.grad(gt.sum(), Ut)
    np.testing.assert_allclose(lp.detach().numpy(), lpt.detach().numpy(), rtol=1e-12)
    for j in range(J):
        np.testing.assert_allclose(gs[j].detach().numpy(), gt[:, :, j].detach().numpy(), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(h[j].numpy(), ht[:, :, j].numpy(), rtol=1e-9, atol=1e-13)


def test_panel_sum_and_log_mean_exp():
    rng = np.random.default_rng(2)
    off = np.array([0, 3, 4, 9, 10])
    x = rng.normal(size=(10, 5))
    got = F.panel_sum(t(x), ti(off)).numpy()
    want = np.stack([x[off[i]:off[i + 1]].sum(0) for i in range(4)])
    np.testing.assert_allclose(got, want, rtol=1e-14)
    z = rng.normal(0, 30, (6, 9))
    np.testing.assert_allclose(F.log_mean_exp(t(z)).numpy(), np.log(np.exp(z).mean(1)), rtol=RTOL)
    w = rng.uniform(0.1, 1, 9)
    w /= w.sum()
    np.testing.assert_allclose(F.log_mean_exp(t(z), t(np.log(w))).numpy(), np.log((np.exp(z) * w).sum(1)), rtol=RTOL)


def test_components_against_scipy(small_panel):
    d = iclv.Database(small_panel)
    rng = np.random.default_rng(5)
    N, M, R = d.n_individuals, d.n_rows, 4
    V = rng.normal(size=(N, R))
    tau = np.array([-1.2, -0.3, 0.4, 1.1])
    q = d.df.groupby("ID", sort=False)["q1"].first().to_numpy() - 1
    np.testing.assert_allclose(iclv.ordered_probit(d, "q1", t(V), t(tau), [1, 2, 3, 4, 5]).numpy(), np_ordered(V, tau, q, "probit"), rtol=RTOL)
    np.testing.assert_allclose(iclv.ordered_logit(d, "q1", t(V), t(tau), [1, 2, 3, 4, 5]).numpy(), np_ordered(V, tau, q, "logit"), rtol=RTOL)
    cont = d.df.groupby("ID", sort=False)["cont"].first().to_numpy()
    got = iclv.normal_density(d, "cont", t(V), t(0.7)).numpy()
    np.testing.assert_allclose(got, norm.logpdf(cont[:, None], V, 0.7), rtol=RTOL)
    assert (iclv.normal_density(d, "cont", t(V), t(-0.7)).numpy() == -np.inf).all()
    Vr = rng.normal(size=(M, R))
    ch = d.df["choice"].to_numpy()[:, None]
    np.testing.assert_allclose(iclv.binary_probit(d, "choice", t(Vr)).numpy(), log_ndtr(np.where(ch == 1, Vr, -Vr)), rtol=RTOL)
    np.testing.assert_allclose(iclv.binary_logit(d, "choice", t(Vr)).numpy(), np.log(expit(np.where(ch == 1, Vr, -Vr))), rtol=RTOL)
    U = {f"a{j}": t(rng.normal(size=(M, R))) for j in (1, 2, 3)}
    lp = iclv.mnl(d, U, "mchoice", {"a1": 1, "a2": 2, "a3": 3}, avail={"a3": "av3"}).numpy()
    Ua = np.stack([U[f"a{j}"].numpy() for j in (1, 2, 3)], -1)
    want = np.log(np.exp(Ua) / np.exp(Ua).sum(-1, keepdims=True))[np.arange(M), :, d.df["mchoice"].to_numpy() - 1]
    np.testing.assert_allclose(lp, want, rtol=RTOL)


def test_component_errors(small_panel):
    d = iclv.Database(small_panel)
    V = t(np.zeros((5, 3)))
    with pytest.raises(iclv.SpecificationError, match=r"5 categories .* need 4 thresholds, got 3"):
        iclv.ordered_probit(d, "q1", V, t([0.0, 1.0, 2.0]), [1, 2, 3, 4, 5])
    with pytest.raises(iclv.DataError, match=r"'q1' takes values \[4, 5\]"):
        iclv.ordered_probit(d, "q1", V, t([0.0, 1.0]), [1, 2, 3])
    with pytest.raises(iclv.SpecificationError, match=r"shape \(5 individuals, R\)"):
        iclv.ordered_probit(d, "q1", t(np.zeros((7, 3))), t([-1.0, 0, 1, 2]), [1, 2, 3, 4, 5])
    df = small_panel.copy()
    df["av1"] = 1
    df.loc[df.mchoice == 2, "av1"] = 0
    df.loc[df.mchoice == 2, "mchoice"] = 1  # chooses an unavailable alternative
    d2 = iclv.Database(df)
    U = {"a": t(np.zeros((12, 1))), "b": t(np.zeros((12, 1))), "c": t(np.zeros((12, 1)))}
    if (df.mchoice == 1).any() and (df.av1 == 0).any():
        with pytest.raises(iclv.DataError, match="chosen alternative is unavailable"):
            iclv.mnl(d2, U, "mchoice", {"a": 1, "b": 2, "c": 3}, avail={"a": "av1"})
    with pytest.raises(iclv.SpecificationError, match="same alternatives"):
        iclv.mnl(d, {"a": U["a"]}, "mchoice", {"a": 1, "b": 2})


def _tiny_iclv(small_panel, R=6, kind="halton"):
    d = iclv.Database(small_panel)
    params = iclv.Parameters({"g": 0.4, "zeta": 1.3, "t1": -1.0, "t2": -0.3, "t3": 0.4, "t4": 1.2, "asc": 0.2, "b": -0.7, "lam": 0.6})
    draws = iclv.Draws(R, ["eta"], kind=kind)

    def loglik(p, d, dr):
        lv = p.g * d.ind("age") + dr["eta"]
        ind = iclv.ordered_probit(d, "q1", p.zeta * lv, [p.t1, p.t2, p.t3, p.t4], [1, 2, 3, 4, 5])
        V = p.asc + p.b * d.row("cost") + p.lam * d.expand(lv)
        return {"q1": ind, "choice": d.panel_sum(iclv.binary_probit(d, "choice", V))}

    return iclv.Model(loglik, d, params, draws), d, params, draws


def test_simulated_loglik_against_naive_average_of_products(small_panel):
    m, d, params, draws = _tiny_iclv(small_panel)
    p = params.start()
    eta = draws.generate(d.n_individuals)[:, :, 0]
    lv = p["g"] * d.ind("age").numpy() + eta
    q = d.df.groupby("ID", sort=False)["q1"].first().to_numpy() - 1
    Pind = np.exp(np_ordered(p["zeta"] * lv, np.array([p["t1"], p["t2"], p["t3"], p["t4"]]), q, "probit"))
    V = p["asc"] + p["b"] * d.row("cost").numpy() + p["lam"] * lv[d.ind_index_np]
    ch = d.df["choice"].to_numpy()[:, None]
    Prow = np.where(ch == 1, ndtr(V), ndtr(-V))
    Pch = np.stack([Prow[d.offsets_np[n]:d.offsets_np[n + 1]].prod(0) for n in range(d.n_individuals)])
    naive = np.log((Pind * Pch).mean(1)).sum()  # the average of products, no log space
    assert abs(m.loglik() - naive) <= 1e-11 * abs(naive)
    np.testing.assert_allclose(m.loglik_per_individual(), np.log((Pind * Pch).mean(1)), rtol=1e-11)
    comp = m.component_loglik()
    assert abs(comp["q1"] - np.log(Pind.mean(1)).sum()) < 1e-10 * abs(comp["q1"])


def test_gauss_hermite_quadrature_integrates(small_panel):
    # one latent variable: 40 Gauss-Hermite nodes reproduce 20,000 pseudo-random draws closely
    m_gh, *_ = _tiny_iclv(small_panel, R=40, kind="gauss-hermite")
    m_mc, *_ = _tiny_iclv(small_panel, R=20000, kind="pseudo")
    assert abs(m_gh.loglik() - m_mc.loglik()) < 0.02
