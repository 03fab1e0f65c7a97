"""Dropout: statistics of the mask and of the output in both modes, exact arithmetic given the mask,
eval, seeds, edge probabilities, backward, numerical gradients, errors, dtypes and purity."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import functional as F
from cnnkit.functional.dropout import MODES
from cnnkit.gradcheck import check_kernel
from tests.plans import chunk_plans, plans

SEEDS = st.integers(0, 2**32 - 1)
PS = [0.05, 0.25, 0.5, 0.8, 0.95]


def _keep(seed, shape, p):
    """The keep pattern the kernel must draw: the same seed, the same uniforms."""
    return np.random.default_rng(seed).random(shape) >= p


# ----------------------------------------------------------------------------- statistics

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("p", PS)
def test_fraction_kept_is_binomial(rng, p, mode):
    """kept ~ Binomial(n, 1 - p): |kept - n(1 - p)| <= 5 sd, sd = sqrt(n p (1 - p)).

    A correct kernel fails this with probability ~6e-7 per case (normal tail beyond 5 sd).
    """
    n = 200_000
    _, mask = F.dropout_forward(np.ones(n), p, rng, mode=mode)
    kept = int(np.count_nonzero(mask))
    sd = np.sqrt(n * p * (1 - p))
    assert abs(kept - n * (1 - p)) <= 5 * sd, \
        f"p={p}: kept {kept} of {n}, expected {n * (1 - p):.0f} +- {5 * sd:.0f}"


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_expectation_upscale_in_train_is_x(rng, p):
    """E[out_j] = x_j: over T masks the mean of out_j has sd |x_j| sqrt(p / ((1 - p) T)).

    Bound: every element within 6 sd (normal tail 2e-9 each, d = 40 elements), and the average
    of the d standardised deviations within 5 / sqrt(d) (5 sd of its own distribution).
    """
    t, d = 5000, 40
    x = rng.uniform(0.5, 2.0, d) * rng.choice([-1.0, 1.0], d)
    out, _ = F.dropout_forward(np.broadcast_to(x, (t, d)), p, rng)
    z = (out.mean(axis=0) - x) / (np.abs(x) * np.sqrt(p / ((1 - p) * t)))
    assert np.max(np.abs(z)) < 6, f"p={p}: worst z-score {np.max(np.abs(z)):.2f}"
    assert abs(z.mean()) < 5 / np.sqrt(d), f"p={p}: mean z-score {z.mean():.3f}"


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_expectation_downscale_in_infer_is_scaled_x(rng, p):
    """Training in downscale_in_infer: E[out_j] = (1 - p) x_j; the mean's sd is
    |x_j| sqrt(p (1 - p) / T).

    Same bound as upscale_in_train; the eval output (1 - p) x is the value it estimates.
    """
    t, d = 5000, 40
    x = rng.uniform(0.5, 2.0, d) * rng.choice([-1.0, 1.0], d)
    out, _ = F.dropout_forward(np.broadcast_to(x, (t, d)), p, rng, mode="downscale_in_infer")
    eval_out, _ = F.dropout_forward(x, p, rng, mode="downscale_in_infer", training=False)
    z = (out.mean(axis=0) - eval_out) / (np.abs(x) * np.sqrt(p * (1 - p) / t))
    assert np.max(np.abs(z)) < 6, f"p={p}: worst z-score {np.max(np.abs(z)):.2f}"
    assert abs(z.mean()) < 5 / np.sqrt(d), f"p={p}: mean z-score {z.mean():.3f}"


# ----------------------------------------------------------------------------- exact arithmetic

@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple),
       p=st.floats(0.0, 1.0), mode=st.sampled_from(MODES), plan=plans(), data=st.data())
def test_training_arithmetic_given_the_mask(shape, p, mode, plan, data):
    seed = data.draw(SEEDS)
    x = np.random.default_rng(seed + 1).standard_normal(shape)
    dout = np.random.default_rng(seed + 2).standard_normal(shape)
    with chunk_plans(plan):
        out, mask = F.dropout_forward(x, p, np.random.default_rng(seed), mode=mode)
        dx = F.dropout_backward(dout, mask)
    keep = _keep(seed, shape, p)
    assert out.shape == mask.shape == x.shape
    np.testing.assert_array_equal(mask != 0, keep, err_msg="mask is not rng.random >= p")
    np.testing.assert_array_equal(out, x * mask, err_msg="out is not x * mask")
    np.testing.assert_array_equal(dx, dout * mask, err_msg="dx is not dout * mask")
    if mode == "downscale_in_infer":
        np.testing.assert_array_equal(mask, keep.astype(np.float64), err_msg="mask not 0/1")
        np.testing.assert_array_equal(out, np.where(keep, x, 0.0), err_msg="out")
    elif p == 1:
        np.testing.assert_array_equal(out, np.zeros(shape), err_msg="p = 1")
    else:
        np.testing.assert_array_equal(mask, np.where(keep, 1 / (1 - p), 0.0), err_msg="mask")
        np.testing.assert_allclose(out, x * keep / (1 - p), rtol=1e-15, atol=0, err_msg="out")


@st.composite
def shards(draw):
    """(shape, start, stop): a batch of 2-9 rows of non-square samples (rank 2 to 4) and one
    shard of it, possibly empty, possibly the whole batch."""
    shape = (draw(st.integers(2, 9)),) + tuple(draw(st.lists(st.integers(1, 6), min_size=1,
                                                             max_size=3)))
    start = draw(st.integers(0, shape[0]))
    return shape, start, draw(st.integers(start, shape[0]))


@given(case=shards(), p=st.sampled_from([0.0, 0.3, 0.7, 1.0]), mode=st.sampled_from(MODES),
       plan=plans(), seed=SEEDS)
def test_a_shard_gets_its_rows_of_the_whole_batch_mask(case, p, mode, plan, seed):
    """``rows=(start, total)``: a rank's shard x[start:stop] gets exactly the rows start:stop
    of the mask one process would draw for the whole batch (the oracle: the uniforms of the
    whole (total, ...) batch), under every chunk plan, and the Generator advances as for the
    whole batch."""
    shape, start, stop = case
    x = np.random.default_rng(seed + 1).standard_normal(shape)[start:stop]
    dout = np.random.default_rng(seed + 2).standard_normal(x.shape)
    gen = np.random.default_rng(seed)
    with chunk_plans(plan):
        out, mask = F.dropout_forward(x, p, gen, mode=mode, rows=(start, shape[0]))
        dx = F.dropout_backward(dout, mask)
    whole = np.random.default_rng(seed)
    keep = (whole.random(shape) >= p)[start:stop]
    scale = 1.0 if mode == "downscale_in_infer" else (0.0 if p == 1 else 1 / (1 - p))
    np.testing.assert_array_equal(mask, np.where(keep, scale, 0.0), err_msg="the shard's mask")
    np.testing.assert_array_equal(out, x * mask, err_msg="out is not x * mask")
    np.testing.assert_array_equal(dx, dout * mask, err_msg="dx is not dout * mask")
    assert gen.random() == whole.random(), "the Generator did not advance as for the batch"


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_eval_of_both_modes_exactly(rng, p):
    x = rng.standard_normal((3, 4, 5))
    out, cache = F.dropout_forward(x, p, rng, training=False)
    np.testing.assert_array_equal(out, x)
    assert cache == 1 and out is not x
    out, cache = F.dropout_forward(x, p, rng, mode="downscale_in_infer", training=False)
    np.testing.assert_array_equal(out, x * (1 - p))
    assert cache == 1 - p


def test_same_seed_same_mask_different_seeds_differ(rng):
    x = rng.standard_normal((50, 40))
    seed = int(rng.integers(2**32))
    _, m1 = F.dropout_forward(x, 0.5, np.random.default_rng(seed))
    _, m2 = F.dropout_forward(x, 0.5, np.random.default_rng(seed))
    _, m3 = F.dropout_forward(x, 0.5, np.random.default_rng(seed + 1))
    np.testing.assert_array_equal(m1, m2)
    assert not np.array_equal(m1, m3)
    # one generator, two calls: a fresh mask each time
    g = np.random.default_rng(seed)
    assert not np.array_equal(F.dropout_forward(x, 0.5, g)[1], F.dropout_forward(x, 0.5, g)[1])
    # the uniforms are float64 whatever x's dtype: the same seed gives the same pattern
    _, m32 = F.dropout_forward(x.astype(np.float32), 0.5, np.random.default_rng(seed))
    np.testing.assert_array_equal(m32 != 0, m1 != 0)


@pytest.mark.parametrize("mode", MODES)
def test_p0_is_identity(rng, mode):
    x = rng.standard_normal((4, 3, 2, 2))
    out, mask = F.dropout_forward(x, 0.0, rng, mode=mode)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(mask, np.ones_like(x))


@pytest.mark.parametrize("mode", MODES)
def test_p1_drops_everything_and_stays_finite(rng, mode):
    x = rng.standard_normal((4, 3, 2, 2))
    with np.errstate(all="raise"):          # no 1/0 or 0*inf on the way
        out, mask = F.dropout_forward(x, 1.0, rng, mode=mode)
        dx = F.dropout_backward(rng.standard_normal(x.shape), mask)
    for name, a in (("out", out), ("mask", mask), ("dx", dx)):
        assert np.all(np.isfinite(a)) and not np.any(a), name


# ----------------------------------------------------------------------------- backward

@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_backward_is_dout_times_mask(rng, mode, training):
    x = rng.standard_normal((6, 7))
    seed = int(rng.integers(2**32))
    out, cache = F.dropout_forward(x, 0.4, np.random.default_rng(seed), mode=mode,
                                   training=training)
    dout = rng.standard_normal(x.shape)
    dx = F.dropout_backward(dout, cache)
    if training:
        keep = _keep(seed, x.shape, 0.4)
        scale = 1 / 0.6 if mode == "upscale_in_train" else 1.0
        np.testing.assert_allclose(dx, np.where(keep, dout * scale, 0.0), rtol=1e-15, atol=0)
    else:
        factor = 1.0 if mode == "upscale_in_train" else 0.6
        np.testing.assert_array_equal(dx, dout * factor)
    np.testing.assert_array_equal(dx, dout * cache)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(rng, mode, training):
    seed = int(rng.integers(2**32))

    def forward(x):
        # a fresh Generator with the same seed per call: every perturbed forward sees one mask
        return F.dropout_forward(x, 0.3, np.random.default_rng(seed), mode=mode,
                                 training=training)

    errors = check_kernel(forward, F.dropout_backward, [rng.standard_normal((4, 3, 5))], rng=rng)
    assert set(errors) == {"dx"}
    assert errors["dx"] < 1e-7, errors


def test_backward_rejects_wrong_dout_shape(rng):
    _, mask = F.dropout_forward(np.ones((3, 4)), 0.5, rng)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        F.dropout_backward(np.ones((4, 3)), mask)


# ----------------------------------------------------------------------------- errors

def test_errors(rng):
    x = np.ones((2, 3))
    for p in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\].*" + str(p)):
            F.dropout_forward(x, p, rng)
    for p in ("0.5", None, True, 0.5j):
        with pytest.raises(TypeError, match="dropout p"):
            F.dropout_forward(x, p, rng)
    with pytest.raises(ValueError, match=r"upscale_in_train.*downscale_in_infer.*'foo'"):
        F.dropout_forward(x, 0.5, rng, mode="foo")
    for bad in (np.random, 0, None, np.random.RandomState(0)):
        with pytest.raises(TypeError, match="numpy.random.Generator"):
            F.dropout_forward(x, 0.5, bad)
        with pytest.raises(TypeError, match="numpy.random.Generator"):
            F.dropout_forward(x, 0.5, bad, training=False)
    with pytest.raises(TypeError, match="training"):
        F.dropout_forward(x, 0.5, rng, training="no")
    with pytest.raises(TypeError, match="int64"):
        F.dropout_forward(np.ones((2, 3), np.int64), 0.5, rng)


# ----------------------------------------------------------------------------- dtypes, purity

@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_float32_preserved(rng, mode, training):
    x = rng.standard_normal((5, 6)).astype(np.float32)
    out, cache = F.dropout_forward(x, np.float64(0.3), rng, mode=mode, training=training)
    dx = F.dropout_backward(rng.standard_normal(x.shape).astype(np.float32), cache)
    assert out.dtype == np.asarray(cache).dtype == dx.dtype == np.float32


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_x_not_modified(rng, mode, training):
    x = rng.standard_normal((5, 6))
    before = x.copy()
    out, cache = F.dropout_forward(x, 0.5, rng, mode=mode, training=training)
    dout = rng.standard_normal(x.shape)
    dout_before = dout.copy()
    F.dropout_backward(dout, cache)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(dout, dout_before)
    assert not np.shares_memory(out, x)


@pytest.mark.parametrize("mode", MODES)
def test_rng_not_consumed_in_eval(mode):
    g = np.random.default_rng(1234)
    state = g.bit_generator.state
    F.dropout_forward(np.ones((10, 10)), 0.5, g, mode=mode, training=False)
    assert g.bit_generator.state == state
    np.testing.assert_array_equal(g.random(5), np.random.default_rng(1234).random(5))
