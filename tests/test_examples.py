"""The examples run (kept short) and reach their targets."""
import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ["polyfit_1_manual", "polyfit_2_optim", "polyfit_3_module"])
def test_polyfit_forms_fit_the_cubic(name):
    # the best cubic in least squares leaves a sum of squares of about 8.8 on 2000 points
    assert load(name).main(2000, quiet=True) < 12.0


def test_polyfit_dataloader_form():
    assert load("polyfit_4_dataloader").main(40, quiet=True) < 0.01


def test_digits_classifier_reaches_95_percent():
    assert load("digits_classifier").main(30, quiet=True) >= 0.95


def test_gradient_accumulation_matches_big_batch():
    assert load("gradient_accumulation").main(3, quiet=True) < 1e-12


def test_reproducibility_example():
    assert load("reproducibility").main(quiet=True) is True


def test_demo_digits_accuracy():
    from rbe.demos import digits

    r = digits(epochs=30, compare_torch=False)
    assert r["rbe"]["test_accuracy"] >= 0.95
