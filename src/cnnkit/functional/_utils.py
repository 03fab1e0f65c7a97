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


def conv_output_size(size: int, kernel: int, stride: int, pad: int, dilation: int, what: str,
                     axis: str = "width", strict: bool = True) -> int:
    """The size rule ``(W - F + 2P)/S + 1``, with ``F = D*(K - 1) + 1`` the dilated window.

    ``strict=True`` (the notes' rule) raises when the result is not an integer; ``strict=False``
    floors it, as PyTorch does, dropping the trailing rows/columns that no full window reaches.
    Either way a window larger than the padded input raises. The message writes the rule with
    the notes' symbols (W for the input size of either axis) and names the axis.
    """
    span = dilation * (kernel - 1) + 1
    f = f"D*(F-1)+1 = {span}" if dilation != 1 else f"F = {span}"
    if size + 2 * pad < span:
        raise ValueError(
            f"{what}: the {'dilated ' if dilation != 1 else ''}window ({f}) is larger than the "
            f"padded input (W + 2P = {size} + {2 * pad} = {size + 2 * pad}) along the {axis}; "
            f"the output volume would be empty")
    rest = (size - span + 2 * pad) % stride
    if rest and strict:
        raise ValueError(
            f"{what}: (W - F + 2P)/S + 1 = ({size} - {span} + {2 * pad})/{stride} + 1 "
            f"is not an integer along the {axis}; change the stride or padding, or pass "
            f"strict=False to drop "
            f"the last {rest} row(s)/column(s) that no full window reaches (PyTorch's floor)")
    return (size - span + 2 * pad) // stride + 1


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
