"""``EarlyStopping``: stop training when a monitored metric stops improving."""
from __future__ import annotations

import copy
import math


class EarlyStopping:
    """Call ``step(metric, model)`` once per epoch; it returns True when training should stop.

    ``patience``: epochs without an improvement larger than ``min_delta`` before stopping.
    ``mode``: "min" (loss) or "max" (accuracy). With ``restore_best_weights`` the
    model's best ``state_dict`` is kept and loaded back by ``restore(model)``
    (called automatically when ``step`` decides to stop).
    """

    def __init__(self, patience: int = 5, min_delta: float = 0.0, mode: str = "min", restore_best_weights: bool = True):
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.patience = patience
        self.min_delta = min_delta
        self.mode = mode
        self.restore_best_weights = restore_best_weights
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = -1
        self.epoch = -1
        self.num_bad_epochs = 0
        self.best_state = None
        self.should_stop = False

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def step(self, metric, model=None) -> bool:
        value = float(metric)
        self.epoch += 1
        if math.isnan(value):
            self.num_bad_epochs += 1
        elif self._improved(value):
            self.best = value
            self.best_epoch = self.epoch
            self.num_bad_epochs = 0
            if model is not None and self.restore_best_weights:
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.num_bad_epochs += 1
        self.should_stop = self.num_bad_epochs > self.patience
        if self.should_stop and model is not None and self.restore_best_weights:
            self.restore(model)
        return self.should_stop

    __call__ = step

    def restore(self, model) -> None:
        if self.best_state is not None:
            model.load_state_dict(copy.copy(self.best_state))

    def state_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "best_state"}

    def load_state_dict(self, state):
        self.__dict__.update(state)
