"""Where every cnnkit figure is made and saved, without touching the user's matplotlib backend.

A figure is a :class:`cnnkit.viz._shown.Figure`, a ``matplotlib.figure.Figure`` that IPython
shows as a PNG. It is a bare Figure that no global registry holds (a script, the command line,
a notebook under the inline backend: nothing leaks, no GUI is ever started, and ``savefig``
renders with Agg for that one call), except when the program has imported
``matplotlib.pyplot`` under a backend other than the inline one: then it is made through
pyplot, so that ``plt.show()`` opens it in a window
(:func:`cnnkit.viz._shown.pyplot_takes_figures` says when, and why). Either way no backend is
selected or switched.

Figure text is drawn as written. matplotlib reads ``$...$`` in any text as math (mathtext), and
under ``rcParams["text.usetex"]`` hands the whole text to LaTeX: a class folder named ``$\frac{$``
or a data file ``d$x^$.npz`` would stop the figure when drawn, and with it the training run that
draws its curves each epoch. :func:`finish`, which every cnnkit figure ends with, makes all its
text literal (:func:`literal_text`); tick labels given as strings go through
:func:`set_tick_labels`, since an axis rewrites its tick labels at every draw.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from .._atomic import atomic_write_bytes

DPI = 100

# the Text properties that draw a string as it is: no mathtext, no LaTeX
LITERAL = {"parse_math": False, "usetex": False}
# A longer line (a deep data path, a 255-byte class name) is cut in the middle: it would push the
# axes out of the figure. cnnkit's own lines stay under 100 characters; names, which label ticks,
# legends and small panels, are cut shorter.
LONGEST_LINE = 150
LONGEST_NAME = 40
MOST_LINES = 6
CUT = "\u2026"       # the ellipsis marking a cut


def new_figure(width: float, height: float):
    """A new, empty Figure of ``width`` x ``height`` inches with constrained layout (titles,
    labels and colour bars never overlap); see the module docstring for where it lives."""
    # matplotlib loads with the first figure, keeping `import cnnkit.viz` cheap
    from ._shown import Figure, pyplot_takes_figures

    if pyplot_takes_figures():
        import matplotlib.pyplot as plt
        return plt.figure(figsize=(width, height), constrained_layout=True, FigureClass=Figure)
    return Figure(figsize=(width, height), constrained_layout=True)


def png_bytes(fig, dpi: int = DPI) -> bytes:
    """The figure rendered as PNG bytes.

    Parameters
    ----------
    fig : a ``matplotlib.figure.Figure`` (any cnnkit figure)
    dpi : pixels per inch

    Returns
    -------
    bytes : the PNG file's bytes
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def shorten(text, longest: int = LONGEST_LINE) -> str:
    """``text`` as a string of at most :data:`MOST_LINES` lines of at most ``longest``
    characters each; a longer line loses its middle, and lines past the last their end, the
    cut marked by an ellipsis (both ends of a path or name tell most)."""
    lines = str(text).split("\n")
    if len(lines) > MOST_LINES:
        lines = lines[:MOST_LINES - 1] + [CUT]
    head = (longest - len(CUT) + 1) // 2
    tail = longest - len(CUT) - head
    return "\n".join(line if len(line) <= longest else line[:head] + CUT + line[-tail:]
                     for line in lines)


def name_text(name) -> str:
    """How a name (of a class, a layer, a parameter) is written in a figure: as a string
    whose lines hold at most :data:`LONGEST_NAME` characters (:func:`shorten`)."""
    return shorten(name, LONGEST_NAME)


def literal_text(fig) -> None:
    """Make every text of ``fig`` (titles, the suptitle, axis and colour bar labels, legends,
    annotations) draw its string literally (:data:`LITERAL`), shortened by :func:`shorten`.

    Tick labels and an axis' offset text are left to the axis: its formatter writes them at
    each draw (numbers, a log axis' in mathtext), and labels given as strings come through
    :func:`set_tick_labels`."""
    for text in _texts(fig):
        text.set_text(shorten(text.get_text()))
        text.update(LITERAL)


def _texts(artist):
    """Every Text under ``artist``, but tick labels and offset texts (see :func:`literal_text`)."""
    from matplotlib.axis import Tick
    from matplotlib.text import Text

    for child in artist.get_children():
        if isinstance(child, Tick) or child is getattr(artist, "offsetText", None):
            continue
        if isinstance(child, Text):
            yield child
        yield from _texts(child)


def set_tick_labels(axis, positions, labels, **kwargs) -> None:
    """Put ``labels`` (any objects, as strings) at ``positions`` on ``axis`` (an
    ``ax.xaxis`` or ``ax.yaxis``), drawn literally and shortened as :func:`literal_text` does;
    ``kwargs`` are Text properties such as ``fontsize`` or ``rotation``. Names in the labels
    go through :func:`name_text` first."""
    axis.set_ticks(positions, [shorten(label) for label in labels], **LITERAL, **kwargs)


def finish(fig, path=None, dpi: int = DPI):
    """Make the figure's text literal (:func:`literal_text`) and, when ``path`` is given,
    write the figure there as a PNG, atomically (the folder is created). Returns the figure."""
    literal_text(fig)
    if path is not None:
        data = png_bytes(fig, dpi)
        atomic_write_bytes(Path(path), lambda f: f.write(data))
    return fig


def close(fig) -> None:
    """Release a figure that pyplot holds; a figure no registry holds is left alone.

    pyplot keeps every figure made through it until it is closed; cnnkit makes its figures
    through pyplot only when a program has imported pyplot under a backend other than the
    inline one (see :mod:`cnnkit.viz`). Closing in a loop keeps such a program's memory flat.

    Parameters
    ----------
    fig : a figure a :mod:`cnnkit.viz` function returned
    """
    if getattr(fig.canvas, "manager", None) is not None and "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt
        plt.close(fig)
