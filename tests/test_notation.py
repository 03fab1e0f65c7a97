"""cnnkit.notation: one writer of a layer token. A layer's label is the spec token that builds it
again, for every kind of token the grammar has, and it is the spec's own canonical text."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import nn, notation
from cnnkit.models import blocks
from cnnkit.models.spec import LAYERS, build, describe, parse


def _config(module) -> dict:
    """A module's config without its initialisation, which the notation does not write (the
    spec gives the classifier FC small Gaussian weights)."""
    cfg = module.config()
    cfg["args"] = {k: v for k, v in cfg["args"].items() if k not in ("init", "weight_scale")}
    return cfg


def rebuild(layer, in_shape):
    """The label of ``layer`` on a per-example ``in_shape``, and the module of the same type that
    the label builds when the spec parses it back (a vector comes from GAP on a D x 1 x 1
    volume)."""
    label = layer.label(in_shape)
    if len(in_shape) == 3:
        net, skip = build(label, in_shape, rng=np.random.default_rng(0)), 0
    else:
        net, skip = build(f"GAP -> {label}", (in_shape[0], 1, 1), rng=np.random.default_rng(0)), 2
    found = [m for top in list(net)[skip:] for m in top.modules() if type(m) is type(layer)]
    assert found, f"{label} built {[type(m).__name__ for m in net]}, no {type(layer).__name__}"
    return label, found[0]


def _res(c_in, c_out, stride):
    return blocks.basic_block(c_in, c_out, stride, rng=np.random.default_rng(0))[0]  # Residual


# (layer, per-example input shape, its label): every kind of token and its options
CASES = [
    # CONV: the default padding is D*(k-1)/2, so a dilated 3x3 with padding 2 writes only d2
    (nn.Conv2d(3, 8, 3, dilation=2, padding=2), (3, 9, 9), "CONV3-8/d2"),
    (nn.Conv2d(3, 8, 3, padding=1), (3, 8, 8), "CONV3-8"),
    (nn.Conv2d(3, 8, 3), (3, 8, 8), "CONV3-8/p0"),
    (nn.Conv2d(3, 8, 3, dilation=2, padding=1), (3, 9, 9), "CONV3-8/p1d2"),
    (nn.Conv2d(3, 8, 3, dilation=2), (3, 9, 9), "CONV3-8/p0d2"),
    (nn.Conv2d(3, 64, 7, stride=2, padding=3), (3, 15, 15), "CONV7-64/s2"),
    (nn.Conv2d(3, 96, 11, stride=4), (3, 227, 227), "CONV11-96/s4p0"),
    (nn.Conv2d(3, 4, 2), (3, 5, 5), "CONV2-4/p0"),                  # an even span: P written
    (nn.Conv2d(3, 4, 4, padding=1), (3, 6, 6), "CONV4-4/p1"),
    (nn.Conv2d(3, 4, 1), (3, 5, 5), "CONV1-4"),
    (nn.Conv2d(3, 4, (3, 1), padding=(1, 0)), (3, 5, 5), "CONV3x1-4"),
    (nn.Conv2d(3, 4, (1, 3), padding=(0, 2), dilation=(1, 2)), (3, 5, 5), "CONV1x3-4/d1x2"),
    (nn.Conv2d(4, 6, 3, stride=(2, 1), padding=1, groups=2), (4, 7, 5), "CONV3-6/s2x1g2"),
    (nn.Conv2d(4, 6, (2, 3), padding=(0, 1)), (4, 5, 5), "CONV2x3-6/p0x1"),
    # LC: the same options, no groups
    (nn.LocallyConnected2d(2, 3, 3, input_size=8, padding=1), (2, 8, 8), "LC3-3"),
    (nn.LocallyConnected2d(2, 3, 3, input_size=(7, 6), stride=(2, 1), padding=(0, 1)),
     (2, 7, 6), "LC3-3/s2x1p0x1"),
    (nn.LocallyConnected2d(2, 3, 3, input_size=9, dilation=2, padding=2), (2, 9, 9), "LC3-3/d2"),
    # POOL, AVGPOOL (with padding) and L2POOL: stride defaults to the window
    (nn.MaxPool2d(2), (3, 8, 8), "POOL2"),
    (nn.MaxPool2d(3, stride=2), (3, 7, 7), "POOL3/2"),
    (nn.MaxPool2d(3, stride=1, padding=1), (3, 5, 5), "POOL3/1p1"),
    (nn.MaxPool2d(3, padding=1), (3, 7, 7), "POOL3p1"),
    (nn.MaxPool2d((3, 2), stride=(2, 2)), (3, 7, 6), "POOL3x2/2"),
    (nn.AvgPool2d(2), (3, 4, 6), "AVGPOOL2"),
    (nn.AvgPool2d(3, stride=2, padding=1), (3, 7, 7), "AVGPOOL3/2p1"),
    (nn.AvgPool2d((3, 2), stride=(1, 2), padding=(1, 0)), (3, 5, 6), "AVGPOOL3x2/1x2p1x0"),
    (nn.L2Pool2d(2), (2, 4, 6), "L2POOL2"),
    (nn.L2Pool2d(3, stride=2), (2, 7, 7), "L2POOL3/2"),
    # FC, on a volume (a Flatten goes first) and on a vector
    (nn.Linear(12, 5), (3, 2, 2), "FC-5"),
    (nn.Linear(7, 10), (7,), "FC-10"),
    # RES: a basic block, its stride written when it subsamples
    (_res(4, 4, 1), (4, 6, 6), "RES-4"),
    (_res(4, 8, 2), (4, 7, 7), "RES-8/s2"),
    # BN on a volume and on a vector
    (nn.BatchNorm2d(3), (3, 4, 4), "BN"),
    (nn.BatchNorm1d(5), (5,), "BN"),
    # DROPOUT: p written out in full, never as an exponent
    (nn.Dropout(0.5), (4, 3, 3), "DROPOUT0.5"),
    (nn.Dropout(0.3), (6,), "DROPOUT0.3"),
    (nn.Dropout(0.0), (6,), "DROPOUT0"),
    (nn.Dropout(1e-5), (6,), "DROPOUT0.00001"),
    (nn.Dropout(0.1 + 0.2), (6,), "DROPOUT0.30000000000000004"),
    # ... and the mode, when it is not the default upscale_in_train
    (nn.Dropout(0.5, "downscale_in_infer"), (6,), "DROPOUT0.5/infer"),
    (nn.Dropout(0.25, mode="downscale_in_infer"), (4, 3, 3), "DROPOUT0.25/infer"),
    (nn.Dropout(0.25, mode="upscale_in_train"), (4, 3, 3), "DROPOUT0.25"),
    # LRN: the window, 5 by default
    (nn.LocalResponseNorm(5), (6, 3, 3), "LRN"),
    (nn.LocalResponseNorm(3), (6, 3, 3), "LRN3"),
    # LN: LayerNorm on a vector, GroupNorm with one group on a volume; GN on either
    (nn.GroupNorm(1, 4), (4, 3, 3), "LN"),
    (nn.LayerNorm(5), (5,), "LN"),
    (nn.GroupNorm(2, 6), (6, 3, 5), "GN2"),
    (nn.GroupNorm(6, 6), (6, 2, 2), "GN6"),
    (nn.GroupNorm(3, 6), (6,), "GN3"),
    # GAP, and the activations
    (nn.GlobalAvgPool2d(), (5, 2, 3), "GAP"),
    (nn.ReLU(), (4, 3, 3), "RELU"),
    (nn.Sigmoid(), (4,), "SIGMOID"),
    (nn.Tanh(), (4, 3, 3), "TANH"),
    (nn.PReLU(4), (4, 3, 3), "PRELU"),
    (nn.PReLU(6), (6,), "PRELU"),
]


@pytest.mark.parametrize("layer, in_shape, label", CASES,
                         ids=[f"{label}-{'x'.join(map(str, s))}" for _, s, label in CASES])
def test_a_label_parses_back_to_the_same_layer(layer, in_shape, label):
    written, again = rebuild(layer, in_shape)
    assert written == label
    assert describe(written) == written              # the spec's canonical text is the label
    assert _config(again) == _config(layer)
    assert again.label(in_shape) == written


def test_the_cases_cover_every_kind_of_token():
    kinds = {parse(label).nodes[0].kind for _, _, label in CASES}
    assert kinds == set(LAYERS)


def test_a_label_never_writes_the_initialisation_a_spec_writes():
    """A label says what the layer computes; the spec's canonical text keeps the init it gave."""
    layers = [(nn.Conv2d(3, 8, 3, stride=2, padding=1, init="xavier"), (3, 9, 9),
               "CONV3-8/s2", "CONV3-8/s2/xavier"),
              (nn.LocallyConnected2d(2, 3, 3, input_size=5, init="gaussian", weight_scale=0.5),
               (2, 5, 5), "LC3-3/p0", "LC3-3/p0/w0.5"),
              (nn.Linear(4, 5, init="he_uniform"), (4,), "FC-5", "FC-5/he_uniform"),
              (nn.Linear(4, 5, init="gaussian", weight_scale=0.01), (4,), "FC-5", "FC-5/w0.01")]
    for layer, in_shape, label, spec in layers:
        assert layer.label(in_shape) == label
        assert describe(spec) == spec
        stem = "GAP -> " if len(in_shape) == 1 else ""
        net = build(stem + spec, in_shape if len(in_shape) == 3 else (in_shape[0], 1, 1))
        assert net[-1].config() == layer.config()          # the spec's init reaches the layer


def test_the_writers_of_the_new_options():
    assert notation.group_norm(1) == notation.LAYER_NORM == "LN"
    assert notation.group_norm(32) == "GN32"
    assert [notation.initialisation(i) for i in ("he", "he_uniform", "xavier", "xavier_uniform")] \
        == ["he", "he_uniform", "xavier", "xavier_uniform"]
    assert notation.initialisation("gaussian") == "w0.01"            # the layer's default scale
    assert notation.initialisation("gaussian", 1e-7) == "w0.0000001"  # never an exponent
    assert notation.fc(10, "gaussian", 2.0) == "FC-10/w2" and notation.fc(10) == "FC-10"
    assert notation.window("CONV", 3, 8, stride=2, init="he") == "CONV3-8/s2/he"
    assert notation.window("LC", 3, 8, init="xavier") == "LC3-8/xavier"
    assert notation.dropout(0.5, "downscale_in_infer") == "DROPOUT0.5/infer"
    assert notation.dropout(0.5, "upscale_in_train") == notation.dropout(0.5) == "DROPOUT0.5"


def test_a_window_whose_span_is_even_always_writes_its_padding():
    assert notation.same_padding(3, 2) == (2, 2) and notation.same_padding((3, 1), (1, 4)) == (1, 0)
    assert notation.same_padding(2) is None and notation.same_padding((3, 4)) is None
    assert notation.window("CONV", 4, 8, padding=(1, 1)) == "CONV4-8/p1"
    assert notation.window("CONV", 3, 8) == "CONV3-8"              # padding None: the default


@st.composite
def conv_layers(draw):
    """A Conv2d of any geometry the grammar writes, and an input its size rule takes."""
    def axis():                                         # (k, s, p, d), near the defaults often
        k, s, d = draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
        p = draw(st.sampled_from([0, 1, 3, (k - 1) // 2, d * (k - 1) // 2]))
        return k, s, p, d

    first = axis()
    hyper = [first, first if draw(st.booleans()) else axis()]
    sizes = []
    for k, s, p, d in hyper:
        span = d * (k - 1) + 1
        m = max(0, -(-(1 - span + 2 * p) // s))         # the fewest strides that keep H >= 1
        sizes.append(span - 2 * p + s * (m + draw(st.integers(0, 2))))
    groups = draw(st.sampled_from([1, 2]))
    (kh, sh, ph, dh), (kw, sw, pw, dw) = hyper
    layer = nn.Conv2d(2 * groups, 2 * groups, (kh, kw), stride=(sh, sw), padding=(ph, pw),
                      dilation=(dh, dw), groups=groups)
    return layer, (2 * groups, *sizes)


@given(conv_layers())
def test_any_conv_label_parses_back_to_the_same_layer(case):
    layer, in_shape = case
    written, again = rebuild(layer, in_shape)
    assert describe(written) == written
    assert _config(again) == _config(layer)


@given(st.floats(min_value=float(np.finfo(np.float32).tiny),
                 max_value=float(np.finfo(np.float32).max)))
def test_any_scale_a_float32_weight_holds_is_written_back_exactly(scale):
    """A run rebuilds its net from the canonical text, so ``wS`` must read back as the same S."""
    text = notation.fc(3, "gaussian", scale)
    assert "e" not in text and parse(text).nodes[0].args["weight_scale"] == scale
    assert describe(text) == text
