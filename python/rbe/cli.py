"""The ``rbe`` console script: ``rbe demo``, ``rbe bench`` and one command per front-end.

A front-end ``rbe.<name>`` (``FRONTENDS``) that has a module ``rbe.<name>.cli`` with
``main(argv) -> int`` gets the command ``rbe <name> ...``; one with ``rbe.<name>.bench``
(``main(argv) -> int``) gets ``rbe bench <name> ...``. Both are imported only when used.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

FRONTENDS = ("hmm", "pinn", "iclv")


def _frontend_module(name: str, part: str):
    """``rbe.<name>.<part>`` if that front-end ships it, else None (found without importing it)."""
    try:
        if importlib.util.find_spec(f"rbe.{name}.{part}") is None:
            return None
    except ModuleNotFoundError:
        return None
    return f"rbe.{name}.{part}"


def demo_polyfit(steps: int = 2000, lr: float = 1e-6) -> dict:
    from .demos import polyfit

    return polyfit(steps, lr)


def cmd_demo(args) -> int:
    r = demo_polyfit(args.steps)
    a, b, c, d = r["coefficients"]
    print("rbe demo: fit sin(x) on [-pi, pi] with a cubic, plain gradient descent")
    print(f"  steps: {r['steps']}, final loss (sum of squares over 2000 points): {r['loss']:.4f}")
    print(f"  result: y = {a:.6f} + {b:.6f} x + {c:.6f} x^2 + {d:.6f} x^3")
    print(f"  time: {r['seconds']:.3f} s ({1e6 * r['seconds'] / r['steps']:.1f} us per step)")
    if args.no_digits:
        return 0
    from .demos import digits

    print()
    print("rbe demo: handwritten digits (scikit-learn, 8x8), Flatten-Linear(64,128)-ReLU-Dropout-Linear(128,10), Adam, cross-entropy")
    d = digits(epochs=args.epochs, compare_torch=not args.no_torch)
    r = d["rbe"]
    print(f"  rbe:   test accuracy {100 * r['test_accuracy']:.2f}% on {d['n_test']} images, training {r['seconds']:.2f} s for {d['epochs']} epochs")
    t = d.get("torch")
    if t:
        print(f"  torch: test accuracy {100 * t['test_accuracy']:.2f}%, training {t['seconds']:.2f} s (same model, data and schedule; time ratio torch/rbe {t['seconds'] / r['seconds']:.2f})")
    elif "torch" in d:
        print("  (torch is not installed: no comparison)")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="rbe", description="rbe-autodiff command line")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="a short tour: the polynomial fit of sin(x)")
    d.add_argument("--steps", type=int, default=2000, help="gradient steps of the polynomial fit")
    d.add_argument("--epochs", type=int, default=30, help="epochs of the digits classifier")
    d.add_argument("--no-digits", action="store_true", help="skip the digits classifier")
    d.add_argument("--no-torch", action="store_true", help="do not run the torch comparison")
    d.set_defaults(func=cmd_demo)
    sub.add_parser("bench", help="benchmark suite against torch; `rbe bench <front-end>` for a front-end's (rbe bench --help)", add_help=False)
    commands = {}
    for name in FRONTENDS:
        mod = _frontend_module(name, "cli")
        if mod is not None:
            commands[name] = mod
            sub.add_parser(name, help=f"the {name} front-end (rbe {name} --help)", add_help=False)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in commands:
        return importlib.import_module(commands[argv[0]]).main(argv[1:])
    if argv[:1] == ["bench"] and len(argv) > 1 and argv[1] in FRONTENDS:
        mod = _frontend_module(argv[1], "bench")
        if mod is None:
            p.error(f"the {argv[1]} front-end has no benchmark")
        return importlib.import_module(mod).main(argv[2:])
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main

        return bench_main(argv[1:])
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
