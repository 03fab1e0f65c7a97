"""Layers with weights (Linear, Conv2d, LocallyConnected2d), Flatten and the activations.

Each is thin: the constructor validates and initialises, ``forward`` calls the kernel of
:mod:`cnnkit.functional` and keeps its cache, ``backward`` returns ``dx`` and adds the parameter
gradients into ``p.grad``. PyTorch's argument and attribute names, so ``state_dict`` keys and
shapes are PyTorch's.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import init as _init
from ..functional._utils import (as_float_array, check_count, check_dout, check_real,
                                 conv_output_size, pair)
from .module import Module, Parameter

__all__ = ["Linear", "Conv2d", "LocallyConnected2d", "Flatten", "ReLU", "LeakyReLU", "Sigmoid",
           "Tanh"]

INITS = ("he", "he_uniform", "xavier", "xavier_uniform", "gaussian")


# ----------------------------------------------------------------------------- shared checks

def flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def jsonable(p: tuple):
    """An (h, w) pair as its int when square, else a list: how configs write pairs."""
    return p[0] if p[0] == p[1] else list(p)


def init_weight(shape, fan_in: int, fan_out: int, init: str, weight_scale, rng) -> Parameter:
    """A weight Parameter drawn by the named scheme of :mod:`cnnkit.init` (float32)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if weight_scale is not None and init != "gaussian":
        raise ValueError(f"weight_scale applies to init='gaussian' only, got init={init!r}")
    rng = np.random.default_rng() if rng is None else rng
    if init == "gaussian":
        data = _init.gaussian(shape, rng, 1e-2 if weight_scale is None else weight_scale)
    elif init.startswith("he"):
        data = (_init.he_uniform if init == "he_uniform" else _init.he_normal)(shape, fan_in, rng)
    else:
        draw = _init.xavier_uniform if init == "xavier_uniform" else _init.xavier_normal
        data = draw(shape, fan_in, fan_out, rng)
    return Parameter(data)


class _Weighted(Module):
    """Common config of the layers with an ``init`` scheme."""

    def _set_init(self, init, weight_scale):
        self.init = init
        self.weight_scale = None if weight_scale is None else check_real(weight_scale,
                                                                         "weight_scale")

    def _init_config(self) -> dict:
        cfg = {"init": self.init}
        if self.weight_scale is not None:
            cfg["weight_scale"] = self.weight_scale
        return cfg


# ----------------------------------------------------------------------------- weighted layers

class Linear(_Weighted):
    """Fully connected layer, ``out = x.reshape(N, -1) @ weight.T + bias``.

    Holds ``weight`` (out_features, in_features), as PyTorch does, and ``bias`` (out_features,),
    zeros at first; the kernel :func:`cnnkit.functional.affine_forward` gets ``weight.T`` (a view).
    Input of any rank (N, d1, ..., dk) with d1*...*dk = in_features is flattened per example.

    Parameters
    ----------
    in_features, out_features : int >= 1
    bias : bool
    init : "he" (He normal, the default: right before a ReLU), "xavier" (Glorot normal),
        "he_uniform", "xavier_uniform" or "gaussian" (``weight_scale * randn``, the course's)
    weight_scale : float > 0, for init="gaussian" only (default 1e-2)
    rng : numpy.random.Generator for the initial weights (default: a fresh one)

    Examples
    --------
    >>> layer = Linear(12, 5, rng=np.random.default_rng(0))
    >>> layer(np.ones((2, 3, 4), np.float32)).shape
    (2, 5)
    """

    def __init__(self, in_features, out_features, bias=True, *, init="he", weight_scale=None,
                 rng=None):
        super().__init__()
        self.in_features = check_count(in_features, "Linear in_features")
        self.out_features = check_count(out_features, "Linear out_features")
        self._set_init(init, weight_scale)
        self.weight = init_weight((self.out_features, self.in_features), self.in_features,
                                  self.out_features, init, weight_scale, rng)
        self.bias = Parameter(_init.zeros(self.out_features)) if flag(bias, "bias") else None

    def forward(self, x):
        x = as_float_array(x, "Linear x")
        if x.ndim < 1 or np.prod(x.shape[1:], dtype=np.int64) != self.in_features:
            d = int(np.prod(x.shape[1:], dtype=np.int64)) if x.ndim else "none (no batch axis)"
            raise ValueError(f"Linear: x of shape {x.shape} has D = {d} features per example, "
                             f"expected in_features = {self.in_features}")
        b = None if self.bias is None else self.bias.data
        out, self._cache = F.affine_forward(x, self.weight.data.T, b)
        return out

    def backward(self, dout, *, input_grad=True):
        cache = self._take_cache()
        dout = check_dout(dout, (cache[1][0], self.out_features), "Linear.backward")
        dx, dw, db = F.affine_backward(dout, cache, input_grad=input_grad)
        self.weight.grad += dw.T                       # (D, M) -> (out_features, in_features)
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, **self._init_config()}

    def extra_repr(self):
        bias = "" if self.bias is not None else ", bias=False"
        return f"in_features={self.in_features}, out_features={self.out_features}{bias}"


class _Window(_Weighted):
    """Shared geometry of Conv2d and LocallyConnected2d."""

    def _set_geometry(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                      strict):
        name = type(self).__name__
        self.in_channels = check_count(in_channels, f"{name} in_channels")
        self.out_channels = check_count(out_channels, f"{name} out_channels")
        self.kernel_size = pair(kernel_size, f"{name} kernel_size")
        self.stride = pair(stride, f"{name} stride")
        self.padding = pair(padding, f"{name} padding", minimum=0)
        self.dilation = pair(dilation, f"{name} dilation")
        self.strict = flag(strict, "strict")
        kh, kw = self.kernel_size
        # fan_out as PyTorch counts it: the F filters that see one input, times the window.
        return self.in_channels * kh * kw, self.out_channels * kh * kw

    def _geometry_config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": jsonable(self.kernel_size), "stride": jsonable(self.stride),
                "padding": jsonable(self.padding), "dilation": jsonable(self.dilation),
                "bias": self.bias is not None, "strict": self.strict}

    def _geometry_repr(self, middle="", after="") -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}{middle}"
        for name, default in (("stride", (1, 1)), ("padding", (0, 0)), ("dilation", (1, 1))):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        s += after
        if self.bias is None:
            s += ", bias=False"
        if not self.strict:
            s += ", strict=False"
        return s

    def _kwargs(self) -> dict:
        return dict(stride=self.stride, pad=self.padding, dilation=self.dilation,
                    strict=self.strict)


class Conv2d(_Window):
    """2-D convolution layer. Holds ``weight`` (F, C // groups, KH, KW) and ``bias`` (F,), zeros
    at first.

    x (N, C, H, W) -> out (N, F, H_out, W_out); see :func:`cnnkit.functional.conv2d_forward` for
    the formula and the size rule. ``strict=False`` floors a size rule that does not divide, as
    PyTorch does. ``groups`` = G splits the channels into G independent convolutions, group g
    taking input channels [g*C/G, (g+1)*C/G) to filters [g*F/G, (g+1)*F/G) (AlexNet's two
    towers); G must divide both C and F. ``init``, ``weight_scale`` and ``rng`` as in
    :class:`Linear`, with fan_in = C/G*KH*KW (the inputs one filter sees) and fan_out = F*KH*KW.

    Raises
    ------
    ValueError
        If groups does not divide in_channels or out_channels.

    Examples
    --------
    >>> conv = Conv2d(3, 16, 5, padding=2, rng=np.random.default_rng(0))
    >>> conv(np.zeros((2, 3, 32, 32), np.float32)).shape
    (2, 16, 32, 32)
    >>> Conv2d(96, 256, 5, padding=2, groups=2).weight.shape
    (256, 48, 5, 5)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, *, strict=True, init="he", weight_scale=None, rng=None):
        super().__init__()
        _, fan_out = self._set_geometry(in_channels, out_channels, kernel_size, stride, padding,
                                        dilation, strict)
        self.groups = check_count(groups, "Conv2d groups")
        for count, name in ((self.in_channels, "in_channels"), (self.out_channels,
                                                                "out_channels")):
            if count % self.groups:
                raise ValueError(f"Conv2d: groups = {self.groups} must divide {name} = {count} "
                                 f"({count} % {self.groups} = {count % self.groups})")
        kh, kw = self.kernel_size
        c_group = self.in_channels // self.groups              # the channels one filter sees
        self._set_init(init, weight_scale)
        self.weight = init_weight((self.out_channels, c_group, kh, kw), c_group * kh * kw,
                                  fan_out, init, weight_scale, rng)
        self.bias = Parameter(_init.zeros(self.out_channels)) if flag(bias, "bias") else None

    def forward(self, x):
        b = None if self.bias is None else self.bias.data
        out, self._cache = F.conv2d_forward(x, self.weight.data, b, groups=self.groups,
                                            **self._kwargs())
        return out

    def backward(self, dout, *, input_grad=True):
        dx, dw, db = F.conv2d_backward(dout, self._take_cache(), input_grad=input_grad)
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def get_config(self):
        return {**self._geometry_config(), "groups": self.groups, **self._init_config()}

    def extra_repr(self):
        return self._geometry_repr(after="" if self.groups == 1 else f", groups={self.groups}")


class LocallyConnected2d(_Window):
    """Locally connected layer: a convolution whose filters differ at every output position.

    ``input_size`` (H, W) fixes the output grid (H_out, W_out) by the size rule; holds ``weight``
    (H_out, W_out, F, C, KH, KW) and ``bias`` (F, H_out, W_out), zeros at first. x (N, C, H, W) ->
    out (N, F, H_out, W_out); see :func:`cnnkit.functional.locally_connected2d_forward`.
    ``init``, ``weight_scale`` and ``rng`` as in :class:`Linear`, with fan_in = C*KH*KW.

    Raises
    ------
    ValueError
        If the geometry does not give an integer grid for ``input_size`` (with strict=True).

    Examples
    --------
    >>> lc = LocallyConnected2d(3, 4, 3, input_size=7, stride=2, rng=np.random.default_rng(0))
    >>> lc.weight.shape, lc(np.zeros((2, 3, 7, 7), np.float32)).shape
    ((3, 3, 4, 3, 3, 3), (2, 4, 3, 3))
    """

    def __init__(self, in_channels, out_channels, kernel_size, input_size, stride=1, padding=0,
                 dilation=1, bias=True, *, strict=True, init="he", weight_scale=None, rng=None):
        super().__init__()
        fan_in, fan_out = self._set_geometry(in_channels, out_channels, kernel_size, stride,
                                             padding, dilation, strict)
        self.input_size = pair(input_size, "LocallyConnected2d input_size")
        self.output_size = tuple(
            conv_output_size(size, k, s, p, d, "LocallyConnected2d", axis, self.strict)
            for size, k, s, p, d, axis in zip(self.input_size, self.kernel_size, self.stride,
                                              self.padding, self.dilation, ("height", "width")))
        self._set_init(init, weight_scale)
        self.weight = init_weight((*self.output_size, self.out_channels, self.in_channels,
                                   *self.kernel_size), fan_in, fan_out, init, weight_scale, rng)
        self.bias = (Parameter(_init.zeros((self.out_channels, *self.output_size)))
                     if flag(bias, "bias") else None)

    def forward(self, x):
        b = None if self.bias is None else self.bias.data
        out, self._cache = F.locally_connected2d_forward(x, self.weight.data, b, **self._kwargs())
        return out

    def backward(self, dout, *, input_grad=True):
        dx, dw, db = F.locally_connected2d_backward(dout, self._take_cache())
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def get_config(self):
        return {**self._geometry_config(), "input_size": jsonable(self.input_size),
                **self._init_config()}

    def extra_repr(self):
        return self._geometry_repr(f", input_size={self.input_size}")


# ----------------------------------------------------------------------------- reshaping

class Flatten(Module):
    """(N, d1, ..., dk) -> (N, d1*...*dk), a view when possible; backward reshapes back.

    Examples
    --------
    >>> Flatten()(np.zeros((2, 3, 4, 5))).shape
    (2, 60)
    """

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"Flatten: x must have a batch axis, got shape {x.shape}")
        self._cache = x.shape
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64)))

    def backward(self, dout, *, input_grad=True):
        x_shape = self._take_cache()
        d = int(np.prod(x_shape[1:], dtype=np.int64))
        dout = check_dout(dout, (x_shape[0], d), "Flatten.backward")
        return dout.reshape(x_shape).copy()            # a new array, never a view of dout


# ----------------------------------------------------------------------------- activations

class _Elementwise(Module):
    """An activation: the kernel pair, with the upstream gradient's shape checked."""

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


class ReLU(_Elementwise):
    """``max(0, x)``, any shape; see :func:`cnnkit.functional.relu_forward`.

    Examples
    --------
    >>> ReLU()(np.array([[-1.0, 2.0]]))
    array([[0., 2.]])
    """

    _forward = staticmethod(F.relu_forward)
    _backward = staticmethod(F.relu_backward)


class LeakyReLU(_Elementwise):
    """``x if x > 0 else negative_slope * x``, any shape; see
    :func:`cnnkit.functional.leaky_relu_forward`.

    Examples
    --------
    >>> LeakyReLU(0.1)(np.array([[-1.0, 2.0]]))
    array([[-0.1,  2. ]])
    """

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


class Sigmoid(_Elementwise):
    """``1 / (1 + exp(-x))``, any shape; see :func:`cnnkit.functional.sigmoid_forward`.

    Examples
    --------
    >>> Sigmoid()(np.zeros((1, 2)))
    array([[0.5, 0.5]])
    """

    _forward = staticmethod(F.sigmoid_forward)
    _backward = staticmethod(F.sigmoid_backward)


class Tanh(_Elementwise):
    """``tanh(x)``, any shape; see :func:`cnnkit.functional.tanh_forward`.

    Examples
    --------
    >>> Tanh()(np.zeros((1, 2)))
    array([[0., 0.]])
    """

    _forward = staticmethod(F.tanh_forward)
    _backward = staticmethod(F.tanh_backward)
