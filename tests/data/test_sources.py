"""Data sources: ``open_source`` and what each source (mnist, npz, folder, cifar10) answers.

Everything but the shipped MNIST is written here, small, into ``tmp_path``: .npz files, folders
of image files (every Pillow mode the folder source converts), and tiny CIFAR-10 batch folders in
both formats. Folder tests cache their decoded images under ``tmp_path`` (an autouse fixture sets
``CNNKIT_CACHE``), never in the user's cache.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

from cnnkit.data import (CIFAR10_CLASSES, MNIST_MEAN, MNIST_STD, DataError, decode_image,
                         image_to_array, open_source)

from .test_cifar import _batch, _write_binary, _write_python


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test's folder cache lives in its own tmp_path."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("CNNKIT_CACHE", str(folder))
    return folder


# ---------------------------------------------------------------------------- open_source

def test_unknown_source_lists_the_sources():
    with pytest.raises(ValueError, match="mnist, cifar10:DIR, folder:DIR, npz:FILE") as err:
        open_source("imagenet:/data")
    assert "imagenet" in str(err.value)


@pytest.mark.parametrize("text, match", [("folder", "needs a path"), ("folder:", "needs a path"),
                                         ("npz", "needs a path"), ("mnist:x", "takes no path")])
def test_missing_or_unwanted_argument(text, match):
    with pytest.raises(ValueError, match=match):
        open_source(text)


def test_bare_npz_path_means_npz(tmp_path, rng, monkeypatch):
    path = tmp_path / "digits.npz"
    x = rng.integers(0, 256, (6, 5, 5), dtype=np.uint8)
    np.savez(path, x=x, y=np.arange(6) % 2)
    monkeypatch.chdir(tmp_path)
    for text in (str(path), f"npz:{path}", "digits.npz", "./digits.npz"):
        dataset = open_source(text)
        assert dataset.source == f"npz:{path.resolve()}"
        np.testing.assert_array_equal(dataset.train.images[:], x[:, None])


# ---------------------------------------------------------------------------- mnist

@pytest.fixture(scope="module")
def mnist():
    return open_source("mnist")


def test_mnist(mnist):
    assert len(mnist.train) == 60000 and len(mnist.test) == 10000
    assert mnist.image_shape == (1, 28, 28)
    assert mnist.train.images.dtype == np.uint8 and mnist.test.images.dtype == np.uint8
    assert mnist.test.images.shape == (10000, 1, 28, 28)
    assert mnist.classes == tuple(str(d) for d in range(10)) and mnist.num_classes == 10
    assert mnist.default_augment == "crop:2"
    assert mnist.channel_stats() == ((MNIST_MEAN,), (MNIST_STD,))
    assert mnist.train.labels.dtype == np.int64
    assert set(np.unique(mnist.train.labels)) == set(range(10))
    mnist.check_trainable()


# ---------------------------------------------------------------------------- npz

def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _open_npz(path, **options):
    return open_source(f"npz:{path}", **options)


@pytest.mark.parametrize("layout", ["NHW", "NCHW", "NHWC"])
def test_npz_layouts(tmp_path, rng, layout):
    n, c, h, w = 5, (1 if layout == "NHW" else 3), 9, 7
    nchw = rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)
    x = {"NHW": nchw[:, 0], "NCHW": nchw, "NHWC": nchw.transpose(0, 2, 3, 1)}[layout]
    path = _npz(tmp_path / "d.npz", x=x, y=rng.integers(0, 3, n))
    dataset = _open_npz(path)
    assert dataset.image_shape == (c, h, w)
    out = dataset.train.images[:]
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, nchw)
    if layout == "NHWC":  # pixel by pixel: channel k of image i at (r, s) is x[i, r, s, k]
        i, r, s, k = 3, 2, 5, 1
        assert out[i, k, r, s] == x[i, r, s, k]


def test_npz_integer_images_in_range_become_uint8(tmp_path, rng):
    x = rng.integers(0, 256, (4, 6, 6)).astype(np.int32)
    x[0, 0, 0], x[1, 0, 0] = 0, 255
    dataset = _open_npz(_npz(tmp_path / "d.npz", x=x, y=[0, 1, 0, 1]))
    out = dataset.train.images[:]
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 0], x)


def test_npz_integer_images_out_of_range(tmp_path, rng):
    x = rng.integers(0, 256, (4, 6, 6)).astype(np.int32)
    x[2, 3, 1] = 300
    path = _npz(tmp_path / "d.npz", x=x, y=[0, 1, 0, 1])
    with pytest.raises(DataError, match="0..255") as err:
        _open_npz(path)
    assert str(path) in str(err.value) and "300" in str(err.value)


def test_npz_float_images_kept_as_float32(tmp_path, rng):
    x = rng.random((4, 2, 5, 5)).astype(np.float32)
    dataset = _open_npz(_npz(tmp_path / "d.npz", x=x, y=[0, 1, 1, 0]))
    out = dataset.train.images[:]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_npz_non_finite_images(tmp_path, rng, bad):
    x = rng.random((4, 5, 5)).astype(np.float32)
    x[1, 2, 2] = bad
    path = _npz(tmp_path / "d.npz", x=x, y=[0, 1, 1, 0])
    with pytest.raises(DataError, match="NaN or infinite") as err:
        _open_npz(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("column", [False, True], ids=["(N,)", "(N,1)"])
def test_npz_label_shapes(tmp_path, rng, column):
    y = rng.integers(0, 4, 8)
    y[:4] = np.arange(4)
    x = rng.integers(0, 256, (8, 4, 4), dtype=np.uint8)
    dataset = _open_npz(_npz(tmp_path / "d.npz", x=x, y=y[:, None] if column else y))
    assert dataset.train.labels.dtype == np.int64 and dataset.train.labels.shape == (8,)
    np.testing.assert_array_equal(dataset.train.labels, y)
    assert dataset.classes == ("0", "1", "2", "3") and dataset.test is None


@pytest.mark.parametrize("y, classes, match", [
    (np.array([0.0, 1.0, 1.0]), None, "must be integers"),
    (np.array([0, -1, 1]), None, "negative"),
    (np.array([0, 1, 3]), np.array(["a", "b", "c"]), "out of range"),
], ids=["float", "negative", "too-large"])
def test_npz_bad_labels(tmp_path, rng, y, classes, match):
    arrays = {"x": rng.integers(0, 256, (3, 4, 4), dtype=np.uint8), "y": y}
    if classes is not None:
        arrays["classes"] = classes
    path = _npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=match) as err:
        _open_npz(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("missing", ["x", "y"])
def test_npz_missing_array(tmp_path, rng, missing):
    arrays = {"x": rng.integers(0, 256, (3, 4, 4), dtype=np.uint8), "y": np.array([0, 1, 0])}
    del arrays[missing]
    path = _npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=f"no array '{missing}'") as err:
        _open_npz(path)
    assert str(path) in str(err.value)


def test_npz_junk_file(tmp_path, rng):
    path = tmp_path / "junk.npz"
    path.write_bytes(rng.bytes(1000))
    with pytest.raises(DataError, match="not a readable .npz") as err:
        _open_npz(path)
    assert str(path) in str(err.value)


def test_npz_file_that_is_really_npy(tmp_path):
    path = tmp_path / "data.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(DataError, match="a single array, not an .npz archive") as err:
        _open_npz(path)
    assert str(path) in str(err.value)


def test_npz_missing_file(tmp_path):
    path = tmp_path / "nowhere.npz"
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        _open_npz(path)


def test_npz_class_names(tmp_path, rng):
    x = rng.integers(0, 256, (4, 4, 4), dtype=np.uint8)
    path = _npz(tmp_path / "d.npz", x=x, y=[0, 2, 1, 2], classes=np.array(["cat", "dog", "emu"]))
    dataset = _open_npz(path)
    assert dataset.classes == ("cat", "dog", "emu")
    assert all(type(name) is str for name in dataset.classes)


def test_npz_test_split(tmp_path, rng):
    x, x_test = (rng.integers(0, 256, (n, 3, 4, 4), dtype=np.uint8) for n in (6, 3))
    y, y_test = np.array([0, 1, 2, 0, 1, 2]), np.array([2, 0, 1])
    dataset = _open_npz(_npz(tmp_path / "d.npz", x=x, y=y, x_test=x_test, y_test=y_test))
    np.testing.assert_array_equal(dataset.train.images[:], x)
    np.testing.assert_array_equal(dataset.test.images[:], x_test)
    np.testing.assert_array_equal(dataset.test.labels, y_test)
    assert dataset.split("all").labels.tolist() == y.tolist() + y_test.tolist()


def test_npz_test_class_without_training_images(tmp_path, rng):
    x, x_test = (rng.integers(0, 256, (n, 4, 4), dtype=np.uint8) for n in (4, 2))
    path = _npz(tmp_path / "d.npz", x=x, y=[0, 1, 0, 1], x_test=x_test, y_test=[2, 0],
                classes=np.array(["a", "b", "c"]))
    with pytest.raises(DataError, match="'c'.*no training images") as err:
        _open_npz(path)
    assert str(path) in str(err.value)


def test_npz_stratified_test_size(tmp_path, rng):
    counts = [8, 5, 3, 2, 1, 12]
    y = np.repeat(np.arange(len(counts)), counts)
    y = y[np.random.default_rng(7).permutation(len(y))]  # classes interleaved
    x = np.arange(len(y), dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 3, 3),
                                                                           np.float32)
    path = _npz(tmp_path / "d.npz", x=x, y=y)

    def split(seed):
        dataset = _open_npz(path, test_size=0.25, seed=seed)
        train = dataset.train.images[:][:, 0, 0, 0].astype(int)  # each image holds its index
        test = dataset.test.images[:][:, 0, 0, 0].astype(int)
        np.testing.assert_array_equal(y[train], dataset.train.labels)
        np.testing.assert_array_equal(y[test], dataset.test.labels)
        return train, test

    train, test = split(seed=3)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(y)))
    for k, n_k in enumerate(counts):
        in_test, in_train = int(np.sum(y[test] == k)), int(np.sum(y[train] == k))
        assert in_test == min(round(0.25 * n_k), n_k - 1), (k, n_k)
        assert in_train >= 1 and in_test + in_train == n_k
    again = split(seed=3)
    np.testing.assert_array_equal(again[1], test)
    other = split(seed=4)
    assert not np.array_equal(np.sort(other[1]), np.sort(test))


# ---------------------------------------------------------------------------- Dataset

def test_check_trainable_needs_two_classes(tmp_path, rng):
    x = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    dataset = _open_npz(_npz(tmp_path / "d.npz", x=x, y=[0, 0, 0]))
    with pytest.raises(DataError, match="2 at least"):
        dataset.check_trainable()


def test_check_trainable_a_class_of_neither_split_is_allowed(tmp_path, rng):
    x = rng.integers(0, 256, (4, 4, 4), dtype=np.uint8)
    path = _npz(tmp_path / "d.npz", x=x, y=[0, 2, 0, 2], classes=np.array(["ant", "bee", "cow"]))
    _open_npz(path).check_trainable()          # "bee" has no images at all: nothing to refuse
    two_classes = _npz(tmp_path / "e.npz", x=x, y=[1, 1, 1, 1], classes=np.array(["a", "b"]))
    with pytest.raises(DataError, match=r"hold 1 class \(b\); a classifier needs 2"):
        _open_npz(two_classes).check_trainable()


def test_check_trainable_a_test_class_without_training_images(tmp_path, rng):
    x = rng.integers(0, 256, (6, 4, 4), dtype=np.uint8)
    path = _npz(tmp_path / "d.npz", x=x, y=[0, 2, 0, 2, 1, 0])
    dataset = _open_npz(path)
    dataset.test = dataset.train.subset([4])            # class 1, which training lacks:
    dataset.train = dataset.train.subset([0, 1, 2, 3])  # as a folder's --skip-bad may leave it
    with pytest.raises(DataError, match="test split has class '1', which has no training"):
        dataset.check_trainable()


# ---------------------------------------------------------------------------- folder

def _save(path, array, mode=None, **params):
    """Write ``array`` as an image file (the format from the suffix); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = array if isinstance(array, Image.Image) else Image.fromarray(array, mode)
    img.save(path, **params)
    return path


def _grey_folder(root, rng, counts, size=(8, 8)):
    """root/CLASS/NNN.png, random grey images; returns (classes, images (N, 1, H, W), labels) in
    the folder source's order (classes sorted, files sorted)."""
    images, labels = [], []
    for k, (name, n) in enumerate(sorted(counts.items())):
        for i in range(n):
            arr = rng.integers(0, 256, size, dtype=np.uint8)
            _save(root / name / f"{i:03d}.png", arr)
            images.append(arr[None])
            labels.append(k)
    return sorted(counts), np.stack(images), np.array(labels)


def _open_folder(root, **options):
    return open_source(f"folder:{root}", **options)


def test_folder_classes_labels_and_pixels(tmp_path, rng):
    classes, images, labels = _grey_folder(tmp_path / "d", rng, {"zebra": 3, "ant": 2, "moth": 4})
    dataset = _open_folder(tmp_path / "d")
    assert dataset.classes == ("ant", "moth", "zebra") == tuple(classes)
    assert dataset.test is None and dataset.image_shape == (1, 8, 8)
    assert dataset.source == f"folder:{(tmp_path / 'd').resolve()}"
    np.testing.assert_array_equal(dataset.train.labels, labels)
    np.testing.assert_array_equal(dataset.train.images[:], images)
    assert dataset.default_augment == "crop"


def test_folder_nested_hidden_and_other_files(tmp_path, rng):
    root = tmp_path / "d"
    a = rng.integers(0, 256, (2, 6, 6), dtype=np.uint8)
    _save(root / "cat" / "1.png", a[0])
    _save(root / "cat" / "deeper" / "still" / "2.png", a[1])       # nested: included
    _save(root / "cat" / ".hidden.png", a[0])                      # hidden: ignored
    _save(root / "cat" / ".thumbs" / "3.png", a[0])                # hidden folder: ignored
    (root / "cat" / "notes.txt").write_text("not an image")
    _save(root / "dog" / "1.PNG", a[1])                            # upper-case suffix
    (root / "dog" / "data.csv").write_text("1,2,3")
    (root / ".git").mkdir()                                         # hidden: not a class
    (root / "README.md").write_text("loose file")
    dataset = _open_folder(root)
    assert dataset.classes == ("cat", "dog")
    assert dataset.train.labels.tolist() == [0, 0, 1]
    np.testing.assert_array_equal(dataset.train.images[:][:, 0], a[[0, 1, 1]])


def test_folder_train_test_layout(tmp_path, rng):
    root = tmp_path / "d"
    _, train, train_labels = _grey_folder(root / "train", rng, {"a": 3, "b": 2, "c": 2})
    _, test, test_labels = _grey_folder(root / "test", rng, {"a": 1, "c": 2})  # b: none to test
    dataset = _open_folder(root, test_size=0.5)  # ignored: the folder has its own test split
    assert dataset.classes == ("a", "b", "c")
    np.testing.assert_array_equal(dataset.train.images[:], train)
    np.testing.assert_array_equal(dataset.train.labels, train_labels)
    np.testing.assert_array_equal(dataset.test.images[:], test)
    np.testing.assert_array_equal(dataset.test.labels, test_labels * 2)  # a -> 0, c -> 2


def test_folder_test_size(tmp_path, rng):
    counts = {"a": 10, "b": 5, "c": 1}
    _, images, labels = _grey_folder(tmp_path / "d", rng, counts)
    dataset = _open_folder(tmp_path / "d", test_size=0.2, seed=1)
    for k, n_k in enumerate(counts.values()):
        assert np.sum(dataset.test.labels == k) == min(round(0.2 * n_k), n_k - 1)
        assert np.sum(dataset.train.labels == k) >= 1
    rows = np.concatenate([dataset.train.images.indices, dataset.test.images.indices])
    assert sorted(rows.tolist()) == list(range(len(labels)))
    np.testing.assert_array_equal(dataset.test.images[:], images[dataset.test.images.indices])
    np.testing.assert_array_equal(dataset.test.labels, labels[dataset.test.images.indices])
    whole = _open_folder(tmp_path / "d", test_size=None)
    assert whole.test is None and len(whole.train) == len(labels)


def test_folder_size_from_the_first_image_channels_from_all(tmp_path, rng):
    root = tmp_path / "d"
    first = rng.integers(0, 256, (6, 10), dtype=np.uint8)             # L, 6 high, 10 wide
    _save(root / "a" / "0.png", first)
    _save(root / "b" / "0.png", np.full((20, 16, 3), (90, 90, 90), np.uint8))    # RGB, larger
    _save(root / "b" / "1.png", np.full((3, 4), 200, np.uint8))                  # L, smaller
    dataset = _open_folder(root)
    assert dataset.image_shape == (3, 6, 10)         # one image in colour: all decoded to RGB
    out = dataset.train.images[:]
    np.testing.assert_array_equal(out[0], np.stack([first] * 3))
    assert (out[1] == 90).all() and (out[2] == 200).all()  # constants survive the resize


def test_folder_rgb_first_image_gives_three_channels(tmp_path, rng):
    root = tmp_path / "d"
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    _save(root / "a" / "0.png", rgb)
    _save(root / "b" / "0.png", grey)
    dataset = _open_folder(root)
    assert dataset.image_shape == (3, 5, 7)
    out = dataset.train.images[:]
    np.testing.assert_array_equal(out[0], rgb.transpose(2, 0, 1))
    np.testing.assert_array_equal(out[1], np.stack([grey] * 3))  # grey repeated


def test_folder_channels_and_size_given(tmp_path, rng):
    root = tmp_path / "d"
    _save(root / "a" / "0.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    _save(root / "b" / "0.png", np.full((30, 20, 3), (10, 120, 250), np.uint8))
    dataset = _open_folder(root, channels=3, size=(16, 16))
    assert dataset.image_shape == (3, 16, 16)
    np.testing.assert_array_equal(dataset.train.images[1:2][0, :, 5, 5], [10, 120, 250])


# ---------------------------------------------------------------------------- image modes

def _modes(rng):
    """mode -> (Pillow image, channels to decode to, expected (C, H, W) uint8), 5 x 6 images."""
    h, w = 5, 6
    grey = rng.integers(0, 256, (h, w), dtype=np.uint8)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = {"L": (Image.fromarray(grey), 1, grey[None]),
           "RGB": (Image.fromarray(rgb), 3, rgb.transpose(2, 0, 1)),
           "RGB->1": (Image.fromarray(rgb), 1,
                      np.asarray(Image.fromarray(rgb).convert("L"))[None])}
    # RGBA: fully transparent pixels show as white, opaque ones as they are
    alpha = np.where(rng.random((h, w)) < 0.5, 0, 255).astype(np.uint8)
    alpha[0, 0], alpha[0, 1] = 0, 255
    rgba = np.dstack([rgb, alpha])
    expected = np.where(alpha[..., None] == 0, 255, rgb).transpose(2, 0, 1)
    out["RGBA"] = (Image.fromarray(rgba, "RGBA"), 3, expected.astype(np.uint8))
    # P: palette indices looked up
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    index = rng.integers(0, 256, (h, w), dtype=np.uint8)
    img = Image.fromarray(index, "P")
    img.putpalette(palette.ravel().tolist())
    out["P"] = (img, 3, palette[index].transpose(2, 0, 1))
    # CMYK: R = (255 - C)(255 - K) / 255 rounded, and so on
    cmyk = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    cmyk[0, 0] = (255, 0, 0, 0)    # cyan
    cmyk[0, 1] = (0, 0, 0, 255)    # black
    k = 255 - cmyk[..., 3:].astype(np.int64)
    expected = np.rint((255 - cmyk[..., :3].astype(np.int64)) * k / 255.0)
    out["CMYK"] = (Image.fromarray(cmyk, "CMYK"), 3, expected.astype(np.uint8).transpose(2, 0, 1))
    # 1: bilevel, 0 / 255
    bits = rng.random((h, w)) < 0.5
    out["1"] = (Image.fromarray(bits), 1, np.where(bits, 255, 0)[None].astype(np.uint8))
    # I;16: v / 257 rounded, so 257 k -> k and 65535 -> 255
    levels = rng.integers(0, 256, (h, w))
    sixteen = (257 * levels).astype(np.uint16)
    sixteen[0, 0], levels[0, 0] = 65535, 255
    sixteen[0, 1], levels[0, 1] = 0, 0
    out["I;16"] = (Image.fromarray(sixteen), 1, levels[None].astype(np.uint8))
    return out


MODES = ["L", "RGB", "RGB->1", "RGBA", "P", "CMYK", "1", "I;16"]


@pytest.mark.parametrize("mode", MODES)
def test_image_modes_in_memory(rng, mode):
    img, channels, expected = _modes(rng)[mode]
    assert img.mode == mode.split("->")[0]
    out = image_to_array(img, channels, None)
    assert out.dtype == np.uint8 and out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("mode", [m for m in MODES if m != "CMYK"])   # PNG has no CMYK
def test_image_modes_from_png(tmp_path, rng, mode):
    img, channels, expected = _modes(rng)[mode]
    path = _save(tmp_path / "x.png", img)
    assert Image.open(path).mode == img.mode
    np.testing.assert_array_equal(decode_image(path, channels, None), expected)


def test_image_modes_in_a_folder(tmp_path, rng):
    """Each mode through the folder source itself, decoded to 3 channels."""
    modes = _modes(rng)
    root = tmp_path / "d"
    expected = []
    for i, mode in enumerate(m for m in MODES if m not in ("CMYK", "RGB->1")):
        img, channels, want = modes[mode]
        _save(root / ("a" if i % 2 else "b") / f"{mode.replace(';', '_')}.png", img)
        expected.append((i % 2 == 0, f"{mode.replace(';', '_')}.png",
                         np.repeat(want, 3, axis=0) if channels == 1 else want))
    # the folder's order: class a then b, each sorted by file name
    expected.sort(key=lambda e: (e[0], e[1]))
    dataset = _open_folder(root, channels=3)
    assert dataset.image_shape == (3, 5, 6)
    np.testing.assert_array_equal(dataset.train.images[:], np.stack([e[2] for e in expected]))


def test_cmyk_jpeg_file(tmp_path):
    cmyk = np.zeros((8, 8, 4), np.uint8)
    cmyk[..., 0], cmyk[..., 3] = 200, 50
    path = _save(tmp_path / "x.jpg", cmyk, "CMYK", quality=95)
    out = decode_image(path, 3, None)
    want = np.rint(np.array([55, 255, 255]) * 205 / 255)      # (44, 205, 205)
    assert np.abs(out.astype(int) - want[:, None, None]).max() <= 4


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".bmp", ".gif", ".webp"])
def test_other_formats(tmp_path, suffix):
    rgb = np.zeros((16, 12, 3), np.uint8)
    rgb[:8], rgb[8:] = (200, 30, 90), (20, 180, 240)
    root = tmp_path / "d"
    _save(root / "a" / f"0{suffix}", rgb)
    _save(root / "b" / f"0{suffix}", rgb[::-1])
    dataset = _open_folder(root)
    assert dataset.image_shape == (3, 16, 12)
    out = dataset.train.images[:].astype(int)
    want = np.stack([rgb, rgb[::-1]]).transpose(0, 3, 1, 2)
    if suffix in (".bmp", ".gif"):       # lossless for these few colours
        np.testing.assert_array_equal(out, want)
    else:                                # lossy: close on average
        assert np.abs(out - want).mean() < 8


# ---------------------------------------------------------------------------- folder cache

def _cache_files(cache):
    return sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))


def test_folder_cache_reused(tmp_path, rng, cache):
    _grey_folder(tmp_path / "d", rng, {"a": 3, "b": 3})
    first = _open_folder(tmp_path / "d", test_size=0.3)
    assert any(note.startswith("decoded 6 images") for note in first.notes)
    files = _cache_files(cache)
    assert len([f for f in files if f.endswith(".npy")]) == 1
    second = _open_folder(tmp_path / "d", test_size=0.3)
    assert any("from the cache" in note for note in second.notes)
    assert not any(note.startswith("decoded") for note in second.notes)
    assert _cache_files(cache) == files
    for a, b in ((first.train, second.train), (first.test, second.test)):
        np.testing.assert_array_equal(a.images[:], b.images[:])
        np.testing.assert_array_equal(a.labels, b.labels)
    assert first.channel_stats() == second.channel_stats()


def test_folder_cache_is_a_read_only_memmap(tmp_path, rng):
    _grey_folder(tmp_path / "d", rng, {"a": 2, "b": 2})
    for _ in range(2):   # decoded, then from the cache
        base = _open_folder(tmp_path / "d").train.images.base
        assert isinstance(base, np.memmap) or isinstance(base.base, np.memmap)
        assert not base.flags.writeable
        with pytest.raises(ValueError):
            base[0, 0, 0, 0] = 1


def test_folder_cache_rebuilt_when_a_file_changes(tmp_path, rng, cache):
    root = tmp_path / "d"
    _grey_folder(root, rng, {"a": 2, "b": 2})
    _open_folder(root)
    old = _cache_files(cache)
    assert len(old) == 2   # the .npy and its .json record
    changed = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    _save(root / "b" / "001.png", np.pad(changed, 2))    # new content, new file size
    dataset = _open_folder(root)
    assert any(note.startswith("decoded 4 images") for note in dataset.notes)
    assert not any("from the cache" in note for note in dataset.notes)
    new = _cache_files(cache)
    assert len(new) == 2 and not set(old) & set(new)   # the old cache is gone
    np.testing.assert_array_equal(dataset.train.images[3:4][0, 0],
                                  np.asarray(Image.fromarray(np.pad(changed, 2))
                                             .resize((8, 8), Image.BILINEAR)))
    record = json.loads((cache / next(n for n in new if n.endswith(".json"))).read_text())
    assert record["shape"] == [4, 1, 8, 8]


def test_folder_cache_dir_option(tmp_path, rng, cache):
    _grey_folder(tmp_path / "d", rng, {"a": 1, "b": 1})
    _open_folder(tmp_path / "d", cache_dir=tmp_path / "elsewhere")
    assert len(_cache_files(tmp_path / "elsewhere")) == 2
    assert not cache.exists()


# ---------------------------------------------------------------------------- folder errors

def test_folder_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        _open_folder(tmp_path / "nowhere")


def test_folder_is_a_file(tmp_path, rng):
    path = _save(tmp_path / "x.png", rng.integers(0, 256, (4, 4), dtype=np.uint8))
    with pytest.raises(DataError, match=f"{path}.*not a folder"):
        _open_folder(path)


def test_folder_without_class_folders(tmp_path, rng):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=f"{tmp_path / 'empty'}.*no class subfolders"):
        _open_folder(tmp_path / "empty")
    _save(tmp_path / "loose" / "x.png", rng.integers(0, 256, (4, 4), dtype=np.uint8))
    with pytest.raises(DataError, match="loose in it"):
        _open_folder(tmp_path / "loose")


def test_folder_class_without_images(tmp_path, rng):
    root = tmp_path / "d"
    _grey_folder(root, rng, {"a": 2})
    (root / "b").mkdir()
    (root / "b" / "notes.txt").write_text("nothing here")
    with pytest.raises(DataError, match=f"{root / 'b'}.*no images"):
        _open_folder(root)


def _truncated_folder(root, rng):
    """A folder of 3 + 3 images, b/001.png cut in half; returns that file's path and row."""
    _grey_folder(root, rng, {"a": 3, "b": 3}, size=(16, 16))
    bad = root / "b" / "001.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    return bad, 4


def test_folder_truncated_image(tmp_path, rng):
    bad, _ = _truncated_folder(tmp_path / "d", rng)
    with pytest.raises(DataError, match="--skip-bad") as err:
        _open_folder(tmp_path / "d")
    assert str(bad) in str(err.value)


@pytest.mark.parametrize("test_size", [None, 0.5])
def test_folder_skip_bad(tmp_path, rng, test_size):
    bad, row = _truncated_folder(tmp_path / "d", rng)
    dataset = _open_folder(tmp_path / "d", skip_bad=True, test_size=test_size)
    assert any("skipped 1" in note and str(bad) in note for note in dataset.notes)
    rows = dataset.train.images.indices
    if test_size:
        rows = np.concatenate([rows, dataset.test.images.indices])
    assert sorted(rows.tolist()) == [r for r in range(6) if r != row]
    assert len(dataset.train) + (len(dataset.test) if test_size else 0) == 5
    assert (dataset.split("all").labels == 1).sum() == 2
    # the cache remembers the bad image: without skip_bad it is refused again
    with pytest.raises(DataError, match="--skip-bad"):
        _open_folder(tmp_path / "d", test_size=test_size)


def test_folder_test_class_not_in_train(tmp_path, rng):
    root = tmp_path / "d"
    _grey_folder(root / "train", rng, {"a": 2, "b": 2})
    _grey_folder(root / "test", rng, {"a": 1, "c": 1})
    with pytest.raises(DataError, match="'c'") as err:
        _open_folder(root)
    assert str(root / "test" / "c") in str(err.value)


# ---------------------------------------------------------------------------- cifar10

def _cifar_folder(root, rng, write):
    """5 data batches and a test batch of a few records; returns (x, y, x_test, y_test)."""
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".bin" if write is _write_binary else ""
    parts = []
    for i, n in enumerate((2, 3, 1, 2, 2), 1):
        images, labels = _batch(rng, n)
        write(root / f"data_batch_{i}{suffix}", images, labels)
        parts.append((images, labels))
    x_test, y_test = _batch(rng, 3)
    write(root / f"test_batch{suffix}", x_test, y_test)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            x_test, y_test)


@pytest.mark.parametrize("write", [_write_binary, _write_python], ids=["binary", "python"])
def test_cifar10(tmp_path, rng, write):
    x, y, x_test, y_test = _cifar_folder(tmp_path / "cifar", rng, write)
    dataset = open_source(f"cifar10:{tmp_path / 'cifar'}")
    assert dataset.classes == tuple(CIFAR10_CLASSES) and len(dataset.classes) == 10
    assert dataset.image_shape == (3, 32, 32) and dataset.train.images.dtype == np.uint8
    assert dataset.default_augment == "crop,flip"
    np.testing.assert_array_equal(dataset.train.images[:], x)
    np.testing.assert_array_equal(dataset.train.labels, y)
    np.testing.assert_array_equal(dataset.test.images[:], x_test)
    np.testing.assert_array_equal(dataset.test.labels, y_test)


def test_cifar10_missing_batch(tmp_path, rng):
    _cifar_folder(tmp_path / "cifar", rng, _write_binary)
    os.remove(tmp_path / "cifar" / "data_batch_3.bin")
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        open_source(f"cifar10:{tmp_path / 'cifar'}")


def test_cifar10_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        open_source(f"cifar10:{tmp_path / 'nowhere'}")


def test_a_bare_npz_path_with_a_colon_in_it(tmp_path):
    folder = tmp_path / "a:b"
    folder.mkdir()
    np.savez(folder / "d.npz", x=np.zeros((4, 5, 5), np.uint8), y=np.array([0, 1, 0, 1]))
    dataset = open_source(str(folder / "d.npz"))
    assert dataset.source == f"npz:{(folder / 'd.npz').resolve()}" and len(dataset.train) == 4


def test_a_decompression_bomb_is_a_bad_image_not_a_crash(tmp_path, monkeypatch):
    from PIL import Image

    from cnnkit.data import decode_image

    Image.new("L", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)    # 4096 pixels: over twice the limit
    with pytest.raises(DataError, match="cannot read image .*big.png"):
        decode_image(tmp_path / "big.png", 1, (8, 8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)    # over the limit: Pillow only warns
    with pytest.raises(DataError, match="cannot read image .*big.png"):
        decode_image(tmp_path / "big.png", 1, (8, 8))


def test_a_folder_of_mostly_grey_images_with_some_in_colour_decodes_to_rgb(tmp_path):
    from PIL import Image

    for k, name in enumerate(["a", "b"]):
        (tmp_path / "d" / name).mkdir(parents=True)
        for i in range(5):
            colour = k == 1 and i == 4         # the last image of the last class only
            img = Image.new("RGB", (6, 6), (200, 10, 10)) if colour else Image.new("L", (6, 6), 90)
            img.save(tmp_path / "d" / name / f"{i}.png")
    dataset = open_source(f"folder:{tmp_path / 'd'}", cache_dir=tmp_path / "cache")
    assert dataset.image_shape == (3, 6, 6)
    np.testing.assert_array_equal(dataset.train.images[0][:, 0, 0], [90, 90, 90])


def test_a_large_folder_is_decoded_by_worker_processes_to_the_same_arrays(tmp_path, rng,
                                                                         monkeypatch):
    from PIL import Image

    from cnnkit.data import folder

    root = tmp_path / "d"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)).save(
                root / name / f"{i}.png")
    alone = open_source(f"folder:{root}", cache_dir=tmp_path / "one")
    monkeypatch.setattr(folder, "_PROCESSES_FROM", 1)      # workers for any folder,
    monkeypatch.setattr(folder, "_CHUNK", 5)               # three chunks of 5, 5 and 2
    monkeypatch.setattr(folder.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    pooled = open_source(f"folder:{root}", cache_dir=tmp_path / "two")
    np.testing.assert_array_equal(pooled.train.images[:], alone.train.images[:])
    # a bad image in a worker's chunk is the same one-line error, or skipped
    (root / "b" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=r"9\.png.*--skip-bad"):
        open_source(f"folder:{root}", cache_dir=tmp_path / "three")
    skipped = open_source(f"folder:{root}", cache_dir=tmp_path / "four", skip_bad=True)
    assert len(skipped.train) == 12 and "skipped 1" in skipped.notes[-1]


def test_a_rotated_jpeg_is_turned_upright_and_tiff_is_read(tmp_path):
    from PIL import Image

    from cnnkit.data import decode_image

    pixels = np.zeros((20, 40, 3), np.uint8)     # 20 high, 40 wide, the left half white
    pixels[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6                             # "rotate 90 degrees clockwise to view"
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = decode_image(tmp_path / "phone.jpg", 1, None)
    assert upright.shape == (1, 40, 20)          # shown portrait: 40 high, 20 wide
    assert upright[0, :20].mean() > 200 and upright[0, 20:].mean() < 50   # white on top
    Image.fromarray((np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)).save(tmp_path / "g.tif")
    assert decode_image(tmp_path / "g.tif", 1, None)[0, 0, 1] == round(5000 / 257)
