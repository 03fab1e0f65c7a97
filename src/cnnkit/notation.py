"""The notes' layer notation, written: the one writer of a layer token (``CONV3-64/s2``,
``POOL3/2``, ``FC-10``, ``DROPOUT0.5``, ``RES-128/s2``, ``LRN3``).

Two callers write tokens, and both write them here: a layer answering its label
(``Module.label(in_shape)``, read by ``cnnkit summary``) and the spec grammar writing a spec back
in canonical form (:func:`cnnkit.models.spec.describe`). The grammar (the regexes that read a
token, and what a token builds) stays in :mod:`cnnkit.models.spec`; what this module writes it
reads back to the same layer, which ``tests/test_notation.py`` checks for every kind of token.

The defaults a token leaves out are the grammar's, and are named here once: stride 1, dilation
1, groups 1, a pool's stride equal to its window and padding 0, the "same" padding
``D*(k-1)/2`` of a CONV or LC window (which has none when ``D*(k-1)`` is odd: such a token always
writes its padding), dropout 0.5, LRN size 5. A size that differs between the axes is written
``HxW``, height first (``CONV3x1-64``).

This module imports nothing of cnnkit: every tier may import it (``nn`` cannot import
``models``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["DROPOUT_P", "LRN_SIZE", "size", "same_padding", "window", "pool", "fc", "dropout",
           "res", "lrn"]

#: The drop probability of a ``DROPOUT`` token without a number.
DROPOUT_P = 0.5          # DROPOUT without a number
#: The window of an ``LRN`` token without a number.
LRN_SIZE = 5             # LRN without a number


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if np.ndim(value) == 0 else (int(value[0]), int(value[1]))


def size(value) -> str:
    """An int or an (h, w) pair as a token writes it: ``3``, or ``3x2`` when the axes differ."""
    h, w = _pair(value)
    return str(h) if h == w else f"{h}x{w}"


def same_padding(kernel, dilation=1) -> tuple[int, int] | None:
    """The grammar's default padding of a CONV or LC window, ``D*(k-1)/2`` on each axis, which
    keeps H and W at stride 1; None when a window spans an even number of pixels
    (``D*(k-1)`` odd) on either axis, as no padding centres it."""
    spans = [d * (k - 1) for k, d in zip(_pair(kernel), _pair(dilation))]
    if any(span % 2 for span in spans):
        return None
    return spans[0] // 2, spans[1] // 2


def window(name: str, kernel, filters: int, stride=1, padding=None, dilation=1,
           groups: int = 1) -> str:
    """``CONVk-n`` or ``LCk-n`` (``name``), with ``/`` and the options that differ from the
    defaults, in the order s, p, d, g: ``CONV7-64/s2p3``, ``CONV3-8/p0d2``. ``padding`` None is
    the default padding (a spec that did not write it)."""
    opts = ""
    if _pair(stride) != (1, 1):
        opts += "s" + size(stride)
    if padding is not None and _pair(padding) != same_padding(kernel, dilation):
        opts += "p" + size(padding)
    if _pair(dilation) != (1, 1):
        opts += "d" + size(dilation)
    if groups != 1:
        opts += f"g{groups}"
    return f"{name}{size(kernel)}-{filters}" + (f"/{opts}" if opts else "")


def pool(name: str, kernel, stride=None, padding=0) -> str:
    """``POOLk`` (``AVGPOOLk``, ``L2POOLk``), then ``/S`` for a stride other than the window and
    ``pP`` for padding: ``POOL3/2``, ``POOL3/1p1``, ``AVGPOOL3p1``."""
    text = name + size(kernel)
    if stride is not None and _pair(stride) != _pair(kernel):
        text += "/" + size(stride)
    if _pair(padding) != (0, 0):
        text += "p" + size(padding)
    return text


def fc(features: int) -> str:
    """``FC-n``."""
    return f"FC-{features}"


def dropout(p: float) -> str:
    """``DROPOUTp`` with p written out in full (``DROPOUT0.5``, ``DROPOUT0.00001``, never an
    exponent the grammar would not read)."""
    return "DROPOUT" + np.format_float_positional(float(p), trim="-")


def res(channels: int, stride=1) -> str:
    """``RES-n``, and ``/sS`` for a stride other than 1."""
    return f"RES-{channels}" + (f"/s{size(stride)}" if _pair(stride) != (1, 1) else "")


def lrn(n: int = LRN_SIZE) -> str:
    """``LRN``, or ``LRNn`` for a window other than 5 channels."""
    return "LRN" if n == LRN_SIZE else f"LRN{n}"
