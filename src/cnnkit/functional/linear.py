"""Affine (fully connected) kernel.

Letters: N batch, D = d1*...*dk input features, M output features.
"""

from __future__ import annotations

import numpy as np

from ._utils import as_float_array, check_param, match_dtype

__all__ = ["affine_forward", "affine_backward"]


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
    d = int(np.prod(x.shape[1:], dtype=np.int64))
    if d != w.shape[0]:
        raise ValueError(f"affine: x of shape {x.shape} has D = {d} features per example "
                         f"but w of shape {w.shape} expects D = {w.shape[0]}")
    w = match_dtype(w, x)
    if b is not None:
        b = check_param(b, (w.shape[1],), x, "affine b")
    x2 = x.reshape(x.shape[0], d)                  # (N, D)
    out = x2 @ w                                   # (N, M)
    if b is not None:
        out += b
    return out, (x2, x.shape, w, b is not None)


def affine_backward(dout, cache, *, input_grad=True):
    """Gradients of the affine layer: dx (N, d1, ..., dk) (None if ``input_grad`` is False),
    dw (D, M), db (M,) or None."""
    x2, x_shape, w, has_bias = cache
    dx = (dout @ w.T).reshape(x_shape) if input_grad else None   # (N, D) -> (N, d1, ..., dk)
    dw = x2.T @ dout                               # (D, M)
    db = dout.sum(axis=0) if has_bias else None    # (M,)
    return dx, dw, db
