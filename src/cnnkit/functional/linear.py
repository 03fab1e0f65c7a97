"""Affine (fully connected) kernel.

Letters: N batch, D = d1*...*dk input features, M output features.

A large layer splits each of its three products along an axis of the result, never along the
summed one, so no partial sums are combined: out and dx by blocks of their columns, dw by blocks
of its rows (:func:`blocks`); each block is one task for cnnkit's threads. A small layer
(under ``SPLIT_FLOPS``) is one GEMM.
"""

from __future__ import annotations

import math

import numpy as np

from .. import parallel
from ..checks import as_float_array, check_param, match_dtype

__all__ = ["affine_forward", "affine_backward"]

#: Multiply-adds (x2) from which a product is split into blocks; below it one GEMM call is
#: faster than waking threads (about 0.1 ms of GEMM on one core).
SPLIT_FLOPS = 1 << 23

#: Columns of a block: wide enough for BLAS to run at full speed on each.
BLOCK = 256


def blocks(size: int, flops: int) -> list[tuple[int, int]]:
    """``(lo, hi)`` blocks of an axis of ``size``: BLOCK wide when the product has ``flops``
    >= SPLIT_FLOPS, else the whole axis. Shapes alone decide, never the thread count."""
    return parallel.split(size, 1, BLOCK) if flops >= SPLIT_FLOPS else [(0, size)]


def _product(a, b, out, axis: int) -> np.ndarray:
    """``out = a @ b`` by blocks of out's ``axis`` (1: columns, from b's columns; 0: rows, from
    a's rows), one task each."""
    plan = blocks(out.shape[axis], 2 * a.shape[0] * a.shape[1] * b.shape[1])
    if len(plan) == 1:
        with parallel.blas_single_thread():
            return np.matmul(a, b, out=out)
    if axis == 1:
        task = lambda lo, hi: np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])   # noqa: E731
    else:
        task = lambda lo, hi: np.matmul(a[lo:hi], b, out=out[lo:hi])         # noqa: E731
    parallel.for_each(len(plan), lambda i, slot: task(*plan[i]))
    return out


def affine_forward(x, w, b=None):
    """Fully connected layer on inputs of any shape, flattened per example.

        out[n, m] = sum_d x[n, d] * w[d, m] + b[m],   x reshaped to (N, D), D = d1*...*dk

    Parameters
    ----------
    x : (N, d1, ..., dk) array
    w : (D, M) array, the notes' layout (the ``Linear`` module stores its transpose)
    b : (M,) array or None

    Returns
    -------
    out : (N, M) array
    cache : for ``affine_backward``

    Raises
    ------
    ValueError
        If x has no batch axis, or D = d1*...*dk differs from w's first dimension.

    Examples
    --------
    >>> import numpy as np
    >>> out, _ = affine_forward(np.ones((2, 3, 4)), np.ones((12, 5)), np.zeros(5))
    >>> out.shape
    (2, 5)
    """
    x = as_float_array(x, "affine x")
    w = as_float_array(w, "affine w")
    if x.ndim < 1:
        raise ValueError(f"affine x must have a batch axis, got shape {x.shape}")
    if w.ndim != 2:
        raise ValueError(f"affine w must be 2-D (D, M), got shape {w.shape}")
    d = math.prod(x.shape[1:])
    if d != w.shape[0]:
        raise ValueError(f"affine: x of shape {x.shape} has D = {d} features per example "
                         f"but w of shape {w.shape} expects D = {w.shape[0]}")
    w = match_dtype(w, x)
    if b is not None:
        b = check_param(b, (w.shape[1],), x, "affine b")
    x2 = x.reshape(x.shape[0], d)                  # (N, D)
    out = _product(x2, w, np.empty((x2.shape[0], w.shape[1]), x.dtype), axis=1)   # (N, M)
    if b is not None:
        out += b
    return out, (x2, x.shape, w, b is not None)


def affine_backward(dout, cache, *, input_grad=True):
    """Gradients of the affine layer: dx (N, d1, ..., dk) (None if ``input_grad`` is False),
    dw (D, M), db (M,) or None."""
    x2, x_shape, w, has_bias = cache
    dout = np.asarray(dout)
    dtype = np.result_type(dout, w)
    dx = None
    if input_grad:                                 # (N, D) -> (N, d1, ..., dk)
        dx = _product(dout, w.T, np.empty((dout.shape[0], w.shape[0]), dtype), axis=1)
        dx = dx.reshape(x_shape)
    dw = _product(x2.T, dout, np.empty((x2.shape[1], dout.shape[1]), dtype), axis=0)  # (D, M)
    db = dout.sum(axis=0) if has_bias else None    # (M,)
    return dx, dw, db
