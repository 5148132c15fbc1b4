"""The RBE front-end moved to ``rbe.structured`` (kernels in the crate
rust/structured, bindings in ``rbe._core.structured``): the old import paths
still give the same objects, the core package does not import the front-end,
and pickles written before the move still load.

``data/rbe_v0.pkl`` was written by the build before the move (commit 86a0619)::

    rbe.manual_seed(3)
    layer = RBELinear(12, 10, block=(4, 4), atoms=2, residual=1, track="mixed")
    model = rbe.nn.Sequential(layer, rbe.nn.Tanh())
    opt = rbe.optim.RBEHybrid(model.parameters(), lr=1e-2, flip_every=3)
    x = rbe.randn(5, 12)
    for _ in range(2):
        opt.zero_grad(); model(x).square().mean().backward(); opt.step()
    ropt = rbe.optim.RiemannianAdam(layer.parameters(), lr=1e-2)
    ropt.zero_grad(); model(x).square().mean().backward(); ropt.step()
    pickle.dumps({"model": model, "hybrid": opt, "riemannian": ropt, "x": x, "y": model(x).detach()}, protocol=4)

It names ``rbe.nn.modules.rbe_linear``, ``rbe.optim.rbe_hybrid`` and
``rbe.optim.riemannian``.
"""
import os
import pickle
import subprocess
import sys

import numpy as np

import rbe
import rbe.structured as S

HERE = os.path.dirname(os.path.abspath(__file__))


def test_rbe_is_the_installed_package():
    # no tests/structured/__init__.py: nothing in the repository shadows the installed rbe
    root = os.path.dirname(os.path.dirname(HERE))
    assert not os.path.abspath(rbe.__file__).startswith(os.path.join(root, "tests"))
    assert os.path.exists(rbe._core.__file__)


def test_old_import_paths_give_the_same_objects():
    import rbe.nn.functional as F
    import rbe.nn.modules.rbe_linear as old_layer
    import rbe.optim.rbe_hybrid as old_hybrid
    import rbe.optim.riemannian as old_riemannian
    from rbe.structured import functional, hybrid, layer, riemannian

    assert rbe.nn.RBELinear is rbe.nn.modules.RBELinear is old_layer.RBELinear is layer.RBELinear is S.RBELinear
    assert rbe.nn.RBESizeReport is old_layer.RBESizeReport is S.RBESizeReport
    assert old_layer.low_frequency_indices is S.low_frequency_indices and old_layer.HEADER_BYTES == layer.HEADER_BYTES
    assert F.rbe_linear is functional.rbe_linear is S.rbe_linear
    assert F.rbe_generate is functional.rbe_generate is S.rbe_generate
    assert rbe.optim.RBEHybrid is old_hybrid.RBEHybrid is hybrid.RBEHybrid is S.RBEHybrid
    assert rbe.optim.RiemannianAdam is old_riemannian.RiemannianAdam is riemannian.RiemannianAdam is S.RiemannianAdam
    for name in riemannian.__all__:
        assert getattr(old_riemannian, name) is getattr(riemannian, name), name
    ns: dict = {}
    exec("from rbe.nn import *\nfrom rbe.optim import *", ns)
    assert ns["RBELinear"] is S.RBELinear and ns["RBEHybrid"] is S.RBEHybrid and ns["RiemannianAdam"] is S.RiemannianAdam
    for mod in (rbe.nn, rbe.nn.modules, rbe.nn.functional, rbe.optim):
        assert not hasattr(mod, "NoSuchThing")


def test_native_submodule():
    import rbe._core.structured as native
    from rbe._core import structured

    assert native is structured is rbe._core.structured
    assert native.__name__ == "rbe._core.structured" and "structured" in rbe._core.__all__
    assert sorted(native.__all__) == ["default_kappa", "generate", "linear", "pack", "phase_sin_cos", "unpack"]
    assert all(getattr(native, n).__module__ == "rbe._core.structured" for n in native.__all__)
    assert not any(n.startswith("rbe_") for n in dir(rbe._core))


def _python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_core_package_does_not_import_the_front_end():
    # (the native submodule rbe._core.structured is registered by _core itself; the Python front-end is not imported)
    r = _python("import sys, rbe, rbe.nn, rbe.optim; print(sorted(m for m in sys.modules if m.startswith('rbe.structured')))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    # and each entry point imports cleanly on its own (no cycle, whatever comes first)
    for first in ("import rbe.structured", "import rbe.nn.modules.rbe_linear", "import rbe.optim.riemannian",
                  "import rbe.optim.rbe_hybrid", "from rbe.nn.functional import rbe_linear", "from rbe.optim import RBEHybrid",
                  "import rbe._core.structured", "from rbe.structured.layer import RBELinear"):
        r = _python(first + "; import rbe; assert rbe.nn.RBELinear is rbe.structured.RBELinear")
        assert r.returncode == 0, (first, r.stderr)


def test_pickles_written_before_the_move_load():
    with open(os.path.join(HERE, "data", "rbe_v0.pkl"), "rb") as f:
        d = pickle.load(f)
    model, hyb, riem = d["model"], d["hybrid"], d["riemannian"]
    layer = model[0]
    assert type(layer) is S.RBELinear and type(hyb) is S.RBEHybrid and type(riem) is S.RiemannianAdam
    # same output bits as when it was written; the optimisers still know the layer
    np.testing.assert_array_equal(model(d["x"]).detach().numpy(), d["y"].numpy())
    assert layer.atoms._rbe_layer() is layer
    assert hyb.param_groups[0]["params"][0] is layer.atoms
    for opt in (hyb, riem):
        opt.zero_grad()
        model(d["x"]).square().mean().backward()
        opt.step()
    # and a pickle written now names the new module
    again = pickle.loads(pickle.dumps(model))
    assert type(again[0]).__module__ == "rbe.structured.layer"
    np.testing.assert_array_equal(again(d["x"]).detach().numpy(), model(d["x"]).detach().numpy())
