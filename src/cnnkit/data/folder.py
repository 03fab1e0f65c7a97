"""The ``folder:DIR`` source: a folder of image files, one subfolder per class.

    DIR/cat/001.png, DIR/cat/002.jpg, DIR/dog/x.webp, ...      split by --test-size (seeded,
                                                               stratified), or
    DIR/train/cat/..., DIR/train/dog/..., DIR/test/cat/...     the two splits as given
    DIR/train/cat/..., DIR/train/dog/... (no DIR/test)         DIR/train split by --test-size

Class names are the subfolder names, sorted (class k is the k-th); a class folder's images may sit
in nested folders; hidden files and files that are not PNG, JPEG, BMP, GIF, WebP or TIFF are passed
over. Only regular files are read: a FIFO, device or socket with an image's name (or a link to
nothing) is refused in one line naming it, or skipped and counted with ``skip_bad``, by a look
with ``stat`` that never opens it. A class folder that is a link to a folder outside DIR is
followed, with a note naming where it leads (gathering classes from elsewhere by links is a way
to build a dataset); links to folders inside a class folder are not followed (they could loop),
and a note counts them.

Every image is decoded once by :func:`~cnnkit.data.images.decode_image` (any mode, converted to
the requested channels and resized to the requested H x W; by default 3 channels unless the
images are grey, and the size most of them have) into a cache, an ``.npy`` file read back as a
memmap, so later runs start in a second and a dataset larger than memory is read a batch at a
time. :mod:`cnnkit.data.cache` keeps it trustworthy on a shared machine (this user's files only,
checked against digests, allocated before written). The cache is keyed by the folder, every
file's path, size, modification time, inode change time (``ctime``) and inode number, and the
decoded shape; change any and it is rebuilt. The ctime is what catches an image rewritten with
its old size and modification time restored (nobody sets a ctime but the clock); the inode, a
file replaced by another. Both come from the ``stat`` the scan makes anyway, so they cost
nothing; the price is a decode again after a ``chmod`` or ``chown`` of the images, or a copy of
the folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import stat
import sys
import time
from collections import Counter
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._progress import Bar
from ..budget import check_bytes
from ..errors import CnnkitError
from ..files import regular_file
from ..interrupts import STOP_SIGNALS
from . import cache
from .cache import CACHE_VERSION, CacheEntry, cache_folder
from .errors import DataError
from .images import IMAGE_EXTENSIONS, decode_image, natural_channels
from .source import Dataset, Images, Split, pixel_stats, register_source, stratified_split

__all__ = ["open_folder", "scan_folder", "cache_folder", "CACHE_VERSION", "ImageFile"]


class ImageFile(NamedTuple):
    """One image file of a folder as the scan found it; every field but ``path`` is part of the
    cache key (``path`` is ``name`` under the folder)."""

    path: str       # as found, under the folder given
    name: str       # relative to the folder given
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _refusal(path: str) -> str:
    """The line saying why ``path``, found not to be a regular file, is not read: cnnkit.files
    words it (a FIFO, a device, a link to nothing, ...), looking with ``stat`` only."""
    try:
        regular_file(path, "an image")
    except OSError as err:      # NotRegularFile, FileNotFoundError
        return str(err)
    return f"cannot read an image {path}: it changed while the folder was read"


def _image_files(folder: Path, under: str) -> tuple[list[ImageFile], list[str], list[str]]:
    """The image files under ``folder``, nested folders included, in sorted order, each named
    relative to ``under`` (a prefix of ``folder``); the lines refusing image names that are not
    regular files; the links to folders not followed."""
    found, refused, links = [], [], []
    cut = len(os.path.join(under, ""))
    for dirpath, dirnames, filenames in os.walk(folder):
        links += [os.path.join(dirpath, d) for d in dirnames
                  if os.path.islink(os.path.join(dirpath, d))]
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        here = os.path.join(dirpath, "")
        for name in sorted(filenames):
            if _visible(name) and name.lower().endswith(IMAGE_EXTENSIONS):
                path = here + name
                try:
                    st = os.stat(path)
                except OSError:
                    st = None
                if st is None or not stat.S_ISREG(st.st_mode):
                    refused.append(_refusal(path))
                    continue
                found.append(ImageFile(path, path[cut:], st.st_size, st.st_mtime_ns,
                                       st.st_ctime_ns, st.st_ino))
    return found, refused, links


def _classes(folder: Path, where: str) -> list[str]:
    """The sorted names of the class subfolders of ``folder``; DataError when there are none."""
    if not folder.is_dir():
        if folder.exists():
            raise DataError(f"{folder}: not a folder")
        raise FileNotFoundError(f"{folder}: no such folder")
    names = sorted(e.name for e in os.scandir(folder) if e.is_dir() and _visible(e.name))
    if not names:
        loose = any(n.lower().endswith(IMAGE_EXTENSIONS) for n in os.listdir(folder))
        raise DataError(f"{folder}: no class subfolders"
                        f"{' (the images lie loose in it)' if loose else ''}; {where} holds one "
                        f"subfolder of images per class")
    return names


def _outside(folder: Path, root: Path) -> str | None:
    """Where ``folder`` leads when it is a link (or under one) to a folder outside ``root``."""
    real = folder.resolve()
    return None if real == root or root in real.parents else str(real)


def scan_folder(root) -> dict:
    """The layout of a ``folder:`` source, checked.

    Returns ``{"classes": [...], "files": [ImageFile, ...], "labels": (N,) int64,
    "split": (N,) array of "train"/"test"/"all", "refused": [line, ...], "notes": [line, ...]}``:
    the files of DIR/train then DIR/test when both exist, else of DIR/train's class folders when
    it exists alone, else of DIR's ("all"). ``refused`` says why each image name that is not a
    regular file is not read; ``notes`` names class folders that lead outside ``root`` and counts
    the links to folders not followed.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist.
    DataError
        If it is not a folder, holds no class subfolders, a class folder holds no images, or
        DIR/test has a class DIR/train has not.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; folder:DIR names a folder with one subfolder "
                        f"of images per class")
    given, real = str(root), root.resolve()
    if (root / "train").is_dir() and (root / "test").is_dir():
        parts = ["train", "test"]
    elif (root / "train").is_dir() and not (root / "test").exists():
        root, parts = root / "train", [None]    # DIR/train alone: its classes, split as usual
    else:
        parts = [None]
    classes = _classes(root / "train" if parts[0] else root, "folder:DIR")
    files, labels, split, refused, links, notes = [], [], [], [], [], []
    for part in parts:
        folder = root / part if part else root
        names = _classes(folder, "folder:DIR/" + (part or ""))
        absent = [n for n in names if n not in classes]
        if absent:
            raise DataError(f"{folder / absent[0]}: the test split has class {absent[0]!r}, "
                            f"which has no folder in {root / 'train'}")
        for name in names:
            target = _outside(folder / name, real)
            if target:
                notes.append(f"the class folder {folder / name} is a link to {target}, "
                             f"outside {given}: its images are read there")
            found, bad, skipped = _image_files(folder / name, given)
            if not found and not bad:
                raise DataError(f"{folder / name}: a class folder with no images (PNG, JPEG, "
                                f"BMP, GIF, WebP or TIFF)")
            files += found
            refused += bad
            links += skipped
            labels += [classes.index(name)] * len(found)
            split += [part or "all"] * len(found)
    if links:
        notes.append(f"did not follow {len(links)} link(s) to folders inside the class folders "
                     f"(the first: {links[0]})")
    return {"classes": classes, "files": files, "labels": np.array(labels, dtype=np.int64),
            "split": np.array(split), "refused": refused, "notes": notes}


def _natural_shape(root: Path, files: list, channels, size, notes: list) -> tuple[int, int, int]:
    """(C, H, W) to decode to: the given channels and size, else 3 channels when any of up to
    64 images spread over the list is in colour (1 when they are all grey), and the size most of
    them have (the earliest of equals; a note says so when they differ), so one odd image does
    not decide the size of the whole cache. Only headers are read; an unreadable image is left
    for the decoding pass to report (or skip)."""
    from PIL import Image

    def header(path):
        try:
            with Image.open(path) as img:
                return natural_channels(img), img.size
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return None

    if channels is not None and size is not None:
        return int(channels), int(size[0]), int(size[1])
    sample = np.unique(np.linspace(0, len(files) - 1, min(64, len(files))).astype(int))
    found = [h for h in (header(files[i].path) for i in sample) if h is not None]
    if not found:       # none of the sample is readable: the first that is
        found = [next((h for h in (header(f.path) for f in files) if h is not None), None)]
        if found[0] is None:
            raise DataError(f"{root}: Pillow can read none of its {len(files)} image files")
    if channels is None:
        channels = max(c for c, _ in found)
    if size is None:
        sizes = Counter(wh for _, wh in found)
        (w, h), count = sizes.most_common(1)[0]
        size = (h, w)
        if len(sizes) > 1:
            notes.append(f"the images differ in size; {count} of {len(found)} looked at are "
                         f"{w}x{h} (width x height), so all are decoded to that (--input "
                         f"chooses another)")
    return int(channels), int(size[0]), int(size[1])


def _cache_key(root: Path, shape: tuple, files: list) -> str:
    """What the cache of ``files`` decoded to ``shape`` is named by: every field of each
    :class:`ImageFile` but its full path (``root`` stands for that)."""
    text = json.dumps([CACHE_VERSION, str(root), list(shape), [f[1:] for f in files]])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _slug(root: Path) -> str:
    """A cache file prefix naming the folder: its name and a digest of its absolute path."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", root.name)[:40] or "folder"
    return f"{name}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"


_CHUNK = 1024          # images per task of the decoding workers
_PROCESSES_FROM = 4096  # fewer images than this are decoded in this process: a worker's start
                        # (importing NumPy and Pillow, about 0.3 s) would cost more than it saves


class DecodeWorkerError(CnnkitError, RuntimeError):
    """A worker process decoding a folder ended abruptly (killed, out of memory, or a script
    that starts them again from its top level); a ``RuntimeError``, as the executor's
    ``BrokenProcessPool`` it stands for is."""


@contextmanager
def _main_not_imported_by_workers():
    """While worker processes start, present ``__main__`` as a module the "spawn" start method
    leaves alone. Otherwise each worker runs the user's script again as ``__mp_main__``
    (multiprocessing does so to unpickle what lives there), and a script without an
    ``if __name__ == "__main__":`` guard reaches this decode again in every worker, which then
    dies (a process may not start processes while it bootstraps). The workers need nothing
    from ``__main__``: they run cnnkit's own functions on paths and numbers. A script run as a
    file has ``__spec__`` None and a ``__file__`` (imported again by path); ``python -m mod``
    has ``mod``'s spec (imported again by name); a spec named ``__main__`` is skipped."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = main.__dict__.get("__spec__")
    main.__spec__ = ModuleSpec("__main__", None)
    try:
        yield
    finally:
        main.__spec__ = saved


def _ignore_interrupt():
    """Workers leave Ctrl-C, SIGTERM and SIGHUP to the main process, which cancels the work and
    cleans up (a group signal, as `timeout` sends, reaches the workers too)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _decode_range(target: str, offset: int, start: int, paths: list, shape: tuple,
                  skip_bad: bool) -> list[tuple[int, str]]:
    """Decode ``paths`` into rows ``start, start + 1, ...`` of the cache's temporary file
    ``target`` (whose images start at byte ``offset``), written with ``pwrite`` so worker
    processes share it; the (row, message) of images that failed, with ``skip_bad`` (without it
    the first failure is raised). A failed image's row keeps the zeros it was allocated with."""
    fd = os.open(target, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
    failed = []
    try:
        for i, path in enumerate(paths, start):
            try:
                pixels = decode_image(path, shape[0], shape[1:])
            except (DataError, OSError) as err:
                if not skip_bad:
                    raise DataError(f"{err}; pass --skip-bad (skip_bad=True) to skip such "
                                    f"images") from None
                failed.append((i, str(err)))
                continue
            cache.write_row(fd, offset, i, pixels)
    finally:
        os.close(fd)
    return failed


def _decode_all(files: list, shape: tuple, target: str, offset: int, skip_bad: bool,
                progress: bool, title: str) -> list[tuple[int, str]]:
    """Decode every file into its row of the cache's temporary file (see
    :func:`_decode_range`), in chunks, by worker processes when the folder is large and there
    is more than one core (Pillow holds Python's GIL for much of a small image's decoding, so
    threads would queue behind each other). Returns the (row, message) of images that failed
    (only with ``skip_bad``)."""
    chunks = [(start, [f.path for f in files[start:start + _CHUNK]])
              for start in range(0, len(files), _CHUNK)]
    workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                  else os.cpu_count() or 1, len(chunks))
    bar = Bar(len(files), f"decoding {title}", enabled=progress, unit="img",
              only_on_terminal=True)
    bad: list[tuple[int, str]] = []
    try:
        if workers < 2 or len(files) < _PROCESSES_FROM:
            for start, paths in chunks:
                bad += _decode_range(target, offset, start, paths, shape, skip_bad)
                bar.update(len(paths))
        else:
            bad = _decode_by_workers(chunks, workers, target, offset, shape, skip_bad, bar,
                                     title)
    finally:
        bar.close()
    return bad


def _decode_by_workers(chunks: list, workers: int, target: str, offset: int, shape: tuple,
                       skip_bad: bool, bar: Bar, title: str) -> list[tuple[int, str]]:
    """:func:`_decode_all`'s chunks decoded by ``workers`` processes; a worker that dies is one
    :class:`DecodeWorkerError` line saying what to do."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")   # no fork of a threaded process
    bad: list[tuple[int, str]] = []
    try:
        with ProcessPoolExecutor(workers, mp_context=context,
                                 initializer=_ignore_interrupt) as pool:
            with _main_not_imported_by_workers():       # the workers start as tasks come
                futures = [pool.submit(_decode_range, target, offset, start, paths, shape,
                                       skip_bad) for start, paths in chunks]
            try:
                for future, (_, paths) in zip(futures, chunks):
                    bad += future.result()
                    bar.update(len(paths))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    except BrokenProcessPool:
        raise DecodeWorkerError(
            f"decoding {title}: a worker process ended abruptly (out of memory, killed, or "
            f"started again by a script); if a script calls cnnkit at its top level, put that "
            f"code under `if __name__ == \"__main__\":`, as Python's multiprocessing asks, and "
            f"run it again") from None
    return bad


def _check_image_budget(shape: tuple, root: Path) -> None:
    """Refuse a decode whose one image would not fit the memory budget (Pillow holds it twice
    while resizing, and float32 per batch later)."""
    check_bytes(math.prod(shape) * (2 + 4), f"decoding one image of {root} at "
                f"{'x'.join(map(str, shape))}")


def _decoded(root: Path, files: list, shape: tuple, *, skip_bad: bool, cache_dir, progress: bool,
             notes: list) -> tuple[np.ndarray, dict, CacheEntry | None]:
    """The (N, C, H, W) uint8 memmap of every file decoded, its cache record, and the cache
    entry to keep the record in (None when the cache could not keep it): read from the cache
    when this user's own copy of the same key is there intact, else decoded into it first."""
    entry = CacheEntry(cache_folder(cache_dir), _slug(root), _cache_key(root, shape, files),
                       (len(files), *shape))
    found = cache.load(entry, notes)
    if found is not None:
        notes.append(f"read {len(files):,} decoded images from the cache {entry.images}")
        return (*found, entry)
    _check_image_budget(shape, root)
    start = time.perf_counter()

    def fill(target: str, offset: int) -> list[tuple[int, str]]:
        return _decode_all(files, shape, target, offset, skip_bad, progress, root.name)

    images, record, kept = cache.store(entry, fill, what=root, notes=notes)
    notes.append(f"decoded {len(files):,} images into the cache {entry.images} in "
                 f"{time.perf_counter() - start:.1f} s")
    return images, record, entry if kept else None


@register_source("folder", needs_argument=True, usage="folder:DIR")
def open_folder(argument: str, *, channels=None, size=None, test_size=None, seed: int = 0,
                skip_bad: bool = False, cache_dir=None, progress: bool = False) -> Dataset:
    """A folder of images (see the module docstring) as a :class:`Dataset`.

    Parameters
    ----------
    argument : the folder
    channels, size : decode to C channels and (H, W); by default 1 channel when the images are
        grey (judged on up to 64 spread over the folder), else 3, and the size most of those 64
        have
    test_size : without DIR/train and DIR/test, the fraction of each class held out as the test
        split (seeded by ``seed``); None or 0 keeps every image in train
    skip_bad : skip images that cannot be decoded, and image names that are not regular files
        (they are counted in ``notes``), instead of raising :class:`DataError` naming the first
    cache_dir : see :func:`cache_folder`
    progress : a progress bar while decoding
    """
    root = Path(argument).expanduser().resolve()
    layout = scan_folder(root)
    classes, files, labels, split = (layout["classes"], layout["files"], layout["labels"],
                                     layout["split"])
    notes: list[str] = list(layout["notes"])
    if layout["refused"]:
        first = layout["refused"][0]
        if not skip_bad:
            raise DataError(f"{first}; pass --skip-bad (skip_bad=True) to skip such files")
        notes.append(f"skipped {len(layout['refused'])} image name(s) that are not regular "
                     f"files (the first: {first})")
        if not files:
            raise DataError(f"{root}: none of its image names is a regular file ({first})")
    shape = _natural_shape(root, files, channels, size, notes)
    images, record, entry = _decoded(root, files, shape, skip_bad=skip_bad, cache_dir=cache_dir,
                                     progress=progress, notes=notes)
    good = np.ones(len(files), dtype=bool)
    if record["bad"]:
        first = record["bad"][0][1]
        if not skip_bad:
            raise DataError(f"{first}; pass --skip-bad (skip_bad=True) to skip such images")
        good[[i for i, _ in record["bad"]]] = False
        notes.append(f"skipped {len(record['bad'])} image(s) that cannot be decoded "
                     f"(the first: {first})")
    if split[0] == "all":
        rows = np.flatnonzero(good)
        if test_size:
            kept, held = stratified_split(labels[rows], float(test_size), seed)
            train_rows, test_rows = rows[kept], rows[held]
        else:
            train_rows, test_rows = rows, None
    else:
        train_rows = np.flatnonzero(good & (split == "train"))
        test_rows = np.flatnonzero(good & (split == "test"))
    train = Split(Images(images, train_rows), labels[train_rows])
    test = None if test_rows is None else Split(Images(images, test_rows), labels[test_rows])
    dataset = Dataset(f"folder:{root}", f"the folder {root}", tuple(classes), train, test,
                      default_augment="crop", notes=notes,
                      skipped=len(layout["refused"]) + len(record["bad"]))
    dataset.stats = _training_stats(train, record, entry)
    return dataset


def _training_stats(train: Split, record: dict, entry: CacheEntry | None) -> tuple:
    """The training split's per-channel (mean, std), kept in the cache record under a digest of
    its rows: read from there when present and well formed, else computed and stored (where the
    record cannot be written, they are computed again next time)."""
    key = hashlib.sha256(train.images.indices.tobytes()).hexdigest()[:16]
    channels = train.images.shape[1]
    kept = record["stats"].get(key)
    if (isinstance(kept, list) and len(kept) == 2
            and all(isinstance(v, list) and len(v) == channels for v in kept)
            and all(isinstance(x, float) and math.isfinite(x) for v in kept for x in v)
            and all(x > 0 for x in kept[1])):
        return tuple(kept[0]), tuple(kept[1])
    stats = pixel_stats(train.images)
    record["stats"][key] = [list(stats[0]), list(stats[1])]
    if entry is not None:
        try:
            cache.save_record(entry, record)
        except OSError:
            pass
    return stats
