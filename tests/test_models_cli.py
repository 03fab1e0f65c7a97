"""The model-taking commands with zoo names, specs and checkpoints: train, summary, convert,
gradcheck, time; and their errors."""

import json

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.convert import sliding_scores
from cnnkit.io import load_checkpoint
from tests.helpers import assert_close
from tests.test_cli import assert_one_line_error, run
from tests.test_summary import notes_table

SPEC = "CONV5-6 -> RELU -> POOL2 -> CONV5-8/p0 -> RELU -> POOL2 -> FC-32 -> RELU -> FC-10"


def test_train_a_spec_then_evaluate_and_resume_it(capsys, tmp_path):
    code, out, _ = run(capsys, "train", "--model", SPEC.lower(), "--limit", "300", "--val-size",
                       "50", "--epochs", "1", "--out", str(tmp_path), "--no-progress")
    assert code == 0 and "test accuracy" in out
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("spec-")
    meta = load_checkpoint(run_dir / "model.npz").extra["metadata"]
    assert meta["settings"]["model"] == "INPUT[1x28x28] -> " + SPEC   # the canonical text
    assert meta["input_shape"] == [1, 28, 28]
    code, out, _ = run(capsys, "evaluate", str(run_dir / "model.npz"))
    assert code == 0 and "MNIST test: 10000 images" in out
    code, out, _ = run(capsys, "train", "--resume", str(run_dir / "checkpoint.npz"), "--epochs",
                       "2", "--no-progress")
    assert code == 0 and "epoch 2/2" in out


def test_train_lenet5_centres_mnist_in_its_32x32_input(capsys, tmp_path):
    code, out, _ = run(capsys, "train", "--model", "LeNet-5", "--limit", "200", "--val-size",
                       "50", "--epochs", "1", "--out", str(tmp_path), "--name", "l",
                       "--no-progress")
    assert code == 0 and "lenet5 (61,706 parameters)" in out
    meta = load_checkpoint(tmp_path / "l" / "model.npz").extra["metadata"]
    assert meta["input_shape"] == [1, 32, 32] and meta["image_shape"] == [1, 28, 28]
    code, out, _ = run(capsys, "evaluate", str(tmp_path / "l" / "model.npz"))
    assert code == 0 and "10000 images" in out


@pytest.mark.parametrize("argv, fragments", [
    (["--model", "INPUT[3x32x32] -> CONV3-8 -> FC-10"],
     ["takes 3x32x32 input", "MNIST images are 1x28x28"]),
    (["--model", "CONV3-8 -> FC-12"], ["gives outputs of shape (12,)", "FC-10"]),
    (["--model", "convnet-check", "--fit", "centre"], ["28x28, larger than the net's 8x8 input"]),
    (["--model", "vgg19"], ["unknown model 'vgg19'", "vgg16", "or give a spec"]),
])
def test_train_rejects_nets_that_do_not_fit_mnist(capsys, tmp_path, argv, fragments):
    code, _, err = run(capsys, "train", *argv, "--out", str(tmp_path))
    assert_one_line_error(code, err, *fragments)


def test_a_spec_error_prints_the_spec_with_a_caret(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--model", "CONV5-6 -> POOL3 -> FC-10",
                       "--out", str(tmp_path))
    assert code != 0 and "Traceback" not in err
    first, echo, caret = err.rstrip("\n").splitlines()
    assert first.startswith("cnnkit train: error: spec: POOL3 at layer 2 (input 6x28x28): pool: "
                            "(W - F + 2P)/S + 1 = (28 - 3 + 0)/3 + 1 is not an integer")
    assert echo[caret.index("^"):caret.rindex("^") + 1] == "POOL3"
    code, _, err = run(capsys, "summary", "CONV5-6 -> BLUR3 -> FC-10", "--input", "1x28x28")
    assert code != 0 and "BLUR3" in err and "^" in err


def test_summary_of_vgg16_prints_the_notes_table(capsys, tmp_path):
    code, out, _ = run(capsys, "summary", "vgg16", "--notes", "--json", str(tmp_path / "s.json"))
    assert code == 0
    lines = out.splitlines()
    for line in notes_table():
        if not line.startswith("TOTAL memory"):     # the notes' 24M is not the sum of their rows
            assert line in lines, line
    assert "TOTAL memory: 15.2M * 4 bytes ~= 58MB / image (only forward! ~*2 for bwd)" in lines
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["model"] == "vgg16" and data["totals"]["params"] == 138_357_544
    assert data["input_shape"] == [3, 224, 224]


def test_summary_of_a_spec_a_checkpoint_and_a_batch(capsys, tmp_path):
    code, out, _ = run(capsys, "summary", SPEC, "--input", "1x28x28", "--batch", "32",
                       "--optimizer", "sgd")
    assert code == 0 and "batch 32" in out
    code, _, _ = run(capsys, "train", "--model", SPEC, "--limit", "100", "--val-size", "20",
                     "--epochs", "1", "--out", str(tmp_path), "--name", "c", "--no-progress")
    assert code == 0
    code, out_ckpt, _ = run(capsys, "summary", str(tmp_path / "c" / "model.npz"))
    assert code == 0 and "input 1x28x28" in out_ckpt
    code, out, _ = run(capsys, "summary", "resnet18", "--input", "3x16x16")
    assert code == 0 and "input 3x16x16" in out and "11,689,512" in out


def test_summary_errors(capsys):
    code, _, err = run(capsys, "summary", "vgg16", "--input", "3x100x100")
    assert_one_line_error(code, err, "is not an integer")
    with pytest.raises(SystemExit):
        main(["summary", "vgg16", "--input", "3x224"])
    assert "expected a volume CxHxW" in capsys.readouterr().err


def test_convert_a_trained_checkpoint_and_slide_it(capsys, tmp_path):
    spec = "CONV5-6/p0 -> RELU -> POOL2 -> FC-16 -> RELU -> FC-10"
    code, _, _ = run(capsys, "train", "--model", spec, "--limit", "100", "--val-size", "20",
                     "--epochs", "1", "--out", str(tmp_path), "--name", "t", "--no-progress")
    assert code == 0
    ckpt = tmp_path / "t" / "model.npz"
    code, out, _ = run(capsys, "convert", str(ckpt), "--image", "1x36x44",
                       "-o", str(tmp_path / "fc.npz"))
    assert code == 0
    assert "Conv2d(6, 16, kernel_size=(12, 12))" in out and "output stride 2x2" in out
    assert "a 5x9 score map" in out and "exact:" in out
    original = load_checkpoint(ckpt).build_model().eval().astype(np.float64)
    converted = load_checkpoint(tmp_path / "fc.npz")
    assert converted.extra["metadata"]["output_stride"] == [2, 2]
    net = converted.build_model().eval().astype(np.float64)
    image = np.random.default_rng(0).standard_normal((2, 1, 36, 44))
    scores = net(image)
    assert scores.shape == (2, 10, 5, 9)
    assert_close(scores, sliding_scores(original, image, (1, 28, 28)), "score map")


def test_convert_vgg16_the_notes_example(capsys):
    code, out, _ = run(capsys, "convert", "vgg16", "--image", "3x384x384")
    assert code == 0
    assert "Conv2d(512, 4096, kernel_size=(7, 7))" in out and "output stride 32x32" in out
    assert "a 6x6 score map" in out and "approximate" in out and "pads" in out


def test_convert_errors(capsys):
    code, _, err = run(capsys, "convert", "resnet20")
    assert_one_line_error(code, err, "nothing to convert")
    code, _, err = run(capsys, "convert", SPEC, "--input", "1x28x28", "--image", "3x64x64")
    assert_one_line_error(code, err, "--image has 3 channels, the net takes 1")


def test_gradcheck_and_time_take_specs_and_zoo_names(capsys, tmp_path):
    code, out, _ = run(capsys, "gradcheck", "--model",
                       "INPUT[2x8x8] -> CONV3-3 -> BN -> TANH -> POOL2 -> FC-5", "--batch", "3")
    assert code == 0 and "pass" in out
    code, out, _ = run(capsys, "gradcheck", "--model", "resnet20", "--input", "3x8x8",
                       "--batch", "2", "--num-checks", "2")
    assert code == 0 and "max relative error" in out
    code, out, _ = run(capsys, "time", "INPUT[1x12x12] -> CONV3-4 -> RELU -> GAP -> FC-3",
                       "--batch", "4", "--iterations", "2", "--json", str(tmp_path / "t.json"))
    assert code == 0 and "GlobalAvgPool2d" in out
    assert json.loads((tmp_path / "t.json").read_text())["model"].startswith("INPUT[1x12x12]")


@pytest.mark.parametrize("command", [["summary", "vgg16", "--notes"],
                                     ["convert", "vgg16", "--image", "3x384x384"],
                                     ["summary", "alexnet"]])
def test_summary_and_convert_draw_no_weights(command, capsys, monkeypatch):
    """They read shapes, not values: no initialiser may run (VGG-16's 138M weights took 5 s)."""
    from cnnkit import init

    def refuse(*args, **kwargs):
        raise AssertionError("a weight was drawn")

    for name in ("he_normal", "he_uniform", "xavier_normal", "xavier_uniform", "gaussian"):
        monkeypatch.setattr(init, name, refuse)
    code, out, err = run(capsys, *command)
    assert code == 0, err
    assert "138M parameters" in out or "6x6 score map" in out or "60,965,224" in out
