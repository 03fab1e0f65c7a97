"""Winograd's minimal filtering down the rows: a stride-1 convolution with 3-row filters in
half the multiply-adds of im2col + GEMM.

Letters: N batch, C input channels, F filters, H/W input size, KW kernel width (the kernel is
3 rows high), PH/PW padding, Wp = W + 2*PW the padded width, m output rows per tile,
A = m + 2 input rows per tile, T = ceil(H_out / m) tiles down a feature map, X = T*Wp
positions of one sample, L = S*X positions of a chunk of S samples.

Winograd's F(m, 3) (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks")
computes m outputs of a 3-tap correlation ``y[o] = sum_p g[p] d[o + p]`` from A = m + 2
inputs with A multiplications instead of 3m:

    y = AT @ ((G @ g) * (BT @ d))        AT (m, A), G (A, 3), BT (A, A); see ``transforms``

Here it runs down the rows of the image: a tile is m output rows, ``m*i .. m*i + m - 1``, read
from the A padded input rows ``m*i .. m*i + A - 1``; along a row the KW taps stay an ordinary
im2col of the "wide" layout (a whole padded row per output row; its last KW - 1 positions are
computed and dropped, as in :class:`~cnnkit.functional.im2col.ColumnBuffers`). For each of the
A "frequencies" k:

    V[k, c, (n, i, j)] = sum_a BT[k, a] x_pad[n, c, m*i + a, j]          input transform
    U[k, f, (q, c)]    = sum_p G[k, p] w[f, c, p, q]                      filter transform
    M[k] = U[k] (F, KW*C) @ V3[k] (KW*C, L),  V3[k, (q, c), t] = V[k, c, t + q]
    out[n, f, m*i + o, j] = b[f] + sum_k AT[o, k] M[k, f, (n, i, j)]      output transform

The A GEMMs do A / (3m) of the direct multiply-adds: half at m = 4 (``TILE``). The transforms
are small GEMMs over the frequency axis of arrays laid out (A, C, L), so every NumPy call is a
long contiguous run. The backward applies the adjoints in reverse: the output gradient's rows
become ``dM[k] = sum_o AT[o, k] dout-rows(o)``, then

    dU[k]  = V3[k] (KW*C, L) @ dM[k].T (L, F)      dw[f, c, p, q] = sum_k G[k, p] dU[k, (q, c), f]
    dV3[k] = U[k].T (KW*C, F) @ dM[k] (F, L)       dx = rows of BT.T @ col2im_W(dV3)

Tiles run past H_out where m does not divide it (those rows are computed and dropped), and a
sample's last tile row reads the padding below the image. Why down the rows only, and not in
both directions as F(m x m, 3 x 3): along a row the tiles would interleave the output's columns
m apart, and NumPy moves such strided data at a fraction of the speed of contiguous runs; see
docs/explanation/winograd.md for the measurements.

The batch runs in chunks of S samples whose transformed columns V3 fit the im2col chunk budget
(``CHUNK_BYTES``), each one task of :mod:`cnnkit.parallel`, with per-thread buffers; the plan
depends on the shapes only, and the chunks' dw terms are added in chunk order.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import parallel
from . import im2col

__all__ = ["transforms", "applies", "eligible", "pays", "forward_into", "grads_into",
           "WinogradPlan", "TILE", "POINTS", "MIN_CHANNELS", "MIN_POSITIONS"]

#: Output rows per tile, m of F(m, 3). A tile's A = m + 2 rows of GEMM work give m rows:
#: A/(3m) of im2col's multiply-adds, 0.67 at m = 2, 0.5 at 4, 0.44 at 6, 0.42 at 8. Whole tiles
#: round it up: on 8, 16 and 32 rows m = 6 computes as many rows as m = 4, or more (16 vs 12
#: on 8). The float32 error, largest |error| over the RMS of the output (C = 64 on 32x32, He
#: weights; im2col: 3.0e-6): m = 2 3.1e-6, m = 4 1.4e-5, m = 6 1.6e-5, m = 8 8.7e-5 to 4e-4
#: (by its points), measured on the 2-core Intel Xeon (AVX-512).
TILE = 4

#: The finite interpolation points of F(m, 3), for each m (infinity is always the last).
#: Small integers keep the transforms' entries, and so their rounding, small (Lavin & Gray).
POINTS = {2: (0, 1, -1), 4: (0, 1, -1, 2, -2),
          6: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))}


def _poly(roots) -> list:
    """Coefficients (lowest degree first) of prod_r (x - r), exact."""
    coef = [Fraction(1)]
    for r in roots:
        coef = [(coef[i - 1] if i else 0) - r * (coef[i] if i < len(coef) else 0)
                for i in range(len(coef) + 1)]
    return coef


@lru_cache(maxsize=None)
def transforms(m: int, r: int = 3, points: tuple | None = None):
    """(AT, G, BT) of Winograd's F(m, r), float64 arrays (m, A), (A, r), (A, A), A = m + r - 1:
    ``AT @ ((G @ g) * (BT @ d)) == [sum_p g[p] d[o + p] for o < m]`` for any g (r,), d (A,).

    The Toom-Cook construction (Lavin & Gray 2016, section 4): with A - 1 distinct points
    p_j and the point at infinity, a correlation is the transpose of the polynomial product
    of g and a degree-(m-1) polynomial, which is evaluated at the points, multiplied
    pointwise and interpolated. So

        AT[o, j] = p_j ** o                      (the row at infinity: 1 for o = m-1 only)
        G[j, p]  = p_j ** p / prod_{l != j} (p_j - p_l)       (infinity: g's last tap)
        BT[j]    = coefficients of prod_{l != j} (x - p_l)     (infinity: of prod_l (x - p_l))

    computed exactly in fractions. For m = 4 and points 0, 1, -1, 2, -2 these are the
    paper's matrices.
    """
    points = POINTS[m] if points is None else points
    pts = [Fraction(p) for p in points]
    size = m + r - 1
    if len(pts) != size - 1 or len(set(pts)) != len(pts):
        raise ValueError(f"F({m}, {r}) needs {size - 1} distinct points, got {points}")
    at = [[p ** o for p in pts] + [Fraction(int(o == m - 1))] for o in range(m)]
    g, bt = [], []
    for j, p in enumerate(pts):
        others = pts[:j] + pts[j + 1:]
        scale = Fraction(1)
        for q in others:
            scale *= p - q
        g.append([p ** k / scale for k in range(r)])
        bt.append(_poly(others) + [Fraction(0)])
    g.append([Fraction(0)] * (r - 1) + [Fraction(1)])
    bt.append(_poly(pts))
    return tuple(np.array([[float(v) for v in row] for row in mat]) for mat in (at, g, bt))


#: The dispatch rule: the path pays where C*F/(C+F) (the channels' harmonic half: the GEMMs'
#: work grows as C*F, the transforms' as C + F) is at least this. Measured on the 2-core Intel
#: Xeon (AVX-512), float32 forward+backward against im2col + GEMM, 1 thread, on 33 shapes from
#: 16->16 to 128->128 channels on 8x8, 16x16 and 32x32 maps: 0.70-0.93x wherever
#: C*F/(C+F) >= 16 (32->32 0.72-0.84x, 24->48 0.86-0.93x), 0.87-1.33x below it (16->16 and
#: 16->32 on 8x8: 1.33x; 16->64 on 32x32: 1.06x).
MIN_CHANNELS = 16

#: ... and where the batch has at least this many output positions N*H_out*W_out: a call's fixed
#: cost (the filter transform, the buffers) is paid back by the GEMM work saved. Measured as
#: above on 32->64, 64->64 and 128->128 channels, N = 1-32 samples of 8x8 to 32x32: forward
#: and backward 1.1-2.0x im2col's time at 64-256 positions, 0.85-1.04x at 512, 0.71-1.10x at
#: 1024 and 0.67-0.76x at 2048 (batch-1 inference on 32x32 maps stays on im2col).
MIN_POSITIONS = 2048


def applies(x_shape, w_shape, win, dtype=np.float32) -> bool:
    """Whether conv2d takes this path: it can (``eligible``) and it is faster (``pays``)."""
    return eligible(w_shape, win, dtype) and pays(x_shape, w_shape, win)


def eligible(w_shape, win, dtype=np.float32) -> bool:
    """Filters 3 rows high, stride 1 and no dilation: what F(m, 3) down the rows computes (any
    filter width, any padding); float32 or float64 (F(4, 3) rounds 4-5x as much as im2col, too
    much for float16)."""
    return (w_shape[2] == 3 and (win.sh, win.sw, win.dh, win.dw) == (1, 1, 1, 1)
            and np.dtype(dtype) in (np.float32, np.float64))


def pays(x_shape, w_shape, win) -> bool:
    """Whether this path measured faster than im2col + GEMM: ``C*F/(C+F) >= MIN_CHANNELS`` and
    ``N*H_out*W_out >= MIN_POSITIONS`` (float32 and float64 alike: float64 measured 0.72-0.89x
    of im2col where float32 did 0.73-1.0x)."""
    c, f = x_shape[1], w_shape[0]
    return (c * f >= MIN_CHANNELS * (c + f)
            and x_shape[0] * win.h_out * win.w_out >= MIN_POSITIONS)


class WinogradPlan:
    """The shapes of one Winograd conv call: tiles, chunks of the batch (the same for any thread
    count) and which rows of x each tile row reads."""

    def __init__(self, x_shape, w_shape, win, dtype, m: int = TILE):
        n, c, h, w = x_shape
        f, _, kh, kw = w_shape
        at, g, bt = transforms(m, kh)
        self.m, self.size = m, m + kh - 1                     # m outputs from A inputs
        self.dtype = np.dtype(dtype)
        self.at, self.bt, self.g = at.astype(dtype), bt.astype(dtype), g
        self.at_bias = np.hstack([self.at, np.ones((m, 1), dtype)])  # (m, A + 1)
        self.c, self.f, self.h, self.w, self.kw, self.win = c, f, h, w, kw, win
        self.tiles = -(-win.h_out // m)                       # T
        self.wp = w + 2 * win.pw                              # Wp = W_out + KW - 1
        self.positions = self.tiles * self.wp                 # X, one sample
        v3_bytes = self.size * c * kw * self.positions * self.dtype.itemsize
        self.chunks = list(im2col.batch_chunks(n, v3_bytes))
        self.samples = max(hi - lo for lo, hi in self.chunks)  # S, the buffers' samples

    def filters(self, w: np.ndarray) -> np.ndarray:
        """U (A, F, KW*C), ``U[k, f, (q, c)] = sum_p G[k, p] w[f, c, p, q]``: one GEMM
        G (A, 3) @ w's rows (3, F*KW*C), in w's dtype (float32 adds ~1e-7 of U, next to the
        transforms' 1e-5 of the output)."""
        rows = w.transpose(2, 0, 3, 1).reshape(len(self.g[0]), -1)
        return (self.g.astype(self.dtype) @ rows).reshape(self.size, self.f, -1)

    def filter_gradient(self, du: np.ndarray) -> np.ndarray:
        """dw (F, C, 3, KW) from dU (A, KW*C, F): the filter transform's adjoint
        ``dw[f, c, p, q] = sum_k G[k, p] dU[k, (q, c), f]``."""
        dw = self.g.T.astype(self.dtype) @ du.reshape(self.size, -1)   # (3, KW*C*F)
        return np.ascontiguousarray(dw.reshape(-1, self.kw, self.c, self.f).transpose(3, 2, 0, 1))

    def scratch(self):
        """``buffers(slot)``: each thread slot's WinogradBuffers, made on its first chunk. They
        live as long as the function does (the caller's call), not the plan: a buffer refers to
        its plan, and a plan that held its buffers would wait for the cycle collector."""
        slots = {}

        def buffers(slot: int) -> WinogradBuffers:
            if slot not in slots:
                slots[slot] = WinogradBuffers(self)
            return slots[slot]
        return buffers

    # ------------------------------------------------------------------ rows by tile offset
    def input_rows(self, x: np.ndarray, lo: int = 0, hi: int | None = None) -> list:
        """``[(a0, a1, i0, i1, view)]``: x (N, C, H, W)'s rows that tile rows i0:i1 read at
        offsets a0:a1, ``view[a - a0, c, n, i - i0] = x[n, c, m*i + a - PH]`` (a view
        (a1 - a0, C, N, i1 - i0, W)). Offsets lo:hi only; the tiles at the border read fewer
        rows of x, the others being padding."""
        hi = self.size if hi is None else hi
        m, ph, blocks = self.m, self.win.ph, []
        for i in range(self.tiles):
            a0, a1 = max(lo, ph - m * i), min(hi, self.h + ph - m * i)
            if a1 <= a0:
                continue
            if blocks and blocks[-1][:2] == (a0, a1) and blocks[-1][3] == i:
                blocks[-1][3] = i + 1
            else:
                blocks.append([a0, a1, i, i + 1])
        return [(a0, a1, i0, i1, _tile_rows(x[:, :, m * i0 + a0 - ph:], m, a1 - a0, i1 - i0))
                for a0, a1, i0, i1 in blocks]

    def output_rows(self, y: np.ndarray) -> list:
        """``[(o1, i0, i1, view)]``: y (N, F, H_out, W_out)'s rows by tile phase,
        ``view[o, f, n, i - i0] = y[n, f, m*i + o]`` (a view (o1, F, N, i1 - i0, W_out)): the
        whole tiles, then a last one cut at H_out."""
        full, rest = divmod(self.win.h_out, self.m)
        views = [(self.m, 0, full, _tile_rows(y, self.m, self.m, full))] if full else []
        if rest:
            views.append((rest, full, full + 1, _tile_rows(y[:, :, self.m * full:], self.m,
                                                             rest, 1)))
        return views


def _tile_rows(a: np.ndarray, m: int, count: int, tiles: int) -> np.ndarray:
    """View (count, C, N, tiles, W) of a (N, C, R, W): ``[o, c, n, i] = a[n, c, m*i + o]``, the
    rows of tile i at offset o (the caller keeps m*(tiles - 1) + count <= R)."""
    sn, sc, sh, sw = a.strides
    return as_strided(a, (count, a.shape[1], a.shape[0], tiles, a.shape[3]),
                      (sh, sc, sn, m * sh, sw), writeable=a.flags.writeable)


class WinogradBuffers:
    """One thread's scratch for chunks of up to S samples.

    Positions are laid out (n, i, j) in rows of L = S*X (plus KW - 1 of slack for the shifted
    reads along W); a chunk of fewer samples uses the front of each row. The buffers that hold
    padding or dropped positions (``d`` and ``e``) are zero there and stay so: every chunk
    writes the same positions.
    """

    def __init__(self, plan: WinogradPlan):
        p = self.plan = plan
        size, dtype = p.size, p.dtype
        self.span = span = p.samples * p.positions                  # L
        self.d = np.zeros((size, p.c, span + p.kw - 1), dtype)    # x's rows by tile offset a
        self.v = np.zeros_like(self.d)                            # V, or dV
        # V3 (or dV3) by tap q, then channel: rows as long as V's, whose last KW - 1 positions
        # are zero (``columns`` clears them), where the col2im's shifted reads cross rows
        self.v3 = np.zeros((size, p.kw) + self.v.shape[1:], dtype)
        sk, sc, st = self.v.strides
        self.shifted = as_strided(self.v, (size, p.kw, p.c, span), (sk, st, sc, st),
                                  writeable=False)                # [k, q, c, t] = V[k, c, t + q]
        self.d_grid = self._grid(self.d)[..., p.win.pw:p.win.pw + p.w]  # (A, C, S, T, W)
        self.prod = self.y = self.e = self.dd = None              # M or dM, out rows, dD

    def _spare(self, shape) -> np.ndarray:
        """An array of ``shape`` in V3's memory where it fits (V3 is spent by then), else a new
        one: the chunk's working set stays near L2's size."""
        flat = self.v3.reshape(-1)
        size = int(np.prod(shape))
        return flat[:size].reshape(shape) if size <= flat.size else np.empty(shape, flat.dtype)

    def _grid(self, rows: np.ndarray) -> np.ndarray:
        """(A', C', S, T, Wp) view of the first L positions of rows (A', C', L + ...)."""
        p = self.plan
        return rows[:, :, :self.span].reshape(rows.shape[0], rows.shape[1], p.samples,
                                              p.tiles, p.wp)

    def _columns(self, n_pos: int) -> np.ndarray:
        """(A, KW*C, n_pos) view of V3 (or dV3)."""
        p = self.plan
        return self.v3.reshape(p.size, p.kw * p.c, -1)[:, :, :n_pos]

    def columns(self, reads: list, lo: int, hi: int) -> np.ndarray:
        """V3 (A, KW*C, S'*X) of samples lo:hi: their rows by tile offset (``reads``, from
        ``WinogradPlan.input_rows``) into ``d``, the input transform ``V = BT @ d``, and V's
        wide im2col along W, ``V3[k, (q, c), t] = V[k, c, t + q]``."""
        p, s = self.plan, hi - lo
        for a0, a1, i0, i1, rows in reads:
            self.d_grid[a0:a1, :, :s, i0:i1] = rows[:, :, lo:hi]
        np.matmul(p.bt, self.d.reshape(p.size, -1), out=self.v.reshape(p.size, -1))
        np.copyto(self.v3[..., :self.span], self.shifted)
        self.v3[..., self.span:] = 0            # the rows' ends, which _spare may have lent
        return self._columns(s * p.positions)

    def _phases(self, rows: np.ndarray, views: list, lo: int, hi: int, to_rows: bool) -> None:
        """Copy between rows (m, F, L) and samples lo:hi of an output-sized array's tile phase
        views (``WinogradPlan.output_rows``): ``rows[o, f, (n, i, j)] <-> y[n, f, m*i + o, j]``."""
        grid = self._grid(rows)[:, :, :hi - lo, :, :self.plan.win.w_out]
        for o1, i0, i1, view in views:
            if to_rows:
                grid[:o1, :, :, i0:i1] = view[:, :, lo:hi]
            else:
                view[:, :, lo:hi] = grid[:o1, :, :, i0:i1]

    # ------------------------------------------------------------------ forward
    def forward(self, u, b, reads, outs, lo: int, hi: int) -> None:
        """Samples lo:hi of the output (its tile phase views ``outs``) from the input rows
        ``reads`` and the filters u (A, F, KW*C), plus b. The bias rides in the output
        transform's GEMM: one more row of M, filled with b, and a column of ones in AT."""
        p = self.plan
        n_pos = (hi - lo) * p.positions
        if self.prod is None:
            self.prod = np.zeros((p.size + (b is not None), p.f, self.span), p.dtype)
            if b is not None:
                self.prod[-1] = b[:, None]
            self.y = self._spare((p.m, p.f, self.span))
        np.matmul(u, self.columns(reads, lo, hi), out=self.prod[:p.size, :, :n_pos])
        at = p.at if b is None else p.at_bias
        np.matmul(at, self.prod.reshape(len(self.prod), -1), out=self.y.reshape(p.m, -1))
        self._phases(self.y, outs, lo, hi, to_rows=False)

    # ------------------------------------------------------------------ backward
    def gradients(self, u_t, reads, douts, firsts, overlaps, dx, lo: int, hi: int):
        """This chunk's dU term (A, KW*C, F), and samples lo:hi of dx (N, C, H, W) unless it
        is None (``firsts`` and ``overlaps``: its rows by tile offset, from ``input_rows``).

        dout's rows by tile phase (``douts``) give ``dM[k] = sum_o AT[o, k] dout-rows(o)``;
        then

            dU[k]  = V3[k] (KW*C, L) @ dM[k].T (L, F)
            dV3[k] = u_t[k] (KW*C, F) @ dM[k] (F, L)      (u_t: U transposed)

        dV3's KW copies shifted along W are added back (the wide col2im), ``dD = BT.T @ dV``,
        and dD's tile rows are written onto x's rows at offsets 0..m-1 (each row of x once)
        and added at offsets m..A-1 (rows that the tile above reads too).
        """
        p, s = self.plan, hi - lo
        n_pos = s * p.positions
        if self.e is None:
            self.e = np.zeros((p.m, p.f, self.span), p.dtype)
            self.prod = np.empty((p.size, p.f, self.span), p.dtype)
        self._phases(self.e, douts, lo, hi, to_rows=True)
        np.matmul(p.at.T, self.e.reshape(p.m, -1), out=self.prod.reshape(p.size, -1))
        dm = self.prod[:, :, :n_pos]                              # (A, F, S'*X)
        term = np.matmul(self.columns(reads, lo, hi), dm.transpose(0, 2, 1))
        if dx is None:
            return term
        np.matmul(u_t, dm, out=self._columns(n_pos))              # V3 is spent: dV3 there
        # dV[k, c, t] = sum_q dV3[k, q, c, t - q], one add per tap over A rows of C*(L+KW-1):
        # t - q < 0 reads the zero end of the row before (or nothing, at a row's start)
        dv3 = self.v3.reshape(p.size, p.kw, -1)                   # (A, KW, C*(L + KW - 1))
        dv = self.v.reshape(p.size, -1)                           # (A, C*(L + KW - 1))
        if p.kw == 1:
            dv[...] = dv3[:, 0]
        else:
            dv[:, 0] = dv3[:, 0, 0]
            np.add(dv3[:, 0, 1:], dv3[:, 1, :-1], out=dv[:, 1:])
        for q in range(2, p.kw):
            dv[:, q:] += dv3[:, q, :-q]
        if self.dd is None:
            self.dd = self._spare(self.d.shape)                   # dV3 is spent: dD there
        np.matmul(p.bt.T, self.v.reshape(p.size, -1), out=self.dd.reshape(p.size, -1))
        dd = self._grid(self.dd)[:, :, :s, :, p.win.pw:p.win.pw + p.w]  # (A, C, S', T, W)
        bottom = p.m * p.tiles - p.win.ph                         # rows from here: overlaps only
        if bottom < p.h:
            dx[lo:hi, :, bottom:] = 0
        for a0, a1, i0, i1, rows in firsts:
            rows[:, :, lo:hi] = dd[a0:a1, :, :, i0:i1]
        for a0, a1, i0, i1, rows in overlaps:
            rows[:, :, lo:hi] += dd[a0:a1, :, :, i0:i1]
        return term


def forward_into(out, x, w, b, win, serial: bool) -> None:
    """The Winograd conv of x (N, C, H, W) with w (F, C, 3, KW) and b (F,) or None, written
    into out (N, F, H_out*W_out). Each batch chunk is one task of the worker pool."""
    plan = WinogradPlan(x.shape, w.shape, win, x.dtype)
    u = plan.filters(w)                                           # (A, F, KW*C)
    reads = plan.input_rows(x)
    outs = plan.output_rows(out.reshape(out.shape[0], plan.f, win.h_out, win.w_out))
    buffers = plan.scratch()

    def chunk(i, slot):
        buffers(slot).forward(u, b, reads, outs, *plan.chunks[i])

    parallel.for_each(len(plan.chunks), chunk, serial=serial)


def grads_into(dx, x, w, dout, win, serial: bool) -> np.ndarray:
    """The Winograd conv's gradients: returns dw (F, C, 3, KW) and writes dx (N, C, H, W) (None
    skips it). Each chunk returns its term of dU, added in chunk order."""
    plan = WinogradPlan(x.shape, w.shape, win, x.dtype)
    u_t = np.ascontiguousarray(plan.filters(w).transpose(0, 2, 1))   # (A, KW*C, F)
    reads, douts = plan.input_rows(x), plan.output_rows(dout)
    firsts = overlaps = None
    if dx is not None:
        firsts, overlaps = plan.input_rows(dx, 0, plan.m), plan.input_rows(dx, plan.m)
    buffers = plan.scratch()

    def chunk(i, slot):
        return buffers(slot).gradients(u_t, reads, douts, firsts, overlaps, dx,
                                            *plan.chunks[i])

    du = parallel.ordered_sum(len(plan.chunks), chunk, serial=serial)
    return plan.filter_gradient(du)
