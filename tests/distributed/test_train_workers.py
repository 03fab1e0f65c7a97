"""`cnnkit train` on MPI ranks from the command line: `--workers P` and `mpiexec -n P`, equality
with one process and across a resume with another P, and the faults a user meets."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.io import load_checkpoint

from . import mpi

QUICK = ["--limit", "600", "--batch-size", "66", "--no-progress", "--layer-stats", "0"]


def _weights(path):
    return {k: np.asarray(v, np.float64) for k, v in load_checkpoint(path).model_state.items()}


def _max_difference(a, b):
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def test_a_batch_the_workers_do_not_divide_is_one_line_before_anything_starts(capsys):
    assert main(["train", "--workers", "3", "--batch-size", "64"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("cnnkit train: error: --batch-size 64 does not split over --workers 3 (each "
                   "rank trains batch/ranks images); give a batch that is a multiple of 3")


@pytest.mark.parametrize("bad", ["0", "-2", "two", "100000"])
def test_bad_worker_counts_are_refused_by_the_parser(bad, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--workers", bad])
    assert "--workers" in capsys.readouterr().err


def test_under_mpiexec_a_bad_batch_is_said_once_not_once_per_rank(tmp_path):
    done, _ = mpi.run(3, ["-m", "cnnkit.cli", "train", "--batch-size", "64", "--limit", "100",
                          "--out", str(tmp_path)])
    assert done.returncode == 1
    assert mpi.error_lines(done.stderr) == [
        "cnnkit train: error: the batch of 64 does not split over 3 ranks (each rank trains "
        "batch/ranks examples); give a --batch-size that is a multiple of 3, or a number of "
        "ranks that divides 64"]
    assert not any(tmp_path.iterdir())           # no run folder was claimed


def test_under_mpiexec_a_bad_option_is_said_once():
    done, _ = mpi.run(3, ["-m", "cnnkit.cli", "train", "--epochs", "-1"])
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert errors == ["cnnkit train: error: argument --epochs: expected a count from 1 to "
                      "100,000, got -1"]
    assert done.stderr.count("usage:") == 1


def test_workers_with_sync_bn_train_the_one_process_net_and_resume_with_another_count(tmp_path):
    """Float32 on MNIST: --workers 2 --sync-bn ends within float32 rounding of one process; a
    run of 1 epoch on 2 ranks resumed for a second on 3 ends where one process resumed ends."""
    run = ["train", *QUICK, "--out", str(tmp_path)]
    done, _ = mpi.cnnkit([*run, "--epochs", "2", "--name", "one"])
    assert done.returncode == 0, done.stderr
    done, _ = mpi.cnnkit([*run, "--epochs", "2", "--name", "two", "--workers", "2", "--sync-bn"])
    assert done.returncode == 0, done.stderr
    assert "on 2 ranks x 1 thread (batch 66 = 2 x 33, synchronised batch norm)" in done.stdout
    assert "the gradient allreduce took" in done.stdout
    one, two = (_weights(tmp_path / n / "checkpoint.npz") for n in ("one", "two"))
    assert _max_difference(one, two) < 1e-4

    for name, workers in (("a", []), ("b", ["--workers", "2", "--sync-bn"])):
        done, _ = mpi.cnnkit([*run, "--epochs", "1", "--name", name, *workers])
        assert done.returncode == 0, done.stderr
    done, _ = mpi.cnnkit(["train", "--resume", str(tmp_path / "a" / "checkpoint.npz"),
                          "--epochs", "2", "--no-progress"])
    assert done.returncode == 0, done.stderr
    done, _ = mpi.cnnkit(["train", "--resume", str(tmp_path / "b" / "checkpoint.npz"),
                          "--epochs", "2", "--no-progress", "--workers", "3", "--sync-bn"])
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout and "on 3 ranks" in done.stdout
    a, b = (_weights(tmp_path / n / "checkpoint.npz") for n in ("a", "b"))
    assert _max_difference(a, b) < 1e-4
    assert sorted(os.listdir(tmp_path / "b")) == sorted(os.listdir(tmp_path / "a"))


def test_a_rank_that_raises_in_the_command_is_one_line_naming_it(tmp_path):
    code = ("import sys, cnnkit.cli, cnnkit.train as t\n"
            "from cnnkit.distributed import job_size\n"
            "import os\n"
            "if os.environ.get('PMI_RANK') == '2':\n"
            "    step = t.Trainer._distributed_step\n"
            "    def failing(self, xb, yb, batch):\n"
            "        if self.iteration == 3:\n"
            "            raise ValueError('a planted fault')\n"
            "        return step(self, xb, yb, batch)\n"
            "    t.Trainer._distributed_step = failing\n"
            f"sys.exit(cnnkit.cli.main(['train', *{QUICK!r}, '--out', {str(tmp_path)!r}]))\n")
    done, seconds = mpi.run(3, ["-c", code])
    assert done.returncode == 1
    assert mpi.error_lines(done.stderr) == ["cnnkit train: error: rank 2: a planted fault"]
    assert seconds < 60


def _rank_pids(environment_key: str) -> dict[int, int]:
    """The pids of the ranks whose environment holds ``environment_key``, by rank."""
    found = {}
    for path in glob.glob("/proc/[0-9]*/environ"):
        try:
            entries = open(path, "rb").read().split(b"\0")
        except OSError:
            continue
        env = dict(e.split(b"=", 1) for e in entries if b"=" in e)
        if environment_key.encode() in env and b"PMI_RANK" in env:
            found[int(env[b"PMI_RANK"])] = int(path.split("/")[2])
    return found


def _start_long_run(tmp_path, marker):
    env = mpi.environment()
    env[marker] = "1"
    mpi.mpiexec()
    return subprocess.Popen(
        [sys.executable, "-m", "cnnkit.cli", "train", "--limit", "20000", "--epochs", "20",
         "--workers", "2", "--no-progress", "--layer-stats", "0", "--out", str(tmp_path),
         "--name", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)


def _wait_for_training(process, marker, tmp_path):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ranks = _rank_pids(marker)
        if len(ranks) == 2 and (tmp_path / "run").exists():
            time.sleep(2.0)        # well into the first epoch
            return ranks
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    process.kill()
    pytest.fail("the ranks did not start")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_rank_killed_outright_is_named_by_the_launcher(tmp_path):
    process = _start_long_run(tmp_path, "CNNKIT_TEST_KILL")
    ranks = _wait_for_training(process, "CNNKIT_TEST_KILL", tmp_path)
    os.kill(ranks[1], signal.SIGKILL)
    out, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert mpi.error_lines(err) == [f"cnnkit train: error: rank 1 (pid {ranks[1]}) died (killed "
                                    f"by signal 9); mpiexec stopped the other ranks"]
    assert "BAD TERMINATION" not in out + err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_every_rank_after_the_same_batch_and_rank_0_saves(tmp_path):
    process = _start_long_run(tmp_path, "CNNKIT_TEST_INT")
    _wait_for_training(process, "CNNKIT_TEST_INT", tmp_path)
    os.killpg(process.pid, signal.SIGINT)      # what the terminal does: the whole group
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    lines = mpi.error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("cnnkit train: interrupted in epoch ")
    assert "resume with: cnnkit train --resume" in lines[0]
    assert "Ctrl-C" not in out                  # MPICH's own note is held back
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert ckpt.extra["trainer"]["batch"] > 0 or ckpt.extra["trainer"]["epoch"] > 0
