"""Image-specific class saliency: which pixels a class score is most sensitive to.

The map is Simonyan, Vedaldi and Zisserman's (2014, "Deep Inside Convolutional Networks").
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..nn import Module
from ._figure import finish, new_figure
from ._images import (as_displayable, class_name, evaluating, net_input, single_input,
                      unpack_run)


def saliency(model, x, target: int | None = None) -> np.ndarray:
    """The saliency map of one net input: how much the class score moves per pixel.

        M[i, j] = max_c | dS_target / dx[c, i, j] |

    where ``S_target`` is the score of class ``target`` before the softmax (by default the
    class the net predicts), found by the model's own backward from a one-hot upstream
    gradient; the maximum runs over the input channels. The model runs one forward and one
    backward in eval mode. Every parameter's ``.grad`` is left as it was (saved and written
    back), every module gets its own mode back, and no forward cache is kept.

    Parameters
    ----------
    model : a Module giving (N, K) class scores
    x : one input as the net takes it (already preprocessed), (C, H, W) or (1, C, H, W)
    target : class index 0..K-1, or None for the predicted class

    Returns
    -------
    M : (H, W) array in x's float dtype

    Raises
    ------
    UsageError
        If ``x`` is not one input, the net does not give a vector of scores, or ``target`` is
        out of range.
    """
    x = single_input(x, "saliency")
    params = [p for p in model.parameters() if not p.is_placeholder]
    saved = [p.grad.copy() for p in params]
    try:
        with evaluating(model):
            scores = model.forward(x)
            if np.ndim(scores) != 2:
                raise UsageError(f"saliency: the net must give a vector of class scores per "
                                 f"image, got output shape {np.shape(scores)}")
            k = scores.shape[1]
            target = int(np.argmax(scores[0])) if target is None else _checked(target, k)
            dscores = np.zeros_like(scores)
            dscores[0, target] = 1.0
            dx = model.backward(dscores)
    finally:
        for p, g in zip(params, saved):
            p.grad[...] = g
    return np.abs(dx[0]).max(axis=0)


def _checked(target, k: int) -> int:
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise UsageError(f"saliency: target must be a class index, got {target!r}")
    if not 0 <= target < k:
        raise UsageError(f"saliency: target class {target} is out of range for a net with {k} "
                         f"classes (0..{k - 1})")
    return int(target)


def plot_saliency(model, image, path=None, *, target: int | None = None, classes=None,
                  preprocess=None, title: str | None = None):
    """An image beside its saliency map (:func:`saliency`).

    The titles name the predicted class with its softmax probability and the class the map is
    for. The map has the net input's size (after any centring or resizing by the
    preprocessing).

    Parameters
    ----------
    model : a :class:`cnnkit.nn.Module` giving (N, K) class scores, or a Run
        (``cnnkit.fit``'s or ``cnnkit.load_run``'s), which brings its net, its class names and
        the preprocessing of its training data
    image : one image as stored, uint8 or floats in the units of the training data, (H, W),
        (H, W, C), (C, H, W) or (1, C, H, W), preprocessed as the training data were (the
        Run's preprocessing, or ``preprocess``); or, for a bare model without ``preprocess``,
        the net's input itself: a float (C, H, W) or (1, C, H, W) array, (H, W) for one channel
    path : write the figure there as a PNG (atomically); None writes nothing
    target : the class index the map is for; None: the predicted class
    classes : the class names (by default a Run's, else the class numbers)
    preprocess : a :class:`cnnkit.data.Preprocessing` (``run.preprocessing``), or a callable
        taking a batch of stored images (N, C, H, W) to the net's input; overrides a Run's
    title : the figure's title (by default, what the map is)

    Returns
    -------
    Figure : the ``matplotlib.figure.Figure``, shown once as a notebook cell's last
        expression (see :mod:`cnnkit.viz`)

    Raises
    ------
    UsageError
        For an image the net cannot take, in one line saying what it takes (see
        :func:`plot_activations`); for a net that gives no vector of class scores, and a
        ``target`` out of range.
    """
    from matplotlib.ticker import MaxNLocator

    if classes is None:
        classes = getattr(model, "classes", None) if not isinstance(model, Module) else None
    model, preprocess = unpack_run(model, preprocess)
    x, shown_image = net_input(model, image, preprocess, "plot_saliency")
    with evaluating(model):
        scores = np.asarray(model.forward(x), dtype=np.float64)
    if scores.ndim != 2:
        raise UsageError(f"plot_saliency: the net must give a vector of class scores per image, "
                         f"got output shape {scores.shape}")
    probs = np.exp(scores[0] - scores[0].max())
    probs /= probs.sum()
    predicted = int(probs.argmax())
    target = predicted if target is None else _checked(target, len(probs))
    smap = saliency(model, x, target)
    fig = new_figure(8.5, 4.2)
    ax_img, ax_map = fig.subplots(1, 2)
    shown, cmap = as_displayable(shown_image, "plot_saliency")
    ax_img.imshow(shown, cmap=cmap, interpolation="nearest")
    ax_img.set_title(f"input; predicted {class_name(classes, predicted)} "
                     f"(p = {probs[predicted]:.2f})", fontsize=10)
    im = ax_map.imshow(smap, cmap="hot", vmin=0.0, interpolation="nearest")
    ax_map.set_title(f"saliency for class {class_name(classes, target)}", fontsize=10)
    fig.colorbar(im, ax=ax_map, label="max over channels of |d score / d input|", shrink=0.85)
    for ax, shape in ((ax_img, np.shape(shown)), (ax_map, smap.shape)):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"x (pixels, {shape[1]} wide)")
        ax.set_ylabel(f"y (pixels, {shape[0]} high)")
    fig.suptitle(title or "Saliency: the class score's gradient with respect to the input "
                          "pixels (brighter = more influence)", fontsize=10)
    return finish(fig, path)
