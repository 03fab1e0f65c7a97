"""Naive batch norm: one feature at a time, through the notes' staged graph.

    step 1  mean = sum_i x_i / m                 step 4  std  = sqrt(var + eps)
    step 2  xc   = x - mean                      step 5  xhat = xc / std
    step 3  var  = sum_i xc_i**2 / m             step 6  out  = gamma * xhat + beta

The backward walks that graph in reverse, one local derivative per step (the batch-norm paper's
derivation), rather than the collapsed formula of :mod:`cnnkit.functional.norm`; the tests compare
the two. A feature is a column of (N, K) input or a channel of (N, C, H, W) input, whose
m = N*H*W values are read straight from x (no transpose, unlike the fast kernel).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..checks import as_float_array, check_ndim


class NaiveBatchNormCache(NamedTuple):
    mean: np.ndarray     # (K,)
    var: np.ndarray      # (K,) biased
    count: int           # m
    steps: list          # per feature k: (xc, std, xhat) of the staged graph, each (m,) or scalar
    gamma: np.ndarray    # (K,)
    x_shape: tuple


class NaiveBatchNormEvalCache(NamedTuple):
    steps: list          # per feature k: (std, xhat)
    gamma: np.ndarray
    x_shape: tuple


def _feature(a: np.ndarray, k: int) -> np.ndarray:
    """The m values of feature k as a 1-D copy: column k of (N, K), channel k of (N, C, H, W)."""
    return np.array(a[:, k], copy=True).reshape(-1)


def _set_feature(a: np.ndarray, k: int, values: np.ndarray) -> None:
    a[:, k] = values.reshape(a[:, k].shape)


def _inputs(x, gamma, beta, what, ranks):
    x = as_float_array(x, f"{what} x")
    check_ndim(x, ranks, f"{what} x")
    gamma, beta = np.asarray(gamma), np.asarray(beta)
    if gamma.shape != (x.shape[1],) or beta.shape != (x.shape[1],):
        raise ValueError(f"{what}: gamma {gamma.shape} and beta {beta.shape} must be "
                         f"({x.shape[1]},) for x of shape {x.shape}")
    return x, gamma, beta


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Train-mode batch norm, feature by feature through steps 1-6; (N, K) or (N, C, H, W)."""
    x, gamma, beta = _inputs(x, gamma, beta, "batchnorm", (2, 4))
    num_features = x.shape[1]
    m = x.size // num_features if num_features else 0
    if m <= 1:
        raise ValueError(f"batchnorm: expected more than 1 value per feature when training, "
                         f"got x of shape {x.shape} (m = {m})")
    out = np.empty_like(x)
    means, variances, steps = np.empty(num_features, x.dtype), np.empty(num_features, x.dtype), []
    for k in range(num_features):
        v = _feature(x, k)                          # (m,)
        mean = np.sum(v) / m                        # step 1
        xc = v - mean                               # step 2
        var = np.sum(xc ** 2) / m                   # step 3 (biased)
        std = np.sqrt(var + eps)                    # step 4
        xhat = xc / std                             # step 5
        _set_feature(out, k, gamma[k] * xhat + beta[k])  # step 6
        means[k], variances[k] = mean, var
        steps.append((xc, std, xhat))
    return out, NaiveBatchNormCache(means, variances, m, steps, gamma, x.shape)


def batchnorm_backward(dout, cache):
    """Reverse of steps 6..1, one chain-rule step at a time: dx, dgamma (K,), dbeta (K,)."""
    dout = np.asarray(dout)
    m, gamma = cache.count, cache.gamma
    dx = np.empty(cache.x_shape, dtype=dout.dtype)
    dgamma, dbeta = np.empty(gamma.shape, dout.dtype), np.empty(gamma.shape, dout.dtype)
    for k, (xc, std, xhat) in enumerate(cache.steps):
        dy = _feature(dout, k)                      # (m,)
        # step 6: out = gamma * xhat + beta
        dbeta[k] = np.sum(dy)
        dgamma[k] = np.sum(dy * xhat)
        dxhat = dy * gamma[k]
        # step 5: xhat = xc / std  (xc reaches xhat directly and through std)
        dxc = dxhat / std
        dstd = -np.sum(dxhat * xc) / std ** 2
        # step 4: std = sqrt(var + eps)
        dvar = dstd / (2 * std)
        # step 3: var = sum(xc**2) / m
        dxc = dxc + dvar * 2 * xc / m
        # step 2: xc = x - mean  (x reaches xc directly and through the mean)
        dv = dxc.copy()
        dmean = -np.sum(dxc)
        # step 1: mean = sum(x) / m
        dv = dv + dmean / m
        _set_feature(dx, k, dv)
    return dx, dgamma, dbeta


def batchnorm_eval_forward(x, gamma, beta, running_mean, running_var, eps=1e-5):
    """Eval-mode batch norm: steps 2, 4, 5, 6 with the given mean and variance as constants."""
    x, gamma, beta = _inputs(x, gamma, beta, "batchnorm_eval", (2, 4))
    running_mean, running_var = np.asarray(running_mean), np.asarray(running_var)
    out, steps = np.empty_like(x), []
    for k in range(x.shape[1]):
        v = _feature(x, k)
        xc = v - running_mean[k]                    # step 2
        std = np.sqrt(running_var[k] + eps)         # step 4
        xhat = xc / std                             # step 5
        _set_feature(out, k, gamma[k] * xhat + beta[k])  # step 6
        steps.append((std, xhat))
    return out, NaiveBatchNormEvalCache(steps, gamma, x.shape)


def batchnorm_eval_backward(dout, cache):
    """Reverse of steps 6, 5, 2 (the statistics are constants): dx, dgamma (K,), dbeta (K,)."""
    dout = np.asarray(dout)
    gamma = cache.gamma
    dx = np.empty(cache.x_shape, dtype=dout.dtype)
    dgamma, dbeta = np.empty(gamma.shape, dout.dtype), np.empty(gamma.shape, dout.dtype)
    for k, (std, xhat) in enumerate(cache.steps):
        dy = _feature(dout, k)
        dbeta[k] = np.sum(dy)                       # step 6
        dgamma[k] = np.sum(dy * xhat)
        dxhat = dy * gamma[k]
        _set_feature(dx, k, dxhat / std)            # steps 5 and 2: dx = dxc = dxhat / std
    return dx, dgamma, dbeta


def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Train-mode batch norm of a 4-D x, each channel over its N*H*W values."""
    check_ndim(np.asarray(x), 4, "spatial_batchnorm x (N, C, H, W)")
    return batchnorm_forward(x, gamma, beta, eps)


def spatial_batchnorm_backward(dout, cache):
    """Gradients of the naive spatial batch norm: dx (N, C, H, W), dgamma (C,), dbeta (C,)."""
    return batchnorm_backward(dout, cache)


def spatial_batchnorm_eval_forward(x, gamma, beta, running_mean, running_var, eps=1e-5):
    """Eval-mode batch norm of a 4-D x with per-channel statistics."""
    check_ndim(np.asarray(x), 4, "spatial_batchnorm_eval x (N, C, H, W)")
    return batchnorm_eval_forward(x, gamma, beta, running_mean, running_var, eps)


def spatial_batchnorm_eval_backward(dout, cache):
    """Gradients of the naive eval spatial batch norm: dx (N, C, H, W), dgamma (C,), dbeta (C,)."""
    return batchnorm_eval_backward(dout, cache)
