"""Local response normalization across channels (Krizhevsky et al. 2012, section 3.3).

Letters: N batch, C channels, n = ``size`` the window of neighbouring channels; the spatial axes
(any number, usually H and W) are carried along untouched.

Each activation is divided by the energy of the same position in the ``size`` channels around
it, a "lateral inhibition" that makes neighbouring feature maps compete. AlexNet normalises
after its first two convs. The paper's constants (n = 5, k = 2, beta = 0.75 and alpha = 1e-4 in
a sum not divided by n) are ``lrn_forward(x, 5, alpha=5e-4, beta=0.75, k=2.0)`` here, as this
kernel divides alpha by n (PyTorch, Caffe); Caffe's bvlc_alexnet uses local_size 5, alpha 1e-4
(divided), beta 0.75 and leaves k at 1. GoogLeNet keeps LRN in its stem.
"""

from __future__ import annotations

import numpy as np

from ..checks import as_float_array, check_count, check_dout, check_real

__all__ = ["lrn_forward", "lrn_backward"]


def check_lrn_args(size, alpha, beta, k, what: str):
    """Validate LRN's hyperparameters (shared with the module); return (size, alpha, beta, k)
    as an int and three floats."""
    size = check_count(size, f"{what} size")
    alpha, beta, k = (check_real(v, f"{what} {name}")
                      for v, name in ((alpha, "alpha"), (beta, "beta"), (k, "k")))
    if not alpha >= 0:
        raise ValueError(f"{what} alpha must be >= 0, got {alpha}")
    if not k > 0:
        raise ValueError(f"{what} k must be > 0 (s = k + alpha/size * sum x^2 is raised to the "
                         f"power -beta), got {k}")
    return size, alpha, beta, k


def lrn_forward(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalization over ``size`` neighbouring channels, PyTorch's definition.

        s[n, c, ...] = k + alpha / size * sum_{c' = c - size//2}^{c + (size-1)//2} x[n, c', ...]^2
        out[n, c, ...] = x[n, c, ...] / s[n, c, ...]^beta

    Channels outside [0, C) count as zeros. This is the paper's formula (its n is ``size``) with
    alpha divided by ``size``, as PyTorch and Caffe write it: the paper's alpha is this alpha /
    size. An even ``size`` reaches one channel further down than up (size 4: c-2 .. c+1).

    Parameters
    ----------
    x : (N, C, ...) array with at least one axis after C, e.g. (N, C, H, W) or (N, C, L)
        (PyTorch refuses (N, C) input too)
    size : int >= 1, the number of channels in a window
    alpha : float >= 0, the scale (divided by ``size``)
    beta : float, the exponent
    k : float > 0, the additive constant (keeps s positive, so s^beta is defined)

    Returns
    -------
    out : array of x's shape and dtype
    cache : for ``lrn_backward``; holds x itself, which must not change until then

    Raises
    ------
    ValueError
        If x has fewer than 3 axes, size < 1, alpha < 0 or k <= 0.
    TypeError
        If x is not floating point, size is not an int or alpha, beta, k are not real numbers.

    Examples
    --------
    >>> out, _ = lrn_forward(np.ones((2, 96, 55, 55)), 5, alpha=1e-4, beta=0.75, k=2.0)
    >>> out.shape
    (2, 96, 55, 55)
    """
    x = as_float_array(x, "lrn x")
    if x.ndim < 3:
        raise ValueError(f"lrn x must be (N, C, ...) with at least 3 axes, e.g. (N, C, H, W), "
                         f"got shape {x.shape} ({x.ndim}-D), which PyTorch refuses as well")
    size, alpha, beta, k = check_lrn_args(size, alpha, beta, k, "lrn")
    scale = _window_sum(x * x, size // 2, (size - 1) // 2)                 # (N, C, ...)
    scale *= alpha / size
    scale += k
    inv = scale ** -beta                                                   # s^-beta
    return x * inv, (x, scale, inv, size, alpha, beta)


def lrn_backward(dout, cache):
    """Gradient of lrn: dx of x's shape.

    With s and out = x * s^-beta from the forward, and W(c) the window of channel c,

        d out[c'] / d x[c] = s[c']^-beta * [c == c'] - beta * x[c'] * s[c']^(-beta-1)
                             * (2 * alpha / size) * x[c] * [c in W(c')]

    so, summing over the outputs c' whose window holds c (c' from c - (size-1)//2 to
    c + size//2: W mirrored),

        dx[c] = dout[c] * s[c]^-beta
                - (2 * alpha * beta / size) * x[c]
                  * sum_{c' : c in W(c')} dout[c'] * out[c'] / s[c']
    """
    x, scale, inv, size, alpha, beta = cache
    dout = check_dout(dout, x.shape, "lrn_backward").astype(x.dtype, copy=False)
    ratio = dout * x * inv / scale                                         # dout * out / s
    dx = _window_sum(ratio, (size - 1) // 2, size // 2)                    # the mirrored window
    dx *= x * (-2.0 * alpha * beta / size)
    dx += dout * inv
    return dx


def _window_sum(v, below: int, above: int) -> np.ndarray:
    """t[:, c] = sum of v[:, c'] for c - below <= c' <= c + above within [0, C): one shifted add
    per offset (the window is a handful of channels; exact, unlike a cumulative-sum difference)."""
    t = v.copy()
    c = v.shape[1]
    for off in range(1, min(below, c - 1) + 1):                            # channels below c
        t[:, off:] += v[:, :c - off]
    for off in range(1, min(above, c - 1) + 1):                            # channels above c
        t[:, :c - off] += v[:, off:]
    return t
