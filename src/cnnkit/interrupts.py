"""Stop signals: Ctrl-C (SIGINT), SIGTERM and SIGHUP all ask cnnkit to stop, the same way.

A person stops a run with Ctrl-C; a batch scheduler, ``docker stop`` and ``timeout`` with
SIGTERM; a closed terminal with SIGHUP. cnnkit treats the three alike, in one of two modes:

- **raise** (the command line outside training): the signal raises :class:`Interrupted`, a
  ``KeyboardInterrupt``, where the program stands. Files are written atomically and ``with``
  blocks release what they hold (a run folder's lock), so the exception leaves nothing
  half-written behind.
- **defer** (:func:`deferred`: the Trainer's ``fit``, an MPI collective, every rank of an MPI
  job): the first signal is only recorded (:func:`requested`), and the code stops at its next
  safe point (the Trainer after the batch, with a checkpoint; MPI ranks where they agree). A
  deferral that ends back in the raise mode raises a request nobody acted on.

A second request stops at once in either mode. One request often arrives as several signals
(``timeout`` signals the command, then its process group; a scheduler every process of the
job), so a signal within :data:`REPEAT_SECONDS` of the last request is part of that request.

A command stopped so exits with 128 + the signal's number (:func:`exit_status`: 130 for Ctrl-C,
143 for SIGTERM, 129 for SIGHUP), the status a shell reports for a process the signal ended: a
script or scheduler that tells "stopped" from "failed" by the status still can, and cnnkit
stopped cleanly.

Signal handlers belong to the main thread: in other threads the scopes change nothing. A signal
ignored when cnnkit starts stays ignored (``nohup`` ignores SIGHUP).

This module imports nothing of cnnkit: every tier may import it.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager

__all__ = ["Interrupted", "STOP_SIGNALS", "REPEAT_SECONDS", "StopRequests", "stop_signals",
           "deferred", "raising", "requested", "acted_on", "signal_of", "exit_status",
           "interrupted_by"]

#: The signals that ask cnnkit to stop (SIGHUP is absent on Windows).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))

#: Seconds within which another stop signal belongs to the request before it.
REPEAT_SECONDS = 1.0


class Interrupted(KeyboardInterrupt):
    """A stop signal ended what was running: ``signum`` says which (SIGINT for a plain
    KeyboardInterrupt), ``at_once`` whether it was a second request, which does not wait for a
    safe point."""

    def __init__(self, message: str = "", *, signum: int = signal.SIGINT, at_once: bool = False):
        super().__init__(*([message] if message else []))
        self.signum, self.at_once = int(signum), at_once


def signal_of(err: BaseException) -> int:
    """The signal behind an interrupt: its ``signum``, else SIGINT (Python's own
    KeyboardInterrupt comes from Ctrl-C)."""
    return int(getattr(err, "signum", signal.SIGINT))


def exit_status(err: BaseException) -> int:
    """The exit status of a command the interrupt ``err`` stopped: 128 + its signal."""
    return 128 + signal_of(err)


def interrupted_by(signum: int) -> str:
    """"interrupted" for Ctrl-C, "interrupted by SIGTERM" (SIGHUP, ...) for the others."""
    if signum == signal.SIGINT:
        return "interrupted"
    try:
        return f"interrupted by {signal.Signals(signum).name}"
    except ValueError:
        return f"interrupted by signal {signum}"


class StopRequests:
    """The stop requests that signals made: the first one's signal, how many, and whether
    somebody acted on them. A signal within :data:`REPEAT_SECONDS` of the last request counts
    as part of it."""

    def __init__(self, clock=time.monotonic):
        self.signum: int | None = None
        self.count = 0
        self.acted = False
        self._last = -math.inf
        self._clock = clock

    def note(self, signum: int) -> bool:
        """Count a signal; True when it makes a new request (the first, or one after
        :data:`REPEAT_SECONDS`), False when it repeats the last."""
        now = self._clock()
        if self.count and now - self._last < REPEAT_SECONDS:
            return False
        self._last = now
        self.count += 1
        if self.signum is None:
            self.signum = int(signum)
        return True

    @property
    def pending(self) -> int | None:
        """The signal of a request nobody acted on yet, else None."""
        return self.signum if self.count and not self.acted else None


_requests = StopRequests()
_modes: list[str] = []             # "raise" or "defer"; the last one decides
_previous: dict | None = None      # the handlers ours replaced, while ours are installed


def _on_signal(signum, frame) -> None:
    if not _requests.note(signum):
        return
    if _requests.count == 1 and _modes and _modes[-1] == "defer":
        return                                     # the code stops at its next safe point
    _requests.acted = True
    # named after the first request's signal: an MPI launcher passes a second one on as SIGTERM
    raise Interrupted(signum=_requests.signum, at_once=_requests.count > 1)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _handlers():
    """Install the stop handler for every stop signal not ignored, with no request made yet;
    restore the handlers it replaced on the way out. Nested: the outer one's stay."""
    global _previous, _requests
    if _previous is not None:
        yield
        return
    previous = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, _on_signal)
    _previous, _requests = previous, StopRequests()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        _previous = None


@contextmanager
def _mode(mode: str):
    _modes.append(mode)
    try:
        yield
    finally:
        _modes.pop()


@contextmanager
def stop_signals(mode: str = "raise"):
    """The command line's scope: Ctrl-C, SIGTERM and SIGHUP stop it, in ``mode`` ("raise" in
    one process; "defer" on the ranks of an MPI job, which stop where they agree). The
    handlers before are restored when it ends."""
    if mode not in ("raise", "defer"):
        raise ValueError(f"stop_signals mode must be 'raise' or 'defer', got {mode!r}")
    if not _main_thread():
        yield
        return
    with _handlers(), _mode(mode):
        yield


def _never() -> None:
    return None


@contextmanager
def deferred():
    """Hold stop requests for the code inside, which asks :func:`requested` at its safe
    points; yields that function (one that always says None outside the main thread, where no
    signal arrives). A second request raises :class:`Interrupted` at once. Ending back in the
    raise mode (or outside every scope) without an exception raises a request still pending,
    so none is lost."""
    if not _main_thread():
        yield _never
        return
    if _modes and _modes[-1] == "defer":      # inside one already (a collective in training)
        yield requested
        return
    with _handlers():
        with _mode("defer"):
            yield requested
        if (not _modes or _modes[-1] == "raise") and _requests.pending is not None:
            raise acted_on()


@contextmanager
def raising():
    """Let stop signals raise inside (an MPI job's long local steps, such as rank 0 decoding a
    folder, which must stop when asked); a request already pending raises at once."""
    if not _main_thread():
        yield
        return
    with _mode("raise"):
        if _requests.pending is not None:
            raise acted_on()
        yield


def requested() -> int | None:
    """The signal of a stop request not acted on yet (SIGINT, SIGTERM, SIGHUP), else None."""
    return _requests.pending


def acted_on(signum: int | None = None) -> Interrupted:
    """The :class:`Interrupted` that stops for the pending request, now marked acted on;
    ``signum`` where the stop comes from elsewhere (another MPI rank's request), else the
    request's own signal (SIGINT when there is none)."""
    _requests.acted = _requests.acted or bool(_requests.count)
    if signum is None:
        signum = _requests.signum if _requests.signum is not None else signal.SIGINT
    return Interrupted(signum=signum)
