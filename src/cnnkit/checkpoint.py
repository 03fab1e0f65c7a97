"""Checkpoints: one ``.npz`` file holding the arrays and a JSON document, written atomically.

Layout of a checkpoint file (a plain NumPy ``.npz``, read with ``allow_pickle=False``):

    __meta__.json          uint8 array: UTF-8 JSON {"format", "version", "model": <config>, ...}
    model/<name>           the model's state dict (PyTorch's names: 0.weight, 1.running_mean, ...)
    <section>/<path>       every other array, referenced from the JSON as {"__array__": key}

The JSON holds the architecture (``Module.config()``), so :func:`load_model` rebuilds the network
without the code that built it. Optimizer, schedule and trainer state are nested dicts whose
arrays are stored beside the JSON. A write goes to a temporary file in the same folder, is
flushed to disk and then renamed over the target, so a crash never leaves a half-written
checkpoint where a good one was.

This module sits below :mod:`cnnkit.weights` (which reads a checkpoint's model state as one
more weights format); scripts import these names from :mod:`cnnkit.io`, the facade over both.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._atomic import atomic_write_bytes
from ._npz import NpzReadError, is_npy_file, read_npz
from .errors import CnnkitError
from .files import regular_file
from .nn.module import Module, build, shapes_only

__all__ = ["CheckpointError", "Checkpoint", "save_checkpoint", "load_checkpoint", "load_model"]

FORMAT, VERSION = "cnnkit-checkpoint", 1
# a checkpoint's metadata flag: weights imported from a file that does not say how its net's
# inputs were normalised (`cnnkit import` without --mean/--std); predict and evaluate refuse it
UNKNOWN_NORMALISATION = "normalisation_unknown"
_META = "__meta__.json"


class CheckpointError(CnnkitError, ValueError):
    """A checkpoint file is missing, corrupt, or not a cnnkit checkpoint."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    model_config: dict
    model_state: dict
    optimizer: dict | None = None
    scheduler: dict | None = None
    extra: dict = field(default_factory=dict)
    path: Path | None = None

    def build_model(self) -> Module:
        """The network, rebuilt from its config, with the saved weights and buffers (its layers
        are built without drawing weights the state then replaces)."""
        try:
            with shapes_only():
                model = build(self.model_config)
            model.load_state_dict(self.model_state)
        except (ValueError, RuntimeError) as err:
            raise CheckpointError(f"{self.path}: the saved model does not rebuild: {err}") from err
        return model


# ---------------------------------------------------------------------------- nested state

def _split_arrays(tree, prefix: str, arrays: dict):
    """Replace every ndarray in a nested dict/list by {"__array__": key}, collecting the arrays."""
    if isinstance(tree, np.ndarray):
        arrays[prefix] = tree
        return {"__array__": prefix}
    if isinstance(tree, dict):
        for k in tree:
            if not isinstance(k, str) or "/" in k:
                raise TypeError(f"checkpoint state keys must be strings without '/', got {k!r}")
        return {k: _split_arrays(v, f"{prefix}/{k}", arrays) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split_arrays(v, f"{prefix}/{i}", arrays) for i, v in enumerate(tree)]
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def _references(tree, path):
    """The array keys a nested dict/list names as {"__array__": key}."""
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            if not isinstance(tree["__array__"], str):
                raise CheckpointError(f"{path}: an array reference {tree['__array__']!r} is not "
                                      f"a name")
            yield tree["__array__"]
        else:
            for value in tree.values():
                yield from _references(value, path)
    elif isinstance(tree, list):
        for value in tree:
            yield from _references(value, path)


def _join_arrays(tree, arrays, path):
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            key = tree["__array__"]
            if key not in arrays:
                raise CheckpointError(f"{path}: array {key!r} named in the metadata is missing")
            return arrays[key]
        return {k: _join_arrays(v, arrays, path) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join_arrays(v, arrays, path) for v in tree]
    return tree


# ---------------------------------------------------------------------------- save / load

def save_checkpoint(path, model: Module, *, optimizer=None, scheduler=None,
                    extra: dict | None = None) -> Path:
    """Write the model (architecture + state dict), optimizer and schedule state and ``extra``
    (any JSON-able nested dict, whose ndarrays are stored as arrays) to ``path`` atomically.

    ``optimizer`` and ``scheduler`` are objects with ``state_dict()`` (or already such dicts).
    """
    arrays = {f"model/{k}": np.asarray(v) for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "version": VERSION, "model": model.config(),
            "model_keys": list(model.state_dict())}
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None:
            state = obj if isinstance(obj, dict) else obj.state_dict()
            meta[name] = _split_arrays(state, name, arrays)
    meta["extra"] = _split_arrays(extra or {}, "extra", arrays)
    arrays[_META] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    return atomic_write_bytes(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (never unpickles anything).

    Raises
    ------
    CheckpointError
        If the file is missing, not a regular file (a folder, a FIFO, a device: looked at, never
        opened), unreadable, not an ``.npz``, or lacks cnnkit's metadata or an array it names;
        the message names the file.
    """
    path = regular_file(path, "checkpoint", error=CheckpointError)
    try:
        meta_bytes = read_npz(path, [_META]).get(_META)
    except NpzReadError as err:
        if zipfile.is_zipfile(path):
            raise CheckpointError(f"{path} is not a readable cnnkit checkpoint: {err}") from err
        kind = ("a single array (.npy), not an .npz archive"
                if is_npy_file(path) else "corrupt or not an .npz file")
        raise CheckpointError(f"{path} is not a readable cnnkit checkpoint ({kind})") from err
    if meta_bytes is None:
        raise CheckpointError(f"{path} is an .npz file but not a cnnkit checkpoint (no {_META})")
    try:
        meta = json.loads(meta_bytes.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise CheckpointError(f"{path}: the checkpoint's metadata is corrupt: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT \
            or not isinstance(meta.get("model"), dict):
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path} is not a cnnkit checkpoint (format {found!r})")
    version = meta.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: the checkpoint's version is {version!r}, not a number")
    if version > VERSION:
        raise CheckpointError(f"{path} was written by a newer cnnkit (checkpoint version "
                              f"{meta['version']}, this one reads up to {VERSION})")
    _check_structure(meta, path)
    keys = meta.get("model_keys", [])
    referenced = [f"model/{k}" for k in keys] + [
        key for section in ("optimizer", "scheduler", "extra")
        for key in _references(meta.get(section), path)]
    try:   # only the arrays the metadata names are read, each checked against the budget first
        arrays = read_npz(path, referenced)
    except NpzReadError as err:
        raise CheckpointError(f"{path} is not a readable cnnkit checkpoint: {err}") from err
    missing = [k for k in keys if f"model/{k}" not in arrays]
    if missing:
        raise CheckpointError(f"{path}: model arrays missing from the file: {missing}")
    state = {k: arrays[f"model/{k}"] for k in keys}
    return Checkpoint(
        model_config=meta["model"], model_state=state,
        optimizer=_join_arrays(meta.get("optimizer"), arrays, path),
        scheduler=_join_arrays(meta.get("scheduler"), arrays, path),
        extra=_join_arrays(meta.get("extra", {}), arrays, path), path=path)


def _check_structure(meta: dict, path) -> None:
    """The JSON's sections have the types the rest of cnnkit relies on, or CheckpointError."""
    keys = meta.get("model_keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CheckpointError(f"{path}: the checkpoint's model_keys is not a list of names")
    for section in ("optimizer", "scheduler"):
        if not isinstance(meta.get(section), (dict, type(None))):
            raise CheckpointError(f"{path}: the checkpoint's {section} state is a "
                                  f"{type(meta[section]).__name__}, not a dict")
    extra = meta.get("extra", {})
    if not isinstance(extra, dict):
        raise CheckpointError(f"{path}: the checkpoint's extra state is a "
                              f"{type(extra).__name__}, not a dict")
    for section in ("metadata", "trainer"):
        if not isinstance(extra.get(section, {}), dict):
            raise CheckpointError(f"{path}: the checkpoint's {section} is a "
                                  f"{type(extra[section]).__name__}, not a dict")
    settings = extra.get("metadata", {}).get("settings", {})
    if not isinstance(settings, dict):
        raise CheckpointError(f"{path}: the checkpoint's run settings are a "
                              f"{type(settings).__name__}, not a dict")


def load_model(path) -> Module:
    """The network saved in a checkpoint, rebuilt and loaded, in eval mode."""
    return load_checkpoint(path).build_model().eval()

