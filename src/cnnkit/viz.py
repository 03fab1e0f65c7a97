"""Plots: training curves (loss and accuracy per epoch) written to PNG with matplotlib's Agg."""

from __future__ import annotations

import io
from pathlib import Path

from ._atomic import atomic_write_bytes


def plot_history(history: dict, path, title: str | None = None) -> Path:
    """Two panels, loss and accuracy against epoch, train and validation; saved atomically.

    ``history`` is the Trainer's: lists under "epoch", "train_loss", "train_acc", "val_loss",
    "val_acc" (the validation lists may be empty).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = history.get("epoch", [])
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = history.get(f"{split}_{key}", [])
            if values:
                ax.plot(epochs[:len(values)], values, style, label=split, markersize=4)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax_loss.set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))
