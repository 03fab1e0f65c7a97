"""The cnnkit command: every subcommand runs, and bad input is one line and a non-zero exit."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.cli.main import build_parser, command_parsers


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A quick run: 1 epoch on 600 images."""
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--limit", "600", "--val-size", "100", "--epochs", "1",
                 "--out", str(out), "--name", "quick", "--no-progress"]) == 0
    return out / "quick"


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["predict"], ["gradcheck"],
                                     ["experiment"], ["report"]])
def test_help_of_every_command(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: cnnkit" in capsys.readouterr().out


def test_console_script_runs_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "cnnkit.cli", "train", "--bogus"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unrecognized arguments: --bogus" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_option_and_bad_values_exit_2(capsys):
    for argv, fragment in ((["train", "--bogus"], "unrecognized arguments: --bogus"),
                           (["train", "--epochs", "0"], "expected a count from 1 to 100,000, got 0"),
                           (["train", "--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
                           (["train", "--resume", "a", "--weights", "b"], "not allowed with")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert fragment in err and "Traceback" not in err


def test_train_writes_the_run_folder(trained):
    for name in ("checkpoint.npz", "model.npz", "history.json", "history.csv", "curves.png",
                 "layer_stats.json", "layer_stats.png"):
        assert (trained / name).is_file(), name
    history = json.loads((trained / "history.json").read_text())
    assert history["epoch"] == [1] and len(history["val_acc"]) == 1
    assert len(history["batch_loss"]) == history["iterations"][0] == 8     # 500 images / 64
    assert (trained / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_prints_test_accuracy_and_resumes(capsys, tmp_path):
    code, out, _ = run(capsys, "train", "--limit", "300", "--val-size", "50", "--epochs", "1",
                       "--out", str(tmp_path), "--name", "r", "--no-progress", "--batch-size", "50")
    assert code == 0 and "test accuracy" in out
    code, out, _ = run(capsys, "train", "--resume", str(tmp_path / "r" / "checkpoint.npz"),
                       "--epochs", "2", "--no-progress")
    assert code == 0 and "resuming" in out and "epoch 2/2" in out
    history = json.loads((tmp_path / "r" / "history.json").read_text())
    assert history["epoch"] == [1, 2]
    assert history["iterations"] == [5, 10] and len(history["batch_loss"]) == 10
    # the layer statistics continue the first run's records at its cadence: --layer-stats auto
    # chose every iteration of 1 epoch of 5 (and kept it for the 10 of the resumed run)
    stats = json.loads((tmp_path / "r" / "layer_stats.json").read_text())
    assert stats["iterations"] == list(range(1, 11)) and stats["every"] == 1
    code, out, _ = run(capsys, "train", "--limit", "300", "--val-size", "50", "--epochs", "1",
                       "--out", str(tmp_path), "--name", "s", "--no-progress", "--batch-size",
                       "50", "--layer-stats", "3")
    stats = json.loads((tmp_path / "s" / "layer_stats.json").read_text())
    assert stats["iterations"] == [1, 3]
    code, out, _ = run(capsys, "train", "--resume", str(tmp_path / "s" / "checkpoint.npz"),
                       "--epochs", "2", "--no-progress")
    stats = json.loads((tmp_path / "s" / "layer_stats.json").read_text())
    assert stats["iterations"] == [1, 3, 6, 9]
    assert (tmp_path / "s" / "layer_stats.png").is_file()
    code, out, _ = run(capsys, "train", "--limit", "300", "--val-size", "50", "--epochs", "1",
                       "--out", str(tmp_path), "--name", "none", "--no-progress",
                       "--layer-stats", "0")
    assert code == 0 and not list((tmp_path / "none").glob("layer_stats*"))


def test_evaluate_reports_accuracy_per_class_and_confusion(capsys, trained):
    code, out, _ = run(capsys, "evaluate", str(trained / "model.npz"))
    assert code == 0
    assert "MNIST test: 10000 images, accuracy" in out
    assert "per-class accuracy" in out and "confusion matrix" in out
    rows = [line for line in out.splitlines() if line.strip().split(" ")[0] in "0123456789" and len(line.split()) == 11]
    assert len(rows) == 10
    assert sum(int(v) for row in rows for v in row.split()[1:]) == 10000


def test_evaluate_on_an_npz_and_a_wrong_shaped_input(capsys, tmp_path, trained):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "ok.npz", x=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), y=rng.integers(0, 10, 20))
    code, out, _ = run(capsys, "evaluate", str(trained / "model.npz"), "--data", str(tmp_path / "ok.npz"))
    assert code == 0 and "20 images" in out
    np.savez(tmp_path / "rgb.npz", x=rng.random((4, 3, 28, 28)).astype(np.float32), y=np.zeros(4, int))
    code, _, err = run(capsys, "evaluate", str(trained / "model.npz"), "--data", str(tmp_path / "rgb.npz"))
    assert_one_line_error(code, err, "shape (4, 3, 28, 28)", "trained on (N, 1x28x28) images")
    np.savez(tmp_path / "small.npz", x=rng.random((4, 1, 20, 20)).astype(np.float32), y=np.zeros(4, int))
    code, _, err = run(capsys, "evaluate", str(trained / "model.npz"), "--data", str(tmp_path / "small.npz"))
    assert_one_line_error(code, err, "shape (4, 1, 20, 20)", "trained on (N, 1x28x28) images")
    (tmp_path / "junk.npz").write_bytes(b"garbage")
    code, _, err = run(capsys, "evaluate", str(trained / "model.npz"), "--data", str(tmp_path / "junk.npz"))
    assert_one_line_error(code, err, "junk.npz")


def test_missing_and_corrupt_checkpoints(capsys, tmp_path):
    code, _, err = run(capsys, "evaluate", str(tmp_path / "none.npz"))
    assert_one_line_error(code, err, "cnnkit evaluate: error: checkpoint not found", "none.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    code, _, err = run(capsys, "predict", str(tmp_path / "corrupt.npz"), "x.png")
    assert_one_line_error(code, err, "corrupt.npz")
    code, _, err = run(capsys, "train", "--resume", str(tmp_path / "corrupt.npz"))
    assert_one_line_error(code, err, "corrupt.npz")


def test_predict_reads_images_and_rejects_unreadable_ones(capsys, tmp_path, trained):
    from PIL import Image
    from cnnkit.data import load_mnist
    images, labels = load_mnist("test")
    paths = []
    for i in range(3):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(255 - images[i]).resize((56, 56)).save(path)   # dark on light, larger
        paths.append(str(path))
    code, out, _ = run(capsys, "predict", str(trained / "model.npz"), *paths, "--top-k", "2")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 3 and all(len(line.split(": ")[1].split()) == 4 for line in lines)
    (tmp_path / "fake.png").write_text("not an image")
    code, _, err = run(capsys, "predict", str(trained / "model.npz"), str(tmp_path / "fake.png"))
    assert_one_line_error(code, err, "cannot read image", "fake.png")
    code, _, err = run(capsys, "predict", str(trained / "model.npz"), str(tmp_path / "missing.png"))
    assert_one_line_error(code, err, "image not found", "missing.png")


@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_gradcheck_prints_a_row_per_parameter(capsys, loss):
    code, out, _ = run(capsys, "gradcheck", "--loss", loss)
    assert code == 0, out
    rows = [line.split() for line in out.splitlines() if re.match(r"  \d+\.(weight|bias) ", line)]
    assert [r[0] for r in rows] == ["0.weight", "0.bias", "1.weight", "1.bias",
                                    "5.weight", "5.bias", "8.weight", "8.bias"]
    assert all(float(r[-1] if "zero" not in " ".join(r) else 0) < 1e-6 for r in rows)
    assert "pass" in out


def test_a_reader_that_leaves_early_is_no_error():
    """`cnnkit ... | head`: the broken pipe ends the command quietly. `true` reads nothing and
    exits before Python has started, so every write meets a closed pipe."""
    proc = subprocess.run(f"{sys.executable} -m cnnkit.cli summary lenet-bn | true; "
                          f"echo ${{PIPESTATUS[0]}}", shell=True, executable="/bin/bash",
                          capture_output=True, text=True)
    assert proc.stderr == "" and proc.stdout.strip() == "141"


def test_python_m_cnnkit_and_version():
    import cnnkit

    for module in ("cnnkit", "cnnkit.cli"):
        proc = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True,
                              text=True)
        assert proc.returncode == 0 and proc.stdout.strip() == f"cnnkit {cnnkit.__version__}"


def test_the_command_line_stays_a_thin_shell():
    """cnnkit/cli/ and every module only it imports, but for the library's own modules (those
    `cnnkit.X` names, which Python users call): under 90 lines a command, none over 300."""
    import cnnkit
    from tests import import_graph

    public = {f"cnnkit.{name}" for name in set(cnnkit._SUBMODULES.values())}
    edges = import_graph.build_graph()
    modules = import_graph.module_names()
    importers = {name: {m for m, targets in edges.items() if name in targets}
                 for name in modules}

    def cli(name):
        return name == "cnnkit.cli" or name.startswith("cnnkit.cli.")

    only_cli = {name for name, by in importers.items()
                if cli(name) or (by and all(cli(m) for m in by) and name not in public)}
    lines = {name: len(modules[name].read_text().splitlines()) for name in only_cli}
    assert any(cli(name) for name in lines) and "cnnkit.app" not in only_cli
    assert max(lines.values()) <= 300, lines
    # a command's parser, its call into the library and its printing: about 75 lines a command
    # before issue 29, 88 after it (compare, lr-find, and twelve options of predict, evaluate,
    # import, export and report)
    commands = command_parsers(build_parser())
    assert sum(lines.values()) < 90 * len(commands), (len(commands), lines)
