"""The tutorials' sources (docs/tutorials/*.py, executed when the site builds) keep the
conventions a reader and the build rely on: each is in the site's navigation, opens with the
jupytext header naming the python3 kernel (so `jupytext --execute` runs one alone, as
docs/contributing.md shows), has its title as the first markdown cell, a FULL_SCALE knob read
from CNNKIT_FULL_SCALE, and links other pages by their source path."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.py"))
HEADER = ("# ---\n# jupyter:\n#   jupytext:\n#     formats: py:percent\n#   kernelspec:\n"
          "#     display_name: Python 3\n#     language: python\n#     name: python3\n# ---\n")


def test_every_tutorial_is_in_the_navigation_and_the_other_way_round():
    nav = re.findall(r"^\s+- [^:]+: (tutorials/\S+\.py)$",
                     (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), flags=re.M)
    assert len(TUTORIALS) >= 7
    assert sorted(nav) == [f"tutorials/{p.name}" for p in TUTORIALS]


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_a_tutorial_keeps_the_conventions(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith(HEADER), f"{path.name}: the jupytext header with the python3 kernel"
    first_cell = text[len(HEADER):].lstrip("\n")
    assert re.match(r"# %% \[markdown\]\n# # \S", first_cell), f"{path.name}: a # Title first"
    assert 'FULL_SCALE = os.environ.get("CNNKIT_FULL_SCALE") == "1"' in text, path.name
    assert not re.search(r"\]\((?:\.\./)+[\w/-]+/\)", text), \
        f"{path.name}: link pages by their source path (../guide/data.md), not the site's URL"
