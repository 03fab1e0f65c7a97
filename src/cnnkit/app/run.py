"""Run: a trained net with everything its training knew, in memory or read back from disk.

``cnnkit.fit`` returns one; :func:`load_run` gives the same object back from a run folder or a
checkpoint. A Run answers what a user asks of a finished training run:

    run.test_accuracy, run.history["val_acc"], run.classes, run.preprocessing
    run.predict(["cat.jpg", "dog.png"]).labels        # what cnnkit.predict_images gives
    print(run.evaluate())                             # what `cnnkit evaluate` prints
    run.report("page.html"); run.save("net.npz")      # cnnkit.load_run("net.npz") reads it
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..data import DataError, Dataset, Split
from ..data.npz import arrays_dataset
from ..errors import UsageError
from ..evaluation import Evaluation, evaluate_split
from ..finite import check_net
from ..inference import Predictions, classify, load_for_inference, recorded_source, reopen_data
from ..monitor import LayerStats
from ..report import write_report
from ..runs import RunFolder, read_json
from .config import RunConfig
from .inputs import ARRAYS

__all__ = ["Run", "load_run"]


def _is_history(value) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                    for x in v) for v in value.values())


def _is_test(value) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(k), (int, float)) and not isinstance(value.get(k), bool)
        for k in ("accuracy", "loss", "images"))


class Run:
    """A training run: its net, settings, history and results.

    Attributes
    ----------
    model : the trained :class:`cnnkit.nn.Module` (the best validation epoch's weights)
    config : the run's :class:`~cnnkit.app.config.RunConfig` (the settings its checkpoint
        records, with "default" and "auto" resolved to what the run used)
    history : per epoch ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``lr``,
        ``seconds``; per iteration ``batch_loss`` (None when nothing recorded it)
    classes : the class names, in the order of the net's scores
    preprocessing : the :class:`cnnkit.data.Preprocessing` from stored images to the net's input
    folder : the run folder (a ``Path``), or None for a run trained in memory
    test : {"accuracy", "loss", "images"} on the test split the run held out, or None
    best : {"val_acc", "epoch"} of the best validation epoch (epoch 0: no validation)
    metadata : what the run's checkpoints record (source, classes, preprocessing, settings)
    dataset : the :class:`cnnkit.data.Dataset` the run trained on, when in memory (a loaded run
        opens its recorded source again when asked)
    seconds : the training time of this session, or None
    weights_file : the file name a loaded run's weights came from (None: in memory)
    notes : lines worth knowing (a run folder read from its last checkpoint, ...)
    """

    def __init__(self, *, model, preprocessing, classes, config: RunConfig, metadata: dict,
                 history: dict | None = None, folder=None, dataset: Dataset | None = None,
                 test: dict | None = None, best: dict | None = None, layer_stats=None,
                 seconds: float | None = None, weights_file: str | None = None, notes=()):
        self.model, self.preprocessing, self.config = model, preprocessing, config
        self.classes = tuple(classes) if classes else None
        self.metadata, self.history = metadata, history
        self.folder = None if folder is None else Path(folder)
        self.dataset, self.test, self.seconds = dataset, test, seconds
        self.best = best or _best_of(history)
        self.notes = list(notes)
        self.weights_file = weights_file
        self._layer_stats = layer_stats

    # ------------------------------------------------------------------ results
    @property
    def test_accuracy(self) -> float | None:
        """Accuracy on the test split the run held out (None: not evaluated)."""
        return None if self.test is None else float(self.test["accuracy"])

    @property
    def test_loss(self) -> float | None:
        """The test set's mean loss, or None when the run has no test result."""
        return None if self.test is None else float(self.test["loss"])

    @property
    def layer_stats(self) -> LayerStats | None:
        """The per-layer statistics recorded while training (None when none were)."""
        if self._layer_stats is None and self.folder is not None:
            path = RunFolder(self.folder).layer_stats
            if path.is_file():
                read_json(path, "layer statistics")     # the size check, before parsing
                self._layer_stats = LayerStats.load(path)
        return self._layer_stats

    # ------------------------------------------------------------------ using the net
    @property
    def net_name(self) -> str:
        """What messages call the net: its weights file (in the run folder), or "the run's
        net" for one trained in memory."""
        if self.weights_file is None:
            return "the run's net"
        return str(self.folder / self.weights_file) if self.folder is not None \
            else self.weights_file

    def check_net(self, allow_nonfinite: bool = False) -> list[str]:
        """Refuse a net whose weights or statistics hold NaN or infinite values (one line
        naming the first such array, :class:`cnnkit.finite.NonFiniteError`) unless
        ``allow_nonfinite``; returns each such array's phrase (empty for a finite net)."""
        return check_net(self.model, self.net_name, allow=allow_nonfinite)

    def predict(self, images, *, invert: str = "auto", batch_size: int | None = None,
                allow_nonfinite: bool = False) -> Predictions:
        """Class probabilities of ``images`` (paths, Pillow images, NumPy arrays of any size,
        or a batch as the data stores it), each preprocessed as in training: what
        :func:`cnnkit.predict_images` gives on this run's checkpoint, and refused as it
        refuses (a net holding NaN or infinite values unless ``allow_nonfinite``; no images,
        empty ones, or arrays of objects, complex numbers, NaN or infinite values)."""
        self.check_net(allow_nonfinite)
        return classify(self.model, self.preprocessing, self.classes, images, invert=invert,
                        batch_size=batch_size)

    def data(self, *, progress: bool = False) -> Dataset:
        """The data the run trained on: in memory, or its recorded source opened again with the
        run's test split held out again."""
        if self.dataset is None:
            source = recorded_source(self.metadata)
            if source == ARRAYS:
                raise DataError("the run trained on arrays given in memory, which it does not "
                                "keep; pass data= to evaluate it")
            self.dataset = reopen_data(self.metadata, self.preprocessing, progress=progress)
        return self.dataset

    def test_split(self, *, progress: bool = False) -> tuple[Split | None, str]:
        """(the test images the run was scored on, how they were chosen), or (None, why there
        are none): the held-out test split, its first ``limit`` images under ``limit``."""
        dataset = self.data(progress=progress)
        if dataset.test is None:
            return None, (f"{dataset.title} has no test split, and the run held none out "
                          f"(train with --test-size to hold one out)")
        split, how = dataset.test, f"the test split of {dataset.title}"
        limit = self.config.limit
        if limit is not None and limit < len(split):
            split = split.head(limit)
            how += f", its first {limit:,} images (as the run's --limit {limit} had it)"
        return split, how

    def evaluate(self, data=None, *, split: str | None = None, skip_bad: bool = False,
                 progress: bool = False, allow_nonfinite: bool = False) -> Evaluation:
        """Accuracy, per-class accuracy and confusion matrix: on the run's own data (its test
        split by default, as ``cnnkit evaluate`` on its checkpoint), or on ``data``: a source's
        text, a :class:`~cnnkit.data.Dataset`, or arrays ``(x, y)`` in the stored form of the
        training images. ``split``: "test", "train" or "all". A net holding NaN or infinite
        values is refused before any data is opened, unless ``allow_nonfinite``."""
        self.check_net(allow_nonfinite)
        if data is None:
            dataset = self.data(progress=progress)
        elif isinstance(data, str):
            dataset = reopen_data(self.metadata, self.preprocessing, data, skip_bad=skip_bad,
                                  progress=progress)
        elif isinstance(data, Dataset):
            dataset = data
        elif isinstance(data, (tuple, list)) and len(data) in (2, 4):
            dataset = arrays_dataset(*data, classes=self.classes, where="data")
        else:
            raise UsageError(f"data= takes a source's text, a Dataset or arrays (x, y); got a "
                             f"{type(data).__name__}")
        return evaluate_split(self.model, self.preprocessing, self.classes, dataset, split)

    # ------------------------------------------------------------------ writing
    def report(self, path=None, *, progress: bool = False, allow_nonfinite: bool = False,
               sections=None) -> Path:
        """Write the run's self-contained HTML page (``cnnkit report``) to ``path``, by default
        ``report.html`` in the run folder; returns its path. ``sections``: the parts to write,
        a comma-separated text or a list of names ("headline,curves", "-timing,-maps"; see
        :func:`cnnkit.report.select_sections`; None: all). A net holding NaN or infinite
        values is refused unless ``allow_nonfinite`` (the page then opens with a warning
        naming its arrays)."""
        if path is None:
            if self.folder is None:
                raise UsageError("the run was trained in memory and has no folder; give "
                                 "report(path)")
            path = RunFolder(self.folder).report
        return write_report(self, path, progress=progress, allow_nonfinite=allow_nonfinite,
                            sections=sections)

    def save(self, path, *, overwrite: bool = False) -> Path:
        """Write the net, its metadata, history and test result to the checkpoint ``path``
        (.npz, atomically); :func:`load_run` reads it back, ``cnnkit predict`` and
        ``cnnkit evaluate`` take it. An existing file is refused unless ``overwrite``."""
        path = Path(path)
        if path.suffix.lower() != ".npz":
            raise UsageError(f"{path}: a run is saved as a checkpoint, an .npz file")
        if path.exists() and not overwrite:
            raise UsageError(f"{path} exists; pass overwrite=True to replace it")
        extra = {"metadata": self.metadata, "history": self.history, "test": self.test,
                 "best": self.best}
        return save_checkpoint(path, self.model, extra=extra)

    def __repr__(self) -> str:
        data = recorded_source(self.metadata) or "unrecorded data"
        result = "not tested" if self.test is None else \
            f"test accuracy {self.test['accuracy']:.4f}"
        epochs = len(self.history["epoch"]) if self.history else 0
        where = f"folder {str(self.folder)!r}" if self.folder is not None else "in memory"
        return (f"Run({self.config.model} on {data}: {result}, {epochs} epoch"
                f"{'s' if epochs != 1 else ''}, {where})")


def _best_of(history) -> dict:
    """{"val_acc", "epoch"} of the best validation epoch (the earliest on a tie); epoch 0
    without validation."""
    val = (history or {}).get("val_acc") or []
    epochs = (history or {}).get("epoch") or []
    if not val:
        return {"val_acc": -1.0, "epoch": 0}
    best = max(range(len(val)), key=lambda i: (val[i], -i))
    # epochs count from 1; a damaged history's numbers (missing, infinite) are not trusted
    epoch = epochs[best] if best < len(epochs) and float(epochs[best]).is_integer() \
        else best + 1
    return {"val_acc": float(val[best]), "epoch": int(epoch)}


def load_run(path) -> Run:
    """The :class:`Run` in a run folder (its ``model.npz``, else the last ``checkpoint.npz``,
    with ``history.json`` and ``test.json``), or in a checkpoint written by a run
    (``checkpoint.npz``, ``model.npz``, or :meth:`Run.save`).

    Raises
    ------
    CheckpointError
        When there are no weights, they are damaged, or they were not written by a run (no run
        settings); RunFileError for a damaged history or test result; FileNotFoundError for
        a path that does not exist.
    """
    path = Path(path)
    if not path.exists():
        what = "checkpoint" if path.suffix.lower() == ".npz" else "run folder"
        raise FileNotFoundError(f"{what} not found: {path}")
    notes = []
    if path.is_dir():
        folder = RunFolder(path)
        weights = folder.weights()
        if weights is None:
            raise CheckpointError(f"{path} holds no model.npz (nor checkpoint.npz): not a run "
                                  f"folder of `cnnkit train`, or one that has not finished an "
                                  f"epoch")
        if weights == folder.checkpoint:
            notes.append("model.npz is not written yet (the run is still training, or stopped "
                         "early): the weights are the last epoch's, from checkpoint.npz.")
    else:
        weights = path
        parent = RunFolder(path.parent)
        folder = parent if path.name in (RunFolder.MODEL, RunFolder.CHECKPOINT) \
            and parent.history.is_file() else None
    ckpt = load_checkpoint(weights)
    meta = ckpt.extra.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("settings"), dict):
        raise CheckpointError(f"{weights} was not written by a training run (`cnnkit train`, "
                              f"cnnkit.fit): it records no run settings")
    config = RunConfig.from_record(meta["settings"], str(weights))
    # a net holding NaN still loads, to be looked at; what serves its answers refuses it
    # (Run.check_net) unless asked
    model, preprocessing, classes, meta = load_for_inference(ckpt, allow_nonfinite=True)
    trainer = ckpt.extra.get("trainer") or {}
    if folder is not None:
        history = read_json(folder.history, "history", _is_history)
        test = read_json(folder.test, "test result", _is_test)
    else:
        history = trainer.get("history", ckpt.extra.get("history"))
        test = ckpt.extra.get("test")
        if history is not None and not _is_history(history):
            raise CheckpointError(f"{weights}: the run's history is damaged")
        if test is not None and not _is_test(test):
            raise CheckpointError(f"{weights}: the run's test result is damaged")
    run = Run(model=model, preprocessing=preprocessing, classes=classes, config=config,
              metadata=meta, history=history, folder=None if folder is None else folder.path,
              test=test, weights_file=weights.name, notes=notes)
    return run
