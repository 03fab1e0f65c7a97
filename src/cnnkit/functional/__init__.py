"""Pure kernels on NumPy arrays (NCHW): ``*_forward(...) -> (out, cache)`` and
``*_backward(dout, cache) -> gradients`` in the forward's argument order.

No state, no global RNG, inputs never written to; see the README for the conventions. Each
kernel file lists its public kernels in its ``__all__``; this package exports them all.
"""

from . import activation, conv, dropout, layer_norm, linear, local, lrn, losses, norm, pool
from .activation import *  # noqa: F403
from .conv import *  # noqa: F403
from .dropout import *  # noqa: F403
from .layer_norm import *  # noqa: F403
from .linear import *  # noqa: F403
from .local import *  # noqa: F403
from .lrn import *  # noqa: F403
from .losses import *  # noqa: F403
from .norm import *  # noqa: F403
from .pool import *  # noqa: F403

__all__ = [*linear.__all__, *conv.__all__, *local.__all__, *pool.__all__, *activation.__all__,
           *norm.__all__, *layer_norm.__all__, *lrn.__all__, *dropout.__all__, *losses.__all__]
