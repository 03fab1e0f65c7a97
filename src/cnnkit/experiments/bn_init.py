"""bn-init: batch norm makes a deep net far less sensitive to the weight-init scale (CS231n
assignment 2, "Batch normalization and initialization"; the course notes on batch norm).

For each weight scale s in a log-spaced sweep, two ReLU nets of ``depth`` hidden layers of
``width`` units, every weight drawn as ``s * randn`` (init "gaussian"), one with BatchNorm1d
between each Linear and its ReLU, are trained with Adam on the first ``train_size`` MNIST training
images and validated on the next ``val_size``. Recorded per scale and net: final and best train
and validation accuracy (train accuracy on the training subset, eval mode) and the mean training
loss of the last epoch. Without BN the activations shrink (small s) or blow up (large s) layer by
layer and only a narrow band of scales trains; with BN every layer's input is renormalised.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .. import nn
from ..data import BatchOrder
from ..optim import Adam
from ..viz._figure import close, finish, new_figure
from .common import Outcome, accuracy, check_config, fmt, mnist, progress_bar, train_step

FIGURES = ("accuracy_vs_weight_scale.png",)
LABELS = {"plain": "without BN", "bn": "with BN"}


@dataclass
class Config:
    """Settings; the defaults take about a minute on 2 cores."""

    depth: int = 7            # hidden layers (CS231n: [50] * 7)
    width: int = 50
    scales: int = 12          # weight scales, log-spaced over [min_scale, max_scale]
    min_scale: float = 1e-4
    max_scale: float = 1.0
    train_size: int = 1000    # CS231n: 1000 training examples
    val_size: int = 1000
    epochs: int = 10
    batch_size: int = 50
    lr: float = 1e-3          # Adam

    @classmethod
    def full(cls) -> "Config":
        """The course's 20 weight scales."""
        return cls(scales=20)

    def check(self) -> None:
        check_config(self, counts=("depth", "width", "scales", "train_size", "val_size",
                                   "epochs", "batch_size"),
                     positives=("min_scale", "max_scale", "lr"))
        if self.min_scale > self.max_scale:
            raise ValueError(f"min_scale {self.min_scale:g} exceeds max_scale "
                             f"{self.max_scale:g}")
        if self.batch_size > self.train_size:
            raise ValueError(f"batch_size {self.batch_size} exceeds train_size "
                             f"{self.train_size}")
        if self.train_size + self.val_size > 60000:
            raise ValueError(f"train_size + val_size = "
                             f"{self.train_size + self.val_size} exceeds MNIST's 60,000 "
                             f"training images")

    def weight_scales(self) -> np.ndarray:
        return np.geomspace(self.min_scale, self.max_scale, self.scales)


def build(with_bn: bool, scale: float, config: Config, rng):
    """[Linear -> (BatchNorm1d) -> ReLU] * depth -> Linear(width, 10), weights scale * randn."""
    layers, d = [], 784
    for _ in range(config.depth):
        layers.append(nn.Linear(d, config.width, init="gaussian", weight_scale=scale, rng=rng))
        if with_bn:
            layers.append(nn.BatchNorm1d(config.width))
        layers.append(nn.ReLU())
        d = config.width
    return nn.Sequential(*layers, nn.Linear(d, 10, init="gaussian", weight_scale=scale, rng=rng))


def _train(model, config: Config, data, rng, bar) -> dict:
    """Train ``model``; per-epoch accuracies and the last epoch's mean loss (NaN once diverged)."""
    x_train, y_train, x_val, y_val = data
    optimizer = Adam(model.named_parameters(), lr=config.lr)
    order = BatchOrder(len(x_train), config.batch_size, rng, drop_last=True)
    per_epoch = len(order)                  # whole batches; the last N % B are skipped
    train_acc, val_acc, loss = [], [], math.nan
    with np.errstate(all="ignore"):         # a huge init overflows; the loss then says so
        for _ in range(config.epochs):
            losses = []
            for _ in range(per_epoch):
                idx = next(order)
                losses.append(train_step(model, optimizer, x_train[idx], y_train[idx]))
            bar.update()
            loss = float(np.mean(losses))
            train_acc.append(accuracy(model, x_train, y_train))
            val_acc.append(accuracy(model, x_val, y_val))
    return {"train_acc": train_acc[-1], "val_acc": val_acc[-1], "best_train_acc": max(train_acc),
            "best_val_acc": max(val_acc), "final_loss": loss}


def run(config: Config, folder, rng, progress: bool) -> Outcome:
    config.check()
    x, y = mnist("train", config.train_size + config.val_size)
    data = (x[:config.train_size], y[:config.train_size], x[config.train_size:],
            y[config.train_size:])
    scales = config.weight_scales()
    nets = {key: {"train_acc": [], "val_acc": [], "best_train_acc": [], "best_val_acc": [],
                  "final_loss": []} for key in LABELS}
    start = time.perf_counter()
    with progress_bar(len(scales) * len(LABELS) * config.epochs, "weight scales",
                      progress) as bar:
        for scale in scales:
            seed = rng.integers(2**63)      # both nets of one scale start from the same draws
            for key in LABELS:
                net_rng = np.random.default_rng(seed)
                model = build(key == "bn", float(scale), config, net_rng)
                for name, value in _train(model, config, data, net_rng, bar).items():
                    nets[key][name].append(value)
    timings = {"train_s": time.perf_counter() - start}
    numbers = {"weight_scales": scales.tolist(), "nets": nets, "chance": 0.1}
    _plot(numbers, config, folder / FIGURES[0])
    return Outcome(numbers, _rows(numbers), _targets(numbers), list(FIGURES), timings)


def _good_range(scales, accs, level: float):
    """(lowest, highest) weight scale whose accuracy is >= level, and how many; None if none."""
    ok = [s for s, a in zip(scales, accs) if a >= level]
    return (min(ok), max(ok), len(ok)) if ok else None


def _rows(numbers: dict) -> list:
    scales = numbers["weight_scales"]
    rows = [["weight scale", "val acc, no BN", "val acc, BN", "train acc, no BN",
             "train acc, BN", "loss, no BN", "loss, BN"]]
    plain, bn = numbers["nets"]["plain"], numbers["nets"]["bn"]
    for k, s in enumerate(scales):
        rows.append([f"{s:.2e}", fmt(plain["val_acc"][k]), fmt(bn["val_acc"][k]),
                     fmt(plain["train_acc"][k]), fmt(bn["train_acc"][k]),
                     fmt(plain["final_loss"][k]), fmt(bn["final_loss"][k])])
    return rows


def _targets(numbers: dict) -> list:
    scales = numbers["weight_scales"]
    plain, bn = numbers["nets"]["plain"], numbers["nets"]["bn"]
    level = 0.5 * max(max(plain["val_acc"]), max(bn["val_acc"]))
    counts = {k: sum(a >= level for a in numbers["nets"][k]["val_acc"]) for k in LABELS}
    return [(f"with BN more weight scales train (validation accuracy >= {fmt(level)}, half the "
             f"best): {counts['bn']} of {len(scales)} with BN, {counts['plain']} without",
             counts["bn"] > counts["plain"])]


def _plot(numbers: dict, config: Config, path) -> None:
    fig = new_figure(13, 4.3)
    axes = fig.subplots(1, 3)
    scales = np.asarray(numbers["weight_scales"])
    style = {"plain": ("tab:red", "o"), "bn": ("tab:blue", "s")}
    for ax, key, what in ((axes[0], "val_acc", "final validation accuracy (%)"),
                          (axes[1], "train_acc", "final training accuracy (%)")):
        for net, label in LABELS.items():
            color, marker = style[net]
            ax.semilogx(scales, np.asarray(numbers["nets"][net][key], float) * 100,
                        "-" + marker, color=color, label=label)
        ax.axhline(10, color="grey", linestyle="--", linewidth=0.8, label="chance (10%)")
        ax.set_ylim(0, 100)
        ax.set_ylabel(what)
    for net, label in LABELS.items():
        color, marker = style[net]
        loss = np.asarray(numbers["nets"][net]["final_loss"], float)   # NaN (diverged) not drawn
        axes[2].loglog(scales, loss, "-" + marker, color=color, label=label)
    axes[2].set_ylabel("training loss, mean of the last epoch")
    axes[0].set_title(f"Validation ({config.val_size:,} images)")
    axes[1].set_title(f"Training ({config.train_size:,} images)")
    axes[2].set_title("Final training loss")
    for ax in axes:
        ax.set_xlabel("weight init scale (std of every weight)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Batch norm and initialisation: {config.depth} hidden layers of {config.width} "
                 f"ReLU units on MNIST, Adam lr {config.lr:g}, {config.epochs} epochs")
    finish(fig, path)
    close(fig)
