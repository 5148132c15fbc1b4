"""Quasi-random and stratified draws of rbe.iclv (issue 15): scrambled Sobol
points are scipy's with the same seed, differ between seeds and keep the
stratification of a Sobol net (one point per dyadic interval per dimension,
per individual and over the first 2^m points, and the 2-d elementary
intervals of the first two dimensions) once the normal CDF maps them back to
(0, 1); the unscrambled option is scipy's unscrambled Sobol without its point
0; scrambled Halton is scipy's; MLHS has one point per stratum per individual
and dimension."""
import itertools
import warnings

import numpy as np
import pytest
from scipy.special import ndtr, ndtri
from scipy.stats import qmc

import rbe.iclv as iclv


def _cells(u, m):
    """The dyadic interval ``floor(u 2^m)`` of each point."""
    return np.floor(u * 2**m).astype(np.int64)


def _one_per_dyadic_interval(u, m):
    """Every interval ``[k 2^-m, (k+1) 2^-m)``, k < 2^m, holds exactly one of the 2^m points ``u``."""
    assert u.shape[0] == 2**m
    return sorted(_cells(u, m).tolist()) == list(range(2**m))


@pytest.mark.parametrize("N,R,L,seed,skip", [(8, 16, 3, 4, 0), (5, 7, 2, 123, 0), (3, 32, 4, 9, 64)])
def test_sobol_draws_are_scipys_scrambled_sobol_with_the_same_seed(N, R, L, seed, skip):
    dims = [f"e{i}" for i in range(L)]
    got = iclv.Draws(R, dims, kind="sobol", seed=seed, skip=skip).generate(N)
    eng = qmc.Sobol(d=L, scramble=True, seed=seed)
    if skip:
        eng.fast_forward(skip)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scipy: balance properties want powers of 2
        u = eng.random(N * R)
    # individual n takes points (n-1)R .. nR-1, then the normal quantile
    np.testing.assert_array_equal(got, ndtri(u).reshape(N, R, L))
    uni = iclv.Draws(R, dims, kind="sobol", seed=seed, skip=skip, distribution="uniform").generate(N)
    np.testing.assert_array_equal(uni, u.reshape(N, R, L))
    assert np.isfinite(got).all()
    assert iclv.Draws(R, dims, kind="sobol").scramble  # scrambled unless asked otherwise


def test_sobol_seeds_give_different_sets_each_a_valid_scrambled_sobol_net():
    N, m_ind, L = 8, 4, 3
    R = 2**m_ind
    m_all = 7  # N * R = 2^7 points
    sets = {}
    for seed in range(5):
        x = iclv.Draws(R, ["a", "b", "c"], kind="sobol", seed=seed).generate(N)
        u = ndtr(x)  # back to (0, 1)
        assert ((u > 0) & (u < 1)).all()
        for l in range(L):
            # each individual's 2^4 points: one in each interval of length 1/16, in every dimension
            for n in range(N):
                assert _one_per_dyadic_interval(u[n, :, l], m_ind), (seed, n, l)
            # the first 2^7 points together: one in each interval of length 1/128
            assert _one_per_dyadic_interval(u[:, :, l].reshape(-1), m_all), (seed, l)
        # the first two Sobol dimensions form a (0, 7, 2)-net: every dyadic box of area 2^-7
        # (2^-a by 2^-(7-a)) holds exactly one point
        p = u.reshape(-1, L)
        for a in range(m_all + 1):
            boxes = _cells(p[:, 0], a) * 2 ** (m_all - a) + _cells(p[:, 1], m_all - a)
            assert sorted(boxes.tolist()) == list(range(2**m_all)), (seed, a)
        sets[seed] = u
    # different seeds: different point sets, not a reordering of the same points
    for s, t in itertools.combinations(sets, 2):
        for l in range(L):
            a, b = np.sort(sets[s][:, :, l].ravel()), np.sort(sets[t][:, :, l].ravel())
            assert np.max(np.abs(a - b)) > 1e-3, (s, t, l)
    # and not the unscrambled sequence
    plain = qmc.Sobol(d=L, scramble=False).random(N * R)
    assert not np.allclose(np.sort(sets[0][:, :, 0].ravel()), np.sort(plain[:, 0]))


@pytest.mark.parametrize("skip", [0, 5])
def test_unscrambled_sobol_is_scipys_without_its_first_point(skip):
    N, R, L = 4, 8, 2
    got = iclv.Draws(R, ["a", "b"], kind="sobol", scramble=False, skip=skip, distribution="uniform").generate(N)
    eng = qmc.Sobol(d=L, scramble=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scipy: balance properties want powers of 2
        want = eng.random(1 + skip + N * R)[1 + skip:]
    np.testing.assert_array_equal(got, want.reshape(N, R, L))
    if skip == 0:
        # the sequence itself: 1/2, then 3/4, 1/4, ... (the point 0 is not used)
        np.testing.assert_array_equal(got[0, :3, 0], [0.5, 0.75, 0.25])
    normal = iclv.Draws(R, ["a", "b"], kind="sobol", scramble=False, skip=skip).generate(N)
    assert np.isfinite(normal).all()
    np.testing.assert_array_equal(normal, ndtri(want).reshape(N, R, L))
    # the same points for every seed: nothing random
    np.testing.assert_array_equal(normal, iclv.Draws(R, ["a", "b"], kind="sobol", scramble=False, skip=skip, seed=99).generate(N))


def test_scrambled_halton_is_scipys_with_the_same_seed():
    N, R = 5, 9
    got = iclv.Draws(R, ["a", "b"], kind="halton", scramble=True, seed=7, skip=3).generate(N)
    eng = qmc.Halton(d=2, scramble=True, seed=7)
    eng.fast_forward(3)
    np.testing.assert_array_equal(got, ndtri(eng.random(N * R)).reshape(N, R, 2))
    other = iclv.Draws(R, ["a", "b"], kind="halton", scramble=True, seed=8, skip=3).generate(N)
    assert np.max(np.abs(np.sort(other.ravel()) - np.sort(got.ravel()))) > 1e-3


def test_mlhs_one_point_per_stratum_per_individual_and_dimension():
    N, R, L = 20, 10, 3
    draws = {seed: iclv.Draws(R, ["a", "b", "c"], kind="mlhs", seed=seed).generate(N) for seed in (1, 2)}
    for seed, x in draws.items():
        u = ndtr(x)
        shifts = np.empty((N, L))
        for n in range(N):
            for l in range(L):
                k = np.floor(u[n, :, l] * R).astype(int)
                assert sorted(k.tolist()) == list(range(R)), (seed, n, l)
                # one shift per individual and dimension: (k + s) / R with the same s for every k
                s = u[n, :, l] * R - k
                np.testing.assert_allclose(s, s[0], atol=1e-9)
                shifts[n, l] = s[0]
                # randomly shuffled, not in stratum order
            assert not all(np.all(np.diff(u[n, :, l]) > 0) for l in range(L))
        # independent shifts across individuals and dimensions
        assert len(np.unique(shifts.round(12))) == N * L
    assert not np.allclose(draws[1], draws[2])


def test_options_that_do_not_apply_are_errors():
    with pytest.raises(iclv.SpecificationError, match="scramble is an option of Halton and Sobol draws, not of 'mlhs'"):
        iclv.Draws(10, ["a"], kind="mlhs", scramble=True)
    with pytest.raises(iclv.SpecificationError, match="skip is an option of Halton and Sobol draws, not of 'pseudo'"):
        iclv.Draws(10, ["a"], kind="pseudo", skip=4)
    with pytest.raises(iclv.SpecificationError, match="scramble is an option of Halton and Sobol draws, not of 'gauss-hermite'"):
        iclv.Draws(10, ["a"], kind="gauss-hermite", scramble=False)
