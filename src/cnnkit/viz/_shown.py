"""How a cnnkit figure is shown: the Figure class every cnnkit figure is, and who holds it.

A figure shows in a notebook where any value shows: as the last expression of a cell, or
through ``IPython.display.display(fig)``. IPython asks the value for a picture, and
:class:`Figure` answers with a PNG of itself (``_repr_png_``), whether or not
``matplotlib.pyplot`` was ever imported. The inline backend, once pyplot has loaded it, draws
the figures pyplot holds at the end of every cell as well; so under that backend cnnkit never
gives its figures to pyplot (:func:`pyplot_takes_figures`), and each shows once.

Under any other backend a program that has imported pyplot gets its figures through pyplot, so
that ``plt.show()`` in a script opens them in a window, and an interactive notebook backend
(``%matplotlib widget``) draws them as it draws its own; a figure pyplot holds under an
interactive backend is then pyplot's to show, and gives IPython no second picture. Under a
non-interactive one (Agg, chosen with ``matplotlib.use`` or ``MPLBACKEND``) pyplot shows
nothing, and the figure gives IPython its PNG as a bare one does.

This module imports matplotlib, which takes a noticeable part of a second; it is loaded with the
first figure, not with :mod:`cnnkit.viz`.
"""

from __future__ import annotations

import io
import sys

import matplotlib
from matplotlib.figure import Figure as _MatplotlibFigure

__all__ = ["Figure", "pyplot_takes_figures"]


class Figure(_MatplotlibFigure):
    """A ``matplotlib.figure.Figure`` that IPython and Jupyter show as a PNG of itself.

    It is matplotlib's Figure in every other way (``savefig``, ``axes``, pickling); only the
    picture it gives IPython is added.
    """

    def _repr_png_(self) -> bytes | None:
        """The figure as PNG bytes at its own dpi, for IPython's display; None when pyplot holds
        the figure under an interactive backend (pyplot shows it itself: see the module
        docstring)."""
        if self.canvas.manager is not None and not _non_interactive_backend():
            return None
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi="figure")
        return buf.getvalue()


def _non_interactive_backend() -> bool:
    """True when matplotlib's backend draws only to files (Agg, SVG, PDF: pyplot never shows a
    figure under it)."""
    backend = matplotlib.get_backend().lower()
    try:
        from matplotlib.backends import BackendFilter, backend_registry
    except ImportError:                    # matplotlib before 3.9
        from matplotlib.rcsetup import non_interactive_bk as builtin
    else:
        builtin = backend_registry.list_builtin(BackendFilter.NON_INTERACTIVE)
    return backend in {name.lower() for name in builtin}


def _inline_backend() -> bool:
    """True when matplotlib's backend is IPython's inline one, read without resolving it (an
    automatic backend not yet chosen stays unchosen)."""
    read = getattr(matplotlib.rcParams, "_get_backend_or_none", None)
    backend = read() if read is not None else matplotlib.rcParams["backend"]
    return backend is not None and "inline" in str(backend).lower()


def pyplot_takes_figures() -> bool:
    """Whether a new figure is made through pyplot: when the program has imported
    ``matplotlib.pyplot`` and the backend is not the inline one (see the module docstring)."""
    return "matplotlib.pyplot" in sys.modules and not _inline_backend()
