"""ONNX with its preprocessing (cnnkit._onnx_preprocessing through to_onnx and ``cnnkit export
--include-preprocessing``): onnxruntime on the stored uint8 images against predict_images, the
graph's input and metadata, the resize against cnnkit's own, and refusals as one line."""

import json

import numpy as np
import pytest

from cnnkit import nn
from cnnkit.checkpoint import save_checkpoint
from cnnkit.data import Preprocessing
from cnnkit.data.preprocess import _resize
from cnnkit.export import ExportError, OnnxGraph, served_metadata, to_onnx
from cnnkit.inference import load_for_inference, predict_images
from cnnkit.io import save_safetensors
from cnnkit.models import build_model

from .helpers import require
from .test_cli import assert_one_line_error, run

onnx = require("onnx")
ort = require("onnxruntime")

TOL = 1e-4          # the target for probabilities
# The resize's worst case measured over 60 random size pairs (1 to 119 pixels to 1 to 69, each
# axis) of 50 random images each: 4.3e-6 per pixel in [0, 1] units (float32 rounding; the
# probabilities of 24 random nets then differ by at most 6.3e-7). The bound leaves a margin of 7.
RESIZE_PIXEL_BOUND = 3e-5


def session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def make_checkpoint(path, image_shape, input_shape, fit, rng, classes=5):
    """A checkpoint of a conv net with batch norm (random statistics) and an FC over every
    position, so that each input pixel moves the scores; random per-channel mean and std."""
    c, hh, ww = input_shape
    model, _ = build_model(f"INPUT[{c}x{hh}x{ww}] -> CONV3-4 -> BN -> RELU -> FC-{classes}",
                           rng=rng)
    for _, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean = rng.normal(0, 0.3, m.num_features).astype(np.float32)
            m.running_var = rng.uniform(0.5, 2.0, m.num_features).astype(np.float32)
    pre = Preprocessing(image_shape, input_shape, rng.uniform(0.2, 0.6, c),
                        rng.uniform(0.15, 0.4, c), fit, brightness=0.3)
    names = [f"class-{k}" for k in range(classes)]
    save_checkpoint(path, model.eval(),
                    extra={"metadata": {**pre.to_metadata(), "classes": names}})
    return path


def stored(images, channels):
    """The graph's input form of stored (N, C, h, w) images: (N, h, w) grey, (N, h, w, C)."""
    return images[:, 0] if channels == 1 else images.transpose(0, 2, 3, 1).copy()


CASES = {   # name: (image_shape, input_shape, fit)
    "grey-as-is": ((1, 13, 11), (1, 13, 11), "none"),
    "colour-as-is": ((3, 9, 14), (3, 9, 14), "none"),
    "grey-centred": ((1, 13, 11), (1, 16, 13), "centre"),
    "colour-centred-odd-margins": ((3, 15, 10), (3, 18, 13), "centre"),
    "grey-resized-down": ((1, 37, 29), (1, 16, 13), "resize"),
    "colour-resized-up": ((3, 9, 7), (3, 17, 13), "resize"),
    "colour-resized-down-and-up": ((3, 20, 9), (3, 13, 16), "resize"),
}


@pytest.mark.parametrize("case", CASES)
def test_onnxruntime_answers_predict_images_probabilities(case, tmp_path, rng):
    image_shape, input_shape, fit = CASES[case]
    ckpt = make_checkpoint(tmp_path / "m.npz", image_shape, input_shape, fit, rng)
    model, pre, classes, meta = load_for_inference(ckpt)
    proto = to_onnx(model, pre.input_shape, preprocessing=pre, metadata=served_metadata(meta))
    expected_opset = 18 if fit == "resize" else 17
    assert proto.opset_import[0].version == expected_opset
    sess = session(proto)
    for n in (1, 5):
        images = rng.integers(0, 256, (n, *image_shape), dtype=np.uint8)
        (got,) = sess.run(["probabilities"], {"images": stored(images, image_shape[0])})
        ref = predict_images(ckpt, images).probabilities
        assert got.shape == ref.shape == (n, 5)
        assert np.abs(got - ref).max() <= TOL, f"batch {n}: {np.abs(got - ref).max():.2e}"
        assert np.abs(got.sum(axis=1) - 1).max() <= 1e-5


def test_the_graph_declares_uint8_images_and_records_what_is_left_to_the_server(tmp_path, rng):
    ckpt = make_checkpoint(tmp_path / "m.npz", (1, 13, 11), (1, 16, 13), "centre", rng)
    model, pre, classes, meta = load_for_inference(ckpt)
    proto = to_onnx(model, pre.input_shape, preprocessing=pre, metadata=served_metadata(meta))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    assert (inp.name, inp.type.tensor_type.elem_type, dims(inp)) == \
        ("images", onnx.TensorProto.UINT8, ["N", 13, 11])
    assert (out.name, dims(out)) == ("probabilities", ["N", 5])
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["cnnkit.classes"]) == [f"class-{k}" for k in range(5)]
    recorded = json.loads(props["cnnkit.preprocessing"])
    steps = recorded.pop("server_steps")
    assert recorded == {**pre.to_metadata(), "in_graph": True,
                        "graph_input": {"name": "images", "dtype": "uint8",
                                        "shape": ["N", 13, 11]},
                        "graph_output": {"name": "probabilities", "holds": "softmax "
                                         "probabilities, one column per class, in the order "
                                         "of cnnkit.classes"}}
    assert "grey" in steps[0] and "13x11" in steps[0] and "invert" in steps[1] \
        and "0.300" in steps[1] and "(N, 13, 11)" in steps[2]
    colour = Preprocessing((3, 5, 7), (3, 5, 7), [0.5] * 3, [0.25] * 3)
    plain = to_onnx(nn.Sequential(nn.Flatten(), nn.Linear(105, 2)), (3, 5, 7),
                    preprocessing=colour, batch=4, input_name="x", output_name="p")
    props = json.loads({p.key: p.value for p in plain.metadata_props}["cnnkit.preprocessing"])
    assert props["graph_input"] == {"name": "x", "dtype": "uint8", "shape": ["N", 5, 7, 3]}
    assert "RGB" in props["server_steps"][0] and not any("invert" in s
                                                         for s in props["server_steps"])
    assert dims(plain.graph.input[0]) == [4, 5, 7, 3]
    assert session(plain).run(None, {"x": np.zeros((4, 5, 7, 3), np.uint8)})[0].shape == (4, 2)


def _front_only(pre):
    """A graph of the preprocessing alone: uint8 images -> the net's normalised input."""
    from onnx import TensorProto, helper, numpy_helper

    from cnnkit import _onnx_preprocessing as front

    graph = OnnxGraph(18)
    graph.fresh("images")
    out = front.add_front(graph, pre, "images")
    nodes = [helper.make_node(op, i, o, name=n, **a) for op, i, o, n, a in graph.nodes]
    model = helper.make_model(helper.make_graph(
        nodes, "front",
        [helper.make_tensor_value_info("images", TensorProto.UINT8,
                                       ["N", *front.input_dims(pre)])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(a, k) for k, a in graph.initializers.items()]),
        opset_imports=[helper.make_opsetid("", 18)])
    return session(model)


RATIOS = [((28, 28), (32, 32)), ((64, 48), (32, 32)), ((17, 23), (32, 32)),
          ((100, 37), (13, 29)), ((32, 32), (64, 64)), ((45, 45), (32, 32)),
          ((32, 32), (31, 33)), ((224, 224), (32, 32)), ((7, 5), (29, 31)), ((33, 1), (8, 3)),
          ((5, 40), (1, 7))]


def test_the_resize_matches_cnnkits_over_many_images(rng):
    """The measurement behind the bound the guide states: the fitted pixels (before the mean and
    std) of ONNX's Resize against cnnkit.data.preprocess._resize (Pillow), shrinking, growing
    and both, 40 random images per ratio."""
    worst = 0.0
    for (h, w), (hh, ww) in RATIOS:
        pre = Preprocessing((1, h, w), (1, hh, ww), [0.0], [1.0], "resize")
        images = rng.integers(0, 256, (40, 1, h, w), dtype=np.uint8)
        (got,) = _front_only(pre).run(None, {"images": images[:, 0]})
        ref = _resize(images.astype(np.float32) / np.float32(255), (hh, ww))
        worst = max(worst, float(np.abs(got - ref).max()))
    assert worst <= RESIZE_PIXEL_BOUND, worst


def test_the_centre_fit_pads_with_zeros_where_cnnkit_does(rng):
    pre = Preprocessing((3, 4, 5), (3, 7, 8), [0.0] * 3, [1.0] * 3, "centre")
    images = rng.integers(1, 256, (2, 3, 4, 5), dtype=np.uint8)
    (got,) = _front_only(pre).run(None, {"images": stored(images, 3)})
    np.testing.assert_array_equal(got, pre(images))
    assert (got[:, :, 1:5, 1:6] > 0).all() and got[:, :, 0].max() == got[:, :, 5:].max() == 0


# ---------------------------------------------------------------------------- refusals

def test_to_onnx_refuses_what_the_graph_cannot_hold(tmp_path, rng):
    ckpt = make_checkpoint(tmp_path / "m.npz", (1, 37, 29), (1, 16, 13), "resize", rng)
    model, pre, _, _ = load_for_inference(ckpt)
    with pytest.raises(ExportError, match="needs opset 18 or later.*asked for 17"):
        to_onnx(model, pre.input_shape, preprocessing=pre, opset=17)
    with pytest.raises(ExportError, match="must be a cnnkit.data.Preprocessing"):
        to_onnx(model, pre.input_shape, preprocessing=pre.to_metadata())
    big = Preprocessing((1, 37, 29), (1, 16, 13), [1e39], [0.3], "resize")
    with pytest.raises(ExportError, match=r"mean \[1e\+39\] and std \[0.3\] must be finite"):
        to_onnx(model, pre.input_shape, preprocessing=big)
    # what no checkpoint can hold is refused when the preprocessing is made
    with pytest.raises(ValueError, match="mean must be finite"):
        Preprocessing((1, 37, 29), (1, 16, 13), [float("nan")], [0.3], "resize")
    with pytest.raises(ValueError, match="image_shape must hold sizes from 1"):
        Preprocessing((1, 0, 29), (1, 16, 13), [0.1], [0.3], "resize")
    gap = nn.Sequential(nn.Conv2d(1, 2, 3), nn.GlobalAvgPool2d(), nn.Flatten())
    with pytest.raises(ExportError, match="makes 1x16x13 inputs.*asked for 1x20x20"):
        to_onnx(gap, (1, 20, 20), preprocessing=pre)
    with pytest.raises(ExportError, match=r"answers 2x14x11 per image.*\(K,\) scores"):
        to_onnx(nn.Conv2d(1, 2, 3), (1, 16, 13), preprocessing=pre)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from cnnkit.cli import main

    runs = tmp_path_factory.mktemp("runs")
    assert main(["train", "--limit", "200", "--val-size", "40", "--epochs", "1", "--out",
                 str(runs), "--name", "q", "--no-progress"]) == 0
    return runs / "q" / "model.npz"


def test_the_command_line_writes_the_whole_net_for_raw_images(trained, tmp_path, rng, capsys):
    path = tmp_path / "net.onnx"
    code, out, _ = run(capsys, "export", str(trained), "-o", str(path),
                       "--include-preprocessing")
    assert code == 0 and out.startswith(f"wrote {path}: ONNX opset 17, input \"images\" uint8 "
                                        f"Nx28x28") and "output \"probabilities\" Nx10" in out
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    (got,) = session(onnx.load(str(path))).run(None, {"images": images})
    assert np.abs(got - predict_images(trained, images).probabilities).max() <= TOL


def test_the_command_line_writes_opset_18_for_a_resize_and_a_fixed_batch(tmp_path, rng, capsys):
    ckpt = make_checkpoint(tmp_path / "m.npz", (3, 21, 30), (3, 16, 13), "resize", rng)
    path = tmp_path / "net.onnx"
    code, out, _ = run(capsys, "export", str(ckpt), "-o", str(path), "--include-preprocessing",
                       "--batch", "2")
    assert code == 0 and out.startswith(
        f"wrote {path}: ONNX opset 18, input \"images\" uint8 2x21x30x3 (21x30 resized to "
        f"16x13: /255, resized, mean and std in the graph), output \"probabilities\" 2x5")
    images = rng.integers(0, 256, (2, 3, 21, 30), dtype=np.uint8)
    (got,) = session(onnx.load(str(path))).run(None, {"images": stored(images, 3)})
    assert np.abs(got - predict_images(ckpt, images).probabilities).max() <= TOL


def test_the_command_line_refuses_in_one_line(trained, tmp_path, capsys, rng):
    out = str(tmp_path / "x.onnx")
    cases = [
        (["export", "lenet", "-o", out, "--include-preprocessing"], "needs a checkpoint"),
        (["export", str(trained), "-o", str(tmp_path / "x.safetensors"),
          "--include-preprocessing"], "apply to an .onnx file"),
    ]
    resized = make_checkpoint(tmp_path / "r.npz", (1, 37, 29), (1, 16, 13), "resize", rng)
    cases.append((["export", str(resized), "-o", out, "--include-preprocessing", "--opset",
                   "17"], "needs opset 18"))
    gap = tmp_path / "gap.npz"
    save_checkpoint(gap, nn.Sequential(nn.Conv2d(1, 2, 3, rng=rng), nn.GlobalAvgPool2d(),
                                       nn.Flatten()),
                    extra={"metadata": {"input_shape": [1, 12, 12]}})
    cases.append((["export", str(gap), "-o", out, "--include-preprocessing", "--input",
                   "1x20x20"], "--input 1x20x20 differs from the 1x12x12 input"))
    bare = tmp_path / "bare.npz"
    save_checkpoint(bare, nn.Sequential(nn.Flatten(), nn.Linear(4, 2, rng=rng)))
    cases.append((["export", str(bare), "-o", out, "--include-preprocessing", "--input",
                   "1x2x2"], "does not record the input its net was trained on"))
    imported = tmp_path / "imported.npz"
    weights = tmp_path / "w.safetensors"       # weights only: no mean or std recorded
    save_safetensors(build_model("lenet-bn", rng=rng)[0], weights)
    assert run(capsys, "import", str(weights), "--model", "lenet-bn", "-o",
               str(imported))[0] == 0
    cases.append((["export", str(imported), "-o", out, "--include-preprocessing"],
                  "without the normalisation"))
    for argv, fragment in cases:
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, fragment)
        assert not (tmp_path / "x.onnx").exists()
