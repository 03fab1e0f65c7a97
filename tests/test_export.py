"""ONNX export: every layer's operators against onnxruntime (the oracle), the zoo end to end,
the graph's names and checks, and bad input as one line.

"Matches" means max|onnxruntime - cnnkit| <= 1e-4 * max|cnnkit| in float32, cnnkit's eval
forward being the reference (the issue's target); most layers agree to ~1e-6.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnnkit import nn
from cnnkit.export import ExportError, to_onnx
from cnnkit.models import MODELS, build_model
from cnnkit.nn import shapes_only

from .helpers import require

onnx = require("onnx")
ort = require("onnxruntime")

RTOL = 1e-4
LARGE = {"alexnet", "zfnet", "vgg16", "googlenet", "resnet18"}   # a minute or more together


def session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def randomise_buffers(model, rng):
    """Non-trivial batch-norm statistics and affine parameters, so eval mode is tested."""
    for _, m in model.named_modules():
        if isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
            m.weight.data = rng.uniform(0.5, 1.5, m.weight.shape).astype(np.float32)
            m.bias.data = rng.normal(0, 0.2, m.bias.shape).astype(np.float32)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            k = m.num_features
            m.running_mean = rng.normal(0, 0.5, k).astype(np.float32)
            m.running_var = rng.uniform(0.5, 2.0, k).astype(np.float32)
            m.weight.data = rng.uniform(0.5, 1.5, k).astype(np.float32)
            m.bias.data = rng.normal(0, 0.2, k).astype(np.float32)
    return model


def assert_matches(model, in_shape, rng, batches=(1, 3), **export_args):
    """Export with a dynamic batch and compare onnxruntime with cnnkit's eval forward."""
    model.eval()
    proto = to_onnx(model, in_shape, **export_args)
    sess = session(proto)
    for n in batches:
        x = rng.standard_normal((n, *in_shape)).astype(np.float32)
        ref = model.forward(x)
        (got,) = sess.run(None, {"input": x})
        assert got.shape == ref.shape
        scale = max(float(np.abs(ref).max()), 1e-30)
        err = float(np.abs(got - ref).max()) / scale
        assert err <= RTOL, f"batch {n}: max relative difference {err:.2e}"
    return proto


# ---------------------------------------------------------------------------- the zoo

@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in ["default", *MODELS]])
def test_every_zoo_model_matches_onnxruntime_at_batch_1_and_dynamic_3(name, rng):
    model, shape = build_model(name, rng=np.random.default_rng(0))
    randomise_buffers(model, rng)
    assert_matches(model, shape, rng)


def test_a_trained_checkpoint_exports_from_the_command_line(tmp_path, rng, capsys):
    from cnnkit.cli import main
    from cnnkit.io import load_model

    runs = tmp_path / "runs"
    assert main(["train", "--limit", "300", "--val-size", "50", "--epochs", "1", "--out",
                 str(runs), "--name", "q", "--no-progress"]) == 0
    ckpt, path = runs / "q" / "model.npz", tmp_path / "net.onnx"
    assert main(["export", str(ckpt), "-o", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {path}" in out and "Nx1x28x28" in out and "freshly drawn" not in out
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    assert "cnnkit.preprocessing" in props and "cnnkit.model" in props
    model = load_model(ckpt)
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    (got,) = session(proto).run(None, {"input": x})
    ref = model.forward(x)
    assert np.abs(got - ref).max() <= RTOL * np.abs(ref).max()


# ---------------------------------------------------------------------------- every layer

def conv_cases(rng, count=12):
    for _ in range(count):
        groups = int(rng.choice([1, 1, 2, 3]))
        c, f = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
        k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        d = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        p = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        h = d[0] * (k[0] - 1) + 1 + int(rng.integers(0, 7))
        w = d[1] * (k[1] - 1) + 1 + int(rng.integers(0, 7))
        yield dict(in_channels=c, out_channels=f, kernel_size=k, stride=s, padding=p,
                   dilation=d, groups=groups, bias=bool(rng.integers(2))), (c, h, w)


def test_conv_with_stride_padding_dilation_groups_and_no_bias(rng):
    for args, shape in conv_cases(rng):
        conv = nn.Conv2d(**args, strict=False, rng=rng)
        if conv.bias is not None:
            conv.bias.data = rng.standard_normal(conv.bias.shape).astype(np.float32)
        assert_matches(conv, shape, rng)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_max_and_average_pooling_overlapping_and_padded(pool, rng):
    cls = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
    for kernel, stride, padding, size in ((2, 2, 0, 8), (3, 2, 1, 7), (3, 1, 1, 6),
                                          ((3, 2), (2, 1), (1, 0), 9), (5, 3, 2, 11)):
        layer = cls(kernel, stride, padding, strict=False)
        assert_matches(layer, (3, size, size + 1), rng)


def test_l2_pooling_and_global_average_pooling(rng):
    for kernel, stride in ((2, 2), (3, 2), (3, 1), ((2, 3), (1, 2))):
        assert_matches(nn.L2Pool2d(kernel, stride, strict=False), (2, 7, 8), rng)
    assert_matches(nn.GlobalAvgPool2d(), (5, 6, 7), rng)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6])
def test_local_response_norm_odd_and_even_sizes_on_3d_and_4d_input(size, rng):
    lrn = nn.LocalResponseNorm(size, alpha=0.3, beta=0.75, k=1.5)
    proto = assert_matches(lrn, (7, 4, 5), rng)
    ops = {node.op_type for node in proto.graph.node}
    assert ("LRN" in ops) == (size % 2 == 1)         # ONNX's own LRN where it agrees
    assert_matches(lrn, (7, 6), rng)                 # (N, C, L): written out


def _affine_drawn(layer, rng):
    for p in layer.parameters():
        p.data = rng.uniform(0.5, 1.5, p.shape).astype(np.float32) * rng.choice([-1, 1], p.shape)
    return layer


@pytest.mark.parametrize("opset", [11, 16, 17, 18, 20, 21])
def test_layer_and_group_norm_at_every_opset(opset, rng):
    """LayerNormalization from opset 17 and GroupNormalization (per-channel scale) from 21;
    written out below them, with ReduceMean's axes an attribute before opset 18 and an input
    from it. Every group holds 4 values or more: a group of 2 values drawn close together is
    normalised by a variance near eps, where onnxruntime's float32 sums differed from cnnkit's by
    3e-4 of the output (1 run in about 10)."""
    cases = [(nn.GroupNorm(3, 6), (6, 5, 4)), (nn.GroupNorm(1, 4), (4, 3, 5)),
             (nn.GroupNorm(2, 8, affine=False), (8,)), (nn.GroupNorm(5, 5), (5, 7)),
             (nn.LayerNorm((3, 4)), (2, 3, 4)), (nn.LayerNorm(6, bias=False), (6,)),
             (nn.LayerNorm((2, 3, 4), elementwise_affine=False), (2, 3, 4))]
    for layer, shape in cases:
        proto = assert_matches(_affine_drawn(layer, rng), shape, rng, opset=opset)
        ops = {node.op_type for node in proto.graph.node}
        own = "LayerNormalization" if isinstance(layer, nn.LayerNorm) else "GroupNormalization"
        newest = 17 if isinstance(layer, nn.LayerNorm) else 21
        assert (own in ops) == (opset >= newest), (layer, ops)


def test_activations_and_prelu(rng):
    for layer in (nn.ReLU(), nn.LeakyReLU(0.2), nn.Sigmoid(), nn.Tanh()):
        assert_matches(layer, (3, 4, 5), rng)
        assert_matches(layer, (7,), rng)
    for slopes, shape in ((1, (3, 4, 5)), (3, (3, 4, 5)), (6, (6,)), (1, (6,))):
        prelu = nn.PReLU(slopes)
        prelu.weight.data = rng.uniform(-0.5, 0.5, slopes).astype(np.float32)
        assert_matches(prelu, shape, rng)


def test_batch_norm_1d_and_2d_use_the_running_statistics(rng):
    for layer, shape in ((nn.BatchNorm1d(6, eps=1e-3), (6,)), (nn.BatchNorm2d(4), (4, 5, 3))):
        randomise_buffers(layer, rng)
        layer.train()            # the export is the eval forward whatever the flag
        assert_matches(layer, shape, rng)
        assert not layer.training


def test_dropout_is_its_eval_form_in_both_modes(rng):
    up = nn.Dropout(0.3)
    proto = assert_matches(up, (4, 3, 3), rng)
    assert [n.op_type for n in proto.graph.node] == ["Identity"]
    assert_matches(nn.Dropout(0.3, mode="downscale_in_infer"), (4, 3, 3), rng)


def test_flatten_linear_on_a_volume_and_no_bias(rng):
    net = nn.Sequential(nn.Conv2d(2, 3, 3, rng=rng), nn.Linear(3 * 4 * 4, 5, rng=rng),
                        nn.ReLU(), nn.Flatten(), nn.Linear(5, 4, bias=False, rng=rng))
    assert_matches(net, (2, 6, 6), rng)


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_zero_pad_shortcut_and_residual_blocks(stride, rng):
    from cnnkit.models.blocks import basic_block

    for size in (7, 8):
        assert_matches(nn.ZeroPadShortcut(3, 5, stride), (3, size, size), rng)
        for shortcut in ("zeropad", "projection"):
            block = randomise_buffers(basic_block(3, 6, stride, shortcut=shortcut, rng=rng), rng)
            assert_matches(block, (3, size, size), rng)
    identity = randomise_buffers(basic_block(4, 4, 1, rng=rng), rng)
    assert_matches(identity, (4, 5, 5), rng)


def test_concat_of_branches(rng):
    from cnnkit.models.blocks import inception

    assert_matches(inception(4, 2, 3, 4, 2, 3, 2, rng=rng), (4, 9, 9), rng)
    branches = nn.Concat(nn.Conv2d(3, 2, 1, rng=rng), nn.MaxPool2d(3, 1, 1), nn.Sigmoid())
    assert_matches(branches, (3, 5, 5), rng)


def test_locally_connected_is_expressed_as_windows_and_an_einsum(rng):
    for args in (dict(kernel_size=3, input_size=7), dict(kernel_size=(3, 2), input_size=(8, 7),
                                                        stride=2, padding=1, dilation=(1, 2)),
                 dict(kernel_size=1, input_size=4, bias=False)):
        lc = nn.LocallyConnected2d(3, 4, strict=False, rng=rng, **args)
        if lc.bias is not None:
            lc.bias.data = rng.standard_normal(lc.bias.shape).astype(np.float32)
        h, w = lc.input_size
        assert_matches(lc, (3, h, w), rng)


def test_a_spec_with_every_layer_kind(rng):
    for spec in ("INPUT[3x16x16] -> CONV3-8 -> BN -> PRELU -> LRN5 -> POOL2 -> RES-8 -> LC3-8 "
                 "-> CONV3-8/d2p2 -> TANH -> AVGPOOL2 -> L2POOL2 -> SIGMOID -> FC-12 -> BN -> "
                 "RELU -> DROPOUT0.5 -> FC-10",
                 "INPUT[3x13x11] -> CONV3-8 -> GN4 -> RELU -> CONV3-6/s2 -> LN -> POOL2/1 -> "
                 "FC-12 -> LN -> RELU -> DROPOUT0.4/infer -> FC-5",
                 "INPUT[1x13x13] -> CONV5-6/s1p0 -> RELU -> POOL3/2 -> RES-12/s2 -> GAP -> FC-3"):
        model, shape = build_model(spec, rng=rng)
        assert_matches(randomise_buffers(model, rng), shape, rng)


TOKENS = ["CONV{k}-{n}", "CONV{k}-{n}/s2p0", "CONV3-{n}/d2p2", "POOL2", "POOL3/2", "AVGPOOL2",
          "L2POOL2", "RELU", "PRELU", "SIGMOID", "TANH", "BN", "DROPOUT0.3", "LRN{k}", "LRN4",
          "RES-{n}", "LC{k}-{n}", "GAP", "LN", "GN{k}", "DROPOUT0.3/infer"]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_specs_match_onnxruntime(data):
    """Nets of random layers on random input sizes (the spec grammar rejects what does not
    fit; hypothesis draws again)."""
    from cnnkit.models.spec import SpecError

    c, h, w = (data.draw(st.integers(1, 3)), data.draw(st.integers(5, 12)),
               data.draw(st.integers(5, 12)))
    tokens = [data.draw(st.sampled_from(TOKENS)).format(k=data.draw(st.sampled_from([1, 3])),
                                                        n=data.draw(st.integers(1, 4)))
              for _ in range(data.draw(st.integers(1, 5)))]
    head = data.draw(st.sampled_from(["", " -> FC-3", " -> FC-5 -> RELU -> FC-2"]))
    text = f"INPUT[{c}x{h}x{w}] -> " + " -> ".join(tokens) + head
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    try:
        model, shape = build_model(text, rng=rng)
    except (SpecError, ValueError):
        assume(False)
    assert_matches(randomise_buffers(model, rng), shape, rng, batches=(2,))


# ---------------------------------------------------------------------------- the graph

def test_names_checks_and_metadata(rng, tmp_path):
    model, shape = build_model("lenet-bn", rng=rng)
    path = tmp_path / "sub" / "lenet.onnx"
    proto = to_onnx(model, shape, path, input_name="images", output_name="logits",
                    metadata={"cnnkit.classes": ["a"] * 10})
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    assert [i.name for i in loaded.graph.input] == ["images"]
    assert [o.name for o in loaded.graph.output] == ["logits"]
    dims = [d.dim_param or d.dim_value for d in loaded.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 1, 28, 28]
    weights = {i.name for i in loaded.graph.initializer}
    float_state = {k for k, v in model.state_dict().items() if v.dtype.kind == "f"}
    assert float_state <= weights                          # the state dict's own names
    assert {n.name for n in loaded.graph.node} >= {"0", "1", "2"}    # nodes named by layer
    props = {p.key: p.value for p in loaded.metadata_props}
    from cnnkit.nn import build
    import json

    rebuilt = build(json.loads(props["cnnkit.model"]))
    assert rebuilt.config() == model.config()
    assert json.loads(props["cnnkit.classes"]) == ["a"] * 10
    assert loaded.producer_name == "cnnkit" and proto.opset_import[0].version == 17
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    assert session(loaded).run(["logits"], {"images": x})[0].shape == (2, 10)


@pytest.mark.parametrize("opset", [11, 12, 17, "newest"])
def test_opsets_from_11_to_the_newest(opset, rng):
    opset = onnx.defs.onnx_opset_version() if opset == "newest" else opset
    for name in ("resnet20", "googlenet"):
        model, shape = build_model(name, rng=rng)
        proto = assert_matches(randomise_buffers(model, rng), shape, rng, opset=opset)
        assert proto.opset_import[0].version == opset


def test_the_locally_connected_layer_needs_opset_12(rng):
    lc = nn.LocallyConnected2d(2, 3, 3, input_size=5, rng=rng)
    assert_matches(lc, (2, 5, 5), rng, opset=12)
    with pytest.raises(ExportError) as err:
        to_onnx(nn.Sequential(nn.ReLU(), lc), (2, 5, 5), opset=11)
    assert "layer 1 LocallyConnected2d" in one_line(err) and "opset 12" in one_line(err)


def test_an_input_shape_with_a_batch_axis_is_taken_as_pytorchs_example_batch(rng):
    model, shape = build_model("lenet-bn", rng=rng)
    proto = to_onnx(model, (5, *shape))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", *shape]
    relu = to_onnx(nn.ReLU(), (5, 3))            # a net that takes both: the shape as given
    assert [d.dim_value for d in relu.graph.input[0].type.tensor_type.shape.dim][1:] == [5, 3]


def test_external_data_beside_the_file_and_a_rewrite_keeps_the_pair_whole(tmp_path, rng):
    model, shape = build_model("resnet20", rng=rng)
    randomise_buffers(model, rng).eval()
    path = tmp_path / "net [1].onnx"                   # glob characters in the name
    (tmp_path / "net [1].onnx.backup.data").write_bytes(b"the user's")
    to_onnx(model, shape, path, external_data=True)
    first = sorted(p.name for p in tmp_path.glob("*.data") if "backup" not in p.name)
    assert len(first) == 1 and path.stat().st_size < 100_000       # the weights are beside it
    onnx.checker.check_model(str(path), full_check=True)
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = model.forward(x)
    assert np.abs(sess.run(None, {"input": x})[0] - ref).max() <= RTOL * np.abs(ref).max()
    to_onnx(model, shape, path, external_data=True)     # again: a new data file, the old gone
    second = sorted(p.name for p in tmp_path.glob("*.data") if "backup" not in p.name)
    assert len(second) == 1 and second != first
    assert (tmp_path / "net [1].onnx.backup.data").read_bytes() == b"the user's"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert np.abs(sess.run(None, {"input": x})[0] - ref).max() <= RTOL * np.abs(ref).max()
    with pytest.raises(ExportError) as err:
        to_onnx(model, shape, external_data=True)
    assert "give a path" in one_line(err)


def test_weights_past_protobufs_limit_go_beside_the_file_by_themselves(tmp_path, rng,
                                                                        monkeypatch, capsys):
    import cnnkit.export as export
    from cnnkit.cli import main

    monkeypatch.setattr(export, "PROTOBUF_LIMIT", 10_000)       # lenet-bn's 247 KB exceeds it
    model, shape = build_model("lenet-bn", rng=rng)
    to_onnx(model, shape, tmp_path / "a.onnx")
    assert len(list(tmp_path.glob("a.onnx.*.data"))) == 1
    with pytest.raises(ExportError) as err:
        to_onnx(model, shape)
    assert "more than an ONNX protobuf holds; give a path" in one_line(err)
    monkeypatch.undo()
    assert main(["export", "lenet-bn", "-o", str(tmp_path / "b.onnx"), "--external-data"]) == 0
    assert len(list(tmp_path.glob("b.onnx.*.data"))) == 1
    capsys.readouterr()


def test_a_fixed_batch(rng):
    model, shape = build_model("lenet5", rng=rng)
    proto = to_onnx(model, shape, batch=4)
    dims = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [4, 10]
    x = rng.standard_normal((4, *shape)).astype(np.float32)
    assert np.abs(session(proto).run(None, {"input": x})[0] - model.eval().forward(x)).max() \
        <= RTOL * np.abs(model.forward(x)).max()


# ---------------------------------------------------------------------------- refusals

class Squash(nn.Module):
    """A user's layer that cnnkit's exporter does not know."""

    def forward(self, x):
        return x / (1 + np.abs(x))


class ConvTwice(nn.Conv2d):
    """A subclass that replaces Conv2d's forward: Conv2d's ONNX form no longer describes it."""

    def forward(self, x):
        return super().forward(super().forward(x))


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


def test_a_layer_without_an_onnx_form_is_refused_naming_it(rng):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=rng), Squash(), nn.Flatten())
    with pytest.raises(ExportError) as err:
        to_onnx(model, (1, 5, 5))
    assert "layer 1 Squash()" in one_line(err) and "no ONNX form" in one_line(err)
    with pytest.raises(ExportError) as err:
        to_onnx(nn.Sequential(nn.ReLU(), ConvTwice(2, 2, 1)), (2, 4, 4))
    assert "layer 1 ConvTwice" in one_line(err)


class Softsign(nn.Module):
    """A user's layer that writes its own ONNX form."""

    def forward(self, x):
        return x / (1 + np.abs(x))

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def to_onnx(self, graph, x, in_shape, name):
        return graph.node("Softsign", [x], name=name)


class BrokenSoftsign(Softsign):
    def to_onnx(self, graph, x, in_shape, name):
        return graph.node("Softsign", [x, x], name=name)       # one input too many


def test_a_users_layer_with_its_own_to_onnx_exports_and_a_wrong_one_is_caught(rng):
    net = nn.Sequential(nn.Conv2d(2, 3, 3, rng=rng), Softsign(), nn.Flatten())
    assert_matches(net, (2, 5, 5), rng)
    with pytest.raises(ExportError) as err:
        to_onnx(nn.Sequential(nn.ReLU(), BrokenSoftsign()), (3,))
    assert "to_onnx" in one_line(err) and "Softsign" in one_line(err)


def test_bad_arguments_are_one_line(rng):
    model, shape = build_model("lenet-bn", rng=rng)
    for kwargs, fragment in ((dict(opset=10), "opset must be an int from 11"),
                             (dict(opset=10 ** 6), "opset"), (dict(batch=0), "batch must be"),
                             (dict(batch="any"), "batch must be"),
                             (dict(input_name=""), "input_name"),
                             (dict(input_name="x", output_name="x"), "must differ")):
        with pytest.raises(ExportError) as err:
            to_onnx(model, shape, **kwargs)
        assert fragment in one_line(err)
    for bad in [(28, 28), (1, 28, 0), "1x28x28", None, (1, 28, 28.0)]:
        with pytest.raises(ExportError) as err:
            to_onnx(model, bad)
        one_line(err)
    with pytest.raises(ExportError) as err:
        to_onnx(model, (1, 32, 32))           # LeNet-BN's FC expects a 28x28 input
    assert "in_features" in one_line(err)
    with pytest.raises(ExportError) as err:
        to_onnx("lenet-bn", shape)
    one_line(err)
    with shapes_only():
        skeleton, _ = build_model("lenet-bn")
    with pytest.raises(ExportError) as err:
        to_onnx(skeleton, shape)
    assert "no values" in one_line(err)


def test_without_the_onnx_package_the_error_says_how_to_install_it(monkeypatch, rng):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ExportError) as err:
        to_onnx(nn.ReLU(), (3,))
    assert "pip install" in one_line(err) and "cnnkit[onnx]" in one_line(err)


def test_the_command_line_refuses_bad_input_in_one_line(tmp_path, capsys):
    from cnnkit.cli import main

    for argv, fragment in (
            (["export", "lenet-bn", "-o", str(tmp_path / "x.txt")], "must end in .onnx"),
            (["export", "lenet-bn", "-o", str(tmp_path / "x.onnx"), "--opset", "9"], "opset"),
            (["export", "lenet-bn", "-o", str(tmp_path / "x.onnx"), "--input", "1x30x30"],
             "layer 7 MaxPool2d"),
            (["export", "INPUT[1x8x8] -> CONV3-2 -> FC-3", "-o", str(tmp_path / "x.onnx"),
              "--num-classes", "4"], "--num-classes applies to a zoo model"),
            (["export", str(tmp_path / "missing.npz"), "-o", str(tmp_path / "x.onnx")],
             "not found")):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert fragment in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()
