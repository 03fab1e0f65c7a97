"""Classifying image files and folders by the thousand: what ``cnnkit predict`` does.

:func:`predict_files` lists the files and folders it is given (:func:`find_image_files`: a
folder's image files in sorted order, other files counted and passed over, FIFOs and devices
refused unopened) and returns a stream (:class:`FilePredictions`) that decodes and classifies
them a batch at a time as it is iterated over, one :class:`FilePrediction` per file, so a folder
of any size is read with a batch's memory. :func:`write_predictions` writes the stream as it
comes, as text, one JSON object or CSV rows.

    >>> stream = predict_files("runs/pets/model.npz", ["photos/"], skip_bad=True)  # doctest: +SKIP
    >>> for answer in stream:                                                # doctest: +SKIP
    ...     print(answer.path, answer.skipped or answer.top(1))

Each image is read and preprocessed as :func:`cnnkit.inference.predict_images` reads it.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .data import DataError, Preprocessing
from .data.images import IMAGE_EXTENSIONS
from .files import NotRegularFile, regular_file, shown
from .inference import Predictions, classify, load_for_inference, read_image
from .summary import images_within

__all__ = ["ImageFiles", "find_image_files", "FilePrediction", "FilePredictions",
           "predict_files", "write_predictions", "PREDICTION_FORMATS"]


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
        return Predictions(self.classes, self.probabilities[None]).top(k)[0]


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
            return read_image(path, self.preprocessing, self.invert), None
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
    ``invert``, ``batch_size`` and ``allow_nonfinite`` as
    :func:`cnnkit.inference.predict_images` takes them.

    Raises
    ------
    FileNotFoundError, NotRegularFile, DataError, CheckpointError
        As :func:`find_image_files` and :func:`cnnkit.inference.load_for_inference`; and while
        iterating, without ``skip_bad``, DataError naming a file that cannot be decoded.
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
