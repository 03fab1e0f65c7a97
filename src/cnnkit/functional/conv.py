"""2-D convolution (cross-correlation, as in every CNN library): im2col + one GEMM per batch.

Letters: N batch, C input channels, F filters, H/W input size, KH/KW kernel, H_out/W_out output
size, L = H_out*W_out output positions, K = C*KH*KW the length of one receptive field.
"""

from __future__ import annotations

import numpy as np

from ._utils import (as_float_array, check_dout, check_ndim, check_param, match_dtype,
                     window_geometry)
from .im2col import col2im, im2col


def check_conv_args(x, w, b, stride, pad, dilation, strict):
    """Validate conv2d's arguments (shared with the naive version); return x, w, b, geometry."""
    x = as_float_array(x, "conv2d x")
    w = as_float_array(w, "conv2d w")
    check_ndim(x, 4, "conv2d x (N, C, H, W)")
    check_ndim(w, 4, "conv2d w (F, C, KH, KW)")
    if min(x.shape) < 1 or min(w.shape) < 1:
        raise ValueError(f"conv2d: every size must be positive, got x {x.shape} and w {w.shape}")
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"conv2d: x has C = {x.shape[1]} channels but w of shape {w.shape} "
                         f"expects {w.shape[1]}")
    w = match_dtype(w, x)
    if b is not None:
        b = check_param(b, (w.shape[0],), x, "conv2d b")
    win = window_geometry(x.shape, w.shape[2:], stride, pad, dilation, "conv2d", strict)
    return x, w, b, win


def conv2d_forward(x, w, b=None, stride=1, pad=0, dilation=1, *, strict=True):
    """Convolve x with F filters: each output is a dot product of a filter with one window.

        out[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * x_pad[n, c, i*SH + p*DH, j*SW + q*DW]
        H_out = (H - DH*(KH-1) - 1 + 2*PH) / SH + 1   (the notes' (W - F + 2P)/S + 1, D = 1)

    Every window is laid out as a column (im2col, a strided view copied once into the
    (N, K, L) matrix), so the whole layer is the product ``w (F, K) @ cols (N, K, L)``.

    Parameters
    ----------
    x : (N, C, H, W) array
    w : (F, C, KH, KW) array (computed in x's dtype)
    b : (F,) array or None
    stride, pad, dilation : int or (h, w) pair; pad >= 0 zeros on each side, dilation 1 = none
    strict : if True (default) the size rule must give an integer; if False it is floored and
        the trailing rows/columns no window reaches are ignored (PyTorch's behaviour)

    Returns
    -------
    out : (N, F, H_out, W_out) array, dtype of x
    cache : for ``conv2d_backward``

    Raises
    ------
    ValueError
        If x or w is not 4-D, their channel counts differ, b is not (F,), a size is not
        positive, or the size rule does not give a positive integer.
    TypeError
        If an array is not floating point, or a size is not an int.

    Examples
    --------
    >>> import numpy as np
    >>> out, _ = conv2d_forward(np.zeros((2, 3, 32, 32)), np.zeros((16, 3, 5, 5)), None, pad=2)
    >>> out.shape
    (2, 16, 32, 32)
    """
    x, w, b, win = check_conv_args(x, w, b, stride, pad, dilation, strict)
    n, c = x.shape[:2]
    f, _, kh, kw = w.shape

    cols = im2col(x, win).reshape(n, c * kh * kw, win.h_out * win.w_out)  # (N, K, L), the copy
    out = np.matmul(w.reshape(f, -1), cols)                                # (F, K) @ (N, K, L) -> (N, F, L)
    out = out.reshape(n, f, win.h_out, win.w_out)                          # (N, F, H_out, W_out)
    if b is not None:
        out += b[:, None, None]
    return out, (x.shape, w, b is not None, win, cols)


def conv2d_backward(dout, cache):
    """Gradients of conv2d: dx (N, C, H, W), dw (F, C, KH, KW), db (F,) or None.

    dw is the correlation of the input windows with dout (``dout (F, N*L) @ cols (N*L, K)``); dx
    sends ``w.T @ dout`` back through col2im, which equals correlating the zero-inserted,
    zero-padded dout with the 180-degree-rotated filter (the notes' derivation, written out in
    ``cnnkit.reference.conv2d_backward``).
    """
    x_shape, w, has_bias, win, cols = cache
    n, f = x_shape[0], w.shape[0]
    dout = check_dout(dout, (n, f, win.h_out, win.w_out), "conv2d_backward")
    d2 = dout.reshape(n, f, win.h_out * win.w_out)                         # (N, F, L)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None                    # (F,)
    dw = np.tensordot(d2, cols, axes=([0, 2], [0, 2])).reshape(w.shape)    # (F, K) -> (F, C, KH, KW)
    dcols = np.matmul(w.reshape(f, -1).T, d2)                              # (K, F) @ (N, F, L) -> (N, K, L)
    dcols = dcols.reshape(n, x_shape[1], win.kh, win.kw, win.h_out, win.w_out)
    dx = col2im(dcols, x_shape, win)                                       # (N, C, H, W)
    return dx, dw, db
