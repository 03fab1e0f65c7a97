"""Modules: layers that hold parameters and call the kernels of ``cnnkit.functional``.

``Module``, ``Parameter`` and ``build`` (a module from its JSON config) are in ``module``; the
layers in ``layers`` (weights, Flatten, activations), ``pooling`` and ``normalization`` (batch norm,
dropout); ``Sequential``, ``Residual``, ``Concat`` and ``ZeroPadShortcut`` in ``containers``.
"""

from .containers import Concat, Residual, Sequential, ZeroPadShortcut
from .layers import Conv2d, Flatten, LeakyReLU, Linear, LocallyConnected2d, ReLU, Sigmoid, Tanh
from .module import Module, Parameter, build
from .normalization import BatchNorm1d, BatchNorm2d, Dropout, LocalResponseNorm
from .pooling import AvgPool2d, GlobalAvgPool2d, L2Pool2d, MaxPool2d

__all__ = [
    "Module", "Parameter", "build",
    "Linear", "Conv2d", "LocallyConnected2d", "Flatten",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh",
    "MaxPool2d", "AvgPool2d", "L2Pool2d", "GlobalAvgPool2d",
    "BatchNorm1d", "BatchNorm2d", "Dropout", "LocalResponseNorm",
    "Sequential", "Residual", "Concat", "ZeroPadShortcut",
]
