"""The ``rbe`` console script: ``rbe demo``."""
from __future__ import annotations

import argparse
import math
import sys
import time


def demo_polyfit(steps: int = 2000, lr: float = 1e-6) -> dict:
    """Fit y = sin(x) on [-pi, pi] with a + b x + c x^2 + d x^3 by gradient descent (the classic tutorial)."""
    import rbe

    rbe.manual_seed(0)
    dtype = rbe.float32
    x = rbe.linspace(-math.pi, math.pi, 2000, dtype=dtype)
    y = rbe.sin(x)
    a = rbe.randn((), dtype=dtype, requires_grad=True)
    b = rbe.randn((), dtype=dtype, requires_grad=True)
    c = rbe.randn((), dtype=dtype, requires_grad=True)
    d = rbe.randn((), dtype=dtype, requires_grad=True)
    t0 = time.perf_counter()
    loss = None
    for t in range(steps):
        y_pred = a + b * x + c * x ** 2 + d * x ** 3
        loss = (y_pred - y).pow(2).sum()
        loss.backward()
        with rbe.no_grad():
            for p in (a, b, c, d):
                p -= lr * p.grad
                p.grad = None
    elapsed = time.perf_counter() - t0
    return {
        "coefficients": [p.item() for p in (a, b, c, d)],
        "loss": loss.item(),
        "seconds": elapsed,
        "steps": steps,
    }


def cmd_demo(args) -> int:
    r = demo_polyfit(args.steps)
    a, b, c, d = r["coefficients"]
    print("rbe demo: fit sin(x) on [-pi, pi] with a cubic, plain gradient descent")
    print(f"  steps: {r['steps']}, final loss (sum of squares over 2000 points): {r['loss']:.4f}")
    print(f"  result: y = {a:.6f} + {b:.6f} x + {c:.6f} x^2 + {d:.6f} x^3")
    print(f"  time: {r['seconds']:.3f} s ({1e6 * r['seconds'] / r['steps']:.1f} us per step)")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="rbe", description="rbe-autodiff command line")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="a short tour: the polynomial fit of sin(x)")
    d.add_argument("--steps", type=int, default=2000)
    d.set_defaults(func=cmd_demo)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
