"""``rbe iclv``: a tiny origin-shaped study end to end (progress lines,
summary, recovery table, saved results that load back)."""
import json

import numpy as np

import rbe.iclv as iclv
from rbe.cli import main as rbe_main


def test_rbe_iclv_runs_a_small_study_and_reports_recovery(tmp_path, capsys):
    rc = rbe_main(["iclv", "--individuals", "50", "--tasks", "5", "--draws", "12", "--indicators-per-lv", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "iteration    1" in out  # a progress line per iteration
    assert "Recovery (true value, estimate, robust s.e.)" in out
    assert "b_x1" in out and "lambda3" in out
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["converged"] and run["parameters"] == 43 and run["individuals"] == 50
    res = iclv.Results.load(tmp_path / "results.json")
    # the saved estimates are the ones in the recovery table, and the truth is what the simulator used
    import pandas as pd

    tab = pd.read_csv(tmp_path / "recovery.csv", index_col=0)
    np.testing.assert_allclose(tab["estimate"].to_numpy(), [res[n] for n in tab.index], rtol=1e-12)
    from rbe.iclv.simulate import origin_study

    truth = origin_study(n_individuals=50, n_tasks=5, n_draws=12, n_indicators_per_lv=2).truth
    np.testing.assert_allclose(tab["true"].to_numpy(), [truth[n] for n in tab.index])
    assert np.all(np.isfinite(tab["robust_se"].to_numpy())) and np.all(tab["robust_se"].to_numpy() > 0)


def test_rbe_iclv_quiet_drug_study_prints_no_progress(capsys):
    rc = rbe_main(["iclv", "--study", "drug", "--individuals", "60", "--tasks", "3", "--draws", "8", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "iteration" not in out
    assert "drug-choice-sized ICLV" in out and "b_price" in out
