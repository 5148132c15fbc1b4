"""A private no-grad context used inside the package (the public one is ``rbe.no_grad``)."""
from . import _core


class no_grad_ctx:
    def __enter__(self):
        self.prev = _core.set_grad_enabled(False)

    def __exit__(self, *a):
        _core.set_grad_enabled(self.prev)


def zero_grads(params, set_to_none: bool = True) -> None:
    """``zero_grad`` of modules and optimizers: drop the gradients, or zero them in place."""
    for p in params:
        if p.grad is None:
            continue
        if set_to_none:
            p.grad = None
        else:
            g = p.grad
            if g.grad_fn is not None:
                g = g.detach()
                p.grad = g
            with no_grad_ctx():
                g.zero_()
