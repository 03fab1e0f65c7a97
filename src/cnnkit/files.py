"""Only regular files are read as data, images, checkpoints or weights, and only regular files
are replaced by cnnkit's writes.

A FIFO named ``zz.png`` would hang the reader that opens it, a device such as ``/dev/zero``
would feed it bytes without end, and a device node named as an output would be replaced by an
ordinary file (as root, ``-o /dev/full`` replaced the device). Both checks here look at the
path with ``stat`` and never open it:

- :func:`regular_file` at the top of every reader of a file the user names;
- :func:`check_output_path` in :func:`cnnkit._atomic.atomic_path`, which every write of a file
  goes through, before anything is written.

    >>> regular_file("/dev/null", "image")          # doctest: +SKIP
    NotRegularFile: cannot read image /dev/null: it is a character device, not a file

A link is followed: a link to a regular file is read, and written over as a file (the link is
replaced, its target is not touched). Between the look and the open another process could swap
the file; these checks keep an honest mistake from hanging or destroying, not a race by an
attacker who owns the folder.

This module imports nothing of cnnkit but its errors: every tier may use it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import CnnkitError

__all__ = ["NotRegularFile", "file_kind", "shown", "regular_file", "is_regular_file",
           "check_output_path"]

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class NotRegularFile(CnnkitError, OSError):
    """A path names something other than a regular file where one is read or replaced."""


def file_kind(mode: int) -> str:
    """What a ``st_mode`` names: "a regular file", "a folder", "a FIFO (named pipe)", ..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def shown(path) -> str:
    """``path`` for a one-line message: characters that are not printable (a newline in a file
    name) escaped as Python writes them."""
    text = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def is_regular_file(path) -> bool:
    """Whether ``path`` (links followed) is a regular file; False for anything else, and for a
    path that names nothing or cannot be looked at."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def regular_file(path, what: str = "file", *, error: type[Exception] | None = None) -> Path:
    """``path`` as a Path when it names a regular file (links followed), looked at, not opened.

    ``what`` names the file in messages ("image", "checkpoint", "weights file"). ``error`` is
    the reader's own error class (``CheckpointError``, ``WeightsError``), raised with the same
    line instead of the two below, for readers whose callers catch that class.

    Raises
    ------
    FileNotFoundError
        When it names nothing ("{what} not found: PATH").
    NotRegularFile
        When it names a folder, a FIFO, a device or a socket, or cannot be looked at, in one
        line naming it ("cannot read image PATH: it is a FIFO (named pipe), not a file").
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise _error(error or FileNotFoundError, f"{what} not found: {shown(path)}", path) \
            from None
    except (OSError, ValueError) as err:       # no permission, a loop of links, a NUL byte
        raise _error(error or NotRegularFile, f"cannot read {what} {shown(path)}: "
                     f"{getattr(err, 'strerror', None) or err}", path) from None
    if not stat.S_ISREG(mode):
        raise _error(error or NotRegularFile, f"cannot read {what} {shown(path)}: it is "
                     f"{_kind_at(path, mode)}, not a file", path)
    return Path(path)


def check_output_path(path) -> Path:
    """``path`` as a Path when writing it replaces nothing but a regular file: it names nothing
    yet, or a regular file (a link to one counts). A folder, FIFO, device or socket there is
    refused, in one line, before anything is written (:class:`NotRegularFile`).

    A path that cannot be looked at (a folder on the way is a file, or is not searchable) is
    left to the writer: it fails there with its own message, and replaces nothing.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return Path(path)
    if not stat.S_ISREG(mode):
        raise NotRegularFile(f"cannot write {shown(path)}: it is {_kind_at(path, mode)}; "
                             f"cnnkit writes a new file and replaces only files",
                             path=Path(path))
    return Path(path)


def _kind_at(path, mode: int) -> str:
    """What ``path`` names, its ``stat`` mode ``mode``: "a FIFO (named pipe)", or "a link to a
    character device" when the name is a link (the user named the link, not its target)."""
    return ("a link to " if os.path.islink(path) else "") + file_kind(mode)


def _error(cls: type[Exception], message: str, path) -> Exception:
    """``cls(message)`` with ``path`` attached where the class keeps one (a CnnkitError)."""
    err = cls(message)
    if isinstance(err, CnnkitError):
        err.path = Path(path)
    return err
