"""Where every cnnkit figure is made and saved, without touching the user's matplotlib backend.

A figure is a ``matplotlib.figure.Figure``. When the user's program has imported
``matplotlib.pyplot`` it is made through pyplot, so that ``plt.show()`` and the notebook's inline
display see it under whatever backend the user chose; otherwise it is a bare ``Figure`` that no
global registry holds (a script or the command line: no GUI is ever started, nothing leaks, and
``savefig`` renders with Agg for that one call). Either way no backend is selected or switched.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from .._atomic import atomic_write_bytes

DPI = 100


def new_figure(width: float, height: float):
    """A new, empty Figure of ``width`` x ``height`` inches with constrained layout (titles,
    labels and colour bars never overlap); see the module docstring for where it lives."""
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt
        return plt.figure(figsize=(width, height), constrained_layout=True)
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), constrained_layout=True)


def png_bytes(fig, dpi: int = DPI) -> bytes:
    """The figure rendered as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def finish(fig, path=None, dpi: int = DPI):
    """When ``path`` is given, write the figure there as a PNG, atomically (the folder is
    created). Returns the figure."""
    if path is not None:
        data = png_bytes(fig, dpi)
        atomic_write_bytes(Path(path), lambda f: f.write(data))
    return fig


def close(fig) -> None:
    """Release a figure made by :func:`new_figure` (pyplot keeps those it made until closed)."""
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt
        plt.close(fig)
