"""The fused HMM ops from Python: brute-force enumeration (T <= 6), the
fused-op harness (composite, gradcheck/gradgradcheck, 1 vs 2 thread bits),
every transition shape, ragged lengths with 0 and 1, structural zeros without
NaN, errors that name the argument and change nothing."""
import itertools

import numpy as np
import pytest

import rbe
from rbe.errors import ArgumentError, DTypeError, ShapeError
from rbe.hmm import hmm_log_likelihood, hmm_posteriors, hmm_viterbi
from rbe.testing import check_fused_op


def log_norm(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True)))


def case(b, t, k, kind, seed, pi_per_seq=False, escale=2.0):
    r = np.random.default_rng(seed)
    pi = log_norm(r.normal(size=(b, k) if pi_per_seq else (k,)))
    shape = {"shared": (k, k), "perseq": (b, k, k), "perstep": (b, max(t - 1, 0), k, k)}[kind]
    a = log_norm(r.normal(size=shape))
    e = r.normal(size=(b, t, k)) * escale
    return pi, a, e


def trans(a, kind, bi, t):
    return {"shared": lambda: a, "perseq": lambda: a[bi], "perstep": lambda: a[bi, t]}[kind]()


def brute(pi, a, e, lens, kind):
    """log P(x), gamma, Viterbi path by enumerating every state sequence."""
    b, t, k = e.shape
    out = []
    for bi in range(b):
        n = lens[bi]
        p0 = pi[bi] if pi.ndim == 2 else pi
        if n == 0:
            out.append((0.0, np.zeros((0, k)), []))
            continue
        scores = {}
        for z in itertools.product(range(k), repeat=n):
            s = p0[z[0]] + e[bi, 0, z[0]]
            for tt in range(1, n):
                s += trans(a, kind, bi, tt - 1)[z[tt - 1], z[tt]] + e[bi, tt, z[tt]]
            scores[z] = s
        v = np.array(list(scores.values()))
        ll = np.logaddexp.reduce(v)
        g = np.zeros((n, k))
        for z, s in scores.items():
            g[np.arange(n), list(z)] += np.exp(s - ll)
        best = max(scores, key=lambda z: (scores[z], [-x for x in z]))
        out.append((ll, g, list(best)))
    return out


T64 = lambda x: rbe.from_numpy(np.ascontiguousarray(x, dtype=np.float64))  # noqa: E731


@pytest.mark.parametrize("kind", ["shared", "perseq", "perstep"])
@pytest.mark.parametrize("pi_per_seq", [False, True])
def test_against_enumeration(kind, pi_per_seq):
    pi, a, e = case(4, 6, 3, kind, 11, pi_per_seq)
    lens = [6, 1, 0, 4]
    ll = hmm_log_likelihood(T64(pi), T64(a), T64(e), lens).numpy()
    post = hmm_posteriors(T64(pi), T64(a), T64(e), lens, with_xi=True)
    path, lp = hmm_viterbi(T64(pi), T64(a), T64(e), lens)
    ref = brute(pi, a, e, lens, kind)
    for bi, (rll, rg, rpath) in enumerate(ref):
        n = lens[bi]
        assert ll[bi] == pytest.approx(rll, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(post.gamma.numpy()[bi, :n], rg, rtol=1e-10, atol=1e-12)
        assert (post.gamma.numpy()[bi, n:] == 0).all()
        assert path.numpy()[bi, :n].tolist() == rpath
        assert (path.numpy()[bi, n:] == -1).all()
    np.testing.assert_allclose(post.log_likelihood.numpy(), ll, rtol=1e-13)


def composite_ll(pi, a, e, lens, kind):
    """The forward recursion written op by op (rbe.logsumexp per step)."""
    b, t, k = e.shape
    outs = []
    for bi in range(b):
        n = lens[bi]
        p0 = pi[bi] if pi.dim() == 2 else pi
        alpha = p0 + e[bi, 0]
        for tt in range(1, n):
            at = {"shared": lambda: a, "perseq": lambda: a[bi], "perstep": lambda: a[bi, tt - 1]}[kind]()
            alpha = rbe.logsumexp(alpha.unsqueeze(1) + at, dim=0) + e[bi, tt]
        outs.append(rbe.logsumexp(alpha, dim=0))
    return rbe.stack(outs)


@pytest.mark.parametrize("kind", ["shared", "perseq", "perstep"])
def test_harness_log_likelihood(kind):
    pi, a, e = case(3, 5, 3, kind, 5)
    lens = [5, 1, 3]
    check_fused_op(lambda p, a_, e_: hmm_log_likelihood(p, a_, e_, lens),
                   lambda p, a_, e_: composite_ll(p, a_, e_, lens, kind),
                   [T64(pi), T64(a), T64(e)], order=2)


def test_harness_posteriors_and_viterbi():
    pi, a, e = case(3, 5, 3, "perseq", 9)
    lens = [5, 2, 4]

    def fused(p, a_, e_):
        r = hmm_posteriors(p, a_, e_, lens, with_xi=True)
        return [r.gamma, r.xi, hmm_viterbi(p, a_, e_, lens).log_prob]

    def composite(p, a_, e_):
        # gamma = d ll / d log_e, xi = d ll / d log_A (the analytic identities), with create_graph
        ll = composite_ll(p, a_, e_, lens, "perseq")
        ge, ga = rbe.autograd.grad(ll.sum(), [e_, a_], create_graph=True)
        vp = hmm_viterbi(p.detach(), a_.detach(), e_.detach(), lens).path.numpy()
        rows = []
        for bi, n in enumerate(lens):
            z = vp[bi, :n]
            s = p[int(z[0])] + e_[bi, 0, int(z[0])]
            for tt in range(1, n):
                s = s + a_[bi, int(z[tt - 1]), int(z[tt])] + e_[bi, tt, int(z[tt])]
            rows.append(s)
        return [ge, ga, rbe.stack(rows)]

    check_fused_op(fused, composite, [T64(pi), T64(a), T64(e)], order=2)


def test_thread_bits_on_a_large_batch():
    from rbe.testing import check_thread_bits

    pi, a, e = case(64, 40, 7, "shared", 3)
    lens = list(np.random.default_rng(0).integers(1, 41, size=64))
    for f in (lambda p, a_, e_: hmm_log_likelihood(p, a_, e_, lens),
              lambda p, a_, e_: list(hmm_posteriors(p, a_, e_, lens, with_xi=True))[1:4]):
        check_thread_bits(f, [T64(pi), T64(a), T64(e)])


def test_structural_zeros_stay_exact_without_nan():
    k, t = 4, 6
    pi, a, e = case(2, t, k, "shared", 2)
    a = np.where(np.eye(k) + np.eye(k, k=1) > 0, a, -np.inf)
    a = log_norm(a)
    pi = np.array([0.0] + [-np.inf] * (k - 1))
    P, A, E = (T64(x).requires_grad_() for x in (pi, a, e))
    r = hmm_posteriors(P, A, E, [6, 3], with_xi=True)
    ref = brute(pi, a, e, [6, 3], "shared")
    for bi in range(2):
        assert r.log_likelihood.detach().numpy()[bi] == pytest.approx(ref[bi][0], rel=1e-12)
    la = r.log_alpha.detach().numpy()
    assert la[0, 0, 1] == -np.inf and la[0, 1, 2] == -np.inf
    (r.log_likelihood.sum() + r.gamma.sum() * 0.5).backward()
    for g in (P.grad, A.grad, E.grad):
        assert np.isfinite(g.numpy()).all()
    assert (A.grad.numpy()[~np.isfinite(a)] == 0).all()
    xi = r.xi.detach().numpy()
    assert (xi[:, ~np.isfinite(a)] == 0).all()


def test_float32_relative_to_float64():
    pi, a, e = case(4, 50, 10, "shared", 7, escale=30.0)
    ll64 = hmm_log_likelihood(T64(pi), T64(a), T64(e)).numpy()
    f = lambda x: rbe.from_numpy(x.astype(np.float32))  # noqa: E731
    ll32 = hmm_log_likelihood(f(pi), f(a), f(e)).numpy()
    assert ll32.dtype == np.float32
    np.testing.assert_allclose(ll32, ll64, rtol=2e-5)


def test_bad_input_names_the_argument_and_changes_nothing():
    pi, a, e = case(2, 4, 3, "shared", 1)
    P, A, E = T64(pi), T64(a), T64(e)
    before = [x.numpy().copy() for x in (P, A, E)]
    with pytest.raises(ShapeError, match="log_A"):
        hmm_log_likelihood(P, T64(a[:2]), E)
    with pytest.raises(ShapeError, match="log_pi"):
        hmm_posteriors(T64(pi[:2]), A, E)
    with pytest.raises(ArgumentError, match=r"lengths\[1\] = 5"):
        hmm_viterbi(P, A, E, [4, 5])
    with pytest.raises(DTypeError, match="log_pi"):
        hmm_log_likelihood(rbe.from_numpy(pi.astype(np.float32)), A, E)
    bad = e.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ArgumentError, match=r"log_emissions\[1, 2, 0\]"):
        hmm_log_likelihood(P, A, T64(bad))
    with pytest.raises(ValueError):
        hmm_log_likelihood(P, A, T64(bad))
    with pytest.raises(TypeError, match="lengths"):
        hmm_log_likelihood(P, A, E, [1.5, 2.0])
    for x, b in zip((P, A, E), before):
        np.testing.assert_array_equal(x.numpy(), b)
