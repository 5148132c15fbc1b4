"""rbe.structured.RBEHybrid: Adam plus exact-checked track flips (spec section 5, test item 6)."""
import math

import numpy as np
import pytest

import rbe
import rbe.nn.functional as F
from rbe.structured import RBEHybrid, RBELinear


def planted(track_teacher="tanh", seed=0, noise=0.05, n=256):
    """A teacher RBE layer and a student that starts at the teacher's
    continuous fields (plus noise) but with every track SIN."""
    rbe.manual_seed(seed)
    teacher = RBELinear(32, 32, block=(16, 16), atoms=2, track=track_teacher, bias=False)
    rng = np.random.default_rng(seed)
    X = rbe.tensor(rng.standard_normal((n, 32)), dtype=rbe.float32)
    Xc = rbe.tensor(rng.standard_normal((128, 32)), dtype=rbe.float32)
    with rbe.no_grad():
        Y, Yc = teacher(X), teacher(Xc)
    student = RBELinear(32, 32, block=(16, 16), atoms=2, track="sin", bias=False)
    with rbe.no_grad():
        student.atoms.copy_(teacher.atoms + noise * rbe.randn(*teacher.atoms.shape))
    return teacher, student, (X, Y), (Xc, Yc)


def train(student, data, opt, steps, hook=None):
    X, Y = data
    loss = None
    for s in range(steps):
        opt.zero_grad()
        loss = F.mse_loss(student(X), Y)
        loss.backward()
        if hook:
            hook(s, "before")
        opt.step()
        if hook:
            hook(s, "after")
    return float(loss)


def test_flips_recover_planted_tanh_tracks():
    teacher, student, data, (Xc, Yc) = planted("tanh")
    cal = lambda: F.mse_loss(student(Xc), Yc)
    opt = RBEHybrid(student.parameters(), lr=3e-3, calibration=cal, flip_every=20, cooldown=50)
    hybrid = train(student, data, opt, 600)
    _, plain, data2, _ = planted("tanh")
    adam = train(plain, data2, rbe.optim.Adam(plain.parameters(), lr=3e-3), 600)
    assert opt.flips == teacher.tracks.numel()
    np.testing.assert_array_equal(student.tracks.detach().numpy(), teacher.tracks.numpy())
    assert hybrid < 1e-3 * adam, (hybrid, adam)


def test_mixed_teacher_flips_only_the_tanh_atoms():
    teacher, student, data, (Xc, Yc) = planted("mixed", seed=3)
    cal = lambda: F.mse_loss(student(Xc), Yc)
    opt = RBEHybrid(student.parameters(), lr=3e-3, calibration=cal, flip_every=20, cooldown=50)
    train(student, data, opt, 600)
    np.testing.assert_array_equal(student.tracks.detach().numpy(), teacher.tracks.numpy())


def test_a_flip_is_kept_only_when_the_exact_loss_went_down():
    # Each flip check is re-done here independently: with the continuous
    # fields right after the Adam step, the calibration loss with the old
    # tracks must be strictly above the loss with the tracks kept.
    teacher, student, data, (Xc, Yc) = planted("mixed", seed=5, noise=0.3)
    cal = lambda: F.mse_loss(student(Xc), Yc)
    opt = RBEHybrid(student.parameters(), lr=3e-3, calibration=cal, flip_every=5, cooldown=10, gamma_decay=0.5)
    checks = []
    snap = {}

    def exact(atoms, tracks):
        layer = RBELinear(32, 32, block=(16, 16), atoms=2, bias=False)
        with rbe.no_grad():
            layer.atoms.copy_(rbe.tensor(atoms))
            layer.tracks.copy_(rbe.tensor(tracks))
            return float(F.mse_loss(layer(Xc), Yc))

    def hook(s, when):
        if when == "before":
            snap["tracks"] = student.tracks.detach().numpy().copy()
            return
        after = student.tracks.detach().numpy().copy()
        changed = int((after != snap["tracks"]).sum())
        if (s + 1) % 5 == 0:
            atoms = student.atoms.detach().numpy().copy()
            checks.append((changed, exact(atoms, snap["tracks"]), exact(atoms, after), opt.flip_log[-1]))
        else:
            assert changed == 0  # tracks only change at checks

    train(student, data, opt, 300, hook)
    accepted = [c for c in checks if c[0] > 0]
    assert len(accepted) >= 2, "the scenario should produce accepted flips"
    assert sum(c[3]["candidates"] > c[3]["accepted"] for c in checks) >= 1, "and some rejected candidates"
    for changed, before, after, log in checks:
        assert log["accepted"] == changed
        if changed:
            assert after < before
            assert log["loss_before"] == pytest.approx(before, rel=1e-6)
            assert log["loss_after"] == pytest.approx(after, rel=1e-6)
    assert opt.flips == sum(c[0] for c in checks)


def test_rejected_flips_leave_everything_as_plain_adam():
    # a calibration loss that punishes every TANH atom: all candidates are
    # rejected, so the run must equal the same optimiser without flips, bit for bit
    _, a, data, (Xc, Yc) = planted("tanh", seed=2)
    _, b, _, _ = planted("tanh", seed=2)
    cal = lambda: F.mse_loss(a(Xc), Yc) + 1e3 * a.tracks.sum()
    opt_a = RBEHybrid(a.parameters(), lr=3e-3, calibration=cal, flip_every=10, cooldown=0)
    opt_b = RBEHybrid(b.parameters(), lr=3e-3, flip_every=10, cooldown=0)
    train(a, data, opt_a, 100)
    train(b, data, opt_b, 100)
    assert opt_a.flips == 0
    assert sum(e["candidates"] for e in opt_a.flip_log) > 0
    assert not a.tracks.detach().numpy().any()
    np.testing.assert_array_equal(a.atoms.detach().numpy(), b.atoms.detach().numpy())
    np.testing.assert_array_equal(opt_a.state[a.atoms]["exp_avg_sq"].numpy(), opt_b.state[b.atoms]["exp_avg_sq"].numpy())


def test_flipped_atoms_get_fresh_moments_and_a_cooldown():
    _, student, data, (Xc, Yc) = planted("tanh", seed=4)
    cal = lambda: F.mse_loss(student(Xc), Yc)
    opt = RBEHybrid(student.parameters(), lr=3e-3, calibration=cal, flip_every=20, cooldown=1000, max_flips=1)
    seen = {}

    def hook(s, when):
        if when == "before":
            seen["tracks"] = student.tracks.detach().numpy().copy()
        elif not seen.get("done"):
            flipped = np.argwhere(student.tracks.detach().numpy() != seen["tracks"])
            if len(flipped):
                assert len(flipped) == 1  # max_flips=1
                b, j = flipped[0]
                st = opt.state[student.atoms]
                m, v = st["exp_avg"].numpy(), st["exp_avg_sq"].numpy()
                assert not m[b, j].any() and not v[b, j].any()
                # a fresh bias correction: the atom's own step count restarts
                assert st["atom_step"].numpy()[b, j] == 0 and st["atom_step"].numpy().max() == s + 1
                seen["before_next"] = student.atoms.detach().numpy()[b, j].copy()
                others = np.ones(m.shape[:2], bool)
                others[b, j] = False
                assert np.abs(v[others]).min() > 0
                seen["done"] = (b, j, s)

        elif "first_step" not in seen:
            # the first step after the reset is a fresh Adam step: |delta| = lr per field
            b, j, _ = seen["done"]
            delta = np.abs(student.atoms.detach().numpy()[b, j] - seen["before_next"])
            seen["first_step"] = delta

    train(student, data, opt, 400, hook)
    assert "done" in seen
    b, j, s = seen["done"]
    np.testing.assert_allclose(seen["first_step"], 3e-3, rtol=1e-3)
    # held for the cool-down: the atom stays TANH although the run continues
    assert student.tracks.detach().numpy()[b, j] == 1.0
    assert opt.state[student.atoms]["hold"].numpy()[b, j] > 0


def test_equals_adam_on_models_without_rbe_layers():
    rbe.manual_seed(0)
    m1 = rbe.nn.Sequential(rbe.nn.Linear(5, 7), rbe.nn.Tanh(), rbe.nn.Linear(7, 2))
    m2 = rbe.nn.Sequential(rbe.nn.Linear(5, 7), rbe.nn.Tanh(), rbe.nn.Linear(7, 2))
    m2.load_state_dict(m1.state_dict())
    X, Y = rbe.randn(16, 5), rbe.randn(16, 2)
    o1 = RBEHybrid(m1.parameters(), lr=1e-2, weight_decay=1e-3, calibration=lambda: 0.0)
    o2 = rbe.optim.Adam(m2.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(20):
        for m, o in ((m1, o1), (m2, o2)):
            o.zero_grad()
            F.mse_loss(m(X), Y).backward()
            o.step()
    for p, q in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_phases_stay_storable():
    rbe.manual_seed(0)
    layer = RBELinear(16, 16, block=(8, 8), atoms=2, track="mixed")
    with rbe.no_grad():
        layer.atoms[..., 1] = 3.1  # near the edge: Adam will push some across
    X, Y = rbe.randn(64, 16), rbe.randn(64, 16)
    opt = RBEHybrid(layer.parameters(), lr=0.05)
    for _ in range(50):
        opt.zero_grad()
        F.mse_loss(layer(X), Y).backward()
        opt.step()
        ph = layer.atoms.detach().numpy()[..., 1]
        assert ph.min() >= -math.pi and ph.max() < math.pi


def test_state_dict_round_trip_continues_identically():
    _, a, data, (Xc, Yc) = planted("tanh", seed=6)
    _, b, _, _ = planted("tanh", seed=6)
    kw = dict(lr=3e-3, flip_every=10, cooldown=30)
    oa = RBEHybrid(a.parameters(), calibration=lambda: F.mse_loss(a(Xc), Yc), **kw)
    train(a, data, oa, 35)
    b.load_state_dict(a.state_dict())
    ob = RBEHybrid(b.parameters(), calibration=lambda: F.mse_loss(b(Xc), Yc), **kw)
    ob.load_state_dict(oa.state_dict())
    train(a, data, oa, 40)
    train(b, data, ob, 40)
    assert ob.flips == oa.flips
    np.testing.assert_array_equal(a.atoms.detach().numpy(), b.atoms.detach().numpy())
    np.testing.assert_array_equal(a.tracks.detach().numpy(), b.tracks.detach().numpy())


def test_trains_inside_an_ordinary_model():
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.data - d.data.mean(0)) / (d.data.std(0) + 1e-6)
    rbe.manual_seed(0)
    model = rbe.nn.Sequential(
        RBELinear(64, 64, block=(16, 16), atoms=4, residual=2, track="mixed"),
        rbe.nn.ReLU(),
        rbe.nn.Linear(64, 10),
    )
    Xt, yt = rbe.tensor(X[:1200], dtype=rbe.float32), rbe.tensor(d.target[:1200])
    Xc, yc = rbe.tensor(X[1200:1400], dtype=rbe.float32), rbe.tensor(d.target[1200:1400])
    Xv, yv = rbe.tensor(X[1400:], dtype=rbe.float32), d.target[1400:]
    opt = RBEHybrid(model.parameters(), lr=1e-2, calibration=lambda: F.cross_entropy(model(Xc), yc), flip_every=10)
    first = None
    for step in range(150):
        opt.zero_grad()
        loss = F.cross_entropy(model(Xt), yt)
        loss.backward()
        opt.step()
        first = float(loss) if first is None else first
    acc = (model(Xv).argmax(1).numpy() == yv).mean()
    assert float(loss) < 0.3 * first
    assert acc > 0.85, acc


def test_bad_arguments():
    layer = RBELinear(8, 8, block=(4, 4), atoms=1)
    with pytest.raises(ValueError, match="flip_every"):
        RBEHybrid(layer.parameters(), flip_every=0)
    with pytest.raises(ValueError, match="gamma_decay"):
        RBEHybrid(layer.parameters(), gamma_decay=1.0)
    with pytest.raises(ValueError, match="flip_threshold"):
        RBEHybrid(layer.parameters(), flip_threshold=-1)
    with pytest.raises(ValueError, match="cooldown"):
        RBEHybrid(layer.parameters(), cooldown=-1)
    with pytest.raises(TypeError, match="calibration"):
        RBEHybrid(layer.parameters(), calibration=3.0)
    with pytest.raises(ValueError, match="learning rate"):
        RBEHybrid(layer.parameters(), lr=-1)


def test_atoms_take_plain_adam_when_nothing_flips():
    rbe.manual_seed(0)
    a = RBELinear(12, 10, block=(4, 4), atoms=2, residual=1, dtype=rbe.float64)
    b = RBELinear(12, 10, block=(4, 4), atoms=2, residual=1, dtype=rbe.float64)
    b.load_state_dict(a.state_dict())
    X, Y = rbe.randn(16, 12, dtype=rbe.float64), rbe.randn(16, 10, dtype=rbe.float64)
    oa = RBEHybrid(a.parameters(), lr=1e-2, weight_decay=1e-3)
    ob = rbe.optim.Adam(b.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(20):
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            F.mse_loss(m(X), Y).backward()
            o.step()
            with rbe.no_grad():  # the hybrid wraps SIN phases; compare modulo 2 pi
                m.atoms[..., 1] = (m.atoms[..., 1] + math.pi) % (2 * math.pi) - math.pi
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-12, atol=1e-13)


def test_layers_are_found_after_conversions_and_copies():
    import copy
    import pickle

    base = rbe.nn.Sequential(RBELinear(8, 8, block=4, atoms=2), rbe.nn.Tanh())
    for model in (copy.deepcopy(base).double(), pickle.loads(pickle.dumps(base)), base.to(rbe.float64)):
        opt = RBEHybrid(model.parameters(), calibration=lambda: 0.0)
        assert len(opt._layers) == 1 and opt._layers[0][1] is model[0]
        assert model[0].track_grad_enabled


def test_gamma_is_computed_only_with_a_calibration():
    layer = RBELinear(8, 8, block=4, atoms=2)
    opt = RBEHybrid(layer.parameters())
    assert not layer.track_grad_enabled
    opt.calibration = lambda: 0.0
    assert layer.track_grad_enabled
    opt.calibration = None
    assert not layer.track_grad_enabled


def test_state_dict_saves_to_disk_and_the_optimizer_pickles(tmp_path):
    import pickle

    _, a, data, (Xc, Yc) = planted("tanh", seed=6)
    opt = RBEHybrid(a.parameters(), lr=3e-3, calibration=lambda: F.mse_loss(a(Xc), Yc), flip_every=10)
    train(a, data, opt, 25)
    rbe.save(opt.state_dict(), str(tmp_path / "opt.rbe"))
    loaded = rbe.load(str(tmp_path / "opt.rbe"))
    assert loaded["rbe_hybrid"]["steps"] == 25
    np.testing.assert_array_equal(np.asarray(loaded["state"][0]["gamma_ema"].numpy()), opt.state[a.atoms]["gamma_ema"].numpy())
    model2, opt2 = pickle.loads(pickle.dumps((a, opt)))
    assert opt2._steps == 25 and opt2.calibration is None
    opt2.calibration = lambda: F.mse_loss(model2(Xc), Yc)
    assert len(opt2._layers) == 1 and opt2._layers[0][1] is model2 and opt2._layers[0][0] is model2.atoms
    train(model2, data, opt2, 5)


def test_a_failing_calibration_leaves_the_tracks_unchanged():
    _, a, data, (Xc, Yc) = planted("tanh", seed=2)
    calls = {"n": 0}

    def cal():
        calls["n"] += 1
        if calls["n"] == 2:  # the first trial of a flip set
            raise RuntimeError("calibration failed")
        return F.mse_loss(a(Xc), Yc)

    opt = RBEHybrid(a.parameters(), lr=3e-3, calibration=cal, flip_every=20)
    before = None
    with pytest.raises(RuntimeError, match="calibration failed"):
        for _ in range(100):
            before = a.tracks.detach().numpy().copy()
            train(a, data, opt, 1)
    np.testing.assert_array_equal(a.tracks.detach().numpy(), before)
    assert opt.flips == 0
