"""Estimation with rbe.iclv: autodiff gradient and Hessian against finite
differences, scores summing to the gradient, classical and robust
covariances where they must agree and where they must differ, parameter
recovery on simulated data, every optimiser, results (summary, to_pandas,
save/load), warnings and failures that keep the last iterate."""
import io
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

import rbe
import rbe.iclv as iclv
from rbe.errors import ConvergenceWarning
from rbe.iclv.simulate import drug_choice_study, origin_study


@pytest.fixture(scope="module")
def small_origin():
    return origin_study(n_individuals=60, n_tasks=4, n_draws=8, seed=3, n_indicators_per_lv=2)


@pytest.mark.parametrize("study", ["origin (ordered probit, binary probit)", "drug (ordered logit, MNL)"])
def test_gradient_and_hessian_against_finite_differences(small_origin, study):
    st = small_origin if study.startswith("origin") else drug_choice_study(n_individuals=40, n_tasks=3, n_draws=6, seed=4)
    m = st.model()
    x = np.array([st.truth[n] for n in m.free_names])
    ll, g, H, S = m.hessian_and_scores(x)
    h = 1e-6
    fd = np.array([(m.loglik(x + h * e) - m.loglik(x - h * e)) / (2 * h) for e in np.eye(len(x))])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5)
    Hf = np.array([(m.gradient(x + 1e-5 * e) - m.gradient(x - 1e-5 * e)) / 2e-5 for e in np.eye(len(x))])
    np.testing.assert_allclose(H, Hf, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(H, H.T, atol=1e-9)
    # scores: per-individual gradients, whose sum is the gradient
    np.testing.assert_allclose(S.sum(0), g, rtol=1e-10, atol=1e-10)
    # and each score row is the gradient of that individual's log-likelihood
    n = 7
    fdn = np.array([(m.loglik_per_individual(x + h * e)[n] - m.loglik_per_individual(x - h * e)[n]) / (2 * h) for e in np.eye(len(x))])
    np.testing.assert_allclose(S[n], fdn, rtol=1e-5, atol=1e-6)


def _logit_data(N, T, hetero, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=N * T)
    z = np.repeat(rng.normal(size=N), T)
    ids = np.repeat(np.arange(N), T)
    y = (0.5 - 1.0 * x + rng.logistic(size=N * T) > 0).astype(int)
    # a continuous outcome whose error sd depends on z (misspecified as homoskedastic)
    sd = np.exp(0.8 * z) if hetero else np.ones_like(z)
    w = np.repeat(rng.normal(size=N), T) * 0 + 1.0 + 2.0 * z + sd * np.repeat(rng.normal(size=N), T)
    return pd.DataFrame({"ID": ids, "x": x, "y": y, "z": z, "w": w})


def _regression_model(df):
    d = iclv.Database(df)
    params = iclv.Parameters({"a": 0.0, "b": 0.0, "c": 0.0, "s": 1.0})

    def ll(p, d, dr):
        return {"w": iclv.normal_density(d, "w", p.a + p.b * d.ind("z"), p.s), "y": d.panel_sum(iclv.binary_logit(d, "y", p.c + 0 * d.row("x")))}

    return iclv.Model(ll, d, params)


def test_robust_and_classical_agree_when_correct_and_differ_when_misspecified():
    ok = _regression_model(_logit_data(3000, 1, hetero=False, seed=1)).estimate(verbose=False)
    ratio = ok.robust_se / ok.se
    assert np.all(np.abs(ratio - 1) < 0.12), ratio
    bad = _regression_model(_logit_data(3000, 1, hetero=True, seed=1)).estimate(verbose=False)
    r = bad.robust_se / bad.se
    i = bad.names.index("b")
    assert r[i] > 1.4, r  # heteroskedastic errors: the sandwich is much wider for the slope
    # BHHH, classical and robust all agree under correct specification
    assert np.all(np.abs(ok.bhhh_se / ok.se - 1) < 0.12)


@pytest.mark.parametrize("method", ["bfgs", "lbfgsb", "trust-exact", "trust-constr", "bhhh"])
def test_every_optimiser_reaches_the_same_optimum(method):
    df = _logit_data(400, 3, hetero=False, seed=2)
    ref = _regression_model(df).estimate(verbose=False)
    r = _regression_model(df).estimate(method=method, verbose=False)
    assert r.converged, r.message
    assert abs(r.ll_final - ref.ll_final) < 1e-6
    np.testing.assert_allclose(r.estimates, ref.estimates, atol=2e-4)


def test_bounds_need_lbfgsb_and_are_honoured():
    df = _logit_data(300, 2, hetero=False, seed=3)
    m = _regression_model(df)
    m.params._bounds["b"] = (None, 1.5)  # the unconstrained optimum is b = 2
    with pytest.raises(iclv.SpecificationError, match="cannot honour the bounds of \\['b'\\]"):
        m.estimate(verbose=False)
    r = m.estimate(method="lbfgsb", verbose=False)
    assert abs(r["b"] - 1.5) < 1e-8


def test_recovery_on_simulated_iclv():
    s = drug_choice_study(n_individuals=300, n_tasks=6, n_draws=40, seed=5)
    buf = io.StringIO()
    r = s.model().estimate(verbose=True, stream=buf, print_every=10)
    assert r.converged, r.message
    assert "iteration" in buf.getvalue() and "final" in buf.getvalue()
    truth = np.array([s.truth[n] for n in r.names])
    z = (r.estimates - truth) / r.robust_se
    assert np.isfinite(z).all()
    assert np.mean(np.abs(z) < 2) >= 0.8, dict(zip(r.names, np.round(z, 2)))


def test_results_summary_pandas_save_load(tmp_path):
    df = _logit_data(200, 2, hetero=False, seed=4)
    m = _regression_model(df)
    m.params.fix("s", value=1.0)
    r = m.estimate(verbose=False)
    s = r.summary()
    for token in ("LL(start)", "LL(final, whole model)", "AIC", "BIC", "Rob.s.e.", "t.rat.(0)", "(fixed)", "Successful convergence"):
        assert token in s, token
    # Apollo / Biogeme header lines, with the values of the results object
    lines = dict((ln.split(":", 1)[0].strip(), ln.split(":", 1)[1].strip()) for ln in s.splitlines() if " : " in ln)
    assert lines["Number of individuals"] == "200" and lines["Number of observations (rows)"] == "400"
    assert lines["Number of estimated parameters"] == "3" and lines["Number of fixed parameters"] == "1 (s)"
    assert float(lines["LL(start)"]) == pytest.approx(r.ll_start, abs=1e-4)
    assert float(lines["LL(final, whole model)"]) == pytest.approx(r.ll_final, abs=1e-4)
    assert r.ll_zero is not None and float(lines["LL(0, whole model)"]) == pytest.approx(r.ll_zero, abs=1e-4)
    assert float(lines["Rho-squared vs LL(0)"]) == pytest.approx(1 - r.ll_final / r.ll_zero, abs=1e-4)
    assert float(lines["Adj.Rho-squared vs LL(0)"]) == pytest.approx(1 - (r.ll_final - 3) / r.ll_zero, abs=1e-4)
    assert float(lines["AIC"]) == pytest.approx(r.aic, abs=0.01) and float(lines["BIC"]) == pytest.approx(r.bic, abs=0.01)
    assert float(lines["Time taken (total)"].split()[0]) == pytest.approx(r.time_estimation + r.time_hessian, abs=0.01)
    gn = float(lines["Final gradient norm"])
    assert gn == pytest.approx(np.linalg.norm(r.gradient[~r.fixed]), rel=1e-3) and gn < 1e-2
    # the parameter table: every free row has estimate, s.e., t, p, robust s.e., robust t, robust p; the fixed one says so
    rows = {ln.split()[0]: ln.split()[1:] for ln in s.splitlines()[s.splitlines().index("Estimates:") + 2:]}
    assert rows["s"] == ["1.000000", "(fixed)"]
    b = rows["b"]
    i = r.names.index("b")
    np.testing.assert_allclose([float(v) for v in b], [r.estimates[i], r.se[i], r.t_ratios[i], r.p_values[i], r.robust_se[i],
                                                        r.robust_t_ratios[i], r.robust_p_values[i]], rtol=2e-3, atol=2e-4)
    tab = r.to_pandas()
    assert list(tab.index) == ["a", "b", "c", "s"] and bool(tab.loc["s", "fixed"])
    assert np.isnan(tab.loc["s", "se"]) and tab.loc["b", "robust_se"] > 0
    np.testing.assert_allclose(tab["t"], tab["estimate"] / tab["se"])
    assert r.n_parameters == 3
    assert abs(r.aic - (-2 * r.ll_final + 6)) < 1e-9 and abs(r.bic - (-2 * r.ll_final + 3 * math.log(200))) < 1e-9
    p = tmp_path / "res.json"
    r.save(p)
    r2 = iclv.Results.load(p)
    assert r2.summary() == s
    np.testing.assert_array_equal(r2.robust_cov, r.robust_cov)
    (tmp_path / "bad.json").write_text(json.dumps({"x": 1}))
    with pytest.raises(iclv.DataError, match="not a results file"):
        iclv.Results.load(tmp_path / "bad.json")


def test_singular_hessian_warns_naming_parameters():
    df = _logit_data(200, 2, hetero=False, seed=5)
    d = iclv.Database(df)
    params = iclv.Parameters({"a1": 0.0, "a2": 0.0, "b": 0.0})

    def ll(p, d, dr):  # a1 and a2 enter only as a sum: not identified
        return d.panel_sum(iclv.binary_logit(d, "y", p.a1 + p.a2 + p.b * d.row("x")))

    with pytest.warns(iclv.HessianWarning, match=r"singular.*parameters involved: \['a1', 'a2'\]"):
        r = iclv.Model(ll, d, params).estimate(verbose=False)
    assert not r.hessian_ok and np.isnan(r.se[:2]).all()
    assert "singular" in r.summary().lower() or "WARNING" in r.summary()


def test_unused_parameter_warning():
    df = _logit_data(100, 1, hetero=False, seed=6)
    d = iclv.Database(df)
    params = iclv.Parameters({"c": 0.0, "ghost": 0.3})
    with pytest.warns(iclv.UnusedParameterWarning, match="ghost"):
        iclv.Model(lambda p, d, dr: d.panel_sum(iclv.binary_logit(d, "y", p.c + 0 * d.row("x"))), d, params).estimate(verbose=False, hessian=False)


def test_failed_estimation_keeps_the_last_iterate_and_says_why():
    df = _logit_data(300, 2, hetero=False, seed=7)
    m = _regression_model(df)
    calls = {"n": 0}
    inner = m.fn

    def flaky(p, d, dr):
        calls["n"] += 1
        if calls["n"] > 12:
            raise FloatingPointError("the model broke")
        return inner(p, d, dr)

    m.fn = flaky
    with pytest.warns(ConvergenceWarning, match="the model broke"):
        r = m.estimate(verbose=False, hessian=False, check_unused=False)
    assert not r.converged and "FloatingPointError: the model broke" in r.message
    assert r.ll_final > r.ll_start  # the best iterate, not the start
    m2 = _regression_model(df)
    with pytest.warns(ConvergenceWarning):
        r2 = m2.estimate(verbose=False, maxiter=2, hessian=False)
    assert not r2.converged and r2.iterations <= 2 and r2.ll_final > r2.ll_start


def test_bad_specifications_get_clear_errors(small_origin):
    s = small_origin
    d = s.data
    with pytest.raises(iclv.SpecificationError, match="unknown parameter 'b_x9'"):
        iclv.Model(lambda p, d, dr: d.panel_sum(iclv.binary_probit(d, "choice", p.b_x9 * d.row("x1"))), d, s.params).loglik()
    with pytest.raises(iclv.SpecificationError, match=r"component 'choice' has shape \(240, 1\).*panel_sum"):
        iclv.Model(lambda p, d, dr: {"choice": iclv.binary_probit(d, "choice", p.b_x1 * d.row("x1"))}, d, s.params).loglik()
    with pytest.raises(iclv.SpecificationError, match="depend on draws but the model has none"):
        iclv.Model(lambda p, d, dr: s.loglik(p, d, iclv.draws.DrawTensor(np.zeros((60, 3, 3)), ["eta1", "eta2", "eta3"])), d, s.params).loglik()
    # thresholds out of order at the start values: a clear error, not a silent reorder
    params = iclv.Parameters(s.params.start())
    params.set_start({"tau_I11_2": -5.0})
    with pytest.raises(iclv.EstimationError, match=r"not finite at the start values \(components \['I11'\]"):
        iclv.Model(s.loglik, d, params, s.draws).estimate(verbose=False)


def test_summary_says_when_ll0_and_rho_squared_are_not_defined():
    # a free standard deviation: LL(0) (every free parameter at 0) is -inf, so LL(0) and rho-squared are not defined
    r = _regression_model(_logit_data(150, 2, hetero=False, seed=6)).estimate(verbose=False)
    assert r.ll_zero is None and r.rho_squared is None and r.adj_rho_squared is None
    s = r.summary()
    for key in ("LL(0, whole model)", "Rho-squared vs LL(0)", "Adj.Rho-squared vs LL(0)"):
        assert any(ln.startswith(key) and ln.rstrip().endswith("not defined") for ln in s.splitlines()), key
    assert "Number of fixed parameters" not in s


def test_component_ll0_shown_where_defined():
    # the drug-choice model at all-zero parameters: ordered thresholds all equal (LL(0) of the indicators and of the
    # whole model not defined), the MNL at zero utilities: sum over rows of log(1 / number of available alternatives)
    s = drug_choice_study(n_individuals=40, n_tasks=3, n_draws=6, seed=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = s.model().estimate(verbose=False, maxiter=3)
    av = np.stack([s.data.row(f"av_{j}").numpy()[:, 0] for j in range(1, 5)], axis=1)
    want = float(-np.log(av.sum(1)).sum())
    assert r.ll_zero is None
    assert set(r.component_ll_zero) == {"choice"}
    assert abs(r.component_ll_zero["choice"] - want) < 1e-9 * abs(want)
    lines = r.summary().splitlines()
    i = [k for k, ln in enumerate(lines) if ln.startswith("LL(0, choice)")]
    assert len(i) == 1 and float(lines[i[0]].split(":")[1]) == pytest.approx(want, abs=1e-4)
    assert lines[i[0] + 1].startswith("LL(final, choice)")
    assert not any(ln.startswith("LL(0, att_") for ln in lines)


@pytest.mark.parametrize("method", ["bfgs", "lbfgsb", "trust-exact", "trust-constr", "bhhh"])
def test_progress_line_per_iteration(method):
    df = _logit_data(300, 2, hetero=False, seed=9)
    buf = io.StringIO()
    r = _regression_model(df).estimate(method=method, verbose=True, stream=buf, print_every=1)
    assert r.converged, r.message
    out = buf.getvalue().splitlines()
    assert out[0].startswith("Estimating 'iclv model' (4 free parameters, 300 individuals, 600 rows) with " + method)
    assert float(out[1].split("LL =")[1]) == pytest.approx(r.ll_start, abs=1e-6)
    its = [ln for ln in out if ln.strip().startswith("iteration")]
    # one line per iteration, numbered 1, 2, ..., as many as the results report
    assert [int(ln.split()[1]) for ln in its] == list(range(1, r.iterations + 1))
    lls = [float(ln.split("LL =")[1].split()[0]) for ln in its]
    assert all(b >= a - 1e-6 for a, b in zip(lls, lls[1:]))  # every accepted iterate is no worse
    assert lls[-1] == pytest.approx(r.ll_final, abs=1e-5)
    grads = [float(ln.split("max|grad| =")[1].split()[0]) for ln in its]
    assert grads[-1] < grads[0]
    final = out[-1]
    assert final.strip().startswith("final") and f"({r.iterations} iterations" in final
    assert float(final.split("LL =")[1].split()[0]) == pytest.approx(r.ll_final, abs=1e-5)
    # print_every=3: iteration 1 and every third
    buf3 = io.StringIO()
    r3 = _regression_model(df).estimate(method=method, verbose=True, stream=buf3, print_every=3, hessian=False)
    nums = [int(ln.split()[1]) for ln in buf3.getvalue().splitlines() if ln.strip().startswith("iteration")]
    assert nums == [k for k in range(1, r3.iterations + 1) if k == 1 or k % 3 == 0]
    # verbose=False prints nothing
    quiet = io.StringIO()
    _regression_model(df).estimate(method=method, verbose=False, stream=quiet, hessian=False)
    assert quiet.getvalue() == ""


def test_p_values_and_t_ratios_are_the_normal_two_sided_ones():
    from scipy.stats import norm

    r = _regression_model(_logit_data(300, 2, hetero=False, seed=10)).estimate(verbose=False)
    np.testing.assert_allclose(r.t_ratios, r.estimates / r.se)
    np.testing.assert_allclose(r.p_values, 2 * norm.sf(np.abs(r.estimates / r.se)), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(r.robust_p_values, 2 * norm.sf(np.abs(r.estimates / r.robust_se)), rtol=1e-12, atol=1e-300)
    tab = r.to_pandas()
    np.testing.assert_allclose(tab["robust_p"], r.robust_p_values)
    np.testing.assert_allclose(tab["bhhh_se"], np.sqrt(np.diag(r.bhhh_cov)))
    assert list(tab.columns) == ["estimate", "se", "t", "p", "robust_se", "robust_t", "robust_p", "bhhh_se", "fixed"]
    assert r.time_estimation > 0 and r.time_hessian > 0 and r.iterations > 0


def test_ctrl_c_keeps_the_best_iterate_and_says_so():
    df = _logit_data(300, 2, hetero=False, seed=11)
    m = _regression_model(df)
    inner, calls = m.fn, {"n": 0}

    def interrupted(p, d, dr):
        calls["n"] += 1
        if calls["n"] == 10:  # one Ctrl-C, in the middle of an evaluation
            raise KeyboardInterrupt
        return inner(p, d, dr)

    m.fn = interrupted
    with pytest.warns(ConvergenceWarning, match="interrupted"):
        r = m.estimate(verbose=False, hessian=False, check_unused=False)
    assert not r.converged and r.message.startswith("interrupted (Ctrl-C)")
    assert r.ll_final > r.ll_start and np.isfinite(r.estimates).all()
    assert "NOT CONVERGED: interrupted" in r.summary()


def test_failed_results_with_nan_standard_errors_save_and_load(tmp_path):
    df = _logit_data(200, 2, hetero=False, seed=12)
    d = iclv.Database(df)
    params = iclv.Parameters({"a1": 0.0, "a2": 0.0, "b": 0.0})

    def ll(p, d, dr):  # a1 + a2 only: a singular Hessian, NaN standard errors
        return d.panel_sum(iclv.binary_logit(d, "y", p.a1 + p.a2 + p.b * d.row("x")))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = iclv.Model(ll, d, params).estimate(verbose=False, maxiter=1)
    assert not r.converged and not r.hessian_ok and np.isnan(r.se).all()
    r.save(tmp_path / "r.json")
    r2 = iclv.Results.load(tmp_path / "r.json")
    assert r2.summary() == r.summary()
    assert r2.hessian_problem == r.hessian_problem == ["a1", "a2"]
    assert not r2.converged and r2.message == r.message
    np.testing.assert_array_equal(r2.se, r.se)  # NaN survives the round trip
    np.testing.assert_array_equal(r2.bhhh_cov, r.bhhh_cov)
    assert r2.to_pandas().equals(r.to_pandas())


def test_a_non_finite_hessian_at_the_estimates_is_reported_not_a_crash():
    df = _logit_data(200, 2, hetero=False, seed=13)
    d = iclv.Database(df)
    state = {"break": False}

    def ll(p, d, dr):
        V = p.c + p.b * d.row("x")
        if state["break"]:
            V = V + (p.b - p.b.detach()).abs().sqrt()  # value unchanged, derivative NaN
        return d.panel_sum(iclv.binary_logit(d, "y", V))

    m = iclv.Model(ll, d, iclv.Parameters({"c": 0.0, "b": 0.0}))
    real = m.hessian_and_scores

    def breaking(values=None):  # only the final Hessian and scores at the estimates break
        state["break"] = True
        return real(values)

    m.hessian_and_scores = breaking
    r = m.estimate(verbose=False)
    assert "no standard errors: the gradient, Hessian or scores are not finite at the estimates (parameters ['b'])" in r.message
    assert np.isnan(r.se).all() and np.isnan(r.robust_se).all()
    assert abs(r["b"] + 1.0) < 0.3  # the estimates themselves are fine


@pytest.mark.parametrize("method", ["bfgs", "lbfgsb"])
def test_a_failed_line_search_away_from_the_optimum_restarts_from_the_best_point(monkeypatch, method):
    import scipy.optimize as so

    df = _logit_data(300, 2, hetero=False, seed=14)
    ref = _regression_model(df).estimate(method=method, verbose=False, hessian=False)
    real, calls = so.minimize, []

    def first_fails(fun, x0, **kw):
        # the first run stops after 2 iterations, as a line search that lost the quasi-Newton matrix would
        calls.append(np.array(x0))
        if len(calls) == 1:
            res = real(fun, x0, **dict(kw, options=dict(kw["options"], maxiter=2)))
            res.success, res.message = False, "Desired error not necessarily achieved due to precision loss."
            return res
        return real(fun, x0, **kw)

    monkeypatch.setattr(so, "minimize", first_fails)
    buf = io.StringIO()
    r = _regression_model(df).estimate(method=method, verbose=True, stream=buf, hessian=False)
    assert len(calls) == 2 and not np.array_equal(calls[1], calls[0])  # restarted from the best point, not the start
    assert "restarting " + method + " from the best point" in buf.getvalue()
    assert r.converged and r.message.endswith("(after 1 restart)")
    assert abs(r.ll_final - ref.ll_final) < 1e-6
    # with restarts=0 the failure stands, and says why
    calls.clear()
    with pytest.warns(ConvergenceWarning, match="precision loss"):
        r0 = _regression_model(df).estimate(method=method, verbose=False, hessian=False, restarts=0)
    assert len(calls) == 1 and not r0.converged and r0.ll_final < ref.ll_final
