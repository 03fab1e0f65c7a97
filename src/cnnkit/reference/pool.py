"""Naive loop versions of the pooling kernels, to be read beside the formulas.

Same names, signatures and return values as :mod:`cnnkit.functional.pool` (global average pooling,
a one-line mean, has no naive twin). Every output is computed by explicit loops over n, c, i, j
and the window offsets p, q; nothing is vectorised. The argument checks are shared with the fast
kernels (``pool_geometry``), so both accept and reject the same arguments.

Padding is never materialised: the window offset (p, q) of output (i, j) reads x row
``r = i*SH + p - PH`` and column ``s = j*SW + q - PW``, and an (r, s) outside x is a padding
pixel: skipped by max (it counts as -inf) and by L2 (there is none), a zero in the average.

Letters: N batch, C channels, H/W input size, KH/KW kernel, SH/SW stride, PH/PW padding,
H_out/W_out output size.
"""

from __future__ import annotations

import numpy as np

from ..checks import check_dout
from ..functional.pool import pool_geometry


def _window_pixels(win, i, j, H, W):
    """Yield (p, q, r, s): offset in window (i, j), in row-major order, and the x pixel it reads,
    for the pixels that lie inside x (the padding ones are left out)."""
    for p in range(win.kh):
        for q in range(win.kw):
            r, s = i * win.sh + p - win.ph, j * win.sw + q - win.pw
            if 0 <= r < H and 0 <= s < W:
                yield p, q, r, s


def max_pool2d_forward(x, kernel, stride=None, pad=0, *, strict=True):
    """Max pooling, one window at a time; ``switches[n, c, i, j]`` is the (p, q) of the maximum.

        out[n, c, i, j] = max_{p < KH, q < KW} x_pad[n, c, i*SH + p, j*SW + q]   (padding = -inf)

    A pixel replaces the running maximum only when strictly greater, so on a tie the first
    maximum in row-major window order keeps the switch.
    """
    x, win = pool_geometry(x, kernel, stride, pad, "max_pool2d", strict)
    N, C, H, W = x.shape
    out = np.empty((N, C, win.h_out, win.w_out), dtype=x.dtype)
    switches = np.empty((N, C, win.h_out, win.w_out, 2), dtype=np.intp)
    for n in range(N):
        for c in range(C):
            for i in range(win.h_out):
                for j in range(win.w_out):
                    best, arg = None, None
                    for p, q, r, s in _window_pixels(win, i, j, H, W):
                        if best is None or x[n, c, r, s] > best:
                            best, arg = x[n, c, r, s], (p, q)
                    out[n, c, i, j] = best
                    switches[n, c, i, j] = arg
    return out, (x.shape, x.dtype, win, switches)


def max_pool2d_backward(dout, cache):
    """Each dout goes to its switch (p, q):
    ``dx[n, c, i*SH + p - PH, j*SW + q - PW] += dout[n, c, i, j]``; dx (N, C, H, W)."""
    x_shape, dtype, win, switches = cache
    N, C, H, W = x_shape
    dout = check_dout(dout, switches.shape[:4], "max_pool2d_backward")
    dx = np.zeros(x_shape, dtype=dtype)
    for n in range(N):
        for c in range(C):
            for i in range(win.h_out):
                for j in range(win.w_out):
                    p, q = switches[n, c, i, j]
                    dx[n, c, i * win.sh + p - win.ph, j * win.sw + q - win.pw] += dout[n, c, i, j]
    return dx


def avg_pool2d_forward(x, kernel, stride=None, pad=0, *, strict=True):
    """Average pooling, one window at a time; padding adds zeros but still counts in KH*KW.

        out[n, c, i, j] = 1/(KH*KW) * sum_{p < KH, q < KW} x_pad[n, c, i*SH + p, j*SW + q]
    """
    x, win = pool_geometry(x, kernel, stride, pad, "avg_pool2d", strict)
    N, C, H, W = x.shape
    out = np.empty((N, C, win.h_out, win.w_out), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(win.h_out):
                for j in range(win.w_out):
                    total = 0.0
                    for _, _, r, s in _window_pixels(win, i, j, H, W):
                        total += x[n, c, r, s]
                    out[n, c, i, j] = total / (win.kh * win.kw)
    return out, (x.shape, x.dtype, win)


def avg_pool2d_backward(dout, cache):
    """Every real pixel of window (i, j) gets ``dout[n, c, i, j] / (KH*KW)``; dx (N, C, H, W)."""
    x_shape, dtype, win = cache
    N, C, H, W = x_shape
    dout = check_dout(dout, (N, C, win.h_out, win.w_out), "avg_pool2d_backward")
    dx = np.zeros(x_shape, dtype=dtype)
    for n in range(N):
        for c in range(C):
            for i in range(win.h_out):
                for j in range(win.w_out):
                    for _, _, r, s in _window_pixels(win, i, j, H, W):
                        dx[n, c, r, s] += dout[n, c, i, j] / (win.kh * win.kw)
    return dx


def l2_pool2d_forward(x, kernel, stride=None, *, strict=True):
    """L2-norm pooling, one window at a time.

        out[n, c, i, j] = sqrt( sum_{p < KH, q < KW} x[n, c, i*SH + p, j*SW + q]**2 )
    """
    x, win = pool_geometry(x, kernel, stride, 0, "l2_pool2d", strict)
    N, C, H, W = x.shape
    out = np.empty((N, C, win.h_out, win.w_out), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(win.h_out):
                for j in range(win.w_out):
                    total = 0.0
                    for _, _, r, s in _window_pixels(win, i, j, H, W):
                        total += x[n, c, r, s] ** 2
                    out[n, c, i, j] = np.sqrt(total)
    return out, (x, win, out)


def l2_pool2d_backward(dout, cache):
    """``dx[r, s] += dout[i, j] * x[r, s] / out[i, j]`` over the windows holding (r, s), none
    where out = 0; dx (N, C, H, W)."""
    x, win, out = cache
    N, C, H, W = x.shape
    dout = check_dout(dout, out.shape, "l2_pool2d_backward")
    dx = np.zeros(x.shape, dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(win.h_out):
                for j in range(win.w_out):
                    if out[n, c, i, j] == 0:
                        continue
                    for _, _, r, s in _window_pixels(win, i, j, H, W):
                        dx[n, c, r, s] += dout[n, c, i, j] * x[n, c, r, s] / out[n, c, i, j]
    return dx
