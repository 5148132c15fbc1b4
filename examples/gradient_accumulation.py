"""Gradient accumulation: four micro-batches of 16 give the same update as one batch of 64."""
import sys

import numpy as np

import rbe
import rbe.nn as nn


def make(seed):
    rbe.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 3)).double()


def main(steps: int = 5, quiet: bool = False) -> float:
    rbe.manual_seed(1)
    x = rbe.randn(64, 10, dtype=rbe.float64)
    y = rbe.randint(0, 3, (64,))
    big, small = make(0), make(0)
    opt_big = rbe.optim.SGD(big.parameters(), lr=0.1, momentum=0.9)
    opt_small = rbe.optim.SGD(small.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    accumulation = 4
    for _ in range(steps):
        opt_big.zero_grad()
        loss_fn(big(x), y).backward()
        opt_big.step()

        opt_small.zero_grad()
        for xb, yb in zip(x.chunk(accumulation), y.chunk(accumulation)):
            # each micro-batch loss is scaled so that the gradients add up to the big-batch mean
            (loss_fn(small(xb), yb) / accumulation).backward()
        opt_small.step()
    diff = max(float(np.abs(a.detach().numpy() - b.detach().numpy()).max()) for a, b in zip(big.parameters(), small.parameters()))
    if not quiet:
        print(f"largest difference between the two models after {steps} steps: {diff:.3e}")
    return diff


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
