"""Callbacks that write a training run's record to files, pictures included.

They sit above :mod:`cnnkit.viz`, which draws them and reads :mod:`cnnkit.monitor`'s records,
which in turn is a :mod:`cnnkit.callbacks` callback: a callback that only records belongs in
those lower modules, one that draws goes here, so that the training tier never imports viz.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ._atomic import atomic_write_text
from .callbacks import Callback
from .viz import close, plot_history, plot_layer_stats

__all__ = ["HistoryWriter", "LayerStatsWriter"]


class HistoryWriter(Callback):
    """After every epoch, writes the history as JSON to ``json_path``, atomically; when
    ``plot_path`` is given, draws its curves (:func:`cnnkit.viz.plot_history`) there as a PNG,
    atomically, when it pays:

    - when training ends, however it ends (finished, stopped, Ctrl-C: ``on_train_end``), if an
      epoch ended since the last drawing;
    - in between, at an epoch's end, once ``every_seconds`` have passed since the last drawing,
      and only while the drawings in between (their measured time, the next one's estimated as
      the last one's) stay within ``budget`` (a fraction) of the time since training began.

    So the drawings in between cost at most 2% of training by default, however short the epochs:
    redrawing after each of them cost half of a 10-epoch run on 450 images. The first drawing's
    cost (matplotlib's import with it) is estimated at ``first_estimate`` seconds.

    Attributes
    ----------
    drawings : how many times the curves were drawn in this ``fit``
    draw_seconds : the time they took
    """

    def __init__(self, json_path=None, plot_path=None, title: str | None = None, *,
                 every_seconds: float = 10.0, budget: float = 0.02,
                 first_estimate: float = 1.0):
        for name, value in (("every_seconds", every_seconds), ("budget", budget),
                            ("first_estimate", first_estimate)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value < float("inf"):
                raise ValueError(f"HistoryWriter {name} must be a number >= 0, got {value!r}")
        self.json_path = None if json_path is None else Path(json_path)
        self.plot_path = None if plot_path is None else Path(plot_path)
        self.title = title
        self.every_seconds, self.budget = float(every_seconds), float(budget)
        self.first_estimate = float(first_estimate)
        self.drawings, self.draw_seconds = 0, 0.0
        self._began = self._drawn_at = time.perf_counter()
        self._last_cost, self._stale = None, False

    def on_train_begin(self, logs):
        self._began = self._drawn_at = time.perf_counter()
        self.drawings, self.draw_seconds, self._stale = 0, 0.0, False

    def on_epoch_end(self, epoch, logs):
        if self.json_path is not None:
            atomic_write_text(self.json_path, json.dumps(self.trainer.history, indent=1))
        if self.plot_path is None:
            return
        self._stale = True
        now = time.perf_counter()
        estimate = self.first_estimate if self._last_cost is None else self._last_cost
        if now - self._drawn_at >= self.every_seconds \
                and self.draw_seconds + estimate <= self.budget * (now - self._began):
            self._draw()

    def on_train_end(self, logs):
        if self.plot_path is not None and self._stale:
            self._draw()

    def _draw(self) -> None:
        start = time.perf_counter()
        close(plot_history(self.trainer.history, self.plot_path, title=self.title))
        self._drawn_at = time.perf_counter()
        self._last_cost = self._drawn_at - start
        self.drawings += 1
        self.draw_seconds += self._last_cost
        self._stale = False

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
