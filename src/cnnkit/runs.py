"""Run folders: the one home of a run's file layout; nothing a user saved is overwritten, and
one writer at a time.

A run folder (what ``cnnkit train`` and ``cnnkit.fit(out=...)`` write) holds:

    checkpoint.npz     the trainer's state after every epoch (and on Ctrl-C): --resume reads it
    model.npz          the best validation epoch's weights, with the run's metadata
    history.json       losses and accuracies per epoch and per iteration, after every epoch
    history.csv        the epochs' losses, accuracies, learning rate and time, a row each
    curves.png         the history drawn, when training ends (and every so often before)
    layer_stats.json   per-layer statistics every --layer-stats iterations; .png when it ends
    test.json          the test split's accuracy and loss, when training has finished
    report.html        the run's page (--report, ``cnnkit report``)
    train.log          what the run printed, when it ran as a search's trial
    .cnnkit-train.lock the process writing the folder

:class:`RunFolder` names these paths; every module that reads or writes a run folder asks it.
Before anything trains, :func:`claim_run_folder`

- takes a run name (``--name``) only as one folder name (:func:`check_folder_name`): never a
  path, so a run stays inside ``--out``;
- refuses a named folder that already holds files (a finished or interrupted run) unless the
  user asked to overwrite it, and gives a default name that is taken a suffix (``-2``, ``-3``, ...),
  so two runs started in the same second get two folders;
- creates the folder and locks it (:class:`RunFolder` ``_acquire``), which proves the folder
  writable before an epoch is spent and keeps a second ``cnnkit train`` (or a ``--resume`` of the
  same run) from writing there at the same time;
- removes the temporaries that a killed atomic write of one of the folder's own files left behind
  (``.checkpoint.npz.XXXXXXXX.tmp``; under the lock nobody else can be writing them), and nothing
  else: a user's ``.draft.tmp`` stays.

The lock is the file ``.cnnkit-train.lock`` holding ``PID START``, the holder's process id and
start time (``/proc/PID/stat``, where there is one), so another process (``cat`` too) sees who
writes the folder. The holder keeps an ``flock`` on it for as long as it holds it. A lock is stale
when nobody holds its ``flock`` and the process it names has ended, or is another process under a
reused pid (its start time differs; where start times cannot be read, the pid alone decides).
Taking a stale lock over is atomic: the taker holds the stale file's ``flock`` while it renames
a fresh lock of its own over it, so of several processes taking over one stale lock exactly one
wins, and every later one finds the lock in place is no longer the file it locked, and looks
again. (``flock`` rather than ``fcntl``'s record locks: those belong to the process, so a second
claim in the same process would not see the first.) Where a file system has no ``flock``, the
file alone decides, as before, and a taker checks after its rename that its lock is the one in
place.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
import time
from pathlib import Path

from ._atomic import temporary_target
from .errors import CnnkitError, UsageError
from .files import file_kind

try:
    import fcntl
except ImportError:           # Windows: no flock; the lock file alone decides
    fcntl = None

__all__ = ["RunFolderError", "RunFileError", "RunFolder", "check_folder_name",
           "claim_run_folder", "read_json"]

LOCK = ".cnnkit-train.lock"
# A JSON file of a run larger than this is not read (a run's history is a few MB at most).
JSON_BYTES = 256 * 2 ** 20
# A lock that another process is creating or taking over this very moment (microseconds of
# work) is looked at again this many times, this many seconds apart, before a claim gives up.
_SETTLE_TRIES, _SETTLE_PAUSE = 100, 0.01
# a lock that is a link or a FIFO is refused, never followed nor waited on
_NOFOLLOW, _NONBLOCK = getattr(os, "O_NOFOLLOW", 0), getattr(os, "O_NONBLOCK", 0)


class RunFolderError(CnnkitError, OSError):
    """A run folder cannot be used: it holds another run, another process writes it, or it cannot
    be written."""


class RunFileError(CnnkitError, ValueError):
    """A file in a run folder is damaged, or larger than such a file can be."""


def check_folder_name(name, what: str = "run folder") -> str:
    """``name`` when it is one folder name, not a path, so that ``OUT/NAME`` stays inside OUT.

    Raises
    ------
    UsageError
        For an empty name, ``.``, ``..``, or one holding ``/``, ``\\`` or a NUL byte (the
        separators of either system, so that a name means one folder on both), in one line
        naming it and saying what a name may be.
    """
    text = os.fspath(name) if isinstance(name, os.PathLike) else name
    if not isinstance(text, str):
        raise UsageError(f"{what} name must be a text, got {type(name).__name__}")
    if text in ("", ".", "..") or any(c in text for c in "/\\\0"):
        raise UsageError(f"{what} name {text!r} is not one folder name: give a name without "
                         f"'/' or '\\' that is not empty, '.' or '..' (the folder is made "
                         f"inside --out)")
    return text


# ---------------------------------------------------------------------------- who holds a lock

def _proc_stat(pid: int) -> tuple[bytes, str] | None:
    """(state, start time) of process ``pid`` from /proc/PID/stat (its 3rd and 22nd fields; the
    start in clock ticks after boot), or None where that cannot be read (no /proc, or the
    process has ended)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read(4096)
    except OSError:
        return None
    fields = text[text.rfind(b")") + 1:].split()    # after the name, which may hold ") "
    return (fields[0], fields[19].decode("ascii", "replace")) if len(fields) > 19 else None


def _identity() -> bytes:
    """What this process's lock holds: ``PID START``, or ``PID`` where start times are
    unknown."""
    pid = os.getpid()
    proc = _proc_stat(pid)
    return (f"{pid}" if proc is None else f"{pid} {proc[1]}").encode("ascii")


def _holder(text: bytes) -> tuple[int, str | None]:
    """(pid, start time or None) that a lock's text names; pid 0 when it names no process."""
    parts = text.split()
    try:
        pid = int(parts[0])
    except (IndexError, ValueError):
        return 0, None
    if not 0 < pid < 2 ** 31:
        return 0, None
    return pid, (parts[1].decode("ascii", "replace") if len(parts) > 1 else None)


def _running(pid: int, start: str | None) -> bool:
    """Whether process ``pid`` runs and, where both start times are known, is the process that
    started at ``start`` rather than a later one given the same pid. A zombie has ended."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # it exists, under another user
        pass
    except OSError:
        return False
    proc = _proc_stat(pid)
    if proc is None:             # no /proc: the pid alone decides
        return True
    state, now = proc
    return state != b"Z" and (start is None or now == start)


def _flock(fd: int) -> bool | None:
    """Take ``fd``'s flock without waiting: True when taken, False when another open file holds
    it, None where this system or file system has none (Windows; NFS without a lock daemon)."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:              # ENOLCK, EOPNOTSUPP, EINVAL
        return None
    return True


def _in_place(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``: not removed, nor replaced."""
    try:
        there = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)


# ---------------------------------------------------------------------------- the folder

class RunFolder:
    """The files of the run folder ``path`` (see the module docstring); when claimed
    (:func:`claim_run_folder`), ``release()`` or leaving the ``with`` block removes its lock."""

    CHECKPOINT, MODEL, HISTORY, CURVES = "checkpoint.npz", "model.npz", "history.json", "curves.png"
    LAYER_STATS, LAYER_STATS_PLOT = "layer_stats.json", "layer_stats.png"
    TEST, REPORT, LOG = "test.json", "report.html", "train.log"
    HISTORY_CSV = "history.csv"
    # every file cnnkit writes in a run folder: a killed write's temporary of one is removed
    FILES = (CHECKPOINT, MODEL, HISTORY, CURVES, LAYER_STATS, LAYER_STATS_PLOT, TEST, REPORT, LOG,
             LOCK, HISTORY_CSV)

    def __init__(self, path):
        self.path = Path(path)
        self._lock = self.path / LOCK
        self._fd = None          # the lock file, open while this object holds it
        self._pid = None         # the process that took it (a forked child does not hold it)

    #: The path of the run's checkpoint.npz (the module docstring says what each file holds).
    checkpoint = property(lambda self: self.path / self.CHECKPOINT)
    #: The path of model.npz.
    model = property(lambda self: self.path / self.MODEL)
    #: The path of history.json.
    history = property(lambda self: self.path / self.HISTORY)
    #: The path of history.csv.
    history_csv = property(lambda self: self.path / self.HISTORY_CSV)
    #: The path of curves.png.
    curves = property(lambda self: self.path / self.CURVES)
    #: The path of layer_stats.json.
    layer_stats = property(lambda self: self.path / self.LAYER_STATS)
    #: The path of layer_stats.png.
    layer_stats_plot = property(lambda self: self.path / self.LAYER_STATS_PLOT)
    #: The path of test.json.
    test = property(lambda self: self.path / self.TEST)
    #: The path of report.html.
    report = property(lambda self: self.path / self.REPORT)
    #: The path of train.log.
    log = property(lambda self: self.path / self.LOG)

    def weights(self) -> Path | None:
        """The weights to read: model.npz (the finished run's best), else checkpoint.npz (a
        run still training, or stopped), else None. A model.npz that is there but is no file
        (a FIFO) is still the one to read: its reader refuses it by name."""
        return next((p for p in (self.model, self.checkpoint) if p.exists()), None)

    def writer(self) -> int | None:
        """The process id of the live process that holds this folder's lock (a run still
        training, or a search's trial), or None: no lock, a stale one, or one that is not a
        regular file. The lock is read, never taken nor changed."""
        try:
            fd = os.open(self._lock, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            pid, start = _holder(os.read(fd, 64))
        finally:
            os.close(fd)
        return pid if _running(pid, start) else None

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- the lock (see the module docstring)

    def _acquire(self) -> None:
        """Hold the folder's lock, or raise :class:`RunFolderError` naming the live holder.
        Each round either ends in the lock or a refusal, or sees the lock change under it (being
        created, released or taken over by another process) and looks again."""
        for _ in range(_SETTLE_TRIES):
            if self._create() or self._take_over():
                return
            time.sleep(_SETTLE_PAUSE)
        raise RunFolderError(f"{self.path}: another process holds the run folder's lock "
                             f"{self._lock}")

    def _create(self) -> bool:
        """Create the lock where there is none; True when this process then holds it."""
        try:
            fd = os.open(self._lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as err:
            raise RunFolderError(f"{self.path}: cannot write in the run folder "
                                 f"({err.strerror or err})") from None
        # a process that finds the file still empty takes it over if it gets the flock first;
        # then the flock, or the check that the file is still in place, fails here
        if _flock(fd) is False:
            os.close(fd)
            return False
        os.write(fd, _identity())
        return self._keep(fd)

    def _take_over(self) -> bool:
        """Replace the lock in place with this process's own when it is stale; True when this
        process then holds the folder, False when the lock changed meanwhile."""
        try:
            fd = os.open(self._lock, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
        except FileNotFoundError:
            return False                         # released meanwhile
        except OSError as err:                   # a symbolic link (ELOOP), unreadable
            why = "it is a symbolic link" if err.errno == errno.ELOOP else err.strerror
            raise self._foreign(why or str(err)) from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise self._foreign(f"it is {file_kind(mode)}")
            flocked = _flock(fd)
            if not _in_place(fd, self._lock):
                return False                     # released or taken over meanwhile
            pid, start = _holder(os.read(fd, 64))
            if flocked is False and pid == os.getpid():
                raise RunFolderError(f"{self.path}: this process already writes this run "
                                     f"folder")
            if pid != os.getpid() and _running(pid, start):
                raise RunFolderError(f"{self.path}: another cnnkit process (pid {pid}) is "
                                     f"writing this run folder")
            if flocked is False:
                return False                     # being created or taken over this moment
            return self._replace()
        finally:
            os.close(fd)         # after _replace: until the rename, nobody else may take over

    def _replace(self) -> bool:
        """Rename a fresh lock of this process's over the stale one in place, whose flock the
        caller holds (so no other process renames over it meanwhile)."""
        try:
            fd, tmp = tempfile.mkstemp(prefix=f"{LOCK}.", suffix=".tmp", dir=self.path)
        except OSError as err:
            raise RunFolderError(f"{self.path}: cannot write in the run folder "
                                 f"({err.strerror or err})") from None
        try:
            os.chmod(tmp, 0o644)         # mkstemp's 0600 would hide the holder
            os.write(fd, _identity())
            _flock(fd)
            os.replace(tmp, self._lock)
        except BaseException as err:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            if isinstance(err, OSError):
                raise RunFolderError(f"{self.path}: cannot take over the run folder's stale "
                                     f"lock ({err.strerror or err})") from None
            raise
        return self._keep(fd)

    def _keep(self, fd: int) -> bool:
        """Hold ``fd`` as this folder's lock if it is the one in place (without flock, another
        taker's rename may have come after this process's); else close it."""
        if not _in_place(fd, self._lock):
            os.close(fd)
            return False
        self._fd, self._pid = fd, os.getpid()
        return True

    def _foreign(self, why: str) -> RunFolderError:
        return RunFolderError(f"{self.path}: cannot take the run folder's lock: {self._lock} is "
                              f"not a lock cnnkit wrote ({why}); remove it if no cnnkit process "
                              f"writes this folder")

    def release(self) -> None:
        """Remove the lock this object holds; nothing when it holds none (a forked child of the
        holder only closes its copy)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._pid == os.getpid() and _in_place(fd, self._lock):
                self._lock.unlink()              # while the flock is held: see _take_over
        except OSError:
            pass
        finally:
            os.close(fd)

    def _remove_stale_temporaries(self, files=()) -> None:
        """Remove what killed atomic writes of this folder's own files (:attr:`FILES` and
        ``files``) left behind; nothing else, so a user's ``.draft.tmp`` stays."""
        own = {*self.FILES, *files}
        try:
            entries = list(os.scandir(self.path))
        except OSError:
            return
        for entry in entries:
            if temporary_target(entry.name) in own:
                try:
                    if entry.is_file(follow_symlinks=False):
                        os.unlink(entry.path)
                except OSError:
                    pass

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _holds_a_run(path: Path) -> bool:
    return path.is_dir() and any(e.name != LOCK and temporary_target(e.name) != LOCK
                                 for e in path.iterdir())


def _blocker(path: Path) -> str | None:
    """Why ``path`` cannot be made a folder, when the cause is a path in the way: ``path`` or
    the nearest of its parents that exists is not a folder (a file, a link to nothing)."""
    for here in (path, *path.parents):
        try:
            mode = os.lstat(here).st_mode
        except (FileNotFoundError, NotADirectoryError):      # under a missing or file parent
            continue
        except (OSError, ValueError):
            return None
        who = "it" if here == path else str(here)
        if stat.S_ISLNK(mode):
            try:
                mode = os.stat(here).st_mode
            except FileNotFoundError:
                return f"{who} is a symbolic link to {os.readlink(here)}, which does not exist"
            except OSError as err:
                return f"{who} is a symbolic link that cannot be followed ({err.strerror})"
        return None if stat.S_ISDIR(mode) else f"{who} is {file_kind(mode)}, not a folder"
    return None


def _make_folder(path: Path, what: str) -> None:
    """Create the folder ``path`` and its parents where missing, or say in one line why not."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        why = _blocker(path) or err.strerror or str(err)
        raise RunFolderError(f"{path}: cannot create {what} ({why})") from None


def _new_folder(out: Path, name: str) -> Path:
    """Create ``out/name``, or ``out/name-2``, ``-3``, ... when taken; ``mkdir`` without
    ``exist_ok`` is the test, so two processes never get the same folder."""
    _make_folder(out, "the folder for runs")
    for k in range(1, 10_000):
        path = out / (name if k == 1 else f"{name}-{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as err:
            raise RunFolderError(f"{path}: cannot create the run folder "
                                 f"({err.strerror or err})") from None
    raise RunFolderError(f"{out}: 10,000 run folders named {name}-*; choose --name")


def claim_run_folder(out, name: str | None, default_name: str, *, overwrite: bool = False,
                     resume: Path | None = None, files=(), what: str = "run folder") -> RunFolder:
    """Create (or, for ``resume``, reopen) a run folder and lock it; see the module docstring.

    Parameters
    ----------
    out : the parent folder (``--out``)
    name : the folder name the user gave (``--name``): one folder name, not a path; or None
        for ``default_name``
    default_name : e.g. "lenet-bn-20261130-101500"; a suffix -2, -3, ... is added when taken
    overwrite : allow a named folder that already holds a run (its files are replaced as the
        new run writes them)
    resume : the folder of the run being resumed (it holds a run, by design)
    files : the names of files the caller writes in the folder besides a run's own
        (:attr:`RunFolder.FILES`), whose killed writes' temporaries are removed too
    what : what the folder is called in a message ("search folder", "results folder")

    Raises
    ------
    UsageError
        If ``name`` is not one folder name (:func:`check_folder_name`).
    RunFolderError
        If a named folder holds a run and ``overwrite`` is not set, another live process holds
        the lock, or the folder cannot be created or written (a file or a link to nothing in
        the way is named).
    """
    if resume is not None:
        path = Path(resume)
    elif name is not None:
        path = Path(out) / check_folder_name(name, what)
        if _holds_a_run(path) and not overwrite:
            raise RunFolderError(f"{path} already holds a run; choose another --name, continue "
                                 f"it with --resume {path / 'checkpoint.npz'}, or pass "
                                 f"--overwrite to replace it")
    else:
        path = _new_folder(Path(out), default_name)
    _make_folder(path, f"the {what}")
    folder = RunFolder(path)
    folder._acquire()
    folder._remove_stale_temporaries(files)
    return folder


def read_json(path: Path, what: str, check=None):
    """The JSON file ``path`` of a run folder (None when there is none), refused when larger
    than a run's file can be, or damaged (``check(value)`` false): :class:`RunFileError`."""
    path = Path(path)
    if not path.is_file():
        return None
    size = path.stat().st_size
    if size > JSON_BYTES:
        raise RunFileError(f"{path} is {size:,} bytes, more than a run's {what} can be "
                         f"({JSON_BYTES:,}); not reading it")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise RunFileError(f"{path} is damaged (not JSON: {err})") from None
    if check is not None and not check(value):
        raise RunFileError(f"{path} is damaged (not a {what})")
    return value
