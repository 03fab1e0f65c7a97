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


# ---------------------------------------------------------------------------- --classes

@pytest.fixture
def spec_pt(tmp_path):
    """A small net's PyTorch twin saved by torch.save: 4 classes of 1x6x5 images."""
    spec = "INPUT[1x6x5] -> CONV3-2 -> RELU -> FC-4"
    model, _ = build_model(spec, rng=np.random.default_rng(0))
    path = tmp_path / "small.pt"
    torch.save(randomize_torch(torch_twin(model), seed=3).state_dict(), path)
    return spec, path


def _imported(capsys, tmp_path, spec_pt, *names):
    spec, path = spec_pt
    out_path = tmp_path / "named.npz"
    code, out, err = run(capsys, "import", path, "--model", spec, "-o", out_path, "--mean", "0",
                         "--std", "1", "--overwrite", *names)
    return code, out, err, out_path


def test_classes_go_where_a_trained_run_keeps_them_and_predict_names_them(
        tmp_path, capsys, spec_pt):
    from PIL import Image

    from cnnkit.checkpoint import load_checkpoint
    from cnnkit.inference import predict_images

    code, _, err, out_path = _imported(capsys, tmp_path, spec_pt, "--classes",
                                       "ant, bee,çat ,dog")
    assert code == 0, err
    assert load_checkpoint(out_path).extra["metadata"]["classes"] == ["ant", "bee", "çat", "dog"]
    Image.fromarray(np.arange(30, dtype=np.uint8).reshape(6, 5) * 8).save(tmp_path / "x.png")
    expected = predict_images(out_path, [tmp_path / "x.png"]).top(4)[0]
    assert [name for name, _ in expected] != ["0", "1", "2", "3"]
    code, out, _ = run(capsys, "predict", out_path, tmp_path / "x.png", "--top-k", "4")
    assert code == 0 and out == f"{tmp_path / 'x.png'}: " + "  ".join(
        f"{name} {p:.3f}" for name, p in expected) + "\n"
    assert {name for name, _ in expected} == {"ant", "bee", "çat", "dog"}
    # the same from a file: UTF-8 with a byte-order mark and Windows line ends
    (tmp_path / "names.txt").write_bytes("\ufeffant\r\nbee\r\nçat\r\ndog\r\n".encode())
    code, _, err, out_path = _imported(capsys, tmp_path, spec_pt, "--classes-file",
                                       tmp_path / "names.txt")
    assert code == 0, err
    assert load_checkpoint(out_path).extra["metadata"]["classes"] == ["ant", "bee", "çat", "dog"]


@pytest.mark.parametrize("names, fragments", [
    ("a,b,c", ["--classes gives 3 names; the net gives 4 class scores"]),
    ("a,b,c,d,e", ["--classes gives 5 names"]),
    ("a,b,,d", ["--classes: name 3 is empty"]),
    ("a,b, ,d", ["--classes: name 3 is empty"]),
    ("a,b,a,d", ["'a' is named twice (names 1 and 3)"]),
    ("a,b\nc,d,e", ["name 2 (b\\nc) holds a character that is not printable"]),
])
def test_bad_class_names_are_one_line(tmp_path, capsys, spec_pt, names, fragments):
    code, _, err, out_path = _imported(capsys, tmp_path, spec_pt, "--classes", names)
    assert_one_line_error(code, err, *fragments)
    assert not out_path.exists()


@pytest.mark.parametrize("content, fragments", [
    (b"a\nb\nc\n", ["gives 3 names; the net gives 4"]),
    (b"a\nb\n\nd\n", ["line 3 is empty"]),
    (b"a\nb\x00\nc\nd", ["line 2 (b\\x00) holds a character that is not printable"]),
    (b"a\nb\nc\n\xff\xfe", ["not UTF-8 text (byte 6 is 0xff)"]),
    (b"a\n" * 100_000, ["gives 100,000 names; the net gives 4"]),
])
def test_bad_classes_files_are_one_line(tmp_path, capsys, spec_pt, content, fragments):
    (tmp_path / "names.txt").write_bytes(content)
    code, _, err, _ = _imported(capsys, tmp_path, spec_pt, "--classes-file",
                                tmp_path / "names.txt")
    assert_one_line_error(code, err, str(tmp_path / "names.txt"), *fragments)


def test_a_huge_or_special_classes_file_is_refused_unread(tmp_path, capsys, spec_pt,
                                                          monkeypatch):
    from cnnkit.weights import transfer

    monkeypatch.setattr(transfer, "MAX_CLASSES_FILE_BYTES", 100)
    (tmp_path / "big.txt").write_bytes(b"x" * 101)
    code, _, err, _ = _imported(capsys, tmp_path, spec_pt, "--classes-file",
                                tmp_path / "big.txt")
    assert_one_line_error(code, err, "big.txt: 101 bytes; a classes file holds at most")
    code, _, err, _ = _imported(capsys, tmp_path, spec_pt, "--classes-file", tmp_path)
    assert_one_line_error(code, err, "it is a folder, not a file")
    code, _, err, _ = _imported(capsys, tmp_path, spec_pt, "--classes-file",
                                tmp_path / "none.txt")
    assert_one_line_error(code, err, "classes file not found")
    with pytest.raises(SystemExit):      # one or the other
        _imported(capsys, tmp_path, spec_pt, "--classes", "a,b,c,d", "--classes-file",
                  tmp_path / "big.txt")
