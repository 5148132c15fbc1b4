"""NeuralHMM / ScoreHMM (training, checkpoint, context), streaming equal to
one-shot (f64: log-likelihoods 1e-9 relative; posteriors, which are
probabilities summed by the matrix-product steps, 1e-9 relative + 1e-10
absolute), fixed-lag smoothing, checkpointed smoothing,
the overlap-window approximation's reported error."""
import numpy as np
import pytest

import rbe
from rbe.errors import ArgumentError, ShapeError
from rbe.hmm import (GaussianHMM, NeuralHMM, ScoreHMM, StreamingHMMProcessor, checkpointed_smooth, hmm_posteriors,
                     overlap_window_posteriors)
from rbe.utils.checkpoint import checkpoint


def T64(x):
    return rbe.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


def gaussian_model(k=4, d=3, seed=0):
    r = np.random.RandomState(seed)
    m = GaussianHMM(k, init_params="")
    m.startprob_ = r.dirichlet(np.ones(k))
    m.transmat_ = r.dirichlet(np.ones(k) * 0.5, size=k)
    m.means_ = r.normal(size=(k, d)) * 3
    m.covars_ = r.uniform(0.5, 1.5, size=(k, d))
    return m


def test_neural_hmm_density_is_normalised_and_trains():
    rbe.manual_seed(0)
    m = NeuralHMM(3, 1, dtype=rbe.float64)
    # a normalised density: for T = 1 and a single state the likelihood integrates to 1 over x
    xs = np.linspace(-30, 30, 6001)
    ll = m.log_likelihood(T64(xs.reshape(-1, 1, 1))).detach().numpy()
    assert np.trapezoid(np.exp(ll), xs) == pytest.approx(1.0, rel=1e-6)
    # training raises the likelihood of data from a known HMM
    g = gaussian_model(3, 2, seed=1)
    X = np.stack([g.sample(30, random_state=i)[0] for i in range(8)])
    model = NeuralHMM(3, 2, dtype=rbe.float64)
    opt = rbe.optim.Adam(model.parameters(), lr=0.05)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = -model.log_likelihood(T64(X)).mean()
        loss.backward()
        opt.step()
        first = float(loss) if first is None else first
    assert float(loss) < first - 5


def test_forward_outputs_and_context():
    rbe.manual_seed(1)
    m = NeuralHMM(4, 3, context_dim=5, hidden_dim=16, context_transitions=True, dtype=rbe.float64)
    x, c = rbe.randn(2, 7, 3, dtype=rbe.float64), rbe.randn(2, 7, 5, dtype=rbe.float64)
    gamma, la, lb = m(x, c, lengths=[7, 3])
    g = gamma.detach().numpy()
    np.testing.assert_allclose(g[0].sum(1), 1, atol=1e-12)
    np.testing.assert_allclose(g[1, :3].sum(1), 1, atol=1e-12)
    assert (g[1, 3:] == 0).all()
    ll = m.log_likelihood(x, c, lengths=[7, 3])
    ll.sum().backward()
    assert all(p.grad is not None and np.isfinite(p.grad.numpy()).all() for p in m.parameters())
    # the context matters: a different context changes the likelihood
    c2 = rbe.randn(2, 7, 5, dtype=rbe.float64)
    assert not np.allclose(m.log_likelihood(x, c2).detach().numpy(), m.log_likelihood(x, c).detach().numpy())
    with pytest.raises(ShapeError, match="context"):
        m.log_likelihood(x)
    with pytest.raises(ShapeError, match="observation_dim"):
        m.log_likelihood(rbe.randn(2, 7, 4, dtype=rbe.float64), c)


def test_works_under_checkpoint():
    rbe.manual_seed(2)
    m = NeuralHMM(3, 2, context_dim=4, hidden_dim=8, dtype=rbe.float64)
    x, c = rbe.randn(2, 6, 2, dtype=rbe.float64), rbe.randn(2, 6, 4, dtype=rbe.float64).requires_grad_()
    m.log_likelihood(x, c).sum().backward()
    ref = [p.grad.numpy().copy() for p in m.parameters()] + [c.grad.numpy().copy()]
    m.zero_grad()
    c.grad = None
    checkpoint(lambda xx, cc: m.log_likelihood(xx, cc).sum(), x, c).backward()
    got = [p.grad.numpy() for p in m.parameters()] + [c.grad.numpy()]
    for a, b in zip(ref, got):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


def test_score_hmm_is_the_simple_model():
    rbe.manual_seed(3)
    m = ScoreHMM(3, 4, dtype=rbe.float64)
    x = rbe.randn(2, 5, 4, dtype=rbe.float64)
    pi, a, e = m.hmm_parameters(x)
    np.testing.assert_allclose(e.detach().numpy(), m.emission(x).detach().numpy())
    np.testing.assert_allclose(np.exp(a.detach().numpy()).sum(1), 1)
    assert m.log_likelihood(x).shape == (2,)


def test_score_hmm_logits_and_likelihood_as_documented():
    """Initial / transition logits go through log-softmax (so a constant
    added to the initial logits or to one row of the transition logits
    changes nothing), and ``log_likelihood`` is the sum over every state path
    of the emission scores plus log-probabilities (brute force, T = 3)."""
    rbe.manual_seed(4)
    k, d, t = 3, 2, 3
    m = ScoreHMM(k, d, dtype=rbe.float64)
    r = np.random.RandomState(0)
    il, tl = r.normal(size=k), r.normal(size=(k, k))
    with rbe.no_grad():
        m.initial_logits.copy_(T64(il))
        m.transition_logits.copy_(T64(tl))
    x = T64(r.normal(size=(2, t, d)))
    pi, a, e = (v.detach().numpy() for v in m.hmm_parameters(x))
    np.testing.assert_allclose(pi, il - np.log(np.exp(il).sum()), rtol=1e-13)
    np.testing.assert_allclose(a, tl - np.log(np.exp(tl).sum(1, keepdims=True)), rtol=1e-13)
    brute = []
    for b in range(2):
        paths = [pi[z[0]] + e[b, 0, z[0]] + sum(a[z[i - 1], z[i]] + e[b, i, z[i]] for i in range(1, t))
                 for z in np.ndindex(*(k,) * t)]
        brute.append(np.logaddexp.reduce(paths))
    ll = m.log_likelihood(x).detach().numpy()
    np.testing.assert_allclose(ll, brute, rtol=1e-12)
    with rbe.no_grad():
        m.initial_logits.copy_(T64(il + 5.0))
        m.transition_logits.copy_(T64(tl + np.array([[1.0], [-2.0], [7.0]])))
    np.testing.assert_allclose(m.log_likelihood(x).detach().numpy(), ll, rtol=1e-12)
    with rbe.no_grad():
        m.transition_logits.copy_(T64(tl + np.array([[0.0, 3.0, 0.0]] * 3)))  # not a per-row constant
    assert np.abs(m.log_likelihood(x).detach().numpy() - ll).max() > 1e-3


def test_score_hmm_trains():
    """An optimizer raises the score of data from a known HMM, and every
    parameter (initial and transition logits included) gets a gradient."""
    rbe.manual_seed(5)
    g = gaussian_model(3, 2, seed=2)
    X = T64(np.stack([g.sample(25, random_state=i)[0] for i in range(6)]))
    m = ScoreHMM(3, 2, dtype=rbe.float64)
    opt = rbe.optim.Adam(m.parameters(), lr=0.05)
    before = float(m.log_likelihood(X).mean())
    for i in range(40):
        opt.zero_grad()
        loss = -m.log_likelihood(X).mean()
        loss.backward()
        if i == 0:
            for name, p in m.named_parameters():
                assert p.grad is not None and np.abs(p.grad.numpy()).max() > 0, name
        opt.step()
    after = float(m.log_likelihood(X).mean())
    assert after > before + 1.0
    np.testing.assert_allclose(np.exp(m.hmm_parameters(X)[1].detach().numpy()).sum(1), 1, rtol=1e-12)


def test_streaming_checks_hand_set_probabilities_and_changes_nothing():
    g = gaussian_model()
    X = g.sample(40, random_state=1)[0]
    proc = StreamingHMMProcessor(g, lag=2)
    first = proc.process_chunk(X[:20])
    good = g.transmat_.copy()
    g.transmat_ = good * 2  # accepted when set, as in hmmlearn; refused when used
    with pytest.raises(ArgumentError, match="transmat_ must sum to 1"):
        proc.process_chunk(X[20:])
    g.transmat_ = good
    rest = proc.process_chunk(X[20:])
    np.testing.assert_allclose(first.log_likelihood, g.score(X[:20]), rtol=1e-9)
    np.testing.assert_allclose(rest.log_likelihood, g.score(X), rtol=1e-9)  # the refused chunk left no trace


@pytest.mark.parametrize("lag", [0, 1, 5])
def test_streaming_equals_one_shot(lag):
    g = gaussian_model()
    X = g.sample(200, random_state=3)[0]
    pi, a, e = np.log(g.startprob_), np.log(g.transmat_), g._log_emissions(X)
    full = hmm_posteriors(T64(pi), T64(a), T64(e[None]))
    ll_full = float(full.log_likelihood.numpy()[0])
    la = full.log_alpha.numpy()[0]
    filt_full = np.exp(la - np.logaddexp.reduce(la, axis=1, keepdims=True))
    proc = StreamingHMMProcessor(g, lag=lag)
    sizes = [1, 7, 1, 50, 3, 90, 48]
    pos, filt, smooth, smooth_start = 0, [], [], []
    for n in sizes:
        r = proc.process_chunk(X[pos:pos + n])
        pos += n
        prefix = hmm_posteriors(T64(pi), T64(a), T64(e[None, :pos])).log_likelihood.numpy()[0]
        assert r.log_likelihood == pytest.approx(prefix, rel=1e-9)
        filt.append(r.filtered)
        smooth.append(r.smoothed)
        smooth_start.append(r.smoothed_start)
    assert r.log_likelihood == pytest.approx(ll_full, rel=1e-9)
    np.testing.assert_allclose(np.concatenate(filt), filt_full, rtol=1e-9, atol=1e-10)
    sm = np.concatenate(smooth)
    assert len(sm) == 200 - lag
    for s in range(200 - lag):  # exactly P(z_s | x_0..x_{s+lag}), not more
        ref = hmm_posteriors(T64(pi), T64(a), T64(e[None, :s + lag + 1])).gamma.numpy()[0, s]
        np.testing.assert_allclose(sm[s], ref, rtol=1e-9, atol=1e-10)
    rest, start = proc.flush()
    assert start == 200 - lag and len(rest) == lag
    if lag:
        np.testing.assert_allclose(rest, full.gamma.numpy()[0, 200 - lag:], rtol=1e-9, atol=1e-10)
    proc.reset()
    assert proc.process_chunk(X[:10]).log_likelihood == pytest.approx(
        hmm_posteriors(T64(pi), T64(a), T64(e[None, :10])).log_likelihood.numpy()[0], rel=1e-12)


def test_streaming_a_neural_model():
    rbe.manual_seed(4)
    m = NeuralHMM(3, 2, dtype=rbe.float64)
    x = np.random.RandomState(0).normal(size=(40, 2))
    one = float(m.log_likelihood(T64(x[None])).detach().numpy()[0])
    p = StreamingHMMProcessor(m)
    for i in range(0, 40, 9):
        r = p.process_chunk(x[i:i + 9])
    assert r.log_likelihood == pytest.approx(one, rel=1e-9)


def test_checkpointed_smoothing_is_exact():
    g = gaussian_model(5, 2, seed=5)
    X = g.sample(1000, random_state=1)[0]
    pi, a, e = np.log(g.startprob_), np.log(g.transmat_), g._log_emissions(X)
    full = hmm_posteriors(T64(pi), T64(a), T64(e[None])).gamma.numpy()[0]
    for seg in (None, 1, 7, 1000):
        got = checkpointed_smooth(pi, a, e, segment=seg)
        np.testing.assert_allclose(got, full, rtol=1e-9, atol=1e-10)
    # emissions computed on demand
    got = checkpointed_smooth(pi, a, lambda s, t: g._log_emissions(X[s:t]), length=1000)
    np.testing.assert_allclose(got, full, rtol=1e-9, atol=1e-10)


def test_checkpointed_smoothing_holds_sqrt_t_memory():
    """The O(sqrt(T)) claim: emissions are asked for in segments of ceil(sqrt(T))
    rows, each row exactly twice, and the traced peak while the posteriors are
    streamed out is a small fraction of one (T, K) float64 lattice."""
    import math
    import tracemalloc

    from rbe.hmm import checkpointed_posteriors

    t, k = 40_000, 16
    rng = np.random.RandomState(3)
    a = np.log(rng.dirichlet(np.ones(k), size=k))
    pi = np.log(np.full(k, 1.0 / k))
    calls = []

    def emissions(s, e):
        calls.append((s, e))
        return np.random.RandomState(s).normal(size=(e - s, k))  # the same rows whenever asked

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        seen, last = 0, t
        for start, g in checkpointed_posteriors(pi, a, emissions, length=t):
            assert start + len(g) == last  # segments from the end, contiguous
            np.testing.assert_allclose(g.sum(1), 1.0, rtol=1e-12)
            seen, last = seen + len(g), start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == t and last == 0
    seg = math.ceil(math.sqrt(t))
    assert max(e - s for s, e in calls) <= seg
    counts = np.zeros(t, np.int64)
    for s, e in calls:
        counts[s:e] += 1
    assert (counts == 2).all()
    lattice = t * k * 8
    assert peak < lattice / 10, (peak, lattice)


def test_overlap_window_is_labelled_approximate_with_its_error():
    g = gaussian_model(4, 1, seed=6)
    g.covars_ = np.full((4, 1), 6.0)  # ambiguous emissions: the context outside a window matters
    X = g.sample(600, random_state=2)[0]
    pi, a, e = np.log(g.startprob_), np.log(g.transmat_), g._log_emissions(X)
    exact = checkpointed_smooth(pi, a, e)
    r = overlap_window_posteriors(pi, a, e, window=40, overlap=5)
    diff = np.abs(r.posteriors - exact)
    assert r.max_abs_error == pytest.approx(diff.max())
    assert r.max_abs_error > 1e-6  # it is an approximation
    wide = overlap_window_posteriors(pi, a, e, window=300, overlap=100)
    assert wide.mean_total_variation < r.mean_total_variation


def _one_shot(m, x, c, stop):
    """The one-shot lattices of the model on frames ``[0, stop)``."""
    with rbe.no_grad():
        pi, a, e = m.hmm_parameters(T64(x[None, :stop]), None if c is None else T64(c[None, :stop]))
    return hmm_posteriors(pi, a, e)


@pytest.mark.parametrize("lag", [0, 1, 4])
@pytest.mark.parametrize("dynamic", [True, False])
def test_streaming_a_context_model_equals_one_shot(lag, dynamic):
    # context-dependent transitions (B, T-1, K, K): the step into a chunk's first frame comes from the
    # previous frame's context, exactly as in one pass over the whole stream
    rbe.manual_seed(5)
    m = NeuralHMM(4, 3, context_dim=2, hidden_dim=8, context_transitions=dynamic, dtype=rbe.float64)
    with rbe.no_grad():
        if dynamic:  # make the context's effect on the transitions large
            m.context_transitions.weight.mul_(6.0)
    r = np.random.RandomState(7)
    n = 60
    x, c = r.normal(size=(n, 3)), r.normal(size=(n, 2))
    full = _one_shot(m, x, c, n)
    if dynamic:
        # the per-step transitions really differ between steps, so a wrong boundary step would show
        assert _one_shot(m, x, c, 3).log_likelihood.numpy()[0] != pytest.approx(
            float(hmm_posteriors(*[v.detach() for v in m.hmm_parameters(T64(x[None, :3]), T64(np.roll(c, 1, 0)[None, :3]))])
                  .log_likelihood.numpy()[0]), rel=1e-3)
    la = full.log_alpha.numpy()[0]
    filt_full = np.exp(la - np.logaddexp.reduce(la, axis=1, keepdims=True))
    proc = StreamingHMMProcessor(m, lag=lag)
    proc.smoothing_batch = 7  # several batches in one call
    pos, filt, smooth = 0, [], []
    for size in [1, 1, 5, 2, 20, 1, 30]:
        res = proc.process_chunk(x[pos:pos + size], context=c[pos:pos + size])
        pos += size
        prefix = _one_shot(m, x, c, pos).log_likelihood.numpy()[0]
        assert res.log_likelihood == pytest.approx(prefix, rel=1e-9)
        filt.append(res.filtered)
        smooth.append(res.smoothed)
    assert pos == n
    assert res.log_likelihood == pytest.approx(float(full.log_likelihood.numpy()[0]), rel=1e-9)
    np.testing.assert_allclose(np.concatenate(filt), filt_full, rtol=1e-9, atol=1e-10)
    sm = np.concatenate(smooth)
    assert len(sm) == n - lag
    for s in range(0, n - lag):
        ref = _one_shot(m, x, c, s + lag + 1).gamma.numpy()[0, s]
        np.testing.assert_allclose(sm[s], ref, rtol=1e-9, atol=1e-10)
    rest, start = proc.flush()
    assert start == n - lag and len(rest) == lag
    np.testing.assert_allclose(rest, full.gamma.numpy()[0, n - lag:], rtol=1e-9, atol=1e-10)


def test_streaming_context_errors_change_nothing():
    rbe.manual_seed(6)
    m = NeuralHMM(3, 2, context_dim=2, hidden_dim=4, context_transitions=True, dtype=rbe.float64)
    r = np.random.RandomState(1)
    x, c = r.normal(size=(10, 2)), r.normal(size=(10, 2))
    proc = StreamingHMMProcessor(m, lag=2)
    first = proc.process_chunk(x[:4], context=c[:4])
    with pytest.raises(ArgumentError, match="context"):
        proc.process_chunk(x[4:])
    with pytest.raises(ShapeError, match="context"):
        proc.process_chunk(x[4:], context=c[4:9])
    with pytest.raises(ShapeError, match="context"):
        proc.process_chunk(x[4:], context=c[4:, :1])
    assert proc.frames_seen == 4
    last = proc.process_chunk(x[4:], context=c[4:])
    assert last.log_likelihood == pytest.approx(float(_one_shot(m, x, c, 10).log_likelihood.numpy()[0]), rel=1e-9)
    assert first.log_likelihood == pytest.approx(float(_one_shot(m, x, c, 4).log_likelihood.numpy()[0]), rel=1e-9)
    with pytest.raises(ArgumentError, match="context"):
        StreamingHMMProcessor(gaussian_model(3, 2)).process_chunk(x, context=c)


def test_float32_neural_hmm_at_d80_within_relative_tolerance_of_float64():
    # the origin's size (K = 50, D = 80): log-likelihoods of scale 1e4, so the tolerance is relative
    rbe.manual_seed(8)
    m64 = NeuralHMM(50, 80, dtype=rbe.float64)
    m32 = NeuralHMM(50, 80, dtype=rbe.float32)
    with rbe.no_grad():
        for p32, p64 in zip(m32.parameters(), m64.parameters()):
            p32.copy_(p64.to(rbe.float32))
    x = np.random.RandomState(3).normal(size=(4, 60, 80))
    ll64 = m64.log_likelihood(T64(x), lengths=[60, 1, 33, 60])
    ll32 = m32.log_likelihood(rbe.from_numpy(x.astype(np.float32)), lengths=[60, 1, 33, 60])
    assert ll32.dtype == rbe.float32
    a64, a32 = ll64.detach().numpy(), ll32.detach().numpy().astype(np.float64)
    assert np.abs(a64).min() > 100
    np.testing.assert_allclose(a32, a64, rtol=1e-6)  # measured: 3e-8
    g64 = m64(T64(x))[0].detach().numpy()
    g32 = m32(rbe.from_numpy(x.astype(np.float32)))[0].detach().numpy()
    np.testing.assert_allclose(g32, g64, atol=1e-4)  # measured: 6e-6
