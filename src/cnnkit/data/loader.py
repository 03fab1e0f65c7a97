"""Splitting a data set and cutting it into mini-batches, with every random draw from one Generator.

Each epoch of :class:`BatchLoader` visits a fresh full permutation of the examples, so every
example is seen exactly once per epoch. (The CS231n Solver samples each batch with
``np.random.choice`` and replacement: some examples are seen twice in an "epoch", others never.)
"""

from __future__ import annotations

import numbers

import numpy as np

from ..checks import check_rng
from .source import split_indices

__all__ = ["train_val_split", "BatchLoader"]


def _check_pair(x, y, what: str):
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"{what}: x and y must be arrays with an example axis, got shapes "
                         f"{x.shape} and {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"{what}: x holds {len(x)} examples but y holds {len(y)}")
    return x, y


def train_val_split(x, y, val_size, rng):
    """Hold out a random part of (x, y) for validation.

        perm = rng.permutation(N);  val = perm[:V],  train = perm[V:]

    Parameters
    ----------
    x : (N, ...) array
    y : (N,) array
    val_size : int V in [0, N - 1], or a float fraction in [0, 1) giving V = round(fraction * N)
        (the training part always keeps one example at least)
    rng : numpy.random.Generator

    Returns
    -------
    (x_train, y_train) : (N - V, ...) and (N - V,), in the permutation's order
    (x_val, y_val) : (V, ...) and (V,)

    Raises
    ------
    TypeError
        If ``val_size`` is neither an int nor a float (bools included) or ``rng`` is not a
        Generator.
    ValueError
        If x and y differ in length, or ``val_size`` is out of range.

    Examples
    --------
    >>> (xt, yt), (xv, yv) = train_val_split(np.zeros((10, 3)), np.arange(10), 0.2,
    ...                                      np.random.default_rng(0))
    >>> xt.shape, xv.shape
    ((8, 3), (2, 3))
    """
    x, y = _check_pair(x, y, "train_val_split")
    train, val = split_indices(len(x), val_size, rng, "train_val_split")
    return (x[train], y[train]), (x[val], y[val])


class BatchLoader:
    """Mini-batches (xb, yb) of (x, y), one epoch per iteration.

    With ``shuffle`` each ``iter(loader)`` draws a fresh full permutation of the N examples from
    ``loader.rng`` (``iter()`` draws it), so every example appears exactly once per epoch,
    in a different order each epoch. Without it the batches follow the data's order. The last
    batch holds the N % batch_size left over, unless ``drop_last``. ``transform(xb, rng)``, e.g.
    an :class:`~cnnkit.data.Augment`, is applied to each batch with the same ``rng``.

    Every draw comes from ``loader.rng``, so saving ``loader.rng.bit_generator.state`` before
    an epoch and restoring it later replays that epoch's batch order and augmentation.

    Parameters
    ----------
    x : (N, ...) array
    y : (N,) array
    batch_size : int >= 1 (with ``drop_last``, at most N)
    shuffle : bool
    rng : numpy.random.Generator, optional. Defaults to a freshly seeded one
        (``np.random.default_rng()``; not reproducible).
    drop_last : bool. Skip the final batch when it is smaller than ``batch_size``.
    transform : callable ``(xb, rng) -> xb``, optional

    Yields
    ------
    xb : (B, ...) array, a copy of the selected examples (B = batch_size, or fewer for the last)
    yb : (B,) array

    Raises
    ------
    TypeError
        If ``batch_size`` is not an int, ``rng`` is not a Generator, or ``transform`` is not
        callable.
    ValueError
        If x and y differ in length, there are no examples, ``batch_size`` < 1, or
        ``drop_last`` leaves no batch at all.

    Examples
    --------
    >>> loader = BatchLoader(np.zeros((10, 1, 4, 4)), np.arange(10), 4,
    ...                      rng=np.random.default_rng(0))
    >>> len(loader), [len(yb) for _, yb in loader]
    (3, [4, 4, 2])
    """

    def __init__(self, x, y, batch_size, *, shuffle=True, rng=None, drop_last=False,
                 transform=None):
        self.x, self.y = _check_pair(x, y, "BatchLoader")
        n = len(self.x)
        if n == 0:
            raise ValueError("BatchLoader: no examples")
        if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, numbers.Integral):
            raise TypeError(f"BatchLoader: batch_size must be an int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"BatchLoader: batch_size must be >= 1, got {batch_size}")
        if drop_last and batch_size > n:
            raise ValueError(f"BatchLoader: drop_last with batch_size {batch_size} > {n} "
                             f"examples leaves no batch")
        if rng is None:
            rng = np.random.default_rng()
        check_rng(rng, "BatchLoader")
        if transform is not None and not callable(transform):
            raise TypeError(f"BatchLoader: transform must be callable (xb, rng) -> xb, "
                            f"got {transform!r}")
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), bool(shuffle), drop_last
        self.rng, self.transform = rng, transform

    def __len__(self) -> int:
        """Batches per epoch."""
        n, b = len(self.x), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self):
        # The permutation is drawn here, by iter(), not lazily at the first batch.
        order = self.rng.permutation(len(self.x)) if self.shuffle else np.arange(len(self.x))
        return self._batches(order)

    def _batches(self, order):
        b = self.batch_size
        for start in range(0, len(self) * b, b):
            idx = order[start:start + b]
            xb, yb = self.x[idx], self.y[idx]
            if self.transform is not None:
                xb = self.transform(xb, self.rng)
            yield xb, yb

    def __repr__(self):
        return (f"BatchLoader({len(self.x)} examples, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, "
                f"transform={self.transform!r})")
