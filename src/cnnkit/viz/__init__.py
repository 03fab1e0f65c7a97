"""Pictures of what a net does, drawn with matplotlib.

Every function returns its ``matplotlib.figure.Figure`` and writes a PNG only when given a
``path`` (atomically). None selects or switches the matplotlib backend.

In Jupyter a figure shows the way any value does, exactly once: as the last expression of a
cell, or through ``IPython.display.display(fig)``. That holds with or without
``matplotlib.pyplot`` imported, and under ``%matplotlib inline``. A figure assigned to a name
shows nothing until it is displayed:

    viz.plot_history(run.history)            # the cell's last expression: shown once

    fig = viz.plot_history(run.history)      # assigned: not shown ...
    fig                                      # ... until it is the last expression

Under the inline backend cnnkit's figures are not pyplot's, so ``plt.show()`` does not show
them (``display(fig)`` does), and pyplot's end-of-cell drawing does not show them a second
time. In a script that has imported pyplot under a window backend (TkAgg, QtAgg) they are
pyplot's, and ``plt.show()`` opens them; without pyplot nothing is ever opened, and
``path=`` or ``fig.savefig(...)`` writes them.
"""

from ._figure import close, png_bytes
from .activations import activation_maps, plot_activations
from .curves import plot_history, plot_runs
from .layers import plot_layer_stats
from .evaluation import (confusion_matrix, per_class_accuracy, plot_confusion_matrix,
                         plot_misclassified)
from .filters import plot_filters
from .saliency import plot_saliency, saliency

__all__ = ["close", "plot_history", "plot_runs", "plot_layer_stats", "png_bytes",
           "activation_maps", "confusion_matrix", "per_class_accuracy", "plot_activations",
           "plot_confusion_matrix", "plot_filters", "plot_misclassified", "plot_saliency",
           "saliency"]
