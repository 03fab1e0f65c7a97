"""relu, leaky relu, sigmoid, tanh: PyTorch oracle, gradients, saturation, errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import functional as F
from cnnkit.gradcheck import check_kernel
from tests import oracle
from tests.helpers import assert_close, away_from_zero
from tests.plans import chunk_plans, plans

SHAPES = st.lists(st.integers(1, 5), min_size=1, max_size=4)


def _oracle(name):
    return {"relu": oracle.relu, "sigmoid": oracle.sigmoid, "tanh": oracle.tanh}[name]


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
@given(shape=SHAPES, seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.1, 1.0, 10.0]),
       plan=plans())
def test_activation_matches_torch(name, shape, seed, scale, plan):
    g = np.random.default_rng(seed)
    x = away_from_zero(g, shape) * scale
    with chunk_plans(plan):
        out, cache = getattr(F, f"{name}_forward")(x)
        dout = g.standard_normal(out.shape)
        dx = getattr(F, f"{name}_backward")(dout, cache)
    t_out, (t_dx,) = _oracle(name)(x, dout)
    assert_close(out, t_out, "out")
    assert_close(dx, t_dx, "dx")


@given(shape=SHAPES, seed=st.integers(0, 2**32 - 1), slope=st.sampled_from([0.01, 0.2, 0.0, -0.5, 1.5]),
       plan=plans())
def test_leaky_relu_matches_torch(shape, seed, slope, plan):
    g = np.random.default_rng(seed)
    x = away_from_zero(g, shape)
    with chunk_plans(plan):
        out, cache = F.leaky_relu_forward(x, slope)
        dout = g.standard_normal(out.shape)
        dx = F.leaky_relu_backward(dout, cache)
    t_out, (t_dx,) = oracle.leaky_relu(x, slope, dout)
    assert_close(out, t_out, "out")
    assert_close(dx, t_dx, "dx")


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_activation_numerical_gradients(rng, name):
    x = away_from_zero(rng, (3, 4, 5), margin=1e-2)
    errors = check_kernel(getattr(F, f"{name}_forward"), getattr(F, f"{name}_backward"), [x], rng=rng)
    assert errors["dx"] < 1e-7, errors


def test_relu_gradient_at_zero_is_zero_and_exact_values():
    out, cache = F.relu_forward(np.array([-2.0, 0.0, 3.0]))
    np.testing.assert_array_equal(out, [0.0, 0.0, 3.0])
    np.testing.assert_array_equal(F.relu_backward(np.array([5.0, 5.0, 5.0]), cache), [0.0, 0.0, 5.0])


def test_sigmoid_saturates_without_overflow_and_gradient_vanishes():
    x = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out, cache = F.sigmoid_forward(x)
        dx = F.sigmoid_backward(np.ones_like(x), cache)
    np.testing.assert_allclose(out, [0.0, 1 / (1 + np.exp(40.0)), 0.5, 1 / (1 + np.exp(-40.0)), 1.0], rtol=1e-12)
    # the notes: sigmoid passes back at most a quarter of the gradient, and ~0 once saturated
    assert dx[2] == 0.25 and dx.max() <= 0.25 and dx[0] == 0.0 and dx[-1] == 0.0


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_keeps_dtype_and_input(rng, name, dtype):
    x = rng.standard_normal((4, 6)).astype(dtype)
    before = x.copy()
    out, cache = getattr(F, f"{name}_forward")(x)
    dx = getattr(F, f"{name}_backward")(rng.standard_normal(x.shape).astype(dtype), cache)
    assert out.dtype == dtype and dx.dtype == dtype
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_activation_rejects_integer_input(name):
    with pytest.raises(TypeError, match=f"{name} x must be a floating-point array"):
        getattr(F, f"{name}_forward")(np.arange(4))


def test_leaky_relu_rejects_bad_slope():
    with pytest.raises(TypeError, match="negative_slope"):
        F.leaky_relu_forward(np.zeros(3), "0.1")
