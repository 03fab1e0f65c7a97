"""The command line's parser: a value starting with '-' that reads as a number, a range or a
volume reaches its option's own check, on every command (``cnnkit.cli.options.VALUE_WITH_MINUS``,
set by ``options.Parser``)."""

import argparse

import pytest

from cnnkit.cli import main
from cnnkit.cli.main import build_parser
from cnnkit.cli.options import VALUE_WITH_MINUS


def _parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_command_reads_values_that_start_with_a_minus():
    commands = list(_parsers(build_parser()))[1:]
    assert len(commands) > 10
    assert all(p._negative_number_matcher is VALUE_WITH_MINUS for p in commands), [
        p.prog for p in commands if p._negative_number_matcher is not VALUE_WITH_MINUS]


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--seed", "-1"], "argument --seed: expected a seed >= 0, got -1"),
    (["train", "--epochs", "-5e2"], "argument --epochs: expected a count from 1 to 100,000"),
    (["train", "--lr", "-.5"], 'argument --lr: expected a number >= 0 or "find", got -0.5'),
    (["train", "--lr", "-inf"], "argument --lr: expected a number >= 0"),
    (["train", "--input", "-1x28x28"], "argument --input: expected a volume CxHxW"),
    (["summary", "lenet-bn", "--threads", "-2"], "argument --threads: expected a thread count"),
    (["summary", "lenet-bn", "--memory-budget", "-1Gi"], "argument --memory-budget: expected "
                                                         "a size such as 8G, 8Gi"),
    (["search", "--trials", "1", "--lr", "-1:1"], "argument --lr: expected numbers > 0"),
    (["time", "lenet-bn", "--batch", "-3"], "argument --batch:")])
def test_a_value_starting_with_a_minus_reaches_its_options_check(capsys, argv, fragment):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and fragment in errors[0], errors
    assert "expected one argument" not in errors[0]


def test_an_unknown_option_is_still_one(capsys):
    with pytest.raises(SystemExit):
        main(["train", "-x1"])
    assert "unrecognized arguments: -x1" in capsys.readouterr().err
