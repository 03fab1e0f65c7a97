"""Classify images with a trained checkpoint: what ``cnnkit predict`` does, from Python.

    >>> result = predict_images("runs/lenet-bn-20261130-101500/model.npz",
    ...                         ["seven.png", "two.jpg"])               # doctest: +SKIP
    >>> result.labels, result.probabilities.shape                       # doctest: +SKIP
    (['7', '2'], (2, 10))

Each image goes through the checkpoint's own preprocessing: decoded to the channels and size of
the training images (:func:`cnnkit.data.decode_image`), then fitted, centred or resized, and
normalised exactly as in training (:class:`cnnkit.data.Preprocessing`).

:func:`predict_files` is what ``cnnkit predict`` does with files and folders: it lists them
(:func:`find_image_files`) and classifies them a batch at a time, as a stream of
:class:`FilePrediction`, so a folder of any size is read with a batch's memory.

    >>> stream = predict_files("runs/pets/model.npz", ["new-photos/"], skip_bad=True)  # doctest: +SKIP
    >>> for answer in stream:                                                    # doctest: +SKIP
    ...     print(answer.path, answer.skipped or answer.top(1))
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .checkpoint import UNKNOWN_NORMALISATION, load_checkpoint
from .data import (
    DataError,
    Preprocessing,
    canonical_source,
    decode_image,
    image_to_array,
    open_source,
)
from .data.images import IMAGE_EXTENSIONS
from .files import NotRegularFile, regular_file, shown
from .finite import check_net, nonfinite
from .summary import images_within
from .train import predict

__all__ = ["Predictions", "classify", "load_for_inference", "predict_images", "read_images",
           "recorded_source", "reopen_data", "ImageFiles", "find_image_files", "FilePrediction",
           "FilePredictions", "predict_files", "write_predictions", "PREDICTION_FORMATS"]


@dataclass
class Predictions:
    """What :func:`predict_images` returns.

    Attributes
    ----------
    classes : the class names, in the order of the columns of ``probabilities``
    probabilities : (N, K) softmax probabilities, one row per image
    """

    classes: tuple
    probabilities: np.ndarray

    @property
    def indices(self) -> np.ndarray:
        """(N,) the most probable class of each image."""
        return self.probabilities.argmax(axis=1)

    @property
    def labels(self) -> list[str]:
        """The most probable class name of each image."""
        return [self.classes[k] for k in self.indices]

    def top(self, k: int = 3) -> list[list[tuple[str, float]]]:
        """Per image, the ``k`` most probable (class name, probability) pairs, best first."""
        k = min(int(k), self.probabilities.shape[1])
        order = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]
        return [[(self.classes[c], float(p[c])) for c in row]
                for row, p in zip(order, self.probabilities)]


def load_for_inference(checkpoint, *, allow_nonfinite: bool = False):
    """(model in eval mode, Preprocessing, class names, metadata) of a checkpoint path or a
    :class:`cnnkit.io.Checkpoint`.

    A net whose weights or statistics hold NaN or infinite values gives meaningless scores, so
    it is refused (:class:`cnnkit.finite.NonFiniteError`, naming the first such array) unless
    ``allow_nonfinite``."""
    ckpt = load_checkpoint(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) \
        else checkpoint
    checkpoint = ckpt.path or "the checkpoint"     # what the messages name: not the object
    model = ckpt.build_model().eval()
    check_net(model, checkpoint, allow=allow_nonfinite)
    meta = ckpt.extra.get("metadata", {})
    if not isinstance(meta, dict) or "input_shape" not in meta:
        raise DataError(f"{checkpoint} does not record the input its net was trained on; it "
                        f"cannot take images")
    if meta.get(UNKNOWN_NORMALISATION):
        raise DataError(f"{checkpoint} holds imported weights without the normalisation their "
                        f"net was trained with; import them again with --mean and --std (0 "
                        f"and 1 for pixels in [0, 1] as they are)")
    preprocessing = Preprocessing.from_metadata(meta, str(checkpoint))
    classes = meta.get("classes")
    if classes is not None:
        try:
            scores = tuple(model.output_shape(tuple(preprocessing.input_shape)))
        except ValueError as err:
            raise DataError(f"{checkpoint}: its net does not take its recorded input "
                            f"{preprocessing.input_shape}: {err}") from None
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) \
                or (len(scores) == 1 and len(classes) != scores[0]):
            raise DataError(f"{checkpoint}: the recorded class names ({classes!r:.60}) do not "
                            f"match the net's {scores[0] if len(scores) == 1 else scores} scores")
    return model, preprocessing, (tuple(classes) if classes else None), meta


def recorded_source(meta: dict) -> str | None:
    """The data source a checkpoint's metadata records it was trained on, e.g. "mnist" (None
    when it records none)."""
    return meta.get("source") or meta.get("dataset")


def reopen_data(meta: dict, preprocessing: Preprocessing, source: str | None = None, *,
                skip_bad: bool = False, progress: bool = False):
    """The data a checkpoint was trained on, opened again as its run opened it: a
    :class:`cnnkit.data.Dataset`.

    ``source`` (default: the recorded one, :func:`recorded_source`) is decoded to the
    checkpoint's channels and image size. When it is the recorded source, the test split the
    run held out (its settings' ``test_size`` and ``seed``) is held out again, so that
    ``dataset.test`` holds exactly the images the run never trained on; another source is
    opened without holding anything out.

    Raises
    ------
    DataError
        When no ``source`` is given and the checkpoint records none; and as ``open_source``.
    """
    settings = meta.get("settings") or {}
    recorded = recorded_source(meta)
    source = source or recorded
    if not source:
        raise DataError("the checkpoint does not record the data it was trained on")
    same = recorded is not None and canonical_source(source) == canonical_source(recorded)
    channels, size = preprocessing.image_shape[0], tuple(preprocessing.image_shape[1:])
    return open_source(source, channels=channels, size=size,
                       test_size=settings.get("test_size") if same else None,
                       seed=settings.get("seed", 0), skip_bad=skip_bad, progress=progress)


def _as_pil(item):
    """A NumPy image (H, W), (H, W, C) or (C, H, W) with C 1, 3 or 4, uint8 or floats in [0, 1],
    as a Pillow image."""
    arr = np.asarray(item)
    if arr.ndim == 3 and arr.shape[2] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
        arr = arr.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise DataError(f"an image array must be (H, W), (H, W, C) or (C, H, W) with C 1, 3 or "
                        f"4, got shape {arr.shape}")
    return Image.fromarray(_as_uint8(arr))


_PIXELS = "an image array holds uint8, integers 0..255 or finite floats in [0, 1]"


def _pixel_problem(arr: np.ndarray) -> str | None:
    """What makes ``arr`` no image: its dtype (objects, complex numbers, booleans, text), no
    values at all, or NaN or infinite values (:func:`cnnkit.finite.nonfinite`); None when it
    holds real, finite numbers."""
    if arr.dtype.kind not in "fiu":
        kinds = {"O": "Python objects", "c": "complex numbers", "b": "booleans"}
        return f"holds {kinds.get(arr.dtype.kind, 'values')} (dtype {arr.dtype})"
    if arr.size == 0:
        return f"is empty (shape {arr.shape})"
    what = nonfinite(arr)
    return None if what is None else f"holds {what}"


def _check_pixels(arr: np.ndarray, what: str) -> None:
    """Refuse an image array that :func:`_pixel_problem` finds a problem in, naming it."""
    problem = _pixel_problem(arr)
    if problem is not None:
        raise DataError(f"{what} {problem}; {_PIXELS}")


def _check_batch(x: np.ndarray) -> None:
    """Refuse a stored-form batch without images, or of what no image holds (objects, complex
    numbers, NaN, infinities), naming the first image at fault."""
    if len(x) == 0:
        raise DataError(f"the batch holds no images (shape {x.shape})")
    problem = _pixel_problem(x)
    if problem is None:
        return
    if x.dtype.kind == "f":                  # NaN or infinities: say where the first one is
        first = int(np.argmax(~np.isfinite(x.reshape(len(x), -1)).all(axis=1)))
        problem += f", the first in image {first}"
    raise DataError(f"the batch {problem}; a batch holds the training images' finite numbers")


def _as_uint8(arr: np.ndarray) -> np.ndarray:
    """uint8 as it is; floats in [0, 1] and integers 0..255 rounded and clipped to uint8."""
    if arr.dtype == np.uint8 and arr.size:
        return arr
    _check_pixels(arr, "an image array")
    scale = 255.0 if arr.dtype.kind == "f" else 1.0
    return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)


def _stored_batch(images, preprocessing: Preprocessing):
    """``images`` as a batch in the stored form of the training images, when it is one: an
    (N, C, H, W) array of the training images' volume, or (N, H, W) for grey ones (MNIST's
    arrays). Such a batch goes to ``preprocessing`` as training batches did: not decoded, not
    inverted, floats not rescaled. None for anything else."""
    if not isinstance(images, np.ndarray):
        return None
    shape = tuple(preprocessing.image_shape)
    if images.ndim == 4 and images.shape[1:] == shape:
        return images
    if images.ndim == 3 and shape[0] == 1 and images.shape[1:] == shape[1:]:
        return images[:, None]
    return None


def read_images(items, preprocessing: Preprocessing, invert: str = "auto") -> np.ndarray:
    """Image files, Pillow images or NumPy arrays as (N, C, h, w) uint8 at the training images'
    channels and size, ready for ``preprocessing``.

    An array of exactly the training images' volume (C, h, w) is taken as it is; any other is an
    image of any size, (H, W), (H, W, C) or (C, H, W), converted like a file. ``invert``: "yes",
    "no", or "auto": a grey image whose mean brightness is on the other side of one half from
    the training images' is inverted (dark digits on white paper for a net trained on MNIST's
    white digits on black).
    """
    if invert not in ("auto", "yes", "no"):
        raise ValueError(f"invert must be auto, yes or no, got {invert!r}")
    out = [_read_one(item, preprocessing, invert) for item in items]
    if not out:
        raise ValueError("no images given")
    return np.stack(out)


def _read_one(item, preprocessing: Preprocessing, invert: str) -> np.ndarray:
    """One item of :func:`read_images` as (C, h, w) uint8."""
    channels, size = preprocessing.image_shape[0], tuple(preprocessing.image_shape[1:])
    if isinstance(item, (str, os.PathLike)):
        arr = decode_image(Path(item), channels, size)
    elif isinstance(item, np.ndarray) and item.shape == tuple(preprocessing.image_shape):
        return _as_uint8(item)         # already a training image's volume
    else:
        arr = image_to_array(item if isinstance(item, Image.Image) else _as_pil(item),
                             channels, size)
    light = arr.mean() / 255.0 > 0.5
    if invert == "yes" or (invert == "auto" and channels == 1
                           and light != (preprocessing.brightness > 0.5)):
        arr = 255 - arr
    return arr


def predict_images(checkpoint, images, *, invert: str = "auto", batch_size: int | None = None,
                   allow_nonfinite: bool = False) -> Predictions:
    """Class probabilities of images under a trained checkpoint.

    Parameters
    ----------
    checkpoint : a path to a checkpoint written by ``cnnkit train`` or the Trainer (with the
        metadata of its data), or a loaded :class:`cnnkit.io.Checkpoint`
    images : a path, a Pillow image or a NumPy array (H, W), (H, W, C) or (C, H, W), or a list
        of them, any size and mode (see :func:`read_images`); or a batch in the training
        images' stored form, (N, C, H, W) or for grey images (N, H, W), taken as training
        batches were (no decoding, no inverting)
    invert : "auto", "yes" or "no" (see :func:`read_images`)
    batch_size : images per forward pass (default: as many as keep its activations within
        ``cnnkit.summary.EVAL_BYTES``, 256 MiB, at most 256)
    allow_nonfinite : classify with a net whose weights or statistics hold NaN or infinite
        values (its scores are NaN; by default such a checkpoint is refused)

    Returns
    -------
    Predictions : ``.labels`` the top class names, ``.probabilities`` (N, K), ``.top(k)``

    Raises
    ------
    FileNotFoundError, DataError, CheckpointError
        For a missing or unreadable image or checkpoint (the message names it); DataError too
        for no images, and for an image array that is empty or holds objects, complex numbers,
        NaN or infinite values (the message names the image: "images[3]").
    NonFiniteError
        For a net holding NaN or infinite values, without ``allow_nonfinite``.
    """
    model, preprocessing, classes, _ = load_for_inference(checkpoint,
                                                          allow_nonfinite=allow_nonfinite)
    return classify(model, preprocessing, classes, images, invert=invert,
                    batch_size=batch_size)


def _checked_image(item, what: str):
    """One image given to :func:`classify`, refused in one line naming it (``what``: "the
    image", "images[3]") when it holds no pixels (0x0), or is an array of what no image holds
    (objects, complex numbers, NaN, infinities). A path is left to the decoder, and an array
    goes on as an ndarray."""
    if isinstance(item, (str, os.PathLike)):
        return item
    if isinstance(item, Image.Image):
        if not (item.width and item.height):
            raise DataError(f"{what} is empty ({item.width}x{item.height} pixels)")
        return item
    try:
        arr = np.asarray(item)
    except (ValueError, TypeError):      # ragged nested lists, or what NumPy cannot take
        raise DataError(f"{what} is not an array of numbers (a {type(item).__name__} NumPy "
                        f"cannot read as one); {_PIXELS}") from None
    _check_pixels(arr, what)
    return arr


def classify(model, preprocessing: Preprocessing, classes, images, *, invert: str = "auto",
             batch_size: int | None = None) -> Predictions:
    """Class probabilities of ``images`` under ``model`` in eval mode, each image taken through
    ``preprocessing`` (what :func:`predict_images` does once it has loaded a checkpoint, and
    what ``Run.predict`` does with a run's net in memory). ``classes`` names the columns (None:
    "0".."K-1"); ``images``, ``invert`` and ``batch_size`` as :func:`predict_images` takes them.
    """
    x = _stored_batch(images, preprocessing)
    if x is not None:
        _check_batch(x)
    else:
        if isinstance(images, np.ndarray) and images.ndim == 4:
            raise DataError(f"a batch of images must have the training images' volume, (N, "
                            f"{'x'.join(map(str, preprocessing.image_shape))}), got shape "
                            f"{images.shape}; give images of other sizes as a list")
        if isinstance(images, (str, os.PathLike, np.ndarray, Image.Image)):
            images = [_checked_image(images, "the image")]
        else:
            try:
                images = list(images)
            except TypeError:
                raise TypeError(f"images must be a path, a Pillow image, a NumPy array or a "
                                f"list of them, got {type(images).__name__}") from None
            if not images:
                raise DataError("no images given (an empty list)")
            images = [_checked_image(item, f"images[{i}]") for i, item in enumerate(images)]
        x = read_images(images, preprocessing, invert)
    if batch_size is None:
        batch_size = images_within(model, preprocessing.input_shape, most=256)
    scores = predict(model, x, batch_size, preprocessing)
    shifted = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    names = tuple(classes) if classes and len(classes) == probs.shape[1] \
        else tuple(str(k) for k in range(probs.shape[1]))
    return Predictions(names, probs)


# ---------------------------------------------------------------------------- files and folders

_IMAGE_KINDS = "PNG, JPEG, BMP, GIF, WebP or TIFF"


@dataclass
class ImageFiles:
    """The image files that a list of files and folders names (:func:`find_image_files`).

    Attributes
    ----------
    entries : ``(path, None)`` for each file to read, in order, and ``(path, reason)`` in its
        place for an image name that is not a regular file (a FIFO, a device, a socket, a link
        to nothing), refused with ``skip_bad`` and reported as skipped
    passed_over : files in the folders that are not images by their name (never opened)
    subfolders : subfolders not read (without ``recursive``)
    links : links to folders met under a folder, not followed (they could loop)
    """

    entries: list = field(default_factory=list)
    passed_over: int = 0
    subfolders: int = 0
    links: int = 0

    def note(self) -> str | None:
        """One line on what the folders held besides images, or None when nothing."""
        parts = []
        if self.passed_over:
            parts.append(f"{self.passed_over} file(s) that are not images ({_IMAGE_KINDS})")
        if self.subfolders:
            parts.append(f"{self.subfolders} subfolder(s) (--recursive reads them)")
        if self.links:
            parts.append(f"{self.links} link(s) to folders (not followed)")
        return "passed over " + ", ".join(parts) if parts else None


def _refused(path: str) -> str:
    """Why ``path``, found not to be a regular file, is not read (cnnkit.files words it)."""
    try:
        regular_file(path, "image")
    except OSError as err:           # NotRegularFile, FileNotFoundError
        return str(err)
    return f"cannot read image {shown(path)}: it changed while its folder was read"


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def find_image_files(paths, *, recursive: bool = False, skip_bad: bool = False) -> ImageFiles:
    """The image files named by ``paths``: a file is read as it is named (whatever its name);
    a folder gives its files whose names end as an image's (.png, .jpg, .jpeg, .bmp, .gif,
    .webp, .tif, .tiff, any case), in sorted order, and with ``recursive`` then those of its
    subfolders, each folder's files before its subfolders', both sorted. Hidden names (a
    leading dot) are left out, as the ``folder:`` source leaves them; other files are counted
    and passed over, never opened.

    Only regular files are read. A path is looked at with ``stat``, never opened: a FIFO,
    device or socket named as an image (or a link to nothing) would hang or feed the reader
    without end, so it is refused in one line, or with ``skip_bad`` listed as skipped with its
    reason. Links to files are followed; under a folder, links to folders are not (they could
    loop), and are counted, as the ``folder:`` source does.

    Raises
    ------
    FileNotFoundError
        For a path that names nothing.
    NotRegularFile
        For a FIFO, device or socket named, or met under an image's name, without
        ``skip_bad``.
    DataError
        When no image file is found at all.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found = ImageFiles()
    for given in paths:
        given = os.fspath(given)
        if os.path.isdir(given):
            _walk(given, found, recursive, skip_bad)
        else:
            _add(given, found, skip_bad, named=True)
    if not found.entries:
        note = found.note()
        raise DataError(f"no image files ({_IMAGE_KINDS}) in {', '.join(map(shown, paths))}"
                        + (f"; {note}" if note else ""))
    return found


def _add(path: str, found: ImageFiles, skip_bad: bool, named: bool = False) -> None:
    """Add ``path`` to ``found.entries``: to read when it is a regular file, else refused."""
    try:
        regular_file(path, "image")
    except NotRegularFile as err:
        if not skip_bad:
            raise NotRegularFile(f"{err}; pass --skip-bad (skip_bad=True) to report such "
                                 f"files as skipped") from None
        found.entries.append((path, str(err)))
        return
    except FileNotFoundError as err:
        if named or not skip_bad:     # a name the user typed, or a link to nothing
            raise
        found.entries.append((path, str(err)))
        return
    found.entries.append((path, None))


def _walk(folder: str, found: ImageFiles, recursive: bool, skip_bad: bool) -> None:
    """Add the image files of ``folder`` (and of its subfolders with ``recursive``)."""
    for dirpath, dirnames, filenames in os.walk(folder, onerror=_unreadable):
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        visible = sorted(d for d in dirnames if not d.startswith(".") and d not in links)
        if recursive:
            found.links += sum(not d.startswith(".") for d in links)
            dirnames[:] = visible
        else:
            found.subfolders += len(visible) + sum(not d.startswith(".") for d in links)
            dirnames[:] = []
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if _is_image_name(name):
                _add(os.path.join(dirpath, name), found, skip_bad)
            else:
                found.passed_over += 1


def _unreadable(err: OSError) -> None:
    """os.walk's error handler: a folder that cannot be listed stops the listing, named."""
    raise DataError(f"cannot list the folder {shown(err.filename)}: "
                    f"{err.strerror or err}") from None


@dataclass
class FilePrediction:
    """One file's answer in the stream of :func:`predict_files`.

    Attributes
    ----------
    path : the file, as it was named or found under a named folder
    classes : the class names, in the order of ``probabilities``
    probabilities : (K,) softmax probabilities, or None when the file was skipped
    skipped : why it was skipped (it cannot be decoded, or is not a regular file), or None
    """

    path: str
    classes: tuple
    probabilities: np.ndarray | None = None
    skipped: str | None = None

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable (class name, probability) pairs, best first ([] when
        skipped)."""
        if self.probabilities is None:
            return []
        order = np.argsort(-self.probabilities, kind="stable")[:min(int(k), len(self.classes))]
        return [(self.classes[c], float(self.probabilities[c])) for c in order]


class FilePredictions:
    """The image files of :func:`predict_files` and their answers, computed a batch at a time
    as they are iterated over (each file is read once, when its batch comes).

    Attributes
    ----------
    classes : the class names of the net
    files : the :class:`ImageFiles` found
    skipped : the (path, reason) of the files skipped so far (in the latest pass)
    """

    def __init__(self, model, preprocessing: Preprocessing, classes, files: ImageFiles, *,
                 invert: str = "auto", batch_size: int | None = None, skip_bad: bool = False):
        if invert not in ("auto", "yes", "no"):
            raise ValueError(f"invert must be auto, yes or no, got {invert!r}")
        self.model, self.preprocessing, self.files = model, preprocessing, files
        self.invert, self.skip_bad = invert, skip_bad
        self.batch_size = batch_size or images_within(model, preprocessing.input_shape,
                                                      most=256)
        k = tuple(model.output_shape(tuple(preprocessing.input_shape)))[0]
        self.classes = tuple(classes) if classes and len(classes) == k \
            else tuple(str(c) for c in range(k))
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self.files.entries)

    def __iter__(self) -> Iterator[FilePrediction]:
        self.skipped = []                  # each pass over the files reads them again
        pending: list[tuple[str, np.ndarray | None, str | None]] = []
        decoded = 0
        for path, reason in self.files.entries:
            arr = None
            if reason is None:
                arr, reason = self._read(path)
            pending.append((path, arr, reason))
            decoded += arr is not None
            if decoded == self.batch_size or len(pending) >= 4 * self.batch_size:
                yield from self._answer(pending)
                pending, decoded = [], 0
        yield from self._answer(pending)

    def _read(self, path: str) -> tuple[np.ndarray | None, str | None]:
        """(the decoded image, None), or with ``skip_bad`` (None, why it cannot be read)."""
        try:
            return _read_one(path, self.preprocessing, self.invert), None
        except (DataError, OSError) as err:        # undecodable, removed, swapped for a FIFO
            if not self.skip_bad:
                raise type(err)(f"{err}; pass --skip-bad (skip_bad=True) to report such "
                                f"images as skipped") from None
            return None, str(err)

    def _answer(self, pending: list) -> Iterator[FilePrediction]:
        """The answers of ``pending`` (path, image or None, reason) in order."""
        images = [arr for _, arr, _ in pending if arr is not None]
        probs = iter(classify(self.model, self.preprocessing, self.classes, np.stack(images),
                              batch_size=self.batch_size).probabilities if images else ())
        for path, arr, reason in pending:
            if arr is None:
                self.skipped.append((path, reason))
                yield FilePrediction(path, self.classes, skipped=reason)
            else:
                yield FilePrediction(path, self.classes, next(probs))


def predict_files(checkpoint, paths, *, recursive: bool = False, invert: str = "auto",
                  batch_size: int | None = None, skip_bad: bool = False,
                  allow_nonfinite: bool = False) -> FilePredictions:
    """What ``cnnkit predict`` does: the image files named by ``paths`` (files and folders,
    see :func:`find_image_files`) classified by a checkpoint, a batch at a time.

    The checkpoint is loaded and the folders listed before this returns, so that a bad
    checkpoint or a FIFO among the images is refused before any answer; the images are decoded
    as the result is iterated over (:class:`FilePredictions`, yielding a
    :class:`FilePrediction` per file, in order). ``skip_bad``: a file that cannot be decoded
    or is not a regular file is yielded as skipped, with its reason, instead of raising.
    ``invert``, ``batch_size`` and ``allow_nonfinite`` as :func:`predict_images` takes them.

    Raises
    ------
    FileNotFoundError, NotRegularFile, DataError, CheckpointError
        As :func:`find_image_files` and :func:`load_for_inference`; and while iterating,
        without ``skip_bad``, DataError naming a file that cannot be decoded.
    """
    model, preprocessing, classes, _ = load_for_inference(checkpoint,
                                                          allow_nonfinite=allow_nonfinite)
    files = find_image_files(paths, recursive=recursive, skip_bad=skip_bad)
    return FilePredictions(model, preprocessing, classes, files, invert=invert,
                           batch_size=batch_size, skip_bad=skip_bad)


#: What :func:`write_predictions` writes (``cnnkit predict --format``).
PREDICTION_FORMATS = ("text", "json", "csv")


def write_predictions(stream: FilePredictions, out, fmt: str = "text", top_k: int = 3,
                      checkpoint=None) -> None:
    """Write the answers of ``stream`` to the text file ``out`` as they come, in ``fmt``:

    - "text": ``PATH: NAME P  NAME P ...`` per file (probabilities to 3 decimals),
      ``PATH: skipped: REASON`` for a skipped one;
    - "json": one object, ``{"checkpoint", "classes", "predictions": [{"path", "top":
      [{"class", "probability"}, ...]}, ...], "skipped": [{"path", "reason"}, ...],
      "passed_over"}`` (a probability that is NaN, from a net let in by ``allow_nonfinite``,
      is null);
    - "csv": a header ``path,class_1,p_1,...,class_k,p_k,skipped``, then a row per file, in
      order (a skipped file's class and probability cells are empty, its reason in
      ``skipped``).

    ``top_k`` classes per file (at most the net's); probabilities in full precision in json
    and csv."""
    k = min(int(top_k), len(stream.classes))
    if fmt == "text":
        for answer in stream:
            out.write(f"{answer.path}: skipped: {answer.skipped}\n" if answer.skipped else
                      f"{answer.path}: " + "  ".join(f"{name} {p:.3f}"
                                                     for name, p in answer.top(k)) + "\n")
    elif fmt == "json":
        # the object is written in pieces, the predictions as they come
        out.write(f'{{"checkpoint": {json.dumps(None if checkpoint is None else str(checkpoint))}'
                  f', "classes": {json.dumps(list(stream.classes))}, "predictions": [')
        first = True
        for answer in (a for a in stream if not a.skipped):
            top = [{"class": name, "probability": p if math.isfinite(p) else None}
                   for name, p in answer.top(k)]
            out.write(("\n " if first else ",\n ")
                      + json.dumps({"path": answer.path, "top": top}, allow_nan=False))
            first = False
        skipped = [{"path": path, "reason": reason} for path, reason in stream.skipped]
        out.write(f'],\n "skipped": {json.dumps(skipped)}, "passed_over": '
                  f"{stream.files.passed_over}}}\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["path", *(f"{what}_{i}" for i in range(1, k + 1)
                                   for what in ("class", "p")), "skipped"])
        for answer in stream:
            cells = [""] * (2 * k) if answer.skipped else \
                [v for name, p in answer.top(k) for v in (name, repr(p))]
            writer.writerow([answer.path, *cells, answer.skipped or ""])
    else:
        raise ValueError(f"fmt must be one of {', '.join(PREDICTION_FORMATS)}, got {fmt!r}")
