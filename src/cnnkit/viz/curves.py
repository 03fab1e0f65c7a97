"""Training curves: loss (per iteration and per epoch) and accuracy (per epoch)."""

from __future__ import annotations

import numpy as np

from ._figure import finish, new_figure


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Running mean over ``window`` iterations (shorter at the start), for a readable trend."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def plot_history(history: dict, path=None, title: str | None = None):
    """Loss and accuracy of a training run.

    The left panel plots the loss against the iteration: each mini-batch's loss (faint), its
    running mean, and the per-epoch train and validation losses at the iteration where each
    epoch ended; without per-iteration losses, against the epoch. The right panel plots train
    and validation accuracy against the epoch.

    Parameters
    ----------
    history : a Trainer's (``run.history``): per-epoch lists under "epoch", "train_loss",
        "train_acc", "val_loss", "val_acc" (the validation lists may be empty), and, when
        recorded, the loss of every iteration under "batch_loss"
    path : write the figure there as a PNG (atomically); None writes nothing
    title : the figure's title (by default, what it shows)

    Returns
    -------
    Figure : the ``matplotlib.figure.Figure``, shown once as a notebook cell's last
        expression (see :mod:`cnnkit.viz`)
    """
    from matplotlib.ticker import MaxNLocator

    epochs = list(history.get("epoch", []))
    batch_loss = np.asarray(history.get("batch_loss", []), dtype=float)
    fig = new_figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    per_iteration = len(batch_loss) > 0 and len(epochs) > 0
    if per_iteration:
        # where each epoch ended, in iterations (epochs may differ in length after a resume
        # with another batch size: the history says how many iterations each epoch had)
        ends = np.asarray(history.get("iterations", []), dtype=float)
        if len(ends) != len(epochs):
            ends = np.linspace(len(batch_loss) / len(epochs), len(batch_loss), len(epochs))
        steps = np.arange(1, len(batch_loss) + 1)
        ax_loss.plot(steps, batch_loss, color="tab:blue", alpha=0.25, linewidth=0.7,
                     label="train, each mini-batch")
        window = max(1, min(len(batch_loss) // 20, 200))
        if window > 1:
            ax_loss.plot(steps, _smooth(batch_loss, window), color="tab:blue", linewidth=1.5,
                         label=f"train, mean of {window} mini-batches")
        x_epoch, x_label = ends, "iteration (mini-batches)"
    else:
        x_epoch, x_label = np.asarray(epochs, dtype=float), "epoch"
    for split, style, color in (("train", "o", "tab:blue"), ("val", "s", "tab:orange")):
        values = history.get(f"{split}_loss", [])
        if values and not (per_iteration and split == "train"):
            ax_loss.plot(x_epoch[:len(values)], values, "-" + style, color=color,
                         markersize=4, label=f"{'validation' if split == 'val' else split}, "
                                             f"per epoch")
        acc = history.get(f"{split}_acc", [])
        if acc:
            ax_acc.plot(epochs[:len(acc)], acc, "-" + style, color=color, markersize=4,
                        label="validation" if split == "val" else "train (running, train mode)")
    ax_loss.set_xlabel(x_label)
    ax_loss.set_ylabel("loss (log scale)")
    ax_loss.set_title("Loss")
    if (batch_loss > 0).any() or any(v > 0 for v in history.get("train_loss", [])):
        ax_loss.set_yscale("log")
    ax_acc.set_xlabel("epoch")
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.set_ylabel("accuracy (fraction correct)")
    ax_acc.set_title("Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return finish(fig, path)
