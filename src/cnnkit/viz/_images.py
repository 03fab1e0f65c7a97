"""What the image plots share: finding conv layers, turning images into what ``imshow`` takes,
tiling small images into one mosaic, and running a model in eval mode for one look."""

from __future__ import annotations

import contextlib
import math

import numpy as np

from ..errors import UsageError
from ..nn import Conv2d, Module
from ._figure import name_text


def conv_layers(model) -> list[tuple[str, object]]:
    """``(dotted name, Conv2d)`` of every convolution in ``model``, in the order of
    ``named_modules`` (the forward order of a Sequential); a lone Conv2d is named "conv"."""
    if isinstance(model, Conv2d):
        return [("conv", model)]
    return [(name or "conv", m) for name, m in model.named_modules() if isinstance(m, Conv2d)]


def first_conv(model, what: str):
    """(name, Conv2d) of ``model``'s first convolution; UsageError naming ``what`` if none."""
    found = conv_layers(model)
    if not found:
        raise UsageError(f"{what}: {type(model).__name__} has no Conv2d layer")
    return found[0]


@contextlib.contextmanager
def evaluating(model):
    """Run the block with every module of ``model`` in eval mode; afterwards each gets back its
    own mode (a net partly in eval mode stays so) and no forward cache is kept."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        model.clear_state()
        for m, training in modes:
            m.training = training


def single_input(x, what: str) -> np.ndarray:
    """One net input, (C, H, W) or (1, C, H, W), as a (1, C, H, W) float array."""
    x = _numbers(x, what)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise UsageError(f"{what}: the image must be one net input (C, H, W) or (1, C, H, W), "
                         f"got shape {x.shape}")
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    return x


def _numbers(image, what: str) -> np.ndarray:
    """``image`` as an array of real numbers (integers or floats), refused in one line else."""
    try:
        arr = np.asarray(image)
    except (ValueError, TypeError):      # ragged nested lists, or what NumPy cannot take
        arr = None
    if arr is None or arr.dtype.kind not in "uif":
        kind = (f"an array of {arr.dtype}" if isinstance(image, np.ndarray)
                else f"a {type(image).__name__}")
        raise UsageError(f"{what}: the image must be an array of numbers, got {kind}")
    return arr


def unpack_run(model, preprocess):
    """(net, preprocess). A Run (what ``cnnkit.fit`` and ``cnnkit.load_run`` give: anything
    with ``.model`` and ``.preprocessing``) stands for its net, and brings its preprocessing
    unless ``preprocess`` is given; a Module comes back as it is."""
    if not isinstance(model, Module) and hasattr(model, "model") \
            and hasattr(model, "preprocessing"):
        return model.model, (model.preprocessing if preprocess is None else preprocess)
    return model, preprocess


def net_input(model, image, preprocess, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, shown): the (1, C, H, W) net input for one image, and the picture of it a figure
    shows.

    With ``preprocess`` (a :class:`cnnkit.data.Preprocessing`, or a callable taking a batch
    (N, C, h, w) of stored images) ``image`` is a stored image, put into the stored layout by
    :func:`stored_image` and preprocessed; it is shown as it is. Without, ``image`` is the net's
    input itself (:func:`bare_input`), shown scaled from its min..max.
    """
    if preprocess is None:
        x = bare_input(model, image, what)
        return x, x[0]
    stored = stored_image(image, getattr(preprocess, "image_shape", None), what)
    return single_input(preprocess(stored[None]), what), stored


def stored_image(image, shape, what: str) -> np.ndarray:
    """One stored image (H, W), (H, W, C), (C, H, W) or (1, C, H, W), uint8 or floats, as
    (C, H, W) with its values untouched.

    ``shape`` is the (C, H, W) the net's preprocessing takes (``Preprocessing.image_shape``);
    the image must have that volume in one of those layouts. Without ``shape`` (a preprocess of
    the user's) a last axis of 1 or 3 after a first of neither is taken for the channels.
    """
    arr = _numbers(image, what)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise UsageError(f"{what}: an image must be (H, W), (H, W, C), (C, H, W) or "
                         f"(1, C, H, W), got shape {arr.shape if arr.ndim else np.shape(image)}")
    if shape is None:
        if arr.shape[0] not in (1, 3) and arr.shape[2] in (1, 3):
            arr = arr.transpose(2, 0, 1)                   # (H, W, C) -> (C, H, W)
        return arr
    shape = tuple(int(n) for n in shape)
    if arr.shape != shape and arr.transpose(2, 0, 1).shape == shape:
        arr = arr.transpose(2, 0, 1)                       # (H, W, C) -> (C, H, W)
    if arr.shape != shape:
        c, h, w = shape
        layouts = "(H, W), (H, W, C) or (C, H, W)" if c == 1 else "(H, W, C) or (C, H, W)"
        raise UsageError(f"{what}: the image has shape {np.shape(image)}, but the net's "
                         f"preprocessing takes {c}x{h}x{w} images (C x H x W, as {layouts}); "
                         f"resize it to {h}x{w} first")
    return arr


def bare_input(model, image, what: str) -> np.ndarray:
    """One net input for a model given without preprocessing: a float (C, H, W) or
    (1, C, H, W), or (H, W) for a one-channel net, as (1, C, H, W); C must be what the first
    Conv2d takes. An integer image is a stored one, which only the training data's
    preprocessing turns into a net input: refused, in one line saying what is needed."""
    arr = _numbers(image, what)
    convs = conv_layers(model) if isinstance(model, Module) else []
    channels = convs[0][1].in_channels if convs else None
    takes = f"a float {channels}xHxW array" if channels else "a float (C, H, W) array"
    if arr.dtype.kind != "f":
        raise UsageError(f"{what}: the {arr.dtype} image {arr.shape} is a stored image, and a "
                         f"bare model does not know how its training images were preprocessed: "
                         f"give the Run (cnnkit.fit's or cnnkit.load_run's) in place of the "
                         f"model, or preprocess=run.preprocessing, or the net's input itself "
                         f"({takes})")
    if arr.ndim == 2 and channels in (None, 1):
        arr = arr[None]                                    # (H, W): one channel
    x = single_input(arr, what)
    if channels is not None and x.shape[1] != channels:
        raise UsageError(f"{what}: the net takes {takes} (C x H x W), got shape {arr.shape}; "
                         f"a stored image needs the Run in place of the model, or "
                         f"preprocess=run.preprocessing")
    return x


def as_displayable(image, what: str = "image"):
    """(array for ``imshow``, colormap): an (H, W) or (C, H, W) image with C 1 or 3, or (H, W, 3),
    as grey (H, W) or RGB (H, W, 3) in [0, 1]. uint8 is divided by 255, floats already within
    [0, 1] are kept, other floats (normalised net inputs) are scaled from their min..max; other
    channel counts show their first channel in grey."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[2] not in (1, 3):
        arr = arr.transpose(1, 2, 0)                       # (C, H, W) -> (H, W, C)
    elif arr.ndim == 3 and arr.shape[2] not in (1, 3):
        arr = arr[0]                                       # (C, H, W), C not 1 or 3: channel 0
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3):
        raise UsageError(f"{what}: an image must be (H, W), (C, H, W) or (H, W, C), got shape "
                         f"{np.shape(image)}")
    if arr.dtype == np.uint8:
        out = arr / 255.0
    else:
        out = np.asarray(arr, dtype=np.float64)
        if not np.all(np.isfinite(out)):
            out = np.nan_to_num(out)
        lo, hi = float(out.min()), float(out.max())
        if lo < 0.0 or hi > 1.0:
            out = (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)
    return out, ("gray" if out.ndim == 2 else None)


def grid_shape(count: int, aspect: float = 1.0) -> tuple[int, int]:
    """(rows, columns) of a near-square grid of ``count`` tiles of width/height ``aspect``."""
    cols = max(1, math.ceil(math.sqrt(count / max(aspect, 1e-6))))
    return math.ceil(count / cols), cols


def mosaic(tiles: np.ndarray, rows: int, cols: int, pad: int = 1, fill=np.nan) -> np.ndarray:
    """Tiles (T, h, w) or (T, h, w, 3) laid out row by row in a ``rows`` x ``cols`` grid with
    ``pad`` pixels of ``fill`` between them: (rows*(h+pad)-pad, cols*(w+pad)-pad[, 3])."""
    count, h, w = tiles.shape[:3]
    extra = tiles.shape[3:]
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, *extra), fill,
                  dtype=np.float64)
    for t in range(count):
        r, c = divmod(t, cols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = tiles[t]
    return out


def class_name(classes, k: int) -> str:
    """The name of class ``k`` (its number when there are no names), as figures write it
    (:func:`cnnkit.viz._figure.name_text`)."""
    return name_text(classes[k] if classes is not None and 0 <= k < len(classes) else k)
