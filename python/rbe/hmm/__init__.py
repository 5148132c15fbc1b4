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
import importlib as _importlib

from .functional import hmm_log_likelihood, hmm_posteriors, hmm_viterbi

# The models (scikit-learn, scipy), the neural modules and streaming are
# imported on first use: `import rbe.hmm` for the fused ops alone stays
# quick (scikit-learn alone takes about a second to import).
_LAZY = {"CategoricalHMM": "models", "ConvergenceMonitor": "models", "GaussianHMM": "models", "NotFittedError": "models",
         "NeuralHMM": "neural", "ScoreHMM": "neural", "StreamingHMMProcessor": "streaming",
         "checkpointed_posteriors": "streaming", "checkpointed_smooth": "streaming", "overlap_window_posteriors": "streaming"}
_SUBMODULES = ("functional", "models", "neural", "streaming", "bench", "cli")

__all__ = ["hmm_log_likelihood", "hmm_posteriors", "hmm_viterbi", "GaussianHMM", "CategoricalHMM", "ConvergenceMonitor", "NotFittedError",
           "NeuralHMM", "ScoreHMM", "StreamingHMMProcessor", "checkpointed_posteriors", "checkpointed_smooth",
           "overlap_window_posteriors"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(_importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
