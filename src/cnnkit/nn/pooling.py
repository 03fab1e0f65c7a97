"""Pooling layers: max, average, L2 and global average. No parameters; they keep the cache."""

from __future__ import annotations

from .. import functional as F
from ..functional._utils import pair
from .layers import flag, jsonable
from .module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "L2Pool2d", "GlobalAvgPool2d"]


class _Pool2d(Module):
    """Shared constructor, config and repr of the windowed pools."""

    _forward = _backward = None

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

    def forward(self, x):
        out, self._cache = F.l2_pool2d_forward(x, self.kernel_size, self.stride,
                                               strict=self.strict)
        return out

    _backward = staticmethod(F.l2_pool2d_backward)

    def get_config(self):
        cfg = super().get_config()
        del cfg["padding"]
        return cfg


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
