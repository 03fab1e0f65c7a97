"""cnnkit.checks: the argument checks every tier shares say what is wrong, with the numbers."""

import numpy as np
import pytest

from cnnkit.checks import (as_float_array, check_count, check_dout, check_example_shape,
                           check_ndim, check_param, check_real, check_rng, match_dtype, pair)


def test_pair_takes_an_int_or_a_pair_height_first():
    assert pair(3, "k") == (3, 3)
    assert pair((3, 2), "k") == (3, 2)
    assert pair(np.array([1, 4]), "k") == (1, 4)
    assert pair(0, "padding", minimum=0) == (0, 0)
    assert all(type(v) is int for v in pair(np.int64(2), "k"))


@pytest.mark.parametrize("value, error, message", [
    (0, ValueError, "stride must be >= 1, got 0"),
    ((1, 2, 3), ValueError, r"stride must be an int or a pair \(h, w\), got \(1, 2, 3\)"),
    (2.0, TypeError, "stride must be an int or a pair of ints, got 2.0"),
    (True, TypeError, "got True"),
    ("2", TypeError, "got '2'"),
])
def test_pair_refuses_what_is_not_a_size(value, error, message):
    with pytest.raises(error, match=message):
        pair(value, "stride")


def test_counts_and_reals():
    assert check_count(np.int32(4), "n") == 4 and type(check_count(4, "n")) is int
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        check_count(0, "n")
    with pytest.raises(TypeError, match="n must be an int, got 1.5"):
        check_count(1.5, "n")
    assert type(check_real(np.float32(0.5), "p")) is float and check_real(1, "p") == 1.0
    for bad in (True, "0.5", np.ones(1)):
        with pytest.raises(TypeError, match="p must be a real number"):
            check_real(bad, "p")


def test_example_shapes():
    assert check_example_shape((3, 8, 8), "input_shape", volume=True) == (3, 8, 8)
    assert check_example_shape([10], "input_shape") == (10,)
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\) of positive ints, "
                                         r"got \(10,\)"):
        check_example_shape((10,), "input_shape", volume=True)
    with pytest.raises(ValueError, match=r"\(C, H, W\) or \(D,\) of positive ints, got \(\)"):
        check_example_shape((), "input_shape")
    with pytest.raises(ValueError, match=r"got \(3, 0, 8\)"):
        check_example_shape((3, 0, 8), "input_shape")


def test_rng_rank_dtype_parameter_and_dout():
    rng = np.random.default_rng(0)
    assert check_rng(rng, "dropout") is rng
    with pytest.raises(TypeError, match="dropout: rng must be a numpy.random.Generator .*"
                                        "got RandomState"):
        check_rng(np.random.RandomState(0), "dropout")
    x = np.zeros((2, 3, 4, 4), np.float32)
    check_ndim(x, (2, 4), "x")
    with pytest.raises(ValueError, match=r"x must be 3-D, got shape \(2, 3, 4, 4\) \(4-D\)"):
        check_ndim(x, 3, "x")
    assert as_float_array(x, "x") is x
    with pytest.raises(TypeError, match="x must be a floating-point array .* got dtype int64"):
        as_float_array(np.zeros(3, np.int64), "x")
    b = np.zeros(3)                                           # float64 bias, float32 input
    assert match_dtype(b, x).dtype == check_param(b, (3,), x, "b").dtype == np.float32
    with pytest.raises(ValueError, match=r"b must have shape \(4,\), got \(3,\)"):
        check_param(b, (4,), x, "b")
    with pytest.raises(ValueError, match=r"conv: dout must have the forward output's shape "
                                         r"\(2, 3\), got \(3, 2\)"):
        check_dout(np.zeros((3, 2)), (2, 3), "conv")
