"""What each convolution of a net computes on one image: its activation maps."""

from __future__ import annotations

import numpy as np

from ._figure import finish, name_text, new_figure
from ._images import as_displayable, conv_layers, evaluating, net_input, single_input

# channels per row of the figure; a layer with more takes several rows
COLUMNS = 8


def activation_maps(model, image) -> list[tuple[str, np.ndarray]]:
    """``(layer name, (C, H, W) output)`` of every Conv2d of ``model`` on one net input, in the
    order they ran.

    ``image`` is one input as the net takes it (already preprocessed), (C, H, W) or
    (1, C, H, W). The maps are the convolutions' own outputs, ``w * x + b``, before any batch
    norm or ReLU that follows (forward hooks on the Conv2d modules). The model runs one forward
    in eval mode; afterwards every module has its own mode back and holds no forward cache.

    Raises
    ------
    ValueError
        If ``image`` is not one input, or the model has no Conv2d.
    """
    x = single_input(image, "activation_maps")
    convs = conv_layers(model)
    if not convs:
        raise ValueError(f"activation_maps: {type(model).__name__} has no Conv2d layer")
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
    """One image's activation maps at every Conv2d of ``model`` (see :func:`activation_maps`);
    returns the Figure (a PNG at ``path`` if given).

    The top row shows the image; then each conv layer's first ``max_channels`` channels, 8 to
    a row, each layer on one red-blue scale symmetric about zero (white = 0) with its own
    colour bar. ``image`` is a stored image (C, h, w) or (h, w) given to ``preprocess`` (a
    :class:`cnnkit.data.Preprocessing`) to make the net's input, or, without ``preprocess``,
    the net's input itself.
    """
    if max_channels < 1:
        raise ValueError(f"plot_activations: max_channels must be >= 1, got {max_channels}")
    x = net_input(image, preprocess, "plot_activations")
    maps = activation_maps(model, x)
    shown_per_layer = [min(max_channels, act.shape[0]) for _, act in maps]
    cols = min(COLUMNS, max(shown_per_layer))
    layer_rows = [-(-c // cols) for c in shown_per_layer]       # ceil(channels / columns)
    fig = new_figure(max(6.0, cols * 1.15 + 1.6), 1.3 + (1 + sum(layer_rows)) * 1.3)
    grid = fig.add_gridspec(1 + sum(layer_rows), cols + 1, width_ratios=[1] * cols + [0.12])
    shown, cmap = as_displayable(image if preprocess is not None else x[0], "plot_activations")
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

