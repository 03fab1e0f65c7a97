"""Element-wise activations: ReLU, leaky ReLU, PReLU, sigmoid, tanh. Any input shape.

Each backward is the local derivative times ``dout``; the caches hold what that derivative
needs (the input for the piecewise-linear ones, the output for sigmoid and tanh). Each runs on
cnnkit's threads in cache-sized runs (``cnnkit.parallel.elementwise``).
"""

from __future__ import annotations

import numpy as np

from ..checks import as_float_array, check_param, check_real
from ..parallel import elementwise, empty_result

__all__ = ["relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
           "prelu_forward", "prelu_backward", "sigmoid_forward", "sigmoid_backward", "tanh_forward",
           "tanh_backward"]


def relu_forward(x):
    """Rectified linear unit, ``out = max(0, x)``.

    Parameters
    ----------
    x : array of any shape, float32 or float64

    Returns
    -------
    out : array, shape of x
    cache : for ``relu_backward``

    Examples
    --------
    >>> import numpy as np
    >>> relu_forward(np.array([-1.0, 2.0]))[0]
    array([0., 2.])
    """
    x = as_float_array(x, "relu x")
    zero = x.dtype.type(0)
    return elementwise(lambda out, a: np.maximum(a, zero, out=out), np.empty(x.shape, x.dtype),
                       x), x


def relu_backward(dout, cache):
    """``dx = dout * [x > 0]`` (the subgradient at 0 is taken as 0, as PyTorch does); shape of x.

    A product with the 0/1 mask rather than ``np.where``: on a random mask ``np.where`` mispredicts
    a branch per element and measured 6x slower. It differs only where dout is inf or NaN at a
    unit that is off (0 * inf = NaN); such a dout has already ruined the step.
    """
    x = cache
    return elementwise(lambda out, d, a: np.multiply(d, a > 0, out=out), empty_result(dout, x),
                       dout, x)


def leaky_relu_forward(x, negative_slope=0.01):
    """Leaky ReLU, ``out = x if x > 0 else negative_slope * x``.

    Parameters
    ----------
    x : array of any shape
    negative_slope : float, the slope for x <= 0 (default 0.01, as PyTorch)

    Returns
    -------
    out : array, shape of x
    cache : for ``leaky_relu_backward``
    """
    x = as_float_array(x, "leaky_relu x")
    slope = x.dtype.type(check_real(negative_slope, "leaky_relu negative_slope"))
    return np.where(x > 0, x, x * slope), (x, slope)


def leaky_relu_backward(dout, cache):
    """``dx = dout * (1 if x > 0 else negative_slope)``; shape of x."""
    x, slope = cache
    return np.where(x > 0, dout, dout * slope)


def prelu_forward(x, w):
    """Parametric ReLU (He et al. 2015): a leaky ReLU whose slope is learned, one per channel.

        out[n, c, ...] = x[n, c, ...]            if x > 0
                         w[c] * x[n, c, ...]     otherwise

    Parameters
    ----------
    x : (N, C, ...) array (any number of axes after C), or (N, ...) when w holds one slope
    w : (C,) slopes, one per channel (axis 1), or (1,): one slope shared by every unit

    Returns
    -------
    out : array, shape of x
    cache : for ``prelu_backward``

    Raises
    ------
    ValueError
        If w is not 1-D, or holds more than one slope and x's axis 1 is not that long.

    Examples
    --------
    >>> import numpy as np
    >>> prelu_forward(np.array([[-2.0, 3.0]]), np.array([0.25, 0.5]))[0]
    array([[-0.5,  3. ]])
    """
    x = as_float_array(x, "prelu x")
    w = as_float_array(w, "prelu w")
    channels = w.shape[0] if w.ndim == 1 else -1
    if channels != 1 and (x.ndim < 2 or x.shape[1] != channels):
        raise ValueError(f"prelu: w of shape {w.shape} must hold one slope, or one per channel "
                         f"of x (axis 1); x has shape {x.shape}")
    w = check_param(w, (channels,), x, "prelu w")
    # (C,) -> (C, 1, ..., 1), to broadcast along axis 1 of (N, C, ...)
    slope = w.reshape(channels, *([1] * (x.ndim - 2))) if channels != 1 else w.reshape(())
    return np.where(x > 0, x, x * slope), (x, slope)


def prelu_backward(dout, cache):
    """``dx = dout * (1 if x > 0 else w[c])`` (shape of x) and ``dw[c] = sum of dout * x over
    the units of channel c where x <= 0`` (shape of w)."""
    x, slope = cache
    dx = np.where(x > 0, dout, dout * slope)
    negative = np.where(x > 0, 0, dout * x)
    if slope.ndim == 0:
        return dx, negative.sum(keepdims=True).reshape(1)
    return dx, negative.sum(axis=tuple(a for a in range(x.ndim) if a != 1))


def sigmoid_forward(x):
    """Logistic sigmoid, ``out = 1 / (1 + exp(-x))``, computed without overflow for large |x|.

    Parameters
    ----------
    x : array of any shape

    Returns
    -------
    out : array in (0, 1), shape of x
    cache : for ``sigmoid_backward``
    """
    x = as_float_array(x, "sigmoid x")
    # exp of a non-positive number only: exp(-|x|) in (0, 1] never overflows.
    return (out := elementwise(_sigmoid, np.empty(x.shape, x.dtype), x)), out


def _sigmoid(out, x):
    e = np.exp(-np.abs(x))
    out[...] = np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(dout, cache):
    """``dx = dout * s * (1 - s)`` with ``s`` the forward output; at most dout/4, the vanishing
    gradient of the notes. Shape of x."""
    out = cache
    return elementwise(lambda dx, d, s: np.multiply(d * s, 1 - s, out=dx),
                       empty_result(dout, out), dout, out)


def tanh_forward(x):
    """Hyperbolic tangent, ``out = tanh(x)``.

    Parameters
    ----------
    x : array of any shape

    Returns
    -------
    out : array in (-1, 1), shape of x
    cache : for ``tanh_backward``
    """
    x = as_float_array(x, "tanh x")
    out = elementwise(lambda out, a: np.tanh(a, out=out), np.empty(x.shape, x.dtype), x)
    return out, out


def tanh_backward(dout, cache):
    """``dx = dout * (1 - tanh(x)**2)``; shape of x."""
    out = cache
    return elementwise(lambda dx, d, t: np.multiply(d, 1 - t * t, out=dx),
                       empty_result(dout, out), dout, out)
