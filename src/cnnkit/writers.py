"""Callbacks that write a training run's record to files, pictures included.

They sit above :mod:`cnnkit.viz`, which draws them and reads :mod:`cnnkit.monitor`'s records,
which in turn is a :mod:`cnnkit.callbacks` callback: a callback that only records belongs in
those lower modules, one that draws goes here, so that the training tier never imports viz.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._atomic import atomic_write_text
from .callbacks import Callback
from .viz import close, plot_history, plot_layer_stats

__all__ = ["HistoryWriter", "LayerStatsWriter"]


class HistoryWriter(Callback):
    """After every epoch, writes the history as JSON to ``json_path`` and, when ``plot_path``
    is given, its curves (:func:`cnnkit.viz.plot_history`) as a PNG; both atomically."""

    def __init__(self, json_path=None, plot_path=None, title: str | None = None):
        self.json_path = None if json_path is None else Path(json_path)
        self.plot_path = None if plot_path is None else Path(plot_path)
        self.title = title

    def on_epoch_end(self, epoch, logs):
        if self.json_path is not None:
            atomic_write_text(self.json_path, json.dumps(self.trainer.history, indent=1))
        if self.plot_path is not None:
            close(plot_history(self.trainer.history, self.plot_path, title=self.title))

    def __repr__(self):
        return f"HistoryWriter({str(self.json_path)!r}, {str(self.plot_path)!r})"


class LayerStatsWriter(Callback):
    """Saves a :class:`cnnkit.monitor.LayerStats` (registered beside it) to ``json_path`` after
    every epoch, and draws it (:func:`cnnkit.viz.plot_layer_stats`) to ``plot_path`` when
    training ends, finished or interrupted: the figure takes about a second, too long to redraw
    every epoch. ``on_train_end`` runs however ``fit`` ends, Ctrl-C included."""

    def __init__(self, stats, json_path, plot_path, title: str | None = None):
        self.stats, self.title = stats, title
        self.json_path, self.plot_path = Path(json_path), Path(plot_path)

    def on_epoch_end(self, epoch, logs):
        self.stats.save(self.json_path)

    def on_train_end(self, logs):
        self.stats.save(self.json_path)
        if self.stats.iterations:
            close(plot_layer_stats(self.stats, self.plot_path,
                                   title=f"Per-layer statistics: {self.title}"))

    def __repr__(self):
        return f"LayerStatsWriter({str(self.json_path)!r}, {str(self.plot_path)!r})"
