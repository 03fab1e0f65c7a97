"""Reading ``.npz`` archives safely: headers first, only the arrays asked for, within the budget.

``np.load`` of an ``.npz`` inflates a member when it is indexed, trusting its header: a 3 MB file
whose members claim gigabytes (or that compress well) becomes an out-of-memory kill. Here each
wanted member's ``.npy`` header is read first (shape, dtype; object arrays refused, as
``allow_pickle=False`` does), the bytes it would take are checked against the memory budget
(:mod:`cnnkit.budget`) together with the zip's own declared size, and only then is it read.
Members nobody asked for are never inflated. Shared by checkpoints and the ``npz:`` data source.
Only a regular file is opened (:func:`cnnkit.files.regular_file`): a FIFO would hang the read.
"""

from __future__ import annotations

import math
import zipfile

import numpy as np

from .budget import check_bytes
from .errors import CnnkitError
from .files import regular_file

__all__ = ["NpzReadError", "npz_headers", "read_npz", "is_npy_file"]

_NPY_MAGIC = b"\x93NUMPY"


class NpzReadError(CnnkitError, ValueError):
    """The archive or one of its members is not a readable array."""


def _header(stream, name: str, where: str):
    """(shape, dtype) from a member's .npy header."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = fmt.read_array_header_2_0(stream)
    except (ValueError, OSError, EOFError, SyntaxError) as err:
        raise NpzReadError(f"{where}: member {name!r} is not a NumPy array: {err}") from None
    if dtype.hasobject:
        raise NpzReadError(f"{where}: member {name!r} holds Python objects, which would need "
                           f"unpickling; refused")
    return tuple(int(s) for s in shape), dtype


def npz_headers(path, where: str | None = None) -> dict:
    """{name: (shape, dtype, nbytes, zipinfo)} of every member, reading headers only. ``name`` is
    the key ``np.load`` gives (the member's file name less ``.npy``)."""
    where = where or str(path)
    regular_file(path, "npz file", error=NpzReadError)
    out = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                with archive.open(info) as stream:
                    shape, dtype = _header(stream, name, where)
                out[name] = (shape, dtype, math.prod(shape) * dtype.itemsize, info)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as err:
        raise NpzReadError(f"{where}: not a readable .npz archive: {err}") from None
    return out


def read_npz(path, names=None, *, where: str | None = None) -> dict:
    """The members ``names`` (all when None) of an ``.npz`` file as arrays, after checking their
    headers and their total size against the memory budget. Missing names are left out."""
    where = where or str(path)
    headers = npz_headers(path, where)
    wanted = [n for n in (headers if names is None else names) if n in headers]
    total = sum(headers[n][2] for n in wanted)
    largest = max(wanted, key=lambda n: headers[n][2], default=None)
    if largest is not None:
        check_bytes(total, f"the arrays of {where} (the largest, {largest!r}, is "
                    f"{'x'.join(map(str, headers[largest][0])) or 'a scalar'} "
                    f"{headers[largest][1]})")
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in wanted:
                shape, dtype, nbytes, info = headers[name]
                if info.file_size > nbytes + 65536 + 4096:   # the header, with room to spare
                    raise NpzReadError(f"{where}: member {name!r} declares {info.file_size:,} "
                                       f"bytes for a {nbytes:,}-byte array")
                with archive.open(info) as stream:
                    arrays[name] = np.lib.format.read_array(stream, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        if isinstance(err, NpzReadError):
            raise
        raise NpzReadError(f"{where}: member could not be read: {err}") from None
    return arrays


def is_npy_file(path) -> bool:
    """Whether the file at ``path`` starts as a lone ``.npy`` array does (np.save's output, not an
    ``.npz`` of arrays): its six magic bytes alone are read, never the whole file."""
    with open(path, "rb") as f:
        return f.read(len(_NPY_MAGIC)) == _NPY_MAGIC
