"""Polynomial fit, form 1: tensors and autograd, a manual update under no_grad.

Fits y = sin(x) on [-pi, pi] with y = a + b x + c x^2 + d x^3.
"""
import math
import sys

import rbe


def main(steps: int = 2000, quiet: bool = False) -> float:
    rbe.manual_seed(0)
    x = rbe.linspace(-math.pi, math.pi, 2000)
    y = rbe.sin(x)
    a, b, c, d = (rbe.randn((), requires_grad=True) for _ in range(4))
    lr = 1e-6
    for t in range(steps):
        y_pred = a + b * x + c * x**2 + d * x**3
        loss = (y_pred - y).pow(2).sum()
        if not quiet and t % 500 == 499:
            print(t, loss.item())
        loss.backward()
        with rbe.no_grad():
            for p in (a, b, c, d):
                p -= lr * p.grad
                p.grad = None
    if not quiet:
        print(f"Result: y = {a.item()} + {b.item()} x + {c.item()} x^2 + {d.item()} x^3")
    return loss.item()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
