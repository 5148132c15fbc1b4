"""Estimation robustness with rbe.iclv (issue 15): infeasible trial points
(raw thresholds crossing mid-run, a standard deviation stepping below 0) are
rejected by every optimiser and never reordered; a gradient that is not
finite where the log-likelihood is stops the estimation with a message naming
the parameters and keeps the best iterate; robust and classical standard
errors of an ICLV model agree under correct specification and differ, in the
expected direction, under heteroskedastic latent-variable errors.

``RBE_ICLV_LONG=1`` adds a larger version of the covariance comparison
(tighter tolerances, more seeds)."""
import math
import os
import warnings

import numpy as np
import pandas as pd
import pytest

import rbe.iclv as iclv
from rbe.errors import ConvergenceWarning

TAU = np.array([-1.2, -0.3, 0.4, 1.3])
THRESHOLDS = ("t1", "t2", "t3", "t4")
SAFE = dict(g=0.0, zeta=1.0, t1=-1.5, t2=-0.5, t3=0.5, t4=1.5, asc=0.0, b=0.0, lam=0.0)
LONG = os.environ.get("RBE_ICLV_LONG", "") not in ("", "0")


def iclv_data(N, T, seed, errors="normal"):
    """One latent variable ``lv = 0.8 z + eta`` measured by a five-point
    ordered-probit indicator (``q* = lv + e``, thresholds ``TAU``) and entering
    a binary probit choice over ``T`` tasks (``u = 0.3 - 0.8 x + 0.6 lv + e``).
    ``errors``: ``"normal"`` (the model's own distribution) or ``"hetero"``
    (``eta`` with standard deviation proportional to ``exp(0.8 z)``, scaled
    to unit variance: the estimated model is misspecified)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=N)
    eta = rng.normal(size=N)
    if errors == "hetero":
        s = np.exp(0.8 * z)
        eta = eta * s / np.sqrt(np.mean(s**2))
    lv = 0.8 * z + eta
    q = 1 + np.searchsorted(TAU, lv + rng.normal(size=N))
    ids = np.repeat(np.arange(N), T)
    x = rng.normal(size=N * T)
    u = 0.3 - 0.8 * x + 0.6 * np.repeat(lv, T) + rng.normal(size=N * T)
    return pd.DataFrame({"ID": ids, "x": x, "y": (u > 0).astype(int), "z": np.repeat(z, T), "q": np.repeat(q, T)})


def iclv_loglik(p, d, dr):
    lv = p.g * d.ind("z") + dr["eta"]
    # raw thresholds, as Apollo estimates them (no ordered parametrisation)
    q = iclv.ordered_probit(d, "q", p.zeta * lv, [p.t1, p.t2, p.t3, p.t4], levels=[1, 2, 3, 4, 5])
    V = p.asc + p.b * d.row("x") + p.lam * d.expand(lv)
    return {"q": q, "y": d.panel_sum(iclv.binary_probit(d, "y", V))}


def iclv_model(df, start, draws):
    return iclv.Model(iclv_loglik, iclv.Database(df, id_col="ID"), iclv.Parameters(start), draws)


def spy(model):
    """Record every evaluation (point, log-likelihood) the estimation makes."""
    log = []
    for name in ("loglik_and_gradient", "loglik", "hessian_and_scores"):
        f = getattr(model, name)

        def wrapped(values=None, f=f, name=name):
            out = f(values)
            log.append((np.array(values, dtype=float), out if name == "loglik" else out[0]))
            return out

        setattr(model, name, wrapped)
    return log


@pytest.fixture(scope="module")
def crossing_data():
    df = iclv_data(400, 4, seed=1)
    ref = iclv_model(df, SAFE, iclv.Draws(16, ["eta"])).estimate(verbose=False, hessian=False)
    assert ref.converged, ref.message
    return df, ref


# raw thresholds 0.01 apart, far from the optimum, with a large loading: the first
# quasi-Newton / BHHH steps push some thresholds across their neighbours. (The sign
# of the latent variable is not identified: from g = lam = 0, trust-constr lands on
# the mirror image g, zeta, lam -> -g, -zeta, -lam, whose simulated LL differs with
# 16 Halton draws; starting them at 0.5 keeps it on the same side. BHHH crosses only
# from g = lam = 0.)
CLOSE = dict(SAFE, t1=-1.0, t2=-0.99, t3=-0.98, t4=-0.97, zeta=3.0)
START = {"bfgs": CLOSE, "lbfgsb": CLOSE, "bhhh": CLOSE, "trust-exact": dict(CLOSE, g=0.5, lam=0.5), "trust-constr": dict(CLOSE, g=0.5, lam=0.5)}


@pytest.mark.parametrize("method", ["bfgs", "lbfgsb", "trust-exact", "trust-constr", "bhhh"])
def test_thresholds_crossing_mid_run_are_rejected_never_reordered(crossing_data, method):
    df, ref = crossing_data
    m = iclv_model(df, START[method], iclv.Draws(16, ["eta"]))
    log = spy(m)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        r = m.estimate(method=method, verbose=False, hessian=False)
    assert r.converged, r.message
    # the same optimum as from the safe start
    assert abs(r.ll_final - ref.ll_final) < 1e-6, (r.ll_final, ref.ll_final)
    np.testing.assert_allclose(r.estimates, ref.estimates, atol=1e-3 if method == "bhhh" else 2e-4)
    idx = [m.free_names.index(t) for t in THRESHOLDS]
    assert np.all(np.diff(r.estimates[idx]) > 0)
    crossed = [ll for x, ll in log if np.any(np.diff(x[idx]) < 0)]
    # every evaluation with thresholds out of order saw -inf: nothing reordered them
    assert all(ll == -math.inf for ll in crossed), crossed
    if method in ("bfgs", "lbfgsb", "bhhh"):
        # these line searches do step across (the trust-region methods' steps stay inside here:
        # the curvature next to coincident thresholds is huge; see the standard deviation test)
        assert len(crossed) > 0


def _sd_model():
    rng = np.random.default_rng(11)
    df = pd.DataFrame({"ID": np.arange(500), "w": 2.0 + 0.05 * rng.normal(size=500)})
    params = iclv.Parameters({"a": 2.0, "s": 0.1})

    def ll(p, d, dr):
        return {"w": iclv.normal_density(d, "w", p.a, p.s)}

    return iclv.Model(ll, iclv.Database(df, id_col="ID"), params), df["w"].to_numpy()


@pytest.mark.parametrize("method", ["bfgs", "lbfgsb", "trust-exact", "trust-constr", "bhhh"])
def test_a_standard_deviation_stepping_below_zero_is_rejected(method):
    # at s = 0.1 with residual sd 0.05 the log-likelihood is convex in s: a trust-region
    # step goes to its boundary, s < 0, where the density is -inf
    m, w = _sd_model()
    log = spy(m)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        r = m.estimate(method=method, verbose=False, hessian=False)
    assert r.converged, r.message
    # the closed-form maximum, within 1% of a standard error
    se = w.std() / np.sqrt([len(w), 2 * len(w)])
    np.testing.assert_allclose([r["a"], r["s"]], [w.mean(), w.std()], rtol=0, atol=0.01 * se.min())
    bad = [ll for x, ll in log if x[1] <= 0]
    assert all(ll == -math.inf for ll in bad)
    assert len(bad) > 0  # some step really went below 0


def test_lbfgsb_does_not_report_success_at_the_start_after_an_infeasible_step(crossing_data):
    # (scipy's L-BFGS-B, handed +inf, stopped at the start point and reported
    # "CONVERGENCE: REL_REDUCTION_OF_F"): whatever the optimiser says, success
    # needs a small gradient
    df, ref = crossing_data
    r = iclv_model(df, dict(SAFE, t1=0.0, t2=0.001, t3=0.002, t4=0.003), iclv.Draws(16, ["eta"])).estimate(
        method="lbfgsb", verbose=False, hessian=False
    )
    assert r.converged and abs(r.ll_final - ref.ll_final) < 1e-6
    assert r.iterations > 5


# ------------------------------------------------------------------ non-finite gradients
def _breaking_model(df, after):
    """The ICLV model plus ``sqrt(|c - c_now|)``: 0 in value, so the
    log-likelihood is unchanged, but its derivative is 0 * inf = NaN from
    evaluation ``after`` on."""
    calls = {"n": 0}

    def ll(p, d, dr):
        out = iclv_loglik(p, d, dr)
        calls["n"] += 1
        if calls["n"] > after:
            kink = (p.b - p.b.detach()).abs().sqrt()
            out["y"] = out["y"] + kink
        return out

    return iclv.Model(ll, iclv.Database(df, id_col="ID"), iclv.Parameters(SAFE), iclv.Draws(16, ["eta"]))


@pytest.mark.parametrize("method", ["bfgs", "lbfgsb", "trust-exact", "bhhh"])
def test_a_nan_gradient_mid_run_stops_with_the_parameter_named_and_keeps_the_best_iterate(crossing_data, method):
    df, ref = crossing_data
    m = _breaking_model(df, after=6)
    with pytest.warns(ConvergenceWarning, match=r"not finite \(NaN or inf\) for parameters \['b'\]"):
        r = m.estimate(method=method, verbose=False)
    assert not r.converged
    assert r.message.startswith("stopped: the gradient") and "['b']" in r.message and "best iterate" in r.message
    # the best iterate, not the start and not a NaN-driven step; its LL is the model's there
    assert np.isfinite(r.estimates).all()
    assert r.ll_final > r.ll_start
    fresh = iclv_model(df, SAFE, iclv.Draws(16, ["eta"]))
    assert fresh.loglik(dict(zip(r.names, r.estimates))) == pytest.approx(r.ll_final, rel=1e-12)
    # no standard errors from a NaN Hessian, and the summary says why
    assert "NOT CONVERGED" in r.summary()


def test_a_nan_gradient_at_the_start_is_an_estimation_error_naming_the_parameter(crossing_data):
    df, _ = crossing_data
    m = _breaking_model(df, after=0)
    with pytest.raises(iclv.EstimationError, match=r"at the start values: the gradient .* parameters \['b'\]"):
        m.estimate(verbose=False)
    # an EstimationError is an rbe.errors class (ConvergenceError, a RuntimeError)
    assert issubclass(iclv.EstimationError, RuntimeError)


# ------------------------------------------------------------------ robust and classical covariances
def _se_ratios(N, seed, errors):
    df = iclv_data(N, 4, seed, errors)
    # Gauss-Hermite quadrature: the likelihood of one normal latent variable integrated
    # (almost) exactly, so the "normal" data are from the estimated model itself
    r = iclv_model(df, SAFE, iclv.Draws(10, ["eta"], kind="gauss-hermite")).estimate(verbose=False)
    assert r.converged and r.hessian_ok, r.message
    return r, r.robust_se / r.se, r.bhhh_se / r.se


@pytest.mark.parametrize("seed", [0, 1] + ([2, 3, 4] if LONG else []))
def test_iclv_robust_and_classical_se_agree_when_correctly_specified(seed):
    N, tol = (20000, 0.03) if LONG else (3000, 0.08)
    r, robust, bhhh = _se_ratios(N, seed, "normal")
    # information matrix equality: sandwich, inverse Hessian and BHHH estimate the same matrix
    assert np.all(np.abs(robust - 1) < tol), dict(zip(r.names, robust.round(3)))
    assert np.all(np.abs(bhhh - 1) < tol), dict(zip(r.names, bhhh.round(3)))


@pytest.mark.parametrize("seed", [0, 1] + ([2, 3, 4] if LONG else []))
def test_iclv_robust_se_wider_under_heteroskedastic_latent_errors(seed):
    N = 20000 if LONG else 3000
    r, robust, bhhh = _se_ratios(N, seed, "hetero")
    g = r.names.index("g")
    # the variance of eta grows with z: the sandwich is wider than the inverse Hessian for the
    # structural coefficient of z (and the outer product of scores narrower), as White's
    # heteroskedasticity result says for a regression slope
    assert robust[g] > 1.25, dict(zip(r.names, robust.round(3)))
    assert bhhh[g] < 0.9, dict(zip(r.names, bhhh.round(3)))
    # the choice coefficient of x, unrelated to z, is not affected
    b = r.names.index("b")
    assert abs(robust[b] - 1) < 0.08
