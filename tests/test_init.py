"""cnnkit.init: the statistics of each scheme, dtypes, reproducibility and argument checks.

Tolerances: over n = 2**18 draws of a zero-mean distribution with std s, the sample mean has
standard error s/sqrt(n) and the sample std a relative standard error sqrt((kurtosis - 1)/(4n))
(kurtosis 3 for the normal, 1.8 for the uniform). Every check allows 6 standard errors, so a
correct scheme fails about once in 5e8 runs, while a wrong formula (a factor sqrt(2) in the std
at the least) is off by more than 200 standard errors.
"""

import numpy as np
import pytest

from cnnkit import init

N = 2**18
SHAPE = (512, 512)                        # N draws
FAN_IN, FAN_OUT = 300, 100

SCHEMES = {
    "gaussian": (lambda rng, **kw: init.gaussian(SHAPE, rng, **kw), 1e-2, "normal"),
    "gaussian-scale": (lambda rng, **kw: init.gaussian(SHAPE, rng, 0.5, **kw), 0.5, "normal"),
    "xavier_normal": (lambda rng, **kw: init.xavier_normal(SHAPE, FAN_IN, FAN_OUT, rng, **kw),
                      np.sqrt(2 / (FAN_IN + FAN_OUT)), "normal"),
    "xavier_uniform": (lambda rng, **kw: init.xavier_uniform(SHAPE, FAN_IN, FAN_OUT, rng, **kw),
                       np.sqrt(2 / (FAN_IN + FAN_OUT)), "uniform"),
    "he_normal": (lambda rng, **kw: init.he_normal(SHAPE, FAN_IN, rng, **kw),
                  np.sqrt(2 / FAN_IN), "normal"),
    "he_uniform": (lambda rng, **kw: init.he_uniform(SHAPE, FAN_IN, rng, **kw),
                   np.sqrt(2 / FAN_IN), "uniform"),
}
KURTOSIS = {"normal": 3.0, "uniform": 1.8}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_mean_and_std_follow_the_formula(scheme, rng):
    draw, std, family = SCHEMES[scheme]
    w = draw(rng)
    assert w.shape == SHAPE and w.dtype == np.float32
    w = w.astype(np.float64)
    assert abs(w.mean()) < 6 * std / np.sqrt(N), "mean"
    assert abs(w.std() / std - 1) < 6 * np.sqrt((KURTOSIS[family] - 1) / (4 * N)), "std"
    if family == "uniform":
        bound = std * np.sqrt(3)          # U(-a, a) has std a/sqrt(3)
        assert np.abs(w).max() <= bound * (1 + 1e-6)
        assert np.abs(w).max() > 0.99 * bound


@pytest.mark.parametrize("scheme", SCHEMES)
def test_float64_option_and_the_same_seed_in_both_dtypes(scheme):
    draw = SCHEMES[scheme][0]
    w64 = draw(np.random.default_rng(3), dtype=np.float64)
    w32 = draw(np.random.default_rng(3))
    assert w64.dtype == np.float64
    np.testing.assert_array_equal(w32, w64.astype(np.float32))
    assert not np.array_equal(draw(np.random.default_rng(4)), w32)


def test_zeros():
    assert init.zeros((2, 3)).dtype == np.float32 and not init.zeros((2, 3)).any()
    assert init.zeros(4, dtype=np.float64).shape == (4,)


def test_shape_accepts_an_int_or_a_tuple(rng):
    assert init.he_normal(5, 5, rng).shape == (5,)
    assert init.he_normal([2, 3], 3, rng).shape == (2, 3)
    assert init.gaussian((0, 3), rng).shape == (0, 3)


@pytest.mark.parametrize("call, error, match", [
    (lambda r: init.he_normal((2, -1), 3, r), ValueError, "sizes >= 0"),
    (lambda r: init.he_normal((2, 1.5), 3, r), TypeError, "tuple of ints"),
    (lambda r: init.he_uniform((2, 2), 0, r), ValueError, "fan_in must be >= 1"),
    (lambda r: init.xavier_normal((2, 2), 2, 2.0, r), TypeError, "fan_out must be an int"),
    (lambda r: init.xavier_uniform((2, 2), True, 2, r), TypeError, "fan_in must be an int"),
    (lambda r: init.he_normal((2, 2), 2, 0), TypeError, "numpy.random.Generator"),
    (lambda r: init.gaussian((2, 2), np.random, 0.1), TypeError, "numpy.random.Generator"),
    (lambda r: init.gaussian((2, 2), r, 0.0), ValueError, "weight_scale must be > 0"),
    (lambda r: init.gaussian((2, 2), r, "0.1"), TypeError, "weight_scale"),
    (lambda r: init.he_normal((2, 2), 2, r, dtype=np.int32), TypeError, "floating-point"),
    (lambda r: init.zeros((2, -2)), ValueError, "sizes >= 0"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_arguments_raise(call, error, match, rng):
    with pytest.raises(error, match=match):
        call(rng)
