"""save/load, DLPack, threads and reproducibility, EarlyStopping."""
import io

import numpy as np
import pytest
import torch

import rbe
import rbe.nn as nn
from rbe.utils import EarlyStopping


def test_save_load_state_dict_roundtrip(tmp_path):
    rbe.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    path = tmp_path / "model.safetensors"
    rbe.save(m.state_dict(), path)
    sd = rbe.load(path)
    assert list(sd.keys()) == list(m.state_dict().keys())
    for (k, a), b in zip(m.state_dict().items(), sd.values()):
        assert a.dtype == b.dtype and a.numpy().tobytes() == b.numpy().tobytes(), k
    m2 = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    m2.load_state_dict(sd)
    x = rbe.randn(5, 3)
    m.eval()
    m2.eval()
    assert np.array_equal(m(x).detach().numpy(), m2(x).detach().numpy())
    # the file is plain safetensors: torch's reader opens it
    from safetensors.torch import load_file

    tsd = load_file(str(path))
    assert set(tsd) == set(sd) and torch.equal(tsd["0.weight"], torch.from_numpy(sd["0.weight"].numpy()))


def test_save_load_optimizer_state_and_nested_objects():
    p = [nn.Parameter(rbe.randn(3))]
    opt = rbe.optim.Adam(p, lr=0.1)
    p[0].sum().backward()
    opt.step()
    buf = io.BytesIO()
    rbe.save({"opt": opt.state_dict(), "epoch": 3, "names": ["a", "b"], "t": (1.5, None)}, buf)
    buf.seek(0)
    back = rbe.load(buf)
    assert back["epoch"] == 3 and back["names"] == ["a", "b"] and back["t"] == (1.5, None)
    st = back["opt"]["state"][0]
    np.testing.assert_array_equal(st["exp_avg"].numpy(), opt.state[p[0]]["exp_avg"].numpy())
    assert back["opt"]["param_groups"][0]["lr"] == 0.1
    with pytest.raises(TypeError):
        rbe.save({"x": object()}, io.BytesIO())


def test_dlpack_shares_memory_with_torch_and_numpy():
    t = torch.arange(6.0).reshape(2, 3)
    r = rbe.from_dlpack(t)
    r[1, 2] = -1.0
    assert t[1, 2].item() == -1.0
    r2 = rbe.ones(2, 2, dtype=rbe.float64)
    t2 = torch.from_dlpack(r2)
    t2.mul_(3)
    assert r2.numpy().tolist() == [[3.0, 3.0], [3.0, 3.0]]
    n = np.from_dlpack(r2)
    n[0, 0] = 7
    assert r2[0, 0].item() == 7
    with pytest.raises(RuntimeError, match="require gradient"):
        r2.requires_grad_().__dlpack__()
    # a torch module's weights into an rbe module and back without copies
    tm = torch.nn.Linear(3, 2)
    rm = nn.Linear(3, 2)
    rm.load_state_dict({k: rbe.from_dlpack(v.detach()) for k, v in tm.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(rm(rbe.tensor(x)).detach().numpy(), tm(torch.tensor(x)).detach().numpy(), rtol=1e-6, atol=1e-6)


def _train_once(threads):
    rbe.set_num_threads(threads)
    rbe.manual_seed(1234)
    m = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 10))
    opt = rbe.optim.Adam(m.parameters(), lr=1e-3)
    x = rbe.randn(300, 64)
    y = rbe.randint(0, 10, (300,))
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return [p.detach().numpy().tobytes() for p in m.parameters()]


def test_same_seed_same_bits_with_one_and_all_threads():
    n = max(2, rbe.get_num_threads())
    try:
        a = _train_once(1)
        b = _train_once(n)
        c = _train_once(n)
    finally:
        rbe.set_num_threads(n)
    assert a == b == c
    rbe.use_deterministic_algorithms(True)
    assert rbe.are_deterministic_algorithms_enabled()
    rbe.use_deterministic_algorithms(False)
    with pytest.raises(ValueError):
        rbe.set_num_threads(0)


def test_early_stopping_patience_and_restore():
    m = nn.Linear(2, 1)
    es = EarlyStopping(patience=2, min_delta=0.01, restore_best_weights=True)
    losses = [1.0, 0.8, 0.795, 0.9, 0.85]
    stops = []
    for i, l in enumerate(losses):
        with rbe.no_grad():
            m.weight.fill_(float(i))
        stops.append(es.step(l, m))
    # 0.795 is not better than 0.8 by min_delta, so the best stays at epoch 1
    assert stops == [False, False, False, False, True]
    assert es.best == 0.8 and es.best_epoch == 1
    assert m.weight.detach().numpy().tolist() == [[1.0, 1.0]]
    es2 = EarlyStopping(patience=0, mode="max")
    assert es2.step(0.5) is False and es2.step(0.4) is True
    with pytest.raises(ValueError):
        EarlyStopping(mode="sideways")
