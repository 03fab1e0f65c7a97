"""plot_activations and plot_saliency take an image as stored (uint8, (H, W), (H, W, C),
(C, H, W) or (1, C, H, W)) and preprocess it as the net's training data were: through a Run,
which brings its preprocessing, or ``preprocess=``. The figures hold the same maps as the call
on the explicitly preprocessed net input; what a bare model cannot take is refused in one line
saying what is needed."""

import numpy as np
import pytest

import cnnkit
from cnnkit import viz
from cnnkit.data import load_mnist
from cnnkit.errors import CnnkitError


@pytest.fixture(scope="module")
def run():
    """A run trained on 60 digits cut to 28x20, centred in the net's 32x24 input."""
    x, y = load_mnist("test")
    return cnnkit.fit((x[:60, :, 4:24], y[:60]), "INPUT[1x32x24] -> CONV3-4 -> RELU -> POOL2 "
                      "-> CONV3-5 -> RELU -> FC-10", epochs=1, progress=False, log=None,
                      val_size=10)


@pytest.fixture(scope="module")
def digit():
    """A (28, 20) uint8 digit, as MNIST stores it (cut as the run's data were)."""
    x, _ = load_mnist("test")
    return np.ascontiguousarray(x[100, :, 4:24])


def _panels(fig):
    """The data of every image panel of ``fig``: the input's first, then the maps'."""
    arrays = [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images]
    viz.close(fig)
    return arrays


def _same(a, b):
    assert len(a) == len(b)
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)


def test_the_run_preprocesses_a_stored_digit_as_its_data(run, digit):
    assert run.preprocessing.fit == "centre"                 # not a no-op to get right
    net_input = run.preprocessing(digit[None, None])[0]      # (1, 32, 24)
    stored = _panels(viz.plot_activations(run, digit))
    explicit = _panels(viz.plot_activations(run.model, net_input))
    _same(stored[1:], explicit[1:])                          # every conv layer's maps
    assert stored[0].shape == (28, 20) and explicit[0].shape == (32, 24)
    _same(stored, _panels(viz.plot_activations(run.model, digit,
                                               preprocess=run.preprocessing)))


@pytest.mark.parametrize("layout", ["(H, W)", "(H, W, 1)", "(1, H, W)", "(1, 1, H, W)"])
def test_every_stored_layout_gives_the_same_figure(run, digit, layout):
    image = {"(H, W)": digit, "(H, W, 1)": digit[:, :, None], "(1, H, W)": digit[None],
             "(1, 1, H, W)": digit[None, None]}[layout]
    _same(_panels(viz.plot_activations(run, image)), _panels(viz.plot_activations(run, digit)))


def test_saliency_of_a_stored_digit_is_that_of_its_net_input(run, digit):
    net_input = run.preprocessing(digit[None, None])[0]
    fig = viz.plot_saliency(run, digit, target=3)
    assert "saliency for class 3" in fig.axes[1].get_title()     # the run's class names
    stored = _panels(fig)
    explicit = _panels(viz.plot_saliency(run.model, net_input, target=3))
    _same(stored[1:], explicit[1:])
    np.testing.assert_array_equal(stored[1], viz.saliency(run.model, net_input, 3))


def test_a_colour_image_may_be_channels_last(rng):
    """(H, W, 3) and (3, H, W) of a 3-channel net's 10x6 images are the same image."""
    from cnnkit import nn
    from cnnkit.data import Preprocessing

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, rng=rng), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 10 * 6, 2, rng=rng))
    prep = Preprocessing((3, 10, 6), (3, 10, 6), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    image = rng.integers(0, 256, (3, 10, 6), dtype=np.uint8)
    last = np.ascontiguousarray(image.transpose(1, 2, 0))
    _same(_panels(viz.plot_saliency(net, last, preprocess=prep)),
          _panels(viz.plot_saliency(net, image, preprocess=prep)))


@pytest.mark.parametrize("call, words", [
    ("plot_activations(run.model, digit)", ["uint8 image (28, 20) is a stored image", "Run",
                                            "preprocess=run.preprocessing", "float 1xHxW"]),
    ("plot_saliency(run.model, digit[None])", ["stored image", "Run"]),
    ("plot_activations(run, np.zeros((28, 21), np.uint8))", ["(28, 21)", "1x28x20",
                                                            "resize it to 28x20"]),
    ("plot_saliency(run, np.zeros((2, 28, 20), np.uint8))", ["(2, 28, 20)", "1x28x20"]),
    ("plot_activations(run, np.zeros((2, 1, 28, 20), np.uint8))", ["(2, 1, 28, 20)"]),
    ("plot_activations(run.model, np.zeros((3, 32, 24), np.float32))", ["takes a float 1xHxW"]),
    ("plot_saliency(run, 'seven.png')", ["array of numbers, got a str"]),
    ("plot_activations(run, [[1, 2], [3]])", ["array of numbers"]),
])
def test_what_the_net_cannot_take_is_one_line_saying_what_it_needs(run, digit, call, words):
    with pytest.raises(CnnkitError) as caught:
        eval("viz." + call, {"viz": viz, "np": np, "run": run, "digit": digit})
    message = str(caught.value)
    assert isinstance(caught.value, ValueError) and "\n" not in message
    assert message.startswith(call.split("(")[0] + ": ")
    for word in words:
        assert word in message, message
