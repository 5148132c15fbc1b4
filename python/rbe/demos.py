"""The tours run by ``rbe demo``: the classic polynomial fit and a digits classifier."""
from __future__ import annotations

import math
import time


def polyfit(steps: int = 2000, lr: float = 1e-6) -> dict:
    """Fit y = sin(x) on [-pi, pi] with a + b x + c x^2 + d x^3 by gradient descent (the classic tutorial)."""
    import rbe

    rbe.manual_seed(0)
    x = rbe.linspace(-math.pi, math.pi, 2000)
    y = rbe.sin(x)
    a, b, c, d = (rbe.randn((), requires_grad=True) for _ in range(4))
    t0 = time.perf_counter()
    loss = None
    for _ in range(steps):
        y_pred = a + b * x + c * x**2 + d * x**3
        loss = (y_pred - y).pow(2).sum()
        loss.backward()
        with rbe.no_grad():
            for p in (a, b, c, d):
                p -= lr * p.grad
                p.grad = None
    return {"coefficients": [p.item() for p in (a, b, c, d)], "loss": loss.item(), "seconds": time.perf_counter() - t0, "steps": steps}


def load_digits_split(seed: int = 0, test_fraction: float = 0.2):
    """scikit-learn's 8x8 handwritten digits as (N, 1, 8, 8) float32 arrays in [0, 1], split train/test."""
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


def _digits_train(m, xtr, ytr, xte, yte, epochs, batch_size, seed):
    """Train and test with framework ``m`` (rbe or torch: the code is the same for both)."""
    nn = m.nn
    m.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
    opt = m.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = m.from_numpy(xtr), m.from_numpy(ytr)
    n = len(ytr)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = m.randperm(n)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    train_s = time.perf_counter() - t0
    model.eval()
    with m.no_grad():
        pred = model(m.from_numpy(xte)).argmax(1).numpy()
    return float((pred == yte).mean()), train_s, float(loss.item())


def digits(epochs: int = 30, batch_size: int = 64, seed: int = 0, compare_torch: bool = True) -> dict:
    """Train Flatten-Linear-ReLU-Dropout-Linear on the digits with Adam and cross-entropy;
    report test accuracy and training time (and the same model in torch when it is installed)."""
    xtr, ytr, xte, yte = load_digits_split(seed)
    import rbe

    acc, secs, loss = _digits_train(rbe, xtr, ytr, xte, yte, epochs, batch_size, seed)
    out = {"rbe": {"test_accuracy": acc, "seconds": secs, "last_loss": loss}, "epochs": epochs, "n_train": len(ytr), "n_test": len(yte)}
    if compare_torch:
        try:
            import torch
        except ImportError:
            out["torch"] = None
        else:
            tacc, tsecs, tloss = _digits_train(torch, xtr, ytr, xte, yte, epochs, batch_size, seed)
            out["torch"] = {"test_accuracy": tacc, "seconds": tsecs, "last_loss": tloss}
    return out
