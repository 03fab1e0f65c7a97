"""Fuzzing the inputs a user controls: specs, command lines, checkpoint metadata, data files.

Every example must end cleanly: exit 0 with a result, or an error of one line (a spec error adds
the spec and a caret), no traceback, within a time bound. ``tests/test_hostile.py`` runs this
module in a child process limited to 6 GiB of address space, so an example that would exhaust
the machine's memory fails there instead of being killed; run directly, it is skipped unless
``CNNKIT_FUZZ=1``.
"""

import json
import os
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnkit.cli import main

pytestmark = pytest.mark.skipif(not os.environ.get("CNNKIT_FUZZ"),
                                reason="run by test_hostile.py under an address-space limit")

FUZZ = settings(max_examples=int(os.environ.get("CNNKIT_FUZZ_EXAMPLES", "40")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def outcome(capsys, argv, seconds=30.0):
    """Run the command line; assert a clean ending within ``seconds``; (code, out, err).

    A usage error is argparse's: the usage lines, then one "error:" line, exit 2."""
    capsys.readouterr()
    start = time.perf_counter()
    try:
        code, usage = main(argv), False
    except SystemExit as exit_info:
        code, usage = exit_info.code, True
    elapsed = time.perf_counter() - start
    out, err = capsys.readouterr()
    assert isinstance(code, int), (argv, code)
    assert elapsed < seconds, (argv, elapsed)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    lines = err.strip().splitlines()
    if usage:                   # the subcommand's parser, or the top one for unknown options
        assert code == 2 and lines[-1].startswith((f"cnnkit {argv[0]}: error: ",
                                                   "cnnkit: error: ")), (argv, err)
    elif code != 0 and not err and argv[0] == "gradcheck":
        assert "FAIL" in out, (argv, out)        # a check that ran and failed is a result
    elif code != 0:
        assert lines and lines[0].startswith(f"cnnkit {argv[0]}: error: "), (argv, err)
        assert len(lines) == 1 or (len(lines) == 3 and ": error: spec:" in lines[0]), (argv, err)
    return code, out, err


PIECES = ["CONV3-8", "CONV5-6/s2", "CONV3-0", "CONV99-8", "CONV3-8/p1s1", "POOL2", "POOL3/s1",
          "POOL0", "FC-10", "FC-0", "FC-99999999999", "RELU", "LEAKYRELU", "PRELU", "SIGMOID",
          "BN", "DROPOUT", "DROPOUT1.5", "GAP", "LRN5", "RES-8", "INPUT[1x28x28]",
          "INPUT[0x1x1]", "INPUT[3x99999x99999]", "INPUT[1x28]", "->", "->", "->", "[", "]",
          "]*3", "]*0", "]*" + "9" * 22, "*2", "→", "garbage", "CONV", "FC-", "-", "x", "",
          "LN", "GN2", "GN3", "GN0", "GN", "DROPOUT/infer", "DROPOUT0.5/infer/infer",
          "CONV3-8/s2/he", "CONV3-8/he/he", "FC-10/w0.01", "FC-10/w0", "FC-10/w1e-3",
          "POOL2/he", "/", "/he"]


@FUZZ
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=12),
       given_input=st.sampled_from([[], ["--input", "1x28x28"], ["--input", "3x32x32"],
                                    ["--input", "1x1x1"], ["--input", "3x100000x100000"]]))
def test_any_spec_summarizes_or_is_refused(capsys, pieces, given_input):
    outcome(capsys, ["summary", " ".join(pieces), *given_input], seconds=10)


@FUZZ
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=8),
       batch=st.sampled_from(["1", "2", "0", "-1", "x", "99999999999"]))
def test_any_spec_times_or_is_refused(capsys, pieces, batch):
    outcome(capsys, ["time", " ".join(pieces), "--input", "1x12x12", "--batch", batch,
                     "--iterations", "1", "--warmup", "0"])


VALUES = ["0", "-1", "1", "2", "1.5", "abc", "", "1e400", "nan", "99999999999999999999",
          "3x32x32", "1x28x28", "0x0x0", "1x99999x99999"]


@FUZZ
@given(command=st.sampled_from(["gradcheck", "time", "summary", "convert"]),
       options=st.lists(st.tuples(st.sampled_from(["--batch", "--input", "--num-checks",
                                                   "--tol", "--seed", "--iterations",
                                                   "--image", "--dtype", "--reg",
                                                   "--memory-budget", "--threads"]),
                                  st.sampled_from(VALUES)), max_size=4))
def test_any_options_of_the_describing_commands(capsys, command, options):
    argv = [command] + ([] if command == "gradcheck" else ["lenet-bn"])
    argv += [part for pair in options for part in pair]
    if command == "time":
        argv += ["--iterations", "1", "--warmup", "0"]
    outcome(capsys, argv)


@FUZZ
@given(options=st.lists(st.tuples(
    st.sampled_from(["--val-size", "--test-size", "--augment", "--input", "--fit", "--data",
                     "--limit", "--lr", "--weight-decay", "--model", "--batch-size"]),
    st.sampled_from(VALUES + ["crop,flip", "none", "resize", "mnist", "npz:/nonexistent.npz",
                              "folder:/nonexistent", "FC-10", "lenet5", "crop:9"])),
    max_size=3))
def test_any_options_of_train(capsys, tmp_path_factory, options):
    argv = ["train", "--limit", "40", "--epochs", "1", "--batch-size", "20", "--no-progress"]
    argv += [part for pair in options for part in pair]
    argv += ["--out", str(tmp_path_factory.mktemp("runs"))]
    outcome(capsys, argv, seconds=60)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2, 2 ** 70) | st.floats()
                    | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(["format", "version", "model", "extra",
                                                       "metadata", "settings", "trainer",
                                                       "model_keys", "optimizer", "__array__",
                                                       "input_shape", "type", "x"]), inner,
                                      max_size=4), max_leaves=12)


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    assert main(["train", "--limit", "60", "--epochs", "1", "--no-progress", "--out",
                 str(folder), "--name", "r", "--batch-size", "30"]) == 0
    return folder / "r" / "checkpoint.npz"


@FUZZ
@given(replace=st.dictionaries(st.sampled_from(["format", "version", "model", "extra",
                                                "model_keys", "optimizer", "scheduler"]),
                               JSON, max_size=3),
       command=st.sampled_from(["summary", "evaluate", "resume", "predict"]))
def test_any_checkpoint_metadata(capsys, tmp_path_factory, good_checkpoint, replace, command):
    with np.load(good_checkpoint) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays["__meta__.json"].tobytes())
    meta.update(replace)
    arrays["__meta__.json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    folder = tmp_path_factory.mktemp("bad")
    path = folder / "checkpoint.npz"
    np.savez(path, **arrays)
    capsys.readouterr()
    argv = {"summary": ["summary", str(path)], "evaluate": ["evaluate", str(path)],
            "resume": ["train", "--resume", str(path), "--no-progress"],
            "predict": ["predict", str(path), str(path)]}[command]
    outcome(capsys, argv, seconds=60)


DTYPES = ["uint8", "int32", "int64", "float32", "float64", "bool", "complex64", "<U3"]


@FUZZ
@given(x_shape=st.sampled_from([(12, 8, 8), (12, 1, 8, 8), (12, 8, 8, 3), (12,), (0, 8, 8),
                                (12, 8, 8, 7), (12, 0, 8), (11, 8, 8)]),
       x_dtype=st.sampled_from(DTYPES), y_shape=st.sampled_from([(12,), (12, 1), (12, 2), ()]),
       y_dtype=st.sampled_from(DTYPES), scale=st.sampled_from([1, 255, 300, -1, np.nan]),
       classes=st.sampled_from([None, ["a", "b"], ["a", "b", "c"], []]))
def test_any_npz_data(capsys, tmp_path_factory, x_shape, x_dtype, y_shape, y_dtype, scale,
                      classes):
    rng = np.random.default_rng(0)
    with np.errstate(invalid="ignore"):
        x = (rng.random(x_shape) * scale).astype(x_dtype) if x_dtype != "<U3" \
            else np.full(x_shape, "abc")
        y = (np.arange(int(np.prod(y_shape))) % 3).reshape(y_shape).astype(y_dtype) \
            if y_dtype != "<U3" else np.full(y_shape, "1")
    path = tmp_path_factory.mktemp("npz") / "d.npz"
    arrays = {"x": x, "y": y}
    if classes is not None:
        arrays["classes"] = np.array(classes)
    np.savez(path, **arrays)
    outcome(capsys, ["train", "--data", f"npz:{path}", "--model", "FC-3", "--epochs", "1",
                     "--no-progress", "--out", str(path.parent / "runs")], seconds=60)
