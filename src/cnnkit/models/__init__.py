"""Architectures: named models (``get_model``) built from ``cnnkit.nn`` modules."""

from .zoo import DEFAULT_MODEL, MODELS, canonical_name, convnet_check, get_model, lenet_bn

__all__ = ["DEFAULT_MODEL", "MODELS", "canonical_name", "convnet_check", "get_model", "lenet_bn"]
