"""GaussianHMM / CategoricalHMM against hmmlearn (float64): log-likelihoods,
posteriors, Viterbi paths, EM updates; hmmlearn's golden two-state example;
EM never decreases the likelihood; validation errors that change nothing."""
import numpy as np
import pytest

import rbe
from rbe.errors import ArgumentError, ShapeError
from rbe.hmm import CategoricalHMM, GaussianHMM

hmmlearn_hmm = pytest.importorskip("hmmlearn.hmm")

LENGTHS = [1, 23, 6, 1, 17]


def random_params(k, d, ct, seed):
    r = np.random.RandomState(seed)
    sp = r.dirichlet(np.ones(k))
    tm = r.dirichlet(np.ones(k), size=k)
    means = r.normal(size=(k, d)) * 2
    if ct == "spherical":
        cov = r.uniform(0.5, 2.0, size=k)
    elif ct == "diag":
        cov = r.uniform(0.5, 2.0, size=(k, d))
    else:
        def spd():
            a = r.normal(size=(d, d)) / np.sqrt(d)
            return a @ a.T + 0.5 * np.eye(d)
        cov = spd() if ct == "tied" else np.array([spd() for _ in range(k)])
    return sp, tm, means, cov


def pair(k, d, ct, seed, **kw):
    sp, tm, means, cov = random_params(k, d, ct, seed)
    ours = GaussianHMM(k, covariance_type=ct, init_params="", **kw)
    ref = hmmlearn_hmm.GaussianHMM(k, covariance_type=ct, init_params="", **kw)
    for m in (ours, ref):
        m.startprob_, m.transmat_, m.means_, m.covars_ = sp, tm, means, cov
    return ours, ref


def data(ref, seed, lengths=LENGTHS):
    parts = [ref.sample(n, random_state=seed + i)[0] for i, n in enumerate(lengths)]
    return np.concatenate(parts)


def path_logprob(m, X, path, lengths):
    """log P(X, path) under hmmlearn's model (tie-tolerant Viterbi comparison)."""
    le = m._compute_log_likelihood(X)
    out, s = 0.0, 0
    for n in lengths:
        z = path[s:s + n]
        out += np.log(m.startprob_[z[0]]) + le[s, z[0]]
        for t in range(1, n):
            out += np.log(m.transmat_[z[t - 1], z[t]]) + le[s + t, z[t]]
        s += n
    return out


@pytest.mark.parametrize("ct", ["diag", "spherical", "full", "tied"])
@pytest.mark.parametrize("k,d", [(2, 1), (5, 1), (50, 1), (2, 80), (5, 80), (50, 80)])
def test_inference_parity(k, d, ct):
    ours, ref = pair(k, d, ct, seed=k * 100 + d)
    X = data(ref, seed=3)
    assert ours.score(X, LENGTHS) == pytest.approx(ref.score(X, LENGTHS), rel=1e-10)
    lp, post = ours.score_samples(X, LENGTHS)
    rlp, rpost = ref.score_samples(X, LENGTHS)
    assert lp == pytest.approx(rlp, rel=1e-10)
    np.testing.assert_allclose(post, rpost, atol=1e-8)
    np.testing.assert_allclose(ours.predict_proba(X, LENGTHS), rpost, atol=1e-8)
    vlp, path = ours.decode(X, LENGTHS)
    rvlp, rpath = ref.decode(X, LENGTHS)
    assert vlp == pytest.approx(rvlp, rel=1e-10)
    if not np.array_equal(path, rpath):  # ties: the same joint probability
        assert path_logprob(ref, X, path, LENGTHS) == pytest.approx(rvlp, rel=1e-12)
    np.testing.assert_array_equal(ours.predict(X, LENGTHS), path)
    mlp, mpath = ours.decode(X, LENGTHS, algorithm="map")
    rmlp, rmpath = ref.decode(X, LENGTHS, algorithm="map")
    assert mlp == pytest.approx(rmlp, rel=1e-9)
    np.testing.assert_array_equal(mpath, rmpath)
    np.testing.assert_allclose(ours.covars_, ref.covars_)


@pytest.mark.parametrize("ct", ["diag", "spherical", "full", "tied"])
def test_em_parity_and_monotone(ct):
    k, d = 4, 3
    ours, ref = pair(k, d, ct, seed=7, n_iter=6, tol=-np.inf)
    X = data(ref, seed=11, lengths=[1, 40, 25, 1, 33])
    lengths = [1, 40, 25, 1, 33]
    ours.fit(X, lengths)
    ref.fit(X, lengths)
    h, rh = list(ours.monitor_.history), list(ref.monitor_.history)
    assert len(h) == 6
    np.testing.assert_allclose(h, rh, rtol=1e-9)
    assert all(b >= a - 1e-9 * abs(a) for a, b in zip(h, h[1:])), h
    for name in ("startprob_", "transmat_", "means_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-7, atol=1e-10, err_msg=name)
    # hmmlearn keeps spherical covariances tiled to (K, D) after its M-step (so its covars_ then has the
    # wrong shape); compare the per-state variances
    rc = ref._covars_[:, 0] if ct == "spherical" else ref.covars_
    oc = ours._covars if ct == "spherical" else ours.covars_
    np.testing.assert_allclose(oc, rc, rtol=1e-7, atol=1e-10, err_msg="covars_")
    assert ours.monitor_.converged


def test_fit_with_initialisation_and_convergence():
    ref = hmmlearn_hmm.GaussianHMM(3, init_params="")
    ref.startprob_, ref.transmat_ = [0.6, 0.3, 0.1], [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]
    ref.means_, ref.covars_ = [[0.0, 0.0], [3.0, 3.0], [-3.0, 3.0]], np.full((3, 2), 0.5)
    X = data(ref, seed=1, lengths=[50, 80, 1])
    m = GaussianHMM(3, n_iter=100, tol=1e-4, random_state=0).fit(X, [50, 80, 1])
    assert m.monitor_.converged and m.monitor_.iter < 100
    h = list(m.monitor_.history)
    assert all(b >= a - 1e-8 for a, b in zip(h, h[1:]))
    r = hmmlearn_hmm.GaussianHMM(3, n_iter=100, tol=1e-4, random_state=0).fit(X, [50, 80, 1])
    assert m.score(X, [50, 80, 1]) == pytest.approx(r.score(X, [50, 80, 1]), rel=1e-6)


def test_golden_two_state_example():
    # hmmlearn's tests/test_base.py (Wikipedia's forward-backward example) as a CategoricalHMM
    m = CategoricalHMM(2)
    m.startprob_ = [0.5, 0.5]
    m.transmat_ = [[0.7, 0.3], [0.3, 0.7]]
    m.emissionprob_ = [[0.9, 0.1], [0.2, 0.8]]
    X = np.array([[0], [0], [1], [0], [0]])
    assert round(m.score(X), 4) == -3.3725
    lp, post = m.score_samples(X)
    np.testing.assert_allclose(post, [[0.8673, 0.1327], [0.8204, 0.1796], [0.3075, 0.6925], [0.8204, 0.1796],
                                      [0.8673, 0.1327]], atol=1e-4)
    vlp, path = m.decode(X)
    assert path.tolist() == [0, 0, 1, 0, 0]
    assert round(vlp, 4) == -4.4590


def test_categorical_parity_and_em():
    r = np.random.RandomState(0)
    k, m_sym = 5, 7
    sp, tm, ep = r.dirichlet(np.ones(k)), r.dirichlet(np.ones(k), size=k), r.dirichlet(np.ones(m_sym), size=k)
    ours = CategoricalHMM(k, init_params="", n_iter=5, tol=-np.inf)
    ref = hmmlearn_hmm.CategoricalHMM(k, init_params="", n_iter=5, tol=-np.inf)
    for mm in (ours, ref):
        mm.startprob_, mm.transmat_, mm.emissionprob_ = sp, tm, ep
    lengths = [1, 30, 12, 1]
    X = np.concatenate([ref.sample(n, random_state=i)[0] for i, n in enumerate(lengths)])
    assert ours.score(X, lengths) == pytest.approx(ref.score(X, lengths), rel=1e-11)
    np.testing.assert_array_equal(ours.predict(X, lengths), ref.predict(X, lengths))
    ours.fit(X, lengths)
    ref.fit(X, lengths)
    np.testing.assert_allclose(list(ours.monitor_.history), list(ref.monitor_.history), rtol=1e-10)
    np.testing.assert_allclose(ours.emissionprob_, ref.emissionprob_, rtol=1e-8)
    np.testing.assert_allclose(ours.transmat_, ref.transmat_, rtol=1e-8)


def test_left_to_right_keeps_zeros():
    k = 4
    m = GaussianHMM(k, init_params="mc", params="stmc", n_iter=5, random_state=0)
    m.startprob_ = [1.0, 0, 0, 0]
    m.transmat_ = [[0.5, 0.5, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0.5, 0.5], [0, 0, 0, 1.0]]
    X = np.concatenate([np.random.RandomState(1).normal(loc=i, size=(10, 2)) for i in range(4)])
    m.fit(X)
    assert (m.transmat_[np.tril_indices(k, -1)] == 0).all() and (m.startprob_[1:] == 0).all()
    assert np.isfinite(m.score(X))


def test_sample_matches_hmmlearn_draws():
    ours, ref = pair(3, 2, "diag", seed=4)
    Xo, Zo = ours.sample(20, random_state=5)
    Xr, Zr = ref.sample(20, random_state=5)
    np.testing.assert_array_equal(Zo, Zr)
    np.testing.assert_allclose(Xo, Xr)


def test_gradient_fit_increases_likelihood():
    ours, ref = pair(3, 2, "diag", seed=8)
    X = data(ref, seed=2, lengths=[40, 1, 30])
    start = GaussianHMM(3, n_iter=1, random_state=0).fit(X, [40, 1, 30])
    before = start.score(X, [40, 1, 30])
    start.n_iter, start.init_params = 60, ""
    start.fit(X, [40, 1, 30], optimizer=lambda p: rbe.optim.Adam(p, lr=0.05))
    after = start.score(X, [40, 1, 30])
    assert after > before + 1.0
    assert np.allclose(start.transmat_.sum(1), 1) and (start.covars_ > -1e-12).all()
    c = CategoricalHMM(2, n_iter=40, random_state=0)
    Xc = np.array([[0], [0], [1], [0], [2], [2], [1], [0]] * 5)
    c.fit(Xc, optimizer=lambda p: rbe.optim.Adam(p, lr=0.1))
    assert np.allclose(c.emissionprob_.sum(1), 1) and np.isfinite(c.score(Xc))


def test_bad_input_is_refused_and_changes_nothing():
    ours, ref = pair(3, 2, "diag", seed=2)
    X = data(ref, seed=0, lengths=[10, 5])
    names = ("startprob_", "transmat_", "means_", "covars_")
    state = {n: getattr(ours, n).copy() for n in names}
    good_score = ours.score(X, [10, 5])
    # as hmmlearn, the probabilities and means are stored as set and checked when used: every method
    # that uses them refuses them with an error naming the attribute, and changes nothing
    bad_values = [
        ("startprob_", [0.5, 0.6, -0.1], ArgumentError, r"startprob_\[2\] = -0.1 is negative"),
        ("startprob_", [0.5, 0.6, 0.1], ArgumentError, "startprob_ must sum to 1"),
        ("transmat_", [[0.5, 0.5, 0.1]] * 3, ArgumentError, "transmat_ must sum to 1 along each row"),
        ("transmat_", np.eye(2), ShapeError, r"transmat_ must have shape \(3, 3\)"),
        ("means_", np.ones((2, 2)), ShapeError, "means_ must have shape"),
        ("means_", [[0, np.nan]] * 3, ArgumentError, "means_ contains NaN"),
    ]
    uses = [lambda: ours.score(X, [10, 5]), lambda: ours.score_samples(X), lambda: ours.predict_proba(X),
            lambda: ours.decode(X), lambda: ours.decode(X, algorithm="map"), lambda: ours.predict(X),
            lambda: ours.sample(5, random_state=0), lambda: ours.aic(X), lambda: ours.bic(X),
            lambda: ours._compute_log_likelihood(X), lambda: ours.fit(X, [10, 5])]
    for name, value, err, msg in bad_values:
        ours_value = getattr(ours, name)
        setattr(ours, name, value)
        np.testing.assert_array_equal(getattr(ours, name), np.asarray(value, dtype=float))
        assert getattr(ours, name).dtype == np.float64
        stored = getattr(ours, name).copy()
        for use in uses:
            with pytest.raises(err, match=msg):
                use()
            np.testing.assert_array_equal(getattr(ours, name), stored, err_msg=name)
        assert len(ours.monitor_.history) == 0
        setattr(ours, name, ours_value)
    # get_stationary_distribution uses transmat_ only
    ours.transmat_ = np.full((3, 3), 0.5)
    with pytest.raises(ArgumentError, match="transmat_ must sum to 1"):
        ours.get_stationary_distribution()
    ours.transmat_ = state["transmat_"]
    # only what cannot become a float array is refused at assignment, naming the attribute
    for name in ("startprob_", "transmat_", "means_"):
        with pytest.raises(ArgumentError, match=f"{name} must be convertible to a float array"):
            setattr(ours, name, "ab")
        with pytest.raises(ArgumentError, match=name):
            setattr(ours, name, [[1.0, 2.0], [3.0]])
    assert ours.score(X, [10, 5]) == good_score
    with pytest.raises(ShapeError, match="covars_"):
        ours.covars_ = np.ones((3, 2, 2))
    with pytest.raises(ArgumentError, match="lengths"):
        ours.fit(X, [10, 4])
    with pytest.raises(ArgumentError, match="lengths"):
        ours.score(X, [10, 6])
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*row 3, column 1"):
        ours.fit(bad, [10, 5])
    with pytest.raises(ArgumentError, match="at least as many samples as states"):
        ours.fit(X[:2])
    with pytest.raises(ShapeError, match="features"):
        ours.score(np.ones((4, 3)))
    for n, v in state.items():
        np.testing.assert_array_equal(getattr(ours, n), v, err_msg=n)
    assert len(ours.monitor_.history) == 0
    c = CategoricalHMM(2, init_params="")  # fit keeps (and so checks) the hand-set values
    c.startprob_, c.transmat_ = [0.5, 0.5], np.full((2, 2), 0.5)
    c.emissionprob_ = [[0.5, 0.6], [0.5, 0.5]]
    for use in (lambda: c.score(np.array([[0]])), lambda: c.predict(np.array([[0]])), lambda: c.sample(3),
                lambda: c.fit(np.array([[0], [1], [1]]))):
        with pytest.raises(ArgumentError, match="emissionprob_ must sum to 1 along each row"):
            use()
        np.testing.assert_array_equal(c.emissionprob_, [[0.5, 0.6], [0.5, 0.5]])
        assert c.n_features is None
    with pytest.raises(ArgumentError, match="emissionprob_ must be convertible"):
        c.emissionprob_ = [["x", 1]]
    c = CategoricalHMM(2)
    with pytest.raises(ArgumentError, match="not fitted"):
        c.score(np.array([[0]]))


def test_categorical_em_never_decreases_the_likelihood():
    ref = hmmlearn_hmm.CategoricalHMM(3, init_params="")
    ref.startprob_ = [0.5, 0.3, 0.2]
    ref.transmat_ = [[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.2, 0.2, 0.6]]
    ref.emissionprob_ = [[0.7, 0.2, 0.05, 0.05], [0.1, 0.1, 0.4, 0.4], [0.25, 0.25, 0.25, 0.25]]
    lengths = [60, 1, 35, 80]
    X = np.concatenate([ref.sample(n, random_state=i)[0] for i, n in enumerate(lengths)])
    for seed in range(3):
        m = CategoricalHMM(3, n_iter=60, tol=1e-9, random_state=seed).fit(X, lengths)
        h = np.array(m.monitor_.history)
        assert len(h) >= 10, len(h)
        assert np.all(np.diff(h) >= -1e-9 * np.abs(h[1:])), np.diff(h).min()
        assert h[-1] > h[0] + 1.0  # it does climb


@pytest.mark.parametrize("gradient", [False, True])
def test_fit_with_progress_bar_gives_the_same_result(gradient, capsys):
    _, ref = pair(3, 2, "diag", seed=4)
    X = data(ref, seed=2, lengths=[40, 30])
    kw = dict(optimizer=lambda p: rbe.optim.Adam(p, lr=0.05)) if gradient else {}
    fits = []
    for progress in (False, True):
        m = GaussianHMM(3, n_iter=8, tol=-np.inf, random_state=0)
        m.fit(X, [40, 30], progress=progress, **kw)
        err = capsys.readouterr().err
        fits.append((m, err))
    (quiet, quiet_err), (bar, bar_err) = fits
    assert quiet_err == "" and ("GaussianHMM EM" if not gradient else "GaussianHMM gradient fit") in bar_err
    assert "8/8 [" in bar_err  # the bar ends full when the loop stops on its last iteration
    assert list(quiet.monitor_.history) == list(bar.monitor_.history) and len(bar.monitor_.history) == 8
    for name in ("startprob_", "transmat_", "means_", "covars_"):
        np.testing.assert_array_equal(getattr(quiet, name), getattr(bar, name), err_msg=name)
