"""Normalisation layers: BatchNorm1d/2d (which behave differently in training and eval) and
LocalResponseNorm.

FLOPs per value: batch norm 2 (its eval form ``x * scale + shift``); local response norm
2*size + 3 (size squares, size - 1 adds, then scale, shift, power and multiply).
"""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from .. import init as _init
from .. import notation
from ..checks import as_float_array, check_count, check_real
from ..functional.lrn import check_lrn_args
from ..geometry import VolumeError
from .facts import Cost, join_name
from .layers import check_channels
from .module import Module, Parameter, register_module

__all__ = ["BatchNorm1d", "BatchNorm2d", "LocalResponseNorm"]


class _BatchNorm(Module):
    """Shared by BatchNorm1d and BatchNorm2d; subclasses name the input layout and kernels."""

    _layout = ""            # the shape the input must have, for the error message
    _ndim = 0

    def __init__(self, num_features, eps=1e-5, momentum=0.9):
        super().__init__()
        name = type(self).__name__
        self.num_features = check_count(num_features, f"{name} num_features")
        self.eps = check_real(eps, f"{name} eps")
        if not self.eps > 0:
            raise ValueError(f"{name} eps must be > 0, got {eps!r}")
        self.momentum = check_real(momentum, f"{name} momentum")
        if not 0 <= self.momentum <= 1:
            raise ValueError(f"{name} momentum must be in [0, 1] (the fraction of the old running "
                             f"value kept; PyTorch's 0.1 is our 0.9), got {momentum!r}")
        self.weight = Parameter(np.ones(self.num_features, np.float32))     # gamma
        self.bias = Parameter(_init.zeros(self.num_features))               # beta
        self.register_buffer("running_mean", _init.zeros(self.num_features))
        self.register_buffer("running_var", np.ones(self.num_features, np.float32))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def _check(self, x):
        name = type(self).__name__
        x = as_float_array(x, f"{name} x")
        if x.ndim != self._ndim:
            other = "BatchNorm2d for (N, C, H, W)" if self._ndim == 2 else "BatchNorm1d for (N, K)"
            raise ValueError(f"{name} expects {self._layout} input, got shape {x.shape} "
                             f"({x.ndim}-D); use {other}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{name}({self.num_features}) expects {self.num_features} "
                             f"features on axis 1, got x of shape {x.shape}")
        return x

    def forward(self, x):
        x = self._check(x)
        w, b = self.weight.data, self.bias.data
        if not self.training:
            out, cache = self._eval_forward(x, w, b, self.running_mean, self.running_var,
                                            self.eps)
            self._cache = (False, cache)
            return out
        out, cache = self._train_forward(x, w, b, self.eps)
        dtype = self.running_mean.dtype      # the batch statistics are in x's dtype
        self.running_mean, self.running_var = F.batchnorm_running_update(
            self.running_mean, self.running_var, cache.mean.astype(dtype, copy=False),
            cache.var.astype(dtype, copy=False), cache.count, self.momentum)
        self.num_batches_tracked = self.num_batches_tracked + 1
        self._cache = (True, cache)
        return out

    def backward(self, dout, *, input_grad=True):
        training, cache = self._take_cache()
        backward = self._train_backward if training else self._eval_backward
        dx, dgamma, dbeta = backward(dout, cache)
        self.weight.grad += dgamma
        self.bias.grad += dbeta
        return dx

    def output_shape(self, in_shape):
        name = type(self).__name__
        if len(in_shape) != self._ndim - 1:
            layout = "(C, H, W)" if self._ndim == 4 else "(K,)"
            raise ValueError(f"{name} expects {layout} per example, got shape {tuple(in_shape)}")
        check_channels(in_shape[0], self.num_features, name)
        return tuple(in_shape)

    def cost(self, in_shape):
        return Cost(0, 2 * math.prod(self.output_shape(in_shape)))

    def label(self, in_shape):
        return "BN"

    def training_effect(self):
        return "batch statistics"

    def to_onnx(self, graph, x, in_shape, name):
        """``BatchNormalization`` in inference form: the running statistics, not the batch's."""
        inputs = [x] + [graph.initializer(join_name(name, key), getattr(self, key).data
                                          if key in ("weight", "bias") else getattr(self, key))
                        for key in ("weight", "bias", "running_mean", "running_var")]
        return graph.node("BatchNormalization", inputs, name=name, epsilon=self.eps)

    def get_config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    def extra_repr(self):
        s = f"{self.num_features}"
        if self.eps != 1e-5:
            s += f", eps={self.eps}"
        if self.momentum != 0.9:
            s += f", momentum={self.momentum}"
        return s


@register_module
class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, K) features; ``weight`` (gamma, ones) and ``bias`` (beta, zeros).

    Train mode normalises with the batch mean and biased variance
    (:func:`cnnkit.functional.batchnorm_forward`), then updates the buffers ``running_mean`` and
    ``running_var`` (:func:`cnnkit.functional.batchnorm_running_update`, unbiased variance) and
    ``num_batches_tracked``; eval mode uses the running statistics
    (:func:`cnnkit.functional.batchnorm_eval_forward`).

    ``momentum`` is OUR convention, the notes': the fraction of the old running value kept,
    ``running = momentum * running + (1 - momentum) * batch``. The default 0.9 is PyTorch's
    ``momentum=0.1``, which names the other fraction.

    Examples
    --------
    >>> bn = BatchNorm1d(3)
    >>> bn(np.ones((4, 3))).shape, list(bn.state_dict())
    ((4, 3), ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'])
    """

    _layout, _ndim = "(N, K)", 2
    _train_forward = staticmethod(F.batchnorm_forward)
    _train_backward = staticmethod(F.batchnorm_backward)
    _eval_forward = staticmethod(F.batchnorm_eval_forward)
    _eval_backward = staticmethod(F.batchnorm_eval_backward)


@register_module
class BatchNorm2d(_BatchNorm):
    """Spatial batch normalisation of (N, C, H, W): each channel over its N*H*W values.

    As :class:`BatchNorm1d` (same parameters, buffers and ``momentum`` convention) with the
    spatial kernels :func:`cnnkit.functional.spatial_batchnorm_forward` and
    :func:`cnnkit.functional.spatial_batchnorm_eval_forward`.

    Examples
    --------
    >>> BatchNorm2d(3)(np.ones((2, 3, 4, 4))).shape
    (2, 3, 4, 4)
    """

    _layout, _ndim = "(N, C, H, W)", 4
    _train_forward = staticmethod(F.spatial_batchnorm_forward)
    _train_backward = staticmethod(F.spatial_batchnorm_backward)
    _eval_forward = staticmethod(F.spatial_batchnorm_eval_forward)
    _eval_backward = staticmethod(F.spatial_batchnorm_eval_backward)


@register_module
class LocalResponseNorm(Module):
    """Local response normalization across channels, PyTorch's ``LocalResponseNorm``.

        out[n, c] = x[n, c] / (k + alpha / size * sum_{c' near c} x[n, c']^2)^beta

    over the ``size`` channels c - size//2 .. c + (size-1)//2 (zeros outside); see
    :func:`cnnkit.functional.lrn_forward`. No parameters; x (N, C, ...) with at least one axis
    after C, any C; the output has x's shape. The same in training and eval.

    Parameters
    ----------
    size : int >= 1, channels in a window
    alpha : float >= 0 (divided by ``size``), beta : float, k : float > 0

    Examples
    --------
    >>> lrn = LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)   # the AlexNet paper's
    >>> lrn, lrn(np.ones((2, 96, 55, 55), np.float32)).shape
    (LocalResponseNorm(5, alpha=0.0005, beta=0.75, k=2.0), (2, 96, 55, 55))
    """

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = check_lrn_args(size, alpha, beta, k,
                                                                  "LocalResponseNorm")

    def forward(self, x):
        out, self._cache = F.lrn_forward(x, self.size, self.alpha, self.beta, self.k)
        return out

    def backward(self, dout, *, input_grad=True):
        return F.lrn_backward(dout, self._take_cache())

    def output_shape(self, in_shape):
        if len(in_shape) < 2:
            raise VolumeError(f"lrn x must be (N, C, ...) with at least 3 axes, e.g. "
                              f"(N, C, H, W); got shape {tuple(in_shape)} per example", in_shape)
        return tuple(in_shape)

    def cost(self, in_shape):
        return Cost(0, (2 * self.size + 3) * math.prod(self.output_shape(in_shape)))

    def label(self, in_shape):
        return notation.lrn(self.size)

    def to_onnx(self, graph, x, in_shape, name):
        """ONNX ``LRN`` (the same formula) for an odd ``size`` on (N, C, H, W). ONNX's window
        leans the other way for an even size (c - (size-2)/2 .. c + size/2), and onnxruntime
        takes 4-D input only, so otherwise the formula is written out: the squares summed over
        the window by a ``Conv`` of ones along the channels (padded size//2 before, (size-1)//2
        after), then ``x / (k + alpha/size * sum)^beta``."""
        if self.size % 2 == 1 and len(in_shape) == 3:
            return graph.node("LRN", [x], name=name, size=self.size, alpha=self.alpha,
                              beta=self.beta, bias=self.k)
        c, rest = in_shape[0], math.prod(in_shape[1:])
        square = graph.node("Mul", [x, x], name=join_name(name, "square"))
        column = graph.node("Reshape", [square, graph.constant([0, 1, c, rest], "shape")],
                            name=join_name(name, "to_column"))
        ones = graph.initializer(join_name(name, "window"), np.ones((1, 1, self.size, 1)))
        total = graph.node("Conv", [column, ones], name=join_name(name, "window_sum"),
                           kernel_shape=[self.size, 1],
                           pads=[self.size // 2, 0, (self.size - 1) // 2, 0])
        total = graph.node("Reshape", [total, graph.constant([0, *in_shape], "shape")],
                           name=join_name(name, "from_column"))
        scaled = graph.node("Mul", [total, graph.constant(self.alpha / self.size, "alpha",
                                                          np.float32)],
                            name=join_name(name, "scale"))
        shifted = graph.node("Add", [scaled, graph.constant(self.k, "k", np.float32)],
                             name=join_name(name, "shift"))
        power = graph.node("Pow", [shifted, graph.constant(self.beta, "beta", np.float32)],
                           name=join_name(name, "power"))
        return graph.node("Div", [x, power], name=name)

    def get_config(self):
        return {"size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k}

    def extra_repr(self):
        # All four, as PyTorch prints them: the constants are the point of reading an LRN layer.
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
