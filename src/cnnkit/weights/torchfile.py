"""A PyTorch state dict (``torch.save``) read without torch, unpickling nothing but tensors.

Two layouts, both written by ``torch.save(obj, path)``:

Zip (torch >= 1.6, the default): a zip archive, members stored uncompressed, all in one folder
(named after the file's stem, or ``archive``)::

    <root>/data.pkl             the object, pickled (protocol 2 unless the writer chose another);
                                each tensor's storage is a persistent id
                                ('storage', <storage type>, <key>, <location>, <numel>)
    <root>/data/<key>           the storage's raw bytes: numel elements of its type
    <root>/byteorder            "little" or "big" (files without it are little-endian)
    <root>/version, .format_version, .storage_alignment, .data/serialization_id   (not needed)

Legacy (``_use_new_zipfile_serialization=False``; torch < 1.6): pickles one after another in a
plain file: the magic number 0x1950a86a20f9469cfc6c, the protocol version 1001, a dict of system
information, the object (persistent ids ('storage', <storage type>, <key>, <location>, <numel>,
<view>), where <view> is None or, in files of torch < 1.0, (<view key>, <offset>, <numel>), a
part of the storage), the list of storage keys; then for each key in that order an int64 element
count and the storage's raw bytes, both little-endian whatever the machine that wrote them.

In the object pickle a tensor is the call ``torch._utils._rebuild_tensor_v2(storage,
storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`` (offset, size and
stride in elements; ``_rebuild_tensor`` in older files, ``_rebuild_tensor_v3`` with a dtype and an
untyped storage for the dtypes without a storage type, such as uint16); a Parameter wraps it in
``_rebuild_parameter``; a state dict is a ``collections.OrderedDict`` whose ``_metadata``
attribute (the modules' versions) comes as a BUILD state, which is ignored.

Why so little is admitted: unpickling calls whatever a pickle names (``os.system``,
``builtins.eval``, ``subprocess.Popen``, the callable any class's ``__reduce__`` returns) with
arguments the pickle chooses, so a ``.pt`` file from elsewhere is a program. Like
``torch.load(weights_only=True)``, the unpickler here admits only the names a state dict or a
training checkpoint needs -- OrderedDict, the tensor and Parameter rebuild functions, the storage
types, dtypes, ``torch.Size``, ``torch.device``, and the builtins protocol 2 spells as calls (set,
frozenset, complex, bytearray, ``_codecs.encode`` for bytes) -- and maps each to a stand-in of its
own that checks its arguments and records what the pickle asked for (a storage key, an offset, a
shape); nothing is imported, and nothing named in the file is called. Any other name is refused
with ``refuses to unpickle <module>.<name>``. Before the unpickler runs, the pickle's opcodes are
read once (``pickletools``) and refused when they build objects by other routes (INST, OBJ,
NEWOBJ, EXT*, out-of-band buffers), name a global outside the list, store to memo indices far past
those used (the C unpickler would allocate a table that large) or nest tuples deeper than 64
(hashing such a tuple recurses in C until the stack overflows); so a refused file runs nothing,
and the unpickler only ever sees bytes whose declared lengths the scan found present.

Tensors become NumPy arrays: the dtype from the storage type (float32/64/16, int64/32/16/8,
uint8, bool; uint16/32/64 from ``_rebuild_tensor_v3``); bfloat16 becomes float32 (its 16 bits
shifted left by 16: the top half of a float32, so exactly); shape, strides and offset as saved,
each checked against the storage's length before any view is made (a shape of at most 32
dimensions, :data:`~cnnkit.weights.limits.MAX_DIMS`, counted before its sizes are read); each
array a fresh C-contiguous copy in native byte order, except a view that repeats its elements
along an axis (stride 0, ``torch.expand``): as torch loads it, a read-only broadcast of a copy of
its distinct elements, since a file of kilobytes can describe gigabytes of them. Only the
storages of the returned state dict are read (a checkpoint's optimizer state is not), each
against the memory budget (:func:`cnnkit.budget.check_bytes`) and against the size its zip
member declares; and before any is read, each array's size against the budget, then all of them
with their storages.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..budget import BudgetError, check_bytes
from ..files import regular_file
from .errors import WeightsError
from .limits import MAX_DIMS, shape_problem, shape_text

__all__ = ["TorchFileError", "load_torch_state_dict", "STATE_DICT_KEYS"]

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
# where a training checkpoint keeps the model's state dict, looked for in this order
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "state")
_MAX_TUPLE_DEPTH = 64
_MEMO_SLACK = 1024
_REFUSAL = "only tensors and containers are loaded (as torch.load(weights_only=True))"
_DATA_PKL = re.compile(r"[^/]+/data\.pkl")

# torch dtype name -> (the stored element as a NumPy code, the array's dtype)
_DTYPES = {"float32": ("f4", np.float32), "float64": ("f8", np.float64),
           "float16": ("f2", np.float16), "bfloat16": ("u2", np.float32),
           "int64": ("i8", np.int64), "int32": ("i4", np.int32), "int16": ("i2", np.int16),
           "int8": ("i1", np.int8), "uint8": ("u1", np.uint8), "bool": ("u1", np.bool_),
           "uint16": ("u2", np.uint16), "uint32": ("u4", np.uint32), "uint64": ("u8", np.uint64)}
_STORAGES = {"FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
             "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
             "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
             "BoolStorage": "bool"}


class TorchFileError(WeightsError):
    """A PyTorch file is missing, corrupt, not a state dict, or asks to unpickle something other
    than tensors and containers. The message is one line naming the file."""


class _Refused(pickle.UnpicklingError):
    """Why the file is refused; :func:`load_torch_state_dict` puts the path in front."""


def _clean(text, limit: int = 80) -> str:
    """``text`` on one line (unprintable characters escaped), cut to ``limit`` characters."""
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(text))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _itemsize(dtype: str) -> int:
    return int(_DTYPES[dtype][0][1:])


# ---------------------------------------------------------------------------- stand-ins

class _Inert:
    """Base of the stand-ins: no instance dict, and a BUILD opcode on one is refused (so the
    pickle can neither set attributes on them nor replace what they hold)."""

    __slots__ = ()

    def __setstate__(self, state):
        raise _Refused(f"the pickle sets the state of {self!r}, which torch.save never writes")


class _Global(_Inert):
    """An admitted global: ``func``, a function of this module that checks its arguments."""

    __slots__ = ("name", "func")

    def __init__(self, name: str, func):
        self.name, self.func = name, func

    def __repr__(self):
        return self.name

    def __call__(self, *args):
        try:
            return self.func(*args)
        except TypeError as err:
            raise _Refused(f"{self.name} is called with arguments torch.save does not write "
                           f"({_clean(err)})") from None


class _Marker(_Inert):
    """An admitted global that is never called: a storage type, a dtype, a tensor class."""

    __slots__ = ("name", "kind", "dtype")

    def __init__(self, name: str, kind: str, dtype: str | None = None):
        self.name, self.kind, self.dtype = name, kind, dtype

    def __repr__(self):
        return self.name

    def __call__(self, *args):
        raise _Refused(f"the pickle calls {self.name}, which torch.save never does")


class _Storage(_Inert):
    """A storage named by a persistent id: the archive key of the whole storage, its element
    type and count, and the bytes [start, start + nbytes) of it this object covers (the whole,
    or a part for the views of torch < 1.0)."""

    __slots__ = ("key", "dtype", "numel", "start", "nbytes")

    def __init__(self, key, dtype, numel, start, nbytes):
        self.key, self.dtype, self.numel, self.start, self.nbytes = key, dtype, numel, start, nbytes

    def __repr__(self):
        return f"storage {self.key!r}"

    @property
    def root_nbytes(self) -> int:
        return self.numel * _itemsize(self.dtype)


class _Tensor(_Inert):
    """A tensor the pickle rebuilds: where its elements lie in a storage (checked in bounds)."""

    __slots__ = ("storage", "dtype", "offset", "shape", "strides", "neg")

    def __init__(self, storage, dtype, offset, shape, strides, neg):
        self.storage, self.dtype, self.offset = storage, dtype, offset
        self.shape, self.strides, self.neg = shape, strides, neg

    def __repr__(self):
        return f"a tensor of {self.storage!r}"


class _StateDict(dict):
    """collections.OrderedDict's stand-in (a dict keeps its order). The BUILD state PyTorch
    attaches to a state dict (``_metadata``, the modules' versions) is ignored; with no instance
    dict, nothing the pickle sets can shadow a method."""

    __slots__ = ()

    def __setstate__(self, state):
        pass


def _is_int(x) -> bool:
    return type(x) is int


def _text(x, what: str) -> str:
    if type(x) is bytes:
        return x.decode("ascii")
    if type(x) is not str:
        raise _Refused(f"{what} is {_kind(x)}, not a string")
    return x


def _shape(x, dtype: str) -> tuple:
    """A tensor's size as a shape: at most MAX_DIMS sizes (counted before any is read), each a
    non-negative integer, spanning no more bytes than an array can."""
    if type(x) not in (tuple, list):
        raise _Refused(f"a tensor's size is {_kind(x)}, not a sequence of non-negative integers")
    problem = shape_problem(x, _itemsize(dtype))
    if problem:
        raise _Refused(f"a tensor's size {shape_text(x)} {problem}")
    return tuple(x)


def _strides(x) -> tuple:
    """A tensor's strides: at most MAX_DIMS (counted first), each a non-negative integer."""
    if type(x) in (tuple, list) and len(x) > MAX_DIMS:
        raise _Refused(f"a tensor's stride has {len(x):,} dimensions, more than {MAX_DIMS}")
    if type(x) not in (tuple, list) or not all(_is_int(v) and v >= 0 for v in x):
        raise _Refused("a tensor's stride is not a sequence of non-negative integers")
    return tuple(x)


def _tensor(storage, dtype, offset, size, stride, metadata=None) -> _Tensor:
    """The tensor ``size``/``stride``/``offset`` (elements of ``dtype``, None: the storage's
    type) describe in ``storage``, refused unless every element it reaches lies inside it."""
    if type(storage) is not _Storage:
        raise _Refused(f"a tensor's storage is {_kind(storage)}, not a storage")
    dtype = dtype or storage.dtype
    if not _is_int(offset) or offset < 0:
        raise _Refused(f"a tensor's storage offset is {_short(offset)}, not an index")
    shape, strides = _shape(size, dtype), _strides(stride)
    if len(shape) != len(strides):
        raise _Refused(f"a tensor has size {shape} but stride {strides}")
    neg = False
    if metadata is not None:   # the conj and neg bits of a view (neg: the stored values negated)
        if type(metadata) not in (dict, _StateDict) or any(
                k not in ("neg", "conj") or type(v) is not bool for k, v in metadata.items()):
            raise _Refused("a tensor's metadata is not the conj/neg bits torch.save writes")
        neg = metadata.get("neg", False)
        if neg and dtype == "bool":
            raise _Refused("a bool tensor is saved negated")
    count = storage.nbytes // _itemsize(dtype)
    if math.prod(shape) == 0:
        last, inside = offset, offset <= count
    else:
        last = offset + sum((n - 1) * s for n, s in zip(shape, strides))
        inside = last < count
    if not inside:
        raise _Refused(f"a tensor of size {shape}, stride {strides} and offset {offset} reaches "
                       f"element {last:,} of {storage!r}, which holds {count:,} {dtype}")
    return _Tensor(storage, dtype, offset, shape, strides, neg)


def _flags(requires_grad, backward_hooks):
    if type(requires_grad) is not bool or not isinstance(backward_hooks, (dict, type(None))):
        raise TypeError("requires_grad or backward_hooks is of the wrong type")


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _tensor(storage, None, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       metadata=None):
    _flags(requires_grad, backward_hooks)
    return _tensor(storage, None, storage_offset, size, stride, metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    _flags(requires_grad, backward_hooks)
    if type(dtype) is not _Marker or dtype.kind != "dtype":
        raise _Refused(f"_rebuild_tensor_v3's dtype is {_kind(dtype)}, not a torch dtype")
    return _tensor(storage, dtype.dtype, storage_offset, size, stride, metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    _flags(requires_grad, backward_hooks)
    if type(data) is not _Tensor:
        raise _Refused(f"a Parameter holds {_kind(data)}, not a tensor")
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _rebuild_from_type_v2(func, new_type, args, state):
    """A tensor with Python attributes (ignored): ``func(*args)``, func a rebuild function."""
    if type(func) is not _Global or func.func not in _TENSOR_FUNCS \
            or type(new_type) is not _Marker or new_type.kind != "tensor class" \
            or type(args) is not tuple:
        raise _Refused("_rebuild_from_type_v2 is called with arguments torch.save does not "
                       "write")
    result = func(*args)
    if type(result) is not _Tensor:
        raise _Refused(f"_rebuild_from_type_v2 makes {_kind(result)}, not a tensor")
    return result


def _ordered_dict(*items):
    if len(items) > 1:
        raise TypeError("OrderedDict takes at most one argument")
    if items and type(items[0]) not in (list, tuple, dict, _StateDict):
        raise TypeError("OrderedDict's argument is not a list of pairs")
    return _StateDict(*items)


def _size(items=()):
    if type(items) not in (tuple, list) or not all(_is_int(v) for v in items):
        raise TypeError("torch.Size's argument is not a sequence of integers")
    return tuple(items)


def _device(kind, index=None):
    if type(kind) is not str or not (index is None or _is_int(index)):
        raise TypeError("torch.device's arguments are not a name and an index")
    return kind if index is None else f"{kind}:{index}"


def _collection(kind):
    def make(items=()):
        if type(items) not in (list, tuple):
            raise TypeError(f"{kind.__name__}'s argument is not a list")
        return kind(items)
    return make


def _complex(real=0.0, imag=0.0):
    if not all(type(x) in (int, float) for x in (real, imag)):
        raise TypeError("complex's arguments are not numbers")
    return complex(real, imag)


def _encode(text, encoding="utf-8"):
    """``_codecs.encode``, as protocol 2 pickles bytes: (str, "latin1")."""
    if type(text) is not str or encoding not in ("latin1", "latin-1", "utf-8", "ascii"):
        raise TypeError("_codecs.encode is called on something other than text")
    return text.encode(encoding)


def _bytearray(data=b"", encoding=None):
    # never bytearray(n): a number would allocate n bytes
    if encoding is None and type(data) is bytes:
        return bytearray(data)
    if type(data) is str and encoding in ("latin1", "latin-1", "utf-8", "ascii"):
        return bytearray(data, encoding)
    raise TypeError("bytearray is called on something other than bytes")


def _admitted() -> dict:
    """(module, name) -> stand-in, for every global a state dict or checkpoint needs."""
    table = {}
    for module in ("torch", "torch.cuda"):
        for name, dtype in _STORAGES.items():
            table[module, name] = _Marker(f"{module}.{name}", "storage", dtype)
    for module in ("torch", "torch.storage"):
        table[module, "UntypedStorage"] = _Marker(f"{module}.UntypedStorage", "storage", "uint8")
    for dtype in _DTYPES:
        table["torch", dtype] = _Marker(f"torch.{dtype}", "dtype", dtype)
    for module, name in (("torch", "Tensor"), ("torch.nn.parameter", "Parameter"),
                         ("torch.nn", "Parameter")):
        table[module, name] = _Marker(f"{module}.{name}", "tensor class")
    functions = {("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
                 ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
                 ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
                 ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
                 ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
                 ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
                 ("collections", "OrderedDict"): _ordered_dict,
                 ("torch", "Size"): _size, ("torch", "device"): _device,
                 ("builtins", "set"): _collection(set),
                 ("builtins", "frozenset"): _collection(frozenset),
                 ("builtins", "complex"): _complex, ("builtins", "bytearray"): _bytearray,
                 ("_codecs", "encode"): _encode}
    for (module, name), func in functions.items():
        table[module, name] = _Global(f"{module}.{name}", func)
    return table


_TENSOR_FUNCS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter,
                 _rebuild_parameter_with_state)
_ADMITTED = _admitted()
_RENAMED = {"__builtin__": "builtins"}   # protocol 2 writes Python 2's module names


def _admitted_global(module: str, name: str):
    """The stand-in for ``module.name``, or :class:`_Refused`: nothing is looked up anywhere
    but in the table."""
    found = _ADMITTED.get((_RENAMED.get(module, module), name))
    if found is None:
        hint = ("; the file holds a whole pickled model, which only its code can rebuild: save "
                "model.state_dict() instead" if module.startswith("torch.nn.") else "")
        raise _Refused(f"refuses to unpickle {_clean(module)}.{_clean(name)}: {_REFUSAL}{hint}")
    return found


# ---------------------------------------------------------------------------- the pickle

_SAFE_OPCODES = frozenset("""
    PROTO FRAME STOP MARK POP POP_MARK DUP INT BININT BININT1 BININT2 LONG LONG1 LONG4 STRING
    BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8 UNICODE BINUNICODE
    SHORT_BINUNICODE BINUNICODE8 NONE NEWTRUE NEWFALSE FLOAT BINFLOAT EMPTY_LIST APPEND APPENDS
    LIST EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_DICT DICT SETITEM SETITEMS EMPTY_SET
    ADDITEMS FROZENSET GET BINGET LONG_BINGET PUT BINPUT LONG_BINPUT MEMOIZE GLOBAL STACK_GLOBAL
    REDUCE BUILD BINPERSID""".split())
_TUPLE_N = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


def _scan(stream, persistent: bool) -> None:
    """Read one pickle's opcodes from ``stream`` (up to and including STOP) without building
    anything, and refuse it (:class:`_Refused`) for an opcode outside :data:`_SAFE_OPCODES`, a
    global outside the admitted list, a persistent id where none belongs, a memo index far
    past those stored, or a tuple nested deeper than 64. The stack is simulated as the C
    unpickler keeps it (each item: the depth of tuples it is, 0 for anything else), so what it
    would build is known before it runs."""
    stack: list[int] = []
    marks: list[int] = []
    memo: dict[int, int] = {}

    def corrupt(name, pos, why="underflows the stack"):
        return _Refused(f"corrupt pickle: {name} at byte {pos} {why}")

    def pop(n, name, pos):
        if len(stack) - (marks[-1] if marks else 0) < n:
            raise corrupt(name, pos)
        items = stack[len(stack) - n:]
        del stack[len(stack) - n:]
        return items

    def pop_mark(name, pos):
        if not marks:
            raise corrupt(name, pos, "has no MARK")
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        return items

    def top(name, pos):
        if len(stack) <= (marks[-1] if marks else 0):
            raise corrupt(name, pos)
        return stack[-1]

    def tuple_of(items, pos):
        depth = 1 + max(items, default=0)
        if depth > _MAX_TUPLE_DEPTH:
            raise _Refused(f"the pickle nests tuples more than {_MAX_TUPLE_DEPTH} deep (at byte "
                           f"{pos}); refused, as hashing them would overflow the stack")
        return depth

    for opcode, arg, pos in pickletools.genops(stream):
        name = opcode.name
        if name not in _SAFE_OPCODES:
            raise _Refused(f"refuses the pickle opcode {name} (at byte {pos}): {_REFUSAL}")
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            pop(1, name, pos)
            return
        if name == "MARK":
            marks.append(len(stack))
        elif name == "GLOBAL":
            module, _, attr = arg.partition(" ")
            _admitted_global(module, attr)
            stack.append(0)
        elif name == "EMPTY_TUPLE":
            stack.append(1)
        elif name == "TUPLE":
            stack.append(tuple_of(pop_mark(name, pos), pos))
        elif name in _TUPLE_N:
            stack.append(tuple_of(pop(_TUPLE_N[name], name, pos), pos))
        elif name in ("LIST", "DICT", "FROZENSET"):
            pop_mark(name, pos)
            stack.append(0)
        elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
            pop_mark(name, pos)
            top(name, pos)
        elif name in ("APPEND", "SETITEM", "BUILD"):
            pop(2 if name == "SETITEM" else 1, name, pos)
            top(name, pos)
        elif name == "POP":
            if marks and marks[-1] == len(stack):
                marks.pop()
            else:
                pop(1, name, pos)
        elif name == "POP_MARK":
            pop_mark(name, pos)
        elif name == "DUP":
            stack.append(top(name, pos))
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in memo:
                raise corrupt(name, pos, f"reads memo entry {arg}, never stored")
            stack.append(memo[arg])
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            index = len(memo) if name == "MEMOIZE" else arg
            if index < 0 or index > len(memo) + _MEMO_SLACK:
                raise corrupt(name, pos, f"stores memo entry {index:,} with {len(memo):,} stored")
            memo[index] = top(name, pos)
        elif name in ("REDUCE", "STACK_GLOBAL"):
            pop(2, name, pos)
            stack.append(1 if name == "REDUCE" else 0)   # torch.Size: a tuple of ints
        elif name == "BINPERSID":
            if not persistent:
                raise corrupt(name, pos, "is a persistent id outside the object's pickle")
            pop(1, name, pos)
            stack.append(0)
        else:   # the opcodes that push one constant or empty container
            stack.append(0)


class _Unpickler(pickle.Unpickler):
    """The restricted unpickler: globals from the admitted table only, persistent ids only for
    tensor storages (registered in ``storages``: key -> (dtype, numel))."""

    def __init__(self, file, storages: dict | None, legacy: bool):
        super().__init__(file, encoding="utf-8")
        self._storages = storages
        self._legacy = legacy

    def find_class(self, module, name):
        return _admitted_global(module, name)

    def persistent_load(self, pid):
        fields = 6 if self._legacy else 5
        if self._storages is None or type(pid) is not tuple or len(pid) != fields \
                or pid[0] not in ("storage", b"storage"):
            what = f"a tuple of {len(pid)} items" if type(pid) is tuple else _kind(pid)
            raise _Refused(f"a persistent id is {what}, not a tensor storage")
        kind, key, numel = pid[1], _text(pid[2], "a storage key"), pid[4]
        _text(pid[3], "a storage's location")
        if type(kind) is not _Marker or kind.kind != "storage":
            what = kind.name if type(kind) in (_Marker, _Global) else _short(kind)
            raise _Refused(f"storage {key!r}'s type is {what}, not a storage type")
        if not _is_int(numel) or numel < 0:
            raise _Refused(f"storage {key!r}'s size is {_short(numel)}, not a count")
        declared = self._storages.setdefault(key, (kind.dtype, numel))
        if declared != (kind.dtype, numel):
            raise _Refused(f"storage {key!r} is declared twice, as {declared[1]:,} "
                           f"{declared[0]} and as {numel:,} {kind.dtype}")
        itemsize = _itemsize(kind.dtype)
        view = pid[5] if self._legacy else None
        if view is None:
            return _Storage(key, kind.dtype, numel, 0, numel * itemsize)
        if type(view) is not tuple or len(view) != 3 or not all(_is_int(v) for v in view[1:]) \
                or not 0 <= view[1] <= view[1] + view[2] <= numel or view[2] < 0:
            raise _Refused(f"storage {key!r} has a view {_short(view)} outside its "
                           f"{numel:,} elements")
        return _Storage(key, kind.dtype, numel, view[1] * itemsize, view[2] * itemsize)


class _Bounded:
    """A file read no further than its size: ``read(n)`` asks for at most what is left
    (pickletools and the C unpickler allocate the n a pickle declares before reading) and a line
    is at most 64 KiB (a pickle's text arguments are names and numbers). It keeps its own
    position, so that reading a pickle opcode by opcode does not ask the file each time."""

    def __init__(self, file, size: int):
        self.file, self.size, self.pos = file, size, file.tell()

    def read(self, n: int = -1) -> bytes:
        left = max(0, self.size - self.pos)
        data = self.file.read(left if n is None or n < 0 else min(n, left))
        self.pos += len(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        data = self.file.readline(65536)
        self.pos += len(data)
        return data

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = self.file.seek(offset, whence)
        return self.pos


def _unpickle(stream, storages: dict | None = None, legacy: bool = False):
    """The next pickle of a seekable ``stream``, scanned, then unpickled by :class:`_Unpickler`;
    the stream is left just past it."""
    start = stream.tell()
    try:
        _scan(stream, persistent=storages is not None)
    except ValueError as err:   # pickletools: an unknown opcode, an argument cut short
        raise _Refused(f"corrupt or truncated pickle ({_clean(err, 120)})") from None
    end = stream.tell()
    stream.seek(start)
    data = stream.read(end - start)
    return _Unpickler(io.BytesIO(data), storages, legacy).load()


# ---------------------------------------------------------------------------- what it holds

_KINDS = {dict: "a dict", _StateDict: "an OrderedDict", list: "a list", tuple: "a tuple",
          set: "a set", frozenset: "a frozenset", str: "a string", bytes: "bytes",
          bytearray: "a bytearray", int: "an int", float: "a float", bool: "a bool",
          complex: "a complex number", type(None): "None", _Tensor: "a tensor",
          _Storage: "a storage", _Global: "a function", _Marker: "a type"}


def _kind(obj) -> str:
    return _KINDS.get(type(obj), f"a {type(obj).__name__}")


def _short(obj) -> str:
    """A key or value for a message: its repr when short and plain, else its kind."""
    if type(obj) in (str, bytes, int, float, bool, type(None)):
        return _clean(repr(obj), 40)
    return _kind(obj)


def _state_dict(obj) -> dict:
    """The state dict in what the pickle holds: the top-level dict when all its values are
    tensors, else the first of :data:`STATE_DICT_KEYS` that holds such a dict."""
    if not isinstance(obj, dict):
        raise _Refused(f"holds {_kind(obj)}, not a state dict (a dict of names to tensors)")
    if all(type(v) is _Tensor for v in dict.values(obj)):
        return _named(obj, "the state dict")
    for key in STATE_DICT_KEYS:
        inner = dict.get(obj, key)
        if isinstance(inner, dict) and inner \
                and all(type(v) is _Tensor for v in dict.values(inner)):
            return _named(inner, f"the state dict under {key!r}")
    keys = [_clean(k, 40) if type(k) is str else _short(k) for k in list(dict.keys(obj))[:8]]
    more = f", ... ({len(obj)} in all)" if len(obj) > 8 else ""
    others = [(k, v) for k, v in dict.items(obj) if type(v) is not _Tensor]
    hint = ""
    if len(others) < len(obj):
        k, v = others[0]
        hint = f" (its {_short(k)} is {_kind(v)}, not a tensor)"
    raise _Refused(f"holds a dict with keys {', '.join(keys)}{more} but no state dict of "
                   f"tensors{hint}")


def _named(tensors: dict, label: str) -> dict:
    for key in dict.keys(tensors):
        if type(key) is not str:
            raise _Refused(f"{label} has a key {_short(key)}, not a name (a string)")
    return dict(dict.items(tensors))


# ---------------------------------------------------------------------------- the bytes

def _read_member(archive, info, archive_size: int, what: str, expected: int | None = None,
                 described: str = "") -> bytes:
    """A zip member's bytes, after checking its declared sizes against the archive's size,
    ``expected`` (when given) and the memory budget."""
    name = _clean(info.filename)
    if info.compress_size > archive_size:
        raise _Refused(f"member {name!r} declares {info.compress_size:,} bytes, more than the "
                       f"whole archive ({archive_size:,})")
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise _Refused(f"member {name!r} is stored uncompressed but declares {info.file_size:,} "
                       f"bytes and {info.compress_size:,} stored")
    if expected is not None and info.file_size != expected:
        raise _Refused(f"member {name!r} holds {info.file_size:,} bytes, but data.pkl declares "
                       f"{described} ({expected:,} bytes)")
    check_bytes(info.file_size, what)
    with archive.open(info) as stream:
        data = stream.read()
    if len(data) != info.file_size:
        raise _Refused(f"member {name!r} is truncated")
    return data


class _ZipStorages:
    """Storage bytes from ``<root>/data/<key>`` members."""

    def __init__(self, archive, root: str, size: int, where: str):
        self.archive, self.root, self.size, self.where = archive, root, size, where

    def read(self, storage: _Storage) -> bytes:
        name = f"{self.root}/data/{storage.key}"
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            raise _Refused(f"storage {storage.key!r} named in data.pkl is missing from the "
                           f"archive (no member {_clean(name)!r})") from None
        return _read_member(self.archive, info, self.size,
                            f"storage {storage.key!r} of {self.where}", storage.root_nbytes,
                            f"{storage.numel:,} {storage.dtype}")


class _LegacyStorages:
    """Storage bytes from the legacy file: key -> (offset, nbytes) found after the pickles."""

    def __init__(self, file, index: dict, where: str):
        self.file, self.index, self.where = file, index, where

    def read(self, storage: _Storage) -> bytes:
        if storage.key not in self.index:
            raise _Refused(f"storage {storage.key!r} named in the pickle is missing from the "
                           f"file's list of storages")
        offset, nbytes = self.index[storage.key]
        check_bytes(nbytes, f"storage {storage.key!r} of {self.where}")
        self.file.seek(offset)
        data = self.file.read(nbytes)
        if len(data) != nbytes:
            raise _Refused(f"storage {storage.key!r} is truncated")
        return data


def _stored_shape(t: _Tensor) -> tuple:
    """``t``'s shape with every axis it repeats (stride 0, as ``torch.expand`` makes) as 1: the
    shape of the distinct elements it holds."""
    return tuple(1 if s == 0 and n > 1 else n for n, s in zip(t.shape, t.strides))


def _array(t: _Tensor, raw: bytes, big: bool) -> np.ndarray:
    """A fresh C-contiguous native-order copy of the tensor ``t`` in ``raw`` (its storage's
    bytes, whose bounds :func:`_tensor` checked). A tensor that repeats its elements along an
    axis (stride 0) comes back as a read-only broadcast of a copy of its distinct elements, as
    torch itself loads it (a view): an 80 KB file of such views would otherwise take gigabytes
    before anything could tell it does not fit the net. ``np.array(a)`` makes it a copy."""
    code, out = _DTYPES[t.dtype]
    itemsize = _itemsize(t.dtype)
    stored = np.dtype(("<", ">")[big] + code)
    if math.prod(t.shape) == 0:
        return np.empty(t.shape, dtype=out)
    shape = _stored_shape(t)
    start = t.storage.start + t.offset * itemsize
    count = (t.storage.start + t.storage.nbytes - start) // itemsize
    base = np.frombuffer(raw, dtype=stored, count=count, offset=start)
    strides = tuple(s * itemsize if n > 1 else 0 for n, s in zip(shape, t.strides))
    view = np.lib.stride_tricks.as_strided(base, shape=shape, strides=strides, writeable=False)
    if t.dtype == "bfloat16":
        array = (np.array(view, dtype=np.uint32, order="C") << 16).view(np.float32)
    else:
        array = np.array(view, dtype=out, order="C", copy=True)   # bool: nonzero bytes -> True
    if t.neg:
        np.negative(array, out=array)
    return array if shape == t.shape else np.broadcast_to(array, t.shape)


def _arrays(state: dict, storages, big: bool, where: str) -> dict:
    """name -> ndarray for the state dict's tensors, reading each storage once (and dropping it
    after its last tensor), after checking against the memory budget what each array will
    take, then what all of them and their storages take, before anything is read or copied.

    A view whose stride is 0 repeats one stored element along that axis: only its distinct
    elements are copied (:func:`_array`), and they are what is counted; each tensor's own size
    is checked, and the message names the tensor and how few of its elements are stored."""
    uses: dict[str, int] = {}
    needed, largest = 0, (-1, "")
    for name, t in state.items():
        if t.storage.key not in uses:
            needed += t.storage.root_nbytes
        uses[t.storage.key] = uses.get(t.storage.key, 0) + 1
        nbytes = math.prod(_stored_shape(t)) * np.dtype(_DTYPES[t.dtype][1]).itemsize
        check_bytes(nbytes, f"tensor {_clean(repr(name), 80)} of {where} ({_described(t)})")
        needed += nbytes
        if nbytes > largest[0]:
            largest = (nbytes, name)
    if state:
        name = largest[1]
        check_bytes(needed, f"the {len(state):,} tensors of {where} and their storages (the "
                            f"largest, {_clean(repr(name), 80)}, {_described(state[name])})")
    cache: dict[str, bytes] = {}
    arrays = {}
    for name, t in state.items():
        key = t.storage.key
        if key not in cache:
            cache[key] = storages.read(t.storage)
        arrays[name] = _array(t, cache[key], big)
        uses[key] -= 1
        if not uses[key]:
            del cache[key]
    return arrays


def _described(t: _Tensor) -> str:
    """A tensor's dtype and shape for a message, and how many distinct stored elements it
    reads at most when that is fewer than it has (a view repeating them with stride 0)."""
    count = math.prod(t.shape)
    reached = math.prod(n for n, s in zip(t.shape, t.strides) if s or n <= 1)
    text = f"{t.dtype} of shape {shape_text(t.shape)}"
    if count and reached < count:
        text += f", a view of stride 0: {count:,} elements from at most {reached:,} stored"
    return text


# ---------------------------------------------------------------------------- the formats

def _load_zip(path: Path, size: int, where: str) -> dict:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError) as err:
        raise _Refused(f"is a corrupt or truncated zip archive ({_reason(err)})") from None
    with archive:
        infos = archive.infolist()
        pickles = [i for i in infos if _DATA_PKL.fullmatch(i.filename)]
        if not pickles:
            if any(i.filename.endswith(".npy") for i in infos):
                raise _Refused("is an .npz archive (NumPy arrays), not a PyTorch file")
            raise _Refused("is a zip archive without <folder>/data.pkl, not a PyTorch file")
        if len(pickles) > 1:
            raise _Refused(f"holds {len(pickles)} data.pkl members; a PyTorch file has one")
        root = pickles[0].filename[:-len("/data.pkl")]
        big = False
        if f"{root}/byteorder" in archive.namelist():
            order = _read_member(archive, archive.getinfo(f"{root}/byteorder"), size,
                                 f"the byte order of {where}")
            if order not in (b"little", b"big"):
                raise _Refused(f"the byte order is {_clean(order)}, not little or big")
            big = order == b"big"
        data = _read_member(archive, pickles[0], size, f"the pickle of {where}")
        storages: dict = {}
        obj = _unpickle(io.BytesIO(data), storages, legacy=False)
        return _arrays(_state_dict(obj), _ZipStorages(archive, root, size, where), big, where)


def _load_legacy(path: Path, size: int, where: str) -> dict:
    with open(path, "rb") as file:
        f = _Bounded(file, size)
        magic = _unpickle(f)
        if not _is_int(magic) or magic != MAGIC_NUMBER:
            raise _Refused("is a pickle, but not one torch.save writes (no PyTorch magic "
                           "number)")
        version = _unpickle(f)
        if version != PROTOCOL_VERSION:
            raise _Refused(f"is a legacy PyTorch file of protocol {_short(version)}, not "
                           f"{PROTOCOL_VERSION}")
        if not isinstance(_unpickle(f), dict):
            raise _Refused("is a legacy PyTorch file whose system information is not a dict")
        storages: dict = {}
        obj = _unpickle(f, storages, legacy=True)
        keys = _unpickle(f)
        if type(keys) is not list:
            raise _Refused(f"the list of storage keys is {_kind(keys)}")
        index, pos = {}, f.tell()
        for key in keys:
            key = _text(key, "a storage key")
            if key in index or key not in storages:
                raise _Refused(f"storage {key!r} is listed twice or never named in the pickle")
            dtype, numel = storages[key]
            f.seek(pos)
            head = f.read(8)
            if len(head) < 8:
                raise _Refused(f"the file ends before storage {key!r}")
            count = struct.unpack("<q", head)[0]
            if count != numel:
                raise _Refused(f"storage {key!r} holds {count:,} elements, but the pickle "
                               f"declares {numel:,} {dtype}")
            nbytes = numel * _itemsize(dtype)
            if pos + 8 + nbytes > size:
                raise _Refused(f"the file ends inside storage {key!r} ({nbytes:,} bytes at byte "
                               f"{pos + 8:,} of {size:,})")
            index[key] = (pos + 8, nbytes)
            pos += 8 + nbytes
        return _arrays(_state_dict(obj), _LegacyStorages(f, index, where), False, where)


def _guess(head: bytes) -> str:
    """What a file that is neither a zip nor a pickle seems to be."""
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array"
    if len(head) > 8 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < 100_000_000:
        return "it looks like a safetensors file"
    if head[257:262] == b"ustar":
        return "a tar archive: the format of torch < 0.4 is not read"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file"
    return "neither a zip archive nor a pickle"


_UNREADABLE = (pickle.UnpicklingError, EOFError, ValueError, struct.error, zipfile.BadZipFile,
               zlib.error, UnicodeError, RecursionError, LookupError, TypeError, AttributeError,
               ArithmeticError, MemoryError, OSError, RuntimeError)


def load_torch_state_dict(path) -> dict[str, np.ndarray]:
    """The state dict in a file ``torch.save`` wrote (zip or legacy format), as name -> ndarray
    in the file's order, read without torch and without unpickling anything but tensors and
    containers (see the module docstring).

    The file may hold the state dict itself (``model.state_dict()``, or a dict of Parameters or
    tensors) or a training checkpoint holding it under one of :data:`STATE_DICT_KEYS`
    (``{"epoch": 3, "model_state_dict": ..., "optimizer": ...}``); the rest of a checkpoint is
    unpickled (admitted containers and numbers only) but its tensors are not read. bfloat16
    arrays come back as float32 (exact: the 16 bits shifted left by 16).

    Raises
    ------
    TorchFileError
        If the file is missing, not a regular file (a folder, a FIFO, a device: looked at,
        never opened), of another format, truncated or corrupt, names a global other than a
        state dict's (``refuses to unpickle <module>.<name>``), describes
        a tensor outside its storage or a storage missing from the file, or holds no state dict
        of tensors with string keys. One line naming the file.
    BudgetError
        If the storages and arrays would not fit the memory budget.
    """
    path = Path(path)
    where = _clean(path, 300)
    regular_file(path, "PyTorch file", error=TorchFileError)     # a FIFO would hang the read
    try:
        info = path.stat()
        with open(path, "rb") as f:
            head = f.read(512)
        if not head:
            raise _Refused("is empty, not a PyTorch file")
        if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            return _load_zip(path, info.st_size, where)
        if head.startswith(b"\x80"):
            return _load_legacy(path, info.st_size, where)
        raise _Refused(f"is not a PyTorch file ({_guess(head)})")
    except (TorchFileError, BudgetError):
        raise
    except _Refused as err:
        raise TorchFileError(f"{where}: {_clean(err, 400)}") from err
    except _UNREADABLE as err:
        raise TorchFileError(f"{where}: not a readable PyTorch file ({_reason(err)})") from err


def _reason(err: BaseException) -> str:
    """An exception as a short line: its type, and its message when it has one."""
    text = str(err)
    return _clean(f"{type(err).__name__}: {text}" if text else type(err).__name__, 200)
