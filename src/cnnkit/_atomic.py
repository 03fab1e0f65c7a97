"""Atomic file writes: nothing the user saved is lost to a crash halfway through a write, and
nothing but a regular file is ever replaced.

Every file cnnkit writes goes through :func:`atomic_path` (checkpoints, weights, ONNX files,
IDX files, pages, figures, JSON), so its check is the one place that keeps a write off a FIFO,
a device node, a socket or a folder: ``-o /dev/full`` as root would otherwise rename a new file
over the device. Imports nothing of cnnkit but :mod:`cnnkit.files` (which imports only the
errors), so any module can use it.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import CnnkitError
from .files import check_output_path


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` to write to; rename it over ``path`` when the block
    ends without an exception, and delete it when one is raised. ``path``'s folder is created if
    missing. For writers that need a file name rather than a file object (``np.memmap``).

    Raises
    ------
    NotRegularFile
        Before anything is written, when ``path`` is a folder, a FIFO, a device or a socket (a
        link to one counts); and again before the rename, should one have appeared meanwhile.
    """
    path = check_output_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from err
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        check_output_path(path)         # the write may have taken minutes: look again
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError) and not isinstance(err, CnnkitError):
            # name the user's file, not the temporary one (cnnkit's own errors name it already)
            raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from err
        raise


# What atomic_path names its temporary: ".NAME." + mkstemp's 8 random characters + ".tmp".
_TEMPORARY = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.tmp")


def temporary_target(entry: str) -> str | None:
    """The file name that ``entry`` (a file name) is :func:`atomic_path`'s temporary for, or
    None when it is not one: ``.checkpoint.npz.k2j4x_9q.tmp`` -> ``checkpoint.npz``. What a
    write killed halfway leaves beside its file; whoever owns that file may remove it."""
    match = _TEMPORARY.fullmatch(entry)
    return match.group(1) if match else None


def atomic_write_bytes(path, write) -> Path:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync, then rename over it.

    The rename is atomic on POSIX and Windows, so ``path`` holds either its old content or the
    whole new one. The file gets the permissions an ordinary ``open`` would give (0666 less the
    umask), not ``mkstemp``'s private 0600. ``path``'s folder is created if missing.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically."""
    return atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))
