"""The hybrid optimiser of RBE layers: Adam on the continuous fields, exact-checked track flips."""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional

import numpy as np

from .adam import Adam


class RBEHybrid(Adam):
    r"""Adam on the continuous fields of RBE layers plus the track-flip rule of the spec (section 5).

    Every parameter is updated by Adam (same arguments and results as
    :class:`rbe.optim.Adam`). The ``atoms`` parameters of
    :class:`rbe.nn.RBELinear` layers are recognised, and for those layers the
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
    4. A flipped atom's Adam moments are reset to zero and its EMA cleared;
       flipped atoms and rejected candidates then wait ``cooldown`` steps
       before they can be candidates again.

    Without ``calibration`` no flip is ever made (the rule needs an exact
    check) and the optimiser is Adam plus phase housekeeping.

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
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        if int(flip_every) < 1:
            raise ValueError(f"RBEHybrid: flip_every must be >= 1, got {flip_every}")
        if not (flip_threshold >= 0.0 and math.isfinite(flip_threshold)):
            raise ValueError(f"RBEHybrid: flip_threshold must be finite and >= 0, got {flip_threshold}")
        if not 0.0 <= gamma_decay < 1.0:
            raise ValueError(f"RBEHybrid: gamma_decay must be in [0, 1), got {gamma_decay}")
        if int(cooldown) < 0:
            raise ValueError(f"RBEHybrid: cooldown must be >= 0, got {cooldown}")
        if calibration is not None and not callable(calibration):
            raise TypeError(f"RBEHybrid: calibration must be a zero-argument callable, got {type(calibration).__name__}")
        if max_flips is not None and int(max_flips) < 1:
            raise ValueError(f"RBEHybrid: max_flips must be >= 1 or None, got {max_flips}")
        self.flip_every = int(flip_every)
        self.flip_threshold = float(flip_threshold)
        self.gamma_decay = float(gamma_decay)
        self.cooldown = int(cooldown)
        self.calibration = calibration
        self.max_flips = None if max_flips is None else int(max_flips)
        self.flips = 0
        self.flip_log: List[Dict[str, object]] = []
        self._steps = 0
        self._layers = []  # (atoms parameter, layer)
        for g in self.param_groups:
            for p in g["params"]:
                ref = getattr(p, "_rbe_layer", None)
                layer = ref() if ref is not None else None
                if layer is not None and layer.n_atoms:
                    layer.track_grad_enabled = True
                    self._layers.append((p, layer))
        self._ema = [np.zeros(tuple(layer.tracks.shape)) for _, layer in self._layers]
        self._hold = [np.zeros(tuple(layer.tracks.shape), dtype=np.int64) for _, layer in self._layers]

    # ------------------------------------------------------------------ step
    def step(self, closure=None):
        """One Adam step on every parameter; then the EMA of gamma, phase
        housekeeping and, every ``flip_every`` steps, the flip check."""
        loss = super().step(closure)
        from .. import no_grad

        self._steps += 1
        d = self.gamma_decay
        with no_grad():
            for i, (p, layer) in enumerate(self._layers):
                g = layer.tracks.grad
                if g is not None:
                    self._ema[i] = d * self._ema[i] + (1.0 - d) * g.double().numpy()
                    layer.tracks.grad = None
                np.subtract(self._hold[i], 1, out=self._hold[i], where=self._hold[i] > 0)
                self._fix_phases(p, layer)
        if self.calibration is not None and self._steps % self.flip_every == 0:
            self._flip_check()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for _, layer in self._layers:
            layer.tracks.grad = None

    def state_dict(self):
        """Adam's state dict plus the flip state (EMA of gamma, cool-downs, counters)."""
        sd = super().state_dict()
        sd["rbe_hybrid"] = {"steps": self._steps, "flips": self.flips, "ema": [e.copy() for e in self._ema], "hold": [h.copy() for h in self._hold]}
        return sd

    def load_state_dict(self, state_dict) -> None:
        extra = state_dict.get("rbe_hybrid")
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "rbe_hybrid"})
        if extra is not None:
            shapes = [e.shape for e in self._ema]
            if [np.shape(e) for e in extra["ema"]] != shapes or [np.shape(h) for h in extra["hold"]] != shapes:
                raise ValueError(f"RBEHybrid.load_state_dict: flip state has shapes {[np.shape(e) for e in extra['ema']]}, expected {shapes}")
            self._steps, self.flips = int(extra["steps"]), int(extra["flips"])
            self._ema = [np.array(e, dtype=np.float64) for e in extra["ema"]]
            self._hold = [np.array(h, dtype=np.int64) for h in extra["hold"]]

    # --------------------------------------------------------------- helpers
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
            out = self.calibration()
        val = float(out.item() if hasattr(out, "item") else out)
        return val

    def _set_tracks(self, chosen, flip: bool) -> None:
        """Flip (or restore) the tracks of ``chosen`` = [(layer_idx, block, atom)]."""
        from .. import tensor

        by_layer: Dict[int, list] = {}
        for li, b, j in chosen:
            by_layer.setdefault(li, []).append((b, j))
        for li, cells in by_layer.items():
            p, layer = self._layers[li]
            tr = layer.tracks.detach().double().numpy().copy()
            idx = tuple(np.array(cells).T)
            tr[idx] = 1.0 - tr[idx]
            layer.tracks.copy_(tensor(tr, dtype=layer.tracks.dtype))

    def _flip_check(self) -> None:
        from .. import no_grad, tensor

        cands = []
        for li, (p, layer) in enumerate(self._layers):
            alpha = layer.tracks.detach().double().numpy()
            pred = (1.0 - 2.0 * alpha) * self._ema[li]
            ok = (pred < -self.flip_threshold) & (self._hold[li] == 0) & ((alpha == 0) | (alpha == 1))
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
            # SIN phases are already wrapped into [-pi, pi), so a flip to TANH needs no phase change
            before = self._calibration_loss()
            entry["loss_before"] = entry["loss_after"] = before
            n = len(chosen_all)
            accepted = []
            while n >= 1:
                trial = chosen_all[:n]
                self._set_tracks(trial, True)
                after = self._calibration_loss()
                if after < before:
                    accepted = trial
                    entry["loss_after"] = after
                    break
                self._set_tracks(trial, True)  # flipping twice restores exactly
                n //= 2
            for li, b, j in chosen_all:
                self._hold[li][b, j] = self.cooldown
            for li, b, j in accepted:
                self._ema[li][b, j] = 0.0
                p, _ = self._layers[li]
                st = self.state.get(p)
                if st:
                    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                        if key in st:
                            m = st[key].double().numpy().copy()
                            m[b, j, :] = 0.0
                            st[key].copy_(tensor(m, dtype=st[key].dtype))
        entry["accepted"] = len(accepted)
        self.flips += len(accepted)
