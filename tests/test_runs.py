"""Run folders: a run is never overwritten without --overwrite, two runs never share a folder,
one writer at a time, an unwritable --out is found before training, and temporary files of a
killed write are cleaned up."""

import os
import subprocess
import sys

import pytest

from cnnkit.cli import main
from cnnkit.runs import LOCK, RunFolderError, claim_run_folder
from tests.test_cli import assert_one_line_error, run

QUICK = ["--limit", "120", "--epochs", "1", "--no-progress", "--batch-size", "40"]


def test_a_named_run_is_not_overwritten(capsys, tmp_path):
    assert main(["train", *QUICK, "--out", str(tmp_path), "--name", "mine"]) == 0
    capsys.readouterr()
    before = (tmp_path / "mine" / "model.npz").read_bytes()
    code, _, err = run(capsys, "train", *QUICK, "--seed", "1", "--out", str(tmp_path),
                       "--name", "mine")
    assert_one_line_error(code, err, str(tmp_path / "mine"), "already holds a run",
                          "--overwrite", "--resume")
    assert (tmp_path / "mine" / "model.npz").read_bytes() == before
    code, _, _ = run(capsys, "train", *QUICK, "--seed", "1", "--out", str(tmp_path), "--name",
                     "mine", "--overwrite")
    assert code == 0 and (tmp_path / "mine" / "model.npz").read_bytes() != before
    assert not (tmp_path / "mine" / LOCK).exists()          # released at the end


def test_default_names_taken_get_a_suffix(tmp_path):
    first = claim_run_folder(tmp_path, None, "net-20261130-101500")
    second = claim_run_folder(tmp_path, None, "net-20261130-101500")
    third = claim_run_folder(tmp_path, None, "net-20261130-101500")
    assert [f.path.name for f in (first, second, third)] == [
        "net-20261130-101500", "net-20261130-101500-2", "net-20261130-101500-3"]
    for folder in (first, second, third):
        folder.release()


def test_two_processes_started_together_get_two_folders(tmp_path):
    code = ("import sys; from cnnkit.runs import claim_run_folder; "
            "print(claim_run_folder(sys.argv[1], None, 'same-second').path)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    paths = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(paths) == 4


def test_a_live_writer_holds_the_folder_and_a_dead_ones_lock_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (folder / LOCK).write_text(str(sleeper.pid))
        with pytest.raises(RunFolderError, match=f"process {sleeper.pid}"):
            claim_run_folder(tmp_path, None, "x", resume=folder)
    finally:
        sleeper.kill()
        sleeper.wait()
    with claim_run_folder(tmp_path, None, "x", resume=folder):          # its pid is gone now
        assert (folder / LOCK).read_text() == str(os.getpid())
    assert not (folder / LOCK).exists()


def test_stale_temporary_files_are_removed_when_the_folder_is_claimed(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "checkpoint.npz").write_bytes(b"kept")
    (folder / ".checkpoint.npz.abc123.tmp").write_bytes(b"left by a killed write")
    with claim_run_folder(tmp_path, None, "x", resume=folder):
        assert sorted(p.name for p in folder.iterdir()) == [LOCK, "checkpoint.npz"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_out_is_found_before_training(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, out, err = run(capsys, "train", *QUICK, "--out", str(locked / "runs"))
    finally:
        locked.chmod(0o700)
    assert_one_line_error(code, err, str(locked / "runs"), "cannot create")
    assert "epoch 1" not in out


def test_an_out_that_is_a_file_is_found_before_training(capsys, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    code, out, err = run(capsys, "train", *QUICK, "--out", str(tmp_path / "file"))
    assert_one_line_error(code, err, str(tmp_path / "file"), "cannot create")
    assert "epoch 1" not in out
