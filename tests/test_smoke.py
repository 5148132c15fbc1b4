import math

import numpy as np
import pytest

import rbe


def test_backward_of_square_sum():
    x = rbe.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x ** 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0, 6.0])


def test_demo_polyfit_converges():
    from rbe.cli import demo_polyfit

    r = demo_polyfit(steps=2000)
    a, b, c, d = r["coefficients"]
    # least-squares cubic for sin on [-pi, pi] is about 0.857 x - 0.0933 x^3
    assert r["loss"] < 20
    assert abs(b - 0.85) < 0.05 and abs(d + 0.092) < 0.01


def test_errors_map_to_python_exceptions():
    a = rbe.zeros(2, 3)
    b = rbe.zeros(4, 5)
    with pytest.raises(ValueError, match=r"\[2, 3\].*\[4, 5\]|2.*3.*4.*5"):
        a + b
    with pytest.raises(IndexError):
        a[5]
    with pytest.raises(TypeError):
        rbe.zeros(2, dtype=rbe.int64).exp_()
    w = rbe.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        w.add_(1.0)


def test_cli_front_end_dispatch(monkeypatch, tmp_path):
    """`rbe <name> ...` and `rbe bench <name> ...` call rbe.<name>.cli / .bench main(argv)."""
    import sys
    import types

    import rbe.cli as cli

    calls = []
    pkg = types.ModuleType("rbe.hmm")
    pkg.__path__ = []  # a package, so find_spec looks for its submodules in sys.modules
    mod_cli = types.ModuleType("rbe.hmm.cli")
    mod_cli.__spec__ = types.SimpleNamespace(name="rbe.hmm.cli")
    mod_cli.main = lambda argv: calls.append(("cli", list(argv))) or 3
    mod_bench = types.ModuleType("rbe.hmm.bench")
    mod_bench.__spec__ = types.SimpleNamespace(name="rbe.hmm.bench")
    mod_bench.main = lambda argv: calls.append(("bench", list(argv))) or 4
    if "rbe.hmm" not in sys.modules:
        monkeypatch.setitem(sys.modules, "rbe.hmm", pkg)
    monkeypatch.setitem(sys.modules, "rbe.hmm.cli", mod_cli)
    monkeypatch.setitem(sys.modules, "rbe.hmm.bench", mod_bench)
    assert cli.main(["hmm", "--x", "1"]) == 3
    assert cli.main(["bench", "hmm", "--quick"]) == 4
    assert calls == [("cli", ["--x", "1"]), ("bench", ["--quick"])]
    # a front-end that is not there is not a command
    monkeypatch.setitem(sys.modules, "rbe.hmm.cli", None)
    with pytest.raises(SystemExit):
        cli.main(["hmm"])
