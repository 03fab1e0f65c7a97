"""Normalisation layers: BatchNorm1d/2d (which behave differently in training and eval),
LayerNorm and GroupNorm (each sample by its own statistics, the same in training and eval) and
LocalResponseNorm.

FLOPs per value: batch norm 2 (its eval form ``x * scale + shift``); layer and group norm 5 to
normalise (add for the mean, subtract, square, add for the variance, scale), and 1 each for the
scale and the shift; local response norm 2*size + 3 (size squares, size - 1 adds, then scale, shift, power and
multiply).
"""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from .. import init as _init
from .. import notation
from ..checks import as_float_array, check_count, check_real
from ..functional.layer_norm import check_groups, check_normalized_shape
from ..functional.lrn import check_lrn_args
from ..functional.norm import check_eps
from ..geometry import VolumeError
from .facts import Cost, join_name
from .layers import check_channels, flag
from .module import Module, Parameter, register_module

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "LocalResponseNorm"]


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


def _affine_onnx(graph, y: str, name: str, weight, bias, shape: tuple) -> str:
    """``y * weight + bias`` (each reshaped to ``shape`` to broadcast), skipping the absent."""
    if weight is not None:
        w = graph.initializer(join_name(name, "weight"), weight.data.reshape(shape))
        y = graph.node("Mul", [y, w], name=join_name(name, "scale"))
    if bias is not None:
        b = graph.initializer(join_name(name, "bias"), bias.data.reshape(shape))
        y = graph.node("Add", [y, b], name=join_name(name, "shift"))
    return y


class _SampleNorm(Module):
    """Shared by LayerNorm and GroupNorm, which normalise each sample by its own statistics:
    the optional scale and shift, the backward and the cost. A subclass names its kernel pair
    and calls ``self._params()`` in its forward."""

    _backward_kernel = None        # staticmethod(F.<kind>norm_backward)

    def _params(self) -> tuple:
        """(gamma, beta) for the kernel: the arrays, or None where the layer has none."""
        return (None if self.weight is None else self.weight.data,
                None if self.bias is None else self.bias.data)

    def backward(self, dout, *, input_grad=True):
        dx, dgamma, dbeta = self._backward_kernel(dout, self._take_cache())
        if self.weight is not None:
            self.weight.grad += dgamma
        if self.bias is not None:
            self.bias.grad += dbeta
        return dx

    def cost(self, in_shape):
        affine = (self.weight is not None) + (self.bias is not None)
        return Cost(0, (5 + affine) * math.prod(self.output_shape(in_shape)))


@register_module
class LayerNorm(_SampleNorm):
    """Layer normalisation (Ba et al. 2016), PyTorch's ``LayerNorm``: each sample normalised
    over its trailing axes ``normalized_shape`` by its own mean and biased variance, then scaled
    and shifted element by element.

        out = (x - mean) / sqrt(var + eps) * weight + bias     (mean, var over normalized_shape)

    Holds ``weight`` (ones) and ``bias`` (zeros) of shape ``normalized_shape`` when
    ``elementwise_affine`` (``bias=False`` drops the shift alone). The statistics are the
    sample's own, so training and eval compute the same and the batch size does not matter
    (see :func:`cnnkit.functional.layernorm_forward`). A ``normalized_shape`` of more than one
    axis gives weights of ``ndim >= 2``, which the optimizers' weight decay treats as weights;
    the spec's ``LN`` on a volume is :class:`GroupNorm` ``(1, C)``, whose scale is per channel.

    Parameters
    ----------
    normalized_shape : int or tuple of ints, the trailing axes of the input (per example: the
        whole input, as ``D`` for (N, D), or its last axes)
    eps : float > 0, added to the variance
    elementwise_affine : bool, learn ``weight`` and ``bias``
    bias : bool, learn ``bias`` too (with ``elementwise_affine``)

    Examples
    --------
    >>> ln = LayerNorm(4)
    >>> ln
    LayerNorm((4,), eps=1e-05, elementwise_affine=True, bias=True)
    >>> ln(np.arange(8.0).reshape(2, 4)).round(3)
    array([[-1.342, -0.447,  0.447,  1.342],
           [-1.342, -0.447,  0.447,  1.342]])
    """

    _backward_kernel = staticmethod(F.layernorm_backward)

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__()
        self.normalized_shape = check_normalized_shape(normalized_shape, "LayerNorm")
        self.eps = check_eps(eps, "LayerNorm")
        self.elementwise_affine = flag(elementwise_affine, "LayerNorm elementwise_affine")
        self.has_bias = flag(bias, "LayerNorm bias")
        shape = self.normalized_shape
        self.weight = Parameter(np.ones(shape, np.float32)) if self.elementwise_affine else None
        self.bias = (Parameter(_init.zeros(shape)) if self.elementwise_affine and self.has_bias
                     else None)

    def forward(self, x):
        x = as_float_array(x, "LayerNorm x")
        self.output_shape(x.shape[1:])
        out, self._cache = F.layernorm_forward(x, *self._params(), self.eps,
                                               normalized_shape=self.normalized_shape)
        return out

    def output_shape(self, in_shape):
        k = len(self.normalized_shape)
        if tuple(in_shape[len(in_shape) - k:]) != self.normalized_shape or len(in_shape) < k:
            raise ValueError(f"LayerNorm({self.normalized_shape}) normalises the last "
                             f"{'axis' if k == 1 else f'{k} axes'} of size "
                             f"{self.normalized_shape}, got an input of shape "
                             f"{tuple(in_shape)} per example")
        return tuple(in_shape)

    def label(self, in_shape):
        return notation.LAYER_NORM

    def to_onnx(self, graph, x, in_shape, name):
        """``LayerNormalization`` (opset 17 and later) over the last ``len(normalized_shape)``
        axes; below opset 17 written out: ``ReduceMean``, ``Sub``, the mean of the squares,
        ``Add`` eps, ``Sqrt``, ``Div``, then the scale and shift."""
        k = len(self.normalized_shape)
        if graph.opset >= 17:
            scale = (self.weight.data if self.weight is not None
                     else np.ones(self.normalized_shape, np.float32))
            inputs = [x, graph.initializer(join_name(name, "weight"), scale)]
            if self.bias is not None:
                inputs.append(graph.initializer(join_name(name, "bias"), self.bias.data))
            return graph.node("LayerNormalization", inputs, name=name, axis=-k,
                              epsilon=self.eps)
        axes = list(range(len(in_shape) + 1 - k, len(in_shape) + 1))
        y = _normalise_onnx(graph, x, name, axes, self.eps)
        return _affine_onnx(graph, y, name, self.weight, self.bias, self.normalized_shape)

    def get_config(self):
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine, "bias": self.has_bias}

    def extra_repr(self):
        # PyTorch's own
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


def _normalise_onnx(graph, x: str, name: str, axes: list, eps: float) -> str:
    """``(x - mean) / sqrt(var + eps)`` over ``axes``, the biased variance about the mean."""
    def reduce_mean(t: str, what: str) -> str:
        if graph.opset >= 18:                  # the axes became an input in opset 18
            return graph.node("ReduceMean", [t, graph.constant(axes, "axes")],
                              name=join_name(name, what), keepdims=1)
        return graph.node("ReduceMean", [t], name=join_name(name, what), axes=axes, keepdims=1)

    mean = reduce_mean(x, "mean")
    centred = graph.node("Sub", [x, mean], name=join_name(name, "centre"))
    square = graph.node("Mul", [centred, centred], name=join_name(name, "square"))
    var = reduce_mean(square, "var")
    shifted = graph.node("Add", [var, graph.constant(eps, "eps", np.float32)],
                         name=join_name(name, "add_eps"))
    std = graph.node("Sqrt", [shifted], name=join_name(name, "std"))
    return graph.node("Div", [centred, std], name=join_name(name, "normalise"))


@register_module
class GroupNorm(_SampleNorm):
    """Group normalisation (Wu & He 2018), PyTorch's ``GroupNorm``: the channels of each sample
    cut into ``num_groups`` groups of consecutive channels, each normalised over its values by
    its own mean and biased variance, then a scale and a shift per channel.

        out[n, c] = (x[n, c] - mean[n, g]) / sqrt(var[n, g] + eps) * weight[c] + bias[c]

    for c in group g. ``num_groups = num_channels`` is instance norm; ``num_groups = 1`` the
    Group Norm paper's layer norm (the spec's ``LN`` on a volume). Holds ``weight`` (ones) and
    ``bias`` (zeros) of shape (C,) when ``affine`` (``bias=False`` drops the shift alone).
    Input (N, C, *): (N, C, H, W) and (N, C)
    alike. The statistics are each sample's own, so training and eval compute the same and the
    batch size does not matter (see :func:`cnnkit.functional.groupnorm_forward`).

    Parameters
    ----------
    num_groups : int >= 1 dividing num_channels
    num_channels : int >= 1, C
    eps : float > 0, added to the variance
    affine : bool, learn ``weight`` and ``bias``
    bias : bool, learn ``bias`` too (with ``affine``; keyword only, as PyTorch's)

    Examples
    --------
    >>> gn = GroupNorm(2, 4)
    >>> gn, gn(np.ones((3, 4, 5, 5), np.float32)).shape
    (GroupNorm(2, 4, eps=1e-05, affine=True, bias=True), (3, 4, 5, 5))
    """

    _backward_kernel = staticmethod(F.groupnorm_backward)

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, *, bias=True):
        super().__init__()
        self.num_channels = check_count(num_channels, "GroupNorm num_channels")
        self.num_groups = check_groups(num_groups, self.num_channels, "GroupNorm")
        self.eps = check_eps(eps, "GroupNorm")
        self.affine = flag(affine, "GroupNorm affine")
        self.has_bias = flag(bias, "GroupNorm bias")
        c = self.num_channels
        self.weight = Parameter(np.ones(c, np.float32)) if self.affine else None
        self.bias = Parameter(_init.zeros(c)) if self.affine and self.has_bias else None

    def forward(self, x):
        x = as_float_array(x, "GroupNorm x")
        self.output_shape(x.shape[1:])
        out, self._cache = F.groupnorm_forward(x, *self._params(), self.num_groups, self.eps)
        return out

    def output_shape(self, in_shape):
        if len(in_shape) < 1:
            raise ValueError(f"GroupNorm expects (C, ...) per example (channels first), got "
                             f"shape {tuple(in_shape)}")
        check_channels(in_shape[0], self.num_channels, "GroupNorm")
        return tuple(in_shape)

    def label(self, in_shape):
        return notation.group_norm(self.num_groups)

    def to_onnx(self, graph, x, in_shape, name):
        """``GroupNormalization`` from opset 21 (its scale and bias per channel); below it
        written out, as ``GroupNormalization``-18 scales per group: x reshaped to (N, G, M),
        normalised over M, reshaped back, then the per-channel scale and shift."""
        c, g = self.num_channels, self.num_groups
        if graph.opset >= 21:
            scale = self.weight.data if self.weight is not None else np.ones(c, np.float32)
            shift = self.bias.data if self.bias is not None else np.zeros(c, np.float32)
            return graph.node("GroupNormalization",
                              [x, graph.initializer(join_name(name, "weight"), scale),
                               graph.initializer(join_name(name, "bias"), shift)],
                              name=name, num_groups=g, epsilon=self.eps)
        rows = graph.node("Reshape", [x, graph.constant([0, g, -1], "shape")],
                          name=join_name(name, "to_groups"))
        y = _normalise_onnx(graph, rows, name, [2], self.eps)
        y = graph.node("Reshape", [y, graph.constant([0, *in_shape], "shape")],
                       name=join_name(name, "from_groups"))
        shape = (c,) + (1,) * (len(in_shape) - 1)
        return _affine_onnx(graph, y, name, self.weight, self.bias, shape)

    def get_config(self):
        return {"num_groups": self.num_groups, "num_channels": self.num_channels, "eps": self.eps,
                "affine": self.affine, "bias": self.has_bias}

    def extra_repr(self):
        # PyTorch's own
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


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
