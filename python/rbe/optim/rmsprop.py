from __future__ import annotations

from .. import _core
from .optimizer import Optimizer, _check_grad


class RMSprop(Optimizer):
    """RMSprop (optionally centered, with momentum), as torch's. One fused Rust call per group and step."""

    def __init__(self, params, lr=1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0, momentum: float = 0, centered: bool = False, *, maximize: bool = False, foreach=None, capturable=False, differentiable=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure=None):
        from .. import zeros_like, tensor

        loss = self._closure_loss(closure)
        for group in self.param_groups:
            params, grads, sq, ga, bufs = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if len(st) == 0:
                    st["step"] = tensor(0.0)
                    st["square_avg"] = zeros_like(p)
                    if group["momentum"] > 0:
                        st["momentum_buffer"] = zeros_like(p)
                    if group["centered"]:
                        st["grad_avg"] = zeros_like(p)
                st["step"] = tensor(st["step"].item() + 1)
                params.append(p)
                grads.append(_check_grad(p))
                sq.append(st["square_avg"])
                ga.append(st.get("grad_avg"))
                bufs.append(st.get("momentum_buffer"))
            if params:
                _core.rmsprop_step(params, grads, sq, ga, bufs, float(group["lr"]), float(group["alpha"]), float(group["eps"]), float(group["weight_decay"]), float(group["momentum"]), bool(group["centered"]), bool(group["maximize"]))
        return loss
