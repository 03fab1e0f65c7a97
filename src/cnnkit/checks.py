"""The argument checks every tier shares: ints and pairs, reals, ranks, dtypes, parameters,
upstream gradients, per-example shapes and random generators.

Kernels (:mod:`cnnkit.functional`, :mod:`cnnkit.reference`) validate once, at the top of their
forward, through these helpers; layers, the data tier, ``init``, ``summary`` and ``convert``
validate what a caller hands them the same way. Bad input raises a ``ValueError`` (bad values or
shapes) or a ``TypeError`` (wrong kinds) whose message names the numbers, never an error from
deep inside NumPy. The size rule and the window geometry live beside this, in
:mod:`cnnkit.geometry`.

This module imports nothing of cnnkit: every tier may import it.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["pair", "check_count", "check_real", "check_rng", "check_ndim", "as_float_array",
           "match_dtype", "check_param", "check_dout", "check_example_shape"]


def pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    """Normalise an int or an (h, w) pair of ints to a tuple, height first.

    Raises ``TypeError`` for non-integers (floats, bools, strings) and ``ValueError`` for values
    below ``minimum`` (1 for sizes, strides and dilations; 0 for padding).
    """
    # Every kernel call normalises its sizes here; plain ints and int pairs, what layers pass,
    # skip the general checks below (they cost a tenth of a batch-1 forward of the MNIST net).
    if type(value) is int and value >= minimum:
        return value, value
    if (type(value) is tuple and len(value) == 2 and type(value[0]) is int
            and type(value[1]) is int and value[0] >= minimum and value[1] >= minimum):
        return value
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
    if type(x) is np.ndarray and x.dtype.kind == "f":         # the common case, checked fast
        return x
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
