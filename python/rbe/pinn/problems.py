"""Benchmark PDE problems of the PINN front-end, and the :class:`Problem` base
class for defining one's own.

A problem is a box ``[lo, hi]`` (one axis per input; for a time-dependent
problem the last axis is time), a PDE residual written with the derivatives
of the model (one Taylor-mode sweep, ``rbe.pinn.taylor``), Dirichlet boundary
data, optionally initial data, and an exact solution for the error.

The built-in problems (all with Dirichlet data taken from the exact solution):

========================  ==========================================================  ====================
name                      equation, domain                                             exact solution
========================  ==========================================================  ====================
``poisson1d``             ``-u'' = pi^2 sin(pi x)`` on ``[-1, 1]``                     ``sin(pi x)``
``poisson2d``             ``-lap u = 2 pi^2 u*`` on ``[0, 1]^2``                       ``sin(pi x) sin(pi y)``
``poisson3d``             ``-lap u = 3 pi^2 u*`` on ``[0, 1]^3``                       ``prod sin(pi x_a)``
``helmholtz2d``           ``lap u + k^2 u = q`` on ``[-1, 1]^2``, ``a = (1, 4), k = 1``  ``sin(a1 pi x) sin(a2 pi y)``
``diffusion1d``           ``u_t = 0.1 u_xx``, ``x`` in ``[-6, 6]``, ``t`` in ``[0, 1]``    ``exp(-0.1 pi^2 t) sin(pi x)``
========================  ==========================================================  ====================

with ``q = (k^2 - (a1 pi)^2 - (a2 pi)^2) u*`` for Helmholtz and, for the
diffusion problem (the Scaled-cPIKAN paper's), ``u(x, 0) = sin(pi x)``,
``u(+-6, t) = 0``.

Defining a problem: subclass :class:`Problem`, set ``name``, ``box``
(``(lo, hi)`` lists), ``mode`` (which derivatives the residual needs:
``"gradient"``, ``"laplacian"`` or ``"hessian_diag"``), ``time_dependent`` and
``source_scale`` (about ``max |f|``, used to scale the PDE loss), and write
``residual(x, d)`` (``d`` is a :class:`rbe.pinn.Derivatives`: ``value``
``(N, 1)``, ``gradient`` ``(N, d)``, ``laplacian`` ``(N,)``, ``hessian_diag``
``(N, d)``) and ``exact(x)`` (NumPy ``(N, d) -> (N,)``)::

    class Poisson1DCubic(Problem):
        name = "cubic"
        box = ([0.0], [1.0])
        source_scale = 6.0

        def residual(self, x, d):            # -u'' = -6 x  (u = x^3)
            return -d.laplacian + 6.0 * x[:, 0]

        def exact(self, x):
            return x[:, 0] ** 3

Boundary values default to ``exact`` on the boundary (override
``boundary_value``/``initial_value`` when there is no exact solution; then
``relative_l2`` needs a ``reference`` array).
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple, Type

import numpy as np

from .. import _core
from .._core import Tensor
from .._grad import no_grad_ctx as _no_grad
from ..errors import ArgumentError, ShapeError
from .taylor import MODES, Derivatives, taylor

__all__ = ["Problem", "Poisson1D", "Poisson2D", "Poisson3D", "Helmholtz2D", "Diffusion1D", "PROBLEMS", "get_problem", "SAMPLERS"]

#: Point samplers of :meth:`Problem.sample_interior`: NumPy uniform, or
#: scipy.stats.qmc's Sobol and Latin hypercube.
SAMPLERS = ("uniform", "sobol", "lhs")


def _as_t(a: np.ndarray, dtype) -> Tensor:
    t = _core.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
    return t if dtype is None or t.dtype == dtype else t.to(dtype)


def _unit_points(n: int, dim: int, sampler: str, rng: np.random.Generator) -> np.ndarray:
    if sampler == "uniform":
        return rng.random((n, dim))
    from scipy.stats import qmc

    seed = int(rng.integers(0, 2**31 - 1))
    if sampler == "sobol":
        import warnings

        with warnings.catch_warnings():  # balance properties need n a power of 2; fine for collocation
            warnings.simplefilter("ignore", UserWarning)
            return qmc.Sobol(dim, scramble=True, seed=seed).random(n)
    return qmc.LatinHypercube(dim, seed=seed).random(n)


class Problem:
    """A PDE on a box with Dirichlet (and, when time-dependent, initial) data.

    Subclasses set the class attributes and write :meth:`residual` and
    :meth:`exact` (see the module docstring for an example).
    """

    #: short name (the CLI's)
    name: str = "problem"
    #: ``(lo, hi)``: one bound per input axis
    box: Tuple[Sequence[float], Sequence[float]] = ([0.0], [1.0])
    #: the derivatives :meth:`residual` reads (see ``rbe.pinn.taylor``)
    mode: str = "laplacian"
    #: the last axis is time: boundary data on the spatial faces, initial data at ``t = lo``
    time_dependent: bool = False
    #: about ``max |f|`` of the PDE's right-hand side; the PDE loss is scaled by ``1 / source_scale^2``
    source_scale: float = 1.0
    #: points per axis of the uniform grid of :meth:`relative_l2` (``None``: by dimension)
    grid_points: Optional[Sequence[int]] = None

    # ------------------------------------------------------------------ to write
    def residual(self, x: Tensor, d: Derivatives) -> Tensor:
        """The PDE residual ``(N,)`` at the points ``x`` ``(N, dim)`` given the model's derivatives ``d``."""
        raise NotImplementedError(f"{type(self).__name__}.residual is not written")

    def exact(self, x: np.ndarray) -> np.ndarray:
        """The exact solution ``(N,)`` at NumPy points ``(N, dim)``."""
        raise NotImplementedError(f"{type(self).__name__} has no exact solution")

    def boundary_value(self, x: np.ndarray) -> np.ndarray:
        """Dirichlet data on the boundary (default: :meth:`exact`)."""
        return self.exact(x)

    def initial_value(self, x: np.ndarray) -> np.ndarray:
        """Initial data at ``t = lo`` (default: :meth:`exact`)."""
        return self.exact(x)

    # ------------------------------------------------------------------ derived
    @property
    def dim(self) -> int:
        return len(self.box[0])

    @property
    def lo(self) -> np.ndarray:
        return np.asarray(self.box[0], dtype=np.float64)

    @property
    def hi(self) -> np.ndarray:
        return np.asarray(self.box[1], dtype=np.float64)

    def check(self) -> None:
        """Raise ValueError when the class attributes are inconsistent."""
        lo, hi = self.lo, self.hi
        if lo.ndim != 1 or lo.shape != hi.shape or lo.size < 1:
            raise ArgumentError(f"{self.name}: box must be (lo, hi) with one bound per axis, got {self.box!r}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)):
            raise ArgumentError(f"{self.name}: box needs finite bounds lo < hi on every axis, got {self.box!r}")
        if self.mode not in MODES:
            raise ArgumentError(f"{self.name}: mode must be one of {MODES}, got {self.mode!r}")
        if self.time_dependent and self.dim < 2:
            raise ArgumentError(f"{self.name}: a time-dependent problem needs a space axis and a time axis")
        if not (math.isfinite(self.source_scale) and self.source_scale > 0):
            raise ArgumentError(f"{self.name}: source_scale must be finite and > 0, got {self.source_scale}")

    def pde_residual(self, model, x: Tensor, method: str = "auto") -> Tensor:
        """The residual of ``model`` at ``x``: one Taylor sweep (``method="auto"``
        falls back to nested autograd for a model without Taylor rules)."""
        d = taylor(model, x, self.mode, method)
        r = self.residual(x, d)
        if r.ndim == 2 and int(r.shape[1]) == 1:
            r = r[:, 0]
        return r

    def _scale(self, unit: np.ndarray) -> np.ndarray:
        return self.lo + unit * (self.hi - self.lo)

    def sample_interior(self, n: int, rng: Optional[np.random.Generator] = None, sampler: str = "uniform") -> np.ndarray:
        """``n`` collocation points in the box, ``(n, dim)`` (``sampler`` one of :data:`SAMPLERS`)."""
        if sampler not in SAMPLERS:
            raise ArgumentError(f"sample_interior: sampler must be one of {SAMPLERS}, got {sampler!r}")
        if int(n) < 1:
            raise ArgumentError(f"sample_interior: n must be >= 1, got {n}")
        rng = rng if rng is not None else np.random.default_rng()
        return self._scale(_unit_points(int(n), self.dim, sampler, rng))

    def sample_boundary(self, n: int, rng: Optional[np.random.Generator] = None) -> Tuple[np.ndarray, np.ndarray]:
        """``n`` points on the Dirichlet boundary and their values: every face
        of the box (of the spatial axes when time-dependent), the faces
        weighted by their measure; in 1D the two end points alternately."""
        rng = rng if rng is not None else np.random.default_rng()
        n = int(n)
        if n < 1:
            raise ArgumentError(f"sample_boundary: n must be >= 1, got {n}")
        lo, hi = self.lo, self.hi
        dim = self.dim
        space = dim - 1 if self.time_dependent else dim
        pts = self._scale(rng.random((n, dim)))
        if dim == 1:
            pts[:, 0] = np.where(np.arange(n) % 2 == 0, lo[0], hi[0])
        else:
            # face (axis a, side s) has measure prod_{b != a} (hi_b - lo_b)
            width = hi - lo
            meas = np.array([np.prod(np.delete(width, a)) for a in range(space)])
            axes = rng.choice(space, size=n, p=meas / meas.sum())
            side = rng.integers(0, 2, size=n)
            pts[np.arange(n), axes] = np.where(side == 0, lo[axes], hi[axes])
        return pts, np.asarray(self.boundary_value(pts), dtype=np.float64).reshape(n)

    def sample_initial(self, n: int, rng: Optional[np.random.Generator] = None) -> Tuple[np.ndarray, np.ndarray]:
        """``n`` points at ``t = lo`` (uniform in space) and the initial values."""
        if not self.time_dependent:
            raise ArgumentError(f"{self.name}: not time-dependent, it has no initial data")
        rng = rng if rng is not None else np.random.default_rng()
        n = int(n)
        if n < 1:
            raise ArgumentError(f"sample_initial: n must be >= 1, got {n}")
        pts = self._scale(rng.random((n, self.dim)))
        pts[:, -1] = self.lo[-1]
        return pts, np.asarray(self.initial_value(pts), dtype=np.float64).reshape(n)

    def grid(self, points: Optional[Sequence[int]] = None) -> Tuple[np.ndarray, Tuple[int, ...]]:
        """The uniform grid (end points included): points ``(M, dim)`` and the grid's shape."""
        if points is None:
            points = self.grid_points
        if points is None:
            points = {1: (1001,), 2: (101, 101), 3: (31, 31, 31)}.get(self.dim, (11,) * self.dim)
        points = tuple(int(p) for p in points)
        if len(points) != self.dim or any(p < 2 for p in points):
            raise ArgumentError(f"{self.name}: grid needs {self.dim} sizes >= 2, got {points}")
        axes = [np.linspace(self.lo[a], self.hi[a], points[a]) for a in range(self.dim)]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.reshape(-1) for m in mesh], axis=1), points

    def predict(self, model, x: np.ndarray, dtype=None, chunk: int = 65536) -> np.ndarray:
        """The model at NumPy points ``(M, dim)``, as ``(M,)``, without a graph."""
        if dtype is None:
            params = list(model.parameters()) if hasattr(model, "parameters") else []
            dtype = params[0].dtype if params else None
        out = []
        with _no_grad():
            for s in range(0, len(x), chunk):
                u = model(_as_t(x[s:s + chunk], dtype))
                out.append(np.asarray(u.detach().to(_core.float64).numpy(), dtype=np.float64).reshape(-1))
        return np.concatenate(out) if out else np.zeros(0)

    def relative_l2(self, model, points: Optional[Sequence[int]] = None, reference: Optional[np.ndarray] = None) -> float:
        """``||u - u*||_2 / ||u*||_2`` on the uniform grid (:meth:`grid`)."""
        x, _ = self.grid(points)
        ref = self.exact(x) if reference is None else np.asarray(reference, dtype=np.float64).reshape(-1)
        if ref.shape[0] != x.shape[0]:
            raise ShapeError(f"relative_l2: reference has {ref.shape[0]} values for a grid of {x.shape[0]} points")
        u = self.predict(model, x)
        return float(np.linalg.norm(u - ref) / np.linalg.norm(ref))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, box={self.box!r}, mode={self.mode!r})"


class Poisson1D(Problem):
    """``-u'' = pi^2 sin(pi x)`` on ``[-1, 1]``, ``u(+-1) = 0``; ``u* = sin(pi x)``."""

    name = "poisson1d"
    box = ([-1.0], [1.0])
    source_scale = math.pi ** 2

    def residual(self, x, d):
        return -d.laplacian - (math.pi ** 2) * (math.pi * x[:, 0]).sin()

    def exact(self, x):
        return np.sin(np.pi * x[:, 0])


class _SinePoisson(Problem):
    box = ([0.0, 0.0], [1.0, 1.0])

    def residual(self, x, d):
        dim = self.dim
        f = (math.pi * x[:, 0]).sin()
        for a in range(1, dim):
            f = f * (math.pi * x[:, a]).sin()
        return -d.laplacian - (dim * math.pi ** 2) * f

    def exact(self, x):
        return np.prod(np.sin(np.pi * x), axis=1)


class Poisson2D(_SinePoisson):
    """``-lap u = 2 pi^2 sin(pi x) sin(pi y)`` on ``[0, 1]^2``, zero on the boundary."""

    name = "poisson2d"
    box = ([0.0, 0.0], [1.0, 1.0])
    source_scale = 2 * math.pi ** 2


class Poisson3D(_SinePoisson):
    """``-lap u = 3 pi^2 prod_a sin(pi x_a)`` on ``[0, 1]^3``, zero on the boundary."""

    name = "poisson3d"
    box = ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    source_scale = 3 * math.pi ** 2


class Helmholtz2D(Problem):
    """``lap u + k^2 u = q`` on ``[-1, 1]^2`` with ``u* = sin(a1 pi x) sin(a2 pi y)``,
    ``q = (k^2 - (a1 pi)^2 - (a2 pi)^2) u*``, zero on the boundary (integer ``a``)."""

    name = "helmholtz2d"
    box = ([-1.0, -1.0], [1.0, 1.0])

    def __init__(self, a1: float = 1.0, a2: float = 4.0, k: float = 1.0):
        self.a1, self.a2, self.k = float(a1), float(a2), float(k)
        self.coef = self.k ** 2 - (self.a1 * math.pi) ** 2 - (self.a2 * math.pi) ** 2
        self.source_scale = abs(self.coef)

    def residual(self, x, d):
        q = self.coef * (self.a1 * math.pi * x[:, 0]).sin() * (self.a2 * math.pi * x[:, 1]).sin()
        u = d.value[:, 0]
        return d.laplacian + (self.k ** 2) * u - q

    def exact(self, x):
        return np.sin(self.a1 * np.pi * x[:, 0]) * np.sin(self.a2 * np.pi * x[:, 1])


class Diffusion1D(Problem):
    """``u_t = nu u_xx`` (``nu = 0.1``) on ``x`` in ``[-6, 6]``, ``t`` in ``[0, 1]``;
    ``u(x, 0) = sin(pi x)``, ``u(+-6, t) = 0``; ``u* = exp(-nu pi^2 t) sin(pi x)``.
    Inputs are ``(x, t)``. The residual has no source; ``source_scale`` is the
    size of ``u_t`` at ``t = 0``, ``nu pi^2``."""

    name = "diffusion1d"
    box = ([-6.0, 0.0], [6.0, 1.0])
    mode = "hessian_diag"
    time_dependent = True
    grid_points = (241, 51)

    def __init__(self, nu: float = 0.1):
        self.nu = float(nu)
        self.source_scale = self.nu * math.pi ** 2

    def residual(self, x, d):
        return d.gradient[:, 1] - self.nu * d.hessian_diag[:, 0]

    def exact(self, x):
        return np.exp(-self.nu * np.pi ** 2 * x[:, 1]) * np.sin(np.pi * x[:, 0])


#: The built-in problems by name.
PROBLEMS: Dict[str, Type[Problem]] = {
    c.name: c for c in (Poisson1D, Poisson2D, Poisson3D, Helmholtz2D, Diffusion1D)
}


def get_problem(name) -> Problem:
    """A built-in problem by name (or a :class:`Problem` instance, returned as is)."""
    if isinstance(name, Problem):
        return name
    if name not in PROBLEMS:
        raise ArgumentError(f"unknown problem {name!r}; one of {sorted(PROBLEMS)}")
    return PROBLEMS[name]()
