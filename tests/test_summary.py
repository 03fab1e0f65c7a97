"""cnnkit.summary: the notes' VGG-16 table line by line, shapes and parameters against real forward
passes, MACs against counts of the products a conv really forms, and the training estimate."""

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import functional as F
from cnnkit import nn
from cnnkit.nn import layers
from cnnkit.nn.containers import brief
from cnnkit.summary import (OPTIMIZER_SLOTS, abbreviate, format_bytes, format_layers,
                            format_notes, summarize, trace)

# The notes live beside the checkout (../shared/notes), or wherever CNNKIT_NOTES says.
NOTES = Path(os.environ.get("CNNKIT_NOTES", Path(__file__).resolve().parents[2] / "shared" / "notes"
                            / "001_7596820256fa9327.txt"))

# The table as the notes print it (section "VGGNet的细节"), for a checkout without the notes file;
# test_the_inline_copy_is_the_notes_table keeps the two the same.
NOTES_TABLE_COPY = """\
INPUT: [224x224x3] memory: 224*224*3=150K weights: 0
CONV3-64: [224x224x64] memory: 224*224*64=3.2M weights: (3*3*3)*64 = 1,728
CONV3-64: [224x224x64] memory: 224*224*64=3.2M weights: (3*3*64)*64 = 36,864
POOL2: [112x112x64] memory: 112*112*64=800K weights: 0
CONV3-128: [112x112x128] memory: 112*112*128=1.6M weights: (3*3*64)*128 = 73,728
CONV3-128: [112x112x128] memory: 112*112*128=1.6M weights: (3*3*128)*128 = 147,456
POOL2: [56x56x128] memory: 56*56*128=400K weights: 0
CONV3-256: [56x56x256] memory: 56*56*256=800K weights: (3*3*128)*256 = 294,912
CONV3-256: [56x56x256] memory: 56*56*256=800K weights: (3*3*256)*256 = 589,824
CONV3-256: [56x56x256] memory: 56*56*256=800K weights: (3*3*256)*256 = 589,824
POOL2: [28x28x256] memory: 28*28*256=200K weights: 0
CONV3-512: [28x28x512] memory: 28*28*512=400K weights: (3*3*256)*512 = 1,179,648
CONV3-512: [28x28x512] memory: 28*28*512=400K weights: (3*3*512)*512 = 2,359,296
CONV3-512: [28x28x512] memory: 28*28*512=400K weights: (3*3*512)*512 = 2,359,296
POOL2: [14x14x512] memory: 14*14*512=100K weights: 0
CONV3-512: [14x14x512] memory: 14*14*512=100K weights: (3*3*512)*512 = 2,359,296
CONV3-512: [14x14x512] memory: 14*14*512=100K weights: (3*3*512)*512 = 2,359,296
CONV3-512: [14x14x512] memory: 14*14*512=100K weights: (3*3*512)*512 = 2,359,296
POOL2: [7x7x512] memory: 7*7*512=25K weights: 0
FC: [1x1x4096] memory: 4096 weights: 7*7*512*4096 = 102,760,448
FC: [1x1x4096] memory: 4096 weights: 4096*4096 = 16,777,216
FC: [1x1x1000] memory: 1000 weights: 4096*1000 = 4,096,000
TOTAL memory: 24M * 4 bytes ~= 93MB / image (only forward! ~*2 for bwd)
TOTAL params: 138M parameters""".splitlines()


def read_notes_table():
    """The table's lines from the notes: from "INPUT: [224x224x3]" to "TOTAL params"."""
    lines = [line.rstrip() for line in NOTES.read_text(encoding="utf-8").splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("INPUT: [224x224x3]"))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("TOTAL params"))
    return lines[start:end + 1]


def notes_table():
    return read_notes_table() if NOTES.exists() else NOTES_TABLE_COPY


def test_the_inline_copy_is_the_notes_table():
    if not NOTES.exists():
        pytest.skip(f"the notes are not at {NOTES} (set CNNKIT_NOTES)")
    assert read_notes_table() == NOTES_TABLE_COPY


# ----------------------------------------------------------------------------- VGG-16

def cheap_weight(shape, *args, **kwargs):
    """A weight of zeros that takes no memory (a broadcast view), for a 138M-parameter net that
    is only traced; sizes, and so every count, are those of the real arrays."""
    p = nn.Parameter(np.zeros(1, np.float32))
    p.data = p.grad = np.broadcast_to(np.float32(0), shape)
    return p


def build_vgg16():
    """VGG-16 (configuration D of Simonyan & Zisserman 2015): 13 3x3 convs with padding 1, five
    2x2 max pools, FC-4096 -> FC-4096 -> FC-1000 with ReLU and dropout."""
    net, c = [], 3
    for repeat, f in ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)):
        for _ in range(repeat):
            net += [nn.Conv2d(c, f, 3, padding=1), nn.ReLU()]
            c = f
        net.append(nn.MaxPool2d(2))
    net += [nn.Flatten(), nn.Linear(7 * 7 * 512, 4096), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 1000)]
    return nn.Sequential(*net)


@pytest.fixture(scope="module")
def vgg16():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(layers, "init_weight", cheap_weight)
        return build_vgg16()


def notes_memory(line):
    """The number of values a row of the notes' table holds: 224*224*64 or 4096."""
    expr = re.search(r"memory: ([\d*]+)", line).group(1)
    return math.prod(int(v) for v in expr.split("*"))


def test_vgg16_reproduces_every_row_of_the_notes_table(vgg16):
    table = notes_table()
    rows, notes_params = table[:-2], table[-1]
    lines = format_notes(summarize(vgg16, (3, 224, 224))).splitlines()
    assert len(rows) == 22
    for i, expected in enumerate(rows):
        assert lines[i] == expected, f"row {i}"
    assert lines[len(rows) + 1] == notes_params              # "TOTAL params: 138M parameters"


def test_vgg16_total_memory_is_the_sum_of_the_notes_rows_not_their_24M(vgg16):
    table = notes_table()
    values = sum(notes_memory(line) for line in table[:-2])
    summary = summarize(vgg16, (3, 224, 224))
    assert summary.activations == values == 15_237_608
    assert summary.forward_bytes == 4 * values
    # The notes print 24M / 93MB, which their own rows do not add up to (cs231n.github.io #88);
    # the line keeps their wording with the true figures: 15.2M values, 58 MiB.
    assert abs(values - 24e6) > 8e6
    expected = re.sub(r"\d+M \* 4 bytes ~= \d+MB",
                      f"{values / 1e6:.1f}M * 4 bytes ~= {round(4 * values / 2**20)}MB",
                      table[-2])
    assert format_notes(summary).splitlines()[len(table) - 2] == expected


def test_vgg16_parameters_weights_and_macs(vgg16):
    table = notes_table()
    summary = summarize(vgg16, (3, 224, 224))
    assert summary.params == vgg16.num_parameters() == 138_357_544   # the published count
    notes_weights = [int(line.rsplit("= ", 1)[1].replace(",", "")) if "= " in line else 0
                     for line in table[1:-2]]
    assert summary.weights == sum(notes_weights)
    # A conv's MACs are its weights times its output positions; an FC's are its weights.
    conv_macs = sum(w * notes_memory(line) // int(re.search(r"-(\d+):", line).group(1))
                    for w, line in zip(notes_weights, table[1:-2]) if line.startswith("CONV"))
    fc_macs = sum(w for w, line in zip(notes_weights, table[1:-2]) if line.startswith("FC"))
    rows = summary.rows
    assert sum(r.macs for r in rows if isinstance(r.module, nn.Conv2d)) == conv_macs \
        == 15_346_630_656
    assert sum(r.macs for r in rows if isinstance(r.module, nn.Linear)) == fc_macs == 123_633_664
    assert summary.macs == 15_470_264_320
    biases = sum(math.prod(r.out_shape) for r in rows            # one bias add per output
                 if isinstance(r.module, (nn.Conv2d, nn.Linear)))
    relus = sum(math.prod(r.out_shape) for r in rows if isinstance(r.module, nn.ReLU))
    pools = sum(3 * math.prod(r.out_shape) for r in rows if isinstance(r.module, nn.MaxPool2d))
    assert summary.flops == 2 * summary.macs + biases + relus + pools


def test_vgg16_training_estimate_has_the_notes_three_sources(vgg16):
    summary = summarize(vgg16, (3, 224, 224), batch=64, optimizer="momentum")
    layer_values = 15_237_608 - 3 * 224 * 224
    largest = (3 * 3 * 64) * (224 * 224)                # the second conv: 64 channels in
    assert [p.values for p in summary.training] == [
        layer_values * 2 * 64, 3 * 224 * 224 * 64, 138_357_544 * 3, largest * 64]
    assert summary.im2col == ("2", 3 * 3 * 64, 224 * 224)
    assert summary.training_bytes == 4 * sum(p.values for p in summary.training)
    text = format_notes(summary)
    assert "TOTAL training:" in text and format_bytes(summary.training_bytes) in text


# ----------------------------------------------------------------------------- shapes vs forward

def record_forward_shapes(model, x):
    """Run ``model`` on x and return {dotted name: (in shape, out shape)} of every module,
    per example, by wrapping each module's forward on the instance."""
    seen = {}
    for name, module in model.named_modules():
        def wrapped(v, _name=name, _forward=module.forward):
            out = _forward(v)
            seen[_name] = (tuple(np.shape(v)[1:]), tuple(np.shape(out)[1:]))
            return out
        object.__setattr__(module, "forward", wrapped)
    try:
        model.forward(x)
    finally:
        for _, module in model.named_modules():
            object.__delattr__(module, "forward")
    return seen


def random_stage(rng, c, h, w):
    """One random layer (or block) for a (c, h, w) input that the size rule accepts."""
    kind = rng.choice(["conv", "group", "lc", "pool", "bn", "act", "res", "concat", "lrn"])
    if kind in ("conv", "group"):
        g = int(rng.choice([d for d in (1, 2, 3) if c % d == 0])) if kind == "group" else 1
        f = g * int(rng.integers(1, 4))
        k = int(rng.integers(1, min(h, w, 4) + 1))
        return nn.Conv2d(c, f, k, stride=int(rng.integers(1, 3)), padding=int(rng.integers(0, 2)),
                         dilation=1 if k > (min(h, w) + 1) // 2 else int(rng.integers(1, 3)),
                         groups=g, bias=bool(rng.integers(2)), strict=False, rng=rng)
    if kind == "lc":
        k = int(rng.integers(1, min(h, w, 3) + 1))
        return nn.LocallyConnected2d(c, int(rng.integers(1, 4)), k, (h, w), stride=(1, 2),
                                     strict=False, rng=rng)
    if kind == "pool":
        pool = [nn.MaxPool2d, nn.AvgPool2d, nn.L2Pool2d][int(rng.integers(3))]
        k = int(rng.integers(1, min(h, w, 3) + 1))
        return pool(k, stride=int(rng.integers(1, 3)), strict=False)
    if kind == "bn":
        return nn.BatchNorm2d(c)
    if kind == "act":
        return [nn.ReLU(), nn.LeakyReLU(0.1), nn.Sigmoid(), nn.Tanh(),
                nn.Dropout(0.2, rng=rng)][int(rng.integers(5))]
    if kind == "lrn":
        return nn.LocalResponseNorm(int(rng.integers(1, 4)))
    if kind == "res":
        f, s = c + int(rng.integers(0, 3)), int(rng.integers(1, 3))
        body = nn.Sequential(nn.Conv2d(c, f, 3, s, 1, strict=False, rng=rng), nn.BatchNorm2d(f),
                             nn.ReLU(), nn.Conv2d(f, f, 3, padding=1, rng=rng))
        short = None if (f, s) == (c, 1) else [
            nn.ZeroPadShortcut(c, f, s),
            nn.Sequential(nn.Conv2d(c, f, 1, s, strict=False, rng=rng), nn.BatchNorm2d(f))
        ][int(rng.integers(2))]
        return nn.Sequential(nn.Residual(body, short), nn.ReLU())
    return nn.Concat(nn.Conv2d(c, int(rng.integers(1, 4)), 1, rng=rng),
                     nn.Sequential(nn.Conv2d(c, 2, 1, rng=rng), nn.ReLU(),
                                   nn.Conv2d(2, int(rng.integers(1, 4)), 3, padding=1, rng=rng)),
                     nn.MaxPool2d(3, stride=1, padding=1))


def random_net(rng):
    """A random conv net, its per-example input shape, and an input batch of 2."""
    shape = (int(rng.integers(1, 5)), int(rng.integers(5, 12)), int(rng.integers(5, 12)))
    x = rng.standard_normal((2, *shape))
    net, h = [], x
    for _ in range(int(rng.integers(3, 7))):
        layer = random_stage(rng, *h.shape[1:]).astype(np.float64)
        h = layer.eval()(h)
        net.append(layer)
    tail = [nn.Flatten(), nn.Linear(int(np.prod(h.shape[1:])), 7, rng=rng), nn.BatchNorm1d(7),
            nn.Tanh(), nn.Linear(7, 3, rng=rng)]
    if rng.integers(2):
        tail = [nn.GlobalAvgPool2d(), nn.Flatten(), nn.Linear(h.shape[1], 7, rng=rng)] + tail[2:]
    model = nn.Sequential(*net, *tail).astype(np.float64).eval()
    return model, shape, x


@pytest.mark.parametrize("draw", range(8))
def test_random_nets_trace_the_shapes_and_parameters_of_a_forward_pass(draw, rng):
    model, shape, x = random_net(rng)
    rows = trace(model, shape)
    seen = record_forward_shapes(model, x)
    leaves = [name for name, m in model.named_modules() if not m.children()]
    assert [r.name for r in rows if not r.module.children()] == leaves
    for row in rows:
        assert (row.in_shape, row.out_shape) == seen[row.name], f"{row.name} {brief(row.module)}"
        own = row.module.num_parameters() if not row.module.children() else 0
        assert row.params == own, row.name
        assert row.depth == len(row.name.split("."))
    assert sum(r.params for r in rows) == model.num_parameters()
    assert rows[-1].out_shape == model(x).shape[1:]


def test_residual_and_concat_rows_follow_their_children(rng):
    body = nn.Sequential(nn.Conv2d(4, 8, 3, 2, 1, bias=False, strict=False, rng=rng),
                         nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, rng=rng))
    short = nn.Sequential(nn.Conv2d(4, 8, 1, 2, bias=False, strict=False, rng=rng),
                          nn.BatchNorm2d(8))
    branches = nn.Concat(nn.Conv2d(8, 3, 1, rng=rng), nn.MaxPool2d(3, stride=1, padding=1))
    model = nn.Sequential(nn.Residual(body, short), nn.ReLU(), branches)
    rows = trace(model, (4, 9, 9))
    assert [(r.name, r.label, r.out_shape) for r in rows] == [
        ("0.body.0", "CONV3-8/s2", (8, 5, 5)), ("0.body.1", "BN", (8, 5, 5)),
        ("0.body.2", "RELU", (8, 5, 5)), ("0.body.3", "CONV3-8", (8, 5, 5)),
        ("0.shortcut.0", "CONV1-8/s2", (8, 5, 5)), ("0.shortcut.1", "BN", (8, 5, 5)),
        ("0", "RES-8/s2", (8, 5, 5)), ("1", "RELU", (8, 5, 5)),
        ("2.0", "CONV1-3", (3, 5, 5)), ("2.1", "POOL3/1p1", (8, 5, 5)),
        ("2", "CONCAT-11", (11, 5, 5))]
    assert model(rng.standard_normal((2, 4, 9, 9))).shape[1:] == rows[-1].out_shape
    res, concat = rows[6], rows[-1]
    assert (res.params, res.activations, res.flops) == (0, 8 * 5 * 5, 8 * 5 * 5)
    assert (concat.params, concat.activations, concat.flops) == (0, 11 * 5 * 5, 0)
    summary = summarize(model, (4, 9, 9))
    in_place = [r.name for r in rows if r.in_place]
    assert in_place == ["0.body.2", "1"]
    assert summary.activations == 4 * 9 * 9 + sum(math.prod(r.out_shape) for r in rows
                                                  if r.name not in in_place)


def test_residual_and_concat_mismatches_name_the_block(rng):
    bad_res = nn.Sequential(nn.ReLU(), nn.Residual(nn.Conv2d(4, 4, 3, 2, 1, strict=False)))
    with pytest.raises(ValueError, match=r"^layer 1 Residual\(\.\.\.\): the body's output "
                                         r"\(4, 5, 5\) per example differs from the input"):
        trace(bad_res, (4, 9, 9))
    bad_cat = nn.Concat(nn.Conv2d(4, 2, 1), nn.Conv2d(4, 2, 3))
    with pytest.raises(ValueError, match=r"Concat\(\.\.\.\): the branches' outputs \(2, 9, 9\), "
                                         r"\(2, 7, 7\) per example differ"):
        trace(bad_cat, (4, 9, 9))


# ----------------------------------------------------------------------------- counts

def ones_padded_with_ones(shape, pad):
    return np.pad(np.ones(shape), ((0, 0), (0, 0), (pad[0],) * 2, (pad[1],) * 2),
                  constant_values=1.0)


@pytest.mark.parametrize("draw", range(4))
def test_conv_macs_count_every_product_the_conv_forms(draw, rng):
    g = int(rng.integers(1, 4))
    c, f = g * int(rng.integers(1, 4)), g * int(rng.integers(1, 4))
    k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    pad, stride, dil = (int(rng.integers(0, 2)), 1), (int(rng.integers(1, 3)), 2), (1, 2)
    h, w = int(rng.integers(8, 13)), int(rng.integers(8, 13))
    conv = nn.Conv2d(c, f, k, stride, pad, dil, groups=g, strict=False, rng=rng)
    (row,) = trace(conv, (c, h, w))
    # With ones everywhere, padding included as ones, each output sums the products it forms.
    out, _ = F.conv2d_forward(ones_padded_with_ones((1, c, h, w), pad), np.ones(conv.weight.shape),
                              None, stride, 0, dil, groups=g, strict=False)
    assert row.out_shape == out.shape[1:]
    assert row.macs == int(out.sum())
    assert row.flops == 2 * row.macs + out.size
    assert row.weights == conv.weight.size and row.params == conv.num_parameters()
    per_group = f"{c}/{g}" if g > 1 else f"{c}"
    assert row.formula == f"({k[0]}*{k[1]}*{per_group})*{f}"


def test_locally_connected_and_linear_macs(rng):
    lc = nn.LocallyConnected2d(3, 4, (2, 3), (7, 9), stride=(1, 2), padding=(1, 0),
                               bias=False, rng=rng)
    (row,) = trace(lc, (3, 7, 9))
    out, _ = F.locally_connected2d_forward(ones_padded_with_ones((1, 3, 7, 9), (1, 0)),
                                           np.ones(lc.weight.shape), None, (1, 2))
    assert (row.macs, row.flops, row.weights) == (int(out.sum()), 2 * int(out.sum()),
                                                  lc.weight.size)
    assert row.formula == "8*4*(2*3*3)*4" and row.weights == 8 * 4 * 4 * 3 * 2 * 3
    fc = nn.Sequential(nn.Linear(12, 5, rng=rng))
    (row,) = trace(fc, (12,))
    assert (row.macs, row.flops, row.formula) == (int((np.ones(12) @ np.ones((12, 5))).sum()),
                                                  2 * 60 + 5, "12*5")


def test_flops_of_the_layers_without_weights_per_output_value(rng):
    model = nn.Sequential(
        nn.BatchNorm2d(4), nn.ReLU(), nn.LeakyReLU(), nn.Sigmoid(), nn.Tanh(),
        nn.LocalResponseNorm(3), nn.Dropout(0.5, rng=rng),
        nn.Dropout(0.5, "downscale_in_infer", rng=rng), nn.MaxPool2d(3, stride=1),
        nn.AvgPool2d(2), nn.L2Pool2d((1, 2)), nn.Residual(nn.ReLU()),
        nn.Concat(nn.ZeroPadShortcut(4, 6), nn.MaxPool2d(1)), nn.GlobalAvgPool2d())
    rows = trace(model, (4, 8, 10))
    v = 4 * 8 * 10
    assert [r.out_shape for r in rows[8:]] == [(4, 6, 8), (4, 3, 4), (4, 3, 2), (4, 3, 2),
                                               (4, 3, 2), (6, 3, 2), (4, 3, 2), (10, 3, 2),
                                               (10, 1, 1)]
    assert [r.flops for r in rows] == [2 * v, v, 2 * v, 3 * v, v, (2 * 3 + 3) * v, 0, v,
                                       (9 - 1) * 192, 4 * 48, (2 * 2) * 24, 24, 24, 0, 0, 0,
                                       10 * (3 * 2)]
    assert sum(r.macs for r in rows) == 0 and summarize(model, (4, 8, 10)).im2col is None


def test_alexnet_first_conv_gives_the_notes_im2col_of_363_by_3025(rng):
    conv = nn.Conv2d(3, 96, 11, stride=4, rng=rng)
    summary = summarize(conv, (3, 227, 227), batch=2)
    (row,) = summary.rows
    assert (row.label, row.out_shape) == ("CONV11-96/s4p0", (96, 55, 55))
    assert summary.im2col == ("", 363, 3025)
    assert summary.training[-1].values == 363 * 3025 * 2
    grouped = nn.Conv2d(96, 256, 5, padding=2, groups=2, rng=rng)     # AlexNet's second conv
    assert summarize(grouped, (96, 27, 27)).im2col == ("", 48 * 5 * 5, 27 * 27)


@pytest.mark.parametrize("optimizer", list(OPTIMIZER_SLOTS))
def test_training_estimate_of_a_small_net_by_hand(optimizer, rng):
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(4 * 4 * 4, 10, rng=rng))
    s = summarize(net, (3, 8, 8), batch=5, dtype="float64", optimizer=optimizer)
    params = (3 * 3 * 3 * 4 + 4) + (64 * 10 + 10)
    slots = {"sgd": 0, "momentum": 1, "nesterov": 1, "adagrad": 1, "rmsprop": 1, "adam": 2}
    assert (s.params, s.input_activations) == (params, 192)
    assert s.activations == 192 + 256 + 64 + 10              # ReLU and Flatten in place
    assert s.forward_bytes == 8 * s.activations
    expected = [(256 + 64 + 10) * 2 * 5, 192 * 5, params * (2 + slots[optimizer]),
                (3 * 3 * 3) * (8 * 8) * 5]
    assert [p.values for p in s.training] == expected
    assert [p.nbytes for p in s.training] == [8 * v for v in expected]
    assert s.training_bytes == 8 * sum(expected)
    assert s.macs == (27 * 4 * 64) + 64 * 10
    assert s.flops == 2 * s.macs + 4 * 64 + 10 + 256 + 3 * 64      # biases, ReLU, 2x2 max


def test_unknown_modules_are_traced_by_a_forward_pass_and_left_as_they_were(rng):
    class Crop(nn.Module):
        """Drops a border of 1 and scales; a layer summary has no rule for."""

        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(np.ones(3))        # float64: the pass must use it
            self.seen = []

        def forward(self, x):
            self.seen.append((x.dtype, self.training))
            self._cache = x.shape
            return x[:, :, 1:-1, 1:-1] * self.scale.data[:, None, None]

    class Odd(nn.ReLU):                                  # a known type with its own forward
        def forward(self, x):
            return np.concatenate([x, x], axis=1)

    crop, odd = Crop(), Odd()
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, rng=rng), crop, odd,
                          nn.BatchNorm2d(6)).train()
    object.__setattr__(crop, "_cache", "kept")
    rows = trace(model, (2, 6, 7))
    assert [(r.label, r.out_shape, r.counted, r.params) for r in rows[1:3]] == [
        ("Crop", (3, 4, 5), False, 3), ("Odd", (6, 4, 5), False, 0)]
    assert rows[-1].out_shape == (6, 4, 5)
    assert crop.seen == [(np.float64, False)] and crop.training and model[3].training
    assert crop._cache == "kept"
    assert "?" in format_layers(summarize(model, (2, 6, 7)))


def test_a_geometry_error_names_the_layer_as_the_forward_does(rng):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, rng=rng), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2))
    with pytest.raises(ValueError) as traced:
        trace(model, (3, 10, 10))
    with pytest.raises(ValueError) as forward:
        model(np.zeros((1, 3, 10, 10), np.float32))
    assert str(traced.value) == str(forward.value)
    assert str(traced.value).startswith("layer 2 Conv2d(4, 4, kernel_size=(3, 3), stride=(2, 2)):"
                                        " conv2d: (W - F + 2P)/S + 1 = (8 - 3 + 0)/2 + 1")
    nested = nn.Sequential(nn.Residual(nn.Sequential(nn.MaxPool2d(3))))
    with pytest.raises(ValueError, match=r"^layer 0\.body\.0 MaxPool2d\(kernel_size=\(3, 3\)\): "
                                         r"max_pool2d: \(W - F \+ 2P\)/S \+ 1 = \(8 - 3"):
        trace(nested, (2, 8, 8))
    with pytest.raises(ValueError, match=r"^layer 1 Linear\(in_features=10, out_features=2\): "
                                         r"Linear: .* has D = 12 features, expected in_features "
                                         r"= 10"):
        trace(nn.Sequential(nn.Flatten(), nn.Linear(10, 2)), (3, 2, 2))
    with pytest.raises(ValueError, match=r"layer 0 Conv2d.*: conv2d: the input has C = 2 channels "
                                         r"but the layer expects 3"):
        trace(model, (2, 10, 10))


def test_summarize_rejects_bad_arguments(rng):
    net = nn.Sequential(nn.Linear(4, 2, rng=rng))
    for kwargs, message in (({"batch": 0}, "batch must be >= 1, got 0"),
                            ({"dtype": "int32"}, "floating-point type.*int32"),
                            ({"optimizer": "lbfgs"}, "optimizer must be one of sgd, .*'lbfgs'")):
        with pytest.raises(ValueError, match=message):
            summarize(net, (4,), **kwargs)
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\) or \(D,\).*\(0, 4\)"):
        trace(net, (0, 4))


# ----------------------------------------------------------------------------- rendering

def test_notes_lines_of_other_layer_kinds(rng):
    model = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=2, rng=rng), nn.LocalResponseNorm(5),
        nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(3, stride=2, padding=1, strict=False),
        nn.LocallyConnected2d(8, 4, 3, 8, padding=1, rng=rng), nn.GlobalAvgPool2d(),
        nn.Flatten(), nn.Linear(4, 2, rng=rng))
    lines = format_notes(summarize(model, (3, 31, 31))).splitlines()
    assert lines[:9] == [
        "INPUT: [31x31x3] memory: 31*31*3=2883 weights: 0",
        "CONV5-8/s2: [16x16x8] memory: 16*16*8=2048 weights: (5*5*3)*8 = 600",
        "LRN: [16x16x8] memory: 16*16*8=2048 weights: 0",
        "BN: [16x16x8] memory: 16*16*8=2048 weights: 8",
        "AVGPOOL3/2p1: [8x8x8] memory: 8*8*8=512 weights: 0",
        "LC3-4: [8x8x4] memory: 8*8*4=256 weights: 8*8*(3*3*8)*4 = 18,432",
        "GAP: [1x1x4] memory: 1*1*4=4 weights: 0",
        "FC: [1x1x2] memory: 2 weights: 1*1*4*2 = 8",
        "TOTAL memory: 9801 * 4 bytes ~= 38KB / image (only forward! ~*2 for bwd)"]
    assert 2883 + 3 * 2048 + 512 + 256 + 4 + 2 == 9801
    params = (5 * 5 * 3 * 8 + 8) + 2 * 8 + (8 * 8 * 4 * 8 * 3 * 3 + 4 * 8 * 8) + (4 * 2 + 2)
    assert model.num_parameters() == params == 19_322
    assert lines[9] == "TOTAL params: 19.3K parameters"


@given(st.integers(0, 10**13))
def test_abbreviate_keeps_two_significant_figures_from_ten_thousand(count):
    text = abbreviate(count)
    if count < 10_000:
        assert text == str(count)
        return
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT])", text)
    assert m, text
    value = float(m.group(1)) * 1000 ** ("KMGT".index(m.group(2)) + 1)
    assert abs(value - count) <= 0.05 * count
    assert len(m.group(1).replace(".", "").strip("0")) <= 2
    assert 1 <= float(m.group(1)) < 1000


def test_abbreviate_and_format_bytes_on_the_notes_figures():
    assert [abbreviate(n) for n in (150_528, 3_211_264, 802_816, 25_088, 4096, 1000)] == [
        "150K", "3.2M", "800K", "25K", "4096", "1000"]
    assert abbreviate(138_357_544, 3) == "138M" and abbreviate(15_237_608, 3) == "15.2M"
    assert format_bytes(15_237_608 * 4) == "58MB"            # / 1024 / 1024, as the notes do
    assert [format_bytes(n) for n in (512, 5 * 2**20 + 2**19, 1023 * 2**20 + 2**19,
                                      3 * 2**30)] == ["512B", "5.5MB", "1.0GB", "3.0GB"]


def test_format_layers_and_as_dict(rng):
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(64, 10, rng=rng))
    s = summarize(net, (3, 8, 8), batch=4)
    text = format_layers(s)
    lines = text.splitlines()
    assert lines[0].split() == ["Layer", "Description", "Output", "(CxHxW)", "Activations",
                                "Params", "MACs"]
    assert lines[3].split() == ["0", "Conv2d(3,", "4,", "kernel_size=(3,", "3),",
                                "padding=(1,", "1))", "4x8x8", "256", "112", "6,912"]
    assert lines[4].split() == ["1", "ReLU()", "4x8x8", "in", "place", "0", "0"]
    assert f"Total params: {net.num_parameters():,}" in text
    assert f"MACs per image: {s.macs:,}" in text
    d = json.loads(json.dumps(s.as_dict()))
    assert d["totals"]["params"] == net.num_parameters()
    assert d["totals"]["activations"] == s.activations == 192 + 256 + 64 + 10
    assert [r["out_shape"] for r in d["rows"]] == [list(r.out_shape) for r in s.rows]
    assert d["rows"][1]["in_place"] and d["rows"][1]["activations"] == 0
    assert d["im2col"] == {"layer": "0", "rows": 27, "cols": 64}
    assert sum(p["bytes"] for p in d["training"]) == d["training_bytes"] == s.training_bytes


def test_images_within_a_budget_counts_activations_and_im2col():
    from cnnkit.models import build_model
    from cnnkit.nn import shapes_only
    from cnnkit.summary import images_within, summarize

    with shapes_only():
        vgg, shape = build_model("vgg16")
        lenet, small = build_model("lenet-bn")
    s = summarize(vgg, shape)
    per_image = s.forward_bytes + s.im2col[1] * s.im2col[2] * 4
    assert images_within(vgg, shape, 10 * per_image) == 10
    assert images_within(vgg, shape, 10 * per_image - 1) == 9
    assert images_within(vgg, shape, 1) == 1                 # never fewer than one
    assert images_within(lenet, small, 2 ** 30) == 1000       # never more than `most`
    assert images_within(lenet, small, 2 ** 30, most=64) == 64


def test_step_memory_counts_what_a_step_holds():
    from cnnkit.models import build_model
    from cnnkit.nn import shapes_only
    from cnnkit.summary import step_memory, summarize

    with shapes_only():
        vgg, shape = build_model("vgg16", (1, 224, 224), num_classes=10)
    s = summarize(vgg, shape, batch=64)
    need = step_memory(vgg, shape, 64)
    # more than the parameters with Adam's caches and the kept activations, less than the notes'
    assert (s.params * 4 + s.activations * 64) * 4 < need < s.training_bytes
    assert step_memory(vgg, shape, 128) > need                 # grows with the batch
    assert step_memory(vgg, shape, 64, optimizer="sgd") < need  # and with the optimizer's slots
