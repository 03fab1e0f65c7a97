"""Naive locally connected layer: one loop per index of the formula, one window at a time.

Letters as in :mod:`cnnkit.functional.local`: N batch, C channels, F filters per position,
H/W input size, KH/KW kernel, H_out/W_out output size, S stride, P padding, D dilation.
"""

from __future__ import annotations

import numpy as np

from ..functional.local import check_local_args


def locally_connected2d_forward(x, w, b=None, stride=1, pad=0, dilation=1, *, strict=True):
    """Locally connected layer by loops over n, f, i, j (see the fast kernel for the docs).

        out[n, f, i, j] = b[f, i, j]
                  + sum_{c, p, q} w[i, j, f, c, p, q] * x_pad[n, c, i*SH + p*DH, j*SW + q*DW]

    Parameters
    ----------
    x : (N, C, H, W) array
    w : (H_out, W_out, F, C, KH, KW) array
    b : (F, H_out, W_out) array or None
    stride, pad, dilation : int or (h, w) pair
    strict : the size rule must give an integer (True) or is floored (False)

    Returns
    -------
    out : (N, F, H_out, W_out) array
    cache : for ``locally_connected2d_backward``

    Raises
    ------
    ValueError
        If x is not 4-D, w not 6-D, or the geometry does not fit (size rule, w's grid).
    """
    x, w, b, win = check_local_args(x, w, b, stride, pad, dilation, strict)
    n_batch = x.shape[0]
    h_out, w_out, n_filt = w.shape[:3]
    x_pad = np.pad(x, ((0, 0), (0, 0), (win.ph, win.ph), (win.pw, win.pw)))

    out = np.zeros((n_batch, n_filt, h_out, w_out), dtype=x.dtype)
    for n in range(n_batch):
        for f in range(n_filt):
            for i in range(h_out):
                for j in range(w_out):
                    window = _window(x_pad, n, i, j, win)          # (C, KH, KW)
                    out[n, f, i, j] = np.sum(w[i, j, f] * window)
                    if b is not None:
                        out[n, f, i, j] += b[f, i, j]
    return out, (x_pad, x.shape, w, b is not None, win)


def locally_connected2d_backward(dout, cache):
    """Gradients by the same loops: dx (N, C, H, W), dw (like w), db (F, H_out, W_out) or None."""
    x_pad, x_shape, w, has_bias, win = cache
    n_batch, n_filt, h_out, w_out = dout.shape
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    for n in range(n_batch):
        for f in range(n_filt):
            for i in range(h_out):
                for j in range(w_out):
                    g = dout[n, f, i, j]
                    # out[n, f, i, j] = sum(w[i, j, f] * window): each factor gets g times the other
                    dw[i, j, f] += g * _window(x_pad, n, i, j, win)
                    _window(dx_pad, n, i, j, win)[...] += g * w[i, j, f]
    db = None
    if has_bias:
        db = np.zeros((n_filt, h_out, w_out), dtype=dout.dtype)
        for n in range(n_batch):
            db += dout[n]
    h, wid = x_shape[2:]
    dx = dx_pad[:, :, win.ph:win.ph + h, win.pw:win.pw + wid]
    return dx, dw, db


def _window(a, n, i, j, win):
    """The (C, KH, KW) receptive field of output (i, j) in a padded (N, C, Hp, Wp) array.

    A basic slice, so a view: writing into it (the backward's scatter) writes into ``a``.
    """
    r0, c0 = i * win.sh, j * win.sw                      # top-left corner of the window
    r1, c1 = r0 + win.dh * (win.kh - 1) + 1, c0 + win.dw * (win.kw - 1) + 1
    return a[n, :, r0:r1:win.dh, c0:c1:win.dw]
