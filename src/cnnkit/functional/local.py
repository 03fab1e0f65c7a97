"""Locally connected 2-D layer: conv's geometry without parameter sharing.

Every output position (i, j) has its own bank of F filters, so the notes' "relax the parameter
sharing" layer (faces: eyes and hair are learnt where they appear) is a batch of L small
fully connected layers, one per position, each seeing only its own window.

Letters: N batch, C input channels, F filters per position, H/W input size, KH/KW kernel,
H_out/W_out output size, L = H_out*W_out output positions, K = C*KH*KW the length of one
receptive field.
"""

from __future__ import annotations

import numpy as np

from ..checks import as_float_array, check_dout, check_ndim, check_param, match_dtype
from ..geometry import window_geometry
from ..parallel import single_thread_blas
from .im2col import col2im, im2col

__all__ = ["locally_connected2d_forward", "locally_connected2d_backward"]


def _show(h, w):
    """``3`` for a square pair, ``(3, 2)`` otherwise: how the grid error names a hyperparameter."""
    return f"{h}" if h == w else f"({h}, {w})"


def check_local_args(x, w, b, stride, pad, dilation, strict):
    """Validate the locally connected layer's arguments (shared with the naive version);
    return x, w, b and the window geometry."""
    x = as_float_array(x, "locally_connected2d x")
    w = as_float_array(w, "locally_connected2d w")
    check_ndim(x, 4, "locally_connected2d x (N, C, H, W)")
    check_ndim(w, 6, "locally_connected2d w (H_out, W_out, F, C, KH, KW)")
    n, c = x.shape[:2]
    h_out, w_out, f, cw, kh, kw = w.shape
    if min(x.shape) < 1 or min(w.shape) < 1:
        raise ValueError(f"locally_connected2d: every size must be positive, got x {x.shape} "
                         f"and w {w.shape}")
    if cw != c:
        raise ValueError(f"locally_connected2d: x has C = {c} channels but w of shape {w.shape} "
                         f"expects {cw}")
    w = match_dtype(w, x)
    win = window_geometry(x.shape, (kh, kw), stride, pad, dilation, "locally_connected2d", strict)
    if (win.h_out, win.w_out) != (h_out, w_out):
        raise ValueError(
            f"locally_connected2d: w is for a {h_out}x{w_out} output grid but x of shape "
            f"{x.shape} gives {win.h_out}x{win.w_out} with kernel {_show(kh, kw)}, "
            f"stride {_show(win.sh, win.sw)}, pad {_show(win.ph, win.pw)}, "
            f"dilation {_show(win.dh, win.dw)}")
    if b is not None:
        b = check_param(b, (f, h_out, w_out), x, "locally_connected2d b")
    return x, w, b, win


@single_thread_blas          # one batched GEMM per call: BLAS at 1 thread, as in every kernel
def locally_connected2d_forward(x, w, b=None, stride=1, pad=0, dilation=1, *, strict=True):
    """Locally connected layer: a convolution whose filters differ at every output position.

        out[n, f, i, j] = b[f, i, j]
                  + sum_{c, p, q} w[i, j, f, c, p, q] * x_pad[n, c, i*SH + p*DH, j*SW + q*DW]
        H_out = (H - DH*(KH-1) - 1 + 2*PH) / SH + 1   (the notes' (W - F + 2P)/S + 1, D = 1)

    The windows are laid out position-major (im2col, copied once into (L, N, K)), so the whole
    layer is one batched product with the positions as the batch axis:
    ``cols (L, N, K) @ w (L, K, F) -> (L, N, F)``. It holds L times the weights of a conv layer
    of the same geometry (the notes' AlexNet first layer: 105,705,600 parameters, not 34,944).

    Parameters
    ----------
    x : (N, C, H, W) array
    w : (H_out, W_out, F, C, KH, KW) array (computed in x's dtype); ``w[i, j]`` is the filter bank of
        output position (i, j), so (H_out, W_out) must be what the size rule gives for x
    b : (F, H_out, W_out) array or None, one bias per output unit
    stride, pad, dilation : int or (h, w) pair; pad >= 0 zeros on each side, dilation 1 = none
    strict : if True (default) the size rule must give an integer; if False it is floored and
        the trailing rows/columns no window reaches are ignored (PyTorch's behaviour)

    Returns
    -------
    out : (N, F, H_out, W_out) array, dtype of x
    cache : for ``locally_connected2d_backward``

    Raises
    ------
    ValueError
        If x is not 4-D or w not 6-D, their channel counts differ, a size is not positive, the
        size rule does not give a positive integer, w's (H_out, W_out) grid differs from the
        one the size rule gives, or b is not (F, H_out, W_out).
    TypeError
        If an array is not floating point, or a size is not an int.

    Examples
    --------
    >>> import numpy as np
    >>> x, w = np.zeros((2, 3, 7, 7)), np.zeros((3, 3, 4, 3, 3, 3))
    >>> out, _ = locally_connected2d_forward(x, w, None, stride=2)
    >>> out.shape
    (2, 4, 3, 3)
    """
    x, w, b, win = check_local_args(x, w, b, stride, pad, dilation, strict)
    n, c = x.shape[:2]
    h_out, w_out, f, _, kh, kw = w.shape

    k, l = c * kh * kw, h_out * w_out
    # Position-major copy, so that each position's (N, K) block is contiguous for the GEMM.
    cols = im2col(x, win).transpose(4, 5, 0, 1, 2, 3)    # (H_out, W_out, N, C, KH, KW) view
    cols = cols.reshape(l, n, k)                         # (L, N, K), the copy
    wl = w.reshape(l, f, k)                              # (L, F, K)
    out = np.matmul(cols, wl.transpose(0, 2, 1))         # (L, N, K) @ (L, K, F) -> (L, N, F)
    out = out.transpose(1, 2, 0).reshape(n, f, h_out, w_out)  # (N, F, L) -> (N, F, H_out, W_out)
    if b is not None:
        out += b
    return out, (x.shape, w, b is not None, win, cols)


@single_thread_blas
def locally_connected2d_backward(dout, cache):
    """Gradients: dx (N, C, H, W), dw (H_out, W_out, F, C, KH, KW), db (F, H_out, W_out) or None.

    Per position the layer is affine, so dw[i, j] = dout[:, :, i, j].T @ cols and the window
    gradient is dout[:, :, i, j] @ w[i, j]; col2im then sums the overlapping windows into dx.
    """
    x_shape, w, has_bias, win, cols = cache
    h_out, w_out, f, c, kh, kw = w.shape
    n, l = x_shape[0], h_out * w_out
    dout = check_dout(dout, (n, f, h_out, w_out), "locally_connected2d_backward")
    d3 = np.ascontiguousarray(dout.reshape(n, f, l).transpose(2, 0, 1))  # (N, F, L) -> (L, N, F)
    db = dout.sum(axis=0) if has_bias else None                          # (F, H_out, W_out)
    dw = np.matmul(d3.transpose(0, 2, 1), cols)          # (L, F, N) @ (L, N, K) -> (L, F, K)
    dw = dw.reshape(w.shape)                             # (H_out, W_out, F, C, KH, KW)
    dcols = np.matmul(d3, w.reshape(l, f, -1))           # (L, N, F) @ (L, F, K) -> (L, N, K)
    dcols = dcols.reshape(h_out, w_out, n, c, kh, kw).transpose(2, 3, 4, 5, 0, 1)
    #                                                      (N, C, KH, KW, H_out, W_out) view
    dx = col2im(dcols, x_shape, win)                     # (N, C, H, W)
    return dx, dw, db
