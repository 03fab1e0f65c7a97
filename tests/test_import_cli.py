"""`cnnkit import` and `cnnkit export -o *.safetensors`: PyTorch's weights in and out through the
command line, every name and shape checked, bad input one line on stderr."""

import numpy as np
import pytest
import torch

from cnnkit.cli import main
from cnnkit.io import load_model
from cnnkit.models import build_model
from tests.test_cli import assert_one_line_error
from tests.twins import randomize_torch, relative_error, torch_twin


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def resnet20_pt(tmp_path):
    """A PyTorch twin of resnet20 with random weights and statistics, saved by torch.save."""
    model, shape = build_model("resnet20", rng=np.random.default_rng(0))
    twin = randomize_torch(torch_twin(model), seed=1)
    path = tmp_path / "resnet20.pt"
    torch.save(twin.state_dict(), path)
    return twin, path, shape


def test_a_pt_file_becomes_a_checkpoint_with_pytorchs_logits(tmp_path, capsys, rng,
                                                             resnet20_pt):
    twin, path, shape = resnet20_pt
    out_path = tmp_path / "r20.npz"
    code, out, err = run(capsys, "import", path, "--model", "resnet20", "-o", out_path)
    assert code == 0, err
    assert "all 116 arrays fit" in out and f"wrote {out_path}" in out
    model = load_model(out_path)
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    assert relative_error(model.forward(x), expected) <= 1e-5
    # and back out: the checkpoint's weights as safetensors, read by PyTorch
    st = tmp_path / "r20.safetensors"
    code, out, err = run(capsys, "export", out_path, "-o", st)
    assert code == 0 and "freshly drawn" not in out, err
    from safetensors.torch import load_file

    twin2 = torch_twin(model).eval()
    twin2.load_state_dict(load_file(st), strict=True)
    with torch.no_grad():
        assert relative_error(twin2(torch.from_numpy(x)).numpy(), expected) <= 1e-5
    # exported to ONNX, the imported net is what PyTorch computes
    ort = pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "r20.onnx"
    assert run(capsys, "export", out_path, "-o", onnx_path)[0] == 0
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert relative_error(session.run(None, {"input": x})[0], expected) <= 1e-4


def test_a_mismatch_is_listed_on_stdout_and_refused_in_one_line(tmp_path, capsys,
                                                                  resnet20_pt):
    twin, path, _ = resnet20_pt
    state = twin.state_dict()
    state.pop("0.weight")
    state["head.weight"] = torch.zeros(3)
    state["1.bias"] = torch.zeros(5)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    out_path = tmp_path / "x.npz"
    code, out, err = run(capsys, "import", bad, "--model", "resnet20", "-o", out_path)
    assert_one_line_error(code, err, "missing", "unexpected", str(bad))
    assert "0.weight" in out and "head.weight" in out and "1.bias" in out
    assert not out_path.exists()


def test_the_classifier_size_says_which_num_classes(tmp_path, capsys, resnet20_pt):
    _, path, _ = resnet20_pt
    code, _, err = run(capsys, "import", path, "--model", "resnet20", "--num-classes", "7",
                       "-o", tmp_path / "x.npz")
    assert_one_line_error(code, err, "num_classes=10")


def test_by_order_and_partial(tmp_path, capsys, resnet20_pt):
    twin, path, _ = resnet20_pt
    renamed = {f"layer{i}": v for i, v in enumerate(twin.state_dict().values())}
    other = tmp_path / "renamed.pt"
    torch.save(renamed, other)
    code, _, err = run(capsys, "import", other, "--model", "resnet20", "--by", "name", "-o",
                       tmp_path / "a.npz")
    assert_one_line_error(code, err, "order")     # no shared name: the line suggests --by order
    code, out, err = run(capsys, "import", other, "--model", "resnet20", "-o", tmp_path / "a.npz")
    assert code == 0 and "paired by position" in out, err     # what --by auto falls back to
    loaded = load_model(tmp_path / "a.npz").state_dict()
    for (name, value), expected in zip(loaded.items(), twin.state_dict().values()):
        np.testing.assert_array_equal(value, expected.numpy(), err_msg=name)
    partial = {k: v for k, v in twin.state_dict().items() if not k.startswith("14.")}
    torch.save(partial, tmp_path / "partial.pt")
    code, out, err = run(capsys, "import", tmp_path / "partial.pt", "--model", "resnet20",
                         "--partial", "-o", tmp_path / "p.npz")
    assert code == 0, err
    assert "14.weight" in out                       # what was left to fresh weights is said


def test_a_malicious_pt_runs_nothing(tmp_path, capsys):
    import os
    import zipfile

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    import pickle

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps({"0.weight": Payload()}, protocol=2))
        archive.writestr("evil/version", "3\n")
    code, _, err = run(capsys, "import", path, "--model", "resnet20", "-o", tmp_path / "x.npz")
    assert_one_line_error(code, err, "refuses to unpickle", "system")
    assert not marker.exists()


def test_bad_arguments_are_one_line(tmp_path, capsys, resnet20_pt):
    _, path, _ = resnet20_pt
    taken = tmp_path / "taken.npz"
    taken.write_bytes(b"mine")
    for argv, fragment in (
            ([path, "--model", "resnet20", "-o", taken], "--overwrite"),
            ([path, "--model", "resnet20", "-o", tmp_path / "x.pt"], ".npz"),
            ([path, "--model", taken, "-o", tmp_path / "y.npz"], "not a checkpoint"),
            ([path, "--model", "resnet20", "--mean", "0.5", "-o", tmp_path / "y.npz"],
             "3 channels"),
            ([tmp_path / "missing.pt", "--model", "resnet20", "-o", tmp_path / "y.npz"],
             "missing.pt"),
            ([taken, "--model", "resnet20", "-o", tmp_path / "y.npz"], "taken.npz")):
        code, _, err = run(capsys, "import", *argv)
        assert_one_line_error(code, err, fragment)
    assert taken.read_bytes() == b"mine"
    assert not (tmp_path / "y.npz").exists()


def test_mean_and_std_are_recorded_for_predict(tmp_path, capsys, resnet20_pt):
    from cnnkit.io import load_checkpoint

    _, path, _ = resnet20_pt
    out_path = tmp_path / "r.npz"
    code, _, err = run(capsys, "import", path, "--model", "resnet20", "--mean",
                       "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "-o", out_path)
    assert code == 0, err
    meta = load_checkpoint(out_path).extra["metadata"]
    assert meta["mean"] == [0.485, 0.456, 0.406] and meta["std"] == [0.229, 0.224, 0.225]
    assert meta["input_shape"] == [3, 32, 32] and meta["imported_from"] == str(path)


def test_a_whole_pickled_model_is_refused_with_what_to_save_instead(tmp_path, capsys):
    path = tmp_path / "whole.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(3, 2)), path)
    code, _, err = run(capsys, "import", path, "--model", "INPUT[3x1x1] -> FC-2", "-o",
                       tmp_path / "x.npz")
    assert_one_line_error(code, err, "torch.nn.modules.container.Sequential", "model.state_dict()")


def test_a_training_checkpoint_gives_its_state_dict(tmp_path, capsys, rng):
    linear = torch.nn.Linear(3, 2)
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "model_state_dict": linear.state_dict(),
                "optimizer": torch.optim.SGD(linear.parameters(), 0.1).state_dict()}, path)
    code, out, err = run(capsys, "import", path, "--model", "INPUT[3x1x1] -> FC-2", "-o",
                         tmp_path / "x.npz")
    assert code == 0, err
    model = load_model(tmp_path / "x.npz")
    x = rng.standard_normal((4, 3, 1, 1)).astype(np.float32)
    with torch.no_grad():
        expected = linear(torch.from_numpy(x.reshape(4, 3))).numpy()
    assert relative_error(model.forward(x), expected) <= 1e-6


def test_a_cnnkit_round_trip_through_safetensors_keeps_the_preprocessing(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "--limit", "300", "--val-size", "50", "--epochs", "1", "--out",
                 str(runs), "--name", "q", "--no-progress"]) == 0
    ckpt, weights, back = runs / "q" / "model.npz", tmp_path / "w.safetensors", tmp_path / "b.npz"
    assert run(capsys, "export", ckpt, "-o", weights)[0] == 0
    code, out, err = run(capsys, "import", weights, "--model", "lenet-bn", "-o", back)
    assert code == 0 and "note:" not in out, err
    accuracy = []
    for path in (ckpt, back):
        code, out, err = run(capsys, "evaluate", path, "--data", "mnist", "--no-progress")
        assert code == 0, err
        accuracy.append(next(line for line in out.splitlines() if "accuracy" in line))
    assert accuracy[0] == accuracy[1]


def test_without_its_normalisation_an_import_is_refused_by_predict_and_evaluate(
        tmp_path, capsys, resnet20_pt):
    _, path, _ = resnet20_pt
    out_path = tmp_path / "r.npz"
    code, out, _ = run(capsys, "import", path, "--model", "resnet20", "-o", out_path)
    assert code == 0 and "--mean and --std" in out
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    code, _, err = run(capsys, "predict", out_path, image)
    assert_one_line_error(code, err, "without the normalisation", "--mean and --std")
    code, _, err = run(capsys, "import", path, "--model", "resnet20", "--mean", "0,0,0", "--std",
                       "1,1,1", "-o", out_path, "--overwrite")
    assert code == 0, err
    code, out, err = run(capsys, "predict", out_path, image)
    assert code == 0 and str(image) in out, err


def test_training_starts_from_pytorch_weights(tmp_path, capsys):
    model, _ = build_model("lenet-bn", rng=np.random.default_rng(0))
    twin = randomize_torch(torch_twin(model), seed=2)
    path = tmp_path / "lenet.pt"
    torch.save(twin.state_dict(), path)
    code, out, err = run(capsys, "train", "--weights", path, "--limit", "200", "--val-size", "40",
                         "--epochs", "1", "--out", tmp_path / "runs", "--name", "ft",
                         "--no-progress")
    assert code == 0, err
    state = twin.state_dict()
    state["0.weight"] = torch.zeros(7)
    torch.save(state, path)
    code, _, err = run(capsys, "train", "--weights", path, "--limit", "200", "--epochs", "1",
                       "--out", tmp_path / "runs", "--name", "bad", "--no-progress")
    assert_one_line_error(code, err, "0.weight", str(path))
