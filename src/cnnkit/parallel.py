"""cnnkit's threads: a worker pool that takes the chunks of a batch the kernels already plan.

A kernel splits its work into tasks by a plan that depends on shapes and the cache budget only
(a conv's batch chunks whose columns fit in L2, element-wise runs of ``TASK_BYTES``), never on
the thread count. ``for_each(n, task)`` runs ``task(i, slot)`` for i = 0 .. n-1 on up to
``get_num_threads()`` threads: the calling thread and the pool's workers pull the next index
until none is left. Each task writes its own slice of the output, and partial results are
combined in a fixed order: a conv's dw terms by :func:`ordered_sum` in task order, batch norm's
and a conv's bias sums as per-sample rows added over the batch afterwards. So every output and
gradient is bit-identical for 1, 2, 3 or 64 threads.

The workers are Python threads. That is enough because NumPy releases the GIL inside copies,
ufunc loops and matmul, which is where a kernel spends its time; the Python between two NumPy
calls is short. ``slot`` (0 for the calling thread, 1 .. T-1 for the workers taking part)
names a thread's own scratch: a task uses ``scratch[slot]`` and no other thread touches it
during the call.

BLAS: inside cnnkit's calls NumPy's BLAS runs at one thread (:func:`blas_single_thread`, set
on entry and restored on exit). cnnkit's threads already split the work, a chunk's GEMM is too
small for BLAS threads to pay, and BLAS threads under each of ours would oversubscribe the cores.

While the workers run, the interpreter's switch interval is 0.5 ms instead of 5 ms
(:data:`SWITCH_INTERVAL`, restored after): a thread coming back from NumPy otherwise waits up to
5 ms for the GIL while another makes short NumPy calls, and two threads gained nothing.

Small work stays on the calling thread: waking a worker costs tens of microseconds, so a call
whose work is under :data:`MIN_PARALLEL_BYTES` (or that has one task) runs its tasks in a loop.
A task that itself calls a parallel kernel (a nested call, from a worker) runs it serially.

Settings: ``set_num_threads(n)`` / ``get_num_threads()``; the default is the number of cores this
process may use (``os.sched_getaffinity``), or ``CNNKIT_NUM_THREADS`` when it is set.
``with num_threads(n):`` sets a count for a block. The command line's ``--threads`` sets it too.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from contextlib import contextmanager
from functools import wraps

import numpy as np

from .allocator import keep_freed_memory
from .environment import EnvironmentVariableError, read_variable

__all__ = ["get_num_threads", "set_num_threads", "num_threads", "default_num_threads",
           "for_each", "ordered_sum", "over_batch", "elementwise", "empty_result", "split",
           "blas_single_thread", "single_thread_blas", "TASK_BYTES", "MIN_PARALLEL_BYTES",
           "MAX_THREADS"]

#: The most threads ``set_num_threads`` accepts (OpenBLAS's own limit in NumPy's wheels is 64;
#: cnnkit's threads are not BLAS threads, but more than this is a typo).
MAX_THREADS = 1024

#: Bytes of one task of the element-wise, pooling and batch-norm kernels: 2 MiB of the input.
#: Smaller tasks mean more NumPy calls, each with its own start-up cost and each ending by taking
#: the interpreter lock back; larger ones leave cores idle. On the 2-core machine 256 KiB tasks
#: lost a third of the second thread's gain, and 2 MiB ran max pooling and batch norm as fast as
#: 1 MiB or faster on one thread and on two. A 64 x 64 x 32 x 32 float32 batch (16 MiB) makes 8.
TASK_BYTES = 2 << 20

#: Below this many bytes of input a kernel runs on the calling thread. Measured on the 2-core
#: machine with ``python -m benchmarks.pool``: an empty parallel call costs about 30 us; a
#: float32 ReLU forward + backward of 2 MiB (one task) ran at 1.0x on two threads, of 3 MiB (two
#: tasks) at 1.24x and of 16 MiB at 1.56-1.79x.
MIN_PARALLEL_BYTES = 2 << 20

_ENV = "CNNKIT_NUM_THREADS"
_state_lock = threading.Lock()
_threads: int | None = None          # None: not yet resolved from the environment
_local = threading.local()           # .busy: this thread is inside a parallel call


# ----------------------------------------------------------------------------- the count
def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):            # not Linux
        return os.cpu_count() or 1


def _check_count(n, what: str) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {n!r}")
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"{what} must be from 1 to {MAX_THREADS:,}, got {n}")
    return int(n)


def default_num_threads() -> int:
    """``CNNKIT_NUM_THREADS`` if set, else the cores this process may use.

    Raises :class:`~cnnkit.environment.EnvironmentVariableError` (a ValueError; one line,
    naming the variable) if the variable is not a thread count ``--threads`` would take.
    """
    value = read_variable(_ENV, _thread_count)
    return _available_cores() if value is None else value


def _thread_count(text: str) -> int:
    try:
        return _check_count(int(text.strip()), "a thread count")
    except (TypeError, ValueError):
        raise ValueError(f"expected a thread count from 1 to {MAX_THREADS:,}, got "
                         f"{text[:40]!r}") from None


def get_num_threads() -> int:
    """The number of threads cnnkit's kernels use (the calling thread included)."""
    global _threads
    if _threads is None:
        with _state_lock:
            if _threads is None:
                _threads = default_num_threads()
    return _threads


def set_num_threads(n: int) -> None:
    """Use n threads (the calling thread and n - 1 workers) in cnnkit's kernels from now on.

    Results do not depend on n: only the speed does. Raises ``TypeError``/``ValueError`` for
    anything but an int from 1 to :data:`MAX_THREADS`.
    """
    global _threads
    n = _check_count(n, "cnnkit.set_num_threads: the thread count")
    with _state_lock:
        _threads = n


@contextmanager
def num_threads(n: int):
    """``with num_threads(n):`` run the block's kernels on n threads, then restore the count."""
    before = get_num_threads()
    set_num_threads(n)
    try:
        yield n
    finally:
        set_num_threads(before)


# ----------------------------------------------------------------------------- scoped settings
class _Scoped:
    """A process-wide setting held while any thread is inside a block: the first entry applies
    it, the last exit restores what was there (re-entrant and shared by threads, so a model's
    forward sets it once for all its layers' kernels). A class rather than a generator-based
    context manager: it is entered around every kernel call, and this costs a third as much."""

    def __init__(self, apply, restore):
        self._apply, self._restore = apply, restore
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = None

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                self._saved = self._apply()
            self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                self._restore(self._saved)
                self._saved = None

    def reset(self) -> None:
        """Forget every entry (a forked child: the threads that entered are gone)."""
        self._lock = threading.Lock()
        self._depth, self._saved = 0, None


# malloc keeps freed memory for the next step (cnnkit.allocator): set when the kernels load; a
# bad CNNKIT_KEEP_FREED_MEMORY is reported by the first kernel call (_blas_controllers), not
# by an import.
try:
    keep_freed_memory()
except EnvironmentVariableError:
    pass


# BLAS at one thread ------------------------------------------------------------------------
_blas_libraries: list | None = None  # threadpoolctl's controllers of the loaded BLAS libraries


def _blas_controllers() -> list:
    """threadpoolctl's controllers for the BLAS libraries loaded now (found once). The first
    kernel call comes here, and raises a bad ``CNNKIT_KEEP_FREED_MEMORY`` (see above)."""
    global _blas_libraries
    if _blas_libraries is None:
        keep_freed_memory()
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:                       # then BLAS keeps its own threads
            _blas_libraries = []
        else:
            _blas_libraries = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _blas_libraries


def _blas_to_one() -> list:
    saved = []
    for lib in _blas_controllers():
        before = lib.get_num_threads()
        if before != 1:
            lib.set_num_threads(1)
            saved.append((lib, before))
    return saved


def _blas_restore(saved: list) -> None:
    for lib, before in saved:
        lib.set_num_threads(before)


_blas_scope = _Scoped(_blas_to_one, _blas_restore)


def blas_single_thread() -> _Scoped:
    """``with blas_single_thread():`` NumPy's BLAS runs at one thread within the block, and the
    count it had is restored after (re-entrant and shared by threads, see ``_Scoped``)."""
    return _blas_scope


def single_thread_blas(function):
    """Decorator: run ``function`` inside :func:`blas_single_thread`."""
    @wraps(function)
    def wrapper(*args, **kwargs):
        with _blas_scope:
            return function(*args, **kwargs)
    return wrapper


# A short switch interval --------------------------------------------------------------------
#: The interpreter's switch interval (seconds) while cnnkit's threads run. A thread that comes
#: back from a NumPy call and finds the GIL taken waits until its holder lets go; when the holder
#: makes many short NumPy calls it takes the GIL straight back each time, and the waiter gets
#: it only when its wait times out, after the switch interval: 5 ms by default, longer than
#: most tasks. Measured on the 2-core machine: at 5 ms the second thread gained nothing on batch
#: norm and max pooling (0.74-1.24x); at 0.5 ms they ran 1.3-1.8x faster than on one thread.
SWITCH_INTERVAL = 5e-4


def _switch_shorten() -> float:
    before = sys.getswitchinterval()
    if before > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)
    return before


_switch_scope = _Scoped(_switch_shorten, sys.setswitchinterval)


# ----------------------------------------------------------------------------- the plan
def split(n: int, item_bytes: int, budget: int | None = None) -> list[tuple[int, int]]:
    """``(lo, hi)`` slices of n items, each holding at most ``budget`` bytes (default
    :data:`TASK_BYTES`; at least one item), as few as that allows and of sizes within one item
    of each other (64 samples of which 55 fit are two tasks of 32, not 55 and 9): the task plan
    of a kernel over a batch or a flat array. It depends on n, the item size and the budget,
    never on the thread count."""
    budget = TASK_BYTES if budget is None else budget
    if n <= 0:
        return []
    per_task = max(1, min(n, budget // max(1, item_bytes)))
    if per_task == n:
        return [(0, n)]
    count = -(-n // per_task)                     # as few tasks as the budget allows,
    bounds = [n * i // count for i in range(count + 1)]   # their sizes within one item
    return list(zip(bounds[:-1], bounds[1:]))


# ----------------------------------------------------------------------------- the pool
class _Call:
    """One parallel call: the next task index, the workers taking part, the first error."""

    def __init__(self, n: int, task, workers: int):
        self.n, self.task = n, task
        self.lock = threading.Lock()
        self.next = 0
        self.error: BaseException | None = None
        self.pending = workers            # worker jobs that started and have not finished
        self.waiting = workers            # worker jobs not yet picked up by a thread
        self.closed = False               # the caller gave up on the jobs still waiting
        self.done = threading.Event()

    def take(self) -> int | None:
        with self.lock:
            if self.next >= self.n or self.error is not None:
                return None
            i, self.next = self.next, self.next + 1
            return i

    def drain(self, slot: int) -> None:
        """Run tasks on this thread until none is left (or one failed)."""
        _local.busy = True
        try:
            while (i := self.take()) is not None:
                try:
                    self.task(i, slot)
                except BaseException as err:      # noqa: BLE001 (re-raised by the caller)
                    with self.lock:
                        if self.error is None:
                            self.error = err
        finally:
            _local.busy = False

    def work(self, slot: int) -> None:
        """A worker's job: drain, unless the caller finished without waiting for this job."""
        with self.lock:
            if self.closed:
                return
            self.waiting -= 1
        try:
            self.drain(slot)
        finally:
            with self.lock:
                self.pending -= 1
                if self.pending == 0:
                    self.done.set()

    def close(self) -> bool:
        """Called by the caller when it ran out of tasks: jobs no worker has picked up yet are
        dropped (waking a thread costs more than the work left, which is none). Returns whether
        a worker is still running a task (then wait for ``done``)."""
        with self.lock:
            self.closed = True
            self.pending -= self.waiting
            self.waiting = 0
            if self.pending == 0:
                self.done.set()
            return self.pending > 0

    def stop(self) -> None:
        """No more tasks are handed out (after an error or Ctrl-C in the caller)."""
        with self.lock:
            self.next = self.n


class _Pool:
    """Daemon threads, each waiting on one shared queue for jobs."""

    def __init__(self):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.size = 0
        self.lock = threading.Lock()

    def ensure(self, workers: int) -> None:
        with self.lock:
            while self.size < workers:
                thread = threading.Thread(target=self._loop, name=f"cnnkit-{self.size + 1}",
                                          daemon=True)
                thread.start()
                self.size += 1

    def _loop(self) -> None:
        while True:
            call, slot = self.jobs.get()
            call.work(slot)
            # An idle worker must not keep the finished call alive: its task closes over the
            # kernel's arrays and scratch (megabytes) until the worker's next job.
            del call


_pool: _Pool | None = None


def _reset_after_fork() -> None:
    """Threads do not survive fork: a child starts with no pool and no scopes held."""
    global _pool
    _pool = None
    _blas_scope.reset()
    _switch_scope.reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _threads_for(n: int, work_bytes: int | None, serial: bool) -> int:
    """The threads a call of n tasks gets: 1 for small work, a nested call or one task."""
    if serial or n <= 1 or (work_bytes is not None and work_bytes < MIN_PARALLEL_BYTES):
        return 1
    if getattr(_local, "busy", False):
        return 1
    return min(get_num_threads(), n)


def for_each(n: int, task, *, work_bytes: int | None = None, serial: bool = False) -> None:
    """Run ``task(i, slot)`` for every i in range(n), on up to ``get_num_threads()`` threads.

    ``slot`` in [0, threads) names the thread's scratch (see the module docstring). Tasks must
    write disjoint outputs. ``work_bytes``, the bytes of the kernel's input (default: large),
    below :data:`MIN_PARALLEL_BYTES`, or ``serial=True`` (a kernel's own judgement of its
    work), keeps the call on this thread. The first exception a task raises is re-raised here once
    every thread has stopped; Ctrl-C in the caller also waits for the workers' current tasks,
    so no worker writes after this function returns.
    """
    global _pool
    threads = _threads_for(n, work_bytes, serial)
    if threads == 1:
        with _blas_scope:
            for i in range(n):
                task(i, 0)
        return
    workers = threads - 1
    if _pool is None:
        _pool = _Pool()
    _pool.ensure(workers)
    call = _Call(n, task, workers)
    with _blas_scope, _switch_scope:
        for slot in range(1, threads):
            _pool.jobs.put((call, slot))
        try:
            call.drain(0)
            if call.close():
                call.done.wait()
        except BaseException:
            call.stop()
            call.close()
            while not call.done.wait(0.1):        # let started tasks finish, then re-raise
                pass
            raise
    if call.error is not None:
        raise call.error


def ordered_sum(n: int, task, *, work_bytes: int | None = None, serial: bool = False):
    """``task(0, slot) + task(1, slot) + ... + task(n-1, slot)``, added left to right in task
    order whatever thread computed each term, so the bits do not depend on the thread count.

    Terms are added as soon as all earlier ones are in, so only the few that finish out of
    order wait in memory (as copies). A task may return its slot's scratch array: it is added
    or copied before the slot's next task starts.
    """
    if _threads_for(n, work_bytes, serial) == 1:           # the same sum, in a plain loop
        total = None
        with _blas_scope:
            for i in range(n):
                term = task(i, 0)
                if total is None:
                    total = np.array(term, copy=True)
                else:
                    total += term
        return total
    total = None
    waiting: dict[int, np.ndarray] = {}
    next_term = 0
    lock = threading.Lock()

    def run(i, slot):
        nonlocal total, next_term
        term = task(i, slot)
        with lock:
            waiting[i] = term if i == next_term else np.array(term, copy=True)
            while next_term in waiting:
                term = waiting.pop(next_term)
                if total is None:
                    total = np.array(term, copy=True)
                else:
                    total += term
                next_term += 1

    for_each(n, run, work_bytes=work_bytes, serial=serial)
    return total


def over_batch(array: np.ndarray, task) -> None:
    """``task(lo, hi)`` for each batch slice of ``array`` that :func:`split` plans (about
    :data:`TASK_BYTES` of it each), on cnnkit's threads: the loop of every kernel whose samples
    are independent (pooling, batch norm's passes, a conv's bias sums). Each task writes the
    rows lo:hi of its outputs."""
    n = array.shape[0]
    plan = split(n, array.nbytes // max(1, n))
    if len(plan) == 1:
        task(0, n)
        return
    for_each(len(plan), lambda i, slot: task(*plan[i]), work_bytes=array.nbytes)


def elementwise(function, out: np.ndarray, *inputs: np.ndarray) -> np.ndarray:
    """``function(out, *inputs)`` (which writes its result into out) applied run by run.

    The arrays are cut into runs of :data:`TASK_BYTES` of out along their flattened C order, one
    task each, so each run's temporaries stay in cache. Small arrays (under
    :data:`MIN_PARALLEL_BYTES`) and arrays that are not all C-contiguous and of out's shape
    (broadcasting, strided views) are handed to ``function`` whole. Element-wise results do not
    depend on the cut. Returns out.
    """
    inputs = tuple(np.asarray(a) for a in inputs)
    arrays = (out,) + inputs
    if (out.nbytes < MIN_PARALLEL_BYTES
            or any(a.shape != out.shape or not a.flags.c_contiguous for a in arrays)):
        function(out, *inputs)                   # element-wise: no BLAS
        return out
    flat = [a.reshape(-1) for a in arrays]
    runs = split(out.size, out.itemsize)

    def run(i, slot):
        lo, hi = runs[i]
        function(*(a[lo:hi] for a in flat))

    for_each(len(runs), run, work_bytes=out.nbytes)
    return out


def empty_result(*arrays) -> np.ndarray:
    """An empty array for an element-wise result of ``arrays``: their broadcast shape and the
    dtype NumPy's arithmetic would give (a float64 dout with a float32 cache gives float64)."""
    arrays = [np.asarray(a) for a in arrays]
    return np.empty(np.broadcast_shapes(*(a.shape for a in arrays)), np.result_type(*arrays))
