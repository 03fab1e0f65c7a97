"""Batch normalisation: a train kernel (batch statistics), an eval kernel (given statistics) and a
pure helper for the running averages. The module that holds the running buffers is ``nn``'s.

Letters: N batch, K features, C channels, H/W spatial size, L = H*W positions per channel.
Both layouts are viewed, without a copy, as (N, K, L): L = 1 for (N, K) input, and channels as
features with L = H*W for (N, C, H, W) input. The statistics of feature k are taken over its
m = N*L values ``x3[:, k, :]``, so one kernel serves both layouts and m is N or N*H*W. (CS231n
transposes to (N*H*W, C) instead; the two transposes measured more than half of the layer's time.)

Every pass runs over chunks of samples, one task each for cnnkit's threads (:mod:`cnnkit.parallel`).
A statistic is a two-phase reduction: each chunk writes its samples' row sums ``rows[n, k] =
sum_l a[n, k, l]`` (N, K), then the rows are added over n in float64, in sample order. The chunks
depend on the shape alone and the combine on nothing else, so the statistics, outputs and
gradients are the same bits on any number of threads.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from .. import parallel
from ..checks import as_float_array, check_dout, check_ndim, check_param, check_real

__all__ = ["batchnorm_forward", "batchnorm_backward", "batchnorm_eval_forward",
           "batchnorm_eval_backward", "spatial_batchnorm_forward", "spatial_batchnorm_backward",
           "spatial_batchnorm_eval_forward", "spatial_batchnorm_eval_backward",
           "batchnorm_running_update"]


class BatchNormCache(NamedTuple):
    """What ``batchnorm_backward`` needs, and the batch statistics the BatchNorm module reads."""

    mean: np.ndarray     # (K,) batch mean
    var: np.ndarray      # (K,) biased batch variance, sum((x - mean)**2) / m
    count: int           # m, the values averaged per feature: N, or N*H*W
    xc: np.ndarray       # (N, K, L) centred input x - mean; xhat = xc * invstd
    gamma: np.ndarray    # (K,)
    invstd: np.ndarray   # (K,) 1 / sqrt(var + eps)
    x_shape: tuple       # (N, K) or (N, C, H, W): how to bring dx back from (N, K, L)


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


def _row_sums(a3: np.ndarray, rows: np.ndarray) -> None:
    """``rows[n, k] = sum_l a3[n, k, l]`` for a chunk a3 (m, K, L) into rows (m, K), by SIMD
    lanes."""
    if a3.shape[2] == 1:
        rows[...] = a3[:, :, 0]
    else:
        np.einsum("nkl->nk", a3, out=rows)


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
    (batch norm's mean and dbeta, and a conv's bias gradient)."""
    rows = np.empty(a3.shape[:2], a3.dtype)                                 # (N, K)
    parallel.over_batch(a3, lambda lo, hi: _row_sums(a3[lo:hi], rows[lo:hi]))
    return _combine(rows)


def _check_eps(eps, what: str) -> float:
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
    return x, gamma, beta, _check_eps(eps, what)


# ----------------------------------------------------------------------------- train mode

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
    # Two phases per statistic (see the module docstring): each chunk of samples sums its rows,
    # then the rows are combined. The centring and the variance's rows share one pass.
    mean = feature_sum(x3) / m                              # (K,)
    xc = np.empty(x3.shape, x3.dtype)                        # (N, K, L)
    rows = np.empty(x3.shape[:2], x3.dtype)                  # (N, K)
    k_mean = _per_feature(mean, x3.shape)

    def centre(lo, hi):
        np.subtract(x3[lo:hi], k_mean, out=xc[lo:hi])
        _row_dots(xc[lo:hi], xc[lo:hi], rows[lo:hi])

    parallel.over_batch(x3, centre)
    var = _combine(rows) / m                                 # (K,) biased: divides by m
    invstd = 1.0 / np.sqrt(var + eps)                        # (K,)
    # out = gamma * xhat + beta with xhat = xc * invstd folded into one scale per feature; the
    # cache keeps xc, and the backward folds invstd in the same way, so xhat is never stored.
    scale, shift = (_per_feature(v, x3.shape) for v in (gamma * invstd, beta))
    out = np.empty(x3.shape, x3.dtype)

    def normalise(lo, hi):
        np.multiply(xc[lo:hi], scale, out=out[lo:hi])
        out[lo:hi] += shift

    parallel.over_batch(x3, normalise)
    return out.reshape(x.shape), BatchNormCache(mean, var, m, xc, gamma, invstd, x.shape)


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
    cache : ``BatchNormCache`` for ``batchnorm_backward``; ``.mean`` and ``.var`` (biased) are the
        (K,) batch statistics and ``.count`` is m, for ``batchnorm_running_update``

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


def batchnorm_backward(dout, cache):
    """Gradients of train-mode batch norm: dx (shape of x), dgamma (K,), dbeta (K,)."""
    xc, gamma, invstd, m, x_shape = (cache.xc, cache.gamma, cache.invstd, cache.count,
                                     cache.x_shape)
    dout3 = _as_nkl(check_dout(dout, x_shape, "batchnorm_backward")).astype(xc.dtype, copy=False)
    sums, dots = np.empty(xc.shape[:2], xc.dtype), np.empty(xc.shape[:2], xc.dtype)  # (N, K)

    def reduce(lo, hi):                                                  # one pass, two sums
        _row_sums(dout3[lo:hi], sums[lo:hi])
        _row_dots(dout3[lo:hi], xc[lo:hi], dots[lo:hi])

    parallel.over_batch(xc, reduce)
    dbeta = _combine(sums)                                               # (K,)
    dgamma = _combine(dots) * invstd                                     # (K,) sum(dout * xhat)
    # Why the compact formula equals the staged chain rule (cnnkit.reference.norm walks it):
    #   dxhat = gamma * dout
    #   dvar  = sum(dxhat * (x - mean)) * (-1/2) * invstd**3
    #   dmean = -invstd * sum(dxhat) + dvar * (-2/m) * sum(x - mean)
    #   dx    = dxhat * invstd + dvar * 2 * (x - mean) / m + dmean / m
    # sum(x - mean) = 0 removes dmean's second term, and x - mean = xhat / invstd turns the dvar
    # term into -invstd/m * xhat * sum(dxhat * xhat). Hence
    #   dx = invstd/m * (m * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)),
    # and as gamma is constant per feature, sum(dxhat) = gamma * dbeta and
    # sum(dxhat * xhat) = gamma * dgamma, which reuses the two sums already taken:
    #   dx = a * dout - (a/m * dgamma) * xhat - a/m * dbeta,   a = gamma * invstd (per feature)
    # with xhat = xc * invstd.
    a = gamma * invstd                                                   # (K,)
    k_xhat, k_const, k_dout = (_per_feature(v, xc.shape)             # (K, L) or (K, 1)
                               for v in (a * dgamma * invstd / m, a * dbeta / m, a))
    dx = np.empty(xc.shape, xc.dtype)                                    # (N, K, L)

    def gradient(lo, hi):
        correction = xc[lo:hi] * k_xhat                                  # (m, K, L)
        correction += k_const
        np.multiply(dout3[lo:hi], k_dout, out=dx[lo:hi])
        dx[lo:hi] -= correction

    parallel.over_batch(xc, gradient)
    return dx.reshape(x_shape), dgamma, dbeta


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
    x3 = _as_nkl(x)
    k_scale, k_shift = (_per_feature(v, x3.shape) for v in (scale, beta - running_mean * scale))
    out = np.empty(x3.shape, x.dtype)                        # (N, K, L)

    def affine(lo, hi):
        np.multiply(x3[lo:hi], k_scale, out=out[lo:hi])
        out[lo:hi] += k_shift

    parallel.over_batch(x3, affine)
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
    """Gradients of eval-mode batch norm: dx (shape of x), dgamma (K,), dbeta (K,)."""
    x, gamma, mean, invstd = cache
    dout3 = _as_nkl(check_dout(dout, x.shape, "batchnorm_eval_backward")).astype(x.dtype,
                                                                                 copy=False)
    x3 = _as_nkl(x)
    k_dx, k_mean, k_invstd = (_per_feature(v, x3.shape) for v in (gamma * invstd, mean, invstd))
    dx = np.empty(x3.shape, x.dtype)                                     # (N, K, L)
    sums, dots = np.empty(x3.shape[:2], x.dtype), np.empty(x3.shape[:2], x.dtype)  # (N, K)

    def chunk(lo, hi):
        xhat = (x3[lo:hi] - k_mean) * k_invstd                          # (m, K, L)
        np.multiply(dout3[lo:hi], k_dx, out=dx[lo:hi])
        _row_dots(dout3[lo:hi], xhat, dots[lo:hi])
        _row_sums(dout3[lo:hi], sums[lo:hi])

    parallel.over_batch(x3, chunk)
    return dx.reshape(x.shape), _combine(dots), _combine(sums)


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
    cache : ``BatchNormCache`` (``.mean``, ``.var`` (C,), ``.count`` = N*H*W) for
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
