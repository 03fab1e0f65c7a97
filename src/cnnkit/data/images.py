"""Image files to arrays: one decoder for the folder source, ``cnnkit predict`` and the Python API.

Every image, whatever its file format and mode, becomes a (C, H, W) uint8 array the same way:

    mode        what happens
    1, L        grey levels as they are (1-bit images become 0 / 255)
    I;16*, I    16-bit grey scaled to 8 bits (v / 257); 32-bit "I" the same when it exceeds 255
    F           floats clipped to 0..255 and rounded
    LA, PA, P, RGBA   composited over white (a transparent background shows as the viewer's page)
    CMYK, YCbCr, LAB, HSV, RGB   converted to RGB by Pillow

then to the requested channels (1: Pillow's luma L = 0.299 R + 0.587 G + 0.114 B; 3: grey
repeated) and resized to (H, W) with Pillow's antialiased bilinear filter. An animated GIF or
WebP gives its first frame; a JPEG whose EXIF says it was taken rotated is turned upright first,
as viewers show it. Files are PNG, JPEG, BMP, GIF, WebP or TIFF (16-bit grey images are often
TIFFs).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from ..files import regular_file
from ..finite import nonfinite
from .errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "decode_image", "natural_channels", "image_to_array"]

#: The file extensions a folder of images is read for (lower case; matched case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_ORIENTATION = 0x0112   # the EXIF tag of a JPEG's rotation
_GREY_MODES = ("1", "L", "LA", "I", "F")


def natural_channels(img) -> int:
    """1 for a grey image (any bit depth, with or without alpha), 3 for anything else."""
    return 1 if img.mode in _GREY_MODES or img.mode.startswith("I;16") else 3


def _to_l_or_rgb(img):
    """A Pillow image in mode L (grey) or RGB, by the table in the module docstring."""
    from PIL import Image

    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        bad = nonfinite(arr)          # a float TIFF's NaN would cast to any grey level
        if bad:
            raise DataError(f"its float pixels (mode {mode}) hold {bad}")
        if mode.startswith("I;16") or (mode == "I" and arr.max(initial=0) > 255):
            arr = arr / 257.0
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    if mode in ("LA", "PA", "P", "RGBA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        composed = Image.alpha_composite(background, rgba).convert("RGB")
        return composed.convert("L") if mode in ("LA", "La") else composed
    return img.convert("RGB")


def image_to_array(img, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """A Pillow image as (channels, H, W) uint8, resized to ``size`` = (H, W) when given."""
    from PIL import Image

    img = _to_l_or_rgb(img)
    if channels == 1 and img.mode != "L":
        img = img.convert("L")
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[None] if channels == 1 else np.repeat(arr[None], channels, axis=0)
    else:
        arr = arr.transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)
    return np.ascontiguousarray(arr)


def decode_image(path, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """Read an image file as (channels, H, W) uint8, converted and resized as the module says.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    NotRegularFile
        If ``path`` is a folder, a FIFO, a device or a socket (looked at, never opened: a FIFO
        would hang the read).
    DataError
        If Pillow cannot identify or fully decode it (a truncated or corrupt file, a
        decompression bomb); the message names the file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    regular_file(path, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()  # decode now, so a truncated file fails here and not later
                if img.format == "JPEG" and img.getexif().get(_ORIENTATION, 1) != 1:
                    img = ImageOps.exif_transpose(img)   # a phone's photo, upright as shown
                return image_to_array(img, channels, size)
    except FileNotFoundError:             # removed since it was looked at
        raise FileNotFoundError(f"image not found: {os.fspath(path)}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        reason = str(err).split("\n")[0] or type(err).__name__
        if isinstance(err, UnidentifiedImageError):
            reason = "not an image Pillow can read"
        raise DataError(f"cannot read image {os.fspath(path)}: {reason}") from None
