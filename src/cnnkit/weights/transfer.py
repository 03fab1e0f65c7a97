"""Moving a state dict between a file (PyTorch's names) and a cnnkit model.

cnnkit's ``state_dict()`` names and shapes are PyTorch's for a PyTorch net of the same nesting
(Sequential indices, Residual's ``body``/``shortcut``), so a file saved from such a twin loads
by name. A net whose names differ but whose layers come in the same order (torchvision's
``resnet18``: ``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``, ..., ``fc.weight``
against cnnkit's ``0.weight``, ``1.*``, ``4.0.body.0.weight``, ..., ``14.weight``) loads by
position (``by="order"``): a PyTorch state dict lists each module's parameters, then its
buffers, then its children's, as cnnkit's does. The default, ``by="auto"``, pairs by name when
the file shares any name with the model, and by position only when it shares none and every
pair then agrees in shape (Keras' ``load_weights`` pairs by position too); the :class:`Match`
says which, and so does its :meth:`~Match.describe`.

:func:`match_state` pairs the file's arrays with the model's and says what is missing,
unexpected, of another shape or of a dtype that does not convert, before anything changes;
:func:`load_weights` reads a file by its content (safetensors, PyTorch zip or legacy pickle,
a cnnkit checkpoint, an ``.npz`` of arrays) and loads it only when everything fits.
:func:`save_safetensors` writes a model's state dict under PyTorch's names, with the
architecture in the metadata, so ``safetensors.torch.load_file`` feeds a PyTorch twin directly.
:func:`class_names` reads the class names an imported net's scores stand for (``cnnkit import
--classes`` or ``--classes-file``), checked against its number of scores.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._npz import NpzReadError, read_npz
from ..budget import BudgetError
from ..checkpoint import UNKNOWN_NORMALISATION, CheckpointError, load_checkpoint
from ..files import regular_file, shown
from ..finite import check_arrays
from ..nn.layers import Linear
from .errors import WeightsError
from .safetensors import MAX_HEADER_BYTES, read_safetensors, safetensors_header, write_safetensors

__all__ = ["Match", "match_state", "load_weights", "read_weights", "weights_format",
           "save_safetensors", "load_safetensors", "recorded_preprocessing", "class_names",
           "MAX_CLASSES_FILE_BYTES"]

BY = ("auto", "name", "order")
_LIST_LIMIT = 10            # entries per list in Match.problems()
_NBT = "num_batches_tracked"


# ---------------------------------------------------------------------------- the model's side

def _slots(model) -> dict[str, tuple[tuple, np.dtype, object]]:
    """``{name: (shape, dtype, owning module)}`` of the model's parameters and buffers, in
    ``state_dict()`` order, without copying anything (placeholders of :func:`shapes_only`
    included)."""
    return {name: (tuple(value.shape), value.dtype, module)       # a Parameter or an array
            for name, module, value in model.state_entries()}


def _is_step_count(name: str, slots: dict) -> bool:
    """A batch norm's ``num_batches_tracked``: files from PyTorch before 0.4.1 lack it, and
    PyTorch then keeps the module's own, as cnnkit does."""
    return name.rsplit(".", 1)[-1] == _NBT and hasattr(slots[name][2], "running_mean")


def _converts(file_dtype: np.dtype, model_dtype: np.dtype) -> bool:
    """Whether an array of ``file_dtype`` may be cast into a slot of ``model_dtype``: floats to
    floats (float64 into float32 is fine), integers to integers, bools to bools; never an
    integer into a float parameter (a sign of a wrong pairing) nor anything complex into a
    real slot."""
    fk, mk = file_dtype.kind, model_dtype.kind
    if mk == "f":
        return fk == "f"
    if mk in "iu":
        return fk in "iu"
    return fk == mk


def _last_linear(model):
    """(name, Linear) of the model's last Linear layer, or None."""
    found = None
    for name, m in model.named_modules():
        if isinstance(m, Linear):
            found = (name, m)
    return found


# ---------------------------------------------------------------------------- matching

@dataclass(repr=False)
class Match:
    """How a file's arrays pair with a model's state dict (what :func:`match_state` returns).

    Attributes
    ----------
    state : dict
        The arrays that fit, keyed by the model's names and cast to the model's dtypes (an
        array already of that dtype is the caller's own, not a copy): what
        ``model.load_state_dict(state, strict=False)`` takes.
    missing : list of str
        Model names the file has nothing for (by="order": the model's entries past the file's
        last).
    unexpected : list of str
        File names the model has no place for (by="order": the file's entries past the
        model's last).
    mismatched : list of (model name, file shape, model shape)
    wrong_dtype : list of (model name, file dtype, model dtype)
        Pairs whose dtypes do not convert (an integer array into a float parameter).
    by : "name" or "order"
    file_names : dict
        model name -> the file's name for it, for every pair (the same name by="name").
    source : str
        The file (or "the state dict"), for messages.
    num_classes : int or None
        When the only problem is the last Linear's output size: the file's (build the model
        with ``num_classes=`` that).
    file_count, model_count : int
        Arrays in the file and in the model.
    """

    state: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)
    wrong_dtype: list = field(default_factory=list)
    by: str = "name"
    file_names: dict = field(default_factory=dict)
    source: str = "the state dict"
    num_classes: int | None = None
    file_count: int = 0
    model_count: int = 0
    _file_keys: list = field(default_factory=list, repr=False)
    _sorted_names: bool = field(default=False, repr=False)
    _order_count: int = field(default=0, repr=False)    # the model's count by="order" uses

    @property
    def missing_keys(self) -> list:
        """``missing`` under the name of PyTorch's ``load_state_dict`` result."""
        return self.missing

    @property
    def unexpected_keys(self) -> list:
        """``unexpected`` under the name of PyTorch's ``load_state_dict`` result."""
        return self.unexpected

    @property
    def ok(self) -> bool:
        """Every model array has its file array, of the same shape and a dtype that converts,
        and the file has nothing else."""
        return not (self.missing or self.unexpected or self.mismatched or self.wrong_dtype)

    def fits(self, strict: bool = True) -> bool:
        """Whether :func:`load_weights` loads it: ``ok`` for strict; otherwise no shape or dtype
        mismatch (missing arrays keep the model's values, unexpected ones are ignored). By
        position the counts must agree even then: a pairing off by one entry is no pairing."""
        if strict or self.by == "order":
            return self.ok
        return not (self.mismatched or self.wrong_dtype)

    def __repr__(self) -> str:
        # a notebook shows the last expression's repr: the pairing, not every array it holds
        return f"<Match by {self.by}: {self.describe()}>"

    # -------------------------------------------------------------- messages
    def _pair(self, name: str) -> str:
        file_name = self.file_names.get(name, name)
        return name if file_name == name else f"the file's {file_name} (model: {name})"

    def describe(self) -> str:
        """One line: what fits, or the first of what does not, and what to do about it."""
        src = self.source
        if self.ok and self.by == "order" and any(k != v for k, v in self.file_names.items()):
            first = next(iter(self.file_names))
            return (f"{src}: all {self.model_count} arrays fit the model, paired by position "
                    f"(the file's {self.file_names[first]} is the model's {first}, and so on)")
        if self.ok:
            return f"{src}: all {self.model_count} arrays fit the model"
        if self.num_classes is not None:
            name, file_shape, model_shape = self.mismatched[0]
            return (f"{src}: the file's classifier has {self.num_classes} outputs; build the "
                    f"model with num_classes={self.num_classes} ({name}: {_shape(file_shape)} "
                    f"in the file, {_shape(model_shape)} in the model)")
        if self.by == "order":
            return f"{src}: " + self._describe_order()
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({_first(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({_first(self.unexpected)})")
        if self.mismatched:
            name, fs, ms = self.mismatched[0]
            parts.append(f"{len(self.mismatched)} of another shape (first {name}: {_shape(fs)} "
                         f"in the file, {_shape(ms)} in the model)")
        if self.wrong_dtype:
            name, fd, md = self.wrong_dtype[0]
            parts.append(f"{len(self.wrong_dtype)} of a dtype that does not convert (first "
                         f"{name}: {fd} in the file, {md} in the model)")
        return f"{src} does not fit the model: " + "; ".join(parts) + self._name_hint()

    def _describe_order(self) -> str:
        text = ""
        if self.file_count != self.model_count:
            text = (f"the file has {self.file_count} arrays and the model {self.model_count}; "
                    f"by=\"order\" pairs them one to one")
        if self.mismatched or self.wrong_dtype:
            names = list(self.file_names)
            bad = {n for n, _, _ in self.mismatched} | {n for n, _, _ in self.wrong_dtype}
            first = next(n for n in names if n in bad)
            entry = names.index(first)
            shape = next((x for x in self.mismatched if x[0] == first), None)
            if shape is not None:
                what = (f"the file's {self.file_names[first]} {_shape(shape[1])} pairs with the "
                        f"model's {first} {_shape(shape[2])}")
            else:
                _, fd, md = next(x for x in self.wrong_dtype if x[0] == first)
                what = (f"the file's {self.file_names[first]} ({fd}) pairs with the model's "
                        f"{first} ({md})")
            text += ("; " if text else "") + f"entry {entry} (counting from 0): {what}"
            if self._sorted_names:
                text += (" (the file's names are in alphabetical order, as safetensors' own "
                         "writer stores them, not the network's: match them by name, or save "
                         "the state dict as .pt)")
            elif self.file_count == self.model_count:
                text += " (the file's layers are not in the model's order)"
        return text

    def _name_hint(self) -> str:
        """What might make the names agree: a common prefix, or matching by position."""
        if not (self.missing and self.unexpected) or self.mismatched or self.wrong_dtype:
            return ""
        prefix = os.path.commonprefix(self.unexpected)
        prefix = prefix[:prefix.rfind(".") + 1]
        if prefix and not self.state and all(k.startswith(prefix) for k in self._file_keys):
            stripped = {k[len(prefix):] for k in self._file_keys}
            if set(self.missing) <= stripped:
                return (f" (every name in the file starts with {prefix!r}, saved from a "
                        f"wrapper such as DataParallel: strip it)")
        if not self.state and self.file_count == self._order_count:
            return (" (no name is shared, but the counts agree: if the file holds the same net "
                    "under other names, as torchvision's do, match by position: by=\"order\")")
        return ""

    def problems(self, limit: int = _LIST_LIMIT) -> str:
        """Every problem, a line each under a heading per kind, long lists cut at ``limit``
        ("... and N more"); the one-line :meth:`describe` first."""
        lines = [self.describe()]

        def section(title, items, fmt):
            if items:
                lines.append(f"{title} ({len(items)}):")
                lines.extend("  " + fmt(x) for x in items[:limit])
                if len(items) > limit:
                    lines.append(f"  ... and {len(items) - limit} more")

        section("missing from the file", self.missing, str)
        section("unexpected in the file", self.unexpected, str)
        section("shapes that differ", self.mismatched,
                lambda x: f"{self._pair(x[0])}: {_shape(x[1])} in the file, {_shape(x[2])} in "
                          f"the model")
        section("dtypes that do not convert", self.wrong_dtype,
                lambda x: f"{self._pair(x[0])}: {x[1]} in the file, {x[2]} in the model")
        return "\n".join(lines)


def _shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _first(names: list, count: int = 3) -> str:
    shown = ", ".join(names[:count])
    return shown + (", ..." if len(names) > count else "")


def match_state(model, state: dict, *, by: str = "auto") -> Match:
    """Pair the arrays of ``state`` (a file's, under its own names) with ``model``'s state dict.

    ``by="name"``: a file array goes to the model entry of the same name. A batch norm's
    ``num_batches_tracked`` the file lacks is not missing (PyTorch before 0.4.1 did not save
    it; the model keeps its own). ``by="order"``: the i-th file array goes to the i-th model
    entry, for nets whose names differ but whose layers come in the same order; the counts must
    agree (when the file has no ``num_batches_tracked``, by its count or its names, the model's
    are left out). Either way each pair must agree in shape, and its dtypes must convert
    (floats into floats, integers into integers); the arrays in ``Match.state`` are cast to the
    model's dtypes. ``by="auto"`` (the default) is by name when the file shares any name with
    the model, else by position when that pairs every array (``Match.by`` says which). Nothing
    in the model changes.

    Raises
    ------
    ValueError
        If ``by`` is not "auto", "name" or "order".
    TypeError
        If a key of ``state`` is not a string.
    """
    if by not in BY:
        raise ValueError(f"match_state: by must be one of {BY}, got {by!r}")
    if by == "auto":
        named = match_state(model, state, by="name")
        if named.state or not state:           # a shared name: the names decide
            return named
        ordered = match_state(model, state, by="order")
        return ordered if ordered.ok else named
    for key in state:
        if not isinstance(key, str):
            raise TypeError(f"match_state: state dict keys must be strings, got {key!r}")
    slots = _slots(model)
    file_keys = list(state)
    match = Match(by=by, file_count=len(file_keys), model_count=len(slots),
                  _file_keys=file_keys, _sorted_names=_alphabetical(state))
    model_keys = list(slots)
    without_counts = [k for k in model_keys if not _is_step_count(k, slots)]
    # the file has no step counts when its count says so, or, if the count fits neither, when
    # none of its names is one
    if len(file_keys) != len(model_keys) and (
            len(file_keys) == len(without_counts)
            or not any(k.rsplit(".", 1)[-1] == _NBT for k in file_keys)):
        model_keys = without_counts
    match._order_count = len(model_keys)
    if by == "name":
        pairs = [(k, k) for k in slots if k in state]
        match.missing = [k for k in slots if k not in state and not _is_step_count(k, slots)]
        match.unexpected = [k for k in file_keys if k not in slots]
    else:
        match.model_count = len(model_keys)
        n = min(len(model_keys), len(file_keys))
        pairs = list(zip(model_keys[:n], file_keys[:n]))
        match.missing, match.unexpected = model_keys[n:], file_keys[n:]
    for model_name, file_name in pairs:
        shape, dtype, _ = slots[model_name]
        value = np.asarray(state[file_name])
        match.file_names[model_name] = file_name
        if value.shape != shape:
            match.mismatched.append((model_name, value.shape, shape))
        elif not _converts(value.dtype, dtype):
            match.wrong_dtype.append((model_name, str(value.dtype), str(dtype)))
        else:
            match.state[model_name] = value.astype(dtype, copy=False)
    match.num_classes = _classifier_hint(model, match)
    return match


def _alphabetical(state: dict) -> bool:
    """Whether the names are in alphabetical order within each dtype, the dtypes one after the
    other: how safetensors' own writer orders a file (by dtype, then name), and so a sign that
    the network's order was lost."""
    if len(state) < 3:
        return False
    runs: list[tuple[str, list]] = []
    for key, value in state.items():
        dtype = str(np.asarray(value).dtype)
        if not runs or runs[-1][0] != dtype:
            runs.append((dtype, []))
        runs[-1][1].append(key)
    return len(runs) == len({d for d, _ in runs}) and all(k == sorted(k) for _, k in runs)


def _classifier_hint(model, match: Match) -> int | None:
    """K when the only problem is that the last Linear has K outputs in the file."""
    if match.missing or match.unexpected or match.wrong_dtype or not match.mismatched:
        return None
    last = _last_linear(model)
    if last is None:
        return None
    prefix = f"{last[0]}." if last[0] else ""
    names = {n for n, _, _ in match.mismatched}
    expected = {prefix + "weight"} | ({prefix + "bias"} if last[1].bias is not None else set())
    if not names <= expected or prefix + "weight" not in names:
        return None
    shapes = {n: fs for n, fs, _ in match.mismatched}
    w = shapes[prefix + "weight"]
    if len(w) != 2 or w[1] != last[1].in_features or w[0] < 1:
        return None
    if last[1].bias is not None and shapes.get(prefix + "bias", (w[0],)) != (w[0],):
        return None
    return int(w[0])


# ---------------------------------------------------------------------------- reading files

def weights_format(path) -> str:
    """What a weights file is, from its content (not its suffix): "safetensors", "torch-zip"
    (``torch.save``'s default), "torch-legacy" (``torch.save(...,
    _use_new_zipfile_serialization=False)``, a pickle), "checkpoint" (cnnkit's ``.npz``) or
    "npz" (a plain ``.npz`` of named arrays). A file whose content says nothing but whose
    suffix is ``.safetensors`` is "safetensors", so that the reader names what is wrong.

    Raises
    ------
    WeightsError
        If the file is missing, empty, not a regular file (a folder, a FIFO, a device), or of
        none of these kinds (naming what it looks like when that shows).
    """
    path = regular_file(path, "weights file", error=WeightsError)   # a FIFO would hang
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except OSError as err:
        raise WeightsError(f"{path}: cannot read: {err.strerror or err}") from None
    if not head:
        raise WeightsError(f"{path} is empty, not a weights file")
    if head.startswith(b"PK"):
        return _zip_kind(path)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch-legacy"
    if len(head) > 8:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= MAX_HEADER_BYTES and 8 + n <= size and head[8:9] == b"{":
            return "safetensors"
    if path.suffix.lower() == ".safetensors":
        return "safetensors"
    if head.startswith(b"\x93NUMPY"):
        what = "a single NumPy array (.npy), not a state dict"
    elif head.startswith(b"\x1f\x8b"):
        what = "gzip-compressed: decompress it first"
    else:
        what = f"of no format cnnkit reads (it starts with {head[:8]!r})"
    raise WeightsError(f"{path} is {what}; cnnkit reads .safetensors files, PyTorch state dicts "
                       f"(.pt, .pth, .bin) and cnnkit checkpoints (.npz)")


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise WeightsError(f"{path} starts like a zip archive (a PyTorch .pt or an .npz) but "
                           f"is not a readable one: {err}") from None
    if "__meta__.json.npy" in names:
        return "checkpoint"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "torch-zip"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    raise WeightsError(f"{path} is a zip archive holding neither a PyTorch state dict (no "
                       f"data.pkl) nor NumPy arrays ({len(names)} members, e.g. "
                       f"{', '.join(names[:3]) or 'none'})")


def read_weights(path) -> dict[str, np.ndarray]:
    """The arrays of a weights file under the file's own names and in its order, whatever its
    kind (:func:`weights_format`): a safetensors file, a PyTorch state dict (zip or legacy;
    read by :mod:`cnnkit.weights.torchfile`, never unpickled by Python), a cnnkit checkpoint
    (its model's state dict) or an ``.npz`` of arrays.

    Raises
    ------
    WeightsError
        One line naming the file, for every file that cannot be read as weights.
    BudgetError
        If the arrays would not fit the memory budget.
    """
    path = Path(path)
    kind = weights_format(path)
    if kind == "safetensors":
        return read_safetensors(path)[0]
    if kind in ("torch-zip", "torch-legacy"):
        # the PyTorch-file reader loads on first use (see the package docstring): it keeps
        # `import cnnkit.weights` cheap
        from .torchfile import load_torch_state_dict

        try:
            return load_torch_state_dict(path)
        except WeightsError:
            raise
        except ValueError as err:        # TorchFileError, one line naming the file
            if isinstance(err, BudgetError):
                raise
            message = str(err)
            raise WeightsError(message if str(path) in message else f"{path}: {message}") \
                from err
    if kind == "checkpoint":
        try:
            return load_checkpoint(path).model_state
        except CheckpointError as err:
            raise WeightsError(str(err)) from err
    try:
        return read_npz(path)
    except NpzReadError as err:
        raise WeightsError(str(err)) from err


# ---------------------------------------------------------------------------- loading

def _load(model, state: dict, source: str, by: str, strict: bool,
          allow_nonfinite: bool = False) -> Match:
    with np.errstate(over="ignore"):     # a double past float32's range: inf, named below
        match = match_state(model, state, by=by)
    match.source = source
    if not match.fits(strict):
        raise WeightsError(match.describe(), match)
    if not strict:
        empty = [k for k in match.missing if _is_placeholder(model, k)]
        if empty:
            raise WeightsError(f"{source}: the model was built without weights (shapes_only) "
                               f"and the file has nothing for {len(empty)} of them "
                               f"({_first(empty)}); they would stay without values", match)
    # what would be loaded, as the model's dtype holds it (1e300 is infinite in float32),
    # under the file's names
    check_arrays(((match.file_names.get(k, k), v) for k, v in match.state.items()), source,
                 allow=allow_nonfinite)
    model.load_state_dict(match.state, strict=False)
    return match


def _is_placeholder(model, name: str) -> bool:
    for p_name, p in model.named_parameters():
        if p_name == name:
            return p.is_placeholder
    return False


def load_weights(model, path, *, by: str = "auto", strict: bool = True,
                 allow_nonfinite: bool = False):
    """Load a weights file into ``model`` (in place) and return the :class:`Match`.

    The file's kind comes from its content (:func:`weights_format`): ``.safetensors``,
    PyTorch ``.pt``/``.pth``/``.bin`` (zip or legacy), a cnnkit checkpoint ``.npz`` (its
    model's state) or an ``.npz`` of named arrays. Arrays pair with the model's by name or by
    position (``by``; see :func:`match_state`) and are cast to the model's dtypes.

    With ``strict=True`` any missing, unexpected, mismatched or unconvertible array is an
    error; with ``strict=False`` what pairs is loaded, the model keeps its own values for the
    rest and the file's extras are ignored (shape and dtype mismatches are still errors, and
    by position the counts must still agree). Nothing in the model changes unless it loads.
    An array to be loaded that holds NaN or infinite values is refused too, unless
    ``allow_nonfinite``.

    Raises
    ------
    WeightsError
        One line naming the file: unreadable, or it does not fit (then ``err.match`` is the
        :class:`Match`; ``err.match.problems()`` lists everything). When the only problem is
        the classifier's size, the line says which ``num_classes`` the file has.
    NonFiniteError
        One line naming the file and its first array holding NaN or infinite values.
    """
    state = read_weights(path)
    return _load(model, state, str(path), by, strict, allow_nonfinite)


def load_safetensors(model, path, *, strict: bool = True, by: str = "auto",
                     allow_nonfinite: bool = False):
    """Load a safetensors file into ``model`` (in place): :func:`load_weights` for a file that
    must be safetensors whatever its content. Returns the :class:`Match`."""
    state, _ = read_safetensors(path)
    return _load(model, state, str(path), by, strict, allow_nonfinite)


def save_safetensors(model, path, *, metadata: dict | None = None) -> Path:
    """Write ``model.state_dict()`` to ``path`` as safetensors, atomically, under PyTorch's
    names and in the state dict's order, with the metadata ``{"format": "pt", "cnnkit.model":
    <the model's config() as JSON>}`` plus ``metadata`` (strings to strings). The file loads
    back with :func:`load_safetensors`, and ``safetensors.torch.load_file(path)`` gives the
    dict a PyTorch twin of the net takes in ``load_state_dict``. Returns the path.

    Raises
    ------
    RuntimeError
        If the model's weights are still placeholders (built with ``shapes_only``).
    TypeError
        If a metadata key or value is not a string.
    """
    meta = {"format": "pt", "cnnkit.model": json.dumps(model.config())}
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError(f"save_safetensors: metadata must map strings to strings, got "
                            f"{metadata!r:.200}")
        meta.update(metadata)
    return write_safetensors(path, model.state_dict(), meta)


def recorded_preprocessing(weights_file, shape: tuple) -> dict:
    """The class names and preprocessing a file exported by cnnkit records (`cnnkit export -o
    *.safetensors`), when it is for this input volume; else the mark that the normalisation
    is unknown, which predict and evaluate refuse rather than guess."""
    recorded = {}
    try:
        if weights_format(weights_file) == "safetensors":
            recorded = safetensors_header(weights_file)[1]
    except WeightsError:
        pass
    kept = {}
    try:
        preprocessing = json.loads(recorded.get("cnnkit.preprocessing", "null"))
        classes = json.loads(recorded.get("cnnkit.classes", "null"))
    except (json.JSONDecodeError, RecursionError):
        preprocessing = classes = None
    if isinstance(preprocessing, dict) and preprocessing.get("input_shape") == list(shape):
        kept.update(preprocessing)
    else:
        kept[UNKNOWN_NORMALISATION] = True
    if isinstance(classes, list) and all(isinstance(c, str) for c in classes):
        kept["classes"] = classes
    return kept


# ---------------------------------------------------------------------------- class names

#: A classes file larger than this is refused before it is read (16 MiB: a million names).
MAX_CLASSES_FILE_BYTES = 16 * 2**20


def class_names(count: int, *, text: str | None = None, path=None) -> list[str]:
    """The ``count`` class names of a net's scores, from ``text`` (names separated by commas,
    as ``--classes a,b,c`` gives them) or from the file ``path`` (UTF-8, one name per line, as
    ``--classes-file`` names it; a byte-order mark and a last newline are allowed). Spaces
    around each name are dropped; what is left must be a name: not empty, printable (no
    newline, tab or NUL), and said once.

    Raises
    ------
    WeightsError
        In one line naming the option or file and the first name at fault: not ``count``
        names, an empty, unprintable or repeated name, a file that is not UTF-8, or one larger
        than ``MAX_CLASSES_FILE_BYTES`` (16 MiB).
    FileNotFoundError, NotRegularFile
        For a classes file that is missing, or is a folder, FIFO, device or socket.
    """
    if (text is None) == (path is None):
        raise ValueError("give the class names as text or as a file, one of the two")
    if path is not None:
        what, sep = f"classes file {shown(path)}", "line"
        size = os.stat(regular_file(path, "classes file")).st_size
        if size > MAX_CLASSES_FILE_BYTES:
            raise WeightsError(f"{what}: {size:,} bytes; a classes file holds at most "
                               f"{MAX_CLASSES_FILE_BYTES // 2**20} MiB of names")
        raw = Path(path).read_bytes()[:MAX_CLASSES_FILE_BYTES + 1]   # it may have grown
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise WeightsError(f"{what}: not UTF-8 text (byte {err.start} is "
                               f"{raw[err.start]:#04x})") from None
        names = text.split("\n")
        if names and names[-1] == "":
            names.pop()                          # the newline that ends the last line
        names = [name[:-1] if name.endswith("\r") else name for name in names]
    else:
        what, sep = "--classes", "name"
        names = text.split(",")
    if len(names) != count:
        raise WeightsError(f"{what} gives {len(names):,} name{'s' if len(names) != 1 else ''}; "
                           f"the net gives {count:,} class scores")
    seen = {}
    for i, name in enumerate(names, 1):
        name = name.strip()
        if not name:
            raise WeightsError(f"{what}: {sep} {i} is empty; every class needs a name")
        if not name.isprintable():
            raise WeightsError(f"{what}: {sep} {i} ({shown(name)[:80]}) holds a character "
                               f"that is not printable (a newline, tab or NUL)")
        if name in seen:
            raise WeightsError(f"{what}: {name[:80]!r} is named twice ({sep}s {seen[name]} "
                               f"and {i})")
        seen[name] = i
    return list(seen)
