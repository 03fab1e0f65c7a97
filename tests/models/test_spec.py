"""The pattern grammar: parsing, canonical text, building, the volume trace, and every error's
message and caret."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnkit import nn
from cnnkit.models import blocks, zoo
from cnnkit.models.spec import (LAYERS, Layer, Repeat, SpecError, build, describe, is_spec,
                                parse, trace)

EXAMPLE = ("INPUT[3x32x32] -> [[CONV3-32 -> BN -> RELU]*2 -> POOL2]*3 -> "
           "[FC-256 -> RELU -> DROPOUT0.5]*2 -> FC-10")


def run(net, x, rng):
    """Forward, then backward with a random upstream gradient: (out, dx)."""
    out = net(x)
    dx = net.backward(rng.standard_normal(out.shape))
    return out, dx


def types(net):
    return [type(m).__name__ for m in net]


# ----------------------------------------------------------------------------- the issue's example

def test_issue_example_builds_runs_forward_and_backward(rng):
    net = build(EXAMPLE, rng=rng).astype(np.float64)
    x = rng.standard_normal((2, 3, 32, 32))
    out, dx = run(net, x, rng)
    assert out.shape == (2, 10)
    assert dx.shape == x.shape and np.abs(dx).sum() > 0
    assert all(np.abs(p.grad).sum() > 0 for p in net.parameters())
    assert types(net).count("Conv2d") == 6 and types(net).count("Linear") == 3


def test_issue_example_volumes_by_hand():
    steps = trace(EXAMPLE)
    # [[CONV3-32 -> BN -> RELU]*2 -> POOL2] at 32, 16, 8, then [FC-256 -> RELU -> DROPOUT]*2
    hand = [v for size in (32, 16, 8) for v in [(32, size, size)] * 6 + [(32, size // 2,
                                                                          size // 2)]]
    hand += [(256,)] * 6 + [(10,)]
    assert [s.output for s in steps] == hand
    assert [s.index for s in steps] == list(range(1, 29))
    assert [s.input for s in steps] == [(3, 32, 32)] + hand[:-1]
    assert steps[21].token == "FC-256" and steps[-1].token == "FC-10"


def test_vgg16_volumes_match_the_notes_table():
    """The notes' VGG-16 table: 224x224x64 ... 7x7x512, then FC 4096, 4096, 1000 (CxHxW here)."""
    vgg = ("INPUT[3x224x224] -> [CONV3-64 -> RELU]*2 -> POOL2 -> [CONV3-128 -> RELU]*2 -> POOL2"
           " -> [CONV3-256 -> RELU]*3 -> POOL2 -> [[CONV3-512 -> RELU]*3 -> POOL2]*2"
           " -> [FC-4096 -> RELU -> DROPOUT]*2 -> FC-1000")
    outs = [s.output for s in trace(vgg) if s.token != "RELU" and s.token != "DROPOUT"]
    assert outs == [(64, 224, 224)] * 2 + [(64, 112, 112)] + [(128, 112, 112)] * 2 + \
        [(128, 56, 56)] + [(256, 56, 56)] * 3 + [(256, 28, 28)] + [(512, 28, 28)] * 3 + \
        [(512, 14, 14)] + [(512, 14, 14)] * 3 + [(512, 7, 7)] + [(4096,), (4096,), (1000,)]


def test_geometry_volumes_by_hand(rng):
    text = ("INPUT[3x31x31] -> CONV5-8/p0 -> POOL3/2 -> CONV3-16/s2 -> LC3-4 -> CONV3-6/d2 "
            "-> L2POOL3/2 -> AVGPOOL3 -> FC-20 -> BN -> FC-5")
    # 31-5+1 = 27; (27-3)/2+1 = 13; (13-3+2)/2+1 = 7; 7; (7-5+4)/1+1 = 7; (7-3)/2+1 = 3; 1
    hand = [(8, 27, 27), (8, 13, 13), (16, 7, 7), (4, 7, 7), (6, 7, 7), (6, 3, 3), (6, 1, 1),
            (20,), (20,), (5,)]
    assert [s.output for s in trace(text)] == hand
    out, dx = run(build(text, rng=rng).astype(np.float64), rng.standard_normal((3, 3, 31, 31)),
                  rng)
    assert out.shape == (3, 5) and dx.shape == (3, 3, 31, 31)


# ----------------------------------------------------------------------------- every token kind

# (token, input volume, the modules it becomes, output volume, attributes of the last module)
TOKENS = [
    ("CONV3-4", (2, 6, 6), ["Conv2d"], (4, 6, 6), {"padding": (1, 1), "stride": (1, 1)}),
    ("CONV3-4/s2p0", (2, 7, 7), ["Conv2d"], (4, 3, 3), {"padding": (0, 0), "stride": (2, 2)}),
    ("CONV7-4/p3s2", (2, 9, 9), ["Conv2d"], (4, 5, 5), {"padding": (3, 3), "stride": (2, 2)}),
    ("CONV3-4/d2", (2, 7, 7), ["Conv2d"], (4, 7, 7), {"padding": (2, 2), "dilation": (2, 2)}),
    ("CONV4-4/p1s2", (2, 8, 8), ["Conv2d"], (4, 4, 4), {"kernel_size": (4, 4)}),
    ("CONV1-5", (2, 3, 4), ["Conv2d"], (5, 3, 4), {"padding": (0, 0)}),
    ("CONV3-4/he_uniform", (2, 6, 6), ["Conv2d"], (4, 6, 6),
     {"init": "he_uniform", "weight_scale": None}),
    ("CONV3-4/w0.5/s2p0", (2, 7, 7), ["Conv2d"], (4, 3, 3),
     {"init": "gaussian", "weight_scale": 0.5, "stride": (2, 2), "padding": (0, 0)}),
    ("LC3-4", (2, 5, 5), ["LocallyConnected2d"], (4, 5, 5), {"input_size": (5, 5)}),
    ("LC3-4/s2p0", (2, 7, 9), ["LocallyConnected2d"], (4, 3, 4), {"output_size": (3, 4)}),
    ("LC3-4/xavier/p0", (2, 5, 5), ["LocallyConnected2d"], (4, 3, 3),
     {"init": "xavier", "output_size": (3, 3)}),
    ("POOL2", (2, 6, 6), ["MaxPool2d"], (2, 3, 3), {"stride": (2, 2)}),
    ("POOL3/2", (2, 7, 7), ["MaxPool2d"], (2, 3, 3), {"kernel_size": (3, 3), "stride": (2, 2)}),
    ("AVGPOOL2", (2, 4, 6), ["AvgPool2d"], (2, 2, 3), {"stride": (2, 2)}),
    ("AVGPOOL3/1", (2, 5, 5), ["AvgPool2d"], (2, 3, 3), {"stride": (1, 1)}),
    ("L2POOL2", (2, 4, 4), ["L2Pool2d"], (2, 2, 2), {"kernel_size": (2, 2)}),
    ("L2POOL3/2", (2, 7, 7), ["L2Pool2d"], (2, 3, 3), {"stride": (2, 2)}),
    ("FC-7", (2, 3, 3), ["Flatten", "Linear"], (7,), {}),
    ("GAP -> FC-7", (5, 2, 2), ["GlobalAvgPool2d", "Flatten", "Linear"], (7,),
     {"in_features": 5}),
    ("FC-7/xavier_uniform", (2, 3, 3), ["Flatten", "Linear"], (7,),
     {"init": "xavier_uniform", "weight_scale": None}),
    ("FC-7/w2", (2, 3, 3), ["Flatten", "Linear"], (7,), {"init": "gaussian", "weight_scale": 2}),
    ("RELU", (2, 3, 3), ["ReLU"], (2, 3, 3), {}),
    ("SIGMOID", (2, 3, 3), ["Sigmoid"], (2, 3, 3), {}),
    ("GAP -> SIGMOID", (5, 2, 2), ["GlobalAvgPool2d", "Flatten", "Sigmoid"], (5,), {}),
    ("TANH", (2, 3, 3), ["Tanh"], (2, 3, 3), {}),
    ("BN", (2, 3, 3), ["BatchNorm2d"], (2, 3, 3), {"num_features": 2}),
    ("FC-5 -> BN", (2, 3, 3), ["Flatten", "Linear", "BatchNorm1d"], (5,), {"num_features": 5}),
    ("DROPOUT", (2, 3, 3), ["Dropout"], (2, 3, 3), {"p": 0.5}),
    ("GAP -> DROPOUT0.25", (5, 2, 2), ["GlobalAvgPool2d", "Flatten", "Dropout"], (5,),
     {"p": 0.25}),
    ("DROPOUT.1", (2, 3, 3), ["Dropout"], (2, 3, 3), {"p": 0.1}),
    ("DROPOUT0", (2, 3, 3), ["Dropout"], (2, 3, 3), {"p": 0.0}),
    ("DROPOUT0.3/infer", (2, 3, 3), ["Dropout"], (2, 3, 3),
     {"p": 0.3, "mode": "downscale_in_infer"}),
    ("GAP -> DROPOUT/infer", (5, 2, 2), ["GlobalAvgPool2d", "Flatten", "Dropout"], (5,),
     {"p": 0.5, "mode": "downscale_in_infer"}),
    ("DROPOUT0.3/train", (2, 3, 3), ["Dropout"], (2, 3, 3), {"p": 0.3, "mode": "upscale_in_train"}),
    ("RES-2", (2, 6, 6), ["Sequential"], (2, 6, 6), {}),
    ("RES-4", (2, 6, 6), ["Sequential"], (4, 6, 6), {}),
    ("RES-4/s2", (2, 7, 7), ["Sequential"], (4, 4, 4), {}),
    ("GAP", (3, 5, 4), ["GlobalAvgPool2d", "Flatten"], (3,), {}),
    ("LRN", (6, 3, 3), ["LocalResponseNorm"], (6, 3, 3), {"size": 5}),
    ("LRN3", (6, 3, 3), ["LocalResponseNorm"], (6, 3, 3), {"size": 3}),
    # LN: GroupNorm(1, C) on a volume (the Group Norm paper's LN), LayerNorm(D) on a vector
    ("LN", (4, 3, 5), ["GroupNorm"], (4, 3, 5), {"num_groups": 1, "num_channels": 4}),
    ("GAP -> LN", (5, 2, 2), ["GlobalAvgPool2d", "Flatten", "LayerNorm"], (5,),
     {"normalized_shape": (5,)}),
    ("GN2", (6, 3, 5), ["GroupNorm"], (6, 3, 5), {"num_groups": 2, "num_channels": 6}),
    ("GN6", (6, 2, 2), ["GroupNorm"], (6, 2, 2), {"num_groups": 6, "num_channels": 6}),
    ("GAP -> GN3", (6, 2, 2), ["GlobalAvgPool2d", "Flatten", "GroupNorm"], (6,),
     {"num_groups": 3, "num_channels": 6}),
    # GN1 is LN: what LN builds on either
    ("GN1", (4, 3, 5), ["GroupNorm"], (4, 3, 5), {"num_groups": 1, "num_channels": 4}),
    ("GAP -> GN1", (5, 2, 2), ["GlobalAvgPool2d", "Flatten", "LayerNorm"], (5,),
     {"normalized_shape": (5,)}),
]


@pytest.mark.parametrize("token, shape, kinds, out_shape, attrs", TOKENS,
                         ids=[f"{t[0]}-{'x'.join(map(str, t[1]))}" for t in TOKENS])
def test_every_token_kind(token, shape, kinds, out_shape, attrs, rng):
    net = build(token, shape, rng=rng).astype(np.float64)
    assert types(net) == kinds
    for name, value in attrs.items():
        assert getattr(net[-1], name) == value, name
    assert trace(token, shape)[-1].output == out_shape
    x = rng.standard_normal((3, *shape))
    out, dx = run(net, x, rng)
    assert out.shape == (3, *out_shape) and dx.shape == x.shape


def test_res_block_is_the_blocks_basic_block_with_its_shortcut():
    same = build("RES-4", (4, 6, 6))[0]
    down = build("RES-8/s2", (4, 6, 6))[0]
    assert same.config() == blocks.basic_block(4, 4, 1).config()
    assert same[0].shortcut is None and down[0].shortcut is not None
    assert down.config() == blocks.basic_block(4, 8, 2).config()


def test_ln_and_gn_normalise_each_example_by_itself(rng):
    """LN on a volume normalises each example over all of C x H x W; GNg over each group of C/g
    channels; GN1 is LN. (The kernels' own oracle tests are in tests/functional.)"""
    x = rng.standard_normal((3, 6, 4, 5)) * 3 + 2
    for text, groups in (("LN", 1), ("GN1", 1), ("GN3", 3), ("GN6", 6)):
        out = build(text, (6, 4, 5), rng=rng).astype(np.float64)(x)
        per_group = out.reshape(3, groups, -1)
        np.testing.assert_allclose(per_group.mean(axis=2), 0, atol=1e-12, err_msg=text)
        np.testing.assert_allclose(per_group.var(axis=2), 1, atol=1e-3, err_msg=text)
    assert describe("INPUT[4x5x5] -> GN1") == "INPUT[4x5x5] -> LN"
    assert build("GN1", (4, 5, 5)).config() == build("LN", (4, 5, 5)).config()
    assert build("GAP -> GN1", (4, 5, 5)).config() == build("GAP -> LN", (4, 5, 5)).config()


def test_a_conv_before_ln_or_gn_keeps_its_bias():
    """Only BN's per-channel mean removes a per-channel bias; a group's mean does not."""
    net = build("INPUT[4x6x6] -> CONV3-4 -> LN -> CONV3-4 -> GN2 -> CONV3-4 -> BN")
    assert [m.bias is None for m in net if isinstance(m, nn.Conv2d)] == [False, False, True]


def test_case_whitespace_and_unicode_arrow_do_not_matter():
    canonical = build("INPUT[2x7x7] -> CONV3-4/S2P1 -> RELU -> [FC-3]*2",
                      rng=np.random.default_rng(1))
    loose = build("  input [ 2X7x7 ]→conv3-4/p1s2->relu  ->\n[ fc-3 ] * 2 ",
                  rng=np.random.default_rng(1))
    assert loose.config() == canonical.config()


# ----------------------------------------------------------------------------- bias and init

def test_conv_directly_followed_by_bn_has_no_bias_in_the_expanded_chain():
    net = build("INPUT[2x6x6] -> [CONV3-3]*2 -> BN -> CONV3-3 -> [BN]*0 -> RELU -> "
                "LC3-2 -> BN -> FC-4 -> BN")
    convs = [m for m in net if isinstance(m, (nn.Conv2d, nn.LocallyConnected2d))]
    assert [c.bias is None for c in convs] == [False, True, False, False]
    assert next(m for m in net if isinstance(m, nn.Linear)).bias is not None


def test_he_init_everywhere_but_the_classifier(rng):
    net = build("INPUT[2x6x6] -> CONV3-8 -> RELU -> FC-300 -> RELU -> FC-200 -> RELU", rng=rng)
    conv, hidden, last = net[0], net[3], net[5]
    assert conv.init == "he" and hidden.init == "he"
    assert last.init == "gaussian" and last.weight_scale == 1e-2
    # He normal: std sqrt(2 / fan_in); the classifier: 0.01
    assert abs(hidden.weight.data.std() / np.sqrt(2 / (8 * 6 * 6)) - 1) < 0.05
    assert abs(last.weight.data.std() / 1e-2 - 1) < 0.05


def test_a_written_initialisation_replaces_the_default_of_its_place(rng):
    net = build("INPUT[16x6x6] -> CONV3-64/xavier -> LC3-4/p0/w0.5 -> FC-300/he_uniform -> "
                "FC-200/w0.03 -> FC-100/he", rng=rng)
    conv, local, hidden, second, last = net[0], net[1], net[3], net[4], net[5]
    assert (conv.init, conv.weight_scale) == ("xavier", None)
    assert (local.init, local.weight_scale) == ("gaussian", 0.5)
    assert (hidden.init, second.init, second.weight_scale) == ("he_uniform", "gaussian", 0.03)
    assert (last.init, last.weight_scale) == ("he", None)        # the classifier, written He
    # the draws follow (each from 9,000 weights or more, so within a few per cent): Glorot
    # normal std sqrt(2 / (fan_in + fan_out)), a Gaussian's S, He uniform's bound
    # sqrt(6 / fan_in), He normal's sqrt(2 / fan_in)
    assert abs(conv.weight.data.std() / np.sqrt(2 / (16 * 9 + 64 * 9)) - 1) < 0.05
    assert abs(local.weight.data.std() / 0.5 - 1) < 0.05
    bound = np.sqrt(6 / (4 * 4 * 4))
    assert 0.99 * bound < np.abs(hidden.weight.data).max() <= bound
    assert abs(second.weight.data.std() / 0.03 - 1) < 0.05
    assert abs(last.weight.data.std() / np.sqrt(2 / 200) - 1) < 0.05


def test_an_initialisation_written_as_the_default_draws_the_same_weights():
    """The option changes no draw when absent, nor when it names what the default is."""
    plain = "INPUT[3x8x8] -> CONV3-4 -> BN -> RELU -> LC3-2/p0 -> FC-6 -> RELU -> FC-3"
    written = ("INPUT[3x8x8] -> CONV3-4/he -> BN -> RELU -> LC3-2/p0/he -> FC-6/he -> RELU -> "
               "FC-3/w0.01")
    _same_net(build(written, rng=np.random.default_rng(5)),
              build(plain, rng=np.random.default_rng(5)))
    assert describe(written) == written                     # kept, though it is the default
    assert describe(plain) == plain


def test_a_written_initialisation_equals_the_hand_written_layer():
    rng = np.random.default_rng(11)
    hand = nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1, init="xavier_uniform", rng=rng),
        nn.LocallyConnected2d(4, 3, 3, input_size=3, padding=1, init="gaussian",
                              weight_scale=0.25, rng=rng),
        nn.Flatten(), nn.Linear(27, 5, init="xavier", rng=rng),
        nn.Dropout(0.2, "downscale_in_infer", rng=np.random.default_rng(rng.integers(2**63))),
        nn.Linear(5, 2, init="he_uniform", rng=rng))
    spec = ("INPUT[2x5x5] -> CONV3-4/xavier_uniform/s2 -> LC3-3/w0.25 -> FC-5/xavier -> "
            "DROPOUT0.2/infer -> FC-2/he_uniform")
    _same_net(build(spec, rng=np.random.default_rng(11)), hand)


def test_the_dropout_mode_draws_no_more_than_the_default():
    a = build("INPUT[2x4x4] -> DROPOUT0.3/infer -> FC-3", rng=np.random.default_rng(2))
    b = build("INPUT[2x4x4] -> DROPOUT0.3 -> FC-3", rng=np.random.default_rng(2))
    assert (a[0].mode, b[0].mode) == ("downscale_in_infer", "upscale_in_train")
    assert a.rng_states() == b.rng_states()
    np.testing.assert_array_equal(a.state_dict()["2.weight"], b.state_dict()["2.weight"])
    # the modes differ where they should: in eval, downscale_in_infer multiplies by 1 - p
    x = np.ones((1, 2, 4, 4))
    np.testing.assert_allclose(a[0].eval()(x), 0.7 * x)
    np.testing.assert_array_equal(b[0].eval()(x), x)


def test_the_same_rng_seed_builds_the_same_weights_and_dropout_streams():
    a = build(EXAMPLE, rng=np.random.default_rng(3))
    b = build(EXAMPLE, rng=np.random.default_rng(3))
    c = build(EXAMPLE, rng=np.random.default_rng(4))
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[name], err_msg=name)
    assert a.rng_states() == b.rng_states()
    assert not np.array_equal(a.state_dict()["0.weight"], c.state_dict()["0.weight"])


# ----------------------------------------------------------------------------- nesting and *0

def test_nested_repeats_unroll_in_order():
    net = build("INPUT[1x8x8] -> [[CONV3-2 -> RELU]*2 -> POOL2]*2 -> [FC-5]*0 -> FC-3")
    assert types(net) == ["Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d"] * 2 + \
        ["Flatten", "Linear"]
    assert net[0].in_channels == 1 and net[2].in_channels == 2 and net[-1].in_features == 8


def test_star_zero_removes_a_group_and_brackets_alone_mean_once():
    net = build("INPUT[1x4x4] -> [CONV3-2 -> [RELU -> POOL2]*3]*0 -> [FC-3] -> [[RELU]]")
    assert types(net) == ["Flatten", "Linear", "ReLU"] and net[1].in_features == 16
    assert types(build("[[RELU]*0]*5", (3, 2, 2))) == []
    deep = build("[[[[[TANH]*2]*1]*3]*1]*2 -> SIGMOID", (4, 2, 2))
    assert types(deep) == ["Tanh"] * 12 + ["Sigmoid"]


# ---------------------------------------------------------------------- equal to hand-written

def _same_net(built, hand):
    assert built.config() == hand.config()
    sd, hand_sd = built.state_dict(), hand.state_dict()
    assert list(sd) == list(hand_sd)
    for name in sd:
        np.testing.assert_array_equal(sd[name], hand_sd[name], err_msg=name)
    assert built.rng_states() == hand.rng_states()


def test_lenet_bn_spec_equals_the_zoo_model():
    spec = ("INPUT[1x28x28] -> CONV5-6 -> BN -> RELU -> POOL2 -> CONV5-16/p0 -> BN -> RELU -> "
            "POOL2 -> FC-120 -> RELU -> FC-84 -> RELU -> FC-10")
    _same_net(build(spec, rng=np.random.default_rng(7)),
              zoo.lenet_bn(10, 1, rng=np.random.default_rng(7)))


def test_mixed_spec_equals_a_hand_written_sequential():
    spec = ("INPUT[3x16x16] -> [CONV3-8 -> RELU]*2 -> POOL2 -> LC3-4/p0 -> SIGMOID -> FC-32 -> "
            "BN -> TANH -> DROPOUT0.25 -> FC-4")
    rng = np.random.default_rng(8)
    hand = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, rng=rng), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.LocallyConnected2d(8, 4, 3, input_size=8, rng=rng), nn.Sigmoid(),
        nn.Flatten(), nn.Linear(4 * 6 * 6, 32, rng=rng), nn.BatchNorm1d(32), nn.Tanh(),
        nn.Dropout(0.25, rng=np.random.default_rng(rng.integers(2**63))),
        nn.Linear(32, 4, init="gaussian", weight_scale=1e-2, rng=rng))
    _same_net(build(spec, rng=np.random.default_rng(8)), hand)


def test_residual_spec_equals_a_hand_written_sequential():
    spec = "INPUT[3x8x8] -> CONV3-4 -> BN -> RELU -> RES-4 -> RES-8/s2 -> LRN -> GAP -> FC-10"
    rng = np.random.default_rng(9)
    hand = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False, rng=rng), nn.BatchNorm2d(4), nn.ReLU(),
        blocks.basic_block(4, 4, 1, rng=rng), blocks.basic_block(4, 8, 2, rng=rng),
        nn.LocalResponseNorm(5), nn.GlobalAvgPool2d(), nn.Flatten(),
        nn.Linear(8, 10, init="gaussian", weight_scale=1e-2, rng=rng))
    _same_net(build(spec, rng=np.random.default_rng(9)), hand)


# ----------------------------------------------------------------------------- parse, describe

def test_parse_gives_the_tree_with_token_spans():
    text = "INPUT[3x32x32] -> [CONV3-16/s2 -> RELU]*2 -> [BN] -> FC-10"
    spec = parse(text)
    assert spec.input_shape == (3, 32, 32) and text[slice(*spec.input_span)] == "INPUT[3x32x32]"
    rep, once, fc = spec.nodes
    assert isinstance(rep, Repeat) and rep.count == 2
    assert text[slice(*rep.span)] == "[CONV3-16/s2 -> RELU]*2"
    assert [text[slice(*n.span)] for n in rep.body] == ["CONV3-16/s2", "RELU"]
    assert rep.body[0] == Layer("CONV", {"kernel": 3, "filters": 16, "stride": 2,
                                         "padding": None, "dilation": 1, "groups": 1,
                                         "init": None, "weight_scale": None},
                                rep.body[0].span)
    assert parse("CONV3x1-8/s2x1p1x0").nodes[0].args == {
        "kernel": (3, 1), "filters": 8, "stride": (2, 1), "padding": (1, 0), "dilation": 1,
        "groups": 1, "init": None, "weight_scale": None}
    assert parse("CONV3-8/w0.5/p0").nodes[0].args == {
        "kernel": 3, "filters": 8, "stride": 1, "padding": 0, "dilation": 1, "groups": 1,
        "init": "gaussian", "weight_scale": 0.5}
    assert isinstance(once, Repeat) and once.count == 1 and text[slice(*once.span)] == "[BN]"
    assert fc.kind == "FC" and fc.args == {"features": 10, "init": None, "weight_scale": None}
    assert text[slice(*fc.span)] == "FC-10"
    assert parse("FC-3/xavier").nodes[0].args == {"features": 3, "init": "xavier",
                                                  "weight_scale": None}
    assert parse("DROPOUT/infer").nodes[0].args == {"p": 0.5, "mode": "downscale_in_infer"}
    assert parse("DROPOUT.2").nodes[0].args == {"p": 0.2, "mode": "upscale_in_train"}
    assert parse("GN4 -> LN").nodes[0].args == {"groups": 4} and parse("LN").nodes[0].args == {}
    assert parse("FC-3").input_shape is None
    with pytest.raises(TypeError, match="string"):
        parse(None)


@pytest.mark.parametrize("text, canonical", [
    (EXAMPLE, EXAMPLE),
    ("input[3x32x32]→conv3-16/p1s2 ->  [fc-10]*1", "INPUT[3x32x32] -> CONV3-16/s2 -> [FC-10]"),
    ("CONV3-64/s1p1d1", "CONV3-64"),
    ("CONV3-64/d2p2", "CONV3-64/d2"),
    ("CONV3-64/p0d2", "CONV3-64/p0d2"),
    ("lc4-8/d1p1", "LC4-8/p1"),
    ("POOL2/2 -> pool3/s2 -> AVGPOOL3/3 -> l2pool2/1", "POOL2 -> POOL3/2 -> AVGPOOL3 -> L2POOL2/1"),
    ("dropout -> DROPOUT.50 -> dropout0", "DROPOUT0.5 -> DROPOUT0.5 -> DROPOUT0"),
    ("res-64/s1 -> RES-128/2 -> lrn5 -> lrn3 -> gap", "RES-64 -> RES-128/s2 -> LRN -> LRN3 -> GAP"),
    ("[[relu]*0]*3", "[[RELU]*0]*3"),
    ("FC-010", "FC-10"),
    ("conv3x3-8/P1X1g1 -> conv3x1-8/p1x0 -> CONV2x3-8/d1x2p1x2",
     "CONV3-8 -> CONV3x1-8 -> CONV2x3-8/p1x2d1x2"),
    ("CONV3-8/g2s2 -> pool3/s2p1 -> AVGPOOL2P0 -> avgpool3/1p1",
     "CONV3-8/s2g2 -> POOL3/2p1 -> AVGPOOL2 -> AVGPOOL3/1p1"),
    # the initialisation: after the options in either order, lower case, kept when default
    ("CONV3-64/s2p1/he -> conv3-64/HE/s2p0 -> conv3-8/p1/Xavier",
     "CONV3-64/s2/he -> CONV3-64/s2p0/he -> CONV3-8/xavier"),
    ("LC3-4/Xavier_Uniform -> lc3-4/he_uniform/d1", "LC3-4/xavier_uniform -> LC3-4/he_uniform"),
    ("FC-100/w0.010 -> fc-10/W.5 -> FC-3/w5. -> FC-2/w0001.25 -> FC-10/w0.01",
     "FC-100/w0.01 -> FC-10/w0.5 -> FC-3/w5 -> FC-2/w1.25 -> FC-10/w0.01"),
    ("FC-3/w0.00000001", "FC-3/w0.00000001"),               # never an exponent
    # the dropout mode: /train is the default and is left out
    ("dropout/infer -> DROPOUT0.3/TRAIN -> dropout.25/Infer",
     "DROPOUT0.5/infer -> DROPOUT0.3 -> DROPOUT0.25/infer"),
    # LN, and GN1 which is LN
    ("ln -> gn1 -> GN8 -> gn08 -> [Gn1]*2", "LN -> LN -> GN8 -> GN8 -> [LN]*2"),
])
def test_describe_prints_canonical_text(text, canonical):
    assert describe(text) == canonical
    assert describe(parse(text)) == canonical
    assert describe(canonical) == canonical


@pytest.mark.parametrize("text", ["INPUT[3x32x32] -> FC-10", "CONV3-8->RELU", "[FC-10]*2",
                                  "FC-10", "conv3-8", "RELU", " gap ", "DROPOUT0.5", "L2POOL2",
                                  "a → b", "fc", "LN", "gn8", "DROPOUT/infer", "FC-10/he",
                                  "conv3-8/w0.01"])
def test_is_spec_true(text):
    assert is_spec(text)


@pytest.mark.parametrize("text", [*zoo.MODELS, "default", "VGG16", "resnet_18", "", "  ",
                                  "lenet-5", "my model", None, 3])
def test_is_spec_false_for_model_names(text):
    assert not is_spec(text)


# ----------------------------------------------------------------------------- errors

def _error(text, input_shape=None):
    with pytest.raises(SpecError) as info:
        build(text, input_shape)
    err = info.value
    lines = str(err).split("\n")
    assert len(lines) == 3, str(err)
    return err, lines


def _check_caret(lines, text, token, occurrence=0):
    """The caret line's ^^^ sit under the token in the echoed spec line."""
    head, echo, caret = lines
    assert echo == "  " + " ".join(text.split("\n"))
    start = -1
    for _ in range(occurrence + 1):
        start = echo.index(token, start + 1)
    assert caret.index("^") == start, f"caret at {caret.index('^')}, token at {start}"
    assert caret.strip() == "^" * len(token)
    assert head.startswith(f"spec: {token}")


# (spec, input_shape, token, which occurrence of it, what the first line must say)
SEMANTIC = [
    ("INPUT[3x32x32] -> CONV3-8 -> RELU -> POOL2 -> CONV5-16/s2p0 -> FC-10", None,
     "CONV5-16/s2p0", 0,
     "spec: CONV5-16/s2p0 at layer 4 (input 8x16x16): conv: (W - F + 2P)/S + 1 = "
     "(16 - 5 + 0)/2 + 1 is not an integer along the height"),
    ("INPUT[3x9x8] -> POOL2", None, "POOL2", 0,
     "at layer 1 (input 3x9x8): pool: (W - F + 2P)/S + 1 = (9 - 2 + 0)/2 + 1 is not an integer"),
    ("INPUT[3x7x8] -> LC3-2/s2p0", None, "LC3-2/s2p0", 0,
     "locally connected: (W - F + 2P)/S + 1 = (8 - 3 + 0)/2 + 1 is not an integer along the "
     "width"),
    ("INPUT[3x8x8] -> AVGPOOL3", None, "AVGPOOL3", 0, "avgpool: (W - F + 2P)/S + 1"),
    ("INPUT[3x8x8] -> [CONV3-4 -> POOL2]*4", None, "POOL2", 0,
     "at layer 8 (input 4x1x1), in repetition 4 of [..]*4: pool: the window (F = 2) is larger "
     "than the padded input (W + 2P = 1 + 0 = 1) along the height; the output volume would be "
     "empty"),
    ("INPUT[1x8x8] -> [[CONV3-4 -> POOL2]*2]*2", None, "POOL2", 0,
     "at layer 8 (input 4x1x1), in repetition 2 of [..]*2 inside repetition 2 of [..]*2: pool"),
    ("INPUT[1x4x4] -> CONV7-2/p0", None, "CONV7-2/p0", 0, "larger than the padded input"),
    ("INPUT[1x6x6] -> CONV3-2/d3p0", None, "CONV3-2/d3p0", 0,
     "conv: the dilated window (D*(F-1)+1 = 7) is larger than the padded input"),
    ("INPUT[3x8x8] -> FC-10 -> CONV3-8", None, "CONV3-8", 0,
     "at layer 2 (input a vector of 10): CONV needs a volume (CxHxW), but its input is a vector "
     "of 10 (the output of FC-10 at layer 1)"),
    ("INPUT[3x8x8] -> GAP -> RELU -> POOL2", None, "POOL2", 0,
     "POOL needs a volume (CxHxW), but its input is a vector of 3 (the output of GAP at layer 1)"),
    ("INPUT[3x8x8] -> GAP -> LC3-2", None, "LC3-2", 0,
     "at layer 2 (input a vector of 3): LC needs a volume"),
    ("INPUT[3x8x8] -> FC-4 -> GAP", None, "GAP", 0, "GAP needs a volume"),
    ("INPUT[3x8x8] -> FC-4 -> RES-4", None, "RES-4", 0, "RES needs a volume"),
    ("INPUT[3x8x8] -> FC-4 -> LRN", None, "LRN", 0, "LRN needs a volume"),
    ("INPUT[3x8x8] -> FC-4 -> L2POOL2", None, "L2POOL2", 0, "L2POOL needs a volume"),
    ("INPUT[3x8x8] -> DROPOUT1.5", None, "DROPOUT1.5", 0,
     "p is the probability to drop a unit and must be in [0, 1), got 1.5"),
    ("INPUT[3x8x8] -> DROPOUT1", None, "DROPOUT1", 0, "must be in [0, 1), got 1"),
    ("INPUT[3x8x8] -> CONV3-0", None, "CONV3-0", 0, "the number of filters n must be >= 1, got 0"),
    ("INPUT[3x8x8] -> CONV0-4", None, "CONV0-4", 0, "the kernel size k must be >= 1, got 0"),
    ("INPUT[3x8x8] -> CONV3-4/s0", None, "CONV3-4/s0", 0, "the stride must be >= 1, got 0"),
    ("INPUT[3x8x8] -> LC3-4/d0", None, "LC3-4/d0", 0, "the dilation must be >= 1, got 0"),
    ("INPUT[3x8x8] -> POOL0", None, "POOL0", 0, "the pooling window k must be >= 1, got 0"),
    ("INPUT[3x8x8] -> POOL2/0", None, "POOL2/0", 0, "the stride must be >= 1, got 0"),
    ("INPUT[3x8x8] -> FC-0", None, "FC-0", 0, "the number of outputs n must be >= 1, got 0"),
    ("INPUT[3x8x8] -> RES-0", None, "RES-0", 0, "the number of channels n must be >= 1"),
    ("INPUT[3x8x8] -> LRN0", None, "LRN0", 0, "the LRN size n must be >= 1, got 0"),
    ("INPUT[3x8x8] -> CONV4-8", None, "CONV4-8", 0,
     "the window spans D*(k-1)+1 = 4, an even number, so no padding centres it; give one, e.g. "
     "CONV4-8/p1"),
    ("INPUT[3x8x8] -> RELU -> CONV3-4 -> LC2-4", None, "LC2-4", 0, "e.g. LC2-4/p0"),
    ("FC-10", None, "FC-10", 0, "spec: FC-10 at layer 1: no input volume: start the spec with "
     "INPUT[CxHxW] or pass input_shape"),
    ("[RELU]*0 -> TANH", None, "TANH", 0, "spec: TANH at layer 1: no input volume"),
    ("INPUT[3x8x8] -> FC-2", (1, 8, 8), "INPUT[3x8x8]", 0,
     "the spec's input 3x8x8 (CxHxW) disagrees with input_shape 1x8x8"),
    ("INPUT[3x0x8] -> FC-2", None, "INPUT[3x0x8]", 0, "every size of the input must be >= 1"),
    ("FC-2", (3, 0, 8), "FC-2", 0, "every size of the input must be >= 1, got 3x0x8"),
    # GN: the groups must split the channels (or the features of a vector)
    ("INPUT[16x4x4] -> GN3", None, "GN3", 0,
     "spec: GN3 at layer 1 (input 16x4x4): GN3 needs the 16 channels to split into 3 equal "
     "groups; 3 does not divide 16 (try GN2, GN4, GN8, GN16)"),
    ("INPUT[16x4x4] -> CONV3-16 -> GN32", None, "GN32", 0,
     "at layer 2 (input 16x4x4): GN32 needs the 16 channels to split into 32 equal groups; "
     "there are only 16 (try GN2, GN4, GN8, GN16)"),
    ("INPUT[3x4x4] -> GN0", None, "GN0", 0, "the number of groups g must be >= 1, got 0"),
    ("INPUT[3x4x4] -> FC-6 -> GN4", None, "GN4", 0,
     "at layer 2 (input a vector of 6): GN4 needs the 6 features to split into 4 equal groups; "
     "4 does not divide 6 (try GN2, GN3, GN6)"),
    ("INPUT[7x4x4] -> GN2", None, "GN2", 0, "2 does not divide 7 (try GN7)"),
    ("INPUT[1x4x4] -> GN2", None, "GN2", 0, "there are only 1 (try LN)"),
    ("INPUT[720x1x1] -> GN7", None, "GN7", 0, "(try GN5, GN6, GN8, GN9)"),
]


@pytest.mark.parametrize("text, input_shape, token, occurrence, message", SEMANTIC,
                         ids=[f"{i}-{case[2]}" for i, case in enumerate(SEMANTIC)])
def test_semantic_errors_name_the_layer_and_point_at_it(text, input_shape, token, occurrence,
                                                        message):
    err, lines = _error(text, input_shape)
    assert message in lines[0], lines[0]
    _check_caret(lines, text, token, occurrence)
    assert err.text == text and text[slice(*err.span)] == token
    assert trace_raises_the_same(text, input_shape, str(err))


def trace_raises_the_same(text, input_shape, message):
    with pytest.raises(SpecError) as info:
        trace(text, input_shape)
    return str(info.value) == message


# (spec, token, occurrence, what the first line must say)
SYNTAX = [
    ("INPUT[3x8x8] -> CONV3-4 -> RELLU -> FC-2", "RELLU", 0,
     "at character 28: unknown layer RELLU; did you mean RELU?"),
    ("INPUT[3x8x8] -> POLL2", "POLL2", 0, "unknown layer POLL; did you mean POOL?"),
    ("INPUT[3x8x8] -> L2POLL2", "L2POLL2", 0, "unknown layer L2POLL; did you mean L2POOL?"),
    ("INPUT[3x8x8] -> SOFTMAXX", "SOFTMAXX", 0, "unknown layer SOFTMAXX; known layers: "
     "CONVk-n[/sSpPdDgG][/init], LCk-n[/sSpPdD][/init], POOLk[/S][pP]"),
    ("CONV3", "CONV3", 0, "not a valid CONV token; the form is CONVk-n[/sSpPdDgG][/init], e.g. "
     "CONV3-64"),
    ("CONV3-4/g2x1", "CONV3-4/g2x1", 0, "not a valid CONV token"),
    ("CONV3x-4", "CONV3x-4", 0, "not a valid CONV token"),
    ("LC3-4/g2", "LC3-4/g2", 0, "not a valid LC token; the form is LCk-n[/sSpPdD]"),
    ("L2POOL2p1", "L2POOL2p1", 0, "not a valid L2POOL token; the form is L2POOLk[/S], e.g."),
    ("POOL3/p1", "POOL3/p1", 0, "not a valid POOL token; the form is POOLk[/S][pP]"),
    ("CONV3-4/x2", "CONV3-4/x2", 0, "not a valid CONV token"),
    ("CONV3-4/s2s1", "CONV3-4/s2s1", 0, "not a valid CONV token"),
    ("LC3-", "LC3-", 0, "not a valid LC token; the form is LCk-n[/sSpPdD]"),
    ("FC10", "FC10", 0, "not a valid FC token; the form is FC-n[/init], e.g. FC-10"),
    ("POOL", "POOL", 0, "not a valid POOL token; the form is POOLk[/S][pP]"),
    ("RELU2", "RELU2", 0, "not a valid RELU token; the form is RELU"),
    ("DROPOUT-0.5", "DROPOUT-0.5", 0, "not a valid DROPOUT token"),
    ("RES-8/p1", "RES-8/p1", 0, "not a valid RES token; the form is RES-n[/sS]"),
    ("CONV3-8 RELU", "RELU", 0, "at character 9: expected '->' between CONV3-8 and RELU"),
    ("[FC-2] RELU", "RELU", 0, "expected '->' between ] and RELU"),
    ("INPUT[3x8x8] FC-2", "FC-2", 0, "expected '->' after INPUT[...]"),
    ("[CONV3-8 -> RELU", "[", 0, "at character 1: this '[' is never closed by a ']'"),
    ("[[CONV3-8] -> RELU", "[", 0, "this '[' is never closed"),
    ("CONV3-8 -> RELU]", "]", 0, "at character 16: this ']' has no matching '['"),
    ("] -> RELU", "]", 0, "this ']' has no matching '['"),
    ("RELU -> [] -> TANH", "[]", 0, "an empty [ ] group"),
    ("-> FC-2", "->", 0, "'->' with no layer before it"),
    ("FC-2 -> -> RELU", "->", 1, "'->' with no layer before it"),
    ("FC-2 -> RELU ->", "->", 1, "'->' with no layer after it"),
    ("[FC-2 ->] -> RELU", "->", 0, "'->' with no layer after it"),
    ("FC-2*2", "*2", 0, "'*N' repeats a bracketed group; write [FC-2]*2"),
    ("RELU -> *3", "*3", 0, "'*N' repeats a bracketed group"),
    ("[FC-2]*-1", "*-1", 0, "'*' must be followed by a repeat count N >= 0"),
    ("[FC-2]*", "*", 0, "'*' must be followed by a repeat count"),
    ("FC-2 , RELU", ",", 0, "unexpected character ','"),
    ("FC-2 -> INPUT[3x8x8]", "INPUT", 0, "INPUT can only come first"),
    ("INPUT[3x8] -> FC-2", "INPUT[3x8]", 0, "INPUT takes the volume as CxHxW in integers (e.g. "
     "INPUT[3x32x32]), got '3x8'"),
    ("INPUT[784] -> FC-2", "INPUT[784]", 0, "INPUT takes the volume as CxHxW"),
    ("INPUT[axbxc] -> FC-2", "INPUT[axbxc]", 0, "INPUT takes the volume as CxHxW"),
    ("INPUT -> FC-2", "INPUT", 0, "INPUT needs its volume as INPUT[CxHxW]"),
    ("INPUT[3x8x8]", "INPUT[3x8x8]", 0, "the spec has no layers after INPUT"),
    # the initialisation of CONV, LC and FC
    ("CONV3-8/he/he", "CONV3-8/he/he", 0,
     "not a valid CONV token: it has two initialisations, /he and /he; give one"),
    ("FC-10/xavier/w0.1", "FC-10/xavier/w0.1", 0, "two initialisations, /xavier and /w0.1"),
    ("CONV3-8/s2/p1", "CONV3-8/s2/p1", 0,
     "not a valid CONV token: its options go in one segment (/s2p1, not /s2/p1)"),
    ("CONV3-8/s2/he/s1", "CONV3-8/s2/he/s1", 0, "its options go in one segment, each once"),
    ("CONV3-8/hee", "CONV3-8/hee", 0, "not a valid CONV token: /hee is neither its options "
     "(s, p, d, g) nor an initialisation; the initialisations are he, he_uniform, xavier, "
     "xavier_uniform, or wS for S * randn with S > 0 a decimal (w0.01)"),
    ("LC3-8/kaiming", "LC3-8/kaiming", 0, "/kaiming is neither its options (s, p, d) nor"),
    ("FC-10/wabc", "FC-10/wabc", 0, "not a valid FC token: /wabc is not an initialisation; the "
     "initialisations are he, he_uniform, xavier, xavier_uniform, or wS"),
    ("FC-10/s2", "FC-10/s2", 0, "/s2 is not an initialisation"),
    ("FC-10/w1.2.3", "FC-10/w1.2.3", 0, "/w1.2.3 is not an initialisation"),
    ("FC-10/w", "FC-10/w", 0, "/w is not an initialisation"),
    ("FC-10/w1e-3", "FC-10/w1e-3", 0,
     "not a valid FC token: the scale S of /wS is written as a plain decimal, /w0.001, not "
     "/w1e-3"),
    ("CONV3-8/W2E1", "CONV3-8/W2E1", 0, "written as a plain decimal, /w20, not /w2e1"),
    ("FC-10/w-1", "FC-10/w-1", 0,
     "the scale S of /wS must be a positive decimal such as /w0.01, got /w-1"),
    ("FC-10/w1e400", "FC-10/w1e400", 0, "must be a positive decimal such as /w0.01, got /w1e400"),
    # a scale the canonical text could not write back is refused as it is read
    ("FC-10/w0", "FC-10/w0", 0, "not a valid FC token: the scale S of /wS must be > 0, got /w0"),
    ("CONV3-4/w0.000", "CONV3-4/w0.000", 0, "the scale S of /wS must be > 0, got /w0.000"),
    ("LC3-4/w0." + "0" * 50 + "1", "LC3-4/w0." + "0" * 50 + "1", 0,
     "the scale S of /wS is below what a float32 weight holds (1.18e-38 to 3.4e+38)"),
    ("LC3-4/w0." + "0" * 400 + "1", "LC3-4/w0." + "0" * 400 + "1", 0,
     "the scale S of /wS is below what a float32 weight holds"),
    ("FC-2/w" + "9" * 40, "FC-2/w" + "9" * 40, 0,
     "the scale S of /wS is above what a float32 weight holds (1.18e-38 to 3.4e+38)"),
    ("FC-2/w" + "9" * 400, "FC-2/w" + "9" * 400, 0, "is above what a float32 weight holds"),
    ("FC-10/gaussian", "FC-10/gaussian", 0,
     "a Gaussian initialisation is written wS with its scale S, e.g. /w0.01"),
    ("CONV3-8/", "CONV3-8/", 0, "not a valid CONV token; the form is CONVk-n[/sSpPdDgG][/init]"),
    ("CONV3-8//he", "CONV3-8//he", 0, "not a valid CONV token; the form is"),
    ("POOL2/he", "POOL2/he", 0, "POOL takes no initialisation (only CONV, LC and FC have "
     "weights to draw); the form is POOLk[/S][pP], e.g. POOL2"),
    ("RES-8/w0.01", "RES-8/w0.01", 0, "RES takes no initialisation"),
    ("BN/xavier", "BN/xavier", 0, "BN takes no initialisation"),
    ("LN/he", "LN/he", 0, "LN takes no initialisation"),
    # the dropout mode
    ("DROPOUT0.5/infer/infer", "DROPOUT0.5/infer/infer", 0,
     "not a valid DROPOUT token: a DROPOUT has one mode, /train or /infer, not /infer/infer"),
    ("DROPOUT/inverted", "DROPOUT/inverted", 0, "not a valid DROPOUT token: /inverted is not a "
     "dropout mode; the modes are /train (upscale_in_train, the default) and /infer "
     "(downscale_in_infer)"),
    ("DROPOUT0.5/he", "DROPOUT0.5/he", 0, "/he is not a dropout mode"),
    ("DROPOUT0.5/", "DROPOUT0.5/", 0, "not a valid DROPOUT token; the form is DROPOUT[p][/mode]"),
    # LN and GN
    ("GN", "GN", 0, "not a valid GN token; the form is GNg, e.g. GN32"),
    ("GN-4", "GN-4", 0, "not a valid GN token; the form is GNg"),
    ("GN2.5", "GN2.5", 0, "not a valid GN token"),
    ("LN2", "LN2", 0, "not a valid LN token; the form is LN"),
    ("GN99999999999", "GN99999999999", 0, "99,999,999,999 is larger than any layer can be"),
    ("GNN", "GNN", 0, "unknown layer GNN; did you mean GN?"),
]


@pytest.mark.parametrize("text, token, occurrence, message", SYNTAX,
                         ids=[f"{i}-{case[1]}" for i, case in enumerate(SYNTAX)])
def test_syntax_errors_point_at_the_token(text, token, occurrence, message):
    err, lines = _error(text, (3, 8, 8))
    assert message in lines[0], lines[0]
    _check_caret(lines, text, token, occurrence)
    with pytest.raises(SpecError) as info:
        parse(text)
    assert str(info.value) == str(err)


def test_a_runaway_repeat_count_is_refused_before_expanding():
    text = "INPUT[1x8x8] -> CONV3-2 -> [[RELU]*1000 -> TANH]*1000 -> FC-2"
    _, lines = _error(text)
    assert "the spec expands to 1,001,002 layers, more than the 10,000" in lines[0]
    _check_caret(lines, text, "[[RELU]*1000 -> TANH]*1000")
    assert len(build("[RELU]*9999 -> TANH", (1, 1, 1))) == 10_000


def test_the_module_docstring_describes_every_token():
    """The grammar table of cnnkit.models.spec's docstring (the reference page's token table is
    generated from LAYERS) names every token, and gives in full the form of every token with
    an initialisation or a mode."""
    import re

    from cnnkit.models import spec
    table = spec.__doc__[spec.__doc__.index("Layers ("):spec.__doc__.index("k, S, P and D")]
    for name, form in LAYERS.items():
        assert re.search(rf"(?<![A-Z0-9]){name}(?![A-Z])", table), name
        if "[/init]" in form or "[/mode]" in form:
            assert form in table, form


def test_unknown_layer_lists_every_known_form():
    _, lines = _error("INPUT[3x8x8] -> BOGUS")
    assert all(form in lines[0] for form in LAYERS.values())


def test_a_multiline_spec_echoes_on_one_line():
    text = "INPUT[1x8x8] ->\n  CONV3-4 ->\n\tPOOL3"
    _, lines = _error(text)
    assert "\n" not in lines[1] and "\t" not in lines[1]
    assert lines[2].index("^") == lines[1].index("POOL3") and lines[2].strip() == "^^^^^"


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_spec_says_so(text):
    _, lines = _error(text, (3, 8, 8))
    assert lines[0] == "spec: the spec has no layers"


def test_bad_input_shape_argument_is_a_plain_value_error():
    with pytest.raises(ValueError, match=r"input_shape must be a volume \(C, H, W\) of ints"):
        build("FC-2", (3, 8))
    with pytest.raises(ValueError, match="input_shape"):
        build("FC-2", (784,))
    with pytest.raises(ValueError, match="input_shape"):
        build("FC-2", (3.0, 8, 8))


def test_spec_error_is_a_value_error_whose_first_line_stands_alone():
    with pytest.raises(ValueError) as info:
        build("INPUT[3x8x8] -> POOL3")
    first = str(info.value).split("\n")[0]
    assert first.startswith("spec: POOL3 at layer 1 (input 3x8x8): pool:")
    assert info.value.reason in first


# ----------------------------------------------------------------------------- random valid specs

def _conv_options(h, w):
    """Every (token, out_h, out_w) of a CONV/LC that fits an h x w input."""
    found = []
    for k in (1, 2, 3, 5):
        for d in (1, 2):
            for p in (None, 0, 1, 2):
                if p is None and d * (k - 1) % 2:
                    continue
                pad = d * (k - 1) // 2 if p is None else p
                span = d * (k - 1) + 1
                for s in (1, 2, 3):
                    if min(h, w) + 2 * pad < span or (h + 2 * pad - span) % s or \
                            (w + 2 * pad - span) % s:
                        continue
                    opts = "".join(f"{c}{v}" for c, v, keep in (("s", s, s != 1), ("p", p, p is
                                   not None), ("d", d, d != 1)) if keep)
                    found.append((k, opts, (h + 2 * pad - span) // s + 1,
                                  (w + 2 * pad - span) // s + 1))
    return found


def _pool_options(h, w):
    return [(k, s, (h - k) // s + 1, (w - k) // s + 1)
            for k in (1, 2, 3) for s in (1, 2, 3)
            if min(h, w) >= k and (h - k) % s == 0 and (w - k) % s == 0]


#: initialisation options as written (any case) and as the canonical text writes them
INIT_OPTIONS = [("he", "he"), ("HE_Uniform", "he_uniform"), ("xavier", "xavier"),
                ("Xavier_uniform", "xavier_uniform"), ("w0.01", "w0.01"), ("W.5", "w0.5"),
                ("w2.", "w2"), ("w0.000001", "w0.000001"), ("w010.250", "w10.25")]


def _with_init(draw, stem, opts):
    """``stem`` with its options segment and maybe an initialisation, in a drawn order."""
    segments = [opts] if opts else []
    if draw(st.booleans()):
        segments.insert(draw(st.integers(0, len(segments))),
                        draw(st.sampled_from(INIT_OPTIONS))[0])
    return stem + "".join("/" + seg for seg in segments)


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def random_specs(draw):
    """(text, hand-tracked final shape) of a random CONV/LC/POOL/FC chain whose sizes fit, with
    initialisations, dropout modes and normalisations between."""
    c, h, w = draw(st.integers(1, 3)), draw(st.integers(3, 11)), draw(st.integers(3, 11))
    items, shape = [f"INPUT[{c}x{h}x{w}]"], (c, h, w)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["CONV", "LC", "POOL", "FC"] if len(shape) == 3 else ["FC"]))
        if kind in ("CONV", "LC"):
            k, opts, ho, wo = draw(st.sampled_from(_conv_options(*shape[1:])))
            n = draw(st.integers(1, 6))
            items.append(_with_init(draw, f"{kind}{k}-{n}", opts))
            shape = (n, ho, wo)
        elif kind == "POOL":
            k, s, ho, wo = draw(st.sampled_from(_pool_options(*shape[1:])))
            name = draw(st.sampled_from(["POOL", "AVGPOOL", "L2POOL"]))
            items.append(f"{name}{k}" + ("" if s == k else f"/{s}"))
            shape = (shape[0], ho, wo)
        else:
            n = draw(st.integers(1, 6))
            items.append(_with_init(draw, f"FC-{n}", ""))
            shape = (n,)
        if draw(st.booleans()):
            groups = f"GN{draw(st.sampled_from(_divisors(shape[0])))}"
            items.append(draw(st.sampled_from(["RELU", "BN", "TANH", "LN", groups,
                                               "DROPOUT0.25/infer", "DROPOUT/train"])))
    arrow = draw(st.sampled_from([" -> ", "->", " → "]))
    text = arrow.join(items)
    return (text.lower() if draw(st.booleans()) else text), shape


@settings(max_examples=40)
@given(case=random_specs(), seed=st.integers(0, 2**32 - 1))
def test_random_valid_specs_build_and_trace_the_forward_shape(case, seed):
    text, shape = case
    net = build(text, rng=np.random.default_rng(seed))
    x_shape = parse(text).input_shape
    assert trace(text)[-1].output == shape
    assert net(np.zeros((2, *x_shape), np.float32)).shape == (2, *shape)
    again = build(describe(text), rng=np.random.default_rng(seed))
    assert again.config() == net.config()                # init and mode included
    assert describe(describe(text)) == describe(text)


@given(kind=st.sampled_from(["CONV", "LC", "FC"]), data=st.data())
def test_an_initialisation_in_any_order_and_case_is_written_after_the_options(kind, data):
    opts = "" if kind == "FC" else data.draw(st.sampled_from(["", "s2", "p0", "s2p0d2", "d2s1"]))
    written, canonical = data.draw(st.sampled_from(INIT_OPTIONS))
    stem = "FC-7" if kind == "FC" else f"{kind}3-8"
    segments = [s for s in (opts, written) if s]
    if data.draw(st.booleans()):
        segments.reverse()
    text = stem + "/" + "/".join(segments)
    text = text.lower() if data.draw(st.booleans()) else text
    options = describe(f"{stem}/{opts}") if opts else stem         # the options alone
    assert describe(text) == f"{options}/{canonical}"
    assert parse(describe(text)).nodes[0].args == parse(text).nodes[0].args
