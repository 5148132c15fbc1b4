"""Neural HMMs: :class:`NeuralHMM` (normalised diagonal-Gaussian emissions
whose per-state means and variances come from a network of the context,
optionally context-dependent transitions) and :class:`ScoreHMM` (the simple
model of the PyTorch library this front-end replaces: learned initial and
transition logits with ``Linear`` emission *scores*, not a density).

Both are ``rbe.nn.Module`` s trained with any ``rbe.optim`` optimizer through
the fused ops (the exact analytic backward: posteriors into the emission
network, expected counts into the transitions), and both work inside
``rbe.utils.checkpoint``.
"""
from __future__ import annotations

import math
import rbe
from rbe import nn

from ..errors import ShapeError
from .functional import hmm_log_likelihood, hmm_posteriors, hmm_viterbi

__all__ = ["NeuralHMM", "ScoreHMM"]

_LOG2PI = math.log(2 * math.pi)


class _HMMModule(nn.Module):
    """The inference methods shared by the neural models (``hmm_parameters`` is model specific)."""

    num_states: int

    def hmm_parameters(self, observations, context=None):  # pragma: no cover - abstract
        """``(log_pi (K,), log_A (K, K) or (B, T-1, K, K), log_emissions (B, T, K))``."""
        raise NotImplementedError

    def _obs(self, observations):
        if observations.dim() != 3:
            raise ShapeError(f"observations must have shape (batch, time, observation_dim), got {tuple(observations.shape)}")
        if observations.shape[2] != self.observation_dim:
            raise ShapeError(f"observations have {observations.shape[2]} features but observation_dim={self.observation_dim}")
        return observations

    def forward(self, observations, context=None, lengths=None):
        """``(posteriors, log_alpha, log_beta)``, each ``(B, T, K)`` (0 past each length)."""
        pi, a, e = self.hmm_parameters(self._obs(observations), context)
        r = hmm_posteriors(pi, a, e, lengths)
        return r.gamma, r.log_alpha, r.log_beta

    def log_likelihood(self, observations, context=None, lengths=None):
        """``log p(x)`` per sequence ``(B,)``: the training objective (maximise its sum)."""
        pi, a, e = self.hmm_parameters(self._obs(observations), context)
        return hmm_log_likelihood(pi, a, e, lengths)

    def viterbi(self, observations, context=None, lengths=None):
        """``(path (B, T) int64, log_prob (B,))``."""
        pi, a, e = self.hmm_parameters(self._obs(observations), context)
        return hmm_viterbi(pi, a, e, lengths)


class NeuralHMM(_HMMModule):
    """An HMM whose emissions are a normalised diagonal Gaussian per state.

    - ``context_dim == 0``: per-state means and log-variances are parameters;
      the log-densities of all states are three matrix products
      (``x**2 @ (1/var).T``, ``x @ (mu/var).T``, a per-state constant).
    - ``context_dim > 0``: a network ``Linear(context_dim, hidden_dim) -> tanh
      -> Linear(hidden_dim, 2 K D)`` maps the context of each frame to the
      per-state means and log-variances (the density of ``x_t`` given
      ``c_t``); with ``context_transitions`` a ``Linear(context_dim, K K)``
      adds context-dependent logits to the transition logits of each step
      (``(B, T-1, K, K)``, row-normalised by ``log_softmax``).

    Log-variances are clamped to ``[min_log_var, max_log_var]`` so the density
    stays proper. The initial distribution and the transitions are
    ``log_softmax`` of learned logits.
    """

    def __init__(self, num_states: int, observation_dim: int, context_dim: int = 0, hidden_dim: int = 256,
                 context_transitions: bool = False, min_log_var: float = -10.0, max_log_var: float = 10.0,
                 dtype=None):
        super().__init__()
        if num_states < 1 or observation_dim < 1:
            raise ShapeError(f"num_states and observation_dim must be >= 1, got {num_states}, {observation_dim}")
        if context_transitions and context_dim <= 0:
            raise ShapeError("context_transitions needs context_dim > 0")
        dtype = dtype or rbe.get_default_dtype()
        self.num_states, self.observation_dim, self.context_dim = num_states, observation_dim, context_dim
        self.min_log_var, self.max_log_var = min_log_var, max_log_var
        k, d = num_states, observation_dim
        self.initial_logits = nn.Parameter(rbe.zeros(k, dtype=dtype))
        self.transition_logits = nn.Parameter(rbe.eye(k, dtype=dtype) * 2.0)
        if context_dim == 0:
            self.means = nn.Parameter(rbe.randn(k, d, dtype=dtype))
            self.log_vars = nn.Parameter(rbe.zeros(k, d, dtype=dtype))
        else:
            self.net = nn.Sequential(nn.Linear(context_dim, hidden_dim, dtype=dtype), nn.Tanh(),
                                     nn.Linear(hidden_dim, 2 * k * d, dtype=dtype))
        self.context_transitions = nn.Linear(context_dim, k * k, dtype=dtype) if context_transitions else None

    def _context(self, context, b, t):
        if self.context_dim == 0:
            if context is not None:
                raise ShapeError("this NeuralHMM has context_dim=0 but a context was given")
            return None
        if context is None:
            raise ShapeError(f"this NeuralHMM needs a context of shape (B, T, {self.context_dim})")
        if tuple(context.shape) != (b, t, self.context_dim):
            raise ShapeError(f"context must have shape (B, T, context_dim) = ({b}, {t}, {self.context_dim}), got {tuple(context.shape)}")
        return context

    def hmm_parameters(self, observations, context=None):
        b, t, d = observations.shape
        k = self.num_states
        ctx = self._context(context, b, t)
        log_pi = rbe.log_softmax(self.initial_logits, dim=0)
        if self.context_transitions is not None and t > 1:
            extra = self.context_transitions(ctx[:, : t - 1]).reshape(b, t - 1, k, k)
            log_a = rbe.log_softmax(self.transition_logits + extra, dim=3)
        else:
            log_a = rbe.log_softmax(self.transition_logits, dim=1)
        if ctx is None:
            lv = rbe.clamp(self.log_vars, self.min_log_var, self.max_log_var)
            prec = rbe.exp(-lv)
            mp = self.means * prec
            const = (lv.sum(1) + (self.means * mp).sum(1) + d * _LOG2PI) * -0.5
            x = observations.reshape(b * t, d)
            le = const - 0.5 * rbe.matmul(x * x, prec.t()) + rbe.matmul(x, mp.t())
            return log_pi, log_a, le.reshape(b, t, k)
        out = self.net(ctx).reshape(b, t, k, 2, d)
        mu = out.select(3, 0)
        lv = rbe.clamp(out.select(3, 1), self.min_log_var, self.max_log_var)
        z = (observations.unsqueeze(2) - mu) * rbe.exp(lv * -0.5)
        le = ((z * z + lv).sum(3) + d * _LOG2PI) * -0.5
        return log_pi, log_a, le


class ScoreHMM(_HMMModule):
    """The origin's simple model: learned initial and transition logits and
    ``Linear(observation_dim, K)`` emission **scores**.

    The scores are *unnormalised*: they are not log-densities of the
    observations (they do not integrate to one over ``x``), so
    ``log_likelihood`` is a score for discriminative use (comparing state
    sequences or training against labels), not a likelihood of the data;
    maximising it can push the scores up without bound. Use
    :class:`NeuralHMM` for a proper density.
    """

    def __init__(self, num_states: int, observation_dim: int, dtype=None):
        super().__init__()
        dtype = dtype or rbe.get_default_dtype()
        self.num_states, self.observation_dim = num_states, observation_dim
        self.initial_logits = nn.Parameter(rbe.zeros(num_states, dtype=dtype))
        self.transition_logits = nn.Parameter(rbe.zeros(num_states, num_states, dtype=dtype))
        self.emission = nn.Linear(observation_dim, num_states, dtype=dtype)

    def hmm_parameters(self, observations, context=None):
        return (rbe.log_softmax(self.initial_logits, dim=0), rbe.log_softmax(self.transition_logits, dim=1),
                self.emission(observations))
