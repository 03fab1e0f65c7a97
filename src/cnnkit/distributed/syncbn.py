"""Synchronised batch norm: every rank normalises with the statistics of the global batch.

In data-parallel training each rank holds a shard of n_r of the batch's n examples. Plain batch
norm would normalise each shard by its own mean and variance; the synchronised kernels below
make the result that of one process normalising the whole batch, with two small allreduces per
layer and step. Per feature k, with m_r = n_r * L values on rank r and m = sum_r m_r:

forward, one allreduce of (K + K + 1) numbers
    rank r sends   S_r = sum_i x_i,   Q_r = sum_i x_i**2,   m_r
    (Q_r computed about the shard's own mean c_r, as sum_i (x_i - c_r)**2 + 2 c_r (S_r - m_r c_r)
    + m_r c_r**2, which keeps the float32 squares exact where x's mean is large against its
    spread), then every rank takes
    mean = S / m,   var = Q / m - mean**2   (biased, as the single-process kernel)
    and normalises its shard with them.

backward, one allreduce of (K + K) numbers
    the two reductions of batch norm's backward,
    dbeta = sum_i dout_i   and   sum_i dout_i * (x_i - mean),
    are summed over the ranks before dx is formed with the global m (the formula is
    :func:`cnnkit.functional.batchnorm_backward`'s). The gradients of gamma and beta returned
    to the module are this rank's own parts: the step's gradient allreduce sums them.

The kernels are installed on a net's BatchNorm modules for the length of a ``with`` block
(:func:`synchronised`): the modules, their state dict and their checkpoints do not change, and
the running statistics, updated from the global batch, stay identical on every rank.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .. import parallel
from ..functional import norm as _norm
from ..nn.normalization import _BatchNorm

__all__ = ["sync_batchnorm_kernels", "synchronised"]


def sync_batchnorm_kernels(comm, state):
    """(forward, backward) train-mode kernels with the signatures of
    ``batchnorm_forward(x, gamma, beta, eps)`` and ``batchnorm_backward(dout, cache)`` whose
    statistics are those of the batch spread over ``comm``'s ranks.

    ``state.active`` is False on a rank that holds no example of this step (it joins the
    collectives with zero sums; see :class:`cnnkit.distributed.DataParallel`).
    """
    what = "synchronised batchnorm"

    def forward(x, gamma, beta, eps):
        x, gamma, beta, eps = _norm._check_inputs(x, gamma, beta, eps, what, (2, 4))
        x3 = _norm._as_nkl(x)                                         # (N, K, L)
        n, k, positions = x3.shape
        m_local = n * positions if state.active else 0
        # this shard's sum and mean, then its squares about that mean, as the one-process
        # kernel takes them (per-sample rows, added in float64)
        rows = np.empty(x3.shape[:2], x3.dtype)                        # (N, K)
        parallel.over_batch(x3, lambda lo, hi: _norm._row_sums(x3[lo:hi], rows[lo:hi]))
        sum64 = rows.sum(axis=0, dtype=np.float64)                       # (K,)
        mean_r = (sum64 / (n * positions)).astype(x3.dtype)
        xc = np.empty(x3.shape, x3.dtype)
        k_mean = _norm._per_feature(mean_r, x3.shape)

        def centre(lo, hi):
            np.subtract(x3[lo:hi], k_mean, out=xc[lo:hi])
            _norm._row_dots(xc[lo:hi], xc[lo:hi], rows[lo:hi])

        parallel.over_batch(x3, centre)
        stats = np.zeros(2 * k + 1, np.float64)
        if m_local:
            # sum x**2 = sum (x - c)**2 + 2c sum (x - c) + m c**2 for the rounded mean c; the
            # middle term is small but not 0, and leaving it out would bias the variance
            c = mean_r.astype(np.float64)
            stats[:k] = sum64
            stats[k:2 * k] = (rows.sum(axis=0, dtype=np.float64)
                              + 2 * c * (sum64 - m_local * c) + m_local * c ** 2)
            stats[2 * k] = m_local
        comm.allreduce(stats, f"{what}'s forward sums")
        m = int(stats[2 * k])
        if m <= 1:
            raise ValueError(f"{what}: expected more than 1 value per feature over the global "
                             f"batch when training, got m = {m}")
        mean64 = stats[:k] / m
        var64 = np.maximum(stats[k:2 * k] / m - mean64 ** 2, 0.0)
        mean, var = mean64.astype(x3.dtype), var64.astype(x3.dtype)
        shift = _norm._per_feature((mean64 - mean_r).astype(x3.dtype), x3.shape)
        invstd = 1.0 / np.sqrt(var + eps)
        scale = _norm._per_feature(gamma * invstd, x3.shape)
        bias = _norm._per_feature(beta, x3.shape)
        out = np.empty(x3.shape, x3.dtype)

        def normalise(lo, hi):
            xc[lo:hi] -= shift                 # about the global mean now
            np.multiply(xc[lo:hi], scale, out=out[lo:hi])
            out[lo:hi] += bias

        parallel.over_batch(x3, normalise)
        return out.reshape(x.shape), _norm.BatchNormCache(mean, var, m, xc, gamma, invstd,
                                                          x.shape)

    def backward(dout, cache):
        xc, gamma, invstd, m, x_shape = (cache.xc, cache.gamma, cache.invstd, cache.count,
                                         cache.x_shape)
        dout3 = _norm._as_nkl(_norm.check_dout(dout, x_shape, f"{what} backward")).astype(
            xc.dtype, copy=False)
        k = xc.shape[1]
        sums, dots = np.empty(xc.shape[:2], xc.dtype), np.empty(xc.shape[:2], xc.dtype)

        def reduce(lo, hi):
            _norm._row_sums(dout3[lo:hi], sums[lo:hi])
            _norm._row_dots(dout3[lo:hi], xc[lo:hi], dots[lo:hi])

        parallel.over_batch(xc, reduce)
        dbeta_r, dot_r = _norm._combine(sums), _norm._combine(dots)        # this shard's
        total = np.concatenate([dbeta_r, dot_r]).astype(np.float64)
        comm.allreduce(total, f"{what}'s backward sums")
        dbeta = total[:k].astype(xc.dtype)
        dgamma = (total[k:] * invstd).astype(xc.dtype)                   # sum(dout * xhat)
        # dx = a * dout - (a/m * dgamma) * xhat - a/m * dbeta, a = gamma * invstd, as in
        # batchnorm_backward, with the global sums and m
        a = gamma * invstd
        k_xhat, k_const, k_dout = (_norm._per_feature(v, xc.shape)
                                   for v in (a * dgamma * invstd / m, a * dbeta / m, a))
        dx = np.empty(xc.shape, xc.dtype)

        def gradient(lo, hi):
            correction = xc[lo:hi] * k_xhat
            correction += k_const
            np.multiply(dout3[lo:hi], k_dout, out=dx[lo:hi])
            dx[lo:hi] -= correction

        if state.active:
            parallel.over_batch(xc, gradient)
        else:            # a stand-in row is no part of the batch: nothing flows back from it
            dx[...] = 0
        return dx.reshape(x_shape), (dot_r * invstd).astype(xc.dtype), dbeta_r

    return forward, backward


@contextmanager
def synchronised(model, comm, state):
    """Within the block, every BatchNorm1d/2d module of ``model`` trains with the global batch's
    statistics (:func:`sync_batchnorm_kernels`); eval mode is unchanged."""
    forward, backward = sync_batchnorm_kernels(comm, state)
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    for layer in layers:                     # instance attributes shadow the class's kernels
        layer._train_forward, layer._train_backward = forward, backward
    try:
        yield layers
    finally:
        for layer in layers:
            for name in ("_train_forward", "_train_backward"):
                layer.__dict__.pop(name, None)
