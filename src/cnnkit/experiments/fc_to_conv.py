"""fc-to-conv: a classifier with FC layers, converted to convs, slides over a larger image in one
forward pass (the ConvNet notes' FC -> conv conversion; :mod:`cnnkit.convert`).

A small net for 28x28 MNIST digits,

    Conv(1->8, 5x5) -> ReLU -> MaxPool 2 -> Conv(8->16, 5x5) -> ReLU -> MaxPool 2      28 -> 4
    -> Flatten -> FC(256 -> 64) -> ReLU -> FC(64 -> 10)

is trained briefly, then :func:`cnnkit.convert.fully_convolutional` turns FC(256 -> 64) into a 4x4
conv and FC(64 -> 10) into a 1x1 conv. On a canvas of ``rows`` x ``cols`` test digits, 28 * rows
by 28 * cols pixels, the converted net gives in one pass a score map of

    h = (28 * rows - 28) / S + 1,   w = (28 * cols - 28) / S + 1,   S = 2 * 2 = 4 (the pools)

positions, one per 28x28 crop at a stride of S. The reference is the original net run on every
crop in a loop (:func:`cnnkit.convert.sliding_scores`). No layer pads, so the two agree up to
float rounding; the converted net shares the conv work of overlapping crops, which is its
speed-up. Crops at multiples of 28 px cover one digit exactly: their predictions are scored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .. import nn
from ..convert import fully_convolutional, output_stride, sliding_scores
from ..data import BatchOrder
from ..optim import Adam
from ..viz._figure import close, finish, new_figure
from .common import Outcome, accuracy, check_config, fmt, mnist, progress_bar, train_step

FIGURES = ("score_map.png",)
SIZE = 28


@dataclass
class Config:
    """Settings; the defaults take a few seconds."""

    steps: int = 400          # Adam steps of training
    batch_size: int = 64
    lr: float = 1e-3
    rows: int = 2             # the canvas: rows x cols test digits
    cols: int = 6
    repeats: int = 3          # timings are the best of this many runs

    @classmethod
    def full(cls) -> "Config":
        """Three epochs of training and a canvas of 4 x 10 digits."""
        return cls(steps=2800, rows=4, cols=10, repeats=5)

    def check(self) -> None:
        check_config(self, counts=("steps", "batch_size", "rows", "cols", "repeats"),
                     positives=("lr",))


def build(rng):
    """The net of the module docstring, for (N, 1, 28, 28) input."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 64, rng=rng), nn.ReLU(),
        nn.Linear(64, 10, init="xavier", rng=rng))


def _best_time(fn, repeats: int):
    """(result, best wall time in seconds) of ``repeats`` calls of ``fn``."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def run(config: Config, folder, rng, progress: bool) -> Outcome:
    config.check()
    x_train, y_train = mnist("train", flat=False)
    x_test, y_test = mnist("test", flat=False)
    model = build(rng)
    optimizer = Adam(model.named_parameters(), lr=config.lr)
    order = BatchOrder(len(x_train), config.batch_size, rng, drop_last=True)
    start = time.perf_counter()
    with progress_bar(config.steps, "training", progress) as bar:
        for _ in range(config.steps):
            idx = next(order)
            train_step(model, optimizer, x_train[idx], y_train[idx])
            bar.update()
    train_s = time.perf_counter() - start
    model.eval()
    test_acc = accuracy(model, x_test, y_test)

    # the canvas: rows x cols test digits side by side, (1, 1, 28 * rows, 28 * cols)
    pick = rng.choice(len(x_test), config.rows * config.cols, replace=False)
    digits = x_test[pick, 0].reshape(config.rows, config.cols, SIZE, SIZE)
    canvas = digits.transpose(0, 2, 1, 3).reshape(1, 1, config.rows * SIZE, config.cols * SIZE)
    labels = y_test[pick].reshape(config.rows, config.cols)

    converted = fully_convolutional(model, (1, SIZE, SIZE)).eval()
    stride = output_stride(model, (1, SIZE, SIZE))
    conv_scores, conv_s = _best_time(lambda: converted.forward(canvas), config.repeats)
    crop_scores, crop_s = _best_time(lambda: sliding_scores(model, canvas, (1, SIZE, SIZE)),
                                     config.repeats)
    diff = float(np.max(np.abs(conv_scores - crop_scores)))
    scale = float(np.max(np.abs(crop_scores)))
    predicted = conv_scores[0].argmax(axis=0)                        # (h, w)
    step = SIZE // stride[0], SIZE // stride[1]                      # map cells per digit
    aligned = predicted[::step[0], ::step[1]]                        # crops on whole digits
    numbers = {
        "test_acc": test_acc,
        "canvas_shape": list(canvas.shape),
        "score_map_shape": list(conv_scores.shape),
        "output_stride": list(stride),
        "positions": int(predicted.size),
        "max_abs_diff": diff,
        "max_abs_score": scale,
        "converted_s": conv_s,
        "crop_by_crop_s": crop_s,
        "speedup": crop_s / conv_s,
        "labels": labels,
        "aligned_predictions": aligned,
        "aligned_correct": int(np.sum(aligned == labels)),
        "predicted_map": predicted,
    }
    _plot(numbers, canvas[0, 0], conv_scores[0], config, folder / FIGURES[0])
    rows = [["", "value"],
            ["test accuracy of the trained net (28x28)", fmt(test_acc)],
            ["canvas (pixels)", f"{canvas.shape[2]} x {canvas.shape[3]}"],
            ["score map (classes x positions)", "{} x {} x {}".format(*conv_scores.shape[1:])],
            ["output stride S (pixels)", "{} x {}".format(*stride)],
            ["max |converted - crop by crop| score", fmt(diff)],
            ["largest |score|", fmt(scale)],
            ["converted, one pass (ms)", fmt(conv_s * 1e3)],
            [f"original, {predicted.size} crops one by one (ms)", fmt(crop_s * 1e3)],
            ["speed-up", f"{crop_s / conv_s:.1f}x"],
            ["crops on whole digits classified right",
             f"{numbers['aligned_correct']} of {labels.size}"]]
    targets = [(f"the converted net's score map equals the crop-by-crop scores up to float "
                f"rounding (max |diff| {fmt(diff)} < 1e-4)", diff < 1e-4),
               (f"one pass of the converted net is faster than {predicted.size} crops one by "
                f"one ({crop_s / conv_s:.1f}x)", conv_s < crop_s)]
    return Outcome(numbers, rows, targets, list(FIGURES),
                   {"train_s": train_s, "converted_s": conv_s, "crop_by_crop_s": crop_s})


def _plot(numbers: dict, canvas: np.ndarray, scores: np.ndarray, config: Config, path) -> None:
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm

    sh, sw = numbers["output_stride"]
    predicted = np.asarray(numbers["predicted_map"])
    e = np.exp(scores - scores.max(axis=0))                          # (10, h, w)
    confidence = (e / e.sum(axis=0)).max(axis=0)
    h, w = predicted.shape
    height, width = canvas.shape
    # map cell (i, j) is the crop whose centre is (i*S + 14, j*S + 14): draw it there
    extent = (SIZE / 2 - sw / 2, SIZE / 2 + (w - 1) * sw + sw / 2,
              SIZE / 2 + (h - 1) * sh + sh / 2, SIZE / 2 - sh / 2)
    fig_width = 10.0
    fig = new_figure(fig_width, 3 * (0.85 * fig_width * height / width + 1.0) + 0.4)
    axes = fig.subplots(3, 1)

    axes[0].imshow(canvas, cmap="gray")
    labels, aligned = np.asarray(numbers["labels"]), np.asarray(numbers["aligned_predictions"])
    for r in range(labels.shape[0]):
        for c in range(labels.shape[1]):
            ok = aligned[r, c] == labels[r, c]
            axes[0].text(c * SIZE + 2, r * SIZE + 2, str(aligned[r, c]), va="top", ha="left",
                         color="lime" if ok else "red", fontsize=11, fontweight="bold")
    axes[0].set_title(f"Canvas of {labels.size} test digits; the converted net's prediction for "
                      f"the crop on each digit (green right, red wrong)", fontsize=10)

    cmap = colormaps["tab10"]
    im = axes[1].imshow(predicted, cmap=cmap, norm=BoundaryNorm(np.arange(-0.5, 10.5), 10),
                        extent=extent, interpolation="nearest")
    bar = fig.colorbar(im, ax=axes[1], ticks=range(10), label="predicted class")
    bar.ax.tick_params(labelsize=8)
    from matplotlib.patches import Rectangle

    for i in range(h):
        for j in range(w):
            cy, cx = SIZE / 2 + i * sh, SIZE / 2 + j * sw
            if h * w <= 400:
                axes[1].text(cx, cy, str(predicted[i, j]), ha="center", va="center",
                             fontsize=6, color="white")
            if (i * sh) % SIZE == 0 and (j * sw) % SIZE == 0:      # a crop on a whole digit
                axes[1].add_patch(Rectangle((cx - sw / 2, cy - sh / 2), sw, sh, fill=False,
                                            edgecolor="black", linewidth=1.5))
    axes[1].set_title(f"Predicted class of the 28x28 crop centred at each position (stride "
                      f"{sh} px), {h} x {w} positions in one pass\nblack boxes: the crops that "
                      f"cover one whole digit", fontsize=10)

    im = axes[2].imshow(confidence, cmap="viridis", vmin=0, vmax=1, extent=extent,
                        interpolation="nearest")
    fig.colorbar(im, ax=axes[2], label="top softmax probability")
    axes[2].set_title(f"Confidence; max |converted - crop by crop| = "
                      f"{fmt(numbers['max_abs_diff'])}, {numbers['speedup']:.1f}x faster",
                      fontsize=10)
    for ax in axes:
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        ax.set_xlabel("x (pixels)")
        ax.set_ylabel("y (pixels)")
    fig.suptitle("FC -> conv: the digit classifier slid over a larger image")
    finish(fig, path)
    close(fig)
