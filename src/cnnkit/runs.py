"""Run folders: the one home of a run's file layout; nothing a user saved is overwritten, and
one writer at a time.

A run folder (what ``cnnkit train`` and ``cnnkit.fit(out=...)`` write) holds:

    checkpoint.npz     the trainer's state after every epoch (and on Ctrl-C): --resume reads it
    model.npz          the best validation epoch's weights, with the run's metadata
    history.json       losses and accuracies per epoch and per iteration, after every epoch
    curves.png         the history drawn, after every epoch
    layer_stats.json   per-layer statistics every --layer-stats iterations; .png when it ends
    test.json          the test split's accuracy and loss, when training has finished
    report.html        the run's page (--report, ``cnnkit report``)
    train.log          what the run printed, when it ran as a search's trial
    .cnnkit-train.lock the process writing the folder

:class:`RunFolder` names these paths; every module that reads or writes a run folder asks it.
Before anything trains, :func:`claim_run_folder`

- refuses a named folder that already holds files (a finished or interrupted run) unless the
  user asked to overwrite it, and gives a default name that is taken a suffix (``-2``, ``-3``, ...),
  so two runs started in the same second get two folders;
- creates the folder and a lock file in it (``O_EXCL``, holding the process id), which proves the
  folder writable before an epoch is spent and keeps a second ``cnnkit train`` (or a ``--resume``
  of the same run) from writing there at the same time; a lock left by a process that no longer
  exists is taken over;
- removes temporary files that a killed atomic write left behind (``.NAME.*.tmp``): under the lock
  nobody else can be writing them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import CnnkitError

__all__ = ["RunFolderError", "RunFileError", "RunFolder", "claim_run_folder", "read_json"]

LOCK = ".cnnkit-train.lock"
# A JSON file of a run larger than this is not read (a run's history is a few MB at most).
JSON_BYTES = 256 * 2 ** 20


class RunFolderError(CnnkitError, OSError):
    """A run folder cannot be used: it holds another run, another process writes it, or it cannot
    be written."""


class RunFileError(CnnkitError, ValueError):
    """A file in a run folder is damaged, or larger than such a file can be."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # it exists, under another user
        return True
    return True


class RunFolder:
    """The files of the run folder ``path`` (see the module docstring); when claimed
    (:func:`claim_run_folder`), ``release()`` or leaving the ``with`` block removes its lock."""

    CHECKPOINT, MODEL, HISTORY, CURVES = "checkpoint.npz", "model.npz", "history.json", "curves.png"
    LAYER_STATS, LAYER_STATS_PLOT = "layer_stats.json", "layer_stats.png"
    TEST, REPORT, LOG = "test.json", "report.html", "train.log"

    def __init__(self, path):
        self.path = Path(path)
        self._lock = self.path / LOCK

    checkpoint = property(lambda self: self.path / self.CHECKPOINT)
    model = property(lambda self: self.path / self.MODEL)
    history = property(lambda self: self.path / self.HISTORY)
    curves = property(lambda self: self.path / self.CURVES)
    layer_stats = property(lambda self: self.path / self.LAYER_STATS)
    layer_stats_plot = property(lambda self: self.path / self.LAYER_STATS_PLOT)
    test = property(lambda self: self.path / self.TEST)
    report = property(lambda self: self.path / self.REPORT)
    log = property(lambda self: self.path / self.LOG)

    def weights(self) -> Path | None:
        """The weights to read: model.npz (the finished run's best), else checkpoint.npz (a
        run still training, or stopped), else None."""
        return next((p for p in (self.model, self.checkpoint) if p.is_file()), None)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def _acquire(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self._lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid = int(self._lock.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _alive(pid):
                    raise RunFolderError(f"{self.path}: another cnnkit train (process {pid}) is "
                                         f"writing this run folder") from None
                self._lock.unlink(missing_ok=True)     # left by a process that has ended
                continue
            except OSError as err:
                raise RunFolderError(f"{self.path}: cannot write in the run folder "
                                     f"({err.strerror or err})") from None
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return
        raise RunFolderError(f"{self.path}: cannot take the run folder's lock {self._lock}")

    def _remove_stale_temporaries(self) -> None:
        for entry in self.path.glob(".*.tmp"):
            try:
                entry.unlink()
            except OSError:
                pass

    def release(self) -> None:
        try:
            if self._lock.read_text().strip() == str(os.getpid()):
                self._lock.unlink()
        except OSError:
            pass

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _holds_a_run(path: Path) -> bool:
    return path.is_dir() and any(e.name != LOCK for e in path.iterdir())


def _new_folder(out: Path, name: str) -> Path:
    """Create ``out/name``, or ``out/name-2``, ``-3``, ... when taken; ``mkdir`` without
    ``exist_ok`` is the test, so two processes never get the same folder."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunFolderError(f"{out}: cannot create the folder for runs "
                             f"({err.strerror or err})") from None
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
                     resume: Path | None = None) -> RunFolder:
    """Create (or, for ``resume``, reopen) a run folder and lock it; see the module docstring.

    Parameters
    ----------
    out : the parent folder (``--out``)
    name : the folder name the user gave (``--name``), or None for ``default_name``
    default_name : e.g. "lenet-bn-20261130-101500"; a suffix -2, -3, ... is added when taken
    overwrite : allow a named folder that already holds a run (its files are replaced as the
        new run writes them)
    resume : the folder of the run being resumed (it holds a run, by design)

    Raises
    ------
    RunFolderError
        If a named folder holds a run and ``overwrite`` is not set, another live process holds
        the lock, or the folder cannot be created or written.
    """
    if resume is not None:
        path = Path(resume)
    elif name is not None:
        path = Path(out) / name
        if _holds_a_run(path) and not overwrite:
            raise RunFolderError(f"{path} already holds a run; choose another --name, continue "
                                 f"it with --resume {path / 'checkpoint.npz'}, or pass "
                                 f"--overwrite to replace it")
    else:
        path = _new_folder(Path(out), default_name)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunFolderError(f"{path}: cannot create the run folder ({err.strerror or err})") \
            from None
    folder = RunFolder(path)
    folder._acquire()
    folder._remove_stale_temporaries()
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
