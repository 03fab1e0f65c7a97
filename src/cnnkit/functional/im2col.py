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

#: Bytes of im2col columns a batched kernel builds at a time. One sample's columns of a 3x3 conv
#: with 32 channels on 32x32 are 1.2 MB; keeping the working set near the 1-2 MB of a core's L2
#: made the conv forward 1.25x and its backward 1.8x faster than one (N, K, L) matrix for the batch,
#: which streams the columns through main memory twice (benchmarks, issue 5).
CHUNK_BYTES = 1 << 20


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
    _scatter_add(cols, dx_pad, win)
    return dx_pad[:, :, win.ph:win.ph + h, win.pw:win.pw + w]


def batch_chunks(n: int, sample_bytes: int, budget: int = CHUNK_BYTES):
    """Yield ``(lo, hi)`` slices of a batch of n samples, each about ``budget`` bytes of columns.

    At least one sample per chunk, however large its columns are.
    """
    step = max(1, min(n, budget // max(1, sample_bytes)))
    for lo in range(0, n, step):
        yield lo, min(n, lo + step)


class ColumnBuffers:
    """Reusable im2col / col2im scratch for one kernel call over chunks of at most ``m`` samples.

    ``gather(x_chunk)`` returns the chunk's columns (m, C, KH, KW, H_out, W_out) as a C-contiguous
    array; ``scatter(dcols, out)`` adds columns back into an (m, C, H, W) array (col2im). Both work
    in a padded buffer whose border stays zero (or ``pad_value``) between chunks, so the padding
    is written once per call, not once per chunk, and no (N, C, H+2P, W+2P) copy of the batch is
    ever made.
    """

    def __init__(self, m: int, x_shape: tuple, win: Window, dtype, pad_value: float = 0.0):
        _, c, h, w = x_shape
        self.win, self.h, self.w = win, h, w
        self.padded = win.ph > 0 or win.pw > 0
        if self.padded:
            self.pad = np.full((m, c, h + 2 * win.ph, w + 2 * win.pw), pad_value, dtype)
        self.cols = np.empty((m, c, win.kh, win.kw, win.h_out, win.w_out), dtype)

    def _interior(self, m: int) -> np.ndarray:
        win = self.win
        return self.pad[:m, :, win.ph:win.ph + self.h, win.pw:win.pw + self.w]

    def gather(self, x_chunk: np.ndarray) -> np.ndarray:
        """Columns of x_chunk (m, C, H, W): ``cols[i, c, p, q, r, s] = x_pad[i, c, r*SH + p*DH,
        s*SW + q*DW]``."""
        m = x_chunk.shape[0]
        if self.padded:
            self._interior(m)[...] = x_chunk
            x_chunk = self.pad[:m]
        cols = self.cols[:m]
        np.copyto(cols, window_view(x_chunk, self.win))
        return cols

    def scatter(self, dcols: np.ndarray, out: np.ndarray) -> np.ndarray:
        """col2im of dcols (m, C, KH, KW, H_out, W_out) written into out (m, C, H, W)."""
        m = dcols.shape[0]
        target = self.pad[:m] if self.padded else out
        target.fill(0)
        _scatter_add(dcols, target, self.win)
        if self.padded:
            out[...] = self._interior(m)
        return out


def _scatter_add(cols: np.ndarray, x_pad: np.ndarray, win: Window) -> None:
    """``x_pad += col2im(cols)``, one strided add per kernel offset (p, q)."""
    h_span = win.sh * (win.h_out - 1) + 1
    w_span = win.sw * (win.w_out - 1) + 1
    for p in range(win.kh):
        r0 = p * win.dh
        for q in range(win.kw):
            c0 = q * win.dw
            x_pad[:, :, r0:r0 + h_span:win.sh, c0:c0 + w_span:win.sw] += cols[:, :, p, q]
