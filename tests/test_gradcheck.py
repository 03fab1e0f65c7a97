"""cnnkit.gradcheck: the numerical gradients are right, and a wrong backward is caught."""

import numpy as np
import pytest

from cnnkit import functional as F
from cnnkit.gradcheck import (check_kernel, check_loss, numerical_gradient,
                              numerical_gradient_array, rel_error)


def test_numerical_gradient_of_known_functions(rng):
    x = rng.standard_normal((3, 4))
    before = x.copy()
    # centred differences err by h^2 * f'''/6 = 1e-10 here, absolute
    np.testing.assert_allclose(numerical_gradient(lambda z: np.sum(z ** 3), x), 3 * x ** 2, rtol=1e-8, atol=1e-9)
    np.testing.assert_array_equal(x, before)  # every element restored exactly


def test_numerical_gradient_reaches_an_array_held_elsewhere(rng):
    # CS231n's whole-model idiom: f ignores its argument and reads the perturbed array itself
    model = {"w": rng.standard_normal((2, 3)), "x": rng.standard_normal(3)}
    loss = lambda _: float(np.sum(np.tanh(model["w"] @ model["x"])))
    grad = numerical_gradient(loss, model["w"])
    expected = np.outer(1 - np.tanh(model["w"] @ model["x"]) ** 2, model["x"])
    np.testing.assert_allclose(grad, expected, rtol=1e-7, atol=1e-10)


def test_numerical_gradient_restores_on_error_and_rejects_non_float():
    x = np.arange(3.0)

    def fails(z):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        numerical_gradient(fails, x)
    np.testing.assert_array_equal(x, [0.0, 1.0, 2.0])
    with pytest.raises(TypeError, match="floating-point ndarray"):
        numerical_gradient(lambda z: 0.0, np.arange(3))


def test_numerical_gradient_array_is_the_vjp(rng):
    x, a, dout = rng.standard_normal(5), rng.standard_normal((4, 5)), rng.standard_normal(4)
    np.testing.assert_allclose(numerical_gradient_array(lambda z: a @ z, x, dout), a.T @ dout, rtol=1e-8)


def test_rel_error_values():
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert rel_error([1.0], [1.1]) == pytest.approx(0.1 / 2.1)
    assert rel_error([3.0, 4.0], [0.0, 0.0]) == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(np.zeros(2), np.zeros(3))


def test_check_kernel_catches_a_wrong_backward(rng):
    def broken_backward(dout, cache):
        dx, dw, db = F.affine_backward(dout, cache)
        return dx, dw * 1.001, db  # a 0.1% error in dw only

    inputs = [rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)]
    errors = check_kernel(F.affine_forward, broken_backward, inputs, rng=rng)
    assert errors["dx"] < 1e-7 and errors["db"] < 1e-7
    assert errors["dw"] > 1e-4


def test_check_kernel_accepts_a_mapping_and_skips_none(rng):
    inputs = {"x": rng.standard_normal((1, 2, 5, 5)), "w": rng.standard_normal((3, 2, 3, 3)), "b": None}
    errors = check_kernel(F.conv2d_forward, F.conv2d_backward, inputs, rng=rng, stride=2)
    assert set(errors) == {"dx", "dw"} and max(errors.values()) < 1e-7


def test_check_loss_catches_a_wrong_gradient(rng):
    scores, y = rng.standard_normal((4, 5)), rng.integers(0, 5, 4)

    def half_wrong(s, labels):
        loss, ds = F.softmax_loss(s, labels)
        return loss, ds * 0.5

    assert check_loss(F.softmax_loss, scores, y) < 1e-7
    assert check_loss(half_wrong, scores, y) > 0.1


def test_a_checkpoint_is_checked_at_its_trained_weights(capsys, tmp_path):
    """``gradcheck --model CKPT``: the checkpoint's net and weights, on its input volume."""
    from cnnkit.cli import main
    from cnnkit.gradcheck import check_model, check_named_model
    from cnnkit.io import load_model

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (24, 5, 8), dtype=np.uint8),
             y=np.arange(24) % 4)
    assert main(["train", "--data", f"npz:{tmp_path / 'd.npz'}", "--model",
                 "CONV3-2 -> TANH -> FC-4", "--epochs", "1", "--batch-size", "8",
                 "--no-progress", "--out", str(tmp_path), "--name", "g"]) == 0
    path = tmp_path / "g" / "model.npz"
    capsys.readouterr()
    assert main(["gradcheck", "--model", str(path), "--batch", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"gradient check of {path} (") and "pass: threshold" in out
    result = check_named_model(str(path), batch=3, seed=4)
    model = load_model(path).astype(np.float64)      # the trained weights, redone by hand
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 1, 5, 8))
    y = rng.integers(0, 4, 3)
    assert result.errors == check_model(model, x, y, "softmax", rng=rng)
    assert result.shapes == {"0.weight": (2, 1, 3, 3), "0.bias": (2,), "3.weight": (4, 80),
                             "3.bias": (4,)}
