"""Sizes and the memory budget: one parser for ``--memory-budget``, ``RunConfig.memory_budget``,
``set_memory_budget`` and ``CNNKIT_MEMORY_BUDGET``, binary suffixes included, and a variable that
is not a size refused in one line naming it rather than ignored."""

import pytest

from cnnkit.app.config import RunConfig
from cnnkit.budget import (MAX_SIZE, BudgetError, budget_from_environment, check_bytes,
                           memory_budget, parse_size, set_memory_budget)
from cnnkit.cli import main
from cnnkit.environment import EnvironmentVariableError
from cnnkit.errors import CnnkitError

GI, MI, TI = 2 ** 30, 2 ** 20, 2 ** 40
SIZES = {"8G": 8 * GI, "8Gi": 8 * GI, "8GiB": 8 * GI, "8GB": 8 * GI, "8g": 8 * GI,
         "512Mi": 512 * MI, "512MiB": 512 * MI, "1.5Ti": 3 * TI // 2, "1.5T": 3 * TI // 2,
         "2Ki": 2048, "1P": 2 ** 50, " 3 K ": 3072, "100000": 100_000, "100B": 100, "1": 1,
         "1e9": 10 ** 9, ".5K": 512,
         # beyond any machine: taken as the most any allocation can be (see cnnkit.budget)
         "1e30": MAX_SIZE, "9" * 30: MAX_SIZE}
NOT_SIZES = {"8Gx": "expected a size such as 8G, 8Gi", "abc": "expected a size", "": "expected",
             "-1": "expected a size", "8 G B": "expected a size", "8E": "expected a size",
             "inf": "expected a size", "nan": "expected a size", "0x10": "expected a size",
             "1e400": "expected a finite size", "0": "at least 1 byte",
             "0.5": "at least 1 byte", "1e-3": "at least 1 byte", "8Gi" * 1000: "..."}
BAD_VARIABLE = ["8Gx", "0", "-1", "abc", "1e400", "8 G B"]


@pytest.fixture(autouse=True)
def no_budget(monkeypatch):
    monkeypatch.delenv("CNNKIT_MEMORY_BUDGET", raising=False)
    set_memory_budget(None)
    yield
    set_memory_budget(None)


@pytest.mark.parametrize("text", list(SIZES))
def test_sizes_with_decimal_and_binary_suffixes(text):
    assert parse_size(text) == SIZES[text]
    assert RunConfig.settings()["memory_budget"].kind.kind.parse(text) == SIZES[text]


@pytest.mark.parametrize("text", list(NOT_SIZES))
def test_what_is_not_a_size_is_refused_in_one_short_line(text):
    with pytest.raises(ValueError) as info:
        parse_size(text)
    message = str(info.value)
    assert NOT_SIZES[text] in message and "\n" not in message and len(message) < 140, message


def test_ints_are_bytes_checked_alike():
    assert parse_size(4096) == 4096 and parse_size(2 ** 80) == MAX_SIZE
    for value in (0, -5):
        with pytest.raises(ValueError, match="at least 1 byte"):
            parse_size(value)
    with pytest.raises(ValueError):
        set_memory_budget(0)          # a budget of nothing was once taken as it is
    set_memory_budget(2 ** 80)
    assert memory_budget() == (MAX_SIZE, "the memory budget")


def test_a_budget_beyond_any_machine_still_refuses_what_no_machine_allocates():
    set_memory_budget("1e30")
    check_bytes(10 ** 15, "a petabyte")
    with pytest.raises(BudgetError, match="more than the memory budget"):
        check_bytes(10 ** 25, "ten yottabytes")


@pytest.mark.parametrize("text", ["8Gi", "512MiB", "1.5Ti", "1e9"])
def test_the_variable_takes_what_the_option_takes(monkeypatch, text):
    monkeypatch.setenv("CNNKIT_MEMORY_BUDGET", text)
    assert memory_budget() == (parse_size(text), "CNNKIT_MEMORY_BUDGET")
    monkeypatch.setenv("CNNKIT_MEMORY_BUDGET", "  ")           # blank: as if unset
    assert memory_budget()[1] == "the available memory"


@pytest.mark.parametrize("text", BAD_VARIABLE)
def test_a_variable_that_is_not_a_size_is_refused_naming_it(monkeypatch, capsys, text):
    monkeypatch.setenv("CNNKIT_MEMORY_BUDGET", text)
    with pytest.raises(EnvironmentVariableError) as info:
        memory_budget()
    assert isinstance(info.value, CnnkitError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith("environment variable CNNKIT_MEMORY_BUDGET: ")
    with pytest.raises(EnvironmentVariableError):
        check_bytes(1, "a byte")
    # the command line says so before any work, even where the option sets the budget
    for extra in ([], ["--memory-budget", "8Gi"]):
        assert main(["summary", "lenet-bn", *extra]) == 1
        out, err = capsys.readouterr()
        assert err.count("\n") == 1 and not out, err
        assert err.startswith("cnnkit summary: error: environment variable "
                              "CNNKIT_MEMORY_BUDGET: "), err


def test_the_option_takes_binary_suffixes(capsys):
    assert main(["summary", "lenet-bn", "--memory-budget", "8Gi"]) == 0
    assert budget_from_environment() is None
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["summary", "lenet-bn", "--memory-budget", "8Gx"])
    assert "expected a size such as 8G, 8Gi, 512MiB" in capsys.readouterr().err
