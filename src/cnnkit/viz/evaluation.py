"""How a classifier does on labelled images: the confusion matrix and the images it got wrong."""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ._figure import finish, new_figure, set_tick_labels
from ._images import as_displayable, class_name, grid_shape


def _labels(y, name: str, num_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise UsageError(f"confusion_matrix: {name} must be a vector (N,) of class indices, got "
                         f"shape {y.shape}")
    if y.size and y.dtype.kind not in "iu":
        raise UsageError(f"confusion_matrix: {name} must hold integer class indices, got "
                         f"{y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = y.min() if y.min() < 0 else y.max()
        raise UsageError(f"confusion_matrix: {name} has class {bad}, out of range for "
                         f"{num_classes} classes (0..{num_classes - 1})")
    return y.astype(np.int64, copy=False)


NAME_INCH = 0.07       # about the width of one character of a tick label (8 points)


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts of each true class predicted as each class.

    ``cm[i, j]`` is the number of examples of true class i predicted as j. Row i sums to the
    number of examples of class i; the diagonal holds the correct ones, so the accuracy of
    class i is ``cm[i, i] / cm[i].sum()``.

    Parameters
    ----------
    y_true, y_pred : (N,) integer class indices 0..num_classes-1
    num_classes : K, the number of classes

    Returns
    -------
    cm : (K, K) int64 counts

    Raises
    ------
    UsageError
        If the labels are not integer vectors of one length, or a class index is outside
        0..num_classes-1.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise UsageError(f"confusion_matrix: num_classes must be a positive integer, got "
                         f"{num_classes!r}")
    k = int(num_classes)
    t, p = _labels(y_true, "y_true", k), _labels(y_pred, "y_pred", k)
    if t.shape != p.shape:
        raise UsageError(f"confusion_matrix: y_true has {t.size} labels but y_pred has "
                         f"{p.size}")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def per_class_accuracy(cm) -> np.ndarray:
    """The fraction of each true class predicted correctly.

    Parameters
    ----------
    cm : a (K, K) confusion matrix (:func:`confusion_matrix`)

    Returns
    -------
    accuracy : (K,) ``cm[i, i] / cm[i].sum()``; NaN for a class with no examples
    """
    cm = np.asarray(cm)
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)


def plot_confusion_matrix(cm, classes=None, path=None, *, normalize: bool = True,
                          title: str | None = None):
    """A confusion matrix as a heat map, every count written in its cell.

    Rows are the true class, columns the predicted one; each row's accuracy stands beside its
    true-class label and the overall accuracy in the title. Counts are written when K <= 30.

    Parameters
    ----------
    cm : a (K, K) matrix of counts (:func:`confusion_matrix`)
    classes : the K class names (by default the class numbers)
    path : write the figure there as a PNG (atomically); None writes nothing
    normalize : colour each cell by its share of the row (the fraction of that true class
        predicted as the column's class), so rare classes read as clearly as common ones;
        False colours by the count. The numbers written are counts either way.
    title : the figure's title (by default, what it shows)

    Returns
    -------
    Figure : the ``matplotlib.figure.Figure``, shown once as a notebook cell's last
        expression (see :mod:`cnnkit.viz`)

    Raises
    ------
    UsageError
        If ``cm`` is not a square matrix of non-negative counts, or ``classes`` does not name
        its K classes.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 1:
        raise UsageError(f"plot_confusion_matrix: the matrix must be square (K, K), got shape "
                         f"{cm.shape}")
    if cm.dtype.kind not in "iu" or (cm.size and cm.min() < 0):
        raise UsageError("plot_confusion_matrix: the matrix must hold counts (non-negative "
                         "integers)")
    k = cm.shape[0]
    if classes is not None and len(classes) != k:
        raise UsageError(f"plot_confusion_matrix: {len(classes)} class names for a {k}x{k} "
                         f"matrix")
    names = [class_name(classes, i) for i in range(k)]
    acc = per_class_accuracy(cm)
    totals = cm.sum(axis=1, keepdims=True)
    values = cm / np.maximum(totals, 1) if normalize else cm
    side = min(14.0, max(5.0, 0.45 * k + 2.5))
    # room for the names: beside the rows and, turned upright, under the columns
    longest = max(len(line) for name in names for line in name.split("\n"))
    margin = NAME_INCH * max(0, longest - 6)
    fig = new_figure(side + 1.5 + margin, side + margin)
    ax = fig.subplots()
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=1.0 if normalize else max(cm.max(), 1),
                   interpolation="nearest")
    if k <= 30:
        size = 9 if k <= 12 else 7 if k <= 20 else 5
        for i in range(k):
            for j in range(k):
                dark = values[i, j] > (0.55 if normalize else 0.55 * max(cm.max(), 1))
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=size,
                        color="white" if dark else "black")
    step = max(1, k // 40)
    ticks = np.arange(0, k, step)
    set_tick_labels(ax.xaxis, ticks, [names[i] for i in ticks],
                    rotation=90 if max(map(len, names)) > 3 else 0, fontsize=8)
    set_tick_labels(ax.yaxis, ticks, [f"{names[i]} ({_percent(acc[i])})" for i in ticks],
                    fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (its accuracy: correct / examples of the class)")
    fig.colorbar(im, ax=ax, shrink=0.8,
                 label="fraction of the true class (row)" if normalize else "count")
    total = int(cm.sum())
    overall = f"{np.trace(cm) / total:.2%}" if total else "n/a"
    ax.set_title(title or f"Confusion matrix: {total:,} images, accuracy {overall}\n"
                          f"cell = count; colour = " +
                          ("share of the row" if normalize else "count"), fontsize=10)
    return finish(fig, path)


def _percent(value) -> str:
    return "n/a" if np.isnan(value) else f"{value:.0%}"


def plot_misclassified(images, y_true, y_pred, path=None, *, classes=None, probabilities=None,
                       max_images: int = 25, title: str | None = None):
    """A grid of the images whose prediction is wrong, each titled "true → predicted (p)".

    Parameters
    ----------
    images : (N, H, W) or (N, C, H, W) (C 1 or 3; other C show channel 0), uint8 or floats, or
        anything indexed like such an array (a :class:`cnnkit.data.Images` view): only the
        images drawn are read
    y_true, y_pred : (N,) class indices
    path : write the figure there as a PNG (atomically); None writes nothing
    classes : the class names (by default the class numbers)
    probabilities : (N, K) class probabilities; p in the titles is the predicted class's
    max_images : how many of the wrong images are drawn, the first ones
    title : the figure's title (by default, what it shows)

    Returns
    -------
    Figure : the ``matplotlib.figure.Figure``, shown once as a notebook cell's last
        expression (see :mod:`cnnkit.viz`)

    Raises
    ------
    UsageError
        If the labels, images and probabilities do not agree in shape, or a class index is out
        of range.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape or y_true.size != len(images):
        raise UsageError(f"plot_misclassified: y_true and y_pred must be vectors of one label "
                         f"per image ({len(images)}), got shapes {y_true.shape} and "
                         f"{y_pred.shape}")
    if getattr(images, "ndim", 4) not in (3, 4):
        raise UsageError(f"plot_misclassified: images must be (N, H, W) or (N, C, H, W), got "
                         f"shape {np.shape(images)}")
    if max_images < 1:
        raise UsageError(f"plot_misclassified: max_images must be >= 1, got {max_images}")
    if probabilities is not None:
        probabilities = np.asarray(probabilities)
        if probabilities.ndim != 2 or len(probabilities) != len(y_true):
            raise UsageError(f"plot_misclassified: probabilities must be (N, K) with N = "
                             f"{len(y_true)}, got shape {probabilities.shape}")
        if y_pred.size and y_pred.max() >= probabilities.shape[1]:
            raise UsageError(f"plot_misclassified: predicted class {y_pred.max()} is out of "
                             f"range for {probabilities.shape[1]} classes")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and y.dtype.kind not in "iu":
            raise UsageError(f"plot_misclassified: {name} must hold integer class indices, got "
                             f"{y.dtype}")
        if y.size and (y.min() < 0 or (classes is not None and y.max() >= len(classes))):
            bad = y.min() if y.min() < 0 else y.max()
            raise UsageError(f"plot_misclassified: {name} has class {bad}, out of range for "
                             f"the {len(classes) if classes is not None else 'given'} classes")
    wrong = np.flatnonzero(y_true != y_pred)
    picked = wrong[:max_images]
    heading = title or (f"Misclassified: {len(picked)} shown of {len(wrong):,} wrong "
                        f"({len(wrong) / max(len(y_true), 1):.1%} of {len(y_true):,} images)\n"
                        f"each titled: true class → predicted class" +
                        (" (its probability)" if probabilities is not None else ""))
    if not len(picked):
        heading = title or f"Misclassified: none of {len(y_true):,} images"
        fig = new_figure(6, 2)
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "no misclassified images", ha="center", va="center", fontsize=12)
        fig.suptitle(heading, fontsize=10)
        return finish(fig, path)
    batch = np.asarray(images[picked])
    rows, cols = grid_shape(len(picked))
    cols = min(cols, len(picked))
    fig = new_figure(max(4.0, 1.7 * cols), 0.6 + 1.85 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, n, img in zip(axes, picked, batch):
        shown, cmap = as_displayable(img, "plot_misclassified")
        ax.imshow(shown, cmap=cmap, interpolation="nearest")
        label = f"{class_name(classes, int(y_true[n]))} → {class_name(classes, int(y_pred[n]))}"
        if probabilities is not None:
            label += f" ({probabilities[n, y_pred[n]]:.2f})"
        ax.set_title(label, fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(picked):]:
        ax.axis("off")
    fig.suptitle(heading, fontsize=10)
    return finish(fig, path)
