"""Local response normalization: PyTorch oracle, numerical gradients, the window by loops,
errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import functional as F
from cnnkit.gradcheck import check_kernel
from tests import oracle
from tests.helpers import assert_close


@st.composite
def lrn_case(draw):
    """(x_shape, size, alpha, beta, k): 3- to 5-D input, sizes odd and even, up to wider than C."""
    c = draw(st.integers(1, 8))
    spatial = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    size = draw(st.integers(1, 10))
    alpha = draw(st.floats(0.0, 2.0))
    beta = draw(st.floats(-1.0, 2.0))
    k = draw(st.floats(0.1, 3.0))
    return (draw(st.integers(1, 3)), c, *spatial), size, alpha, beta, k


@given(case=lrn_case(), scale=st.sampled_from([0.1, 1.0, 10.0]), seed=st.integers(0, 2**32 - 1))
def test_lrn_matches_torch(case, scale, seed):
    x_shape, size, alpha, beta, k = case
    g = np.random.default_rng(seed)
    x = scale * g.standard_normal(x_shape)
    out, cache = F.lrn_forward(x, size, alpha, beta, k)
    dout = g.standard_normal(out.shape)
    dx = F.lrn_backward(dout, cache)
    t_out, (t_dx,) = oracle.local_response_norm(x, size, alpha, beta, k, dout)
    assert_close(out, t_out, "out")
    assert_close(dx, t_dx, "dx")


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 9])
def test_lrn_numerical_gradient(rng, size):
    x = rng.standard_normal((2, 6, 3, 2))
    errors = check_kernel(F.lrn_forward, F.lrn_backward, [x], rng=rng, size=size, alpha=0.7,
                          beta=0.75, k=1.5)
    assert set(errors) == {"dx"}
    assert errors["dx"] < 1e-7, f"dx: relative error {errors['dx']:.2e}"


def _lrn_by_loops(x, size, alpha, beta, k):
    """The paper's sum written out, one (n, c) plane at a time, with PyTorch's window."""
    out = np.empty_like(x)
    n_batch, c_count = x.shape[:2]
    for n in range(n_batch):
        for c in range(c_count):
            lo, hi = max(0, c - size // 2), min(c_count, c + (size - 1) // 2 + 1)
            energy = sum(x[n, j] ** 2 for j in range(lo, hi))
            out[n, c] = x[n, c] / (k + alpha / size * energy) ** beta
    return out


@pytest.mark.parametrize("size", [1, 2, 4, 5, 12])
def test_lrn_is_the_window_formula(rng, size):
    """Odd sizes centre the window, even ones reach size//2 down and size//2 - 1 up."""
    x = rng.standard_normal((2, 7, 3, 3))
    out, _ = F.lrn_forward(x, size, alpha=0.9, beta=0.6, k=2.0)
    assert_close(out, _lrn_by_loops(x, size, 0.9, 0.6, 2.0), f"size {size}")


def test_lrn_of_one_active_channel():
    # Only channel 3 is non-zero: out is 0 elsewhere and x / (k + alpha/size * x^2)^beta there.
    x = np.zeros((1, 6, 2, 2))
    x[0, 3] = [[1.0, -2.0], [3.0, 0.5]]
    out, _ = F.lrn_forward(x, 5, alpha=0.5, beta=0.75, k=2.0)
    expected = np.zeros_like(x)
    expected[0, 3] = x[0, 3] / (2.0 + 0.5 / 5 * x[0, 3] ** 2) ** 0.75
    assert_close(out, expected, "out")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lrn_keeps_dtype_and_leaves_inputs_alone(rng, dtype):
    x = rng.standard_normal((2, 5, 3, 3)).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    copies = x.copy(), dout.copy()
    out, cache = F.lrn_forward(x, 5, 1e-2, 0.75, 2.0)
    dx = F.lrn_backward(dout, cache)
    assert out.dtype == dx.dtype == dtype
    np.testing.assert_array_equal(copies[0], x)
    np.testing.assert_array_equal(copies[1], dout)
    if dtype == np.float32:
        t_out, (t_dx,) = oracle.local_response_norm(x.astype(np.float64), 5, 1e-2, 0.75, 2.0,
                                                    dout.astype(np.float64))
        np.testing.assert_allclose(out, t_out, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dx, t_dx, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape, kwargs, exc, pattern", [
    ((4, 6), dict(size=5), ValueError, r"at least 3 axes.* got shape \(4, 6\) \(2-D\)"),
    ((2, 6, 3, 3), dict(size=0), ValueError, r"lrn size must be >= 1, got 0"),
    ((2, 6, 3, 3), dict(size=2.0), TypeError, r"lrn size must be an int"),
    ((2, 6, 3, 3), dict(size=5, alpha=-1e-4), ValueError, r"lrn alpha must be >= 0, got -0.0001"),
    ((2, 6, 3, 3), dict(size=5, k=0.0), ValueError, r"lrn k must be > 0 .* got 0.0"),
    ((2, 6, 3, 3), dict(size=5, beta="0.75"), TypeError, r"lrn beta must be a real number"),
], ids=["2-D", "size0", "size-float", "alpha-negative", "k-zero", "beta-string"])
def test_lrn_errors_name_the_numbers(shape, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        F.lrn_forward(np.ones(shape), **kwargs)


def test_lrn_rejects_integer_input_and_a_wrong_dout():
    with pytest.raises(TypeError, match="dtype int64"):
        F.lrn_forward(np.ones((1, 3, 2, 2), dtype=np.int64), 3)
    _, cache = F.lrn_forward(np.ones((1, 3, 2, 2)), 3)
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape "
                                         r"\(1, 3, 2, 2\)"):
        F.lrn_backward(np.ones((1, 3, 2, 3)), cache)
