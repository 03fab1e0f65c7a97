"""Task plans for the kernels' oracle tests: the real ones, or plans that cut every batch into
several chunks and run them on worker threads.

cnnkit's kernels split their work by shape alone (:mod:`cnnkit.parallel`), so an array small
enough for one task is one chunk. A bug that lives in the chunk path (rows counted from the chunk
instead of the batch, an offset into the output, a scratch buffer not reset between chunks) is
then invisible to every test whose arrays are small, and the tests that compare thread counts
under one plan miss whatever does not depend on the thread count. So the PyTorch-oracle and
naive-twin comparisons of every kernel that chunks run under each of these plans:

- ``"real"``: nothing changes (small arrays are one chunk; ``tests/test_chunk_plans.py`` holds
  the cases large enough to cross the real thresholds);
- ``"forced"``: every plan (``cnnkit.parallel.split`` and the name ``cnnkit.functional.im2col``
  imported) cuts its axis into about four chunks, the last one shorter, whatever the budget;
- ``"budget"``: the real ``split`` with a 256-byte task budget, 2 KiB of im2col columns and
  affine blocks of 8 columns, so the kernels' own sizing makes uneven chunks of arrays that are
  not tiny (a batch within one budget stays one chunk, as it would at the real sizes).

Under "forced" and "budget" nothing is too small to go to the pool (``MIN_PARALLEL_BYTES``,
conv's ``PARALLEL_FLOPS`` and affine's ``SPLIT_FLOPS`` are 0) and the kernels run on
:data:`THREADS` threads. In every mode, a call that goes to the pool holds back the calling
thread's first task until a worker has started one, so that workers really run tasks (with a
slot other than 0) however busy the machine is. :func:`chunk_plans` sets and restores
these without pytest's ``monkeypatch``, so an ``@given`` test can draw its plan from
:func:`plans` for each example.
"""

from __future__ import annotations

import importlib
import threading
from contextlib import contextmanager

from hypothesis import strategies as st

from cnnkit import parallel

__all__ = ["PLANS", "THREADS", "chunk_plans", "plans", "forced_plan", "PlanRecord"]

PLANS = ("real", "forced", "budget")
THREADS = 3

_im2col = importlib.import_module("cnnkit.functional.im2col")
_conv = importlib.import_module("cnnkit.functional.conv")
_linear = importlib.import_module("cnnkit.functional.linear")

TASK_BUDGET = 256              # "budget": bytes of one task of split's default plans
CHUNK_BUDGET = 2 << 10         # "budget": bytes of one conv chunk's im2col columns
AFFINE_BLOCK = 8               # "budget": columns of one affine block
WORKER_WAIT_S = 2.0            # the longest a call's first task waits for a worker to start


def plans():
    """A hypothesis strategy drawing one of :data:`PLANS` (shrinking towards "real")."""
    return st.sampled_from(PLANS)


def forced_plan(n: int) -> list[tuple[int, int]]:
    """About four chunks of n items, the last one shorter where n allows it (n = 4: 2, 2;
    n = 7: 3, 3, 1; n = 13: 5, 5, 3)."""
    step = max(1, -(-n // 4))
    while n % step == 0 and step + 1 < n:
        step += 1
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


class PlanRecord:
    """What the kernels did inside :func:`chunk_plans`: the plans they made, the parallel calls,
    and the tasks that ran on a worker thread."""

    def __init__(self, mode: str):
        self.mode = mode
        self.plans: list[list[tuple[int, int]]] = []
        self.calls = 0
        self.worker_tasks = 0
        self.lock = threading.Lock()

    @property
    def chunked(self) -> bool:
        """Whether some plan cut its axis into two chunks or more."""
        return any(len(plan) >= 2 for plan in self.plans)

    def check(self, *, chunks: bool = True, workers: bool = True) -> None:
        """The block ran what "forced" promises (call it where the arrays have an axis of two
        or more to cut): several chunks (``chunks``), and tasks on the pool's threads
        (``workers``)."""
        if chunks:
            assert self.chunked, f"{self.mode}: no plan had two chunks or more: {self.plans[:5]}"
        if workers:
            assert self.worker_tasks > 0, f"{self.mode}: no task ran on a worker thread"


class _Patches:
    """Module attributes set for a block and restored after it, in reverse order."""

    def __init__(self):
        self.saved = []

    def set(self, owner, name: str, value) -> None:
        self.saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def restore(self) -> None:
        while self.saved:
            owner, name, value = self.saved.pop()
            setattr(owner, name, value)


@contextmanager
def chunk_plans(mode: str = "forced", threads: int | None = None):
    """``with chunk_plans(mode) as record:`` run the block's kernels under plan ``mode`` (one of
    :data:`PLANS`, see the module docstring) on ``threads`` threads (default: :data:`THREADS`,
    or under "real" the count set now); ``record`` is a :class:`PlanRecord`."""
    if mode not in PLANS:
        raise ValueError(f"plan mode must be one of {PLANS}, got {mode!r}")
    record = PlanRecord(mode)
    real_split, real_for_each = parallel.split, parallel.for_each

    def split(n, item_bytes, budget=None):
        if mode == "forced":
            plan = forced_plan(n)
        elif mode == "budget":
            plan = real_split(n, item_bytes, TASK_BUDGET if budget is None else budget)
        else:
            plan = real_split(n, item_bytes, budget)
        with record.lock:
            record.plans.append(plan)
        return plan

    def for_each(n, task, *, work_bytes=None, serial=False):
        caller = threading.get_ident()
        # a call that goes to the pool: its first task on this thread waits until a worker has
        # taken one, so that workers run tasks however slowly they wake
        wait = [parallel._threads_for(n, work_bytes, serial) > 1]
        worker_started = threading.Event()

        def wrapped(i, slot):
            if threading.get_ident() != caller:
                worker_started.set()
                with record.lock:
                    record.worker_tasks += 1
            elif wait[0]:
                wait[0] = False
                worker_started.wait(WORKER_WAIT_S)
            return task(i, slot)

        with record.lock:
            record.calls += 1
        return real_for_each(n, wrapped, work_bytes=work_bytes, serial=serial)

    patches = _Patches()
    patches.set(parallel, "split", split)
    patches.set(_im2col, "split", split)
    patches.set(parallel, "for_each", for_each)
    if threads is None:
        threads = THREADS if mode != "real" else parallel.get_num_threads()
    if mode != "real":
        patches.set(_im2col, "CHUNK_BYTES", CHUNK_BUDGET)
        patches.set(parallel, "MIN_PARALLEL_BYTES", 0)
        patches.set(_conv, "PARALLEL_FLOPS", 0)
        patches.set(_linear, "SPLIT_FLOPS", 0)
        patches.set(_linear, "BLOCK", AFFINE_BLOCK)
    try:
        with parallel.num_threads(threads):
            yield record
    finally:
        patches.restore()
