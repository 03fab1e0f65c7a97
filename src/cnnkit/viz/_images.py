"""What the image plots share: finding conv layers, turning images into what ``imshow`` takes,
tiling small images into one mosaic, and running a model in eval mode for one look."""

from __future__ import annotations

import contextlib
import math

import numpy as np

from ..nn import Conv2d
from ._figure import name_text


def conv_layers(model) -> list[tuple[str, object]]:
    """``(dotted name, Conv2d)`` of every convolution in ``model``, in the order of
    ``named_modules`` (the forward order of a Sequential); a lone Conv2d is named "conv"."""
    if isinstance(model, Conv2d):
        return [("conv", model)]
    return [(name or "conv", m) for name, m in model.named_modules() if isinstance(m, Conv2d)]


def first_conv(model, what: str):
    """(name, Conv2d) of ``model``'s first convolution; ValueError naming ``what`` if none."""
    found = conv_layers(model)
    if not found:
        raise ValueError(f"{what}: {type(model).__name__} has no Conv2d layer")
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
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"{what}: the image must be one net input (C, H, W) or (1, C, H, W), "
                         f"got shape {x.shape}")
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    return x


def net_input(image, preprocess, what: str) -> np.ndarray:
    """(1, C, H, W) net input: ``preprocess`` applied to one stored image, or ``image`` as it
    is when there is no ``preprocess``."""
    if preprocess is None:
        return single_input(image, what)
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise ValueError(f"{what}: a stored image must be (C, H, W) or (H, W), got shape "
                         f"{arr.shape}")
    return preprocess(arr[None] if arr.ndim == 3 else arr[None, None])


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
        raise ValueError(f"{what}: an image must be (H, W), (C, H, W) or (H, W, C), got shape "
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
