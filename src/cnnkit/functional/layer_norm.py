"""Layer and group normalisation: each sample normalised by statistics of its own values, so the
output of a sample does not depend on the rest of the batch (unlike batch norm), and training and
eval compute the same thing.

    layer norm   x (N, *, *S): each sample's values over the trailing axes S (PyTorch's
                 ``normalized_shape``), a scale and a shift per element of S
    group norm   x (N, C, *):   each sample's channels cut into G groups of C/G, each group
                 normalised over its (C/G) * H * W values, a scale and a shift per channel

Instance norm is group norm with G = C; the Group Norm paper's layer norm of a volume is G = 1.

Both are one computation on rows. A row is the M values that share a mean and a variance: layer
norm views x as (R, 1, M) with M = prod(S) and R the rest; group norm as (N, G, M) with
M = (C/G) * L, L the positions per channel. For a row,

    mean = sum_i x_i / M,   var = sum_i (x_i - mean)**2 / M        (biased, as batch norm's)
    xhat = (x - mean) / sqrt(var + eps),   out = gamma * xhat + beta

with gamma and beta indexed by the element of S (layer norm) or by the channel (group norm).
A row of one value has var = 0 and xhat = 0, so its output is beta, as PyTorch's.

How each computes it: layer norm, whose rows are a sample's features (an FC layer's D, a
volume's last axes), takes the mean, then the variance about it, and keeps xhat for the
backward. Group norm, whose rows are long (a group's C/G maps), reads x twice, as batch norm's
kernel does: per-channel sums of x and x**2 (matrix-vector products, no product array), added
per group in float64 (again about the mean where their difference cancels), then
``out = x * a + b`` with a and b per (sample, channel); its backward keeps x, not xhat. (Blocks
of samples small enough for the core's cache inside each task, as batch norm's passes have, ran
slower here: on the 2-core AMD EPYC, 64 x 32 x 16 x 16 float32 forward and backward took
0.39 + 0.62 ms in one task and 0.48 + 0.71 ms in blocks of 512 KiB, the overhead of the small
per-block arrays outweighing the cache.)

The backward, derived as the notes derive batch norm's: the row is batch norm's "feature" and M
its m. With dxhat = gamma * dout (each value times its own gamma),

    dvar  = sum(dxhat * (x - mean)) * (-1/2) * invstd**3
    dmean = -invstd * sum(dxhat) + dvar * (-2/M) * sum(x - mean)            (the last sum is 0)
    dx    = dxhat * invstd + dvar * 2 * (x - mean) / M + dmean / M
          = invstd / M * (M * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))

(x - mean = xhat / invstd), the sums over the row's M values. Unlike batch norm, gamma varies
inside a row (per element or per channel), so the sums are of dxhat, not of dout. The parameter
gradients sum over everything that shares the parameter:

    dbeta[j] = sum dout over the values that use beta[j],   dgamma[j] = sum dout * xhat likewise

(over the R rows for layer norm; over the N samples and H*W positions for group norm).
:mod:`cnnkit.reference.layer_norm` walks the same graph one step at a time.

Samples are independent, so each pass runs over chunks of samples on cnnkit's threads
(:mod:`cnnkit.parallel`); the parameter gradients are per-chunk sums added in chunk order, in
float64, so the bits do not depend on the thread count.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from .. import parallel
from ..checks import as_float_array, check_dout, check_param, check_real
from .norm import CANCEL_RATIO, _row_dots, _row_sums, check_eps

__all__ = ["layernorm_forward", "layernorm_backward", "groupnorm_forward", "groupnorm_backward"]


class GroupNormCache(NamedTuple):
    """What ``groupnorm_backward`` needs."""

    x: np.ndarray                # (N, C, L) the input itself (a view when it is contiguous)
    mean: np.ndarray             # (N, G) float64
    invstd: np.ndarray           # (N, G) float64, 1 / sqrt(var + eps)
    gamma: np.ndarray | None     # (C,)
    has_beta: bool
    x_shape: tuple


class LayerNormCache(NamedTuple):
    """What ``layernorm_backward`` needs."""

    xhat: np.ndarray             # (R, 1, M) the normalised input
    invstd: np.ndarray           # (R, 1) 1 / sqrt(var + eps) of each row, x's dtype
    gamma: np.ndarray | None     # (M,), gamma flattened
    has_beta: bool
    param_shape: tuple           # normalized_shape
    x_shape: tuple


# ----------------------------------------------------------------------------- checks

def _optional_param(arr, shape, x, what):
    return None if arr is None else check_param(arr, shape, x, what)


def check_normalized_shape(value, what: str) -> tuple:
    """An int or a sequence of ints >= 1, as a tuple (PyTorch accepts both)."""
    items = (value,) if isinstance(value, numbers.Integral) else value
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"{what} normalized_shape must be an int or a tuple of ints, "
                        f"got {value!r}") from None
    if not items or not all(isinstance(s, numbers.Integral) and not isinstance(s, (bool, np.bool_))
                            and s >= 1 for s in items):
        raise ValueError(f"{what} normalized_shape must be one or more sizes >= 1, got {value!r}")
    return tuple(int(s) for s in items)


# ----------------------------------------------------------------------------- the rows

def _normalise_rows(x3: np.ndarray, eps: float, xhat: np.ndarray, invstd: np.ndarray) -> None:
    """For x3 (n, G, M): ``xhat = (x - mean) * invstd`` per row into xhat (n, G, M), and
    ``invstd`` (n, G). Two passes: the mean, then the variance of x - mean (M >= 1: a
    normalized shape has no empty axis)."""
    mean = x3.mean(axis=2, keepdims=True)                         # (n, G, 1)
    np.subtract(x3, mean, out=xhat)                               # x - mean
    var = np.square(xhat).mean(axis=2)                            # (n, G), biased
    invstd[...] = 1.0 / np.sqrt(var + eps)
    xhat *= invstd[:, :, None]


def _row_gradient(d3: np.ndarray, xhat3: np.ndarray, invstd: np.ndarray, dx3: np.ndarray) -> None:
    """``dx = invstd/M * (M*dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))`` per row, for
    dxhat d3 (n, G, M) (already times gamma), into dx3 (n, G, M)."""
    m = d3.shape[2]
    total = d3.sum(axis=2, keepdims=True)                         # (n, G, 1)
    dot = (d3 * xhat3).sum(axis=2, keepdims=True)                 # (n, G, 1)
    np.multiply(xhat3, dot, out=dx3)
    dx3 += total
    np.subtract(d3 * m, dx3, out=dx3)
    dx3 *= (invstd / m)[:, :, None]


def _param_sums(array: np.ndarray, task, size: int):
    """The sum of ``task(lo, hi)`` -> (2, size) float64 (dgamma row, dbeta row) over the chunks
    of ``array``'s samples that :func:`cnnkit.parallel.over_batch` would run, added in chunk
    order; each task also writes its chunk's dx."""
    n = array.shape[0]
    plan = parallel.split(n, array.nbytes // max(1, n))
    if not plan:
        return np.zeros((2, size))
    return parallel.ordered_sum(len(plan), lambda i, slot: task(*plan[i]),
                                work_bytes=array.nbytes)


# ----------------------------------------------------------------------------- layer norm

def layernorm_forward(x, gamma, beta, eps=1e-5, *, normalized_shape=None):
    """Layer normalisation: each sample normalised over its trailing axes (PyTorch's
    ``layer_norm``).

        mean, var over the values x[r, :] of each row r (the trailing axes ``normalized_shape``,
        M values; var biased),   out = gamma * (x - mean) / sqrt(var + eps) + beta

    with gamma and beta of shape ``normalized_shape`` (one per element), which is theirs unless
    given. For x (N, D) and gamma (D,), each sample is a row (CS231n's layer norm); for
    x (N, C, H, W) and gamma (C, H, W), each sample is normalised over its whole volume.

    Parameters
    ----------
    x : array (..., *normalized_shape), float32 or float64, at least one axis before them
    gamma, beta : arrays of shape ``normalized_shape`` (in x's dtype), or None for no scale
        (1) / no shift (0)
    eps : float > 0
    normalized_shape : int or tuple of ints, the trailing axes of x; needed only when gamma and
        beta are both None (default: their shape)

    Returns
    -------
    out : array, shape and dtype of x
    cache : for ``layernorm_backward``

    Raises
    ------
    ValueError
        If x's trailing axes are not ``normalized_shape`` or x has no axis before them, gamma or
        beta has another shape, or none of the three gives the shape; eps <= 0.
    TypeError
        If an array is not floating point.

    Examples
    --------
    >>> out, _ = layernorm_forward(np.array([[1.0, 2.0, 3.0]]), None, None, normalized_shape=3)
    >>> np.round(out, 4)
    array([[-1.2247,  0.    ,  1.2247]])
    """
    what = "layernorm"
    x = as_float_array(x, f"{what} x")
    if normalized_shape is None:
        given = next((np.shape(a) for a in (gamma, beta) if a is not None), None)
        if given is None:
            raise ValueError(f"{what}: give normalized_shape when gamma and beta are both None")
        normalized_shape = given
    shape = check_normalized_shape(normalized_shape, what)
    k = len(shape)
    if x.ndim <= k or x.shape[x.ndim - k:] != shape:
        raise ValueError(f"{what}: x of shape {x.shape} must end in normalized_shape {shape} "
                         f"with a batch axis before it")
    gamma = _optional_param(gamma, shape, x, f"{what} gamma")
    beta = _optional_param(beta, shape, x, f"{what} beta")
    eps = check_eps(eps, what)
    m = math.prod(shape)
    x3 = np.ascontiguousarray(x).reshape(-1, 1, m)               # (R, 1, M)
    rows = x3.shape[0]
    xhat = np.empty_like(x3)
    invstd = np.empty((rows, 1), x.dtype)
    out = np.empty_like(x3)
    g = None if gamma is None else gamma.reshape(m)
    b = None if beta is None else beta.reshape(m)

    def task(lo, hi):
        _normalise_rows(x3[lo:hi], eps, xhat[lo:hi], invstd[lo:hi])
        o = out[lo:hi, 0]
        if g is None:
            o[...] = xhat[lo:hi, 0]
        else:
            np.multiply(xhat[lo:hi, 0], g, out=o)
        if b is not None:
            o += b

    parallel.over_batch(x3, task)
    return out.reshape(x.shape), LayerNormCache(xhat, invstd, g, b is not None, shape, x.shape)


def layernorm_backward(dout, cache):
    """Gradients of layer norm: dx (shape of x), dgamma and dbeta (``normalized_shape``, None
    where the forward had none). The formulas are in the module docstring:

        dxhat = gamma * dout,   dx = invstd/M * (M*dxhat - sum(dxhat) - xhat * sum(dxhat*xhat)),
        dgamma = sum over rows of dout * xhat,   dbeta = sum over rows of dout
    """
    xhat, invstd, gamma, has_beta, shape, x_shape = cache
    rows, _, m = xhat.shape
    dtype = xhat.dtype
    d3 = np.ascontiguousarray(check_dout(dout, x_shape, "layernorm_backward"),
                              dtype=dtype).reshape(rows, 1, m)
    dx = np.empty_like(xhat)

    def task(lo, hi):
        d, xh = d3[lo:hi], xhat[lo:hi]
        sums = np.empty((2, m))
        sums[0] = (d * xh).sum(axis=(0, 1), dtype=np.float64)          # dgamma
        sums[1] = d.sum(axis=(0, 1), dtype=np.float64)                 # dbeta
        _row_gradient(d if gamma is None else d * gamma, xh, invstd[lo:hi], dx[lo:hi])
        return sums

    sums = _param_sums(xhat, task, m)
    dgamma = None if gamma is None else sums[0].astype(dtype).reshape(shape)
    dbeta = sums[1].astype(dtype).reshape(shape) if has_beta else None
    return dx.reshape(x_shape), dgamma, dbeta


# ----------------------------------------------------------------------------- group norm

def groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5):
    """Group normalisation (Wu & He 2018): the C channels of each sample cut into ``num_groups``
    groups of C/G consecutive channels, each group normalised over its (C/G) * H * W values, then
    a scale and a shift per channel (PyTorch's ``group_norm``).

        mean[n, g], var[n, g] over x[n, channels of g, ...],
        out[n, c, ...] = gamma[c] * (x[n, c, ...] - mean[n, g(c)]) / sqrt(var[n, g(c)] + eps)
                         + beta[c]

    G = C is instance norm; G = 1 normalises each sample over its whole volume (the Group Norm
    paper's layer norm, with per-channel gamma and beta).

    Parameters
    ----------
    x : (N, C, *) array, float32 or float64 (N, C), (N, C, L), (N, C, H, W), ...
    gamma, beta : (C,) arrays (in x's dtype), or None for no scale / no shift
    num_groups : int >= 1 dividing C
    eps : float > 0

    Returns
    -------
    out : array, shape and dtype of x
    cache : for ``groupnorm_backward``

    Raises
    ------
    ValueError
        If x has fewer than 2 axes, num_groups < 1 or does not divide C, gamma or beta is not
        (C,), or eps <= 0.
    TypeError
        If an array is not floating point or num_groups is not an int.

    Examples
    --------
    >>> x = np.arange(8.0).reshape(1, 4, 2)             # 2 groups of 2 channels x 2 positions
    >>> out, _ = groupnorm_forward(x, None, None, 2)
    >>> np.round(out[0], 4)
    array([[-1.3416, -0.4472],
           [ 0.4472,  1.3416],
           [-1.3416, -0.4472],
           [ 0.4472,  1.3416]])
    """
    what = "groupnorm"
    x = as_float_array(x, f"{what} x")
    if x.ndim < 2:
        raise ValueError(f"{what} x must be (N, C, *) with at least 2 axes, got shape {x.shape}")
    c = x.shape[1]
    groups = check_groups(num_groups, c, what)
    gamma = _optional_param(gamma, (c,), x, f"{what} gamma for x of shape {x.shape}")
    beta = _optional_param(beta, (c,), x, f"{what} beta for x of shape {x.shape}")
    eps = check_eps(eps, what)
    n, positions = x.shape[0], math.prod(x.shape[2:])
    x3 = np.ascontiguousarray(x).reshape(n, c, positions)                # (N, C, L)
    out = np.empty_like(x3)
    mean, invstd = np.zeros((n, groups)), np.zeros((n, groups))          # float64
    ones = np.ones(positions, x.dtype)

    def task(lo, hi):
        xs = x3[lo:hi]
        m_, v_ = _group_statistics(xs, groups, ones)
        mean[lo:hi], invstd[lo:hi] = m_, 1.0 / np.sqrt(v_ + eps)
        a, b = _scale_shift(mean[lo:hi], invstd[lo:hi], gamma, beta, c)  # (n, C) each
        o = out[lo:hi]
        np.multiply(xs, a.astype(x.dtype)[:, :, None], out=o)
        o += b.astype(x.dtype)[:, :, None]

    if positions:
        parallel.over_batch(x3, task)
    return out.reshape(x.shape), GroupNormCache(x3, mean, invstd, gamma, beta is not None,
                                                x.shape)


def groupnorm_backward(dout, cache):
    """Gradients of group norm: dx (shape of x), dgamma and dbeta (C,) (None where the forward
    had none). With dxhat = gamma[c] * dout, per row (sample n, group g) of M values:

        dx = invstd/M * (M*dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)),
        dgamma[c] = sum_{n, positions} dout * xhat,   dbeta[c] = sum_{n, positions} dout

    Every sum comes from two per-channel sums, ``ds[n, c] = sum_l dout`` and
    ``dxs[n, c] = sum_l dout * x``, as sum(dout * xhat) over a channel is
    invstd * (dxs - mean * ds); then dx = A * dout + B * x + C with A, B, C per (n, c):

        A = invstd * gamma[c],   B = -invstd**2 * sum(dxhat * xhat) / M,
        C = -invstd * sum(dxhat) / M - B * mean
    """
    x3, mean, invstd, gamma, has_beta, x_shape = cache
    n, c, positions = x3.shape
    groups = mean.shape[1]
    per, dtype = c // groups, x3.dtype
    m = per * positions
    d3 = np.ascontiguousarray(check_dout(dout, x_shape, "groupnorm_backward"),
                              dtype=dtype).reshape(n, c, positions)
    dx = np.empty_like(x3)
    ones = np.ones(positions, dtype)
    g = np.ones(c) if gamma is None else gamma.astype(np.float64)

    def task(lo, hi):
        d, xs, k = d3[lo:hi], x3[lo:hi], hi - lo
        ds, dxs = _channel_sums(d, xs, ones)
        mean_c = np.repeat(mean[lo:hi], per, axis=1)                       # (k, C) float64
        invstd_c = np.repeat(invstd[lo:hi], per, axis=1)
        ds64 = ds.astype(np.float64)
        centred = dxs - mean_c * ds64                                      # sum dout * (x - mean)
        sums = np.stack([(centred * invstd_c).sum(axis=0), ds64.sum(axis=0)])
        total = (g * ds64).reshape(k, groups, per).sum(axis=2)             # sum(dxhat)
        dot = (g * centred).reshape(k, groups, per).sum(axis=2) * invstd[lo:hi]  # sum(dxhat*xhat)
        b_g = -invstd[lo:hi] ** 2 * dot / m                                # (k, G)
        c_g = -invstd[lo:hi] * total / m - b_g * mean[lo:hi]
        a = (invstd_c * g).astype(dtype)[:, :, None]
        b = np.repeat(b_g, per, axis=1).astype(dtype)[:, :, None]
        shift = np.repeat(c_g, per, axis=1).astype(dtype)[:, :, None]
        out = dx[lo:hi]
        np.multiply(d, a, out=out)
        out += xs * b
        out += shift
        return sums

    sums = _param_sums(x3, task, c) if positions else np.zeros((2, c))
    dgamma = None if gamma is None else sums[0].astype(dtype)
    dbeta = sums[1].astype(dtype) if has_beta else None
    return dx.reshape(x_shape), dgamma, dbeta


def _group_statistics(x3: np.ndarray, groups: int, ones: np.ndarray):
    """The mean and biased variance of each group of x3 (n, C, L), float64 (n, G): from
    per-channel sums of x and x**2 (float32 matrix-vector products for float32 x), added per
    group in float64,

        mean = sum x / M,   var = sum x**2 / M - mean**2,

    then, for the groups where that difference cancels (mean**2 > CANCEL_RATIO * var, as batch
    norm's), again about the mean: var = sum (x - mean)**2 / M."""
    k, c, positions = x3.shape
    m = c // groups * positions
    sums, squares = _channel_sums(x3, x3, ones)
    mean = sums.reshape(k, groups, -1).sum(axis=2, dtype=np.float64) / m
    var = np.maximum(squares.reshape(k, groups, -1).sum(axis=2, dtype=np.float64) / m
                     - mean * mean, 0.0)
    again = np.isfinite(mean) & ~(np.isfinite(var) & (mean * mean <= CANCEL_RATIO * var))
    if again.any():
        rows = x3.reshape(k, groups, m)[again]                            # (r, M), a copy
        centred = rows - mean[again].astype(x3.dtype)[:, None]
        shift = centred.mean(axis=1, dtype=np.float64)
        mean[again] += shift
        var[again] = np.maximum(np.square(centred).mean(axis=1, dtype=np.float64)
                                - shift * shift, 0.0)
    return mean, var


def _channel_sums(a3: np.ndarray, b3: np.ndarray, ones: np.ndarray):
    """``sum_l a3[n, c, l]`` and ``sum_l a3 * b3`` for (k, C, L) arrays -> two (k, C) arrays,
    by batch norm's row sums (matrix-vector products, no product array)."""
    sums, dots = np.empty(a3.shape[:2], a3.dtype), np.empty(a3.shape[:2], a3.dtype)
    _row_sums(a3, sums, ones)
    _row_dots(a3, b3, dots)
    return sums, dots


def _scale_shift(mean, invstd, gamma, beta, c: int):
    """``out = x * a + b`` per (sample, channel): a = invstd * gamma[c], b = beta[c] - mean * a,
    float64 (k, C) from the group statistics (k, G)."""
    per = c // mean.shape[1]
    a = np.repeat(invstd, per, axis=1)
    if gamma is not None:
        a = a * gamma.astype(np.float64)
    b = -np.repeat(mean, per, axis=1) * a
    if beta is not None:
        b += beta.astype(np.float64)
    return a, b


def check_groups(num_groups, channels: int, what: str) -> int:
    """``num_groups`` as an int >= 1 that divides ``channels``; one line naming both otherwise."""
    if isinstance(num_groups, (bool, np.bool_)) or not isinstance(num_groups, numbers.Integral):
        raise TypeError(f"{what} num_groups must be an int, got {num_groups!r}")
    if num_groups < 1:
        raise ValueError(f"{what} num_groups must be >= 1, got {num_groups!r}")
    if channels % num_groups:
        raise ValueError(f"{what}: num_groups {num_groups} must divide the {channels} channels "
                         f"into equal groups")
    return int(num_groups)
