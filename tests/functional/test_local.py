"""Locally connected 2-D kernel: PyTorch oracle, case table, gradient check, naive vs fast,
the shared-filter special case (= conv2d), error messages, dtype, purity, strict=False."""

from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import reference
from cnnkit.functional import (conv2d_backward, conv2d_forward, locally_connected2d_backward,
                               locally_connected2d_forward)
from cnnkit.gradcheck import check_kernel
from tests import oracle
from tests.helpers import assert_close, assert_matches_oracle


class Geometry(NamedTuple):
    x_shape: tuple   # (N, C, H, W)
    w_shape: tuple   # (H_out, W_out, F, C, KH, KW)
    stride: tuple
    pad: tuple
    dilation: tuple


def _out_size(size, k, s, p, d):
    """The size rule written out independently of cnnkit (floored)."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _geometry(x_shape, f, kernel, stride=1, pad=0, dilation=1):
    as_pair = lambda v: tuple(v) if isinstance(v, tuple) else (v, v)  # noqa: E731
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(as_pair, (kernel, stride, pad, dilation))
    n, c, h, w = x_shape
    h_out, w_out = _out_size(h, kh, sh, ph, dh), _out_size(w, kw, sw, pw, dw)
    return Geometry(x_shape, (h_out, w_out, f, c, kh, kw), (sh, sw), (ph, pw), (dh, dw))


@st.composite
def geometries(draw):
    """Output size first; the input size H = (H_out - 1)*S + D*(K-1) + 1 - 2P, with P drawn
    small enough that H >= 1, so every draw satisfies the strict size rule."""
    n, c, f = (draw(st.integers(1, 3)) for _ in range(3))
    size, kernel, stride, pad, dilation, out = [], [], [], [], [], []
    for _ in range(2):  # height, then width
        k, s, d, o = (draw(st.integers(1, 4)), draw(st.integers(1, 3)),
                      draw(st.integers(1, 3)), draw(st.integers(1, 4)))
        padded = (o - 1) * s + d * (k - 1) + 1
        p = draw(st.integers(0, min(2, (padded - 1) // 2)))
        size.append(padded - 2 * p)
        kernel.append(k), stride.append(s), pad.append(p), dilation.append(d), out.append(o)
    return Geometry((n, c, *size), (*out, f, c, *kernel), tuple(stride), tuple(pad),
                    tuple(dilation))


def _arrays(rng, geo, bias=True, dtype=np.float64):
    x = rng.standard_normal(geo.x_shape).astype(dtype)
    w = rng.standard_normal(geo.w_shape).astype(dtype)
    h_out, w_out, f = geo.w_shape[:3]
    b = rng.standard_normal((f, h_out, w_out)).astype(dtype) if bias else None
    return x, w, b


def _hyper(geo):
    return dict(stride=geo.stride, pad=geo.pad, dilation=geo.dilation)


def _check_against_torch(rng, geo, bias):
    x, w, b = _arrays(rng, geo, bias)
    out, cache = locally_connected2d_forward(x, w, b, **_hyper(geo))
    dout = rng.standard_normal(out.shape)
    dx, dw, db = locally_connected2d_backward(dout, cache)
    assert_matches_oracle((out, dx, dw, db), oracle.locally_connected2d(
        x, w, b, geo.stride, geo.pad, geo.dilation, dout))


CASES = [
    pytest.param(_geometry((2, 3, 5, 5), 4, 1), id="1x1_kernel"),
    pytest.param(_geometry((2, 2, 6, 5), 3, (3, 2)), id="nonsquare_kernel_3x2"),
    pytest.param(_geometry((2, 2, 7, 5), 2, 3, stride=(2, 1)), id="stride_2_1"),
    pytest.param(_geometry((1, 2, 4, 6), 2, 3, pad=(1, 0)), id="pad_height_only"),
    pytest.param(_geometry((2, 2, 7, 7), 2, 3, dilation=2), id="dilation_2"),
    pytest.param(_geometry((1, 1, 5, 4), 1, (2, 3)), id="N1_C1_F1"),
    pytest.param(_geometry((2, 3, 4, 4), 3, 4), id="window_is_whole_input"),
    pytest.param(_geometry((2, 3, 9, 9), 2, (3, 2), stride=(2, 3), pad=(1, 0), dilation=(1, 2)),
                 id="everything_non_square"),
]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@given(data=st.data(), geo=geometries())
def test_matches_torch(bias, data, geo):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    _check_against_torch(rng, geo, bias)


@pytest.mark.parametrize("geo", CASES)
def test_cases_match_torch(rng, geo):
    _check_against_torch(rng, geo, bias=True)


@pytest.mark.parametrize("geo", CASES)
def test_gradcheck(rng, geo):
    x, w, b = _arrays(rng, geo)
    errors = check_kernel(locally_connected2d_forward, locally_connected2d_backward, [x, w, b],
                          rng=rng, **_hyper(geo))
    assert sorted(errors) == ["db", "dw", "dx"]
    for name, err in errors.items():
        assert err < 1e-7, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@given(data=st.data(), geo=geometries())
def test_reference_matches_fast(bias, data, geo):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x, w, b = _arrays(rng, geo, bias)
    out, cache = locally_connected2d_forward(x, w, b, **_hyper(geo))
    r_out, r_cache = reference.locally_connected2d_forward(x, w, b, **_hyper(geo))
    assert_close(out, r_out, "out")
    dout = rng.standard_normal(out.shape)
    grads = locally_connected2d_backward(dout, cache)
    r_grads = reference.locally_connected2d_backward(dout, r_cache)
    for name, g, r in zip(["dx", "dw", "db"], grads, r_grads):
        if bias or name != "db":
            assert_close(g, r, name)
        else:
            assert g is None and r is None, "db must be None without a bias"


@given(data=st.data(), geo=geometries())
def test_same_filter_everywhere_is_conv2d(data, geo):
    """With w[i, j] the same filter bank at every position (and b[:, i, j] the same bias) the layer
    is a convolution; its dw and db are the conv's summed over the positions."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    h_out, w_out, f = geo.w_shape[:3]
    x = rng.standard_normal(geo.x_shape)
    w_conv = rng.standard_normal(geo.w_shape[2:])                       # (F, C, KH, KW)
    b_conv = rng.standard_normal(f)
    w = np.broadcast_to(w_conv, geo.w_shape).copy()
    b = np.broadcast_to(b_conv[:, None, None], (f, h_out, w_out)).copy()
    out, cache = locally_connected2d_forward(x, w, b, **_hyper(geo))
    c_out, c_cache = conv2d_forward(x, w_conv, b_conv, **_hyper(geo))
    assert_close(out, c_out, "out")
    dout = rng.standard_normal(out.shape)
    dx, dw, db = locally_connected2d_backward(dout, cache)
    c_dx, c_dw, c_db = conv2d_backward(dout, c_cache)
    assert_close(dx, c_dx, "dx")
    assert_close(dw.sum(axis=(0, 1)), c_dw, "dw summed over positions")
    assert_close(db.sum(axis=(1, 2)), c_db, "db summed over positions")


def test_known_answer_each_position_its_own_filter():
    """One channel, 1x1 kernel: out[0, 0, i, j] = w[i, j] * x[i, j] + b[i, j], by hand."""
    x = np.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    w = np.array([[2.0, 0.0, -1.0], [0.5, 3.0, 1.0]]).reshape(2, 3, 1, 1, 1, 1)
    b = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -6.0]]).reshape(1, 2, 3)
    out, _ = locally_connected2d_forward(x, w, b)
    np.testing.assert_array_equal(out[0, 0], [[2.0, 1.0, -3.0], [2.0, 15.0, 0.0]])


def _assert_mentions(info, *fragments):
    """The raised message contains every fragment (the numbers the user needs)."""
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in message {msg!r}"


def test_error_size_rule_not_integer(rng):
    x = rng.standard_normal((1, 1, 8, 8))
    w = rng.standard_normal((2, 2, 1, 1, 3, 3))
    with pytest.raises(ValueError) as info:
        locally_connected2d_forward(x, w, None, stride=3)
    _assert_mentions(info, "(8 - 3 + 0)/3 + 1", "not an integer", "strict=False")


def test_error_w_grid_differs_from_size_rule(rng):
    x = rng.standard_normal((2, 3, 8, 8))
    w = rng.standard_normal((5, 5, 4, 3, 3, 3))
    with pytest.raises(ValueError) as info:
        locally_connected2d_forward(x, w)
    _assert_mentions(info, "5x5 output grid", "(2, 3, 8, 8)", "6x6", "kernel 3", "stride 1",
                     "pad 0")


def test_error_channel_mismatch(rng):
    x = rng.standard_normal((2, 3, 5, 5))
    w = rng.standard_normal((3, 3, 4, 2, 3, 3))
    with pytest.raises(ValueError) as info:
        locally_connected2d_forward(x, w)
    _assert_mentions(info, "C = 3", "(3, 3, 4, 2, 3, 3)", "expects 2")


def test_error_bias_shape(rng):
    x = rng.standard_normal((2, 3, 5, 5))
    w = rng.standard_normal((3, 3, 4, 3, 3, 3))
    with pytest.raises(ValueError) as info:
        locally_connected2d_forward(x, w, rng.standard_normal(4))  # a conv bias (F,)
    _assert_mentions(info, "(4, 3, 3)", "(4,)")


def test_error_conv_shaped_weight(rng):
    x = rng.standard_normal((2, 3, 5, 5))
    with pytest.raises(ValueError) as info:
        locally_connected2d_forward(x, rng.standard_normal((4, 3, 3, 3)))
    _assert_mentions(info, "6-D", "(4, 3, 3, 3)")


def test_dtypes(rng):
    # parameters are cast to x's dtype: the layer computes and returns in x's float type
    x = rng.standard_normal((1, 1, 3, 3)).astype(np.float32)
    w = rng.standard_normal((1, 1, 1, 1, 3, 3))
    b = rng.standard_normal((1, 1, 1))
    out, cache = locally_connected2d_forward(x, w, b)
    expected, _ = locally_connected2d_forward(x, w.astype(np.float32), b.astype(np.float32))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    assert all(g.dtype == np.float32 for g in locally_connected2d_backward(np.ones_like(out), cache))
    with pytest.raises(TypeError) as info:
        locally_connected2d_forward(np.ones((1, 1, 3, 3), dtype=np.int64), w)
    _assert_mentions(info, "int64")


def test_error_dout_shape(rng):
    x = rng.standard_normal((2, 1, 3, 3))
    _, cache = locally_connected2d_forward(x, rng.standard_normal((1, 1, 2, 1, 3, 3)))
    with pytest.raises(ValueError) as info:
        locally_connected2d_backward(np.ones((2, 2)), cache)
    _assert_mentions(info, "(2, 2, 1, 1)", "(2, 2)")


def test_float32_preserved(rng):
    geo = _geometry((2, 3, 7, 6), 4, (3, 2), stride=2, pad=1)
    x, w, b = _arrays(rng, geo)
    dout = rng.standard_normal((2, 4) + geo.w_shape[:2])
    out64, cache64 = locally_connected2d_forward(x, w, b, **_hyper(geo))
    grads64 = locally_connected2d_backward(dout, cache64)
    f32 = [a.astype(np.float32) for a in (x, w, b)]
    out, cache = locally_connected2d_forward(*f32, **_hyper(geo))
    grads = locally_connected2d_backward(dout.astype(np.float32), cache)
    for name, a, ref in zip(["out", "dx", "dw", "db"], (out, *grads), (out64, *grads64)):
        assert a.dtype == np.float32, f"{name} is {a.dtype}"
        assert_close(a, ref, name, rtol=1e-4, atol=1e-4)


def test_inputs_not_modified(rng):
    geo = _geometry((2, 2, 6, 6), 3, 3, stride=1, pad=1, dilation=2)
    x, w, b = _arrays(rng, geo)
    dout = rng.standard_normal((2, 3) + geo.w_shape[:2])
    saved = [a.copy() for a in (x, w, b, dout)]
    _, cache = locally_connected2d_forward(x, w, b, **_hyper(geo))
    locally_connected2d_backward(dout, cache)
    for name, a, s in zip(["x", "w", "b", "dout"], (x, w, b, dout), saved):
        np.testing.assert_array_equal(a, s, err_msg=f"{name} was modified")


def test_strict_false_floors_and_ignores_unreached_rows(rng):
    """H = 8, kernel 3, stride 2: (8 - 3)/2 + 1 = 3.5. strict=False keeps 3 rows of windows,
    which read rows 0..6 only: the strict layer on x[:, :, :7], with dx = 0 on row 7."""
    x = rng.standard_normal((2, 2, 8, 7))
    w = rng.standard_normal((3, 3, 2, 2, 3, 3))
    b = rng.standard_normal((2, 3, 3))
    with pytest.raises(ValueError) as info:
        locally_connected2d_forward(x, w, b, stride=2)
    _assert_mentions(info, "(8 - 3 + 0)/2 + 1")
    out, cache = locally_connected2d_forward(x, w, b, stride=2, strict=False)
    c_out, c_cache = locally_connected2d_forward(x[:, :, :7], w, b, stride=2)
    assert_close(out, c_out, "out")
    dout = rng.standard_normal(out.shape)
    dx, dw, db = locally_connected2d_backward(dout, cache)
    c_dx, c_dw, _ = locally_connected2d_backward(dout, c_cache)
    assert_close(dx[:, :, :7], c_dx, "dx on the rows the windows read")
    np.testing.assert_array_equal(dx[:, :, 7], 0, err_msg="dx on the dropped row")
    assert_close(dw, c_dw, "dw")
    t_out, (t_dx, t_dw, t_db) = oracle.locally_connected2d(x, w, b, 2, 0, 1, dout)
    for name, a, t in zip(["out", "dx", "dw", "db"], (out, dx, dw, db), (t_out, t_dx, t_dw, t_db)):
        assert_close(a, t, f"{name} vs torch")
    r_out, r_cache = reference.locally_connected2d_forward(x, w, b, stride=2, strict=False)
    assert_close(r_out, out, "reference out")
    assert_close(reference.locally_connected2d_backward(dout, r_cache)[0], dx, "reference dx")
