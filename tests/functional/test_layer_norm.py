"""Layer and group norm: PyTorch oracle (float64) on every layout and under every chunk plan,
numerical gradients, naive vs fast, the same bits on any thread count, semantics (the batch does
not matter, a one-value row gives beta, instance and layer norm as group counts), errors, dtypes
and purity."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit import functional as F
from cnnkit import reference as R
from cnnkit.gradcheck import check_kernel
from tests import oracle
from tests.helpers import assert_close
from tests.plans import PLANS, chunk_plans, plans

SEEDS = st.integers(0, 2**32 - 1)

# (x shape, groups): one group, instance norm (G = C), groups of several channels, (N, C)
# and (N, C, L) inputs, 1x1 maps, one value per row, batches the forced plans cut unevenly
GROUP_CASES = [
    ((2, 6, 5, 4), 3), ((3, 4, 1, 1), 2), ((7, 6, 3, 5), 1), ((5, 6, 2, 3), 6),
    ((4, 8), 4), ((4, 8), 8), ((6, 9, 7), 3), ((1, 3, 4, 2), 3), ((13, 4, 3, 2), 2),
]
# (x shape, normalized_shape): CS231n's (N, D), a whole volume, the last axis or two of a
# volume, one value per row
LAYER_CASES = [
    ((5, 7), (7,)), ((3, 4, 5, 2), (4, 5, 2)), ((3, 4, 5, 2), (2,)), ((2, 3, 4, 5), (4, 5)),
    ((6, 1), (1,)), ((11, 3, 2), (3, 2)),
]


def _params(rng, shape, dtype=np.float64):
    """gamma away from 0 (either sign) and beta."""
    gamma = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    return gamma.astype(dtype), rng.standard_normal(shape).astype(dtype)


def _assert_grads(grads, t_grads, what):
    for name, ours, theirs in zip(("dx", "dgamma", "dbeta"), grads, t_grads):
        if theirs is None:
            assert ours is None, f"{what} {name}"
        else:
            assert_close(ours, theirs, f"{what} {name}")


def _group_vs_torch(rng, shape, groups, affine=(True, True), eps=1e-5):
    x = rng.standard_normal(shape) * 2 + 0.5
    gamma, beta = _params(rng, (shape[1],))
    gamma, beta = (gamma if affine[0] else None), (beta if affine[1] else None)
    out, cache = F.groupnorm_forward(x, gamma, beta, groups, eps)
    dout = rng.standard_normal(shape)
    t_out, t_grads = oracle.group_norm(x, groups, gamma, beta, eps, dout)
    assert_close(out, t_out, f"groupnorm {shape} G={groups} out")
    _assert_grads(F.groupnorm_backward(dout, cache), t_grads, f"groupnorm {shape} G={groups}")


def _layer_vs_torch(rng, shape, normalized, affine=(True, True), eps=1e-5):
    x = rng.standard_normal(shape) * 2 - 0.5
    gamma, beta = _params(rng, normalized)
    gamma, beta = (gamma if affine[0] else None), (beta if affine[1] else None)
    out, cache = F.layernorm_forward(x, gamma, beta, eps, normalized_shape=normalized)
    dout = rng.standard_normal(shape)
    t_out, t_grads = oracle.layer_norm(x, normalized, gamma, beta, eps, dout)
    assert_close(out, t_out, f"layernorm {shape} over {normalized} out")
    _assert_grads(F.layernorm_backward(dout, cache), t_grads,
                  f"layernorm {shape} over {normalized}")


# ----------------------------------------------------------------------------- oracle

@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("shape, groups", GROUP_CASES, ids=[f"{s}-G{g}" for s, g in GROUP_CASES])
def test_group_norm_matches_torch(rng, shape, groups, plan):
    with chunk_plans(plan) as record:
        _group_vs_torch(rng, shape, groups)
    if plan == "forced" and shape[0] >= 2:
        record.check()


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("shape, normalized", LAYER_CASES,
                         ids=[f"{s}-over-{n}" for s, n in LAYER_CASES])
def test_layer_norm_matches_torch(rng, shape, normalized, plan):
    with chunk_plans(plan) as record:
        _layer_vs_torch(rng, shape, normalized)
    if plan == "forced":
        record.check()


@pytest.mark.parametrize("affine", [(False, False), (True, False), (False, True)])
def test_without_scale_or_shift_matches_torch(rng, affine):
    _group_vs_torch(rng, (3, 6, 4, 5), 2, affine)
    _layer_vs_torch(rng, (4, 3, 5), (3, 5), affine)


def test_other_eps_matches_torch(rng):
    _group_vs_torch(rng, (3, 4, 2, 3), 2, eps=0.3)
    _layer_vs_torch(rng, (3, 4, 2), (4, 2), eps=0.3)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 6), per=st.integers(1, 3), groups=st.integers(1, 4),
       spatial=st.lists(st.integers(1, 5), min_size=0, max_size=2), plan=plans(), data=st.data())
def test_drawn_group_shapes_match_torch(n, per, groups, spatial, plan, data):
    if n * per * np.prod(spatial) == 1:
        return      # torch refuses one value in all when training (its batch-norm path); ours: beta
    with chunk_plans(plan):
        _group_vs_torch(np.random.default_rng(data.draw(SEEDS)), (n, per * groups, *spatial),
                        groups)


@settings(max_examples=30, deadline=None)
@given(lead=st.lists(st.integers(1, 5), min_size=1, max_size=2),
       normalized=st.lists(st.integers(1, 5), min_size=1, max_size=3), plan=plans(),
       data=st.data())
def test_drawn_layer_shapes_match_torch(lead, normalized, plan, data):
    with chunk_plans(plan):
        _layer_vs_torch(np.random.default_rng(data.draw(SEEDS)), (*lead, *normalized),
                        tuple(normalized))


# ----------------------------------------------------------------------------- gradients, twins

@pytest.mark.parametrize("shape, groups", [((3, 6, 3, 2), 3), ((4, 4), 1), ((2, 3, 5), 3)])
def test_group_norm_gradients_match_centred_differences(rng, shape, groups):
    gamma, beta = _params(rng, (shape[1],))
    errors = check_kernel(F.groupnorm_forward, F.groupnorm_backward,
                          [rng.standard_normal(shape), gamma, beta], num_groups=groups, rng=rng)
    assert set(errors) == {"dx", "dgamma", "dbeta"} and max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("shape, normalized", [((4, 6), (6,)), ((2, 3, 4, 2), (3, 4, 2)),
                                               ((3, 2, 5), (5,))])
def test_layer_norm_gradients_match_centred_differences(rng, shape, normalized):
    gamma, beta = _params(rng, normalized)
    errors = check_kernel(F.layernorm_forward, F.layernorm_backward,
                          [rng.standard_normal(shape), gamma, beta], rng=rng)
    assert set(errors) == {"dx", "dgamma", "dbeta"} and max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("plan", PLANS)
def test_naive_twins_match_the_fast_kernels(rng, plan):
    for shape, groups in GROUP_CASES:
        x = rng.standard_normal(shape)
        gamma, beta = _params(rng, (shape[1],))
        dout = rng.standard_normal(shape)
        with chunk_plans(plan):
            out, cache = F.groupnorm_forward(x, gamma, beta, groups)
            fast = F.groupnorm_backward(dout, cache)
        r_out, r_cache = R.groupnorm_forward(x, gamma, beta, groups)
        for name, a, b in zip(("out", "dx", "dgamma", "dbeta"), (out, *fast),
                              (r_out, *R.groupnorm_backward(dout, r_cache))):
            assert_close(a, b, f"groupnorm twin {shape} G={groups} {name}")
    for shape, normalized in LAYER_CASES:
        x = rng.standard_normal(shape)
        gamma, beta = _params(rng, normalized)
        dout = rng.standard_normal(shape)
        with chunk_plans(plan):
            out, cache = F.layernorm_forward(x, gamma, beta)
            fast = F.layernorm_backward(dout, cache)
        r_out, r_cache = R.layernorm_forward(x, gamma, beta)
        for name, a, b in zip(("out", "dx", "dgamma", "dbeta"), (out, *fast),
                              (r_out, *R.layernorm_backward(dout, r_cache))):
            assert_close(a, b, f"layernorm twin {shape} over {normalized} {name}")


def test_the_same_bits_on_any_thread_count(rng):
    x = rng.standard_normal((13, 6, 5, 3)).astype(np.float32)
    gamma, beta = _params(rng, (6,), np.float32)
    lgamma, lbeta = _params(rng, (6, 5, 3), np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    runs = []
    for threads in (1, 2, 3, 8):
        with chunk_plans("forced", threads=threads):
            out, cache = F.groupnorm_forward(x, gamma, beta, 3)
            l_out, l_cache = F.layernorm_forward(x, lgamma, lbeta)
            runs.append((out, *F.groupnorm_backward(dout, cache), l_out,
                         *F.layernorm_backward(dout, l_cache)))
    for run in runs[1:]:
        for ours, first in zip(run, runs[0]):
            np.testing.assert_array_equal(ours, first)


# ----------------------------------------------------------------------------- semantics

def test_a_sample_does_not_depend_on_the_rest_of_the_batch(rng):
    x = rng.standard_normal((5, 6, 4, 3))
    gamma, beta = _params(rng, (6,))
    whole, _ = F.groupnorm_forward(x, gamma, beta, 2)
    for i in range(5):
        alone, _ = F.groupnorm_forward(x[i:i + 1], gamma, beta, 2)
        assert_close(alone[0], whole[i], f"sample {i}")


def test_each_row_is_standardised_before_the_scale(rng):
    x = rng.standard_normal((4, 6, 3, 5)) * 3 + 7
    out, cache = F.groupnorm_forward(x, None, None, 3, eps=1e-12)
    rows = out.reshape(4, 3, -1)
    assert_close(rows.mean(axis=2), np.zeros((4, 3)), "row means", atol=1e-12)
    assert_close(rows.var(axis=2), np.ones((4, 3)), "row variances")
    expected = 1 / np.sqrt(x.reshape(4, 3, -1).var(axis=2) + 1e-12)
    assert_close(cache.invstd, expected, "cache.invstd")


def test_groups_of_one_and_of_every_channel_are_layer_and_instance_norm(rng):
    x = rng.standard_normal((3, 4, 5, 2))
    gamma, beta = _params(rng, (4,))
    one, _ = F.groupnorm_forward(x, gamma, beta, 1)
    plain, _ = F.layernorm_forward(x, None, None, normalized_shape=(4, 5, 2))
    assert_close(one, plain * gamma[:, None, None] + beta[:, None, None], "G = 1")
    every, _ = F.groupnorm_forward(x, gamma, beta, 4)
    t_out, _ = oracle.vjp(lambda t: oracle.torch.nn.functional.instance_norm(t, eps=1e-5), [x])
    assert_close(every, t_out * gamma[:, None, None] + beta[:, None, None], "G = C")


def test_a_row_of_one_value_gives_beta(rng):
    x = rng.standard_normal((3, 4))
    gamma, beta = _params(rng, (4,))
    out, cache = F.groupnorm_forward(x, gamma, beta, 4)
    assert_close(out, np.broadcast_to(beta, x.shape), "out")
    dx, _, dbeta = F.groupnorm_backward(np.ones_like(x), cache)
    assert_close(dx, np.zeros_like(x), "dx")
    assert_close(dbeta, np.full(4, 3.0), "dbeta")


def test_a_constant_row_gives_beta_and_finite_gradients():
    x = np.full((2, 4, 3, 3), 5.0, np.float32)
    out, cache = F.groupnorm_forward(x, np.ones(4, np.float32), np.arange(4, dtype=np.float32), 2)
    np.testing.assert_array_equal(out, np.broadcast_to(np.arange(4.0)[:, None, None], x.shape))
    grads = F.groupnorm_backward(np.ones_like(x), cache)
    assert all(np.isfinite(g).all() for g in grads)


def test_float32_follows_float64(rng):
    x = rng.standard_normal((6, 8, 9, 7)) * 4 + 100          # far from zero against its spread
    gamma, beta = _params(rng, (8,))
    dout = rng.standard_normal(x.shape)
    out64, c64 = F.groupnorm_forward(x, gamma, beta, 4)
    grads64 = F.groupnorm_backward(dout, c64)
    f32 = [a.astype(np.float32) for a in (x, gamma, beta, dout)]
    out32, c32 = F.groupnorm_forward(f32[0], f32[1], f32[2], 4)
    grads32 = F.groupnorm_backward(f32[3], c32)
    assert out32.dtype == np.float32 and all(g.dtype == np.float32 for g in grads32)
    np.testing.assert_allclose(out32, out64, atol=2e-4)
    for name, a, b in zip(("dx", "dgamma", "dbeta"), grads32, grads64):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * np.abs(b).max(), err_msg=name)


def test_inputs_are_not_modified_and_strided_input_is_read_right(rng):
    x = rng.standard_normal((4, 6, 5, 8))[:, :, :, ::2]            # not contiguous
    gamma, beta = _params(rng, (6,))
    copies = [a.copy() for a in (x, gamma, beta)]
    out, cache = F.groupnorm_forward(x, gamma, beta, 3)
    dout = rng.standard_normal(x.shape)
    dcopy = dout.copy()
    F.groupnorm_backward(dout, cache)
    for a, b in zip((x, gamma, beta, dout), (*copies, dcopy)):
        np.testing.assert_array_equal(a, b)
    expected, _ = F.groupnorm_forward(np.ascontiguousarray(x), gamma, beta, 3)
    np.testing.assert_array_equal(out, expected)


def test_an_empty_batch_gives_empty_results():
    out, cache = F.groupnorm_forward(np.zeros((0, 4, 3, 3)), np.ones(4), np.zeros(4), 2)
    dx, dgamma, dbeta = F.groupnorm_backward(np.zeros((0, 4, 3, 3)), cache)
    assert out.shape == dx.shape == (0, 4, 3, 3)
    np.testing.assert_array_equal(dgamma, np.zeros(4))
    np.testing.assert_array_equal(dbeta, np.zeros(4))


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("call, error, match", [
    (lambda: F.groupnorm_forward(np.zeros((2, 6, 3, 3)), None, None, 4), ValueError,
     "num_groups 4 must divide the 6 channels"),
    (lambda: F.groupnorm_forward(np.zeros((2, 6, 3, 3)), None, None, 0), ValueError,
     "num_groups must be >= 1"),
    (lambda: F.groupnorm_forward(np.zeros((2, 6, 3, 3)), None, None, 2.0), TypeError,
     "num_groups must be an int"),
    (lambda: F.groupnorm_forward(np.zeros(6), None, None, 2), ValueError, "at least 2 axes"),
    (lambda: F.groupnorm_forward(np.zeros((2, 6)), np.ones(3), None, 2), ValueError,
     r"gamma .* must have shape \(6,\)"),
    (lambda: F.groupnorm_forward(np.zeros((2, 6), int), None, None, 2), TypeError, "float"),
    (lambda: F.groupnorm_forward(np.zeros((2, 6)), None, None, 2, eps=0.0), ValueError,
     "eps must be > 0"),
    (lambda: F.layernorm_forward(np.zeros((2, 6)), np.ones(5), None), ValueError,
     r"must end in normalized_shape \(5,\)"),
    (lambda: F.layernorm_forward(np.zeros(6), np.ones(6), None), ValueError,
     "with a batch axis before it"),
    (lambda: F.layernorm_forward(np.zeros((2, 6)), None, None), ValueError,
     "give normalized_shape"),
    (lambda: F.layernorm_forward(np.zeros((2, 6)), np.ones(6), np.ones(3)), ValueError,
     r"beta must have shape \(6,\)"),
    (lambda: F.layernorm_forward(np.zeros((2, 6)), None, None, normalized_shape=0), ValueError,
     "sizes >= 1"),
    (lambda: F.layernorm_backward(np.zeros((3, 6)),
                                  F.layernorm_forward(np.zeros((2, 6)), np.ones(6), None)[1]),
     ValueError, r"dout must have the forward output's shape \(2, 6\)"),
])
def test_bad_arguments_are_one_line(call, error, match):
    with pytest.raises(error, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_groups_of_data_far_from_zero_under_chunks_match_torch(rng):
    """Each sample's groups at their own offset, some far from zero against their spread (the
    second pass), under plans that cut the batch: PyTorch's answers, the same bits on 1 and 3
    threads."""
    x = rng.standard_normal((11, 4, 2, 3)) * 3 + rng.uniform(-40, 40, (11, 4, 1, 1))
    gamma, beta = _params(rng, (4,))
    dout = rng.standard_normal(x.shape)
    runs = []
    for threads in (1, 3):
        with chunk_plans("forced", threads=threads):
            out, cache = F.groupnorm_forward(x, gamma, beta, 2)
            runs.append((out, *F.groupnorm_backward(dout, cache)))
    for ours, first in zip(runs[1], runs[0]):
        np.testing.assert_array_equal(ours, first)
    t_out, t_grads = oracle.group_norm(x, 2, gamma, beta, 1e-5, dout)
    for name, ours, theirs in zip(("out", "dx", "dgamma", "dbeta"), runs[0], (t_out, *t_grads)):
        assert_close(ours, theirs, name)


def test_groups_far_from_zero_take_their_statistics_again_about_the_mean(rng):
    """float32 groups whose mean is 1e3 times their spread (the sum-of-squares difference
    cancels) next to centred ones: every group's variance as float64 computes it."""
    x = rng.standard_normal((5, 6, 7, 3)).astype(np.float32)
    x[:, :2] += 3000.0                                         # group 0 of 3: far from zero
    x[2, 4:] = 7.0                                             # a constant group: var 0
    _, cache = F.groupnorm_forward(x, None, None, 3)
    rows = x.astype(np.float64).reshape(5, 3, -1)
    np.testing.assert_allclose(cache.mean, rows.mean(axis=2), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(1 / cache.invstd ** 2 - 1e-5, rows.var(axis=2), rtol=1e-4,
                               atol=1e-6)
    assert cache.invstd[2, 2] == np.float64(1 / np.sqrt(1e-5))
