"""Every `--help` ends with examples that run, `cnnkit help COMMAND` prints the same help, and
the parser (the source of the docs' command-line reference) builds without side effects."""

import os
import shlex
import subprocess
import sys

import pytest

from cnnkit.cli import build_parser, main
from cnnkit.cli.main import command_parsers

PARSER = build_parser()
#: Each help by the command line that prints it (without --help), cnnkit's own first.
HELPS = {"cnnkit": PARSER, **{f"cnnkit {name}": p for name, p in command_parsers(PARSER).items()}}
#: Every example once, in the order of the helps: train's run comes first, and a later example
#: may read what an earlier one wrote (runs/first, first.safetensors).
EXAMPLES = list(dict.fromkeys(example for p in HELPS.values() for example in p.examples))
#: Added to an example in the quick run so that the chain takes seconds (a later option wins
#: over the example's own); the examples as written are parsed by the test below.
QUICK = {"cnnkit train --epochs 2 --name first": "--limit 600 --val-size 100 --no-progress",
         "cnnkit search --trials 4 --epochs 1 --limit 5000": "--limit 300 --val-size 50",
         "cnnkit search --trials 4 --rounds 2 --weight-decay 1e-5:1e-2 --limit 5000 --name fine":
             "--trials 2 --epochs 1 --limit 300 --val-size 50",
         "cnnkit experiment bn-init --full": None}           # minutes: parsed, never run
#: Commands whose examples take more than a few seconds, even when quick: the slow test's.
SLOW = ("report", "experiment", "search")


@pytest.fixture
def columns(monkeypatch):
    """A help narrower than most examples: they must be kept, the prose wrapped."""
    monkeypatch.setenv("COLUMNS", "60")


@pytest.mark.parametrize("prog", HELPS)
def test_every_help_ends_with_one_or_two_examples(prog, columns):
    parser = HELPS[prog]
    help_text = parser.format_help()
    assert 1 <= len(parser.examples) <= 2, prog
    assert help_text.endswith("\n\nexamples:\n" + "".join(f"  {e}\n" for e in parser.examples))
    assert all(f"{e} ".startswith(f"{prog} ") for e in parser.examples), parser.examples
    # the prose is still filled to the width: no line of the description runs past it
    description = help_text.split("\n\n")[1]
    assert all(len(line) <= 60 for line in description.splitlines()), description


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_parses(example):
    words = shlex.split(example)
    args = PARSER.parse_args(words[1:])
    assert args.command == words[1] and callable(args.run)


def test_quick_settings_name_examples_that_exist():
    assert set(QUICK) <= set(EXAMPLES), set(QUICK) - set(EXAMPLES)


def _run_examples(tmp_path, monkeypatch, *, skip=()):
    """Run the examples in order in an empty folder (with QUICK's settings), a digit from the
    shipped MNIST written as digit.png first, as predict's example reads one."""
    from PIL import Image

    from cnnkit.data import load_mnist

    monkeypatch.chdir(tmp_path)
    Image.fromarray(load_mnist("test")[0][0]).save("digit.png")
    for example in EXAMPLES:
        words, extra = shlex.split(example), QUICK.get(example, "")
        if extra is None or words[1] in skip:
            continue
        assert main([*words[1:], *shlex.split(extra)]) == 0, example


def test_the_examples_run(tmp_path, monkeypatch, capsys):
    _run_examples(tmp_path, monkeypatch, skip=SLOW)
    out = capsys.readouterr().out
    assert "test accuracy" in out and "digit.png: " in out and "max relative error" in out
    for path in ("runs/first/model.npz", "runs/first/fcn.npz", "first.onnx", "first-again.npz",
                 "t.json"):
        assert (tmp_path / path).is_file(), path


@pytest.mark.slow
def test_the_slow_examples_run(tmp_path, monkeypatch):
    _run_examples(tmp_path, monkeypatch)
    assert (tmp_path / "first.html").is_file() and (tmp_path / "searches" / "fine").is_dir()


@pytest.mark.parametrize("command", [*command_parsers(PARSER), None])
def test_help_command_prints_what_help_prints(command, capsys, columns):
    words = [] if command is None else [command]
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code == 0
    expected = capsys.readouterr().out
    assert main(["help", *words]) == 0
    assert capsys.readouterr() == (expected, "")


def test_help_is_a_listed_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "\n    help " in capsys.readouterr().out


@pytest.mark.parametrize("word, expected", [
    ("trian", "no command 'trian'; did you mean 'train'?"),
    ("EVALUATE", "no command 'EVALUATE'; did you mean 'evaluate'?"),
    ("xyzzy", "no command 'xyzzy'; choose from train, lr-find, evaluate,"),
    ("", "no command ''; choose from"),
    ("-x" + "y" * 5000, "no command '-xyyyyy"),
])
def test_help_of_an_unknown_command_is_one_line(word, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["help", "--", word])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if not line.startswith("usage:")]
    assert out == "" and len(errors) == 1, err
    assert errors[0].startswith("cnnkit help: error: argument COMMAND: " + expected), errors
    assert len(errors[0]) < 300


def test_the_parser_builds_without_side_effects(tmp_path):
    """The docs import it to generate the command-line reference: building it and formatting
    every help prints nothing, writes nothing and reads no setting, even a broken one."""
    code = ("import os, threading\n"
            "from cnnkit import parallel\n"
            "from cnnkit.cli import build_parser\n"
            "from cnnkit.cli.main import command_parsers\n"
            "before = dict(os.environ), threading.active_count()\n"
            "parser = build_parser()\n"
            "texts = [p.format_help() for p in command_parsers(parser).values()]\n"
            "assert (dict(os.environ), threading.active_count()) == before\n"
            "assert not os.listdir('.'), os.listdir('.')\n")
    env = {**os.environ, "CNNKIT_NUM_THREADS": "many", "CNNKIT_DEBUG": "maybe",
           "CNNKIT_MEMORY_BUDGET": "lots", "CNNKIT_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert not (tmp_path / "cache").exists()
