"""The import graph of src/cnnkit, read from the source with ``ast`` (nothing is imported).

A node is a dotted module name (``cnnkit.viz.layers``; a package is named by its ``__init__``,
``cnnkit.viz``). An edge ``a -> b`` says that running module ``a`` may import ``b``:

- every ``import x.y`` and ``from x import y`` naming a cnnkit module, absolute or relative, at
  module level or inside a function (``function_level`` marks the latter; a class body runs
  when its module does, so its imports count as module level);
  ``from pkg import name`` goes to the submodule ``pkg.name`` when there is one, else to ``pkg``;
- importing ``a.b.c`` runs the packages ``a.b`` and ``a`` first, so the importer also has an
  edge to each package above its target, except its own packages: a module runs only after (or
  while) its own packages' ``__init__`` started, so ``a.b.c`` importing its sibling ``a.b.d`` adds
  no edge to ``a.b``, and ``a.b``'s ``__init__`` importing ``a.b.c`` is no cycle. What is one: a
  package ``__init__`` that imports its submodules, plus a submodule that imports a name through
  the package (``from . import Name``, ``from a.b import Name``, ``import a.b``), which reads the
  half-run ``__init__``; that import names the package itself, so it is an edge like any other.

Imports under ``if TYPE_CHECKING:`` never run and are left out. ``importlib.import_module`` calls
(the lazy ``cnnkit/__init__``) are not imports to this reader.

``build_graph()`` gives the edges, ``find_cycles(edges)`` the cycles (one chain per strongly
connected component, e.g. ``cnnkit.io -> cnnkit.weights.transfer -> cnnkit.io``), and
``function_level_counts()`` the number of function-level cnnkit imports per module.
"""

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = "cnnkit"
SRC = Path(__file__).resolve().parent.parent / "src" / ROOT


@dataclass(frozen=True)
class Import:
    """One import of a cnnkit module by a cnnkit module: who imports whom, in which file and on
    which line (an import of several names is one ``Import`` per module it reaches)."""

    importer: str
    target: str
    path: Path
    line: int
    function_level: bool


def module_names(src=SRC):
    """{dotted module name: path} of every .py file under ``src`` (a package is its __init__)."""
    names = {}
    for path in sorted(src.rglob("*.py")):
        parts = [src.name, *path.relative_to(src).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree):
    """(node, function_level) for each import statement, skipping ``if TYPE_CHECKING:`` bodies."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.orelse:
                    visit_one(stmt, in_function)
                continue
            visit_one(child, in_function)

    def visit_one(child, in_function):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            found.append((child, in_function))
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            visit(child, True)
        else:
            visit(child, in_function)

    visit(tree, False)
    return found


def _package_of(name, path):
    """The package a relative import in module ``name`` starts from."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _targets(node, name, path, modules):
    """The cnnkit modules that one import statement in module ``name`` names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names
                if alias.name == ROOT or alias.name.startswith(ROOT + ".")]
    if node.level:
        base = _package_of(name, path)
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        base = f"{base}.{node.module}" if node.module else base
    else:
        base = node.module or ""
    if base != ROOT and not base.startswith(ROOT + "."):
        return []
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
            for alias in node.names]


def _nearest_module(target, modules):
    """``target`` itself, or the longest prefix of it that is a module (``a.b.name`` -> ``a.b``)."""
    while target not in modules and "." in target:
        target = target.rpartition(".")[0]
    return target


def imports(src=SRC):
    """Every import of a cnnkit module by a cnnkit module, as a list of ``Import``."""
    modules = module_names(src)
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, function_level in _imports(tree):
            for target in _targets(node, name, path, modules):
                target = _nearest_module(target, modules)
                if target != name:
                    found.append(Import(name, target, path, node.lineno, function_level))
    return found


def _packages_above(name):
    """``a.b.c`` -> ``a.b``, ``a``."""
    while "." in name:
        name = name.rpartition(".")[0]
        yield name


def build_graph(src=SRC, ignore=frozenset()):
    """{module: set of modules it imports}, parent packages included (see the module docstring).

    Edges from or to a module in ``ignore``, or in a package in ``ignore``, are left out.
    """
    edges = {name: set() for name in module_names(src)}
    for imp in imports(src):
        edges[imp.importer].add(imp.target)
        own_packages = set(_packages_above(imp.importer))
        for package in _packages_above(imp.target):  # importing a.b.c runs a.b and a as well
            if package not in own_packages and package != imp.importer:
                edges[imp.importer].add(package)
    return {a: {b for b in bs if not in_any(b, ignore)}
            for a, bs in edges.items() if not in_any(a, ignore)}


def in_any(name, packages):
    """Whether module ``name`` is one of ``packages`` or lies inside one of them."""
    return any(name == p or name.startswith(p + ".") for p in packages)


def _components(edges):
    """Strongly connected components (Tarjan, iterative), each a list of module names."""
    index, low, on_stack, stack, comps = {}, {}, set(), [], []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        comp.append(member)
                        if member == node:
                            break
                    comps.append(comp)
    return comps


def _shortest_cycle(start, members, edges):
    """A shortest chain start -> ... -> start inside one component (breadth first)."""
    previous = {start: None}
    queue = [start]
    for node in queue:
        for child in sorted(edges.get(node, ())):
            if child == start:
                chain = [node]
                while previous[chain[-1]] is not None:
                    chain.append(previous[chain[-1]])
                return [*reversed(chain), start]
            if child in members and child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"{start} is on no cycle")


def find_cycles(edges):
    """One chain per import cycle (strongly connected component with two or more modules).

    Each chain starts and ends at the component's first module in sorted order; a component with
    more than one cycle through it is reported once, with its members listed after the chain.
    """
    cycles = []
    for comp in _components(edges):
        if len(comp) < 2:
            continue
        members = set(comp)
        cycles.append((_shortest_cycle(min(members), members, edges), sorted(members)))
    return sorted(cycles)


def format_cycle(chain, members):
    text = " -> ".join(chain)
    if len(members) > len(chain) - 1:
        text += f"   (component: {', '.join(members)})"
    return text


def function_level_imports(src=SRC):
    """The function-level imports of cnnkit modules, as a list of ``Import``."""
    return [imp for imp in imports(src) if imp.function_level]


def reason_comment(imp):
    """The comment on an import's first line, else the block of comment lines right above it."""
    lines = imp.path.read_text(encoding="utf-8").splitlines()
    first = lines[imp.line - 1]
    if "#" in first:
        return first.partition("#")[2].strip()
    above = []
    for text in reversed(lines[:imp.line - 1]):
        if not text.strip().startswith("#"):
            break
        above.append(text.strip().lstrip("#").strip())
    return " ".join(reversed(above))


def function_level_counts(src=SRC):
    """{module: number of function-level imports of cnnkit modules}, modules with none left out.

    One ``from .x import a, b`` statement counts once.
    """
    statements = {(imp.importer, imp.line) for imp in function_level_imports(src)}
    counts = defaultdict(int)
    for importer, _ in statements:
        counts[importer] += 1
    return dict(sorted(counts.items()))


if __name__ == "__main__":
    for chain, members in find_cycles(build_graph()):
        print("cycle:", format_cycle(chain, members))
    counts = function_level_counts()
    for module, count in counts.items():
        print(f"{count:4d}  {module}")
    print(f"{sum(counts.values()):4d}  function-level cnnkit imports in all")
