"""Modules: layers that hold parameters and call the kernels of ``cnnkit.functional``."""

from .module import Module, Parameter, build

__all__ = ["Module", "Parameter", "build"]
