"""A private no-grad context used inside the package (the public one is ``rbe.no_grad``)."""
from . import _core


class no_grad_ctx:
    def __enter__(self):
        self.prev = _core.set_grad_enabled(False)

    def __exit__(self, *a):
        _core.set_grad_enabled(self.prev)
