"""Losses: softmax cross-entropy and multiclass SVM against PyTorch, gradient checks, known
answers, numerical stability, L2 regularisation, label validation, dtype and purity."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit.functional import l2_regularization, softmax_loss, svm_loss
from cnnkit.gradcheck import check_loss
from tests import oracle
from tests.helpers import assert_close

LOSSES = [pytest.param(softmax_loss, id="softmax"), pytest.param(svm_loss, id="svm")]


def _problem(rng, n, c, scale=1.0):
    return scale * rng.standard_normal((n, c)), rng.integers(0, c, size=n)


def _away_from_hinge(rng, scores, y, margin=1.0, gap=1e-3):
    """Redraw rows where some term s_j - s_y + margin (j != y) is within ``gap`` of the kink."""
    scores = scores.copy()
    rows = np.arange(len(y))
    while True:
        terms = scores - scores[rows, y][:, None] + margin
        terms[rows, y] = np.inf
        bad = (np.abs(terms) < gap).any(axis=1)
        if not bad.any():
            return scores
        scores[bad] = rng.standard_normal((int(bad.sum()), scores.shape[1]))


@given(data=st.data(), n=st.integers(1, 8), c=st.integers(2, 10),
       scale=st.sampled_from([0.1, 1.0, 30.0]))
def test_softmax_matches_torch(data, n, c, scale):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    scores, y = _problem(rng, n, c, scale)
    loss, dscores = softmax_loss(scores, y)
    t_loss, t_dscores = oracle.softmax_loss(scores, y)
    assert isinstance(loss, float)
    assert_close(loss, t_loss, "loss")
    assert_close(dscores, t_dscores, "dscores")


@given(data=st.data(), n=st.integers(1, 8), c=st.integers(2, 10),
       margin=st.sampled_from([1.0, 0.5, 2.0]))
def test_svm_matches_torch(data, n, c, margin):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    scores, y = _problem(rng, n, c)
    loss, dscores = svm_loss(scores, y, margin=margin)
    t_loss, t_dscores = oracle.svm_loss(scores, y, margin=margin)
    assert isinstance(loss, float)
    assert_close(loss, t_loss, "loss")
    assert_close(dscores, t_dscores, "dscores")


@given(data=st.data(), n=st.integers(1, 8), c=st.integers(2, 10))
def test_gradcheck(data, n, c):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    scores, y = _problem(rng, n, c)
    err = check_loss(softmax_loss, scores, y)
    assert err < 1e-7, f"softmax dscores: relative error {err:.2e}"
    scores = _away_from_hinge(rng, scores, y)
    err = check_loss(svm_loss, scores, y)
    assert err < 1e-7, f"svm dscores: relative error {err:.2e}"


@pytest.mark.parametrize("n, c", [(1, 2), (3, 5), (4, 10)])
def test_softmax_of_zero_scores_is_log_c(n, c):
    y = np.arange(n) % c
    loss, dscores = softmax_loss(np.zeros((n, c)), y)
    assert_close(loss, np.log(c), "loss")
    assert_close(dscores, (1.0 / c - np.eye(c)[y]) / n, "dscores")


@pytest.mark.parametrize("n, c", [(1, 2), (3, 5), (4, 10)])
def test_svm_of_equal_scores_is_c_minus_1(n, c):
    """Every wrong class sits exactly ``margin`` too close: each of the C - 1 terms is 1."""
    y = np.arange(n) % c
    loss, dscores = svm_loss(np.full((n, c), 3.7), y)
    assert_close(loss, c - 1.0, "loss")
    assert_close(dscores, (1.0 - c * np.eye(c)[y]) / n, "dscores")


def test_svm_subgradient_at_the_hinge_is_zero():
    """s_j - s_y + 1 == 0 exactly for both wrong classes: no loss and no gradient (as torch)."""
    scores, y = np.array([[0.0, 1.0, 0.0], [2.0, 5.0, 1.0]]), np.array([1, 0])
    loss, dscores = svm_loss(scores, y)
    t_loss, t_dscores = oracle.svm_loss(scores, y)
    assert_close(loss, 2.0, "loss")  # row 0: 0 + 0; row 1: (5 - 2 + 1) + 0 (hinge); mean of 0, 4
    assert_close(loss, t_loss, "loss vs torch")
    np.testing.assert_array_equal(dscores, [[0.0, 0.0, 0.0], [-0.5, 0.5, 0.0]],
                                  err_msg="dscores (0 at the hinge)")
    assert_close(dscores, t_dscores, "dscores vs torch")


def test_softmax_huge_scores_are_finite():
    """exp(1e4) overflows; the log-sum-exp does not. Row 0: 1e4 - 0; row 1: log(2 e^1e4) - 0."""
    scores = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]])
    y = np.array([1, 0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, dscores = softmax_loss(scores, y)
    assert np.isfinite(loss) and np.isfinite(dscores).all()
    assert_close(loss, 1e4 + np.log(2.0) / 2, "loss")
    assert_close(dscores, [[0.5, -0.5, 0.0], [-0.5, 0.25, 0.25]], "dscores")
    t_loss, t_dscores = oracle.softmax_loss(scores, y)
    assert_close(loss, t_loss, "loss vs torch")
    assert_close(dscores, t_dscores, "dscores vs torch")


def test_softmax_huge_scores_float32_are_finite():
    scores = np.array([[1e4, -1e4, 0.0]], dtype=np.float32)
    loss, dscores = softmax_loss(scores, np.array([2]))
    assert np.isfinite(loss) and np.isfinite(dscores).all()
    assert_close(loss, 1e4, "loss", rtol=1e-6)


def test_l2_regularization_value_and_grads(rng):
    w1, w2 = rng.standard_normal((4, 3)), rng.standard_normal((2, 3, 2, 2))
    saved = [w1.copy(), w2.copy()]
    loss, grads = l2_regularization([w1, w2], reg=0.3)
    assert isinstance(loss, float)
    assert_close(loss, 0.15 * (np.sum(w1**2) + np.sum(w2**2)), "loss")
    assert len(grads) == 2
    assert_close(grads[0], 0.3 * w1, "grad of w1")
    assert_close(grads[1], 0.3 * w2, "grad of w2")
    for g, w, s in zip(grads, (w1, w2), saved):
        assert not np.shares_memory(g, w), "a grad must be a new array"
        np.testing.assert_array_equal(w, s, err_msg="a weight was modified")


def test_l2_regularization_gradcheck(rng):
    w1, w2 = rng.standard_normal((3, 2)), rng.standard_normal(5)
    _, grads = l2_regularization([w1, w2], reg=0.7)
    err = check_loss(lambda a: (l2_regularization([a, w2], reg=0.7)[0], grads[0]), w1)
    assert err < 1e-7, f"l2 grad: relative error {err:.2e}"


def test_l2_regularization_edges(rng):
    w = rng.standard_normal((3, 3)).astype(np.float32)
    loss, grads = l2_regularization([w], reg=0.0)
    assert loss == 0.0 and grads[0].dtype == np.float32 and not grads[0].any()
    assert l2_regularization([], reg=1.0) == (0.0, [])
    with pytest.raises(ValueError, match="-0.1"):
        l2_regularization([w], reg=-0.1)
    with pytest.raises(TypeError, match=r"sequence of arrays.*\(3, 3\)"):
        l2_regularization(w, reg=0.1)  # a single array would be iterated row by row


@pytest.mark.parametrize("loss_fn", LOSSES)
@pytest.mark.parametrize("labels, dtype_name", [
    pytest.param(np.array([0.0, 1.0, 2.0]), "float64", id="float_labels"),
    pytest.param(np.array([True, False, True]), "bool", id="bool_labels"),
])
def test_error_non_integer_labels(loss_fn, labels, dtype_name):
    with pytest.raises(TypeError, match=dtype_name):
        loss_fn(np.zeros((3, 4)), labels)


@pytest.mark.parametrize("loss_fn", LOSSES)
@pytest.mark.parametrize("labels, fragments", [
    pytest.param([0, 4, 1], ["y[1] = 4", "[0, 4)"], id="label_equal_to_C"),
    pytest.param([2, 0, -1], ["y[2] = -1", "[0, 4)"], id="negative_label"),
])
def test_error_label_out_of_range(loss_fn, labels, fragments):
    with pytest.raises(ValueError) as info:
        loss_fn(np.zeros((3, 4)), np.array(labels))
    for frag in fragments:
        assert frag in str(info.value), f"{frag!r} not in {str(info.value)!r}"


@pytest.mark.parametrize("loss_fn", LOSSES)
def test_error_shapes(loss_fn):
    with pytest.raises(ValueError, match=r"N = 3 rows but y has 2 labels"):
        loss_fn(np.zeros((3, 4)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"2-D.*\(4,\)"):
        loss_fn(np.zeros(4), np.array([0]))
    with pytest.raises(ValueError, match=r"1-D.*\(3, 1\)"):
        loss_fn(np.zeros((3, 4)), np.zeros((3, 1), dtype=np.int64))
    with pytest.raises(TypeError, match="int64"):
        loss_fn(np.zeros((3, 4), dtype=np.int64), np.array([0, 1, 2]))


@pytest.mark.parametrize("loss_fn", LOSSES)
def test_float32_preserved(rng, loss_fn):
    scores, y = _problem(rng, 5, 7)
    loss64, dscores64 = loss_fn(scores, y)
    loss, dscores = loss_fn(scores.astype(np.float32), y.astype(np.int32))
    assert dscores.dtype == np.float32
    assert_close(loss, loss64, "loss", rtol=1e-5)
    assert_close(dscores, dscores64, "dscores", rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss_fn", LOSSES)
def test_inputs_not_modified(rng, loss_fn):
    scores, y = _problem(rng, 6, 4)
    saved = scores.copy(), y.copy()
    loss_fn(scores, y)
    np.testing.assert_array_equal(scores, saved[0], err_msg="scores was modified")
    np.testing.assert_array_equal(y, saved[1], err_msg="y was modified")
