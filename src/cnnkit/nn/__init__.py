"""Modules: layers that hold parameters and call the kernels of ``cnnkit.functional``.

``Module``, ``Parameter``, ``build`` (a module from its JSON config), ``register_module`` and
``shapes_only`` are in ``module``; what every layer says about itself without running (output
shape, cost, label) in ``facts``. The layers: ``layers`` (weights, Flatten, ZeroPadShortcut),
``activation``, ``pooling``, ``normalization`` (batch, layer, group and local response norm), ``dropout``;
``Sequential``, ``Residual`` and ``Concat`` in ``containers``. Each file lists its public names
in its ``__all__``; this package exports them all.
"""

from . import activation, containers, dropout, layers, module, normalization, pooling
from .activation import *  # noqa: F403
from .containers import *  # noqa: F403
from .dropout import *  # noqa: F403
from .facts import Cost, LayerError, Step, brief
from .layers import *  # noqa: F403
from .module import *  # noqa: F403
from .normalization import *  # noqa: F403
from .pooling import *  # noqa: F403

__all__ = [*module.__all__, "Cost", "Step", "LayerError", "brief", *layers.__all__,
           *activation.__all__, *pooling.__all__, *normalization.__all__, *dropout.__all__,
           *containers.__all__]
