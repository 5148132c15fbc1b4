"""``rbe hmm``: a short demo — sample data from a known Gaussian HMM, fit a
``rbe.hmm.GaussianHMM`` by batched EM (progress bar on a terminal), compare
with the true model, decode."""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

import numpy as np


def demo(n_states: int = 4, n_features: int = 2, n_sequences: int = 20, length: int = 100, n_iter: int = 50,
         seed: int = 0, progress: Optional[bool] = None) -> dict:
    from itertools import permutations

    from rbe.hmm import GaussianHMM

    rs = np.random.RandomState(seed)
    true = GaussianHMM(n_states, "diag", init_params="")
    true.startprob_ = np.full(n_states, 1.0 / n_states)
    true.transmat_ = np.full((n_states, n_states), 0.1 / (n_states - 1)) + np.eye(n_states) * (0.9 - 0.1 / (n_states - 1))
    true.means_ = rs.normal(size=(n_states, n_features)) * 4
    true.covars_ = np.full((n_states, n_features), 0.5)
    lengths = [length] * (n_sequences - 1) + [1]  # ragged, with a length-1 sequence
    parts = [true.sample(n, random_state=seed + 1 + i) for i, n in enumerate(lengths)]
    X = np.concatenate([p[0] for p in parts])
    Z = np.concatenate([p[1] for p in parts])
    model = GaussianHMM(n_states, "diag", n_iter=n_iter, tol=1e-4, random_state=seed)
    t0 = time.perf_counter()
    model.fit(X, lengths, progress=progress)
    secs = time.perf_counter() - t0
    pred = model.predict(X, lengths)
    # state labels are arbitrary: the best matching permutation (small K)
    if n_states <= 7:
        acc = max(np.mean(np.array(p)[pred] == Z) for p in permutations(range(n_states)))
    else:
        acc = float("nan")
    return {"fit_seconds": secs, "iterations": model.monitor_.iter, "converged": bool(model.monitor_.converged),
            "log_likelihood": model.score(X, lengths), "true_log_likelihood": true.score(X, lengths),
            "state_accuracy": float(acc), "n_samples": len(X)}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="rbe hmm", description="Fit a Gaussian HMM by batched EM on sampled data (a short demo).")
    ap.add_argument("--states", type=int, default=4)
    ap.add_argument("--features", type=int, default=2)
    ap.add_argument("--sequences", type=int, default=20)
    ap.add_argument("--length", type=int, default=100)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar (default: on a terminal)")
    a = ap.parse_args(argv)
    if a.states < 2:
        ap.error("--states must be >= 2")
    r = demo(a.states, a.features, a.sequences, a.length, a.iters, a.seed, a.progress)
    print(f"rbe hmm: GaussianHMM(K={a.states}, D={a.features}, diag) fit by EM on {r['n_samples']} samples "
          f"({a.sequences} sequences, one of length 1)")
    print(f"  {r['iterations']} iterations in {r['fit_seconds']:.2f} s, converged: {r['converged']}")
    print(f"  log-likelihood: fitted {r['log_likelihood']:.2f}, true model {r['true_log_likelihood']:.2f}")
    print(f"  Viterbi states matching the true states (best label permutation): {100 * r['state_accuracy']:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
