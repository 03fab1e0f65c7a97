"""Dropout in PaddlePaddle's two modes, as Torch7's v1/v2 pair. Any input shape.

``p`` is the probability to DROP a unit. The two modes differ only in where the factor (1 - p)
that keeps the expected activation the same is applied:

    mode                  training                       eval
    upscale_in_train      x * keep / (1 - p)  (default)  x
    downscale_in_infer    x * keep                       x * (1 - p)

The cache is the factor ``out / x`` itself (the scaled mask, or a scalar in eval), so the
backward is one line.
"""

from __future__ import annotations

import numpy as np

from ..checks import as_float_array, check_dout, check_real, check_rng
from ..parallel import elementwise, empty_result

__all__ = ["dropout_forward", "dropout_backward"]

MODES = ("upscale_in_train", "downscale_in_infer")


def dropout_forward(x, p, rng, *, mode="upscale_in_train", training=True, rows=None):
    """Drop each unit with probability p in training; rescale so that E[out] matches eval.

        keep = rng.random(x.shape) >= p                 (each unit kept with probability 1 - p)
        upscale_in_train:    train  out = x * keep / (1 - p)    eval  out = x
        downscale_in_infer:  train  out = x * keep              eval  out = x * (1 - p)

    With p == 1 every unit is dropped and upscale_in_train's scale is taken as 0 (never inf or
    nan). The uniforms are drawn in float64 whatever x's dtype, so a seed gives the same mask for
    float32 and float64 input.

    Parameters
    ----------
    x : array of any shape, float32 or float64
    p : float in [0, 1], the probability to drop a unit
    rng : numpy.random.Generator, the only source of randomness; not consumed when
        ``training=False``, but required all the same
    mode : "upscale_in_train" (default) or "downscale_in_infer"
    training : bool. False gives the deterministic eval behaviour of ``mode``.
    rows : optional ``(start, total)``: x holds rows ``start : start + N`` of a batch of
        ``total`` rows (one rank's shard in data-parallel training). The uniforms are drawn for
        the whole (total, ...) batch and x's rows taken from them, so each row gets the mask one
        process training on the whole batch would give it, and ``rng`` advances as it would
        there.

    Returns
    -------
    out : array, shape and dtype of x
    cache : for ``dropout_backward``: the scaled mask ``keep / (1 - p)`` or ``keep`` (shape and
        dtype of x) in training, the scalar factor (1 or 1 - p, x's dtype) in eval

    Raises
    ------
    ValueError
        If p is outside [0, 1], mode is not one of the two, or ``rows`` does not lie inside
        its batch.
    TypeError
        If x is not floating point, p is not a real number, rng is not a
        ``numpy.random.Generator`` (a seed or the ``np.random`` module is not), or training is
        not a bool.

    Examples
    --------
    >>> import numpy as np
    >>> out, mask = dropout_forward(np.ones((4, 5)), 0.5, np.random.default_rng(0))
    >>> out.shape, mask.shape
    ((4, 5), (4, 5))
    """
    x = as_float_array(x, "dropout x")
    p = check_real(p, "dropout p (the probability to drop)")
    if not 0 <= p <= 1:
        raise ValueError(f"dropout p is the probability to drop a unit and must be in [0, 1], "
                         f"got {p!r}")
    if mode not in MODES:
        raise ValueError(f"dropout mode must be one of {MODES}, got {mode!r}")
    check_rng(rng, "dropout")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"dropout training must be a bool, got {training!r}")
    dtype = x.dtype.type

    if not training:
        factor = dtype(1.0 if mode == "upscale_in_train" else 1.0 - p)
        return x * factor, factor

    # The uniforms are drawn on this thread, in one call, so that a seed gives the same mask
    # on any thread count; the threads make the mask and the product from them.
    if rows is None:
        uniforms = rng.random(x.shape)                       # shape of x, float64 in [0, 1)
    else:
        start, total = rows
        if not 0 <= start <= start + len(x) <= total:
            raise ValueError(f"dropout rows: x's {len(x)} rows from {start} do not lie inside "
                             f"a batch of {total}")
        uniforms = rng.random((total, *x.shape[1:]))[start:start + len(x)]
    if mode == "upscale_in_train":
        # p == 1 keeps nothing, so 0 * anything is the right answer; 1/(1-p) would be inf.
        scale = dtype(0.0 if p == 1 else 1.0 / (1.0 - p))
    else:
        scale = dtype(1.0)
    mask = np.empty(x.shape, x.dtype)                        # 0 or scale, dtype of x
    out = np.empty(x.shape, x.dtype)

    def apply(out, mask, x, u):
        np.multiply(u >= p, scale, out=mask)
        np.multiply(x, mask, out=out)

    elementwise(apply, out, mask, x, uniforms)
    return out, mask


def dropout_backward(dout, cache):
    """``dx = dout * cache`` (the scaled mask, or the eval factor); shape of x."""
    if not (isinstance(cache, np.ndarray) and cache.ndim):
        return dout * cache                                   # eval: one factor
    dout = check_dout(dout, cache.shape, "dropout_backward")
    return elementwise(lambda dx, d, mask: np.multiply(d, mask, out=dx),
                       empty_result(dout, cache), dout, cache)
