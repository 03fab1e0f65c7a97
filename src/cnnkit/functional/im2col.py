"""im2col by strided windows, and its adjoint col2im by strided adds.

Shared by conv, pooling and the locally connected layer. ``win`` is the
:class:`~cnnkit.functional._utils.Window` geometry from ``window_geometry``.

Letters: N batch, C channels, H/W input size, Hp/Wp padded size, KH/KW kernel,
H_out/W_out output size, S stride, P padding, D dilation.

    cols[n, c, p, q, i, j] = x_pad[n, c, i*SH + p*DH, j*SW + q*DW]

is a *view* of the padded input (no copy): the window position (i, j) and the offset (p, q)
inside the window are just two more pairs of strides over the same memory.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._utils import Window


def pad2d(x: np.ndarray, ph: int, pw: int, value: float = 0.0) -> np.ndarray:
    """Return x (N, C, H, W) padded by ph rows and pw columns on each side (x itself if none)."""
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    out = np.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


def window_view(x_pad: np.ndarray, win: Window) -> np.ndarray:
    """Read-only strided view (N, C, KH, KW, H_out, W_out) of the padded input's windows."""
    sn, sc, sh, sw = x_pad.strides
    n, c = x_pad.shape[:2]
    return as_strided(
        x_pad,
        shape=(n, c, win.kh, win.kw, win.h_out, win.w_out),
        strides=(sn, sc, win.dh * sh, win.dw * sw, win.sh * sh, win.sw * sw),
        writeable=False)


def im2col(x: np.ndarray, win: Window, pad_value: float = 0.0) -> np.ndarray:
    """Windows of x (N, C, H, W) as a view (N, C, KH, KW, H_out, W_out) of the padded input.

    The view costs no memory; reshaping it to the GEMM operand (N, C*KH*KW, H_out*W_out) is what
    copies, once.
    """
    return window_view(pad2d(x, win.ph, win.pw, pad_value), win)


def col2im(cols: np.ndarray, x_shape: tuple, win: Window) -> np.ndarray:
    """Adjoint of :func:`im2col`: scatter-add cols (N, C, KH, KW, H_out, W_out) into (N, C, H, W).

    One strided ``+=`` per kernel offset (p, q): within one offset the windows land on distinct
    pixels (they are S apart), so the add needs no ``np.add.at``; overlap between windows is summed
    across the KH*KW offsets. Rows/columns no window reached (strict=False) stay zero.
    """
    n, c, h, w = x_shape
    dx_pad = np.zeros((n, c, h + 2 * win.ph, w + 2 * win.pw), dtype=cols.dtype)
    h_span = win.sh * (win.h_out - 1) + 1
    w_span = win.sw * (win.w_out - 1) + 1
    for p in range(win.kh):
        r0 = p * win.dh
        for q in range(win.kw):
            c0 = q * win.dw
            dx_pad[:, :, r0:r0 + h_span:win.sh, c0:c0 + w_span:win.sw] += cols[:, :, p, q]
    return dx_pad[:, :, win.ph:win.ph + h, win.pw:win.pw + w]
