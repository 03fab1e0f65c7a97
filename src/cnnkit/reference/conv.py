"""Naive convolution, written as the notes derive it: slow loops, one formula per line.

Letters: N batch, C channels, F filters, G groups, KH/KW kernel, SH/SW stride, PH/PW padding,
DH/DW dilation, H_out/W_out output size.
"""

from __future__ import annotations

import numpy as np

from ..checks import check_dout
from ..functional.conv import check_conv_args


def conv2d_forward(x, w, b=None, stride=1, pad=0, dilation=1, *, groups=1, strict=True):
    """Convolution as the notes write it, one output at a time.

        V[n, f, i, j] = sum(X_pad[n, g*C/G : (g+1)*C/G,
                                  i*SH : i*SH + DH*(KH-1) + 1 : DH,
                                  j*SW : j*SW + DW*(KW-1) + 1 : DW] * W[f]) + b[f]

    where g = f // (F/G) is filter f's group (g = 0 and all C channels when G = 1).
    Same arguments, returns and errors as :func:`cnnkit.functional.conv2d_forward`.
    """
    x, w, b, win, groups = check_conv_args(x, w, b, stride, pad, dilation, strict, groups)
    n_batch, f_count = x.shape[0], w.shape[0]
    c_group, f_group = x.shape[1] // groups, f_count // groups     # channels, filters per group
    x_pad = np.pad(x, ((0, 0), (0, 0), (win.ph, win.ph), (win.pw, win.pw)))
    h_span = win.dh * (win.kh - 1) + 1          # the dilated receptive field
    w_span = win.dw * (win.kw - 1) + 1

    out = np.zeros((n_batch, f_count, win.h_out, win.w_out), dtype=x.dtype)
    for n in range(n_batch):
        for f in range(f_count):
            c0 = (f // f_group) * c_group                           # first channel of f's group
            for i in range(win.h_out):
                for j in range(win.w_out):
                    r, s = i * win.sh, j * win.sw
                    field = x_pad[n, c0:c0 + c_group,
                                  r:r + h_span:win.dh, s:s + w_span:win.dw]  # (C/G, KH, KW)
                    out[n, f, i, j] = np.sum(field * w[f]) + (0 if b is None else b[f])
    return out, (x, w, b is not None, win, groups)


def conv2d_backward(dout, cache):
    """The notes' backward: dx (N, C, H, W), dw (F, C // groups, KH, KW), db (F,) or None.

    dx: the sensitivity map dout is zero-inserted (S - 1 zeros between entries, restoring the
    stride-1 map), zero-padded by the dilated kernel extent D*(K-1) on every side, and correlated
    with the 180-degree-rotated filter, summing over the filters of channel c's group g:

        delta_1[n, f, i*SH, j*SW] = dout[n, f, i, j]          (zeros elsewhere)
        dX_pad[n, c, r, s] = sum_{f in group g, p, q} rot180(W)[f, c - g*C/G, p, q]
                                                     * pad(delta_1)[n, f, r + p*DH, s + q*DW]

    then the padding P is cropped off.
    dw: the correlation of the padded input channel c of f's group with the (zero-inserted)
    sensitivity map,

        dW[f, c, p, q] = sum_{n, i, j} dout[n, f, i, j]
                                       * X_pad[n, g*C/G + c, i*SH + p*DH, j*SW + q*DW]

    db: db[f] = sum_{n, i, j} dout[n, f, i, j].
    """
    x, w, has_bias, win, groups = cache
    n_batch, c_count, h, wid = x.shape
    f_count = w.shape[0]
    c_group, f_group = c_count // groups, f_count // groups
    dout = check_dout(dout, (n_batch, f_count, win.h_out, win.w_out), "conv2d_backward")
    x_pad = np.pad(x, ((0, 0), (0, 0), (win.ph, win.ph), (win.pw, win.pw)))

    db = dout.sum(axis=(0, 2, 3)) if has_bias else None

    # dW[f, c, p, q]: slide the stride-spaced sensitivity map over the input at offset (p*DH, q*DW).
    dw = np.zeros_like(w)
    h_reach = win.sh * (win.h_out - 1) + 1
    w_reach = win.sw * (win.w_out - 1) + 1
    for f in range(f_count):
        c0 = (f // f_group) * c_group                               # first channel of f's group
        for c in range(c_group):
            for p in range(win.kh):
                for q in range(win.kw):
                    r, s = p * win.dh, q * win.dw
                    seen = x_pad[:, c0 + c, r:r + h_reach:win.sh,
                                 s:s + w_reach:win.sw]                # (N, H_out, W_out)
                    dw[f, c, p, q] = np.sum(dout[:, f] * seen)

    # dX: zero-insert for the stride, pad fully, correlate with the rotated filter.
    delta = np.zeros((n_batch, f_count, h_reach, w_reach), dtype=dout.dtype)
    delta[:, :, ::win.sh, ::win.sw] = dout
    eh, ew = win.dh * (win.kh - 1), win.dw * (win.kw - 1)
    delta = np.pad(delta, ((0, 0), (0, 0), (eh, eh), (ew, ew)))
    w_rot = w[:, :, ::-1, ::-1]                            # (F, C/G, KH, KW) rotated 180 degrees
    dx_pad = np.zeros_like(x_pad)
    # Rows/columns past h_reach + eh were never inside a window (strict=False): gradient 0.
    for n in range(n_batch):
        for c in range(c_count):
            g = c // c_group                                        # channel c's group
            fs = slice(g * f_group, (g + 1) * f_group)              # the filters that read it
            for r in range(h_reach + eh):
                for s in range(w_reach + ew):
                    field = delta[n, fs, r:r + eh + 1:win.dh, s:s + ew + 1:win.dw]  # (F/G, KH, KW)
                    dx_pad[n, c, r, s] = np.sum(w_rot[fs, c - g * c_group] * field)
    dx = dx_pad[:, :, win.ph:win.ph + h, win.pw:win.pw + wid]
    return dx, dw, db
