"""A trained net on a split of labelled images: accuracy, per-class accuracy, the confusion
matrix. What ``cnnkit evaluate`` prints, what ``Run.evaluate`` returns.

    >>> result = evaluate_checkpoint("runs/lenet-bn-20261130-101500/model.npz")  # doctest: +SKIP
    >>> result.accuracy, result.confusion.shape                                # doctest: +SKIP
    (0.9921, (10, 10))
    >>> print(result)                                                          # doctest: +SKIP
    MNIST test: 10000 images, accuracy 0.9921
    ...
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .data import DataError, Dataset, Preprocessing
from .functional.losses import get_loss
from .inference import load_for_inference, recorded_source, reopen_data
from .summary import eval_batch_size
from .train import predict
from .viz.evaluation import confusion_matrix, per_class_accuracy

__all__ = ["Evaluation", "evaluate_split", "evaluate_checkpoint", "check_same_classes"]


@dataclass
class Evaluation:
    """The scores of a net on ``labels.size`` images.

    Attributes
    ----------
    title : what was evaluated, e.g. "MNIST test"
    classes : the K class names, in the order of the net's scores
    labels : (N,) the true classes
    scores : (N, K) the net's class scores (eval mode)
    notes : lines worth telling the user about the data (images skipped, a cache written)
    """

    title: str
    classes: tuple
    labels: np.ndarray
    scores: np.ndarray
    notes: list = field(default_factory=list)

    @property
    def predictions(self) -> np.ndarray:
        """(N,) the class of the highest score of each image."""
        return self.scores.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        """The fraction of images classified right (NaN for no image)."""
        return float(np.mean(self.predictions == self.labels)) if self.labels.size \
            else float("nan")

    @property
    def loss(self) -> float:
        """The mean softmax cross-entropy of the scores (NaN for no image)."""
        if not self.labels.size:
            return float("nan")
        return float(get_loss("softmax")(self.scores, self.labels)[0])

    @property
    def confusion(self) -> np.ndarray:
        """(K, K) counts: row = true class, column = predicted class."""
        return confusion_matrix(self.labels, self.predictions, len(self.classes))

    @property
    def per_class(self) -> np.ndarray:
        """(K,) the accuracy on each class (NaN for a class with no image)."""
        return per_class_accuracy(self.confusion)

    def lines(self) -> list[str]:
        """The table ``cnnkit evaluate`` prints: accuracy, per-class accuracy, confusion."""
        confusion, names, k = self.confusion, list(self.classes), len(self.classes)
        width = max(5, len(str(confusion.max())) + 1, *(len(n) + 1 for n in names))
        label_width = max(4, *(len(n) for n in names))
        out = [f"{self.title}: {len(self.labels)} images, accuracy {self.accuracy:.4f}",
               "per-class accuracy:"]
        for c, acc in enumerate(self.per_class):
            out.append(f"  {names[c]:>{label_width}}  {acc:.4f}  "
                       f"({confusion[c, c]}/{confusion[c].sum()})")
        out.append("confusion matrix (rows: true class, columns: predicted):")
        out.append(" " * (label_width + 3) + "".join(f"{names[c]:>{width}}" for c in range(k)))
        for c in range(k):
            out.append(f"  {names[c]:>{label_width}} "
                       + "".join(f"{v:>{width}}" for v in confusion[c]))
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        return (f"Evaluation({self.title}: {len(self.labels)} images, accuracy "
                f"{self.accuracy:.4f})")


def check_same_classes(dataset: Dataset, classes) -> None:
    """A source that names its classes must name the net's, in its order (a source whose
    classes are numbers, such as an npz without names, is taken as it is)."""
    if classes is None or all(c.isdigit() for c in dataset.classes):
        return
    if tuple(dataset.classes) != tuple(classes):
        raise DataError(f"{dataset.title} has classes {', '.join(dataset.classes)}; the net was "
                        f"trained on {', '.join(classes)}")


def evaluate_split(model, preprocessing: Preprocessing, classes, dataset: Dataset,
                   split: str | None = None) -> Evaluation:
    """``model`` on the ``split`` ("test", "train" or "all"; default: test, or all when the
    dataset has no test split) of ``dataset``, each batch through ``preprocessing``."""
    check_same_classes(dataset, classes)
    split = split or ("test" if dataset.test is not None else "all")
    part = dataset.split(split)
    scores = predict(model, part.images, eval_batch_size(model, preprocessing.input_shape),
                     preprocessing)
    k = scores.shape[1]
    if part.labels.size and part.labels.max() >= k:
        raise DataError(f"{dataset.title}: label {part.labels.max()} is out of range for a net "
                        f"with {k} classes")
    names = tuple(classes) if classes and len(classes) == k else tuple(map(str, range(k)))
    return Evaluation(f"{dataset.title} {split}", names, part.labels, scores)


def evaluate_checkpoint(checkpoint, data: str | None = None, *, split: str | None = None,
                        skip_bad: bool = False, progress: bool = False,
                        allow_nonfinite: bool = False) -> Evaluation:
    """What ``cnnkit evaluate`` does: the checkpoint's net on the data it was trained on (the
    test split its run held out) or on the source ``data``, preprocessed as in training.
    ``allow_nonfinite`` evaluates a net whose weights or statistics hold NaN or infinite values
    (refused by default: its scores are NaN, its accuracy that of one class).

    Raises
    ------
    DataError, CheckpointError
        When the checkpoint records no data and none is given, the data's classes are not the
        net's, or a file is missing or damaged (the message names it).
    NonFiniteError
        For a net holding NaN or infinite values, without ``allow_nonfinite`` (before any
        data is opened).
    """
    model, preprocessing, classes, meta = load_for_inference(checkpoint,
                                                             allow_nonfinite=allow_nonfinite)
    if not (data or recorded_source(meta)):
        raise DataError(f"{checkpoint} does not record the data it was trained on; pass "
                        f"--data SOURCE")
    dataset = reopen_data(meta, preprocessing, data, skip_bad=skip_bad, progress=progress)
    result = evaluate_split(model, preprocessing, classes, dataset, split)
    result.notes.extend(dataset.notes)
    return result
