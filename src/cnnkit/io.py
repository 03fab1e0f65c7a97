"""Saving and loading in one place: cnnkit's checkpoints and weights in other frameworks' files.

Checkpoints (:mod:`cnnkit.checkpoint`): one ``.npz`` file holding a model's architecture and
state dict, optimizer and schedule state and any JSON-able extra state, written atomically and
read without unpickling: :func:`save_checkpoint`, :func:`load_checkpoint` (a
:class:`Checkpoint`), :func:`load_model`; every failure to read one is a
:class:`CheckpointError`.

Weights in other frameworks' files (:mod:`cnnkit.weights`): :func:`save_safetensors` /
:func:`load_safetensors` (a model's state dict under PyTorch's names, loadable by
``safetensors.torch``) and :func:`load_torch_state_dict` (the arrays of a PyTorch
``.pt``/``.pth``/``.bin`` file, read without torch and without unpickling).

:func:`atomic_write_bytes` / :func:`atomic_write_text` write any other file the way a checkpoint
is written: to a temporary file in the same folder, flushed, then renamed over the target.
"""

from __future__ import annotations

from ._atomic import atomic_write_bytes, atomic_write_text
from .checkpoint import (Checkpoint, CheckpointError, load_checkpoint, load_model,
                         save_checkpoint)
from .weights.transfer import load_safetensors, save_safetensors

__all__ = ["CheckpointError", "Checkpoint", "save_checkpoint", "load_checkpoint", "load_model",
           "atomic_write_bytes", "atomic_write_text", "save_safetensors", "load_safetensors",
           "load_torch_state_dict"]


def load_torch_state_dict(path) -> dict:
    """``{name: ndarray}`` of the state dict in a PyTorch ``.pt``/``.pth``/``.bin`` file (zip or
    legacy format), read without torch and without unpickling arbitrary objects; see
    :func:`cnnkit.weights.torchfile.load_torch_state_dict`."""
    # the PyTorch-file reader loads on first use, as in cnnkit.weights: it keeps `import
    # cnnkit.io` cheap, and cnnkit.io imports whatever state that reader is in
    from .weights.torchfile import load_torch_state_dict as load

    return load(path)
