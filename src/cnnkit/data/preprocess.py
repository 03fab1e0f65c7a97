"""The one preprocessing path: a batch of stored images to what the net takes.

Training, validation, ``evaluate``, ``predict`` and :func:`cnnkit.predict_images` all call the
same :class:`Preprocessing`, built from (or restored out of) a checkpoint's metadata, so a net
sees at test time exactly what it saw in training. It is applied per batch, after any subset is
taken, so a 227x227 net trained on 10 of MNIST's 28x28 digits pads 10 digits, not 60,000.

    x = images / 255               (uint8; float images are taken as they are)
    x = fit(x)                     "none": the sizes agree
                                   "centre": zero-pad to the net's H x W, image in the middle
                                   "resize": bilinear resize to the net's H x W
    x = (x - mean[c]) / std[c]     per channel, statistics of the training split
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..budget import check_bytes
from .errors import DataError
from .transforms import normalize, to_float

__all__ = ["FITS", "Preprocessing", "choose_fit"]

#: How images of another size are fitted to the net's input: "auto" chooses, "centre" crops or pads,
#: "resize" scales.
FITS = ("auto", "centre", "resize")
#: The largest side (or channel count) a recorded image or input volume may have, as for
#: ``--input``.
MAX_SIDE = 2 ** 31 - 1


def choose_fit(image_hw, input_hw, fit: str = "auto") -> str:
    """How images of ``image_hw`` go into a net taking ``input_hw``: "none", "centre" or "resize".

    ``auto``: "none" when the sizes agree; "centre" when the image fits with a margin of at most a
    quarter of its own size on each axis (LeCun et al. centred MNIST's 28x28 digits in LeNet-5's
    32x32 field); "resize" for anything else. ``centre`` refuses an image larger than the input.
    """
    (h, w), (hh, ww) = tuple(image_hw), tuple(input_hw)
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    if (h, w) == (hh, ww):
        return "none"
    fits = h <= hh and w <= ww
    if fit == "centre":
        if not fits:
            raise ValueError(f"the images are {h}x{w}, larger than the net's {hh}x{ww} input; "
                             f"they cannot be centred in it (resize them instead)")
        return "centre"
    if fit == "auto" and fits and 4 * (hh - h) <= h and 4 * (ww - w) <= w:
        return "centre"
    return "resize"


def _centre(x: np.ndarray, size: tuple) -> np.ndarray:
    """(N, C, h, w) in the middle of zero fields (N, C, H, W), H >= h and W >= w."""
    (h, w), (hh, ww) = x.shape[2:], size
    top, left = (hh - h) // 2, (ww - w) // 2
    out = np.zeros((*x.shape[:2], hh, ww), dtype=x.dtype)
    out[:, :, top:top + h, left:left + w] = x
    return out


def _resize(x: np.ndarray, size: tuple) -> np.ndarray:
    """(N, C, h, w) float32 resized to (N, C, H, W), each plane with Pillow's bilinear filter
    (antialiased when shrinking)."""
    from PIL import Image

    hh, ww = size
    out = np.empty((*x.shape[:2], hh, ww), dtype=np.float32)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            plane = Image.fromarray(np.ascontiguousarray(x[n, c], dtype=np.float32), mode="F")
            out[n, c] = np.asarray(plane.resize((ww, hh), Image.BILINEAR))
    return out


@dataclass(frozen=True)
class Preprocessing:
    """Stored images (N, C, h, w) -> the net's normalised float32 input (N, C, H, W).

    Attributes
    ----------
    image_shape : (C, h, w) of the stored images (a folder source decodes to this size)
    input_shape : (C, H, W) the net takes
    mean, std : per-channel statistics of the training split, in the units of ``images / 255``
    fit : "none", "centre" or "resize" (see :func:`choose_fit`)
    brightness : mean grey level (0..1) of the training images, by which ``predict`` decides
        whether a grey image needs inverting (dark digits on white paper for an MNIST net)
    """

    image_shape: tuple
    input_shape: tuple
    mean: tuple
    std: tuple
    fit: str = "none"
    brightness: float = 0.5

    def __post_init__(self):
        for name in ("image_shape", "input_shape", "mean", "std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        channels = self.image_shape[0]
        if len(self.image_shape) != 3 or len(self.input_shape) != 3:
            raise ValueError(f"image_shape and input_shape must be volumes (C, H, W), got "
                             f"{self.image_shape} and {self.input_shape}")
        for name in ("image_shape", "input_shape"):
            if not all(1 <= s <= MAX_SIDE for s in getattr(self, name)):
                raise ValueError(f"{name} must hold sizes from 1 to {MAX_SIDE:,}, got "
                                 f"{getattr(self, name)}")
        if channels != self.input_shape[0]:
            raise ValueError(f"the images have {channels} channels but the net takes "
                             f"{self.input_shape[0]}")
        for name in ("mean", "std"):
            if len(getattr(self, name)) != channels:
                raise ValueError(f"{name} must hold one value per channel ({channels}), got "
                                 f"{getattr(self, name)}")
        for name in ("mean", "std"):
            if not all(math.isfinite(v) for v in getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        if not all(s > 0 for s in self.std):
            raise ValueError(f"std must be > 0, got {self.std}")
        if not 0 <= self.brightness <= 1:
            raise ValueError(f"brightness must be a grey level from 0 to 1, got "
                             f"{self.brightness}")
        if self.fit not in ("none", "centre", "resize"):
            raise ValueError(f"fit must be none, centre or resize, got {self.fit!r}")
        (h, w), (hh, ww) = self.image_shape[1:], self.input_shape[1:]
        if self.fit == "none" and (h, w) != (hh, ww):
            raise ValueError(f"fit 'none' needs images of the net's {hh}x{ww}, not {h}x{w}")
        if self.fit == "centre" and (h > hh or w > ww):
            raise ValueError(f"the images are {h}x{w}, larger than the net's {hh}x{ww} input; "
                             f"they cannot be centred in it")

    def __call__(self, images) -> np.ndarray:
        """(N, C, h, w) or (N, h, w) uint8 or float images -> (N, C, H, W) float32."""
        arr = np.asarray(images)
        if arr.ndim == 3 and self.image_shape[0] == 1:
            arr = arr[:, None]
        if arr.ndim != 4 or arr.shape[1:] != self.image_shape:
            raise DataError(f"the images have shape {arr.shape}, but this net was trained on "
                            f"(N, {'x'.join(map(str, self.image_shape))}) images")
        x = to_float(arr) if arr.dtype == np.uint8 else arr.astype(np.float32)
        size = tuple(self.input_shape[1:])
        if self.fit == "centre":
            x = _centre(x, size)
        elif self.fit == "resize":
            x = _resize(x, size)
        return normalize(x, self.mean, self.std)

    def to_metadata(self) -> dict:
        """The JSON-able fields a checkpoint records (see :meth:`from_metadata`)."""
        return {"image_shape": [int(s) for s in self.image_shape],
                "input_shape": [int(s) for s in self.input_shape],
                "mean": [float(m) for m in self.mean], "std": [float(s) for s in self.std],
                "fit": self.fit, "brightness": float(self.brightness)}

    @classmethod
    def from_metadata(cls, meta: dict, where="the checkpoint") -> "Preprocessing":
        """Restore what :meth:`to_metadata` wrote. Checkpoints from before ``fit`` was recorded
        centred a smaller image (MNIST in LeNet-5's 32x32), which is what they get."""
        try:
            input_shape = tuple(int(s) for s in meta["input_shape"])
            image_shape = tuple(int(s) for s in meta.get("image_shape", input_shape))
            fit = meta.get("fit") or ("none" if image_shape == input_shape else "centre")
            channels = input_shape[0]
            mean = tuple(float(m) for m in meta.get("mean", [0.0] * channels))
            std = tuple(float(s) for s in meta.get("std", [1.0] * channels))
            pre = cls(image_shape, input_shape, mean, std, fit,
                      float(meta.get("brightness", 0.5)))
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as err:
            raise DataError(f"{where} does not record a usable preprocessing (input_shape, "
                            f"image_shape, mean, std, fit): {err}") from None
        # a recorded size is the size every image is decoded to: one image (float32, stored
        # and fitted) must fit in memory before any is read
        check_bytes(4 * (math.prod(image_shape) + math.prod(input_shape)),
                    f"one image at the size {where} records ({'x'.join(map(str, image_shape))})")
        return pre

    def describe(self) -> str:
        """E.g. "28x28 centred in 32x32", "64x64 resized to 32x32", "32x32"."""
        h, w = self.image_shape[1:]
        hh, ww = self.input_shape[1:]
        if self.fit == "centre":
            return f"{h}x{w} centred in {hh}x{ww}"
        if self.fit == "resize":
            return f"{h}x{w} resized to {hh}x{ww}"
        return f"{h}x{w}"
