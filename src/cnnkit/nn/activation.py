"""Activation layers: ReLU, LeakyReLU, PReLU, Sigmoid, Tanh. Any input shape; PReLU alone has
a parameter (its slopes).

Each calls its kernel pair of :mod:`cnnkit.functional.activation`; the output has the input's
shape. FLOPs per value: ReLU 1, LeakyReLU and PReLU 2 (compare, multiply), Sigmoid 3 (exp, add,
divide), Tanh 1 (one elementary function).
"""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..checks import check_count, check_dout, check_real
from .facts import Cost, join_name
from .module import Module, Parameter, register_module

__all__ = ["ReLU", "LeakyReLU", "PReLU", "Sigmoid", "Tanh"]


class _Elementwise(Module):
    """An activation: the kernel pair, with the upstream gradient's shape checked. Its facts:
    the output has the input's shape, ``_flops`` operations per value, the notes' ``_label``;
    frameworks run it in place, and it applies value by value to any rank."""

    _label, _flops = "", 1
    _onnx_op = ""                         # the ONNX operator of the same name and formula
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

    def _onnx_attributes(self) -> dict:
        return {}

    def to_onnx(self, graph, x, in_shape, name):
        return graph.node(self._onnx_op, [x], name=name, **self._onnx_attributes())


@register_module
class ReLU(_Elementwise):
    """``max(0, x)``, any shape; see :func:`cnnkit.functional.relu_forward`.

    Examples
    --------
    >>> ReLU()(np.array([[-1.0, 2.0]]))
    array([[0., 2.]])
    """

    _label, _flops, _onnx_op = "RELU", 1, "Relu"
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

    _label, _flops, _onnx_op = "LRELU", 2, "LeakyRelu"      # compare, multiply

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = check_real(negative_slope, "LeakyReLU negative_slope")

    def _forward(self, x):
        return F.leaky_relu_forward(x, self.negative_slope)

    _backward = staticmethod(F.leaky_relu_backward)

    def _onnx_attributes(self):
        return {"alpha": self.negative_slope}

    def get_config(self):
        return {"negative_slope": self.negative_slope}

    def extra_repr(self):
        return "" if self.negative_slope == 0.01 else f"negative_slope={self.negative_slope}"


@register_module
class PReLU(Module):
    """Parametric ReLU (He et al. 2015): ``x if x > 0 else weight[c] * x``, the slopes learned.

    Holds ``weight`` (num_parameters,), every slope ``init`` at first (PyTorch's names and
    defaults): one slope shared by all units, or one per channel (axis 1 of the input, which
    must then have num_parameters entries). The count is the attribute ``num_slopes`` (the
    name ``num_parameters`` is Module's method). See :func:`cnnkit.functional.prelu_forward`. A 1-D
    parameter, so the optimizers' weight decay leaves it alone, as He et al. advise.

    Examples
    --------
    >>> prelu = PReLU(3)
    >>> prelu(np.full((2, 3, 4, 4), -1.0, np.float32))[0, :, 0, 0]
    array([-0.25, -0.25, -0.25], dtype=float32)
    """

    in_place = False                 # its backward needs the input for the slopes' gradient
    position_wise = True

    def __init__(self, num_parameters=1, init=0.25):
        super().__init__()
        self.num_slopes = check_count(num_parameters, "PReLU num_parameters")
        self.init = check_real(init, "PReLU init")
        self.weight = Parameter(np.full(self.num_slopes, self.init, np.float32))

    def forward(self, x):
        out, self._cache = F.prelu_forward(x, self.weight.data)
        return out

    def backward(self, dout, *, input_grad=True):
        x, _ = cache = self._take_cache()
        dx, dw = F.prelu_backward(check_dout(dout, x.shape, "PReLU.backward"), cache)
        self.weight.grad += dw
        return dx

    def output_shape(self, in_shape):
        if self.num_slopes != 1 and (not in_shape or in_shape[0] != self.num_slopes):
            raise ValueError(f"PReLU: {self.num_slopes} slopes, one per channel, but the "
                             f"input has shape {tuple(in_shape)} per example (channels first)")
        return tuple(in_shape)

    def cost(self, in_shape):
        return Cost(0, 2 * math.prod(self.output_shape(in_shape)))

    def label(self, in_shape):
        return "PRELU"

    def to_onnx(self, graph, x, in_shape, name):
        """``PRelu`` with the slopes shaped to broadcast along axis 1: (C, 1, ..., 1)."""
        shape = (self.num_slopes,) + (1,) * (len(in_shape) - 1 if self.num_slopes > 1 else 0)
        slope = graph.initializer(join_name(name, "weight"), self.weight.data.reshape(shape))
        return graph.node("PRelu", [x, slope], name=name)

    def get_config(self):
        return {"num_parameters": self.num_slopes, "init": self.init}

    def extra_repr(self):
        return f"num_parameters={self.num_slopes}"


@register_module
class Sigmoid(_Elementwise):
    """``1 / (1 + exp(-x))``, any shape; see :func:`cnnkit.functional.sigmoid_forward`.

    Examples
    --------
    >>> Sigmoid()(np.zeros((1, 2)))
    array([[0.5, 0.5]])
    """

    _label, _flops, _onnx_op = "SIGMOID", 3, "Sigmoid"      # exp, add, divide
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

    _label, _flops, _onnx_op = "TANH", 1, "Tanh"            # one elementary function
    _forward = staticmethod(F.tanh_forward)
    _backward = staticmethod(F.tanh_backward)
