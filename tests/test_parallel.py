"""cnnkit.parallel: the worker pool itself, and its promise that every kernel's outputs and
gradients are the same bits on 1, 2, 3 or 8 threads (``np.array_equal`` and byte equality, never
allclose).

The kernel tests shrink the task plans so that small arrays make several tasks, with an uneven
last one, and really go to the workers (``MIN_PARALLEL_BYTES`` = 0):

- "forced": ``cnnkit.parallel.split`` (and the name ``cnnkit.functional.im2col`` imported) is
  replaced by a spy that cuts any axis into about four chunks, the last one shorter;
- "budget": the real ``split`` with a 1 KiB task budget and an 8 KiB im2col budget. ``split``'s
  default budget is bound when it is defined, so patching ``parallel.TASK_BYTES`` alone would not
  change any plan: the spy passes the small budget itself.

A spy around ``cnnkit.parallel.for_each`` makes the calling thread's first task of a call wait a
millisecond, so the workers take tasks (and ordered sums see terms out of order) in every call;
each kernel test checks that workers did run tasks.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import os
import threading
import time

import numpy as np
import pytest

from cnnkit import functional as F
from cnnkit import nn, parallel
from cnnkit.nn.module import Parameter
from cnnkit.optim import SGD, Adam
from cnnkit.parallel import for_each, num_threads, ordered_sum

im2col_module = importlib.import_module("cnnkit.functional.im2col")
conv_module = importlib.import_module("cnnkit.functional.conv")

THREADS = (1, 2, 3, 8)
DTYPES = (np.float32, np.float64)
ENV = "CNNKIT_NUM_THREADS"
DEADLOCK_S = 30


# ============================================================================ helpers
def _finishes(fn, seconds=DEADLOCK_S):
    """fn() on a fresh thread; fails (instead of hanging the suite) if it does not return."""
    result = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as err:    # noqa: BLE001 (re-raised below)
            result["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: a deadlock"
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _assert_same_bits(ref: dict, got: dict, where: str) -> None:
    """Every array of got has the dtype, shape and bits of ref's (None matches None only)."""
    assert ref.keys() == got.keys(), where
    for name, a in ref.items():
        b = got[name]
        if a is None:
            assert b is None, f"{where}: {name} is {type(b).__name__}, expected None"
            continue
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, \
            f"{where}: {name} is {b.dtype}{b.shape}, expected {a.dtype}{a.shape}"
        assert not np.shares_memory(a, b), f"{where}: {name} is the same memory in both runs"
        if np.array_equal(a, b) and a.tobytes() == b.tobytes():
            continue
        differ = np.flatnonzero((a != b).ravel() | (np.signbit(a) != np.signbit(b)).ravel()) \
            if a.dtype.kind == "f" else np.flatnonzero((a != b).ravel())
        first = differ[0] if differ.size else 0
        raise AssertionError(
            f"{where}: {name} differs in {differ.size} of {a.size} values; first at flat index "
            f"{first}: {a.ravel()[first]!r} vs {b.ravel()[first]!r}; max |diff| "
            f"{np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))):.3g}")


def _same_bits_on_threads(label: str, compute, *args, **kwargs) -> dict:
    """compute(*args, **kwargs) (a dict of fresh arrays) on every thread count, each compared
    with the 1-thread result; returns that."""
    results = {}
    for t in THREADS:
        with num_threads(t):
            results[t] = compute(*args, **kwargs)
    for t in THREADS[1:]:
        _assert_same_bits(results[1], results[t], f"{label}: {t} threads vs 1")
    return results[1]


def _forced_plan(n: int) -> list[tuple[int, int]]:
    """About four chunks of n items, the last one shorter where n allows it."""
    step = max(1, -(-n // 4))
    while n % step == 0 and step + 1 < n:
        step += 1
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


class _Spy:
    """Records the plans the kernels make and how many tasks the workers ran."""

    TASK_BUDGET = 1 << 10
    CHUNK_BUDGET = 8 << 10
    DELAY_S = 1e-3

    def __init__(self, monkeypatch, mode: str):
        self.mode = mode
        self.plans: list[list[tuple[int, int]]] = []
        self.calls = 0
        self.worker_tasks = 0
        self.lock = threading.Lock()
        if mode in ("forced", "budget"):
            real_split = parallel.split

            def split(n, item_bytes, budget=None):
                if mode == "forced":
                    plan = _forced_plan(n)
                else:
                    plan = real_split(n, item_bytes,
                                      self.TASK_BUDGET if budget is None else budget)
                self.plans.append(plan)
                return plan

            monkeypatch.setattr(parallel, "split", split)
            monkeypatch.setattr(im2col_module, "split", split)
            monkeypatch.setattr(im2col_module, "CHUNK_BYTES", self.CHUNK_BUDGET)
            monkeypatch.setattr(parallel, "TASK_BYTES", self.TASK_BUDGET)
            monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
            monkeypatch.setattr(conv_module, "PARALLEL_FLOPS", 0)
        real_for_each = parallel.for_each

        def spy_for_each(n, task, *, work_bytes=None, serial=False):
            caller = threading.get_ident()
            delay = [n > 1 and parallel.get_num_threads() > 1]

            def wrapped(i, slot):
                if threading.get_ident() != caller:
                    with self.lock:
                        self.worker_tasks += 1
                elif delay[0]:
                    delay[0] = False
                    time.sleep(self.DELAY_S)        # let the workers take tasks
                return task(i, slot)

            with self.lock:
                self.calls += 1
            return real_for_each(n, wrapped, work_bytes=work_bytes, serial=serial)

        monkeypatch.setattr(parallel, "for_each", spy_for_each)

    def check(self, *, plans=True) -> None:
        """The test ran what it means to: tasks on the workers and (plans) multi-chunk plans."""
        assert self.calls > 0, "no kernel called cnnkit.parallel.for_each"
        assert self.worker_tasks > 0, "no task ran on a worker thread"
        if plans and self.mode != "default":
            many = [p for p in self.plans if len(p) >= 3]
            assert many, f"no plan had 3 chunks or more: {self.plans[:5]}"
            if self.mode == "forced":
                assert any(p[-1][1] - p[-1][0] < p[0][1] - p[0][0] for p in many)


@pytest.fixture(params=["forced", "budget"])
def spy(request, monkeypatch):
    return _Spy(monkeypatch, request.param)


def _uniform(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# ============================================================================ the count
@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                        (True, TypeError), (np.bool_(True), TypeError),
                                        ("2", TypeError), (None, TypeError),
                                        (parallel.MAX_THREADS + 1, ValueError)])
def test_set_num_threads_rejects(bad, error):
    before = parallel.get_num_threads()
    with pytest.raises(error) as info:
        parallel.set_num_threads(bad)
    assert "\n" not in str(info.value) and str(info.value)
    assert type(info.value) is error
    assert parallel.get_num_threads() == before
    with pytest.raises(error), num_threads(bad):
        pass
    assert parallel.get_num_threads() == before


def test_set_num_threads_accepts_numpy_ints_and_the_limits():
    with num_threads(1):
        for n in (np.int64(3), np.int32(parallel.MAX_THREADS), 1):
            parallel.set_num_threads(n)
            assert parallel.get_num_threads() == int(n)
            assert type(parallel.get_num_threads()) is int


def test_num_threads_restores_the_count():
    before = parallel.get_num_threads()
    other = 3 if before != 3 else 5
    with num_threads(other) as n:
        assert n == other and parallel.get_num_threads() == other
        with num_threads(2):
            assert parallel.get_num_threads() == 2
        assert parallel.get_num_threads() == other
    assert parallel.get_num_threads() == before
    with pytest.raises(KeyError), num_threads(other):
        raise KeyError("inside")
    assert parallel.get_num_threads() == before


def test_default_num_threads_is_the_affinity(monkeypatch):
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no os.sched_getaffinity here")
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv(ENV, raising=False)
    assert parallel.default_num_threads() == cores
    monkeypatch.setenv(ENV, "  ")               # blank: as if unset
    assert parallel.default_num_threads() == cores


@pytest.mark.parametrize("text, count", [("3", 3), (" 5 ", 5), ("1", 1),
                                         (str(parallel.MAX_THREADS), parallel.MAX_THREADS)])
def test_default_num_threads_honours_the_variable(monkeypatch, text, count):
    monkeypatch.setenv(ENV, text)
    assert parallel.default_num_threads() == count
    monkeypatch.setattr(parallel, "_threads", None)     # not resolved yet: get reads the variable
    assert parallel.get_num_threads() == count


@pytest.mark.parametrize("text", ["zero", "0", "-2", "1.5", "2 threads", "0x4",
                                  str(parallel.MAX_THREADS + 1)])
def test_default_num_threads_rejects_a_bad_variable(monkeypatch, text):
    monkeypatch.setenv(ENV, text)
    with pytest.raises(ValueError, match=ENV) as info:
        parallel.default_num_threads()
    assert "\n" not in str(info.value)


# ============================================================================ split
@pytest.mark.parametrize("n", [0, 1, 2, 7, 64])
@pytest.mark.parametrize("item_bytes, budget", [(1, 1), (4, 4096), (1000, 4096), (4, 10),
                                                (0, 100), (4096, parallel.TASK_BYTES)])
def test_split_covers_the_items_in_order(n, item_bytes, budget):
    plans = []
    for t in (1, 8):
        with num_threads(t):
            plans.append(parallel.split(n, item_bytes, budget))
    plan = plans[0]
    assert plans[1] == plan                              # never depends on the thread count
    if n == 0:
        assert plan == []
        return
    assert plan[0][0] == 0 and plan[-1][1] == n
    assert all(hi > lo for lo, hi in plan)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(plan))
    sizes = [hi - lo for lo, hi in plan]
    assert max(sizes) - min(sizes) <= 1                 # balanced
    assert max(sizes) == 1 or max(sizes) * item_bytes <= budget
    per_task = max(1, min(n, budget // max(1, item_bytes)))
    assert len(plan) == -(-n // per_task)               # as few tasks as the budget allows


def test_split_default_budget_is_task_bytes():
    assert parallel.split(1000, 1) == parallel.split(1000, 1, parallel.TASK_BYTES)
    step = parallel.TASK_BYTES // 4                     # float32 items of one task
    n = 2 * step + 1                                    # three tasks, balanced
    assert parallel.split(n, 4) == [(0, n // 3), (n // 3, 2 * n // 3), (2 * n // 3, n)]


# ============================================================================ for_each
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("n", [0, 1, 2, 7, 64])
def test_for_each_runs_every_index_once(threads, n):
    counts = [0] * n
    lock = threading.Lock()

    def task(i, slot):
        with lock:
            counts[i] += 1

    with num_threads(threads):
        for_each(n, task)                                # no work_bytes: goes parallel
        assert counts == [1] * n
        for_each(n, task, work_bytes=1 << 30)
        assert counts == [2] * n
        for_each(n, task, work_bytes=0)                  # small: on this thread
    assert counts == [3] * n


@pytest.mark.parametrize("threads", THREADS)
def test_for_each_slots_belong_to_one_thread_at_a_time(threads):
    n = 64
    busy = {}
    owners = {}
    problems = []
    lock = threading.Lock()
    caller = threading.get_ident()

    def task(i, slot):
        me = threading.get_ident()
        with lock:
            if busy.get(slot):
                problems.append(f"slot {slot} in use by two threads (task {i})")
            busy[slot] = True
            if owners.setdefault(slot, me) != me:
                problems.append(f"slot {slot} used by two threads in one call")
        time.sleep(2e-4)
        with lock:
            busy[slot] = False

    with num_threads(threads):
        for _ in range(3):
            busy.clear()
            owners.clear()
            for_each(n, task)
            assert not problems, problems[:3]
            assert set(owners) <= set(range(threads)), sorted(owners)
            assert owners.get(0, caller) == caller           # slot 0 is the calling thread
            assert len(set(owners.values())) == len(owners)  # and each slot its own thread


@pytest.mark.parametrize("threads", THREADS[1:])
def test_for_each_small_work_stays_on_the_calling_thread(threads):
    seen = set()
    lock = threading.Lock()

    def task(i, slot):
        with lock:
            seen.add((threading.get_ident(), slot))

    with num_threads(threads):
        for_each(16, task, work_bytes=parallel.MIN_PARALLEL_BYTES - 1)
    assert seen == {(threading.get_ident(), 0)}


@pytest.mark.parametrize("threads", THREADS)
def test_for_each_raises_the_tasks_exception_and_stays_usable(threads):
    n = 64
    started, finished = [], []
    lock = threading.Lock()
    boom = ValueError("task 0 failed")

    def task(i, slot):
        with lock:
            started.append(i)
        if i == 0:
            raise boom
        time.sleep(5e-3)
        with lock:
            finished.append(i)

    def call():
        with num_threads(threads):
            for_each(n, task)

    with pytest.raises(ValueError) as info:
        _finishes(call)
    assert info.value is boom                        # the task's own exception
    # every task started has finished when the caller sees the error, and few started after it
    assert sorted(finished) == sorted(i for i in started if i != 0)
    assert len(started) <= n // 2, f"{len(started)} of {n} tasks started after the error"

    counts = [0] * n

    def count(i, slot):
        with lock:
            counts[i] += 1

    with num_threads(threads):
        _finishes(lambda: for_each(n, count))
        assert counts == [1] * n
        assert _finishes(lambda: ordered_sum(n, lambda i, slot: np.float64(i))) == sum(range(n))


@pytest.mark.parametrize("threads", THREADS)
def test_for_each_first_of_several_errors(threads):
    errors = []
    lock = threading.Lock()

    def task(i, slot):
        err = RuntimeError(f"task {i}")
        with lock:
            errors.append(err)
        raise err

    with num_threads(threads), pytest.raises(RuntimeError) as info:
        _finishes(lambda: for_each(32, task))
    assert any(info.value is err for err in errors)
    if threads == 1:
        assert info.value is errors[0] and len(errors) == 1


@pytest.mark.parametrize("threads", THREADS)
def test_nested_for_each_runs_serially_on_the_tasks_thread(threads):
    outer_n, inner_n = 8, 5
    runs = []
    lock = threading.Lock()

    def inner_of(i, outer_ident):
        def inner(j, slot):
            with lock:
                runs.append((i, j, slot, threading.get_ident() == outer_ident))
        return inner

    def outer(i, slot):
        time.sleep(1e-3)
        for_each(inner_n, inner_of(i, threading.get_ident()))

    with num_threads(threads):
        _finishes(lambda: for_each(outer_n, outer))
        assert sorted((i, j) for i, j, _, _ in runs) == [(i, j) for i in range(outer_n)
                                                       for j in range(inner_n)]
        assert all(slot == 0 and same for _, _, slot, same in runs)
        # and an ordered sum inside a task
        total = _finishes(lambda: ordered_sum(
            4, lambda i, slot: ordered_sum(3, lambda j, s: np.array([i * 3 + j], np.int64))))
        assert total.tolist() == [sum(range(12))]


def test_for_each_from_two_threads_at_once():
    n = 64
    counts = {name: [0] * n for name in "ab"}
    lock = threading.Lock()
    barrier = threading.Barrier(2)

    def run(name):
        def task(i, slot):
            time.sleep(1e-4)
            with lock:
                counts[name][i] += 1
        barrier.wait()
        for _ in range(5):
            for_each(n, task)

    with num_threads(3):
        threads = [threading.Thread(target=run, args=(name,), daemon=True) for name in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLOCK_S)
        assert not any(t.is_alive() for t in threads), "deadlock"
    assert counts == {name: [5] * n for name in "ab"}


# ============================================================================ ordered_sum
def _order_sensitive_terms(rng, n, size=33):
    """float32 terms of very different magnitudes: their sum depends on the order."""
    terms = rng.standard_normal((n, size)) * 10.0 ** rng.integers(-4, 5, (n, 1))
    terms = list(terms.astype(np.float32))
    forward = functools.reduce(lambda a, b: a + b, terms)
    backward = functools.reduce(lambda a, b: a + b, terms[::-1])
    assert forward.tobytes() != backward.tobytes()      # the test can tell the orders apart
    return terms, forward


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("n", [7, 64])
def test_ordered_sum_adds_left_to_right(rng, threads, n):
    terms, expected = _order_sensitive_terms(rng, n)
    with num_threads(threads):
        total = ordered_sum(n, lambda i, slot: terms[i])
    assert total.dtype == np.float32
    assert total.tobytes() == expected.tobytes()
    assert not any(np.shares_memory(total, t) for t in terms)


@pytest.mark.parametrize("threads", THREADS)
def test_ordered_sum_out_of_order_with_reused_scratch(rng, threads):
    """Early tasks finish last, and every task returns its slot's scratch, which the slot's
    next task overwrites."""
    n = 48
    terms, expected = _order_sensitive_terms(rng, n)
    scratch = {}
    lock = threading.Lock()

    def task(i, slot):
        if i < 2 * threads:
            time.sleep((2 * threads - i) * 1e-3)     # task 0 the slowest of the first ones
        with lock:
            buf = scratch.setdefault(slot, np.empty_like(terms[0]))
        buf[...] = terms[i]
        return buf

    with num_threads(threads):
        for _ in range(3):
            scratch.clear()
            total = ordered_sum(n, task)
            assert total.tobytes() == expected.tobytes()
            assert not any(np.shares_memory(total, b) for b in scratch.values())


def test_ordered_sum_of_one_term_is_a_copy():
    term = np.arange(5, dtype=np.float32)
    with num_threads(3):
        total = ordered_sum(1, lambda i, slot: term)
    assert total.tobytes() == term.tobytes() and not np.shares_memory(total, term)


# ============================================================================ BLAS
def _blas_threads() -> list[int]:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    return [info["num_threads"] for info in threadpoolctl.threadpool_info()
            if info["user_api"] == "blas"]


def test_blas_single_thread_sets_and_restores():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not _blas_threads():
        pytest.skip("NumPy's BLAS is not visible to threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        if set(_blas_threads()) != {2}:
            pytest.skip(f"BLAS cannot be set to 2 threads here: {_blas_threads()}")
        with parallel.blas_single_thread():
            assert set(_blas_threads()) == {1}
            with parallel.blas_single_thread():          # re-entrant
                assert set(_blas_threads()) == {1}
            assert set(_blas_threads()) == {1}           # the inner exit keeps it
        assert set(_blas_threads()) == {2}

        with pytest.raises(ZeroDivisionError), parallel.blas_single_thread():
            raise ZeroDivisionError
        assert set(_blas_threads()) == {2}

        @parallel.single_thread_blas
        def inside():
            return _blas_threads()

        assert set(inside()) == {1}
        assert set(_blas_threads()) == {2}

        for threads in (1, 3):
            seen = []

            def task(i, slot, seen=seen):
                seen.append(set(_blas_threads()))

            with num_threads(threads):
                for_each(3, task)
            assert seen == [{1}] * 3, f"{threads} threads: {seen}"
            assert set(_blas_threads()) == {2}


# ============================================================================ kernels: same bits
def _draw(rng):
    """r(lo, hi): an int drawn from [lo, hi]."""
    return lambda lo, hi: int(rng.integers(lo, hi + 1))


def _conv_cases(rng):
    """(name, x shape, w shape, conv kwargs) with sizes drawn from rng."""
    r = _draw(rng)

    def n():
        return r(5, 11)

    c, f, h, w = r(1, 4), r(2, 6), r(6, 12), r(6, 12)
    cases = [("3x3 stride 1 pad 1 (wide)", (n(), c, h, w), (f, c, 3, 3), {"pad": 1})]
    c, f = r(1, 4), r(2, 6)
    cases.append(("3x3 stride 1 pad 1 on 3x3 (tight)", (n(), c, 3, 3), (f, c, 3, 3),
                  {"pad": 1}))
    c, f, h, w = r(1, 4), r(2, 6), r(7, 13), r(7, 13)
    cases.append(("3x3 stride 2 pad 0", (n(), c, h, w), (f, c, 3, 3),
                  {"stride": 2, "strict": False}))
    c, f, h, w = r(1, 4), r(2, 6), r(7, 13), r(7, 13)
    cases.append(("5x3 stride (2, 1) pad (2, 1)", (n(), c, h, w), (f, c, 5, 3),
                  {"stride": (2, 1), "pad": (2, 1), "strict": False}))
    c, f, h, w = r(1, 6), r(2, 8), r(3, 9), r(3, 9)
    cases.append(("1x1 pointwise", (n(), c, h, w), (f, c, 1, 1), {}))
    c, f, h, w = r(1, 4), r(2, 6), r(8, 12), r(8, 12)
    cases.append(("3x3 dilation 2 pad 2", (n(), c, h, w), (f, c, 3, 3),
                  {"pad": 2, "dilation": 2}))
    g, cg, fg, h, w = 2, r(1, 3), r(1, 3), r(5, 10), r(5, 10)
    cases.append(("groups 2", (n(), g * cg, h, w), (g * fg, cg, 3, 3), {"pad": 1, "groups": g}))
    c, h, w = r(2, 4), r(5, 10), r(5, 10)
    cases.append(("depthwise", (n(), c, h, w), (c, 1, 3, 3), {"pad": 1, "groups": c}))
    g, cg, fg, h, w = 3, r(1, 2), r(1, 2), r(3, 8), r(3, 8)
    cases.append(("groups 3 pointwise", (n(), g * cg, h, w), (g * fg, cg, 1, 1),
                  {"groups": g}))
    return cases


def _conv(x, w, b, dout, kwargs, input_grad):
    out, cache = F.conv2d_forward(x, w, b, **kwargs)
    dx, dw, db = F.conv2d_backward(dout, cache, input_grad=input_grad)
    return {"out": out, "dx": dx, "dw": dw, "db": db}


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_same_bits_on_any_thread_count(rng, spy, dtype):
    for name, x_shape, w_shape, kwargs in _conv_cases(rng):
        x = _uniform(rng, x_shape, dtype)
        w = _uniform(rng, w_shape, dtype, 0.3)
        b = _uniform(rng, w_shape[0], dtype)
        with num_threads(1):
            out_shape = F.conv2d_forward(x, w, b, **kwargs)[0].shape
        dout = _uniform(rng, out_shape, dtype)
        for bias, input_grad in ((True, True), (False, True), (True, False)):
            result = _same_bits_on_threads(
                f"conv2d {name} x{x_shape} w{w_shape} bias={bias} input_grad={input_grad} "
                f"{np.dtype(dtype).name}",
                _conv, x, w, b if bias else None, dout, kwargs, input_grad)
            assert (result["db"] is None) != bias and (result["dx"] is None) != input_grad
    spy.check()


def _pool_cases(rng):
    r = _draw(rng)
    # at least 300 bytes a sample and 7 samples: 3 tasks or more at the spy's 1 KiB budget
    even = (r(7, 13), r(3, 5), 2 * r(3, 6), 2 * r(3, 6))
    odd = (r(7, 13), r(3, 5), r(5, 12), r(5, 12))
    overlap = {"stride": 2, "pad": 1, "strict": False}
    return [
        ("max 2x2 tiling", even, F.max_pool2d_forward, F.max_pool2d_backward, (2,), {}),
        ("max 3x3 stride 2 pad 1", odd, F.max_pool2d_forward, F.max_pool2d_backward, (3,),
         overlap),
        ("max 3x3 stride 1", odd, F.max_pool2d_forward, F.max_pool2d_backward, (3,),
         {"stride": 1}),
        ("avg 2x2 tiling", even, F.avg_pool2d_forward, F.avg_pool2d_backward, (2,), {}),
        ("avg 3x3 stride 2 pad 1", odd, F.avg_pool2d_forward, F.avg_pool2d_backward, (3,),
         overlap),
        ("l2 2x2 tiling", even, F.l2_pool2d_forward, F.l2_pool2d_backward, (2,), {}),
        ("l2 3x3 stride 1", odd, F.l2_pool2d_forward, F.l2_pool2d_backward, (3,),
         {"stride": 1}),
        ("l2 3x2 stride 2", odd, F.l2_pool2d_forward, F.l2_pool2d_backward, ((3, 2),),
         {"stride": 2, "strict": False}),
        ("global avg", odd, F.global_avg_pool2d_forward, F.global_avg_pool2d_backward, (), {}),
    ]


def _pool(forward, backward, x, dout, args, kwargs):
    out, cache = forward(x, *args, **kwargs)
    return {"out": out, "dx": backward(dout, cache)}


@pytest.mark.parametrize("dtype", DTYPES)
def test_pooling_same_bits_on_any_thread_count(rng, spy, dtype):
    for name, shape, forward, backward, args, kwargs in _pool_cases(rng):
        x = _uniform(rng, shape, dtype)
        with num_threads(1):
            out_shape = forward(x, *args, **kwargs)[0].shape
        dout = _uniform(rng, out_shape, dtype)
        _same_bits_on_threads(f"{name} x{shape} {np.dtype(dtype).name}",
                              _pool, forward, backward, x, dout, args, kwargs)
    spy.check()


_NORMS = {"batchnorm": (F.batchnorm_forward, F.batchnorm_backward, F.batchnorm_eval_forward,
                        F.batchnorm_eval_backward),
          "spatial_batchnorm": (F.spatial_batchnorm_forward, F.spatial_batchnorm_backward,
                                F.spatial_batchnorm_eval_forward,
                                F.spatial_batchnorm_eval_backward)}


def _norm(kernels, x, gamma, beta, mean, var, dout):
    train_forward, train_backward, eval_forward, eval_backward = kernels
    out, cache = train_forward(x, gamma, beta, eps=1e-5)
    dx, dgamma, dbeta = train_backward(dout, cache)
    e_out, e_cache = eval_forward(x, gamma, beta, mean, var, eps=1e-5)
    e_dx, e_dgamma, e_dbeta = eval_backward(dout, e_cache)
    return {"out": out, "mean": cache.mean, "var": cache.var, "dx": dx, "dgamma": dgamma,
            "dbeta": dbeta, "eval out": e_out, "eval dx": e_dx, "eval dgamma": e_dgamma,
            "eval dbeta": e_dbeta}


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_same_bits_on_any_thread_count(rng, spy, dtype):
    r = _draw(rng)
    shapes = [(r(7, 40), r(3, 20)), (r(6, 12), r(4, 8), r(5, 9), r(5, 9)), (r(9, 16), r(2, 5)),
              (r(3, 6), r(1, 3), r(2, 4), r(2, 4))]
    for shape in shapes:
        k = shape[1]
        x = _uniform(rng, shape, dtype, 3.0) + dtype(1.5)
        gamma, beta = _uniform(rng, k, dtype), _uniform(rng, k, dtype)
        mean, var = _uniform(rng, k, dtype), rng.uniform(0.2, 3.0, k).astype(dtype)
        dout = _uniform(rng, shape, dtype)
        for name, kernels in _NORMS.items():
            if name == "spatial_batchnorm" and len(shape) != 4:
                continue
            _same_bits_on_threads(f"{name} x{shape} {np.dtype(dtype).name}",
                                  _norm, kernels, x, gamma, beta, mean, var, dout)
    spy.check()


_ACTIVATIONS = [("relu", F.relu_forward, F.relu_backward, {}),
                ("sigmoid", F.sigmoid_forward, F.sigmoid_backward, {}),
                ("tanh", F.tanh_forward, F.tanh_backward, {}),
                ("leaky_relu", F.leaky_relu_forward, F.leaky_relu_backward,
                 {"negative_slope": 0.1})]


def _activation(forward, backward, x, dout, kwargs):
    out, cache = forward(x, **kwargs)
    return {"out": out, "dx": backward(dout, cache)}


@pytest.mark.parametrize("dtype", DTYPES)
def test_activations_same_bits_on_any_thread_count(rng, spy, dtype):
    r = _draw(rng)
    shapes = [(r(3, 9), r(1, 8), r(4, 16), r(4, 16)), (r(50, 300), r(10, 90)), (r(2000, 9000),)]
    for shape in shapes:
        x = _uniform(rng, shape, dtype, 8.0)                # both branches of sigmoid
        dout = _uniform(rng, shape, dtype)
        views = [("C order", x, dout)]
        if len(shape) >= 2:                                 # strided: run whole
            views.append(("transposed", x.T, dout.T))
        for layout, xv, dv in views:
            for name, forward, backward, kwargs in _ACTIVATIONS:
                _same_bits_on_threads(f"{name} {layout} x{shape} {np.dtype(dtype).name}",
                                      _activation, forward, backward, xv, dv, kwargs)
    spy.check()


def _dropout(x, dout, p, seed, mode):
    gen = np.random.default_rng(seed)
    out, mask = F.dropout_forward(x, p, gen, mode=mode)
    e_out, factor = F.dropout_forward(x, p, gen, mode=mode, training=False)
    return {"out": out, "mask": mask, "dx": F.dropout_backward(dout, mask), "eval out": e_out,
            "eval dx": F.dropout_backward(dout, factor),
            "next draw": gen.random(3)}                     # the rng advanced the same


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_same_bits_on_any_thread_count(rng, spy, dtype):
    r = _draw(rng)
    for shape in [(r(3, 9), r(1, 8), r(4, 16), r(4, 16)), (r(2000, 9000),)]:
        x = _uniform(rng, shape, dtype)
        dout = _uniform(rng, shape, dtype)
        seed = int(rng.integers(2**32))
        for mode in ("upscale_in_train", "downscale_in_infer"):
            for p in (0.3, 0.0, 1.0):
                result = _same_bits_on_threads(
                    f"dropout {mode} p={p} x{shape} {np.dtype(dtype).name}",
                    _dropout, x, dout, p, seed, mode)
                kept = result["mask"] != 0
                assert kept.any() == (p < 1) and (~kept).any() == (p > 0)
    spy.check()


def _affine(x, w, b, dout, input_grad):
    out, cache = F.affine_forward(x, w, b)
    dx, dw, db = F.affine_backward(dout, cache, input_grad=input_grad)
    return {"out": out, "dx": dx, "dw": dw, "db": db}


@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_same_bits_on_any_thread_count(rng, spy, dtype, monkeypatch):
    # blocks of 64 columns, so that every product here has three or more (real ones: 256)
    monkeypatch.setattr(importlib.import_module("cnnkit.functional.linear"), "BLOCK", 64)
    r = _draw(rng)
    cases = [((64, 8, 8, 8), 300), ((64, 512), 300), ((r(40, 90), 512), r(260, 400)),
             ((r(2, 9), r(3, 40)), r(2, 20))]                # the last one under SPLIT_FLOPS
    for x_shape, m in cases:
        d = int(np.prod(x_shape[1:]))
        x = _uniform(rng, x_shape, dtype)
        w = _uniform(rng, (d, m), dtype, 0.05)
        b = _uniform(rng, m, dtype)
        dout = _uniform(rng, (x_shape[0], m), dtype)
        for bias, input_grad in ((True, True), (False, True), (True, False)):
            _same_bits_on_threads(f"affine x{x_shape} M={m} bias={bias} "
                                  f"input_grad={input_grad} {np.dtype(dtype).name}",
                                  _affine, x, w, b if bias else None, dout, input_grad)
    spy.check()


def _small_model_params(rng, dtype):
    shapes = {"conv1.weight": (8, 3, 3, 3), "conv1.bias": (8,), "bn1.weight": (8,),
              "bn1.bias": (8,), "conv2.weight": (16, 8, 3, 3), "conv2.bias": (16,),
              "fc.weight": (10, 256), "fc.bias": (10,)}
    return {name: _uniform(rng, shape, dtype, 0.5) for name, shape in shapes.items()}


_OPTIMIZERS = {
    "SGD momentum": (SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}),
    "SGD nesterov clipped": (SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True,
                                   "max_grad_norm": 1.0}),
    "Adam": (Adam, {"lr": 1e-2, "weight_decay": 1e-3}),
    "Adam clipped": (Adam, {"lr": 1e-2, "max_grad_norm": 0.5}),
}


def _optimizer_steps(kind, hyper, data, grads):
    params = [(k, Parameter(v)) for k, v in data.items()]
    optimizer = kind(params, **hyper)
    for step_grads in grads:
        for k, p in params:
            p.grad[...] = step_grads[k]
        optimizer.step()
    result = {f"param {k}": p.data for k, p in params}
    for k, slots in optimizer.state_dict()["state"].items():
        result.update({f"state {k}.{s}": v for s, v in slots.items()})
    return result


@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_step_same_bits_on_any_thread_count(rng, spy, dtype):
    data = _small_model_params(rng, dtype)
    grads = [{name: _uniform(rng, a.shape, dtype) for name, a in data.items()} for _ in range(3)]
    for name, (kind, hyper) in _OPTIMIZERS.items():
        _same_bits_on_threads(f"{name} {np.dtype(dtype).name}",
                              _optimizer_steps, kind, hyper, data, grads)
    spy.check(plans=False)


# ============================================================================ a training step
def _small_net(dtype, seed=0):
    rng = np.random.default_rng(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False, rng=rng), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, rng=rng), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout.seeded_from(0.2, rng), nn.Linear(16 * 4 * 4, 10, rng=rng))
    return net.astype(dtype).train()


def _two_training_steps(dtype, n, size):
    """Two steps of forward, softmax loss, backward and Adam from a fixed seed; every loss,
    gradient, parameter and buffer."""
    model = _small_net(dtype)
    if size != 16:
        # 32x32 input: a stage first that is large enough to pass the kernels' own thresholds
        # (a 226 MFLOP conv, 16 MiB of activations at batch 128), then a 1x1 conv back to 3
        rng = np.random.default_rng(1)
        model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1, rng=rng), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Conv2d(32, 3, 1, rng=rng),
                              *model.children()).astype(dtype)
        model.train()
    data = np.random.default_rng(7)
    x = data.standard_normal((n, 3, size, size)).astype(dtype)
    y = data.integers(0, 10, n)
    optimizer = Adam(model.named_parameters(), lr=1e-2)
    record = {}
    for step in range(2):
        optimizer.zero_grad()
        scores = model.forward(x)
        loss, dscores = F.softmax_loss(scores, y)
        dx = model.backward(dscores, input_grad=True)
        record[f"step {step} loss"] = np.array(loss)
        record[f"step {step} scores"] = scores
        record[f"step {step} dx"] = dx
        for name, p in model.named_parameters():
            record[f"step {step} grad {name}"] = p.grad.copy()
        optimizer.step()
    for name, p in model.named_parameters():
        record[f"param {name}"] = p.data.copy()
    for name, b in model.named_buffers():
        record[f"buffer {name}"] = np.array(b, copy=True)
    return record


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["forced", "default"])
def test_training_steps_same_bits_on_any_thread_count(monkeypatch, mode, dtype):
    spy = _Spy(monkeypatch, mode)
    # "default": the real plans and MIN_PARALLEL_BYTES, on a batch large enough to use them
    n, size = (12, 16) if mode == "forced" else (128, 32)
    result = _same_bits_on_threads(f"training ({mode}) {np.dtype(dtype).name}",
                                   _two_training_steps, dtype, n, size)
    assert np.isfinite(result["step 1 loss"]) and result["step 0 loss"] != result["step 1 loss"]
    spy.check()


def test_idle_workers_keep_nothing_of_a_finished_call():
    """A worker that has finished its share of a call drops it: the task's closure (a kernel's
    arrays and scratch) is freed when the call returns, not when the worker's next job comes."""
    import time
    import weakref

    with parallel.num_threads(2):
        data = np.ones(1 << 16)
        kept = weakref.ref(data)
        seen = set()

        def task(i, slot, data=data):             # holds the array itself, not a cell
            seen.add(slot)
            time.sleep(0.01)                      # long enough for both threads to take part
            data.sum()

        parallel.for_each(8, task)
        assert seen == {0, 1}
        del task, data
        deadline = time.monotonic() + 5
        while kept() is not None and time.monotonic() < deadline:
            time.sleep(0.01)                      # the worker drops it just after its last task
        assert kept() is None
