"""rbe.hmm: exact, batched hidden Markov models on fused log-space kernels.

- :mod:`rbe.hmm.functional`: ``hmm_log_likelihood``, ``hmm_posteriors``,
  ``hmm_viterbi`` (differentiable, ragged batches, structural zeros exact);
- :class:`GaussianHMM`, :class:`CategoricalHMM`: hmmlearn's API (EM over
  concatenated ``X`` plus ``lengths``, batched; optional gradient fit).
"""
from .functional import hmm_log_likelihood, hmm_posteriors, hmm_viterbi
from .models import CategoricalHMM, ConvergenceMonitor, GaussianHMM

__all__ = ["hmm_log_likelihood", "hmm_posteriors", "hmm_viterbi", "GaussianHMM", "CategoricalHMM", "ConvergenceMonitor"]
