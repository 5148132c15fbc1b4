"""A classifier of scikit-learn's 8x8 handwritten digits: Flatten / Linear / ReLU /
Dropout, a train/eval loop, CrossEntropyLoss, and test accuracy."""
import sys

import numpy as np
from sklearn.datasets import load_digits

import rbe
import rbe.nn as nn
from rbe.utils.data import DataLoader, TensorDataset


def load(seed: int = 0):
    d = load_digits()
    x = rbe.tensor((d.images / 16.0)[:, None, :, :], dtype=rbe.float32)  # (N, 1, 8, 8)
    y = rbe.tensor(d.target)
    train, test = rbe.utils.data.random_split(TensorDataset(x, y), [0.8, 0.2], generator=rbe.Generator().manual_seed(seed))
    return train, test


def evaluate(model, loader) -> float:
    model.eval()
    correct = total = 0
    with rbe.no_grad():
        for xb, yb in loader:
            correct += (model(xb).argmax(1) == yb).sum().item()
            total += len(yb)
    return correct / total


def main(epochs: int = 30, quiet: bool = False) -> float:
    rbe.manual_seed(0)
    train, test = load()
    train_loader = DataLoader(train, batch_size=64, shuffle=True)
    test_loader = DataLoader(test, batch_size=256)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
    optimizer = rbe.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in rbe.utils.progress(range(epochs), desc="epochs"):
        model.train()
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
        if not quiet and epoch % 10 == 9:
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}, test accuracy {evaluate(model, test_loader):.4f}")
    acc = evaluate(model, test_loader)
    if not quiet:
        print(f"test accuracy: {100 * acc:.2f}%")
    return acc


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
