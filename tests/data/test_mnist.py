"""The shipped MNIST: it loads, it is the real database, and damaged copies are refused."""

import hashlib
import re
import shutil
from importlib import resources

import numpy as np
import pytest

from cnnkit.data import MNIST_MEAN, MNIST_STD, DataError, load_mnist, write_idx
from cnnkit.data.mnist import MNIST_FILES, SHA256

# From cnnkit/data/mnist/README.md, which matches the original database's counts
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
SHIPPED = resources.files("cnnkit.data") / "mnist"


@pytest.fixture(scope="module")
def train():
    return load_mnist("train")


@pytest.fixture(scope="module")
def test():
    return load_mnist("test")


def test_train_split(train):
    images, labels = train
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,) and labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == TRAIN_COUNTS


def test_test_split(test):
    images, labels = test
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == TEST_COUNTS


def test_images_look_like_digits(test):
    images, _ = test
    assert images.min() == 0 and images.max() == 255
    # the digits are centred in a 20 x 20 box: background near the edges, ink in the middle
    for edge in (images[:, :2], images[:, -2:], images[:, :, :2], images[:, :, -2:]):
        assert edge.mean() < 2.0
    assert images[:, 10:18, 10:18].mean() > 60


def test_loaded_arrays_are_writable(test):
    images, labels = test
    assert images.flags.writeable and labels.flags.writeable


def test_mean_and_std_constants_match_the_data(train):
    images, _ = train
    # exact moments from the histogram of pixel values, without a 47M-element float array
    # (bincount in chunks: one call on all 47M pixels is ~10x slower, for its int64 copy)
    counts = sum(np.bincount(images[i:i + 5000].ravel(), minlength=256)
                 for i in range(0, len(images), 5000)).astype(np.float64)
    v = np.arange(256) / 255.0
    total = counts.sum()
    mean = (counts * v).sum() / total
    std = np.sqrt((counts * (v - mean) ** 2).sum() / total)
    assert abs(MNIST_MEAN - mean) < 1e-4 and abs(MNIST_STD - std) < 1e-4
    assert abs(MNIST_MEAN - 0.1307) < 1e-4 and abs(MNIST_STD - 0.3081) < 1e-4


def test_digest_table_matches_readme_and_files():
    readme = (SHIPPED / "README.md").read_text()
    table = dict(re.findall(r"\|\s*(\S+\.gz)\s*\|[^|]*\|\s*([0-9a-f]{64})\s*\|", readme))
    assert table == SHA256
    for name, digest in SHA256.items():
        assert hashlib.sha256((SHIPPED / name).read_bytes()).hexdigest() == digest, name


def _copy_split(dst, split):
    for name in MNIST_FILES[split]:
        shutil.copyfile(SHIPPED / name, dst / name)


def test_root_with_a_verified_copy(tmp_path, test):
    _copy_split(tmp_path, "test")
    images, labels = load_mnist("test", root=tmp_path)
    np.testing.assert_array_equal(images, test[0])
    np.testing.assert_array_equal(labels, test[1])


def test_tampered_copy_fails_the_checksum(tmp_path):
    _copy_split(tmp_path, "test")
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(DataError) as err:
        load_mnist("test", root=tmp_path)
    message = str(err.value)
    assert str(path) in message and SHA256[path.name] in message and actual in message


def _write_root(root, n_images, n_labels, rng, size=28, label_max=9):
    write_idx(root / "t10k-images-idx3-ubyte.gz",
              rng.integers(0, 256, (n_images, size, size), dtype=np.uint8))
    write_idx(root / "t10k-labels-idx1-ubyte.gz",
              rng.integers(0, label_max + 1, n_labels, dtype=np.uint8))


def test_own_root_without_verification(tmp_path, rng):
    _write_root(tmp_path, 6, 6, rng)
    with pytest.raises(DataError, match="sha256 mismatch"):
        load_mnist("test", root=tmp_path)
    images, labels = load_mnist("test", root=tmp_path, verify=False)
    assert images.shape == (6, 28, 28) and labels.shape == (6,) and labels.dtype == np.int64


def test_count_mismatch(tmp_path, rng):
    _write_root(tmp_path, 6, 5, rng)
    with pytest.raises(DataError, match="6 images.*5 labels"):
        load_mnist("test", root=tmp_path, verify=False)


def test_wrong_image_size(tmp_path, rng):
    _write_root(tmp_path, 4, 4, rng, size=32)
    with pytest.raises(DataError, match="32 x 32"):
        load_mnist("test", root=tmp_path, verify=False)


def test_label_out_of_range(tmp_path, rng):
    _write_root(tmp_path, 400, 400, rng, label_max=200)
    with pytest.raises(DataError, match="not a digit"):
        load_mnist("test", root=tmp_path, verify=False)


def test_files_swapped(tmp_path, rng):
    _write_root(tmp_path, 3, 3, rng)
    images, labels = tmp_path / "t10k-images-idx3-ubyte.gz", tmp_path / "t10k-labels-idx1-ubyte.gz"
    tmp = tmp_path / "tmp"
    images.rename(tmp), labels.rename(images), tmp.rename(labels)
    with pytest.raises(DataError, match=re.escape(str(images)) + ".*labels file"):
        load_mnist("test", root=tmp_path, verify=False)


def test_missing_file_and_bad_split(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist("test", root=tmp_path)
    with pytest.raises(ValueError, match="'validation'"):
        load_mnist("validation")
