"""The safetensors format (Hugging Face) in NumPy alone: no ``safetensors`` package, no pickle.

Layout of a file:

    8 bytes        N, a little-endian unsigned 64-bit integer: the header's length in bytes
    N bytes        UTF-8 JSON: {name: {"dtype": "F32", "shape": [..], "data_offsets": [b, e]},
                   ..., "__metadata__": {str: str}}, padded with spaces (here to a multiple of 8,
                   as the reference writer does, so the data starts 8-byte aligned)
    the rest       the byte buffer: each tensor little-endian in C order at bytes [b, e) of it

Reading validates as the reference (Rust) implementation does, and a little more: the header
length is at most 100,000,000 and within the file; the header is a JSON object without
duplicate names; each entry has a known dtype, a shape of at most 32 non-negative integers
(:data:`~cnnkit.weights.limits.MAX_DIMS`, checked before the sizes are) and integer offsets
with ``e - b == prod(shape) * itemsize``; the entries, sorted by offset, tile the buffer
from 0 with no gap or overlap and end exactly at the end of the file; the metadata maps strings
to strings. Only then is the size checked against the memory budget
(:func:`cnnkit.budget.check_bytes`) and the data read, each tensor into its own aligned array.
Every check takes time linear in the header's length. Every failure is a
:class:`~cnnkit.weights.WeightsError`, one line naming the file and what is wrong (the file's
names and values cut short); a file of another kind (a PyTorch zip, a pickle, an ``.npz``) is
named as such.

dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL C64. BF16 is read as float32 (its 16
bits are the top half of a float32's, so the conversion is exact); the 8-, 6- and 4-bit float
types are refused by name.

Writing keeps the caller's order in the header and lays the tensors out in the buffer by item
size, largest first (stably), so every tensor starts at a multiple of its own item size, as
readers that map the file (``safetensors.torch``) need.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import numpy as np

from .._atomic import atomic_write_bytes
from ..budget import check_bytes
from ..files import regular_file
from .errors import WeightsError
from .limits import quoted, shape_problem, shape_text

__all__ = ["read_safetensors", "write_safetensors", "safetensors_header", "MAX_HEADER_BYTES"]

MAX_HEADER_BYTES = 100_000_000           # the reference implementation's limit
_METADATA = "__metadata__"

# code -> little-endian NumPy dtype as stored (BF16 is read as its raw 16 bits)
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
           "I16": "<i2", "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
           "BOOL": "u1", "C64": "<c8"}
_REFUSED = {"F8_E4M3": "8-bit float", "F8_E5M2": "8-bit float", "F8_E4M3FNUZ": "8-bit float",
            "F8_E5M2FNUZ": "8-bit float", "F8_E8M0": "8-bit scale", "F6_E2M3": "6-bit float",
            "F6_E3M2": "6-bit float", "F4": "4-bit float"}
# NumPy dtype (native or little-endian) -> code, for writing
_CODES = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
          np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.int16): "I16",
          np.dtype(np.int8): "I8", np.dtype(np.uint64): "U64", np.dtype(np.uint32): "U32",
          np.dtype(np.uint16): "U16", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL",
          np.dtype(np.complex64): "C64"}


def _fail(path, what: str) -> WeightsError:
    return WeightsError(f"{path}: {what}")


def _kind_of(head: bytes) -> str | None:
    """What a file that is not safetensors looks like, from its first bytes, for the message."""
    if head.startswith(b"PK"):
        return "a zip archive (a PyTorch .pt file or a NumPy .npz?)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (a legacy PyTorch .pt file?)"
    if head.startswith(b"\x93NUMPY"):
        return "a single NumPy array (.npy)"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed"
    return None


def _not_safetensors(path, head: bytes, what: str) -> WeightsError:
    """The error for a file whose first bytes break the format: what kind of file it is, when
    that shows, else ``what`` is wrong."""
    kind = _kind_of(head)
    return _fail(path, f"not a safetensors file: it is {kind}" if kind else what)


def _check_int(value, path, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(path, f"{what} is {quoted(value, 40)}, not a non-negative integer")
    return value


class _Duplicate(Exception):
    pass


def _unique_object(pairs):
    """json object_pairs_hook: a dict, refusing a name given twice (the reference keeps the
    last, silently; a file that names a tensor twice is corrupt either way)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def _parse_header(path: Path):
    """Read and validate the header of ``path``.

    Returns (entries, metadata, data_start) where entries is ``{name: (code, shape, begin,
    end)}`` in header order. Checks everything but the data's values."""
    regular_file(path, "safetensors file", error=WeightsError)   # a FIFO would hang the read
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if size < 8:
                if not size:
                    raise _fail(path, "the file is empty")
                raise _fail(path, f"not a safetensors file: {size} bytes, too short for the "
                                  f"8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                raise _not_safetensors(path, head, f"not a safetensors file: its first 8 bytes "
                                                   f"give a header length of {n:,} bytes, more "
                                                   f"than the format's {MAX_HEADER_BYTES:,}")
            if 8 + n > size:
                raise _not_safetensors(path, head, f"the header length field says {n:,} bytes "
                                                   f"but only {size - 8:,} follow (truncated, "
                                                   f"or not a safetensors file)")
            raw = f.read(n)
    except FileNotFoundError:
        raise WeightsError(f"safetensors file not found: {path}") from None
    except OSError as err:
        raise _fail(path, f"cannot read: {err.strerror or err}") from None
    if len(raw) != n:
        raise _fail(path, f"the file ended inside its {n:,}-byte header: truncated?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _fail(path, f"the header is not UTF-8 text (byte {err.start}); not a safetensors "
                          f"file, or a corrupt one") from None
    if not text.startswith("{"):
        raise _not_safetensors(path, head, "not a safetensors file: its header does not "
                                           "start with '{'")
    try:
        header = json.loads(text, object_pairs_hook=_unique_object,
                            parse_constant=_refuse_constant)
    except _Duplicate as err:
        raise _fail(path, f"the header names {quoted(err.args[0])} twice") from None
    except (ValueError, RecursionError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise _fail(path, f"the header is not valid JSON: {msg}") from None
    metadata = header.pop(_METADATA, None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise _fail(path, f"the header's {_METADATA} is a {type(metadata).__name__}, not an "
                          f"object of strings")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise _fail(path, f"the metadata value of {quoted(key)} is a "
                              f"{type(value).__name__}, not a string")
    entries = {name: _entry(path, name, info) for name, info in header.items()}
    _check_tiling(path, entries, size - 8 - n)
    return entries, metadata, 8 + n


def _entry(path, name: str, info) -> tuple[str, tuple, int, int]:
    """(code, shape, begin, end) of one header entry, validated on its own in time bounded by
    :data:`~cnnkit.weights.limits.MAX_DIMS` (the shape's length is checked before its sizes),
    with messages that show the entry's values cut short."""
    tensor = f"tensor {quoted(name)}"
    if not isinstance(info, dict):
        raise _fail(path, f"{tensor}: the header gives a {type(info).__name__}, not an object "
                          f"with dtype, shape and data_offsets")
    absent = [k for k in ("dtype", "shape", "data_offsets") if k not in info]
    if absent:
        raise _fail(path, f"{tensor}: the header lacks {', '.join(absent)}")
    code = info["dtype"]
    if not isinstance(code, str):
        raise _fail(path, f"{tensor}: the dtype is {quoted(code)}, not a name such as 'F32'")
    if code in _REFUSED:
        raise _fail(path, f"{tensor} is {code}, a {_REFUSED[code]} type cnnkit does not read; "
                          f"convert the file to F32, F16 or BF16")
    if code not in _DTYPES:
        raise _fail(path, f"{tensor} has an unknown dtype {quoted(code)} (known: "
                          f"{', '.join(_DTYPES)})")
    itemsize = np.dtype(_DTYPES[code]).itemsize
    shape = info["shape"]
    if not isinstance(shape, list):
        raise _fail(path, f"{tensor}: the shape is {quoted(shape)}, not a list of sizes")
    problem = shape_problem(shape, itemsize)
    if problem:
        raise _fail(path, f"{tensor}: its shape {shape_text(shape)} {problem}")
    shape = tuple(shape)
    offsets = info["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2:
        raise _fail(path, f"{tensor}: data_offsets is {quoted(offsets)}, not [begin, end]")
    begin, end = (_check_int(o, path, f"{tensor}: an offset in data_offsets") for o in offsets)
    if end < begin:
        raise _fail(path, f"{tensor}: data_offsets [{begin:,}, {end:,}] end before they begin")
    nbytes = math.prod(shape) * itemsize
    if end - begin != nbytes:
        raise _fail(path, f"{tensor}: {code} of shape {shape_text(shape)} takes {nbytes:,} "
                          f"bytes but its data_offsets [{begin:,}, {end:,}] span "
                          f"{end - begin:,}")
    return code, shape, begin, end


def _check_tiling(path, entries: dict, available: int) -> None:
    """The entries, sorted by offset, cover [0, their end) exactly once, and the file ends
    there."""
    position, previous = 0, None
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda kv: kv[1][2:]):
        if begin < position:
            raise _fail(path, f"tensors {quoted(previous)} and {quoted(name)} overlap in the "
                              f"data (bytes {begin:,} to {position:,})")
        if begin > position:
            raise _fail(path, f"a gap of {begin - position:,} unused bytes in the data before "
                              f"tensor {quoted(name)} (at byte {position:,})")
        position, previous = end, name
    if position > available:
        raise _fail(path, f"the tensors need {position:,} bytes of data but the file holds "
                          f"{available:,} after its header: truncated?")
    if position < available:
        raise _fail(path, f"{available - position:,} bytes after the last tensor's data (the "
                          f"data ends at byte {position:,} of {available:,}): not a safetensors "
                          f"file, or a corrupt one")


def safetensors_header(path) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, str]]:
    """``({name: (dtype code, shape)}, metadata)`` of a safetensors file, in header order,
    validated as :func:`read_safetensors` does but without reading the data (cheap on any
    size: what a file holds before deciding to load it)."""
    path = Path(path)
    entries, metadata, _ = _parse_header(path)
    return {name: (code, shape) for name, (code, shape, _, _) in entries.items()}, metadata


def read_safetensors(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors of a safetensors file as NumPy arrays (in the header's order, each its own
    C-contiguous, aligned, writable array in native byte order) and its ``__metadata__``
    (``{}`` when absent).

    BF16 becomes float32, BOOL bool; every other dtype is kept (F16 stays float16).

    Raises
    ------
    WeightsError
        One line naming the file and what is wrong: not found, empty, truncated, another kind of
        file, a header that breaks the format (see the module docstring).
    BudgetError
        If the arrays would not fit the memory budget (checked before any is allocated).
    """
    path = Path(path)
    entries, metadata, start = _parse_header(path)
    out_bytes = sum(math.prod(shape) * (4 if code == "BF16" else np.dtype(_DTYPES[code]).itemsize)
                    for code, shape, _, _ in entries.values())
    if entries:
        check_bytes(out_bytes, f"the {len(entries):,} tensors of {path}")
    arrays = {}
    try:
        with open(path, "rb") as f:
            for name, (code, shape, begin, end) in sorted(entries.items(),
                                                          key=lambda kv: kv[1][2]):
                raw = np.empty(shape, np.dtype(_DTYPES[code]))
                f.seek(start + begin)
                if end > begin and f.readinto(raw.reshape(-1).view(np.uint8)) != end - begin:
                    raise _fail(path, f"the file ended inside tensor {quoted(name)}: it changed "
                                      f"while being read?")
                arrays[name] = _to_native(raw, code)
    except OSError as err:
        raise _fail(path, f"cannot read: {err.strerror or err}") from None
    return {name: arrays[name] for name in entries}, metadata


def _to_native(raw: np.ndarray, code: str) -> np.ndarray:
    """The stored little-endian array as the array it stands for, in native byte order."""
    if code == "BF16":                  # in place: an operator would make a 0-d array a scalar
        wide = raw.astype(np.uint32)
        wide <<= 16
        return wide.view(np.float32)
    if code == "BOOL":
        return raw.astype(np.bool_)
    if raw.dtype.byteorder not in ("=", "|") and raw.dtype.byteorder != _NATIVE:
        return raw.astype(raw.dtype.newbyteorder("="))
    return raw


_NATIVE = "<" if np.little_endian else ">"


def _code(name: str, array: np.ndarray) -> str:
    dtype = array.dtype
    if dtype.name == "bfloat16" and dtype.itemsize == 2:     # ml_dtypes' bfloat16, if in use
        return "BF16"
    code = _CODES.get(dtype.newbyteorder("=")) if dtype.byteorder != "|" else _CODES.get(dtype)
    if code is None:
        kind = "Python objects" if dtype.hasobject else f"dtype {dtype}"
        raise WeightsError(f"write_safetensors: {quoted(name)} holds {kind}, which safetensors "
                           f"does not store (numbers and booleans: "
                           f"{', '.join(str(d) for d in _CODES)})")
    return code


def _c_order(array: np.ndarray) -> np.ndarray:
    """``array`` in C order, copied only if it is not (``np.ascontiguousarray`` would make a
    0-d array 1-d)."""
    return array if array.flags.c_contiguous else array.copy(order="C")


def write_safetensors(path, arrays: dict, metadata: dict | None = None) -> Path:
    """Write ``arrays`` (``{name: array}``) and ``metadata`` (``{str: str}``) to ``path`` as a
    safetensors file, atomically (a crash leaves the old file or the whole new one).

    The header keeps the dict's order; the data is little-endian C order, laid out largest
    item size first so that every tensor is aligned to its own item size; the header is padded
    with spaces to a multiple of 8 bytes. Arrays of any numeric dtype the format has (float16
    to float64, signed and unsigned integers, bool, complex64), 0-d and empty ones included.
    Returns the path.

    Raises
    ------
    TypeError
        If a name is not a string (or is ``"__metadata__"``), or a metadata key or value is not
        a string.
    WeightsError
        If an array's dtype has no safetensors code (object, string, complex128, ...).
    """
    if not isinstance(arrays, dict):
        raise TypeError(f"write_safetensors: arrays must be a dict of name -> array, got "
                        f"{type(arrays).__name__}")
    entries = []
    for name, value in arrays.items():
        if not isinstance(name, str) or name == _METADATA:
            raise TypeError(f"write_safetensors: tensor names must be strings other than "
                            f"{_METADATA!r}, got {quoted(name)}")
        array = np.asarray(value)
        code = _code(name, array)
        if code == "BF16":
            array = _c_order(array).view(np.uint16)
        stored = np.dtype(_DTYPES[code])
        entries.append((name, code, _c_order(array.astype(stored, copy=False))))
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError(f"write_safetensors: metadata must map strings to strings, got "
                            f"{metadata!r:.200}")
    layout = sorted(range(len(entries)), key=lambda i: -entries[i][2].dtype.itemsize)
    offsets, position = {}, 0
    for i in layout:
        offsets[i] = (position, position + entries[i][2].nbytes)
        position += entries[i][2].nbytes
    header = {} if metadata is None else {_METADATA: dict(metadata)}
    for i, (name, code, array) in enumerate(entries):
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": list(offsets[i])}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)

    def write(f):
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for i in layout:
            array = entries[i][2]
            if array.size:
                f.write(array.reshape(-1).view(np.uint8).data)

    return atomic_write_bytes(path, write)
