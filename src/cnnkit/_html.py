"""The pieces of cnnkit's self-contained HTML pages (``cnnkit report``'s, and any other page
on runs): escaping, a duration, an inlined figure, a table, a note, the stylesheet and the
page's shell.

A page built from these fetches nothing: every picture is a PNG inlined as a ``data:`` URI,
the stylesheet is inline and there is no script, so the file can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import math

from .viz import close, png_bytes

__all__ = ["escape", "duration", "figure", "image", "table", "note", "section", "details", "STYLE",
           "page"]


def escape(value) -> str:
    """``str(value)`` with ``& < > " '`` escaped, for text and attribute values."""
    return html.escape(str(value))


def duration(seconds: float) -> str:
    """Seconds as a reader takes them in: "0.4 s", "38 s", "12 min 5 s", "2 h 3 min"; "?" for
    a sum that is not finite (a damaged history's)."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"


def image(fig, alt: str, cls: str = "") -> str:
    """A matplotlib figure as an ``<img>`` holding its PNG inline; the figure is closed
    afterwards (also when drawing it fails)."""

    try:
        data = base64.b64encode(png_bytes(fig)).decode("ascii")
    finally:
        close(fig)
    klass = f' class="{escape(cls)}"' if cls else ""
    return f'<img{klass} src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def figure(fig, alt: str, caption: str = "") -> str:
    """A matplotlib figure as a ``<figure>`` with its PNG inline and an optional caption."""
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f"<figure>{image(fig, alt)}{cap}</figure>"


def table(head, rows, numeric=(), code=(), cls: str = "") -> str:
    """An HTML table of text cells (escaped); ``numeric`` are the indices of the right-aligned
    columns, ``code`` those in a monospace font, ``cls`` the table's class ("kv": a two-column
    table of names and values, its head hidden; "layers": a compact table)."""
    def cells(tag, row):
        return "".join(f"<{tag}{_class(i, numeric, code)}>{escape(v)}</{tag}>"
                       for i, v in enumerate(row))
    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{cells('th', head)}</tr></thead><tbody>{body}</tbody></table>"


def _class(i: int, numeric, code) -> str:
    names = [n for n, cols in (("num", numeric), ("code", code)) if i in cols]
    return f' class="{" ".join(names)}"' if names else ""


def note(text: str) -> str:
    """A paragraph set apart as a note (a warning, or why something is missing)."""
    return f'<p class="note">{escape(text)}</p>'


def section(key: str, title: str, body: str) -> str:
    """``<section id=key>`` headed by ``title`` (escaped) around ``body`` (HTML)."""
    return f'<section id="{escape(key)}"><h2>{escape(title)}</h2>\n{body}\n</section>'


def details(summary: str, body: str) -> str:
    """``body`` (HTML) folded under a line ``summary`` (escaped) the reader clicks to open:
    a long table that would push the rest of the page down (no script: the browser does it)."""
    return f"<details><summary>{escape(summary)}</summary>\n{body}\n</details>"


STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       background: #fafafa; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 1rem 1.5rem 3rem; background: #fff; }
h1 { font-size: 1.6rem; margin: 0.5rem 0 0.2rem; }
h2 { font-size: 1.3rem; border-bottom: 2px solid #ddd; padding-bottom: 0.2rem;
     margin-top: 2.2rem; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 0.4rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.6rem; text-align: left;
         vertical-align: top; }
th { background: #f0f0f0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv td:first-child { font-weight: 600; white-space: nowrap; }
table.kv thead { display: none; }
td.code { font-family: ui-monospace, Menlo, Consolas, monospace; }
figure { margin: 0.8rem 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.4rem 0.8rem; }
.sub { color: #666; }
summary { cursor: pointer; color: #1a5fb4; margin: 0.5rem 0; }
footer { color: #666; font-size: 0.85rem; margin-top: 2rem; }
"""


def page(title: str, body: str, *, style: str = "", footer: str = "") -> str:
    """A whole page: ``<h1>`` ``title`` (escaped), then ``body`` and ``footer`` (HTML), with
    :data:`STYLE` and ``style`` (more CSS) inline."""
    foot = f"<footer>{footer}</footer>\n" if footer else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n<style>{STYLE}{style}</style>\n</head>\n"
            f"<body>\n<main>\n<h1>{escape(title)}</h1>\n{body}\n{foot}</main>\n</body>\n"
            f"</html>\n")
