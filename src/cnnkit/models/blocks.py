"""Building blocks of the case-study architectures: ResNet's basic block, GoogLeNet's inception
module, and the conv -> [BN] -> ReLU unit they are made of.

Each returns plain ``cnnkit.nn`` modules, so a net built from them saves, loads, traces and
converts like any other.
"""

from __future__ import annotations

import numpy as np

from .. import nn

__all__ = ["conv_unit", "basic_block", "inception"]

SHORTCUTS = ("projection", "zeropad")


def conv_unit(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
              padding: int = 0, *, batch_norm: bool = False, strict: bool = True,
              rng=None) -> list[nn.Module]:
    """CONV -> [BN ->] RELU as a list of layers (He initialisation for the ReLU after it).

    With batch norm the conv has no bias: BN's beta plays its part (Ioffe & Szegedy 2015, 3.2).
    """
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                     bias=not batch_norm, strict=strict, rng=rng)
    return [conv, nn.BatchNorm2d(out_channels), nn.ReLU()] if batch_norm else [conv, nn.ReLU()]


def basic_block(in_channels: int, out_channels: int, stride: int = 1, *,
                shortcut: str = "projection", rng=None) -> nn.Sequential:
    """ResNet's basic block (He et al. 2016, Fig. 2 left, used by ResNet-18/34 and the CIFAR nets):

        out = relu( BN(conv3x3(relu(BN(conv3x3_stride(x))))) + shortcut(x) )

    x (N, C_in, H, W) -> (N, C_out, ceil(H/S), ceil(W/S)). The shortcut is the identity when the
    shape is kept (C_in == C_out and stride 1); otherwise ``"projection"`` (option B: a 1x1 conv
    with the block's stride, then BN; ImageNet ResNets) or ``"zeropad"`` (option A: subsample and
    append zero channels, no parameters; the CIFAR ResNets).

    The first conv has stride S and padding 1, so on an odd size the size rule
    ``(W - 3 + 2)/S + 1`` is floored (``strict=False``), as in every ResNet implementation; the
    projection's 1x1 stride-S conv floors the same way, and both give ceil(W/S).

    Returns ``Sequential(Residual(body, shortcut), ReLU())``: the ReLU follows the addition.
    """
    if shortcut not in SHORTCUTS:
        raise ValueError(f"basic_block: shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
    rng = np.random.default_rng() if rng is None else rng
    body = nn.Sequential(
        *conv_unit(in_channels, out_channels, 3, stride, 1, batch_norm=True, strict=False,
                   rng=rng),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False, rng=rng),
        nn.BatchNorm2d(out_channels))
    if in_channels == out_channels and stride == 1:
        short = None
    elif shortcut == "projection":
        short = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False,
                                        strict=False, rng=rng),
                              nn.BatchNorm2d(out_channels))
    else:
        short = nn.ZeroPadShortcut(in_channels, out_channels, stride)
    return nn.Sequential(nn.Residual(body, short), nn.ReLU())


def inception(in_channels: int, c1: int, c3_reduce: int, c3: int, c5_reduce: int, c5: int,
              pool_proj: int, *, rng=None) -> nn.Concat:
    """GoogLeNet's inception module with dimension reductions (Szegedy et al. 2015, Fig. 2b).

    Four branches on the same input, concatenated along the channels (c1 + c3 + c5 + pool_proj):

        1x1 conv (c1)                       -> ReLU
        1x1 conv (c3_reduce) -> ReLU -> 3x3 conv (c3, pad 1) -> ReLU
        1x1 conv (c5_reduce) -> ReLU -> 5x5 conv (c5, pad 2) -> ReLU
        3x3 max pool (stride 1, pad 1) -> 1x1 conv (pool_proj) -> ReLU

    The column names of Table 1 of the paper ("#1x1", "#3x3 reduce", "#3x3", ...).
    """
    rng = np.random.default_rng() if rng is None else rng
    return nn.Concat(
        nn.Sequential(*conv_unit(in_channels, c1, 1, rng=rng)),
        nn.Sequential(*conv_unit(in_channels, c3_reduce, 1, rng=rng),
                      *conv_unit(c3_reduce, c3, 3, padding=1, rng=rng)),
        nn.Sequential(*conv_unit(in_channels, c5_reduce, 1, rng=rng),
                      *conv_unit(c5_reduce, c5, 5, padding=2, rng=rng)),
        nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                      *conv_unit(in_channels, pool_proj, 1, rng=rng)))
