"""The notes' layer notation, written: the one writer of a layer token (``CONV3-64/s2``,
``POOL3/2``, ``FC-10``, ``DROPOUT0.5``, ``RES-128/s2``, ``LRN3``, ``LN``, ``GN8``).

Two callers write tokens, and both write them here: a layer answering its label
(``Module.label(in_shape)``, read by ``cnnkit summary``) and the spec grammar writing a spec back
in canonical form (:func:`cnnkit.models.spec.describe`). The grammar (the regexes that read a
token, and what a token builds) stays in :mod:`cnnkit.models.spec`; what this module writes it
reads back to the same layer, which ``tests/test_notation.py`` checks for every kind of token.

The defaults a token leaves out are the grammar's, and are named here once: stride 1, dilation
1, groups 1, a pool's stride equal to its window and padding 0, the "same" padding
``D*(k-1)/2`` of a CONV or LC window (which has none when ``D*(k-1)`` is odd: such a token always
writes its padding), dropout 0.5, LRN size 5. A size that differs between the axes is written
``HxW``, height first (``CONV3x1-64``). A dropout writes its mode only when it is not the
default ``upscale_in_train`` (``DROPOUT0.5/infer``). ``GN1`` is the same layer as ``LN`` and is
written ``LN``.

A label never writes an initialisation (``/he``, ``/w0.01``): a label says what the layer
computes, and how its weights were first drawn is no part of that. Only the spec's canonical text
writes one, the one the spec gave (``CONV3-64/s2/he``: the geometry first, then the
initialisation), even when it equals the grammar's default for the layer's place (He, and
``0.01 * randn`` for the last FC).

This module imports nothing of cnnkit: every tier may import it (``nn`` cannot import
``models``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["DROPOUT_P", "LRN_SIZE", "LAYER_NORM", "DROPOUT_MODES", "size", "same_padding",
           "window", "pool", "fc", "initialisation", "dropout", "res", "lrn", "group_norm"]

#: The drop probability of a ``DROPOUT`` token without a number.
DROPOUT_P = 0.5          # DROPOUT without a number
#: The window of an ``LRN`` token without a number.
LRN_SIZE = 5             # LRN without a number
#: The token of a layer norm: LayerNorm on a vector, GroupNorm with one group on a volume.
LAYER_NORM = "LN"
#: A dropout mode (``cnnkit.nn.Dropout``'s ``mode``) and the option that writes it; the first is
#: the default, which a token leaves out.
DROPOUT_MODES = {"upscale_in_train": "train", "downscale_in_infer": "infer"}


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
           groups: int = 1, init: str | None = None, weight_scale=None) -> str:
    """``CONVk-n`` or ``LCk-n`` (``name``), with ``/`` and the options that differ from the
    defaults, in the order s, p, d, g: ``CONV7-64/s2p3``, ``CONV3-8/p0d2``; then ``/`` and the
    initialisation when ``init`` is given (:func:`initialisation`): ``CONV7-64/s2p3/he``.
    ``padding`` None is the default padding (a spec that did not write it)."""
    opts = ""
    if _pair(stride) != (1, 1):
        opts += "s" + size(stride)
    if padding is not None and _pair(padding) != same_padding(kernel, dilation):
        opts += "p" + size(padding)
    if _pair(dilation) != (1, 1):
        opts += "d" + size(dilation)
    if groups != 1:
        opts += f"g{groups}"
    return f"{name}{size(kernel)}-{filters}" + (f"/{opts}" if opts else "") + \
        _init_option(init, weight_scale)


def pool(name: str, kernel, stride=None, padding=0) -> str:
    """``POOLk`` (``AVGPOOLk``, ``L2POOLk``), then ``/S`` for a stride other than the window and
    ``pP`` for padding: ``POOL3/2``, ``POOL3/1p1``, ``AVGPOOL3p1``."""
    text = name + size(kernel)
    if stride is not None and _pair(stride) != _pair(kernel):
        text += "/" + size(stride)
    if _pair(padding) != (0, 0):
        text += "p" + size(padding)
    return text


def fc(features: int, init: str | None = None, weight_scale=None) -> str:
    """``FC-n``, and ``/`` with the initialisation when ``init`` is given: ``FC-10/w0.01``."""
    return f"FC-{features}" + _init_option(init, weight_scale)


def _decimal(value: float) -> str:
    """A float written out in full, never as an exponent the grammar would not read (``0.5``,
    ``0.00001``, ``3``)."""
    return np.format_float_positional(float(value), trim="-")


def initialisation(init: str, weight_scale=None) -> str:
    """An initialisation option as a token writes it: the scheme's name (``he``,
    ``he_uniform``, ``xavier``, ``xavier_uniform``), or ``wS`` for ``init="gaussian"`` with
    weight_scale S (``w0.01``; 0.01 when None), S written out in full."""
    if init == "gaussian":
        return "w" + _decimal(0.01 if weight_scale is None else weight_scale)
    return init


def _init_option(init, weight_scale) -> str:
    return "" if init is None else "/" + initialisation(init, weight_scale)


def dropout(p: float, mode: str = "upscale_in_train") -> str:
    """``DROPOUTp`` with p written out in full (``DROPOUT0.5``, ``DROPOUT0.00001``, never an
    exponent the grammar would not read), then ``/infer`` for ``mode="downscale_in_infer"``
    (:data:`DROPOUT_MODES`)."""
    option = "" if mode == "upscale_in_train" else "/" + DROPOUT_MODES[mode]
    return "DROPOUT" + _decimal(p) + option


def res(channels: int, stride=1) -> str:
    """``RES-n``, and ``/sS`` for a stride other than 1."""
    return f"RES-{channels}" + (f"/s{size(stride)}" if _pair(stride) != (1, 1) else "")


def lrn(n: int = LRN_SIZE) -> str:
    """``LRN``, or ``LRNn`` for a window other than 5 channels."""
    return "LRN" if n == LRN_SIZE else f"LRN{n}"


def group_norm(groups: int) -> str:
    """``GNg`` for a GroupNorm of g groups; ``LN`` for one group (:data:`LAYER_NORM`), which
    normalises each example over all its values, as a layer norm does."""
    return LAYER_NORM if groups == 1 else f"GN{groups}"
