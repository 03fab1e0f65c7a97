"""affine: the course's fixed check, PyTorch oracle on any input rank, gradients, errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import functional as F
from cnnkit.gradcheck import check_kernel
from tests import oracle
from tests.helpers import assert_matches_oracle
from tests.plans import chunk_plans, plans


def test_course_fixed_check():
    num_inputs, input_shape, output_dim = 2, (4, 5, 6), 3
    input_size = num_inputs * np.prod(input_shape)
    weight_size = output_dim * np.prod(input_shape)
    x = np.linspace(-0.1, 0.5, num=input_size).reshape(num_inputs, *input_shape)
    w = np.linspace(-0.2, 0.3, num=weight_size).reshape(np.prod(input_shape), output_dim)
    b = np.linspace(-0.3, 0.1, num=output_dim)
    out, _ = F.affine_forward(x, w, b)
    correct = np.array([[1.49834967, 1.70660132, 1.91485297],
                        [3.25553199, 3.51413270, 3.77273342]])
    np.testing.assert_allclose(out, correct, rtol=1e-8)


@given(n=st.integers(1, 4), feature_shape=st.lists(st.integers(1, 4), min_size=0, max_size=3),
       m=st.integers(1, 5), bias=st.booleans(), seed=st.integers(0, 2**32 - 1), plan=plans())
def test_affine_matches_torch(n, feature_shape, m, bias, seed, plan):
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, *feature_shape))
    d = int(np.prod(feature_shape))
    w, b = g.standard_normal((d, m)), (g.standard_normal(m) if bias else None)
    with chunk_plans(plan):
        out, cache = F.affine_forward(x, w, b)
        dout = g.standard_normal(out.shape)
        dx, dw, db = F.affine_backward(dout, cache)
    assert_matches_oracle((out, dx, dw, db), oracle.affine(x, w, b, dout))


def test_affine_numerical_gradients(rng):
    inputs = [rng.standard_normal((3, 2, 4)), rng.standard_normal((8, 5)), rng.standard_normal(5)]
    errors = check_kernel(F.affine_forward, F.affine_backward, inputs, rng=rng)
    assert set(errors) == {"dx", "dw", "db"}
    assert max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_affine_keeps_dtype_and_inputs(rng, dtype):
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((4, 3, 2), (6, 5), (5,)))
    before = [a.copy() for a in (x, w, b)]
    out, cache = F.affine_forward(x, w, b)
    grads = F.affine_backward(rng.standard_normal(out.shape).astype(dtype), cache)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert grads[0].shape == x.shape
    for a, c in zip(before, (x, w, b)):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("x_shape, w_shape, b_shape, exc, pattern", [
    ((2, 3, 4), (11, 5), (5,), ValueError, r"x of shape \(2, 3, 4\) has D = 12 .* expects D = 11"),
    ((2, 12), (12,), (5,), ValueError, r"affine w must be 2-D"),
    ((2, 12), (12, 5), (4,), ValueError, r"affine b must have shape \(5,\), got \(4,\)"),
    ((), (1, 5), (5,), ValueError, r"batch axis"),
], ids=["D-mismatch", "w-rank", "b-shape", "scalar-x"])
def test_affine_errors(x_shape, w_shape, b_shape, exc, pattern):
    with pytest.raises(exc, match=pattern):
        F.affine_forward(np.zeros(x_shape), np.zeros(w_shape), np.zeros(b_shape))


def test_affine_rejects_integers_and_computes_in_x_dtype(rng):
    with pytest.raises(TypeError, match="int64"):
        F.affine_forward(np.zeros((2, 3), dtype=np.int64), np.zeros((3, 2)), None)
    # a float64 w and b with a float32 x compute in float32
    x, w, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((3, 2)), rng.standard_normal(2)
    out, cache = F.affine_forward(x, w, b)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, F.affine_forward(x, w.astype(np.float32), b.astype(np.float32))[0])
    assert all(g.dtype == np.float32 for g in F.affine_backward(np.ones_like(out), cache))
