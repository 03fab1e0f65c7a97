"""Weights in other frameworks' files: safetensors and PyTorch state dicts, in and out.

``safetensors`` reads and writes the safetensors format in NumPy alone (no ``safetensors``
package); ``torchfile`` reads the state dict of a PyTorch ``.pt``/``.pth``/``.bin`` file without
torch and without unpickling arbitrary objects; ``transfer`` pairs a file's arrays with a cnnkit
model's state dict (by name, or by position when the names differ, as torchvision's do) and
reports what is missing, unexpected or of another shape before anything in the model changes.

cnnkit's ``state_dict()`` names are PyTorch's for the same nesting (Sequential indices,
Residual's ``body``/``shortcut``), so a PyTorch twin of a cnnkit net shares its names and
shapes. Every failure raises :class:`WeightsError` (a ValueError), one line naming the file.
``torchfile``'s names (``load_torch_state_dict``, ``TorchFileError``) load on first use, so this
package imports without it.
"""

from __future__ import annotations

import importlib

from .errors import WeightsError
from .safetensors import read_safetensors, safetensors_header, write_safetensors
from .transfer import (Match, class_names, load_safetensors, load_weights, match_state,
                       read_weights, recorded_preprocessing, save_safetensors, weights_format)

__all__ = ["WeightsError", "read_safetensors", "safetensors_header", "write_safetensors",
           "Match", "match_state", "load_weights", "read_weights", "weights_format",
           "save_safetensors", "load_safetensors", "recorded_preprocessing",
           "class_names", "load_torch_state_dict", "TorchFileError"]

_LAZY = {"load_torch_state_dict": "torchfile", "TorchFileError": "torchfile"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
