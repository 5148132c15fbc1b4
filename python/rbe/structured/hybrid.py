"""The hybrid optimiser of RBE layers: Adam on the continuous fields, exact-checked track flips."""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional

import numpy as np

from ..optim.adam import Adam

__all__ = ["RBEHybrid"]


class RBEHybrid(Adam):
    r"""Adam on the continuous fields of RBE layers plus the track-flip rule of the spec (section 5).

    Every parameter is updated by Adam (same arguments and results as
    :class:`rbe.optim.Adam`). The ``atoms`` parameters of
    :class:`rbe.structured.RBELinear` layers are recognised, and for those layers the
    optimiser also decides each atom's discrete *track* (SIN or TANH):

    1. The backward pass computes ``gamma = dL/d(alpha)`` of the relaxation
       ``g_alpha = (1 - alpha) sin + alpha tanh`` (the optimiser turns
       ``layer.track_grad_enabled`` on). After every step ``gamma`` is folded
       into an exponential moving average (``gamma_decay``), and the layer's
       ``tracks.grad`` is cleared.
    2. Every ``flip_every`` steps, an atom is a *candidate* when the predicted
       loss change of flipping it, ``(1 - 2 alpha) * EMA(gamma)``, is below
       ``-flip_threshold`` and the atom is not cooling down.
    3. The candidates are flipped together, most promising first, and
       ``calibration()`` (the exact loss on a fixed calibration batch,
       evaluated without grad) is compared with its value before the flip. A
       set is kept only if the loss went strictly down; otherwise the most
       promising half is tried, and so on down to the single best candidate.
       If nothing lowers the loss, every track is restored exactly.
    4. A flipped atom's Adam moments are reset: zero moments and a fresh
       bias correction (the ``atoms`` of RBE layers are updated by Adam with
       one step count per atom, so a reset atom restarts exactly like a new
       Adam; with no resets this is plain Adam). Its EMA is cleared; flipped
       atoms and rejected candidates then wait ``cooldown`` steps before
       they can be candidates again.

    Without ``calibration`` no flip is ever made (the rule needs an exact
    check), gamma is not computed, and the optimiser is Adam plus phase
    housekeeping. Setting ``opt.calibration`` later turns the rule on.

    RBE layers are recognised when the optimiser is built or a parameter
    group is added. The optimiser can be pickled together with its model;
    ``calibration`` is not part of the pickle and must be set again.

    Phases: after each step, SIN phases are wrapped into ``(-pi, pi)``
    (``sin`` is periodic, so this changes nothing beyond one rounding), and
    TANH phases, which are offsets, are clamped into ``(-pi, pi)``, the range
    the Packed128 record can store (a projection step). A flip to TANH
    therefore starts from a phase that is already in range.

    Args:
        params: iterable of parameters or parameter groups (as Adam).
        lr, betas, eps, weight_decay, amsgrad: as :class:`rbe.optim.Adam`.
        flip_every: steps between flip checks (``tau``).
        flip_threshold: a flip is a candidate when its predicted change is
            below ``-flip_threshold`` (``eps`` of the spec), >= 0.
        gamma_decay: EMA factor for ``gamma`` in ``[0, 1)``.
        cooldown: steps a flipped atom (or a rejected candidate) is held.
        calibration: zero-argument callable returning the loss (a scalar
            tensor or float) on a fixed calibration batch.
        max_flips: at most this many candidates tried per check (None: all).

    Attributes:
        flips: number of accepted flips so far.
        flip_log: one dict per check: ``step``, ``candidates``, ``accepted``,
            ``loss_before``, ``loss_after``.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        flip_every: int = 50,
        flip_threshold: float = 0.0,
        gamma_decay: float = 0.9,
        cooldown: int = 200,
        calibration: Optional[Callable[[], object]] = None,
        max_flips: Optional[int] = None,
    ):
        if int(flip_every) < 1:
            raise ValueError(f"RBEHybrid: flip_every must be >= 1, got {flip_every}")
        if not (flip_threshold >= 0.0 and math.isfinite(flip_threshold)):
            raise ValueError(f"RBEHybrid: flip_threshold must be finite and >= 0, got {flip_threshold}")
        if not 0.0 <= gamma_decay < 1.0:
            raise ValueError(f"RBEHybrid: gamma_decay must be in [0, 1), got {gamma_decay}")
        if int(cooldown) < 0:
            raise ValueError(f"RBEHybrid: cooldown must be >= 0, got {cooldown}")
        if max_flips is not None and int(max_flips) < 1:
            raise ValueError(f"RBEHybrid: max_flips must be >= 1 or None, got {max_flips}")
        self._layers: List[tuple] = []  # (atoms parameter, layer, group)
        self._calibration = None
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        self.flip_every = int(flip_every)
        self.flip_threshold = float(flip_threshold)
        self.gamma_decay = float(gamma_decay)
        self.cooldown = int(cooldown)
        self.max_flips = None if max_flips is None else int(max_flips)
        self.flips = 0
        self.flip_log: List[Dict[str, object]] = []
        self._steps = 0
        self.calibration = calibration

    @property
    def calibration(self):
        """Zero-argument callable returning the calibration loss (None: no flips)."""
        return self._calibration

    @calibration.setter
    def calibration(self, fn) -> None:
        if fn is not None and not callable(fn):
            raise TypeError(f"RBEHybrid: calibration must be a zero-argument callable, got {type(fn).__name__}")
        self._calibration = fn
        self._ensure_layers()
        for _, layer, _ in self._layers:
            layer.track_grad_enabled = fn is not None

    def add_param_group(self, param_group) -> None:
        super().add_param_group(param_group)
        self._track_layers(self.param_groups[-1])

    def _track_layers(self, group) -> None:
        """Records the RBE layers whose ``atoms`` are in ``group``."""
        for p in group["params"]:
            ref = getattr(p, "_rbe_layer", None)
            layer = ref() if ref is not None else None
            if layer is not None and layer.n_atoms and layer.atoms is p:
                layer.track_grad_enabled = self._calibration is not None
                self._layers.append((p, layer, group))

    # ------------------------------------------------------------------ step
    def step(self, closure=None):
        """One Adam step on every parameter; then the EMA of gamma, phase
        housekeeping and, every ``flip_every`` steps, the flip check."""
        from .. import no_grad

        self._ensure_layers()
        loss = self._closure_loss(closure)
        # the atoms of RBE layers take the per-atom Adam below
        stash = [(p, p.grad) for p, _, _ in self._layers if p.grad is not None]
        for p, _ in stash:
            p.grad = None
        try:
            super().step()
        finally:
            for p, g in stash:
                p.grad = g
        self._steps += 1
        d = self.gamma_decay
        with no_grad():
            for p, layer, group in self._layers:
                if p.grad is not None:
                    self._adam_atoms(p, group)
                st = self._hybrid_state(p, layer)
                g = layer.tracks.grad
                if g is not None:
                    self._put(st, "gamma_ema", d * self._get(st, "gamma_ema") + (1.0 - d) * g.double().numpy(), p)
                    layer.tracks.grad = None
                hold = self._get(st, "hold")
                self._put(st, "hold", np.maximum(hold - 1.0, 0.0), p)
                self._fix_phases(p, layer)
        if self._calibration is not None and self._steps % self.flip_every == 0:
            self._flip_check()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for _, layer, _ in self._layers:
            layer.tracks.grad = None

    def state_dict(self):
        """Adam's state dict (with the per-atom step counts, EMA of gamma and
        cool-downs in each atoms parameter's state) plus the step and flip counters."""
        sd = super().state_dict()
        sd["rbe_hybrid"] = {"steps": self._steps, "flips": self.flips}
        return sd

    def load_state_dict(self, state_dict) -> None:
        extra = state_dict.get("rbe_hybrid")
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "rbe_hybrid"})
        if extra is not None:
            self._steps, self.flips = int(extra["steps"]), int(extra["flips"])

    def __getstate__(self):
        st = super().__getstate__()
        st.update({k: getattr(self, k) for k in ("flip_every", "flip_threshold", "gamma_decay", "cooldown", "max_flips", "flips", "flip_log", "_steps")})
        return st

    def __setstate__(self, state):
        super().__setstate__(state)
        self._calibration = None
        self._layers = []
        # the layers are looked up again at the next step: when a model and
        # its optimiser are unpickled together, the layers re-tag their
        # parameters only after this runs
        self._rescan = True

    def _ensure_layers(self) -> None:
        if getattr(self, "_rescan", False):
            self._rescan = False
            self._layers = []
            for g in self.param_groups:
                self._track_layers(g)

    # --------------------------------------------------------------- helpers
    @staticmethod
    def _get(st, key) -> np.ndarray:
        return st[key].double().numpy()

    @staticmethod
    def _put(st, key, value, p) -> None:
        from .. import tensor

        st[key] = tensor(np.asarray(value, dtype=np.float64), dtype=p.dtype)

    def _hybrid_state(self, p, layer):
        st = self.state[p]
        shape = tuple(layer.tracks.shape)
        for key in ("gamma_ema", "hold", "atom_step"):
            if key not in st:
                self._put(st, key, np.zeros(shape), p)
        return st

    def _adam_atoms(self, p, group) -> None:
        """Adam on an atoms tensor with one step count per atom (torch's
        formula, in float64), so that a reset atom restarts its bias correction."""
        from .. import tensor

        _, layer, _ = next(e for e in self._layers if e[0] is p)
        st = self._hybrid_state(p, layer)
        b1, b2 = group["betas"]
        lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        g = p.grad.detach().double().numpy()
        x = p.detach().double().numpy()
        if group.get("maximize", False):
            g = -g
        if wd:
            g = g + wd * x
        if "exp_avg" not in st:
            self._put(st, "exp_avg", np.zeros(x.shape), p)
            self._put(st, "exp_avg_sq", np.zeros(x.shape), p)
            if group["amsgrad"]:
                self._put(st, "max_exp_avg_sq", np.zeros(x.shape), p)
            st["step"] = tensor(0.0)
        st["step"] = tensor(float(st["step"].item()) + 1.0)
        m = b1 * self._get(st, "exp_avg") + (1.0 - b1) * g
        v = b2 * self._get(st, "exp_avg_sq") + (1.0 - b2) * g * g
        k = self._get(st, "atom_step") + 1.0
        vv = v
        if group["amsgrad"]:
            vv = np.maximum(self._get(st, "max_exp_avg_sq"), v)
            self._put(st, "max_exp_avg_sq", vv, p)
        bc1 = 1.0 - b1 ** k[..., None]
        bc2 = 1.0 - b2 ** k[..., None]
        x = x - (lr / bc1) * m / (np.sqrt(vv) / np.sqrt(bc2) + eps)
        self._put(st, "exp_avg", m, p)
        self._put(st, "exp_avg_sq", v, p)
        self._put(st, "atom_step", k, p)
        p.copy_(tensor(x, dtype=p.dtype))

    @staticmethod
    def _fix_phases(p, layer) -> None:
        from .. import tensor

        a = p.detach().numpy()
        ph = a[..., 1]
        # the largest value of the parameter's dtype below pi (f32(pi) is above pi)
        hi = float(np.nextafter(ph.dtype.type(math.pi), ph.dtype.type(0)))
        tr = layer.tracks.detach().numpy()
        ph64 = ph.astype(np.float64)
        fixed = np.where(tr == 0, (ph64 + math.pi) % (2 * math.pi) - math.pi, ph64)
        fixed = np.clip(fixed, -hi, hi).astype(ph.dtype)
        if not np.array_equal(fixed, ph):
            a = a.copy()
            a[..., 1] = fixed
            p.copy_(tensor(a, dtype=p.dtype))

    def _calibration_loss(self) -> float:
        from .. import no_grad

        with no_grad():
            out = self._calibration()
        return float(out.item() if hasattr(out, "item") else out)

    def _set_tracks(self, chosen) -> None:
        """Flip the tracks of ``chosen`` = [(layer_idx, block, atom)] (twice restores exactly)."""
        from .. import tensor

        by_layer: Dict[int, list] = {}
        for li, b, j in chosen:
            by_layer.setdefault(li, []).append((b, j))
        for li, cells in by_layer.items():
            _, layer, _ = self._layers[li]
            tr = layer.tracks.detach().double().numpy().copy()
            idx = tuple(np.array(cells).T)
            tr[idx] = 1.0 - tr[idx]
            layer.tracks.copy_(tensor(tr, dtype=layer.tracks.dtype))

    def _flip_check(self) -> None:
        from .. import no_grad

        cands = []
        for li, (p, layer, _) in enumerate(self._layers):
            st = self._hybrid_state(p, layer)
            alpha = layer.tracks.detach().double().numpy()
            pred = (1.0 - 2.0 * alpha) * self._get(st, "gamma_ema")
            ok = (pred < -self.flip_threshold) & (self._get(st, "hold") == 0) & ((alpha == 0) | (alpha == 1))
            for b, j in zip(*np.nonzero(ok)):
                cands.append((float(pred[b, j]), li, int(b), int(j)))
        entry = {"step": self._steps, "candidates": len(cands), "accepted": 0, "loss_before": None, "loss_after": None}
        self.flip_log.append(entry)
        if not cands:
            return
        cands.sort()
        if self.max_flips is not None:
            cands = cands[: self.max_flips]
        chosen_all = [(li, b, j) for _, li, b, j in cands]
        with no_grad():
            # SIN phases are already wrapped into (-pi, pi), so a flip to TANH needs no phase change
            before = self._calibration_loss()
            entry["loss_before"] = entry["loss_after"] = before
            n = len(chosen_all)
            accepted = []
            while n >= 1:
                trial = chosen_all[:n]
                self._set_tracks(trial)
                try:
                    after = self._calibration_loss()
                except BaseException:
                    self._set_tracks(trial)  # leave the tracks as they were
                    raise
                if after < before:
                    accepted = trial
                    entry["loss_after"] = after
                    break
                self._set_tracks(trial)
                n //= 2
            per_layer: Dict[int, list] = {}
            for li, b, j in chosen_all:
                per_layer.setdefault(li, [])
            for li in per_layer:
                p, layer, _ = self._layers[li]
                st = self._hybrid_state(p, layer)
                hold, ema = self._get(st, "hold"), self._get(st, "gamma_ema")
                for lj, b, j in chosen_all:
                    if lj == li:
                        hold[b, j] = self.cooldown
                keys = [k for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if k in st]
                moments = {k: self._get(st, k) for k in keys}
                steps = self._get(st, "atom_step")
                for lj, b, j in accepted:
                    if lj == li:
                        ema[b, j] = 0.0
                        steps[b, j] = 0.0
                        for m in moments.values():
                            m[b, j, :] = 0.0
                self._put(st, "hold", hold, p)
                self._put(st, "gamma_ema", ema, p)
                self._put(st, "atom_step", steps, p)
                for k, m in moments.items():
                    self._put(st, k, m, p)
        entry["accepted"] = len(accepted)
        self.flips += len(accepted)
