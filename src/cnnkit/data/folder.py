"""The ``folder:DIR`` source: a folder of image files, one subfolder per class.

    DIR/cat/001.png, DIR/cat/002.jpg, DIR/dog/x.webp, ...      split by --test-size (seeded,
                                                               stratified), or
    DIR/train/cat/..., DIR/train/dog/..., DIR/test/cat/...     the two splits as given
    DIR/train/cat/..., DIR/train/dog/... (no DIR/test)         DIR/train split by --test-size

Class names are the subfolder names, sorted (class k is the k-th); a class folder's images may sit
in nested folders; hidden files and files that are not PNG, JPEG, BMP, GIF, WebP or TIFF are passed
over. Every image is decoded once by :func:`~cnnkit.data.images.decode_image` (any mode,
converted to the requested channels and resized to the requested H x W; by default 3 channels
unless the images are grey, and the first image's size) into a cache: an ``.npy`` file read back
as a memmap, so later runs start in seconds and a dataset larger than memory is read a batch at a
time. The cache is keyed by the folder, every
file's path, size and modification time, and the decoded shape; change any and it is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, atomic_write_text
from .._progress import Bar
from ..budget import check_bytes, format_size
from .errors import DataError
from .images import IMAGE_EXTENSIONS, decode_image, natural_channels
from .source import Dataset, Images, Split, pixel_stats, register_source, stratified_split

__all__ = ["open_folder", "scan_folder", "cache_folder", "CACHE_VERSION"]

CACHE_VERSION = 1   # bump when decoding changes, so old caches are not reused


def cache_folder(cache_dir=None) -> Path:
    """Where decoded folders are cached: ``cache_dir``, else ``$CNNKIT_CACHE``, else
    ``$XDG_CACHE_HOME/cnnkit``, else ``~/.cache/cnnkit``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("CNNKIT_CACHE"):
        return Path(os.environ["CNNKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnkit"


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _image_files(folder: Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of the image files under ``folder``, nested folders included, in
    sorted order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        for name in sorted(filenames):
            if _visible(name) and name.lower().endswith(IMAGE_EXTENSIONS):
                path = os.path.join(dirpath, name)
                st = os.stat(path)
                found.append((path, st.st_size, st.st_mtime_ns))
    return found


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


def scan_folder(root) -> dict:
    """The layout of a ``folder:`` source, checked.

    Returns ``{"classes": [...], "files": [(path, size, mtime_ns), ...], "labels": (N,) int64,
    "split": (N,) array of "train"/"test"/"all"}``: the files of DIR/train then DIR/test when both
    exist, else of DIR/train's class folders when it exists alone, else of DIR's ("all").

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
    if (root / "train").is_dir() and (root / "test").is_dir():
        parts = ["train", "test"]
    elif (root / "train").is_dir() and not (root / "test").exists():
        root, parts = root / "train", [None]    # DIR/train alone: its classes, split as usual
    else:
        parts = [None]
    classes = _classes(root / "train" if parts[0] else root, "folder:DIR")
    files, labels, split = [], [], []
    for part in parts:
        folder = root / part if part else root
        names = _classes(folder, "folder:DIR/" + (part or ""))
        absent = [n for n in names if n not in classes]
        if absent:
            raise DataError(f"{folder / absent[0]}: the test split has class {absent[0]!r}, "
                            f"which has no folder in {root / 'train'}")
        for name in names:
            found = _image_files(folder / name)
            if not found:
                raise DataError(f"{folder / name}: a class folder with no images (PNG, JPEG, "
                                f"BMP, GIF, WebP or TIFF)")
            files += found
            labels += [classes.index(name)] * len(found)
            split += [part or "all"] * len(found)
    return {"classes": classes, "files": files, "labels": np.array(labels, dtype=np.int64),
            "split": np.array(split)}


def _natural_shape(root: Path, files: list, channels, size) -> tuple[int, int, int]:
    """(C, H, W) to decode to: the given channels and size, else 3 channels when any of up to
    64 images spread over the list is in colour (1 when they are all grey), and the size of the
    first image Pillow can read. Only headers are read; an unreadable image is left for the
    decoding pass to report (or skip)."""
    from PIL import Image

    def header(path):
        try:
            with Image.open(path) as img:
                return natural_channels(img), img.size
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return None

    if channels is None:
        sample = np.unique(np.linspace(0, len(files) - 1, min(64, len(files))).astype(int))
        found = [h[0] for h in map(header, (files[i][0] for i in sample)) if h is not None]
        channels = max(found, default=3)
    if size is None:
        first = next((h for h in map(header, (f[0] for f in files)) if h is not None), None)
        if first is None:
            raise DataError(f"{root}: Pillow can read none of its {len(files)} image files")
        w, h = first[1]
        size = (h, w)
    return int(channels), int(size[0]), int(size[1])


def _cache_key(root: Path, shape: tuple, files: list) -> str:
    text = json.dumps([CACHE_VERSION, str(root), list(shape),
                       [(os.path.relpath(p, root), s, m) for p, s, m in files]])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _slug(root: Path) -> str:
    """A cache file prefix naming the folder: its name and a digest of its absolute path."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", root.name)[:40] or "folder"
    return f"{name}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"


_CHUNK = 1024          # images per task of the decoding workers
_PROCESSES_FROM = 4096  # fewer images than this are decoded in this process: a worker's start
                        # (importing NumPy and Pillow, about 0.3 s) would cost more than it saves


def _ignore_interrupt():
    """Workers leave Ctrl-C to the main process, which cancels the work and cleans up."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_range(array_path: str, start: int, paths: list, shape: tuple,
                  skip_bad: bool) -> list[tuple[int, str]]:
    """Decode ``paths`` into rows ``start, start + 1, ...`` of the .npy file at ``array_path``
    (opened as a writable memmap, so worker processes share it); the (row, message) of images
    that failed, with ``skip_bad`` (without it the first failure is raised)."""
    out = np.load(array_path, mmap_mode="r+", allow_pickle=False)
    failed = []
    for i, path in enumerate(paths, start):
        try:
            out[i] = decode_image(path, shape[0], shape[1:])
        except (DataError, OSError) as err:
            if not skip_bad:
                raise DataError(f"{err}; pass --skip-bad (skip_bad=True) to skip such "
                                f"images") from None
            out[i] = 0
            failed.append((i, str(err)))
    out.flush()
    return failed


def _decode_all(files: list, shape: tuple, array_path: Path, skip_bad: bool,
                progress: bool, title: str) -> list[tuple[int, str]]:
    """Decode every file into its row of the .npy file at ``array_path``, in chunks, by worker
    processes when the folder is large and there is more than one core (Pillow holds Python's
    GIL for much of a small image's decoding, so threads would queue behind each other).
    Returns the (row, message) of images that failed (only with ``skip_bad``)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunks = [(start, [f[0] for f in files[start:start + _CHUNK]])
              for start in range(0, len(files), _CHUNK)]
    workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                  else os.cpu_count() or 1, len(chunks))
    bar = Bar(len(files), f"decoding {title}", enabled=progress, unit="img",
              only_on_terminal=True)
    bad: list[tuple[int, str]] = []
    try:
        if workers < 2 or len(files) < _PROCESSES_FROM:
            for start, paths in chunks:
                bad += _decode_range(str(array_path), start, paths, shape, skip_bad)
                bar.update(len(paths))
        else:
            context = multiprocessing.get_context("spawn")   # no fork of a threaded process
            with ProcessPoolExecutor(workers, mp_context=context,
                                     initializer=_ignore_interrupt) as pool:
                futures = [pool.submit(_decode_range, str(array_path), start, paths, shape,
                                       skip_bad) for start, paths in chunks]
                try:
                    for future, (_, paths) in zip(futures, chunks):
                        bad += future.result()
                        bar.update(len(paths))
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        bar.close()
    return bad


def _remove_stale_temporaries(cache: Path, root: Path, age: float = 3600.0) -> None:
    """Delete what a decode of this folder killed an hour ago or more left behind (a running
    decode keeps its temporary file's modification time fresh as it writes)."""
    now = time.time()
    for entry in cache.glob(f".{_slug(root)}-*.tmp"):
        try:
            if now - entry.stat().st_mtime > age:
                entry.unlink()
        except OSError:
            pass


def _check_room(cache: Path, full: tuple, root: Path) -> None:
    """Refuse a decode whose one image would not fit the memory budget (Pillow holds it twice
    while resizing, and float32 per batch later) or whose cache would not fit the disk."""
    import shutil

    per_image = math.prod(full[1:])
    check_bytes(per_image * (2 + 4), f"decoding one image of {root} at "
                f"{'x'.join(map(str, full[1:]))}")
    need, free = math.prod(full), shutil.disk_usage(cache).free
    if need > free:
        raise DataError(f"{root}: the decoded images ({full[0]:,} x "
                        f"{'x'.join(map(str, full[1:]))}) need {format_size(need)} in the cache "
                        f"{cache}, which has {format_size(free)} free; set CNNKIT_CACHE to a "
                        f"folder with room, or decode smaller (--input)")


def _decoded(root: Path, files: list, shape: tuple, *, skip_bad: bool, cache_dir, progress: bool,
             notes: list) -> tuple[np.ndarray, dict, Path]:
    """The (N, C, H, W) uint8 memmap of every file decoded, its cache record and the record's
    path: read from the cache when its key matches, else decoded and written there first."""
    cache = cache_folder(cache_dir)
    key = _cache_key(root, shape, files)
    stem = cache / f"{_slug(root)}-{key}"
    record_path, array_path = stem.with_suffix(".json"), stem.with_suffix(".npy")
    full = (len(files), *shape)
    if record_path.is_file() and array_path.is_file():
        try:
            record = json.loads(record_path.read_text())
            images = np.load(array_path, mmap_mode="r", allow_pickle=False)
            if images.shape == full and images.dtype == np.uint8 and record.get("key") == key:
                notes.append(f"read {len(files):,} decoded images from the cache {array_path}")
                return images, record, record_path
        except (OSError, ValueError):
            pass  # a damaged cache is rebuilt below
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{cache}: cannot create the cache folder for decoded images ({err}); "
                        f"set CNNKIT_CACHE to a writable folder") from None
    _remove_stale_temporaries(cache, root)
    _check_room(cache, full, root)
    start = time.perf_counter()
    with atomic_path(array_path) as tmp:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=full).flush()
        bad = _decode_all(files, shape, tmp, skip_bad, progress, root.name)
    record = {"key": key, "root": str(root), "shape": list(full),
              "bad": [[i, message] for i, message in bad], "stats": {}}
    atomic_write_text(record_path, json.dumps(record))
    for old in cache.glob(f"{_slug(root)}-*"):      # earlier caches of this folder
        if old.stem != stem.name and not old.name.startswith("."):
            try:
                old.unlink()
            except OSError:
                pass
    notes.append(f"decoded {len(files):,} images into the cache {array_path} in "
                 f"{time.perf_counter() - start:.1f} s")
    return np.load(array_path, mmap_mode="r", allow_pickle=False), record, record_path


@register_source("folder", needs_argument=True, usage="folder:DIR")
def open_folder(argument: str, *, channels=None, size=None, test_size=None, seed: int = 0,
                skip_bad: bool = False, cache_dir=None, progress: bool = False) -> Dataset:
    """A folder of images (see the module docstring) as a :class:`Dataset`.

    Parameters
    ----------
    argument : the folder
    channels, size : decode to C channels and (H, W); by default 1 channel when the images are
        grey (judged on up to 64 spread over the folder), else 3, and the first image's size
    test_size : without DIR/train and DIR/test, the fraction of each class held out as the test
        split (seeded by ``seed``); None or 0 keeps every image in train
    skip_bad : skip images that cannot be decoded (they are counted in ``notes``) instead of
        raising :class:`DataError` naming the first
    cache_dir : see :func:`cache_folder`
    progress : a progress bar while decoding
    """
    root = Path(argument).expanduser().resolve()
    layout = scan_folder(root)
    classes, files, labels, split = (layout["classes"], layout["files"], layout["labels"],
                                     layout["split"])
    shape = _natural_shape(root, files, channels, size)
    notes: list[str] = []
    images, record, record_path = _decoded(root, files, shape, skip_bad=skip_bad,
                                           cache_dir=cache_dir, progress=progress, notes=notes)
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
    base = images
    train = Split(Images(base, train_rows), labels[train_rows])
    test = None if test_rows is None else Split(Images(base, test_rows), labels[test_rows])
    dataset = Dataset(f"folder:{root}", f"the folder {root}", tuple(classes), train, test,
                      default_augment="crop", notes=notes)
    # the training split's pixel statistics are kept in the cache record, keyed by its rows
    stats_key = hashlib.sha256(train_rows.tobytes()).hexdigest()[:16]
    if stats_key in record.get("stats", {}):
        mean, std = record["stats"][stats_key]
        dataset.stats = (tuple(mean), tuple(std))
    else:
        dataset.stats = pixel_stats(train.images)
        record.setdefault("stats", {})[stats_key] = [list(dataset.stats[0]),
                                                     list(dataset.stats[1])]
        try:
            atomic_write_text(record_path, json.dumps(record))
        except OSError:
            pass    # the statistics are recomputed next time
    return dataset
