"""The model zoo: the notes' case studies (LeNet-5, AlexNet, ZFNet, VGG-16, GoogLeNet, ResNet),
the course's three-layer convnet, and cnnkit's own small nets.

``get_model(name_or_spec, ...)`` builds one by name or from a pattern spec
(:mod:`cnnkit.models.spec`); ``MODELS`` maps each name to its builder and the input volume
(C, H, W) it was designed for. Every builder takes ``num_classes``, ``in_channels`` and ``rng``.

Each docstring gives the architecture as the notes write it, the parameter count this code
builds, and where that figure is published. The tests rebuild every count.

Where a paper's sizes rely on rounding the size rule ``(W - F + 2P)/S + 1`` down (ResNet's and
GoogLeNet's 7x7/2 stem on 224, ZFNet's first layers) the layer is built with ``strict=False``,
PyTorch's floor, and the docstring says so. Caffe's ceil-mode pooling (GoogLeNet) is written as
a pool with padding 1, which gives the same output sizes.
"""

from __future__ import annotations

import contextlib
import os
import reprlib
from pathlib import Path

import numpy as np

from .. import nn
from ..budget import check_bytes
from ..checkpoint import load_checkpoint
from ..errors import UsageError
from ..files import regular_file
from ..nn.module import building_shapes_only, shapes_only
from ..runs import RunFolder
from . import spec
from .blocks import basic_block, conv_unit, inception

__all__ = ["lenet5", "lenet_bn", "three_layer_convnet", "alexnet", "zfnet", "vgg16", "googlenet",
           "resnet18", "resnet20", "cifar_resnet", "convnet_check", "get_model", "model_names",
           "canonical_name", "input_shape_of", "build_model", "MODELS", "DEFAULT_MODEL",
           "DATA_DEFAULTS", "default_model_for", "resolve_model", "is_checkpoint"]


def _rng(rng):
    return np.random.default_rng() if rng is None else rng


def _scale(channels: int, width: float) -> int:
    """A channel count scaled by a width multiplier (at least 1): scaled-down nets for tests."""
    return max(1, int(round(channels * width)))


def _classifier(in_features: int, hidden: tuple[int, ...], num_classes: int, dropout: float,
                rng, *, before: bool = False) -> list[nn.Module]:
    """[FC -> RELU -> DROPOUT]*K -> FC, the notes' FC stack (Caffe's fc6/relu6/drop6 order),
    the last FC with small Gaussian weights; ``before`` puts a dropout in front of it too
    (GoogLeNet's)."""
    layers: list[nn.Module] = [nn.Dropout.seeded_from(dropout, rng)] if before else []
    for width in hidden:
        layers += [nn.Linear(in_features, width, rng=rng), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout.seeded_from(dropout, rng))
        in_features = width
    layers.append(nn.Linear(in_features, num_classes, init="gaussian", weight_scale=1e-2,
                            rng=rng))
    return layers


def lenet5(num_classes: int = 10, in_channels: int = 1, *, rng=None) -> nn.Sequential:
    """LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, Fig. 2) on 32x32 images.

        INPUT[1x32x32] -> CONV5-6 -> TANH -> AVGPOOL2 -> CONV5-16 -> TANH -> AVGPOOL2
                       -> CONV5-120 -> TANH -> FC-84 -> TANH -> FC-10

    C5 is a 5x5 convolution over the 5x5x16 volume, as in the paper (1x1x120 out). 61,706
    parameters for 10 classes: 156 + 2,416 + 48,120 + 10,164 + 850, the figure usually quoted for
    LeNet-5 with C3 fully connected to S2 and parameter-free pooling. The paper's own net has a
    sparse C3 (1,516 parameters instead of 2,416), trainable subsampling and an RBF output: it
    reports "about 60,000" trainable parameters (sec. II.B). Glorot initialisation for tanh.
    """
    rng = _rng(rng)
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, init="xavier", rng=rng), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5, init="xavier", rng=rng), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(16, 120, 5, init="xavier", rng=rng), nn.Tanh(), nn.Flatten(),
        nn.Linear(120, 84, init="xavier", rng=rng), nn.Tanh(),
        nn.Linear(84, num_classes, init="xavier", rng=rng))


def lenet_bn(num_classes: int = 10, in_channels: int = 1, *, rng=None) -> nn.Sequential:
    """LeNet-5 (LeCun et al. 1998) with batch norm, for 28x28 inputs (MNIST); cnnkit's default net.

        INPUT[Cx28x28] -> CONV5-6 (pad 2) -> BN -> RELU -> POOL2          28x28x6 -> 14x14x6
                       -> CONV5-16        -> BN -> RELU -> POOL2          10x10x16 -> 5x5x16
                       -> FC-120 -> RELU -> FC-84 -> RELU -> FC-num_classes

    Padding the first conv by 2 gives LeNet-5's 32x32 geometry on 28x28 digits. 61,728
    parameters for 10 classes (the conv biases are left out: batch norm's beta replaces them).
    He initialisation before every ReLU; the classifier starts with small Gaussian weights
    (0.01 * randn), so the untrained net's scores are near 0 and its loss is ~log(num_classes).
    """
    rng = np.random.default_rng() if rng is None else rng
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2, bias=False, rng=rng), nn.BatchNorm2d(6), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, bias=False, rng=rng), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120, rng=rng), nn.ReLU(),
        nn.Linear(120, 84, rng=rng), nn.ReLU(),
        nn.Linear(84, num_classes, init="gaussian", weight_scale=1e-2, rng=rng))


def convnet_check(num_classes: int = 10, in_channels: int = 1, *, rng=None) -> nn.Sequential:
    """A small conv-BN-ReLU-pool-FC-dropout net for 8x8 inputs, for whole-model gradient checks.

        INPUT[Cx8x8] -> CONV3-4 (pad 1) -> BN -> RELU -> POOL2 -> FC-16 -> RELU -> DROPOUT0.3
                     -> FC-num_classes
    """
    rng = np.random.default_rng() if rng is None else rng
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1, rng=rng), nn.BatchNorm2d(4), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(4 * 4 * 4, 16, rng=rng), nn.ReLU(),
        nn.Dropout.seeded_from(0.3, rng),
        nn.Linear(16, num_classes, rng=rng))


def three_layer_convnet(num_classes: int = 10, in_channels: int = 3, *, num_filters: int = 32,
                        filter_size: int = 7, hidden_dim: int = 100, rng=None) -> nn.Sequential:
    """The course's three-layer convnet (CS231n assignment 2, ``ThreeLayerConvNet``) on 32x32.

        INPUT[3x32x32] -> CONV7-32 (pad 3) -> RELU -> POOL2 -> FC-100 -> RELU -> FC-10

    825,046 parameters with the assignment's defaults: 4,736 (conv) + 819,300 (16*16*32*100 + 100)
    + 1,010, counted from the assignment's code (``cs231n/classifiers/cnn.py``).
    """
    if filter_size % 2 == 0:
        raise ValueError(f"three_layer_convnet: filter_size must be odd (padding (F-1)/2 keeps "
                         f"the size), got {filter_size}")
    rng = _rng(rng)
    return nn.Sequential(
        *conv_unit(in_channels, num_filters, filter_size, padding=(filter_size - 1) // 2,
                   rng=rng),
        nn.MaxPool2d(2), nn.Flatten(),
        *_classifier(num_filters * 16 * 16, (hidden_dim,), num_classes, 0.0, rng))


def alexnet(num_classes: int = 1000, in_channels: int = 3, *, groups: int = 2,
            rng=None) -> nn.Sequential:
    """AlexNet (Krizhevsky, Sutskever & Hinton 2012, Fig. 2) on 227x227 images.

        INPUT[3x227x227] -> CONV11-96/s4p0 -> RELU -> LRN -> POOL3/2       55x55x96 -> 27x27x96
          -> CONV5-256 (2 groups) -> RELU -> LRN -> POOL3/2                27x27x256 -> 13x13x256
          -> CONV3-384 -> RELU -> CONV3-384 (2 groups) -> RELU
          -> CONV3-256 (2 groups) -> RELU -> POOL3/2                       13x13x256 -> 6x6x256
          -> [FC-4096 -> RELU -> DROPOUT0.5]*2 -> FC-1000

    The notes' geometry: (227 - 11)/4 + 1 = 55. ``groups=2`` keeps the paper's split over two
    GPUs (conv2, conv4 and conv5 see only the half of the channels on their GPU): 60,965,224
    parameters for 1000 classes, the count of Caffe's reference model ``bvlc_alexnet`` and the
    paper's "60 million parameters". ``groups=1`` joins the halves: 62,378,344.
    LRN with the paper's k = 2, n = 5, alpha = 1e-4, beta = 0.75 (sec. 3.3); the paper does not
    divide alpha by n, PyTorch's and cnnkit's LocalResponseNorm do, so alpha is passed as 5e-4.
    """
    rng = _rng(rng)

    def lrn():
        return nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)

    return nn.Sequential(
        *conv_unit(in_channels, 96, 11, stride=4, rng=rng), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=groups, rng=rng), nn.ReLU(), lrn(),
        nn.MaxPool2d(3, 2),
        *conv_unit(256, 384, 3, padding=1, rng=rng),
        nn.Conv2d(384, 384, 3, padding=1, groups=groups, rng=rng), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, groups=groups, rng=rng), nn.ReLU(),
        nn.MaxPool2d(3, 2), nn.Flatten(),
        *_classifier(256 * 6 * 6, (4096, 4096), num_classes, 0.5, rng))


def zfnet(num_classes: int = 1000, in_channels: int = 3, *, rng=None) -> nn.Sequential:
    """ZFNet (Zeiler & Fergus 2014, Fig. 3) on 224x224 images: AlexNet with a 7x7/2 first layer
    instead of 11x11/4, a 5x5/2 second layer, and wider conv3-5 layers (384, 384, 256) on one GPU.

        INPUT[3x224x224] -> CONV7-96/s2p1 -> RELU -> POOL3/2 (pad 1) -> LRN  110x110x96 -> 55x55x96
          -> CONV5-256/s2p0 -> RELU -> POOL3/2 (pad 1) -> LRN                26x26x256 -> 13x13x256
          -> CONV3-384 -> RELU -> CONV3-384 -> RELU -> CONV3-256 -> RELU -> POOL3/2  -> 6x6x256
          -> [FC-4096 -> RELU -> DROPOUT0.5]*2 -> FC-1000

    The volumes are those of the paper's Fig. 3 (110, 55, 26, 13, 13, 13, 6). They need the size
    rule floored: (224 - 7 + 2)/2 + 1 = 110.5 and (110 - 3 + 2)/2 + 1 = 55.5, so the first conv
    and pools are built with ``strict=False``. The paper does not state a parameter count;
    this architecture has 62,357,608 for 1000 classes (the layers of AlexNet's single-GPU form
    with a 7x7x3x96 first layer: 14,208 + 614,656 + 885,120 + 1,327,488 + 884,992 + 37,752,832 +
    16,781,312 + 4,097,000). The paper's "contrast normalisation" after the pools is an LRN here.
    """
    rng = _rng(rng)

    def lrn():
        return nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)

    return nn.Sequential(
        *conv_unit(in_channels, 96, 7, stride=2, padding=1, strict=False, rng=rng),
        nn.MaxPool2d(3, 2, padding=1, strict=False), lrn(),
        *conv_unit(96, 256, 5, stride=2, rng=rng),
        nn.MaxPool2d(3, 2, padding=1, strict=False), lrn(),
        *conv_unit(256, 384, 3, padding=1, rng=rng),
        *conv_unit(384, 384, 3, padding=1, rng=rng),
        *conv_unit(384, 256, 3, padding=1, rng=rng),
        nn.MaxPool2d(3, 2), nn.Flatten(),
        *_classifier(256 * 6 * 6, (4096, 4096), num_classes, 0.5, rng))


VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def vgg16(num_classes: int = 1000, in_channels: int = 3, *, width: float = 1.0,
          rng=None) -> nn.Sequential:
    """VGG-16, configuration D of Simonyan & Zisserman 2015 (Table 1), on 224x224 images: the
    notes' "VGGNet in detail".

        INPUT[3x224x224] -> [CONV3-64]*2 -> POOL2 -> [CONV3-128]*2 -> POOL2 -> [CONV3-256]*3
          -> POOL2 -> [CONV3-512]*3 -> POOL2 -> [CONV3-512]*3 -> POOL2          -> 7x7x512
          -> [FC-4096 -> RELU -> DROPOUT0.5]*2 -> FC-1000
        (every CONV3 is followed by a RELU)

    138,357,544 parameters for 1000 classes: the paper's Table 2 gives 138M, the notes' table
    "138M parameters"; the exact figure is that of the paper's released Caffe model and of
    torchvision's ``vgg16``. ``width`` scales every channel count (not the FC widths) for cheap
    tests.
    """
    rng = _rng(rng)
    layers: list[nn.Module] = []
    channels = in_channels
    for stage in VGG16_STAGES:
        for c in stage:
            layers += conv_unit(channels, _scale(c, width), 3, padding=1, rng=rng)
            channels = _scale(c, width)
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.Flatten(),
                         *_classifier(channels * 7 * 7, (4096, 4096), num_classes, 0.5, rng))


# Table 1 of Szegedy et al. 2015: name -> (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)
GOOGLENET_INCEPTIONS = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


def googlenet(num_classes: int = 1000, in_channels: int = 3, *, width: float = 1.0,
              rng=None) -> nn.Sequential:
    """GoogLeNet (Szegedy et al. 2015, Table 1 and Fig. 3) on 224x224 images, without the two
    auxiliary classifiers used only in training.

        INPUT[3x224x224] -> CONV7-64/s2p3 -> RELU -> POOL3/2 -> LRN              112 -> 56x56x64
          -> CONV1-64 -> RELU -> CONV3-192 -> RELU -> LRN -> POOL3/2            56 -> 28x28x192
          -> inception 3a, 3b -> POOL3/2 -> 4a, 4b, 4c, 4d, 4e -> POOL3/2 -> 5a, 5b   7x7x1024
          -> GAP -> DROPOUT0.4 -> FC-1000

    Average pooling replaces the FC stack (the notes: "no fully connected layers on top"); it is
    a global average pool, which is the paper's 7x7 average pool at 224x224 and also works on
    other sizes. The 7x7/2 stem floors (224 - 7 + 6)/2 + 1 = 112.5 (``strict=False``); Caffe's
    ceil-mode 3x3/2 pools are written as pools with padding 1 (112 -> 56 -> 28 -> 14 -> 7).

    6,998,552 parameters for 1000 classes. Table 1 of the paper lists the weights of each layer
    (biases not counted, K = 1024): conv1 2.7K, conv2 112K, 3a 159K, 3b 380K, 4a 364K, 4b 437K,
    4c 463K, 4d 580K, 4e 840K, 5a 1072K, 5b 1388K, linear 1000K, about 6.8M in all; the tests check
    every row. ``width`` scales every channel count for cheap tests (gradient checks).
    """
    rng = _rng(rng)
    w = width

    def s(c):
        return _scale(c, w)

    layers: list[nn.Module] = [
        *conv_unit(in_channels, s(64), 7, stride=2, padding=3, strict=False, rng=rng),
        nn.MaxPool2d(3, 2, padding=1, strict=False), nn.LocalResponseNorm(5),
        *conv_unit(s(64), s(64), 1, rng=rng),
        *conv_unit(s(64), s(192), 3, padding=1, rng=rng),
        nn.LocalResponseNorm(5), nn.MaxPool2d(3, 2, padding=1, strict=False)]
    channels = s(192)
    for name, sizes in GOOGLENET_INCEPTIONS.items():
        if name in ("4a", "5a"):
            layers.append(nn.MaxPool2d(3, 2, padding=1, strict=False))
        sizes = tuple(s(c) for c in sizes)
        layers.append(inception(channels, *sizes, rng=rng))
        channels = sizes[0] + sizes[2] + sizes[4] + sizes[5]
    return nn.Sequential(*layers, nn.GlobalAvgPool2d(), nn.Flatten(),
                         *_classifier(channels, (), num_classes, 0.4, rng, before=True))


def _residual_stages(channels: int, width: int, stages: int, blocks: int, shortcut: str,
                     rng) -> tuple[list[nn.Module], int]:
    """ResNet's stages of basic blocks on ``channels`` input channels: stage s has width * 2**s
    channels, and its first block halves H and W (stride 2) from the second stage on. Returns
    the blocks and the channels they end with."""
    layers: list[nn.Module] = []
    for stage in range(stages):
        out = width * 2 ** stage
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(basic_block(channels, out, stride, shortcut=shortcut, rng=rng))
            channels = out
    return layers, channels


def resnet18(num_classes: int = 1000, in_channels: int = 3, *, width: int = 64,
             rng=None) -> nn.Sequential:
    """ResNet-18 (He, Zhang, Ren & Sun 2016, Table 1) on 224x224 images.

        INPUT[3x224x224] -> CONV7-64/s2p3 -> BN -> RELU -> POOL3/2 (pad 1)   112 -> 56x56x64
          -> [RES-64]*2 -> RES-128/s2 -> RES-128 -> RES-256/s2 -> RES-256
          -> RES-512/s2 -> RES-512 -> GAP -> FC-1000                          7x7x512 -> 512

    Basic blocks (two 3x3 convs with batch norm) with projection shortcuts (option B: 1x1 conv +
    BN) where the shape changes. The stem and the max pool floor their size rules on 224
    (``strict=False``). 11,689,512 parameters for 1000 classes, the count of torchvision's
    ``resnet18``, whose layers these are (the paper's Table 1 gives 1.8 GFLOPs, multiply-adds,
    and no parameter count). ``width`` is the channels of the first stage (64), doubled at each
    later stage; smaller for cheap tests.
    """
    rng = _rng(rng)
    layers: list[nn.Module] = [
        *conv_unit(in_channels, width, 7, stride=2, padding=3, batch_norm=True, strict=False,
                   rng=rng),
        nn.MaxPool2d(3, 2, padding=1, strict=False)]
    stages, channels = _residual_stages(width, width, 4, 2, "projection", rng)
    return nn.Sequential(*layers, *stages, nn.GlobalAvgPool2d(), nn.Flatten(),
                         *_classifier(channels, (), num_classes, 0.0, rng))


def cifar_resnet(depth: int = 20, num_classes: int = 10, in_channels: int = 3, *,
                 width: int = 16, rng=None) -> nn.Sequential:
    """The CIFAR-10 ResNets of He et al. 2016 (sec. 4.2) on 32x32 images: depth = 6n + 2.

        INPUT[3x32x32] -> CONV3-16 -> BN -> RELU -> [RES-16]*n -> RES-32/s2 -> [RES-32]*(n-1)
          -> RES-64/s2 -> [RES-64]*(n-1) -> GAP -> FC-10           32x32x16 -> 16x16x32 -> 8x8x64

    Basic blocks with the paper's parameter-free option-A shortcuts (subsample, append zero
    channels). ``width`` is the first stage's channels (16), doubled at each stage.
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"cifar_resnet: depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), "
                         f"got {depth!r}")
    n = (depth - 2) // 6
    rng = _rng(rng)
    layers: list[nn.Module] = conv_unit(in_channels, width, 3, padding=1, batch_norm=True,
                                        rng=rng)
    stages, channels = _residual_stages(width, width, 3, n, "zeropad", rng)
    return nn.Sequential(*layers, *stages, nn.GlobalAvgPool2d(), nn.Flatten(),
                         *_classifier(channels, (), num_classes, 0.0, rng))


def resnet20(num_classes: int = 10, in_channels: int = 3, *, width: int = 16,
             rng=None) -> nn.Sequential:
    """ResNet-20 for CIFAR-10 (He et al. 2016, sec. 4.2, n = 3): see :func:`cifar_resnet`.

    269,722 parameters for 10 classes (batch norm's gamma and beta included): the paper's
    Table 6 gives 0.27M.
    """
    return cifar_resnet(20, num_classes, in_channels, width=width, rng=rng)


#: The zoo: name -> (builder, the input volume (C, H, W) it was designed for).
MODELS = {
    "lenet-bn": (lenet_bn, (1, 28, 28)),
    "lenet5": (lenet5, (1, 32, 32)),
    "three-layer-convnet": (three_layer_convnet, (3, 32, 32)),
    "alexnet": (alexnet, (3, 227, 227)),
    "zfnet": (zfnet, (3, 224, 224)),
    "vgg16": (vgg16, (3, 224, 224)),
    "googlenet": (googlenet, (3, 224, 224)),
    "resnet18": (resnet18, (3, 224, 224)),
    "resnet20": (resnet20, (3, 32, 32)),
    "convnet-check": (convnet_check, (1, 8, 8)),
}
#: The zoo model ``cnnkit train`` builds when neither ``--model`` nor the data's volume chooses one.
DEFAULT_MODEL = "lenet-bn"

#: The net `cnnkit train` picks when no --model is given, by the images' volume (C, H, W):
#: LeNet-BN for MNIST-size digits; ResNet-20 for CIFAR-size images: 91.25% on CIFAR-10 in He et
#: al. 2016 (Table 6) for 0.27M parameters, where the course's three-layer convnet reaches 60-70%.
#: It costs 7x the three-layer net's training step (`cnnkit time`, batch 64, 2 cores: 433 ms
#: against 59 ms, about 5.6 minutes an epoch of CIFAR-10's 50,000 images).
DATA_DEFAULTS = {(1, 28, 28): "lenet-bn", (3, 32, 32): "resnet20"}


def default_model_for(image_shape) -> str:
    """The zoo name of the default net for images of volume ``image_shape`` (C, H, W).

    Raises ValueError, naming the volume and the ones that have a default, for any other."""
    shape = tuple(int(s) for s in image_shape)
    if shape not in DATA_DEFAULTS:
        known = ", ".join(f"{name} for {'x'.join(map(str, s))}"
                          for s, name in DATA_DEFAULTS.items())
        raise UsageError(f"no default net for {'x'.join(map(str, shape))} images (there is "
                         f"{known}); choose one with --model, a zoo name or a spec such as "
                         f"\"CONV3-32 -> RELU -> POOL2 -> FC-10\", or resize the images with "
                         f"--input")
    return DATA_DEFAULTS[shape]


def model_names() -> list[str]:
    """The zoo's model names (the keys of ``MODELS``)."""
    return list(MODELS)


def canonical_name(name: str) -> str:
    """The registry name of a model: "default" means DEFAULT_MODEL; case and "_" are forgiven
    ("VGG16", "resnet_18"). ValueError if unknown."""
    key = DEFAULT_MODEL if name == "default" else name.strip().lower().replace("_", "-")
    aliases = {"vgg-16": "vgg16", "resnet-18": "resnet18", "resnet-20": "resnet20",
               "lenet-5": "lenet5", "three-layer": "three-layer-convnet"}
    key = aliases.get(key, key)
    if key not in MODELS:
        raise UsageError(f"unknown model {reprlib.repr(name)}; choose one of: {', '.join(MODELS)}, or give "
                         f"a spec such as \"INPUT[1x28x28] -> CONV5-6 -> RELU -> POOL2 -> FC-10\"")
    return key


def input_shape_of(name: str) -> tuple[int, int, int]:
    """The input volume (C, H, W) a zoo model was designed for."""
    return MODELS[canonical_name(name)][1]


def get_model(name: str = DEFAULT_MODEL, *, num_classes: int | None = None,
              in_channels: int | None = None, rng=None, **kwargs) -> nn.Module:
    """Build a zoo model by name; ``num_classes`` and ``in_channels`` default to the builder's
    (1000 for the ImageNet nets, 10 otherwise; the designed input's channels). Extra keyword
    arguments go to the builder (``width=``, ``groups=``). Raises ``ValueError`` listing the
    names for an unknown one.
    """
    builder, shape = MODELS[canonical_name(name)]
    args = {"in_channels": shape[0] if in_channels is None else in_channels, "rng": rng, **kwargs}
    if num_classes is not None:
        args["num_classes"] = num_classes
    return builder(**args)


def build_model(name_or_spec: str, input_shape=None, *, num_classes: int | None = None,
                rng=None) -> tuple[nn.Module, tuple[int, int, int]]:
    """A model from a zoo name or from a pattern spec (:mod:`cnnkit.models.spec`), and the input
    volume (C, H, W) it takes: what every command that takes a MODEL accepts.

    ``input_shape`` fills a spec that has no ``INPUT[CxHxW]`` (and must agree with one that
    has); for a zoo model it replaces the designed input (its channels set ``in_channels``).
    ``num_classes`` sets a zoo model's classifier; a spec's last FC fixes its own.
    """
    def make():
        if spec.is_spec(name_or_spec):
            parsed = spec.parse(name_or_spec)
            model = spec.build(parsed, input_shape, rng=rng)
            shape = parsed.input_shape if parsed.input_shape is not None else input_shape
            return model, tuple(int(s) for s in shape)
        name = canonical_name(name_or_spec)
        shape = MODELS[name][1] if input_shape is None else tuple(int(s) for s in input_shape)
        model = get_model(name, num_classes=num_classes, in_channels=shape[0], rng=rng)
        _check_takes(model, name, shape)
        return model, shape

    if not building_shapes_only():      # count the weights before drawing them
        with shapes_only():
            sketch, _ = make()
        count = sketch.num_parameters()
        largest = max((p.size for _, p in sketch.named_parameters()), default=0)
        # float32 weights and their gradients, and the largest drawn first in float64
        check_bytes(count * (4 + 4) + largest * 8, f"the {count:,} parameters of "
                    f"{name_or_spec if len(name_or_spec) < 60 else 'the spec'} (float32, with "
                    f"their gradients)")
    return make()


def _check_takes(model: nn.Module, name: str, shape: tuple) -> None:
    """A zoo net whose layers fix its input size (an FC after the convolutions) is refused on
    another volume when built, in one line naming the volume it was designed for, rather than
    failing at its first batch."""
    try:
        model.output_shape(shape)
    except ValueError as err:
        designed = "x".join(map(str, MODELS[name][1][1:]))
        raise UsageError(f"{name} does not take {'x'.join(map(str, shape))} input ({err}); it "
                         f"was designed for {designed} images: resize them (input=/--input "
                         f"{shape[0]}x{designed}) or give a spec") from None


def names_a_file(text: str) -> bool:
    """Whether ``text`` is the path of a file; False for text no path can be (a spec longer
    than a file name may be, one with a NUL byte)."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def is_checkpoint(text: str) -> bool:
    """Whether a ``--model`` value names a checkpoint file rather than a zoo name or a spec."""
    return text.endswith(".npz") or names_a_file(text)


def _not_a_folder(text: str) -> str:
    """``text``, a MODEL, unless it names a folder or something else that is not a file: a
    folder (a run's, say) is refused in one line naming the checkpoints inside it (its
    model.npz, the best epoch, and checkpoint.npz, the last, hold different weights, so
    neither is taken for the other silently); a FIFO, device or socket as
    :func:`cnnkit.files.regular_file` words it. A zoo name stays one, whatever folder of that
    name the working directory holds."""
    try:
        canonical_name(text)
        return text
    except UsageError:
        pass
    try:
        there = os.path.exists(text) and not os.path.isfile(text)
    except (OSError, ValueError):        # a spec longer than a path may be
        there = False
    if not there:
        return text
    if not os.path.isdir(text):
        regular_file(text, "checkpoint")          # raises, naming what it is
    inside = [str(Path(text) / name) for name in (RunFolder.MODEL, RunFolder.CHECKPOINT)
              if (Path(text) / name).is_file()]
    if inside:
        raise UsageError(f"{text} is a run folder; name one of its checkpoints: {inside[0]} "
                         f"(the best epoch's weights)"
                         + (f" or {inside[1]} (the last epoch's)" if len(inside) > 1 else ""))
    raise UsageError(f"{text} is a folder, not a checkpoint (.npz), a zoo name or a spec")


def resolve_model(text: str, input_shape=None, rng=None, *, weights: bool = True,
                  num_classes: int | None = None):
    """A net as every command's MODEL names it: a checkpoint (.npz, its architecture and
    weights), a zoo name or a spec. Returns (model, input volume, label, the checkpoint's
    metadata or {}). With ``weights=False`` a zoo model or spec is built without drawing weights
    (``nn.shapes_only``): enough for everything but running it. ``num_classes`` sets a zoo
    model's classifier. ``input_shape`` replaces a checkpoint's recorded input volume.

    Raises ValueError (a CheckpointError or SpecError naming the file or token) for a MODEL
    that is none of these, or a checkpoint that records no input volume and is given none;
    UsageError for a folder (a run folder's names its checkpoints)."""
    text = _not_a_folder(text)
    if is_checkpoint(text):
        if num_classes is not None:
            raise UsageError("--num-classes applies to a zoo model, not a checkpoint")
        ckpt = load_checkpoint(text)
        metadata = ckpt.extra.get("metadata", {})
        recorded = metadata.get("input_shape")
        shape = input_shape or (tuple(recorded) if recorded else None)
        if shape is None:
            raise UsageError(f"{text} does not record its input volume; pass --input CxHxW")
        return ckpt.build_model(), tuple(shape), text, metadata
    if num_classes is not None and spec.is_spec(text):
        raise UsageError("--num-classes applies to a zoo model; a spec's last FC-n sets its own")
    with shapes_only() if not weights else contextlib.nullcontext():
        model, shape = build_model(text, input_shape, rng=rng, num_classes=num_classes)
    return model, shape, spec.describe(text) if spec.is_spec(text) else canonical_name(text), {}
