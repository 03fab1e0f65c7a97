"""The size rule and the sliding-window geometry: the one home of ``(W - F + 2P)/S + 1``.

Convolution, pooling and the locally connected layer (their kernels in :mod:`cnnkit.functional`,
their layers in :mod:`cnnkit.nn`) and the spec grammar (:mod:`cnnkit.models.spec`) all apply the
rule through :func:`conv_output_size` / :func:`window_geometry`, so a geometry that does not fit
raises the same :class:`SizeRuleError`, with the same numbers, from a forward, a shape walk or a
spec. :func:`check_volume` is the check of a layer that works on a (C, H, W) volume per example.

This module imports nothing of cnnkit but :mod:`cnnkit.checks`: every tier may import it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from .checks import pair

__all__ = ["SizeRuleError", "conv_output_size", "Window", "window_geometry", "VolumeError",
           "check_volume"]


class SizeRuleError(ValueError):
    """The size rule ``(W - F + 2P)/S + 1`` fails along one axis: the (dilated) window is larger
    than the padded input, or, under the strict rule, the result is not an integer.

    The numbers are attributes, so that a caller which names the layer in its own terms (the spec
    grammar: ``POOL3`` rather than ``max_pool2d``, and its own advice) can say the same thing
    without reading the message apart: ``err.message(what=..., hint=...)``.
    """

    def __init__(self, what: str, axis: str, size: int, kernel: int, stride: int, pad: int,
                 dilation: int):
        self.what, self.axis = what, axis
        self.size, self.kernel, self.stride, self.pad, self.dilation = (size, kernel, stride, pad,
                                                                          dilation)
        self.span = dilation * (kernel - 1) + 1            # F, the window as the input sees it
        self.empty = size + 2 * pad < self.span
        self.rest = 0 if self.empty else (size - self.span + 2 * pad) % stride
        super().__init__(self.message())

    def message(self, what: str | None = None, hint: str | None = None) -> str:
        """The explanation, naming the layer ``what`` (default: the kernel's name); ``hint``
        replaces the advice that ends a "not an integer" message."""
        what = self.what if what is None else what
        size, span, pad, stride = self.size, self.span, self.pad, self.stride
        if self.empty:
            f = f"D*(F-1)+1 = {span}" if self.dilation != 1 else f"F = {span}"
            return (f"{what}: the {'dilated ' if self.dilation != 1 else ''}window ({f}) is larger "
                    f"than the padded input (W + 2P = {size} + {2 * pad} = {size + 2 * pad}) "
                    f"along the {self.axis}; the output volume would be empty")
        if hint is None:
            hint = (f"the stride or padding, or pass strict=False to drop the last {self.rest} "
                    f"row(s)/column(s) that no full window reaches (PyTorch's floor)")
        return (f"{what}: (W - F + 2P)/S + 1 = ({size} - {span} + {2 * pad})/{stride} + 1 is not "
                f"an integer along the {self.axis}; change {hint}")


def conv_output_size(size: int, kernel: int, stride: int, pad: int, dilation: int, what: str,
                     axis: str = "width", strict: bool = True) -> int:
    """The size rule ``(W - F + 2P)/S + 1``, with ``F = D*(K - 1) + 1`` the dilated window.

    ``strict=True`` (the notes' rule) raises when the result is not an integer; ``strict=False``
    floors it, as PyTorch does, dropping the trailing rows/columns that no full window reaches.
    Either way a window larger than the padded input raises. The message (a
    :class:`SizeRuleError`) writes the rule with the notes' symbols (W for the input size of
    either axis) and names the axis.
    """
    span = dilation * (kernel - 1) + 1
    if size + 2 * pad < span or (strict and (size - span + 2 * pad) % stride):
        raise SizeRuleError(what, axis, size, kernel, stride, pad, dilation)
    return (size - span + 2 * pad) // stride + 1


class Window(NamedTuple):
    """Sliding-window geometry of conv, pooling and locally connected layers (all ints)."""

    kh: int      # kernel height / width
    kw: int
    sh: int      # stride
    sw: int
    ph: int      # zero padding on each side
    pw: int
    dh: int      # dilation (1 = none)
    dw: int
    h_out: int   # output size from the size rule
    w_out: int


def window_geometry(x_shape, kernel, stride, pad, dilation, what: str,
                    strict: bool = True) -> Window:
    """Normalise the hyperparameters and apply the size rule on both axes of (N, C, H, W).

    A layer asks the same question with the same numbers at every call, so answers are kept
    (:data:`GEOMETRY_CACHE_SIZE` of them, keyed by the spatial size and the hyperparameters);
    arguments that cannot be keyed (lists) and invalid ones, which raise, are worked out afresh.
    """
    sizes = (kernel, stride, pad, dilation)
    if all(map(_plain, sizes)) and type(strict) is bool:
        return _known_geometry((tuple(x_shape[-2:]), *sizes, what, strict))
    # anything else (a list, a float, a bool: 1.0 == 1 and True == 1 as keys) is checked afresh
    return _window_geometry(x_shape, kernel, stride, pad, dilation, what, strict)


def _plain(value) -> bool:
    """An int or a pair of ints (not bools, not floats): safe to use as a key."""
    return type(value) is int or (type(value) is tuple and len(value) == 2
                                  and type(value[0]) is int and type(value[1]) is int)


#: Window geometries kept by :func:`window_geometry` (a net has a few per input size).
GEOMETRY_CACHE_SIZE = 512


@functools.lru_cache(maxsize=GEOMETRY_CACHE_SIZE)
def _known_geometry(key) -> Window:
    size, kernel, stride, pad, dilation, what, strict = key
    return _window_geometry(size, kernel, stride, pad, dilation, what, strict)


def _window_geometry(x_shape, kernel, stride, pad, dilation, what, strict) -> Window:
    kh, kw = pair(kernel, f"{what} kernel")
    sh, sw = pair(stride, f"{what} stride")
    ph, pw = pair(pad, f"{what} pad", minimum=0)
    dh, dw = pair(dilation, f"{what} dilation")
    h, w = x_shape[-2:]
    h_out = conv_output_size(h, kh, sh, ph, dh, what, "height", strict)
    w_out = conv_output_size(w, kw, sw, pw, dw, what, "width", strict)
    return Window(kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out)


class VolumeError(ValueError):
    """A layer that works on a volume (C, H, W) per example got fewer axes; ``shape`` is the
    per-example shape it got."""

    def __init__(self, message: str, shape: tuple):
        super().__init__(message)
        self.shape = tuple(shape)


def check_volume(shape: tuple, what: str) -> tuple:
    """A per-example shape that must be a volume (C, H, W); raise :class:`VolumeError` otherwise."""
    shape = tuple(shape)
    if len(shape) != 3:
        raise VolumeError(f"{what} expects a (C, H, W) volume per example, got shape {shape} "
                          f"({len(shape)}-D per example)", shape)
    return shape
