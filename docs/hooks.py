"""MkDocs hooks of cnnkit's site (``hooks:`` in mkdocs.yml): what the pages generate from the
code rather than repeat it (docs/_reference.py holds the generators), and the offline rule."""

import importlib.util
import logging
import posixpath
import re
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_reference", Path(__file__).with_name(
    "_reference.py"))
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)
log = logging.getLogger("mkdocs.hooks.cnnkit")     # under "mkdocs": --strict counts it

# page -> {placeholder: generator}; a page that lacks its placeholder fails the build
GENERATED = {
    "reference/cli.md": {reference.CLI_PLACEHOLDER: reference.cli_markdown},
    "reference/api/index.md": {reference.TOP_LEVEL_PLACEHOLDER: reference.top_level_markdown},
    "reference/spec-grammar.md": {reference.GRAMMAR_PLACEHOLDER: reference.grammar_block,
                                  reference.TOKENS_PLACEHOLDER: reference.tokens_markdown},
}


def on_config(config):
    """Keep --strict strict under -q: -q raises the "mkdocs" logger to ERROR, so a warning
    (a broken link, an unresolved cross-reference, a docstring griffe cannot read) would be
    neither shown nor counted, and the build would pass."""
    logger = logging.getLogger("mkdocs")
    if config.strict and logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    return config


def on_page_markdown(markdown, page, config, files):
    """Put the generated reference in place of its placeholder."""
    for placeholder, generate in GENERATED.get(page.file.src_uri, {}).items():
        if placeholder not in markdown:
            raise ValueError(f"{page.file.src_uri} lacks its placeholder {placeholder}")
        markdown = markdown.replace(placeholder, generate())
    return markdown


# a relative link to a source page (data.md, 02_course_path.py), with its #anchor if any
_SOURCE_LINK = re.compile(r'href="(?![a-z]+:|/|#)([^"#?]+\.(?:md|py))(#[^"]*)?"')


def on_page_content(html, page, config, files):
    """Give a tutorial's links the pages' URLs. A tutorial links pages by their source path
    (``../guide/data.md``, ``02_course_path.py``), as every page does and as a reader browsing
    the repository follows them; MkDocs rewrites such links in Markdown pages, but a notebook
    page is rendered by mkdocs-jupyter, which does not. A link to no page is a warning (an
    error under --strict), as MkDocs makes it for a Markdown page."""
    if not page.file.src_uri.endswith(".py"):
        return html
    here = posixpath.dirname(page.file.src_uri)

    def url(match):
        target = posixpath.normpath(posixpath.join(here, match.group(1)))
        file = files.get_file_from_path(target)
        if file is None:
            log.warning(f"{page.file.src_uri}: links to {match.group(1)}, which is not a page "
                        f"of the site")
            return match.group(0)
        return f'href="{file.url_relative_to(page.file)}{match.group(2) or ""}"'
    return _SOURCE_LINK.sub(url, html)


def on_post_page(output, page, config):
    """Drop the scripts that would load code from another host (the site works offline), and
    warn (an error under --strict) of anything else the page loads from one, and of a name of
    a module's ``__all__`` its API page lacks."""
    api = re.fullmatch(r"reference/api/(\w+)\.md", page.file.src_uri)
    if api and api.group(1) != "index":
        for name in reference.unrendered_names(api.group(1), output):
            log.warning(f"{page.file.src_uri}: cnnkit.{api.group(1)}.{name} is in __all__ but "
                        f"not on the page (render it with ::: where it is defined)")
    output = reference.strip_remote_scripts(output)
    for url in reference.remote_loads(output):
        log.warning(f"{page.file.src_uri}: loads {url} from another host (the site must work "
                    f"offline)")
    return output
