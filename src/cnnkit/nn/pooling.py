"""Pooling layers: max, average, L2 and global average. No parameters; they keep the cache.

FLOPs per output value: max pool KH*KW - 1 comparisons; average pool KH*KW (KH*KW - 1 adds and a
divide); L2 pool 2*KH*KW (squares, adds, a square root); global average pool H*W (adds and a
divide).
"""

from __future__ import annotations

import math

from .. import functional as F
from .. import notation
from ..checks import pair
from ..geometry import check_volume, window_geometry
from .facts import Cost
from .layers import flag, jsonable, onnx_window
from .module import Module, register_module

__all__ = ["MaxPool2d", "AvgPool2d", "L2Pool2d", "GlobalAvgPool2d"]


class _Pool2d(Module):
    """Shared constructor, config, repr and facts of the windowed pools; a subclass names its
    kernels, the kernel's name (for messages), its label and its FLOPs per window."""

    _forward = _backward = None
    _kernel, _label = "", ""
    _onnx_op, _onnx_attributes = "", {}

    def __init__(self, kernel_size, stride=None, padding=0, *, strict=True):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = pair(kernel_size, f"{name} kernel_size")
        # stride None means the kernel (non-overlapping windows), as in PyTorch.
        self.stride = self.kernel_size if stride is None else pair(stride, f"{name} stride")
        self.padding = pair(padding, f"{name} padding", minimum=0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{name}: padding must be at most half the kernel on each axis "
                             f"(2P <= K), got padding {self.padding} for kernel_size "
                             f"{self.kernel_size}")
        self.strict = flag(strict, "strict")

    def forward(self, x):
        out, self._cache = self._forward(x, self.kernel_size, self.stride, self.padding,
                                         strict=self.strict)
        return out

    def backward(self, dout, *, input_grad=True):
        return self._backward(dout, self._take_cache())

    def _flops_per_window(self, k: int) -> int:
        raise NotImplementedError

    def output_shape(self, in_shape):
        c, _, _ = check_volume(in_shape, self._kernel)
        win = window_geometry((1, *in_shape), self.kernel_size, self.stride, self.padding, 1,
                              self._kernel, self.strict)
        return (c, win.h_out, win.w_out)

    def cost(self, in_shape):
        kh, kw = self.kernel_size
        return Cost(0, self._flops_per_window(kh * kw) * math.prod(self.output_shape(in_shape)))

    def label(self, in_shape):
        """POOLk (AVGPOOLk, L2POOLk), then /S for a stride other than k and pP for padding,
        written by :func:`cnnkit.notation.pool`: the spec token that builds this layer."""
        return notation.pool(self._label, self.kernel_size, self.stride, self.padding)

    def output_stride(self, in_shape):
        return self.stride

    def to_onnx(self, graph, x, in_shape, name):
        return graph.node(self._onnx_op, [x], name=name, **self._onnx_attributes,
                          **onnx_window(self.kernel_size, self.stride, self.padding))

    def get_config(self):
        return {"kernel_size": jsonable(self.kernel_size), "stride": jsonable(self.stride),
                "padding": jsonable(self.padding), "strict": self.strict}

    def extra_repr(self):
        s = f"kernel_size={self.kernel_size}"
        if self.stride != self.kernel_size:
            s += f", stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        return s + ("" if self.strict else ", strict=False")


@register_module
class MaxPool2d(_Pool2d):
    """Max pooling over (KH, KW) windows; stride defaults to the kernel; -inf padding.

    x (N, C, H, W) -> out (N, C, H_out, W_out); see :func:`cnnkit.functional.max_pool2d_forward`
    (ties send the gradient to the first maximum).

    Examples
    --------
    >>> import numpy as np
    >>> MaxPool2d(2)(np.zeros((2, 3, 32, 32))).shape
    (2, 3, 16, 16)
    """

    _forward = staticmethod(F.max_pool2d_forward)
    _backward = staticmethod(F.max_pool2d_backward)
    _kernel, _label = "max_pool2d", "POOL"
    _onnx_op = "MaxPool"              # ONNX's padding never wins a max, as -inf

    def _flops_per_window(self, k):
        return k - 1


@register_module
class AvgPool2d(_Pool2d):
    """Average pooling over (KH, KW) windows; zero padding counts in the average.

    x (N, C, H, W) -> out (N, C, H_out, W_out); see :func:`cnnkit.functional.avg_pool2d_forward`.

    Examples
    --------
    >>> import numpy as np
    >>> AvgPool2d(3, stride=2, padding=1)(np.zeros((2, 3, 7, 7))).shape
    (2, 3, 4, 4)
    """

    _forward = staticmethod(F.avg_pool2d_forward)
    _backward = staticmethod(F.avg_pool2d_backward)
    _kernel, _label = "avg_pool2d", "AVGPOOL"
    _onnx_op, _onnx_attributes = "AveragePool", {"count_include_pad": 1}

    def _flops_per_window(self, k):
        return k


@register_module
class L2Pool2d(_Pool2d):
    """L2-norm pooling, ``sqrt(sum of squares)`` of each window (PyTorch's ``LPPool2d(2, ...)``).

    x (N, C, H, W) -> out (N, C, H_out, W_out); see :func:`cnnkit.functional.l2_pool2d_forward`.

    Examples
    --------
    >>> import numpy as np
    >>> L2Pool2d(2)(np.ones((1, 2, 4, 6))).shape
    (1, 2, 2, 3)
    """

    def __init__(self, kernel_size, stride=None, *, strict=True):
        super().__init__(kernel_size, stride, 0, strict=strict)

    @staticmethod
    def _forward(x, kernel, stride, padding, *, strict):
        return F.l2_pool2d_forward(x, kernel, stride, strict=strict)      # padding is always 0

    _backward = staticmethod(F.l2_pool2d_backward)
    _kernel, _label = "l2_pool2d", "L2POOL"
    _onnx_op, _onnx_attributes = "LpPool", {"p": 2}

    def _flops_per_window(self, k):
        return 2 * k

    def get_config(self):
        cfg = super().get_config()
        del cfg["padding"]
        return cfg


@register_module
class GlobalAvgPool2d(Module):
    """The mean of each channel over all positions: (N, C, H, W) -> (N, C, 1, 1).

    See :func:`cnnkit.functional.global_avg_pool2d_forward` (GoogLeNet's and ResNet's head).

    Examples
    --------
    >>> import numpy as np
    >>> GlobalAvgPool2d()(np.zeros((2, 512, 7, 7))).shape
    (2, 512, 1, 1)
    """

    def forward(self, x):
        out, self._cache = F.global_avg_pool2d_forward(x)
        return out

    def backward(self, dout, *, input_grad=True):
        return F.global_avg_pool2d_backward(dout, self._take_cache())

    def output_shape(self, in_shape):
        c, _, _ = check_volume(in_shape, "global_avg_pool2d")
        return (c, 1, 1)

    def cost(self, in_shape):
        return Cost(0, math.prod(check_volume(in_shape, "global_avg_pool2d")))

    def label(self, in_shape):
        return "GAP"

    def output_stride(self, in_shape):
        """None: it averages over the whole map, so its one output position has no stride."""
        return None

    def to_onnx(self, graph, x, in_shape, name):
        return graph.node("GlobalAveragePool", [x], name=name)
