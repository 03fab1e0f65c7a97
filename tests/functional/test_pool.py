"""Pooling kernels: PyTorch oracle, gradient checks, naive vs fast, known answers, errors."""

from __future__ import annotations

import re
from typing import Callable, NamedTuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import functional as F
from cnnkit import reference as R
from cnnkit.gradcheck import check_kernel
from tests import oracle
from tests.helpers import assert_close, away_from_zero, distinct
from tests.plans import PLANS, chunk_plans, plans


def _normal(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


class Kind(NamedTuple):
    forward: Callable
    backward: Callable
    naive_forward: Callable
    naive_backward: Callable
    oracle: Callable
    padded: bool                 # takes a pad argument
    make_x: Callable             # (rng, shape) -> float64 input away from the kernel's kinks


KINDS = {
    # max: distinct values, so no tie or near-tie decides a switch by accident
    "max": Kind(F.max_pool2d_forward, F.max_pool2d_backward, R.max_pool2d_forward,
                R.max_pool2d_backward, oracle.max_pool2d, True, distinct),
    "avg": Kind(F.avg_pool2d_forward, F.avg_pool2d_backward, R.avg_pool2d_forward,
                R.avg_pool2d_backward, oracle.avg_pool2d, True, _normal),
    # l2: no all-zero window (its gradient is ours to define, nan in PyTorch)
    "l2": Kind(F.l2_pool2d_forward, F.l2_pool2d_backward, R.l2_pool2d_forward,
               R.l2_pool2d_backward, oracle.l2_pool2d, False, away_from_zero),
}


def _hyper(name, kernel, stride, pad, strict):
    """Keyword arguments of kernel ``name``'s forward (L2 pooling takes no pad)."""
    hyper = {"kernel": kernel, "stride": stride, "strict": strict}
    if KINDS[name].padded:
        hyper["pad"] = pad
    return hyper


def _torch(name, x, kernel, stride, pad, dout):
    """PyTorch's (out, dx) for kernel ``name``."""
    if KINDS[name].padded:
        out, (dx,) = KINDS[name].oracle(x, kernel, stride, pad, dout=dout)
    else:
        out, (dx,) = KINDS[name].oracle(x, kernel, stride, dout=dout)
    return out, dx


# Hard cases: (x_shape, kernel, stride, pad, strict). Cases with padding skip L2 pooling.
CASES = [
    pytest.param((2, 3, 8, 8), 2, None, 0, True, id="2x2s2-tiles"),
    pytest.param((1, 2, 6, 9), 3, 3, 0, True, id="3x3s3-tiles-wide"),
    pytest.param((2, 2, 9, 9), 3, 2, 0, True, id="3x3s2-overlap"),
    pytest.param((1, 2, 7, 6), 3, 1, 0, True, id="3x3s1"),
    pytest.param((2, 2, 6, 7), (2, 3), (2, 1), 0, True, id="k2x3-s2x1"),
    pytest.param((2, 2, 7, 7), 3, 2, (1, 0), True, id="pad-H-only"),
    pytest.param((1, 1, 5, 5), 2, 1, 0, True, id="N1-C1"),
    pytest.param((2, 3, 5, 5), 1, 2, 0, True, id="kernel1-s2"),
    pytest.param((3, 1, 5, 5), 5, None, 0, True, id="window-is-input"),
    pytest.param((2, 2, 7, 8), 2, 2, 0, False, id="floor-drops-row"),
    pytest.param((2, 2, 8, 8), 3, 2, 1, False, id="3x3s2p1-floor"),
    # batches of 5-7 that the chunk plans (tests/plans.py) cut unevenly, non-square throughout
    pytest.param((5, 2, 8, 12), (2, 3), None, 0, True, id="N5-k2x3-tiles-8x12"),
    pytest.param((7, 3, 9, 6), (3, 2), (2, 1), (1, 0), True, id="N7-k3x2-s2x1-pad-H"),
    pytest.param((6, 2, 10, 7), (3, 2), (2, 3), 0, False, id="N6-k3x2-s2x3-floor"),
]

KIND_CASES = [pytest.param(name, *case.values, id=f"{name}-{case.id}")
              for name, kind in KINDS.items() for case in CASES
              if kind.padded or case.values[3] == 0]


@st.composite
def pool_draws(draw, padded=True):
    """(x_shape, kernel, stride, pad, strict), valid by construction.

    The output size comes first and the input is derived from it (Torch7's test.lua recipe),
    ``H = (H_out - 1)*S + K - 2P``, plus 0..S-1 trailing rows that only strict=False accepts.
    """
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = tuple(draw(st.integers(0, k // 2)) if padded else 0 for k in kernel)
    sizes, extras = [], []
    for k, s, p in zip(kernel, stride, pad):
        lowest = 1 + max(0, -(-(2 * p - k + 1) // s))     # smallest H_out whose H is >= 1
        h_out = draw(st.integers(lowest, lowest + 3))
        extras.append(draw(st.integers(0, s - 1)))
        sizes.append((h_out - 1) * s + k - 2 * p + extras[-1])
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return (n, c, *sizes), kernel, stride, pad, extras == [0, 0]


def _seeded(data):
    """A Generator for an @given test (function-scoped fixtures do not mix with @given)."""
    return np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))


# 1. Oracle: PyTorch float64, forward and dx, random upstream gradient ----------------------------

def _check_against_torch(name, x_shape, kernel, stride, pad, strict, rng, plan="real"):
    kind = KINDS[name]
    x = kind.make_x(rng, x_shape)
    with chunk_plans(plan) as record:
        out, cache = kind.forward(x, **_hyper(name, kernel, stride, pad, strict))
        dout = rng.standard_normal(out.shape)
        dx = kind.backward(dout, cache)
    want_out, want_dx = _torch(name, x, kernel, stride, pad, dout)
    assert_close(out, want_out, f"{name} out")
    assert_close(dx, want_dx, f"{name} dx")
    return record


@pytest.mark.parametrize("name", KINDS)
@given(data=st.data())
def test_random_geometry_matches_torch(name, data):
    x_shape, kernel, stride, pad, strict = data.draw(pool_draws(KINDS[name].padded))
    plan = data.draw(plans(), label="plan")
    _check_against_torch(name, x_shape, kernel, stride, pad, strict, _seeded(data), plan)


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("name, x_shape, kernel, stride, pad, strict", KIND_CASES)
def test_hard_cases_match_torch(name, x_shape, kernel, stride, pad, strict, rng, plan):
    record = _check_against_torch(name, x_shape, kernel, stride, pad, strict, rng, plan)
    if plan == "forced" and x_shape[0] > 1:
        record.check()


@given(data=st.data())
def test_global_avg_pool_matches_torch(data):
    x_shape = tuple(data.draw(st.integers(1, 5)) for _ in range(4))
    plan = data.draw(plans(), label="plan")
    rng = _seeded(data)
    x = rng.standard_normal(x_shape)
    with chunk_plans(plan):
        out, cache = F.global_avg_pool2d_forward(x)
        dout = rng.standard_normal(out.shape)
        dx = F.global_avg_pool2d_backward(dout, cache)
    want_out, (want_dx,) = oracle.global_avg_pool2d(x, dout=dout)
    assert_close(out, want_out, "global_avg out")
    assert_close(dx, want_dx, "global_avg dx")


# 2. Numerical gradient checks (float64, centred differences) -------------------------------------

GRAD_CASES = [
    pytest.param((2, 2, 4, 4), 2, None, 0, True, id="2x2s2-tiles"),
    pytest.param((1, 2, 5, 5), 3, 2, 1, True, id="3x3s2p1-overlap"),
    pytest.param((2, 1, 5, 6), (2, 3), (1, 2), 0, False, id="k2x3-s1x2-floor"),
]


@pytest.mark.parametrize("name, x_shape, kernel, stride, pad, strict", [
    pytest.param(name, *case.values, id=f"{name}-{case.id}")
    for name, kind in KINDS.items() for case in GRAD_CASES if kind.padded or case.values[3] == 0])
def test_numerical_gradient(name, x_shape, kernel, stride, pad, strict, rng):
    kind = KINDS[name]
    x = kind.make_x(rng, x_shape)
    errors = check_kernel(kind.forward, kind.backward, [x], rng=rng,
                          **_hyper(name, kernel, stride, pad, strict))
    assert set(errors) == {"dx"}
    assert errors["dx"] < 1e-7, errors


def test_global_avg_pool_numerical_gradient(rng):
    errors = check_kernel(F.global_avg_pool2d_forward, F.global_avg_pool2d_backward,
                          [rng.standard_normal((2, 3, 3, 4))], rng=rng)
    assert errors["dx"] < 1e-7, errors


# 3. Naive (cnnkit.reference) vs fast -------------------------------------------------------------

def _check_naive_vs_fast(name, x_shape, kernel, stride, pad, strict, rng, plan="real"):
    kind = KINDS[name]
    x = kind.make_x(rng, x_shape)
    hyper = _hyper(name, kernel, stride, pad, strict)
    with chunk_plans(plan):
        out, cache = kind.forward(x, **hyper)
        dout = rng.standard_normal(out.shape)
        dx = kind.backward(dout, cache)
    naive_out, naive_cache = kind.naive_forward(x, **hyper)
    assert_close(out, naive_out, f"{name} out")
    assert_close(dx, kind.naive_backward(dout, naive_cache), f"{name} dx")


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("name, x_shape, kernel, stride, pad, strict", KIND_CASES)
def test_naive_matches_fast_on_hard_cases(name, x_shape, kernel, stride, pad, strict, rng, plan):
    _check_naive_vs_fast(name, x_shape, kernel, stride, pad, strict, rng, plan)


@pytest.mark.parametrize("name", KINDS)
@given(data=st.data())
def test_naive_matches_fast_on_random_geometry(name, data):
    x_shape, kernel, stride, pad, strict = data.draw(pool_draws(KINDS[name].padded))
    plan = data.draw(plans(), label="plan")
    _check_naive_vs_fast(name, x_shape, kernel, stride, pad, strict, _seeded(data), plan)


@pytest.mark.parametrize("x_shape, kernel, stride, pad, strict, path", [
    pytest.param((2, 3, 8, 8), 2, None, 0, True, "reshape", id="2x2s2-tiles"),
    pytest.param((1, 2, 6, 9), (2, 3), (2, 3), 0, True, "reshape", id="k2x3-tiles"),
    pytest.param((2, 2, 9, 9), 3, 2, 0, True, "strided", id="3x3s2-overlap"),
    pytest.param((2, 2, 8, 8), 2, 2, 1, True, "strided", id="2x2s2-padded"),
    pytest.param((2, 2, 7, 8), 2, 2, 0, False, "strided", id="2x2s2-floor-drops-row"),
])
def test_max_pool_takes_each_backward_path(x_shape, kernel, stride, pad, strict, path, rng):
    x = distinct(rng, x_shape)
    out, cache = F.max_pool2d_forward(x, kernel, stride, pad, strict=strict)
    assert cache.path == path
    dout = rng.standard_normal(out.shape)
    naive_out, naive_cache = R.max_pool2d_forward(x, kernel, stride, pad, strict=strict)
    assert_close(out, naive_out, f"out via {path}")
    assert_close(F.max_pool2d_backward(dout, cache), R.max_pool2d_backward(dout, naive_cache),
                 f"dx via {path}")


# 4. Known answers --------------------------------------------------------------------------------

IMPLS = [pytest.param(F, id="fast"), pytest.param(R, id="naive")]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("x, stride, want_dx", [
    # one 2x2 window holding 3 at (0, 1) and at (1, 0): the first in row-major order wins
    pytest.param([[1.0, 3.0], [3.0, 2.0]], None, [[0.0, 1.0], [0.0, 0.0]], id="reshape-path"),
    # two windows (stride 1), each tied; both first maxima are pixel (0, 1), which sums 1 + 2
    pytest.param([[1.0, 3.0, 3.0], [3.0, 2.0, 3.0]], 1, [[0.0, 3.0, 0.0], [0.0, 0.0, 0.0]],
                 id="strided-path"),
])
def test_max_pool_tie_goes_to_first_maximum(impl, x, stride, want_dx):
    x = np.array(x)[None, None]
    out, cache = impl.max_pool2d_forward(x, 2, stride)
    np.testing.assert_array_equal(out, np.full(out.shape, 3.0))
    dout = np.arange(1.0, out.size + 1).reshape(out.shape)          # 1, 2, ...
    dx = impl.max_pool2d_backward(dout, cache)
    np.testing.assert_array_equal(dx, np.array(want_dx)[None, None])


@pytest.mark.parametrize("impl", IMPLS)
def test_max_pool_all_equal_window_routes_to_top_left(impl):
    out, cache = impl.max_pool2d_forward(np.full((1, 1, 2, 2), 2.0), 2)
    dx = impl.max_pool2d_backward(np.array([[[[5.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[5.0, 0.0], [0.0, 0.0]]]])


@pytest.mark.parametrize("impl", IMPLS)
def test_hand_computed_max_and_avg(impl):
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    dout = np.array([[[[1.0, -2.0], [3.0, 4.0]]]])
    out, cache = impl.max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(out, [[[[5.0, 7.0], [13.0, 15.0]]]])
    dx = impl.max_pool2d_backward(dout, cache)
    want = np.zeros((1, 1, 4, 4))
    want[0, 0, 1, 1], want[0, 0, 1, 3], want[0, 0, 3, 1], want[0, 0, 3, 3] = 1, -2, 3, 4
    np.testing.assert_array_equal(dx, want)

    out, cache = impl.avg_pool2d_forward(x, 2)
    np.testing.assert_array_equal(out, [[[[2.5, 4.5], [10.5, 12.5]]]])
    dx = impl.avg_pool2d_backward(dout, cache)
    np.testing.assert_array_equal(dx, np.repeat(np.repeat(dout / 4, 2, axis=2), 2, axis=3))


@pytest.mark.parametrize("impl", IMPLS)
def test_hand_computed_avg_with_padding_divides_by_whole_window(impl):
    # 3x3 window, pad 1, stride 2 on a 3x3 ones image: the corner window sees 4 ones and 5 zeros.
    out, cache = impl.avg_pool2d_forward(np.ones((1, 1, 3, 3)), 3, 2, 1)
    np.testing.assert_allclose(out, np.full((1, 1, 2, 2), 4 / 9), rtol=1e-15)
    dx = impl.avg_pool2d_backward(np.ones((1, 1, 2, 2)), cache)
    # the centre pixel is in all four windows, edge pixels in two, corners in one
    np.testing.assert_allclose(dx, [[[[1 / 9, 2 / 9, 1 / 9], [2 / 9, 4 / 9, 2 / 9],
                                      [1 / 9, 2 / 9, 1 / 9]]]], rtol=1e-15)


@pytest.mark.parametrize("impl", IMPLS)
def test_hand_computed_l2(impl):
    x = np.array([[[[3.0, 0.0, 1.0, 2.0],
                    [4.0, 0.0, 2.0, 4.0]]]])
    out, cache = impl.l2_pool2d_forward(x, 2)
    np.testing.assert_allclose(out, [[[[5.0, 5.0]]]], rtol=1e-15)      # sqrt(9+16), sqrt(1+4+4+16)
    dx = impl.l2_pool2d_backward(np.array([[[[1.0, 2.0]]]]), cache)    # dout * x / out
    np.testing.assert_allclose(dx, [[[[0.6, 0.0, 0.4, 0.8], [0.8, 0.0, 0.8, 1.6]]]], rtol=1e-15)


@pytest.mark.parametrize("impl", IMPLS)
def test_l2_pool_gradient_of_an_all_zero_window_is_zero(impl):
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, :, 2:] = [[1.0, 2.0], [2.0, 4.0]]
    out, cache = impl.l2_pool2d_forward(x, 2)
    np.testing.assert_array_equal(out, [[[[0.0, 5.0]]]])
    dx = impl.l2_pool2d_backward(np.array([[[[7.0, 1.0]]]]), cache)
    np.testing.assert_allclose(dx, [[[[0, 0, 0.2, 0.4], [0, 0, 0.4, 0.8]]]], rtol=1e-15, atol=0)


@pytest.mark.parametrize("impl", IMPLS)
def test_overlapping_max_pool_sums_gradients_at_a_shared_pixel(impl, rng):
    # 3x3 windows, stride 2, on 5x5: the centre pixel (2, 2) lies in all four windows.
    x = distinct(rng, (1, 1, 5, 5))
    x[0, 0, 2, 2] = 10.0
    out, cache = impl.max_pool2d_forward(x, 3, 2)
    np.testing.assert_array_equal(out, np.full((1, 1, 2, 2), 10.0))
    dout = rng.standard_normal(out.shape)
    dx = impl.max_pool2d_backward(dout, cache)
    want = np.zeros_like(x)
    want[0, 0, 2, 2] = dout.sum()
    # the four contributions may be added in another order: a few ulps, absolute near a cancellation
    np.testing.assert_allclose(dx, want, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["max", "avg", "l2"])
def test_strict_false_drops_trailing_rows_and_columns(impl, name, rng):
    x = rng.standard_normal((2, 3, 5, 7))
    forward, backward = (getattr(impl, f"{name}_pool2d_{d}") for d in ("forward", "backward"))
    with pytest.raises(ValueError, match="strict=False"):
        forward(x, 2)
    out, cache = forward(x, 2, strict=False)                  # H_out = 2, W_out = 3
    want, want_cache = forward(x[:, :, :4, :6], 2)
    np.testing.assert_array_equal(out, want)
    dout = rng.standard_normal(out.shape)
    dx = backward(dout, cache)
    np.testing.assert_array_equal(dx[:, :, :4, :6], backward(dout, want_cache))
    assert not dx[:, :, 4:, :].any() and not dx[:, :, :, 6:].any()


def test_global_avg_pool_is_the_channel_mean(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    out, cache = F.global_avg_pool2d_forward(x)
    assert out.shape == (2, 3, 1, 1)
    np.testing.assert_allclose(out[:, :, 0, 0], [[x[n, c].mean() for c in range(3)]
                                                  for n in range(2)], rtol=1e-14)
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(F.global_avg_pool2d_backward(dout, cache),
                               np.broadcast_to(dout / 20, x.shape), rtol=1e-15)


# 5. Errors, dtypes, purity -----------------------------------------------------------------------

FORWARDS = [pytest.param(getattr(impl, f"{name}_pool2d_forward"), id=f"{impl_id}-{name}")
            for impl, impl_id in ((F, "fast"), (R, "naive")) for name in ("max", "avg", "l2")]
PADDED_FORWARDS = [p for p in FORWARDS if not p.id.endswith("l2")]


@pytest.mark.parametrize("forward", FORWARDS)
def test_size_rule_error_names_the_numbers(forward):
    with pytest.raises(ValueError, match=re.escape("(5 - 2 + 0)/2 + 1 is not an integer along "
                                                   "the width")):
        forward(np.zeros((1, 1, 4, 5)), 2)
    with pytest.raises(ValueError, match=re.escape("(7 - 3 + 0)/3 + 1 is not an integer along "
                                                   "the height")):
        forward(np.zeros((1, 1, 7, 6)), 3)


@pytest.mark.parametrize("forward", PADDED_FORWARDS)
def test_pad_over_half_the_kernel_is_rejected(forward):
    with pytest.raises(ValueError, match=re.escape("pad (PH, PW) = (2, 1) for kernel (KH, KW) = "
                                                   "(3, 3)")):
        forward(np.zeros((1, 1, 9, 9)), 3, 1, (2, 1))
    with pytest.raises(ValueError, match=re.escape("pad (PH, PW) = (0, 2) for kernel (KH, KW) = "
                                                   "(1, 3)")):
        forward(np.zeros((1, 1, 9, 9)), (1, 3), 1, (0, 2))


@pytest.mark.parametrize("forward", FORWARDS)
def test_window_larger_than_input_is_rejected(forward):
    with pytest.raises(ValueError, match=re.escape("(W + 2P = 3 + 0 = 3) along the height")):
        forward(np.zeros((1, 1, 3, 8)), 4)


@pytest.mark.parametrize("forward", FORWARDS + [pytest.param(F.global_avg_pool2d_forward,
                                                             id="fast-global_avg")])
def test_bad_input_rank_dtype_and_size(forward):
    args = () if forward is F.global_avg_pool2d_forward else (2,)
    with pytest.raises(ValueError, match=re.escape("4-D, got shape (4, 4, 4) (3-D)")):
        forward(np.zeros((4, 4, 4)), *args)
    with pytest.raises(TypeError, match="int64"):
        forward(np.zeros((1, 1, 4, 4), dtype=np.int64), *args)
    with pytest.raises(ValueError, match=re.escape("positive, got shape (0, 1, 4, 4)")):
        forward(np.zeros((0, 1, 4, 4)), *args)


@pytest.mark.parametrize("forward", FORWARDS)
def test_bad_kernel_and_stride(forward):
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(TypeError, match="kernel"):
        forward(x, 2.0)
    with pytest.raises(ValueError, match="stride must be >= 1, got 0"):
        forward(x, 2, 0)
    with pytest.raises(ValueError, match=re.escape("kernel must be an int or a pair (h, w)")):
        forward(x, (2, 2, 2))


BACKWARD_PAIRS = [pytest.param(F.max_pool2d_forward, F.max_pool2d_backward, id="fast-max"),
                  pytest.param(F.avg_pool2d_forward, F.avg_pool2d_backward, id="fast-avg"),
                  pytest.param(F.l2_pool2d_forward, F.l2_pool2d_backward, id="fast-l2"),
                  pytest.param(R.max_pool2d_forward, R.max_pool2d_backward, id="naive-max"),
                  pytest.param(R.avg_pool2d_forward, R.avg_pool2d_backward, id="naive-avg"),
                  pytest.param(R.l2_pool2d_forward, R.l2_pool2d_backward, id="naive-l2")]


@pytest.mark.parametrize("forward, backward", BACKWARD_PAIRS + [
    pytest.param(lambda x, k: F.global_avg_pool2d_forward(x), F.global_avg_pool2d_backward,
                 id="fast-global_avg")])
def test_backward_rejects_a_dout_of_the_wrong_shape(forward, backward):
    out, cache = forward(np.ones((2, 3, 4, 4)), 2)
    with pytest.raises(ValueError, match=re.escape(f"{out.shape}, got (2, 3, 4, 4)")):
        backward(np.ones((2, 3, 4, 4)), cache)


ALL_PAIRS = [pytest.param(*p.values, {"kernel": 3, "stride": 2, "pad": 1, "strict": False},
                          id=p.id + "-overlap-pad") for p in BACKWARD_PAIRS if "l2" not in p.id]
ALL_PAIRS += [pytest.param(*p.values, {"kernel": 2}, id=p.id + "-tiles") for p in BACKWARD_PAIRS]
ALL_PAIRS += [pytest.param(F.global_avg_pool2d_forward, F.global_avg_pool2d_backward, {},
                           id="fast-global_avg")]


@pytest.mark.parametrize("forward, backward, hyper", ALL_PAIRS)
def test_float32_in_float32_out(forward, backward, hyper, rng):
    x = distinct(rng, (2, 3, 6, 6))
    out64, cache64 = forward(x, **hyper)
    dout = rng.standard_normal(out64.shape)
    dx64 = backward(dout, cache64)
    out, cache = forward(x.astype(np.float32), **hyper)
    dx = backward(dout.astype(np.float32), cache)
    assert out.dtype == np.float32 and dx.dtype == np.float32
    np.testing.assert_allclose(out, out64, rtol=1e-5, atol=1e-6, err_msg="float32 out")
    np.testing.assert_allclose(dx, dx64, rtol=1e-5, atol=1e-6, err_msg="float32 dx")


@pytest.mark.parametrize("forward, backward, hyper", ALL_PAIRS)
def test_inputs_are_not_modified(forward, backward, hyper, rng):
    x = distinct(rng, (2, 3, 6, 6))
    x_copy = x.copy()
    out, cache = forward(x, **hyper)
    dout = rng.standard_normal(out.shape)
    dout_copy = dout.copy()
    dx = backward(dout, cache)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dout, dout_copy)
    # the outputs are fresh, writable arrays that share no memory with the inputs
    for arr in (out, dx):
        assert arr.flags.writeable
        assert not np.shares_memory(arr, x) and not np.shares_memory(arr, dout)


@pytest.mark.parametrize("impl", IMPLS)
def test_course_fixed_max_pool_check(impl):
    # CS231n assignment 2's max_pool_forward_naive check (2x2, stride 2), values as published.
    x = np.linspace(-0.3, 0.4, num=96).reshape(2, 3, 4, 4)
    correct = np.array([[[[-0.26315789, -0.24842105], [-0.20421053, -0.18947368]],
                         [[-0.14526316, -0.13052632], [-0.08631579, -0.07157895]],
                         [[-0.02736842, -0.01263158], [0.03157895, 0.04631579]]],
                        [[[0.09052632, 0.10526316], [0.14947368, 0.16421053]],
                         [[0.20842105, 0.22315789], [0.26736842, 0.28210526]],
                         [[0.32631579, 0.34105263], [0.38526316, 0.4]]]])
    out, _ = impl.max_pool2d_forward(x, 2, stride=2)
    np.testing.assert_allclose(out, correct, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("kernel, stride, pad", [(2, 2, 0), (3, 2, 1)])
def test_max_pool_nan_is_the_maximum_as_in_torch(kernel, stride, pad, rng):
    """A NaN in a window is its maximum, and the window's gradient goes to the NaN (torch)."""
    x = distinct(rng, (2, 3, 6, 6) if kernel == 2 else (2, 3, 7, 7))
    x[0, 1, 2, 3] = np.nan
    x[1, 2, 0, 0] = np.nan
    out, cache = F.max_pool2d_forward(x, kernel, stride, pad)
    dout = rng.standard_normal(out.shape)
    dx = F.max_pool2d_backward(dout, cache)
    t_out, (t_dx,) = oracle.max_pool2d(x, kernel, stride, pad, dout)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(t_out))
    assert_close(np.nan_to_num(out), np.nan_to_num(t_out), "out")
    assert_close(dx, t_dx, "dx")


def test_max_pool_switches_are_small_unsigned_ints(rng):
    """One byte per switch for windows up to 16x16 (the cache is a quarter of a float32 output)."""
    _, cache = F.max_pool2d_forward(rng.standard_normal((1, 1, 6, 6)), 3, 3)
    assert cache.switches.dtype == np.uint8
    _, cache = F.max_pool2d_forward(rng.standard_normal((1, 1, 17, 17)), 17)
    assert cache.switches.dtype == np.uint16


# 6. Max pooling's phase planes: ties, wide windows, strided inputs -------------------------------

def _naive_switches(naive_cache, kw):
    """The naive twin's (p, q) switches as the fast kernel's offsets p*KW + q."""
    pq = naive_cache[3]
    return pq[..., 0] * kw + pq[..., 1]


@given(data=st.data())
def test_max_pool_ties_everywhere_route_like_naive(data):
    """Values from {-1, 0, 1, 2} (many windows tie, as after a ReLU): every switch, output and
    gradient equals the naive twin's exactly, the first maximum in row-major order winning, on
    any geometry and chunk plan. Guards the order in which the phase planes' runs are visited."""
    x_shape, kernel, stride, pad, strict = data.draw(pool_draws())
    plan = data.draw(plans(), label="plan")
    rng = _seeded(data)
    x = rng.integers(-1, 3, x_shape).astype(np.float64)
    dout = rng.integers(1, 9, x_shape[:2] + (1, 1)) * np.ones(1)           # exact sums
    with chunk_plans(plan):
        out, cache = F.max_pool2d_forward(x, kernel, stride, pad, strict=strict)
        dout = np.broadcast_to(dout, out.shape) * rng.integers(1, 5, out.shape)
        dx = F.max_pool2d_backward(dout, cache)
    naive_out, naive_cache = R.max_pool2d_forward(x, kernel, stride, pad, strict=strict)
    np.testing.assert_array_equal(out, naive_out)
    np.testing.assert_array_equal(cache.switches, _naive_switches(naive_cache, cache.win.kw))
    np.testing.assert_array_equal(dx, R.max_pool2d_backward(dout, naive_cache))


@pytest.mark.parametrize("kernel, stride, pad", [(17, 1, 0), ((17, 16), (2, 3), (8, 1))])
def test_max_pool_window_of_over_256_pixels_routes_like_naive(kernel, stride, pad, rng):
    """Offsets past 255 (uint16 switches) are recorded and routed like any other."""
    x = distinct(rng, (2, 2, 21, 20)) + np.arange(21.0)[:, None]   # maxima in windows' low rows
    out, cache = F.max_pool2d_forward(x, kernel, stride, pad)
    assert cache.switches.dtype == np.uint16 and cache.switches.max() > 255
    naive_out, naive_cache = R.max_pool2d_forward(x, kernel, stride, pad)
    np.testing.assert_array_equal(out, naive_out)
    np.testing.assert_array_equal(cache.switches, _naive_switches(naive_cache, cache.win.kw))
    dout = rng.standard_normal(out.shape)
    assert_close(F.max_pool2d_backward(dout, cache), R.max_pool2d_backward(dout, naive_cache),
                 "dx")


@pytest.mark.parametrize("kernel, stride, pad", [(2, None, 0), (3, 2, 1), (3, 1, 0), (2, 3, 1)])
def test_max_pool_of_a_strided_view_is_the_same_bits(kernel, stride, pad, rng):
    """A view that is not C-contiguous (every other row, channels transposed) pools exactly as
    its contiguous copy: the phase planes copy from any strides (stride 1, no padding, reads x
    itself as its one plane, which a view cannot be)."""
    base = distinct(rng, (3, 2, 14, 12), np.float32)
    view = base.transpose(1, 0, 2, 3)[:, :, ::2]                     # (2, 3, 7, 12)
    assert not view.flags.c_contiguous
    copy = np.ascontiguousarray(view)
    if kernel == 2 and stride is None:
        view, copy = view[:, :, :6], copy[:, :, :6]                  # 6 x 12: 2x2 tiles
    out, cache = F.max_pool2d_forward(view, kernel, stride, pad, strict=False)
    want, want_cache = F.max_pool2d_forward(copy, kernel, stride, pad, strict=False)
    assert out.tobytes() == want.tobytes()
    np.testing.assert_array_equal(cache.switches, want_cache.switches)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    assert (F.max_pool2d_backward(dout, cache).tobytes()
            == F.max_pool2d_backward(dout, want_cache).tobytes())
