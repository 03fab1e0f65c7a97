"""Transforms: shapes, dtypes, the arithmetic, and the random ones as windows and mirrors."""

import numpy as np
import pytest

from cnnkit.data import Augment, normalize, random_crop, random_hflip, to_float


def test_to_float_adds_channel_axis(rng):
    images = rng.integers(0, 256, (3, 5, 4), dtype=np.uint8)
    out = to_float(images)
    assert out.shape == (3, 1, 5, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], images / 255.0, rtol=1e-7)


def test_to_float_keeps_nchw_and_endpoints(rng):
    images = rng.integers(0, 256, (2, 3, 4, 4), dtype=np.uint8)
    images[0, 0, 0, :2] = [0, 255]
    out = to_float(images)
    assert out.shape == (2, 3, 4, 4) and out.dtype == np.float32
    assert out[0, 0, 0, 0] == 0.0 and out[0, 0, 0, 1] == 1.0
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_to_float_rejects(rng):
    with pytest.raises(TypeError, match="uint8"):
        to_float(np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="3-D or 4-D"):
        to_float(np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_per_channel(rng, dtype):
    x = rng.standard_normal((4, 3, 5, 6)).astype(dtype)
    before = x.copy()
    mean, std = [0.1, -2.0, 3.5], [0.5, 2.0, 0.25]
    out = normalize(x, mean, std)
    assert out.dtype == dtype and out.shape == x.shape
    for c in range(3):
        # absolute tolerance too: x - mean cancels, and mean is rounded to x's dtype
        tol = dict(rtol=1e-6, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-13)
        np.testing.assert_allclose(out[:, c], (x[:, c].astype(np.float64) - mean[c]) / std[c],
                                   err_msg=f"c={c}", **tol)
    np.testing.assert_array_equal(x, before)  # input untouched


def test_normalize_scalars(rng):
    x = rng.standard_normal((2, 2, 3, 3))
    np.testing.assert_allclose(normalize(x, 0.5, 2.0), (x - 0.5) / 2.0, rtol=1e-15)
    np.testing.assert_allclose(normalize(x[:, :1], [0.5], [2.0]), (x[:, :1] - 0.5) / 2.0)


@pytest.mark.parametrize("mean, std, error, match", [
    (0.0, 0.0, ValueError, "std must be > 0"),
    (0.0, [1.0, -1.0, 1.0], ValueError, "std must be > 0"),
    ([0.0, 0.0], 1.0, ValueError, "one value per channel"),
    (float("nan"), 1.0, ValueError, "finite"),
])
def test_normalize_rejects(mean, std, error, match):
    with pytest.raises(error, match=match):
        normalize(np.zeros((1, 3, 2, 2)), mean, std)


def test_normalize_rejects_ints_and_ranks():
    with pytest.raises(TypeError):
        normalize(np.zeros((1, 1, 2, 2), np.uint8), 0.0, 1.0)
    with pytest.raises(ValueError, match="4-D"):
        normalize(np.zeros((2, 2, 2)), 0.0, 1.0)


def test_crop_with_zero_padding_is_identity(rng):
    x = rng.standard_normal((3, 2, 5, 5))
    out = random_crop(x, 0, rng)
    np.testing.assert_array_equal(out, x)
    assert out is not x


@pytest.mark.parametrize("padding", [2, (1, 3), (2, 0)], ids=str)
def test_crops_are_windows_of_the_padded_image(rng, padding):
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    x = rng.uniform(1.0, 2.0, (600, 2, 5, 6))  # nonzero, so padding zeros tell the offset apart
    before = x.copy()
    out = random_crop(x, padding, rng)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    seen = set()
    for n in range(len(x)):
        hits = [(i, j) for i in range(2 * ph + 1) for j in range(2 * pw + 1)
                if np.array_equal(out[n], padded[n, :, i:i + 5, j:j + 6])]
        assert len(hits) == 1, f"image {n}: output matches windows {hits}"
        seen.add(hits[0])
    # every offset turns up among 600 images (each has probability >= 1/25; misses ~1e-9)
    assert len(seen) == (2 * ph + 1) * (2 * pw + 1)
    np.testing.assert_array_equal(x, before)


def test_crop_is_reproducible(rng):
    x = rng.standard_normal((6, 3, 8, 8)).astype(np.float32)
    a = random_crop(x, 4, np.random.default_rng(7))
    b = random_crop(x, 4, np.random.default_rng(7))
    c = random_crop(x, 4, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_crop_rejects(rng):
    with pytest.raises(ValueError, match="padding"):
        random_crop(np.zeros((1, 1, 4, 4)), -1, rng)
    with pytest.raises(TypeError, match="Generator"):
        random_crop(np.zeros((1, 1, 4, 4)), 1, 0)
    with pytest.raises(ValueError, match="4-D"):
        random_crop(np.zeros((4, 4)), 1, rng)


def test_hflip_outputs_are_images_or_mirrors(rng):
    x = rng.standard_normal((300, 2, 3, 4))
    out = random_hflip(x, rng)
    flipped = np.array([np.array_equal(o, xi[..., ::-1]) for o, xi in zip(out, x)])
    kept = np.array([np.array_equal(o, xi) for o, xi in zip(out, x)])
    assert np.all(flipped ^ kept)
    assert 100 < flipped.sum() < 200  # p = 0.5: 150 expected, sd ~9


def test_hflip_twice_with_the_same_draws_is_identity(rng):
    x = rng.standard_normal((20, 3, 4, 5)).astype(np.float32)
    once = random_hflip(x, np.random.default_rng(3))
    assert not np.array_equal(once, x)
    np.testing.assert_array_equal(random_hflip(once, np.random.default_rng(3)), x)


def test_hflip_probability_endpoints(rng):
    x = rng.standard_normal((5, 1, 2, 3))
    np.testing.assert_array_equal(random_hflip(x, rng, p=0.0), x)
    np.testing.assert_array_equal(random_hflip(x, rng, p=1.0), x[..., ::-1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        random_hflip(x, rng, p=1.5)


def test_augment_applies_crop_and_flip_reproducibly(rng):
    x = rng.uniform(1.0, 2.0, (16, 3, 8, 8)).astype(np.float32)
    aug = Augment(crop_padding=2, hflip=True)
    a = aug(x, np.random.default_rng(11))
    np.testing.assert_array_equal(a, aug(x, np.random.default_rng(11)))
    # the same as the two transforms in order from the same stream
    r = np.random.default_rng(11)
    np.testing.assert_array_equal(a, random_hflip(random_crop(x, 2, r), r))
    assert a.shape == x.shape and a.dtype == np.float32 and not np.array_equal(a, x)


def test_augment_config_and_defaults(rng):
    aug = Augment(crop_padding=(2, 1))
    assert aug.config() == {"crop_padding": [2, 1], "hflip": False}
    assert Augment.from_config(aug.config()) == aug
    x = rng.standard_normal((2, 1, 3, 3))
    assert Augment()(x, rng) is x
    with pytest.raises(TypeError, match="hflip"):
        Augment(hflip="yes")
    with pytest.raises(ValueError):
        Augment(crop_padding=-2)
