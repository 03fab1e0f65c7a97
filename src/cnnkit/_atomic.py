"""Atomic file writes: nothing the user saved is lost to a crash halfway through a write.

Shared by checkpoints (``cnnkit.io``), IDX files (``cnnkit.data.idx``) and the trainer's history
and curves. Imports nothing from cnnkit, so any module can use it.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` to write to; rename it over ``path`` when the block
    ends without an exception, and delete it when one is raised. ``path``'s folder is created if
    missing. For writers that need a file name rather than a file object (``np.memmap``)."""
    path = Path(path)
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
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError):   # name the user's file, not the temporary one
            raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from err
        raise


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
