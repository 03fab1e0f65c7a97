"""``cnnkit train --workers P``: start P ranks on this machine with the MPI launcher.

The command is re-run as ``mpiexec -n P python -m cnnkit.cli train ...`` (``--workers``
removed), each rank with cores/P threads unless ``--threads`` says otherwise. The launcher
passes the ranks' output through, with one change: when a rank dies outright (killed, out of
memory), MPICH's ``mpiexec`` stops the others and prints a banner naming a process id; the ranks
wrote their process ids at start (``CNNKIT_RANK_DIR``), so the launcher turns the banner into
one line naming the rank.

Stop signals (Ctrl-C, SIGTERM, SIGHUP) reach the ranks once, through the launcher: ``mpiexec``
runs in a session of its own, so a signal to the launcher's process group (a terminal's Ctrl-C,
``timeout``, a scheduler) does not reach it directly as well, and the launcher passes each
request on to it (:func:`_forwarding`); ``mpiexec`` hands it to every rank, which stop together
after the same batch.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from ..environment import RANK_FOLDER_PREFIX
from ..interrupts import STOP_SIGNALS, StopRequests
from ..parallel import default_num_threads
from .comm import MPI_MISSING, DistributedError

__all__ = ["launch", "find_mpiexec", "without_workers", "MAX_WORKERS"]

#: The most ranks ``--workers`` starts on one machine (a typo guard; mpiexec takes more).
MAX_WORKERS = 256

#: MPICH's lines about the job rather than the ranks' output: its termination banner, and
#: "[mpiexec@host] Sending Ctrl-C to processes as requested" (cnnkit says what happened itself)
_BANNER = re.compile(r"^(=+|\s*=\s+.*|YOUR APPLICATION TERMINATED.*|This typically refers.*|"
                     r"Please see the FAQ page.*|\[mpiexec@.*|\[proxy:.*)$")


def find_mpiexec() -> str:
    """The ``mpiexec`` beside this Python (the ``mpich`` wheel installs it in the venv), else
    the one on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    if here.exists():
        return str(here)
    found = shutil.which("mpiexec")
    if found is None:
        raise DistributedError(MPI_MISSING)
    return found


def without_workers(argv: list[str]) -> list[str]:
    """``argv`` less its ``--workers P`` / ``--workers=P``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


def launch(argv: list[str], workers: int, threads: int | None) -> int:
    """Run ``cnnkit`` with ``argv`` (its ``--workers`` removed) on ``workers`` MPI ranks and
    return the job's exit status."""
    if importlib.util.find_spec("mpi4py") is None:
        raise DistributedError(MPI_MISSING)
    mpiexec = find_mpiexec()
    env = dict(os.environ)
    if threads is None and "CNNKIT_NUM_THREADS" not in env:
        env["CNNKIT_NUM_THREADS"] = str(max(1, default_num_threads() // workers))
    with tempfile.TemporaryDirectory(prefix=RANK_FOLDER_PREFIX) as folder:
        env["CNNKIT_RANK_DIR"] = folder
        command = [mpiexec, "-n", str(workers), sys.executable, "-m", "cnnkit.cli",
                   *without_workers(argv)]
        # a stop signal goes to mpiexec, which hands it to every rank: they agree to stop after
        # the same batch and rank 0 saves; the launcher waits for them rather than dying first
        with _forwarding() as started:
            process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, start_new_session=True)
            started(process)
            deaths: list[str] = []
            reported: list[str] = []
            pumps = [threading.Thread(target=_pump, args=(stream, out, deaths, reported),
                                      daemon=True)
                     for stream, out in ((process.stdout, sys.stdout), (process.stderr,
                                                                         sys.stderr))]
            for pump in pumps:
                pump.start()
            code = process.wait()
            for pump in pumps:
                pump.join()
        if deaths and not reported:     # after a rank's own error line, deaths are cleanup
            ranks = _ranks_by_pid(folder)
            pid, how = deaths[0].split(" ", 1)
            who = f"rank {ranks[pid]} (pid {pid})" if pid in ranks else f"the rank of pid {pid}"
            print(f"cnnkit train: error: {who} died ({how}); mpiexec stopped the other ranks",
                  file=sys.stderr)
            return code or 1
    return code


@contextmanager
def _forwarding():
    """While mpiexec runs, pass each stop request the launcher gets on to it, once (a signal
    repeating a request within :data:`cnnkit.interrupts.REPEAT_SECONDS` is dropped, as the
    ranks would drop it). A first Ctrl-C goes on as SIGINT, anything else as SIGTERM: mpiexec
    hands both to the ranks, but dies of SIGHUP and aborts the job, killing the ranks, on a
    second SIGINT. Yields ``started(process)``, to be called
    once mpiexec runs; a request that came before is passed on then. Restores the handlers."""
    requests = StopRequests()
    job: list = []
    waiting: list[int] = []

    def forward(signum, first: bool) -> None:
        try:
            job[0].send_signal(signal.SIGINT if signum == signal.SIGINT and first
                               else signal.SIGTERM)
        except (OSError, ProcessLookupError):      # it ended meanwhile
            pass

    def handler(signum, frame) -> None:
        if not requests.note(signum):
            return
        if job:
            forward(signum, requests.count == 1)
        else:
            waiting.append(signum)

    def started(process) -> None:
        job.append(process)
        for i, signum in enumerate(waiting):
            forward(signum, i == 0)

    if threading.current_thread() is not threading.main_thread():
        yield lambda process: None
        return
    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield started
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


def _ranks_by_pid(folder: str) -> dict[str, int]:
    ranks = {}
    for path in Path(folder).glob("rank-*"):
        try:
            ranks[path.read_text().strip()] = int(path.name.split("-", 1)[1])
        except (OSError, ValueError):
            pass
    return ranks


def _pump(stream, out, deaths: list[str], reported: list | None = None) -> None:
    """Copy a rank stream to ``out`` as it comes (a progress bar's carriage returns too), but
    hold back MPICH's termination banner and note the pid and exit code it names; note in
    ``reported`` the error lines the ranks print."""
    pending = b""
    pid = None
    while True:
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if _BANNER.match(line.rstrip("\r")):
                found = re.search(r"PID (\d+)", line)
                pid = found.group(1) if found else pid
                code = re.search(r"EXIT CODE: (\d+)", line)
                if code and pid:
                    number = int(code.group(1))
                    how = f"killed by signal {number}" if number in (6, 9, 11, 15) else \
                        f"exit status {number}"
                    deaths.append(f"{pid} {how}")
                continue
            if reported is not None and line.startswith("cnnkit ") and (
                    ": error: " in line or ": interrupted" in line):
                reported.append(line)
            _write(out, raw + b"\n")
        if pending and not pending.lstrip().startswith((b"=", b"YOUR", b"This", b"Please",
                                                         b"[")):
            _write(out, pending)
            pending = b""
    if pending:
        _write(out, pending)


def _write(out, data: bytes) -> None:
    try:
        out.buffer.write(data)
        out.flush()
    except (OSError, ValueError, AttributeError):
        pass
