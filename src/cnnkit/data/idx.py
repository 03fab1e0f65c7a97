"""IDX files, the format of MNIST: read and write, gzip or raw, every header field checked.

Layout (all integers big-endian):

    offset      bytes       field
    0           2           zero
    2           1           type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                            0x0D float32, 0x0E float64
    3           1           number of dimensions, ndim (>= 1)
    4           4 * ndim    the size of each dimension, uint32
    4 + 4*ndim  the rest    prod(sizes) values in C order, big-endian; nothing after them

Read as one integer, the first four bytes are the magic number: 2051 (0x00000803, uint8, 3 dims)
for MNIST images, 2049 (0x00000801, uint8, 1 dim) for labels. Whether a file is gzip-compressed is
decided from its first two bytes (1f 8b), never from its name. The header length follows from
the dimension count, and the payload must be exactly ``prod(sizes) * itemsize`` bytes, so a
truncated file, a file with trailing bytes and a labels file passed as images are all reported
as :class:`DataError` naming the file, never as a wrong-shaped array or a NumPy reshape error.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from .._atomic import atomic_write_bytes
from ..files import regular_file
from .errors import DataError

__all__ = ["read_idx", "read_idx_images", "read_idx_labels", "write_idx",
           "IMAGES_MAGIC", "LABELS_MAGIC"]

IMAGES_MAGIC = 0x00000803  # 2051: uint8, 3 dims (N, rows, cols)
LABELS_MAGIC = 0x00000801  # 2049: uint8, 1 dim (N,)

# type code -> dtype as stored (big-endian); arrays are returned in native byte order
_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
           0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {(dt.kind, dt.itemsize): code for code, dt in _DTYPES.items()}
_KNOWN = ", ".join(f"0x{code:02X} {dt.name}" for code, dt in _DTYPES.items())
_GZIP_MAGIC = b"\x1f\x8b"


def _describe(magic: int) -> str:
    """'2049 (0x00000801: uint8, 1 dim, an IDX labels file)'."""
    code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    kind = _DTYPES[code].name if code in _DTYPES else f"unknown type 0x{code:02X}"
    what = {IMAGES_MAGIC: ", an IDX images file", LABELS_MAGIC: ", an IDX labels file"}
    return f"{magic} (0x{magic:08X}: {kind}, {ndim} dim{'s' * (ndim != 1)}{what.get(magic, '')})"


def _decompress(raw: bytes, path) -> bytes:
    """The file's content, gunzipped when its first two bytes are the gzip magic."""
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as err:
        raise DataError(f"{path}: truncated gzip stream ({err})") from err
    except (OSError, zlib.error) as err:  # gzip.BadGzipFile is an OSError: bad header or CRC
        raise DataError(f"{path}: corrupt gzip stream: {err}") from err


def _parse(data: bytes, path, *, expect_magic: int | None = None,
           expect_ndim: int | None = None) -> np.ndarray:
    """Check an IDX file's (decompressed) bytes and return its array, native byte order."""
    if len(data) < 4:
        raise DataError(f"{path}: {len(data)} bytes, too short for an IDX header "
                        f"(4 bytes at least)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file: it starts with bytes {data[:4].hex(' ')}, "
                        f"an IDX magic number starts with 00 00")
    magic, code, ndim = int.from_bytes(data[:4], "big"), data[2], data[3]
    if code not in _DTYPES:
        raise DataError(f"{path}: unknown IDX type code 0x{code:02X} in magic {_describe(magic)}; "
                        f"known codes: {_KNOWN}")
    if expect_magic is not None and magic != expect_magic:
        raise DataError(f"{path}: expected magic {_describe(expect_magic)}, "
                        f"found {_describe(magic)}")
    if ndim == 0:
        raise DataError(f"{path}: the header says 0 dimensions; an IDX array has 1 at least")
    if expect_ndim is not None and ndim != expect_ndim:
        raise DataError(f"{path}: expected {expect_ndim} dimensions, the header says {ndim} "
                        f"(magic {_describe(magic)})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header: {ndim} dimensions need {header} header "
                        f"bytes, the content is {len(data)} bytes")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _DTYPES[code]
    count = math.prod(dims)
    need, have = count * dtype.itemsize, len(data) - header
    if have < need:
        raise DataError(f"{path}: truncated: dims {dims} of {dtype.name} need {need} bytes "
                        f"after the {header}-byte header, found {have} ({need - have} missing)")
    if have > need:
        raise DataError(f"{path}: {have - need} trailing bytes after the {need}-byte payload "
                        f"of dims {dims} ({dtype.name})")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    # astype copies: the result is writable and in native byte order, not a view of `data`
    return arr.astype(dtype.newbyteorder("="))


def _read(path, **expect) -> np.ndarray:
    """The file's bytes, decompressed if gzip, parsed with ``_parse``'s checks."""
    with open(regular_file(path, "IDX file"), "rb") as f:     # a FIFO would hang the read
        raw = f.read()
    return _parse(_decompress(raw, path), path, **expect)


def read_idx(path, *, expect_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw, into an array.

    Parameters
    ----------
    path : str or os.PathLike
    expect_ndim : int, optional. When given, the header's dimension count must equal it.

    Returns
    -------
    array : (d1, ..., dk) array of the stored type (uint8, int8, int16, int32, float32 or
        float64), native byte order, writable

    Raises
    ------
    DataError
        If the magic number is unknown, the dimension count is not ``expect_ndim``, the payload
        is shorter (truncated) or longer (trailing bytes) than the dims say, or a gzip stream is
        truncated or corrupt. The message names the file.
    FileNotFoundError
        If there is no such file.
    NotRegularFile
        If ``path`` is a folder, a FIFO, a device or a socket (looked at, never opened).

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = write_idx(os.path.join(folder, "a.idx.gz"), np.zeros((2, 3), np.int16))
    ...     read_idx(path, expect_ndim=2).shape
    (2, 3)
    """
    return _read(path, expect_ndim=expect_ndim)


def read_idx_images(path) -> np.ndarray:
    """Read an IDX images file (magic 2051): (N, rows, cols) uint8.

    Raises
    ------
    DataError
        If the magic is not 2051 (a labels file given as images says so), or any check of
        :func:`read_idx` fails.
    """
    return _read(path, expect_magic=IMAGES_MAGIC)


def read_idx_labels(path) -> np.ndarray:
    """Read an IDX labels file (magic 2049): (N,) uint8.

    Raises
    ------
    DataError
        If the magic is not 2049 (an images file given as labels says so), or any check of
        :func:`read_idx` fails.
    """
    return _read(path, expect_magic=LABELS_MAGIC)


def write_idx(path, array) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends with ``.gz``.

    The file is written to a temporary file in the same folder, flushed to disk and renamed over
    ``path``, so a reader never sees half a file. The gzip header's timestamp is 0, so the same
    array always gives the same bytes.

    Parameters
    ----------
    path : str or os.PathLike (its folder is created if missing)
    array : (d1, ..., dk) array, k in 1..255, each d < 2**32; dtype uint8, int8, int16, int32,
        float32 or float64

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    TypeError
        If the dtype has no IDX type code (int64 labels: convert with ``.astype(np.uint8)``).
    ValueError
        If the array is 0-d, has more than 255 dimensions or a dimension of 2**32 or more.
    """
    arr = np.asarray(array)
    code = _CODES.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise TypeError(f"write_idx: IDX stores {_KNOWN}; got dtype {arr.dtype} (convert first)")
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"write_idx: IDX holds 1 to 255 dimensions, got shape {arr.shape}")
    if max(arr.shape) >= 2**32:
        raise ValueError(f"write_idx: every dimension must be < 2**32, got shape {arr.shape}")
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = np.ascontiguousarray(arr, dtype=_DTYPES[code]).tobytes()
    data = header + payload
    path = Path(path)
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    atomic_write_bytes(path, lambda f: f.write(data))
    return path
