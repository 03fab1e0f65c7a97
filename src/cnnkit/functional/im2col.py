"""im2col by strided windows, and its adjoint col2im by strided adds.

``im2col`` / ``col2im`` serve pooling and the locally connected layer; ``ColumnBuffers`` is the
convolution's chunked, cache-sized version of the same two maps. ``win`` is the
:class:`~cnnkit.geometry.Window` geometry from ``window_geometry``.

Letters: N batch, C channels, H/W input size, Hp/Wp padded size, KH/KW kernel,
H_out/W_out output size, S stride, P padding, D dilation.

    cols[n, c, p, q, i, j] = x_pad[n, c, i*SH + p*DH, j*SW + q*DW]

is a *view* of the padded input (no copy): the window position (i, j) and the offset (p, q)
inside the window are just two more pairs of strides over the same memory.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..geometry import Window
from ..parallel import split

#: Bytes of im2col columns the conv builds at a time. One sample's columns of a 3x3 conv with 32
#: channels on 32x32 are 1.2 MB; keeping the working set near a core's L2 (1 MB here) made that
#: conv's forward 1.25x and its backward 1.8x faster than one (N, K, L) matrix for the whole
#: batch, which streams the columns through main memory twice.
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


def batch_chunks(n: int, sample_bytes: int, budget: int | None = None) -> list[tuple[int, int]]:
    """``(lo, hi)`` slices of a batch of n samples, each at most ``budget`` bytes of columns
    (default ``CHUNK_BYTES``), and at least one sample however large its columns are. The plan
    depends on the shapes alone, never on the thread count (see :mod:`cnnkit.parallel`)."""
    return split(n, sample_bytes, CHUNK_BYTES if budget is None else budget)


def row_length(win: Window, wide: bool) -> int:
    """Column positions per output row: W_out, or in the wide layout the padded width
    Wp = W_out + (KW-1)*DW (stride 1)."""
    return win.w_out + (win.kw - 1) * win.dw if wide else win.w_out


class ColumnBuffers:
    """Reusable im2col / col2im scratch for one kernel call over chunks of at most ``m`` samples.

    ``gather(x_chunk)`` returns the chunk's columns as one (K, m*P) matrix, K = C*KH*KW and P
    positions per sample, so that a layer's GEMM over a chunk is one call with m*P columns (small
    feature maps give BLAS too few columns per sample to run at speed).
    ``input_gradient(w, d, out)`` is the conv's dx for the chunk, col2im of ``w.T @ d``. Both work
    in padded buffers whose border stays zero between chunks, so no (N, C, H+2P, W+2P) copy of
    the batch is made.

    Two layouts of the positions:

    - tight, P = H_out*W_out: exactly the output positions (any stride).
    - wide, P = H_out*Wp (stride 1 only; Wp = W + 2*PW): every output row is computed across
      the whole padded width, and the (KW-1)*DW extra columns are dropped afterwards. Then the
      window offset (p, q) of all positions of one channel is *one contiguous run* of the flat
      padded plane, starting at ``p*DH*Wp + q*DW``; im2col and col2im become KH*KW long copies
      and adds instead of KH*KW*H_out runs of W_out elements, which NumPy iterates slowly when
      W_out is 8 or 16. The price is (KW-1)*DW/W_out more GEMM columns.
    """

    def __init__(self, m: int, x_shape: tuple, win: Window, dtype, wide: bool = False):
        _, c, h, w = x_shape
        self.win, self.c, self.h, self.w = win, c, h, w
        self.hp, self.wp = h + 2 * win.ph, w + 2 * win.pw
        if wide and (win.sh, win.sw) != (1, 1):
            raise ValueError("the wide column layout needs stride 1")
        self.wide = wide
        self.row = row_length(win, wide)                           # positions per output row
        self.n_pos = win.h_out * self.row                          # P, positions per sample
        if wide:
            # A flat plane per (sample, channel), with slack for the last row's extra columns.
            self.plane = self.hp * self.wp + (win.kw - 1) * win.dw
            self.pad = np.zeros((m, c, self.plane), dtype)
        elif win.ph or win.pw:
            self.pad = np.zeros((m, c, self.hp, self.wp), dtype)
        else:
            self.pad = None
        self.cols = np.empty(c * win.kh * win.kw * m * self.n_pos, dtype)  # flat: any m <= max
        self.grad_pad = self.dout = self.dx_flat = None                  # on first use
        self.dx_rows = {}                     # per chunk size m: rows whose tails stay zero

    # ------------------------------------------------------------------ padded input
    def _interior(self, buf: np.ndarray) -> np.ndarray:
        """(m, C, H, W) view of the unpadded pixels in a padded buffer (or its first m rows)."""
        if self.wide:
            buf = buf[:, :, :self.hp * self.wp].reshape(len(buf), self.c, self.hp, self.wp)
        win = self.win
        return buf[:, :, win.ph:win.ph + self.h, win.pw:win.pw + self.w]

    def _cols(self, m: int) -> np.ndarray:
        """Buffer for m samples' columns, (C, KH, KW, m, P), contiguous (the front of the flat
        buffer, so chunks of any size up to the largest share it)."""
        win = self.win
        return self.cols[:self.c * win.kh * win.kw * m * self.n_pos].reshape(
            self.c, win.kh, win.kw, m, self.n_pos)

    def _runs(self, flat: np.ndarray) -> np.ndarray:
        """Wide layout: (C, KH, KW, m, P) view of the flat planes (m, C, plane); entry
        [c, p, q, i, t] is plane (i, c) at ``p*DH*Wp + q*DW + t``."""
        win, item = self.win, flat.itemsize
        m, c, plane = flat.shape
        return as_strided(flat, shape=(c, win.kh, win.kw, m, self.n_pos),
                          strides=(plane * item, win.dh * self.wp * item, win.dw * item,
                                   c * plane * item, item), writeable=False)

    # ------------------------------------------------------------------ im2col / col2im
    def gather(self, x_chunk: np.ndarray) -> np.ndarray:
        """Columns of x_chunk (m, C, H, W) as (K, m*P):
        ``cols[(c, p, q), (i, r, s)] = x_pad[i, c, r*SH + p*DH, s*SW + q*DW]``."""
        m = x_chunk.shape[0]
        cols = self._cols(m)
        if self.pad is not None:
            self._interior(self.pad[:m])[...] = x_chunk
        if self.wide:
            np.copyto(cols, self._runs(self.pad[:m]))
        else:
            source = x_chunk if self.pad is None else self.pad[:m]
            np.copyto(cols.reshape(cols.shape[:4] + (self.win.h_out, self.row)),
                      window_view(source, self.win).transpose(1, 2, 3, 0, 4, 5))
        return cols.reshape(-1, m * self.n_pos)

    def input_gradient(self, w: np.ndarray, d: np.ndarray, out: np.ndarray) -> np.ndarray:
        """dx of a conv chunk: col2im(w.T @ d) for w (F, C, KH, KW) and d (F, m*P) from
        ``dout_matrix``, written into out (m, C, H, W)."""
        if self.wide:
            return self._wide_input_gradient(w, d, out)
        m, win = out.shape[0], self.win
        dcols = np.matmul(w.reshape(w.shape[0], -1).T, d,                # (K, m*L), reusing
                          out=self._cols(m).reshape(-1, d.shape[1]))     # the columns' buffer
        if self.pad is None:
            target = out
        else:
            # A buffer of its own: gather relies on the input buffer's border staying padding.
            if self.grad_pad is None:
                self.grad_pad = np.empty_like(self.pad)
            target = self.grad_pad[:m]
        target.fill(0)
        windows = dcols.reshape(self.c, win.kh, win.kw, m, win.h_out, win.w_out)
        _scatter_add(windows.transpose(3, 0, 1, 2, 4, 5), target, win)
        if self.pad is not None:
            out[...] = self._interior(target)
        return out

    def _wide_input_gradient(self, w, d, out):
        """The wide layout's col2im as KH*KW one-dimensional adds.

        Each sample's product ``w[:, :, p, q].T @ d`` (C, P) is written into a row of length
        ``plane`` (its tail stays zero), rows ordered (p, q, c, sample). The block of offset
        (p, q) is then one contiguous run (C, m, plane), and so is its target, the gradient's
        planes (C, m, plane) shifted by ``p*DH*Wp + q*DW``: a pixel's gradient spills from the
        end of one plane into the next only from the zero tail. NumPy adds such a run 4x faster
        than the same numbers as C*m rows of P.
        """
        m, win, c = out.shape[0], self.win, self.c
        f = w.shape[0]
        if m not in self.dx_rows:
            self.dx_rows[m] = np.zeros((win.kh, win.kw, c, m, self.plane), d.dtype)
        rows = self.dx_rows[m].reshape(-1, m, self.plane)             # (KH*KW*C, m, plane)
        w_rows = w.transpose(2, 3, 1, 0).reshape(-1, f)               # (KH*KW*C, F)
        # one stacked product over the m samples (one NumPy call: BLAS per sample, strided
        # operands): (KH*KW*C, F) @ (m, F, P) -> (m, KH*KW*C, P), written into the rows
        np.matmul(w_rows, d.reshape(f, m, self.n_pos).transpose(1, 0, 2),
                  out=rows.transpose(1, 0, 2)[:, :, :self.n_pos])
        run = c * m * self.plane
        if self.dx_flat is None or self.dx_flat.size < run + self.plane:
            self.dx_flat = np.empty(run + self.plane, d.dtype)
        flat = self.dx_flat[:run + self.plane]
        flat.fill(0)
        blocks = self.dx_rows[m].reshape(win.kh, win.kw, run)
        for p in range(win.kh):
            for q in range(win.kw):
                start = p * win.dh * self.wp + q * win.dw
                flat[start:start + run] += blocks[p, q]
        planes = flat[:run].reshape(c, m, self.plane)[:, :, :self.hp * self.wp]
        planes = planes.reshape(c, m, self.hp, self.wp)
        out[...] = planes[:, :, win.ph:win.ph + self.h, win.pw:win.pw + self.w].transpose(
            1, 0, 2, 3)
        return out

    # ------------------------------------------------------------------ GEMM operands
    def to_output(self, prod: np.ndarray, out: np.ndarray) -> None:
        """Write a GEMM result (F, m*P) into out (m, F, H_out, W_out), dropping wide columns."""
        m, f = out.shape[:2]
        prod = prod.reshape(f, m, self.win.h_out, self.row)[..., :self.win.w_out]
        out[...] = prod.transpose(1, 0, 2, 3)

    def dout_matrix(self, d_chunk: np.ndarray) -> np.ndarray:
        """dout of a chunk (m, F, H_out, W_out) as the (F, m*P) GEMM operand (zeros in the
        wide layout's extra columns)."""
        m, f = d_chunk.shape[:2]
        if m == 1 and not self.wide:
            return d_chunk[0].reshape(f, self.n_pos)
        if self.dout is None or self.dout.shape[1] < m:
            self.dout = np.zeros((f, m, self.win.h_out, self.row), d_chunk.dtype)
        target = self.dout[:, :m]
        target[..., :self.win.w_out] = d_chunk.transpose(1, 0, 2, 3)
        return target.reshape(f, m * self.n_pos)


def _scatter_add(cols: np.ndarray, x_pad: np.ndarray, win: Window) -> None:
    """``x_pad += col2im(cols)``, one strided add per kernel offset (p, q)."""
    h_span = win.sh * (win.h_out - 1) + 1
    w_span = win.sw * (win.w_out - 1) + 1
    for p in range(win.kh):
        r0 = p * win.dh
        for q in range(win.kw):
            c0 = q * win.dw
            x_pad[:, :, r0:r0 + h_span:win.sh, c0:c0 + w_span:win.sw] += cols[:, :, p, q]
