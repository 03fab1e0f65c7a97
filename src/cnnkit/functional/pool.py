"""Pooling: max (with its arg-max "switches"), average, L2 and global average.

No kernel loops in Python over N, C or output positions. Average and L2 pooling read every
window through im2col's strided view of the (padded) input and scatter their backwards through
col2im (one strided ``+=`` per kernel offset, summing where windows overlap). Max pooling, whose
per-offset comparisons are many passes, first copies the input into the stride's phase planes,
where every offset of every window is one contiguous run; its backward adds into the phase
planes of dx and copies each into place once, or, when the windows tile the input, writes dx
offset by offset with no adds at all (see ``max_pool2d_forward``).

Every kernel works on chunks of the batch, one task each for cnnkit's threads
(:func:`cnnkit.parallel.over_batch`); samples are independent, so each chunk writes its own rows.

Letters: N batch, C channels, H/W input size, KH/KW kernel, SH/SW stride, PH/PW padding,
H_out/W_out output size, K = KH*KW pixels in one window.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from .. import parallel
from ..checks import as_float_array, check_dout, check_ndim, pair
from ..geometry import GEOMETRY_CACHE_SIZE, Window, window_geometry
from .im2col import col2im, im2col

__all__ = ["max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
           "l2_pool2d_forward", "l2_pool2d_backward", "global_avg_pool2d_forward",
           "global_avg_pool2d_backward"]


def pool_geometry(x, kernel, stride, pad, what: str, strict: bool):
    """Validate a pooling forward's input and hyperparameters; return ``(x, win)``.

    x must be a 4-D floating array with positive sizes; ``stride=None`` means ``kernel``; pad may
    be at most half the window on each axis (PyTorch's rule, which keeps at least one real pixel in
    every window, so a max never comes from padding alone); the size rule must give an integer
    unless ``strict=False``. Shared with :mod:`cnnkit.reference.pool`, so that both accept and
    reject the same arguments.
    """
    x = as_float_array(x, f"{what} x")
    check_ndim(x, 4, f"{what} x (N, C, H, W)")
    if min(x.shape) < 1:
        raise ValueError(f"{what}: every size of x must be positive, got shape {x.shape}")
    kh, kw = pair(kernel, f"{what} kernel")
    ph, pw = pair(pad, f"{what} pad", minimum=0)
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(
            f"{what}: pad must be at most half the kernel on each axis (2P <= K), got "
            f"pad (PH, PW) = ({ph}, {pw}) for kernel (KH, KW) = ({kh}, {kw})")
    win = window_geometry(x.shape, (kh, kw), (kh, kw) if stride is None else stride, (ph, pw), 1,
                          what, strict)
    return x, win


def _window_sum(windows: np.ndarray) -> np.ndarray:
    """Sum of each window: (N, C, KH, KW, H_out, W_out) view -> (N, C, H_out, W_out).

    One strided add per offset (p, q), the mirror of col2im's scatter. Same result as
    ``windows.sum(axis=(2, 3))``, but NumPy reduces over those two strided axes of the view
    element by element, which measured 6-13x slower than these KH*KW whole-slice adds.
    """
    kh, kw = windows.shape[2:4]
    total = windows[:, :, 0, 0].copy()                      # (N, C, H_out, W_out)
    for p in range(kh):
        for q in range(kw):
            if p or q:
                total += windows[:, :, p, q]
    return total


class MaxPoolCache(NamedTuple):
    """What ``max_pool2d_backward`` needs. ``switches`` is public: a deconvnet (the notes' ZFNet
    visualisation) routes activations back through the same arg-max positions."""

    x_shape: tuple
    dtype: np.dtype
    win: Window
    switches: np.ndarray   # (N, C, H_out, W_out) small ints: offset p*KW + q of each maximum
    path: str              # "reshape" (windows tile x) or "strided"; see max_pool2d_forward


def max_pool2d_forward(x, kernel, stride=None, pad=0, *, strict=True):
    """Max pooling over (KH, KW) windows; keeps the arg-max "switches" for the backward.

        out[n, c, i, j] = max_{p < KH, q < KW} x_pad[n, c, i*SH + p, j*SW + q]
        H_out = (H - KH + 2*PH) / SH + 1,  W_out = (W - KW + 2*PW) / SW + 1

    ``x_pad`` is x with PH rows and PW columns of -inf on each side, so padding never wins
    (PyTorch). The switch of a window is the offset ``p*KW + q`` of its maximum; on a tie the
    first maximum in row-major window order wins (``np.argmax``'s rule, and DESIGN.md's), so
    exactly one pixel per window receives the gradient. A NaN in a window is its maximum, as in
    PyTorch.

    The forward visits the KH*KW offsets in row-major order: a strictly greater value takes
    over the running maximum and records its offset. Since the offsets only grow,
    ``switch = max(switch, offset * greater)`` keeps the switch without a branch per element
    (``np.where`` on a random mask measured 6x slower than this arithmetic).

    Where the offsets are read (see :class:`_PhasePlan`): row ``i*SH + p`` of x_pad is row
    ``i + p // SH`` of its *phase plane*, the rows ``a, a + SH, a + 2*SH, ...`` with
    ``a = p % SH``, and the same holds for columns. So x_pad is first copied into its SH*SW
    phase planes (the only strided reads of the kernel, one pass over x; the -inf padding is
    written there, never as a padded copy of x), and offset (p, q) of every window is then one
    contiguous run of a flattened plane. The comparisons run over those runs, whole arrays at a
    time, on a grid of window positions one plane in size; positions past H_out or W_out (one
    more row and column for 3x3 windows at stride 2) are computed and dropped. A strided view
    (N, C, H_out, W_out) per offset, as before, costs NumPy a loop per output row of W_out
    elements: this forward ran 1.3x (2x2, stride 2) and 1.5x (3x3, stride 2, 33x33) faster on
    the 2-core Intel Xeon (AVX-512), 64x64 channels of float32.

    The backward takes one of two paths, recorded in ``cache.path``:

    - ``"reshape"`` when the windows tile x exactly (stride == kernel, no padding,
      KH*H_out == H and KW*W_out == W): each pixel lies in exactly one window, so dx is written
      offset by offset, ``dx[.., i*KH + p, .., j*KW + q] = dout[i, j] * (switch == p*KW + q)``,
      with no adds.
    - ``"strided"`` otherwise (overlapping windows, padding, or rows that strict=False drops):
      the same one-hot products, offset by offset in row-major order, are added into the phase
      planes of dx_pad (contiguous runs again), so a pixel that is the maximum of several
      windows receives the sum of their dout, added in offset order; each plane is then copied
      into its strided place in dx once (padding is never copied), and pixels no window
      reaches get 0. Against one strided ``+=`` of the whole dx_pad per offset, this ran the
      3x3 stride-2 backward 1.6x faster.

    Parameters
    ----------
    x : (N, C, H, W) array, float32 or float64
    kernel : int or (KH, KW)
    stride : int or (SH, SW), optional. Defaults to ``kernel`` (non-overlapping windows).
    pad : int or (PH, PW), at most half the kernel on each axis; -inf on each side
    strict : if True (default) the size rule must give an integer; if False it is floored and
        the trailing rows/columns no window reaches get no gradient (PyTorch's behaviour)

    Returns
    -------
    out : (N, C, H_out, W_out) array, dtype of x
    cache : :class:`MaxPoolCache` for ``max_pool2d_backward``

    Raises
    ------
    ValueError
        If x is not 4-D or has an empty axis, pad exceeds half the kernel, or the size rule does
        not give a positive integer (with strict=True).
    TypeError
        If x is not floating point, or a size is not an int.

    Examples
    --------
    >>> import numpy as np
    >>> out, cache = max_pool2d_forward(np.zeros((2, 3, 32, 32)), 2)
    >>> out.shape, cache.path
    ((2, 3, 16, 16), 'reshape')
    """
    x, win = pool_geometry(x, kernel, stride, pad, "max_pool2d", strict)
    n, c, h, w = x.shape
    tiles = ((win.sh, win.sw) == (win.kh, win.kw) and win.ph == win.pw == 0
             and (win.kh * win.h_out, win.kw * win.w_out) == (h, w))
    plan = _phase_plan(win, h, w)
    out = np.empty((n, c, win.h_out, win.w_out), x.dtype)
    switches = np.empty(out.shape, _switch_dtype(win))
    parallel.over_batch(x, lambda lo, hi: _max_pool_into(x[lo:hi], win, plan, out[lo:hi],
                                                         switches[lo:hi]))
    return out, MaxPoolCache(x.shape, x.dtype, win, switches, "reshape" if tiles else "strided")


class _PhasePlan(NamedTuple):
    """Where the windows' offsets lie in the stride's phase planes (see max_pool2d_forward).

    Phase (a, b) holds the x_pad pixels (u*SH + a, v*SW + b) at (u, v) of a (GH, GW) plane,
    GH = ceil((H + 2*PH) / SH) and GW = ceil((W + 2*PW) / SW); window (i, j) reads offset (p, q)
    at (i + p // SH, j + q // SW) of phase (p % SH, q % SW), so over the flattened planes of a
    chunk the offset is one run that starts ``(p // SH)*GW + q // SW`` elements in and lines up
    with the window positions (i, j) of a GH x GW grid.

    ``offsets``: for each offset k = p*KW + q in row-major order, ``(k, (a, b), start)``.
    ``phases``: for each phase that some offset reads, ``(x_rows, x_cols, plane_rows,
    plane_cols)``, the slices of x and of the plane that hold the same pixels (the rest of the
    plane is padding or lies past x_pad's edge). ``span``: the largest start; every run over a
    chunk of m samples is ``m*C*GH*GW - span`` long, so the runs of the last plane end with the
    chunk, and the positions cut off are beyond H_out or W_out. ``tight`` when the grid is
    exactly (H_out, W_out) (then span is 0); ``whole`` when x itself is the only plane (stride
    1, no padding): nothing is copied.
    """

    gh: int
    gw: int
    tight: bool
    whole: bool
    span: int
    offsets: tuple
    phases: dict


@functools.lru_cache(maxsize=GEOMETRY_CACHE_SIZE)
def _phase_plan(win: Window, h: int, w: int) -> _PhasePlan:
    """The phase planes of x_pad (H + 2*PH, W + 2*PW) for the window geometry ``win``.

    Kept per geometry, as ``window_geometry`` keeps its answers: working the plan out again
    took a third of the time of a batch-1 backward on LeNet's maps. Read-only.
    """
    gh, gw = -(-(h + 2 * win.ph) // win.sh), -(-(w + 2 * win.pw) // win.sw)
    offsets = tuple((p * win.kw + q, (p % win.sh, q % win.sw), (p // win.sh) * gw + q // win.sw)
                    for p in range(win.kh) for q in range(win.kw))
    phases = {}
    for a, b in dict.fromkeys(phase for _, phase, _ in offsets):
        r0, s0 = (a - win.ph) % win.sh, (b - win.pw) % win.sw      # first x row / column
        u0, v0 = (r0 + win.ph) // win.sh, (s0 + win.pw) // win.sw  # its place in the plane
        nr, nc = len(range(r0, h, win.sh)), len(range(s0, w, win.sw))
        phases[a, b] = (slice(r0, None, win.sh), slice(s0, None, win.sw),
                        slice(u0, u0 + nr), slice(v0, v0 + nc))
    return _PhasePlan(gh, gw, (gh, gw) == (win.h_out, win.w_out),
                      (win.sh, win.sw, win.ph, win.pw) == (1, 1, 0, 0), offsets[-1][2], offsets,
                      phases)


def _phase_planes(x: np.ndarray, plan: _PhasePlan, fill: float) -> dict:
    """x (m, C, H, W) -> {phase: its plane of x_pad, flattened (m*C*GH*GW,)}; ``fill`` where
    the plane holds no pixel of x (padding, or past x_pad's edge)."""
    m, c = x.shape[:2]
    if plan.whole:
        return {(0, 0): x.reshape(-1)}
    planes = {}
    for phase, (x_rows, x_cols, rows, cols) in plan.phases.items():
        plane = np.empty((m, c, plan.gh, plan.gw), x.dtype)
        part = plane[:, :, rows, cols]                                  # (m, C, nr, nc) view
        if part.shape != plane.shape:
            plane.fill(fill)
        part[...] = x[:, :, x_rows, x_cols]
        planes[phase] = plane.reshape(-1)
    return planes


def _max_pool_into(x, win, plan, out, switches) -> None:
    """The forward on one chunk: the maxima into out and their offsets into switches."""
    m, c = x.shape[:2]
    size = m * c * plan.gh * plan.gw
    run = size - plan.span
    planes = _phase_planes(x, plan, -np.inf)
    if plan.tight:                       # the grid of window positions is out's own
        grid_best, grid_at = out.reshape(-1), switches.reshape(-1)
    else:
        grid_best, grid_at = np.empty(size, x.dtype), np.empty(size, switches.dtype)
    best, best_at = grid_best[:run], grid_at[:run]
    np.copyto(best, planes[0, 0][:run])                  # offset 0: phase (0, 0), start 0
    best_at.fill(0)
    greater = np.empty(run, bool)
    offset_if_greater = np.empty(run, switches.dtype)
    for k, phase, start in plan.offsets[1:]:
        candidate = planes[phase][start:start + run]
        np.greater(candidate, best, out=greater)
        np.maximum(best, candidate, out=best)
        # greater's bytes read as 0/1 integers: a multiply with no cast (one with the bool
        # cast measured 2x slower)
        np.multiply(greater.view(np.uint8), switches.dtype.type(k), out=offset_if_greater)
        np.maximum(best_at, offset_if_greater, out=best_at)
    if not plan.tight:
        grid = (m, c, plan.gh, plan.gw)
        out[...] = grid_best.reshape(grid)[:, :, :win.h_out, :win.w_out]
        switches[...] = grid_at.reshape(grid)[:, :, :win.h_out, :win.w_out]
    if np.isnan(out.max()):
        # Comparisons are all False against NaN (and max() is NaN only if some value is); let
        # argmax (which stops at the first NaN) place the switches of this rare input.
        windows = im2col(x, win, pad_value=-np.inf)        # (m, C, KH, KW, H_out, W_out) view
        switches[...] = _argmax_switches(windows)
        out[...] = np.take_along_axis(_window_last(windows),
                                      switches[..., None].astype(np.intp), axis=-1)[..., 0]


def _switch_dtype(win: Window) -> np.dtype:
    """The smallest unsigned integer type that holds every offset 0 .. KH*KW - 1."""
    return np.min_scalar_type(win.kh * win.kw - 1)


def _window_last(windows: np.ndarray) -> np.ndarray:
    """(N, C, KH, KW, H_out, W_out) view -> (N, C, H_out, W_out, KH*KW) copy."""
    n, c, kh, kw, h_out, w_out = windows.shape
    return windows.transpose(0, 1, 4, 5, 2, 3).reshape(n, c, h_out, w_out, kh * kw)


def _argmax_switches(windows: np.ndarray) -> np.ndarray:
    """Offsets of each window's first maximum (a NaN counts as the maximum)."""
    return _window_last(windows).argmax(axis=-1)


def max_pool2d_backward(dout, cache):
    """Route each dout to its window's switch, summed where windows share one; dx (N, C, H, W)."""
    x_shape, dtype, win, switches, path = cache
    n, c, h, w = x_shape
    dout = check_dout(dout, switches.shape, "max_pool2d_backward").astype(dtype, copy=False)
    plan = _phase_plan(win, h, w) if path == "strided" else None
    dx = np.empty(x_shape, dtype)
    parallel.over_batch(dx, lambda lo, hi: _max_unpool_into(dout[lo:hi], switches[lo:hi], win,
                                                            plan, path, dx[lo:hi]))
    return dx


def _max_unpool_into(dout, switches, win, plan, path, dx) -> None:
    """The backward on one chunk: dout routed to the switches, written into dx (m, C, H, W)."""
    m, c, h, w = dx.shape
    if path == "reshape":
        # Tiling windows: x row i*KH + p belongs to window row i alone, so every pixel is written
        # exactly once, by the offset (p, q) it sits at.
        hit = np.empty(switches.shape, bool)
        tiles = dx.reshape(m, c, win.h_out, win.kh, win.w_out, win.kw)
        for k in range(win.kh * win.kw):
            np.equal(switches, k, out=hit)
            np.multiply(dout, hit, out=tiles[:, :, :, k // win.kw, :, k % win.kw])
        return
    size = m * c * plan.gh * plan.gw
    run = size - plan.span
    if plan.tight:
        d, at = dout.reshape(-1), switches.reshape(-1)
    else:                                # on the grid of window positions; 0 where none is
        d, at = np.zeros(size, dout.dtype), np.zeros(size, switches.dtype)
        grid = (m, c, plan.gh, plan.gw)
        d.reshape(grid)[:, :, :win.h_out, :win.w_out] = dout
        at.reshape(grid)[:, :, :win.h_out, :win.w_out] = switches
    d, at = d[:run], at[:run]
    hit = np.empty(run, bool)
    routed = np.empty(run, dout.dtype)
    planes = {}
    for k, phase, start in plan.offsets:
        # routed = d * (at == k), the mask cast to floats first: a multiply of floats by bools
        # casts in small buffers and measured 1.2x slower than the cast and this multiply
        np.equal(at, k, out=hit)
        np.copyto(routed, hit)
        if phase not in planes:          # its first offset, (a, b) itself: start 0
            planes[phase] = plane = np.empty(size, dout.dtype)
            plane[run:] = 0
            np.multiply(d, routed, out=plane[:run])
        else:
            np.multiply(d, routed, out=routed)
            planes[phase][start:start + run] += routed
    for a in range(win.sh):
        for b in range(win.sw):
            if (a, b) in planes:
                x_rows, x_cols, rows, cols = plan.phases[a, b]
                dx[:, :, x_rows, x_cols] = planes[a, b].reshape(
                    m, c, plan.gh, plan.gw)[:, :, rows, cols]
            else:                        # a stride wider than the kernel: no window reads them
                dx[:, :, (a - win.ph) % win.sh::win.sh, (b - win.pw) % win.sw::win.sw] = 0


def avg_pool2d_forward(x, kernel, stride=None, pad=0, *, strict=True):
    """Average pooling over (KH, KW) windows; padding counts as zeros in the average.

        out[n, c, i, j] = 1/(KH*KW) * sum_{p < KH, q < KW} x_pad[n, c, i*SH + p, j*SW + q]
        H_out = (H - KH + 2*PH) / SH + 1,  W_out = (W - KW + 2*PW) / SW + 1

    ``x_pad`` is x with PH rows and PW columns of zeros on each side, and the divisor is always
    KH*KW (PyTorch's ``count_include_pad=True``).

    Parameters
    ----------
    x : (N, C, H, W) array, float32 or float64
    kernel : int or (KH, KW)
    stride : int or (SH, SW), optional. Defaults to ``kernel``.
    pad : int or (PH, PW), at most half the kernel on each axis; zeros on each side
    strict : if True (default) the size rule must give an integer; if False it is floored

    Returns
    -------
    out : (N, C, H_out, W_out) array, dtype of x
    cache : for ``avg_pool2d_backward``

    Raises
    ------
    ValueError
        If x is not 4-D or has an empty axis, pad exceeds half the kernel, or the size rule does
        not give a positive integer (with strict=True).
    TypeError
        If x is not floating point, or a size is not an int.

    Examples
    --------
    >>> import numpy as np
    >>> out, _ = avg_pool2d_forward(np.zeros((2, 3, 7, 7)), 3, stride=2, pad=1)
    >>> out.shape
    (2, 3, 4, 4)
    """
    x, win = pool_geometry(x, kernel, stride, pad, "avg_pool2d", strict)
    out = np.empty(x.shape[:2] + (win.h_out, win.w_out), x.dtype)     # (N, C, H_out, W_out)

    def average(lo, hi):
        np.divide(_window_sum(im2col(x[lo:hi], win)), win.kh * win.kw, out=out[lo:hi])

    parallel.over_batch(x, average)
    return out, (x.shape, x.dtype, win)


def avg_pool2d_backward(dout, cache):
    """Spread each dout evenly, dout / (KH*KW), over its window's pixels; dx (N, C, H, W)."""
    x_shape, dtype, win = cache
    n, c = x_shape[:2]
    dout = check_dout(dout, (n, c, win.h_out, win.w_out), "avg_pool2d_backward")
    dout = dout.astype(dtype, copy=False)
    dx = np.empty(x_shape, dtype)

    def spread(lo, hi):
        share = dout[lo:hi] / (win.kh * win.kw)             # (m, C, H_out, W_out)
        dwin = np.broadcast_to(share[:, :, None, None],    # (m, C, KH, KW, H_out, W_out) view
                               (hi - lo, c, win.kh, win.kw, win.h_out, win.w_out))
        dx[lo:hi] = col2im(dwin, (hi - lo,) + tuple(x_shape[1:]), win)

    parallel.over_batch(dx, spread)
    return dx


def l2_pool2d_forward(x, kernel, stride=None, *, strict=True):
    """L2-norm pooling: the Euclidean norm of each (KH, KW) window (no padding).

        out[n, c, i, j] = sqrt( sum_{p < KH, q < KW} x[n, c, i*SH + p, j*SW + q]**2 )
        H_out = (H - KH) / SH + 1,  W_out = (W - KW) / SW + 1

    PyTorch's ``lp_pool2d`` with ``norm_type=2``. The gradient of a window whose norm is 0 (all
    its pixels 0) is defined as 0; PyTorch gives nan there.

    Parameters
    ----------
    x : (N, C, H, W) array, float32 or float64
    kernel : int or (KH, KW)
    stride : int or (SH, SW), optional. Defaults to ``kernel``.
    strict : if True (default) the size rule must give an integer; if False it is floored

    Returns
    -------
    out : (N, C, H_out, W_out) array, dtype of x, >= 0
    cache : for ``l2_pool2d_backward``

    Raises
    ------
    ValueError
        If x is not 4-D or has an empty axis, or the size rule does not give a positive integer
        (with strict=True).
    TypeError
        If x is not floating point, or a size is not an int.

    Examples
    --------
    >>> import numpy as np
    >>> out, _ = l2_pool2d_forward(np.ones((1, 2, 4, 6)), 2)
    >>> out.shape
    (1, 2, 2, 3)
    """
    x, win = pool_geometry(x, kernel, stride, 0, "l2_pool2d", strict)
    out = np.empty(x.shape[:2] + (win.h_out, win.w_out), x.dtype)     # (N, C, H_out, W_out)

    def norm(lo, hi):
        # Square once (x's size) and window-sum the squares, not K-fold window copies.
        np.sqrt(_window_sum(im2col(x[lo:hi] * x[lo:hi], win)), out=out[lo:hi])

    parallel.over_batch(x, norm)
    return out, (x, win, out)


def l2_pool2d_backward(dout, cache):
    """``dx = x * (sum of dout / out over the windows holding the pixel)``, a window with
    out = 0 adding 0; dx (N, C, H, W)."""
    x, win, out = cache
    dout = check_dout(dout, out.shape, "l2_pool2d_backward").astype(x.dtype, copy=False)
    # d out[i, j] / d x[r, s] = x[r, s] / out[i, j] for every window (i, j) holding (r, s): the
    # factor dout / out is per window, so scatter it with col2im and multiply by x once.
    c = x.shape[1]
    dx = np.empty(x.shape, x.dtype)

    def chunk(lo, hi):
        ratio = np.zeros_like(out[lo:hi])
        np.divide(dout[lo:hi], out[lo:hi], out=ratio, where=out[lo:hi] > 0)  # (m, C, H_out, W_out)
        dwin = np.broadcast_to(ratio[:, :, None, None],    # (m, C, KH, KW, H_out, W_out) view
                               (hi - lo, c, win.kh, win.kw, win.h_out, win.w_out))
        np.multiply(x[lo:hi], col2im(dwin, x[lo:hi].shape, win), out=dx[lo:hi])

    parallel.over_batch(x, chunk)
    return dx


def global_avg_pool2d_forward(x):
    """Global average pooling: the mean of each channel over all H x W positions.

        out[n, c, 0, 0] = 1/(H*W) * sum_{r < H, s < W} x[n, c, r, s]

    GoogLeNet's and ResNet's replacement for the first fully connected layer (the notes).

    Parameters
    ----------
    x : (N, C, H, W) array, float32 or float64

    Returns
    -------
    out : (N, C, 1, 1) array, dtype of x
    cache : for ``global_avg_pool2d_backward``

    Raises
    ------
    ValueError
        If x is not 4-D or has an empty axis.
    TypeError
        If x is not floating point.

    Examples
    --------
    >>> import numpy as np
    >>> out, _ = global_avg_pool2d_forward(np.zeros((2, 512, 7, 7)))
    >>> out.shape
    (2, 512, 1, 1)
    """
    x = as_float_array(x, "global_avg_pool2d x")
    check_ndim(x, 4, "global_avg_pool2d x (N, C, H, W)")
    if min(x.shape) < 1:
        raise ValueError(f"global_avg_pool2d: every size of x must be positive, "
                         f"got shape {x.shape}")
    n, c, h, w = x.shape
    out = np.empty((n, c, 1, 1), x.dtype)
    x3, out2 = x.reshape(n, c, h * w), out.reshape(n, c)                    # (N, C, L), (N, C)
    parallel.over_batch(x, lambda lo, hi: np.mean(x3[lo:hi], axis=2, out=out2[lo:hi]))
    return out, (x.shape, x.dtype)


def global_avg_pool2d_backward(dout, cache):
    """Every pixel of channel (n, c) gets dout[n, c] / (H*W); dx (N, C, H, W)."""
    x_shape, dtype = cache
    n, c, h, w = x_shape
    dout = check_dout(dout, (n, c, 1, 1), "global_avg_pool2d_backward")
    dx = np.empty(x_shape, dtype)
    share = dout.astype(dtype, copy=False) / (h * w)        # (N, C, 1, 1)

    def spread(lo, hi):
        dx[lo:hi] = share[lo:hi]                            # broadcast to (m, C, H, W)

    parallel.over_batch(dx, spread)
    return dx
