"""The README is the front page: its three commands, its tour and its map of the docs must work.

CI finds the test command by its marker (``.ci/run``), the site includes the README's sections
(``--8<-- "README.md:NAME"`` in docs/), and a reader browsing the repository follows its links,
so each of those is checked here; the tour's examples are run as a reader would run them.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MARKERS = ("train-command", "test-command", "docs-command")


def readme():
    return README.read_text(encoding="utf-8")


def block_after(text, marker):
    """The first fenced block after the line that opens with ``<!-- marker``: (language, body).

    Read the way .ci/run's awk reads it, so a marker this finds is one CI finds too."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"<!-- {marker}")), None)
    assert start is not None, f"README.md has no <!-- {marker} marker"
    opening = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    closing = next(i for i in range(opening + 1, len(lines)) if lines[i].startswith("```"))
    return lines[opening][3:].strip(), "\n".join(lines[opening + 1:closing])


def section(text, name):
    """The text between the README's snippet markers ``--8<-- [start:name]`` and ``[end:name]``."""
    match = re.search(rf"--8<-- \[start:{name}\][^\n]*\n(.*?)\n[^\n]*--8<-- \[end:{name}\]", text,
                      re.DOTALL)
    assert match, f"README.md has no snippet section {name!r}"
    return match.group(1)


def fenced_blocks(text, language):
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def test_readme_is_a_front_page_under_200_lines():
    assert len(readme().splitlines()) < 200


@pytest.mark.parametrize("marker", MARKERS)
def test_each_command_follows_its_marker(marker):
    language, body = block_after(readme(), marker)
    assert language == "bash"
    assert len(body.splitlines()) == 1, "one command line, run as written"
    assert body.startswith("python3 -m venv .venv && .venv/bin/pip install -q -e ")


def test_ci_run_runs_the_readme_test_command(tmp_path):
    # .ci/run ends by handing the command to bash; a stand-in bash records it instead of
    # running the whole suite, and a stand-in chromium keeps .ci/run from installing one.
    record = tmp_path / "commands"
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "bash").write_text(f'#!/bin/sh\nfor a; do last="$a"; done\n'
                               f'printf "%s\\n---\\n" "$last" >> {shlex.quote(str(record))}\n')
    (stub / "chromium").write_text("#!/bin/sh\n")
    for tool in stub.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{stub}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["/bin/bash", str(ROOT / ".ci" / "run")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    _, test_command = block_after(readme(), "test-command")
    assert test_command in record.read_text().split("\n---\n")


def test_readme_links_stay_inside_the_repository_and_resolve():
    links = re.findall(r"\]\(([^)\s]+)\)", readme())
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        assert "://" not in link and not link.startswith(("/", "..")), link
        assert (ROOT / link.split("#")[0]).is_file(), f"README.md links to missing {link}"


def test_every_docs_page_names_a_readme_section_that_exists():
    included = {(page, name) for page in DOCS.rglob("*.md")
                for name in re.findall(r'--8<-- "README\.md:([\w-]+)"', page.read_text())}
    assert included, "the site's home includes the README's sections"
    for page, name in included:
        assert section(readme(), name).strip(), f"{page.relative_to(ROOT)}: {name} is empty"


def test_the_tour_is_inside_its_section():
    tour = section(readme(), "tour")
    assert "cnnkit.fit(" in tour and len(fenced_blocks(tour, "python")) == 1
    assert len(fenced_blocks(tour, "bash")) == 1


@pytest.mark.slow
def test_the_tours_python_runs_and_writes_nothing(tmp_path):
    (code,) = fenced_blocks(section(readme(), "tour"), "python")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    accuracy = float(done.stdout.splitlines()[0])
    assert 0.8 < accuracy <= 1.0, done.stdout
    assert "confusion matrix" in done.stdout
    assert not list(tmp_path.iterdir()), "the tour trains in memory"


@pytest.mark.slow
def test_the_tours_command_lines_run(tmp_path):
    (script,) = fenced_blocks(section(readme(), "tour"), "bash")
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        assert words[0] == "cnnkit", line
        done = subprocess.run([sys.executable, "-m", "cnnkit", *words[1:]], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{line}\n{done.stderr[-2000:]}"
    assert (tmp_path / "runs" / "tour" / "model.npz").is_file()


@pytest.mark.parametrize("page", ["kernels-and-modules.md", "architectures.md"])
def test_the_guides_self_contained_examples_run(page, tmp_path):
    # Every Python block of these pages runs on its own, as printed; each in a fresh process,
    # since an example may change process-wide settings such as the thread count.
    blocks = fenced_blocks((DOCS / "guide" / page).read_text(), "python")
    assert blocks
    for code in blocks:
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, f"{page}:\n{code}\n{done.stderr[-2000:]}"
