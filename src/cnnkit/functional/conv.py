"""2-D convolution (cross-correlation, as in every CNN library): im2col + GEMM, or Winograd.

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

A stride-1 conv with filters 3 rows high and enough channels (``winograd.applies``) takes
Winograd's minimal filtering F(4, 3) down the rows instead (:mod:`cnnkit.functional.winograd`):
half the multiply-adds, in the same chunks and on the same threads. im2col + GEMM stays the
path for everything else and the readable reference of the fast kernels.

A grouped conv (``groups`` = G > 1) runs that ungrouped path once per group on channel slices
of x, w, dout and the outputs (views, no copies); G = 1 calls it once on the whole arrays.
"""

from __future__ import annotations

import numpy as np

from .. import parallel
from ..checks import as_float_array, check_count, check_dout, check_ndim, check_param, match_dtype
from ..geometry import window_geometry
from . import winograd
from .im2col import ColumnBuffers, batch_chunks, row_length
from .norm import feature_sum

__all__ = ["conv2d_forward", "conv2d_backward"]


def check_conv_args(x, w, b, stride, pad, dilation, strict, groups=1):
    """Validate conv2d's arguments (shared with the naive version); return x, w, b, geometry,
    groups."""
    x = as_float_array(x, "conv2d x")
    w = as_float_array(w, "conv2d w")
    check_ndim(x, 4, "conv2d x (N, C, H, W)")
    check_ndim(w, 4, "conv2d w (F, C // groups, KH, KW)")
    if min(x.shape) < 1 or min(w.shape) < 1:
        raise ValueError(f"conv2d: every size must be positive, got x {x.shape} and w {w.shape}")
    groups = check_count(groups, "conv2d groups")
    c, f = x.shape[1], w.shape[0]
    if groups == 1 and w.shape[1] != c:
        raise ValueError(f"conv2d: x has C = {c} channels but w of shape {w.shape} "
                         f"expects {w.shape[1]}")
    if groups != 1:
        for count, what in ((c, "input channels C"), (f, "filters F")):
            if count % groups:
                raise ValueError(f"conv2d: groups = {groups} must divide the {what} = {count} "
                                 f"({count} % {groups} = {count % groups})")
        if w.shape[1] * groups != c:
            raise ValueError(f"conv2d: x has C = {c} channels but w of shape {w.shape} with "
                             f"groups = {groups} expects {w.shape[1]} * {groups} = "
                             f"{w.shape[1] * groups} (w must be (F, C // groups, KH, KW))")
    w = match_dtype(w, x)
    if b is not None:
        b = check_param(b, (f,), x, "conv2d b")
    win = window_geometry(x.shape, w.shape[2:], stride, pad, dilation, "conv2d", strict)
    return x, w, b, win, groups


def group_slices(c: int, f: int, groups: int):
    """``(channels, filters)`` slice pairs of the G groups: group g convolves input channels
    [g*C/G, (g+1)*C/G) with filters [g*F/G, (g+1)*F/G)."""
    cg, fg = c // groups, f // groups
    return [(slice(g * cg, (g + 1) * cg), slice(g * fg, (g + 1) * fg)) for g in range(groups)]


def conv2d_forward(x, w, b=None, stride=1, pad=0, dilation=1, *, groups=1, strict=True):
    """Convolve x with F filters: each output is a dot product of a filter with one window.

        out[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * x_pad[n, c, i*SH + p*DH, j*SW + q*DW]
        H_out = (H - DH*(KH-1) - 1 + 2*PH) / SH + 1   (the notes' (W - F + 2P)/S + 1, D = 1)

    Every window is laid out as a column (im2col), so the layer is the product
    ``w (F, K) @ cols (K, L)`` for each sample; see the module docstring for the chunking, and
    for the 3-row stride-1 convs that take Winograd's F(4, 3) instead.

    With ``groups`` = G > 1 the channels split into G independent convolutions (Krizhevsky et
    al. 2012's two-GPU AlexNet): group g convolves input channels [g*C/G, (g+1)*C/G) with filters
    [g*F/G, (g+1)*F/G), and the G outputs are stacked along the channels,

        out[n, f, i, j] = b[f] + sum_{c < C/G, p, q} w[f, c, p, q] * x_pad[n, g*C/G + c, ...]
                          with g = f // (F/G)

    so w is (F, C/G, KH, KW), as in PyTorch; each group costs 1/G of the ungrouped conv.

    Parameters
    ----------
    x : (N, C, H, W) array
    w : (F, C // groups, KH, KW) array (computed in x's dtype)
    b : (F,) array or None
    stride, pad, dilation : int or (h, w) pair; pad >= 0 zeros on each side, dilation 1 = none
    groups : int >= 1 that divides both C and F (1, the default, is the ordinary conv)
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
        If x or w is not 4-D, groups does not divide C or F, w's channel count is not C/groups,
        b is not (F,), a size is not positive, or the size rule does not give a positive integer.
    TypeError
        If an array is not floating point, or a size is not an int.

    Examples
    --------
    >>> import numpy as np
    >>> out, _ = conv2d_forward(np.zeros((2, 3, 32, 32)), np.zeros((16, 3, 5, 5)), None, pad=2)
    >>> out.shape
    (2, 16, 32, 32)
    >>> out, _ = conv2d_forward(np.zeros((1, 96, 27, 27)), np.zeros((256, 48, 5, 5)), None,
    ...                         pad=2, groups=2)             # AlexNet's conv2
    >>> out.shape
    (1, 256, 27, 27)
    """
    x, w, b, win, groups = check_conv_args(x, w, b, stride, pad, dilation, strict, groups)
    n, f = x.shape[0], w.shape[0]
    out = np.empty((n, f, win.h_out * win.w_out), x.dtype)                 # (N, F, L)
    if groups == 1:
        _forward_into(out, x, w, b, win)
    else:
        for cs, fs in group_slices(x.shape[1], f, groups):                 # views, no copies
            _forward_into(out[:, fs], x[:, cs], w[fs], None if b is None else b[fs], win)
    return out.reshape(n, f, win.h_out, win.w_out), (x, w, b is not None, win, groups)


def _forward_into(out, x, w, b, win) -> None:
    """The ungrouped conv of x (N, C, H, W) with w (F, C, KH, KW) and b (F,) or None, written
    into out (N, F, L): the whole output, or one group's channel slice of it. Each batch chunk
    is one task of the worker pool (:mod:`cnnkit.parallel`) and writes its own rows of out.
    Pointwise convs multiply x itself, 3-row stride-1 ones may take Winograd's path."""
    n, c = x.shape[:2]
    f = w.shape[0]
    w2 = w.reshape(f, -1)                                                  # (F, K)
    if _is_pointwise(win):
        x3 = x.reshape(n, c, -1)                                           # (N, C, L) is cols
        chunks = list(batch_chunks(n, x3[0].nbytes))

        def pointwise(i, slot):
            lo, hi = chunks[i]
            np.matmul(w2, x3[lo:hi], out=out[lo:hi])                       # (m, F, L)
            if b is not None:
                out[lo:hi] += b[:, None]

        parallel.for_each(len(chunks), pointwise, serial=_small(x, w, win))
        return
    if winograd.applies(x.shape, w.shape, win, x.dtype):
        winograd.forward_into(out, x, w, b, win, serial=_small(x, w, win))
        return
    plan = ColumnPlan(x, w2.shape[1], win)
    out4 = out.reshape(n, f, win.h_out, win.w_out)                         # a view: L splits

    def chunk(i, slot):
        lo, hi = plan.chunks[i]
        bufs = plan.buffers(slot)
        cols = bufs.gather(x[lo:hi])                                       # (K, m*P), in cache
        if hi - lo == 1 and not bufs.wide:
            np.matmul(w2, cols, out=out[lo])                               # (F, L)
        else:
            bufs.to_output(w2 @ cols, out4[lo:hi])                         # (F, m*P) -> (m, F, ..)
        if b is not None:
            out[lo:hi] += b[:, None]                                       # while it is in cache

    parallel.for_each(len(plan.chunks), chunk, serial=_small(x, w, win))


def conv2d_backward(dout, cache, *, input_grad=True):
    """Gradients of conv2d: dx (N, C, H, W) (None if ``input_grad`` is False), dw
    (F, C // groups, KH, KW), db (F,) or None.

        db[f] = sum_{n, i, j} dout[n, f, i, j]
        dw = sum_n dout[n] (F, L) @ cols[n].T (L, K)        (input windows correlated with dout)
        dx = col2im(w.T (K, F) @ dout[n] (F, L))            for each sample n

    col2im adds every window's gradient back onto the pixels it read, which equals correlating
    the zero-inserted, zero-padded dout with the 180-degree-rotated filter (the notes'
    derivation, written out in ``cnnkit.reference.conv2d_backward``). A grouped conv applies
    these per group: group g's filters get dw from its input channels, and its input channels
    get dx from its filters only. A network's first layer passes ``input_grad=False``: nothing
    needs the gradient of the data, and for a 3x3 conv dx costs as much as dw. The convs that
    take Winograd's path forward take it backward too, with the same formulas' adjoints.
    """
    x, w, has_bias, win, groups = cache
    n, f = x.shape[0], w.shape[0]
    dout = check_dout(dout, (n, f, win.h_out, win.w_out), "conv2d_backward")
    dout = dout.astype(x.dtype, copy=False)
    # db[f] = sum_{n, i, j} dout[n, f, i, j]: batch norm's two-phase feature sum on (N, F, L)
    db = feature_sum(dout.reshape(n, f, -1)) if has_bias else None         # (F,)
    dx = np.empty(x.shape, x.dtype) if input_grad else None                # C order (N, C, H, W)
    if groups == 1:
        return dx, _grads_into(dx, x, w, dout, win), db
    dw = np.empty_like(w)
    for cs, fs in group_slices(x.shape[1], f, groups):
        dw[fs] = _grads_into(None if dx is None else dx[:, cs], x[:, cs], w[fs], dout[:, fs],
                             win)
    return dx, dw, db


def _grads_into(dx, x, w, dout, win):
    """The ungrouped conv's gradients: returns dw (F, C, KH, KW) and writes dx (N, C, H, W) (the
    whole gradient or one group's channel slice of a C-ordered one; None skips it).

    Each batch chunk is one task: it rebuilds its columns, writes its rows of dx and returns its
    term of dw, and :func:`cnnkit.parallel.ordered_sum` adds the terms in chunk order."""
    n, c = x.shape[:2]
    f = w.shape[0]
    n_pos = win.h_out * win.w_out
    w2 = w.reshape(f, -1)                                                  # (F, K)
    if _is_pointwise(win):
        d2 = dout.reshape(n, f, n_pos)                                     # (N, F, L)
        x3 = x.reshape(n, c, n_pos)                                        # (N, C, L)
        # a view, as dx's H and W axes are contiguous (C order), so matmul writes into dx
        dx3 = None if dx is None else dx.reshape(n, c, n_pos)              # (N, C, L)
        chunks = list(batch_chunks(n, x3[0].nbytes))

        def pointwise(i, slot):
            lo, hi = chunks[i]
            if dx3 is not None:
                np.matmul(w2.T, d2[lo:hi], out=dx3[lo:hi])                 # (m, C, L)
            return np.matmul(d2[lo:hi], x3[lo:hi].transpose(0, 2, 1)).sum(axis=0)  # (F, C)

        return parallel.ordered_sum(len(chunks), pointwise,
                                    serial=_small(x, w, win)).reshape(w.shape)
    if winograd.applies(x.shape, w.shape, win, x.dtype):
        return winograd.grads_into(dx, x, w, dout, win, serial=_small(x, w, win))
    # dw is accumulated transposed: BLAS ran cols (K, m*P) @ d.T (m*P, F) 1.3x faster than
    # d (F, m*P) @ cols.T (m*P, K) at the benchmark's 3x3 shape.
    plan = ColumnPlan(x, w2.shape[1], win)
    terms = [None] * parallel.get_num_threads()                            # (K, F) per slot

    def chunk(i, slot):
        lo, hi = plan.chunks[i]
        bufs = plan.buffers(slot)
        cols = bufs.gather(x[lo:hi])                                       # (K, m*P), rebuilt
        d_chunk = bufs.dout_matrix(dout[lo:hi])                            # (F, m*P)
        if terms[slot] is None:
            terms[slot] = np.empty((w2.shape[1], f), x.dtype)
        np.matmul(cols, d_chunk.T, out=terms[slot])                        # (K, F)
        if dx is not None:
            bufs.input_gradient(w, d_chunk, dx[lo:hi])                     # col2im(w.T @ d)
        return terms[slot]

    dw_t = parallel.ordered_sum(len(plan.chunks), chunk, serial=_small(x, w, win))
    return dw_t.T.reshape(w.shape)


#: Multiply-adds (x2) of a conv's forward below which it runs on the calling thread. The MNIST
#: net's convs (15 and 31 MFLOP, under a millisecond) ran no faster on two threads of the 2-core
#: machine than on one: their chunks' data moved between the cores' caches and each parallel
#: call waits for a thread to wake. The CIFAR-size net's (151-226 MFLOP) ran 1.6-1.9x faster.
PARALLEL_FLOPS = 1 << 26


def _small(x, w, win) -> bool:
    """Whether a conv of x with w is too small to split across threads (``PARALLEL_FLOPS``)."""
    flops = 2 * x.shape[0] * w.shape[0] * w[0].size * win.h_out * win.w_out
    return flops < PARALLEL_FLOPS


def _is_pointwise(win) -> bool:
    """A 1x1 kernel, stride 1, no padding: every pixel is its own window."""
    return (win.kh, win.kw, win.sh, win.sw, win.ph, win.pw) == (1, 1, 1, 1, 0, 0)


def _use_wide(win) -> bool:
    """A stride-1 conv uses the wide column layout (see ``ColumnBuffers``) unless its extra
    columns would add more than half to the GEMMs: at 8x8 and 3x3 (a quarter more) and at 10x10
    and 5x5 (40% more) the wide layout still measured faster than the tight one."""
    return (win.sh, win.sw) == (1, 1) and 2 * (win.kw - 1) * win.dw <= win.w_out


class ColumnPlan:
    """Chunks of the batch whose (K, m*P) columns fit the cache budget (the same for any thread
    count), and each thread slot's own column buffers, made on its first chunk."""

    def __init__(self, x, k: int, win):
        self.wide = _use_wide(win)
        n_pos = win.h_out * row_length(win, self.wide)
        self.chunks = list(batch_chunks(x.shape[0], k * n_pos * x.itemsize))
        self.size = max(hi - lo for lo, hi in self.chunks)                 # buffers' samples
        self.x_shape, self.win, self.dtype = x.shape, win, x.dtype
        self._buffers = {}

    def buffers(self, slot: int) -> ColumnBuffers:
        if slot not in self._buffers:
            self._buffers[slot] = ColumnBuffers(self.size, self.x_shape, self.win, self.dtype,
                                                wide=self.wide)
        return self._buffers[slot]
