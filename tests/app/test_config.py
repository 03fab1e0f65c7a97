"""RunConfig, the one schema of a run's settings: fit's keywords, train's and search's options
and the checkpoint's record all come from it, and agree."""

import argparse
import dataclasses

import pytest

from cnnkit import RunConfig
from cnnkit.app.config import REQUIRED, Flag, setting_of
from cnnkit.cli import build_parser
from cnnkit.errors import CnnkitError
from cnnkit.search import PASSED_THROUGH


def subparser(name):
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def options(parser) -> dict:
    return {a.dest: a for a in parser._actions if a.option_strings}


def test_every_setting_is_an_option_of_train_with_its_help_and_type():
    train = options(subparser("train"))
    for f in dataclasses.fields(RunConfig):
        s = setting_of(f)
        assert f.name in train, f.name
        action = train[f.name]
        assert (s.flag or "--" + f.name.replace("_", "-")) in action.option_strings
        assert s.help.split(" (")[0][:40] in action.help
        if isinstance(s.kind, Flag):
            assert action.nargs == 0
    # and nothing else but the launcher's --workers and --debug
    assert set(train) - {f.name for f in dataclasses.fields(RunConfig)} == \
        {"workers", "debug", "help"}


def test_search_passes_through_the_settings_the_schema_marks():
    search = options(subparser("search"))
    assert set(PASSED_THROUGH) <= set(search)
    assert set(PASSED_THROUGH) == {f.name for f in dataclasses.fields(RunConfig)
                                   if setting_of(f).search}
    assert {"epochs", "lr", "weight_decay", "seed", "layer_stats"}.isdisjoint(PASSED_THROUGH)


def test_the_command_line_and_python_refuse_the_same_values_in_the_same_words(capsys):
    for name, text, value in (("epochs", "0", 0), ("batch_size", "-3", -3),
                              ("test_size", "1", 1.0), ("lr", "nan", float("nan")),
                              ("seed", "-1", -1), ("layer_stats", "1e10", 10 ** 10)):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", f"--{name.replace('_', '-')}", text])
        cli = capsys.readouterr().err.strip().splitlines()[-1]
        with pytest.raises(CnnkitError) as info:
            RunConfig.from_keywords(**{name: value})
        expected = cli.split(": ", 3)[-1].rsplit(", got", 1)[0]     # "expected ..."
        assert expected.startswith("expected") and expected in str(info.value), (cli, info)


def test_the_record_round_trips_and_holds_the_runs_settings_only():
    config = RunConfig.from_keywords(epochs=3, input=(3, 32, 32), val_size=0.25, out="x",
                                     progress=False)
    record = config.record()
    assert record["input"] == [3, 32, 32] and "out" not in record and "progress" not in record
    assert set(record) == set(RunConfig.recorded())
    again = RunConfig.from_record(record)
    assert again.record() == record and again.out is None and again.progress is True


def test_checkpoints_of_older_versions_get_the_values_they_lack():
    old = RunConfig().record()
    for key in ("data", "input", "fit", "test_size", "skip_bad", "layer_stats"):
        del old[key]
    old["augment"] = "crop"                  # MNIST's own augmentation, before sources
    config = RunConfig.from_record(old)
    assert (config.data, config.input, config.fit, config.test_size, config.skip_bad,
            config.layer_stats, config.augment) == ("mnist", None, "auto", None, False, 0,
                                                    "auto")
    required = [n for n in RunConfig.recorded()
                if RunConfig.settings()[n].older is REQUIRED]
    assert "epochs" in required and "data" not in required


@pytest.mark.parametrize("key, value, fragment", [
    ("epochs", "five", "epochs = 'five'"),
    ("batch_size", 0, "batch_size = 0 (expected a positive integer, got 0)"),
    ("optimizer", "lbfgs", "optimizer = 'lbfgs'"),
    ("input", [3, 32], "input = [3, 32]"),
    ("skip_bad", 1, "skip_bad = 1"),
])
def test_a_damaged_record_names_the_setting(key, value, fragment):
    record = dict(RunConfig().record(), **{key: value})
    with pytest.raises(CnnkitError) as info:
        RunConfig.from_record(record, "ckpt.npz")
    assert str(info.value).startswith("ckpt.npz: the run settings are damaged") and \
        fragment in str(info.value)
    del record[key]
    if RunConfig.settings()[key].older is REQUIRED:
        with pytest.raises(CnnkitError, match=f"ckpt.npz: the run settings have no '{key}'"):
            RunConfig.from_record(record, "ckpt.npz")


def test_replace_checks_like_the_keywords():
    config = RunConfig()
    assert config.replace(epochs=7).epochs == 7 and config.epochs == 5
    with pytest.raises(CnnkitError, match="epochs=0"):
        config.replace(epochs=0)
    with pytest.raises(TypeError, match="Did you mean 'epochs'"):
        config.replace(epoch=3)
