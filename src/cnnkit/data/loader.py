"""Splitting a data set and cutting it into mini-batches, with every random draw from one Generator.

:class:`BatchOrder` is cnnkit's one batching path: a fresh full permutation of the examples per
epoch, cut into slices of the batch size, with the position inside the epoch as a state for
checkpoints. :class:`BatchLoader`, the Trainer and the experiments all take their batches from it,
so every example is seen exactly once per epoch. (The CS231n Solver samples each batch with
``np.random.choice`` and replacement: some examples are seen twice in an "epoch", others never.)
"""

from __future__ import annotations

import numbers

import numpy as np

from ..checks import check_rng
from .source import split_indices

__all__ = ["train_val_split", "BatchOrder", "BatchLoader"]


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


class BatchOrder:
    """Mini-batches of the indices 0 .. N-1, epoch after epoch: an epoch's order and the position
    in it. The one batching path of cnnkit: :class:`BatchLoader`, the Trainer
    (:mod:`cnnkit.train`) and the experiments (:mod:`cnnkit.experiments`) cut batches here.

        order   = rng.permutation(N)   (arange(N) without shuffle), drawn as an epoch starts
        batch b = order[b*B : (b+1)*B]               b = 0 .. K - 1
        K       = ceil(N / B),  or floor(N / B) with drop_last (the last N % B then skipped)

    Every example appears exactly once per epoch (at most once with ``drop_last``). The
    permutation is the only draw from ``rng``: one per epoch, none without shuffle.

    ``next(batches)`` gives the next batch's indices; when no epoch is under way (``order`` is
    None) or the current one is used up (``batch == K``) it first starts one, so the draw comes
    when the epoch's first batch is asked for, and iterating never ends. :meth:`start_epoch`
    starts one at once. ``state_dict()`` / ``load_state_dict()`` save and restore the position,
    so a run stopped after batch b of an epoch goes on with batch b + 1 of the same order.

    Parameters
    ----------
    n : int N >= 1, the number of examples
    batch_size : int B >= 1 (with ``drop_last``, at most N)
    rng : numpy.random.Generator; may be None without ``shuffle``
    shuffle : bool. Without it every epoch's order is arange(N).
    drop_last : bool. Skip the final batch when it is smaller than B.
    what : the name error messages begin with (the caller's, e.g. "BatchLoader")

    Attributes
    ----------
    order : (N,) int array, the current epoch's order; None before the first epoch
    batch : int in [0, K], the batches of that epoch taken so far

    Raises
    ------
    TypeError
        If ``n`` or ``batch_size`` is not an int, or ``rng`` is not a Generator (with shuffle).
    ValueError
        If N < 1, B < 1, or ``drop_last`` with B > N leaves no batch at all.

    Examples
    --------
    >>> batches = BatchOrder(10, 4, np.random.default_rng(0))
    >>> len(batches), [len(next(batches)) for _ in range(4)], batches.batch
    (3, [4, 4, 2, 4], 1)
    """

    def __init__(self, n, batch_size, rng=None, *, shuffle=True, drop_last=False,
                 what="BatchOrder"):
        for name, value in (("n", n), ("batch_size", batch_size)):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{what}: {name} must be an int, got {value!r}")
        if n < 1:
            raise ValueError(f"{what}: no examples")
        if batch_size < 1:
            raise ValueError(f"{what}: batch_size must be >= 1, got {batch_size}")
        if drop_last and batch_size > n:
            raise ValueError(f"{what}: drop_last with batch_size {batch_size} > {n} "
                             f"examples leaves no batch")
        if shuffle:
            check_rng(rng, what)
        self.n, self.batch_size, self.rng = int(n), int(batch_size), rng
        self.shuffle, self.drop_last, self.what = bool(shuffle), bool(drop_last), what
        self.order, self.batch = None, 0

    def __len__(self) -> int:
        """K, the batches per epoch."""
        n, b = self.n, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def start_epoch(self) -> np.ndarray:
        """Start an epoch: draw its (N,) order (one ``rng.permutation(N)``) and return it."""
        self.order = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        self.batch = 0
        return self.order

    def __next__(self) -> np.ndarray:
        """The (B,) indices of the next batch (fewer for a short last one), in epoch order."""
        if self.order is None or self.batch >= len(self):
            self.start_epoch()
        b, size = self.batch, self.batch_size
        self.batch += 1
        return self.order[b * size:(b + 1) * size]

    def __iter__(self):
        return self

    def state_dict(self) -> dict:
        """The position: ``{"order": (N,) array or None, "batch": int}`` (the order not copied)."""
        return {"order": self.order, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        """Go on from a position of ``state_dict()`` (the order may be a list, as JSON holds it).

        Raises ``ValueError`` unless the order is a permutation of 0 .. N-1 (or None, with
        batch 0) and the batch lies in [0, K]."""
        order, batch = state["order"], state["batch"]
        if isinstance(batch, (bool, np.bool_)) or not isinstance(batch, numbers.Integral) \
                or not 0 <= batch <= len(self):
            raise ValueError(f"{self.what}: batch {batch!r} lies outside the epoch's "
                             f"{len(self)} batches")
        if order is None:
            if batch:
                raise ValueError(f"{self.what}: batch {batch} of an epoch with no order")
        else:
            order = np.asarray(order)
            if order.shape != (self.n,) or order.dtype.kind not in "iu" \
                    or not np.array_equal(np.sort(order), np.arange(self.n)):
                raise ValueError(f"{self.what}: the order is not a permutation of the "
                                 f"{self.n} examples")
        self.order, self.batch = order, int(batch)

    def __repr__(self):
        where = "no epoch yet" if self.order is None else f"batch {self.batch}/{len(self)}"
        return (f"BatchOrder({self.n} examples, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}; {where})")


class BatchLoader:
    """Mini-batches (xb, yb) of (x, y), one epoch per iteration.

    With ``shuffle`` each ``iter(loader)`` draws a fresh full permutation of the N examples from
    ``loader.rng`` (``iter()`` draws it), so every example appears exactly once per epoch,
    in a different order each epoch. Without it the batches follow the data's order. The last
    batch holds the N % batch_size left over, unless ``drop_last``. (The indices are a
    :class:`BatchOrder`'s, one per ``iter()``.) ``transform(xb, rng)``, e.g.
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
        if rng is None:
            rng = np.random.default_rng()
        check_rng(rng, "BatchLoader")
        if transform is not None and not callable(transform):
            raise TypeError(f"BatchLoader: transform must be callable (xb, rng) -> xb, "
                            f"got {transform!r}")
        self.batch_size, self.shuffle, self.drop_last = batch_size, bool(shuffle), bool(drop_last)
        self.rng, self.transform = rng, transform
        self.batch_size = self._batch_order().batch_size       # N and batch_size checked

    def _batch_order(self) -> BatchOrder:
        return BatchOrder(len(self.x), self.batch_size, self.rng, shuffle=self.shuffle,
                          drop_last=self.drop_last, what="BatchLoader")

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self._batch_order())

    def __iter__(self):
        # A BatchOrder of its own per iter(), which draws the permutation here, not lazily at
        # the first batch; two iterators of one loader do not disturb each other.
        batches = self._batch_order()
        batches.start_epoch()
        return self._batches(batches)

    def _batches(self, batches: BatchOrder):
        for _ in range(len(batches)):
            idx = next(batches)
            xb, yb = self.x[idx], self.y[idx]
            if self.transform is not None:
                xb = self.transform(xb, self.rng)
            yield xb, yb

    def __repr__(self):
        return (f"BatchLoader({len(self.x)} examples, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, "
                f"transform={self.transform!r})")
