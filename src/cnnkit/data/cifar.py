"""CIFAR-10 batch files, both distributed versions, read without downloading anything.

Binary version (``cifar-10-batches-bin/data_batch_1.bin`` ...): records of 3073 bytes, one after
another, nothing else in the file:

    byte 0          the label, 0..9
    bytes 1..3072   the image: 1024 red, then 1024 green, then 1024 blue values, each channel
                    32 x 32 in row-major order, so a record's pixels reshape to (3, 32, 32)

Python version (``cifar-10-batches-py/data_batch_1`` ...): a pickled dict with ``b"data"``, a
(N, 3072) uint8 array in the same pixel order, and ``b"labels"``, a list of N ints (written by
Python 2, hence bytes keys; str keys are accepted too). A pickle can run any code it names, so it
is read by :class:`RestrictedUnpickler`, which resolves only the globals that rebuild a NumPy
array; any other global (``os.system``, ``builtins.eval``, ...) raises :class:`DataError` before
anything is called.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np

from ..files import regular_file
from .errors import DataError
from .source import Dataset, from_arrays, register_source

__all__ = ["read_cifar10_binary", "read_cifar10_python", "load_cifar10", "open_cifar10",
           "RestrictedUnpickler", "CIFAR10_CLASSES"]

#: CIFAR-10's class names, in the order of its labels 0 to 9.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
_RECORD = 1 + 3 * 32 * 32  # 3073 bytes: label, then the (3, 32, 32) image

try:  # NumPy >= 2 (1.26 also has the alias, for reading NumPy 2 pickles)
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - NumPy < 1.26
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer


def _latin1_encode(text, encoding):
    """``_codecs.encode`` for the one use pickle makes of it: bytes written by protocol 2."""
    # compare names rather than call codecs.lookup, which would import a module named by the file
    latin1 = isinstance(encoding, str) and encoding.lower().replace("-", "").replace("_", "") \
        in ("latin1", "iso88591")
    if not isinstance(text, str) or not latin1:
        raise pickle.UnpicklingError(f"_codecs.encode admitted for latin-1 text only, got "
                                     f"({type(text).__name__}, {encoding!r})")
    return codecs.encode(text, "latin-1")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that admits the globals NumPy arrays are pickled with, and nothing else.

    Admitted (both module spellings, NumPy 1 ``numpy.core`` and NumPy 2 ``numpy._core``):
    ``multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype`` (protocols 0-4, and
    Python 2's pickles), ``numeric._frombuffer`` (how protocol 5 writes an array), and
    ``_codecs.encode`` restricted to latin-1 (how protocol 2 writes ``bytes`` from Python 3).
    None of these can run code or touch files. Dicts, lists, ints and strings need no global.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }

    def __init__(self, file, path="<pickle>"):
        # encoding="bytes": Python 2's str (the keys and the array buffers) loads as bytes
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module, name):
        """The global a pickle names, only when it is one of ``ALLOWED`` (NumPy's array
        reconstruction); any other is a DataError, never imported."""
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"{self.path}: refused to unpickle the global {module}.{name}: a "
                            f"CIFAR-10 batch needs only NumPy's array reconstruction") from None


def _check_labels(labels: np.ndarray, path) -> np.ndarray:
    """int64 labels, each in 0..9."""
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{path}: label {labels[i]} of example {i} is not a CIFAR-10 class 0..9 "
                        f"({bad.size} such labels)")
    return labels.astype(np.int64)


def read_cifar10_binary(path):
    """Read a CIFAR-10 binary batch (``data_batch_1.bin``, ``test_batch.bin``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    images : (N, 3, 32, 32) uint8, channels R, G, B
    labels : (N,) int64 in 0..9

    Raises
    ------
    DataError
        If the file is empty or its length is not a multiple of 3073 bytes (the message gives
        the length and the remainder; CIFAR-100's 3074-byte records land here), or a label is
        10 or more.
    FileNotFoundError
        If there is no such file.
    NotRegularFile
        If ``path`` is a folder, a FIFO, a device or a socket (looked at, never opened).
    """
    with open(regular_file(path, "CIFAR-10 batch"), "rb") as f:
        raw = f.read()
    if not raw or len(raw) % _RECORD:
        raise DataError(f"{path}: {len(raw)} bytes is not a whole number of {_RECORD}-byte "
                        f"CIFAR-10 records (1 label byte + 3072 pixel bytes); "
                        f"{len(raw) // _RECORD} records and {len(raw) % _RECORD} bytes over")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _RECORD)  # (N, 3073)
    labels = _check_labels(records[:, 0], path)
    images = records[:, 1:].reshape(-1, 3, 32, 32).copy()  # (N, 3072) -> (N, C, H, W)
    return images, labels


def _get(batch: dict, key: str, path):
    """batch[b"key"] or batch["key"]."""
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise DataError(f"{path}: the pickled dict has no {key!r} entry (keys: "
                    f"{sorted(map(repr, batch))})")


def read_cifar10_python(path):
    """Read a CIFAR-10 python-version batch (``data_batch_1``, ``test_batch``), safely.

    The pickle is loaded by :class:`RestrictedUnpickler`: nothing in the file can run code.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    images : (N, 3, 32, 32) uint8, channels R, G, B
    labels : (N,) int64 in 0..9

    Raises
    ------
    DataError
        If the pickle names any global but NumPy's array reconstruction (the message names the
        global), is corrupt or truncated, is not a dict with ``data`` (an (N, 3072) uint8 array,
        N >= 1) and ``labels`` (N integers in 0..9), under bytes or str keys.
    FileNotFoundError
        If there is no such file.
    NotRegularFile
        If ``path`` is a folder, a FIFO, a device or a socket (looked at, never opened).
    """
    with open(regular_file(path, "CIFAR-10 batch"), "rb") as f:
        try:
            batch = RestrictedUnpickler(f, path).load()
        except DataError:
            raise
        except Exception as err:  # a corrupt pickle can fail in many ways; report them all alike
            raise DataError(f"{path}: not a readable pickle: {type(err).__name__}: {err}") from err
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(batch).__name__}")
    data, labels = _get(batch, "data", path), _get(batch, "labels", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072 or data.shape[0] == 0:
        what = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise DataError(f"{path}: 'data' must be an (N, 3072) uint8 array with N >= 1, "
                        f"found {what}")
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError) as err:
        raise DataError(f"{path}: 'labels' is not a list of integers: {err}") from err
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{path}: 'labels' must be a list of integers, found {labels.dtype} "
                        f"of shape {labels.shape}")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    images = data.reshape(-1, 3, 32, 32).copy()  # (N, 3072) -> (N, C, H, W)
    return images, _check_labels(labels, path)


def _find(root: Path, name: str):
    """(path, reader) of batch ``name``: ``name.bin`` (binary) or ``name`` (python version).
    Whatever is there is found, a FIFO or a folder too, for its reader to refuse by name."""
    for folder in (root, root / "cifar-10-batches-bin", root / "cifar-10-batches-py"):
        if (folder / f"{name}.bin").exists():
            return folder / f"{name}.bin", read_cifar10_binary
        if (folder / name).exists():
            return folder / name, read_cifar10_python
    raise FileNotFoundError(f"{root}: no CIFAR-10 batch {name!r} ({name}.bin or {name}, looked "
                            f"in the folder and in cifar-10-batches-bin/ and cifar-10-batches-py/)")


def load_cifar10(root, split: str = "train"):
    """Load a CIFAR-10 split from the batch files in ``root`` (either version, no download).

    ``train`` reads ``data_batch_1`` to ``data_batch_5``, ``test`` reads ``test_batch``; each as
    ``NAME.bin`` (binary version) or ``NAME`` (python version), in ``root`` itself or in its
    ``cifar-10-batches-bin/`` or ``cifar-10-batches-py/`` subfolder (where the archives unpack).

    Parameters
    ----------
    root : str or os.PathLike
    split : "train" or "test"

    Returns
    -------
    images : (N, 3, 32, 32) uint8 (50000 for the full train split, 10000 for test)
    labels : (N,) int64 in 0..9, see ``CIFAR10_CLASSES`` for the names

    Raises
    ------
    ValueError
        If ``split`` is neither "train" nor "test".
    FileNotFoundError
        If a batch file is missing (the message says which and where it looked).
    DataError
        If a batch file fails the checks of its reader.
    """
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    if split not in names:
        raise ValueError(f"load_cifar10: split must be 'train' or 'test', got {split!r}")
    parts = [reader(path) for path, reader in (_find(Path(root), n) for n in names[split])]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


@register_source("cifar10", needs_argument=True, usage="cifar10:DIR")
def open_cifar10(argument: str, **options) -> Dataset:
    """CIFAR-10 from a local copy in folder ``argument`` (binary or python version, found by
    :func:`load_cifar10`) as a :class:`Dataset`: 50,000 training and 10,000 test 3x32x32 images,
    the ten class names, random crops (zero padding 4) and flips as the default augmentation."""
    root = Path(argument).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (cifar10:DIR names the folder of the "
                                f"CIFAR-10 batch files)")
    x, y = load_cifar10(root, "train")
    x_test, y_test = load_cifar10(root, "test")
    return from_arrays(f"cifar10:{root}", f"CIFAR-10 ({root})", CIFAR10_CLASSES, x, y,
                       x_test, y_test, default_augment="crop,flip")
