"""Architectures: the model zoo (``zoo``: the notes' case studies by name), the notes' pattern
notation (``spec``: ``INPUT[3x32x32] -> [CONV3-32 -> RELU]*2 -> POOL2 -> FC-10``), and the blocks
both are made of (``blocks``: ResNet's basic block, GoogLeNet's inception module).

``build_model(name_or_spec)`` takes either, as every ``cnnkit`` command that takes a MODEL does.
"""

from . import spec
from .blocks import basic_block, conv_unit, inception
from .spec import SpecError
from .zoo import (DATA_DEFAULTS, DEFAULT_MODEL, MODELS, alexnet, build_model, canonical_name,
                  cifar_resnet, convnet_check, default_model_for, get_model, googlenet,
                  input_shape_of, is_checkpoint, lenet5, lenet_bn, model_names, resnet18,
                  resnet20, resolve_model, three_layer_convnet, vgg16, zfnet)

__all__ = ["DEFAULT_MODEL", "DATA_DEFAULTS", "default_model_for", "MODELS", "SpecError", "spec",
           "build_model", "resolve_model", "is_checkpoint", "get_model", "canonical_name",
           "input_shape_of", "model_names", "basic_block", "conv_unit",
           "inception", "lenet5", "lenet_bn", "three_layer_convnet", "alexnet", "zfnet", "vgg16",
           "googlenet", "resnet18", "resnet20", "cifar_resnet", "convnet_check"]
