"""The weights of a convolution drawn as pictures: what its filters look for."""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..nn import Module
from ._figure import finish, name_text, new_figure, set_tick_labels
from ._images import first_conv, grid_shape, mosaic


def _weight_of(layer_or_weight) -> tuple[np.ndarray, str]:
    """(F, C, KH, KW) weights and how to name them: of a Conv2d, of a model's first Conv2d, or
    an array."""
    if isinstance(layer_or_weight, Module):
        name, conv = first_conv(layer_or_weight, "plot_filters")
        label = "conv" if name == "conv" else f"layer {name_text(name)}"
        return np.asarray(conv.weight.data), label
    w = np.asarray(layer_or_weight)
    if w.ndim != 4:
        raise UsageError(f"plot_filters: conv weights must be (F, C, KH, KW), got shape "
                         f"{w.shape}")
    if w.dtype.kind not in "fiu" or w.size == 0:
        raise UsageError(f"plot_filters: conv weights must be a non-empty array of numbers, got "
                         f"{w.dtype} of shape {w.shape}")
    return w, "weights"


def plot_filters(layer_or_weight, path=None, *, title: str | None = None,
                 max_filters: int = 64, max_channels: int = 8):
    """The filters of a convolution as a grid of small pictures.

    The first ``max_filters`` filters are drawn:

    - C == 3: each filter an RGB picture, min-max scaled to [0, 1] on its own (the CS231n
      picture of a first layer: colour blobs and oriented edges). Only the pattern is shown,
      not the magnitude.
    - C == 1: each filter in grey on one shared scale symmetric about zero (mid-grey = 0), with
      a colour bar in weight units, so filters can be compared.
    - other C: one row per filter and one column per input channel (the first
      ``max_channels``), each (KH, KW) slice on one shared red-blue scale about zero.

    Parameters
    ----------
    layer_or_weight : a :class:`cnnkit.nn.Conv2d`, a model (its first Conv2d is drawn) or an
        (F, C, KH, KW) array
    path : write the figure there as a PNG (atomically); None writes nothing
    title : the figure's title (by default, what it shows)
    max_filters : the most filters drawn
    max_channels : the most input channels drawn per filter (for C other than 1 and 3)

    Returns
    -------
    Figure : the ``matplotlib.figure.Figure``, shown once as a notebook cell's last
        expression (see :mod:`cnnkit.viz`)

    Raises
    ------
    UsageError
        For an array that is not (F, C, KH, KW), or a model without a Conv2d.
    """
    w, label = _weight_of(layer_or_weight)
    if max_filters < 1 or max_channels < 1:
        raise UsageError(f"plot_filters: max_filters and max_channels must be >= 1, got "
                         f"{max_filters} and {max_channels}")
    f_all, c_all, kh, kw = w.shape
    w = np.asarray(w[:max_filters], dtype=np.float64)
    f = len(w)
    shown = f"{f} of {f_all}" if f < f_all else f"{f}"
    heading = title or f"Filters of {label}: {shown} filters, {c_all}x{kh}x{kw} each (CxKHxKW)"
    if c_all == 3:
        lo = w.min(axis=(1, 2, 3), keepdims=True)
        span = w.max(axis=(1, 2, 3), keepdims=True) - lo
        tiles = ((w - lo) / np.where(span > 0, span, 1.0)).transpose(0, 2, 3, 1)
        rows, cols = grid_shape(f, kw / kh)
        image = mosaic(tiles, rows, cols, fill=1.0)
        fig, ax = _canvas(rows, cols, kh, kw, colorbar=False)
        ax.imshow(image, interpolation="nearest")
        _grid_ticks(ax, f, cols, kh, kw)
        ax.set_xlabel(ax.get_xlabel() + "; each filter scaled to its own min..max;\nRGB = "
                      "input channels 0, 1, 2", fontsize=9)
    elif c_all == 1:
        rows, cols = grid_shape(f, kw / kh)
        image = mosaic(w[:, 0], rows, cols)
        fig, ax = _canvas(rows, cols, kh, kw, colorbar=True)
        bound = float(np.abs(w).max()) or 1.0
        im = ax.imshow(image, cmap=_with_bad("gray", "#9ecae1"), vmin=-bound, vmax=bound,
                       interpolation="nearest")
        _grid_ticks(ax, f, cols, kh, kw)
        fig.colorbar(im, ax=ax, label="weight (grey = 0)", shrink=0.8)
    else:
        c = min(c_all, max_channels)
        image = mosaic(w[:, :c].reshape(f * c, kh, kw), f, c)
        fig, ax = _canvas(f, c, kh, kw, colorbar=True)
        bound = float(np.abs(w[:, :c]).max()) or 1.0
        im = ax.imshow(image, cmap=_with_bad("RdBu_r", "0.7"), vmin=-bound, vmax=bound,
                       interpolation="nearest")
        set_tick_labels(ax.xaxis, np.arange(c) * (kw + 1) + (kw - 1) / 2, range(c))
        step = max(1, f // 16)
        set_tick_labels(ax.yaxis, np.arange(0, f, step) * (kh + 1) + (kh - 1) / 2,
                        range(0, f, step))
        more = f" (first {c} of {c_all})" if c < c_all else ""
        ax.set_xlabel(f"input channel{more}")
        ax.set_ylabel("filter")
        fig.colorbar(im, ax=ax, label="weight (white = 0)", shrink=0.8)
    ax.set_title(heading, fontsize=10)
    return finish(fig, path)


def _with_bad(name: str, gap: str):
    """The colormap ``name`` drawing NaN (the gaps between tiles) in ``gap``, a colour the map
    itself does not use (white is a weight of 0 in RdBu and the largest one in grey)."""
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad=gap)


def _canvas(rows: int, cols: int, kh: int, kw: int, *, colorbar: bool):
    """A figure sized to a ``rows`` x ``cols`` mosaic of kh x kw tiles (about 0.5 inch a tile,
    between 4 and 12 inches), and its one axes."""
    scale = min(0.5, 9.0 / max(rows, cols)) / max(kh, kw)
    width = min(12.0, max(5.0, cols * (kw + 1) * scale + (1.5 if colorbar else 0.6)))
    height = min(12.0, max(3.5, rows * (kh + 1) * scale + 1.4))
    fig = new_figure(width, height)
    return fig, fig.subplots()


def _grid_ticks(ax, count: int, cols: int, kh: int, kw: int) -> None:
    """No axes ticks (pixel positions mean nothing here); each tile numbered in its corner,
    and the caption says how to read the grid (a number would hide most of a 3x3 tile)."""
    ax.set_xticks([])
    ax.set_yticks([])
    if min(kh, kw) < 5:
        ax.set_xlabel(f"filters 0 to {count - 1} row by row, {cols} to a row", fontsize=9)
        return
    ax.set_xlabel("filter number in each tile's corner", fontsize=9)
    size = 7 if count <= 36 else 5
    for t in range(count):
        r, c = divmod(t, cols)
        ax.text(c * (kw + 1) - 0.4, r * (kh + 1) - 0.4, str(t), fontsize=size, va="top",
                ha="left", color="black",
                bbox={"facecolor": "white", "alpha": 0.7, "pad": 0.5, "linewidth": 0})
