"""Every public name has a docstring: each name in a public module's ``__all__`` (the modules
``import cnnkit`` exposes, and cnnkit's own exports), and each public method and property of
the public classes. The API pages (docs/reference/api/) render exactly these, so a name without
one would be a bare signature there.

A method that overrides a documented one of a cnnkit base class shares its docstring, as
``inspect.getdoc`` and the pages (docs/griffe_house_style.py) show it: the contract is written
once, on the base. A constant's docstring is the string literal under its assignment or the
``#:`` comment above it, which the pages show (at run time an int or a tuple carries only its
type's).
"""

import ast
import importlib
import importlib.util
import inspect
import types
from pathlib import Path

import cnnkit


def public_modules() -> list[types.ModuleType]:
    """The modules ``import cnnkit`` exposes (``cnnkit.F`` is ``cnnkit.functional``), cnnkit
    itself first."""
    names = dict.fromkeys(cnnkit._SUBMODULES.values())
    return [cnnkit, *(importlib.import_module(f"cnnkit.{name}") for name in names)]


def _own_doc(value) -> str:
    """``value``'s own docstring ('' for none), seen through static/class methods and
    properties."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    return (getattr(value, "__doc__", None) or "").strip()


def _is_method(value) -> bool:
    return isinstance(value, (staticmethod, classmethod, property, types.FunctionType))


def undocumented_methods(cls) -> list[str]:
    """The public methods and properties defined in ``cls`` with no docstring of their own or
    of the same-named member of a cnnkit base class."""
    missing = []
    for name, value in vars(cls).items():
        if name.startswith("_") or not _is_method(value) or _own_doc(value):
            continue
        bases = [base for base in cls.__mro__[1:] if base.__module__.startswith("cnnkit")]
        if not any(_own_doc(vars(base).get(name)) for base in bases) and \
                not _comment_over_assignment(cls, name):
            missing.append(f"{cls.__module__}.{cls.__qualname__}.{name}")
    return missing


def _comment_over_assignment(cls, name: str) -> bool:
    """Whether ``name = ...`` in ``cls``'s body (``log = property(...)``) has a ``#:`` comment
    on the line above."""
    lines = inspect.getsource(cls).split("\n")
    return any(line.lstrip().startswith(f"{name} = ") and index and
               lines[index - 1].lstrip().startswith("#:") for index, line in enumerate(lines))


def _module_source(module_name: str) -> ast.Module:
    spec = importlib.util.find_spec(module_name)
    return ast.parse(Path(spec.origin).read_text(encoding="utf-8"))


def constant_has_docstring(module_name: str, name: str, _seen=()) -> bool:
    """Whether the module-level assignment of ``name`` (followed through ``from .x import``
    re-exports) has a string literal as its next statement."""
    body = _module_source(module_name).body
    for index, node in enumerate(body):
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            following = body[index + 1] if index + 1 < len(body) else None
            return (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)) or \
                _comment_above(module_name, node.lineno)
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name and module_name not in _seen:
                    package = module_name if _is_package(module_name) else \
                        module_name.rpartition(".")[0]
                    source = importlib.util.resolve_name("." * node.level + (node.module or ""),
                                                         package) if node.level else node.module
                    return constant_has_docstring(source, alias.name, (*_seen, module_name))
    return False


def _comment_above(module_name: str, lineno: int) -> bool:
    """Whether the line above line ``lineno`` (1-based) is a ``#:`` comment, Sphinx's
    docstring of an assignment."""
    lines = Path(importlib.util.find_spec(module_name).origin).read_text(
        encoding="utf-8").split("\n")
    return lineno >= 2 and lines[lineno - 2].lstrip().startswith("#:")


def _is_package(module_name: str) -> bool:
    return importlib.util.find_spec(module_name).submodule_search_locations is not None


def undocumented(module: types.ModuleType) -> list[str]:
    """The names of ``module.__all__`` (and their classes' methods) without a docstring."""
    missing = []
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.ismodule(value) or inspect.isclass(value) or callable(value):
            if not _own_doc(value):
                missing.append(f"{module.__name__}.{name}")
            if inspect.isclass(value) and value.__module__.startswith("cnnkit"):
                missing += undocumented_methods(value)
        elif not constant_has_docstring(module.__name__, name):
            missing.append(f"{module.__name__}.{name} (a constant: a string literal under it or a #: comment above)")
    return missing


def test_every_public_name_and_method_has_a_docstring():
    missing = sorted(set(sum((undocumented(module) for module in public_modules()), [])))
    assert not missing, f"{len(missing)} public names without a docstring:\n" + "\n".join(missing)


def test_the_check_finds_what_lacks_one(tmp_path, monkeypatch):
    """The check itself, on a made-up package: an undocumented function, method, property,
    override of an undocumented base method and constant are named; a documented constant
    (through a re-export) and an override of a documented base method are not."""
    package = tmp_path / "cnnkitfake"
    package.mkdir()
    (package / "__init__.py").write_text(
        '"""Fake."""\nfrom .inner import LIMIT, STEP, SIZE, Base, Child, bare\n'
        '__all__ = ["LIMIT", "STEP", "SIZE", "Base", "Child", "bare"]\n')
    (package / "inner.py").write_text(
        'LIMIT = 3\n"""The limit."""\n#: The step.\nSTEP = 2\nSIZE = 4\n\n'
        'def bare():\n    pass\n\n'
        'class Base:\n    """Base."""\n    def run(self):\n        """Runs."""\n'
        '    def stop(self):\n        pass\n\n'
        'class Child(Base):\n    """Child."""\n    def run(self):\n        pass\n'
        '    def stop(self):\n        pass\n'
        '    @property\n    def size(self):\n        return 1\n'
        '    #: The width.\n    width = property(lambda self: 2)\n'
        '    height = property(lambda self: 3)\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = importlib.import_module("cnnkitfake")   # its classes count as cnnkit's by the name
    assert sorted(undocumented(fake)) == sorted([
        "cnnkitfake.inner.Base.stop", "cnnkitfake.inner.Child.height",
        "cnnkitfake.inner.Child.size", "cnnkitfake.inner.Child.stop", "cnnkitfake.bare",
        "cnnkitfake.SIZE (a constant: a string literal under it or a #: comment above)"])
