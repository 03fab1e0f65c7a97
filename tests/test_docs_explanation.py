"""The explanation pages' printed figures are what their code prints today.

Each page of docs/explanation/ shows code and, in the ```text block right after it, what the
code printed. This runs every page's ```python blocks in order, in one namespace per page, and
compares what each printed with the text block that follows it; a text block that starts with
``$ cnnkit ...`` is a command whose output (stdout and stderr) it must be. A change to a kernel,
an error message or the memory estimate that makes a page wrong fails here, naming the page.

Numbers are compared loosely where a page's figure can move in its last digit without being
wrong: relatively within 2% (a traced peak in MiB), and any two values below 1e-6 are alike (the
rounding-level differences and gradient-check errors that depend on the BLAS).
"""

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

PAGES = sorted((Path(__file__).parent.parent / "docs" / "explanation").glob("*.md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def examples(text: str):
    """(kind, code, expected) for each block followed by its printed output: kind "python"
    (code to run) or "command" (a ``$ cnnkit`` line)."""
    blocks = FENCE.findall(text)
    found = []
    for (lang, body), (next_lang, next_body) in zip(blocks, blocks[1:] + [("", "")]):
        if lang == "python" and next_lang == "text":
            found.append(("python", body, next_body))
        elif lang == "text" and body.startswith("$ cnnkit "):
            command, _, output = body.partition("\n")
            found.append(("command", command[2:], output))
    return found


def same_output(printed: str, expected: str) -> bool:
    """The words equal and the numbers alike (see the module docstring)."""
    if NUMBER.sub("#", printed.strip()).split() != NUMBER.sub("#", expected.strip()).split():
        return False
    for a, b in zip(map(float, NUMBER.findall(printed)), map(float, NUMBER.findall(expected))):
        if abs(a) < 1e-6 and abs(b) < 1e-6:
            continue
        if abs(a - b) > 0.02 * max(abs(a), abs(b)):
            return False
    return True


def run_command(command: str) -> str:
    argv = shlex.split(command)[1:]
    env = {**os.environ, "COLUMNS": "100"}
    proc = subprocess.run([sys.executable, "-m", "cnnkit", *argv], capture_output=True,
                          text=True, timeout=60, env=env)
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_printed_figures_are_current(page):
    namespace = {"__name__": "__docs__"}
    for kind, code, expected in examples(page.read_text()):
        if kind == "python":
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(code, str(page), "exec"), namespace)
            printed = printed.getvalue()
        else:
            printed = run_command(code)
        assert same_output(printed, expected), (
            f"{page.name}: the code prints something else than the page shows now.\n"
            f"--- the page's code\n{code}\n--- printed\n{printed}\n--- the page\n{expected}")


def test_the_pages_show_examples():
    """The pages this test reads exist and hold examples (a renamed folder would pass empty)."""
    counts = {page.stem: len(examples(page.read_text())) for page in PAGES}
    for stem in ("conv-backward", "batchnorm-backward", "layer-and-group-norm", "size-rule",
                 "im2col-memory"):
        assert counts.get(stem, 0) >= 1, f"docs/explanation/{stem}.md shows no example: {counts}"


def test_same_output_compares_words_and_numbers():
    assert same_output("peak 58.8 MiB", "peak 58.9 MiB")
    assert same_output("err 3.4e-11", "err 8.9e-16")
    assert not same_output("peak 4.4 MiB", "peak 4.8 MiB")
    assert not same_output("dx = [1. 5.5]", "dx = [1. 6.5]")
    assert not same_output("not an integer along the width", "not an integer along the height")
