"""Classify images with a trained checkpoint, from Python: files, Pillow images or arrays.

    >>> result = predict_images("runs/lenet-bn-20261130-101500/model.npz",
    ...                         ["seven.png", "two.jpg"])               # doctest: +SKIP
    >>> result.labels, result.probabilities.shape                       # doctest: +SKIP
    (['7', '2'], (2, 10))

Each image goes through the checkpoint's own preprocessing: decoded to the channels and size of
the training images (:func:`cnnkit.data.decode_image`), then fitted, centred or resized, and
normalised exactly as in training (:class:`cnnkit.data.Preprocessing`).

Files and folders by the thousand, a batch at a time, are :mod:`cnnkit.classify_files`' work
(``cnnkit predict``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
from .finite import check_net, nonfinite
from .summary import images_within
from .train import predict

__all__ = ["Predictions", "classify", "load_for_inference", "predict_images", "read_image",
           "read_images", "recorded_source", "reopen_data"]


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
    out = [read_image(item, preprocessing, invert) for item in items]
    if not out:
        raise ValueError("no images given")
    return np.stack(out)


def read_image(item, preprocessing: Preprocessing, invert: str) -> np.ndarray:
    """One image (a path, a Pillow image or an array, as :func:`read_images` takes each) as
    (C, h, w) uint8 at the training images' channels and size, inverted as ``invert`` says."""
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

