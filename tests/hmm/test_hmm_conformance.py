"""hmmlearn conformance: code written for hmmlearn runs with only the import
changed. Signatures, scikit-learn estimator protocol, return types, EM with
non-default MAP priors, aic/bic, stationary distribution, sampling, the
convergence monitor, covariance setters, and the error classes (ValueError
wherever hmmlearn raises ValueError)."""
import inspect

import numpy as np
import pytest
import sklearn.base
import sklearn.exceptions

from rbe.errors import RbeError
import rbe.hmm as rbe_hmm
from rbe.hmm import CategoricalHMM, GaussianHMM

hmmlearn_hmm = pytest.importorskip("hmmlearn.hmm")
COV_TYPES = ["spherical", "diag", "full", "tied"]


def _data(seed=0, n=90, d=2):
    r = np.random.RandomState(seed)
    X = r.normal(size=(n, d))
    X[n // 3: 2 * n // 3] += 3.0
    X[2 * n // 3:] -= 2.0
    return X


def _fitted(mod, ct="diag", X=None, lengths=None, **kw):
    m = mod.GaussianHMM(3, covariance_type=ct, random_state=1, n_iter=kw.pop("n_iter", 5), **kw)
    return m.fit(_data() if X is None else X, lengths)


@pytest.mark.parametrize("name", ["GaussianHMM", "CategoricalHMM"])
def test_constructor_and_method_signatures_match(name):
    ours, ref = getattr(__import__("rbe.hmm", fromlist=[name]), name), getattr(hmmlearn_hmm, name)
    assert inspect.signature(ours) == inspect.signature(ref)
    for meth in ["score", "score_samples", "decode", "predict", "predict_proba", "sample", "aic", "bic",
                 "get_stationary_distribution", "get_params", "set_params"]:
        assert inspect.signature(getattr(ours, meth)).parameters == inspect.signature(getattr(ref, meth)).parameters, meth
    # fit: hmmlearn's (X, lengths=None) plus keyword-only extras
    ps = list(inspect.signature(ours.fit).parameters.values())
    rps = list(inspect.signature(ref.fit).parameters.values())
    assert ps[:len(rps)] == rps
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in ps[len(rps):])


def test_sklearn_estimator_protocol():
    kw = dict(covariance_type="full", n_iter=7, tol=0.5, means_weight=2.0, params="mc", algorithm="map")
    ours, ref = GaussianHMM(4, **kw), hmmlearn_hmm.GaussianHMM(4, **kw)
    assert ours.get_params() == ref.get_params()
    assert repr(ours) == repr(ref)
    assert ours.set_params(n_iter=3, tol=0.1) is ours and (ours.n_iter, ours.tol) == (3, 0.1)
    fitted = _fitted(rbe_hmm)
    c = sklearn.base.clone(fitted)
    assert type(c) is GaussianHMM and c.get_params() == fitted.get_params() and not hasattr(c, "means_")
    assert CategoricalHMM(2, n_features=4).get_params() == hmmlearn_hmm.CategoricalHMM(2, n_features=4).get_params()
    # hyper-parameters changed through set_params are checked when used
    bad = GaussianHMM(2).set_params(covariance_type="nope")
    with pytest.raises(ValueError, match="covariance_type"):
        bad.fit(_data())


def test_return_types_shapes_and_algorithm_attribute():
    X = _data()
    m = _fitted(rbe_hmm)
    assert type(m.score(X)) is float
    lp, post = m.score_samples(X)
    assert type(lp) is float and post.shape == (len(X), 3) and post.dtype == np.float64
    assert m.predict_proba(X).shape == (len(X), 3)
    vlp, path = m.decode(X)
    assert type(vlp) is float and path.shape == (len(X),) and path.dtype.kind == "i"
    assert m.predict(X).dtype.kind == "i"
    assert m.n_features == 2
    # decode(algorithm=None) follows self.algorithm, as hmmlearn
    ref = _fitted(hmmlearn_hmm)
    for obj in (m, ref):
        obj.algorithm = "map"
    np.testing.assert_allclose(m.decode(X)[0], ref.decode(X)[0], rtol=1e-6)
    assert m.decode(X)[0] == pytest.approx(m.decode(X, algorithm="map")[0])
    assert m.decode(X)[0] != pytest.approx(m.decode(X, algorithm="viterbi")[0])
    np.testing.assert_array_equal(m.predict(X), m.predict_proba(X).argmax(1))


@pytest.mark.parametrize("ct", COV_TYPES)
def test_fit_without_lengths_matches_hmmlearn(ct):
    X = _data(3)
    ours, ref = _fitted(rbe_hmm, ct, X), _fitted(hmmlearn_hmm, ct, X)
    np.testing.assert_allclose(list(ours.monitor_.history), list(ref.monitor_.history), rtol=1e-7)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-6, atol=1e-8)
    assert ours.score(X) == pytest.approx(ref.score(X), rel=1e-7)


@pytest.mark.parametrize("ct", COV_TYPES)
def test_em_with_non_default_priors_matches_hmmlearn(ct):
    """MAP priors in the M-step exactly as hmmlearn applies them (scalars and arrays)."""
    k, d = 3, 2
    X = _data(5)
    lengths = [30, 1, 59]
    pri = dict(startprob_prior=np.array([2.0, 1.5, 3.0]), transmat_prior=np.full((k, k), 2.5),
               means_prior=np.array([[0.0, 0.0], [1.0, 1.0], [-1.0, 0.5]]), means_weight=np.full((k, 1), 4.0) if ct in ("spherical", "diag") else 4.0,
               covars_prior=0.7 if ct in ("spherical", "diag") else 0.7 * np.eye(d),
               covars_weight=5.0, n_iter=6, tol=-np.inf, init_params="")
    ours, ref = GaussianHMM(k, ct, **pri), hmmlearn_hmm.GaussianHMM(k, ct, **pri)
    cov = {"spherical": np.array([1.0, 0.5, 2.0]), "diag": np.array([[1.0, 0.5], [0.7, 1.2], [2.0, 1.0]]),
           "full": np.array([np.eye(d), [[1.0, 0.3], [0.3, 0.8]], 2 * np.eye(d)]), "tied": np.array([[1.0, 0.2], [0.2, 1.5]])}[ct]
    for m in (ours, ref):
        m.startprob_, m.transmat_ = [0.5, 0.3, 0.2], [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]]
        m.means_, m.covars_ = [[0.0, 0.0], [3.0, 3.0], [-2.0, -2.0]], cov
    ours.fit(X, lengths)
    ref.fit(X, lengths)
    np.testing.assert_allclose(list(ours.monitor_.history), list(ref.monitor_.history), rtol=1e-9)
    for name in ("startprob_", "transmat_", "means_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-8, atol=1e-12, err_msg=name)
    # hmmlearn stores spherical variances tiled to (K, D) after its M-step: _covars_ compares like for like
    np.testing.assert_allclose(ours._covars_, ref._covars_, rtol=1e-8, atol=1e-12)
    # the priors matter: without them the estimates differ
    plain = GaussianHMM(k, ct, n_iter=6, tol=-np.inf, init_params="")
    plain.startprob_, plain.transmat_, plain.means_ = ref.startprob_, ref.transmat_, ref.means_
    plain.startprob_, plain.transmat_ = [0.5, 0.3, 0.2], [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]]
    plain.means_, plain.covars_ = [[0.0, 0.0], [3.0, 3.0], [-2.0, -2.0]], cov
    plain.fit(X, lengths)
    assert not np.allclose(plain.means_, ours.means_, rtol=1e-4)


def test_categorical_priors_input_and_sampling_match_hmmlearn():
    r = np.random.RandomState(2)
    X = r.randint(0, 4, size=(120, 1))
    lengths = [50, 1, 69]
    kw = dict(emissionprob_prior=np.full((3, 4), 1.7), startprob_prior=2.0, transmat_prior=1.5, n_iter=8,
              tol=-np.inf, random_state=3)
    ours, ref = CategoricalHMM(3, **kw).fit(X, lengths), hmmlearn_hmm.CategoricalHMM(3, **kw).fit(X, lengths)
    np.testing.assert_allclose(list(ours.monitor_.history), list(ref.monitor_.history), rtol=1e-9)
    np.testing.assert_allclose(ours.emissionprob_, ref.emissionprob_, rtol=1e-8)
    assert ours.n_features == ref.n_features == 4
    assert ours.aic(X, lengths) == pytest.approx(ref.aic(X, lengths), rel=1e-9)
    assert ours.bic(X, lengths) == pytest.approx(ref.bic(X, lengths), rel=1e-9)
    Xo, Zo = ours.sample(30, random_state=4)
    Xr, Zr = ref.sample(30, random_state=4)
    assert Xo.shape == Xr.shape == (30, 1) and Zo.shape == Zr.shape == (30,)
    np.testing.assert_array_equal(Xo, Xr)
    np.testing.assert_array_equal(Zo, Zr)
    # a declared n_features larger than the symbols seen
    wide = CategoricalHMM(2, n_features=6, random_state=0).fit(X)
    assert wide.emissionprob_.shape == hmmlearn_hmm.CategoricalHMM(2, n_features=6, random_state=0).fit(X).emissionprob_.shape


@pytest.mark.parametrize("ct", COV_TYPES)
def test_aic_bic_and_stationary_distribution_match_hmmlearn(ct):
    X = _data(1)
    ours, ref = _fitted(rbe_hmm, ct, X), _fitted(hmmlearn_hmm, ct, X)
    assert ours._get_n_fit_scalars_per_param() == ref._get_n_fit_scalars_per_param()
    assert ours.aic(X) == pytest.approx(ref.aic(X), rel=1e-7)
    assert ours.bic(X, [40, 50]) == pytest.approx(ref.bic(X, [40, 50]), rel=1e-7)
    pi = ours.get_stationary_distribution()
    np.testing.assert_allclose(pi, ref.get_stationary_distribution(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(pi @ ours.transmat_, pi, atol=1e-12)
    assert pi.sum() == pytest.approx(1.0)


def test_sample_with_currstate_and_monitor_attributes():
    X = _data()
    ours, ref = _fitted(rbe_hmm), _fitted(hmmlearn_hmm)
    ours.means_, ours.covars_, ours.startprob_, ours.transmat_ = ref.means_, ref._covars_, ref.startprob_, ref.transmat_
    for kw in (dict(random_state=9), dict(random_state=9, currstate=2)):
        (Xo, Zo), (Xr, Zr) = ours.sample(12, **kw), ref.sample(12, **kw)
        np.testing.assert_allclose(Xo, Xr)
        np.testing.assert_array_equal(Zo, Zr)
    assert ours.sample(5, currstate=1)[1][0] == 1
    m = GaussianHMM(3, n_iter=4, tol=1e-9, verbose=False, random_state=1).fit(X)
    r = hmmlearn_hmm.GaussianHMM(3, n_iter=4, tol=1e-9, verbose=False, random_state=1).fit(X)
    for attr in ("iter", "n_iter", "tol", "verbose", "converged"):
        assert getattr(m.monitor_, attr) == getattr(r.monitor_, attr), attr
    assert len(m.monitor_.history) == len(r.monitor_.history)


@pytest.mark.parametrize("ct,value", [
    ("spherical", [1.0, 2.0]), ("spherical", [[1.0, 1.0], [2.0, 2.0]]), ("diag", [[1.0, 2.0], [0.5, 0.5]]),
    ("full", [np.eye(2), [[2.0, 0.5], [0.5, 1.0]]]), ("tied", [[2.0, 0.5], [0.5, 1.0]])])
def test_covars_setter_accepts_what_hmmlearn_accepts(ct, value):
    ours, ref = GaussianHMM(2, ct), hmmlearn_hmm.GaussianHMM(2, ct)
    means = [[0.0, 0.0], [1.0, -1.0]]
    for m in (ours, ref):
        m.means_ = means
        m.covars_ = value
        m.startprob_, m.transmat_ = [0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]]
    X = _data(0, n=20)
    assert ours.score(X) == pytest.approx(ref.score(X), rel=1e-10)
    if np.ndim(value) == 2 and ct == "spherical":  # hmmlearn's getter then tiles again, to (K*D, D, D)
        np.testing.assert_allclose(ours._covars_, ref._covars_)
    else:
        np.testing.assert_allclose(ours.covars_, ref.covars_)


@pytest.mark.parametrize("ct,value", [
    ("spherical", [1.0, -2.0]), ("spherical", [1.0, 2.0, 3.0]), ("diag", [1.0, 2.0]), ("diag", [[1.0, 0.0], [1.0, 1.0]]),
    ("full", np.ones((2, 2, 2))), ("full", [[1.0, 0.0], [0.0, 1.0]]), ("tied", np.ones((2, 3))),
    ("tied", [[1.0, 2.0], [2.0, 1.0]])])
def test_covars_setter_refuses_what_hmmlearn_refuses(ct, value):
    ref = hmmlearn_hmm.GaussianHMM(2, ct)
    with pytest.raises(ValueError):
        ref.covars_ = np.asarray(value)
    ours = GaussianHMM(2, ct)
    with pytest.raises(ValueError, match="covars_"):
        ours.covars_ = value
    assert not hasattr(ours, "_covars")


def _errors_cases():
    X = _data(0, n=30)
    return {
        "unfitted score": lambda mod: mod.GaussianHMM(2).score(X),
        "lengths do not add up": lambda mod: _fitted(mod, X=X).score(X, [10, 10]),
        "1-D X": lambda mod: _fitted(mod, X=X).score(X[:, 0]),
        "NaN X": lambda mod: _fitted(mod, X=X).score(np.full((3, 2), np.nan)),
        "unknown decoder": lambda mod: _fitted(mod, X=X).decode(X, algorithm="nope"),
        "startprob not summing to 1": lambda mod: _set_and_score(mod, "startprob_", [0.5, 0.6, 0.1], X),
        "transmat wrong shape": lambda mod: _set_and_score(mod, "transmat_", np.eye(2), X),
        "transmat rows not summing to 1": lambda mod: _set_and_score(mod, "transmat_", np.full((3, 3), 0.5), X),
        "fewer samples than states": lambda mod: mod.GaussianHMM(5).fit(X[:3]),
        "categorical 1-D": lambda mod: mod.CategoricalHMM(2).fit(np.array([0, 1, 1, 0])),
    }


def _set_and_score(mod, name, value, X):
    m = _fitted(mod, X=X)
    setattr(m, name, value)
    return m.score(X)


@pytest.mark.parametrize("case", list(_errors_cases()))
def test_errors_are_valueerrors_where_hmmlearn_raises_valueerror(case):
    f = _errors_cases()[case]
    with pytest.raises(ValueError):
        f(hmmlearn_hmm)
    with pytest.raises(ValueError) as e:
        f(rbe_hmm)
    assert isinstance(e.value, RbeError), type(e.value)
    if case == "unfitted score":
        assert isinstance(e.value, sklearn.exceptions.NotFittedError) and isinstance(e.value, rbe_hmm.NotFittedError)


def test_in_place_edits_are_checked_before_use():
    X = _data(0, n=30)
    m = _fitted(rbe_hmm, X=X)
    before = m.score(X)
    m.transmat_[0] = [0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="transmat_"):
        m.score(X)
    m.transmat_[0] = [0.5, 0.25, 0.25]
    assert np.isfinite(m.score(X)) and m.score(X) != before
    c = CategoricalHMM(2, random_state=0).fit(np.array([[0], [1], [2], [1], [0]]))
    c.emissionprob_[1, 0] = -0.1
    with pytest.raises(ValueError, match="emissionprob_"):
        c.predict(np.array([[0], [1]]))


def test_hand_set_probabilities_are_checked_when_used_as_in_hmmlearn():
    """The same assignments on both libraries: unnormalised values are
    accepted and normalised in place, a new shape may come before a new
    n_components, and bad values raise a ValueError at score / fit (an rbe
    error for rbe) that changes nothing."""
    X = _data(0, n=30)
    Xc = np.array([[0], [1], [2], [1], [0], [2], [2]])
    results = {}
    for mod in (hmmlearn_hmm, rbe_hmm):
        m = _fitted(mod, X=X)
        m.init_params = ""  # fit then keeps (and so checks) the hand-set values
        m.startprob_ = np.array([2.0, 3.0, 5.0])
        m.startprob_ /= m.startprob_.sum()
        m.transmat_ = np.arange(1.0, 10.0).reshape(3, 3)
        m.transmat_ /= m.transmat_.sum(axis=1, keepdims=True)
        # a new shape first, then the matching n_components and means / covariances
        m.startprob_, m.transmat_ = np.array([0.25, 0.75]), np.array([[0.9, 0.1], [0.2, 0.8]])
        m.n_components = 2
        m.means_, m.covars_ = m.means_[:2], m._covars_[:2]
        c = mod.CategoricalHMM(2, init_params="", n_iter=3)
        c.startprob_, c.transmat_ = np.array([1.0, 1.0]), np.array([[1.0, 3.0], [2.0, 2.0]])
        c.emissionprob_ = np.array([[1.0, 1.0, 2.0], [3.0, 1.0, 0.0]])
        c.startprob_ /= c.startprob_.sum()
        c.transmat_ /= c.transmat_.sum(axis=1, keepdims=True)
        c.emissionprob_ /= c.emissionprob_.sum(axis=1, keepdims=True)
        results[mod] = (m.score(X), m.predict(X), c.score(Xc), c.predict(Xc))
        bad = [(m, "startprob_", np.array([0.5, 0.6])), (m, "transmat_", np.array([[0.5, 0.6], [0.5, 0.5]])),
               (m, "startprob_", np.array([1.0, 0.0, 0.0])), (m, "transmat_", np.eye(3)),
               (c, "emissionprob_", np.array([[0.5, 0.6, 0.1], [0.2, 0.2, 0.6]])),
               (c, "transmat_", np.array([[0.5, 0.6], [0.5, 0.5]]))]
        for model, name, value in bad:
            old = getattr(model, name)
            setattr(model, name, value)  # accepted as set by both libraries
            data = X if model is m else Xc
            for use in (model.score, model.fit):
                with pytest.raises(ValueError, match=name) as e:
                    use(data)
                if mod is rbe_hmm:
                    assert isinstance(e.value, RbeError), type(e.value)
                np.testing.assert_array_equal(getattr(model, name), value)
            setattr(model, name, old)
        assert m.score(X) == results[mod][0] and c.score(Xc) == results[mod][2]
        # a new observation dimension: the covariances may be set before the means
        X3 = np.concatenate([X, X[:, :1] * 0.5], axis=1)
        m.covars_ = np.ones((2, 3))
        if mod is rbe_hmm:  # hmmlearn does not check this and broadcasts; rbe refuses it at use
            with pytest.raises(ValueError, match="covars_ has dimension 3 but means_ has 2"):
                m.score(X3)
        m.means_ = np.array([[0.0, 1.0, 0.0], [2.0, -1.0, 1.0]])
        results[mod] += (m.score(X3),)
    for a, b in zip(results[hmmlearn_hmm], results[rbe_hmm]):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    with pytest.raises(ValueError, match="startprob_"):  # neither library can make a float array of this
        CategoricalHMM(2).startprob_ = "ab"


@pytest.mark.parametrize("ct", COV_TYPES)
def test_gradient_fit_every_covariance_type_reaches_the_em_optimum(ct):
    """fit(optimizer=...) for every covariance type (full / tied through the
    Cholesky factor of the precision): the likelihood rises at every Adam step
    here and ends at the optimum EM reaches from the same start."""
    import rbe

    ref = hmmlearn_hmm.GaussianHMM(3, ct)
    ref.startprob_, ref.transmat_ = [0.5, 0.3, 0.2], [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]
    ref.means_ = [[0.0, 0.0], [3.0, 3.0], [-3.0, 2.0]]
    a = np.array([[1.0, 0.5], [0.5, 1.5]])
    ref.covars_ = {"spherical": [1.0, 0.5, 2.0], "diag": [[1.0, 0.5], [0.7, 1.2], [2.0, 1.0]],
                   "full": np.array([a, 0.5 * a, np.eye(2)]), "tied": a}[ct]
    lengths = [80, 1, 60]
    X = np.concatenate([ref.sample(n, random_state=i)[0] for i, n in enumerate(lengths)])

    def start(**kw):
        m = GaussianHMM(3, ct, init_params="", **kw)
        m.startprob_, m.transmat_ = [1 / 3] * 3, np.full((3, 3), 1 / 3)
        m.means_ = [[0.5, 0.5], [2.0, 2.5], [-2.0, 1.0]]
        m.covars_ = {"spherical": np.full(3, 2.0), "diag": np.full((3, 2), 2.0), "full": np.array([2 * np.eye(2)] * 3),
                     "tied": 2 * np.eye(2)}[ct]
        return m

    em = start(n_iter=300, tol=1e-9).fit(X, lengths)
    g = start(n_iter=400, tol=1e-7)
    before = g.score(X, lengths)
    g.fit(X, lengths, optimizer=lambda p: rbe.optim.Adam(p, lr=0.03))
    hist = np.array(g.monitor_.history)
    assert hist[-1] > before + 20
    assert np.all(np.diff(hist) >= -1e-9 * np.abs(hist[1:]))
    assert g.score(X, lengths) == pytest.approx(em.score(X, lengths), abs=0.05)
    np.testing.assert_allclose(g.means_, em.means_, atol=2e-2)
    np.testing.assert_allclose(g.covars_, em.covars_, atol=2e-2)
    for c in g.covars_:
        np.testing.assert_allclose(c, c.T)
        assert np.linalg.eigvalsh(c).min() > 0
    # only the means when "c" is not in params: the covariances stay as they were
    m = start(n_iter=50, params="m")
    cov0 = m.covars_.copy()
    m.fit(X, lengths, optimizer=lambda p: rbe.optim.Adam(p, lr=0.05))
    np.testing.assert_allclose(m.covars_, cov0, rtol=1e-12)
    assert m.score(X, lengths) > before


def test_n_features_attribute_settable_as_in_hmmlearn():
    ours, ref = GaussianHMM(2), hmmlearn_hmm.GaussianHMM(2)
    for m in (ours, ref):
        m.n_features = 3
        m.means_ = np.zeros((2, 3))
    assert ours.n_features == ref.n_features == 3
    with pytest.raises(ValueError, match="n_features"):
        ours.n_features = 4
    assert ours.n_features == 3
    with pytest.raises(ValueError, match="n_features"):
        ours.n_features = 0


def test_hmmlearn_warnings_and_implementation(caplog):
    import logging

    X = _data(0, n=6)
    for mod in (hmmlearn_hmm, rbe_hmm):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            m = mod.GaussianHMM(3, "full", random_state=0, n_iter=2)
            m.startprob_ = [0.2, 0.3, 0.5]
            m.fit(X)
        text = caplog.text
        assert "'startprob_' attribute is set, it will be overwritten" in text, mod
        assert "degenerate solution" in text, mod
    for impl in ("log", "scaling"):
        m = GaussianHMM(2, random_state=0, implementation=impl, n_iter=2).fit(_data())
        assert np.isfinite(m.score(_data()))
    with pytest.raises(ValueError, match="implementation"):
        GaussianHMM(2, implementation="fast").fit(_data())


def _tutorial(hmm):
    """hmmlearn's tutorial code (global np.random.seed, sample, refit, predict;
    the dice CategoricalHMM with several random restarts), verbatim but for
    the module."""
    np.random.seed(42)
    model = hmm.GaussianHMM(n_components=3, covariance_type="full")
    model.startprob_ = np.array([0.6, 0.3, 0.1])
    model.transmat_ = np.array([[0.7, 0.2, 0.1], [0.3, 0.5, 0.2], [0.3, 0.3, 0.4]])
    model.means_ = np.array([[0.0, 0.0], [3.0, -3.0], [5.0, 10.0]])
    model.covars_ = np.tile(np.identity(2), (3, 1, 1))
    X, Z = model.sample(100)
    remodel = hmm.GaussianHMM(n_components=3, covariance_type="full", n_iter=100)
    remodel.fit(X)
    out = [X, Z, remodel.predict(X), remodel.score(X), remodel.monitor_.iter, remodel.bic(X)]
    gen = hmm.CategoricalHMM(n_components=2, random_state=99)
    gen.startprob_ = np.array([1.0, 0.0])
    gen.transmat_ = np.array([[0.9, 0.1], [0.4, 0.6]])
    gen.emissionprob_ = np.array([[1 / 6] * 6, [1 / 10] * 5 + [1 / 2]])
    rolls, _ = gen.sample(300)
    scores = []
    for idx in range(3):
        m = hmm.CategoricalHMM(n_components=2, random_state=idx, init_params="se")
        m.transmat_ = np.array([np.random.dirichlet([0.9, 0.1]), np.random.dirichlet([0.1, 0.9])])
        m.fit(rolls[:150])
        scores.append(m.score(rolls[150:]))
        m.fit(rolls[:150])  # a second fit continues the model's random stream, as hmmlearn
        # (Viterbi paths of a dice model can tie exactly: compare the best path's log-probability)
        out += [m.emissionprob_, m.decode(rolls)[0], m.predict_proba(rolls)]
    return out + [rolls, scores]


def test_hmmlearn_tutorial_runs_identically():
    ours, ref = _tutorial(rbe_hmm), _tutorial(hmmlearn_hmm)
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        if np.asarray(b).dtype.kind in "iu":
            np.testing.assert_array_equal(a, b, err_msg=str(i))
        else:
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9, err_msg=str(i))


@pytest.mark.parametrize("ct", COV_TYPES)
def test_verbose_output_pickle_and_emission_hook(ct, capsys):
    import pickle

    X = _data(4)
    for mod in (hmmlearn_hmm, rbe_hmm):
        mod.GaussianHMM(2, ct, random_state=0, verbose=True, n_iter=3).fit(X)
    printed = capsys.readouterr().err.splitlines()
    ref_lines, our_lines = printed[:3], printed[3:]
    assert len(our_lines) == 3
    for a, b in zip(our_lines, ref_lines):  # "iter  log_prob  delta", the same layout and values
        fa, fb = a.split(), b.split()
        assert fa[0] == fb[0] and float(fa[1]) == pytest.approx(float(fb[1]), rel=1e-9)
    ours, ref = _fitted(rbe_hmm, ct, X), _fitted(hmmlearn_hmm, ct, X)
    np.testing.assert_allclose(ours._compute_log_likelihood(X), ref._compute_log_likelihood(X), rtol=1e-9)
    back = pickle.loads(pickle.dumps(ours))
    assert back.score(X) == ours.score(X)
    assert list(back.monitor_.history) == list(ours.monitor_.history)


def test_unknown_params_letters_are_refused_and_change_nothing():
    X = _data(0, n=20)
    with pytest.raises(KeyError):
        hmmlearn_hmm.GaussianHMM(2, params="stx", n_iter=2).fit(X)
    m = GaussianHMM(2, params="stx", n_iter=2)
    with pytest.raises(ValueError, match=r"params='stx'.*\['x'\]"):
        m.fit(X)
    assert not hasattr(m, "means_") and len(m.monitor_.history) == 0
    c = CategoricalHMM(2, params="stm")
    with pytest.raises(ValueError, match="'ste'"):
        c.fit(np.array([[0], [1], [1]]))
    assert not hasattr(c, "emissionprob_")


@pytest.mark.parametrize("ct", ["diag", "spherical", "full", "tied"])
def test_covariances_alone_use_the_posteriors(ct):
    """params with "c" but not "m": hmmlearn 0.3.3 then leaves the occupation
    counts and first moments at zero (hmmlearn issue #569, fix proposed in
    #573), so its covariance update divides the prior by itself; here the
    update is the M-step of the formulas with the real statistics (what #573
    restores): checked against numpy from the posteriors."""
    k, d = 2, 2
    X = _data(7, n=60)
    cp, cw, mp, mw = 0.5, 4.0, 1.0, 2.0
    m = GaussianHMM(k, ct, n_iter=1, params="c", init_params="", covars_prior=cp, covars_weight=cw, means_prior=mp,
                    means_weight=mw)
    m.startprob_, m.transmat_, m.means_ = [0.6, 0.4], [[0.9, 0.1], [0.2, 0.8]], [[0.0, 0.0], [3.0, 2.0]]
    m.covars_ = {"diag": np.ones((k, d)), "spherical": np.ones(k), "full": np.array([np.eye(d)] * k), "tied": np.eye(d)}[ct]
    mu = m.means_.copy()
    _, g = m.score_samples(X)
    m.fit(X)
    n = g.sum(0)
    np.testing.assert_allclose(m.means_, mu)  # not updated
    if ct in ("diag", "spherical"):
        c_n = mw * (mu - mp) ** 2 + g.T @ X**2 - 2 * mu * (g.T @ X) + mu**2 * n[:, None]
        want = (cp + c_n) / (max(cw - 1, 0) + n[:, None])
        got = m._covars_
        if ct == "spherical":
            want = np.tile(want.mean(1)[:, None], (1, d))
    else:
        c_n = np.array([mw * np.outer(mu[i] - mp, mu[i] - mp) + (g[:, i, None] * (X - mu[i])).T @ (X - mu[i])
                        for i in range(k)])
        cvw = max(cw - d, 0)
        want = (cp + c_n.sum(0)) / (cvw + n.sum()) if ct == "tied" else (cp + c_n) / (cvw + n[:, None, None])
        got = m._covars_
    np.testing.assert_allclose(got, want, rtol=1e-10)


def _random_config(rs, letters):
    params = "".join(c for c in letters if rs.rand() < 0.7) or letters[-1]
    if "c" in params and "m" not in params:  # hmmlearn issue #569 (tested apart above)
        params = params.replace("c", "mc")
    init = "".join(c for c in letters if rs.rand() < 0.7)
    lengths = list(rs.randint(1, 30, size=rs.randint(1, 4)))
    return params, init, lengths


@pytest.mark.parametrize("seed", range(4))
def test_randomised_configurations_match_hmmlearn(seed):
    """Random covariance types, sizes, params / init_params letters, priors
    and ragged lengths; a first fit, then a refit with other init_params:
    EM histories, parameters, scores and MAP paths equal hmmlearn's."""
    import logging

    logging.disable(logging.WARNING)
    try:
        rs = np.random.RandomState(seed)
        for _ in range(4):
            ct = rs.choice(COV_TYPES)
            k, d = rs.randint(1, 5), rs.randint(1, 4)
            params, init, lengths = _random_config(rs, "stmc")
            kw = dict(n_iter=3, tol=-np.inf, random_state=int(rs.randint(100)), params=params,
                      startprob_prior=float(rs.choice([1.0, 2.0])), transmat_prior=float(rs.choice([1.0, 3.0])),
                      means_prior=float(rs.choice([0, 1.0])), means_weight=float(rs.choice([0, 2.0])),
                      covars_prior=float(rs.choice([1e-2, 0.5])), covars_weight=float(rs.choice([1, 4])),
                      min_covar=float(rs.choice([1e-3, 0.1])))
            X = rs.normal(size=(sum(lengths), d)) + np.repeat(rs.normal(size=(len(lengths), d)) * 3, lengths, axis=0)
            if len(X) < k:
                continue
            res = []
            for mod in (hmmlearn_hmm, rbe_hmm):
                m = mod.GaussianHMM(k, ct, **kw).fit(X, lengths)
                m.init_params, m.n_iter = init, 2
                m.fit(X, lengths)
                res.append([list(m.monitor_.history), m.means_, m._covars_, m.transmat_, m.startprob_,
                            m.score(X, lengths), m.decode(X, lengths, algorithm="map")[1]])
            for i, (a, b) in enumerate(zip(*res)):
                np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-9, err_msg=f"{ct} k={k} d={d} {params} {init} #{i}")
            params, init, lengths = _random_config(rs, "ste")
            kw = dict(n_iter=3, tol=-np.inf, random_state=int(rs.randint(100)), params=params,
                      startprob_prior=float(rs.choice([1.0, 2.0])), transmat_prior=float(rs.choice([1.0, 3.0])),
                      emissionprob_prior=float(rs.choice([1.0, 1.5])), n_features=[None, 6][rs.randint(2)])
            X = rs.randint(0, 5, size=(sum(lengths), 1))
            if len(X) < k:
                continue
            res = []
            for mod in (hmmlearn_hmm, rbe_hmm):
                m = mod.CategoricalHMM(k, **kw).fit(X, lengths)
                m.init_params, m.n_iter = init, 2
                m.fit(X, lengths)
                res.append([list(m.monitor_.history), m.emissionprob_, m.transmat_, m.startprob_, m.score(X, lengths),
                            m.decode(X, lengths, algorithm="map")[1]])
            for i, (a, b) in enumerate(zip(*res)):
                np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-9, err_msg=f"categorical k={k} {params} {init} #{i}")
    finally:
        logging.disable(logging.NOTSET)
