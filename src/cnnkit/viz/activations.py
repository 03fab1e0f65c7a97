"""What each convolution of a net computes on one image: its activation maps."""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ._figure import finish, name_text, new_figure
from ._images import (as_displayable, conv_layers, evaluating, net_input, single_input,
                      unpack_run)

# channels per row of the figure; a layer with more takes several rows
COLUMNS = 8


def activation_maps(model, image) -> list[tuple[str, np.ndarray]]:
    """The output of every Conv2d of a net on one net input, in the order they ran.

    The maps are the convolutions' own outputs, ``w * x + b``, before any batch norm or ReLU
    that follows (forward hooks on the Conv2d modules). The model runs one forward in eval mode;
    afterwards every module has its own mode back and holds no forward cache.

    Parameters
    ----------
    model : a :class:`cnnkit.nn.Module` with at least one Conv2d
    image : one input as the net takes it (already preprocessed), (C, H, W) or (1, C, H, W)

    Returns
    -------
    maps : a list of ``(layer name, (C, H, W) output)``, one per Conv2d

    Raises
    ------
    UsageError
        If ``image`` is not one input, or the model has no Conv2d.
    """
    x = single_input(image, "activation_maps")
    convs = conv_layers(model)
    if not convs:
        raise UsageError(f"activation_maps: {type(model).__name__} has no Conv2d layer")
    names = {id(m): name for name, m in convs}
    maps = []

    def keep(module, _x, out):
        maps.append((names[id(module)], np.array(out[0], copy=True)))

    handles = [m.register_forward_hook(keep) for _, m in convs]
    try:
        with evaluating(model):
            model.forward(x)
    finally:
        for h in handles:
            h.remove()
    return maps


def plot_activations(model, image, path=None, *, max_channels: int = 16, preprocess=None,
                     title: str | None = None):
    """One image's activation maps at every Conv2d of a net (see :func:`activation_maps`).

    The top row shows the image; then each conv layer's first ``max_channels`` channels, 8 to
    a row, each layer on one red-blue scale symmetric about zero (white = 0) with its own
    colour bar.

    Parameters
    ----------
    model : a :class:`cnnkit.nn.Module`, or a Run (``cnnkit.fit``'s or ``cnnkit.load_run``'s),
        which brings its net and the preprocessing of its training data
    image : one image as stored, uint8 or floats in the units of the training data, (H, W),
        (H, W, C), (C, H, W) or (1, C, H, W), preprocessed as the training data were (the
        Run's preprocessing, or ``preprocess``); or, for a bare model without ``preprocess``,
        the net's input itself: a float (C, H, W) or (1, C, H, W) array, (H, W) for one channel
    path : write the figure there as a PNG (atomically); None writes nothing
    max_channels : the most channels of a layer drawn
    preprocess : a :class:`cnnkit.data.Preprocessing` (``run.preprocessing``), or a callable
        taking a batch of stored images (N, C, H, W) to the net's input; overrides a Run's
    title : the figure's title (by default, what the maps are)

    Returns
    -------
    Figure : the ``matplotlib.figure.Figure``, shown once as a notebook cell's last
        expression (see :mod:`cnnkit.viz`)

    Raises
    ------
    UsageError
        For an image the net cannot take, in one line saying what it takes: an integer image
        with a bare model (which does not know its preprocessing), or a shape that is not the
        training images' volume; for ``max_channels`` < 1 and a net without a Conv2d.
    """
    if max_channels < 1:
        raise UsageError(f"plot_activations: max_channels must be >= 1, got {max_channels}")
    model, preprocess = unpack_run(model, preprocess)
    x, shown_image = net_input(model, image, preprocess, "plot_activations")
    maps = activation_maps(model, x)
    shown_per_layer = [min(max_channels, act.shape[0]) for _, act in maps]
    cols = min(COLUMNS, max(shown_per_layer))
    layer_rows = [-(-c // cols) for c in shown_per_layer]       # ceil(channels / columns)
    fig = new_figure(max(6.0, cols * 1.15 + 1.6), 1.3 + (1 + sum(layer_rows)) * 1.3)
    grid = fig.add_gridspec(1 + sum(layer_rows), cols + 1, width_ratios=[1] * cols + [0.12])
    shown, cmap = as_displayable(shown_image, "plot_activations")
    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(shown, cmap=cmap, interpolation="nearest")
    ax.set_title("input" if preprocess is not None else "net input (min..max)", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    top = 1
    for (name, act), c, nrows in zip(maps, shown_per_layer, layer_rows):
        bound = float(np.abs(act[:c]).max()) or 1.0
        for j in range(c):
            r, col = divmod(j, cols)
            ax = fig.add_subplot(grid[top + r, col])
            im = ax.imshow(act[j], cmap="RdBu_r", vmin=-bound, vmax=bound,
                           interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(f"layer {name_text(name)}\n{'x'.join(map(str, act.shape))}"
                              if r == 0 else f"layer {name_text(name)}\n(cont.)", fontsize=8)
            ax.set_title(f"ch {j}", fontsize=7, pad=2)
        cax = fig.add_subplot(grid[top:top + nrows, cols])
        fig.colorbar(im, cax=cax)
        cax.tick_params(labelsize=7)
        cax.set_ylabel("activation", fontsize=7)
        top += nrows
    more = f" (first {max_channels} channels)" if any(
        m.shape[0] > max_channels for _, m in maps) else ""
    fig.suptitle(title or f"Activation maps: each conv layer's output, before batch norm / "
                          f"ReLU{more}\nrows: layer name and CxHxW; white = 0, red > 0, "
                          f"blue < 0", fontsize=10)
    return finish(fig, path)

