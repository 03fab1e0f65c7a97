"""The notes' experiments: each runs tiny through Python and says what the notes say; the results
folder is claimed like a training run's; the command line runs one; the targets hold at (nearly)
the default scale."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.experiments import EXPERIMENTS, run_experiment
from cnnkit.experiments import bn_init, covariate, dropout_modes, fc_to_conv, lr_find, vanishing
from cnnkit.experiments.common import format_table, jsonable
from cnnkit.runs import RunFolderError

TINY_DROPOUT = dropout_modes.Config(masks=4000, steps=40, test_size=500, probe_size=20,
                                    score_masks=200)


def run(experiment, config, tmp_path, **kwargs):
    lines = []
    results = run_experiment(experiment, out=tmp_path, config=config, progress=False,
                             log=lines.append, **kwargs)
    return results, lines


def check_written(results, tmp_path, name):
    """results.json equals what was returned; every figure is a real PNG."""
    folder = tmp_path / name
    assert results["folder"] == str(folder)
    saved = json.loads((folder / "results.json").read_text())
    assert saved == json.loads(json.dumps({k: v for k, v in results.items() if k != "folder"}))
    assert saved["experiment"] == name and saved["timings"]["total_s"] > 0
    assert saved["figures"]
    for figure in saved["figures"]:
        data = (folder / figure).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, figure
    assert sorted(p.name for p in folder.iterdir()) == sorted([*saved["figures"], "results.json"])
    return saved


def test_the_registry_lists_the_experiments_in_order():
    assert list(EXPERIMENTS) == ["vanishing-gradients", "covariate-shift", "bn-init",
                                 "dropout-modes", "fc-to-conv", "lr-find", "small-batch"]
    for name, entry in EXPERIMENTS.items():
        assert entry.summary and "\n" not in entry.summary
        module = entry.load()
        module.Config().check()
        module.Config.full().check()


def test_vanishing_gradients_tiny(tmp_path):
    config = vanishing.Config(depth=6, width=32, steps=20, snapshots=2, probe_size=200,
                              train_size=2000, test_size=500)
    results, lines = run("vanishing-gradients", config, tmp_path)
    saved = check_written(results, tmp_path, "vanishing-gradients")
    nets = saved["results"]["nets"]
    for net in nets.values():
        assert net["step"] == [0, 10, 20]
        assert np.shape(net["weight_grad_norm"]) == np.shape(net["input_grad_norm"]) == (3, 7)
        assert np.all(np.asarray(net["weight_grad_norm"]) > 0)
    # six sigmoid layers already cost the first layer a factor of 100 against ReLU's
    assert nets["sigmoid"]["first_over_last"][0] < nets["relu"]["first_over_last"][0] / 100
    assert saved["settings"]["depth"] == 6 and saved["scale"] == "custom"
    assert any("layer 1 / layer 7, at init" in line for line in lines)
    assert lines[-1].endswith(str(tmp_path / "vanishing-gradients"))


def test_vanishing_gradients_targets_at_the_default_net(tmp_path):
    """The target is about the default net at initialisation; a short run is enough."""
    config = vanishing.Config(steps=50, snapshots=1, test_size=1000)
    results, lines = run("vanishing-gradients", config, tmp_path)
    assert [t["met"] for t in results["targets"]] == [True, True], lines
    assert results["results"]["nets"]["sigmoid"]["first_over_last"][0] < 1e-3


def test_covariate_shift_tiny(tmp_path):
    config = covariate.Config(steps=300, eval_every=100, early_step=50, test_size=500,
                              train_size=3000)
    results, _ = run("covariate-shift", config, tmp_path)
    saved = check_written(results, tmp_path, "covariate-shift")
    r = saved["results"]
    assert r["steps"] == [0, 50, 100, 200, 300] and r["early_step"] == 50
    for net in r["nets"].values():
        p = np.asarray(net["percentiles_unit"])
        assert p.shape == (3, 5) and np.all(p[0] <= p[1]) and np.all(p[1] <= p[2])
        assert len(net["test_acc"]) == 5 and all(0 <= a <= 1 for a in net["test_acc"])
        assert len(net["relative_drift_median_over_units"]) == 3


def test_covariate_shift_targets(tmp_path):
    """BN reaches 90% sooner and its sigmoid inputs drift less (2,000 of the default 10,000
    steps already show both)."""
    config = covariate.Config(steps=2000, eval_every=100, test_size=2000)
    results, lines = run("covariate-shift", config, tmp_path)
    assert [t["met"] for t in results["targets"]] == [True, True], lines
    nets = results["results"]["nets"]
    assert np.mean(nets["bn"]["relative_drift_median_over_units"]) < \
        0.5 * np.mean(nets["plain"]["relative_drift_median_over_units"])


def test_bn_init_tiny(tmp_path):
    config = bn_init.Config(depth=3, width=20, scales=3, train_size=200, val_size=200,
                            epochs=2, batch_size=50)
    results, lines = run("bn-init", config, tmp_path)
    saved = check_written(results, tmp_path, "bn-init")
    r = saved["results"]
    assert np.allclose(r["weight_scales"], [1e-4, 1e-2, 1])
    for net in r["nets"].values():
        for key in ("train_acc", "val_acc", "best_val_acc", "final_loss"):
            assert len(net[key]) == 3
        assert all(0 <= a <= 1 for a in net["val_acc"])
    assert len(lines) >= 6          # the time, the header, its rule, three scales, ...


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_dropout_modes_expectations_agree(tmp_path, p):
    config = dropout_modes.Config(p=p, masks=4000, steps=40, test_size=500, probe_size=20,
                                  score_masks=200)
    results, lines = run("dropout-modes", config, tmp_path)
    saved = check_written(results, tmp_path, "dropout-modes")
    assert all(t["met"] for t in saved["targets"]), lines
    units = saved["results"]["units"]
    x = np.asarray(saved["results"]["input"])
    np.testing.assert_allclose(units["upscale_in_train"]["test_output"], x, rtol=1e-6)
    np.testing.assert_allclose(units["downscale_in_infer"]["test_output"], (1 - p) * x, rtol=1e-6)
    for mode in units.values():
        assert mode["max_abs_z"] < 5
        assert mode["max_abs_deviation"] < 5 * mode["max_standard_error"]
    assert saved["results"]["rescaled"]["eval"] < 1e-4
    assert saved["results"]["rescaled"]["train_same_masks"] < 1e-4


def test_fc_to_conv_matches_crop_by_crop(tmp_path):
    config = fc_to_conv.Config(steps=30, rows=1, cols=3, repeats=1)
    results, lines = run("fc-to-conv", config, tmp_path)
    saved = check_written(results, tmp_path, "fc-to-conv")
    r = saved["results"]
    assert r["canvas_shape"] == [1, 1, 28, 84]
    assert r["score_map_shape"] == [1, 10, 1, 15]       # (84 - 28) / 4 + 1 positions
    assert r["output_stride"] == [4, 4]
    assert r["max_abs_diff"] < 1e-4 and r["max_abs_score"] > 0.1
    assert all(t["met"] for t in saved["targets"]), lines


LR_FIND_CHILD = """
import json, sys
from cnnkit.experiments import lr_find, run_experiment
config = lr_find.Config(mnist_limit=400, mnist_epochs=1, folder_epochs=1, iterations=40,
                        grid=2, lo=1e-3, hi=1e-2)
lines = []
results = run_experiment("lr-find", out=sys.argv[1], config=config, progress=False,
                         log=lines.append)
print(json.dumps({"results": jsonable(results), "lines": lines}))
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                    reason="the folder half writes scikit-learn's digits")
def test_lr_find_measures_the_suggestions_against_the_grid(tmp_path):
    # in a child: scikit-learn brings SciPy and its own BLAS, which would stay loaded in this
    # process and change what the thread tests after this one see
    child = subprocess.run([sys.executable, "-c", "from cnnkit.experiments.common import "
                            "jsonable" + LR_FIND_CHILD, str(tmp_path)], capture_output=True,
                           text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-2000:]
    got = json.loads(child.stdout.splitlines()[-1])
    results, lines = got["results"], got["lines"]
    saved = check_written(results, tmp_path, "lr-find")
    r = saved["results"]
    assert r["rates"] == pytest.approx([1e-3, 1e-2], rel=1e-12)
    for name in ("mnist", "folder"):
        part = r[name]
        assert len(part["grid_test_accuracy"]) == 2
        assert all(0 <= a <= 1 for a in part["grid_test_accuracy"])
        test = part["range_test"]
        assert len(test["lrs"]) <= 40 and test["rule"] == "minimum"
        for rule, got in part["suggested"].items():
            assert got is None or (got["lr"] == test["suggestions"][rule]
                                   and 0 <= got["test_accuracy"] <= 1)
    assert len(saved["targets"]) == 2 and any("mnist" in line for line in lines)


def test_a_second_run_gets_a_new_folder_and_a_named_one_is_kept(tmp_path):
    first, _ = run("dropout-modes", TINY_DROPOUT, tmp_path)
    second, _ = run("dropout-modes", TINY_DROPOUT, tmp_path, seed=1)
    assert first["folder"] == str(tmp_path / "dropout-modes")
    assert second["folder"] == str(tmp_path / "dropout-modes-2")
    before = (tmp_path / "dropout-modes" / "results.json").read_bytes()
    with pytest.raises(RunFolderError, match="already holds results.*--overwrite"):
        run("dropout-modes", TINY_DROPOUT, tmp_path, name="dropout-modes")
    assert (tmp_path / "dropout-modes" / "results.json").read_bytes() == before
    third, _ = run("dropout-modes", TINY_DROPOUT, tmp_path, name="dropout-modes", seed=1,
                   overwrite=True)
    assert third["folder"] == str(tmp_path / "dropout-modes")
    assert third["results"] == json.loads(
        (tmp_path / "dropout-modes-2" / "results.json").read_text())["results"]  # seed 1 both


def test_the_same_seed_gives_the_same_numbers(tmp_path):
    a, _ = run("dropout-modes", TINY_DROPOUT, tmp_path / "a", seed=3)
    b, _ = run("dropout-modes", TINY_DROPOUT, tmp_path / "b", seed=3)
    assert a["results"] == b["results"]


def test_the_command_line_runs_an_experiment(tmp_path, capsys):
    assert main(["experiment", "dropout-modes", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "upscale_in_train" in out and "downscale_in_infer" in out and "NOT met" not in out
    saved = json.loads((tmp_path / "dropout-modes" / "results.json").read_text())
    assert saved["scale"] == "default" and saved["seed"] == 0
    assert str(tmp_path / "dropout-modes") in out


@pytest.mark.parametrize("call, message", [
    (lambda out: run_experiment("nope", out=out), "unknown experiment 'nope'"),
    (lambda out: run_experiment("covariate-shift", out=out, config=covariate.Config(steps=0)),
     "steps must be an integer >= 1"),
    (lambda out: run_experiment("bn-init", out=out, config=bn_init.Config(min_scale=2.0)),
     "min_scale 2 exceeds max_scale 1"),
    (lambda out: run_experiment("dropout-modes", out=out, config=dropout_modes.Config(p=1.0)),
     "p must be in [0, 1)"),
    (lambda out: run_experiment("fc-to-conv", out=out, full=True, config=fc_to_conv.Config()),
     "not both"),
])
def test_bad_settings_are_one_line_errors_before_any_folder(tmp_path, call, message):
    with pytest.raises(ValueError) as err:
        call(tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_json_holds_no_nan_and_the_table_aligns():
    assert jsonable({"a": np.float32(np.nan), "b": (np.int64(2), np.inf), "c": np.arange(2)}) \
        == {"a": None, "b": [2, None], "c": [0, 1]}
    lines = format_table([["name", "value"], ["x", "1.5"], ["longer", "10"]])
    assert len({len(line) for line in lines}) == 1
