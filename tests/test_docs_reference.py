"""The site's generated reference (docs/_reference.py, which docs/hooks.py runs while the site
builds): every command and option of the parser in the command-line page, every token of the
grammar in the grammar page, every public module with its API page, and no page loading
anything from another host."""

import argparse
import importlib.util
import re
from pathlib import Path

import pytest

import cnnkit
from cnnkit.cli.main import build_parser
from cnnkit.models import spec

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    module_spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


reference = _load("_reference")


def _sections(markdown: str) -> dict[str, str]:
    """The command-line page's sections by their heading (``cnnkit train``)."""
    parts = re.split(r"^## (.+)$", markdown, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_every_command_and_option_is_in_the_cli_reference():
    sections = _sections(reference.cli_markdown())
    commands = reference.option_strings()
    assert len(commands) > 10 and "train" in commands and "help" in commands
    for command, options in commands.items():
        heading = "cnnkit" if command == "cnnkit" else f"cnnkit {command}"
        assert heading in sections, f"no section for {heading}"
        if command != "cnnkit":                       # listed, and linked, at the top
            assert f"- [`{command}`](#cnnkit-{command}): " in sections["cnnkit"]
        shown = set(re.findall(r"^- `([^`]+)`", sections[heading], flags=re.M))
        for option in options:
            assert any(re.search(rf"(^|[ ,]){re.escape(option)}([ ,]|$)", entry)
                       for entry in shown), f"{heading}: {option} is not in the reference"


def test_a_command_section_has_its_description_usage_help_and_examples():
    section = _sections(reference.cli_markdown())["cnnkit train"]
    parser = build_parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)) \
        .choices["train"]
    assert " ".join(train.description.split())[:60] in section
    usage = re.search(r"```text\n(usage: cnnkit train .*?)```", section, re.S).group(1)
    # wrapped for the page: a longer line is one group argparse cannot split
    assert all(len(line) <= reference.USAGE_WIDTH or line.strip().count("[") == 1
               for line in usage.splitlines()) and len(usage.splitlines()) > 5
    assert "--epochs" in usage and "--sync-bn" in usage
    # each option's help, its %(default)s filled in, and a default the help does not say
    assert re.search(r"^- `--epochs EPOCHS`: epochs \(default: 5\)$", section, re.M)
    examples = re.search(r"\*\*Examples\*\*\n\n```bash\n(.*?)```", section, re.S).group(1)
    assert examples.splitlines() == list(train.examples) and train.examples


def test_a_default_the_help_does_not_say_is_added():
    parser = argparse.ArgumentParser(prog="cnnkit demo")
    parser.add_argument("--size", type=int, default=7, help="the size")
    parser.add_argument("--rate", default=0.5, help="the rate (default: %(default)s)")
    parser.add_argument("--flag", action="store_true", help="a switch")
    section = reference.command_markdown(parser)
    assert "- `--size SIZE`: the size (default: 7)" in section
    assert "- `--rate RATE`: the rate (default: 0.5)" in section
    assert "- `--flag`: a switch\n" in section


def test_every_token_is_in_the_grammar_table():
    table = reference.tokens_markdown()
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert list(rows) == list(spec.TOKENS)
    for name, token in spec.TOKENS.items():
        assert f"`{token.form}`" in rows[name]
    assert "Dropout(p=0.3, mode='downscale_in_infer')" in rows["DROPOUT"]  # the last example's
    assert "(on 3x33x33)" in rows["CONV"]               # CONV7-64/s2p3 does not fit 32x32
    # the productions come from the spec module's docstring
    assert "spec   := [INPUT '->'] chain" in reference.grammar_block()


def test_every_top_level_name_has_an_anchor():
    line = reference.top_level_markdown()
    for name, module in cnnkit._NAMES.items():
        assert f"[](){{#cnnkit.{name}}}[`cnnkit.{name}`][cnnkit.{module}.{name}]" in line


def test_every_public_module_has_an_api_page_in_the_nav_and_the_index():
    modules = dict.fromkeys(cnnkit._SUBMODULES.values())
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    index = (ROOT / "docs/reference/api/index.md").read_text(encoding="utf-8")
    for module in modules:
        page = ROOT / "docs/reference/api" / f"{module}.md"
        assert page.read_text(encoding="utf-8").startswith(f"::: cnnkit.{module}\n"), page
        assert f"- cnnkit.{module}: reference/api/{module}.md" in nav, module
        assert f"]({module}.md)" in index, module
    pages = {p.stem for p in (ROOT / "docs/reference/api").glob("*.md")} - {"index"}
    assert pages == set(modules)


@pytest.mark.parametrize("placeholder", [reference.CLI_PLACEHOLDER, reference.GRAMMAR_PLACEHOLDER,
                                         reference.TOKENS_PLACEHOLDER,
                                         reference.TOP_LEVEL_PLACEHOLDER])
def test_each_generated_part_has_its_placeholder_in_a_page(placeholder):
    hooks = _load("hooks")
    pages = [page for page, parts in hooks.GENERATED.items() if placeholder in parts]
    assert len(pages) == 1
    text = (ROOT / "docs" / pages[0]).read_text(encoding="utf-8")
    assert text.count(placeholder) == 1


MATHJAX_AND_MERMAID = """<head>
<!-- Load mathjax -->
<script src=""> </script>
<!-- MathJax configuration -->
<script type="text/x-mathjax-config">
    init_mathjax = function() {}
</script>
<!-- End of mathjax configuration --><script type="module">
  document.addEventListener("DOMContentLoaded", async () => {
    const mermaid = (await import("https://cdnjs.cloudflare.com/mermaid.esm.min.mjs")).default;
  });
</script>
<script type="module">console.log("kept")</script>
<link rel="stylesheet" href="../assets/main.css">
</head>"""


def test_the_notebook_pages_scripts_from_other_hosts_are_stripped():
    assert reference.remote_loads(MATHJAX_AND_MERMAID) == [
        "https://cdnjs.cloudflare.com/mermaid.esm.min.mjs"]
    stripped = reference.strip_remote_scripts(MATHJAX_AND_MERMAID)
    assert reference.remote_loads(stripped) == []
    assert "mathjax" not in stripped.lower() and 'console.log("kept")' in stripped
    assert '<link rel="stylesheet" href="../assets/main.css">' in stripped


def test_remote_loads_finds_scripts_styles_and_images_but_not_links():
    page = ('<script src="https://cdn.example/x.js"></script>'
            '<link rel="stylesheet" href="//fonts.example/f.css">'
            '<img alt="" src="http://img.example/a.png">'
            '<a href="https://example.org/read-more">more</a>'
            '<img src="local.png"><script src="../js/app.js"></script>')
    assert reference.remote_loads(page) == ["https://cdn.example/x.js", "http://img.example/a.png",
                                            "//fonts.example/f.css"]


def test_strict_stays_strict_under_quiet():
    """`mkdocs build --strict -q` raises the "mkdocs" logger to ERROR, which hid and uncounted
    every warning; the hook lowers it back to WARNING for a strict build only."""
    import logging
    from types import SimpleNamespace
    hooks, logger = _load("hooks"), logging.getLogger("mkdocs")
    before = logger.level
    try:
        for strict, expected in ((False, logging.ERROR), (True, logging.WARNING)):
            logger.setLevel(logging.ERROR)
            hooks.on_config(SimpleNamespace(strict=strict))
            assert logger.level == expected
    finally:
        logger.setLevel(before)


def test_a_name_of_all_missing_from_its_api_page_is_found():
    page = ('<h2 id="cnnkit.runs.RunFolder">RunFolder</h2><h3 id="cnnkit.runs.RunFolder.log">'
            '<h2 id="cnnkit.runs.check_folder_name"></h2>')
    missing = reference.unrendered_names("runs", page)
    assert "RunFolder" not in missing and "check_folder_name" not in missing
    assert missing and set(missing) < set(cnnkit.runs.__all__)
    # a name rendered where it is defined (a lazily loaded one) counts
    page = '<h2 id="cnnkit.weights.torchfile.TorchFileError"></h2>'
    assert "TorchFileError" not in reference.unrendered_names("weights", page)
    assert "load_torch_state_dict" in reference.unrendered_names("weights", page)


def test_a_tutorials_source_links_become_the_pages_urls(caplog):
    """mkdocs-jupyter does not rewrite a notebook's links: the hook gives a tutorial's
    ``../guide/data.md`` and ``02_course_path.py`` their pages' URLs (anchors kept), leaves
    other links alone, and warns of a link to no page. (MkDocs is in the docs extra, not the
    test extra: the test command skips this, and the docs command's build and browser check,
    which fails on a link to a missing page, guard the same in CI.)"""
    pytest.importorskip("mkdocs_jupyter", reason="the docs extra is not installed")
    from mkdocs.structure.files import File, Files
    from mkdocs_jupyter.plugin import NotebookFile

    hooks = _load("hooks")

    def page_file(path):          # a tutorial is a page as mkdocs-jupyter makes it one
        file = File(path, "docs", "site", use_directory_urls=True)
        return NotebookFile(file, True, "site") if path.endswith(".py") else file
    files = Files([page_file(path) for path in
                   ("tutorials/01_layers.py", "tutorials/02_course_path.py", "guide/data.md")])

    class Page:
        file = files.get_file_from_path("tutorials/01_layers.py")
    html = ('<a href="../guide/data.md#folders">a</a> <a href="02_course_path.py">b</a> '
            '<a href="https://example.com/x.md">c</a> <a href="#here">d</a> '
            '<a href="../guide/gone.md">e</a>')
    with caplog.at_level("WARNING"):
        out = hooks.on_page_content(html, page=Page, config={}, files=files)
    assert out == ('<a href="../../guide/data/#folders">a</a> <a href="../02_course_path/">b</a> '
                   '<a href="https://example.com/x.md">c</a> <a href="#here">d</a> '
                   '<a href="../guide/gone.md">e</a>')
    assert [r.getMessage() for r in caplog.records] == [
        "tutorials/01_layers.py: links to ../guide/gone.md, which is not a page of the site"]
