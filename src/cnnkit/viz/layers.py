"""Per-layer statistics over training (a :class:`cnnkit.monitor.LayerStats`'s records)."""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..monitor import LayerStats
from ._figure import finish, name_text, new_figure, set_tick_labels

RULE_OF_THUMB = 1e-3     # the course's update/weight ratio


MOST_NAMED = 14          # more lines than this: a colour bar of layer depth, not a legend


def _colour_map():
    """viridis without its palest yellow, which vanishes on white."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    return ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.9, 256)))


def _colours(count: int):
    cmap = _colour_map()
    return [cmap(i / max(count - 1, 1)) for i in range(count)]


def _key(fig, ax, names: list[str]) -> None:
    """Which line is which layer: a legend beside the axes (inside it would hide the lines),
    or, for a deep net, a colour bar from the first layer to the last."""
    if not names:
        return
    if len(names) <= MOST_NAMED:
        ax.legend(fontsize=7, title="layer (input to output)", title_fontsize=7,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(Normalize(0, len(names) - 1), _colour_map()), ax=ax,
                       pad=0.02)
    bar.set_label(f"line's layer: 0 = '{name_text(names[0])}' to {len(names) - 1} = "
                  f"'{name_text(names[-1])}'",
                  fontsize=7)
    bar.ax.tick_params(labelsize=7)


def _layer_label(stats, name: str, between: str) -> str:
    """A watched layer's name and type, as figures write names, ``between`` them."""
    return f"{name_text(name)}{between}{name_text(stats.layers[name]['type'])}"


def plot_layer_stats(stats, path=None, title: str | None = None):
    """Four panels on how each layer behaves over training.

    - Activations by layer: the 15th-85th percentile range of each watched layer's output, its
      median and its standard deviation, at the first and the last recorded iteration.
    - Activation standard deviation of each layer against the iteration.
    - ``||dL/dW||`` of each weight (biases and batch norm's beta left out) against the iteration,
      log scale: vanishing gradients show as the first layers' lines far below the last's.
    - ``||delta W|| / ||W||`` of each weight against the iteration, log scale, with the course's
      1e-3 rule of thumb drawn.

    Parameters
    ----------
    stats : a :class:`cnnkit.monitor.LayerStats` that has recorded training (or its
        ``to_dict()``)
    path : write the figure there as a PNG (atomically); None writes nothing
    title : the figure's title (by default, what it shows)

    Returns
    -------
    Figure : the ``matplotlib.figure.Figure``, shown once as a notebook cell's last
        expression (see :mod:`cnnkit.viz`)

    Raises
    ------
    UsageError
        If ``stats`` holds no records yet.
    """
    if isinstance(stats, dict):
        stats = LayerStats.from_dict(stats)
    if not stats.iterations:
        raise UsageError("LayerStats has no records yet: train with it first")
    iterations = np.asarray(stats.iterations)
    layers = list(stats.layers)
    weights = [n for n, rec in stats.params.items()
               if n.endswith("weight") and np.isfinite(rec["grad_norm"]).any()]

    fig = new_figure(14, 8)
    (ax_by, ax_std), (ax_grad, ax_ratio) = fig.subplots(2, 2)

    positions = np.arange(len(layers))
    for k, (label, colour, shift) in enumerate(((f"iteration {iterations[0]}", "tab:gray", -0.15),
                                                (f"iteration {iterations[-1]}", "tab:red", 0.15))):
        if k == 1 and len(iterations) == 1:
            break
        at = 0 if k == 0 else -1
        p15 = np.array([stats.layers[n]["act_p15"][at] for n in layers], dtype=float)
        p50 = np.array([stats.layers[n]["act_p50"][at] for n in layers], dtype=float)
        p85 = np.array([stats.layers[n]["act_p85"][at] for n in layers], dtype=float)
        std = np.array([stats.layers[n]["act_std"][at] for n in layers], dtype=float)
        ax_by.errorbar(positions + shift, p50, yerr=np.clip([p50 - p15, p85 - p50], 0, None),
                       fmt="o", color=colour, capsize=3, markersize=4,
                       label=f"{label}: median, 15th-85th percentile")
        ax_by.plot(positions + shift, std, "x", color=colour, label=f"{label}: std")
    if len(layers) <= MOST_NAMED:
        set_tick_labels(ax_by.xaxis, positions,
                        [_layer_label(stats, n, "\n") for n in layers], fontsize=7,
                        rotation=0 if len(layers) <= 8 else 90)
        ax_by.set_xlabel("layer")
    else:       # a deep net: every k-th layer named by its index in the watched list
        step = -(-len(layers) // MOST_NAMED)
        ax_by.set_xticks(positions[::step])
        ax_by.set_xlabel(f"watched layer: 0 = '{name_text(layers[0])}' to {len(layers) - 1} = "
                         f"'{name_text(layers[-1])}'")
    ax_by.set_ylabel("activation value")
    ax_by.set_title("Activations by layer")
    ax_by.legend(fontsize=7)

    for name, colour in zip(layers, _colours(len(layers))):
        ax_std.plot(iterations, stats.layers[name]["act_std"], "-", color=colour,
                    label=_layer_label(stats, name, " "), marker="." if
                    len(iterations) < 30 else None)
    ax_std.set_xlabel("iteration (mini-batches)")
    ax_std.set_ylabel("standard deviation of the output")
    ax_std.set_title("Activation spread over training")
    _key(fig, ax_std, layers)

    for name, colour in zip(weights, _colours(len(weights))):
        record = stats.params[name]
        ax_grad.plot(iterations, record["grad_norm"], "-", color=colour, label=name_text(name))
        ax_ratio.plot(iterations, record["update_ratio"], "-", color=colour,
                      label=name_text(name))
    ax_grad.set_ylabel("||dL/dW|| (L2 norm)")
    ax_grad.set_title("Weight gradient norms")
    ax_ratio.axhline(RULE_OF_THUMB, color="black", linestyle="--", linewidth=1,
                     label="1e-3 rule of thumb")
    ax_ratio.annotate("1e-3 rule of thumb", (0.01, RULE_OF_THUMB), xycoords=("axes fraction",
                      "data"), xytext=(0, 3), textcoords="offset points", fontsize=7)
    ax_ratio.set_ylabel("||update|| / ||W||")
    ax_ratio.set_title("Update / weight ratio")
    for ax in (ax_grad, ax_ratio):
        ax.set_xlabel("iteration (mini-batches)")
        if any(np.nanmax(np.asarray(line.get_ydata(), dtype=float), initial=0) > 0
               for line in ax.get_lines()):
            ax.set_yscale("log")
        _key(fig, ax, weights)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_std, ax_grad, ax_ratio):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_by, ax_std, ax_grad, ax_ratio):
        ax.grid(True, alpha=0.3)
    fig.suptitle(title or "Per-layer statistics over training")
    return finish(fig, path)
