"""2-D convolution (cross-correlation, as in every CNN library): im2col + GEMM.

Letters: N batch, C input channels, F filters, H/W input size, KH/KW kernel, H_out/W_out output
size, L = H_out*W_out output positions, K = C*KH*KW the length of one receptive field.

The batch is processed in chunks of samples whose columns fit in a core's L2 cache
(:func:`~cnnkit.functional.im2col.batch_chunks`): im2col writes a chunk's columns into one reused
buffer and the GEMM reads them straight back from cache. The forward keeps x, not the columns,
and the backward rebuilds them chunk by chunk: a (N, K, L) column matrix would be KH*KW times
the size of x, and streaming it through main memory cost more than gathering it again.
Stride-1 convs lay the columns out "wide", a whole padded row per output row, so that im2col and
col2im are a few long contiguous copies and adds (see ``ColumnBuffers``). A 1x1 conv with stride
1 and no padding needs no im2col at all: x (N, C, H*W) *is* its columns.
"""

from __future__ import annotations

import numpy as np

from ._utils import (as_float_array, check_dout, check_ndim, check_param, match_dtype,
                     window_geometry)
from .im2col import ColumnBuffers, batch_chunks, row_length


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

    Every window is laid out as a column (im2col), so the layer is the product
    ``w (F, K) @ cols (K, L)`` for each sample; see the module docstring for the chunking.

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
    cache : for ``conv2d_backward``. It holds x itself, not a copy: x must not be modified
        between the forward and the backward.

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
    f = w.shape[0]
    w2 = w.reshape(f, -1)                                                  # (F, K)
    n_pos = win.h_out * win.w_out
    out = np.empty((n, f, n_pos), x.dtype)                                 # (N, F, L)
    if _is_pointwise(win):
        np.matmul(w2, x.reshape(n, c, n_pos), out=out)                     # x (N, C, L) is cols
        if b is not None:
            out += b[:, None]
        return out.reshape(n, f, win.h_out, win.w_out), (x, w, b is not None, win)
    bufs, chunks = _column_plan(x, w2.shape[1], win)
    out4 = out.reshape(n, f, win.h_out, win.w_out)
    for lo, hi in chunks:
        cols = bufs.gather(x[lo:hi])                                       # (K, m*P), in cache
        if hi - lo == 1 and not bufs.wide:
            np.matmul(w2, cols, out=out[lo])                               # (F, L)
        else:
            bufs.to_output(w2 @ cols, out4[lo:hi])                         # (F, m*P) -> (m, F, ..)
        if b is not None:
            out[lo:hi] += b[:, None]                                       # while it is in cache
    return out4, (x, w, b is not None, win)


def conv2d_backward(dout, cache, *, input_grad=True):
    """Gradients of conv2d: dx (N, C, H, W) (None if ``input_grad`` is False), dw (F, C, KH, KW),
    db (F,) or None.

        db[f] = sum_{n, i, j} dout[n, f, i, j]
        dw = sum_n dout[n] (F, L) @ cols[n].T (L, K)        (input windows correlated with dout)
        dx = col2im(w.T (K, F) @ dout[n] (F, L))            for each sample n

    col2im adds every window's gradient back onto the pixels it read, which equals correlating
    the zero-inserted, zero-padded dout with the 180-degree-rotated filter (the notes'
    derivation, written out in ``cnnkit.reference.conv2d_backward``). A network's first layer
    passes ``input_grad=False``: nothing needs the gradient of the data, and for a 3x3 conv dx
    costs as much as dw.
    """
    x, w, has_bias, win = cache
    n, c = x.shape[:2]
    f = w.shape[0]
    dout = check_dout(dout, (n, f, win.h_out, win.w_out), "conv2d_backward")
    dout = dout.astype(x.dtype, copy=False)
    n_pos = win.h_out * win.w_out
    d2 = dout.reshape(n, f, n_pos)                                         # (N, F, L)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None                    # (F,)
    w2 = w.reshape(f, -1)                                                  # (F, K)
    if _is_pointwise(win):
        x3 = x.reshape(n, c, n_pos)                                        # (N, C, L)
        dw = np.matmul(d2, x3.transpose(0, 2, 1)).sum(axis=0)              # (F, C)
        dx = np.matmul(w2.T, d2).reshape(x.shape) if input_grad else None  # (N, C, H, W)
        return dx, dw.reshape(w.shape), db
    # dw is accumulated transposed: BLAS ran cols (K, m*P) @ d.T (m*P, F) 1.3x faster than
    # d (F, m*P) @ cols.T (m*P, K) at the benchmark's 3x3 shape.
    dw_t = np.zeros((w2.shape[1], f), x.dtype)                             # (K, F)
    dw_chunk = np.empty_like(dw_t)
    dx = np.empty_like(x) if input_grad else None
    bufs, chunks = _column_plan(x, w2.shape[1], win)
    for lo, hi in chunks:
        cols = bufs.gather(x[lo:hi])                                       # (K, m*P), rebuilt
        d_chunk = bufs.dout_matrix(dout[lo:hi])                            # (F, m*P)
        dw_t += np.matmul(cols, d_chunk.T, out=dw_chunk)                   # (K, F)
        if input_grad:
            bufs.input_gradient(w, d_chunk, dx[lo:hi])                     # col2im(w.T @ d)
    return dx, dw_t.T.reshape(w.shape), db


def _is_pointwise(win) -> bool:
    """A 1x1 kernel, stride 1, no padding: every pixel is its own window."""
    return (win.kh, win.kw, win.sh, win.sw, win.ph, win.pw) == (1, 1, 1, 1, 0, 0)


def _use_wide(win) -> bool:
    """A stride-1 conv uses the wide column layout (see ``ColumnBuffers``) unless its extra
    columns would add more than half to the GEMMs: at 8x8 and 3x3 (a quarter more) and at 10x10
    and 5x5 (40% more) the wide layout still measured faster than the tight one."""
    return (win.sh, win.sw) == (1, 1) and 2 * (win.kw - 1) * win.dw <= win.w_out


def _column_plan(x, k: int, win):
    """Chunks of the batch whose (K, m*P) columns fit the cache budget, and their buffers."""
    wide = _use_wide(win)
    n_pos = win.h_out * row_length(win, wide)
    chunks = list(batch_chunks(x.shape[0], k * n_pos * x.itemsize))
    lo, hi = chunks[0]
    return ColumnBuffers(hi - lo, x.shape, win, x.dtype, wide=wide), chunks
