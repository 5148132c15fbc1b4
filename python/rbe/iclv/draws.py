"""Draws per individual and latent dimension, shape ``(N, R, L)``.

Kinds (``Draws(kind=...)``):

``"halton"`` (default)
    Built exactly as Apollo builds its default Halton draws, so published
    Apollo models reproduce: dimension ``d`` (from 0) uses the van der Corput
    sequence in the ``d``-th prime base (2, 3, 5, ...) starting from index 1
    (the point 0 is never used); individual ``n`` (from 1, in the order of
    the data) takes the points ``(n-1)R+1 .. nR``; the normal quantile is
    applied last. Each point is the correctly rounded value of the exact
    rational radical inverse. Options: ``skip`` (drop the first ``skip``
    points of every dimension, as Biogeme's skipped Halton), ``scramble=True``
    (scipy's scrambled Halton, seeded; no longer Apollo's).
``"sobol"``
    Scrambled Sobol points: exactly those of
    ``scipy.stats.qmc.Sobol(d=L, scramble=True, seed=seed)`` (scipy's linear
    matrix scrambling with a random digital shift), after
    ``fast_forward(skip)``, individual ``n`` taking points
    ``(n-1)R .. nR-1``. With ``R`` a power of 2 each individual's points, in
    each dimension, have exactly one point in each interval
    ``[k/R, (k+1)/R)`` (a scrambled Sobol block is a (0, m, 1)-net), and so
    have the first ``2^m`` points of all individuals together.
    ``scramble=False``: scipy's unscrambled Sobol sequence without its first
    point (0, whose normal quantile is -inf): individual ``n`` takes points
    ``(n-1)R+1 .. nR`` (after ``skip``), as Halton's.
``"mlhs"``
    Modified Latin hypercube sampling (Hess, Train and Polak 2006, Apollo's
    ``"mlhs"``): for each individual and dimension, ``(k + u) / R`` for
    ``k = 0..R-1`` with one uniform shift ``u``, randomly shuffled (one point
    in each interval ``[k/R, (k+1)/R)``).
``"pseudo"``
    Pseudo-random draws (NumPy's PCG64, seeded).
``"gauss-hermite"``
    Gauss-Hermite quadrature for one latent variable: ``R`` nodes of the
    standard normal and their weights (the average over draws becomes the
    weighted sum), the same nodes for every individual.
user array
    :meth:`Draws.from_array` takes an ``(N, R, L)`` array (and optional
    weights ``(R,)``) as they are.

``distribution`` is ``"normal"`` (default) or ``"uniform"`` (the uniform
points themselves), per dimension.
"""
from __future__ import annotations

import math
import warnings
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .. import _core
from .errors import SpecificationError, close_matches

__all__ = ["Draws", "halton_sequence", "first_primes"]

KINDS = ("halton", "sobol", "mlhs", "pseudo", "gauss-hermite")


def first_primes(n: int) -> List[int]:
    """The first ``n`` primes."""
    out: List[int] = []
    k = 2
    while len(out) < n:
        if all(k % p for p in out if p * p <= k):
            out.append(k)
        k += 1
    return out


def halton_sequence(base: int, start: int, count: int) -> np.ndarray:
    """The van der Corput radical inverse in ``base`` of the indices
    ``start .. start+count-1``, each correctly rounded from the exact rational
    (numerator and denominator computed in integers)."""
    idx = np.arange(start, start + count, dtype=np.int64)
    num = np.zeros(count, dtype=np.int64)
    den = np.ones(count, dtype=np.int64)
    i = idx.copy()
    # the reversed digits as an integer over base^(number of digits); both
    # fit in int64 for any index below 2^62 / base
    while (i > 0).any():
        nz = i > 0
        num[nz] = num[nz] * base + i[nz] % base
        den[nz] *= base
        i //= base
    # num/den: a correctly rounded division when both are exact doubles (< 2^53)
    if den.max() >= 2**53:
        from fractions import Fraction

        return np.array([float(Fraction(int(a), int(b))) for a, b in zip(num, den)])
    return num.astype(np.float64) / den.astype(np.float64)


class Draws:
    """A recipe for draws; :meth:`generate` makes the ``(N, R, L)`` array.

    Parameters
    ----------
    n_draws : int
        ``R``, draws per individual (nodes for Gauss-Hermite).
    dims : list of str
        The names of the latent dimensions (``L`` of them), e.g.
        ``["eta_att", "eta_norm"]``; the model reads ``draws["eta_att"]``.
    kind : str
        One of ``"halton"``, ``"sobol"``, ``"mlhs"``, ``"pseudo"``,
        ``"gauss-hermite"``.
    distribution : str or dict
        ``"normal"`` or ``"uniform"``, for all dimensions or per name.
    skip, scramble, seed : the options of the quasi-random kinds (``skip``
        for Halton and Sobol; ``scramble`` for Halton, default False, and
        Sobol, default True; an error for the other kinds) and the seed of the
        random kinds.
    """

    def __init__(
        self,
        n_draws: int,
        dims: Sequence[str],
        kind: str = "halton",
        distribution: Union[str, Dict[str, str]] = "normal",
        skip: int = 0,
        scramble: Optional[bool] = None,
        seed: Optional[int] = 0,
    ):
        if isinstance(dims, str):
            dims = [dims]
        dims = list(dims)
        if not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
            raise SpecificationError(f"Draws: n_draws must be a positive integer, got {n_draws!r}")
        if len(dims) == 0:
            raise SpecificationError("Draws: at least one dimension name is needed")
        if len(set(dims)) != len(dims):
            raise SpecificationError(f"Draws: dimension names repeat: {dims}")
        if kind not in KINDS:
            raise SpecificationError(f"Draws: unknown kind {kind!r}{close_matches(kind, KINDS)}; kinds: {list(KINDS)}")
        if kind == "gauss-hermite" and len(dims) != 1:
            raise SpecificationError(f"Draws: Gauss-Hermite quadrature is for one latent variable, got {len(dims)} dimensions {dims}")
        if skip < 0:
            raise SpecificationError(f"Draws: skip must be >= 0, got {skip}")
        if skip and kind not in ("halton", "sobol"):
            raise SpecificationError(f"Draws: skip is an option of Halton and Sobol draws, not of {kind!r}")
        if scramble is not None and kind not in ("halton", "sobol"):
            raise SpecificationError(f"Draws: scramble is an option of Halton and Sobol draws, not of {kind!r}")
        if isinstance(distribution, str):
            distribution = {d: distribution for d in dims}
        for d in distribution:
            if d not in dims:
                raise SpecificationError(f"Draws: distribution given for unknown dimension {d!r}{close_matches(d, dims)}")
        dist = {d: distribution.get(d, "normal") for d in dims}
        for d, v in dist.items():
            if v not in ("normal", "uniform"):
                raise SpecificationError(f"Draws: the distribution of {d!r} must be 'normal' or 'uniform', got {v!r}")
            if kind == "gauss-hermite" and v != "normal":
                raise SpecificationError("Draws: Gauss-Hermite nodes are for a normal latent variable")
        self.n_draws = int(n_draws)
        self.dims = dims
        self.kind = kind
        self.distribution = dist
        self.skip = int(skip)
        self.scramble = (kind == "sobol") if scramble is None else bool(scramble)
        self.seed = seed
        self._array: Optional[np.ndarray] = None
        self._weights: Optional[np.ndarray] = None

    @classmethod
    def from_array(cls, array, dims: Sequence[str], weights=None) -> "Draws":
        """User draws: an ``(N, R, L)`` array (normal or whatever the model
        expects), optionally with positive weights ``(R,)`` (normalised to sum 1)."""
        a = np.asarray(array, dtype=np.float64)
        if isinstance(dims, str):
            dims = [dims]
        if a.ndim != 3:
            raise SpecificationError(f"Draws.from_array: expected an (N, R, L) array, got shape {a.shape}")
        if a.shape[2] != len(dims):
            raise SpecificationError(f"Draws.from_array: the array has {a.shape[2]} dimensions but {len(dims)} names {list(dims)}")
        if not np.isfinite(a).all():
            n = np.unique(np.argwhere(~np.isfinite(a))[:, 0])
            raise SpecificationError(f"Draws.from_array: non-finite draws for individuals at positions {n[:5].tolist()}")
        d = cls(a.shape[1], dims)
        d.kind = "user"
        d._array = a
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (a.shape[1],) or not (w > 0).all() or not np.isfinite(w).all():
                raise SpecificationError(f"Draws.from_array: weights must be {a.shape[1]} positive numbers, got shape {w.shape}")
            d._weights = w / w.sum()
        return d

    # ------------------------------------------------------------------ generation
    def uniforms(self, n_individuals: int) -> np.ndarray:
        """The uniform points ``(N, R, L)`` before the quantile transform."""
        N, R, L = n_individuals, self.n_draws, len(self.dims)
        if self.kind == "halton":
            if self.scramble:
                from scipy.stats import qmc

                eng = qmc.Halton(d=L, scramble=True, seed=self.seed)
                if self.skip:
                    eng.fast_forward(self.skip)
                u = eng.random(N * R)
            else:
                primes = first_primes(L)
                u = np.stack([halton_sequence(p, 1 + self.skip, N * R) for p in primes], axis=1)
            return u.reshape(N, R, L)
        if self.kind == "sobol":
            from scipy.stats import qmc

            eng = qmc.Sobol(d=L, scramble=self.scramble, seed=self.seed)
            if self.skip:
                eng.fast_forward(self.skip)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # balance properties want powers of 2
                if not self.scramble:
                    eng.fast_forward(1)  # the point 0
                u = eng.random(N * R)
            return u.reshape(N, R, L)
        rng = np.random.default_rng(self.seed)
        if self.kind == "mlhs":
            out = np.empty((N, R, L))
            base = np.arange(R, dtype=np.float64)
            for l in range(L):
                for n in range(N):
                    out[n, :, l] = rng.permutation((base + rng.uniform()) / R)
            return out
        if self.kind == "pseudo":
            return rng.uniform(size=(N, R, L))
        raise SpecificationError(f"Draws: no uniform points for kind {self.kind!r}")

    def generate(self, n_individuals: int) -> np.ndarray:
        """The ``(N, R, L)`` float64 array of draws."""
        if self._array is not None:
            if self._array.shape[0] != n_individuals:
                raise SpecificationError(f"Draws: the user array has draws for {self._array.shape[0]} individuals, the data has {n_individuals}")
            return self._array
        if self.kind == "gauss-hermite":
            x, _ = np.polynomial.hermite_e.hermegauss(self.n_draws)
            return np.broadcast_to(x.reshape(1, -1, 1), (n_individuals, self.n_draws, 1)).copy()
        if self.kind == "pseudo":
            rng = np.random.default_rng(self.seed)
            out = np.empty((n_individuals, self.n_draws, len(self.dims)))
            for l, d in enumerate(self.dims):
                out[:, :, l] = rng.standard_normal((n_individuals, self.n_draws)) if self.distribution[d] == "normal" else rng.uniform(size=(n_individuals, self.n_draws))
            return out
        from scipy.special import ndtri

        u = self.uniforms(n_individuals)
        out = np.empty_like(u)
        for l, d in enumerate(self.dims):
            out[:, :, l] = ndtri(u[:, :, l]) if self.distribution[d] == "normal" else u[:, :, l]
        return out

    def weights(self) -> Optional[np.ndarray]:
        """Weights ``(R,)`` summing to 1, or None for a plain average."""
        if self.kind == "gauss-hermite":
            _, w = np.polynomial.hermite_e.hermegauss(self.n_draws)
            return w / w.sum()
        return self._weights

    def __repr__(self) -> str:
        return f"Draws({self.n_draws} {self.kind} draws, dims {self.dims})"


class DrawTensor:
    """The draws as the model function sees them: ``draws["eta"]`` is the
    ``(N, R)`` float64 tensor of one dimension, ``draws.all`` the
    ``(N, R, L)`` tensor, ``draws.n_draws`` is ``R``."""

    def __init__(self, array: np.ndarray, dims: Sequence[str]):
        self._array = np.ascontiguousarray(array, dtype=np.float64)
        self.dims = list(dims)
        self.all = _core.from_numpy(self._array)
        self.n_draws = self._array.shape[1]
        self._per = {d: _core.from_numpy(np.ascontiguousarray(self._array[:, :, l])) for l, d in enumerate(self.dims)}

    def __getitem__(self, name):
        if isinstance(name, (int, np.integer)):
            return self._per[self.dims[name]]
        if name not in self._per:
            raise SpecificationError(f"no draws named {name!r}{close_matches(name, self.dims)}; dimensions: {self.dims}")
        return self._per[name]

    def __len__(self) -> int:
        return len(self.dims)
