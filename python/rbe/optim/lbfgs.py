"""L-BFGS, as ``torch.optim.LBFGS``.

The optimizer works on the flattened parameter vector (all parameters of its single
group concatenated). Each ``step(closure)`` runs up to ``max_iter`` iterations of

* the L-BFGS two-loop recursion (Nocedal & Wright, Alg. 7.4) over the last
  ``history_size`` curvature pairs ``(s, y)``, scaled by ``H0 = s.y / y.y``;
* a step length that is either fixed (``lr``, or ``min(1, 1/|g|_1) * lr`` on the
  very first iteration), or found by a strong-Wolfe line search
  (Nocedal & Wright, Alg. 3.5 bracketing + Alg. 3.6 zoom, with safeguarded cubic
  interpolation), making the same choices as torch so iterates agree with it;
* torch's stopping rules (``tolerance_grad`` on ``max|g|``, ``tolerance_change``
  on the step, the loss change and the directional derivative, ``max_eval``).

Scalars (dot products, step lengths) are Python floats; vectors are rbe tensors.
"""
from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Tuple

from .. import _core
from .._core import Tensor
from .._grad import no_grad_ctx as _no_grad
from .optimizer import Optimizer

__all__ = ["LBFGS"]


def _scalar(x) -> float:
    return float(x.item()) if isinstance(x, Tensor) else float(x)


def _cubic_interpolate(x1: float, f1: float, g1: float, x2: float, f2: float, g2: float, bounds: Optional[Tuple[float, float]] = None) -> float:
    """Minimiser of the cubic through ``(x1, f1, g1)`` and ``(x2, f2, g2)`` (values and
    slopes), clamped to ``bounds`` (default: the interval between the two points).
    Falls back to the bounds' midpoint when the cubic has no real minimiser."""
    if bounds is None:
        lo, hi = (x1, x2) if x1 <= x2 else (x2, x1)
    else:
        lo, hi = bounds
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    disc = d1 ** 2 - g1 * g2
    if disc < 0:
        return (lo + hi) / 2.0
    d2 = math.sqrt(disc)
    # written relative to the right-hand point for numerical symmetry
    if x1 <= x2:
        xm = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        xm = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(xm, lo), hi)


def _strong_wolfe(obj_func: Callable, x, t: float, d: Tensor, f: float, g: Tensor, gtd: float, c1: float = 1e-4, c2: float = 0.9, tolerance_change: float = 1e-9, max_ls: int = 25):
    """Line search along ``d`` from the parameters ``x`` satisfying the strong Wolfe
    conditions ``f(t) <= f + c1 t g.d`` and ``|g(t).d| <= c2 |g.d|``.

    ``obj_func(x, t, d)`` returns ``(loss, flat_grad)`` at ``x + t d``. Returns
    ``(f_new, g_new, t, n_evals)``."""
    d_norm = _scalar(d.abs().max())
    g = g.clone()
    f_new, g_new = obj_func(x, t, d)
    n_evals = 1
    gtd_new = _scalar(g_new.dot(d))

    # ---- bracketing phase (Alg. 3.5): grow t until an interval holds an acceptable point
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    bracket: List[float] = []
    bracket_f: List[float] = []
    bracket_g: List[Tensor] = []
    bracket_gtd: List[float] = []
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            # sufficient decrease fails (or the function went up): the minimiser is in [t_prev, t]
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.clone()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            # strong Wolfe holds at t
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            # slope turned non-negative: a minimiser lies in [t_prev, t]
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.clone()], [gtd_prev, gtd_new]
            break
        # still descending: extrapolate with a cubic, kept within [t + 0.01 (t - t_prev), 10 t]
        lo_step = t + 0.01 * (t - t_prev)
        hi_step = t * 10
        t_old = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(lo_step, hi_step))
        t_prev, f_prev, g_prev, gtd_prev = t_old, f_new, g_new.clone(), gtd_new
        f_new, g_new = obj_func(x, t, d)
        n_evals += 1
        gtd_new = _scalar(g_new.dot(d))
        ls_iter += 1

    if ls_iter == max_ls:
        # out of evaluations while bracketing
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]

    # ---- zoom phase (Alg. 3.6): shrink the bracket around a strong-Wolfe point
    insuf_progress = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])

        # safeguard: a trial point too near an end of the bracket makes little progress; if that
        # happened last time too (or t sits on an end), move it 10% of the width inside
        b_hi, b_lo = max(bracket), min(bracket)
        margin = 0.1 * (b_hi - b_lo)
        if min(b_hi - t, t - b_lo) < margin:
            if insuf_progress or t >= b_hi or t <= b_lo:
                t = b_hi - margin if abs(t - b_hi) < abs(t - b_lo) else b_lo + margin
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False

        f_new, g_new = obj_func(x, t, d)
        n_evals += 1
        gtd_new = _scalar(g_new.dot(d))
        ls_iter += 1

        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low]:
            # not acceptable: t replaces the high end
            bracket[high], bracket_f[high] = t, f_new
            bracket_g[high], bracket_gtd[high] = g_new.clone(), gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                # the slope points away from the old high end: the old low becomes the high end
                bracket[high], bracket_f[high] = bracket[low], bracket_f[low]
                bracket_g[high], bracket_gtd[high] = bracket_g[low], bracket_gtd[low]
            bracket[low], bracket_f[low] = t, f_new
            bracket_g[low], bracket_gtd[low] = g_new.clone(), gtd_new

    return bracket_f[low], bracket_g[low], bracket[low], n_evals


class LBFGS(Optimizer):
    """Limited-memory BFGS (torch's algorithm, ported from ``torch/optim``'s Lua ``lbfgs``).

    Requires a ``closure`` that re-evaluates the model and returns the loss; it is called
    with grad enabled. Only one parameter group is supported; all state is global and is
    kept in ``self.state[first_param]``."""

    def __init__(self, params, lr: float = 1, max_iter: int = 20, max_eval: Optional[int] = None, tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100, line_search_fn: Optional[str] = None, *, maximize: bool = False):
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= _scalar(lr):
            raise ValueError(f"Invalid learning rate: {lr}")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad, tolerance_change=tolerance_change, history_size=history_size, line_search_fn=line_search_fn, maximize=maximize)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        self._params: List[Tensor] = self.param_groups[0]["params"]
        self._numel_cache: Optional[int] = None

    # ------------------------------------------------------------ flat-vector helpers
    def _numel(self) -> int:
        if self._numel_cache is None:
            self._numel_cache = sum(p.numel() for p in self._params)
        return self._numel_cache

    def _gather_flat_grad(self) -> Tensor:
        views = []
        for p in self._params:
            g = p.grad
            if g is None:
                views.append(p.new_zeros(p.numel()))
            else:
                if g.requires_grad:
                    g = g.detach()
                views.append(g.reshape(-1))
        flat = _core.cat(views, 0)  # always a fresh tensor (never aliases a grad)
        if self.param_groups[0].get("maximize", False):
            flat = flat.neg()
        return flat

    def _add_grad(self, step_size: float, update: Tensor) -> None:
        offset = 0
        for p in self._params:
            n = p.numel()
            p.add_(update[offset : offset + n].view_as(p), alpha=step_size)
            offset += n
        if offset != self._numel():
            raise AssertionError(f"expected offset {offset} to equal {self._numel()}")

    def _clone_param(self) -> List[Tensor]:
        return [p.clone() for p in self._params]

    def _set_param(self, params_data: List[Tensor]) -> None:
        for p, v in zip(self._params, params_data):
            p.copy_(v)

    def _eval_closure(self, closure) -> Tuple[Any, float]:
        """Call the closure with grad enabled; return (the closure's loss, the loss as a float to minimise)."""
        orig = self._closure_loss(closure)
        f = _scalar(orig)
        return orig, (-f if self.param_groups[0].get("maximize", False) else f)

    def _directional_evaluate(self, closure, x: List[Tensor], t: float, d: Tensor) -> Tuple[float, Tensor]:
        self._add_grad(t, d)
        _, loss = self._eval_closure(closure)
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    # ------------------------------------------------------------ the step
    def step(self, closure=None):  # type: ignore[override]
        """Run up to ``max_iter`` L-BFGS iterations; return the loss at the starting point."""
        if closure is None:
            raise TypeError("LBFGS.step() requires a closure that reevaluates the model and returns the loss")
        if len(self.param_groups) != 1:
            raise AssertionError(f"Expected exactly one param_group, but got {len(self.param_groups)}")
        if len(self._params) == 0:
            return self._closure_loss(closure)
        with _no_grad():
            return self._step(closure)

    def _step(self, closure):
        group = self.param_groups[0]
        lr = _scalar(group["lr"])
        max_iter = group["max_iter"]
        max_eval = group["max_eval"]
        tolerance_grad = group["tolerance_grad"]
        tolerance_change = group["tolerance_change"]
        line_search_fn = group["line_search_fn"]
        history_size = group["history_size"]

        # global state, registered under the first parameter (as torch does)
        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss, loss = self._eval_closure(closure)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._gather_flat_grad()
        if _scalar(flat_grad.abs().max()) <= tolerance_grad:
            return orig_loss  # already optimal

        d: Optional[Tensor] = state.get("d")
        t = state.get("t")
        old_dirs: Optional[List[Tensor]] = state.get("old_dirs")  # the y's
        old_stps: Optional[List[Tensor]] = state.get("old_stps")  # the s's
        ro: Optional[List[float]] = state.get("ro")  # 1 / (y.s)
        H_diag = state.get("H_diag")
        prev_flat_grad: Optional[Tensor] = state.get("prev_flat_grad")
        prev_loss = state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # ---------------- search direction
            if state["n_iter"] == 1:
                d = flat_grad.neg()
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1.0
            else:
                y = flat_grad.sub(prev_flat_grad)
                s = d.mul(t)
                ys = _scalar(y.dot(s))
                if ys > 1e-10:  # keep the pair only if the curvature condition holds
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / _scalar(y.dot(y))
                # two-loop recursion: d = -H g
                k = len(old_dirs)
                al = state.get("al")
                if al is None or len(al) < history_size:
                    al = state["al"] = [None] * history_size
                q = flat_grad.neg()
                for i in range(k - 1, -1, -1):
                    al[i] = _scalar(old_stps[i].dot(q)) * ro[i]
                    q.add_(old_dirs[i], alpha=-al[i])
                d = q.mul(H_diag)
                for i in range(k):
                    be_i = _scalar(old_dirs[i].dot(d)) * ro[i]
                    d.add_(old_stps[i], alpha=al[i] - be_i)

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.clone()
            else:
                prev_flat_grad.copy_(flat_grad)
            prev_loss = loss

            # ---------------- step length
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / _scalar(flat_grad.abs().sum())) * lr
            else:
                t = lr

            gtd = _scalar(flat_grad.dot(d))
            if gtd > -tolerance_change:
                break  # not a descent direction (to tolerance)

            ls_func_evals = 0
            if line_search_fn is not None:
                if line_search_fn != "strong_wolfe":
                    raise RuntimeError("only 'strong_wolfe' is supported")
                x_init = self._clone_param()

                def obj_func(x, t_, d_):
                    return self._directional_evaluate(closure, x, t_, d_)

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(obj_func, x_init, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals)
                self._add_grad(t, d)
                opt_cond = _scalar(flat_grad.abs().max()) <= tolerance_grad
            else:
                self._add_grad(t, d)
                opt_cond = False
                if n_iter != max_iter:
                    # re-evaluate (skipped on the last iteration, as torch: the next step() does it)
                    _, loss = self._eval_closure(closure)
                    flat_grad = self._gather_flat_grad()
                    opt_cond = _scalar(flat_grad.abs().max()) <= tolerance_grad
                    ls_func_evals = 1

            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            # ---------------- stopping rules
            if n_iter == max_iter:
                break
            if current_evals >= max_eval:
                break
            if opt_cond:
                break
            if _scalar(d.mul(t).abs().max()) <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state["d"] = d
        state["t"] = t
        state["old_dirs"] = old_dirs
        state["old_stps"] = old_stps
        state["ro"] = ro
        state["H_diag"] = H_diag
        state["prev_flat_grad"] = prev_flat_grad
        state["prev_loss"] = prev_loss
        return orig_loss
