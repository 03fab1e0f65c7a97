"""Run folders: a run is never overwritten without --overwrite, two runs never share a folder,
a run name is one folder inside --out, one writer at a time (a stale lock is taken over by
exactly one process, a live one never), an unwritable --out is found before training, and
temporary files of a killed write are cleaned up while the user's files stay."""

import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cnnkit.cli import main
from cnnkit.errors import UsageError
from cnnkit.runs import LOCK, RunFolder, RunFolderError, claim_run_folder
from tests import runs_race
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
        with pytest.raises(RunFolderError, match=f"another cnnkit process \\(pid {sleeper.pid}\\)"):
            claim_run_folder(tmp_path, None, "x", resume=folder)
    finally:
        sleeper.kill()
        sleeper.wait()
    with claim_run_folder(tmp_path, None, "x", resume=folder):          # its pid is gone now
        assert _lock_pid(folder) == os.getpid()
    assert not (folder / LOCK).exists()


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


# ---------------------------------------------------------------------------- run names

NOT_NAMES = ["../../escape", "..", ".", "", "sub/run", "/abs/path", "a\\b", "run/", "nul\0byte"]


def _files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("name", NOT_NAMES)
def test_a_run_name_is_one_folder_name(tmp_path, name):
    out = tmp_path / "o1" / "sub"
    with pytest.raises(UsageError, match="is not one folder name") as caught:
        claim_run_folder(out, name, "x")
    assert repr(name) in str(caught.value) and "\n" not in str(caught.value)
    assert _files_under(tmp_path) == []                   # nothing made, inside --out or out


def test_a_run_name_may_hold_dots_and_spaces(tmp_path):
    for name in ("..a", "a..b", "v1.2 final", "-x", "..."):
        with claim_run_folder(tmp_path, name, "x") as folder:
            assert folder.path.parent == tmp_path and folder.path.name == name


@pytest.mark.parametrize("command", [
    ["train", *QUICK],
    ["search", "--trials", "1", "--limit", "60", "--epochs", "1"],
    ["experiment", "dropout-modes", "--no-progress"],
])
@pytest.mark.parametrize("name", ["../../escape", "/abs/path", ""])
def test_every_command_refuses_a_name_that_is_a_path(capsys, tmp_path, command, name):
    out = tmp_path / "o1" / "sub"
    code, stdout, err = run(capsys, *command, "--out", str(out), "--name", name)
    assert_one_line_error(code, err, repr(name), "not one folder name")
    assert "epoch 1" not in stdout
    assert _files_under(tmp_path) == [] and not Path("/abs/path").exists()


# ---------------------------------------------------------------------------- the lock

DEAD_PID = 2 ** 22       # Linux's PID_MAX_LIMIT: pids are below it, so this names no process
HAS_PROC = Path(f"/proc/{os.getpid()}/stat").is_file()


def _lock_pid(folder) -> int:
    return int((folder / LOCK).read_text().split()[0])


def _start_of(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_bytes()
    return text[text.rfind(b")") + 1:].split()[19].decode()


def test_six_processes_taking_over_one_stale_lock_give_exactly_one_holder(tmp_path):
    """100 trials; in each, 6 processes released by one barrier claim a folder whose lock names
    a process that has ended. Reading, unlinking and re-creating the lock gave two holders in
    about one trial in seven."""
    trials, workers = 100, 6
    folders = []
    for k in range(trials):
        folder = tmp_path / f"run-{k:03d}"
        folder.mkdir()
        (folder / LOCK).write_text(f"{DEAD_PID} 12345")
        folders.append(folder)
    context = multiprocessing.get_context("spawn")    # no fork of this threaded process
    barrier, results = context.Barrier(workers + 1), context.Queue()
    procs = [context.Process(target=runs_race.claim_together, args=(folders, barrier, results))
             for _ in range(workers)]
    for proc in procs:
        proc.start()
    try:
        holders = []
        for folder in folders:
            barrier.wait(timeout=60)                          # they claim
            barrier.wait(timeout=60)                          # they have claimed
            got = [results.get(timeout=60) for _ in range(workers)]
            winners = [pid for path, pid, won in got if won]
            assert {path for path, _, _ in got} == {str(folder)}
            holders.append((len(winners), _lock_pid(folder), winners))
            barrier.wait(timeout=60)                          # the winner releases
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
    assert [n for n, _, _ in holders] == [1] * trials, holders
    assert all(in_place == winners[0] for _, in_place, winners in holders)
    assert [p.exitcode for p in procs] == [0] * workers
    assert all(not (f / LOCK).exists() for f in folders)   # every winner released its lock


@pytest.mark.skipif(not HAS_PROC, reason="start times come from /proc")
def test_a_lock_naming_a_live_pid_is_held_only_by_the_process_that_started_then(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = _start_of(sleeper.pid)
        (folder / LOCK).write_text(f"{sleeper.pid} {start}")
        with pytest.raises(RunFolderError, match=f"pid {sleeper.pid}"):
            claim_run_folder(tmp_path, None, "x", resume=folder)
        # the same pid with another start time: a reused pid, not the process that locked
        (folder / LOCK).write_text(f"{sleeper.pid} {int(start) + 1}")
        with claim_run_folder(tmp_path, None, "x", resume=folder):
            assert (folder / LOCK).read_text() == f"{os.getpid()} {_start_of(os.getpid())}"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_writer_names_the_live_holder_and_never_takes_the_lock(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    assert RunFolder(folder).writer() is None                       # no lock
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = _start_of(sleeper.pid)
        (folder / LOCK).write_text(f"{sleeper.pid} {start}")
        assert RunFolder(folder).writer() == sleeper.pid
        assert (folder / LOCK).read_text() == f"{sleeper.pid} {start}"     # untouched
        (folder / LOCK).write_text(f"{sleeper.pid} {int(start) + 1}")     # a reused pid
        assert RunFolder(folder).writer() is None
    finally:
        sleeper.kill()
        sleeper.wait()
    (folder / LOCK).write_text(f"{DEAD_PID}")
    assert RunFolder(folder).writer() is None
    (folder / LOCK).unlink()
    os.mkfifo(folder / LOCK)                         # not a lock (opened without waiting)
    assert RunFolder(folder).writer() is None
    with claim_run_folder(tmp_path, "held", "x") as held:
        assert RunFolder(held.path).writer() == os.getpid()


def test_a_second_process_sees_the_holder_and_is_refused(tmp_path):
    code = ("import sys; from cnnkit.runs import claim_run_folder\n"
            "try:\n    claim_run_folder(None, None, 'x', resume=sys.argv[1])\n"
            "except OSError as err:\n    print(err)")
    with claim_run_folder(tmp_path, "held", "x") as folder:
        out = subprocess.run([sys.executable, "-c", code, str(folder.path)], text=True,
                             capture_output=True, timeout=60).stdout
        assert f"another cnnkit process (pid {os.getpid()}) is writing" in out
        # the same process claiming again is refused too: the flock is per open file
        with pytest.raises(RunFolderError, match="this process already writes"):
            claim_run_folder(None, None, "x", resume=folder.path)
        assert _lock_pid(folder.path) == os.getpid()
    assert not (folder.path / LOCK).exists()


def test_a_lock_that_is_not_a_file_is_refused_not_followed(tmp_path):
    target = tmp_path / "precious"
    target.write_text(f"{DEAD_PID}")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK).symlink_to(target)
    with pytest.raises(RunFolderError, match="not a lock cnnkit wrote .it is a symbolic link"):
        claim_run_folder(tmp_path, None, "x", resume=folder)
    assert target.read_text() == f"{DEAD_PID}" and (folder / LOCK).is_symlink()
    (folder / LOCK).unlink()
    os.mkfifo(folder / LOCK)                        # opened, it would wait for a writer
    with pytest.raises(RunFolderError, match="FIFO"):
        claim_run_folder(tmp_path, None, "x", resume=folder)


# ---------------------------------------------------------------------------- cleanup

def _killed_write(path: Path) -> Path:
    """What cnnkit's atomic write of ``path`` leaves when the process is killed halfway."""
    code = ("import os, signal, sys\nfrom cnnkit._atomic import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    (left,) = path.parent.glob(f".{path.name}.*.tmp")
    return left


def test_a_killed_writes_temporary_is_removed_and_nothing_else(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "checkpoint.npz").write_bytes(b"kept")
    left = [_killed_write(folder / name) for name in ("checkpoint.npz", "history.json")]
    users = [".draft.tmp", ".checkpoint.npz.tmp", ".checkpoint.npz.notes.tmp", ".x.npz.abcd1234.tmp",
             "draft.tmp", ".checkpoint.npz.abcd1234.tmp.bak"]
    for name in users:
        (folder / name).write_text("the user's")
    (folder / "sub").mkdir()
    (folder / "sub" / ".checkpoint.npz.abcd1234.tmp").write_text("not in the run folder")
    with claim_run_folder(tmp_path, None, "x", resume=folder):
        assert not any(p.exists() for p in left)
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [LOCK, "checkpoint.npz", "sub", *users])
    assert (folder / "sub" / ".checkpoint.npz.abcd1234.tmp").exists()


def test_resume_and_overwrite_keep_the_users_temporary_files(capsys, tmp_path):
    assert main(["train", *QUICK, "--out", str(tmp_path), "--name", "d"]) == 0
    folder = tmp_path / "d"
    (folder / ".draft.tmp").write_text("x\n")
    left = _killed_write(folder / "checkpoint.npz")
    code, _, err = run(capsys, "train", "--resume", str(folder / "checkpoint.npz"), "--epochs",
                       "2", "--no-progress")
    assert code == 0, err
    assert (folder / ".draft.tmp").read_text() == "x\n" and not left.exists()
    code, _, err = run(capsys, "train", *QUICK, "--out", str(tmp_path), "--name", "d",
                       "--overwrite")
    assert code == 0, err
    assert (folder / ".draft.tmp").read_text() == "x\n"


# ---------------------------------------------------------------------------- what is in the way

def test_a_name_that_is_a_file_or_a_link_to_nothing_is_one_clear_line(capsys, tmp_path):
    (tmp_path / "file").write_text("mine")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    cases = [("file", "it is a regular file, not a folder"),
             ("dangling", f"it is a symbolic link to {tmp_path / 'gone'}, which does not exist")]
    for name, why in cases:
        code, out, err = run(capsys, "train", *QUICK, "--out", str(tmp_path), "--name", name)
        assert_one_line_error(code, err, str(tmp_path / name), why)
        assert "File exists" not in err and "epoch 1" not in out
    assert (tmp_path / "file").read_text() == "mine" and not (tmp_path / "gone").exists()
    with pytest.raises(RunFolderError, match=f"{tmp_path / 'file'} is a regular file"):
        claim_run_folder(tmp_path / "file" / "deeper", "x", "x")
    with pytest.raises(RunFolderError, match="which does not exist"):
        claim_run_folder(tmp_path / "dangling", None, "x")
