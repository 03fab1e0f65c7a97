"""NaN and infinite values: a net holding them is refused by whatever serves its answers, in one
line naming the array (weights *and* batch norm's running statistics), unless asked to look
anyway; images that are empty or hold objects, complex numbers, NaN or infinities are refused
by ``predict_images``, ``classify`` and ``Run.predict``."""

import json
import re
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

import cnnkit
from cnnkit.cli import main
from cnnkit.data import DataError
from cnnkit.finite import NonFiniteError, check_arrays, check_net, nonfinite
from cnnkit.io import load_checkpoint, save_checkpoint
from cnnkit.models import build_model
from cnnkit.nn import shapes_only
from tests.test_cli import assert_one_line_error, run

VAR = "1.running_var holds NaN (1 of 6 values)"       # lenet-bn's first batch norm


# ---------------------------------------------------------------------------- the mechanism

def test_nonfinite_counts_nan_and_infinities_and_passes_finite_arrays():
    assert nonfinite(np.ones((3, 5), np.float32)) is None
    assert nonfinite(np.arange(7)) is None                    # integers are always finite
    assert nonfinite(np.zeros((0, 4))) is None
    x = np.zeros((3, 1001))
    x[2, 5] = np.nan
    assert nonfinite(x) == "NaN (1 of 3,003 values)"
    x[0, 0] = -np.inf
    x[1, 1] = np.inf
    assert nonfinite(x) == "NaN and infinite values (3 of 3,003 values)"
    assert nonfinite(np.array([np.inf])) == "infinite values (1 of 1 value)"
    assert nonfinite(np.array([1 + 1j, complex(0, np.nan)])) == "NaN (1 of 2 values)"


def test_finite_values_whose_sum_overflows_are_finite():
    """The fast test is a sum; 40 float16 values of 60,000 sum past float16's 65,504, yet each
    is finite."""
    big = np.full((5, 8), 60_000, np.float16)
    with np.errstate(over="ignore"):
        assert not np.isfinite(big.sum())
    assert nonfinite(big) is None
    assert nonfinite(np.full(3, 1e308)) is None


def test_check_arrays_names_the_first_array_and_counts_the_others():
    arrays = [("0.weight", np.ones((2, 3))), ("0.bias", np.array([np.nan, 1.0])),
              ("2.weight", np.array([np.inf])), ("2.bias", np.array([np.nan]))]
    with pytest.raises(NonFiniteError) as caught:
        check_arrays(arrays, "w.npz")
    message = str(caught.value)
    assert message.startswith("w.npz: 0.bias holds NaN (1 of 2 values), and 2 more arrays as "
                              "well; pass --allow-nonfinite")
    assert "\n" not in message and isinstance(caught.value, ValueError)
    assert check_arrays(arrays, "w.npz", allow=True) == [
        "0.bias holds NaN (1 of 2 values)", "2.weight holds infinite values (1 of 1 value)",
        "2.bias holds NaN (1 of 1 value)"]
    assert check_arrays(arrays[:1], "w.npz") == []


def test_check_net_reads_buffers_as_well_as_weights_and_skips_placeholders():
    model, _ = build_model("lenet-bn", rng=np.random.default_rng(0))
    assert check_net(model, "net") == []
    dict(model.named_buffers())["1.running_var"][0] = np.nan
    with pytest.raises(NonFiniteError, match="^" + re.escape(f"net: {VAR}; pass")):
        check_net(model, "net")
    with shapes_only():
        placeholders, _ = build_model("lenet-bn")
    assert check_net(placeholders, "net") == []


# ---------------------------------------------------------------------------- a run with NaN

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished run (one epoch of lenet-bn on 60 images), a copy whose model.npz holds one NaN
    in a running variance, one whose first weight holds infinities, and a small npz of images
    to evaluate on."""
    root = tmp_path_factory.mktemp("nonfinite")
    assert main(["train", "--limit", "60", "--epochs", "1", "--batch-size", "30",
                 "--no-progress", "--out", str(root), "--name", "good"]) == 0
    good = root / "good"
    ckpt = load_checkpoint(good / "model.npz")
    for name in ("nanvar", "infweight"):
        shutil.copytree(good, root / name)
        model = ckpt.build_model()
        if name == "nanvar":
            dict(model.named_buffers())["1.running_var"][0] = np.nan
        else:
            model.parameters()[0].data.flat[:3] = np.inf
        save_checkpoint(root / name / "model.npz", model, extra=ckpt.extra)
    images = np.random.default_rng(0).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    np.savez(root / "small.npz", x=images, y=np.arange(12) % 10)
    return root


def _cli_cases(runs):
    """(command line, what its refusal says) for every command that serves a net."""
    nan = runs / "nanvar" / "model.npz"
    image = runs / "digit.png"
    Image.new("L", (20, 31), 200).save(image)
    return [
        (["evaluate", str(nan), "--data", f"npz:{runs / 'small.npz'}", "--no-progress"],
         f"{nan}: {VAR}"),
        (["predict", str(nan), str(image)], f"{nan}: {VAR}"),
        (["report", str(runs / "nanvar"), "-o", str(runs / "page.html"), "--no-progress"],
         f"{nan}: {VAR}"),
        (["export", str(nan), "-o", str(runs / "nan.safetensors")], f"{nan}: {VAR}"),
        (["export", str(nan), "-o", str(runs / "nan.onnx")], f"{nan}: {VAR}"),
    ]


def test_every_command_refuses_a_nan_running_variance_in_one_line(capsys, runs):
    for argv, line in _cli_cases(runs):
        code, out, err = run(capsys, *argv)
        assert_one_line_error(code, err, line, "--allow-nonfinite")
        assert out == "", argv
    assert not (runs / "page.html").exists() and not (runs / "nan.safetensors").exists()
    assert not (runs / "nan.onnx").exists()


def test_allow_nonfinite_lets_every_command_look(capsys, runs):
    pytest.importorskip("onnx")
    for argv, _ in _cli_cases(runs):
        code, out, err = run(capsys, *argv, "--allow-nonfinite")
        assert code == 0, (argv, err)
    page = (runs / "page.html").read_text(encoding="utf-8")
    assert f"holds NaN or infinite values ({VAR})" in page        # the statistics, named
    assert (runs / "nan.safetensors").is_file() and (runs / "nan.onnx").is_file()


def test_an_infinite_weight_is_refused_and_summary_still_reads_the_net(capsys, runs):
    inf = runs / "infweight" / "model.npz"
    code, _, err = run(capsys, "evaluate", str(inf), "--no-progress")
    assert_one_line_error(code, err, f"{inf}: 0.weight holds infinite values (3 of 150 values)")
    code, out, _ = run(capsys, "summary", str(inf))
    assert code == 0 and "TOTAL" in out


def test_looking_anyway_prints_the_result_without_numpys_warnings(capsys, runs):
    """inf * 0 in the first convolution: NaN scores, and NumPy's "invalid value" warnings,
    which --allow-nonfinite keeps off the terminal."""
    inf = runs / "infweight" / "model.npz"
    digit = runs / "grey.png"
    Image.new("L", (33, 14), 90).save(digit)
    for argv in (["predict", str(inf), str(digit)],
                 ["evaluate", str(inf), "--data", f"npz:{runs / 'small.npz'}", "--no-progress"]):
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")                 # as a fresh process shows them
            code, out, err = run(capsys, *argv, "--allow-nonfinite")
        assert code == 0 and out and err == "", (argv, err)
        assert [str(w.message) for w in shown] == [], argv


def test_training_from_a_nan_net_is_refused_before_the_run_folder_exists(capsys, runs):
    """--weights and --resume: no flag looks anyway, since training keeps a NaN running
    variance NaN (its momentum update mixes NaN in) and spreads a NaN weight."""
    nan = runs / "nanvar" / "model.npz"
    resumable = runs / "resumable" / "checkpoint.npz"
    last = load_checkpoint(runs / "good" / "checkpoint.npz")
    model = last.build_model()
    dict(model.named_buffers())["5.running_var"][15] = np.nan
    save_checkpoint(resumable, model, optimizer=last.optimizer, scheduler=last.scheduler,
                    extra=last.extra)
    for argv, where in ((["--weights", str(nan), "--limit", "20", "--out", str(runs / "new")],
                         f"{nan}: {VAR}"),
                        (["--resume", str(resumable)], f"{resumable}: 5.running_var holds NaN "
                                                       f"(1 of 16 values)")):
        code, _, err = run(capsys, "train", *argv, "--epochs", "2", "--no-progress")
        assert_one_line_error(code, err, f"{where}; training would not remove them")
    assert not (runs / "new").exists() and not (runs / "resumable" / "model.npz").exists()


def test_python_refuses_the_same_nets_unless_asked(runs):
    nan = runs / "nanvar" / "model.npz"
    digit = np.full((30, 21), 0.25)
    with pytest.raises(NonFiniteError, match=re.escape(f"{nan}: {VAR}")):
        cnnkit.predict_images(nan, digit)
    assert np.isnan(cnnkit.predict_images(nan, digit, allow_nonfinite=True).probabilities).all()

    loaded = cnnkit.load_run(runs / "nanvar")        # loads: it may be looked at
    data = f"npz:{runs / 'small.npz'}"
    for call in (lambda **kw: loaded.predict(digit, **kw),
                 lambda **kw: loaded.evaluate(data, **kw),
                 lambda **kw: loaded.report(runs / "py.html", **kw)):
        with pytest.raises(NonFiniteError, match=re.escape(f"{nan}: {VAR}")):
            call()
    assert not (runs / "py.html").exists()
    # the page with the flag: test_allow_nonfinite_lets_every_command_look
    assert np.isnan(loaded.predict(digit, allow_nonfinite=True).probabilities).all()
    assert len(loaded.evaluate(data, allow_nonfinite=True).labels) == 12


def test_to_onnx_refuses_a_nan_net(runs):
    pytest.importorskip("onnx")
    from cnnkit.export import to_onnx

    model = load_checkpoint(runs / "nanvar" / "model.npz").build_model()
    with pytest.raises(NonFiniteError, match="^" + re.escape(f"the net: {VAR}")):
        to_onnx(model, (1, 28, 28))
    assert to_onnx(model, (1, 28, 28), allow_nonfinite=True) is not None


# ---------------------------------------------------------------------------- import

def test_import_refuses_weights_holding_nan_under_the_files_names(capsys, runs, tmp_path):
    model, _ = build_model("lenet-bn", rng=np.random.default_rng(1))
    state = {f"net.{k}": v for k, v in model.state_dict().items()}      # paired by position
    state["net.5.running_var"][3] = np.nan
    path = tmp_path / "w.safetensors"
    from cnnkit.weights.safetensors import write_safetensors

    write_safetensors(path, state, {"format": "pt"})
    out_file = tmp_path / "w.npz"
    code, out, err = run(capsys, "import", str(path), "--model", "lenet-bn", "-o",
                         str(out_file))
    assert_one_line_error(code, err, f"{path}: net.5.running_var holds NaN (1 of 16 values)",
                          "--allow-nonfinite")
    assert not out_file.exists()
    code, out, err = run(capsys, "import", str(path), "--model", "lenet-bn", "-o",
                         str(out_file), "--allow-nonfinite", "--mean", "0.1", "--std", "0.3")
    assert code == 0 and "note: 5.running_var holds NaN (1 of 16 values)" in out, err
    with pytest.raises(NonFiniteError, match="5.running_var"):
        cnnkit.predict_images(out_file, np.zeros((28, 28)))


def test_a_double_too_large_for_float32_is_refused_as_infinite(tmp_path):
    from cnnkit.weights import load_weights

    model, _ = build_model("INPUT[1x4x6] -> FC-3", rng=np.random.default_rng(0))
    state = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    state["1.weight"][1, 7] = 1e300             # Flatten is layer 0
    np.savez(tmp_path / "w.npz", **state)
    before = model.parameters()[0].data.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # no "overflow in cast" beside the one line
        with pytest.raises(NonFiniteError, match=r"w\.npz: 1\.weight holds infinite values "
                                                 r"\(1 of 72 values\)"):
            load_weights(model, tmp_path / "w.npz")
        assert np.array_equal(model.parameters()[0].data, before)      # nothing loaded
        load_weights(model, tmp_path / "w.npz", allow_nonfinite=True)
    assert np.isinf(model.parameters()[0].data[1, 7])


# ---------------------------------------------------------------------------- inputs

@pytest.mark.parametrize("images, fragment", [
    (np.full((2, 1, 28, 28), np.nan, np.float32),
     "the batch holds NaN (1,568 of 1,568 values), the first in image 0"),
    (np.concatenate([np.zeros((2, 28, 28)), np.full((1, 28, 28), np.inf)]),
     "the batch holds infinite values (784 of 2,352 values), the first in image 2"),
    (np.zeros((3, 1, 28, 28), dtype=object), "the batch holds Python objects (dtype object)"),
    (np.zeros((2, 1, 28, 28), complex), "the batch holds complex numbers (dtype complex128)"),
    (np.zeros((0, 1, 28, 28), np.float32), "the batch holds no images (shape (0, 1, 28, 28))"),
    (np.full((20, 31), np.inf), "the image holds infinite values (620 of 620 values)"),
    (np.array([[1, None]], dtype=object), "the image holds Python objects (dtype object)"),
    (np.zeros((20, 31), np.complex64), "the image holds complex numbers (dtype complex64)"),
    (np.zeros((0, 0), np.uint8), "the image is empty (shape (0, 0))"),
    (np.zeros((0, 5, 3)), "the image is empty (shape (0, 5, 3))"),
    (Image.new("L", (0, 0)), "the image is empty (0x0 pixels)"),
    ([np.zeros((20, 31)), Image.new("RGB", (7, 0))], "images[1] is empty (7x0 pixels)"),
    ([np.zeros((9, 4)), np.full((9, 4), np.nan)], "images[1] holds NaN (36 of 36 values)"),
    ([np.zeros((9, 4)), [[0.5, 0.5], [0.5]]], "images[1] is not an array of numbers"),
    ([], "no images given"),
])
def test_classify_refuses_what_no_image_holds(runs, images, fragment):
    loaded = cnnkit.load_run(runs / "good")
    for call in (lambda: cnnkit.predict_images(runs / "good" / "model.npz", images),
                 lambda: loaded.predict(images)):
        with pytest.raises(DataError) as caught:
            call()
        assert fragment in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("value, what", [(np.nan, "NaN (18 of 620 values)"),
                                         (-np.inf, "infinite values (18 of 620 values)")])
def test_a_float_image_file_holding_nan_or_infinities_is_refused(capsys, runs, value, what):
    pixels = np.full((31, 20), 0.5, np.float32)
    pixels[3:9, 4:7] = value
    path = runs / "float.tif"
    Image.fromarray(pixels, mode="F").save(path)
    code, _, err = run(capsys, "predict", str(runs / "good" / "model.npz"), str(path))
    assert_one_line_error(code, err, f"cannot read image {path}: its float pixels (mode F) "
                                     f"hold {what}")


def test_good_images_of_any_size_still_pass(runs):
    ok = cnnkit.predict_images(runs / "good" / "model.npz",
                               [np.zeros((9, 4)), np.full((5, 30), 255, np.uint8),
                                Image.new("RGB", (13, 6)), np.zeros((2, 28, 28))[0]])
    assert ok.probabilities.shape == (4, 10) and np.isfinite(ok.probabilities).all()
    batch = cnnkit.predict_images(runs / "good" / "model.npz", np.full((3, 28, 28), 0.5))
    assert batch.probabilities.shape == (3, 10)


def test_the_hostile_nan_checkpoint_is_what_the_generator_builds(tmp_path, runs):
    """The hostile exercise's generator builds its NaN checkpoints the same way (from the good
    run, with cnnkit.io.save_checkpoint); its commands end in one line each."""
    from tests.hostile.cases import nonfinite_cases

    cases = list(nonfinite_cases(tmp_path, runs / "good"))
    assert len(cases) >= 10 and {group for group, _, _ in cases} == {"nonfinite"}
    made = json.dumps([argv for _, _, argv in cases])
    assert "--allow-nonfinite" in made and "running_var" not in made
