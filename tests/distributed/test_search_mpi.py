"""cnnkit search on 2 MPI ranks: the trials split over the ranks, the same results as one
process, one search.json and table, and an error said once."""

from __future__ import annotations

import json

from cnnkit.cli import main

from . import mpi

NET = "CONV3-4 -> RELU -> POOL2 -> FC-10"
SEARCH = ["-m", "cnnkit.cli", "search", "--epochs", "1", "--limit", "200", "--model", NET]


def test_trials_are_split_over_the_ranks_as_one_process_would_run_them(tmp_path, capsys):
    options = ["--trials", "2", "--rounds", "2", "--lr", "1e-4:1e-1", "--out", str(tmp_path)]
    done, _ = mpi.run(2, [*SEARCH, *options, "--name", "two"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert mpi.error_lines(done.stderr) == []
    out = done.stdout
    assert out.count("search: 2 trials x 2 rounds over 2 ranks") == 1
    assert out.count("<- best") == 1 and out.count("wrote ") == 1     # rank 0 alone prints
    folder = tmp_path / "two"
    report = json.loads((folder / "search.json").read_text())
    trials = report["trials"]
    assert [t["index"] for t in trials] == list(range(4))
    assert [t["rank"] for t in trials] == [0, 1, 0, 1]
    for t in trials:
        assert json.loads((folder / t["folder"] / "result.json").read_text())["rank"] == t["rank"]
    assert len(list(folder.glob("trial-*/model.npz"))) == 1 and (folder / "best.npz").is_file()

    # one process: the same draws, the same trials (results do not depend on the threads)
    assert main(["search", *SEARCH[3:], *options, "--name", "one"]) == 0
    capsys.readouterr()
    alone = json.loads((tmp_path / "one" / "search.json").read_text())
    keys = ("lr", "weight_decay", "val_acc", "epoch", "status")
    assert [[t[k] for k in keys] for t in alone["trials"]] == [[t[k] for k in keys]
                                                                for t in trials]
    assert alone["rounds"] == report["rounds"] and alone["best"] == report["best"]


def test_an_error_every_rank_meets_is_said_once(tmp_path):
    done, seconds = mpi.run(2, [*SEARCH, "--trials", "2", "--data", f"folder:{tmp_path}/none",
                                "--out", str(tmp_path)])
    assert done.returncode == 1
    assert mpi.error_lines(done.stderr) == [f"cnnkit search: error: {tmp_path}/none: no such "
                                            f"folder"], done.stderr
    assert seconds < 60


_FAIL_ON_RANK_1 = """
import sys
from cnnkit import search
from cnnkit.cli import main
from cnnkit.distributed import world

run_trial = search._run_trial

def failing(trial, base, folder):
    if world().rank == 1:
        raise OSError("a planted fault")
    return run_trial(trial, base, folder)

search._run_trial = failing
sys.exit(main(sys.argv[1:]))
"""


def test_a_trial_that_fails_on_one_rank_is_one_line_naming_it(tmp_path):
    done, seconds = mpi.run(2, ["-c", _FAIL_ON_RANK_1, "search", *SEARCH[3:], "--trials", "4",
                                "--out", str(tmp_path)])
    assert done.returncode == 1
    assert mpi.error_lines(done.stderr) == ["cnnkit search: error: rank 1: a planted fault"], \
        done.stderr
    assert seconds < 60
