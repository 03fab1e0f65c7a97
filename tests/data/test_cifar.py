"""CIFAR-10 readers on tiny files written here: both formats, bad files, and hostile pickles."""

import builtins
import os
import pickle
import subprocess

import numpy as np
import pytest

from cnnkit.data import DataError, load_cifar10, read_cifar10_binary, read_cifar10_python


def _batch(rng, n):
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    return images, rng.integers(0, 10, n).astype(np.int64)


def _write_binary(path, images, labels):
    records = np.concatenate([np.asarray(labels, np.uint8)[:, None],
                              images.reshape(len(images), -1)], axis=1)  # (N, 3073)
    path.write_bytes(records.tobytes())
    return path


def _write_python(path, images, labels, protocol=4, keys=bytes, **extra):
    key = (lambda k: k.encode()) if keys is bytes else (lambda k: k)
    batch = {key("batch_label"): key("testing batch 1 of 1"),
             key("data"): images.reshape(len(images), 3072),
             key("labels"): [int(v) for v in labels],
             key("filenames"): [key(f"img_{i}.png") for i in range(len(images))]}
    batch.update(extra)
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    return path


def test_binary_round_trip(tmp_path, rng):
    images, labels = _batch(rng, 5)
    out_images, out_labels = read_cifar10_binary(_write_binary(tmp_path / "b.bin", images, labels))
    assert out_images.shape == (5, 3, 32, 32) and out_images.dtype == np.uint8
    assert out_labels.dtype == np.int64 and out_images.flags.writeable
    np.testing.assert_array_equal(out_images, images)
    np.testing.assert_array_equal(out_labels, labels)


def test_binary_pixel_order_is_red_green_blue_planes(tmp_path):
    # one record by hand: label 7, then 1024 red bytes, 1024 green, 1024 blue (row-major)
    red = np.arange(1024) % 256
    record = bytes([7]) + bytes(red.tolist()) + bytes([100] * 1024) + bytes([200] * 1024)
    path = tmp_path / "one.bin"
    path.write_bytes(record)
    images, labels = read_cifar10_binary(path)
    assert labels.tolist() == [7]
    np.testing.assert_array_equal(images[0, 0], red.reshape(32, 32))
    assert (images[0, 1] == 100).all() and (images[0, 2] == 200).all()
    assert images[0, 0, 1, 0] == 32  # row-major: pixel (1, 0) is the 33rd red byte


@pytest.mark.parametrize("keys", [bytes, str], ids=["bytes-keys", "str-keys"])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_python_round_trip(tmp_path, rng, protocol, keys):
    images, labels = _batch(rng, 4)
    path = _write_python(tmp_path / "data_batch_1", images, labels, protocol, keys)
    out_images, out_labels = read_cifar10_python(path)
    assert out_images.shape == (4, 3, 32, 32) and out_labels.dtype == np.int64
    np.testing.assert_array_equal(out_images, images)
    np.testing.assert_array_equal(out_labels, labels)


def test_both_formats_agree(tmp_path, rng):
    images, labels = _batch(rng, 3)
    a = read_cifar10_binary(_write_binary(tmp_path / "b.bin", images, labels))
    b = read_cifar10_python(_write_python(tmp_path / "b", images, labels))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


# ---------------------------------------------------------------------------- hostile pickles

class _Payload:
    """Unpickling this calls ``func(*args)``: what a hostile 'data batch' would do."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _hostile(marker):
    return {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "builtins.eval": _Payload(builtins.eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.call": _Payload(subprocess.call, ["touch", str(marker)]),
        "builtins.open": _Payload(builtins.open, str(marker), "w"),
    }


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.call", "builtins.open"])
@pytest.mark.parametrize("nested", [False, True], ids=["top", "inside-batch"])
def test_hostile_pickle_is_refused_without_running(tmp_path, rng, name, nested):
    marker = tmp_path / "pwned"
    payload = _hostile(marker)[name]
    path = tmp_path / "data_batch_1"
    if nested:  # a valid-looking batch with the payload in an extra entry
        images, labels = _batch(rng, 2)
        _write_python(path, images, labels, evil=payload)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(DataError, match="refused to unpickle the global") as err:
        read_cifar10_python(path)
    assert name.split(".")[1] in str(err.value) and str(path) in str(err.value)
    assert not marker.exists()
    # control: the payload is live; an ordinary unpickler runs it
    obj = pickle.loads(path.read_bytes())
    if hasattr(obj, "close"):
        obj.close()
    assert marker.exists()


@pytest.mark.parametrize("codec", ["rot_13", "utf_16", "cp1252"])
def test_codecs_encode_admitted_for_latin1_only(tmp_path, rng, codec):
    # protocol 2 writes bytes as _codecs.encode(text, "latin1"); any other codec is refused
    images, labels = _batch(rng, 1)
    data = pickle.dumps({b"data": images.reshape(1, -1), b"labels": [1]}, protocol=2)
    assert b"latin1" in data
    path = tmp_path / "b"
    path.write_bytes(data.replace(b"latin1", codec.encode()))  # same length: still a valid pickle
    with pytest.raises(DataError, match=f"{path}.*latin-1"):
        read_cifar10_python(path)


# ---------------------------------------------------------------------------- bad files

@pytest.mark.parametrize("size", [0, 3072, 3073 * 2 + 5, 3074 * 2], ids=lambda s: f"{s}B")
def test_binary_bad_length(tmp_path, size):
    path = tmp_path / "b.bin"
    path.write_bytes(bytes(size))
    with pytest.raises(DataError, match=f"{path}.*{size} bytes.*3073"):
        read_cifar10_binary(path)


def test_binary_bad_label(tmp_path, rng):
    images, labels = _batch(rng, 4)
    labels[2] = 10
    path = _write_binary(tmp_path / "b.bin", images, labels)
    with pytest.raises(DataError, match=f"{path}.*label 10 of example 2"):
        read_cifar10_binary(path)


@pytest.mark.parametrize("bad", [10, -1, 255])
def test_python_bad_label(tmp_path, rng, bad):
    images, labels = _batch(rng, 3)
    labels[1] = bad
    path = _write_python(tmp_path / "b", images, labels)
    with pytest.raises(DataError, match=f"{path}.*label {bad} of example 1"):
        read_cifar10_python(path)


@pytest.mark.parametrize("what, batch", [
    ("not a dict", [1, 2, 3]),
    ("no labels", {b"data": np.zeros((2, 3072), np.uint8)}),
    ("no data", {b"labels": [1, 2]}),
    ("wrong width", {b"data": np.zeros((2, 3000), np.uint8), b"labels": [1, 2]}),
    ("float data", {b"data": np.zeros((2, 3072), np.float32), b"labels": [1, 2]}),
    ("1-D data", {b"data": np.zeros(3072, np.uint8), b"labels": [1]}),
    ("empty", {b"data": np.zeros((0, 3072), np.uint8), b"labels": []}),
    ("count mismatch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2, 3]}),
    ("float labels", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1.0, 2.0]}),
    ("str labels", {b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]}),
])
def test_python_bad_content(tmp_path, what, batch):
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps(batch, protocol=4))
    with pytest.raises(DataError, match=str(path)):
        read_cifar10_python(path)


def test_python_corrupt_or_truncated(tmp_path, rng):
    images, labels = _batch(rng, 2)
    data = _write_python(tmp_path / "good", images, labels).read_bytes()
    path = tmp_path / "b"
    for broken in (data[: len(data) // 2], b"\x80\x04garbage", b""):
        path.write_bytes(broken)
        with pytest.raises(DataError, match=f"{path}.*not a readable pickle"):
            read_cifar10_python(path)


# ---------------------------------------------------------------------------- load_cifar10

def test_load_cifar10_binary_folder(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    parts = [_batch(rng, n) for n in (2, 3, 1, 2, 2)]
    for i, (images, labels) in enumerate(parts, 1):
        _write_binary(folder / f"data_batch_{i}.bin", images, labels)
    test_images, test_labels = _batch(rng, 3)
    _write_binary(folder / "test_batch.bin", test_images, test_labels)
    images, labels = load_cifar10(tmp_path, "train")
    np.testing.assert_array_equal(images, np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(labels, np.concatenate([p[1] for p in parts]))
    images, labels = load_cifar10(folder, split="test")
    np.testing.assert_array_equal(images, test_images)
    np.testing.assert_array_equal(labels, test_labels)


def test_load_cifar10_python_folder(tmp_path, rng):
    parts = [_batch(rng, 2) for _ in range(5)]
    for i, (images, labels) in enumerate(parts, 1):
        _write_python(tmp_path / f"data_batch_{i}", images, labels)
    images, labels = load_cifar10(tmp_path)
    assert images.shape == (10, 3, 32, 32) and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, np.concatenate([p[1] for p in parts]))


def test_load_cifar10_missing_batch_and_bad_split(tmp_path, rng):
    images, labels = _batch(rng, 1)
    for i in (1, 2, 4, 5):
        _write_binary(tmp_path / f"data_batch_{i}.bin", images, labels)
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_cifar10(tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_cifar10(tmp_path, "val")
