"""Hostile input ends cleanly: one line and a non-zero exit (or a result), within a time bound,
under an address-space limit; never a traceback, a hang, an out-of-memory kill or a silent wrong
answer. The examples of the bug report, each standing for its class."""

import io
import json
import os
import resource
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.io import save_checkpoint
from cnnkit.models import build_model
from tests.test_cli import assert_one_line_error, run

LIMIT = 6 * 2 ** 30          # the address space a child gets: cnnkit must fit or refuse


def _limit_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def cnnkit(*argv, timeout=120, env=None):
    """Run the command line in a child with 6 GiB of address space; (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "cnnkit.cli", *argv], capture_output=True,
                          text=True, timeout=timeout, preexec_fn=_limit_address_space,
                          env={**os.environ, **(env or {})})
    return proc.returncode, proc.stdout, proc.stderr


def clean_error(code, err, *fragments, lines=1):
    """Refused, not killed: one line (a spec error adds the spec and a caret under the token)."""
    assert code not in (0, -9, 137), (code, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == lines, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


# ---------------------------------------------------------------------------- budgets

def test_summary_of_a_huge_layer_describes_it_without_allocating():
    code, out, err = cnnkit("summary", "INPUT[1x28x28] -> FC-3000000")
    assert code == 0 and "2.35G" in out, err


@pytest.mark.parametrize("argv, fragments", [
    (["train", "--model", "INPUT[1x28x28] -> FC-3000000 -> FC-10"],
     ["parameters of", "would need", "--memory-budget"]),
    (["time", "lenet-bn", "--batch", "10000000"], ["a training step of lenet-bn", "would need"]),
    (["gradcheck", "--batch", "100000000"], ["a training step", "float64", "would need"]),
    (["time", "INPUT[3x20000x20000] -> CONV3-64 -> GAP -> FC-10", "--batch", "64"],
     ["would need"]),
    (["gradcheck", "--model", "INPUT[1x8x8] -> FC-100000000 -> FC-10"], ["would need"]),
])
def test_absurd_sizes_are_refused_before_anything_is_allocated(argv, fragments):
    code, _, err = cnnkit(*argv, "--memory-budget", "2G")
    clean_error(code, err, *fragments, "2.0 GiB")


def test_the_budget_can_be_raised_and_lowered(capsys):
    code, _, err = run(capsys, "time", "lenet-bn", "--batch", "4", "--iterations", "1",
                       "--memory-budget", "1M")
    assert_one_line_error(code, err, "more than the memory budget (1.0 MiB)")
    code, out, _ = run(capsys, "time", "lenet-bn", "--batch", "4", "--iterations", "1",
                       "--memory-budget", "1G")
    assert code == 0 and "training step" in out


def test_an_empty_repeat_of_a_huge_count_expands_at_once():
    spec = "INPUT[1x28x28] -> [[RELU]*0]*" + "9" * 23 + " -> FC-10"
    code, out, err = cnnkit("summary", spec, timeout=20)
    assert code == 0, err
    code, _, err = cnnkit("summary", "INPUT[1x28x28] -> [[RELU]*2]*" + "9" * 23, timeout=20)
    clean_error(code, err, "more than the 10,000 a spec may have", lines=3)


def test_a_spec_longer_than_a_file_name_is_a_spec(capsys):
    spec = "INPUT[1x28x28] -> " + " -> ".join(["RELU"] * 80) + " -> FC-10"
    code, out, _ = run(capsys, "summary", spec)
    assert code == 0 and "FC-10" in out


# ---------------------------------------------------------------------------- checkpoints

@pytest.fixture()
def checkpoint(tmp_path):
    model, _ = build_model("lenet-bn", rng=np.random.default_rng(0))
    return save_checkpoint(tmp_path / "c.npz", model, extra={"metadata": {"input_shape":
                                                                          [1, 28, 28]}})


def _rewrite_meta(path, edit):
    """The checkpoint at ``path`` with its JSON replaced by ``edit(meta)``."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays["__meta__.json"].tobytes())
    arrays["__meta__.json"] = np.frombuffer(json.dumps(edit(meta)).encode(), np.uint8)
    np.savez(path, **arrays)


@pytest.mark.parametrize("edit, fragment", [
    (lambda m: [m], "not a cnnkit checkpoint"),
    (lambda m: {**m, "extra": [1, 2]}, "extra state is a list"),
    (lambda m: {**m, "extra": {"metadata": "x"}}, "metadata is a str"),
    (lambda m: {**m, "model_keys": {"a": 1}}, "model_keys is not a list"),
    (lambda m: {**m, "version": "1"}, "not a number"),
    (lambda m: {**m, "optimizer": [1]}, "optimizer state is a list"),
    (lambda m: {**m, "extra": {"w": {"__array__": 7}}}, "is not a name"),
])
def test_malformed_checkpoint_metadata_is_one_line(capsys, checkpoint, edit, fragment):
    _rewrite_meta(checkpoint, edit)
    for argv in (["evaluate", str(checkpoint)], ["summary", str(checkpoint)],
                 ["predict", str(checkpoint), "x.png"]):
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, str(checkpoint), fragment)


def _quick_run(tmp_path):
    assert main(["train", "--limit", "100", "--epochs", "1", "--no-progress", "--out",
                 str(tmp_path), "--name", "r", "--batch-size", "50"]) == 0
    return tmp_path / "r" / "checkpoint.npz"


@pytest.mark.parametrize("field, value, fragment", [
    ("epoch", -1, "must be counts"),
    ("batch", "3", "must be counts"),
    ("order", [0, 0, 1], "not a permutation"),
    ("sums", [1, 2], "must be 3 numbers"),
    ("rng", {"bit_generator": "nope"}, "does not fit"),
    ("history", [], "not what a Trainer writes"),
])
def test_a_tampered_resume_state_is_one_line(capsys, tmp_path, field, value, fragment):
    path = _quick_run(tmp_path)
    capsys.readouterr()

    def edit(meta):
        meta["extra"]["trainer"][field] = value
        return meta
    _rewrite_meta(path, edit)
    code, _, err = run(capsys, "train", "--resume", str(path), "--epochs", "2", "--no-progress")
    assert_one_line_error(code, err, str(path), fragment)


def test_a_checkpoint_reads_only_what_it_names(tmp_path, checkpoint):
    """An unreferenced member that inflates to 300 MB is never inflated; a referenced member
    whose header claims terabytes is refused by its header, before reading."""
    with zipfile.ZipFile(checkpoint, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("junk.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f8", "fortran_order": False, "shape": (300 * 2 ** 17,)})
            zeros = bytes(2 ** 20)
            for _ in range(300):
                member.write(zeros)
    assert checkpoint.stat().st_size < 2 * 2 ** 20
    code, out, err = cnnkit("summary", str(checkpoint), "--memory-budget", "100M")
    assert code == 0, err
    big = tmp_path / "big.npz"
    with zipfile.ZipFile(checkpoint) as src, zipfile.ZipFile(big, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "model/0.weight.npy":      # claims 10^6 x 10^6 float64
                head = {"descr": "<f8", "fortran_order": False, "shape": (10 ** 6, 10 ** 6)}
                buffer = io.BytesIO()
                np.lib.format.write_array_header_1_0(buffer, head)
                data = buffer.getvalue() + data[128:]
            dst.writestr(info.filename, data)
    code, _, err = cnnkit("summary", str(big))
    clean_error(code, err, str(big), "would need")


# ---------------------------------------------------------------------------- data files

def test_an_npz_whose_header_claims_terabytes_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("x.npy", "w") as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "|u1", "fortran_order": False, "shape": (10 ** 7, 10 ** 6)})
        with archive.open("y.npy", "w") as member:
            np.lib.format.write_array(member, np.zeros(3, np.int64))
    code, _, err = cnnkit("train", "--data", f"npz:{path}", "--model", "FC-2",
                          "--out", str(tmp_path))
    clean_error(code, err, str(path), "would need")


def test_an_npz_with_python_objects_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([object()] * 3, dtype=object), y=np.arange(3))
    code, _, err = cnnkit("train", "--data", f"npz:{path}", "--model", "FC-2",
                          "--out", str(tmp_path))
    clean_error(code, err, str(path), "Python objects")


def test_labels_as_a_column_and_int32_pixels_give_the_right_accuracy(capsys, tmp_path):
    """(N, 1) labels used to broadcast (9%), int32 digits to be divided wrongly (-24 points)."""
    from cnnkit.data import load_mnist

    run_dir = tmp_path / "r"
    assert main(["train", "--limit", "600", "--epochs", "1", "--no-progress", "--out",
                 str(tmp_path), "--name", "r"]) == 0
    capsys.readouterr()
    x, y = load_mnist("test")
    np.savez(tmp_path / "ref.npz", x=x[:500], y=y[:500])
    np.savez(tmp_path / "odd.npz", x=x[:500].astype(np.int32), y=y[:500, None])
    accuracies = []
    for name in ("ref", "odd"):
        code, out, _ = run(capsys, "evaluate", str(run_dir / "model.npz"), "--data",
                           str(tmp_path / f"{name}.npz"))
        assert code == 0
        accuracies.append(out.split("accuracy ")[1].split()[0])
    assert accuracies[0] == accuracies[1] and float(accuracies[0]) > 0.2    # chance is 0.1


def test_the_fuzz_suite_under_an_address_space_limit():
    """tests/test_fuzz.py (specs, command lines, checkpoint metadata, data files), run in a child
    that has 6 GiB of address space: any input that would exhaust memory fails it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           os.path.join(root, "tests", "test_fuzz.py")],
                          capture_output=True, text=True, timeout=600, cwd=root,
                          preexec_fn=_limit_address_space,
                          env={**os.environ, "CNNKIT_FUZZ": "1", "CNNKIT_FUZZ_EXAMPLES": "40"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "6 passed" in proc.stdout, proc.stdout[-2000:]


@pytest.mark.parametrize("field, value", [("epochs", "many"), ("batch_size", 0),
                                          ("optimizer", "lbfgs"), ("model", 5),
                                          ("input", [1, 2]), ("val_size", -3)])
def test_damaged_run_settings_are_one_line(capsys, tmp_path, field, value):
    path = _quick_run(tmp_path)
    capsys.readouterr()

    def edit(meta):
        meta["extra"]["metadata"]["settings"][field] = value
        return meta
    _rewrite_meta(path, edit)
    code, _, err = run(capsys, "train", "--resume", str(path), "--no-progress")
    assert_one_line_error(code, err, str(path), f"run settings are damaged: {field}")


def test_no_command_and_absurd_threads_are_usage_errors(capsys):
    for argv, fragment in (([], "choose a command: train, lr-find, evaluate"),
                           (["summary", "lenet-bn", "--threads", "9" * 30],
                            "expected a thread count from 1 to 1,024")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and fragment in err.splitlines()[-1]
        assert "Traceback" not in err


def test_the_budget_counts_an_address_space_limit():
    """Under `ulimit -v`, what is left of the limit is the budget: the child refuses a 7.6 GiB
    step its 6 GiB could not hold, instead of running out of memory midway."""
    code, _, err = cnnkit("time", "INPUT[3x32x32] -> CONV3-1000000 -> GAP -> FC-10", "--batch",
                          "2", "--iterations", "1")
    clean_error(code, err, "would need", "the available memory")


def test_class_names_that_do_not_match_the_scores_are_one_line(capsys, checkpoint):
    _rewrite_meta(checkpoint, lambda m: {**m, "extra": {"metadata": {
        "input_shape": [1, 28, 28], "classes": ["a"]}}})
    code, _, err = run(capsys, "predict", str(checkpoint), "x.png")
    assert_one_line_error(code, err, str(checkpoint), "do not match the net's 10 scores")


def test_an_unnamed_label_of_a_trillion_is_a_mistake(capsys, tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, 0, 10 ** 12]))
    code, _, err = run(capsys, "train", "--data", f"npz:{tmp_path / 'd.npz'}", "--model", "FC-2",
                       "--out", str(tmp_path))
    assert_one_line_error(code, err, "would make 1,000,000,000,001 classes")


@pytest.mark.parametrize("spec, fragment", [
    ("INPUT[1x28x28] -> FC-" + "9" * 40, "is larger than any layer can be"),
    ("INPUT[1x28x28] -> " + "[" * 60 + "RELU" + "]" * 60 + " -> FC-10", "nested more than 50"),
    ("INPUT[1x99999999999x2] -> FC-10", "INPUT sizes go up to 2,147,483,647"),
])
def test_numbers_and_nesting_past_any_array_are_spec_errors(capsys, spec, fragment):
    code, _, err = run(capsys, "summary", spec)
    assert code != 0 and fragment in err.splitlines()[0] and "Traceback" not in err


def test_predict_images_refuses_what_is_not_images(tmp_path, checkpoint):
    import cnnkit

    from cnnkit.data import DataError

    _rewrite_meta(checkpoint, lambda m: {**m, "extra": {"metadata": {"input_shape": [1, 28, 28],
                                                                      "image_shape": [1, 28, 28],
                                                                      "mean": [0.1],
                                                                      "std": [0.3]}}})
    with pytest.raises(TypeError, match="got NoneType"):
        cnnkit.predict_images(checkpoint, None)
    with pytest.raises(DataError, match=r"\(N, 1x28x28\), got shape \(2, 3, 5, 5\)"):
        cnnkit.predict_images(checkpoint, np.zeros((2, 3, 5, 5)))
    with pytest.raises(DataError, match="finite floats"):
        cnnkit.predict_images(checkpoint, [np.full((28, 28), np.nan)])
    generated = cnnkit.predict_images(checkpoint, (np.zeros((28, 28)) for _ in range(2)))
    assert generated.probabilities.shape == (2, 10)
