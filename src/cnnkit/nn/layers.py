"""Layers with weights (Linear, Conv2d, LocallyConnected2d) and the reshaping layers (Flatten,
ZeroPadShortcut).

Each is thin: the constructor validates and initialises, ``forward`` calls the kernel of
:mod:`cnnkit.functional` and keeps its cache, ``backward`` returns ``dx`` and adds the parameter
gradients into ``p.grad``; the facts (:mod:`cnnkit.nn.facts`) answer its shape rule, cost and
label from the configuration. PyTorch's argument and attribute names, so ``state_dict`` keys and
shapes are PyTorch's.

Counting conventions of ``cost``: MACs ``(C/groups*KH*KW) * F * H_out*W_out`` for Conv2d,
``(C*KH*KW) * F * H_out*W_out`` for LocallyConnected2d (zero padding counted in the window) and
``D_in * D_out`` for Linear; FLOPs = 2 * MACs plus one add per output value for a bias.
"""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from .. import init as _init
from .. import notation
from ..budget import check_bytes
from ..checks import as_float_array, check_count, check_dout, check_real, pair
from ..geometry import check_volume, conv_output_size, window_geometry
from .facts import Cost, join_name
from .module import Module, Parameter, building_shapes_only, register_module

__all__ = ["Linear", "Conv2d", "LocallyConnected2d", "Flatten", "ZeroPadShortcut"]

INITS = ("he", "he_uniform", "xavier", "xavier_uniform", "gaussian")


# ----------------------------------------------------------------------------- shared checks

def flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def jsonable(p: tuple):
    """An (h, w) pair as its int when square, else a list: how configs write pairs."""
    return p[0] if p[0] == p[1] else list(p)


def check_channels(c: int, expected: int, what: str) -> None:
    if c != expected:
        raise ValueError(f"{what}: the input has C = {c} channels but the layer expects "
                         f"{expected}")


def onnx_window(kernel_size, stride, padding, dilation=None) -> dict:
    """The attributes of an ONNX Conv or pooling node: kernel_shape, strides, pads as
    [top, left, bottom, right] (cnnkit pads both sides alike) and dilations when given. ONNX
    floors the size rule, as cnnkit's ``strict=False`` does; a strict layer's geometry divides."""
    (ph, pw) = padding
    attrs = {"kernel_shape": list(kernel_size), "strides": list(stride),
             "pads": [ph, pw, ph, pw]}
    if dilation is not None:
        attrs["dilations"] = list(dilation)
    return attrs


def init_weight(shape, fan_in: int, fan_out: int, init: str, weight_scale, rng) -> Parameter:
    """A weight Parameter drawn by the named scheme of :mod:`cnnkit.init` (float32); a
    placeholder without values inside :func:`cnnkit.nn.shapes_only`."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if weight_scale is not None and init != "gaussian":
        raise ValueError(f"weight_scale applies to init='gaussian' only, got init={init!r}")
    if building_shapes_only():
        return Parameter.placeholder(shape)
    check_bytes(math.prod(shape) * (8 + 4), f"a weight of shape {tuple(shape)} (drawn in "
                f"float64, kept in float32)")
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

    def _onnx_inputs(self, graph, x: str, name: str) -> list[str]:
        """[x, weight, bias] (bias only when the layer has one) for an ONNX Gemm or Conv, the
        weights as initializers under their state-dict names."""
        inputs = [x, graph.initializer(join_name(name, "weight"), self.weight.data)]
        if self.bias is not None:
            inputs.append(graph.initializer(join_name(name, "bias"), self.bias.data))
        return inputs

    def _init_config(self) -> dict:
        cfg = {"init": self.init}
        if self.weight_scale is not None:
            cfg["weight_scale"] = self.weight_scale
        return cfg


# ----------------------------------------------------------------------------- weighted layers

@register_module
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
        if x.ndim < 1 or math.prod(x.shape[1:]) != self.in_features:
            d = math.prod(x.shape[1:]) if x.ndim else "none (no batch axis)"
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

    def output_shape(self, in_shape):
        d = math.prod(in_shape)
        if d != self.in_features:
            raise ValueError(f"Linear: an input of shape {tuple(in_shape)} per example has D = "
                             f"{d} features, expected in_features = {self.in_features}")
        return (self.out_features,)

    def cost(self, in_shape):
        macs = self.in_features * self.out_features
        return Cost(macs, 2 * macs + (self.out_features if self.bias is not None else 0))

    def label(self, in_shape):
        return notation.fc(self.out_features)

    def to_onnx(self, graph, x, in_shape, name):
        """``Gemm(x, weight, bias, transB=1)``, after a ``Flatten`` when x is not (N, D)."""
        if len(in_shape) != 1:
            x = graph.node("Flatten", [x], name=join_name(name, "flatten"), axis=1)
        return graph.node("Gemm", self._onnx_inputs(graph, x, name), name=name, transB=1)

    def weight_formula(self, in_shape):
        """D*F, or H*W*C*F for an input volume (the notes write a volume H*W*C)."""
        f = self.out_features
        if len(in_shape) == 3:
            c, h, w = in_shape
            return f"{h}*{w}*{c}*{f}"
        return "*".join(str(s) for s in in_shape) + f"*{f}"

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

    # The facts shared by the two window layers; _kernel names them as the kernel does, so a
    # size-rule error reads the same from output_shape as from forward.
    _kernel = _prefix = ""

    def _window(self, in_shape):
        c, _, _ = check_volume(in_shape, self._kernel)
        check_channels(c, self.in_channels, self._kernel)
        return window_geometry((1, *in_shape), self.kernel_size, self.stride, self.padding,
                               self.dilation, self._kernel, self.strict)

    def output_shape(self, in_shape):
        win = self._window(in_shape)
        return (self.out_channels, win.h_out, win.w_out)

    def label(self, in_shape):
        """CONVk-n (LCk-n) with the grammar's suffix for a non-default geometry (/s2p0, d2, g2),
        written by :func:`cnnkit.notation.window`: the spec token that builds this layer."""
        return notation.window(self._prefix, self.kernel_size, self.out_channels, self.stride,
                               self.padding, self.dilation, getattr(self, "groups", 1))

    def output_stride(self, in_shape):
        return self.stride

    def _window_values(self) -> int:
        """K: the input values one filter sees at one position."""
        raise NotImplementedError

    def im2col_shape(self, in_shape):
        _, h_out, w_out = self.output_shape(in_shape)
        return self._window_values(), h_out * w_out

    def cost(self, in_shape):
        """K * F * H_out*W_out MACs (one column of K per position, F filters)."""
        k, positions = self.im2col_shape(in_shape)
        macs = k * self.out_channels * positions
        bias = self.out_channels * positions if self.bias is not None else 0
        return Cost(macs, 2 * macs + bias)


@register_module
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

    _kernel, _prefix = "conv2d", "CONV"

    def _window_values(self):
        kh, kw = self.kernel_size
        return self.in_channels // self.groups * kh * kw

    def weight_formula(self, in_shape):
        kh, kw = self.kernel_size
        c = f"{self.in_channels}/{self.groups}" if self.groups != 1 else f"{self.in_channels}"
        return f"({kh}*{kw}*{c})*{self.out_channels}"

    def to_onnx(self, graph, x, in_shape, name):
        """ONNX ``Conv`` with the same weight (F, C/G, KH, KW), strides, pads, dilations and
        group."""
        return graph.node("Conv", self._onnx_inputs(graph, x, name), name=name, group=self.groups,
                          **onnx_window(self.kernel_size, self.stride, self.padding,
                                        self.dilation))

    def get_config(self):
        return {**self._geometry_config(), "groups": self.groups, **self._init_config()}

    def extra_repr(self):
        return self._geometry_repr(after="" if self.groups == 1 else f", groups={self.groups}")


@register_module
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

    _kernel, _prefix = "locally_connected2d", "LC"

    def output_shape(self, in_shape):
        out = super().output_shape(in_shape)
        if out[1:] != self.output_size:
            raise ValueError(f"locally_connected2d: the layer was built for input_size "
                             f"{self.input_size} (a {self.output_size[0]}x{self.output_size[1]} "
                             f"output grid) but a {in_shape[1]}x{in_shape[2]} input gives "
                             f"{out[1]}x{out[2]}")
        return out

    def _window_values(self):
        kh, kw = self.kernel_size
        return self.in_channels * kh * kw

    def weight_formula(self, in_shape):
        (h, w), (kh, kw) = self.output_size, self.kernel_size
        return f"{h}*{w}*({kh}*{kw}*{self.in_channels})*{self.out_channels}"

    def to_onnx(self, graph, x, in_shape, name):
        """Two operators: a ``Conv`` with one-hot filters that copies each window into the
        channels (im2col: K = C*KH*KW channels of (H_out, W_out), channel c*KH*KW + i*KW + j
        holding x[c, i, j] of every window, the order of the weight's last three axes), then
        ``Einsum("nkhw,hwfk->nfhw")`` with the weight (H_out, W_out, F, K), and the bias."""
        if graph.opset < 12:
            raise NotImplementedError(f"the locally connected layer is written with Einsum, "
                                      f"which needs opset 12 or later, not {graph.opset}")
        c, (kh, kw) = self.in_channels, self.kernel_size
        k = c * kh * kw
        picks = np.zeros((k, 1, kh, kw), np.float32)
        picks[np.arange(k), 0, np.tile(np.repeat(np.arange(kh), kw), c),
              np.tile(np.arange(kw), c * kh)] = 1
        windows = graph.node(
            "Conv", [x, graph.initializer(join_name(name, "im2col"), picks)],
            name=join_name(name, "im2col"), group=c,
            **onnx_window(self.kernel_size, self.stride, self.padding, self.dilation))
        h_out, w_out = self.output_size
        weight = graph.initializer(join_name(name, "weight"),
                                   self.weight.data.reshape(h_out, w_out, self.out_channels, k))
        out = graph.node("Einsum", [windows, weight], name=name, equation="nkhw,hwfk->nfhw")
        if self.bias is None:
            return out
        return graph.node("Add", [out, graph.initializer(join_name(name, "bias"),
                                                          self.bias.data)],
                          name=join_name(name, "add_bias"))

    def get_config(self):
        return {**self._geometry_config(), "input_size": jsonable(self.input_size),
                **self._init_config()}

    def extra_repr(self):
        return self._geometry_repr(f", input_size={self.input_size}")


# ----------------------------------------------------------------------------- reshaping

@register_module
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
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, dout, *, input_grad=True):
        x_shape = self._take_cache()
        d = math.prod(x_shape[1:])
        dout = check_dout(dout, (x_shape[0], d), "Flatten.backward")
        return dout.reshape(x_shape).copy()            # a new array, never a view of dout

    in_place = True                                    # a view of its input

    def output_shape(self, in_shape):
        return (math.prod(in_shape),)

    def cost(self, in_shape):
        return Cost(0, 0)

    def label(self, in_shape):
        return "FLATTEN"

    def to_onnx(self, graph, x, in_shape, name):
        return graph.node("Flatten", [x], name=name, axis=1)


@register_module
class ZeroPadShortcut(Module):
    """The parameter-free shortcut of a residual block that changes shape (He et al. 2016,
    option A, their CIFAR-10 ResNets): subsample by ``stride``, then append zero channels.

        out[n, c, i, j] = x[n, c, i*S, j*S]  for c < C_in,   0  for C_in <= c < C_out
        dx[n, c, i*S, j*S] = dout[n, c, i, j] for c < C_in, 0 elsewhere

    x (N, C_in, H, W) -> out (N, C_out, ceil(H/S), ceil(W/S)), which equals the output size of
    the block's 3x3 stride-S conv with padding 1.

    Examples
    --------
    >>> ZeroPadShortcut(16, 32, stride=2)(np.ones((2, 16, 32, 32))).shape
    (2, 32, 16, 16)
    """

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.in_channels = check_count(in_channels, "ZeroPadShortcut in_channels")
        self.out_channels = check_count(out_channels, "ZeroPadShortcut out_channels")
        self.stride = check_count(stride, "ZeroPadShortcut stride")
        if self.out_channels < self.in_channels:
            raise ValueError(f"ZeroPadShortcut: out_channels = {self.out_channels} is fewer than "
                             f"in_channels = {self.in_channels}; it can only add channels")

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ZeroPadShortcut: x must be (N, {self.in_channels}, H, W), "
                             f"got shape {x.shape}")
        s = self.stride
        kept = x[:, :, ::s, ::s]
        out = np.zeros((x.shape[0], self.out_channels, *kept.shape[2:]), dtype=x.dtype)
        out[:, :self.in_channels] = kept
        self._cache = x.shape
        return out

    def backward(self, dout, *, input_grad=True):
        x_shape = self._take_cache()
        n, _, h, w = x_shape
        s = self.stride
        dout = check_dout(dout, (n, self.out_channels, -(-h // s), -(-w // s)),
                          "ZeroPadShortcut.backward")
        dx = np.zeros(x_shape, dtype=dout.dtype)
        dx[:, :, ::s, ::s] = dout[:, :self.in_channels]
        return dx

    def output_shape(self, in_shape):
        c, h, w = check_volume(in_shape, "ZeroPadShortcut")
        check_channels(c, self.in_channels, "ZeroPadShortcut")
        s = self.stride
        return (self.out_channels, -(-h // s), -(-w // s))

    def cost(self, in_shape):
        return Cost(0, 0)

    def label(self, in_shape):
        return f"ZEROPAD-{self.out_channels}"

    def to_onnx(self, graph, x, in_shape, name):
        """``Slice`` with steps S on H and W (the subsampling), then ``Pad`` with zero channels
        after the input's."""
        s = self.stride
        if s != 1:
            x = graph.node("Slice", [x, graph.constant([0, 0], "starts"),
                                     graph.constant([2 ** 62, 2 ** 62], "ends"),
                                     graph.constant([2, 3], "axes"),
                                     graph.constant([s, s], "steps")],
                           name=join_name(name, "subsample"))
        extra = self.out_channels - self.in_channels
        if extra == 0:
            return x if s != 1 else graph.node("Identity", [x], name=name)
        return graph.node("Pad", [x, graph.constant([0, 0, 0, 0, 0, extra, 0, 0], "pads")],
                          name=name, mode="constant")

    def output_stride(self, in_shape):
        return (self.stride, self.stride)

    def get_config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "stride": self.stride}

    def extra_repr(self):
        stride = f", stride={self.stride}" if self.stride != 1 else ""
        return f"{self.in_channels}, {self.out_channels}{stride}"
