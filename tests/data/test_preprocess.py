"""The path from stored images to the net's input, and the small pieces around it.

``choose_fit`` and ``Preprocessing`` (centre, resize, normalise, checkpoint metadata), the lazy
``Images`` view, ``pixel_stats``, ``Augment.parse`` (what ``--augment`` means), and
``cnnkit.inference.read_images`` (what ``predict`` accepts, and when it inverts a grey image).
"""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from cnnkit.data import (Augment, DataError, Images, Preprocessing, choose_fit, normalize,
                         pixel_stats, to_float)
from cnnkit.inference import read_images

# ---------------------------------------------------------------------------- choose_fit


@pytest.mark.parametrize("image, net, fit, expected", [
    ((32, 32), (32, 32), "auto", "none"),
    ((28, 28), (28, 28), "resize", "none"),
    ((28, 28), (32, 32), "auto", "centre"),     # LeNet-5's field: a margin of 2 each side
    ((28, 28), (227, 227), "auto", "resize"),   # far too small to centre
    ((64, 64), (32, 32), "auto", "resize"),     # larger: shrink
    ((28, 28), (32, 32), "resize", "resize"),
    ((28, 28), (227, 227), "centre", "centre"),
    # non-square: each axis judged by its own margin and its own size
    ((12, 40), (15, 44), "auto", "centre"),     # margins 3 <= 12/4 and 4 <= 40/4
    ((40, 12), (44, 15), "auto", "centre"),
    ((28, 20), (32, 32), "auto", "resize"),     # the width's margin 12 > 20/4
    ((20, 28), (32, 32), "auto", "resize"),
    ((30, 20), (20, 30), "auto", "resize"),     # taller than the net: cannot centre
    ((30, 20), (20, 30), "centre", None),
])
def test_choose_fit(image, net, fit, expected):
    if expected is None:
        with pytest.raises(ValueError, match="30x20, larger than the net's 20x30"):
            choose_fit(image, net, fit)
        return
    assert choose_fit(image, net, fit) == expected


def test_choose_fit_refuses_to_centre_a_larger_image():
    with pytest.raises(ValueError, match="larger"):
        choose_fit((64, 64), (32, 32), "centre")
    with pytest.raises(ValueError, match="fit must be"):
        choose_fit((28, 28), (32, 32), "stretch")


# ---------------------------------------------------------------------------- Preprocessing

MEAN3, STD3 = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def test_call_without_fit_is_to_float_then_normalize(rng):
    x = rng.integers(0, 256, (4, 3, 6, 5), dtype=np.uint8)
    pre = Preprocessing((3, 6, 5), (3, 6, 5), MEAN3, STD3)
    out = pre(x)
    assert out.dtype == np.float32 and out.shape == (4, 3, 6, 5)
    np.testing.assert_array_equal(out, normalize(to_float(x), MEAN3, STD3))


def test_centre(rng):
    x = rng.integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    mean, std = 0.13, 0.31
    pre = Preprocessing((1, 28, 28), (1, 32, 32), (mean,), (std,), fit="centre")
    out = pre(x)
    assert out.shape == (3, 1, 32, 32) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :, 2:30, 2:30], normalize(to_float(x), mean, std))
    border = np.ones(out.shape, bool)
    border[:, :, 2:30, 2:30] = False
    np.testing.assert_allclose(out[border], (0 - mean) / std, rtol=1e-6)


def test_centre_odd_margin_three_channels(rng):
    x = rng.integers(0, 256, (2, 3, 5, 4), dtype=np.uint8)
    pre = Preprocessing((3, 5, 4), (3, 8, 7), MEAN3, STD3, fit="centre")
    out = pre(x)
    top, left = (8 - 5) // 2, (7 - 4) // 2
    np.testing.assert_array_equal(out[:, :, top:top + 5, left:left + 4],
                                  normalize(to_float(x), MEAN3, STD3))
    field = (0 - np.array(MEAN3)) / np.array(STD3)
    np.testing.assert_allclose(out[:, :, 0, 0], np.broadcast_to(field, (2, 3)), rtol=1e-6)
    np.testing.assert_allclose(out[:, :, -1, -1], np.broadcast_to(field, (2, 3)), rtol=1e-6)


def _centred(x, net_hw, mean, std):
    """The oracle of centring: np.pad with each axis's own margin, its odd pixel after the
    image (below, to the right), then the normalisation of the padded field."""
    (h, w), (hh, ww) = x.shape[2:], net_hw
    rows, cols = (hh - h) // 2, (ww - w) // 2
    padded = np.pad(to_float(x), ((0, 0), (0, 0), (rows, hh - h - rows), (cols, ww - w - cols)))
    return normalize(padded, mean, std)


@pytest.mark.parametrize("image, net", [
    ((5, 4), (8, 10)),        # margins 3 and 6: odd and even, and unequal
    ((3, 7), (4, 12)),        # 1 and 5
    ((7, 3), (12, 4)),        # the same, transposed
    ((28, 20), (31, 27)),     # 3 and 7
    ((6, 6), (9, 6)),         # a square image, one axis with no margin at all
], ids=lambda v: "x".join(map(str, v)))
def test_centre_uses_each_axis_margin(rng, image, net):
    x = rng.integers(0, 256, (3, 3, *image), dtype=np.uint8)
    pre = Preprocessing((3, *image), (3, *net), MEAN3, STD3, fit="centre")
    np.testing.assert_array_equal(pre(x), _centred(x, net, MEAN3, STD3))


@given(c=st.sampled_from([1, 3]), image=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       margins=st.tuples(st.integers(0, 7), st.integers(0, 7)), seed=st.integers(0, 2**32 - 1))
def test_centre_matches_np_pad_on_drawn_shapes(c, image, margins, seed):
    x = np.random.default_rng(seed).integers(0, 256, (2, c, *image), dtype=np.uint8)
    net = (image[0] + margins[0], image[1] + margins[1])
    mean, std = MEAN3[:c], STD3[:c]
    pre = Preprocessing((c, *image), (c, *net), mean, std, fit="centre")
    np.testing.assert_array_equal(pre(x), _centred(x, net, mean, std))


@pytest.mark.parametrize("image, net", [((28, 28), (227, 227)), ((64, 48), (32, 32))])
def test_resize(image, net):
    x = np.full((2, 3, *image), 153, dtype=np.uint8)
    x[1] = 51
    pre = Preprocessing((3, *image), (3, *net), MEAN3, STD3, fit="resize")
    out = pre(x)
    assert out.shape == (2, 3, *net) and out.dtype == np.float32
    for n, value in enumerate((153, 51)):
        want = (value / 255 - np.array(MEAN3)) / np.array(STD3)
        np.testing.assert_allclose(out[n], np.broadcast_to(want[:, None, None], out[n].shape),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("image, net", [((9, 14), (20, 11)), ((14, 9), (11, 20)),
                                        ((30, 17), (12, 25))],
                         ids=lambda v: "x".join(map(str, v)))
def test_resize_keeps_each_axis(image, net):
    """A ramp along one axis stays a ramp along that axis, whatever the two shapes: the rows of
    a horizontal ramp are all equal and rise left to right, and so do the columns of a vertical
    one (a height and width swapped anywhere turns one into the other, or fails)."""
    h, w = image
    across = np.tile(np.linspace(10, 240, w), (h, 1)).round().astype(np.uint8)   # (h, w)
    down = np.tile(np.linspace(10, 240, h)[:, None], (1, w)).round().astype(np.uint8)
    x = np.stack([np.stack([across, down])])                                      # (1, 2, h, w)
    pre = Preprocessing((2, *image), (2, *net), (0.0, 0.0), (1.0, 1.0), fit="resize")
    out = pre(x)
    assert out.shape == (1, 2, *net)
    rows, cols = out[0, 0], out[0, 1]
    np.testing.assert_allclose(rows, np.broadcast_to(rows[:1], rows.shape), atol=1e-5)
    np.testing.assert_allclose(cols, np.broadcast_to(cols[:, :1], cols.shape), atol=1e-5)
    assert np.all(np.diff(rows[0]) > 0) and np.all(np.diff(cols[:, 0]) > 0)


def test_grey_images_without_channel_axis(rng):
    x = rng.integers(0, 256, (5, 7, 7), dtype=np.uint8)
    pre = Preprocessing((1, 7, 7), (1, 7, 7), (0.2,), (0.3,))
    np.testing.assert_array_equal(pre(x), pre(x[:, None]))


@pytest.mark.parametrize("shape", [(2, 3, 5, 5), (2, 1, 6, 5), (2, 5, 5, 1), (5, 5)])
def test_wrong_shape(shape):
    pre = Preprocessing((1, 5, 5), (1, 8, 8), (0.5,), (0.5,), fit="centre")
    with pytest.raises(DataError) as err:
        pre(np.zeros(shape, np.uint8))
    assert str(shape) in str(err.value) and "1x5x5" in str(err.value)


def test_float_images_are_not_divided_by_255(rng):
    x = rng.random((3, 3, 4, 4))   # float64 in [0, 1)
    pre = Preprocessing((3, 4, 4), (3, 4, 4), MEAN3, STD3)
    out = pre(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, normalize(x.astype(np.float32), MEAN3, STD3))
    np.testing.assert_allclose(out, (x - np.reshape(MEAN3, (3, 1, 1))) /
                               np.reshape(STD3, (3, 1, 1)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fit", ["none", "centre", "resize"])
def test_metadata_round_trip(fit):
    pre = Preprocessing((3, 28, 28), (3, 32, 32) if fit != "none" else (3, 28, 28), MEAN3, STD3,
                        fit=fit, brightness=0.41)
    meta = json.loads(json.dumps(pre.to_metadata()))
    back = Preprocessing.from_metadata(meta)
    assert back == pre and back.fit == fit and back.brightness == 0.41


def test_metadata_before_fit_was_recorded():
    old = {"input_shape": [1, 32, 32], "image_shape": [1, 28, 28], "mean": [0.1307],
           "std": [0.3081]}
    pre = Preprocessing.from_metadata(old)
    assert pre.fit == "centre" and pre.image_shape == (1, 28, 28)
    assert pre.describe() == "28x28 centred in 32x32"
    same = Preprocessing.from_metadata({"input_shape": [1, 28, 28]})
    assert same.fit == "none" and same.image_shape == (1, 28, 28)
    assert same.mean == (0.0,) and same.std == (1.0,)


def test_channel_mismatch():
    with pytest.raises(ValueError, match="1 channels but the net takes 3"):
        Preprocessing((1, 28, 28), (3, 28, 28), (0.5,), (0.5,))
    with pytest.raises(DataError, match="the checkpoint"):
        Preprocessing.from_metadata({"input_shape": [3, 28, 28], "image_shape": [1, 28, 28]})
    with pytest.raises(DataError, match="the checkpoint"):
        Preprocessing.from_metadata({"image_shape": [1, 28, 28]})   # no input_shape


@pytest.mark.parametrize("meta", [
    {"input_shape": [1, 32, 32], "image_shape": [1, 64, 64]},
    {"input_shape": [3, 8, 8], "mean": [0.5], "std": [0.2]},
], ids=["centre-larger", "mean-length"])
def test_unusable_metadata(meta):
    with pytest.raises(DataError, match="the checkpoint does not record a usable"):
        Preprocessing.from_metadata(meta)


def test_an_integer_index_gives_one_image_as_numpy_does(rng):
    base = rng.integers(0, 256, (6, 2, 3, 3), dtype=np.uint8)
    view = Images(base, [4, 1, 5])
    np.testing.assert_array_equal(view[1], base[1])
    assert view[np.int64(-1)].shape == (2, 3, 3)


# ---------------------------------------------------------------------------- Images

def _check_view(view, base, indices):
    for key in (slice(None), slice(1, 5), slice(None, None, -2),
                np.array([3, 0, 2]), np.array([4, 4, 1, 0, 4, 2]), [2]):
        np.testing.assert_array_equal(view[key], base[indices[key]])
        assert view[key].dtype == base.dtype
    np.testing.assert_array_equal(np.asarray(view), base[indices])


def test_images_view(rng):
    base = rng.integers(0, 256, (12, 2, 3, 3), dtype=np.uint8)
    indices = rng.permutation(12)[:7]
    view = Images(base, indices)
    assert len(view) == 7 and view.shape == (7, 2, 3, 3)
    assert view.dtype == np.uint8 and view.ndim == 4
    _check_view(view, base, indices)
    whole = Images(base)
    assert len(whole) == 12 and whole.shape == base.shape
    _check_view(whole, base, np.arange(12))


def test_images_subset_of_subset(rng):
    base = rng.random((10, 1, 2, 2))
    first = Images(base).subset([9, 1, 5, 3, 7, 0])
    second = first.subset(np.array([4, 0, 2, 2, 5]))
    assert second.base is base
    np.testing.assert_array_equal(second.indices, [7, 9, 5, 5, 0])
    np.testing.assert_array_equal(second[:], base[[7, 9, 5, 5, 0]])
    assert second.dtype == np.float64 and second.shape == (5, 1, 2, 2)
    again = Images(first, [1, 1])         # a view of a view reads the base directly
    assert again.base is base
    np.testing.assert_array_equal(again[:], base[[1, 1]])


def test_images_on_a_memmap(tmp_path, rng):
    data = rng.integers(0, 256, (20, 3, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "x.npy", data)
    base = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert isinstance(base, np.memmap)
    indices = rng.permutation(20)[:11]
    view = Images(base, indices)
    _check_view(view, data, indices)
    out = view[np.array([5, 1, 1])]
    assert type(out) is np.ndarray and out.flags.writeable   # a copy, not a memmap slice


# ---------------------------------------------------------------------------- pixel_stats

def test_pixel_stats_uint8(rng):
    x = rng.integers(0, 256, (37, 3, 5, 6), dtype=np.uint8)
    x[:, 1] //= 3    # channels of different statistics
    mean, std = pixel_stats(x, chunk_bytes=720)
    scaled = x / 255.0
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 2, 3)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, scaled.std(axis=(0, 2, 3)), rtol=0, atol=1e-12)
    assert pixel_stats(x) == pixel_stats(x, chunk_bytes=450)
    assert pixel_stats(Images(x)) == pixel_stats(x, chunk_bytes=720)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pixel_stats_float(rng, dtype):
    x = (rng.random((19, 2, 4, 4)) * [[[[1.0]], [[3.0]]]]).astype(dtype)
    mean, std = pixel_stats(x, chunk_bytes=400)
    wide = x.astype(np.float64)
    np.testing.assert_allclose(mean, wide.mean(axis=(0, 2, 3)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, wide.std(axis=(0, 2, 3)), rtol=0, atol=1e-12)


def test_pixel_stats_constant_channel(rng):
    x = rng.integers(0, 256, (6, 2, 3, 3), dtype=np.uint8)
    x[:, 0] = 204
    mean, std = pixel_stats(x, chunk_bytes=400)
    assert mean[0] == pytest.approx(0.8, abs=1e-15) and std[0] == 1.0
    assert 0 < std[1] < 1
    with pytest.raises(DataError, match="no images"):
        pixel_stats(np.zeros((0, 1, 2, 2), np.uint8))


# ---------------------------------------------------------------------------- Augment.parse

@pytest.mark.parametrize("text, size, padding, hflip", [
    ("crop", (32, 32), 4, False),
    ("crop", (28, 28), 3, False),
    ("crop", (6, 6), 1, False),          # at least 1
    ("crop:2", (28, 28), 2, False),
    ("crop,flip", (32, 32), 4, True),
    (" Crop:1 , FLIP ", (32, 32), 1, True),
    ("flip", (32, 32), 0, True),
])
def test_augment_parse(text, size, padding, hflip):
    assert Augment.parse(text, size) == Augment(crop_padding=padding, hflip=hflip)


@pytest.mark.parametrize("text", ["none", "crop:0"])
def test_augment_parse_nothing(text):
    assert Augment.parse(text, (32, 32)) is None


@pytest.mark.parametrize("text", ["flip,none", "crop:-1", "crop:x", "blur", "", "flip:1"])
def test_augment_parse_errors(text):
    with pytest.raises(ValueError, match="--augment"):
        Augment.parse(text, (32, 32))


# ---------------------------------------------------------------------------- read_images

def _grey_pre(brightness, size=(8, 8)):
    return Preprocessing((1, *size), (1, *size), (brightness,), (0.3,), brightness=brightness)


def test_read_images_kinds(rng):
    grey = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    unit = rng.random((8, 8))
    pre = _grey_pre(0.5)
    out = read_images([grey, rgb, unit, Image.fromarray(grey), grey[:, :, None]], pre,
                      invert="no")
    assert out.shape == (5, 1, 8, 8) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], grey)
    np.testing.assert_array_equal(out[1, 0], np.asarray(Image.fromarray(rgb).convert("L")))
    np.testing.assert_array_equal(out[2, 0], np.rint(unit * 255).astype(np.uint8))
    np.testing.assert_array_equal(out[3, 0], grey)
    np.testing.assert_array_equal(out[4, 0], grey)
    colour = Preprocessing((3, 8, 8), (3, 8, 8), MEAN3, STD3)
    out = read_images([rgb, Image.fromarray(rgb), grey], colour)
    np.testing.assert_array_equal(out[0], rgb.transpose(2, 0, 1))
    np.testing.assert_array_equal(out[1], rgb.transpose(2, 0, 1))
    np.testing.assert_array_equal(out[2], np.stack([grey] * 3))   # never inverted: 3 channels


def test_read_images_resizes_to_the_training_size(rng):
    big = np.full((20, 30), 77, np.uint8)
    out = read_images([big], _grey_pre(0.13, size=(10, 12)), invert="no")
    assert out.shape == (1, 1, 10, 12) and (out == 77).all()


def _paper(rng, light):
    """A mostly white (light) or mostly black grey image with a few strokes."""
    arr = rng.integers(220, 256, (8, 8)) if light else rng.integers(0, 36, (8, 8))
    arr[3:5, 1:7] = 255 - arr[3:5, 1:7]
    return arr.astype(np.uint8)


@pytest.mark.parametrize("brightness", [0.13, 0.8])
def test_read_images_auto_invert(rng, brightness):
    white, black = _paper(rng, light=True), _paper(rng, light=False)
    out = read_images([white, black], _grey_pre(brightness))
    dark_net = brightness < 0.5     # MNIST-like: white digits on black
    np.testing.assert_array_equal(out[0, 0], 255 - white if dark_net else white)
    np.testing.assert_array_equal(out[1, 0], black if dark_net else 255 - black)
    kept = read_images([white, black], _grey_pre(brightness), invert="no")
    np.testing.assert_array_equal(kept[:, 0], np.stack([white, black]))
    flipped = read_images([white, black], _grey_pre(brightness), invert="yes")
    np.testing.assert_array_equal(flipped[:, 0], 255 - np.stack([white, black]))


@pytest.mark.parametrize("bad", [np.zeros((5, 5, 7), np.uint8), np.zeros((2, 5, 5, 3), np.uint8),
                                 np.zeros(5, np.uint8), np.full((5, 5), np.nan)])
def test_read_images_bad_arrays(bad):
    with pytest.raises(DataError, match="image array"):
        read_images([bad], _grey_pre(0.5, size=(5, 5)))


def test_read_images_bad_arguments(rng):
    with pytest.raises(ValueError, match="no images"):
        read_images([], _grey_pre(0.5))
    with pytest.raises(ValueError, match="invert"):
        read_images([np.zeros((8, 8), np.uint8)], _grey_pre(0.5), invert="maybe")
