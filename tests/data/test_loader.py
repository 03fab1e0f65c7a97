"""Splits and mini-batches: each example once per epoch, fresh orders, replayable from rng state."""

import numpy as np
import pytest

from cnnkit.data import Augment, BatchLoader, train_val_split


def _data(n):
    """x[i] is filled with i, so every row says which example it is."""
    y = np.arange(n)
    return np.broadcast_to(y[:, None, None, None], (n, 1, 2, 2)).astype(np.float64), y


def _epoch(loader):
    batches = list(loader)
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0, 0, 0], yb)  # rows stay with their labels
    return np.concatenate([yb for _, yb in batches]), [len(yb) for _, yb in batches]


@pytest.mark.parametrize("val_size, expected", [(3, 3), (0.25, 5), (0, 0), (0.0, 0), (19, 19)])
def test_split_sizes_and_partition(rng, val_size, expected):
    x, y = _data(20)
    (xt, yt), (xv, yv) = train_val_split(x, y, val_size, rng)
    assert len(yv) == len(xv) == expected and len(yt) == len(xt) == 20 - expected
    assert sorted(np.concatenate([yt, yv]).tolist()) == list(range(20))
    np.testing.assert_array_equal(xt[:, 0, 0, 0], yt)
    np.testing.assert_array_equal(xv[:, 0, 0, 0], yv)


def test_split_is_random_and_reproducible():
    x, y = _data(50)
    a = train_val_split(x, y, 10, np.random.default_rng(1))[1][1]
    b = train_val_split(x, y, 10, np.random.default_rng(1))[1][1]
    c = train_val_split(x, y, 10, np.random.default_rng(2))[1][1]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(np.sort(a), np.arange(10))  # not simply the first ten


@pytest.mark.parametrize("val_size, error", [
    (20, ValueError), (-1, ValueError), (1.0, ValueError), (-0.1, ValueError), (1.5, ValueError),
    (True, TypeError), ("5", TypeError), (None, TypeError),
])
def test_split_rejects_sizes_out_of_range(rng, val_size, error):
    x, y = _data(20)
    with pytest.raises(error, match="val_size"):
        train_val_split(x, y, val_size, rng)


def test_split_rejects_mismatched_lengths(rng):
    with pytest.raises(ValueError, match="10 examples but y holds 9"):
        train_val_split(np.zeros((10, 2)), np.zeros(9), 2, rng)


def test_every_example_once_per_epoch_in_fresh_orders(rng):
    loader = BatchLoader(*_data(23), 5, rng=rng)
    orders = []
    for _ in range(4):
        order, sizes = _epoch(loader)
        assert sorted(order.tolist()) == list(range(23))
        assert sizes == [5, 5, 5, 5, 3] and len(loader) == 5
        orders.append(order.tolist())
    assert len({tuple(o) for o in orders}) == 4  # a new permutation each epoch


def test_same_rng_state_gives_the_same_batches(rng):
    loader = BatchLoader(*_data(30), 4, rng=rng, transform=Augment(crop_padding=1))
    list(loader)  # advance the stream by one epoch first
    state = loader.rng.bit_generator.state
    first = list(loader)
    loader.rng.bit_generator.state = state
    again = list(loader)
    for (xa, ya), (xb, yb) in zip(first, again, strict=True):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)  # the augmentation replays too
    # and a new loader with a Generator restored to that state agrees
    restored = np.random.default_rng()
    restored.bit_generator.state = state
    other = BatchLoader(*_data(30), 4, rng=restored, transform=Augment(crop_padding=1))
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in other]),
                                  np.concatenate([yb for _, yb in first]))


def test_no_shuffle_keeps_the_data_order(rng):
    loader = BatchLoader(*_data(7), 3, shuffle=False, rng=rng)
    order, sizes = _epoch(loader)
    assert order.tolist() == list(range(7)) and sizes == [3, 3, 1]


def test_drop_last(rng):
    loader = BatchLoader(*_data(10), 4, rng=rng, drop_last=True)
    assert len(loader) == 2
    seen = set()
    for _ in range(20):
        order, sizes = _epoch(loader)
        assert sizes == [4, 4] and len(set(order.tolist())) == 8
        seen |= set(order.tolist())
    assert seen == set(range(10))  # the dropped examples differ from epoch to epoch


def test_exact_multiple_has_no_partial_batch(rng):
    loader = BatchLoader(*_data(12), 4, rng=rng)
    assert len(loader) == 3 and _epoch(loader)[1] == [4, 4, 4]
    assert BatchLoader(*_data(3), 10, rng=rng).__len__() == 1


def test_transform_is_applied_per_batch_with_the_loaders_rng(rng):
    calls = []

    def transform(xb, r):
        calls.append(r)
        return xb + 1000.0

    x, y = _data(9)
    loader = BatchLoader(x, y, 4, rng=rng, transform=transform)
    for xb, yb in loader:
        np.testing.assert_array_equal(xb[:, 0, 0, 0], yb + 1000.0)
    assert len(calls) == 3 and all(r is loader.rng for r in calls)
    np.testing.assert_array_equal(x[:, 0, 0, 0], y)  # the data itself untouched


def test_batches_are_copies(rng):
    x, y = _data(6)
    for xb, _ in BatchLoader(x, y, 3, rng=rng):
        xb[...] = -1.0
    np.testing.assert_array_equal(x[:, 0, 0, 0], y)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    (dict(batch_size=2.5), TypeError, "batch_size must be an int"),
    (dict(batch_size=True), TypeError, "batch_size must be an int"),
    (dict(batch_size=11, drop_last=True), ValueError, "no batch"),
    (dict(batch_size=2, rng=0), TypeError, "Generator"),
    (dict(batch_size=2, transform="crop"), TypeError, "callable"),
])
def test_loader_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        BatchLoader(*_data(10), **kwargs)


def test_loader_rejects_mismatched_or_empty_data():
    with pytest.raises(ValueError, match="10 examples but y holds 9"):
        BatchLoader(np.zeros((10, 3)), np.zeros(9), 2)
    with pytest.raises(ValueError, match="no examples"):
        BatchLoader(np.zeros((0, 3)), np.zeros(0), 2)
