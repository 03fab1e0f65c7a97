"""Data sources: what a user names with ``--data`` (``mnist``, ``cifar10:DIR``, ``folder:DIR``,
``npz:FILE``), answered as a :class:`Dataset`.

A source is a function registered under its name with :func:`register_source`; it receives the
text after the colon and the options of :func:`open_source`, and returns a :class:`Dataset`.
Adding a source is one new module in ``cnnkit/data/`` holding that function, and one import line
in ``cnnkit/data/__init__.py``; the command line and the Trainer need no change.

A Dataset holds its images as stored (uint8 or float, (N, C, H, W), possibly a read-only memmap
larger than memory) and lazy :class:`Images` views of them, so a subset is an index array, not a
copy; :class:`~cnnkit.data.Preprocessing` turns each batch into what the net takes.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..checks import check_rng
from .errors import DataError

__all__ = ["Images", "Split", "Dataset", "SOURCES", "DEFAULT_SOURCE", "register_source",
           "open_source", "canonical_source", "source_names", "check_labels",
           "stratified_split", "split_indices",
           "pixel_stats", "from_arrays"]


class Images:
    """A lazy view ``base[indices]`` of an (N, C, H, W) array (a memmap, say) that copies only what
    is indexed: ``view[i]``, ``view[a:b]`` and ``view[index_array]`` read those rows of ``base``.

    Rows are read in ascending order of their place in ``base`` (sequential reads from a memmap)
    and returned in the order asked for.
    """

    def __init__(self, base, indices=None):
        if isinstance(base, Images):
            indices = base.indices if indices is None else base.indices[np.asarray(indices)]
            base = base.base
        self.base = base
        self.indices = (np.arange(len(base)) if indices is None
                        else np.asarray(indices, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> tuple:
        """``(len(self), *image shape)``, as an array of the selected images would have."""
        return (len(self.indices), *self.base.shape[1:])

    @property
    def dtype(self):
        """The stored images' dtype (before preprocessing)."""
        return self.base.dtype

    @property
    def ndim(self) -> int:
        """The number of dimensions of ``shape``."""
        return self.base.ndim

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):      # one image, (C, H, W), as NumPy gives
            return np.asarray(self.base[self.indices[key]])
        rows = np.atleast_1d(self.indices[key])
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), *self.base.shape[1:]), dtype=self.base.dtype)
        out[order] = self.base[rows[order]]
        return out

    def subset(self, indices) -> "Images":
        """The view of ``self[indices]``, still lazy."""
        return Images(self.base, self.indices[np.asarray(indices, dtype=np.int64)])

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self):
        return f"Images({len(self)} of {self.base.shape}, {self.base.dtype})"


@dataclass
class Split:
    """One split of a dataset: ``images`` (N, C, H, W) as stored, lazily indexed, and ``labels``
    (N,) int64."""

    images: Images
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> "Split":
        """The examples at ``indices`` (images and labels), as a new Split."""
        indices = np.asarray(indices, dtype=np.int64)
        return Split(self.images.subset(indices), self.labels[indices])

    def head(self, n: int | None) -> "Split":
        """The first ``n`` examples (all when ``n`` is None)."""
        return self if n is None else self.subset(np.arange(min(n, len(self))))


@dataclass
class Dataset:
    """What a source answers.

    Attributes
    ----------
    source : the text that reopens it, e.g. "mnist", "folder:/data/pets" (paths made absolute)
    title : how messages name it, e.g. "MNIST", "the folder /data/pets"
    classes : the class names; label k is ``classes[k]``
    train : the training split
    test : the test split, or None when the source has none (and no split was asked for)
    default_augment : what ``--augment`` means by default for this data (never flips for digits)
    stats : per-channel (mean, std) of the training split in ``images / 255`` units, when the
        source knows them already (the shipped MNIST's published figures, a folder's cache)
    notes : lines worth telling the user (images skipped, a cache written)
    skipped : images the source passed over with ``skip_bad`` (names that are not regular
        files, files that cannot be decoded), over all its splits
    """

    source: str
    title: str
    classes: tuple
    train: Split
    test: Split | None = None
    default_augment: str = "crop"
    stats: tuple | None = None
    notes: list = field(default_factory=list)
    skipped: int = 0

    @property
    def image_shape(self) -> tuple:
        """(C, H, W) of the stored images."""
        return tuple(int(s) for s in self.train.images.shape[1:])

    @property
    def num_classes(self) -> int:
        """The number of classes (``len(classes)``)."""
        return len(self.classes)

    def channel_stats(self) -> tuple[tuple, tuple]:
        """Per-channel (mean, std) of the training split, in ``images / 255`` units for uint8
        images, computed once (in chunks, so a memmap is never read whole) and kept."""
        if self.stats is None:
            self.stats = pixel_stats(self.train.images)
        return self.stats

    def brightness(self) -> float:
        """The mean grey level (0..1) of the training images, averaged over channels."""
        return float(np.mean(self.channel_stats()[0]))

    def check_trainable(self) -> None:
        """Raise :class:`DataError` unless the training images hold 2 classes at least and the
        test split holds no class the training split lacks. (A class of neither split, say one
        of CIFAR-10's ten missing from a small sample, only leaves its score untrained.)"""
        present = np.unique(self.train.labels)
        if self.num_classes < 2 or len(present) < 2:
            found = [self.classes[k] for k in present]
            raise DataError(f"{self.title}: the training images hold {len(present)} class"
                            f"{'es' if len(present) != 1 else ''} ({', '.join(found) or 'none'}); "
                            f"a classifier needs 2 at least")
        if self.test is not None:
            absent = np.setdiff1d(np.unique(self.test.labels), present)
            if absent.size:
                raise DataError(f"{self.title}: the test split has class "
                                f"{self.classes[int(absent[0])]!r}, which has no training images")

    def split(self, name: str) -> Split:
        """"train", "test" or "all" (train and test together; just train when there is no test)."""
        if name == "train":
            return self.train
        if name == "test":
            if self.test is None:
                raise DataError(f"{self.title} has no test split")
            return self.test
        if name == "all":
            if self.test is None:
                return self.train
            if self.train.images.base is self.test.images.base:
                indices = np.concatenate([self.train.images.indices, self.test.images.indices])
                return Split(Images(self.train.images.base, indices),
                             np.concatenate([self.train.labels, self.test.labels]))
            return Split(Images(np.concatenate([self.train.images[:], self.test.images[:]])),
                         np.concatenate([self.train.labels, self.test.labels]))
        raise ValueError(f"split must be train, test or all, got {name!r}")


def pixel_stats(images, chunk_bytes: int = 32 * 2 ** 20) -> tuple[tuple, tuple]:
    """Per-channel mean and (population) standard deviation of (N, C, H, W) images, read about
    ``chunk_bytes`` of images at a time (one image at least). uint8 images are counted in
    ``images / 255`` units, with exact integer sums (squares in uint16, which 255**2 fits); float
    images in float64."""
    n, c = len(images), images.shape[1]
    if n == 0:
        raise DataError("no images to compute the pixel statistics of")
    integer = images.dtype == np.uint8
    acc = np.int64 if integer else np.float64
    per_image = max(1, math.prod(images.shape[1:]) * images.dtype.itemsize)
    chunk = max(1, chunk_bytes // per_image)
    total, squares = np.zeros(c, acc), np.zeros(c, acc)
    for start in range(0, n, chunk):
        part = np.asarray(images[start:start + chunk])           # (B, C, H, W)
        total += part.sum(axis=(0, 2, 3), dtype=acc)
        square = np.square(part, dtype=np.uint16) if integer else np.square(part, dtype=acc)
        squares += square.sum(axis=(0, 2, 3), dtype=acc)
    count = n * images.shape[2] * images.shape[3]
    scale = 255.0 if integer else 1.0
    mean = total / count / scale
    var = np.maximum(squares / count / scale ** 2 - mean ** 2, 0.0)
    std = np.sqrt(var)
    std = np.where(std > 0, std, 1.0)   # a constant channel: divide by 1, not by 0
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def check_labels(labels, where: str, num_classes: int | None = None) -> np.ndarray:
    """Labels as a (N,) int64 array, each in 0..num_classes-1, or :class:`DataError` naming
    ``where``. An (N, 1) column is accepted (Keras stores labels so); floats are not."""
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be a vector (N,) of class indices, found shape "
                        f"{y.shape}")
    if y.dtype.kind not in "iu":
        raise DataError(f"{where}: labels must be integers (class indices), found {y.dtype}")
    if y.size and y.min() < 0:
        raise DataError(f"{where}: label {y.min()} is negative; labels are class indices 0..K-1")
    if num_classes is not None and y.size and y.max() >= num_classes:
        raise DataError(f"{where}: label {y.max()} is out of range for {num_classes} classes "
                        f"(0..{num_classes - 1})")
    return y.astype(np.int64)


def split_indices(n: int, val_size, rng, what: str = "split_indices"):
    """(train, val) indices of a random hold-out of ``n`` examples:

        perm = rng.permutation(n);  val = perm[:V],  train = perm[V:]

    ``val_size`` is a count V in [0, n - 1] or a fraction in [0, 1) (V = round(fraction * n),
    leaving one example to train at least). Errors start with ``what``.

    Raises
    ------
    TypeError
        If ``val_size`` is neither an int nor a float (bools included) or ``rng`` is not a
        Generator.
    ValueError
        If there are no examples or ``val_size`` is out of range.
    """
    check_rng(rng, what)
    if n == 0:
        raise ValueError(f"{what}: no examples to split")
    if isinstance(val_size, (bool, np.bool_)) or not isinstance(val_size, numbers.Real):
        raise TypeError(f"{what}: val_size must be an int count or a float fraction, "
                        f"got {val_size!r}")
    if isinstance(val_size, numbers.Integral):
        v = int(val_size)
        if not 0 <= v < n:
            raise ValueError(f"{what}: val_size must be in [0, {n - 1}] for {n} examples (the "
                             f"training part must keep one), got {v}")
    else:
        if not 0.0 <= val_size < 1.0:
            raise ValueError(f"{what}: a fractional val_size must be in [0, 1), got {val_size}")
        v = min(int(round(val_size * n)), n - 1)
    perm = rng.permutation(n)
    return perm[v:], perm[:v]


def stratified_split(labels, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices holding out ``round(test_size * n_k)`` of each class k, drawn with
    ``np.random.default_rng(seed)``; both sorted. Every class keeps one training example."""
    if not 0.0 <= test_size < 1.0:
        raise ValueError(f"test_size must be a fraction in [0, 1), got {test_size}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    train, test = [], []
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        rng.shuffle(members)
        t = min(int(round(test_size * len(members))), len(members) - 1)
        test.append(members[:t])
        train.append(members[t:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


# ---------------------------------------------------------------------------- the registry

#: The data sources by name (``--data NAME``), each registered with ``register_source``.
SOURCES: dict[str, Callable] = {}
#: The source ``cnnkit train`` trains on when no ``--data`` is given.
DEFAULT_SOURCE = "mnist"    # what `cnnkit train` trains on when no --data is given


def register_source(name: str, *, needs_argument: bool, usage: str):
    """Register ``open(argument, **options) -> Dataset`` as the source ``name``; ``usage`` (e.g.
    "folder:DIR") is how help and messages show it. A source that ``needs_argument`` takes a
    path (a file or a folder) after the colon."""
    def decorate(opener):
        SOURCES[name] = opener
        opener.needs_argument, opener.usage = needs_argument, usage
        return opener
    return decorate


def source_names() -> list[str]:
    """How each source is written, e.g. ["mnist", "cifar10:DIR", "folder:DIR", "npz:FILE"]."""
    return [opener.usage for opener in SOURCES.values()]


def open_source(text: str, *, channels: int | None = None, size: tuple | None = None,
                test_size: float | None = None, seed: int = 0, skip_bad: bool = False,
                cache_dir=None, progress: bool = False) -> Dataset:
    """Open the source a user named: ``mnist``, ``cifar10:DIR``, ``folder:DIR``, ``npz:FILE``
    (a bare path ending in ``.npz`` means ``npz:`` that path).

    Parameters
    ----------
    channels, size : what a folder's images are decoded to, (C) and (H, W); by default 1 channel
        for grey images, else 3, and the first image's size. Sources of fixed arrays ignore them.
    test_size : fraction of each class held out as the test split (seeded by ``seed``) when the
        source has no test split of its own; None keeps all images in ``train``.
    skip_bad : skip (and count) images that cannot be decoded instead of failing.
    cache_dir : where a folder's decoded images are cached (default ``$CNNKIT_CACHE``, else
        ``~/.cache/cnnkit``).
    progress : show a progress bar while decoding.

    Raises
    ------
    ValueError
        For an unknown source name (the message lists them) or a missing argument.
    DataError, FileNotFoundError
        From the source, naming the file or folder.
    """
    name, argument = _parse(text)
    return SOURCES[name](argument, channels=channels, size=size, test_size=test_size, seed=seed,
                         skip_bad=skip_bad, cache_dir=cache_dir, progress=progress)


def _parse(text) -> tuple[str, str]:
    """(registered name, argument) of a source's text, checked."""
    text = str(text).strip()
    name, sep, argument = text.partition(":")
    if name.lower() not in SOURCES and text.lower().endswith(".npz"):   # C:\\x.npz, a:b/x.npz
        name, argument = "npz", text
    name = name.lower()
    if name not in SOURCES:
        raise DataError(f"unknown data source {text!r}; choose one of: "
                         f"{', '.join(source_names())}")
    opener = SOURCES[name]
    if opener.needs_argument and not argument:
        raise DataError(f"data source {name!r} needs a path: {opener.usage}")
    if not opener.needs_argument and argument:
        raise DataError(f"data source {name!r} takes no path, got {text!r}")
    return name, argument


def canonical_source(text) -> str:
    """The text of a source as a Dataset records it: the name in lower case and the path made
    absolute ("folder:photos" -> "folder:/home/me/photos"), so two spellings compare equal."""
    name, argument = _parse(text)
    return f"{name}:{Path(argument).expanduser().resolve()}" if argument else name


def from_arrays(source: str, title: str, classes, x, y, x_test=None, y_test=None, *,
                test_size=None, seed: int = 0, default_augment: str = "crop",
                stats=None) -> Dataset:
    """A Dataset of in-memory (or memmapped) arrays x (N, C, H, W) and labels y (N,), with the
    test split given, or held out of x by :func:`stratified_split` when ``test_size`` is a
    positive fraction, or absent."""
    train = Split(Images(x), np.asarray(y, dtype=np.int64))
    if x_test is not None:
        return Dataset(source, title, tuple(classes), train,
                       Split(Images(x_test), np.asarray(y_test, dtype=np.int64)),
                       default_augment, stats)
    test = None
    if test_size:
        kept, held = stratified_split(train.labels, float(test_size), seed)
        train, test = train.subset(kept), train.subset(held)
    return Dataset(source, title, tuple(classes), train, test, default_augment, stats)
