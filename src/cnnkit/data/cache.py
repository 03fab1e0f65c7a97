"""The cache of decoded images, as trusted storage on a shared machine.

The folder source decodes a folder's images once into two files of the cache folder
(:func:`cache_folder`): ``STEM.npy``, the (N, C, H, W) uint8 images, and ``STEM.json``, its
record (the key, the shape, the images that failed, the training split's pixel statistics, and a
sha256 digest of every 16 MiB block of the images). ``STEM`` names the folder, its key and the
user: ``pets-1a2b3c4d-<key>-u1000``, so users sharing a cache keep a copy each.

What is read back is what this user decoded, whoever else can write the cache folder:

- a cache file is used only when it is a regular file owned by this user that no one else may
  write (no group or world write bit), as ``fstat`` sees the descriptor it was opened on (without
  following a link, without blocking on a FIFO); everything is read through that descriptor, so
  a file renamed into place after the check is never read. Any other file at the name is passed
  over with a note and the folder is decoded again into this user's own file;
- the images are checked against the record's digests when they are opened (on one core, about
  0.03 s for MNIST's 52 MiB: sha256 runs in the CPU's SHA instructions where it has them, faster
  there than blake2b); a mismatch is noted and decoded again, so changed rows are never trained
  on;
- the cache folder is created 0700 and the files 0600.

Writing is safe on a full or shared disk:

- the images go to a temporary ``.STEM.npy.TOKEN.tmp``, created exclusively and ``flock``-ed
  while it is written. Its whole size is allocated (``posix_fallocate``, one decode at a time
  under a ``flock`` of the cache folder) before a row is decoded,
  so a disk without room, or two decodes sharing a small cache, is one error naming the cache,
  the bytes needed and what else holds the room, never the SIGBUS of a memory-mapped write into
  a sparse file; and rows are written with ``pwrite``, not through a memory map, so even a file
  system that cannot allocate ahead reports ENOSPC as an error;
- a temporary nobody holds a ``flock`` on was left by a decode that died: the next decode
  removes it and names it. A new cache of a folder replaces this user's earlier ones. Only files
  named as cnnkit names them and owned by this user are ever removed.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import re
import secrets
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..budget import format_size
from ..environment import read_variable
from ..errors import UsageError
from .errors import DataError

try:
    import fcntl
except ImportError:     # not POSIX: a temporary is taken for a dead writer's after an hour
    fcntl = None

__all__ = ["CACHE_VERSION", "CacheEntry", "cache_folder", "load", "store", "save_record",
           "remove_dead_temporaries"]

CACHE_VERSION = 2       # bump when decoding or the record changes, so old caches are not reused
BLOCK = 16 * 2 ** 20    # bytes of images per digest
RECORD_BYTES = 64 * 2 ** 20   # a record larger than this is not read
_UID = os.getuid() if hasattr(os, "getuid") else None
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NO_ALLOCATE = {errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS}
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_OPEN = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0)   # a FIFO there cannot hang it
# The names cnnkit gives: SLUG-KEY[-uUID].npy/.json, and the temporaries of their writes
_STEM = r"[A-Za-z0-9_-]{1,40}-[0-9a-f]{8}-[0-9a-f]{20}(?:-u[0-9]+)?"
_TEMPORARY = re.compile(r"\." + _STEM + r"\.(?:npy|json)\.[A-Za-z0-9_]+\.tmp")


# ---------------------------------------------------------------------------- the folder

def cache_folder(cache_dir=None) -> Path:
    """Where decoded folders are cached, as an absolute path: ``cache_dir``, else
    ``$CNNKIT_CACHE``, else ``$XDG_CACHE_HOME/cnnkit``, else ``~/.cache/cnnkit``.

    Raises
    ------
    UsageError
        When the setting cannot name a folder (``~nouser/x``, a file), naming the setting.
    """
    if cache_dir is not None:
        return _named(cache_dir, "cache_dir")
    given = read_variable("CNNKIT_CACHE", parse_folder)
    if given is not None:
        return given
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):     # the XDG rule: a relative value is ignored
        return _named(os.path.join(xdg, "cnnkit"), "XDG_CACHE_HOME")
    return _named(os.path.join("~", ".cache", "cnnkit"), "the default cache folder")


def parse_folder(text) -> Path:
    """A cache folder's setting as an absolute path (``~`` and ``~user`` expanded), or
    ValueError when it cannot name a folder."""
    text = os.fspath(text)
    try:
        path = Path(text).expanduser().absolute()
    except (RuntimeError, KeyError, ValueError) as err:     # ~nouser, no home, a NUL
        raise ValueError(f"{text!r} names no folder: {err}") from None
    if path.exists() and not path.is_dir():
        raise ValueError(f"{text!r} names no folder: {path} is not a folder")
    return path


def _named(value, setting: str) -> Path:
    """:func:`parse_folder` of ``value``, its error naming ``setting``."""
    try:
        return parse_folder(value)
    except ValueError as err:
        raise UsageError(f"{setting}: {err}; name a folder for decoded images") from None


def _make_folder(folder: Path) -> None:
    """Create the cache folder, private (0700), with its parents, or DataError."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{folder}: cannot create the cache folder for decoded images "
                        f"({err.strerror or err}); set CNNKIT_CACHE to a writable folder",
                        path=folder) from None


# ---------------------------------------------------------------------------- one cached folder

@dataclass(frozen=True)
class CacheEntry:
    """The two files of one decoded folder: ``folder/STEM.npy`` and ``folder/STEM.json``, for
    images of ``shape`` (N, C, H, W), identified by ``key``."""

    folder: Path
    slug: str
    key: str
    shape: tuple

    @property
    def stem(self) -> str:
        return f"{self.slug}-{self.key}" + (f"-u{_UID}" if _UID is not None else "")

    @property
    def images(self) -> Path:
        return self.folder / f"{self.stem}.npy"

    @property
    def record(self) -> Path:
        return self.folder / f"{self.stem}.json"

    @property
    def header(self) -> bytes:
        """The .npy header of the images (format 1.0, uint8, C order)."""
        out = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            out, {"descr": "|u1", "fortran_order": False, "shape": tuple(self.shape)})
        return out.getvalue()

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape)


def _distrust(st: os.stat_result) -> str | None:
    """Why a cache file with this ``fstat`` is not to be read, or None when it is this user's
    own regular file that no one else may write."""
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if _UID is not None and st.st_uid != _UID:
        return f"owned by uid {st.st_uid}, not by you (uid {_UID})"
    if _UID is not None and st.st_mode & 0o022:
        return f"writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _open_own(path: Path, notes: list) -> int | None:
    """A descriptor of ``path`` when it is this user's own file (see :func:`_distrust`), else
    None, with a note when something else is there."""
    try:
        fd = os.open(path, _OPEN)
    except FileNotFoundError:
        return None
    except OSError as err:      # ELOOP: a link; EACCES: someone else's
        notes.append(f"passed over the cache file {path} ({err.strerror or err}); decoding "
                     f"again into your own")
        return None
    reason = _distrust(os.fstat(fd))
    if reason:
        os.close(fd)
        notes.append(f"passed over the cache file {path}: {reason}; decoding again into "
                     f"your own")
        return None
    return fd


def _read_record(entry: CacheEntry, notes: list) -> dict | None:
    """The record of ``entry`` when it is this user's own and well formed, else None."""
    fd = _open_own(entry.record, notes)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as f:
        text = f.read(RECORD_BYTES + 1)
    try:
        record = json.loads(text) if len(text) <= RECORD_BYTES else None
    except ValueError:
        record = None
    if not _well_formed(record, entry):
        notes.append(f"passed over the cache record {entry.record}: damaged or of another "
                     f"version; decoding again")
        return None
    return record


def _well_formed(record, entry: CacheEntry) -> bool:
    """Whether ``record`` is what :func:`store` writes for ``entry``."""
    if not (isinstance(record, dict) and record.get("version") == CACHE_VERSION
            and record.get("key") == entry.key and record.get("shape") == list(entry.shape)):
        return False
    digests, bad, stats = record.get("digests"), record.get("bad"), record.get("stats")
    blocks = math.ceil(entry.nbytes / BLOCK)
    return (isinstance(digests, list) and len(digests) == blocks
            and all(isinstance(d, str) for d in digests)
            and isinstance(bad, list) and all(
                isinstance(b, list) and len(b) == 2 and isinstance(b[0], int)
                and 0 <= b[0] < entry.shape[0] and isinstance(b[1], str) for b in bad)
            and isinstance(stats, dict))


def _digests(images: np.ndarray) -> list[str]:
    """The sha256 of every BLOCK bytes of ``images`` (C-contiguous), by up to 4 threads
    (hashlib lets go of Python's lock while it hashes)."""
    flat = images.reshape(-1)
    blocks = [flat[i:i + BLOCK] for i in range(0, flat.size, BLOCK)]
    workers = min(4, len(blocks), os.cpu_count() or 1)

    def digest(block):
        return hashlib.sha256(block).hexdigest()

    if workers < 2:
        return [digest(b) for b in blocks]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(digest, blocks))


def _map(fd: int, entry: CacheEntry) -> np.memmap | None:
    """The images of the .npy file open on ``fd``, read-only, when its size and header are the
    ones ``entry`` expects; None otherwise."""
    header = entry.header
    if os.fstat(fd).st_size != len(header) + entry.nbytes or os.pread(fd, len(header), 0) \
            != header:
        return None
    with os.fdopen(os.dup(fd), "rb") as f:     # the map keeps its own reference to the file
        return np.memmap(f, dtype=np.uint8, mode="r", offset=len(header), shape=entry.shape)


def load(entry: CacheEntry, notes: list) -> tuple[np.memmap, dict] | None:
    """(images, record) of ``entry`` from the cache when both files are this user's own, the
    record is well formed and the images match its digests; else None (with a note saying why,
    unless there was simply no cache)."""
    record = _read_record(entry, notes)
    if record is None:
        return None
    fd = _open_own(entry.images, notes)
    if fd is None:
        return None
    try:
        images = _map(fd, entry)
    finally:
        os.close(fd)
    if images is None or _digests(images) != record["digests"]:
        notes.append(f"the cache {entry.images} does not match its record (changed since it "
                     f"was written); decoding again")
        return None
    return images, record


def save_record(entry: CacheEntry, record: dict) -> None:
    """Replace the record of ``entry`` (to keep pixel statistics); OSError when it cannot."""
    data = json.dumps(record).encode()
    with _temporary(entry.record) as (fd, tmp):
        _write_all(fd, data, 0)
        os.replace(tmp, entry.record)


# ---------------------------------------------------------------------------- writing

def store(entry: CacheEntry, fill, *, what, notes: list) -> tuple[np.memmap, dict, bool]:
    """Decode into the cache: allocate ``entry``'s images in a temporary file, call
    ``fill(path, offset)`` to write each row (row i at ``offset + i * row bytes``, by
    :func:`write_row`; it returns the (row, message) of images that failed), record their
    digests, and move both files into place.

    Returns (images, record, kept): ``kept`` is False when the files could not be moved into
    place (another user's file holds the name in a folder whose sticky bit keeps it there); the
    images then serve this run from the unlinked temporary file.

    Raises
    ------
    DataError
        When the cache folder cannot be written, or has no room for the images: one line naming
        ``what`` (the folder decoded), the cache, the bytes needed and what else holds the room.
    """
    _make_folder(entry.folder)
    held = remove_dead_temporaries(entry.folder, notes)
    header, total = entry.header, len(entry.header) + entry.nbytes
    try:
        with _temporary(entry.images) as (fd, tmp):
            _write_all(fd, header, 0)
            _allocate_in_turn(entry.folder, fd, total)
            bad = fill(str(tmp), len(header))
            images = _map(fd, entry)
            record = {"version": CACHE_VERSION, "key": entry.key, "root": str(what),
                      "shape": list(entry.shape), "bad": [[i, m] for i, m in bad],
                      "stats": {}, "digests": _digests(images)}
            try:
                os.replace(tmp, entry.images)
                save_record(entry, record)
            except PermissionError as err:
                notes.append(f"cannot keep the decoded images in the cache {entry.images} "
                             f"({err.strerror}: another user's file holds the name); they "
                             f"serve this run only")
                return images, record, False
    except OSError as err:
        if err.errno in _NO_ROOM:
            raise DataError(_no_room(entry, what, total, held), path=entry.folder) from None
        raise DataError(f"{entry.folder}: cannot write the decoded images of {what} to the "
                        f"cache ({err.strerror or err}); set CNNKIT_CACHE to a writable folder",
                        path=entry.folder) from None
    remove_superseded(entry)
    return images, record, True


def _no_room(entry: CacheEntry, what, total: int, held: list) -> str:
    """The line for a cache without room for ``total`` bytes."""
    try:
        free = f"{format_size(shutil.disk_usage(entry.folder).free)} free"
    except OSError:
        free = "less free"
    n, volume = entry.shape[0], "x".join(map(str, entry.shape[1:]))
    line = (f"{what}: the decoded images ({n:,} x {volume}) need {format_size(total)} in the "
            f"cache {entry.folder}, which has {free}")
    if held:
        line += (f" ({format_size(sum(size for _, size in held))} of it held by "
                 f"{len(held)} decode(s) running now: {', '.join(n for n, _ in held[:3])})")
    return line + "; set CNNKIT_CACHE to a folder with room, or decode smaller (--input)"


def _allocate_in_turn(folder, fd: int, size: int) -> None:
    """:func:`_allocate` while holding a ``flock`` on the cache folder itself, so decodes sharing
    a small cache take its room one after the other: tmpfs allocates page by page, and two
    allocations at once could each get part of the room and both fail, where one of them fits.
    Without the lock (a folder that cannot be opened or locked) it allocates all the same."""
    try:
        lock = None if fcntl is None else os.open(
            folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW)
    except OSError:
        lock = None
    try:
        if lock is not None:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
            except OSError:
                pass
        _allocate(fd, size)
    finally:
        if lock is not None:
            os.close(lock)                  # closing lets the lock go


def _allocate(fd: int, size: int) -> None:
    """Give the file ``size`` bytes of real disk blocks (zeros), so no later write can find the
    disk full; where the file system cannot allocate ahead, only set its size (rows are then
    allocated as they are written, and a full disk is still an ENOSPC, not a signal)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except AttributeError:      # no posix_fallocate on this system
        os.ftruncate(fd, size)
    except OSError as err:
        if err.errno not in _NO_ALLOCATE:
            raise
        os.ftruncate(fd, size)


def _write_all(fd: int, data, offset: int) -> None:
    """``pwrite`` all of ``data`` at ``offset`` (a short write goes on where it stopped)."""
    view = memoryview(data).cast("B")
    while len(view):
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def write_row(fd: int, offset: int, row: int, pixels: np.ndarray) -> None:
    """Write one decoded image (C, H, W uint8) as row ``row`` of the images whose data starts at
    ``offset`` in the file open on ``fd``."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    _write_all(fd, pixels, offset + row * pixels.nbytes)


@contextmanager
def _temporary(final: Path):
    """Yield (fd, path) of a new private temporary file beside ``final``, named as cnnkit names
    them and ``flock``-ed for as long as it is open, so no cleaner takes it for a dead writer's;
    it is removed at the end unless the block renamed it."""
    while True:
        tmp = final.parent / f".{final.name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                pass    # a file system without flock: cleaners cannot lock it either
        if os.fstat(fd).st_nlink:
            break
        os.close(fd)    # a cleaner removed it in the instant before the lock: take another
    try:
        yield fd, tmp
    finally:
        try:
            if os.lstat(tmp).st_ino == os.fstat(fd).st_ino:
                os.unlink(tmp)
        except OSError:
            pass        # renamed into place (or gone)
        os.close(fd)


# ---------------------------------------------------------------------------- cleaning up

def remove_dead_temporaries(folder: Path, notes: list) -> list[tuple[str, int]]:
    """Remove the temporaries that decodes which died left in ``folder`` (this user's files
    named as cnnkit names them, which nobody holds a ``flock`` on), with a note naming them;
    return the (name, size) of those running decodes hold."""
    removed, held = [], []
    for name, st in _own(folder, _TEMPORARY):
        path = folder / name
        try:
            fd = os.open(path, _OPEN)
        except OSError:
            continue
        try:
            if _held(fd, st):
                held.append((name, st.st_size))
            elif os.lstat(path).st_ino == os.fstat(fd).st_ino:   # still the file looked at
                os.unlink(path)
                removed.append((name, st.st_size))
        except OSError:
            pass
        finally:
            os.close(fd)
    if removed:
        names = ", ".join(n for n, _ in removed[:3]) + (", ..." if len(removed) > 3 else "")
        notes.append(f"removed {len(removed)} temporary file(s) that decodes which died left "
                     f"in the cache {folder} ({names}; "
                     f"{format_size(sum(s for _, s in removed))})")
    return held


def _held(fd: int, st: os.stat_result) -> bool:
    """Whether a running writer holds the temporary open on ``fd`` (OSError where the file
    system has no flock: the temporary is then left alone)."""
    if fcntl is None:
        import time

        return time.time() - st.st_mtime < 3600
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    return False


def remove_superseded(entry: CacheEntry) -> None:
    """Remove this user's earlier caches of the same folder (other keys, earlier versions)."""
    mine = re.compile(re.escape(entry.slug) + r"-[0-9a-f]{20}(?:-u[0-9]+)?\.(?:npy|json)")
    for name, _ in _own(entry.folder, mine):
        if not name.startswith(entry.stem + "."):
            try:
                os.unlink(entry.folder / name)
            except OSError:
                pass


def _own(folder: Path, pattern: re.Pattern):
    """(name, lstat) of this user's regular files in ``folder`` whose names ``pattern`` matches
    whole."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for item in entries:
        if not pattern.fullmatch(item.name):
            continue
        try:
            st = item.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and (_UID is None or st.st_uid == _UID):
            yield item.name, st
