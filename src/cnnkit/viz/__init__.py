"""Pictures of what a net does, drawn with matplotlib.

Every function returns its ``matplotlib.figure.Figure`` and writes a PNG only when given a
``path`` (atomically). None selects or switches the matplotlib backend: see
:mod:`cnnkit.viz._figure` for where a figure lives.
"""

from ._figure import close, png_bytes
from .activations import activation_maps, plot_activations
from .curves import plot_history
from .layers import plot_layer_stats
from .evaluation import (confusion_matrix, per_class_accuracy, plot_confusion_matrix,
                         plot_misclassified)
from .filters import plot_filters
from .saliency import plot_saliency, saliency

__all__ = ["close", "plot_history", "plot_layer_stats", "png_bytes",
           "activation_maps", "confusion_matrix", "per_class_accuracy", "plot_activations",
           "plot_confusion_matrix", "plot_filters", "plot_misclassified", "plot_saliency",
           "saliency"]
