"""rbe.hmm: exact, batched hidden Markov models on fused log-space kernels.

- :mod:`rbe.hmm.functional`: ``hmm_log_likelihood``, ``hmm_posteriors``,
  ``hmm_viterbi`` (differentiable, ragged batches, structural zeros exact);
- :class:`GaussianHMM`, :class:`CategoricalHMM`: hmmlearn's API (EM over
  concatenated ``X`` plus ``lengths``, batched; optional gradient fit);
- :class:`NeuralHMM` (normalised Gaussian emissions from a network) and
  :class:`ScoreHMM` (unnormalised ``Linear`` emission scores), ``rbe.nn`` modules;
- :class:`StreamingHMMProcessor`, :func:`checkpointed_smooth`,
  :func:`overlap_window_posteriors`: streaming and long sequences.

See docs/hmm.md.
"""
from .functional import hmm_log_likelihood, hmm_posteriors, hmm_viterbi
from .models import CategoricalHMM, ConvergenceMonitor, GaussianHMM, NotFittedError
from .neural import NeuralHMM, ScoreHMM
from .streaming import StreamingHMMProcessor, checkpointed_posteriors, checkpointed_smooth, overlap_window_posteriors

__all__ = ["hmm_log_likelihood", "hmm_posteriors", "hmm_viterbi", "GaussianHMM", "CategoricalHMM", "ConvergenceMonitor", "NotFittedError",
           "NeuralHMM", "ScoreHMM", "StreamingHMMProcessor", "checkpointed_posteriors", "checkpointed_smooth",
           "overlap_window_posteriors"]
