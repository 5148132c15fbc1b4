"""Random tensors: seeding, generators, distributions."""
import numpy as np
import pytest

import rbe


def draw():
    return [rbe.rand(5).numpy().copy(), rbe.randn(2, 3).numpy().copy(), rbe.randint(0, 10, (4,)).numpy().copy(), rbe.randperm(6).numpy().copy()]


def test_manual_seed_repeats_bit_for_bit():
    rbe.manual_seed(123)
    a = draw()
    rbe.manual_seed(123)
    b = draw()
    for x, y in zip(a, b):
        assert x.tobytes() == y.tobytes()
    rbe.manual_seed(124)
    c = draw()
    assert a[0].tobytes() != c[0].tobytes()


def test_generator_is_independent_of_the_default_stream():
    g = rbe.Generator().manual_seed(7)
    x1 = rbe.randn(4, generator=g).numpy().copy()
    rbe.manual_seed(0)
    _ = rbe.randn(10)
    g2 = rbe.Generator().manual_seed(7)
    x2 = rbe.randn(4, generator=g2).numpy().copy()
    assert x1.tobytes() == x2.tobytes()
    state = g.get_state()
    y1 = rbe.rand(3, generator=g).numpy().copy()
    g.set_state(state)
    assert rbe.rand(3, generator=g).numpy().tobytes() == y1.tobytes()


@pytest.mark.parametrize("dtype", [rbe.float32, rbe.float64])
def test_distributions_moments(dtype):
    rbe.manual_seed(1)
    u = rbe.rand(200000, dtype=dtype).numpy()
    assert u.dtype.name == dtype.name and u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.003
    z = rbe.randn(200000, dtype=dtype).numpy()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    k = rbe.randint(3, 7, (100000,)).numpy()
    assert k.dtype == np.int64 and set(np.unique(k)) == {3, 4, 5, 6}


def test_randperm_is_a_permutation_and_bernoulli_has_rate():
    p = rbe.randperm(1000).numpy()
    assert sorted(p.tolist()) == list(range(1000))
    b = rbe.bernoulli(rbe.full((100000,), 0.3)).numpy()
    assert set(np.unique(b)) <= {0.0, 1.0} and abs(b.mean() - 0.3) < 0.01


def test_dropout_scales_and_is_identity_in_eval():
    x = rbe.ones(10000)
    y = rbe.nn.functional.dropout(x, 0.25, training=True).numpy()
    assert set(np.unique(y).tolist()) <= {0.0, float(np.float32(1.0 / 0.75))}
    assert abs((y == 0).mean() - 0.25) < 0.02
    np.testing.assert_array_equal(rbe.nn.functional.dropout(x, 0.25, training=False).numpy(), x.numpy())


def test_bad_random_arguments_raise():
    with pytest.raises(ValueError):
        rbe.randint(5, 5, (3,))
    with pytest.raises(ValueError):
        rbe.normal(0.0, -1.0, (3,))
    with pytest.raises(ValueError):
        rbe.nn.functional.dropout(rbe.ones(3), 1.5)
