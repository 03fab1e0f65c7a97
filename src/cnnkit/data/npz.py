"""The ``npz:FILE`` source: images and labels saved with ``np.savez``.

Arrays (read with ``allow_pickle=False``):

    x         (N, H, W), (N, C, H, W) or (N, H, W, C) images: uint8 0..255, other integers in
              0..255, or floats (finite; [0, 1] if ``predict`` is to read image files for the net)
    y         (N,) or (N, 1) integer class indices 0..K-1
    classes   optional (K,) strings, the class names (default "0".."K-1")
    x_test, y_test   optional: the test split (else ``--test-size`` holds one out of x)

A 4-D ``x`` is channels-first (N, C, H, W) when its second axis has at most 4 entries, else
channels-last (N, H, W, C) when its last does, as Keras and Pillow store images.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .._npz import NpzReadError, is_npy_file, npz_headers, read_npz
from ..files import regular_file
from .errors import DataError
from .source import Dataset, check_labels, from_arrays, register_source

__all__ = ["open_npz", "load_npz", "arrays_dataset"]

_MOST_UNNAMED = 100_000   # classes numbered by labels alone: a larger label is taken as a mistake


def _images(x: np.ndarray, where: str) -> np.ndarray:
    """x as (N, C, H, W), uint8 or float32."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] > 4 and x.shape[3] <= 4:
        x = x.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    elif x.ndim != 4:
        raise DataError(f"{where}: images must be (N, H, W), (N, C, H, W) or (N, H, W, C), "
                        f"found shape {x.shape}")
    if x.shape[0] == 0 or 0 in x.shape[1:]:
        raise DataError(f"{where}: no images (shape {x.shape})")
    kind = x.dtype.kind
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if kind in "iu":
        low, high = x.min(), x.max()
        if low < 0 or high > 255:
            raise DataError(f"{where}: integer images must be grey levels 0..255 (store uint8, or "
                            f"floats in [0, 1]); found {x.dtype} values {low}..{high}")
        return x.astype(np.uint8)
    if kind == "f":
        if not np.all(np.isfinite(x)):
            raise DataError(f"{where}: the images hold NaN or infinite values")
        return x.astype(np.float32)
    raise DataError(f"{where}: images must be uint8 or float, found {x.dtype}")


def load_npz(path) -> dict:
    """The arrays of an ``npz:`` file, checked: {"x", "y", "classes", "x_test", "y_test"} (the
    last three None when absent)."""
    path = regular_file(Path(path).expanduser(), "npz data file")   # a FIFO would hang
    if not zipfile.is_zipfile(path):
        if is_npy_file(path):                      # np.save's lone array
            raise DataError(f"{path}: a single array, not an .npz archive of arrays 'x' and "
                            f"'y' (save them with np.savez(path, x=..., y=...))")
        raise DataError(f"{path}: not a readable .npz data file (not a zip archive)")
    wanted = ("x", "y", "classes", "x_test", "y_test")
    try:   # headers first: only these members are read, and only within the memory budget
        found = read_npz(path, wanted, where=str(path))
    except NpzReadError as err:
        raise DataError(f"{path}: not a readable .npz data file: {err}") from None
    missing = [k for k in ("x", "y") if k not in found]
    if missing:
        names = npz_headers(path)
        raise DataError(f"{path}: no array {' or '.join(map(repr, missing))}; an npz "
                        f"data file holds images 'x' and labels 'y' (found "
                        f"{', '.join(sorted(names)) or 'no arrays'})")
    arrays = {k: found.get(k) for k in wanted}
    if (arrays["x_test"] is None) != (arrays["y_test"] is None):
        raise DataError(f"{path}: has one of x_test and y_test but not the other")
    return arrays


@register_source("npz", needs_argument=True, usage="npz:FILE")
def open_npz(argument: str, *, test_size=None, seed: int = 0, **options) -> Dataset:
    """The arrays of ``argument`` (see the module docstring) as a :class:`Dataset`."""
    path = Path(argument).expanduser().resolve()
    arrays = load_npz(path)
    return arrays_dataset(arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"],
                          arrays["classes"], source=f"npz:{path}", where=str(path),
                          test_size=test_size, seed=seed)


def arrays_dataset(x, y, x_test=None, y_test=None, classes=None, *, source: str = "arrays",
                   where: str = "data", test_size=None, seed: int = 0) -> Dataset:
    """A :class:`Dataset` of images and labels given as arrays, checked as an ``npz:`` file's
    are (see the module docstring): images (N, H, W), (N, C, H, W) or (N, H, W, C), uint8,
    integers 0..255 or finite floats; labels (N,) or (N, 1) integers 0..K-1; ``classes`` the K
    names (default "0".."K-1"); the test split given, or held out of x by ``test_size``.

    ``source`` is what the Dataset records ("arrays": in memory, nothing to reopen); ``where``
    starts every error message ("data: y: label 12 is out of range for 10 classes (0..9)").

    Raises
    ------
    DataError
        For images or labels of the wrong shape or type, NaN pixels, labels out of range, x
        and y of different lengths, ``classes`` that do not name every label, or test images
        of another shape than the training images.
    """
    x = _images(_array(x, f"{where}: x"), f"{where}: x")
    y = check_labels(_array(y, f"{where}: y"), f"{where}: y")
    if len(x) != len(y):
        raise DataError(f"{where}: x holds {len(x)} images but y holds {len(y)} labels")
    if classes is not None:
        classes = np.asarray(classes) if not isinstance(classes, np.ndarray) else classes
        if classes.ndim != 1 or classes.dtype.kind not in "UiuS" or len(classes) == 0:
            raise DataError(f"{where}: classes must be a vector of names, found {classes.dtype} "
                            f"of shape {classes.shape}")
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in classes.tolist()]
        if len(set(classes)) != len(classes):
            raise DataError(f"{where}: classes names a class twice ({classes!r:.80})")
        check_labels(y, f"{where}: y", len(classes))     # every label names a class
    if classes is None and int(y.max()) >= _MOST_UNNAMED:
        raise DataError(f"{where}: y: label {int(y.max()):,} would make {int(y.max()) + 1:,} "
                        f"classes; labels are class indices 0..K-1 (an array 'classes' names "
                        f"them; without one, K is at most {_MOST_UNNAMED:,})")
    num_classes = len(classes) if classes is not None else int(y.max()) + 1
    classes = classes or [str(k) for k in range(num_classes)]
    if (x_test is None) != (y_test is None):
        raise DataError(f"{where}: has one of x_test and y_test but not the other")
    if x_test is not None:
        x_test = _images(_array(x_test, f"{where}: x_test"), f"{where}: x_test")
        y_test = check_labels(_array(y_test, f"{where}: y_test"), f"{where}: y_test",
                              num_classes)
        if len(x_test) != len(y_test):
            raise DataError(f"{where}: x_test holds {len(x_test)} images but y_test holds "
                            f"{len(y_test)} labels")
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(f"{where}: x_test images are "
                            f"{'x'.join(map(str, x_test.shape[1:]))} (CxHxW), x's are "
                            f"{'x'.join(map(str, x.shape[1:]))}")
        absent = sorted(set(np.unique(y_test).tolist()) - set(np.unique(y).tolist()))
        if absent:
            raise DataError(f"{where}: the test split has class {classes[absent[0]]!r}, which "
                            f"has no training images")
    return from_arrays(source, where, classes, x, y, x_test, y_test,
                       test_size=test_size, seed=seed)


def _array(value, where: str) -> np.ndarray:
    """``value`` as a NumPy array (a list of images, a memmap), or DataError."""
    if isinstance(value, np.ndarray):
        return value
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise DataError(f"{where}: not an array ({err})") from None
    if array.dtype == object:
        raise DataError(f"{where}: not an array of numbers (a ragged list, or objects)")
    return array
