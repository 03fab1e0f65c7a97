"""Modules: layers that hold parameters and call the kernels of ``cnnkit.functional``.

``Module``, ``Parameter``, ``build`` (a module from its JSON config), ``register_module`` and
``shapes_only`` are in ``module``; what every layer says about itself without running (output
shape, cost, label) in ``facts``. The layers: ``layers`` (weights, Flatten, ZeroPadShortcut),
``activation``, ``pooling``, ``normalization`` (batch norm, local response norm), ``dropout``;
``Sequential``, ``Residual`` and ``Concat`` in ``containers``.
"""

from .activation import LeakyReLU, ReLU, Sigmoid, Tanh
from .containers import Concat, Residual, Sequential
from .dropout import Dropout
from .facts import Cost, LayerError, Step, brief
from .layers import Conv2d, Flatten, Linear, LocallyConnected2d, ZeroPadShortcut
from .module import Module, Parameter, build, register_module, shapes_only
from .normalization import BatchNorm1d, BatchNorm2d, LocalResponseNorm
from .pooling import AvgPool2d, GlobalAvgPool2d, L2Pool2d, MaxPool2d

__all__ = [
    "Module", "Parameter", "build", "register_module", "shapes_only",
    "Cost", "Step", "LayerError", "brief",
    "Linear", "Conv2d", "LocallyConnected2d", "Flatten", "ZeroPadShortcut",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh",
    "MaxPool2d", "AvgPool2d", "L2Pool2d", "GlobalAvgPool2d",
    "BatchNorm1d", "BatchNorm2d", "Dropout", "LocalResponseNorm",
    "Sequential", "Residual", "Concat",
]
