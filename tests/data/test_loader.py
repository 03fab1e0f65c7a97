"""Splits and mini-batches: each example once per epoch, fresh orders, replayable from rng state;
BatchOrder, the one batching path under BatchLoader, the Trainer and the experiments."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit.data import Augment, BatchLoader, BatchOrder, train_val_split


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


# ---------------------------------------------------------------- BatchOrder

# (N, B, drop_last): N % B != 0 on both sides of drop_last, N < B, N == B, B == 1, an exact multiple
ORDER_CASES = [(23, 5, False), (23, 5, True), (3, 10, False), (7, 7, True), (10, 1, False),
               (12, 4, False), (12, 4, True), (1, 1, True), (61, 16, True), (61, 16, False)]


def _expected_sizes(n, b, drop_last):
    k = n // b if drop_last else -(-n // b)
    return [min(b, n - i * b) for i in range(k)]


def _check_epochs(n, b, drop_last, seed, epochs=3):
    """``epochs`` epochs of BatchOrder against a second Generator of the same seed."""
    batches = BatchOrder(n, b, np.random.default_rng(seed), drop_last=drop_last)
    reference = np.random.default_rng(seed)
    sizes = _expected_sizes(n, b, drop_last)
    assert len(batches) == len(sizes)
    for _ in range(epochs):
        taken = [next(batches) for _ in sizes]
        expected = reference.permutation(n)                 # the epoch's order is the seed's
        np.testing.assert_array_equal(batches.order, expected)
        assert [len(idx) for idx in taken] == sizes and batches.batch == len(sizes)
        seen = np.concatenate(taken)
        np.testing.assert_array_equal(seen, expected[:len(seen)])
        counts = np.bincount(seen, minlength=n)
        assert counts.max() == 1                            # no example twice in an epoch
        assert counts.sum() == (n - n % b if drop_last else n)   # and every one when kept
    # the permutations were the only draws
    assert batches.rng.bit_generator.state == reference.bit_generator.state


@pytest.mark.parametrize("n, batch_size, drop_last", ORDER_CASES)
def test_batch_order_cuts_the_seeds_permutation(n, batch_size, drop_last, rng):
    _check_epochs(n, batch_size, drop_last, int(rng.integers(2**32)))


@given(n=st.integers(1, 90), batch_size=st.integers(1, 100), drop_last=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_batch_order_on_drawn_sizes(n, batch_size, drop_last, seed):
    if drop_last and batch_size > n:
        with pytest.raises(ValueError, match="no batch"):
            BatchOrder(n, batch_size, np.random.default_rng(seed), drop_last=True)
    else:
        _check_epochs(n, batch_size, drop_last, seed, epochs=2)


@pytest.mark.parametrize("n, batch_size, drop_last", ORDER_CASES)
def test_batch_order_state_round_trip_resumes_at_the_same_batch(n, batch_size, drop_last, rng):
    k = len(BatchOrder(n, batch_size, drop_last=drop_last, shuffle=False))
    seed = int(rng.integers(2**32))
    for stop in (0, 1, k - 1, k, k + 1, 2 * k - 1):      # inside epochs and at their ends
        run = BatchOrder(n, batch_size, np.random.default_rng(seed), drop_last=drop_last)
        for _ in range(stop):
            next(run)
        # what a checkpoint holds: the position as JSON and the Generator's state
        state = json.loads(json.dumps({"order": None if run.order is None
                                       else run.order.tolist(), "batch": run.batch}))
        rng_state = run.rng.bit_generator.state
        rest = [next(run) for _ in range(2 * k)]
        restored = np.random.default_rng()
        restored.bit_generator.state = rng_state
        resumed = BatchOrder(n, batch_size, restored, drop_last=drop_last)
        resumed.load_state_dict(state)
        assert resumed.batch == state["batch"]
        for a, b in zip(rest, [next(resumed) for _ in range(2 * k)], strict=True):
            np.testing.assert_array_equal(a, b)


def test_batch_order_draws_when_the_first_batch_is_asked_for(rng):
    batches = BatchOrder(10, 4, rng)
    before = rng.bit_generator.state
    assert batches.order is None and rng.bit_generator.state == before   # nothing drawn yet
    first = next(batches)
    assert batches.batch == 1 and len(first) == 4
    for _ in range(2):
        next(batches)
    after_epoch = rng.bit_generator.state
    assert iter(batches) is batches and batches.batch == len(batches) == 3
    assert rng.bit_generator.state == after_epoch    # the next epoch's order waits, too
    next(batches)
    assert batches.batch == 1 and rng.bit_generator.state != after_epoch


def test_batch_order_start_epoch_draws_at_once(rng):
    batches = BatchOrder(9, 4, rng)
    for _ in range(2):
        next(batches)
    order = batches.start_epoch()
    assert batches.batch == 0 and order is batches.order
    np.testing.assert_array_equal(next(batches), order[:4])
    assert batches.state_dict() == {"order": order, "batch": 1}


def test_batch_order_without_shuffle_is_the_data_order():
    batches = BatchOrder(7, 3, shuffle=False)
    assert [next(batches).tolist() for _ in range(4)] == [[0, 1, 2], [3, 4, 5], [6], [0, 1, 2]]


def test_the_loader_and_the_experiments_take_the_same_batches():
    """BatchLoader's epoch is BatchOrder's; with drop_last BatchOrder gives the batches of the
    generator the experiments used before it (their published numbers rest on them)."""
    def old_experiment_batches(n, batch_size, rng):
        while True:
            order = rng.permutation(n)
            for start in range(0, n - batch_size + 1, batch_size):
                yield order[start:start + batch_size]

    x, y = _data(23)
    loader = BatchLoader(x, y, 5, rng=np.random.default_rng(4))
    batches = BatchOrder(23, 5, np.random.default_rng(4))
    for _ in range(2):
        for (_, yb), idx in zip(loader, [next(batches) for _ in range(len(batches))], strict=True):
            np.testing.assert_array_equal(yb, idx)
    old = old_experiment_batches(23, 5, np.random.default_rng(5))
    new = BatchOrder(23, 5, np.random.default_rng(5), drop_last=True)
    for _ in range(13):                                 # three epochs of 4 and one batch more
        np.testing.assert_array_equal(next(old), next(new))


@pytest.mark.parametrize("state, match", [
    ({"order": [0, 1, 2, 3, 3], "batch": 0}, "not a permutation"),
    ({"order": [0, 1, 2, 3], "batch": 0}, "not a permutation"),
    ({"order": [0.0, 1.0, 2.0, 3.0, 4.0], "batch": 0}, "not a permutation"),
    ({"order": [4, 3, 2, 1, 0], "batch": 4}, "outside the epoch's 3 batches"),
    ({"order": [4, 3, 2, 1, 0], "batch": -1}, "outside"),
    ({"order": [4, 3, 2, 1, 0], "batch": True}, "outside"),
    ({"order": None, "batch": 2}, "no order"),
])
def test_batch_order_rejects_a_damaged_state(state, match, rng):
    batches = BatchOrder(5, 2, rng)
    with pytest.raises(ValueError, match=match):
        batches.load_state_dict(state)
    assert batches.order is None and batches.batch == 0     # left as it was


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((0, 2), {}, ValueError, "BatchOrder: no examples"),
    ((5, 0), {}, ValueError, "batch_size must be >= 1"),
    ((5, 2.0), {}, TypeError, "batch_size must be an int"),
    ((5.0, 2), {}, TypeError, "n must be an int"),
    ((5, True), {}, TypeError, "batch_size must be an int"),
    ((5, 6), {"drop_last": True}, ValueError, "no batch"),
    ((5, 2, 0), {}, TypeError, "Generator"),
    ((5, 2, None), {}, TypeError, "Generator"),
    ((5, 0), {"what": "Trainer"}, ValueError, "^Trainer: batch_size"),
])
def test_batch_order_rejects(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        BatchOrder(*args, **kwargs)
