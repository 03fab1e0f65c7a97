"""Weight initialisation: each function draws from a ``numpy.random.Generator`` it is given.

No global RNG. Values are drawn in float64 and cast to ``dtype`` (float32 by default), so one
seed gives the same weights, up to rounding, in either precision.

Why the scale matters (the notes): with weights of a fixed small scale, the variance of the
activations shrinks layer after layer in a deep net and the gradients vanish with it; too large
and they explode. A unit that sums ``fan_in`` inputs of variance v with weights of variance s**2
has output variance ``fan_in * s**2 * v``, so ``s**2 = 1 / fan_in`` keeps it constant (LeCun);
Glorot and Bengio average the forward and backward constraints (``fan_in`` and ``fan_out``); He et
al. double it for ReLU, which zeroes half of its inputs.
"""

from __future__ import annotations

import numbers

import numpy as np

from .checks import check_count, check_real, check_rng

__all__ = ["gaussian", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform", "zeros"]


def _shape(shape) -> tuple:
    """An int or a tuple of ints >= 0 -> tuple; TypeError / ValueError otherwise."""
    items = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    for s in items:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
            raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}")
        if s < 0:
            raise ValueError(f"shape must have sizes >= 0, got {shape!r}")
    return tuple(int(s) for s in items)


def _dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"dtype must be a floating-point type, got {dtype}")
    return dtype


def _normal(shape, std, rng, dtype):
    return (std * check_rng(rng, "init").standard_normal(_shape(shape))).astype(_dtype(dtype))


def _uniform(shape, bound, rng, dtype):
    return check_rng(rng, "init").uniform(-bound, bound, _shape(shape)).astype(_dtype(dtype))


def gaussian(shape, rng, weight_scale=1e-2, *, dtype=np.float32) -> np.ndarray:
    """The CS231n course's initialisation, ``weight_scale * randn(shape)``.

        w ~ N(0, weight_scale**2)

    Fine for shallow nets; in deep ones a fixed scale makes the activations shrink or grow layer by
    layer (use ``he_normal`` before ReLUs).

    Raises
    ------
    ValueError
        If a size is negative or weight_scale <= 0.
    TypeError
        If shape is not ints, rng is not a Generator, or dtype is not floating.

    Examples
    --------
    >>> gaussian((3, 4), np.random.default_rng(0)).shape
    (3, 4)
    """
    scale = check_real(weight_scale, "weight_scale")
    if not scale > 0:
        raise ValueError(f"weight_scale must be > 0, got {weight_scale!r} (use zeros() for zeros)")
    return _normal(shape, scale, rng, dtype)


def xavier_normal(shape, fan_in, fan_out, rng, *, dtype=np.float32) -> np.ndarray:
    """Glorot & Bengio (2010), normal: keeps activation and gradient variances about constant.

        w ~ N(0, std**2),   std = sqrt(2 / (fan_in + fan_out))

    The forward pass asks for var = 1/fan_in, the backward for 1/fan_out; this is their harmonic
    compromise. Suited to tanh and sigmoid units.

    Parameters
    ----------
    shape : int or tuple of ints
    fan_in, fan_out : int >= 1, the inputs feeding one unit and the units one input feeds
        (Linear: in_features, out_features; Conv2d: C*KH*KW, F*KH*KW)
    rng : numpy.random.Generator
    dtype : floating dtype of the result (float32 by default)

    Raises
    ------
    ValueError
        If a size is negative or a fan is < 1.
    TypeError
        If a size or fan is not an int, rng is not a Generator, or dtype is not floating.

    Examples
    --------
    >>> xavier_normal((5, 4), 4, 5, np.random.default_rng(0)).dtype
    dtype('float32')
    """
    std = np.sqrt(2.0 / (check_count(fan_in, "fan_in") + check_count(fan_out, "fan_out")))
    return _normal(shape, std, rng, dtype)


def xavier_uniform(shape, fan_in, fan_out, rng, *, dtype=np.float32) -> np.ndarray:
    """Glorot & Bengio (2010), uniform; the same variance as ``xavier_normal``.

        w ~ U(-a, a),   a = sqrt(6 / (fan_in + fan_out))   (variance a**2 / 3)

    Arguments and errors as ``xavier_normal``.
    """
    bound = np.sqrt(6.0 / (check_count(fan_in, "fan_in") + check_count(fan_out, "fan_out")))
    return _uniform(shape, bound, rng, dtype)


def he_normal(shape, fan_in, rng, *, dtype=np.float32) -> np.ndarray:
    """He et al. (2015), normal: the default before ReLUs.

        w ~ N(0, std**2),   std = sqrt(2 / fan_in)

    A ReLU zeroes half of its inputs, halving the second moment it passes on; the factor 2 undoes
    that, so the variance of the activations stays constant through the depth of the net instead
    of shrinking by half at every layer (1/fan_in, LeCun's choice, is right for linear units).

    Parameters
    ----------
    shape : int or tuple of ints
    fan_in : int >= 1, the inputs feeding one unit (Linear: in_features; Conv2d: C*KH*KW)
    rng : numpy.random.Generator
    dtype : floating dtype of the result (float32 by default)

    Raises
    ------
    ValueError
        If a size is negative or fan_in < 1.
    TypeError
        If a size or fan_in is not an int, rng is not a Generator, or dtype is not floating.

    Examples
    --------
    >>> he_normal((16, 3, 5, 5), 3 * 5 * 5, np.random.default_rng(0)).shape
    (16, 3, 5, 5)
    """
    return _normal(shape, np.sqrt(2.0 / check_count(fan_in, "fan_in")), rng, dtype)


def he_uniform(shape, fan_in, rng, *, dtype=np.float32) -> np.ndarray:
    """He et al. (2015), uniform; the same variance as ``he_normal``.

        w ~ U(-a, a),   a = sqrt(6 / fan_in)   (variance a**2 / 3 = 2 / fan_in)

    Arguments and errors as ``he_normal``.
    """
    return _uniform(shape, np.sqrt(6.0 / check_count(fan_in, "fan_in")), rng, dtype)


def zeros(shape, *, dtype=np.float32) -> np.ndarray:
    """Zeros, for biases (and BatchNorm's beta). Never for weights: identical units get identical
    gradients and never differentiate (the notes' symmetry pitfall).

    Examples
    --------
    >>> zeros(3)
    array([0., 0., 0.], dtype=float32)
    """
    return np.zeros(_shape(shape), _dtype(dtype))
