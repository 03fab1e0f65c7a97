"""Named architectures. ``get_model(name, ...)`` builds one; ``MODELS`` lists them.

The notes' layer pattern ``INPUT -> [[CONV -> RELU]*N -> POOL?]*M -> [FC -> RELU]*K -> FC`` with
batch norm after each convolution (a conv followed by batch norm needs no bias: BN's beta is it).
"""

from __future__ import annotations

import numpy as np

from .. import nn

__all__ = ["lenet_bn", "convnet_check", "get_model", "canonical_name", "MODELS", "DEFAULT_MODEL"]


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
        nn.Dropout(0.3, rng=np.random.default_rng(rng.integers(2**63))),
        nn.Linear(16, num_classes, rng=rng))


# name -> (builder, input shape (C, H, W) it expects)
MODELS = {
    "lenet-bn": (lenet_bn, (1, 28, 28)),
    "convnet-check": (convnet_check, (1, 8, 8)),
}
DEFAULT_MODEL = "lenet-bn"


def canonical_name(name: str) -> str:
    """The registry name of a model: "default" means DEFAULT_MODEL. ValueError if unknown."""
    name = DEFAULT_MODEL if name == "default" else name
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return name


def get_model(name: str = DEFAULT_MODEL, *, num_classes: int = 10, in_channels: int | None = None,
              rng=None) -> nn.Module:
    """Build a named model. Raises ``ValueError`` listing the names for an unknown one."""
    builder, shape = MODELS[canonical_name(name)]
    return builder(num_classes, shape[0] if in_channels is None else in_channels, rng=rng)
