"""FC -> conv conversion: the converted net's score map equals the original net's scores on every
crop at the output stride (float64, 1e-10), for fixed and hypothesis-drawn nets without padding;
the notes' VGG geometry (224 -> 7x7, 384 -> 6x6); copies, modes, checkpoints and errors."""

import copy

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cnnkit import nn
from cnnkit.convert import (converted_is_exact, fully_convolutional, inexact_reasons,
                            output_stride, score_map_size, sliding_scores)
from cnnkit.io import load_checkpoint, save_checkpoint
from tests.helpers import assert_close


def _randomize(model, rng):
    """float64, random weights and batch-norm statistics, so that no test compares zeros."""
    model.astype(np.float64)
    for p in model.parameters():             # He-scaled weights keep deep nets' scores O(1)
        scale = np.sqrt(2.0 / np.prod(p.shape[1:])) if len(p.shape) > 1 else 0.5
        p.data = rng.standard_normal(p.shape) * scale
    for _, m in model.named_modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean = rng.standard_normal(m.num_features)
            m.running_var = rng.uniform(0.5, 2.0, m.num_features)
    return model


def _image(rng, n, input_shape, steps, stride):
    """An image with room for steps + 1 crops along each axis at the given stride."""
    c, h, w = input_shape
    return rng.standard_normal((n, c, h + steps[0] * stride[0], w + steps[1] * stride[1]))


class _Subsample(nn.Module):
    """A layer cnnkit.convert does not know: x[:, :, ::2, ::2], with a ``stride`` attribute."""

    stride = 2

    def forward(self, x):
        return x[:, :, ::2, ::2]


class _Crop(nn.Module):
    """An unknown layer that shrinks H x W and has no ``stride`` attribute."""

    def forward(self, x):
        return x[:, :, 1:, 1:]


# Each builder: rng -> (model, input_shape, the stride its layers multiply to).
def _conv_pool_fc(rng):
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, rng=rng), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(4 * 2 * 2, 6, rng=rng), nn.ReLU(), nn.Linear(6, 5, rng=rng)), (2, 14, 14), (4, 4)


def _bn_dropout_head(rng):
    drop = nn.Dropout(0.4, rng=np.random.default_rng(1))
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, rng=rng), nn.BatchNorm2d(4), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Dropout(0.2, mode="downscale_in_infer", rng=np.random.default_rng(2)),
        nn.Linear(4 * 3 * 3, 7, rng=rng), nn.BatchNorm1d(7, eps=1e-3, momentum=0.8),
        nn.LeakyReLU(0.1), drop,
        nn.Linear(7, 3, rng=rng), nn.Sigmoid()), (3, 8, 8), (2, 2)


def _stride3(rng):
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, stride=3, rng=rng), nn.ReLU(), nn.MaxPool2d(3),
        nn.Conv2d(3, 2, 2, rng=rng), nn.Flatten(),
        nn.Linear(2 * 1 * 1, 4, rng=rng), nn.ReLU(), nn.Linear(4, 3, rng=rng)), (1, 18, 18), (9, 9)


def _non_square(rng):
    # stride (2, 1) conv and a (1, 3) pool: 11x20 -> 5x18 -> 5x6 -> volume 2x5x6; S = (2, 3).
    return nn.Sequential(
        nn.Conv2d(2, 2, (3, 3), stride=(2, 1), rng=rng), nn.ReLU(),
        nn.MaxPool2d((1, 3), stride=(1, 3)), nn.Flatten(),
        nn.Linear(2 * 5 * 6, 4, rng=rng), nn.ReLU(), nn.Linear(4, 3, rng=rng)), (2, 11, 20), (2, 3)


def _overlap_dilation(rng):
    # overlapping POOL3/2 and L2 pooling, a dilated conv; Linear without a Flatten before it.
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, dilation=2, rng=rng), nn.ReLU(), nn.MaxPool2d(3, stride=2),
        nn.L2Pool2d(2), nn.Linear(2 * 3 * 3, 3, rng=rng)), (1, 17, 17), (4, 4)


def _residual_nested(rng):
    # nested Sequentials (features, classifier) and residual blocks without padding: a 1x1 body
    # with the identity, a stride-2 body with a stride-2 1x1 projection; an unknown strided layer.
    block = nn.Residual(nn.Sequential(nn.Conv2d(3, 3, 1, rng=rng), nn.BatchNorm2d(3), nn.ReLU()))
    down = nn.Residual(nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, rng=rng), nn.ReLU(),
                                     nn.Conv2d(4, 4, 1, rng=rng)),
                       nn.Conv2d(3, 4, 3, stride=2, bias=False, rng=rng))
    features = nn.Sequential(nn.Conv2d(2, 3, 2, rng=rng), block, down, _Subsample())
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * 3 * 3, 5, rng=rng), nn.ReLU(),
                               nn.Sequential(nn.Linear(5, 2, rng=rng)))
    return nn.Sequential(features, classifier), (2, 12, 12), (4, 4)


def _concat(rng):
    branches = nn.Concat(nn.Conv2d(2, 2, 2, stride=2, rng=rng),
                         nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(2, 1, 1, rng=rng)),
                         nn.ZeroPadShortcut(2, 3, stride=2))
    return nn.Sequential(nn.Conv2d(1, 2, 3, rng=rng), nn.ReLU(), branches,
                         nn.LocalResponseNorm(3, alpha=0.5, k=2.0), nn.Flatten(),
                         nn.Linear(6 * 3 * 3, 4, rng=rng), nn.ReLU(),
                         nn.Linear(4, 3, rng=rng)), (1, 8, 8), (2, 2)


NETS = {"conv3-pool2-fc-relu-fc": _conv_pool_fc, "bn1d-dropout-head": _bn_dropout_head,
        "stride3-pool3": _stride3, "non-square": _non_square,
        "overlap-dilation-no-flatten": _overlap_dilation, "residual-nested": _residual_nested,
        "concat-lrn-zeropad": _concat}


@pytest.mark.parametrize("build", NETS.values(), ids=NETS.keys())
def test_score_map_equals_crops(build, rng):
    model, input_shape, stride = build(rng)
    _randomize(model, rng).eval()
    converted = fully_convolutional(model, input_shape)
    assert output_stride(model, input_shape) == stride
    assert converted_is_exact(model) and converted_is_exact(converted)
    steps = (2, 3)
    image = _image(rng, 2, input_shape, steps, stride)
    scores = converted(image)
    positions = (steps[0] + 1, steps[1] + 1)
    assert scores.shape[2:] == positions == score_map_size(converted, image.shape[1:])
    expected = sliding_scores(model, image, input_shape)
    assert_close(scores, expected, "score map vs crops")
    # one crop by hand, so that a wrong crop position in sliding_scores would show too
    c, h, w = input_shape
    i, j = 1, 2
    crop = image[:, :, i * stride[0]:i * stride[0] + h, j * stride[1]:j * stride[1] + w]
    assert_close(scores[:, :, i, j], model(crop), "score map at (1, 2)")


@pytest.mark.parametrize("build", NETS.values(), ids=NETS.keys())
def test_own_input_size_gives_model_output(build, rng):
    model, input_shape, _ = build(rng)
    _randomize(model, rng).eval()
    x = rng.standard_normal((3, *input_shape))
    out = fully_convolutional(model, input_shape)(x)
    assert out.shape[2:] == (1, 1)
    assert_close(out[:, :, 0, 0], model(x), "converted net on the input size")


@st.composite
def nets(draw):
    """A random conv/pool net (no padding) built output-size first: each layer's input size is
    (out - 1)*S + K on each axis, so the strict size rule holds; and its FC head."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    channels = [draw(st.integers(1, 3))]
    spec = []                                  # ("conv" | pool kind, (kh, kw), (sh, sw), act)

    def ks():                                  # a (height, width) pair of kernel or stride
        return draw(st.integers(1, 3)), draw(st.integers(1, 3))

    for _ in range(draw(st.integers(1, 2))):
        spec.append(("conv", ks(), ks(), draw(st.sampled_from(
            [None, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.BatchNorm2d]))))
        channels.append(draw(st.integers(1, 3)))
        if draw(st.booleans()):
            spec.append((draw(st.sampled_from([nn.MaxPool2d, nn.AvgPool2d, nn.L2Pool2d])),
                         ks(), ks(), None))
    stride = tuple(int(np.prod([s[a] for _, _, s, _ in spec])) for a in (0, 1))
    assume(max(stride) <= 12)
    size = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]     # the volume at the Flatten
    flat = (channels[-1], *size)
    for _, k, s, _ in reversed(spec):
        size = [(size[a] - 1) * s[a] + k[a] for a in (0, 1)]
    layers, c = [], iter(channels)
    c_in = next(c)
    for kind, k, s, act in spec:
        if kind == "conv":
            c_out = next(c)
            layers.append(nn.Conv2d(c_in, c_out, k, stride=s, rng=rng))
            layers += [] if act is None else [act(c_out) if act is nn.BatchNorm2d else act()]
            c_in = c_out
        else:
            layers.append(kind(k, stride=s))
    hidden, classes = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    head = [nn.Flatten()] if draw(st.booleans()) else []
    head.append(nn.Linear(int(np.prod(flat)), hidden, rng=rng))
    if draw(st.booleans()):
        head.append(nn.BatchNorm1d(hidden))
    head.append(draw(st.sampled_from([nn.ReLU, nn.Tanh]))())
    if draw(st.booleans()):
        head.append(nn.Dropout(0.5, rng=np.random.default_rng(seed)))
    head.append(nn.Linear(hidden, classes, rng=rng))
    model = _randomize(nn.Sequential(*layers, *head), rng).eval()
    return model, (channels[0], *size), stride, rng


@given(net=nets(), steps=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       n=st.integers(1, 2))
def test_random_nets_score_map_equals_crops(net, steps, n):
    model, input_shape, stride, rng = net
    assert output_stride(model, input_shape) == stride
    image = _image(rng, n, input_shape, steps, stride)
    converted = fully_convolutional(model, input_shape)
    scores = converted(image)
    assert scores.shape[2:] == (steps[0] + 1, steps[1] + 1)
    assert_close(scores, sliding_scores(model, image, input_shape), "score map vs crops")


def _vgg_shaped(rng, div=32, classes=10):
    """VGG-16 (configuration D) with every width divided by ``div``: 13 CONV3 (pad 1), 5 POOL2."""
    layers, c = [], 3
    for width, convs in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        for _ in range(convs):
            layers += [nn.Conv2d(c, width // div, 3, padding=1, rng=rng), nn.ReLU()]
            c = width // div
        layers.append(nn.MaxPool2d(2))
    classifier = nn.Sequential(
        nn.Flatten(), nn.Linear(c * 7 * 7, 4096 // div, rng=rng), nn.ReLU(),
        nn.Dropout(0.5, rng=rng), nn.Linear(4096 // div, 4096 // div, rng=rng), nn.ReLU(),
        nn.Dropout(0.5, rng=rng), nn.Linear(4096 // div, classes, rng=rng))
    return nn.Sequential(nn.Sequential(*layers), classifier)


def test_vgg_geometry_of_the_notes(rng):
    """224x224 -> [7x7x512] at the Flatten, so FC-4096 becomes a 7x7 conv; 384x384 -> [12x12x512]
    and a 6x6 score map, crops 32 apart (widths / 32 to keep it cheap)."""
    model = _randomize(_vgg_shaped(rng), rng).eval()
    converted = fully_convolutional(model, (3, 224, 224))
    features = converted[:len(model[0])]
    fc6 = converted[len(model[0])]
    assert isinstance(fc6, nn.Conv2d)
    assert (fc6.in_channels, fc6.kernel_size, fc6.out_channels) == (512 // 32, (7, 7), 4096 // 32)
    assert [type(m) for m in converted[len(model[0]):]].count(nn.Conv2d) == 3
    assert all(m.kernel_size == (1, 1) for m in converted[len(model[0]) + 1:]
               if isinstance(m, nn.Conv2d))
    assert score_map_size(features, (3, 224, 224)) == (7, 7)
    assert score_map_size(features, (3, 384, 384)) == (12, 12)
    assert output_stride(model, (3, 224, 224)) == (32, 32)
    assert score_map_size(converted, (3, 384, 384)) == (6, 6)
    assert converted(rng.standard_normal((1, 3, 384, 384))).shape == (1, 10, 6, 6)
    x = rng.standard_normal((1, 3, 224, 224))
    assert_close(converted(x)[:, :, 0, 0], model(x), "VGG-shaped net at 224")
    # padding makes the 384 map an approximation of the crops' scores, and it is reported
    assert not converted_is_exact(model) and not converted_is_exact(converted)
    reasons = inexact_reasons(model)
    assert len(reasons) == 13 and all("pads by (1, 1)" in r for r in reasons)


def test_original_untouched_and_copies_independent(rng):
    model, input_shape, stride = _bn_dropout_head(rng)
    _randomize(model, rng).train()
    x = rng.standard_normal((4, *input_shape))
    model.forward(x)                        # a pending backward must survive the conversion
    reference = copy.deepcopy(model)
    before = model.state_dict()
    rng_before = model.rng_states()
    converted = fully_convolutional(model, input_shape)
    converted.forward(_image(rng, 4, input_shape, (1, 2), stride))   # train mode: updates BN
    converted.backward(rng.standard_normal((4, 3, 2, 3)))
    for name, value in model.state_dict().items():
        assert np.array_equal(value, before[name]), name
    assert model.rng_states() == rng_before
    original = {id(a) for p in model.parameters() for a in (p.data, p.grad)}
    for p in converted.parameters():
        assert id(p.data) not in original
        assert not any(np.shares_memory(p.data, q.data) for q in model.parameters())
    dout = rng.standard_normal((4, 3))
    assert_close(model.backward(dout), reference.backward(dout), "dx after conversion")


def test_modes_and_state_carried_over(rng):
    model, input_shape, _ = _bn_dropout_head(rng)
    _randomize(model, rng).eval()
    model.forward(rng.standard_normal((2, *input_shape)))
    model.backward(rng.standard_normal((2, 3)))             # gradients the copies do not keep
    assert all(p.grad.any() for p in model.parameters())
    for mode in (True, False):
        converted = fully_convolutional(model.train(mode), input_shape)
        assert all(m.training == mode for _, m in converted.named_modules())
    model.train()
    model[7].eval()                                         # the BatchNorm1d alone
    converted = fully_convolutional(model, input_shape)
    bn1d, bn2d = model[7], converted[6]
    assert isinstance(bn2d, nn.BatchNorm2d) and not bn2d.training and converted.training
    assert (bn2d.eps, bn2d.momentum) == (bn1d.eps, bn1d.momentum)
    for key, value in bn1d.state_dict().items():
        assert np.array_equal(bn2d.state_dict()[key], value) and \
            bn2d.state_dict()[key].dtype == value.dtype, key
    drops = [m for m in converted if isinstance(m, nn.Dropout)]
    originals = [m for m in model if isinstance(m, nn.Dropout)]
    for new, old in zip(drops, originals):
        assert new.rng is not old.rng
        assert new.rng.bit_generator.state == old.rng.bit_generator.state
        assert (new.p, new.mode) == (old.p, old.mode)
    assert all(not p.grad.any() for p in converted.parameters())


def test_train_mode_on_input_size_matches(rng):
    """On the net's own size the converted BN2d sees N x 1 x 1 values per channel, as BN1d sees
    N: train-mode outputs and running statistics agree too."""
    model, input_shape, _ = _conv_pool_fc(rng)
    model = nn.Sequential(*model[:8], nn.BatchNorm1d(6), *model[8:])
    _randomize(model, rng).train()
    converted = fully_convolutional(model, input_shape)
    x = rng.standard_normal((5, *input_shape))
    assert_close(converted(x)[:, :, 0, 0], model(x), "train-mode scores")
    assert_close(converted[7].running_var, model[8].running_var, "running_var")
    assert not converted_is_exact(converted)
    assert any("training mode" in r for r in inexact_reasons(model))


def test_inexact_reasons():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=(0, 1)), nn.BatchNorm2d(2), nn.Flatten(),
                          nn.Dropout(0.5), nn.Linear(2 * 3 * 5, 2), nn.Dropout(0.0)).train()
    reasons = inexact_reasons(model)
    assert len(reasons) == 3
    assert reasons[0].startswith("layer 0 Conv2d") and "pads by (0, 1)" in reasons[0]
    assert reasons[1].startswith("layer 1 BatchNorm2d(2) is in training mode")
    assert reasons[2].startswith("layer 3 Dropout() is in training mode")
    converted = fully_convolutional(model, (1, 5, 5))
    assert len(inexact_reasons(converted)) == 3
    assert len(inexact_reasons(model.eval())) == 1 and not converted_is_exact(model)
    assert converted_is_exact(model[1:])


def test_checkpoint_round_trip(rng, tmp_path):
    model, input_shape, stride = _bn_dropout_head(rng)
    model.eval()
    converted = fully_convolutional(model, input_shape)
    path = save_checkpoint(tmp_path / "converted.npz", converted)
    loaded = load_checkpoint(path).build_model().eval()
    assert loaded.config() == converted.config()
    state = converted.state_dict()
    assert loaded.state_dict().keys() == state.keys()
    for key, value in loaded.state_dict().items():
        assert np.array_equal(value, state[key]), key
    image = _image(rng, 2, input_shape, (2, 1), stride).astype(np.float32)
    assert np.array_equal(loaded(image), converted(image))


def test_nothing_to_convert():
    with pytest.raises(ValueError, match="nothing to convert.*already fully convolutional"):
        fully_convolutional(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2)),
                            (1, 8, 8))
    gap_head = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.GlobalAvgPool2d(), nn.Flatten(),
                             nn.Linear(2, 3))
    with pytest.raises(ValueError, match=r"nothing to convert: layer 2 GlobalAvgPool2d"):
        fully_convolutional(gap_head, (1, 8, 8))
    with pytest.raises(ValueError, match="no output stride"):
        output_stride(gap_head, (1, 8, 8))


@pytest.mark.parametrize("bad, match", [
    (nn.Conv2d(3, 3, 1), r"layer 3 Conv2d\(3, 3.*follows the Flatten"),
    (nn.Residual(nn.Linear(3, 3)), r"layer 3 Residual\(\.\.\.\) follows the Flatten"),
    (nn.GlobalAvgPool2d(), r"layer 3 GlobalAvgPool2d\(\) follows the Flatten"),
])
def test_other_layer_after_flatten(bad, match):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3), bad)
    with pytest.raises(ValueError, match=match):
        fully_convolutional(model, (1, 6, 6))


def test_mismatched_layers_name_the_numbers():
    wrong = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(50, 3))
    with pytest.raises(ValueError, match=r"in_features = 50.* 1x10x10 is 2x4x4 = 32"):
        fully_convolutional(wrong, (1, 10, 10))
    second = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"layer 3 Linear.*= 5.*previous Linear gives 3"):
        fully_convolutional(second, (1, 2, 2))
    bn_first = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(4), nn.Linear(4, 3))
    with pytest.raises(ValueError, match=r"layer 1 BatchNorm1d\(4\) normalises each of the 4"):
        fully_convolutional(bn_first, (1, 2, 2))
    local = nn.Sequential(nn.LocallyConnected2d(1, 2, 3, input_size=6), nn.Flatten(),
                          nn.Linear(2 * 4 * 4, 3))
    with pytest.raises(ValueError, match=r"LocallyConnected2d.*\(6, 6\)"):
        fully_convolutional(local, (1, 6, 6))
    residual = nn.Sequential(nn.Residual(nn.Conv2d(1, 1, 3)), nn.Flatten(), nn.Linear(9, 2))
    with pytest.raises(ValueError, match=r"layer 0 Residual.*the body's output \(1, 3, 3\) per "
                                         r"example differs from the input .* \(1, 5, 5\)"):
        fully_convolutional(residual, (1, 5, 5))
    with pytest.raises(ValueError, match=r"\(W - F \+ 2P\)/S \+ 1 = \(9 - 2 \+ 0\)/2"):
        fully_convolutional(nn.Sequential(nn.MaxPool2d(2), nn.Linear(16, 2)), (1, 9, 8))


def test_bad_arguments(rng):
    model, input_shape, _ = _conv_pool_fc(rng)
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\)"):
        fully_convolutional(model, (14, 14))
    with pytest.raises(TypeError, match="must be a cnnkit.nn.Module"):
        fully_convolutional(lambda x: x, input_shape)
    converted = fully_convolutional(model, input_shape)
    with pytest.raises(ValueError, match=r"layer 2 MaxPool2d.* = \(13 - 2 \+ 0\)/2 \+ 1"):
        score_map_size(converted, (2, 14, 15))   # 15 - 3 + 1 = 13 does not halve: not H + m*S
    with pytest.raises(ValueError, match=r"layer 6 Flatten.*convert it"):
        score_map_size(model, (2, 30, 30))
    with pytest.raises(ValueError, match=r"H_img >= 14 and W_img >= 14.*\(1, 2, 14, 13\)"):
        sliding_scores(model, np.zeros((1, 2, 14, 13)), input_shape)
    with pytest.raises(ValueError, match="cannot tell the stride of layer 1 _Crop"):
        output_stride(nn.Sequential(nn.Conv2d(1, 1, 1), _Crop(), nn.Flatten()), (1, 5, 5))


def test_group_and_layer_norm_make_the_score_map_approximate_and_say_so(rng):
    """They normalise each sample over its whole map, in eval too: on a larger image the map
    holds every crop, so the statistics differ from each crop's and the scores with them."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 3 * 3, 3, rng=rng), nn.LayerNorm(3)).eval()
    with pytest.raises(ValueError, match=r"layer 6 LayerNorm\(\(3,\).*follows the Flatten and "
                                         r"has no conv equivalent"):
        fully_convolutional(model, (1, 8, 8))
    body = nn.Sequential(*model[:6]).eval()
    reasons = inexact_reasons(body)
    assert len(reasons) == 1 and reasons[0].startswith("layer 1 GroupNorm(2, 4") \
        and "normalises each sample over its whole map" in reasons[0]
    converted = fully_convolutional(body, (1, 8, 8))
    image = rng.standard_normal((1, 1, 12, 10))
    assert not np.allclose(converted(image), sliding_scores(body, image, (1, 8, 8)))
    assert not converted_is_exact(converted)
