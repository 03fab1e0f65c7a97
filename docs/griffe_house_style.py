"""A griffe extension (mkdocs.yml's mkdocstrings ``extensions:``) that reads cnnkit's docstrings
in the house style (numpy sections whose entries are ``name : what it is``, one line that
mixes the type and the meaning) as the API pages should show them.

Numpy style reads the text after ``name :`` as a type annotation, so the pages would print each
parameter's whole description as code and drop its meaning. This moves that text into the
entry's description (the annotation then comes from the signature, with the default), and turns
Sphinx roles (``:class:`cnnkit.data.Folder```) into code spans. The source stays as it is: the
house style reads well in ``help()`` and in an editor.
"""

import re

import griffe

# sections whose entries are "names : what"; their text becomes the description
_NAMED = {"parameters", "other parameters", "attributes", "params", "arguments", "args"}
# sections whose entries may have no name ("an array of ..."): a bare line is a description too
_RETURNED = {"returns", "yields", "receives"}
_ENTRY = re.compile(r"^(?P<names>\*{0,2}[A-Za-z_]\w*(?:,\s*\*{0,2}[A-Za-z_]\w*)*) : (?P<rest>.*)$")
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj|const):`~?\.?(?P<target>[^`]+)`")


def house_to_numpy(text: str) -> str:
    """The numpy-style docstring that says what ``text`` (house style) says.

    Entries of the parameter-like sections lose their ``: type`` slot to their description;
    unnamed entries of a Returns section become descriptions; Sphinx roles become code spans.
    """
    lines = text.split("\n")
    out, section = [], None
    for i, line in enumerate(lines):
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and set(following.strip()) == {"-"} and not line.startswith(" "):
            section = line.strip().lower()         # a section title (its underline follows)
            out.append(line)
            continue
        if section and line and not line.startswith(" ") and not set(line) <= {"-"}:
            match = _ENTRY.match(line)
            if section in _NAMED and match:
                out += [match["names"], "    " + match["rest"]]
                continue
            if section in _RETURNED:
                out += [f"{match['names']} :" if match else ":",
                        "    " + (match["rest"] if match else line)]
                continue
        out.append(line)
    return _ROLE.sub(lambda m: f"`{m['target']}`", _one_line_summary("\n".join(out)))


def _one_line_summary(text: str) -> str:
    """``text`` with its first paragraph on one line: the tables of a module's and a class's
    names show a docstring's first line, and the house wraps sentences at 100 columns."""
    first, sep, rest = text.partition("\n\n")
    lines = first.split("\n")
    if any(line[:1].isspace() for line in lines[1:]) or ">>>" in first:
        return text                                  # a laid-out first paragraph stays as is
    return " ".join(line.strip() for line in lines) + sep + rest


def comment_above(obj) -> str:
    """The ``#:`` comment lines right above ``obj``'s assignment (Sphinx's docstring of a
    constant, which the house uses), without their markers; '' when there are none."""
    if not obj.lineno or obj.filepath is None or isinstance(obj.filepath, list):
        return ""
    lines = obj.filepath.read_text(encoding="utf-8").split("\n")[:obj.lineno - 1]
    comment = []
    while lines and lines[-1].lstrip().startswith("#:"):
        comment.insert(0, lines.pop().lstrip()[2:].strip())
    return "\n".join(comment)


def _classes(module):
    """Every class defined in ``module`` and in its submodules (aliases skipped)."""
    for member in module.members.values():
        if member.is_alias:
            continue
        if member.is_module:
            yield from _classes(member)
        elif member.is_class:
            yield member


def inherit_docstrings(package) -> None:
    """Give a method that overrides a documented one its docstring, as ``inspect.getdoc``
    does: the contract (``Module.forward``, ``Callback.on_epoch_end``) is written once, on the
    base, and each layer's page shows it."""
    for cls in _classes(package):
        try:
            bases = cls.mro()
        except Exception:          # a base griffe cannot resolve (outside cnnkit): nothing to take
            continue
        for name, member in cls.members.items():
            if member.is_alias or member.docstring is not None or name.startswith("_"):
                continue
            for base in bases:
                inherited = base.members.get(name)
                if inherited is not None and not inherited.is_alias and inherited.docstring:
                    member.docstring = griffe.Docstring(inherited.docstring.value,
                                                        parent=member)
                    break


class HouseStyle(griffe.Extension):
    """Reads cnnkit's docstrings as the pages show them: :func:`house_to_numpy` on each, and
    :func:`inherit_docstrings` once the package is loaded."""

    def on_instance(self, *, node, obj, agent, **kwargs) -> None:
        """Rewrite ``obj``'s docstring before anything parses it (parsing is lazy); an
        assignment without one takes the ``#:`` comment above it."""
        if not obj.path.startswith("cnnkit"):
            return
        if obj.docstring is None and obj.is_attribute:
            comment = comment_above(obj)
            if comment:
                obj.docstring = griffe.Docstring(comment, lineno=obj.lineno, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = house_to_numpy(obj.docstring.value)

    def on_class_members(self, *, cls, **kwargs) -> None:
        """Keep a class's ``_`` names off the pages: ``__init__`` is merged into the class
        (``merge_init_into_class``), and ``__repr__`` and the like say nothing a reader needs.
        (Deleted: the ``public`` flag does not reach the aliases a package re-exports.)"""
        for name in [n for n in cls.members if n.startswith("_") and n != "__init__"]:
            cls.del_member(name)

    def on_package(self, *, pkg, **kwargs) -> None:
        """Fill the overrides' docstrings from their bases."""
        if pkg.path == "cnnkit":
            inherit_docstrings(pkg)
