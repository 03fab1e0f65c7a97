"""lr-find: does the range test's suggestion train as well as the best of a grid of rates?

On two data sources, the shipped MNIST (its first ``mnist_limit`` training and test images) and
a folder of PNG files (scikit-learn's 1,797 scanned 8x8 digits, a fifth of each class held out
as the test folder, written to a temporary folder and read through ``folder:DIR`` as a user's
photos are), with the data's default optimizer (Adam), batch size, augmentation and seed:

1. the range test (:func:`cnnkit.lr_find.lr_find`, ``iterations`` steps from 1e-7 to 10) gives
   the suggestion of each rule of :data:`cnnkit.lr_find.RULES`;
2. ``grid`` log-spaced rates from ``lo`` to ``hi`` (1e-4 .. 1e-1) each train for ``epochs``
   (cosine schedule, the defaults of ``cnnkit train``), from the same initial weights;
3. each rule's suggestion trains the same way.

Every run is ``cnnkit.fit`` with the same settings but ``lr``, so the test accuracies differ by
the rate alone. The figure plots test accuracy against the rate, the grid as a line and each
suggestion marked; the range tests' own curves are saved beside it.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..app.training import fit
from ..data import open_source
from ..lr_find import DEFAULT_RULE, RULES, lr_find
from ..viz._figure import close, finish, new_figure
from .common import Outcome, check_config, fmt

FIGURES = ("accuracy_vs_lr.png", "range_test_mnist.png", "range_test_folder.png")
DIGIT_NET = "[CONV3-32 -> BN -> RELU]*2 -> POOL2 -> CONV3-64 -> BN -> RELU -> POOL2 -> FC-10"
MARKERS = {"steepest": ("*", "tab:red"), "minimum": ("D", "tab:green")}


@dataclass
class Config:
    """Settings; the defaults take about 5 minutes on 2 cores."""

    mnist_limit: int = 10000      # MNIST training (and test) images
    mnist_epochs: int = 3
    folder_epochs: int = 10       # the 1,437 training digits of the folder
    iterations: int = 200         # steps of each range test
    grid: int = 5                 # rates of the grid, log-spaced from lo to hi
    lo: float = 1e-4
    hi: float = 1e-1

    @classmethod
    def full(cls) -> "Config":
        return cls(mnist_limit=60000, mnist_epochs=5, folder_epochs=20, grid=7)

    def check(self) -> None:
        check_config(self, counts=("mnist_limit", "mnist_epochs", "folder_epochs", "grid",
                                   "iterations"), positives=("lo", "hi"))
        if not 2 <= self.iterations <= 100_000:
            raise ValueError(f"iterations must be from 2 to 100,000, got {self.iterations!r}")
        if not self.lo < self.hi:
            raise ValueError(f"lo must be below hi, got {self.lo} and {self.hi}")


@contextlib.contextmanager
def _digit_folder():
    """The :class:`cnnkit.data.Dataset` of ``folder:DIR``, scikit-learn's digits written as PNG
    files (DIR/train/<digit>/*.png and DIR/test/...) and decoded as any folder is, with the cache
    of their decoded arrays beside them in a temporary folder removed at the end."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError("the folder half of lr-find writes scikit-learn's bundled digits as "
                         "PNG files: pip install scikit-learn") from None
    from PIL import Image

    digits = load_digits()
    pixels = np.round(digits.images * 255 / 16).astype(np.uint8)          # (1797, 8, 8)
    rng = np.random.default_rng(0)       # the held-out fifth, fixed as the tutorial's is
    is_test = np.zeros(len(pixels), bool)
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(digits.target == digit))
        is_test[members[:len(members) // 5]] = True
    with tempfile.TemporaryDirectory(prefix="cnnkit-lr-find-") as tmp:
        root = Path(tmp) / "digits"
        for i, (image, label) in enumerate(zip(pixels, digits.target)):
            path = root / ("test" if is_test[i] else "train") / str(label) / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
        # decoded once, cached beside the PNGs (removed with them), then trained on as a
        # Dataset: nothing is left in the user's cache for a folder that no longer exists
        yield open_source(f"folder:{root}", cache_dir=Path(tmp) / "cache")


def _measure(data, model, settings, config, rates, progress) -> dict:
    """The range test, then a test accuracy per rate of the grid and per suggestion."""
    t0 = time.perf_counter()
    found = lr_find(data, model, iterations=config.iterations, progress=progress, **settings)
    t1 = time.perf_counter()

    def accuracy(lr):
        return fit(data, model, lr=float(lr), progress=False, log=None, **settings).test_accuracy

    grid = [accuracy(lr) for lr in rates]
    suggested = {rule: (None if lr is None else {"lr": lr, "test_accuracy": accuracy(lr)})
                 for rule, lr in found.suggestions.items()}
    return {"range_test": found, "grid": grid, "suggested": suggested,
            "range_test_s": t1 - t0, "training_s": time.perf_counter() - t1}


def _panel(ax, title, rates, part) -> None:
    ax.plot(rates, part["grid"], "-o", color="tab:blue", label="grid of rates")
    for rule, got in part["suggested"].items():
        if got is None:
            continue
        marker, color = MARKERS[rule]
        ax.plot([got["lr"]], [got["test_accuracy"]], marker, color=color, markersize=11,
                linestyle="none", label=f"suggestion, {rule}: {got['lr']:.2g}")
        ax.axvline(got["lr"], color=color, linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")


def run(config: Config, folder: Path, rng: np.random.Generator, progress: bool) -> Outcome:
    seed = int(rng.integers(2 ** 31))
    rates = np.logspace(np.log10(config.lo), np.log10(config.hi), config.grid)
    parts = {}
    parts["mnist"] = _measure("mnist", None, {"limit": config.mnist_limit, "seed": seed,
                                              "epochs": config.mnist_epochs},
                              config, rates, progress)
    with _digit_folder() as digits:
        parts["folder"] = _measure(digits, DIGIT_NET, {"seed": seed,
                                                       "epochs": config.folder_epochs},
                                   config, rates, progress)
    data = {"mnist": f"MNIST, {config.mnist_limit:,} images", "folder": "folder of 8x8 digit PNGs"}
    titles = {"mnist": f"{data['mnist']}, {config.mnist_epochs} epochs",
              "folder": f"{data['folder']}, {config.folder_epochs} epochs"}

    fig = new_figure(11, 4.2)
    for ax, (name, part) in zip(fig.subplots(1, 2), parts.items()):
        _panel(ax, titles[name], rates, part)
    fig.suptitle("Test accuracy against the learning rate: a grid, and the range test's "
                 "suggestions (Adam, cosine schedule)")
    close(finish(fig, folder / FIGURES[0]))
    for name, path in zip(parts, FIGURES[1:]):
        close(parts[name]["range_test"].plot(folder / path, title=f"Range test, {data[name]}"))

    numbers, rows, targets, timings = {"rates": rates, "seed": seed}, [], [], {}
    rows.append(["data", *(f"lr {fmt(r, 2)}" for r in rates), *(f"{rule}" for rule in RULES)])
    for name, part in parts.items():
        found = part["range_test"]
        numbers[name] = {"grid_test_accuracy": part["grid"], "suggested": part["suggested"],
                         "range_test": {k: v for k, v in found.to_dict().items()
                                        if k not in ("settings",)}}
        rows.append([name, *(fmt(a) for a in part["grid"]),
                     *(f"{fmt(s['test_accuracy'])} @{fmt(s['lr'], 2)}" if s else "n/a"
                       for s in part["suggested"].values())])
        best = max(part["grid"])
        got = part["suggested"][DEFAULT_RULE]
        targets.append((f"{name}: the {DEFAULT_RULE} suggestion's test accuracy is within 0.02 of "
                        f"the grid's best ({fmt(best)})",
                        got is not None and got["test_accuracy"] >= best - 0.02))
        timings[f"{name}_range_test_s"] = part["range_test_s"]
        timings[f"{name}_training_s"] = part["training_s"]
    return Outcome(numbers=numbers, rows=rows, targets=targets, figures=list(FIGURES),
                   timings=timings)
