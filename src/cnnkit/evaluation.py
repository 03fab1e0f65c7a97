"""A trained net on a split of labelled images: accuracy, per-class accuracy, the confusion
matrix. What ``cnnkit evaluate`` prints (``--json``: :meth:`Evaluation.to_dict`), what
``Run.evaluate`` returns.

    >>> result = evaluate_checkpoint("runs/lenet-bn-20261130-101500/model.npz")  # doctest: +SKIP
    >>> result.accuracy, result.confusion.shape                                # doctest: +SKIP
    (0.9921, (10, 10))
    >>> print(result)                                                          # doctest: +SKIP
    MNIST test: 10000 images, accuracy 0.9921
    ...

Data whose classes are named is matched to the net's classes by name (:func:`match_classes`):
it may hold only some of them, in any order; a class the net does not know is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._json import jsonable
from .data import DataError, Dataset, Preprocessing
from .functional.losses import get_loss
from .inference import load_for_inference, recorded_source, reopen_data
from .summary import eval_batch_size
from .train import predict
from .viz.evaluation import confusion_matrix, per_class_accuracy

__all__ = ["Evaluation", "evaluate_split", "evaluate_checkpoint", "match_classes"]


@dataclass
class Evaluation:
    """The scores of a net on ``labels.size`` images.

    Attributes
    ----------
    title : what was evaluated, e.g. "MNIST test"
    classes : the K class names, in the order of the net's scores
    labels : (N,) the true classes
    scores : (N, K) the net's class scores (eval mode)
    notes : lines worth telling the user about the data (images skipped, a cache written,
        classes it lacks)
    missing : the net's classes of which the data holds no images at all (a folder of some of
        the classes); their rows are left out of :meth:`lines`, null in :meth:`to_dict`
    source : the data source evaluated, as it reopens ("mnist", "folder:/data/pets")
    split : "test", "train" or "all"
    checkpoint : the checkpoint's path, when it was read from one
    skipped : images the source passed over (``skip_bad``: undecodable, or not regular files)
    """

    title: str
    classes: tuple
    labels: np.ndarray
    scores: np.ndarray
    notes: list = field(default_factory=list)
    missing: tuple = ()
    source: str | None = None
    split: str | None = None
    checkpoint: str | None = None
    skipped: int = 0

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
        """The table ``cnnkit evaluate`` prints: accuracy, per-class accuracy, confusion (a row
        for each class the data holds, a column for each of the net's classes)."""
        confusion, names, k = self.confusion, list(self.classes), len(self.classes)
        rows = [c for c in range(k) if names[c] not in self.missing]
        width = max(5, len(str(confusion.max())) + 1, *(len(n) + 1 for n in names))
        label_width = max(4, *(len(n) for n in names))
        out = [f"{self.title}: {len(self.labels)} images, accuracy {self.accuracy:.4f}",
               "per-class accuracy:"]
        per_class = self.per_class
        for c in rows:
            out.append(f"  {names[c]:>{label_width}}  {per_class[c]:.4f}  "
                       f"({confusion[c, c]}/{confusion[c].sum()})")
        out.append("confusion matrix (rows: true class, columns: predicted):")
        out.append(" " * (label_width + 3) + "".join(f"{names[c]:>{width}}" for c in range(k)))
        for c in rows:
            out.append(f"  {names[c]:>{label_width}} "
                       + "".join(f"{v:>{width}}" for v in confusion[c]))
        return out

    def to_dict(self) -> dict:
        """The whole evaluation as plain, JSON-safe values (what ``cnnkit evaluate --json``
        prints): no NaN or infinity, null in their place (the accuracy of a class without
        images, the accuracy of no images at all, a non-finite loss)::

            {"checkpoint": "runs/x/model.npz",
             "data": {"source": "mnist", "title": "MNIST test", "split": "test",
                      "images": 10000, "skipped_bad": 0},
             "accuracy": 0.9921, "loss": 0.027,
             "classes": ["0", ..., "9"],
             "per_class": [{"class": "0", "accuracy": 0.998, "correct": 978, "images": 980},
                           ...],
             "missing_classes": [],
             "confusion": {"rows": "true class", "columns": "predicted class",
                           "classes": ["0", ..., "9"], "counts": [[978, 0, ...], ...]},
             "notes": []}

        ``per_class`` and the confusion matrix cover every class of the net, in its order; a
        class in ``missing_classes`` has a row of zeros and a null accuracy."""
        confusion, per_class = self.confusion, self.per_class
        return {
            "checkpoint": self.checkpoint,
            "data": {"source": self.source, "title": self.title, "split": self.split,
                     "images": int(self.labels.size), "skipped_bad": int(self.skipped)},
            "accuracy": jsonable(self.accuracy),
            "loss": jsonable(self.loss),
            "classes": list(self.classes),
            "per_class": [{"class": name, "accuracy": jsonable(per_class[c]),
                           "correct": int(confusion[c, c]), "images": int(confusion[c].sum())}
                          for c, name in enumerate(self.classes)],
            "missing_classes": list(self.missing),
            "confusion": {"rows": "true class", "columns": "predicted class",
                          "classes": list(self.classes), "counts": confusion.tolist()},
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        return (f"Evaluation({self.title}: {len(self.labels)} images, accuracy "
                f"{self.accuracy:.4f})")


def _listed(names, most: int = 10) -> str:
    """Up to ``most`` names joined by commas, then how many more."""
    names = list(names)
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def match_classes(dataset: Dataset, classes) -> tuple[np.ndarray | None, tuple]:
    """How the labels of ``dataset`` map onto the net's ``classes``, matched by name.

    Returns ``(index, missing)``: ``index[k]`` is the net's class number of the data's class
    k (None: the labels are the net's already), and the names of the net's classes that the
    data does not hold. A folder of some of the classes, or classes in another order, is
    matched by name; data whose classes are only numbers (an npz without names) and a net
    without recorded names are taken as they are.

    Raises
    ------
    DataError
        When the data names a class the net was not trained on (the message names it).
    """
    if classes is None or tuple(dataset.classes) == tuple(classes):
        return None, ()
    known = {name: k for k, name in enumerate(classes)}
    unknown = [name for name in dataset.classes if name not in known]
    if unknown:
        if all(name.isdigit() for name in dataset.classes):
            return None, ()          # numbered classes: label k is the net's class k
        raise DataError(f"{dataset.title} has class {unknown[0]!r}, which the net was not "
                        f"trained on (its classes: {_listed(classes)})")
    present = set(dataset.classes)
    return (np.array([known[name] for name in dataset.classes], dtype=np.int64),
            tuple(name for name in classes if name not in present))


def evaluate_split(model, preprocessing: Preprocessing, classes, dataset: Dataset,
                   split: str | None = None) -> Evaluation:
    """``model`` on the ``split`` ("test", "train" or "all"; default: test, or all when the
    dataset has no test split) of ``dataset``, each batch through ``preprocessing``. The
    data's classes are matched to ``classes`` by name (:func:`match_classes`); the net's
    classes it lacks are named in a note and left out of the printed rows."""
    index, missing = match_classes(dataset, classes)
    split = split or ("test" if dataset.test is not None else "all")
    part = dataset.split(split)
    labels = part.labels if index is None else index[part.labels]
    scores = predict(model, part.images, eval_batch_size(model, preprocessing.input_shape),
                     preprocessing)
    k = scores.shape[1]
    if labels.size and labels.max() >= k:
        raise DataError(f"{dataset.title}: label {labels.max()} is out of range for a net "
                        f"with {k} classes")
    names = tuple(classes) if classes and len(classes) == k else tuple(map(str, range(k)))
    notes = [f"{dataset.title} holds {len(names) - len(missing)} of the net's {len(names)} "
             f"classes; no images of {_listed(missing)}"] if missing else []
    return Evaluation(f"{dataset.title} {split}", names, labels, scores, notes, missing,
                      source=dataset.source, split=split, skipped=dataset.skipped)


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
        When the checkpoint records no data and none is given, the data names a class the net
        was not trained on, or a file is missing or damaged (the message names it).
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
    result.notes[:0] = dataset.notes
    path = getattr(checkpoint, "path", checkpoint)         # a path, or a loaded Checkpoint's
    result.checkpoint = None if path is None else str(path)
    return result
