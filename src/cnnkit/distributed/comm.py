"""The communicator: MPI's collectives with a deadline, and a way to say that a rank failed.

Every collective cnnkit makes goes through :class:`Comm`: the gradient allreduce of each step,
synchronised batch norm's sums, the evaluation counts, the start-up checks. Each is MPI's
non-blocking form (``Iallreduce``, ``Ibcast``), then a wait that polls the request, so that a
rank can notice, while it waits, what a blocking call would hang on:

* a peer that raised. A failing rank sends one line (tag :data:`TAG_ERROR`, UTF-8 bytes through
  the buffer interface: nothing is pickled) to every other rank and prints it (the lowest rank
  does, when several fail at once), then ends the job with ``MPI_Abort``; a rank waiting in a
  collective receives the line and stops quietly (:class:`PeerFailed`). The job ends with that
  one line instead of a hang.
* a peer that never arrives (stopped, deadlocked, dead under a launcher that does not clean up).
  After ``timeout`` seconds the waiting ranks tell each other they are alive (tag
  :data:`TAG_ALIVE`), wait a grace period, and name the ranks that did not answer
  (:class:`CollectiveTimeout`).

A rank killed outright (SIGKILL, the out-of-memory killer) is seen by the launcher: MPICH's
``mpiexec`` stops the other ranks at once, and ``cnnkit train --workers`` names the rank
(:mod:`cnnkit.distributed.launch`).

``world()`` decides from the environment alone whether this process is one of several MPI ranks
(``mpiexec`` sets ``PMI_SIZE``, Open MPI ``OMPI_COMM_WORLD_SIZE``); a plain process never imports
mpi4py.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from .. import interrupts, parallel
from ..environment import parse_rank_folder, read_variable
from ..errors import CnnkitError

__all__ = ["Comm", "DistributedError", "PeerFailed", "CollectiveTimeout", "world",
           "job_size", "job_rank", "exit_now", "together", "share_cores", "DEFAULT_TIMEOUT",
           "QUIET_EXIT_DELAY", "TAG_ERROR", "TAG_ALIVE", "MPI_MISSING"]

#: Seconds a rank waits in a collective before it asks which ranks are missing. Generous: rank 0
#: writes checkpoints while the others wait at the next collective.
DEFAULT_TIMEOUT = 600.0

#: Seconds a rank that stops without a word waits before it leaves: the launcher stops the whole
#: job when one rank leaves, and the rank that reports may still be writing its line.
QUIET_EXIT_DELAY = 2.0

#: Seconds a collective is polled without pause before the polls are spaced by sleeps.
SPIN_SECONDS = 2e-3

TAG_ERROR = 7301     # a rank failed: "<rank>\0<one line>"
TAG_ALIVE = 7302     # "I waited out the timeout at collective <n>"

#: The one line printed when a multi-rank job finds no mpi4py.
MPI_MISSING = 'running on several MPI ranks needs mpi4py: pip install "cnnkit[mpi]"'

#: Environment variables in which MPI launchers announce the job's size.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")


class DistributedError(CnnkitError, RuntimeError):
    """A collective could not complete; the message names the rank(s) at fault.

    ``report``: whether this rank should print the message (one rank prints, so the job says
    it once). ``agreed``: every rank knows of the error at the same point, so no collective is
    pending anywhere and the ranks can all leave the ordinary way."""

    agreed = False

    def __init__(self, message: str, *, report: bool = True, rank: int | None = None):
        super().__init__(message, rank=rank)
        self.report = report


class PeerFailed(DistributedError):
    """Another rank raised; it prints its own error, so this one stops without a word (after
    :data:`QUIET_EXIT_DELAY` seconds, so that its leaving does not cut the other short).
    ``agreed`` when :func:`together` raised it."""

    def __init__(self, rank: int, message: str, *, agreed: bool = False):
        super().__init__(f"rank {rank} failed: {message}", report=False)
        self.failed_rank, self.reason, self.agreed = rank, message, agreed


class AgreedError(DistributedError):
    """An error that every rank knows of at the same point, raised in place of ``error`` (also
    its ``__cause__``): by :func:`together` on the lowest rank it failed on, and by code every
    rank runs alike (a search all of whose trials diverged). Only a rank that ``report``s it
    prints it; ``rank`` is named when some ranks succeeded and it is not rank 0."""

    agreed = True

    def __init__(self, error: BaseException, *, report: bool, rank: int | None = None):
        super().__init__(str(error), report=report, rank=rank)
        self.error = error


class CollectiveTimeout(DistributedError):
    """Some ranks did not reach a collective within the timeout."""

    def __init__(self, message: str, missing: list[int], report: bool):
        super().__init__(message, report=report)
        self.missing = missing


def job_size() -> int:
    """The number of ranks the launcher started, read from the environment (1 outside MPI)."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 1:
            return int(value)
    return 1


_active: "Comm | None" = None


def _checked_timeout(timeout) -> float:
    if not timeout > 0:
        raise ValueError(f"the collective timeout must be > 0 seconds, got {timeout!r}")
    return float(timeout)


def active() -> "Comm | None":
    """The communicator :func:`world` made last in this process (None outside MPI): the one the
    command line's error boundary tells of a failure."""
    return _active


def world(timeout: float = DEFAULT_TIMEOUT) -> "Comm | None":
    """The job's communicator when this process is one of several MPI ranks, else None.

    Raises :class:`DistributedError` when the launcher started several ranks but mpi4py cannot
    be imported."""
    global _active
    if job_size() == 1:
        return None
    if _active is not None:         # a second run in the same job (a script calling fit twice)
        _active.timeout = _checked_timeout(timeout)
        return _active
    try:
        import mpi4py
        mpi4py.rc.thread_level = "funneled"     # only the main thread calls MPI
        from mpi4py import MPI
    except ImportError:
        # every rank meets it: one says it
        raise DistributedError(MPI_MISSING, report=job_rank() == 0) from None
    if MPI.COMM_WORLD.Get_size() == 1:
        return None
    comm = _active = Comm(MPI.COMM_WORLD, timeout)
    _stop_peers_on_uncaught(comm)
    folder = read_variable("CNNKIT_RANK_DIR", parse_rank_folder)
    if folder:                   # `cnnkit train --workers` names a rank that dies by its pid
        try:
            with open(os.path.join(folder, f"rank-{comm.rank}"), "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            pass
    return comm


def _stop_peers_on_uncaught(comm: Comm) -> None:
    """An exception nobody catches (a script of the user's) tells the other ranks before this
    one exits, rather than leaving them in a collective until the timeout."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        if isinstance(value, DistributedError):     # said once, by the rank that reports
            if value.report:
                print(f"rank {comm.rank}: {value}", file=sys.stderr)
            else:
                time.sleep(QUIET_EXIT_DELAY)
        else:
            previous(kind, value, tb)
            if not isinstance(value, KeyboardInterrupt):
                first = (str(value).splitlines() or [""])[0]
                comm.fail(f"{kind.__name__}: {first}")
        exit_now(1, comm)

    sys.excepthook = hook


def share_cores(comm: "Comm | None", threads: int | None) -> None:
    """As one of several ranks, without ``--threads`` (``threads``) or CNNKIT_NUM_THREADS: take
    this machine's cores divided by the ranks on it (MPICH and Open MPI say how many), so that
    the ranks do not oversubscribe the cores with cnnkit's threads."""
    if comm is None or threads is not None or "CNNKIT_NUM_THREADS" in os.environ:
        return
    local = os.environ.get("MPI_LOCALNRANKS") or os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE")
    ranks = int(local) if local and local.isdigit() and int(local) >= 1 else comm.size
    parallel.set_num_threads(max(1, parallel.default_num_threads() // ranks))


def job_rank() -> int:
    """This process's rank as the launcher announced it in the environment (0 outside MPI)."""
    for name in _RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


class Comm:
    """A communicator whose collectives time out and notice failed peers.

    ``rank`` and ``size`` are MPI's; ``timeout`` the seconds a collective may wait. The methods
    take NumPy arrays and work in place through mpi4py's buffer interface (no pickling).
    """

    def __init__(self, comm, timeout: float = DEFAULT_TIMEOUT):
        from mpi4py import MPI

        self._mpi, self._comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout = _checked_timeout(timeout)
        self.calls = 0              # collectives made, so a timeout can say which one
        self.wait_seconds = 0.0     # time spent inside collectives (the allreduce's share)

    def __repr__(self):
        return f"Comm(rank {self.rank} of {self.size}, timeout {self.timeout:g} s)"

    @property
    def is_root(self) -> bool:
        """Whether this process is rank 0."""
        return self.rank == 0

    # ------------------------------------------------------------------ collectives
    def allreduce(self, buf: np.ndarray, what: str = "an allreduce", op: str = "sum",
                  timeout: float | None = None):
        """Sum (or ``op="max"``) ``buf`` over the ranks, in place; returns ``buf``. ``timeout``
        overrides the communicator's (``math.inf``: as long as it takes, still watching for a
        failed peer)."""
        mpi_op = {"sum": self._mpi.SUM, "max": self._mpi.MAX}[op]
        buf = np.ascontiguousarray(buf)
        return self._wait(self._comm.Iallreduce(self._mpi.IN_PLACE, buf, op=mpi_op), what, buf,
                          timeout)

    def bcast(self, buf: np.ndarray, root: int = 0, what: str = "a broadcast"):
        """Rank ``root``'s ``buf`` into every rank's ``buf`` (same shape and dtype), in place."""
        return self._wait(self._comm.Ibcast(buf, root=root), what, buf)

    def barrier(self, what: str = "a barrier", timeout: float | None = None) -> None:
        """Wait until every rank arrives; ``timeout`` overrides the communicator's (``math.inf``:
        wait as long as it takes, still watching for a failed peer)."""
        self._wait(self._comm.Ibarrier(), what, timeout=timeout)

    def agree(self, failed: int, what: str, timeout: float | None = None) -> np.ndarray:
        """Every rank says how its part of ``what`` went (0 well, else a code); returns every
        rank's code, the same array on every rank."""
        codes = np.zeros(self.size, np.int32)
        codes[self.rank] = int(failed)
        return self.allreduce(codes, what, timeout=timeout)

    def _wait(self, request, what: str, result=None, timeout: float | None = None):
        """Poll ``request`` until it completes; meanwhile watch for a failed peer and the
        deadline.

        A non-blocking collective moves on only while its ranks poll it, so the first
        :data:`SPIN_SECONDS` poll without a pause: a 0.4 MB allreduce between two ranks takes
        0.09 ms so, against 1 ms with a sleep between polls. After that the polls are spaced
        by short sleeps (up to 1 ms): a rank waiting on a slower one gives the core back, which
        the slower one may need where there are more ranks than cores."""
        self.calls += 1
        start = time.perf_counter()
        deadline = start + (self.timeout if timeout is None else timeout)
        spin_until = start + SPIN_SECONDS
        pause = 0.0
        with interrupts.deferred():   # a stop signal never leaves a collective half made
            while not request.Test():
                self._check_peers()
                now = time.perf_counter()
                if now > deadline:
                    self._timed_out(what)
                if now > spin_until:
                    time.sleep(pause)
                    pause = min(1e-3, pause * 2 + 2e-5)
        self.wait_seconds += time.perf_counter() - start
        return result

    # ------------------------------------------------------------------ failures
    def _check_peers(self) -> None:
        status = self._mpi.Status()
        if self._comm.Iprobe(source=self._mpi.ANY_SOURCE, tag=TAG_ERROR, status=status):
            data = bytearray(status.Get_count(self._mpi.BYTE))
            self._comm.Recv([data, self._mpi.BYTE], source=status.Get_source(), tag=TAG_ERROR)
            rank, _, message = bytes(data).decode("utf-8", "replace").partition("\0")
            raise PeerFailed(int(rank), message)

    def fail(self, message: str, settle: float = 0.5) -> bool:
        """Tell every other rank that this one failed with ``message`` (one line); they stop at
        their next collective (:class:`PeerFailed`). Returns whether this rank should print it:
        True unless a lower rank's failure arrives within ``settle`` seconds (every rank meeting
        the same error at the same step then says it once)."""
        data = bytearray(f"{self.rank}\0{message}".encode("utf-8"))
        requests = [self._comm.Isend([data, self._mpi.BYTE], dest=r, tag=TAG_ERROR)
                    for r in range(self.size) if r != self.rank]
        deadline = time.perf_counter() + settle
        lowest = self.rank
        while time.perf_counter() < deadline:
            try:
                self._check_peers()
            except PeerFailed as other:
                lowest = min(lowest, other.failed_rank)
            time.sleep(2e-3)
        while not self._mpi.Request.Testall(requests) and time.perf_counter() < deadline + 2:
            time.sleep(1e-3)
        return lowest == self.rank

    def _timed_out(self, what: str) -> None:
        """The deadline passed in collective number ``calls``: find out which ranks are alive
        and waiting too, and raise a :class:`CollectiveTimeout` naming the others."""
        mpi = self._mpi
        note = np.array([self.calls], np.int64)
        requests = [self._comm.Isend([note, mpi.INT64_T], dest=r, tag=TAG_ALIVE)
                    for r in range(self.size) if r != self.rank]
        alive = {self.rank}
        grace = min(10.0, max(1.0, self.timeout / 10))
        deadline = time.perf_counter() + grace
        status, got = mpi.Status(), np.zeros(1, np.int64)
        while time.perf_counter() < deadline and len(alive) < self.size:
            self._check_peers()
            while self._comm.Iprobe(source=mpi.ANY_SOURCE, tag=TAG_ALIVE, status=status):
                self._comm.Recv([got, mpi.INT64_T], source=status.Get_source(), tag=TAG_ALIVE)
                alive.add(status.Get_source())
            time.sleep(5e-3)
        for request in requests:
            if not request.Test():
                request.Cancel()
        missing = sorted(set(range(self.size)) - alive)
        report = self.rank == min(alive)
        if not report:
            # the reporting rank may still be in its grace period; leaving now would have the
            # launcher stop it before it says what happened
            time.sleep(grace + 1.0)
        who = (f"rank {missing[0]}" if len(missing) == 1 else
               "ranks " + ", ".join(map(str, missing))) if missing else "a rank"
        raise CollectiveTimeout(
            f"{who} did not reach {what} within {self.timeout:g} s (stopped, hung or dead); "
            f"the other ranks stop too", missing, report=report)


def exit_now(code: int, comm: "Comm | None" = None) -> None:
    """Leave the process at once, output flushed, without MPI's finalisation (which would wait
    for the ranks that failed or hang). With ``comm``, end the whole job: ``MPI_Abort`` stops
    every rank at once, with this exit status, and without the banner ``mpiexec`` prints when a
    rank it did not expect to end is killed (its own line about the abort is not shown: this
    process has said what happened)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if comm is not None:
        time.sleep(0.5)         # mpiexec forwards what the line wrote before it stops the job
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        comm._comm.Abort(code)
    os._exit(code)


def together(comm: Comm | None, what: str, fn, *, ranks=None, timeout: float | None = None):
    """Run ``fn()`` on ``ranks`` (every rank by default), then agree whether it failed anywhere.

    Returns ``fn()``'s result (None on the ranks that did not run it) when it succeeded
    everywhere. Otherwise the lowest failing rank re-raises its error, marked so that the
    command line prints it once (``cnnkit_report``), with the rank when some ranks succeeded and
    it is not rank 0 (``cnnkit_rank``); every other rank raises a silent :class:`PeerFailed`.
    When ranks were only interrupted (a stop signal, raised inside ``fn`` or held until this
    agreement: :mod:`cnnkit.interrupts`), every rank raises ``Interrupted``. Set-up steps run
    this way, so that an error every rank meets (a missing data file) is one line, not one
    per rank; ``timeout`` is the wait for the slowest rank (``math.inf`` for long steps, such as
    a search's trials). Without ``comm`` it is ``fn()``.
    """
    if comm is None:
        return fn()
    error, result = None, None
    if ranks is None or comm.rank in ranks:
        try:
            with interrupts.raising():             # a long step (a decode) stops when asked
                result = fn()
        except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - re-raised below
            error = err
    # each rank's code: 0 well, 1 failed, 128 + the signal when a stop request came to it
    # (raised inside fn, or held until this agreement), so every rank names the same signal
    code, stop = 0, interrupts.requested()
    if isinstance(error, KeyboardInterrupt):
        stop = interrupts.signal_of(error)
    elif error is not None:
        code, stop = 1, None
    if stop is not None:
        code = 128 + stop
    codes = comm.agree(code, what, timeout)
    failed = [int(r) for r in np.flatnonzero(codes == 1)]
    if not failed:
        stopped = codes[codes > 1]
        if len(stopped):
            raise interrupts.acted_on(int(stopped[0]) - 128)
        return result
    if error is not None and comm.rank == failed[0]:
        everyone = len(failed) == (comm.size if ranks is None else len(ranks))
        raise AgreedError(error, report=True,
                          rank=None if everyone or comm.rank == 0 else comm.rank) from error
    raise PeerFailed(failed[0], what, agreed=True)
