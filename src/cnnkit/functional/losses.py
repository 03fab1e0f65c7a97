"""Classification losses on class scores, and L2 weight regularisation.

Each loss takes ``scores`` (N, C) and integer labels ``y`` (N,) and returns
``(loss, dscores)``: the mean over the batch, and its gradient with respect to the scores
(DESIGN.md, "Semantics we chose"). They are functions, not kernels: there is no cache, because
the gradient is computed in the same pass.

Letters: N batch, C classes.
"""

from __future__ import annotations

import numpy as np

from ..checks import as_float_array, check_ndim, check_real

__all__ = ["softmax_loss", "svm_loss", "l2_regularization", "get_loss"]


def _check_scores_labels(scores, y, what: str):
    """Validate scores (N, C) floating and y (N,) integer labels in [0, C); return both arrays."""
    scores = as_float_array(scores, f"{what} scores")
    check_ndim(scores, 2, f"{what} scores (N, C)")
    n, c = scores.shape
    if n < 1 or c < 1:
        raise ValueError(f"{what}: scores must have at least one row and one class, "
                         f"got shape {scores.shape}")
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):  # bool is not an integer dtype here
        raise TypeError(f"{what}: labels y must be an integer array of class indices, "
                        f"got dtype {y.dtype}")
    check_ndim(y, 1, f"{what} labels y (N,)")
    if y.shape[0] != n:
        raise ValueError(f"{what}: scores has N = {n} rows but y has {y.shape[0]} labels")
    bad = np.flatnonzero((y < 0) | (y >= c))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{what}: label y[{i}] = {y[i]} is outside [0, {c}) "
                         f"(scores has C = {c} classes)")
    return scores, y


def softmax_loss(scores, y):
    """Softmax cross-entropy, averaged over the batch.

        L = (1/N) sum_n [ log sum_j exp(s[n, j]) - s[n, y_n] ]
        dL/ds[n, j] = (softmax(s[n])_j - [j == y_n]) / N

    Computed as a log-sum-exp after shifting each row by its maximum, so no exponential
    overflows and the log is never taken of a probability that underflowed to 0: scores of
    1e4 give a finite loss.

    Parameters
    ----------
    scores : (N, C) array, float32 or float64
    y : (N,) integer array, labels in [0, C)

    Returns
    -------
    loss : float
    dscores : (N, C) array, dtype of scores

    Raises
    ------
    ValueError
        If scores is not 2-D with N, C >= 1, y is not 1-D of length N, or a label is outside
        [0, C) (the message names the first one and its index).
    TypeError
        If scores is not floating point, or y is not an integer array (float or bool labels).

    Examples
    --------
    >>> import numpy as np
    >>> loss, dscores = softmax_loss(np.zeros((2, 4)), np.array([0, 3]))
    >>> bool(np.isclose(loss, np.log(4))), dscores.shape
    (True, (2, 4))
    """
    scores, y = _check_scores_labels(scores, y, "softmax_loss")
    n = scores.shape[0]
    rows = np.arange(n)
    shifted = scores - scores.max(axis=1, keepdims=True)                # (N, C), row max 0
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[rows, y].sum() / n
    dscores = np.exp(log_probs)                                          # softmax, a new array
    dscores[rows, y] -= 1
    dscores /= n
    return float(loss), dscores


def svm_loss(scores, y, margin=1.0):
    """Multiclass SVM (hinge) loss, CS231n's definition, averaged over the batch.

        L = (1/N) sum_n sum_{j != y_n} max(0, s[n, j] - s[n, y_n] + margin)
        dL/ds[n, j] = [s[n, j] - s[n, y_n] + margin > 0] / N               (j != y_n)
        dL/ds[n, y_n] = -(number of j != y_n with a positive margin term) / N

    At the hinge (a term exactly 0) the subgradient taken is 0, as in PyTorch's
    ``multi_margin_loss``; unlike it, the loss is not divided by C.

    Parameters
    ----------
    scores : (N, C) array, float32 or float64
    y : (N,) integer array, labels in [0, C)
    margin : real number, the required gap between the correct score and the others

    Returns
    -------
    loss : float
    dscores : (N, C) array, dtype of scores

    Raises
    ------
    ValueError
        As :func:`softmax_loss`, or if margin is not finite.
    TypeError
        As :func:`softmax_loss`, or if margin is not a real number.

    Examples
    --------
    >>> import numpy as np
    >>> loss, dscores = svm_loss(np.zeros((2, 4)), np.array([0, 3]))
    >>> loss, dscores.shape
    (3.0, (2, 4))
    """
    scores, y = _check_scores_labels(scores, y, "svm_loss")
    margin = check_real(margin, "svm_loss: margin")
    if not np.isfinite(margin):
        raise ValueError(f"svm_loss: margin must be finite, got {margin!r}")
    n = scores.shape[0]
    rows = np.arange(n)
    correct = scores[rows, y][:, None]                                   # (N, 1)
    margins = scores - correct + scores.dtype.type(margin)               # (N, C)
    margins[rows, y] = 0                                                 # j == y_n is not a term
    loss = np.maximum(margins, 0).sum() / n
    dscores = (margins > 0).astype(scores.dtype)                         # (N, C), 0 at the hinge
    dscores[rows, y] = -dscores.sum(axis=1)
    dscores /= n
    return float(loss), dscores


def l2_regularization(weights, reg):
    """L2 weight decay over a list of weight arrays (weights only: pass no biases).

        R = 0.5 * reg * sum_k sum(W_k ** 2),   dR/dW_k = reg * W_k

    The 0.5 makes the gradient ``reg * W``. Biases are not regularised (DESIGN.md); the caller
    chooses which arrays to pass, so leave them out.

    Parameters
    ----------
    weights : sequence of arrays (any shapes), e.g. ``[w1, w2, w3]``; not a single array
    reg : real number >= 0, the regularisation strength

    Returns
    -------
    loss : float
    grads : list of arrays, ``reg * W_k`` for each weight in order (new arrays, dtype of W_k)

    Raises
    ------
    ValueError
        If reg is negative or NaN.
    TypeError
        If weights is a single array rather than a sequence of them, an array is not floating
        point, or reg is not a real number.

    Examples
    --------
    >>> import numpy as np
    >>> loss, grads = l2_regularization([np.ones((2, 3)), np.full(4, 2.0)], reg=0.1)
    >>> round(loss, 12), grads[1].tolist()
    (1.1, [0.2, 0.2, 0.2, 0.2])
    """
    if isinstance(weights, np.ndarray):
        raise TypeError("l2_regularization: weights must be a sequence of arrays ([w1, w2, ...]), "
                        f"got a single array of shape {weights.shape}")
    reg = check_real(reg, "l2_regularization: reg")
    if not reg >= 0:
        raise ValueError(f"l2_regularization: reg must be >= 0, got {reg!r}")
    arrays = [as_float_array(w, f"l2_regularization weights[{k}]") for k, w in enumerate(weights)]
    loss = 0.5 * reg * sum(float(np.sum(w * w)) for w in arrays)
    grads = [w * w.dtype.type(reg) for w in arrays]
    return float(loss), grads


def get_loss(loss):
    """A loss function by name ("softmax" or "svm"); a callable is returned as it is.

    Raises ``ValueError`` for any other name.
    """
    if callable(loss):
        return loss
    losses = {"softmax": softmax_loss, "svm": svm_loss}
    if loss not in losses:
        raise ValueError(f"loss must be 'softmax', 'svm' or a callable, got {loss!r}")
    return losses[loss]
