"""What every experiment shares: its settings, MNIST as arrays, training steps, the progress bar,
the results folder's JSON and the printed table.

An experiment module holds a ``Config`` dataclass (defaults: a few minutes on 2 cores;
``Config.full()``: the published scale) and ``run(config, folder, rng, progress) -> Outcome``,
which writes its PNGs into ``folder`` and returns its numbers;
:func:`cnnkit.experiments.run_experiment` claims the folder, writes ``results.json`` and prints
the table.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from .._json import jsonable
from .._progress import Bar
from ..data import open_source
from ..functional import softmax_loss
from ..train import predict

__all__ = ["Outcome", "check_config", "mnist", "train_step", "accuracy", "progress_bar",
           "jsonable", "format_table", "fmt"]


@dataclass
class Outcome:
    """What an experiment's ``run`` returns.

    numbers : the results, JSON-able (NumPy values and non-finite floats are converted on write)
    rows : the printed table, a header row then rows of strings
    targets : ``[(what the notes expect, met?)]``, printed after the table and saved
    figures : the PNG file names written into the folder
    timings : seconds per part, e.g. {"train_s": 12.3}
    """

    numbers: dict
    rows: list
    targets: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)


def check_config(config, *, counts=(), positives=(), fractions=()) -> None:
    """Raise ValueError (one line, naming the setting) unless each field in ``counts`` is an
    int >= 1, each in ``positives`` a finite number > 0 and each in ``fractions`` in [0, 1).
    (:func:`cnnkit.experiments.run_experiment` puts the experiment's name in front.)"""
    for name in counts:
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    for name in positives:
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v < math.inf:
            raise ValueError(f"{name} must be a number > 0, got {v!r}")
    for name in fractions:
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v < 1:
            raise ValueError(f"{name} must be in [0, 1), got {v!r}")


@functools.lru_cache(maxsize=1)
def _mnist():
    return open_source("mnist")


def mnist(split: str, n: int | None = None, *, flat: bool = True):
    """The first ``n`` images of MNIST's ``split`` ("train" or "test") and their labels.

        x = (pixel / 255 - mean) / std      (the training set's mean and std)

    Returns ``x`` float32, (n, 784) when ``flat`` else (n, 1, 28, 28), and ``y`` int64 (n,).
    """
    data = _mnist()
    part = data.split(split).head(n)
    (mean,), (std,) = data.channel_stats()
    x = (np.asarray(part.images[:], dtype=np.float32) / 255 - np.float32(mean)) / np.float32(std)
    return (x.reshape(len(x), -1) if flat else x), np.asarray(part.labels)


def train_step(model, optimizer, x, y) -> float:
    """One SGD step on the softmax loss of (x, y); returns the loss."""
    optimizer.zero_grad()
    loss, dscores = softmax_loss(model.forward(x), y)
    model.backward(dscores, input_grad=False)
    optimizer.step()
    return float(loss)


def accuracy(model, x, y, batch_size: int = 2000) -> float:
    """Fraction of (x, y) classified right, in eval mode."""
    return float(np.mean(predict(model, x, batch_size).argmax(axis=1) == y))


def progress_bar(total: int, desc: str, enabled: bool):
    """A bar over ``total`` steps (``with progress_bar(...) as bar: bar.update()``); silent
    when not ``enabled`` or tqdm is missing."""
    return Bar(total, desc, enabled=enabled)


def to_json(value) -> str:
    return json.dumps(jsonable(value), indent=1, allow_nan=False) + "\n"


def fmt(value, digits: int = 3) -> str:
    """A number for the table: ``digits`` significant figures, scientific when tiny or huge."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    value = float(value)
    if value != 0 and not 1e-3 <= abs(value) < 1e5:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def format_table(rows) -> list[str]:
    """Lines of ``rows`` (the first is the header) in aligned columns: the first left-aligned,
    the others right-aligned."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(row[k]) for row in rows if k < len(row)) for k in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  " + "  ".join(cells).rstrip())
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines
