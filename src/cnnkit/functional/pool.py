"""Pooling: max (with its arg-max "switches"), average, L2 and global average.

Every window is read through im2col's strided view of the (padded) input, so no kernel loops in
Python over N, C or output positions. The backwards scatter through col2im (one strided ``+=``
per kernel offset, summing where windows overlap), except max pooling whose windows tile the
input, which needs no adds at all (see ``max_pool2d_forward``).

Every kernel works on chunks of the batch, one task each for cnnkit's threads
(:func:`cnnkit.parallel.over_batch`); samples are independent, so each chunk writes its own rows.

Letters: N batch, C channels, H/W input size, KH/KW kernel, SH/SW stride, PH/PW padding,
H_out/W_out output size, K = KH*KW pixels in one window.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import parallel
from ..checks import as_float_array, check_dout, check_ndim, pair
from ..geometry import Window, window_geometry
from .im2col import col2im, im2col

__all__ = ["max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
           "l2_pool2d_forward", "l2_pool2d_backward", "global_avg_pool2d_forward",
           "global_avg_pool2d_backward"]


def pool_geometry(x, kernel, stride, pad, what: str, strict: bool):
    """Validate a pooling forward's input and hyperparameters; return ``(x, win)``.

    x must be a 4-D floating array with positive sizes; ``stride=None`` means ``kernel``; pad may
    be at most half the window on each axis (PyTorch's rule, which keeps at least one real pixel in
    every window, so a max never comes from padding alone); the size rule must give an integer
    unless ``strict=False``. Shared with :mod:`cnnkit.reference.pool`, so that both accept and
    reject the same arguments.
    """
    x = as_float_array(x, f"{what} x")
    check_ndim(x, 4, f"{what} x (N, C, H, W)")
    if min(x.shape) < 1:
        raise ValueError(f"{what}: every size of x must be positive, got shape {x.shape}")
    kh, kw = pair(kernel, f"{what} kernel")
    ph, pw = pair(pad, f"{what} pad", minimum=0)
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(
            f"{what}: pad must be at most half the kernel on each axis (2P <= K), got "
            f"pad (PH, PW) = ({ph}, {pw}) for kernel (KH, KW) = ({kh}, {kw})")
    win = window_geometry(x.shape, (kh, kw), (kh, kw) if stride is None else stride, (ph, pw), 1,
                          what, strict)
    return x, win


def _window_sum(windows: np.ndarray) -> np.ndarray:
    """Sum of each window: (N, C, KH, KW, H_out, W_out) view -> (N, C, H_out, W_out).

    One strided add per offset (p, q), the mirror of col2im's scatter. Same result as
    ``windows.sum(axis=(2, 3))``, but NumPy reduces over those two strided axes of the view
    element by element, which measured 6-13x slower than these KH*KW whole-slice adds.
    """
    kh, kw = windows.shape[2:4]
    total = windows[:, :, 0, 0].copy()                      # (N, C, H_out, W_out)
    for p in range(kh):
        for q in range(kw):
            if p or q:
                total += windows[:, :, p, q]
    return total


class MaxPoolCache(NamedTuple):
    """What ``max_pool2d_backward`` needs. ``switches`` is public: a deconvnet (the notes' ZFNet
    visualisation) routes activations back through the same arg-max positions."""

    x_shape: tuple
    dtype: np.dtype
    win: Window
    switches: np.ndarray   # (N, C, H_out, W_out) small ints: offset p*KW + q of each maximum
    path: str              # "reshape" (windows tile x) or "strided"; see max_pool2d_forward


def max_pool2d_forward(x, kernel, stride=None, pad=0, *, strict=True):
    """Max pooling over (KH, KW) windows; keeps the arg-max "switches" for the backward.

        out[n, c, i, j] = max_{p < KH, q < KW} x_pad[n, c, i*SH + p, j*SW + q]
        H_out = (H - KH + 2*PH) / SH + 1,  W_out = (W - KW + 2*PW) / SW + 1

    ``x_pad`` is x with PH rows and PW columns of -inf on each side, so padding never wins
    (PyTorch). The switch of a window is the offset ``p*KW + q`` of its maximum; on a tie the
    first maximum in row-major window order wins (``np.argmax``'s rule, and DESIGN.md's), so
    exactly one pixel per window receives the gradient. A NaN in a window is its maximum, as in
    PyTorch.

    The forward visits the KH*KW offsets in row-major order, each one a strided view
    (N, C, H_out, W_out) of x_pad: a strictly greater value takes over the running maximum and
    records its offset. Since the offsets only grow, ``switch = max(switch, offset * greater)``
    keeps the switch without a branch per element (``np.where`` on a random mask measured 6x
    slower than this arithmetic).

    The backward takes one of two paths, recorded in ``cache.path``:

    - ``"reshape"`` when the windows tile x exactly (stride == kernel, no padding,
      KH*H_out == H and KW*W_out == W): each pixel lies in exactly one window, so dx is written
      offset by offset, ``dx[.., i*KH + p, .., j*KW + q] = dout[i, j] * (switch == p*KW + q)``,
      with no adds.
    - ``"strided"`` otherwise (overlapping windows, padding, or rows that strict=False drops):
      the same one-hot products are added with one strided ``+=`` per offset (col2im), so a pixel
      that is the maximum of several windows receives the sum of their dout.

    Parameters
    ----------
    x : (N, C, H, W) array, float32 or float64
    kernel : int or (KH, KW)
    stride : int or (SH, SW), optional. Defaults to ``kernel`` (non-overlapping windows).
    pad : int or (PH, PW), at most half the kernel on each axis; -inf on each side
    strict : if True (default) the size rule must give an integer; if False it is floored and
        the trailing rows/columns no window reaches get no gradient (PyTorch's behaviour)

    Returns
    -------
    out : (N, C, H_out, W_out) array, dtype of x
    cache : :class:`MaxPoolCache` for ``max_pool2d_backward``

    Raises
    ------
    ValueError
        If x is not 4-D or has an empty axis, pad exceeds half the kernel, or the size rule does
        not give a positive integer (with strict=True).
    TypeError
        If x is not floating point, or a size is not an int.

    Examples
    --------
    >>> import numpy as np
    >>> out, cache = max_pool2d_forward(np.zeros((2, 3, 32, 32)), 2)
    >>> out.shape, cache.path
    ((2, 3, 16, 16), 'reshape')
    """
    x, win = pool_geometry(x, kernel, stride, pad, "max_pool2d", strict)
    n, c, h, w = x.shape
    tiles = ((win.sh, win.sw) == (win.kh, win.kw) and win.ph == win.pw == 0
             and (win.kh * win.h_out, win.kw * win.w_out) == (h, w))
    out = np.empty((n, c, win.h_out, win.w_out), x.dtype)
    switches = np.empty(out.shape, _switch_dtype(win))
    parallel.over_batch(x, lambda lo, hi: _max_pool_into(x[lo:hi], win, out[lo:hi],
                                                         switches[lo:hi]))
    return out, MaxPoolCache(x.shape, x.dtype, win, switches, "reshape" if tiles else "strided")


def _max_pool_into(x, win, out, switches) -> None:
    """The forward on one chunk: the maxima into out and their offsets into switches."""
    windows = im2col(x, win, pad_value=-np.inf)            # (m, C, KH, KW, H_out, W_out) view
    out[...] = windows[:, :, 0, 0]                          # (m, C, H_out, W_out)
    switches.fill(0)
    greater = np.empty(out.shape, bool)
    offset_if_greater = np.empty_like(switches)
    for k in range(1, win.kh * win.kw):
        candidate = windows[:, :, k // win.kw, k % win.kw]
        np.greater(candidate, out, out=greater)
        np.maximum(out, candidate, out=out)
        np.multiply(greater, switches.dtype.type(k), out=offset_if_greater)
        np.maximum(switches, offset_if_greater, out=switches)
    if np.isnan(out).any():
        # Comparisons are all False against NaN; let argmax (which stops at the first NaN)
        # place the switches of this rare input.
        switches[...] = _argmax_switches(windows)
        out[...] = np.take_along_axis(_window_last(windows),
                                      switches[..., None].astype(np.intp), axis=-1)[..., 0]


def _switch_dtype(win: Window) -> np.dtype:
    """The smallest unsigned integer type that holds every offset 0 .. KH*KW - 1."""
    return np.min_scalar_type(win.kh * win.kw - 1)


def _window_last(windows: np.ndarray) -> np.ndarray:
    """(N, C, KH, KW, H_out, W_out) view -> (N, C, H_out, W_out, KH*KW) copy."""
    n, c, kh, kw, h_out, w_out = windows.shape
    return windows.transpose(0, 1, 4, 5, 2, 3).reshape(n, c, h_out, w_out, kh * kw)


def _argmax_switches(windows: np.ndarray) -> np.ndarray:
    """Offsets of each window's first maximum (a NaN counts as the maximum)."""
    return _window_last(windows).argmax(axis=-1)


def max_pool2d_backward(dout, cache):
    """Route each dout to its window's switch, summed where windows share one; dx (N, C, H, W)."""
    x_shape, dtype, win, switches, path = cache
    n, c, h, w = x_shape
    dout = check_dout(dout, switches.shape, "max_pool2d_backward").astype(dtype, copy=False)
    dx = np.empty(x_shape, dtype)
    parallel.over_batch(dx, lambda lo, hi: _max_unpool_into(dout[lo:hi], switches[lo:hi], win,
                                                            path, dx[lo:hi]))
    return dx


def _max_unpool_into(dout, switches, win, path, dx) -> None:
    """The backward on one chunk: dout routed to the switches, written into dx (m, C, H, W)."""
    m, c, h, w = dx.shape
    hit = np.empty(switches.shape, bool)
    if path == "reshape":
        # Tiling windows: x row i*KH + p belongs to window row i alone, so every pixel is written
        # exactly once, by the offset (p, q) it sits at.
        tiles = dx.reshape(m, c, win.h_out, win.kh, win.w_out, win.kw)
        for k in range(win.kh * win.kw):
            np.equal(switches, k, out=hit)
            np.multiply(dout, hit, out=tiles[:, :, :, k // win.kw, :, k % win.kw])
        return
    dx_pad = np.zeros((m, c, h + 2 * win.ph, w + 2 * win.pw), dx.dtype)
    routed = np.empty(switches.shape, dx.dtype)
    for k in range(win.kh * win.kw):
        p, q = divmod(k, win.kw)
        np.equal(switches, k, out=hit)
        np.multiply(dout, hit, out=routed)
        dx_pad[:, :, p:p + win.sh * (win.h_out - 1) + 1:win.sh,
               q:q + win.sw * (win.w_out - 1) + 1:win.sw] += routed
    dx[...] = dx_pad[:, :, win.ph:win.ph + h, win.pw:win.pw + w]


def avg_pool2d_forward(x, kernel, stride=None, pad=0, *, strict=True):
    """Average pooling over (KH, KW) windows; padding counts as zeros in the average.

        out[n, c, i, j] = 1/(KH*KW) * sum_{p < KH, q < KW} x_pad[n, c, i*SH + p, j*SW + q]
        H_out = (H - KH + 2*PH) / SH + 1,  W_out = (W - KW + 2*PW) / SW + 1

    ``x_pad`` is x with PH rows and PW columns of zeros on each side, and the divisor is always
    KH*KW (PyTorch's ``count_include_pad=True``).

    Parameters
    ----------
    x : (N, C, H, W) array, float32 or float64
    kernel : int or (KH, KW)
    stride : int or (SH, SW), optional. Defaults to ``kernel``.
    pad : int or (PH, PW), at most half the kernel on each axis; zeros on each side
    strict : if True (default) the size rule must give an integer; if False it is floored

    Returns
    -------
    out : (N, C, H_out, W_out) array, dtype of x
    cache : for ``avg_pool2d_backward``

    Raises
    ------
    ValueError
        If x is not 4-D or has an empty axis, pad exceeds half the kernel, or the size rule does
        not give a positive integer (with strict=True).
    TypeError
        If x is not floating point, or a size is not an int.

    Examples
    --------
    >>> import numpy as np
    >>> out, _ = avg_pool2d_forward(np.zeros((2, 3, 7, 7)), 3, stride=2, pad=1)
    >>> out.shape
    (2, 3, 4, 4)
    """
    x, win = pool_geometry(x, kernel, stride, pad, "avg_pool2d", strict)
    out = np.empty(x.shape[:2] + (win.h_out, win.w_out), x.dtype)     # (N, C, H_out, W_out)

    def average(lo, hi):
        np.divide(_window_sum(im2col(x[lo:hi], win)), win.kh * win.kw, out=out[lo:hi])

    parallel.over_batch(x, average)
    return out, (x.shape, x.dtype, win)


def avg_pool2d_backward(dout, cache):
    """Spread each dout evenly, dout / (KH*KW), over its window's pixels; dx (N, C, H, W)."""
    x_shape, dtype, win = cache
    n, c = x_shape[:2]
    dout = check_dout(dout, (n, c, win.h_out, win.w_out), "avg_pool2d_backward")
    dout = dout.astype(dtype, copy=False)
    dx = np.empty(x_shape, dtype)

    def spread(lo, hi):
        share = dout[lo:hi] / (win.kh * win.kw)             # (m, C, H_out, W_out)
        dwin = np.broadcast_to(share[:, :, None, None],    # (m, C, KH, KW, H_out, W_out) view
                               (hi - lo, c, win.kh, win.kw, win.h_out, win.w_out))
        dx[lo:hi] = col2im(dwin, (hi - lo,) + tuple(x_shape[1:]), win)

    parallel.over_batch(dx, spread)
    return dx


def l2_pool2d_forward(x, kernel, stride=None, *, strict=True):
    """L2-norm pooling: the Euclidean norm of each (KH, KW) window (no padding).

        out[n, c, i, j] = sqrt( sum_{p < KH, q < KW} x[n, c, i*SH + p, j*SW + q]**2 )
        H_out = (H - KH) / SH + 1,  W_out = (W - KW) / SW + 1

    PyTorch's ``lp_pool2d`` with ``norm_type=2``. The gradient of a window whose norm is 0 (all
    its pixels 0) is defined as 0; PyTorch gives nan there.

    Parameters
    ----------
    x : (N, C, H, W) array, float32 or float64
    kernel : int or (KH, KW)
    stride : int or (SH, SW), optional. Defaults to ``kernel``.
    strict : if True (default) the size rule must give an integer; if False it is floored

    Returns
    -------
    out : (N, C, H_out, W_out) array, dtype of x, >= 0
    cache : for ``l2_pool2d_backward``

    Raises
    ------
    ValueError
        If x is not 4-D or has an empty axis, or the size rule does not give a positive integer
        (with strict=True).
    TypeError
        If x is not floating point, or a size is not an int.

    Examples
    --------
    >>> import numpy as np
    >>> out, _ = l2_pool2d_forward(np.ones((1, 2, 4, 6)), 2)
    >>> out.shape
    (1, 2, 2, 3)
    """
    x, win = pool_geometry(x, kernel, stride, 0, "l2_pool2d", strict)
    out = np.empty(x.shape[:2] + (win.h_out, win.w_out), x.dtype)     # (N, C, H_out, W_out)

    def norm(lo, hi):
        # Square once (x's size) and window-sum the squares, not K-fold window copies.
        np.sqrt(_window_sum(im2col(x[lo:hi] * x[lo:hi], win)), out=out[lo:hi])

    parallel.over_batch(x, norm)
    return out, (x, win, out)


def l2_pool2d_backward(dout, cache):
    """``dx = x * (sum of dout / out over the windows holding the pixel)``, a window with
    out = 0 adding 0; dx (N, C, H, W)."""
    x, win, out = cache
    dout = check_dout(dout, out.shape, "l2_pool2d_backward").astype(x.dtype, copy=False)
    # d out[i, j] / d x[r, s] = x[r, s] / out[i, j] for every window (i, j) holding (r, s): the
    # factor dout / out is per window, so scatter it with col2im and multiply by x once.
    c = x.shape[1]
    dx = np.empty(x.shape, x.dtype)

    def chunk(lo, hi):
        ratio = np.zeros_like(out[lo:hi])
        np.divide(dout[lo:hi], out[lo:hi], out=ratio, where=out[lo:hi] > 0)  # (m, C, H_out, W_out)
        dwin = np.broadcast_to(ratio[:, :, None, None],    # (m, C, KH, KW, H_out, W_out) view
                               (hi - lo, c, win.kh, win.kw, win.h_out, win.w_out))
        np.multiply(x[lo:hi], col2im(dwin, x[lo:hi].shape, win), out=dx[lo:hi])

    parallel.over_batch(x, chunk)
    return dx


def global_avg_pool2d_forward(x):
    """Global average pooling: the mean of each channel over all H x W positions.

        out[n, c, 0, 0] = 1/(H*W) * sum_{r < H, s < W} x[n, c, r, s]

    GoogLeNet's and ResNet's replacement for the first fully connected layer (the notes).

    Parameters
    ----------
    x : (N, C, H, W) array, float32 or float64

    Returns
    -------
    out : (N, C, 1, 1) array, dtype of x
    cache : for ``global_avg_pool2d_backward``

    Raises
    ------
    ValueError
        If x is not 4-D or has an empty axis.
    TypeError
        If x is not floating point.

    Examples
    --------
    >>> import numpy as np
    >>> out, _ = global_avg_pool2d_forward(np.zeros((2, 512, 7, 7)))
    >>> out.shape
    (2, 512, 1, 1)
    """
    x = as_float_array(x, "global_avg_pool2d x")
    check_ndim(x, 4, "global_avg_pool2d x (N, C, H, W)")
    if min(x.shape) < 1:
        raise ValueError(f"global_avg_pool2d: every size of x must be positive, "
                         f"got shape {x.shape}")
    n, c, h, w = x.shape
    out = np.empty((n, c, 1, 1), x.dtype)
    x3, out2 = x.reshape(n, c, h * w), out.reshape(n, c)                    # (N, C, L), (N, C)
    parallel.over_batch(x, lambda lo, hi: np.mean(x3[lo:hi], axis=2, out=out2[lo:hi]))
    return out, (x.shape, x.dtype)


def global_avg_pool2d_backward(dout, cache):
    """Every pixel of channel (n, c) gets dout[n, c] / (H*W); dx (N, C, H, W)."""
    x_shape, dtype = cache
    n, c, h, w = x_shape
    dout = check_dout(dout, (n, c, 1, 1), "global_avg_pool2d_backward")
    dx = np.empty(x_shape, dtype)
    share = dout.astype(dtype, copy=False) / (h * w)        # (N, C, 1, 1)

    def spread(lo, hi):
        dx[lo:hi] = share[lo:hi]                            # broadcast to (m, C, H, W)

    parallel.over_batch(dx, spread)
    return dx
