from __future__ import annotations

from .. import _core
from .optimizer import Optimizer, _check_grad


def _check_adam_args(lr, eps, betas, weight_decay):
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


class Adam(Optimizer):
    """Adam (Kingma & Ba), with optional AMSGrad and L2 weight decay, as torch's.
    One fused Rust call per parameter group and step."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False, foreach=None, capturable=False, differentiable=False, fused=None):
        _check_adam_args(lr, eps, betas, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure=None):
        from .. import zeros_like, tensor

        loss = self._closure_loss(closure)
        for group in self.param_groups:
            params, grads, m, v, vmax, steps = [], [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if len(st) == 0:
                    st["step"] = tensor(0.0)
                    st["exp_avg"] = zeros_like(p)
                    st["exp_avg_sq"] = zeros_like(p)
                    if group["amsgrad"]:
                        st["max_exp_avg_sq"] = zeros_like(p)
                step = int(st["step"].item()) + 1
                st["step"] = tensor(float(step))
                params.append(p)
                grads.append(_check_grad(p))
                m.append(st["exp_avg"])
                v.append(st["exp_avg_sq"])
                vmax.append(st.get("max_exp_avg_sq") if group["amsgrad"] else None)
                steps.append(step)
            if params:
                b1, b2 = group["betas"]
                _core.adam_step(params, grads, m, v, vmax, steps, float(group["lr"]), float(b1), float(b2), float(group["eps"]), float(group["weight_decay"]), bool(group["amsgrad"]), bool(group["maximize"]), self._decoupled)
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter); default weight_decay 1e-2 as torch."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
