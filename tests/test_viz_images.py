"""cnnkit.viz's image plots: filters, activation maps, saliency, confusion matrix, misclassified
images. Saliency is checked against PyTorch autograd of the same net in float64."""

import io
import sys

import numpy as np
import pytest
from PIL import Image

from cnnkit import nn, viz
from tests.helpers import assert_close
from tests.nn.torch_models import perturb, to_torch


def small_net(rng, channels=3, classes=4):
    """Conv -> BN -> ReLU -> Pool -> Conv -> ReLU -> FC on (channels, 8, 8), float64."""
    net = nn.Sequential(nn.Conv2d(channels, 5, 3, padding=1, rng=rng), nn.BatchNorm2d(5),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(5, 6, 3, padding=1, rng=rng),
                        nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, classes, rng=rng))
    return perturb(net.astype(np.float64), rng)


def decoded(fig):
    """The figure's PNG, decoded: (width, height, distinct colours)."""
    img = Image.open(io.BytesIO(viz.png_bytes(fig))).convert("RGB")
    viz.close(fig)
    return img.size[0], img.size[1], len(img.getcolors(maxcolors=1 << 20) or [])


# ---------------------------------------------------------------------------- filters

@pytest.mark.parametrize("shape", [(10, 3, 5, 5), (6, 1, 3, 3), (4, 7, 3, 2)])
def test_plot_filters_draws_each_layout(rng, shape, tmp_path):
    path = tmp_path / "f.png"
    fig = viz.plot_filters(rng.standard_normal(shape), path)
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, colours = decoded(fig)
    assert width > 300 and height > 200 and colours > 20


def test_plot_filters_takes_a_layer_or_a_model_and_shows_the_first_conv(rng):
    net = small_net(rng)
    fig = viz.plot_filters(net, title=None)
    assert "5 filters, 3x3x3" in fig.axes[0].get_title()
    fig2 = viz.plot_filters(net[4], max_filters=2)
    assert "2 of 6 filters, 5x3x3" in fig2.axes[0].get_title()
    assert fig2.axes[0].get_xlabel() == "input channel"
    viz.close(fig)
    viz.close(fig2)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 3, 3)), "(F, C, KH, KW)"),
    (nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), "has no Conv2d layer"),
])
def test_plot_filters_refuses_what_has_no_filters(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        viz.plot_filters(bad)


def test_no_pyplot_and_no_file_without_a_path(rng, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    had_pyplot = "matplotlib.pyplot" in sys.modules
    fig = viz.plot_filters(rng.standard_normal((4, 1, 3, 3)))
    viz.close(fig)
    assert list(tmp_path.iterdir()) == []
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot


# ---------------------------------------------------------------------------- activations

def test_activation_maps_are_the_conv_outputs_and_leave_the_model_as_it_was(rng):
    net = small_net(rng).train()
    net[1].eval()                               # a mixed mode must come back as it was
    x = rng.standard_normal((3, 8, 8))
    maps = viz.activation_maps(net, x)
    assert [name for name, _ in maps] == ["0", "4"]
    assert maps[0][1].shape == (5, 8, 8) and maps[1][1].shape == (6, 4, 4)
    conv0 = net[0].forward(x[None])[0]
    assert_close(maps[0][1], conv0, "first conv's output")
    assert [m.training for m in net.modules()] == [True, True, False] + [True] * 6
    assert all(not m._forward_hooks for m in net.modules())


def test_activation_maps_refuse_a_batch_and_a_net_without_conv(rng):
    with pytest.raises(ValueError, match="one net input"):
        viz.activation_maps(small_net(rng), rng.standard_normal((2, 3, 8, 8)))
    with pytest.raises(ValueError, match="no Conv2d"):
        viz.activation_maps(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), np.zeros((1, 2, 2)))


def test_plot_activations_with_a_preprocess(rng, tmp_path):
    net = small_net(rng, channels=1)
    image = rng.integers(0, 256, (8, 8), dtype=np.uint8)

    def preprocess(batch):
        return (batch.astype(np.float64) / 255.0 - 0.5)

    fig = viz.plot_activations(net, image, tmp_path / "a.png", preprocess=preprocess,
                               max_channels=4)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles.count("ch 0") == 2 and "ch 4" not in titles
    assert (tmp_path / "a.png").is_file()
    viz.close(fig)


# ---------------------------------------------------------------------------- saliency

def test_saliency_is_the_input_gradient_of_the_class_score_as_torch_finds_it(rng):
    import torch

    net = small_net(rng).eval()
    x = rng.standard_normal((3, 8, 8))
    target = 2
    twin = to_torch(net)
    xt = torch.from_numpy(x[None].copy()).requires_grad_(True)
    twin(xt)[0, target].backward()
    expected = np.abs(xt.grad.numpy()[0]).max(axis=0)
    assert_close(viz.saliency(net, x, target), expected, "saliency")
    # the default target is the predicted class
    predicted = int(np.argmax(net.forward(x[None])[0]))
    twin.zero_grad()
    xt.grad = None
    twin(xt)[0, predicted].backward()
    assert_close(viz.saliency(net, x[None]), np.abs(xt.grad.numpy()[0]).max(axis=0),
                 "saliency of the predicted class")


def test_saliency_leaves_gradients_and_modes_as_they_were(rng):
    net = small_net(rng).train()
    grads = {}
    for name, p in net.named_parameters():
        p.grad[...] = rng.standard_normal(p.shape)
        grads[name] = p.grad.copy()
    running = net[1].running_mean.copy()
    viz.saliency(net, rng.standard_normal((3, 8, 8)), 1)
    for name, p in net.named_parameters():
        np.testing.assert_array_equal(p.grad, grads[name], err_msg=name)
    np.testing.assert_array_equal(net[1].running_mean, running)   # ran in eval mode
    assert all(m.training for m in net.modules())
    assert all(m._cache is None for m in net.modules())


@pytest.mark.parametrize("target, message", [(4, "out of range"), (-1, "out of range"),
                                             (1.5, "class index")])
def test_saliency_refuses_a_target_out_of_range(rng, target, message):
    with pytest.raises(ValueError, match=message):
        viz.saliency(small_net(rng), rng.standard_normal((3, 8, 8)), target)


def test_plot_saliency_names_the_classes(rng, tmp_path):
    net = small_net(rng)
    image = rng.integers(0, 256, (3, 8, 8), dtype=np.uint8)
    fig = viz.plot_saliency(net, image, tmp_path / "s.png", target=3,
                            classes=["cat", "dog", "owl", "yak"],
                            preprocess=lambda b: b.astype(np.float64) / 255.0)
    assert "saliency for class yak" in fig.axes[1].get_title()
    assert "predicted" in fig.axes[0].get_title()
    width, height, colours = decoded(fig)
    assert colours > 50
    with pytest.raises(ValueError, match="out of range"):
        viz.plot_saliency(net, image.astype(np.float64) / 255.0, target=9)


# ---------------------------------------------------------------------------- evaluation

def test_confusion_matrix_counts_true_rows_and_predicted_columns(rng):
    y_true = rng.integers(0, 5, 300)
    y_pred = np.where(rng.random(300) < 0.7, y_true, rng.integers(0, 5, 300))
    cm = viz.confusion_matrix(y_true, y_pred, 5)
    assert cm.dtype == np.int64 and cm.shape == (5, 5)
    for i in range(5):
        for j in range(5):
            assert cm[i, j] == np.sum((y_true == i) & (y_pred == j))
    acc = viz.per_class_accuracy(cm)
    assert_close(acc, np.array([np.mean(y_pred[y_true == i] == i) for i in range(5)]), "acc")
    assert np.isnan(viz.per_class_accuracy(np.zeros((2, 2), np.int64))).all()


@pytest.mark.parametrize("y_true, y_pred, k, message", [
    ([0, 1, 5], [0, 1, 2], 5, "y_true has class 5, out of range for 5 classes"),
    ([0, 1], [0, -1], 3, "y_pred has class -1"),
    ([0, 1], [0, 1, 1], 3, "y_true has 2 labels but y_pred has 3"),
    ([[0, 1]], [[0, 1]], 3, "must be a vector"),
    ([0.0, 1.0], [0, 1], 3, "integer class indices"),
    ([0], [0], 0, "positive integer"),
])
def test_confusion_matrix_refuses_bad_labels(y_true, y_pred, k, message):
    with pytest.raises(ValueError, match=message):
        viz.confusion_matrix(np.asarray(y_true), np.asarray(y_pred), k)


def test_plot_confusion_matrix_shows_counts_and_per_class_accuracy(tmp_path):
    cm = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]])
    fig = viz.plot_confusion_matrix(cm, ["a", "b", "c"], tmp_path / "cm.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts][:3] == ["8", "2", "0"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a (80%)", "b (90%)", "c (n/a)"]
    assert "accuracy 85.00%" in ax.get_title()
    assert len(fig.axes) == 2                        # the colour bar
    viz.close(fig)
    with pytest.raises(ValueError, match="square"):
        viz.plot_confusion_matrix(np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="2 class names for a 3x3"):
        viz.plot_confusion_matrix(cm, ["a", "b"])


@pytest.mark.parametrize("shape, dtype", [((30, 6, 6), np.uint8), ((30, 3, 6, 6), np.float32),
                                          ((30, 1, 6, 6), np.float64)])
def test_plot_misclassified_titles_true_predicted_and_probability(rng, shape, dtype, tmp_path):
    images = (rng.random(shape) * (255 if dtype == np.uint8 else 1)).astype(dtype)
    y_true = np.arange(30) % 3
    y_pred = y_true.copy()
    y_pred[[2, 4, 5]] = [0, 0, 1]
    probs = np.full((30, 3), 0.25)
    probs[np.arange(30), y_pred] = 0.5
    fig = viz.plot_misclassified(images, y_true, y_pred, tmp_path / "m.png",
                                 classes=["x", "y", "z"], probabilities=probs)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["z → x (0.50)", "y → x (0.50)", "z → y (0.50)"]
    assert "3 shown of 3 wrong" in fig._suptitle.get_text()
    viz.close(fig)


def test_plot_misclassified_with_none_wrong_and_bad_input(rng):
    images = np.zeros((4, 5, 5), np.uint8)
    fig = viz.plot_misclassified(images, [0, 1, 0, 1], [0, 1, 0, 1])
    assert "no misclassified images" in fig.axes[0].texts[0].get_text()
    viz.close(fig)
    with pytest.raises(ValueError, match="one label per image"):
        viz.plot_misclassified(images, [0, 1], [0, 1])
    with pytest.raises(ValueError, match="y_pred has class 2, out of range for the 2 classes"):
        viz.plot_misclassified(images, [0, 1, 0, 1], [0, 2, 0, 1], classes=["a", "b"])
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, C, H, W\)"):
        viz.plot_misclassified(np.zeros((4, 5)), [0, 1, 0, 1], [1, 1, 0, 1])
