"""Naive layer and group norm: one row at a time (a sample, or a group of a sample's channels),
through the staged graph of batch norm's twin (:mod:`cnnkit.reference.norm`):

    step 1  mean = sum_i x_i / M                 step 4  std  = sqrt(var + eps)
    step 2  xc   = x - mean                      step 5  xhat = xc / std
    step 3  var  = sum_i xc_i**2 / M             step 6  out  = gamma * xhat + beta

with gamma and beta indexed per value of the row (a layer norm's element, a group norm's
channel). The backward walks the graph in reverse, one local derivative per step, rather than
the collapsed formula of :mod:`cnnkit.functional.layer_norm`; the tests compare the two.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..checks import as_float_array


class NaiveSampleNormCache(NamedTuple):
    steps: list          # per row: (xc, std, xhat, gamma of each value)
    rows: list           # per row: the flat indices of x it holds
    param_index: list    # per row: the index into gamma of each value
    gamma: np.ndarray | None
    has_beta: bool
    param_shape: tuple
    x_shape: tuple


def _forward(x, rows, param_index, gamma, beta, eps, param_shape):
    flat = x.reshape(-1)
    g = None if gamma is None else np.asarray(gamma).reshape(-1)
    b = None if beta is None else np.asarray(beta).reshape(-1)
    out = np.empty_like(flat)
    steps = []
    for index, where in zip(rows, param_index):
        v = flat[index]
        m = v.size
        mean = np.sum(v) / m                        # step 1
        xc = v - mean                               # step 2
        var = np.sum(xc ** 2) / m                   # step 3 (biased)
        std = np.sqrt(var + eps)                    # step 4
        xhat = xc / std                             # step 5
        scale = np.ones(m, x.dtype) if g is None else g[where]
        out[index] = scale * xhat + (0 if b is None else b[where])   # step 6
        steps.append((xc, std, xhat, scale))
    return out.reshape(x.shape), NaiveSampleNormCache(steps, rows, param_index, g, b is not None,
                                                      param_shape, x.shape)


def _backward(dout, cache):
    flat = np.asarray(dout).reshape(-1)
    dx = np.empty_like(flat)
    size = int(np.prod(cache.param_shape))
    dgamma, dbeta = np.zeros(size, flat.dtype), np.zeros(size, flat.dtype)
    for (xc, std, xhat, scale), index, where in zip(cache.steps, cache.rows, cache.param_index):
        dy = flat[index]
        m = dy.size
        # step 6: out = gamma * xhat + beta, gamma and beta shared along the row's groups
        np.add.at(dbeta, where, dy)
        np.add.at(dgamma, where, dy * xhat)
        dxhat = dy * scale
        # step 5: xhat = xc / std  (xc reaches xhat directly and through std)
        dxc = dxhat / std
        dstd = -np.sum(dxhat * xc) / std ** 2
        # step 4: std = sqrt(var + eps)
        dvar = dstd / (2 * std)
        # step 3: var = sum(xc**2) / M
        dxc = dxc + dvar * 2 * xc / m
        # step 2: xc = x - mean  (x reaches xc directly and through the mean)
        dmean = -np.sum(dxc)
        # step 1: mean = sum(x) / M
        dx[index] = dxc + dmean / m
    shape = cache.param_shape
    return (dx.reshape(cache.x_shape),
            None if cache.gamma is None else dgamma.reshape(shape),
            dbeta.reshape(shape) if cache.has_beta else None)


def layernorm_forward(x, gamma, beta, eps=1e-5, *, normalized_shape=None):
    """Layer norm, row by row: a row is one index of the leading axes, its values the trailing
    ``normalized_shape`` (gamma's or beta's shape unless given; one gamma and beta per value)."""
    x = as_float_array(x, "layernorm x")
    if normalized_shape is None:
        normalized_shape = np.shape(gamma if gamma is not None else beta)
    shape = (normalized_shape,) if np.ndim(normalized_shape) == 0 else tuple(normalized_shape)
    m = int(np.prod(shape))
    if x.shape[x.ndim - len(shape):] != shape or x.ndim <= len(shape):
        raise ValueError(f"layernorm: x of shape {x.shape} must end in {shape}")
    count = x.size // m
    rows = [np.arange(r * m, (r + 1) * m) for r in range(count)]
    return _forward(x, rows, [np.arange(m)] * count, gamma, beta, eps, shape)


def layernorm_backward(dout, cache):
    """Reverse of steps 6..1 for each row: dx, dgamma, dbeta (``normalized_shape`` or None)."""
    return _backward(dout, cache)


def groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5):
    """Group norm, row by row: a row is group g of sample n, the values of its C/G channels at
    every position (gamma and beta one per channel)."""
    x = as_float_array(x, "groupnorm x")
    n, c = x.shape[:2]
    if num_groups < 1 or c % num_groups:
        raise ValueError(f"groupnorm: {num_groups} groups do not divide {c} channels")
    positions = int(np.prod(x.shape[2:]))
    per = c // num_groups
    index = np.arange(x.size).reshape(n, c, positions)
    channel = np.broadcast_to(np.arange(c)[:, None], (c, positions))
    rows, where = [], []
    for i in range(n):
        for g in range(num_groups):
            channels = slice(g * per, (g + 1) * per)
            rows.append(index[i, channels].reshape(-1))
            where.append(channel[channels].reshape(-1))
    return _forward(x, rows, where, gamma, beta, eps, (c,))


def groupnorm_backward(dout, cache):
    """Reverse of steps 6..1 for each row: dx, dgamma (C,), dbeta (C,) (None where absent)."""
    return _backward(dout, cache)
