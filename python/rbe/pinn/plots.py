"""Figures of a PINN run (matplotlib, Agg backend): the solution next to the
reference and the pointwise error, and the loss curves."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

__all__ = ["plot_solution", "plot_loss", "have_matplotlib", "require_matplotlib", "MISSING_MATPLOTLIB"]

#: The message of a missing matplotlib (it names the extra that installs it).
MISSING_MATPLOTLIB = "matplotlib not installed: figures skipped; pip install 'rbe-autodiff[plot]'"


def have_matplotlib() -> bool:
    """Whether ``import matplotlib`` succeeds (checked before a training that is to save figures)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def require_matplotlib(what: str = "the figures") -> None:
    """Raise :class:`~rbe.pinn.errors.MissingExtraError` (an ``ImportError``)
    naming the ``plot`` extra when matplotlib is missing."""
    if not have_matplotlib():
        from .errors import MissingExtraError

        raise MissingExtraError(f"{what} need matplotlib, which is not installed; pip install 'rbe-autodiff[plot]'")


def _plt():
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_solution(problem, model, path: str) -> None:
    """Solution, reference and |error| on the problem's grid: curves in 1D,
    images in 2D (``(x, t)`` for a time-dependent problem), the middle slice
    of the last axis in 3D."""
    plt = _plt()
    dim = problem.dim
    if dim == 3:
        lo, hi = problem.lo, problem.hi
        n = 101
        a = np.linspace(lo[0], hi[0], n)
        b = np.linspace(lo[1], hi[1], n)
        A, B = np.meshgrid(a, b, indexing="ij")
        x = np.stack([A.ravel(), B.ravel(), np.full(A.size, 0.5 * (lo[2] + hi[2]))], axis=1)
        shape = (n, n)
        extent = [lo[0], hi[0], lo[1], hi[1]]
        title = f"{problem.name} (slice x3 = {0.5 * (lo[2] + hi[2]):g})"
    else:
        x, shape = problem.grid()
        extent = [problem.lo[0], problem.hi[0], problem.lo[-1], problem.hi[-1]] if dim == 2 else None
        title = problem.name
    u = problem.predict(model, x)
    ref = problem.exact(x)
    err = np.abs(u - ref)
    if dim == 1:
        fig, axs = plt.subplots(1, 2, figsize=(10, 3.6))
        axs[0].plot(x[:, 0], ref, "k-", lw=2, label="reference")
        axs[0].plot(x[:, 0], u, "r--", lw=1.5, label="PINN")
        axs[0].legend()
        axs[0].set_title(title)
        axs[1].semilogy(x[:, 0], np.maximum(err, 1e-300))
        axs[1].set_title("|error|")
        for ax in axs:
            ax.set_xlabel("x")
    else:
        fig, axs = plt.subplots(1, 3, figsize=(14, 4))
        for ax, v, name in zip(axs, (u, ref, err), ("PINN", "reference", "|error|")):
            im = ax.imshow(v.reshape(shape).T, origin="lower", extent=extent, aspect="auto", cmap="viridis" if name != "|error|" else "magma")
            fig.colorbar(im, ax=ax)
            ax.set_title(f"{title}: {name}" if name == "PINN" else name)
            ax.set_xlabel("x")
            ax.set_ylabel("t" if problem.time_dependent else "y")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_loss(history: Dict[str, list], terms: Sequence[str], path: str) -> None:
    """Every loss term, the weighted total and the relative error (when
    recorded) against the step; the weights on a second panel."""
    plt = _plt()
    steps = np.asarray(history["step"])
    fig, axs = plt.subplots(1, 2, figsize=(12, 4))
    if steps.size:
        axs[0].semilogy(steps, history["loss"], "k-", lw=1.5, label="total (weighted)")
        for t in terms:
            axs[0].semilogy(steps, history[f"loss_{t}"], lw=1, label=t)
        err = np.asarray(history["error"], dtype=float)
        ok = np.isfinite(err)
        if ok.any():
            axs[0].semilogy(steps[ok], err[ok], "o-", ms=3, label="rel. L2 error")
        phase = np.asarray(history["phase"])
        if (phase == "lbfgs").any():
            axs[0].axvline(steps[np.argmax(phase == "lbfgs")], color="grey", ls=":", label="L-BFGS")
        for t in terms:
            axs[1].semilogy(steps, history[f"weight_{t}"], label=t)
    axs[0].set_title("loss terms")
    axs[1].set_title("weights")
    for ax in axs:
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
