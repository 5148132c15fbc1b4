from __future__ import annotations

from .. import _core
from .optimizer import Optimizer, _check_grad, required


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay (torch's rule).
    Each ``step`` updates every parameter of a group in one fused call into Rust."""

    def __init__(self, params, lr=1e-3, momentum: float = 0, dampening: float = 0, weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False, foreach=None, differentiable: bool = False, fused=None):
        if lr is not required and lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            params, grads, bufs, first = [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                params.append(p)
                grads.append(_check_grad(p))
                st = self.state[p]
                buf = st.get("momentum_buffer")
                if group["momentum"] != 0 and buf is None:
                    from .. import zeros_like

                    buf = zeros_like(p)
                    st["momentum_buffer"] = buf
                    first.append(True)
                else:
                    first.append(False)
                bufs.append(buf if group["momentum"] != 0 else None)
            if params:
                _core.sgd_step(params, grads, bufs, first, float(group["lr"]), float(group["momentum"]), float(group["dampening"]), float(group["weight_decay"]), bool(group["nesterov"]), bool(group["maximize"]))
        return loss
