"""MkDocs hooks of cnnkit's site (``hooks:`` in mkdocs.yml): what the pages generate from the
code rather than repeat it."""


def on_page_markdown(markdown, page, config, files):
    return markdown
