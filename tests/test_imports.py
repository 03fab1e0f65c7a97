"""cnnkit's imports go one way, down the tiers (DESIGN.md): no cycles, and no unexplained
function-level import of a cnnkit module. The graph is read from the source by
``tests/import_graph.py``; ``python -m tests.import_graph`` prints the cycles and the counts.
"""

import re
import textwrap

import pytest

from tests import import_graph

# Modules left out of the cycle test while a change moves them (edges from and to them, and
# the packages they become). Empty: every module is in the test.
CYCLE_IN_PROGRESS_MODULES = set()

# Modules whose function-level imports the comment test skips while a change sorts them out.
# Empty: every module is in the test.
FUNCTION_IMPORTS_IN_PROGRESS_MODULES = set()

# What a function-level import of a cnnkit module may be for: keeping `import cnnkit` or a
# command's start-up cheap, or stepping round a cycle the tiers make necessary.
REASON = re.compile(r"\b(cheap|start-?up|cycles?|circular)\b", re.IGNORECASE)


def test_no_import_cycles():
    edges = import_graph.build_graph(ignore=CYCLE_IN_PROGRESS_MODULES)
    cycles = import_graph.find_cycles(edges)
    assert not cycles, "import cycles in src/cnnkit:\n" + "\n".join(
        "  " + import_graph.format_cycle(chain, members) for chain, members in cycles)


def test_function_level_imports_say_why():
    unexplained = list(dict.fromkeys(  # one line per import statement
        f"{imp.path.relative_to(import_graph.SRC.parent)}:{imp.line}: {imp.importer} imports "
        f"{imp.target}" for imp in import_graph.function_level_imports()
        if not import_graph.in_any(imp.importer, FUNCTION_IMPORTS_IN_PROGRESS_MODULES)
        and not REASON.search(import_graph.reason_comment(imp))))
    assert not unexplained, (
        "function-level imports of cnnkit modules without a comment (same line or the line above)"
        " saying why they are not at module level (it keeps `import cnnkit` or a command's "
        "start-up cheap, or steps round a cycle); move them to the top of the module or say "
        "why:\n  " + "\n  ".join(unexplained))


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def tree(tmp_path):
    """A small fake cnnkit: a package whose __init__ imports its submodules, and some cycles."""
    return _write(tmp_path / "cnnkit", {
        "__init__.py": "",
        "low.py": "import numpy as np\n",
        "pkg/__init__.py": "from .a import A\nfrom .b import B\n",
        "pkg/a.py": "from .b import B  # a sibling by its own name: no cycle\n",
        "pkg/b.py": """\
            from typing import TYPE_CHECKING
            from .. import low
            if TYPE_CHECKING:
                from ..high import H
            def f():
                # keeps start-up cheap
                from cnnkit.high import H
            """,
        "high.py": "from cnnkit.pkg.a import A\n",
        "loop.py": "from .pkg import B  # reads pkg's __init__\n",
        "pkg/c.py": "from . import B\nimport cnnkit.loop\n",
    })


def test_graph_reads_relative_absolute_and_function_level_imports(tree):
    edges = import_graph.build_graph(tree)
    assert edges["cnnkit.pkg"] == {"cnnkit.pkg.a", "cnnkit.pkg.b"}
    assert edges["cnnkit.pkg.a"] == {"cnnkit.pkg.b"}
    # `from .. import low` is the module low; TYPE_CHECKING is left out; the function-level
    # import of cnnkit.high is an edge
    assert edges["cnnkit.pkg.b"] == {"cnnkit.low", "cnnkit.high"}
    # importing cnnkit.pkg.a runs cnnkit.pkg first
    assert edges["cnnkit.high"] == {"cnnkit.pkg.a", "cnnkit.pkg"}
    assert edges["cnnkit.pkg.c"] == {"cnnkit.pkg", "cnnkit.loop"}
    assert import_graph.function_level_counts(tree) == {"cnnkit.pkg.b": 1}
    [imp] = import_graph.function_level_imports(tree)
    assert import_graph.reason_comment(imp) == "keeps start-up cheap"


def test_cycles_are_reported_as_chains(tree):
    cycles = import_graph.find_cycles(import_graph.build_graph(tree))
    # high imports pkg.a, which runs pkg, whose b imports high; loop and pkg.c read pkg's
    # __init__ but pkg imports neither, so they are on no cycle
    assert [import_graph.format_cycle(chain, members) for chain, members in cycles] == [
        "cnnkit.high -> cnnkit.pkg -> cnnkit.pkg.b -> cnnkit.high"
        "   (component: cnnkit.high, cnnkit.pkg, cnnkit.pkg.a, cnnkit.pkg.b)"]
    assert import_graph.find_cycles(import_graph.build_graph(tree, ignore={"cnnkit.high"})) == []
