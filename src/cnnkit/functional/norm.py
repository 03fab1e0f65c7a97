"""Batch normalisation: a train kernel (batch statistics), an eval kernel (given statistics) and a
pure helper for the running averages. The module that holds the running buffers is ``nn``'s.

Letters: N batch, K features, C channels, H/W spatial size, L = H*W positions per channel.
Both layouts are viewed, without a copy, as (N, K, L): L = 1 for (N, K) input, and channels as
features with L = H*W for (N, C, H, W) input. The statistics of feature k are taken over its
m = N*L values ``x3[:, k, :]``, so one kernel serves both layouts and m is N or N*H*W. (CS231n
transposes to (N*H*W, C) instead; the two transposes measured more than half of the layer's time.)

The kernels are bound by memory, so they are written as few passes over the batch as the maths
allows: train mode reads x twice in the forward (the statistics, then ``out = x * a + b``) and x
and dout twice in the backward (two sums, then ``dx = a * (dout + u * x + v)``), with a, b, u, v
per feature. No pass writes a full-size temporary, and the train cache holds x itself, not a
centred copy. A pass runs over chunks of samples, one task each for cnnkit's threads
(:mod:`cnnkit.parallel`); the gradient's pass, four NumPy calls over the same rows, goes through
a task in blocks of ``BLOCK_BYTES`` that stay in the core's cache.

A statistic is a two-phase reduction: each chunk writes its rows' sums ``rows[n, k] =
sum_l a[n, k, l]`` (N, K), then the rows are added over n in float64, in sample order. The chunks
and blocks depend on the shape alone and the combine on nothing else, so the statistics, outputs
and gradients are the same bits on any number of threads.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from .. import parallel
from ..checks import as_float_array, check_dout, check_ndim, check_param, check_real

__all__ = ["batchnorm_forward", "batchnorm_backward", "batchnorm_eval_forward",
           "batchnorm_eval_backward", "spatial_batchnorm_forward", "spatial_batchnorm_backward",
           "spatial_batchnorm_eval_forward", "spatial_batchnorm_eval_backward",
           "batchnorm_running_update"]


class BatchNormTrainCache(NamedTuple):
    """What ``batchnorm_backward`` needs, and the batch statistics the BatchNorm module reads."""

    mean: np.ndarray     # (K,) batch mean
    var: np.ndarray      # (K,) biased batch variance, sum((x - mean)**2) / m
    count: int           # m, the values averaged per feature: N, or N*H*W
    x: np.ndarray        # (N, K, L) the input itself (a view); xhat = (x - mean) * invstd
    gamma: np.ndarray    # (K,)
    invstd: np.ndarray   # (K,) 1 / sqrt(var + eps)
    x_shape: tuple       # (N, K) or (N, C, H, W): how to bring dx back from (N, K, L)


class BatchNormCache(NamedTuple):
    """A train cache holding the centred input instead of x: what the synchronised kernels of
    :mod:`cnnkit.distributed.syncbn` build and read (``batchnorm_backward`` takes a
    ``BatchNormTrainCache``)."""

    mean: np.ndarray     # (K,) batch mean
    var: np.ndarray      # (K,) biased batch variance
    count: int           # m
    xc: np.ndarray       # (N, K, L) centred input x - mean; xhat = xc * invstd
    gamma: np.ndarray    # (K,)
    invstd: np.ndarray   # (K,) 1 / sqrt(var + eps)
    x_shape: tuple       # (N, K) or (N, C, H, W)


class BatchNormEvalCache(NamedTuple):
    """What ``batchnorm_eval_backward`` needs: the statistics were constants of the forward."""

    x: np.ndarray        # the input itself (dgamma needs xhat, rebuilt in the backward)
    gamma: np.ndarray    # (K,)
    mean: np.ndarray     # (K,) running_mean
    invstd: np.ndarray   # (K,) 1 / sqrt(running_var + eps)


# ----------------------------------------------------------------------------- layout helpers

def _as_nkl(a: np.ndarray) -> np.ndarray:
    """(N, K) -> (N, K, 1); (N, C, H, W) -> (N, C, H*W). A view when a is contiguous."""
    return a.reshape(a.shape[0], a.shape[1], -1)


#: Largest (K, L) plane of a per-feature value that ``_per_feature`` writes out in full.
PLANE_BYTES = 1 << 18


def _per_feature(v: np.ndarray, a3_shape: tuple = (1, 1, 1)) -> np.ndarray:
    """(K,) -> an operand that broadcasts over an (N, K, L) array: (K, L) with each value
    repeated along its row when that plane is small (``PLANE_BYTES``) and the batch has 8 or
    more samples to use it on, else (K, 1).

    NumPy's inner loop over L runs with SIMD on two contiguous rows, but not against a value
    broadcast with stride 0: on a 64 x 64 x 32 x 32 batch ``x - mean`` measured 1.7 ms with
    (K, 1) and 1.3 ms with the (K, L) plane. The values are the same either way."""
    n, _, positions = a3_shape
    if positions == 1 or n < 8 or v.shape[0] * positions * v.itemsize > PLANE_BYTES:
        return v[:, None]
    return np.repeat(v[:, None], positions, axis=1)                      # (K, L)


def _row_sums(a3: np.ndarray, rows: np.ndarray, ones: np.ndarray | None = None) -> None:
    """``rows[n, k] = sum_l a3[n, k, l]`` for a chunk a3 (m, K, L) into rows (m, K), as a
    matrix-vector product with ``ones`` (L,) of a3's dtype (made here if not given): on the
    2-core Intel Xeon (AVX-512) 0.33 ms per 16 MiB in L2 against einsum's 0.43."""
    if a3.shape[2] == 1:
        rows[...] = a3[:, :, 0]
    else:
        np.matmul(a3, np.ones(a3.shape[2], a3.dtype) if ones is None else ones, out=rows)


def _row_dots(a3: np.ndarray, b3: np.ndarray, rows: np.ndarray) -> None:
    """``rows[n, k] = sum_l a3[n, k, l] * b3[n, k, l]`` for a chunk (m, K, L) into rows (m, K),
    without the product array."""
    if a3.shape[2] == 1:
        np.multiply(a3[:, :, 0], b3[:, :, 0], out=rows)
    else:
        # one dot product per (n, k) row: (m, K, 1, L) @ (m, K, L, 1) (np.vecdot needs NumPy 2)
        np.matmul(a3[:, :, None, :], b3[:, :, :, None], out=rows[:, :, None, None])


def _combine(rows: np.ndarray) -> np.ndarray:
    """The second phase of a feature sum: the (N, K) per-sample sums added over n in float64
    (in sample order, so on any thread count the same), back in rows' dtype.

    A float32 running sum over all m = N*H*W values (131072 for a 128 x 32 x 32 batch) would
    lose up to ~m * 6e-8 of its value; per-row SIMD sums, then float64, do not."""
    return rows.sum(axis=0, dtype=np.float64).astype(rows.dtype, copy=False)


def feature_sum(a3: np.ndarray) -> np.ndarray:
    """``sum_{n, l} a3[n, k, l]`` -> (K,), in a's dtype: per-chunk row sums, then combined
    (a conv's bias gradient)."""
    rows = np.empty(a3.shape[:2], a3.dtype)                                 # (N, K)
    parallel.over_batch(a3, lambda lo, hi: _row_sums(a3[lo:hi], rows[lo:hi]))
    return _combine(rows)


# ----------------------------------------------------------------------------- passes

#: Bytes of x in one block of the gradient's pass, whose four NumPy calls a block find its rows
#: (and the planes) in the core's 2 MiB L2; the other passes make one or two calls a task.
#: Blocks are few because each NumPy call lets go of the interpreter lock and takes it back,
#: and a thread waiting for the lock wakes too late for calls of tens of microseconds. On the
#: 2-core Intel Xeon (AVX-512), a 64 x 64 x 32 x 32 float32 train step (forward + backward)
#: against one block a task: 512 KiB blocks 0.95x the time on one thread and 0.93x on two
#: (256 KiB: 0.95x and 0.97x; 1 MiB: 0.97x and 0.95x). Blocks of 256 KiB in every pass
#: instead ran 0.96x this on one thread and 1.29x on two.
BLOCK_BYTES = 512 << 10

#: The alignment of the arrays the kernels write (bytes), from ``ALIGNED_BYTES`` up. NumPy's
#: large arrays start 16 bytes past a page (malloc's header), so every 64-byte AVX-512 store
#: straddles two cache lines: on the 2-core Intel Xeon (AVX-512), ``np.subtract(a, b, out=t)``
#: over 256 KiB ran at 1.2 ms per 16 MiB into such a t and at 0.54 ms into a 64-byte aligned
#: one (misaligned loads cost ~5%). Aligning costs ~2 us a call, more than it saves below
#: ``ALIGNED_BYTES``.
ALIGNMENT = 64
ALIGNED_BYTES = 1 << 18


def _empty_aligned(shape: tuple, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)``, its first element ``ALIGNMENT``-byte aligned when it holds
    ``ALIGNED_BYTES`` or more (then a C-contiguous view into a slightly larger buffer)."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < ALIGNED_BYTES:
        return np.empty(shape, dtype)
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def _sweep(a3: np.ndarray, body, *, block: int | None = None) -> None:
    """``body(ns, ks)`` for each block of a3 (N, K, L): ``ns`` a slice of samples, ``ks`` of
    features.

    The tasks are the batch chunks of :func:`cnnkit.parallel.split` (about ``TASK_BYTES``
    each); a task's blocks hold about ``block`` bytes (default: the whole task), whole samples
    where one fits, else a range of features of one sample. Both depend on the shape alone.
    A body writes only its block's rows. (Blocks of a range of features across all the task's
    samples, which keep the (K, L) planes smaller, ran 10% slower at 1 thread and 18% at 2.)"""
    block = parallel.TASK_BYTES if block is None else block
    n, k, positions = a3.shape
    sample = k * positions * a3.itemsize
    plan = parallel.split(n, sample)
    if sample <= block:
        step_n, step_k = (block // sample if sample else n), k
    else:
        step_n, step_k = 1, max(1, block // (positions * a3.itemsize))
    if len(plan) == 1 and step_n >= n and step_k >= k:        # one block: no loop
        body(slice(0, n), slice(0, k))
        return

    def task(i, slot):
        lo, hi = plan[i]
        for n0 in range(lo, hi, step_n):
            ns = slice(n0, min(hi, n0 + step_n))
            for k0 in range(0, k, step_k):
                body(ns, slice(k0, min(k, k0 + step_k)))

    if len(plan) == 1:
        task(0, 0)
    elif plan:
        parallel.for_each(len(plan), task, work_bytes=a3.nbytes)


def check_eps(eps, what: str) -> float:
    """eps as a Python float: a NumPy float64 scalar would promote float32 arithmetic."""
    eps = check_real(eps, f"{what} eps")
    if not eps > 0:
        raise ValueError(f"{what} eps must be > 0 (it keeps 1/sqrt(var + eps) finite), got {eps!r}")
    return eps


def _check_inputs(x, gamma, beta, eps, what: str, ranks):
    """Validate x (rank in ``ranks``), gamma and beta (K,) and eps; return them normalised."""
    x = as_float_array(x, f"{what} x")
    check_ndim(x, ranks, f"{what} x (N, K) or (N, C, H, W)" if ranks != 4 else
               f"{what} x (N, C, H, W)")
    k = x.shape[1]
    gamma = check_param(gamma, (k,), x, f"{what} gamma for x of shape {x.shape}")
    beta = check_param(beta, (k,), x, f"{what} beta for x of shape {x.shape}")
    return x, gamma, beta, check_eps(eps, what)


# ----------------------------------------------------------------------------- train mode

#: The batch statistics come from one pass, sum(x) and sum(x**2) per feature; where that loses
#: more than ~log2(1 + CANCEL_RATIO) bits to cancellation (mean**2 > CANCEL_RATIO * var, the
#: variance being the difference of two numbers that large against it), a second pass takes
#: them again about the first pass's mean. Data far from zero against its spread (raw inputs of
#: a net's first layer, a constant feature) pays the second pass; centred data does not.
CANCEL_RATIO = 16.0


def _batch_statistics(x3: np.ndarray, work: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean and biased variance of each feature of x3 (N, K, L), float64 (K,); ``work``, an
    array of x3's shape whose values are overwritten, holds x - c in the second pass.

        mean = sum_i x_i / m,   var = sum_i x_i**2 / m - mean**2

    from rows of float32 sums (per (n, k), by matmul) added in float64; then, for the features
    where mean**2 > CANCEL_RATIO * var, again about c = that mean (the shifted-data algorithm):

        d = sum_i (x_i - c) / m,   q = sum_i (x_i - c)**2 / m,   mean = c + d,   var = q - d**2
    """
    n, k, positions = x3.shape
    m = n * positions
    ones = np.ones(positions, x3.dtype)
    sums, squares = np.empty((n, k), x3.dtype), np.empty((n, k), x3.dtype)  # (N, K) row sums

    def rows(ns, ks):
        xb = x3[ns, ks]
        _row_sums(xb, sums[ns, ks], ones)
        _row_dots(xb, xb, squares[ns, ks])

    _sweep(x3, rows)
    mean = sums.sum(axis=0, dtype=np.float64) / m
    var = np.maximum(squares.sum(axis=0, dtype=np.float64) / m - mean * mean, 0.0)
    # again where the difference cancelled, or the squares overflowed (a finite mean only: an
    # inf or NaN in the data makes the statistics NaN or inf either way)
    again = np.isfinite(mean) & ~(np.isfinite(var) & (mean * mean <= CANCEL_RATIO * var))
    if again.any():
        shift = np.where(again, mean, 0.0).astype(x3.dtype)
        k_shift = _per_feature(shift, x3.shape)

        def centred_rows(ns, ks):
            t = work[ns, ks]
            np.subtract(x3[ns, ks], k_shift[ks], out=t)                   # x - c
            _row_sums(t, sums[ns, ks], ones)
            _row_dots(t, t, squares[ns, ks])

        _sweep(x3, centred_rows, block=BLOCK_BYTES)
        d = sums.sum(axis=0, dtype=np.float64) / m
        mean = np.where(again, shift.astype(np.float64) + d, mean)
        var = np.where(again, np.maximum(squares.sum(axis=0, dtype=np.float64) / m - d * d, 0.0),
                       var)
    return mean, var


def _affine(x3: np.ndarray, scale: np.ndarray, shift: np.ndarray,
            out: np.ndarray | None = None) -> np.ndarray:
    """``x3 * scale + shift`` with scale and shift (K,) per feature, into ``out`` (N, K, L), by
    default a new aligned array."""
    out = _empty_aligned(x3.shape, x3.dtype) if out is None else out
    k_scale, k_shift = _per_feature(scale, x3.shape), _per_feature(shift, x3.shape)

    def scale_shift(ns, ks):
        o = out[ns, ks]
        np.multiply(x3[ns, ks], k_scale[ks], out=o)
        o += k_shift[ks]

    _sweep(x3, scale_shift)
    return out


def _train_forward(x, gamma, beta, eps, what, ranks):
    x, gamma, beta, eps = _check_inputs(x, gamma, beta, eps, what, ranks)
    x3 = _as_nkl(x)                                          # (N, K, L)
    m = x3.shape[0] * x3.shape[2]
    if m <= 1:
        per = "N" if x.ndim == 2 else "N*H*W"
        raise ValueError(f"{what}: expected more than 1 value per "
                         f"{'feature' if x.ndim == 2 else 'channel'} when training, got x of "
                         f"shape {x.shape} (m = {per} = {m}); the biased variance of one value "
                         f"is 0. Use a larger batch or the eval kernel with running statistics")
    dtype = x3.dtype
    out = _empty_aligned(x3.shape, dtype)                    # (N, K, L)
    mean, var = _batch_statistics(x3, out)                   # (K,) float64
    invstd = 1.0 / np.sqrt(var + eps)                        # (K,) float64
    # out = gamma * (x - mean) * invstd + beta = x * scale + shift, one multiply-add per value
    # (PyTorch's CPU kernel has the same form); it rounds x * scale, ~|mean| / std times more
    # than (x - mean) * scale would. A feature of one repeated value (var = 0) has scale 0, so
    # its output is exactly beta, as (x - mean) * scale + beta gives it.
    scale = np.where(var > 0, gamma * invstd, 0.0).astype(dtype)
    shift = (beta - mean * scale).astype(dtype)
    _affine(x3, scale, shift, out)
    return out.reshape(x.shape), BatchNormTrainCache(mean.astype(dtype), var.astype(dtype), m, x3,
                                                     gamma, invstd.astype(dtype), x.shape)


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Batch normalisation with the batch's statistics (train mode), then scale and shift.

        mean = sum_i x[i] / m,   var = sum_i (x[i] - mean)**2 / m      (biased, per feature)
        xhat = (x - mean) / sqrt(var + eps),   out = gamma * xhat + beta

    A 2-D x (N, K) is normalised per feature over the N examples (m = N). A 4-D x (N, C, H, W) is
    normalised per channel over N*H*W values (m = N*H*W), exactly as ``spatial_batchnorm_forward``.

    Parameters
    ----------
    x : (N, K) or (N, C, H, W) array, float32 or float64
    gamma, beta : (K,) or (C,) arrays (computed in x's dtype)
    eps : float > 0, added to the variance

    Returns
    -------
    out : array, shape and dtype of x
    cache : ``BatchNormTrainCache`` for ``batchnorm_backward``; ``.mean`` and ``.var`` (biased)
        are the (K,) batch statistics and ``.count`` is m, for ``batchnorm_running_update``

    Raises
    ------
    ValueError
        If x is not 2-D or 4-D, gamma or beta is not (K,), eps <= 0, or m <= 1 (one value per
        feature has no variance to normalise by; PyTorch refuses it too).
    TypeError
        If an array is not floating point.

    Examples
    --------
    >>> import numpy as np
    >>> out, cache = batchnorm_forward(np.ones((4, 3)), np.ones(3), np.zeros(3))
    >>> out.shape, cache.mean.shape, cache.count
    ((4, 3), (3,), 4)
    """
    return _train_forward(x, gamma, beta, eps, "batchnorm", (2, 4))


def _dout_sums(dout3: np.ndarray, x3: np.ndarray, dx_scale: np.ndarray | None = None):
    """``sum(dout)`` and ``sum(dout * x)`` of each feature, float64 (K,), in one pass over dout3
    and x3 (N, K, L). With ``dx_scale`` (K,) the pass also writes ``dout * dx_scale``, a new
    aligned (N, K, L), returned third (eval mode's dx)."""
    n, k, positions = x3.shape
    dtype = x3.dtype
    ones = np.ones(positions, dtype)
    sums, dots = np.empty((n, k), dtype), np.empty((n, k), dtype)      # (N, K) row sums
    dx = None if dx_scale is None else _empty_aligned(x3.shape, dtype)
    k_scale = None if dx_scale is None else _per_feature(dx_scale, x3.shape)

    def rows(ns, ks):
        d = dout3[ns, ks]
        if dx is not None:
            np.multiply(d, k_scale[ks], out=dx[ns, ks])
        _row_sums(d, sums[ns, ks], ones)
        _row_dots(d, x3[ns, ks], dots[ns, ks])

    _sweep(x3, rows)
    return sums.sum(axis=0, dtype=np.float64), dots.sum(axis=0, dtype=np.float64), dx


def _centred_dot(dot: np.ndarray, total: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``sum(dout * (x - mean)) = sum(dout * x) - mean * sum(dout)``, all (K,) float64.

    The float32 row sums of dout * x round ~|mean| / std times more than centred products
    would. So does centring by a float32 mean (x - mean is off by up to half an ulp of mean), as
    PyTorch's kernel and the centred cache did: on data with |mean| = 1000 std, dgamma's error
    was 1e-3 here, 4e-4 in PyTorch and 8e-4 with the centred cache, all ~1e-7 at |mean| <= std.
    Centring x first would cost one more NumPy call per block."""
    return dot - mean * total


def batchnorm_backward(dout, cache):
    """Gradients of train-mode batch norm: dx (shape of x), dgamma (K,), dbeta (K,).

    Why the compact formula equals the staged chain rule (:mod:`cnnkit.reference.norm` walks it):

        dxhat = gamma * dout
        dvar  = sum(dxhat * (x - mean)) * (-1/2) * invstd**3
        dmean = -invstd * sum(dxhat) + dvar * (-2/m) * sum(x - mean)
        dx    = dxhat * invstd + dvar * 2 * (x - mean) / m + dmean / m

    sum(x - mean) = 0 removes dmean's second term, and x - mean = xhat / invstd turns the dvar
    term into -invstd/m * xhat * sum(dxhat * xhat). Hence

        dx = invstd/m * (m * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)),

    and as gamma is constant per feature, sum(dxhat) = gamma * dbeta and sum(dxhat * xhat) =
    gamma * dgamma, the two sums the backward takes anyway:

        dbeta  = sum(dout),   dgamma = sum(dout * xhat) = invstd * (sum(dout * x) - mean * dbeta)
        dx     = a * (dout - dgamma * xhat / m - dbeta / m),   a = gamma * invstd
               = a * (dout + u * x + v),   u = -dgamma * invstd / m,   v = -u * mean - dbeta / m

    with a, u, v per feature: one pass reads dout and x for the two sums (neither product is
    stored), a second reads them again and writes dx.
    """
    mean, _, m, x3, gamma, invstd, x_shape = cache
    dtype = x3.dtype
    dout3 = _as_nkl(check_dout(dout, x_shape, "batchnorm_backward")).astype(dtype, copy=False)
    mean, invstd = mean.astype(np.float64), invstd.astype(np.float64)     # (K,)
    dbeta, dot, _ = _dout_sums(dout3, x3)
    dgamma = _centred_dot(dot, dbeta, mean) * invstd                      # sum(dout * xhat)
    u = -dgamma * invstd / m
    v = -u * mean - dbeta / m
    k_a, k_u, k_v = (_per_feature(w.astype(dtype), x3.shape) for w in (gamma * invstd, u, v))
    dx = _empty_aligned(x3.shape, dtype)                                 # (N, K, L)

    def gradient(ns, ks):
        d = dx[ns, ks]
        np.multiply(x3[ns, ks], k_u[ks], out=d)
        d += k_v[ks]
        d += dout3[ns, ks]
        d *= k_a[ks]

    _sweep(x3, gradient, block=BLOCK_BYTES)
    return dx.reshape(x_shape), dgamma.astype(dtype), dbeta.astype(dtype)


# ----------------------------------------------------------------------------- eval mode

def _eval_forward(x, gamma, beta, running_mean, running_var, eps, what, ranks):
    x, gamma, beta, eps = _check_inputs(x, gamma, beta, eps, what, ranks)
    k = x.shape[1]
    for_x = f"for x of shape {x.shape}"
    running_mean = check_param(running_mean, (k,), x, f"{what} running_mean {for_x}")
    running_var = check_param(running_var, (k,), x, f"{what} running_var {for_x}")
    if np.any(running_var < 0):
        raise ValueError(f"{what} running_var must be >= 0, got min {running_var.min()!r}")
    invstd = 1.0 / np.sqrt(running_var + eps)                # (K,)
    # One affine map per feature: gamma * (x - mean) * invstd + beta = x * scale + shift.
    scale = gamma * invstd
    out = _affine(_as_nkl(x), scale, beta - running_mean * scale)        # (N, K, L)
    return out.reshape(x.shape), BatchNormEvalCache(x, gamma, running_mean, invstd)


def batchnorm_eval_forward(x, gamma, beta, running_mean, running_var, eps=1e-5):
    """Batch normalisation with given statistics (eval mode): an affine map per feature.

        out = gamma * (x - running_mean) / sqrt(running_var + eps) + beta

    Layouts as in ``batchnorm_forward``: features are the columns of (N, K) or the channels of
    (N, C, H, W). The statistics are constants, so ``batchnorm_eval_backward`` does not
    differentiate through them (and any batch size, even 1, is fine).

    Parameters
    ----------
    x : (N, K) or (N, C, H, W) array, float32 or float64
    gamma, beta : (K,) or (C,) arrays (computed in x's dtype)
    running_mean, running_var : (K,) or (C,) arrays (in x's dtype), running_var >= 0
    eps : float > 0

    Returns
    -------
    out : array, shape and dtype of x
    cache : for ``batchnorm_eval_backward``

    Raises
    ------
    ValueError
        If x is not 2-D or 4-D, a parameter or statistic is not (K,), running_var < 0, or
        eps <= 0.
    TypeError
        If an array is not floating point.

    Examples
    --------
    >>> import numpy as np
    >>> out, _ = batchnorm_eval_forward(np.ones((1, 3, 2, 2)), np.ones(3), np.zeros(3),
    ...                                 np.zeros(3), np.ones(3))
    >>> out.shape
    (1, 3, 2, 2)
    """
    return _eval_forward(x, gamma, beta, running_mean, running_var, eps, "batchnorm_eval", (2, 4))


def batchnorm_eval_backward(dout, cache):
    """Gradients of eval-mode batch norm: dx (shape of x), dgamma (K,), dbeta (K,).

        dx = gamma * invstd * dout,   dbeta = sum(dout),
        dgamma = sum(dout * xhat) = invstd * (sum(dout * x) - mean * dbeta)

    in one pass over dout and x (mean and invstd are the running statistics' constants)."""
    x, gamma, mean, invstd = cache
    x3 = _as_nkl(x)
    dout3 = _as_nkl(check_dout(dout, x.shape, "batchnorm_eval_backward")).astype(x.dtype,
                                                                                 copy=False)
    dbeta, dot, dx = _dout_sums(dout3, x3, dx_scale=gamma * invstd)
    dgamma = _centred_dot(dot, dbeta, mean.astype(np.float64)) * invstd.astype(np.float64)
    return dx.reshape(x.shape), dgamma.astype(x.dtype), dbeta.astype(x.dtype)


# ----------------------------------------------------------------------------- spatial names

def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Spatial batch norm (train mode): each channel normalised over its N*H*W values.

        out[n, c, h, w] = gamma[c] * (x[n, c, h, w] - mean[c]) / sqrt(var[c] + eps) + beta[c]

    The same kernel as ``batchnorm_forward`` on a 4-D x, with the channels as the features (x is
    viewed as (N, C, H*W), no transpose).

    Parameters
    ----------
    x : (N, C, H, W) array
    gamma, beta : (C,) arrays (computed in x's dtype)
    eps : float > 0

    Returns
    -------
    out : (N, C, H, W) array
    cache : ``BatchNormTrainCache`` (``.mean``, ``.var`` (C,), ``.count`` = N*H*W) for
        ``spatial_batchnorm_backward``

    Raises
    ------
    ValueError
        If x is not 4-D, gamma or beta is not (C,), eps <= 0, or N*H*W <= 1.
    TypeError
        If an array is not floating point.

    Examples
    --------
    >>> import numpy as np
    >>> out, cache = spatial_batchnorm_forward(np.ones((2, 3, 4, 4)), np.ones(3), np.zeros(3))
    >>> out.shape, cache.count
    ((2, 3, 4, 4), 32)
    """
    return _train_forward(x, gamma, beta, eps, "spatial_batchnorm", 4)


def spatial_batchnorm_backward(dout, cache):
    """Gradients of spatial batch norm: dx (N, C, H, W), dgamma (C,), dbeta (C,)."""
    return batchnorm_backward(dout, cache)


def spatial_batchnorm_eval_forward(x, gamma, beta, running_mean, running_var, eps=1e-5):
    """Spatial batch norm with given per-channel statistics (eval mode).

        out[n, c, h, w] = gamma[c] * (x[n, c, h, w] - running_mean[c]) / sqrt(running_var[c] + eps)
                          + beta[c]

    Parameters
    ----------
    x : (N, C, H, W) array
    gamma, beta, running_mean, running_var : (C,) arrays (computed in x's dtype), running_var >= 0
    eps : float > 0

    Returns
    -------
    out : (N, C, H, W) array
    cache : for ``spatial_batchnorm_eval_backward``

    Raises
    ------
    ValueError
        If x is not 4-D, a parameter or statistic is not (C,), running_var < 0, or eps <= 0.
    TypeError
        If an array is not floating point.

    Examples
    --------
    >>> import numpy as np
    >>> out, _ = spatial_batchnorm_eval_forward(np.ones((1, 2, 3, 3)), np.ones(2), np.zeros(2),
    ...                                         np.zeros(2), np.ones(2))
    >>> out.shape
    (1, 2, 3, 3)
    """
    return _eval_forward(x, gamma, beta, running_mean, running_var, eps,
                         "spatial_batchnorm_eval", 4)


def spatial_batchnorm_eval_backward(dout, cache):
    """Gradients of eval-mode spatial batch norm: dx (N, C, H, W), dgamma (C,), dbeta (C,)."""
    return batchnorm_eval_backward(dout, cache)


# ----------------------------------------------------------------------------- running statistics

def batchnorm_running_update(running_mean, running_var, batch_mean, batch_var, count, momentum=0.9):
    """Exponential moving averages of the batch statistics, for eval mode. Pure: returns new arrays.

        running_mean' = momentum * running_mean + (1 - momentum) * batch_mean
        running_var'  = momentum * running_var  + (1 - momentum) * batch_var * m / (m - 1)

    ``momentum`` keeps that fraction of the old value (the notes' convention; PyTorch's
    ``momentum=0.1`` is this function's 0.9).

    Parameters
    ----------
    running_mean, running_var : (K,) arrays, the current averages (not modified)
    batch_mean, batch_var : (K,) arrays, dtype of the running ones: a train cache's ``.mean`` and
        biased ``.var``
    count : int >= 2, m, the values each batch statistic averaged (the cache's ``.count``)
    momentum : float in [0, 1]

    Returns
    -------
    running_mean, running_var : new (K,) arrays

    Raises
    ------
    ValueError
        If the shapes differ, count < 2, or momentum is outside [0, 1].
    TypeError
        If an array is not floating point, the dtypes differ, count is not an int or momentum
        is not a real number.

    Examples
    --------
    >>> import numpy as np
    >>> rm, rv = batchnorm_running_update(np.zeros(3), np.ones(3), np.ones(3), np.ones(3), 4)
    >>> rm.shape, rv.shape
    ((3,), (3,))
    """
    what = "batchnorm_running_update"
    arrays = {"running_mean": running_mean, "running_var": running_var,
              "batch_mean": batch_mean, "batch_var": batch_var}
    arrays = {name: as_float_array(a, f"{what} {name}") for name, a in arrays.items()}
    ref = arrays["running_mean"]
    for name, a in arrays.items():
        if a.shape != ref.shape:
            raise ValueError(f"{what}: {name} has shape {a.shape} but running_mean has "
                             f"shape {ref.shape}")
        if a.dtype != ref.dtype:
            raise TypeError(f"{what}: {name} has dtype {a.dtype} but running_mean has "
                            f"dtype {ref.dtype}")
    if isinstance(count, (bool, np.bool_)) or not isinstance(count, numbers.Integral):
        raise TypeError(f"{what} count must be an int (the values per feature), got {count!r}")
    if count < 2:
        raise ValueError(f"{what}: count must be >= 2 for the unbiased variance "
                         f"m/(m-1), got m = {count}")
    momentum = check_real(momentum, f"{what} momentum")
    if not 0 <= momentum <= 1:
        raise ValueError(f"{what} momentum must be in [0, 1], got {momentum!r}")

    # The biased batch variance underestimates the population's by a factor (m-1)/m (its
    # expectation is (m-1)/m * sigma**2), and eval mode wants the population's. The batch-norm
    # paper uses the unbiased m/(m-1) * var for inference, and PyTorch's running_var does too.
    m = int(count)
    unbiased = arrays["batch_var"] * (m / (m - 1))
    new_mean = momentum * arrays["running_mean"] + (1 - momentum) * arrays["batch_mean"]
    new_var = momentum * arrays["running_var"] + (1 - momentum) * unbiased
    return new_mean, new_var
