"""cnnkit search in one process: the table, search.json, the best checkpoint kept and the others
deleted, diverged trials, the fine stage's ranges, the log-uniform sampler and bad ranges."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.errors import UsageError
from cnnkit.io import load_checkpoint
from cnnkit.search import HIGHEST, LOWEST, log_uniform, narrowed, parse_range
from cnnkit.search import search as search_function
from tests.test_cli import assert_one_line_error, run

NET = "CONV3-4 -> RELU -> POOL2 -> FC-10"
QUICK = ["--epochs", "1", "--limit", "200", "--model", NET]


def search(capsys, tmp_path, *options, name="s"):
    code, out, err = run(capsys, "search", *QUICK, "--out", str(tmp_path), "--name", name,
                         *options)
    folder = tmp_path / name
    report = json.loads((folder / "search.json").read_text()) \
        if (folder / "search.json").exists() else None
    return code, out, err, folder, report


def table_rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["trial", "round"])
    rows = []
    for line in lines[start + 1:]:
        if not line.strip() or not line.split()[0].isdigit():
            break
        rows.append(line.split())
    return rows


def test_search_writes_the_table_and_json_and_keeps_only_the_best(capsys, tmp_path):
    code, out, err, folder, report = search(capsys, tmp_path, "--trials", "3", "--lr",
                                            "1e-4:1e-1", "--weight-decay", "1e-5:1e-2")
    assert code == 0, err
    assert err == ""
    trials = report["trials"]
    assert [t["index"] for t in trials] == [0, 1, 2]
    assert {t["status"] for t in trials} == {"ok"} and {t["rank"] for t in trials} == {0}
    for t in trials:
        assert 1e-4 <= t["lr"] <= 1e-1 and 1e-5 <= t["weight_decay"] <= 1e-2
        assert t["epochs"] == 1 and t["seconds"] > 0
        run_dir = folder / t["folder"]
        history = json.loads((run_dir / "history.json").read_text())
        assert t["val_acc"] == max(history["val_acc"]) and t["epoch"] == 1
        assert json.loads((run_dir / "result.json").read_text()) == t
        assert f"adam lr {t['lr']:g}" in (run_dir / "train.log").read_text()
    best = max(trials, key=lambda t: (t["val_acc"], -t["index"]))
    assert report["best"] == best["index"]
    assert report["settings"]["lr"] == [1e-4, 1e-1] and report["settings"]["limit"] == 200

    rows = table_rows(out)
    assert len(rows) == 3
    accs = [float(r[5]) for r in rows]
    assert accs == sorted(accs, reverse=True)
    assert rows[0][0] == str(best["index"]) and rows[0][-2:] == ["<-", "best"]
    assert sum("<- best" in line for line in out.splitlines()) == 1

    best_dir = folder / best["folder"]
    assert (folder / "best.npz").read_bytes() == (best_dir / "model.npz").read_bytes()
    assert (best_dir / "checkpoint.npz").is_file()
    assert f"weights in {folder / 'best.npz'}" in out
    for t in trials:
        if t is not best:
            assert not list((folder / t["folder"]).glob("*.npz"))
    assert report["best_weights"] == str(folder / "best.npz")
    # the suggested fine range: centred on the best, half the decades
    lo, hi = report["suggested"]["lr"]
    assert math.isclose(math.log10(hi / lo), 1.5)
    assert math.isclose(math.sqrt(lo * hi), best["lr"])
    assert f"--lr {lo:.3g}:{hi:.3g}" in out

    settings = load_checkpoint(folder / "best.npz").extra["metadata"]["settings"]
    assert settings["lr"] == best["lr"] and settings["weight_decay"] == best["weight_decay"]


def test_rounds_narrow_around_the_best_and_the_best_overall_is_kept(capsys, tmp_path):
    code, out, err, folder, report = search(capsys, tmp_path, "--trials", "2", "--rounds", "3",
                                            "--lr", "1e-4:1e-1")
    assert code == 0, err
    trials = report["trials"]
    assert [t["round"] for t in trials] == [1, 1, 2, 2, 3, 3]
    assert [r["round"] for r in report["rounds"]] == [1, 2, 3]
    assert report["rounds"][0]["lr"] == [1e-4, 1e-1]
    for number in (2, 3):
        earlier = [t for t in trials if t["round"] < number]
        best = max(earlier, key=lambda t: (t["val_acc"], -t["index"]))
        previous = report["rounds"][number - 2]["lr"]
        lo, hi = report["rounds"][number - 1]["lr"]
        np.testing.assert_allclose([lo, hi], narrowed(*previous, best["lr"]), rtol=1e-12)
        assert math.isclose(math.log10(hi / lo), math.log10(previous[1] / previous[0]) / 2)
        assert all(lo <= t["lr"] <= hi for t in trials if t["round"] == number)
        assert report["rounds"][number - 1]["weight_decay"] == [0.0, 0.0]
    assert {t["weight_decay"] for t in trials} == {0.0}
    best = max(trials, key=lambda t: (t["val_acc"], -t["index"]))
    assert report["best"] == best["index"]
    kept = sorted(p.parent.name for p in folder.glob("trial-*/*.npz"))
    assert kept == [best["folder"]] * 2
    assert (folder / "best.npz").read_bytes() == (folder / best["folder"] / "model.npz") \
        .read_bytes()
    assert not list(folder.glob(".*.tmp"))


def test_the_same_seed_draws_the_same_trials(capsys, tmp_path):
    first = search(capsys, tmp_path, "--trials", "2", "--seed", "5", name="a")[4]
    second = search(capsys, tmp_path, "--trials", "2", "--seed", "5", name="b")[4]
    other = search(capsys, tmp_path, "--trials", "1", "--seed", "6", name="c")[4]
    keys = ("lr", "weight_decay", "val_acc", "epoch")
    assert [[t[k] for k in keys] for t in first["trials"]] == \
        [[t[k] for k in keys] for t in second["trials"]]
    assert first["trials"][0]["lr"] != other["trials"][0]["lr"]


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_diverged_trials_are_recorded_not_fatal(capsys, tmp_path):
    code, out, err, folder, report = search(capsys, tmp_path, "--trials", "4", "--optimizer",
                                            "sgd", "--batch-size", "10", "--lr", "1e-3:1e3",
                                            "--seed", "0")
    assert code == 0, err
    statuses = {t["status"] for t in report["trials"]}
    assert statuses == {"ok", "diverged"}
    for t in report["trials"]:
        assert (t["status"] == "diverged") == (t["val_acc"] is None) == (t["epoch"] is None)
        if t["lr"] > 100:
            assert t["status"] == "diverged"
        if t["status"] == "diverged":
            assert "the loss became" in (folder / t["folder"] / "train.log").read_text()
            assert not list((folder / t["folder"]).glob("*.npz"))
    assert report["trials"][report["best"]]["status"] == "ok"
    rows = table_rows(out)
    assert [r[-1] for r in rows[-2:]] == ["diverged", "diverged"]      # last in the table
    assert "of 4 diverged" in out


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_every_trial_diverged_is_one_line_after_the_table(capsys, tmp_path):
    code, out, err, folder, report = search(capsys, tmp_path, "--trials", "2", "--optimizer",
                                            "sgd", "--batch-size", "10", "--lr", "1e4:1e5",
                                            "--rounds", "2")
    assert_one_line_error(code, err, "every trial diverged", "lower --lr")
    assert len(table_rows(out)) == 2                      # round 2 is not run
    assert [t["status"] for t in report["trials"]] == ["diverged", "diverged"]
    assert report["best"] is None and not (folder / "best.npz").exists()


def test_overwrite_replaces_an_earlier_search(capsys, tmp_path):
    assert search(capsys, tmp_path, "--trials", "3")[0] == 0
    code, _, err, _, _ = search(capsys, tmp_path, "--trials", "1")
    assert_one_line_error(code, err, "already holds a run", "--overwrite")
    code, _, err, folder, report = search(capsys, tmp_path, "--trials", "1", "--overwrite")
    assert code == 0, err
    assert len(report["trials"]) == 1
    assert sorted(p.name for p in folder.glob("trial-*")) == ["trial-000"]


# ---------------------------------------------------------------------------- the sampler


def test_log_uniform_is_uniform_in_log10(rng):
    n = 40_000
    x = log_uniform(rng, 1e-5, 1e-1, n)
    assert x.shape == (n,) and x.min() >= 1e-5 and x.max() <= 1e-1
    logs = np.log10(x)
    # log10 uniform on [-5, -1]: mean -3, variance 16/12; each decade a quarter of the draws
    assert abs(logs.mean() + 3) < 5 * math.sqrt(16 / 12 / n)
    assert abs(logs.var() - 16 / 12) < 0.03
    per_decade = np.histogram(logs, bins=[-5, -4, -3, -2, -1])[0] / n
    np.testing.assert_allclose(per_decade, 0.25, atol=5 * math.sqrt(0.25 * 0.75 / n))
    # Kolmogorov-Smirnov against the uniform CDF (critical value at 0.1% about 1.95/sqrt(n))
    u = np.sort((logs + 5) / 4)
    ks = np.max(np.maximum(np.arange(1, n + 1) / n - u, u - np.arange(n) / n))
    assert ks < 1.95 / math.sqrt(n)
    # uniform in x would put 90% of the draws in the top decade
    assert np.mean(x > 1e-2) < 0.3


def test_a_fixed_value_draws_nothing(rng):
    state = rng.bit_generator.state
    assert log_uniform(rng, 0.0, 0.0, 3).tolist() == [0.0, 0.0, 0.0]
    assert log_uniform(rng, 1e-3, 1e-3, 2).tolist() == [1e-3, 1e-3]
    assert rng.bit_generator.state == state


def test_narrowed_halves_the_decades_around_the_best():
    np.testing.assert_allclose(narrowed(1e-4, 1e-2, 1e-3), (10 ** -3.5, 10 ** -2.5))
    # a best value at the edge moves the range past it (the course: widen the search there)
    np.testing.assert_allclose(narrowed(1e-4, 1e-2, 1e-2), (10 ** -2.5, 10 ** -1.5))
    assert narrowed(0.0, 0.0, 0.0) == (0.0, 0.0)
    assert narrowed(3e-4, 3e-4, 3e-4) == (3e-4, 3e-4)


def test_parse_range():
    assert parse_range("1e-4:1e-2") == (1e-4, 1e-2)
    assert parse_range("0.001") == (0.001, 0.001)
    assert parse_range("2:2") == (2.0, 2.0)
    assert parse_range("0", zero=True) == (0.0, 0.0)


@pytest.mark.parametrize("option, value, fragment", [
    ("--lr", "0:1e-2", "expected numbers > 0 (the range is sampled on a log scale), got '0:1e-2'"),
    ("--lr", "-1e-3:1e-2", "expected numbers > 0"),
    ("--lr", "0", "expected numbers > 0"),
    ("--lr", "1e-2:1e-4", "LO must not exceed HI, got '1e-2:1e-4'"),
    ("--lr", "a:b", "expected LO:HI of numbers such as 1e-4:1e-2, or one number, got 'a:b'"),
    ("--lr", "1e-4:", "expected LO:HI of numbers"),
    ("--lr", "1:2:3", "expected LO:HI such as 1e-4:1e-2, or one number, got '1:2:3'"),
    ("--lr", "nan:1", "expected finite numbers, got 'nan:1'"),
    ("--lr", "1e-3:inf", "expected finite numbers"),
    ("--lr", "1e300:1e308", "expected numbers from 1e-20 to 1e6, got '1e300:1e308'"),
    ("--lr", "1e-4:2e6", "expected numbers from 1e-20 to 1e6"),
    ("--lr", "1e-21:1e-2", "expected numbers from 1e-20 to 1e6"),
    ("--weight-decay", "1e7", "expected numbers from 1e-20 to 1e6"),
    ("--weight-decay", "0:1e-2", "expected numbers > 0 (the range is sampled on a log scale), "
                                 "or 0 alone, got '0:1e-2'"),
    ("--weight-decay", "-1", "or 0 alone"),
    ("--trials", "0", "expected a count from 1 to 100,000, got 0"),
    ("--rounds", "0", "expected a count from 1 to 100,000"),
    ("--seed", "-1", "expected a seed >= 0, got -1"),
])
def test_bad_options_are_one_error_line(capsys, tmp_path, option, value, fragment):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--trials", "2", *QUICK, "--out", str(tmp_path), f"{option}={value}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err
    assert errors[0].startswith(f"cnnkit search: error: argument {option}: ")
    assert fragment in errors[0], errors[0]
    assert not tmp_path.joinpath("searches").exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("option, value, fragment", [
    ("--lr", "-1:1", "expected numbers > 0 (the range is sampled on a log scale), got '-1:1'"),
    ("--lr", "-1e-3", "expected numbers > 0"), ("--lr", "-.5:1", "expected numbers > 0"),
    ("--lr", "-inf:1", "expected finite numbers"), ("--weight-decay", "-1", "or 0 alone"),
    ("--seed", "-1", "expected a seed >= 0, got -1")])
def test_values_starting_with_a_minus_reach_the_options_check(capsys, tmp_path, option, value,
                                                              fragment):
    """``--lr -1:1`` (a separate word, not ``--lr=-1:1``) is the option's value, refused by its
    own check, not taken for an option ("expected one argument")."""
    with pytest.raises(SystemExit):
        main(["search", "--trials", "2", *QUICK, "--out", str(tmp_path), option, value])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert errors == [f"cnnkit search: error: argument {option}: {errors[0].split(': ', 3)[-1]}"]
    assert fragment in errors[0], errors[0]
    assert not list(tmp_path.iterdir())


def test_ranges_stay_finite_through_any_number_of_rounds():
    """The widest range parse_range accepts, narrowed round after round around its top or its
    bottom (the most a range can move), stays finite and positive: no round can overflow."""
    for lo, hi in (parse_range(f"{LOWEST}:{HIGHEST}"), parse_range(f"{HIGHEST}")):
        for end in (0, 1):
            low, high = lo, hi
            for _ in range(200):
                low, high = narrowed(low, high, (low, high)[end])
                assert 0 < low <= high < math.inf and math.isfinite(math.log10(low))
            assert 1e-34 < low and high < 1e20


def test_a_range_past_the_bounds_is_refused_before_any_trial(tmp_path):
    with pytest.raises(UsageError, match=r"lr=\(1e\+300, 1e\+308\): expected numbers from"):
        search_function(trials=1, lr=(1e300, 1e308), out=tmp_path, epochs=1, limit=50)
    assert not list(tmp_path.iterdir())


def test_trials_is_required(capsys):
    with pytest.raises(SystemExit):
        main(["search", *QUICK])
    assert "the following arguments are required: --trials" in capsys.readouterr().err


def test_bad_train_options_are_one_line_before_any_folder(capsys, tmp_path):
    code, _, err = run(capsys, "search", "--trials", "2", "--epochs", "1", "--model",
                       "CONV3-4 -> BOGUS", "--out", str(tmp_path))
    assert code == 1 and "unknown layer BOGUS" in err and "Traceback" not in err
    code, _, err = run(capsys, "search", "--trials", "2", *QUICK, "--val-size", "0",
                       "--out", str(tmp_path))
    assert_one_line_error(code, err, "--val-size 0 leaves no validation images")
    assert not list(tmp_path.iterdir())


def test_errors_of_the_trials_are_one_line_under_python_m(tmp_path):
    """``python -m cnnkit.cli`` has a second copy of the module (its own CLIError class): an
    error that cnnkit.cli.cmd_train raises is still one line."""
    proc = subprocess.run([sys.executable, "-m", "cnnkit.cli", "search", "--trials", "1",
                           *QUICK, "--val-size", "500", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert_one_line_error(proc.returncode, proc.stderr, "cnnkit search: error: --val-size 500 "
                          "leaves no training images out of 200")


def test_files_of_the_users_in_trial_folders_are_never_removed(capsys, tmp_path):
    """--overwrite clears what cnnkit wrote, and the other trials lose their checkpoints only."""
    assert search(capsys, tmp_path, "--trials", "2")[0] == 0
    folder = tmp_path / "s"
    for trial in ("trial-000", "trial-001"):
        (folder / trial / "mine.npz").write_bytes(b"the user's")
    (folder / "trial-007").mkdir()
    (folder / "trial-007" / "notes.txt").write_text("kept")
    code, _, err, folder, report = search(capsys, tmp_path, "--trials", "2", "--overwrite")
    assert code == 0, err
    for trial in ("trial-000", "trial-001"):
        assert (folder / trial / "mine.npz").read_bytes() == b"the user's"
    assert (folder / "trial-007" / "notes.txt").read_text() == "kept"
    loser = next(t["folder"] for t in report["trials"] if t["index"] != report["best"])
    assert not (folder / loser / "model.npz").exists()
    assert not (folder / loser / "checkpoint.npz").exists()
