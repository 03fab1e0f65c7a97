"""Dropout: drops units at random in training, in either of the notes' two modes."""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from .. import notation
from ..checks import check_real, check_rng
from ..functional.dropout import MODES
from .facts import Cost, join_name
from .module import Module, register_module

__all__ = ["Dropout"]


@register_module
class Dropout(Module):
    """Drop each unit with probability ``p`` in training; any input shape.

    ``mode="upscale_in_train"`` (default) scales the kept units by 1/(1-p) in training and is the
    identity in eval (PyTorch's Dropout); ``"downscale_in_infer"`` does not scale in training and
    multiplies by (1-p) in eval. See :func:`cnnkit.functional.dropout_forward`. The masks come
    from ``self.rng``, which ``Module.rng_states()`` saves and restores.

    Parameters
    ----------
    p : float in [0, 1], the probability to drop
    mode : "upscale_in_train" or "downscale_in_infer"
    rng : numpy.random.Generator (default: a fresh one)

    Examples
    --------
    >>> drop = Dropout(0.5, rng=np.random.default_rng(0))
    >>> drop(np.ones((4, 5))).shape
    (4, 5)
    """

    def __init__(self, p=0.5, mode="upscale_in_train", *, rng=None):
        super().__init__()
        self.p = check_real(p, "Dropout p (the probability to drop)")
        if not 0 <= self.p <= 1:
            raise ValueError(f"Dropout p is the probability to drop a unit and must be in "
                             f"[0, 1], got {p!r}")
        if mode not in MODES:
            raise ValueError(f"Dropout mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.rng = check_rng(np.random.default_rng() if rng is None else rng, "Dropout")
        # (start, total) while this process trains rows start: of a batch of total
        # (data-parallel training, cnnkit.distributed); see F.dropout_forward's ``rows``
        self.batch_rows = None

    @classmethod
    def seeded_from(cls, p, rng, mode="upscale_in_train") -> "Dropout":
        """A Dropout whose masks come from a new generator seeded by ``rng``: a net's builder
        draws every layer from one generator, and the masks then depend on the seed alone."""
        return cls(p, mode, rng=np.random.default_rng(rng.integers(2**63)))

    def forward(self, x):
        out, self._cache = F.dropout_forward(x, self.p, self.rng, mode=self.mode,
                                             training=self.training, rows=self.batch_rows)
        return out

    def backward(self, dout, *, input_grad=True):
        return F.dropout_backward(dout, self._take_cache())

    in_place = position_wise = True

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def cost(self, in_shape):
        """One multiply per value in eval with ``downscale_in_infer``; none with
        ``upscale_in_train`` (the identity in eval)."""
        return Cost(0, (self.mode == "downscale_in_infer") * math.prod(in_shape))

    def label(self, in_shape):
        return notation.dropout(self.p, self.mode)

    def training_effect(self):
        return "random masks" if self.p > 0 else None

    def to_onnx(self, graph, x, in_shape, name):
        """Its eval form: ``Identity`` (upscale_in_train), or ``Mul`` by 1 - p
        (downscale_in_infer)."""
        if self.mode == "upscale_in_train":
            return graph.node("Identity", [x], name=name)
        keep = graph.constant(1.0 - self.p, join_name(name, "keep"), np.float32)
        return graph.node("Mul", [x, keep], name=name)

    def get_config(self):
        return {"p": self.p, "mode": self.mode}

    def extra_repr(self):
        s = "" if self.p == 0.5 else f"p={self.p}"
        if self.mode != "upscale_in_train":
            s += (", " if s else "") + f"mode={self.mode!r}"
        return s
