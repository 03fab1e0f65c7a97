"""`cnnkit train` on MPI ranks from the command line: `--workers P` and `mpiexec -n P`, equality
with one process and across a resume with another P, and the faults a user meets."""

from __future__ import annotations

import glob
import os
import re
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
            "    def failing(self, *args):\n"
            "        if self.iteration == 3:\n"
            "            raise ValueError('a planted fault')\n"
            "        return step(self, *args)\n"
            "    t.Trainer._distributed_step = failing\n"
            f"sys.exit(cnnkit.cli.main(['train', *{QUICK!r}, '--out', {str(tmp_path)!r}]))\n")
    done, seconds = mpi.run(3, ["-c", code])
    assert done.returncode == 1
    assert mpi.error_lines(done.stderr) == ["cnnkit train: error: rank 2: a planted fault"]
    assert seconds < 60


def _rank_pids(environment_key: str, value: str) -> dict[int, int]:
    """The pids of the ranks whose environment sets ``environment_key`` to ``value``, by rank.
    The value names one test's job: two runs of this file at once (on a shared machine) start
    ranks with the same key, and one test took the other's rank 1 for its own: it killed a
    stranger's rank, or, that one already killed by its own test, raised ProcessLookupError."""
    found = {}
    for path in glob.glob("/proc/[0-9]*/environ"):
        try:
            entries = open(path, "rb").read().split(b"\0")
        except OSError:
            continue
        env = dict(e.split(b"=", 1) for e in entries if b"=" in e)
        if env.get(environment_key.encode()) == value.encode() and b"PMI_RANK" in env:
            found[int(env[b"PMI_RANK"])] = int(path.split("/")[2])
    return found


def _start_long_run(tmp_path, marker):
    env = mpi.environment()
    env[marker] = str(tmp_path)             # this job's, not another run's of the same test
    mpi.mpiexec()
    return subprocess.Popen(
        [sys.executable, "-m", "cnnkit.cli", "train", "--limit", "20000", "--epochs", "20",
         "--workers", "2", "--no-progress", "--layer-stats", "0", "--out", str(tmp_path),
         "--name", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)


def _wait_for_training(process, marker, tmp_path):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ranks = _rank_pids(marker, str(tmp_path))
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
@pytest.mark.parametrize("signum, group, said, status", [
    (signal.SIGINT, True, "interrupted", 130),           # a terminal's Ctrl-C: the whole group
    (signal.SIGTERM, False, "interrupted by SIGTERM", 143),   # kill, a scheduler: the launcher
    (signal.SIGHUP, True, "interrupted by SIGTERM", 143),  # passed on as SIGTERM: mpiexec dies
], ids=["ctrl-c", "sigterm", "sighup"])                    # of SIGHUP
def test_a_stop_signal_stops_every_rank_after_the_same_batch_and_rank_0_saves(
        tmp_path, signum, group, said, status):
    """Each rank gets the request once (mpiexec in its own session, the launcher passing it
    on), so the first stop is not taken for a second one that stops at once."""
    process = _start_long_run(tmp_path, "CNNKIT_TEST_INT")
    _wait_for_training(process, "CNNKIT_TEST_INT", tmp_path)
    (os.killpg if group else os.kill)(process.pid, signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    lines = mpi.error_lines(err)
    # in an epoch, or between two (on a quiet machine an epoch of 20,000 images takes 2-3 s)
    assert len(lines) == 1 and re.match(f"cnnkit train: {said} (in|after) epoch ", lines[0]), \
        lines
    assert "resume with: cnnkit train --resume" in lines[0] and "; saved " in lines[0]
    assert "Ctrl-C" not in out                  # MPICH's own note is held back
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert ckpt.extra["trainer"]["batch"] > 0 or ckpt.extra["trainer"]["epoch"] > 0
    left = {p.name for p in (tmp_path / "run").iterdir()}
    assert "checkpoint.npz" in left and left <= {"checkpoint.npz", "curves.png",
                                                 "history.json", "history.csv"}  # no lock, no temporary file


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_stop_signal_while_rank_0_decodes_a_folder_stops_every_rank_with_one_line(
        tmp_path, monkeypatch):
    """Rank 0 decodes the folder alone while the others wait in a collective: rank 0 stops
    where it stands, the others hold the request until the step's agreement, and all leave
    together, with no cache file, no run folder and no hang."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(2):
        (tmp_path / "imgs" / f"c{c}").mkdir(parents=True)
        for i in range(150):
            Image.fromarray(rng.integers(0, 255, (10, 7), dtype=np.uint8)).save(
                tmp_path / "imgs" / f"c{c}" / f"{i}.png")
    code = ("import os, signal, sys\n"
            "import cnnkit.data.folder as folder\n"
            "from cnnkit.cli import main\n"
            "def mpiexec():\n"            # the launcher above this rank, which forwards SIGTERM
            "    pid = os.getpid()\n"
            "    while pid > 1:\n"
            "        stat = open(f'/proc/{pid}/stat').read()\n"
            "        if stat.split('(')[1].split(')')[0].startswith('mpiexec'):\n"
            "            return pid\n"
            "        pid = int(stat.rsplit(')', 1)[1].split()[1])\n"
            "    raise RuntimeError('no mpiexec above this rank')\n"
            "decode = folder._decode_range\n"
            "def decoding(*args, **kwargs):\n"
            "    if os.environ.get('PMI_RANK') == '0':\n"
            "        os.kill(mpiexec(), signal.SIGTERM)\n"
            "    return decode(*args, **kwargs)\n"
            "folder._decode_range = decoding\n"
            "sys.exit(main(['train', '--data', 'folder:imgs', '--input', '1x28x28', "
            "'--batch-size', '64', '--no-progress', '--out', 'runs', '--name', 'r']))\n")
    monkeypatch.setenv("CNNKIT_CACHE", str(tmp_path / "cache"))
    done, _ = mpi.run(2, ["-c", code], cwd=tmp_path, timeout=120)
    assert done.returncode == 143, done.stderr
    assert mpi.error_lines(done.stderr) == ["cnnkit train: interrupted by SIGTERM"]
    assert not (tmp_path / "runs").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.suffix != ".json"] == []


def test_a_stop_signal_to_one_rank_between_collectives_is_held_for_the_next_agreement():
    """SIGTERM to rank 1 alone (``kill`` on its pid) while no collective runs: raising there
    would leave rank 0 waiting in the next collective until the timeout; held, it stops every
    rank at the next step they agree on, with one line."""
    code = ("import os, signal, sys\n"
            "import cnnkit.app.training as training\n"
            "from cnnkit.cli import main\n"
            "split = training.split_train\n"
            "def splitting(*args, **kwargs):\n"      # runs on every rank, between collectives
            "    if os.environ.get('PMI_RANK') == '1':\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n"
            "    return split(*args, **kwargs)\n"
            "training.split_train = splitting\n"
            "sys.exit(main(['train', '--limit', '200', '--batch-size', '64', '--no-progress', "
            "'--timeout', '30']))\n")
    done, seconds = mpi.run(2, ["-c", code], timeout=120)
    assert done.returncode == 143, done.stderr
    assert mpi.error_lines(done.stderr) == ["cnnkit train: interrupted by SIGTERM"]
    assert seconds < 25                         # no collective waited out its timeout
