"""cnnkit's environment variables: every one is listed in ``cnnkit.environment.VARIABLES`` and
read through ``read_variable`` with its option's parser, so junk is one line naming the variable
(never ignored, never misread)."""

import re
from pathlib import Path

import pytest

import cnnkit
from cnnkit import parallel
from cnnkit.cli import main
from cnnkit.environment import (RANK_FOLDER_PREFIX, VARIABLES, EnvironmentVariableError,
                                parse_rank_folder, parse_switch, read_variable)

SRC = Path(cnnkit.__file__).parent


def _sources():
    for path in sorted(SRC.rglob("*.py")):
        yield path.relative_to(SRC).as_posix(), path.read_text(encoding="utf-8")


def test_every_variable_cnnkit_names_is_listed():
    named = {name for _, text in _sources() for name in re.findall(r"CNNKIT_[A-Z_]+", text)}
    assert named <= set(VARIABLES), sorted(named - set(VARIABLES))


def test_every_variable_is_read_through_read_variable():
    """``os.environ.get("CNNKIT_...")`` or ``os.environ["CNNKIT_..."]`` outside
    cnnkit.environment would read a value no parser checked."""
    by_hand = re.compile(r"""(?:environ\.get\(|environ\[|getenv\()\s*["'](CNNKIT_[A-Z_]+)""")
    found = {(path, name) for path, text in _sources() if path != "environment.py"
             for name in by_hand.findall(text)}
    assert not found, sorted(found)


def test_read_variable_names_the_variable(monkeypatch):
    monkeypatch.setenv("CNNKIT_NUM_THREADS", "lots")
    with pytest.raises(EnvironmentVariableError) as info:
        read_variable("CNNKIT_NUM_THREADS", int)
    assert str(info.value).startswith("environment variable CNNKIT_NUM_THREADS: ")
    assert info.value.variable == "CNNKIT_NUM_THREADS" and isinstance(info.value, ValueError)
    for blank in ("", "   "):
        monkeypatch.setenv("CNNKIT_NUM_THREADS", blank)
        assert read_variable("CNNKIT_NUM_THREADS", int) is None
    with pytest.raises(KeyError, match="VARIABLES"):
        read_variable("CNNKIT_SOMETHING_NEW", int)


@pytest.mark.parametrize("text", ["lots", "0", "1.5", str(parallel.MAX_THREADS + 1), "4" * 500])
def test_the_thread_count_variable_is_refused_in_one_short_line(monkeypatch, capsys, text):
    monkeypatch.setenv("CNNKIT_NUM_THREADS", text)
    monkeypatch.setattr(parallel, "_threads", None)     # not resolved yet: main reads it
    with pytest.raises(EnvironmentVariableError, match="expected a thread count from 1 to"):
        parallel.default_num_threads()
    assert main(["summary", "lenet-bn"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 160, err
    assert "error: environment variable CNNKIT_NUM_THREADS: expected a thread count" in err


@pytest.mark.parametrize("text, value", [("1", True), ("yes", True), ("TRUE", True),
                                         (" on ", True), ("0", False), ("no", False),
                                         ("False", False), ("off", False)])
def test_switches(text, value):
    assert parse_switch(text) is value


def test_cnnkit_debug_zero_is_off_and_junk_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("CNNKIT_DEBUG", "0")
    assert main(["summary", "no-such-net"]) == 1           # one line, no traceback
    assert capsys.readouterr().err.count("\n") == 1
    monkeypatch.setenv("CNNKIT_DEBUG", "1")
    with pytest.raises(ValueError, match="no-such-net"):   # the traceback's exception
        main(["summary", "no-such-net"])
    monkeypatch.setenv("CNNKIT_DEBUG", "please")
    assert main(["summary", "lenet-bn"]) == 1
    err = capsys.readouterr().err
    assert err == ("cnnkit summary: error: environment variable CNNKIT_DEBUG: expected 1 or 0 "
                   "(or yes/no, true/false, on/off), got 'please'\n")


def test_a_rank_writes_its_pid_only_into_a_launchers_folder(tmp_path):
    ours = tmp_path / f"{RANK_FOLDER_PREFIX}abc"
    ours.mkdir()
    assert parse_rank_folder(str(ours)) == str(ours)
    (tmp_path / f"{RANK_FOLDER_PREFIX}file").write_text("")
    for text in (str(tmp_path), str(tmp_path / f"{RANK_FOLDER_PREFIX}missing"),
                 str(tmp_path / f"{RANK_FOLDER_PREFIX}file"), "relative"):
        with pytest.raises(ValueError, match="unset it"):
            parse_rank_folder(text)
