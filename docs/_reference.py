"""What the reference pages generate from the code, so that nothing is written twice: the
command line from cnnkit's argparse parser, the spec grammar from its token table, and the
offline rule for every page. docs/hooks.py calls these while the site builds; the tests
(tests/test_docs_reference.py) import them too.
"""

from __future__ import annotations

import argparse
import html
import re

from cnnkit.cli.main import build_parser, command_parsers
from cnnkit.models import spec

#: The columns a usage line is wrapped to: a code block at 1200 px with both sidebars holds
#: about 80 characters of the theme's monospace font.
USAGE_WIDTH = 76

#: What a reference page's markdown holds where the hook puts the generated part.
CLI_PLACEHOLDER = "<!-- cli-reference -->"
GRAMMAR_PLACEHOLDER = "<!-- spec-grammar -->"
TOKENS_PLACEHOLDER = "<!-- spec-tokens -->"
TOP_LEVEL_PLACEHOLDER = "<!-- top-level-names -->"


# ---------------------------------------------------------------------------- command line

def _usage(parser: argparse.ArgumentParser) -> str:
    """``parser``'s usage line as ``--help`` prints it, wrapped to :data:`USAGE_WIDTH`."""
    formatter = parser.formatter_class(prog=parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """An option's help as ``--help`` shows it (``%(default)s`` and the like filled in), with
    its default added when the help does not say it."""
    if action.help is None or action.help == argparse.SUPPRESS:
        text = ""
    else:
        formatter = parser.formatter_class(prog=parser.prog)
        text = formatter._expand_help(action)
    default = action.default
    shown = default not in (None, False, argparse.SUPPRESS) and action.nargs != 0 \
        and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))
    if shown and "default" not in text:
        text += f" (default: {default})"
    return " ".join(text.split())


def _invocation(action: argparse.Action) -> str:
    """How an option is written: ``-o, --out PATH`` or a positional's metavar."""
    formatter = argparse.HelpFormatter(prog="")
    return formatter._format_action_invocation(action)


def _md(text: str) -> str:
    """Help text made safe inside markdown: no accidental emphasis (``**settings``), link,
    HTML or table cell; backticks stay code, as the help's authors meant them."""
    return re.sub(r"([\\*\[\]<>|])", r"\\\1", text)


def _slug(prog: str, command: str) -> str:
    """The anchor of a command's section (its heading ``cnnkit train``)."""
    return f"{prog} {command}".replace(" ", "-")


def command_markdown(parser: argparse.ArgumentParser) -> str:
    """One command's section: its description, usage, options by group, and examples."""
    lines = [f"## {parser.prog}", ""]
    if parser.description:
        lines += [_md(" ".join(parser.description.split())), ""]
    lines += ["```text", _usage(parser), "```", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help != argparse.SUPPRESS]
        if not actions:
            continue
        lines += [f"**{_md(group.title.capitalize())}**", ""]
        if group.description:
            lines += [_md(" ".join(group.description.split())), ""]
        for action in actions:
            if isinstance(action, argparse._SubParsersAction):     # the commands, linked
                lines += [f"- [`{choice.dest}`](#{_slug(parser.prog, choice.dest)}): "
                          f"{_md(choice.help or '')}" for choice in action._choices_actions]
                continue
            help_text = _help(parser, action)
            lines.append(f"- `{_invocation(action)}`" + (f": {_md(help_text)}" if help_text
                                                          else ""))
        lines.append("")
    examples = getattr(parser, "examples", ()) or (
        [parser.epilog] if parser.epilog else [])
    if examples:
        lines += ["**Examples**", "", "```bash", *examples, "```", ""]
    return "\n".join(lines)


def _all_parsers(parser: argparse.ArgumentParser | None) -> dict[str, argparse.ArgumentParser]:
    """``cnnkit``'s parser (``build_parser()``'s by default), then each command's, in the order
    ``cnnkit --help`` lists them."""
    parser = parser or build_parser()
    return {"cnnkit": parser, **command_parsers(parser)}


def cli_markdown(parser: argparse.ArgumentParser | None = None) -> str:
    """The command-line reference: ``cnnkit``'s own usage and options, then a section per
    command in the order ``cnnkit --help`` lists them."""
    return "\n".join(command_markdown(p) for p in _all_parsers(parser).values())


def option_strings(parser: argparse.ArgumentParser | None = None) -> dict[str, list[str]]:
    """Every command (``cnnkit`` first) and the option strings of its parser (``--epochs``,
    ``-o``), the ones the reference must show."""
    return {name: [s for a in p._actions for s in a.option_strings]
            for name, p in _all_parsers(parser).items()}


# ---------------------------------------------------------------------------- API

def top_level_markdown() -> str:
    """The names ``cnnkit`` itself exports (``cnnkit.fit``), each with an anchor, so that
    ``[cnnkit.fit][]`` resolves, and a link to where its module's page renders it. (One
    paragraph: autorefs registers the anchors of paragraphs, not of list items.)"""
    import cnnkit
    return ", ".join(f"[](){{#cnnkit.{name}}}[`cnnkit.{name}`][cnnkit.{module}.{name}]"
                     for name, module in cnnkit._NAMES.items()) + "."


def unrendered_names(module: str, page_html: str) -> list[str]:
    """The names of ``cnnkit.<module>.__all__`` that its API page renders nowhere: no object
    on the page whose path ends with the name (``cnnkit.nn.Conv2d``; a lazily loaded one may
    be rendered where it is defined, ``cnnkit.weights.torchfile.TorchFileError``)."""
    import importlib
    ids = set(re.findall(r'id="(cnnkit\.[\w.]+)"', page_html))
    return [name for name in importlib.import_module(f"cnnkit.{module}").__all__
            if not any(i == f"cnnkit.{module}.{name}" or
                       (i.startswith(f"cnnkit.{module}.") and i.endswith(f".{name}"))
                       for i in ids)]


# ---------------------------------------------------------------------------- spec grammar

def grammar_block() -> str:
    """The grammar's productions, as ``cnnkit.models.spec``'s docstring writes them."""
    doc = spec.__doc__
    start = doc.index("    spec   :=")
    end = doc.index("\n\n", start)
    return "```text\n" + "\n".join(line[4:] for line in doc[start:end].split("\n")) + "\n```"


def _module(module) -> str:
    """A module as the table shows it: a layer with its hyperparameters, a container with the
    kinds of its children."""
    children = list(module.children())
    inside = ", ".join(type(c).__name__ for c in children) if children else module.extra_repr()
    return f"{type(module).__name__}({inside})"


#: The volumes the token table builds an example on, the first it fits: the size rule rejects
#: CONV7-64/s2p3 on 32x32 and POOL2 on 33x33.
TABLE_INPUTS = ("3x32x32", "3x33x33")


def _built(example: str) -> str:
    """The modules the token ``example`` builds on the first of :data:`TABLE_INPUTS` it fits
    (that input named when it is not the first)."""
    for volume in TABLE_INPUTS:
        try:
            net = spec.build(f"INPUT[{volume}] -> {example}")
        except spec.SpecError:
            if volume == TABLE_INPUTS[-1]:
                raise
            continue
        built = ", ".join(_module(m) for m in net)
        return built if volume == TABLE_INPUTS[0] else f"{built} (on {volume})"


def token_rows() -> list[tuple[str, str, str, str]]:
    """A row per token of the grammar: its name, its form, its examples and what the last
    example (the one with the most options) builds."""
    rows = []
    for name, token in spec.TOKENS.items():
        examples = [e.strip() for e in (token.example or name).split(" or ")]
        rows.append((name, token.form, ", ".join(examples), _built(examples[-1])))
    return rows


def tokens_markdown() -> str:
    """The token table (from ``cnnkit.models.spec.TOKENS``)."""
    lines = [f"| Token | Form | Examples | The last example builds (on {TABLE_INPUTS[0]}) |",
             "|---|---|---|---|"]
    for name, form, examples, built in token_rows():
        lines.append(f"| {name} | `{form}` | `{examples.replace(', ', '`, `')}` | "
                     f"{_md(built)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- offline

# mkdocs-jupyter's notebook template loads MathJax (an empty src when no URL is set, which
# fetches the page itself as a script) and, when a notebook has a diagram, mermaid from a CDN.
_MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)
_REMOTE_MODULE = re.compile(r"<script type=\"module\">(?:(?!</script>).)*?https?://"
                            r"(?:(?!</script>).)*</script>", re.S)


def strip_remote_scripts(page_html: str) -> str:
    """``page_html`` without the scripts that would load code from another host (the site
    works offline; math is plain text and no notebook has a mermaid diagram)."""
    return _REMOTE_MODULE.sub("", _MATHJAX.sub("", page_html))


def remote_loads(page_html: str) -> list[str]:
    """The URLs on other hosts that ``page_html`` loads (script, link and img sources, not
    the links a reader follows)."""
    found = re.findall(r"<(?:script|img|iframe|source|embed)\b[^>]*\bsrc=[\"']"
                       r"((?:https?:)?//[^\"']+)", page_html)
    found += [url for tag in re.findall(r"<link\b[^>]*>", page_html)
              if "stylesheet" in tag or "preload" in tag or "icon" in tag
              for url in re.findall(r"href=[\"']((?:https?:)?//[^\"']+)", tag)]
    found += re.findall(r"import\s*\(?\s*[\"'](https?://[^\"']+)", page_html)
    return [html.unescape(url) for url in found]

