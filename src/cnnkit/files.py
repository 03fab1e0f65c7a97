"""Only regular files are read as data, images, checkpoints or weights, and only regular files
are replaced by cnnkit's writes.

A FIFO named ``zz.png`` would hang the reader that opens it, and a device node named as an
output would be replaced by an ordinary file. Both checks here look at the path with ``stat``
and never open it.

    >>> regular_file("/dev/null", "an image")          # doctest: +SKIP
    NotRegularFile: cannot read an image /dev/null: it is a character device, not a file

This module imports nothing of cnnkit but its errors: every tier may use it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import CnnkitError

__all__ = ["NotRegularFile", "file_kind", "regular_file", "is_regular_file",
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


def is_regular_file(path) -> bool:
    """Whether ``path`` (links followed) is a regular file; False for anything else, and for a
    path that names nothing or cannot be looked at."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def regular_file(path, what: str = "a file") -> Path:
    """``path`` as a Path when it names a regular file (links followed), looked at, not opened.

    Raises
    ------
    FileNotFoundError
        When it names nothing ("{what} not found: PATH").
    NotRegularFile
        When it names a folder, a FIFO, a device or a socket, in one line naming it.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {os.fspath(path)}") from None
    except (OSError, ValueError) as err:
        raise NotRegularFile(f"cannot read {what} {os.fspath(path)}: "
                             f"{getattr(err, 'strerror', None) or err}", path=path) from None
    if not stat.S_ISREG(mode):
        raise NotRegularFile(f"cannot read {what} {os.fspath(path)}: it is {file_kind(mode)}, "
                             f"not a file", path=path)
    return path


def check_output_path(path, what: str = "the output") -> Path:
    """``path`` as a Path when writing it replaces nothing but a regular file: it names nothing
    yet, or a regular file (a link to one counts). A folder, FIFO, device or socket there is
    refused, in one line, before anything is written."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path
    except (OSError, ValueError) as err:
        raise NotRegularFile(f"cannot write {what} {os.fspath(path)}: "
                             f"{getattr(err, 'strerror', None) or err}", path=path) from None
    if not stat.S_ISREG(mode):
        raise NotRegularFile(f"cannot write {what} {os.fspath(path)}: it is {file_kind(mode)}, "
                             f"and cnnkit replaces only files", path=path)
    return path
