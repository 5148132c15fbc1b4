"""rbe.nn against torch.nn: modules, layers, losses, init."""
import math

import numpy as np
import pytest
import torch

import rbe
import rbe.nn as nn
import rbe.nn.functional as F


def copy_params(rm, tm):
    """Copy torch module parameters into the rbe module (same names)."""
    td = dict(tm.named_parameters())
    with rbe.no_grad():
        for name, p in rm.named_parameters():
            p.copy_(rbe.tensor(td[name].detach().numpy()))


def close(a, b, rtol=1e-5, atol=1e-6):
    a = a.detach().numpy() if hasattr(a, "detach") else a
    b = b.detach().numpy() if hasattr(b, "detach") else b
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- Module API
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3)
        self.block = nn.Sequential(nn.ReLU(), nn.Linear(3, 2))
        self.scale = nn.Parameter(rbe.ones(1))
        self.register_buffer("steps", rbe.tensor(0))
        self.register_buffer("tmp", rbe.zeros(2), persistent=False)
        self.not_a_param = rbe.zeros(3)

    def forward(self, x):
        return self.block(self.fc1(x)) * self.scale


def test_module_registration_and_traversal():
    m = Net()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["scale", "fc1.weight", "fc1.bias", "block.1.weight", "block.1.bias"]
    assert len(list(m.parameters())) == 5
    assert [n for n, _ in m.named_children()] == ["fc1", "block"]
    assert len(list(m.modules())) == 5
    assert list(m.state_dict().keys()) == ["scale", "steps", "fc1.weight", "fc1.bias", "block.1.weight", "block.1.bias"]
    assert [n for n, _ in m.named_buffers()] == ["steps", "tmp"]
    assert "not_a_param" not in dict(m.named_parameters())


def test_train_eval_zero_grad_apply_requires_grad():
    m = Net()
    assert m.training and m.block[1].training
    m.eval()
    assert not m.training and not m.block[1].training
    m.train()
    out = m(rbe.randn(5, 4)).sum()
    out.backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    assert all(float(p.grad.abs().sum()) == 0 for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    seen = []
    m.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen[-1] == "Net" and "Linear" in seen
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())


def test_state_dict_round_trip_and_strict_errors():
    a, b = Net(), Net()
    r = b.load_state_dict(a.state_dict())
    assert list(r.missing_keys) == [] and list(r.unexpected_keys) == []
    for (n1, p1), (n2, p2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert n1 == n2 and np.array_equal(p1.numpy(), p2.numpy())
    sd = a.state_dict()
    del sd["fc1.bias"]
    sd["extra"] = rbe.zeros(1)
    with pytest.raises(RuntimeError, match="Missing key.*fc1.bias|Unexpected key.*extra"):
        b.load_state_dict(sd)
    r = b.load_state_dict(sd, strict=False)
    assert r.missing_keys == ["fc1.bias"] and r.unexpected_keys == ["extra"]
    bad = a.state_dict()
    bad["fc1.weight"] = rbe.zeros(2, 2)
    with pytest.raises(RuntimeError, match="size mismatch for fc1.weight"):
        b.load_state_dict(bad)


def test_state_dict_loads_into_torch_and_back():
    rm = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
    tm = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    tm.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in rm.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    close(rm(rbe.tensor(x)), tm(torch.tensor(x)))
    with torch.no_grad():
        for p in tm.parameters():
            p.mul_(2)
    rm.load_state_dict({k: rbe.tensor(v.numpy()) for k, v in tm.state_dict().items()})
    close(rm(rbe.tensor(x)), tm(torch.tensor(x)))


def test_to_dtype_and_repr():
    m = Net().to(rbe.float64)
    assert all(p.dtype == rbe.float64 for p in m.parameters())
    assert m.steps.dtype == rbe.int64  # integer buffers keep their dtype
    assert isinstance(m.fc1.weight, nn.Parameter)
    assert m(rbe.randn(2, 4, dtype=rbe.float64)).dtype == rbe.float64
    s = repr(nn.Sequential(nn.Linear(2, 3), nn.ReLU()))
    assert "Linear(in_features=2, out_features=3, bias=True)" in s and "(1): ReLU()" in s


def test_containers_register_parameters():
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    md = nn.ModuleDict({"a": nn.Linear(2, 1), "b": nn.Linear(1, 1)})
    assert len(list(ml.parameters())) == 6 and len(list(md.parameters())) == 4
    ml.append(nn.Linear(2, 2))
    assert len(ml) == 4 and isinstance(ml[-1], nn.Linear)
    assert list(md.keys()) == ["a", "b"]
    seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    assert isinstance(seq[0:2], nn.Sequential) and len(seq[0:2]) == 2
    with pytest.raises(TypeError):
        nn.Linear(2, 2).weight = rbe.zeros(2, 2)


def test_parameter_semantics():
    p = nn.Parameter(rbe.randn(3))
    assert p.requires_grad and p.is_leaf and isinstance(p, rbe.Tensor)
    assert "Parameter containing" in repr(p)
    q = p * 2
    assert type(q) is rbe.Tensor
    import copy

    c = copy.deepcopy(p)
    assert isinstance(c, nn.Parameter) and np.array_equal(c.detach().numpy(), p.detach().numpy())


# ---------------------------------------------------------------- layers
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch_forward_backward(bias):
    rm, tm = nn.Linear(6, 4, bias=bias), torch.nn.Linear(6, 4, bias=bias)
    copy_params(rm, tm)
    x = np.random.default_rng(0).standard_normal((2, 3, 6)).astype(np.float32)
    rx, tx = rbe.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ro, to = rm(rx), tm(tx)
    close(ro, to)
    g = np.random.default_rng(1).standard_normal(tuple(to.shape)).astype(np.float32)
    ro.backward(rbe.tensor(g))
    to.backward(torch.tensor(g))
    close(rx.grad, tx.grad)
    close(rm.weight.grad, tm.weight.grad, atol=1e-5)
    if bias:
        close(rm.bias.grad, tm.bias.grad, atol=1e-5)


def test_linear_default_init_bounds():
    rbe.manual_seed(0)
    m = nn.Linear(100, 50)
    b = 1 / math.sqrt(100)
    w = m.weight.detach().numpy()
    assert np.abs(w).max() <= b and np.abs(w).max() > 0.9 * b  # kaiming_uniform(a=sqrt 5) bound = 1/sqrt(fan_in)
    assert abs(w.std() - b / math.sqrt(3)) < 0.05 * b
    assert np.abs(m.bias.detach().numpy()).max() <= b


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5)])
def test_batchnorm1d_train_and_eval_match_torch(shape):
    rm, tm = nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    rng = np.random.default_rng(2)
    with torch.no_grad():
        tm.weight.uniform_(0.5, 1.5)
        tm.bias.uniform_(-0.5, 0.5)
    copy_params(rm, tm)
    for _ in range(3):
        x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
        rx, tx = rbe.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        ro, to = rm(rx), tm(tx)
        close(ro, to, atol=1e-5)
        g = rng.standard_normal(shape).astype(np.float32)
        ro.backward(rbe.tensor(g))
        to.backward(torch.tensor(g))
        close(rx.grad, tx.grad, atol=1e-4)
        close(rm.weight.grad, tm.weight.grad, atol=1e-4)
    close(rm.running_mean, tm.running_mean)
    close(rm.running_var, tm.running_var)
    assert rm.num_batches_tracked.item() == tm.num_batches_tracked.item() == 3
    rm.eval()
    tm.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    close(rm(rbe.tensor(x)), tm(torch.tensor(x)), atol=1e-5)
    before = rm.running_mean.numpy().copy()
    rm(rbe.tensor(x))
    assert np.array_equal(before, rm.running_mean.numpy())  # eval does not update the statistics


def test_layernorm_embedding_dropout():
    rm, tm = nn.LayerNorm((4,)), torch.nn.LayerNorm((4,))
    with torch.no_grad():
        tm.weight.uniform_(0.5, 1.5)
    copy_params(rm, tm)
    x = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float32)
    rx, tx = rbe.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ro, to = rm(rx), tm(tx)
    close(ro, to, atol=1e-5)
    (ro * ro).sum().backward()
    (to * to).sum().backward()
    close(rx.grad, tx.grad, atol=1e-4)
    close(rm.weight.grad, tm.weight.grad, atol=1e-4)

    re, te = nn.Embedding(10, 3, padding_idx=0), torch.nn.Embedding(10, 3, padding_idx=0)
    copy_params(re, te)
    idx = np.array([[0, 2, 5], [5, 9, 0]])
    ro, to = re(rbe.tensor(idx)), te(torch.tensor(idx))
    close(ro, to)
    ro.sum().backward()
    to.sum().backward()
    close(re.weight.grad, te.weight.grad)
    assert np.all(re.weight.grad.numpy()[0] == 0)

    d = nn.Dropout(0.5)
    x = rbe.ones(1000)
    y = d(x).numpy()
    assert set(np.unique(y).tolist()) <= {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6
    d.eval()
    assert np.array_equal(d(x).numpy(), x.numpy())


@pytest.mark.parametrize(
    "rmod,tmod",
    [
        (lambda: nn.ReLU(), lambda: torch.nn.ReLU()),
        (lambda: nn.LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2)),
        (lambda: nn.Sigmoid(), lambda: torch.nn.Sigmoid()),
        (lambda: nn.Tanh(), lambda: torch.nn.Tanh()),
        (lambda: nn.GELU(), lambda: torch.nn.GELU()),
        (lambda: nn.GELU("tanh"), lambda: torch.nn.GELU("tanh")),
        (lambda: nn.SiLU(), lambda: torch.nn.SiLU()),
        (lambda: nn.Softplus(2.0), lambda: torch.nn.Softplus(2.0)),
        (lambda: nn.ELU(0.7), lambda: torch.nn.ELU(0.7)),
        (lambda: nn.Softmax(dim=1), lambda: torch.nn.Softmax(dim=1)),
        (lambda: nn.LogSoftmax(dim=1), lambda: torch.nn.LogSoftmax(dim=1)),
        (lambda: nn.Flatten(), lambda: torch.nn.Flatten()),
        (lambda: nn.Unflatten(1, (2, 2)), lambda: torch.nn.Unflatten(1, (2, 2))),
        (lambda: nn.Identity(), lambda: torch.nn.Identity()),
    ],
)
def test_activation_modules(rmod, tmod):
    x = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)
    rx, tx = rbe.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ro, to = rmod()(rx), tmod()(tx)
    close(ro, to, atol=1e-6)
    g = np.random.default_rng(5).standard_normal(tuple(to.shape)).astype(np.float32)
    ro.backward(rbe.tensor(g))
    to.backward(torch.tensor(g))
    close(rx.grad, tx.grad, atol=1e-5)


# ---------------------------------------------------------------- losses
LOSS_CASES = []
for red in ["mean", "sum", "none"]:
    LOSS_CASES += [
        ("mse", red, {}),
        ("l1", red, {}),
        ("huber", red, {"delta": 0.7}),
        ("smooth_l1", red, {"beta": 0.5}),
        ("ce", red, {}),
        ("ce", red, {"ignore_index": 1}),
        ("ce", red, {"label_smoothing": 0.2}),
        ("ce", red, {"weight": True, "label_smoothing": 0.1, "ignore_index": 2}),
        ("ce_probs", red, {"label_smoothing": 0.15}),
        ("ce_probs", red, {"weight": True}),
        ("ce_3d", red, {"ignore_index": 0}),
        ("nll", red, {"weight": True, "ignore_index": 3}),
        ("bce", red, {}),
        ("bce_logits", red, {"pos_weight": True}),
        ("bce_logits", red, {"weight": True}),
    ]


def _loss_inputs(kind, rng):
    if kind in ("ce", "nll"):
        x = rng.standard_normal((6, 4)) * 3
        t = rng.integers(0, 4, size=6)
        if kind == "nll":
            x = x - np.log(np.exp(x).sum(1, keepdims=True))
        return x, t
    if kind == "ce_probs":
        x = rng.standard_normal((5, 4)) * 3
        t = rng.random((5, 4))
        return x, t / t.sum(1, keepdims=True)
    if kind == "ce_3d":
        return rng.standard_normal((3, 4, 2)) * 2, rng.integers(0, 4, size=(3, 2))
    if kind == "bce":
        return 1 / (1 + np.exp(-rng.standard_normal((4, 3)))), rng.random((4, 3))
    return rng.standard_normal((4, 3)) * 2, rng.standard_normal((4, 3))


def _loss_fn(m, kind, red, kw, wt):
    Fm = m.nn.functional
    kw = dict(kw)
    if kw.pop("weight", False):
        kw["weight"] = wt
    if kw.pop("pos_weight", False):
        kw["pos_weight"] = wt
    return {
        "mse": lambda x, t: Fm.mse_loss(x, t, reduction=red),
        "l1": lambda x, t: Fm.l1_loss(x, t, reduction=red),
        "huber": lambda x, t: Fm.huber_loss(x, t, reduction=red, **kw),
        "smooth_l1": lambda x, t: Fm.smooth_l1_loss(x, t, reduction=red, **kw),
        "ce": lambda x, t: Fm.cross_entropy(x, t, reduction=red, **kw),
        "ce_probs": lambda x, t: Fm.cross_entropy(x, t, reduction=red, **kw),
        "ce_3d": lambda x, t: Fm.cross_entropy(x, t, reduction=red, **kw),
        "nll": lambda x, t: Fm.nll_loss(x, t, reduction=red, **kw),
        "bce": lambda x, t: Fm.binary_cross_entropy(x, t, reduction=red, **kw),
        "bce_logits": lambda x, t: Fm.binary_cross_entropy_with_logits(x, t, reduction=red, **kw),
    }[kind]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind,red,kw", LOSS_CASES, ids=[f"{k}-{r}-{'-'.join(kw)}" for k, r, kw in LOSS_CASES])
def test_losses_match_torch(kind, red, kw, dtype):
    rng = np.random.default_rng(abs(hash((kind, red, str(kw)))) % 2**32)
    x, t = _loss_inputs(kind, rng)
    x = x.astype(dtype)
    t = t.astype(dtype) if t.dtype.kind == "f" else t
    ncls = x.shape[1]
    wt = (rng.random(ncls if kind.startswith("ce") or kind == "nll" else x.shape[1]) + 0.5).astype(dtype)
    outs = []
    for m in (rbe, torch):
        xi = m.tensor(x, requires_grad=True)
        ti = m.tensor(t, requires_grad=(t.dtype.kind == "f" and kind == "ce_probs"))
        loss = _loss_fn(m, kind, red, kw, m.tensor(wt))(xi, ti)
        g = np.random.default_rng(7).standard_normal(tuple(loss.shape)).astype(dtype) if red == "none" else np.array(1.3, dtype=dtype)
        loss.backward(m.tensor(g))
        outs.append((loss.detach().numpy(), xi.grad.numpy(), ti.grad.numpy() if ti.grad is not None else None))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(outs[0][0], outs[1][0], **tol)
    np.testing.assert_allclose(outs[0][1], outs[1][1], **tol)
    if outs[1][2] is not None:
        np.testing.assert_allclose(outs[0][2], outs[1][2], **tol)


def test_cross_entropy_is_stable_for_huge_logits_and_modules_match():
    x = rbe.tensor([[1000.0, -1000.0, 0.0], [-5e4, 5e4, 1.0]], requires_grad=True)
    t = rbe.tensor([0, 2])
    loss = nn.CrossEntropyLoss()(x, t)
    assert math.isfinite(loss.item())
    tl = torch.nn.CrossEntropyLoss()(torch.tensor(x.detach().numpy()), torch.tensor([0, 2]))
    assert abs(loss.item() - tl.item()) < 1e-3
    loss.backward()
    assert np.all(np.isfinite(x.grad.numpy()))
    with pytest.raises(IndexError, match="out of bounds"):
        F.cross_entropy(rbe.randn(2, 3), rbe.tensor([0, 3]))
    with pytest.raises(ValueError):
        F.cross_entropy(rbe.randn(2, 3), rbe.tensor([0, 1, 2]))


def test_cross_entropy_double_backward_matches_torch():
    x = np.random.default_rng(8).standard_normal((3, 4))
    res = []
    for m in (rbe, torch):
        xi = m.tensor(x, requires_grad=True)
        loss = m.nn.functional.cross_entropy(xi, m.tensor([1, 0, 3]), label_smoothing=0.1)
        (g,) = m.autograd.grad(loss, xi, create_graph=True)
        (h,) = m.autograd.grad((g * g).sum(), xi)
        res.append(h.detach().numpy())
    np.testing.assert_allclose(res[0], res[1], rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- init
def test_init_functions():
    rbe.manual_seed(0)
    w = rbe.empty(200, 300)
    nn.init.xavier_uniform_(w)
    a = math.sqrt(6 / 500)
    assert abs(w).max().item() <= a and w.std().item() == pytest.approx(a / math.sqrt(3), rel=0.05)
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert w.std().item() == pytest.approx(math.sqrt(2 / 200), rel=0.05)
    nn.init.constant_(w, 0.3)
    assert np.all(w.numpy() == np.float32(0.3))
    nn.init.zeros_(w)
    assert w.abs().sum().item() == 0
    q = rbe.empty(5, 8)
    nn.init.orthogonal_(q)
    np.testing.assert_allclose(q.numpy() @ q.numpy().T, np.eye(5), atol=1e-5)
    for nl, p in [("relu", None), ("tanh", None), ("leaky_relu", 0.2), ("linear", None), ("sigmoid", None)]:
        assert nn.init.calculate_gain(nl, p) == pytest.approx(torch.nn.init.calculate_gain(nl, p))
    with pytest.raises(ValueError):
        nn.init.xavier_uniform_(rbe.empty(3))
    x = rbe.empty(10000)
    nn.init.trunc_normal_(x, std=1.0, a=-1.0, b=1.5)
    assert x.min().item() >= -1.0 and x.max().item() <= 1.5
    nn.init.small_normal_(x, std=1e-3)
    assert x.std().item() == pytest.approx(1e-3, rel=0.05)
    p = nn.Parameter(rbe.zeros(3))
    nn.init.normal_(p)  # works on leaves that require grad
    assert p.requires_grad and p.abs().sum().item() > 0


def test_clip_grad():
    rp = [nn.Parameter(rbe.zeros(3)), nn.Parameter(rbe.zeros(2, 2))]
    tp = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
    g = [np.array([3.0, -4.0, 1.0], dtype=np.float32), np.array([[2.0, 0.5], [-1.0, 7.0]], dtype=np.float32)]
    for ps, m in ((rp, rbe), (tp, torch)):
        for p, gi in zip(ps, g):
            p.grad = m.tensor(gi)
    rn = nn.utils.clip_grad_norm_(rp, 2.0)
    tn = torch.nn.utils.clip_grad_norm_(tp, 2.0)
    assert rn.item() == pytest.approx(tn.item(), rel=1e-6)
    for a, b in zip(rp, tp):
        close(a.grad, b.grad)
    rn = nn.utils.clip_grad_norm_(rp, 1.0, norm_type=math.inf)
    tn = torch.nn.utils.clip_grad_norm_(tp, 1.0, norm_type=math.inf)
    assert rn.item() == pytest.approx(tn.item(), rel=1e-6)
    nn.utils.clip_grad_value_(rp, 0.1)
    torch.nn.utils.clip_grad_value_(tp, 0.1)
    for a, b in zip(rp, tp):
        close(a.grad, b.grad)
