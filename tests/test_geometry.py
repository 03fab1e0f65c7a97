"""cnnkit.geometry: the size rule (W - F + 2P)/S + 1, strict and floored, and the volume check."""

import pytest

from cnnkit.geometry import (SizeRuleError, VolumeError, Window, check_volume, conv_output_size,
                             window_geometry)


def test_the_size_rule_with_padding_stride_and_dilation():
    assert conv_output_size(32, 5, 1, 2, 1, "conv") == 32
    assert conv_output_size(227, 11, 4, 0, 1, "conv") == 55         # AlexNet's first conv
    assert conv_output_size(7, 3, 1, 0, 2, "conv") == 3             # dilated: F = 5
    assert conv_output_size(8, 3, 2, 1, 1, "conv", strict=False) == 4


def test_a_size_rule_error_holds_the_numbers_and_is_a_plain_value_error():
    with pytest.raises(SizeRuleError) as info:
        conv_output_size(32, 5, 2, 0, 1, "conv")
    err = info.value
    assert type(err).__mro__[1] is ValueError
    assert str(err) == ("conv: (W - F + 2P)/S + 1 = (32 - 5 + 0)/2 + 1 is not an integer along "
                        "the width; change the stride or padding, or pass strict=False to drop "
                        "the last 1 row(s)/column(s) that no full window reaches (PyTorch's "
                        "floor)")
    assert (err.size, err.kernel, err.stride, err.pad, err.dilation, err.span) == (32, 5, 2, 0, 1,
                                                                                  5)
    assert err.message("CONV5", "the stride") == ("CONV5: (W - F + 2P)/S + 1 = (32 - 5 + 0)/2 + "
                                                  "1 is not an integer along the width; change "
                                                  "the stride")


def test_a_window_larger_than_the_input_leaves_nothing_even_when_floored():
    with pytest.raises(SizeRuleError, match=r"pool: the dilated window \(D\*\(F-1\)\+1 = 5\) is "
                                            r"larger than the padded input \(W \+ 2P = 4 \+ 0 = "
                                            r"4\) along the height") as info:
        conv_output_size(4, 3, 1, 0, 2, "pool", "height", strict=False)
    assert info.value.empty


def test_window_geometry_normalises_both_axes():
    win = window_geometry((2, 3, 9, 8), (3, 2), 2, (1, 0), 1, "conv2d")
    assert win == Window(3, 2, 2, 2, 1, 0, 1, 1, 5, 4)
    with pytest.raises(SizeRuleError, match="conv2d: .* along the height"):
        window_geometry((2, 3, 8, 9), 3, 2, 0, 1, "conv2d")
    with pytest.raises(ValueError, match="conv2d stride must be >= 1, got 0"):
        window_geometry((2, 3, 8, 8), 3, 0, 0, 1, "conv2d")


def test_check_volume():
    assert check_volume([3, 4, 5], "conv2d") == (3, 4, 5)
    with pytest.raises(VolumeError, match=r"conv2d expects a \(C, H, W\) volume per example, got "
                                          r"shape \(10,\) \(1-D per example\)") as info:
        check_volume((10,), "conv2d")
    assert info.value.shape == (10,) and type(info.value).__mro__[1] is ValueError


def test_kept_geometries_answer_as_a_fresh_walk_does_and_never_swallow_an_error():
    from cnnkit import geometry

    geometry._known_geometry.cache_clear()
    args = ((5, 3), (2, 1), (1, 0), 1, "conv2d")
    first = window_geometry((8, 3, 17, 11), *args)
    assert first == geometry._window_geometry((8, 3, 17, 11), *args, True)
    assert window_geometry((1, 3, 17, 11), *args) is first       # kept: same size, same numbers
    assert geometry._known_geometry.cache_info().hits == 1
    # values equal to a kept key's but of another kind are still refused
    for stride in (2.0, True, (2.0, 1)):
        with pytest.raises(TypeError, match="stride"):
            window_geometry((1, 3, 17, 11), (5, 3), stride, (1, 0), 1, "conv2d")
    # a list is never a key, and still normalised
    assert window_geometry((1, 3, 17, 11), [5, 3], [2, 1], [1, 0], 1, "conv2d") == first
    # an invalid size raises on every call, not only the first
    for _ in range(2):
        with pytest.raises(SizeRuleError):
            window_geometry((1, 3, 16, 11), (5, 3), 2, (1, 0), 1, "conv2d")
    # another spatial size is another answer
    assert (first.h_out, window_geometry((1, 3, 19, 11), *args).h_out) == (8, 9)
    for i in range(geometry.GEOMETRY_CACHE_SIZE + 10):                # bounded
        window_geometry((1, 1, 3 + i, 3), 3, 1, 0, 1, "pool")
    assert geometry._known_geometry.cache_info().currsize <= geometry.GEOMETRY_CACHE_SIZE
