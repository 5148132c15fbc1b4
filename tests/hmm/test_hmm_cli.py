"""``rbe hmm`` (the demo fit) and the benchmark's argument handling."""
import subprocess
import sys

from rbe.hmm.cli import demo, main


def test_demo_fit_recovers_the_states(capsys):
    r = demo(n_states=3, n_features=2, n_sequences=6, length=60, n_iter=40, seed=1, progress=False)
    assert r["converged"] and r["iterations"] >= 2
    assert r["state_accuracy"] > 0.95
    # the fitted model explains the data at least about as well as the true one
    assert r["log_likelihood"] > r["true_log_likelihood"] - 0.01 * abs(r["true_log_likelihood"])
    assert main(["--states", "2", "--sequences", "3", "--length", "20", "--iters", "5", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "GaussianHMM(K=2" in out and "iterations" in out


def test_rbe_console_dispatches_to_the_hmm_cli():
    r = subprocess.run([sys.executable, "-m", "rbe.cli", "hmm", "--states", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and "--states must be >= 2" in r.stderr
