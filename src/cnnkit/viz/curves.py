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


#: The most runs :func:`plot_runs` draws in one figure: beyond 20 the colours repeat.
MOST_RUNS = 20


def plot_runs(runs, path=None, *, names=None, x: str = "epoch", title: str | None = None):
    """Training curves of several runs overlaid, one colour per run.

    The left panel plots each run's training loss per iteration, as the running mean of its
    mini-batch losses (the window :func:`plot_history` uses, a 20th of the run, at most 200),
    solid, and its validation loss per epoch, dashed with markers; the right panel plots each
    run's validation accuracy per epoch, solid with markers, and its training accuracy (running,
    in train mode), dashed. The legend names the runs.

    Runs differ in length and in iterations per epoch (another batch size or data size), so by
    default both panels are drawn against the epoch: iteration i of a run is placed at its
    fraction of the epoch it fell in (the history's ``iterations`` say where each epoch
    ended). ``x="iteration"`` draws the loss against the iteration instead. A run with no
    finished epoch has no place on an epoch axis: it is named in the legend, "no epoch yet".

    Parameters
    ----------
    runs : a dict {name: run} or a sequence of runs, 1 to :data:`MOST_RUNS`, each a history
        (a Trainer's, ``run.history``) or an object with a ``history`` attribute (a
        :class:`cnnkit.Run`); a history may be None or empty (a run with no epoch yet)
    path : write the figure there as a PNG (atomically); None writes nothing
    names : the legend's names for a sequence (default "run 1", "run 2", ...)
    x : "epoch" (both panels against the epoch) or "iteration" (the loss against the
        iteration)
    title : the figure's title (default: "Training curves of N runs")

    Returns
    -------
    Figure : the ``matplotlib.figure.Figure``, shown once as a notebook cell's last
        expression (see :mod:`cnnkit.viz`)

    Raises
    ------
    ValueError
        For no runs, more than :data:`MOST_RUNS`, names that do not match the runs, or an
        ``x`` other than "epoch" or "iteration".
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    histories = _named_histories(runs, names)
    if x not in ("epoch", "iteration"):
        raise ValueError(f"plot_runs: x must be 'epoch' or 'iteration', got {x!r}")
    fig = new_figure(12, 4.6)
    ax_loss, ax_acc = fig.subplots(1, 2)
    colors = _run_colors(len(histories))
    handles, positive = [], False
    for (name, history), color in zip(histories.items(), colors):
        epochs = np.asarray(history.get("epoch", []), dtype=float)
        batch_loss = np.asarray(history.get("batch_loss", []), dtype=float)
        ends = np.asarray(history.get("iterations", []), dtype=float)
        if len(ends) != len(epochs) and len(epochs):
            ends = np.linspace(len(batch_loss) / len(epochs), len(batch_loss), len(epochs))
        if len(batch_loss) and (len(epochs) or x == "iteration"):
            window = max(1, min(len(batch_loss) // 20, 200))
            steps = np.arange(1, len(batch_loss) + 1, dtype=float)
            where = steps if x == "iteration" else _epoch_of(steps, ends, epochs)
            ax_loss.plot(where, _smooth(batch_loss, window), color=color, linewidth=1.4)
            positive = positive or bool((batch_loss > 0).any())
        val_loss = history.get("val_loss") or []
        if val_loss:
            at = (ends if x == "iteration" else epochs)[:len(val_loss)]
            ax_loss.plot(at, val_loss[:len(at)], "--o", color=color, markersize=3,
                         linewidth=1.0)
        for split, style in (("val", "-o"), ("train", "--")):
            acc = history.get(f"{split}_acc") or []
            if acc:
                ax_acc.plot(epochs[:len(acc)], acc[:len(epochs)], style, color=color,
                            markersize=3, linewidth=1.4 if split == "val" else 1.0)
        label = name if len(epochs) else f"{name} (no epoch yet)"
        handles.append(Line2D([], [], color=color, linewidth=2, label=label))
    ax_loss.set_xlabel("iteration (mini-batches)" if x == "iteration" else "epoch")
    ax_loss.set_ylabel("loss (log scale)" if positive else "loss")
    ax_loss.set_title("Loss: train (running mean), validation (dashed)")
    if positive:
        ax_loss.set_yscale("log")
    ax_acc.set_xlabel("epoch")
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.set_ylabel("accuracy (fraction correct)")
    ax_acc.set_title("Accuracy: validation (solid), train (dashed)")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
    columns = 1 if len(handles) <= 10 else 2
    # beside the accuracy panel, outside it: 20 names would hide the curves
    ax_acc.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
                  ncol=columns, title="run", borderaxespad=0.0)
    fig.suptitle(title or f"Training curves of {len(histories)} run"
                 f"{'s' if len(histories) != 1 else ''}")
    return finish(fig, path)


def _named_histories(runs, names) -> dict:
    """{legend name: history dict} from what :func:`plot_runs` takes."""
    if isinstance(runs, dict):
        if names is not None:
            raise ValueError("plot_runs: give names= with a sequence of runs; a dict's keys "
                             "are the names")
        items = [(str(k), v) for k, v in runs.items()]
    else:
        runs = list(runs)
        if names is None:
            names = [f"run {i}" for i in range(1, len(runs) + 1)]
        names = [str(n) for n in names]
        if len(names) != len(runs):
            raise ValueError(f"plot_runs: {len(names)} names for {len(runs)} runs")
        items = list(zip(names, runs))
    if not items:
        raise ValueError("plot_runs: no runs to draw")
    if len(items) > MOST_RUNS:
        raise ValueError(f"plot_runs draws at most {MOST_RUNS} runs in one figure (their "
                         f"colours would repeat), got {len(items)}")
    if len({name for name, _ in items}) != len(items):
        raise ValueError("plot_runs: two runs have the same name; give each its own")
    histories = {}
    for name, run in items:
        history = getattr(run, "history", run)
        if history is not None and not isinstance(history, dict):
            raise ValueError(f"plot_runs: run {name!r} is a {type(run).__name__}, not a "
                             f"history (a dict) or a run with one")
        histories[name] = history or {}
    return histories


def _run_colors(n: int) -> list:
    """``n`` distinct colours: tab10's, then tab20's lighter tones (up to 20)."""
    from matplotlib import colormaps

    tab20 = colormaps["tab20"].colors
    return (list(tab20[0::2]) + list(tab20[1::2]))[:n]


def _epoch_of(steps: np.ndarray, ends: np.ndarray, epochs: np.ndarray) -> np.ndarray:
    """Where iterations ``steps`` (1, 2, ...) lie on the epoch axis: iteration i of the epoch
    that ended at iteration ``ends[k]`` (epoch number ``epochs[k]``) is at ``epochs[k] - 1 +``
    its fraction of that epoch. Iterations past the last recorded end (an epoch under way) run
    on at the last epoch's pace."""
    starts = np.concatenate(([0.0], ends[:-1]))
    lengths = np.maximum(ends - starts, 1.0)
    k = np.minimum(np.searchsorted(ends, steps, side="left"), len(ends) - 1)
    return epochs[k] - 1 + (steps - starts[k]) / lengths[k]
