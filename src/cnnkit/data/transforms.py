"""Image transforms: pure functions on (N, C, H, W) arrays; randomness from a Generator.

Nothing here writes into its input or touches the global RNG: each random transform takes
``rng: numpy.random.Generator`` and returns a new array, so a seed gives the same batch.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..checks import as_float_array, check_ndim, check_real, check_rng, pair

__all__ = ["to_float", "normalize", "random_crop", "random_hflip", "Augment",
           "MNIST_MEAN", "MNIST_STD"]

# Pixel statistics of the MNIST training set, computed once from the shipped files with
#     x = load_mnist("train")[0] / 255.0        # float64, (60000, 28, 28)
#     MNIST_MEAN, MNIST_STD = x.mean(), x.std()  # over all 47,040,000 pixels; population std
# (the usual 0.1307 and 0.3081). tests/data/test_mnist.py recomputes them from the data.
#: The mean pixel value (in [0, 1]) of MNIST's training images.
MNIST_MEAN = 0.1306604762738429
#: The standard deviation of MNIST's training pixels (in [0, 1]; population).
MNIST_STD = 0.30810780385646264


def to_float(images) -> np.ndarray:
    """uint8 images to float32 in [0, 1], with a channel axis.

        out = images / 255

    Parameters
    ----------
    images : (N, H, W) or (N, C, H, W) uint8 array

    Returns
    -------
    out : (N, C, H, W) float32; C = 1 for (N, H, W) input

    Raises
    ------
    TypeError
        If ``images`` is not uint8.
    ValueError
        If ``images`` is not 3-D or 4-D.

    Examples
    --------
    >>> to_float(np.full((2, 28, 28), 255, dtype=np.uint8)).shape
    (2, 1, 28, 28)
    """
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise TypeError(f"to_float: images must be uint8 (0..255), got dtype {arr.dtype}")
    check_ndim(arr, (3, 4), "to_float: images")
    out = arr.astype(np.float32)
    out /= np.float32(255)
    return out[:, None] if out.ndim == 3 else out  # (N, H, W) -> (N, 1, H, W)


def _per_channel(value, name: str, channels: int, dtype) -> np.ndarray:
    """A scalar or a length-C sequence as a (C or 1, 1, 1) array of x's dtype."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim > 1 or (arr.ndim == 1 and len(arr) != channels):
        raise ValueError(f"normalize: {name} must be a scalar or one value per channel "
                         f"({channels}), got {value!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"normalize: {name} must be finite, got {value!r}")
    return arr.astype(dtype).reshape(-1, 1, 1)  # (C,) -> (C, 1, 1), broadcasts over (N, C, H, W)


def normalize(x, mean, std) -> np.ndarray:
    """Subtract a per-channel mean and divide by a per-channel standard deviation.

        out[n, c] = (x[n, c] - mean[c]) / std[c]

    Parameters
    ----------
    x : (N, C, H, W) float32 or float64 array
    mean : float, or a sequence of C floats
    std : float, or a sequence of C floats, each > 0

    Returns
    -------
    out : (N, C, H, W), x's dtype

    Raises
    ------
    TypeError
        If ``x`` is not a float array.
    ValueError
        If ``x`` is not 4-D, ``mean``/``std`` are neither scalars nor of length C, are not
        finite, or a ``std`` is not positive.

    Examples
    --------
    >>> normalize(np.ones((2, 3, 4, 4), np.float32), [0.5, 0.5, 0.5], 0.25).dtype
    dtype('float32')
    """
    x = as_float_array(x, "normalize: x")
    check_ndim(x, 4, "normalize: x")
    m = _per_channel(mean, "mean", x.shape[1], x.dtype)
    s = _per_channel(std, "std", x.shape[1], x.dtype)
    if not np.all(s > 0):
        raise ValueError(f"normalize: std must be > 0, got {std!r}")
    return (x - m) / s


def random_crop(x, padding, rng) -> np.ndarray:
    """Zero-pad each image by ``padding`` and cut a random window of the original size.

        padded = zero-pad x by PH rows (top and bottom) and PW columns (left and right)
        out[n] = padded[n, :, i:i + H, j:j + W],  i ~ U{0..2PH}, j ~ U{0..2PW} per image

    The same window for all channels of an image. Vectorised: one gather over a sliding-window
    view, no loop over images. ``padding=0`` returns a copy of x and draws nothing.

    Parameters
    ----------
    x : (N, C, H, W) array, any dtype
    padding : int or (PH, PW), >= 0
    rng : numpy.random.Generator

    Returns
    -------
    out : (N, C, H, W), x's dtype

    Raises
    ------
    TypeError
        If ``padding`` is not an int or a pair of ints, or ``rng`` is not a Generator.
    ValueError
        If ``x`` is not 4-D or ``padding`` is negative.
    """
    x = np.asarray(x)
    check_ndim(x, 4, "random_crop: x")
    ph, pw = pair(padding, "random_crop: padding", minimum=0)
    check_rng(rng, "random_crop")
    if ph == 0 and pw == 0:
        return x.copy()
    n, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (N, C, H + 2PH, W + 2PW)
    top = rng.integers(0, 2 * ph + 1, size=n)
    left = rng.integers(0, 2 * pw + 1, size=n)
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))  # (N, C, 2PH+1, 2PW+1, H, W)
    # The two index arrays are separated by a slice, so their broadcast axis (N) comes first:
    return windows[np.arange(n), :, top, left]  # (N, C, H, W), a copy


def random_hflip(x, rng, p=0.5) -> np.ndarray:
    """Mirror each image left-right with probability ``p``.

        out[n] = x[n, :, :, ::-1] if u_n < p else x[n],  u_n ~ U[0, 1)

    Suits natural images (CIFAR): a mirrored cat is a cat. Not digits or text: a mirrored 2 or 7
    is no longer a digit, so leave it off for MNIST.

    Parameters
    ----------
    x : (N, C, H, W) array, any dtype
    rng : numpy.random.Generator
    p : float in [0, 1]

    Returns
    -------
    out : (N, C, H, W), x's dtype, a new array

    Raises
    ------
    TypeError
        If ``rng`` is not a Generator or ``p`` is not a number.
    ValueError
        If ``x`` is not 4-D or ``p`` is outside [0, 1].
    """
    x = np.asarray(x)
    check_ndim(x, 4, "random_hflip: x")
    p = check_real(p, "random_hflip: p")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"random_hflip: p must be in [0, 1], got {p}")
    check_rng(rng, "random_hflip")
    flip = rng.random(len(x)) < p
    return np.where(flip[:, None, None, None], x[..., ::-1], x)  # (N,) -> (N, 1, 1, 1)


class Augment:
    """Training-time augmentation for the loader: ``augment(x, rng) -> x``.

    Applies :func:`random_crop` (when ``crop_padding`` is not 0), then :func:`random_hflip`
    with p = 0.5 (when ``hflip``). Horizontal flips suit CIFAR, not digits (a mirrored 2 is not a
    2); for MNIST use the crop alone. With nothing enabled it returns ``x`` itself.

    Parameters
    ----------
    crop_padding : int or (PH, PW), >= 0
    hflip : bool

    Raises
    ------
    TypeError, ValueError
        For a bad ``crop_padding`` (see :func:`random_crop`) or a non-bool ``hflip``.

    Examples
    --------
    >>> aug = Augment(crop_padding=4, hflip=True)
    >>> aug(np.zeros((8, 3, 32, 32), np.float32), np.random.default_rng(0)).shape
    (8, 3, 32, 32)
    >>> Augment.from_config(aug.config()) == aug
    True
    """

    def __init__(self, crop_padding=0, hflip=False):
        self._padding = pair(crop_padding, "Augment: crop_padding", minimum=0)
        if not isinstance(hflip, (bool, np.bool_)):
            raise TypeError(f"Augment: hflip must be a bool, got {hflip!r}")
        # kept as given (an int or a pair), for the config
        self.crop_padding = (self._padding if isinstance(crop_padding, (tuple, list, np.ndarray))
                             else self._padding[0])
        self.hflip = bool(hflip)

    def __call__(self, x, rng):
        """(N, C, H, W) -> (N, C, H, W), drawing from ``rng``."""
        if self._padding != (0, 0):
            x = random_crop(x, self._padding, rng)
        if self.hflip:
            x = random_hflip(x, rng)
        return x

    def config(self) -> dict:
        """JSON-able settings; ``Augment.from_config(a.config())`` rebuilds ``a``."""
        padding = list(self.crop_padding) if isinstance(self.crop_padding, tuple) \
            else self.crop_padding
        return {"crop_padding": padding, "hflip": self.hflip}

    @classmethod
    def from_config(cls, config: dict) -> "Augment":
        """The Augment that ``get_config()`` described."""
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, Augment) and self.config() == other.config()

    def __repr__(self):
        return f"Augment(crop_padding={self.crop_padding!r}, hflip={self.hflip})"

    @classmethod
    def parse(cls, text: str, input_hw) -> "Augment | None":
        """An ``--augment`` list: comma-separated ``crop`` (random shifts, zero padding
        max(1, side // 8): 4 for 32x32 images), ``crop:P`` (padding P), ``flip`` (horizontal,
        p = 0.5), or ``none``. None when nothing is enabled.

        >>> Augment.parse("crop,flip", (32, 32))
        Augment(crop_padding=4, hflip=True)
        """
        padding, hflip = 0, False
        items = [item.strip().lower() for item in str(text).split(",") if item.strip()]
        if not items:
            raise ValueError("--augment: expected crop, crop:P, flip or none")
        for item in items:
            name, _, value = item.partition(":")
            if name == "none" and not value:
                if len(items) > 1:
                    raise ValueError(f"--augment: 'none' cannot be combined, got {text!r}")
            elif name == "flip" and not value:
                hflip = True
            elif name == "crop":
                if value:
                    try:
                        padding = int(value)
                    except ValueError:
                        padding = -1
                    if padding < 0:
                        raise ValueError(f"--augment: crop:P takes a padding P >= 0, got {item!r}")
                else:
                    padding = max(1, min(int(s) for s in input_hw) // 8)
            else:
                raise ValueError(f"--augment: unknown augmentation {item!r}; choose from crop, "
                                 f"crop:P, flip, none")
        return cls(crop_padding=padding, hflip=hflip) if padding or hflip else None
