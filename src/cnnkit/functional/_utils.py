"""Argument checks shared by every kernel: pairs, the size rule, ranks and dtypes.

Every kernel validates once, at the top of its forward, through these helpers, so that bad input
raises a ``ValueError`` (bad values or shapes) or ``TypeError`` (wrong kinds) whose message names
the numbers, never an error from deep inside NumPy.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np


def pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    """Normalise an int or an (h, w) pair of ints to a tuple, height first.

    Raises ``TypeError`` for non-integers (floats, bools, strings) and ``ValueError`` for values
    below ``minimum`` (1 for sizes, strides and dilations; 0 for padding).
    """
    if isinstance(value, (tuple, list, np.ndarray)):
        items = tuple(value)
        if len(items) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}")
    else:
        items = (value, value)
    out = []
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
        out.append(int(v))
    return out[0], out[1]


def check_count(value, name: str) -> int:
    """A size that must be a positive int (features, channels, fans); returned as an int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return int(value)


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


def check_example_shape(shape, what: str, *, volume: bool = False) -> tuple:
    """A per-example shape a caller gives (no batch axis): positive ints, (C, H, W) when
    ``volume``, else any non-empty tuple ((C, H, W) or (D,)). ``ValueError`` names ``what``."""
    form = "(C, H, W)" if volume else "(C, H, W) or (D,)"
    try:
        dims = tuple(check_count(s, f"{what} size") for s in shape)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be {form} of positive ints, got {shape!r} ({err})") from None
    if not dims or (volume and len(dims) != 3):
        raise ValueError(f"{what} must be {form} of positive ints, got {shape!r}")
    return dims


def check_rng(rng, what: str) -> np.random.Generator:
    """``rng`` must be a ``numpy.random.Generator``: randomness is handed in, never global."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{what}: rng must be a numpy.random.Generator "
                        f"(np.random.default_rng(seed)), got {type(rng).__name__}")
    return rng


def check_ndim(x: np.ndarray, ndim, what: str) -> None:
    """Raise ``ValueError`` unless ``x.ndim`` is ``ndim`` (an int or a tuple of allowed ranks)."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{what} must be {want}, got shape {x.shape} ({x.ndim}-D)")


def as_float_array(x, what: str) -> np.ndarray:
    """Return ``x`` as an ndarray (no copy when it already is one) with a floating dtype.

    Integer, boolean or object arrays raise ``TypeError``: a kernel computes in the input's own
    float type (float32 in, float32 out), so it will not guess one.
    """
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{what} must be a floating-point array (float32 or float64), "
                        f"got dtype {arr.dtype}")
    return arr


def match_dtype(arr: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A parameter in the input's dtype: the kernel computes in x's float type.

    A float32 x with a float64 bias (``np.zeros(F)``) computes in float32 and returns float32, as
    the input asks; a float32 weight with a float64 x is widened exactly. No copy when the dtypes
    already match.
    """
    return arr.astype(x.dtype, copy=False)


def check_param(arr, shape: tuple, x: np.ndarray, what: str) -> np.ndarray:
    """Validate a parameter array (floating, exactly ``shape``); return it in x's dtype."""
    arr = as_float_array(arr, what)
    if arr.shape != tuple(shape):
        raise ValueError(f"{what} must have shape {tuple(shape)}, got {arr.shape}")
    return match_dtype(arr, x)


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


def window_geometry(x_shape, kernel, stride, pad, dilation, what: str, strict: bool = True) -> Window:
    """Normalise the hyperparameters and apply the size rule on both axes of (N, C, H, W)."""
    kh, kw = pair(kernel, f"{what} kernel")
    sh, sw = pair(stride, f"{what} stride")
    ph, pw = pair(pad, f"{what} pad", minimum=0)
    dh, dw = pair(dilation, f"{what} dilation")
    h, w = x_shape[-2:]
    h_out = conv_output_size(h, kh, sh, ph, dh, what, "height", strict)
    w_out = conv_output_size(w, kw, sw, pw, dw, what, "width", strict)
    return Window(kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out)


def check_dout(dout, shape: tuple, what: str) -> np.ndarray:
    """The upstream gradient must have the forward output's shape; say so rather than broadcast."""
    dout = np.asarray(dout)
    if dout.shape != tuple(shape):
        raise ValueError(f"{what}: dout must have the forward output's shape {tuple(shape)}, "
                         f"got {dout.shape}")
    return dout


def check_real(value, name: str) -> float:
    """Return a real hyperparameter (eps, p, momentum, ...) as a Python float.

    Raises ``TypeError`` for bools, strings, arrays and other non-numbers. A Python float rather
    than a NumPy scalar, because NumPy 2 promotes float32 arithmetic with a float64 scalar.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)
