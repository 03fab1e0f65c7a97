"""Activation layers: ReLU, LeakyReLU, Sigmoid, Tanh. Any input shape; no parameters.

Each calls its kernel pair of :mod:`cnnkit.functional.activation`; the output has the input's
shape. FLOPs per value: ReLU 1, LeakyReLU 2 (compare, multiply), Sigmoid 3 (exp, add, divide),
Tanh 1 (one elementary function).
"""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..functional._utils import check_dout, check_real
from .facts import Cost
from .module import Module, register_module

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh"]


class _Elementwise(Module):
    """An activation: the kernel pair, with the upstream gradient's shape checked. Its facts:
    the output has the input's shape, ``_flops`` operations per value, the notes' ``_label``;
    frameworks run it in place, and it applies value by value to any rank."""

    _label, _flops = "", 1
    in_place = position_wise = True

    def _forward(self, x):
        raise NotImplementedError

    def forward(self, x):
        out, cache = self._forward(x)
        self._cache = (out.shape, cache)
        return out

    def backward(self, dout, *, input_grad=True):
        shape, cache = self._take_cache()
        dout = check_dout(dout, shape, f"{type(self).__name__}.backward")
        return self._backward(dout, cache)

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def cost(self, in_shape):
        return Cost(0, self._flops * math.prod(in_shape))

    def label(self, in_shape):
        return self._label


@register_module
class ReLU(_Elementwise):
    """``max(0, x)``, any shape; see :func:`cnnkit.functional.relu_forward`.

    Examples
    --------
    >>> ReLU()(np.array([[-1.0, 2.0]]))
    array([[0., 2.]])
    """

    _label, _flops = "RELU", 1
    _forward = staticmethod(F.relu_forward)
    _backward = staticmethod(F.relu_backward)


@register_module
class LeakyReLU(_Elementwise):
    """``x if x > 0 else negative_slope * x``, any shape; see
    :func:`cnnkit.functional.leaky_relu_forward`.

    Examples
    --------
    >>> LeakyReLU(0.1)(np.array([[-1.0, 2.0]]))
    array([[-0.1,  2. ]])
    """

    _label, _flops = "LRELU", 2           # compare, multiply

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = check_real(negative_slope, "LeakyReLU negative_slope")

    def _forward(self, x):
        return F.leaky_relu_forward(x, self.negative_slope)

    _backward = staticmethod(F.leaky_relu_backward)

    def get_config(self):
        return {"negative_slope": self.negative_slope}

    def extra_repr(self):
        return "" if self.negative_slope == 0.01 else f"negative_slope={self.negative_slope}"


@register_module
class Sigmoid(_Elementwise):
    """``1 / (1 + exp(-x))``, any shape; see :func:`cnnkit.functional.sigmoid_forward`.

    Examples
    --------
    >>> Sigmoid()(np.zeros((1, 2)))
    array([[0.5, 0.5]])
    """

    _label, _flops = "SIGMOID", 3         # exp, add, divide
    _forward = staticmethod(F.sigmoid_forward)
    _backward = staticmethod(F.sigmoid_backward)


@register_module
class Tanh(_Elementwise):
    """``tanh(x)``, any shape; see :func:`cnnkit.functional.tanh_forward`.

    Examples
    --------
    >>> Tanh()(np.zeros((1, 2)))
    array([[0., 0.]])
    """

    _label, _flops = "TANH", 1            # one elementary function
    _forward = staticmethod(F.tanh_forward)
    _backward = staticmethod(F.tanh_backward)
