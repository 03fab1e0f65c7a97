"""The model zoo: published parameter counts, the papers' volumes, a forward and backward pass of
every model at its real input size, gradient checks of the global-pooling nets at reduced width,
and oracle checks against PyTorch twins."""

import numpy as np
import pytest

from cnnkit import nn
from cnnkit.functional import softmax_loss
from cnnkit.gradcheck import _centred_difference, rel_error
from cnnkit.models import zoo
from tests.helpers import ATOL, assert_close
from tests.nn.torch_models import compare_with_torch

# name -> (builder kwargs, parameters, source of the figure; the docstrings give the same)
PUBLISHED = {
    "lenet5": ({}, 61_706, "LeNet-5 with a full C3: 156 + 2,416 + 48,120 + 10,164 + 850"),
    "three-layer-convnet": ({}, 825_046, "CS231n assignment 2 ThreeLayerConvNet defaults"),
    "alexnet": ({}, 60_965_224, "Caffe bvlc_alexnet (the paper's two-GPU groups)"),
    "zfnet": ({}, 62_357_608, "Zeiler & Fergus Fig. 3 layers (no published count)"),
    "vgg16": ({}, 138_357_544, "Simonyan & Zisserman config D; the notes' 138M"),
    "googlenet": ({}, 6_998_552, "bvlc_googlenet without auxiliary classifiers"),
    "resnet18": ({}, 11_689_512, "torchvision resnet18"),
    "resnet20": ({}, 269_722, "He et al. 2016 Table 6: 0.27M"),
    "lenet-bn": ({}, 61_728, "cnnkit's default net"),
}

_built = {}


def built(name):
    """Each big model is built once per session (VGG-16's 138M weights take seconds to draw)."""
    if name not in _built:
        _built[name] = zoo.get_model(name, rng=np.random.default_rng(0))
    return _built[name]


def volumes(model, x):
    """Forward through the top-level layers one at a time: each output's (C, H, W) or (D,).
    The layers keep their caches, so ``model.backward`` can follow."""
    shapes = []
    for layer in model:
        x = layer.forward(x)
        shapes.append(x.shape[1:])
    return x, shapes


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_parameter_counts_match_the_published_ones(name):
    kwargs, count, source = PUBLISHED[name]
    assert built(name).num_parameters() == count, source


def test_alexnet_without_groups_and_googlenet_weights_and_biases():
    assert zoo.alexnet(groups=1, rng=np.random.default_rng(0)).num_parameters() == 62_378_344
    net = built("googlenet")
    weights = sum(p.size for name, p in net.named_parameters() if p.data.ndim > 1)
    assert (weights, net.num_parameters() - weights) == (6_990_272, 8_280)


@pytest.mark.parametrize("name", [n for n in zoo.MODELS if n != "convnet-check"])
def test_every_model_runs_forward_and_backward_at_its_real_input_size(name, rng):
    model = built(name).train()
    shape = zoo.MODELS[name][1]
    batch = 2 if name in ("lenet-bn", "lenet5", "three-layer-convnet", "resnet20") else 1
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    model.zero_grad()
    out = model(x)
    num_classes = 1000 if shape[1] >= 224 else 10
    assert out.shape == (batch, num_classes) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    dx = model.backward(rng.standard_normal(out.shape).astype(np.float32))
    assert dx.shape == x.shape and np.all(np.isfinite(dx))
    for pname, p in model.named_parameters():
        assert np.all(np.isfinite(p.grad)), pname
        assert np.any(p.grad != 0), f"{pname} got no gradient"


def test_the_papers_volumes(rng):
    """The activation volumes as the papers and the notes draw them."""
    _, shapes = volumes(built("alexnet").eval(), np.zeros((1, 3, 227, 227), np.float32))
    assert shapes[0] == (96, 55, 55)          # the notes: (227 - 11)/4 + 1 = 55
    pooled = [s for layer, s in zip(built("alexnet"), shapes) if isinstance(layer, nn.MaxPool2d)]
    assert pooled == [(96, 27, 27), (256, 13, 13), (256, 6, 6)]

    _, shapes = volumes(built("zfnet").eval(), np.zeros((1, 3, 224, 224), np.float32))
    convs = [s for layer, s in zip(built("zfnet"), shapes) if isinstance(layer, nn.Conv2d)]
    assert convs == [(96, 110, 110), (256, 26, 26), (384, 13, 13), (384, 13, 13), (256, 13, 13)]
    pooled = [s for layer, s in zip(built("zfnet"), shapes) if isinstance(layer, nn.MaxPool2d)]
    assert pooled == [(96, 55, 55), (256, 13, 13), (256, 6, 6)]

    _, shapes = volumes(built("vgg16").eval(), np.zeros((1, 3, 224, 224), np.float32))
    pooled = [s for layer, s in zip(built("vgg16"), shapes) if isinstance(layer, nn.MaxPool2d)]
    assert pooled == [(64, 112, 112), (128, 56, 56), (256, 28, 28), (512, 14, 14), (512, 7, 7)]

    # GoogLeNet, Table 1: the output size of every row.
    net = built("googlenet").eval()
    _, shapes = volumes(net, np.zeros((1, 3, 224, 224), np.float32))
    rows = [s for layer, s in zip(net, shapes)
            if isinstance(layer, (nn.MaxPool2d, nn.Concat, nn.GlobalAvgPool2d))]
    assert rows == [(64, 56, 56), (192, 28, 28), (256, 28, 28), (480, 28, 28), (480, 14, 14),
                    (512, 14, 14), (512, 14, 14), (512, 14, 14), (528, 14, 14), (832, 14, 14),
                    (832, 7, 7), (832, 7, 7), (1024, 7, 7), (1024, 1, 1)]

    net = built("resnet18").eval()
    _, shapes = volumes(net, np.zeros((1, 3, 224, 224), np.float32))
    assert shapes[3] == (64, 56, 56)
    stages = [shapes[i] for i in (5, 7, 9, 11)]
    assert stages == [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]

    net = built("resnet20").eval()
    _, shapes = volumes(net, np.zeros((1, 3, 32, 32), np.float32))
    assert [shapes[i] for i in (5, 8, 11)] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]


SMALL = {
    # name -> (builder kwargs, input (C, H, W)): the global-pooling nets at reduced width
    "googlenet": ({"width": 1 / 16, "num_classes": 5}, (3, 32, 32)),
    "resnet18": ({"width": 2, "num_classes": 5}, (3, 32, 32)),
    "resnet20": ({"width": 2, "num_classes": 5}, (3, 16, 16)),
}


def kink_aware_errors(model, x, y, rng, per_param=4, h=1e-6):
    """Backprop against centred differences on ``per_param`` random entries of every parameter.

    A ReLU or a max pool makes the loss piecewise smooth: when x +- h straddles a kink (a
    pre-activation crossing 0, two window values trading places) the difference quotient is off
    by O(1) although the gradient is right (the CS231n notes' "kinks"). Such an entry shows
    itself as a quotient that changes with the step, so each entry is also measured with h/4 and
    set aside when the two disagree by more than round-off. Returns ({parameter: relative error
    of its checked entries}, entries set aside, entries in all).

    The step is small because kinks come in bunches: a ReLU input within h * |dz/dp| of 0 late
    in the net makes every entry upstream of it straddle the kink. ResNet-20 has ~2e4 ReLU
    inputs here; with h = 1e-5, 23 of seeds 0-88 set entries aside, up to 59 of 208 (seed
    26), and one run set 109 aside. The window, and with it the odds, shrink with h: at
    h = 1e-6, seeds 0-5 and 17-63 set none aside, and float64's round-off in the quotient
    (~1e-9) stays far below the tolerance.
    """
    def loss():
        return softmax_loss(model.forward(x), y)[0]

    model.zero_grad()
    _, dscores = softmax_loss(model.forward(x), y)
    model.backward(dscores)
    errors, kinks, total = {}, 0, 0
    for name, p in model.named_parameters():
        analytic, numeric = [], []
        for flat in rng.choice(p.size, min(per_param, p.size), replace=False):
            idx = np.unravel_index(flat, p.shape)
            coarse = _centred_difference(lambda _: loss(), p.data, idx, h)
            fine = _centred_difference(lambda _: loss(), p.data, idx, h / 4)
            total += 1
            if abs(coarse - fine) > 1e-6 * max(abs(coarse), abs(fine)) + 1e-8:
                kinks += 1
                continue
            analytic.append(p.grad[idx])
            numeric.append(coarse)
        if analytic:
            both_zero = np.linalg.norm(analytic) < 1e-8 and np.linalg.norm(numeric) < 1e-8
            errors[name] = 0.0 if both_zero else rel_error(np.array(analytic), np.array(numeric))
    return errors, kinks, total


@pytest.mark.parametrize("name", list(SMALL))
def test_global_pooling_nets_pass_a_float64_gradient_check(name, rng):
    """Every parameter tensor, batch norm in training mode; GoogLeNet's dropout is switched off
    (its masks would change between the loss evaluations) and its biases made positive so few
    ReLUs sit at their kink."""
    kwargs, shape = SMALL[name]
    model = zoo.get_model(name, rng=rng, **kwargs).astype(np.float64).train()
    for _, m in model.named_modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    for _, p in model.named_parameters():
        if p.data.ndim == 1 and name == "googlenet":
            p.data = rng.uniform(0.05, 0.2, p.shape)
    for _ in range(3):
        # A point where a kink sets most entries aside proves little, so it is checked and
        # then another is drawn (a rare bunch does not come three times).
        x = rng.standard_normal((4, *shape))
        errors, kinks, total = kink_aware_errors(model, x, rng.integers(0, 5, 4), rng)
        worst = max(errors, key=errors.get)
        # Typically 1e-7..1e-6 (round-off at h = 1e-6); a kink right at the point (the quotient
        # then averages the two sides whatever the step) can leave ~1e-5. A wrong gradient is
        # off by O(1). The PyTorch twins below check the same gradients to 1e-10.
        assert errors[worst] < 1e-4, f"{worst}: {errors[worst]:.2e}"
        if kinks <= 0.35 * total:
            break
    assert kinks <= 0.35 * total, f"{kinks} of {total} entries at kinks, at three points"


def randomized(model, rng):
    """float64, He-initialised weights kept (N(0, 1) weights would blow the activations of a deep
    net up to ~1e11, where 1e-10 relative agreement is lost to cancellation), random biases and
    batch-norm state, dropout switched off with p = 0 (torch draws other masks)."""
    model.astype(np.float64)
    for _, p in model.named_parameters():
        if p.data.ndim == 1:
            p.data = rng.uniform(-0.5, 0.5, p.shape) + (1.0 if np.all(p.data == 1) else 0.0)
    for _, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean = rng.standard_normal(m.running_mean.shape)
            m.running_var = rng.uniform(0.5, 2.0, m.running_var.shape)
    for _, m in model.named_modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model.train()


def assert_close_to_scale(actual, expected, name):
    """As ``assert_close``, but a value may also be within 1e-11 of the tensor's largest: a deep
    net's weight gradient sums hundreds of products of size ~1 whose order differs between the
    two libraries, so a value that cancels to 0.018 among values of 4 carries their rounding
    (3e-12 seen on resnet18, 1.7e-10 of that value). A wrong axis or term is off by far more."""
    scale = float(np.abs(np.asarray(expected)).max(initial=0.0))
    assert_close(actual, expected, name, atol=max(ATOL, 1e-11 * scale))


@pytest.mark.parametrize("name", list(SMALL))
def test_global_pooling_nets_match_their_pytorch_twins(name, rng):
    kwargs, shape = SMALL[name]
    model = randomized(zoo.get_model(name, rng=rng, **kwargs), rng)
    compare_with_torch(model, rng.standard_normal((3, *shape)), rng, assert_close_to_scale)


def test_alexnet_grouped_convolutions_match_pytorch(rng):
    """AlexNet's layers (groups, LRN, overlapping pools) at reduced size against torch."""
    body = zoo.alexnet(num_classes=4, rng=rng)[:15]
    head = nn.Sequential(nn.Flatten(), nn.Linear(256 * 2 * 2, 4, rng=rng))
    model = randomized(nn.Sequential(*body, *head), rng)
    compare_with_torch(model, rng.standard_normal((2, 3, 99, 99)), rng, assert_close)


def test_builders_take_classes_channels_and_reject_bad_arguments(rng):
    net = zoo.get_model("resnet20", num_classes=7, in_channels=1, rng=rng)
    assert net(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 7)
    assert zoo.cifar_resnet(32, rng=rng).num_parameters() == 464_154     # He et al.: 0.46M
    with pytest.raises(ValueError, match="depth must be 6n \\+ 2"):
        zoo.cifar_resnet(21)
    with pytest.raises(ValueError, match="unknown model 'vgg19'; choose one of: lenet-bn"):
        zoo.get_model("vgg19")
    with pytest.raises(ValueError) as long_name:         # a 5,000-character name is cut
        zoo.get_model("x" * 5000)
    assert "unknown model 'xxxx" in str(long_name.value) and len(str(long_name.value)) < 400
    assert zoo.canonical_name("VGG-16") == "vgg16" and zoo.canonical_name("default") == "lenet-bn"
    assert zoo.input_shape_of("alexnet") == (3, 227, 227)
