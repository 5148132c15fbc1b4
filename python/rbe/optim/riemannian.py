"""Old location of ``RiemannianAdam`` and the Poincare-ball maths (now
``rbe.structured.riemannian``), kept so that existing imports and pickles
(which name ``rbe.optim.riemannian.RiemannianAdam``) keep working."""
from ..structured.riemannian import *  # noqa: F401,F403
from ..structured.riemannian import __all__  # noqa: F401
