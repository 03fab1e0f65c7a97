"""Batch norm: PyTorch oracle (train, eval, running statistics), numerical gradients, naive vs
fast, the notes' worked example, semantics, errors, dtypes and purity."""

import importlib
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit import functional as F
from cnnkit import parallel
from cnnkit import reference as R
from cnnkit.gradcheck import check_kernel
from tests import oracle
from tests.helpers import assert_close
from tests.plans import PLANS, chunk_plans, plans

SEEDS = st.integers(0, 2**32 - 1)

# Hard shapes every run sees, whatever hypothesis draws: the smallest batch (m = 2), one feature or
# channel, 1x1 maps (m = N), non-square maps, and batches of odd sizes that the chunk plans
# (tests/plans.py) cut unevenly.
CASES = [
    ("N2_K1", (2, 1)), ("N2_K6", (2, 6)), ("N8_K1", (8, 1)), ("N5_K3", (5, 3)),
    ("N2_C1_1x1", (2, 1, 1, 1)), ("N2_C1_5x5", (2, 1, 5, 5)), ("N2_C4_1x1", (2, 4, 1, 1)),
    ("N3_C2_1x5", (3, 2, 1, 5)), ("N8_C4_5x5", (8, 4, 5, 5)), ("N13_K7", (13, 7)),
    ("N7_C3_5x9", (7, 3, 5, 9)), ("N11_C2_7x3", (11, 2, 7, 3)),
]


def fc_shapes():
    return st.tuples(st.integers(2, 8), st.integers(1, 6))


def spatial_shapes():
    return st.tuples(st.integers(2, 8), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5))


def any_shapes():
    return st.one_of(fc_shapes(), spatial_shapes())


def _axes(shape):
    """The axes a feature is averaged over: (0,) for (N, K), (0, 2, 3) for (N, C, H, W)."""
    return (0,) if len(shape) == 2 else (0, 2, 3)


def _spread(g, shape):
    """Inputs whose every feature has a standard deviation in [0.5, 2] and a mean in [-2, 2].

    A feature whose m values happen to lie close together has a tiny variance, where batch norm is
    nearly a step function and centred differences lose accuracy; this is the "away from kinks"
    rule of the numerical checks for batch norm.
    """
    x = g.standard_normal(shape)
    axes = _axes(shape)
    x = (x - x.mean(axis=axes, keepdims=True)) / x.std(axis=axes, keepdims=True)
    bshape = (1, shape[1]) + (1,) * (len(shape) - 2)
    return x * g.uniform(0.5, 2.0, bshape) + g.uniform(-2.0, 2.0, bshape)


def _params(g, k, dtype=np.float64):
    """gamma, beta, running_mean, running_var for k features (gamma away from 0, var > 0)."""
    gamma = g.uniform(0.5, 1.5, k) * g.choice([-1.0, 1.0], k)
    return (gamma.astype(dtype), g.standard_normal(k).astype(dtype),
            g.standard_normal(k).astype(dtype), g.uniform(0.5, 2.0, k).astype(dtype))


def _check_train_vs_torch(g, shape, eps=1e-5):
    x = _spread(g, shape)
    gamma, beta, rm, rv = _params(g, shape[1])
    out, cache = F.batchnorm_forward(x, gamma, beta, eps)
    dout = g.standard_normal(out.shape)
    dx, dgamma, dbeta = F.batchnorm_backward(dout, cache)
    t_out, (t_dx, t_dgamma, t_dbeta), _ = oracle.batchnorm_train(x, gamma, beta, rm, rv, 0.9, eps,
                                                                 dout)
    assert_close(out, t_out, "out")
    assert_close(dx, t_dx, "dx")
    assert_close(dgamma, t_dgamma, "dgamma")
    assert_close(dbeta, t_dbeta, "dbeta")
    assert_close(cache.mean, x.mean(axis=_axes(shape)), "cache.mean")
    assert_close(cache.var, x.var(axis=_axes(shape)), "cache.var (biased)")
    assert cache.count == x.size // shape[1]


def _check_eval_vs_torch(g, shape, eps=1e-5):
    x = _spread(g, shape)
    gamma, beta, rm, rv = _params(g, shape[1])
    out, cache = F.batchnorm_eval_forward(x, gamma, beta, rm, rv, eps)
    dout = g.standard_normal(out.shape)
    dx, dgamma, dbeta = F.batchnorm_eval_backward(dout, cache)
    t_out, (t_dx, t_dgamma, t_dbeta) = oracle.batchnorm_eval(x, gamma, beta, rm, rv, eps, dout)
    assert_close(out, t_out, "eval out")
    assert_close(dx, t_dx, "eval dx")
    assert_close(dgamma, t_dgamma, "eval dgamma")
    assert_close(dbeta, t_dbeta, "eval dbeta")


# ----------------------------------------------------------------------------- oracle

@given(shape=any_shapes(), plan=plans(), data=st.data())
def test_train_matches_torch(shape, plan, data):
    with chunk_plans(plan):
        _check_train_vs_torch(np.random.default_rng(data.draw(SEEDS)), shape)


@given(shape=any_shapes(), plan=plans(), data=st.data())
def test_eval_matches_torch(shape, plan, data):
    with chunk_plans(plan):
        _check_eval_vs_torch(np.random.default_rng(data.draw(SEEDS)), shape)


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("shape", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_cases_match_torch_train_and_eval(rng, shape, plan):
    with chunk_plans(plan) as record:
        _check_train_vs_torch(rng, shape)
        _check_eval_vs_torch(rng, shape)
    if plan == "forced":
        record.check()


def test_other_eps_matches_torch(rng):
    _check_train_vs_torch(rng, (4, 3), eps=1e-1)
    _check_eval_vs_torch(rng, (3, 2, 2, 3), eps=1e-3)


@pytest.mark.parametrize("momentum", [0.9, 0.5, 0.0, 1.0])
@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 4, 5), (2, 1, 1, 1)],
                         ids=["NK", "NCHW", "NCHW_m2"])
def test_running_statistics_match_torch_over_steps(rng, shape, momentum):
    k, steps = shape[1], 4
    gamma, beta, rm, rv = _params(rng, k)
    t_rm, t_rv = rm.copy(), rv.copy()
    for step in range(steps):
        x = _spread(rng, shape)
        out, cache = F.batchnorm_forward(x, gamma, beta)
        rm, rv = F.batchnorm_running_update(rm, rv, cache.mean, cache.var, cache.count, momentum)
        t_out, _, (t_rm, t_rv) = oracle.batchnorm_train(x, gamma, beta, t_rm, t_rv, momentum, 1e-5)
        assert_close(out, t_out, f"step {step} out")
        assert_close(rm, t_rm, f"step {step} running_mean")
        assert_close(rv, t_rv, f"step {step} running_var")
    # and eval with the accumulated statistics agrees too
    x = _spread(rng, shape)
    dout = rng.standard_normal(shape)
    out, cache = F.batchnorm_eval_forward(x, gamma, beta, rm, rv)
    t_out, t_grads = oracle.batchnorm_eval(x, gamma, beta, t_rm, t_rv, 1e-5, dout)
    assert_close(out, t_out, "eval out after training")
    for name, ours, theirs in zip(("dx", "dgamma", "dbeta"),
                                  F.batchnorm_eval_backward(dout, cache), t_grads):
        assert_close(ours, theirs, "eval " + name)


def test_running_update_formula(rng):
    rm, rv, bm, bv = (rng.standard_normal(3), rng.uniform(0.5, 2, 3), rng.standard_normal(3),
                      rng.uniform(0.5, 2, 3))
    new_m, new_v = F.batchnorm_running_update(rm, rv, bm, bv, 5, momentum=0.8)
    assert_close(new_m, 0.8 * rm + 0.2 * bm, "running_mean")
    assert_close(new_v, 0.8 * rv + 0.2 * bv * 5 / 4, "running_var (unbiased m/(m-1))")


# ----------------------------------------------------------------------------- numerical gradients

def _gradcheck(g, forward, backward, x, *params):
    # With m = 2 values per feature the train output is +-gamma*sqrt(var/(var + eps)) + beta
    # whatever x is, so dx is O(eps) (~1e-5) and the centred difference's round-off (~1e-11)
    # becomes a relative error of ~1e-6. A larger eps gives those shapes an O(1) dx to check.
    m = x.size // x.shape[1]
    eps = 0.1 if m == 2 else 1e-5
    errors = check_kernel(forward, backward, [x, *params], rng=g, eps=eps)
    assert set(errors) == {"dx", "dgamma", "dbeta"}, errors
    for name, err in errors.items():
        assert err < 1e-7, f"{forward.__name__} {name}: rel error {err:.2e}"


@settings(max_examples=10)
@given(shape=fc_shapes(), data=st.data())
def test_gradcheck_train_fc(shape, data):
    g = np.random.default_rng(data.draw(SEEDS))
    gamma, beta, _, _ = _params(g, shape[1])
    _gradcheck(g, F.batchnorm_forward, F.batchnorm_backward, _spread(g, shape), gamma, beta)


@settings(max_examples=10)
@given(shape=fc_shapes(), data=st.data())
def test_gradcheck_eval_fc(shape, data):
    g = np.random.default_rng(data.draw(SEEDS))
    gamma, beta, rm, rv = _params(g, shape[1])
    _gradcheck(g, F.batchnorm_eval_forward, F.batchnorm_eval_backward, _spread(g, shape),
               gamma, beta, rm, rv)


@settings(max_examples=10)
@given(shape=spatial_shapes(), data=st.data())
def test_gradcheck_train_spatial(shape, data):
    g = np.random.default_rng(data.draw(SEEDS))
    gamma, beta, _, _ = _params(g, shape[1])
    _gradcheck(g, F.spatial_batchnorm_forward, F.spatial_batchnorm_backward, _spread(g, shape),
               gamma, beta)


@settings(max_examples=10)
@given(shape=spatial_shapes(), data=st.data())
def test_gradcheck_eval_spatial(shape, data):
    g = np.random.default_rng(data.draw(SEEDS))
    gamma, beta, rm, rv = _params(g, shape[1])
    _gradcheck(g, F.spatial_batchnorm_eval_forward, F.spatial_batchnorm_eval_backward,
               _spread(g, shape), gamma, beta, rm, rv)


@pytest.mark.parametrize("shape", [(2, 1), (2, 1, 1, 1), (2, 1, 2, 3)],
                         ids=["N2_K1", "N2_C1_1x1", "N2_C1_2x3"])
def test_gradcheck_smallest_batches(rng, shape):
    gamma, beta, rm, rv = _params(rng, shape[1])
    x = _spread(rng, shape)
    _gradcheck(rng, F.batchnorm_forward, F.batchnorm_backward, x, gamma, beta)
    _gradcheck(rng, F.batchnorm_eval_forward, F.batchnorm_eval_backward, x, gamma, beta, rm, rv)


# ----------------------------------------------------------------------------- naive vs fast

@given(shape=any_shapes(), plan=plans(), data=st.data())
def test_reference_matches_fast_train(shape, plan, data):
    g = np.random.default_rng(data.draw(SEEDS))
    x = _spread(g, shape)
    gamma, beta, _, _ = _params(g, shape[1])
    dout = g.standard_normal(shape)
    with chunk_plans(plan):
        out, cache = F.batchnorm_forward(x, gamma, beta)
        grads = F.batchnorm_backward(dout, cache)
    r_out, r_cache = R.batchnorm_forward(x, gamma, beta)
    assert_close(r_out, out, "naive out")
    assert_close(r_cache.mean, cache.mean, "naive mean")
    assert_close(r_cache.var, cache.var, "naive var")
    assert r_cache.count == cache.count
    for name, naive, fast in zip(("dx", "dgamma", "dbeta"), R.batchnorm_backward(dout, r_cache),
                                 grads):
        assert_close(naive, fast, "naive " + name)


@given(shape=any_shapes(), plan=plans(), data=st.data())
def test_reference_matches_fast_eval(shape, plan, data):
    g = np.random.default_rng(data.draw(SEEDS))
    x = _spread(g, shape)
    gamma, beta, rm, rv = _params(g, shape[1])
    dout = g.standard_normal(shape)
    with chunk_plans(plan):
        out, cache = F.batchnorm_eval_forward(x, gamma, beta, rm, rv)
        grads = F.batchnorm_eval_backward(dout, cache)
    r_out, r_cache = R.batchnorm_eval_forward(x, gamma, beta, rm, rv)
    assert_close(r_out, out, "naive eval out")
    for name, naive, fast in zip(("dx", "dgamma", "dbeta"),
                                 R.batchnorm_eval_backward(dout, r_cache), grads):
        assert_close(naive, fast, "naive eval " + name)


def test_reference_spatial_names_match_fast(rng):
    shape = (3, 2, 4, 5)
    x = _spread(rng, shape)
    gamma, beta, rm, rv = _params(rng, 2)
    dout = rng.standard_normal(shape)
    out, cache = F.spatial_batchnorm_forward(x, gamma, beta)
    r_out, r_cache = R.spatial_batchnorm_forward(x, gamma, beta)
    assert_close(r_out, out, "naive spatial out")
    for name, naive, fast in zip(("dx", "dgamma", "dbeta"),
                                 R.spatial_batchnorm_backward(dout, r_cache),
                                 F.spatial_batchnorm_backward(dout, cache)):
        assert_close(naive, fast, "naive spatial " + name)
    out, cache = F.spatial_batchnorm_eval_forward(x, gamma, beta, rm, rv)
    r_out, r_cache = R.spatial_batchnorm_eval_forward(x, gamma, beta, rm, rv)
    assert_close(r_out, out, "naive spatial eval out")
    for name, naive, fast in zip(("dx", "dgamma", "dbeta"),
                                 R.spatial_batchnorm_eval_backward(dout, r_cache),
                                 F.spatial_batchnorm_eval_backward(dout, cache)):
        assert_close(naive, fast, "naive spatial eval " + name)
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        R.spatial_batchnorm_forward(np.zeros((3, 2)), gamma, beta)


# ----------------------------------------------------------------------------- known answers

def test_4d_batchnorm_is_spatial_batchnorm(rng):
    x = _spread(rng, (3, 4, 2, 5))
    gamma, beta, rm, rv = _params(rng, 4)
    dout = rng.standard_normal(x.shape)
    out, cache = F.batchnorm_forward(x, gamma, beta)
    s_out, s_cache = F.spatial_batchnorm_forward(x, gamma, beta)
    np.testing.assert_array_equal(out, s_out)
    for a, b in zip(F.batchnorm_backward(dout, cache), F.spatial_batchnorm_backward(dout, s_cache)):
        np.testing.assert_array_equal(a, b)
    out, cache = F.batchnorm_eval_forward(x, gamma, beta, rm, rv)
    s_out, s_cache = F.spatial_batchnorm_eval_forward(x, gamma, beta, rm, rv)
    np.testing.assert_array_equal(out, s_out)
    for a, b in zip(F.batchnorm_eval_backward(dout, cache),
                    F.spatial_batchnorm_eval_backward(dout, s_cache)):
        np.testing.assert_array_equal(a, b)
    assert out.flags.c_contiguous


def test_spatial_is_fc_on_the_pixel_rows(rng):
    """Spatial BN equals the (N, K) kernel on x transposed to (N*H*W, C): CS231n's reduction."""
    n, c, h, w = 2, 3, 4, 5
    x = _spread(rng, (n, c, h, w))
    gamma, beta, _, _ = _params(rng, c)
    out, cache = F.spatial_batchnorm_forward(x, gamma, beta)
    rows = x.transpose(0, 2, 3, 1).reshape(-1, c)
    r_out, r_cache = F.batchnorm_forward(rows, gamma, beta)
    assert_close(out, r_out.reshape(n, h, w, c).transpose(0, 3, 1, 2), "out")
    assert cache.count == r_cache.count == n * h * w


def test_notes_worked_example():
    """The notes' case 1: data [[1,2,3],[4,5,6],[7,8,9]]; feature 0 is a = [1, 4, 7]."""
    data = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.float64)
    eps = 1e-5
    out, cache = F.batchnorm_forward(data, np.ones(3), np.zeros(3), eps)
    for k in range(3):
        a = data[:, k]
        # a.std() is the biased std the notes use; the kernel adds eps under the square root
        assert_close(out[:, k], (a - a.mean()) / np.sqrt(a.std() ** 2 + eps), f"feature {k}")
        np.testing.assert_allclose(out[:, k], (a - a.mean()) / a.std(), rtol=1e-5)
    # every column is {1,4,7} + const: mean 4 (+k), biased var 6, output [-3, 0, 3]/sqrt(6 + eps)
    assert_close(cache.mean, [4.0, 5.0, 6.0], "mean")
    assert_close(cache.var, [6.0, 6.0, 6.0], "biased var")
    assert_close(out[:, 0], np.array([-3.0, 0.0, 3.0]) / np.sqrt(6 + eps), "feature 0 values")
    out32, _ = F.batchnorm_forward(data.astype(np.float32), np.ones(3, np.float32),
                                   np.zeros(3, np.float32), eps)
    np.testing.assert_allclose(out32, out, rtol=1e-6, atol=1e-6)


@given(shape=any_shapes(), data=st.data())
def test_train_output_is_standardised(shape, data):
    """gamma = 1, beta = 0: per-feature mean 0 and biased variance var / (var + eps) ~ 1."""
    g = np.random.default_rng(data.draw(SEEDS))
    x = _spread(g, shape)
    k, axes = shape[1], _axes(shape)
    out, cache = F.batchnorm_forward(x, np.ones(k), np.zeros(k))
    np.testing.assert_allclose(out.mean(axis=axes), 0.0, atol=1e-12)
    assert_close(out.var(axis=axes), cache.var / (cache.var + 1e-5), "output variance")
    np.testing.assert_allclose(out.var(axis=axes), 1.0, atol=1e-4)


def test_gamma_beta_scale_and_shift(rng):
    x = _spread(rng, (6, 3))
    gamma, beta, _, _ = _params(rng, 3)
    out, _ = F.batchnorm_forward(x, gamma, beta)
    std_out, _ = F.batchnorm_forward(x, np.ones(3), np.zeros(3))
    assert_close(out, gamma * std_out + beta, "gamma * xhat + beta")


def test_eval_with_batch_statistics_equals_train(rng):
    x = _spread(rng, (5, 2, 3, 3))
    gamma, beta, _, _ = _params(rng, 2)
    out, cache = F.batchnorm_forward(x, gamma, beta)
    e_out, _ = F.batchnorm_eval_forward(x, gamma, beta, cache.mean, cache.var)
    assert_close(e_out, out, "eval with the batch's own (biased) statistics")


def test_eval_accepts_a_single_example(rng):
    gamma, beta, rm, rv = _params(rng, 3)
    x = rng.standard_normal((1, 3))
    out, _ = F.batchnorm_eval_forward(x, gamma, beta, rm, rv)
    assert_close(out, gamma * (x - rm) / np.sqrt(rv + 1e-5) + beta, "eval out, N = 1")


def test_train_accepts_one_example_with_several_pixels(rng):
    x = _spread(rng, (1, 2, 1, 2))
    gamma, beta, _, _ = _params(rng, 2)
    out, cache = F.batchnorm_forward(x, gamma, beta)
    assert cache.count == 2
    assert_close(out, oracle.batchnorm_train(x, gamma, beta, np.zeros(2), np.ones(2), 0.9, 1e-5)[0],
                 "N = 1, H*W = 2")


# ----------------------------------------------------------------------------- errors

def test_error_mismatched_gamma_names_the_shapes():
    with pytest.raises(ValueError, match=r"gamma.*\(5, 3\).*\(3,\).*\(4,\)"):
        F.batchnorm_forward(np.zeros((5, 3)), np.ones(4), np.zeros(3))
    with pytest.raises(ValueError, match=r"beta.*\(2, 3, 4, 4\).*\(3,\).*\(2,\)"):
        F.spatial_batchnorm_forward(np.zeros((2, 3, 4, 4)), np.ones(3), np.zeros(2))
    with pytest.raises(ValueError, match=r"running_var.*\(3,\).*\(3, 1\)"):
        F.batchnorm_eval_forward(np.zeros((5, 3)), np.ones(3), np.zeros(3), np.zeros(3),
                                 np.ones((3, 1)))


def test_error_wrong_rank_names_the_shape():
    with pytest.raises(ValueError, match=r"2-D or 4-D.*\(2, 3, 4\).*3-D"):
        F.batchnorm_forward(np.zeros((2, 3, 4)), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"2-D or 4-D.*\(3,\)"):
        F.batchnorm_eval_forward(np.zeros(3), np.ones(3), np.zeros(3), np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match=r"4-D.*\(5, 3\).*2-D"):
        F.spatial_batchnorm_forward(np.zeros((5, 3)), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"4-D.*\(5, 3\)"):
        F.spatial_batchnorm_eval_forward(np.zeros((5, 3)), np.ones(3), np.zeros(3), np.zeros(3),
                                         np.ones(3))


def test_error_one_value_per_feature_in_training():
    with pytest.raises(ValueError, match=r"more than 1 value.*\(1, 3\).*m = N = 1"):
        F.batchnorm_forward(np.zeros((1, 3)), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 2, 1, 1\).*= 1"):
        F.spatial_batchnorm_forward(np.zeros((1, 2, 1, 1)), np.ones(2), np.zeros(2))
    with pytest.raises(ValueError, match=r"more than 1 value"):
        R.batchnorm_forward(np.zeros((1, 3)), np.ones(3), np.zeros(3))


def test_error_bad_eps_and_statistics():
    x, ones, zeros = np.zeros((4, 3)), np.ones(3), np.zeros(3)
    with pytest.raises(ValueError, match=r"eps.*> 0.*0"):
        F.batchnorm_forward(x, ones, zeros, eps=0.0)
    with pytest.raises(ValueError, match=r"eps.*-1e-05"):
        F.batchnorm_eval_forward(x, ones, zeros, zeros, ones, eps=-1e-5)
    with pytest.raises(TypeError, match=r"eps"):
        F.batchnorm_forward(x, ones, zeros, eps="1e-5")
    with pytest.raises(ValueError, match=r"running_var.*>= 0.*-1"):
        F.batchnorm_eval_forward(x, ones, zeros, zeros, np.array([1.0, -1.0, 1.0]))


def test_dtypes_follow_x():
    # float64 gamma/beta with a float32 x: computed in float32, as x asks
    x32 = np.arange(12, dtype=np.float32).reshape(4, 3)
    out, cache = F.batchnorm_forward(x32, np.ones(3), np.zeros(3))
    expected, _ = F.batchnorm_forward(x32, np.ones(3, np.float32), np.zeros(3, np.float32))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    assert all(g.dtype == np.float32 for g in F.batchnorm_backward(np.ones_like(out), cache))
    with pytest.raises(TypeError, match=r"x.*int64"):
        F.batchnorm_forward(np.zeros((4, 3), np.int64), np.ones(3), np.zeros(3))


def test_error_running_update_arguments():
    rm, rv = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match=r"momentum.*\[0, 1\].*1.5"):
        F.batchnorm_running_update(rm, rv, rm, rv, 4, momentum=1.5)
    with pytest.raises(ValueError, match=r"momentum.*-0.1"):
        F.batchnorm_running_update(rm, rv, rm, rv, 4, momentum=-0.1)
    with pytest.raises(ValueError, match=r"count.*>= 2.*m = 1"):
        F.batchnorm_running_update(rm, rv, rm, rv, 1)
    with pytest.raises(TypeError, match=r"count"):
        F.batchnorm_running_update(rm, rv, rm, rv, 4.0)
    with pytest.raises(ValueError, match=r"batch_var.*\(4,\).*\(3,\)"):
        F.batchnorm_running_update(rm, rv, rm, np.ones(4), 4)
    with pytest.raises(TypeError, match=r"batch_mean.*float32.*float64"):
        F.batchnorm_running_update(rm, rv, rm.astype(np.float32), rv, 4)


def test_error_backward_dout_shape(rng):
    _, cache = F.batchnorm_forward(_spread(rng, (4, 3)), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 1\)"):
        F.batchnorm_backward(np.ones((4, 1)), cache)


# ----------------------------------------------------------------------------- dtypes, purity

@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 2, 2)], ids=["NK", "NCHW"])
def test_float32_in_float32_out(rng, shape):
    x = _spread(rng, shape).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, shape[1], np.float32)
    dout = rng.standard_normal(shape).astype(np.float32)
    out, cache = F.batchnorm_forward(x, gamma, beta, np.float64(1e-5))
    grads = F.batchnorm_backward(dout, cache)
    assert out.dtype == cache.mean.dtype == cache.var.dtype == np.float32
    assert [gr.dtype for gr in grads] == [np.float32] * 3
    out64, cache64 = F.batchnorm_forward(x.astype(np.float64), gamma.astype(np.float64),
                                         beta.astype(np.float64))
    np.testing.assert_allclose(out, out64, rtol=1e-4, atol=1e-5)
    e_out, e_cache = F.batchnorm_eval_forward(x, gamma, beta, rm, rv)
    assert e_out.dtype == np.float32
    assert [gr.dtype for gr in F.batchnorm_eval_backward(dout, e_cache)] == [np.float32] * 3
    new_m, new_v = F.batchnorm_running_update(rm, rv, cache.mean, cache.var, cache.count,
                                              np.float64(0.9))
    assert new_m.dtype == new_v.dtype == np.float32


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 2, 2)], ids=["NK", "NCHW"])
def test_inputs_not_modified(rng, shape):
    x = _spread(rng, shape)
    params = _params(rng, shape[1])
    dout = rng.standard_normal(shape)
    copies = [a.copy() for a in (x, *params, dout)]
    gamma, beta, rm, rv = params
    _, cache = F.batchnorm_forward(x, gamma, beta)
    F.batchnorm_backward(dout, cache)
    _, cache = F.batchnorm_eval_forward(x, gamma, beta, rm, rv)
    F.batchnorm_eval_backward(dout, cache)
    _, cache = R.batchnorm_forward(x, gamma, beta)
    R.batchnorm_backward(dout, cache)
    for before, after in zip(copies, (x, *params, dout)):
        np.testing.assert_array_equal(after, before)


def test_running_update_is_pure(rng):
    rm, rv, bm, bv = (rng.standard_normal(3), rng.uniform(0.5, 2, 3), rng.standard_normal(3),
                      rng.uniform(0.5, 2, 3))
    copies = [a.copy() for a in (rm, rv, bm, bv)]
    new_m, new_v = F.batchnorm_running_update(rm, rv, bm, bv, 8)
    for before, after in zip(copies, (rm, rv, bm, bv)):
        np.testing.assert_array_equal(after, before)
    for new in (new_m, new_v):
        assert not any(np.shares_memory(new, a) for a in (rm, rv, bm, bv))
    # momentum 1 keeps the old values, momentum 0 takes the batch's, still in new arrays
    keep_m, keep_v = F.batchnorm_running_update(rm, rv, bm, bv, 8, momentum=1.0)
    np.testing.assert_array_equal(keep_m, rm)
    assert keep_m is not rm and not np.shares_memory(keep_v, rv)
    take_m, take_v = F.batchnorm_running_update(rm, rv, bm, bv, 8, momentum=0.0)
    assert_close(take_m, bm, "momentum 0 mean")
    assert_close(take_v, bv * 8 / 7, "momentum 0 var")


# ----------------------------------------------------------------------------- the fast paths

EPS32 = float(np.finfo(np.float32).eps)


def _far_from_zero(g, shape, ratio):
    """float32 inputs whose features have std in [0.5, 2] and mean +-ratio * std."""
    bshape = (1, shape[1]) + (1,) * (len(shape) - 2)
    std = g.uniform(0.5, 2.0, bshape)
    return (g.standard_normal(shape) * std + ratio * std * g.choice([-1.0, 1.0], bshape)
            ).astype(np.float32)


@pytest.mark.parametrize("ratio", [0.0, 3.9, 4.1, 30.0, 1e3, 1e6])
@pytest.mark.parametrize("shape", [(16, 3, 9, 11), (200, 3)], ids=["NCHW", "NK"])
def test_float32_statistics_far_from_zero(rng, shape, ratio):
    """|mean| = ratio * std. E[x**2] - E[x]**2 in float32 would lose 2 * log2(ratio) bits of the
    variance (all of them from ratio ~3000): the kernel's stays within ~1e-6 of the float64
    variance of the same values at every ratio (the one-pass sums below CANCEL_RATIO = 16 =
    4**2, the second pass about the mean above it), and its output and gradients within a few
    roundings of x * scale, ~(1 + ratio) * 6e-8."""
    x = _far_from_zero(rng, shape, ratio)
    k, axes = shape[1], _axes(shape)
    gamma, beta, _, _ = _params(rng, k)
    dout = rng.standard_normal(shape)
    out, cache = F.batchnorm_forward(x, gamma.astype(np.float32), beta.astype(np.float32))
    x64 = x.astype(np.float64)
    var64 = x64.var(axis=axes)
    np.testing.assert_allclose(cache.var, var64, rtol=2e-6, err_msg="float32 variance")
    np.testing.assert_allclose(cache.mean, x64.mean(axis=axes), rtol=0,
                               atol=float(np.max(np.sqrt(var64))) * EPS32 * (1 + ratio),
                               err_msg="float32 mean")
    if ratio > 1e3:          # x itself is rounded to ~ratio * 6e-8 of its spread: nothing to check
        return
    grads = F.batchnorm_backward(dout.astype(np.float32), cache)
    out64, cache64 = F.batchnorm_forward(x64, gamma, beta)
    grads64 = F.batchnorm_backward(dout, cache64)
    tol = 8 * EPS32 * (1 + ratio)
    np.testing.assert_allclose(out, out64, rtol=0, atol=tol * np.max(np.abs(gamma) + np.abs(beta)),
                               err_msg="float32 out")
    for name, ours, exact in zip(("dx", "dgamma", "dbeta"), grads, grads64):
        np.testing.assert_allclose(ours, exact, rtol=0, atol=tol * np.max(np.abs(exact)),
                                   err_msg=f"float32 {name}")


@pytest.mark.parametrize("shape", [(6, 3, 4, 5), (7, 3)], ids=["NCHW", "NK"])
def test_a_constant_feature_has_variance_0_and_output_beta(rng, shape):
    """A feature of one repeated value, far from zero: var exactly 0, mean exactly that value,
    and the output exactly beta (its scale is 0), in float32 and float64."""
    for dtype in (np.float32, np.float64):
        x = _spread(rng, shape).astype(dtype)
        x[:, 1] = dtype(7.1)
        gamma, beta, _, _ = _params(rng, shape[1], dtype)
        out, cache = F.batchnorm_forward(x, gamma, beta)
        assert cache.var[1] == 0 and cache.mean[1] == dtype(7.1)
        np.testing.assert_array_equal(out[:, 1], np.full_like(out[:, 1], beta[1]))
        dx, dgamma, dbeta = F.batchnorm_backward(rng.standard_normal(shape).astype(dtype), cache)
        assert np.all(np.isfinite(dx)) and np.isfinite(dgamma[1]) and np.isfinite(dbeta[1])


def test_float32_statistics_survive_squares_that_overflow(rng):
    """Values ~1e20 with spread ~1e18: x**2 overflows float32, (x - mean)**2 does not."""
    x = (1e20 + 1e18 * rng.standard_normal((4, 3, 5, 5))).astype(np.float32)
    with np.errstate(over="ignore"):
        _, cache = F.batchnorm_forward(x, np.ones(3, np.float32), np.zeros(3, np.float32))
    np.testing.assert_allclose(cache.var, x.astype(np.float64).var(axis=(0, 2, 3)), rtol=1e-5)


def test_nan_and_inf_propagate_to_their_own_feature(rng):
    x = _spread(rng, (5, 3, 4, 4)).astype(np.float32)
    x[2, 0, 1, 1] = np.nan
    x[3, 1, 0, 2] = np.inf
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    with np.errstate(invalid="ignore"):
        out, cache = F.batchnorm_forward(x, gamma, beta)
        dx, dgamma, dbeta = F.batchnorm_backward(np.ones_like(x), cache)
    assert np.isnan(cache.mean[0]) and cache.mean[1] == np.inf and np.isfinite(cache.mean[2])
    assert np.all(np.isnan(out[:, :2])) and np.all(np.isfinite(out[:, 2]))
    assert np.all(np.isnan(dx[:, :2])) and np.all(np.isfinite(dx[:, 2]))
    assert np.isfinite(dgamma[2]) and np.all(dbeta == 80)


def _blocks_case(g, shape):
    x = _spread(g, shape)
    gamma, beta, rm, rv = _params(g, shape[1])
    return x, gamma, beta, rm, rv, g.standard_normal(shape)


def _all_kernels(x, gamma, beta, rm, rv, dout):
    out, cache = F.batchnorm_forward(x, gamma, beta)
    e_out, e_cache = F.batchnorm_eval_forward(x, gamma, beta, rm, rv)
    return (out, cache.mean, cache.var, *F.batchnorm_backward(dout, cache), e_out,
            *F.batchnorm_eval_backward(dout, e_cache))


# block sizes in bytes: one (n, k) row of the float64 maps below (a feature range of one sample,
# one row at a time), 3 rows (ranges that do not divide C), 2 samples of (7, 5, 3, 2) and more
# than a sample of the (N, K) input
@pytest.mark.parametrize("block", [8 * 6, 8 * 18, 8 * 60, 8 * 40 * 3])
@pytest.mark.parametrize("shape", [(7, 5, 3, 2), (9, 4, 6, 3), (40, 6)],
                         ids=["N7_C5_3x2", "N9_C4_6x3", "N40_K6"])
def test_blocks_and_aligned_outputs_match_torch(rng, monkeypatch, shape, block):
    """Every block geometry of ``_sweep`` (several samples, one sample's feature ranges with a
    short last one, rows longer than a block) in every pass (the gradient's blocks of
    BLOCK_BYTES, the others' of TASK_BYTES), with every output aligned (ALIGNED_BYTES = 0), under
    chunk plans that cut the batch: the oracle's answers, and the same bits on 1, 2, 3 and 8
    threads."""
    norm = importlib.import_module("cnnkit.functional.norm")
    monkeypatch.setattr(norm, "BLOCK_BYTES", block)
    monkeypatch.setattr(parallel, "TASK_BYTES", block)
    monkeypatch.setattr(norm, "ALIGNED_BYTES", 0)
    x, gamma, beta, rm, rv, dout = _blocks_case(rng, shape)
    runs = []
    for threads in (1, 2, 3, 8):
        with chunk_plans("forced", threads=threads):
            runs.append(_all_kernels(x, gamma, beta, rm, rv, dout))
    for run in runs[1:]:
        for ours, first in zip(run, runs[0]):
            np.testing.assert_array_equal(ours, first)
    out, mean, var, dx, dgamma, dbeta, e_out, e_dx, e_dgamma, e_dbeta = runs[0]
    for a in (out, dx, e_out, e_dx):
        assert a.ctypes.data % norm.ALIGNMENT == 0 and a.flags.c_contiguous
    t_out, (t_dx, t_dgamma, t_dbeta), _ = oracle.batchnorm_train(x, gamma, beta, rm, rv, 0.9,
                                                                 1e-5, dout)
    for name, ours, theirs in (("out", out, t_out), ("dx", dx, t_dx), ("dgamma", dgamma, t_dgamma),
                               ("dbeta", dbeta, t_dbeta)):
        assert_close(ours, theirs, f"blocks of {block} B: {name}")
    t_out, (t_dx, t_dgamma, t_dbeta) = oracle.batchnorm_eval(x, gamma, beta, rm, rv, 1e-5, dout)
    for name, ours, theirs in (("out", e_out, t_out), ("dx", e_dx, t_dx),
                               ("dgamma", e_dgamma, t_dgamma), ("dbeta", e_dbeta, t_dbeta)):
        assert_close(ours, theirs, f"blocks of {block} B: eval {name}")


def test_second_pass_under_blocks_and_threads(rng, monkeypatch):
    """The statistics' second pass (data far from zero) on small blocks and several threads:
    the same bits on any thread count, and the float64 variance."""
    norm = importlib.import_module("cnnkit.functional.norm")
    monkeypatch.setattr(norm, "BLOCK_BYTES", 4 * 7)
    monkeypatch.setattr(parallel, "TASK_BYTES", 4 * 7 * 5)
    x = _far_from_zero(rng, (11, 4, 3, 7), 1e3)
    gamma, beta = np.ones(4, np.float32), np.zeros(4, np.float32)
    stats = []
    for threads in (1, 2, 3, 8):
        with chunk_plans("forced", threads=threads):
            _, cache = F.batchnorm_forward(x, gamma, beta)
        stats.append((cache.mean, cache.var))
    for mean, var in stats[1:]:
        np.testing.assert_array_equal(mean, stats[0][0])
        np.testing.assert_array_equal(var, stats[0][1])
    np.testing.assert_allclose(stats[0][1], x.astype(np.float64).var(axis=(0, 2, 3)), rtol=2e-6)


def test_train_memory_is_the_output_and_the_gradient(rng):
    """The cache holds x itself (no centred copy): the forward allocates its output and little
    else, the backward its dx and little else: up to three (K, L) planes of per-feature values
    and small (N, K) row sums."""
    x = rng.standard_normal((16, 8, 32, 32)).astype(np.float32)          # 512 KiB
    gamma, beta = np.ones(8, np.float32), np.zeros(8, np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    slack = 3 * x[0].nbytes + (64 << 10)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out, cache = F.batchnorm_forward(x, gamma, beta)
        forward_peak = tracemalloc.get_traced_memory()[1] - before
        kept = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        grads = F.batchnorm_backward(dout, cache)
        backward_peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert np.shares_memory(cache.x, x)
    assert kept < x.nbytes + slack, f"forward keeps {kept} B for a {x.nbytes} B output"
    assert forward_peak < x.nbytes + slack, f"forward peak {forward_peak} B"
    assert backward_peak < x.nbytes + slack, f"backward peak {backward_peak} B"
    assert out.shape == grads[0].shape == x.shape
