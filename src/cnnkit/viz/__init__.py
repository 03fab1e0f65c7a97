"""Pictures of what a net does, drawn with matplotlib.

Every function returns its ``matplotlib.figure.Figure`` and writes a PNG only when given a
``path`` (atomically). None selects or switches the matplotlib backend: see
:mod:`cnnkit.viz._figure` for where a figure lives.
"""

from ._figure import close, png_bytes
from .curves import plot_history
from .layers import plot_layer_stats

__all__ = ["close", "plot_history", "plot_layer_stats", "png_bytes"]
