"""Trainer: epochs of shuffled mini-batches, validation, history, best weights, checkpoints.

After CS231n's Solver (explicit model API, histories, best validation weights, per-epoch
schedules, batched accuracy) with its defects fixed: a full permutation per epoch from a
Generator, atomic ``.npz`` + JSON checkpoints, exact resume, unknown options rejected (keyword-only
arguments), a clean stop on a non-finite loss, and Ctrl-C that saves before it exits.

Exact resume: the checkpoint holds everything the next batch depends on (weights and buffers,
optimizer moments, schedule, the shuffling Generator, every dropout Generator, the epoch's batch
order and how far into it training got), so a resumed run ends with bit-identical weights.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np

from .functional.losses import get_loss
from .io import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["Trainer", "TrainingDiverged", "TrainingInterrupted", "evaluate", "predict"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``fit``: a checkpoint of the state at the last finished batch was written."""


def predict(model, x, batch_size: int = 1000, preprocess: Callable | None = None) -> np.ndarray:
    """Class scores of ``x`` in eval mode, computed in batches; (N, num_classes).

    ``x`` is an array or anything indexed like one (a :class:`cnnkit.data.Images` view);
    ``preprocess(batch)``, e.g. a :class:`cnnkit.data.Preprocessing`, is applied to each batch.
    """
    was_training = model.training
    model.eval()
    try:
        parts = []
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            parts.append(model.forward(xb if preprocess is None else preprocess(xb)))
        return np.concatenate(parts)
    finally:
        model.train(was_training)


def evaluate(model, x, y: np.ndarray, loss="softmax", batch_size: int = 1000,
             preprocess: Callable | None = None) -> tuple[float, float]:
    """Mean loss and accuracy of the model on (x, y) in eval mode (``preprocess`` as in
    :func:`predict`)."""
    scores = predict(model, x, batch_size, preprocess)
    value, _ = get_loss(loss)(scores, y)
    return float(value), float(np.mean(scores.argmax(axis=1) == y))


def _check_position(state: dict, path):
    """(epoch, order, batch, sums) of a checkpoint's trainer state, checked: the history, best
    and counters have their types, the order is a permutation, the batch lies inside it."""
    def bad(what):
        return CheckpointError(f"{path}: the trainer state is damaged: {what}")

    def count(value):
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0

    for key in ("epoch", "batch", "history", "best", "rng", "model_rngs", "sums", "order"):
        if key not in state:
            raise bad(f"no {key!r}")
    if not count(state["epoch"]) or not count(state["batch"]):
        raise bad(f"epoch {state['epoch']!r} and batch {state['batch']!r} must be counts")
    history, best = state["history"], state["best"]
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()) \
            or not isinstance(best, dict) or not isinstance(best.get("val_acc"), (int, float)):
        raise bad("its history or best epoch is not what a Trainer writes")
    sums = state["sums"]
    if not isinstance(sums, list) or len(sums) != 3 \
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sums):
        raise bad(f"sums {sums!r} must be 3 numbers")
    order = state["order"]
    if order is not None:
        order = np.asarray(order)
        if order.ndim != 1 or order.dtype.kind not in "iu" \
                or not np.array_equal(np.sort(order), np.arange(len(order))):
            raise bad("the epoch's batch order is not a permutation")
        if state["batch"] > len(order):     # batches of one image at the most
            raise bad(f"batch {state['batch']} lies past the epoch's {len(order)} images")
    return int(state["epoch"]), order, int(state["batch"]), \
        [float(sums[0]), int(sums[1]), int(sums[2])]


class _Progress:
    """A tqdm bar over one epoch's batches when tqdm is available and wanted; else silent."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:      # the bar is a nicety; training does not depend on it
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=desc, unit="batch", leave=False,
                                dynamic_ncols=True)

    def update(self, n: int, **postfix):
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class Trainer:
    """Train a model with an optimizer on in-memory arrays.

    Parameters
    ----------
    model : ``cnnkit.nn.Module`` producing (N, num_classes) scores
    optimizer : a ``cnnkit.optim`` optimizer over ``model.named_parameters()``
    loss : "softmax" or "svm"
    scheduler : optional ``cnnkit.optim`` schedule, stepped once per epoch
    batch_size, epochs : mini-batch size and total number of epochs
    seed : seeds the Generator that shuffles (a full permutation per epoch) and augments
    augment : optional callable ``(x_batch, rng) -> x_batch`` applied to training batches
    preprocess : optional callable ``x_batch -> x_batch`` applied to every batch, training and
        validation, before ``augment`` (a :class:`cnnkit.data.Preprocessing`: the stored images
        are then converted a batch at a time, never all at once)
    checkpoint : path of the checkpoint written after every epoch (and on Ctrl-C); None: none
    metadata : JSON-able dict stored in every checkpoint (dataset, normalisation, classes)
    progress : show a progress bar (tqdm) with loss, accuracy and images/s
    log : callable receiving one summary line per epoch (default: none)
    restore_best : at the end of ``fit``, load the weights of the best validation epoch
    on_epoch_end : optional callable ``(trainer) -> None`` run after each epoch's checkpoint

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import nn, optim
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.standard_normal((20, 4)).astype(np.float32), rng.integers(0, 3, 20)
    >>> model = nn.Sequential(nn.Linear(4, 3, rng=rng))
    >>> trainer = Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), batch_size=5,
    ...                   epochs=2, progress=False)
    >>> len(trainer.fit((x, y), (x, y))["val_acc"])
    2
    """

    def __init__(self, model, optimizer, *, loss="softmax", scheduler=None, batch_size: int = 64,
                 epochs: int = 10, seed: int = 0, augment: Callable | None = None,
                 checkpoint=None, metadata: dict | None = None, progress: bool = True,
                 log: Callable[[str], None] | None = None, restore_best: bool = True,
                 eval_batch_size: int = 1000, on_epoch_end: Callable | None = None,
                 preprocess: Callable | None = None):
        for name, value in (("batch_size", batch_size), ("epochs", epochs),
                            ("eval_batch_size", eval_batch_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Trainer {name} must be a positive int, got {value!r}")
        self.loss_name = loss
        self.loss_fn = get_loss(loss)
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.batch_size, self.epochs, self.seed = int(batch_size), int(epochs), seed
        self.augment, self.preprocess = augment, preprocess
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.metadata = dict(metadata or {})
        self.progress, self.log = progress, log or (lambda line: None)
        self.restore_best, self.eval_batch_size = restore_best, int(eval_batch_size)
        self.on_epoch_end = on_epoch_end
        self.rng = np.random.default_rng(seed)
        self.epoch = 0                      # completed epochs
        self.history = {k: [] for k in ("epoch", "train_loss", "train_acc", "val_loss",
                                        "val_acc", "lr", "seconds")}
        self.best = {"val_acc": -1.0, "epoch": 0}
        self.best_state = None
        # position inside an interrupted epoch: its batch order, batches done, running sums
        self._order, self._batch, self._sums = None, 0, [0.0, 0, 0]
        self._stop_requested = False
        self._consistent = True     # the state is that of a batch boundary (safe to save)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """The trainer's own state (JSON-able, with arrays) for a checkpoint's ``extra``."""
        return {
            "trainer": {
                "epoch": self.epoch, "history": self.history, "best": self.best,
                "rng": self.rng.bit_generator.state, "model_rngs": self.model.rng_states(),
                "order": self._order, "batch": self._batch, "sums": list(self._sums),
                "config": {"loss": self.loss_name, "batch_size": self.batch_size,
                           "epochs": self.epochs, "seed": self.seed},
            },
            "best_state": self.best_state,
            "metadata": self.metadata,
        }

    def save(self, path=None) -> Path:
        path = Path(path or self.checkpoint)
        return save_checkpoint(path, self.model, optimizer=self.optimizer,
                               scheduler=self.scheduler, extra=self.state_dict())

    def resume(self, path) -> "Trainer":
        """Load a checkpoint written by a Trainer: weights, optimizer, schedule, position, rngs.

        ``path`` is the checkpoint's path, or a :class:`cnnkit.io.Checkpoint` already loaded.
        The model must have the checkpoint's architecture (``load_state_dict`` checks names and
        shapes). Raises ``CheckpointError`` for a checkpoint without trainer state.
        """
        ckpt = path if isinstance(path, Checkpoint) else load_checkpoint(path)
        path = ckpt.path
        state = ckpt.extra.get("trainer")
        if state is None:
            raise CheckpointError(f"{path} holds no trainer state (not written by Trainer)")
        position = _check_position(state, path)
        try:
            self.model.load_state_dict(ckpt.model_state)
            if ckpt.optimizer is not None:
                self.optimizer.load_state_dict(ckpt.optimizer)
            if self.scheduler is not None and ckpt.scheduler is not None:
                self.scheduler.load_state_dict(ckpt.scheduler)
            self.model.set_rng_states(state["model_rngs"])
            rng = np.random.default_rng()
            rng.bit_generator.state = state["rng"]
        except (ValueError, RuntimeError, KeyError, TypeError, IndexError) as err:
            raise CheckpointError(f"{path} does not fit this model/optimizer: {err}") from err
        self.rng = rng
        self.epoch, self._order, self._batch, self._sums = position
        self.history, self.best = state["history"], state["best"]
        best_state = ckpt.extra.get("best_state")
        self.best_state = best_state if isinstance(best_state, dict) else None
        return self

    # ------------------------------------------------------------------ Ctrl-C
    @contextmanager
    def _deferred_interrupt(self):
        """First Ctrl-C: finish the current batch, save, stop. Second: stop at once; a
        checkpoint is then saved only if the stop fell between two batches (see ``fit``)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    # ------------------------------------------------------------------ training
    def _train_epoch(self, x, y):
        n = len(x)
        if self._order is not None and len(self._order) != n:
            raise ValueError(f"the resumed epoch's batch order covers {len(self._order)} images, "
                             f"but the training data holds {n}: it is not the data the run "
                             f"was saved with")
        if self._order is None:                   # a fresh epoch (not resuming inside one)
            self._consistent = False
            self._order, self._batch, self._sums = self.rng.permutation(n), 0, [0.0, 0, 0]
            self._consistent = True
        num_batches = math.ceil(n / self.batch_size)
        bar = _Progress(num_batches, f"epoch {self.epoch + 1}/{self.epochs}", self.progress)
        bar.update(self._batch)
        self.model.train()
        start, images = time.perf_counter(), 0
        try:
            while self._batch < num_batches:
                # From here until the counters below are advanced, the weights, the optimizer,
                # the Generators and the position disagree: a stop in between saves nothing.
                self._consistent = False
                idx = self._order[self._batch * self.batch_size:(self._batch + 1) * self.batch_size]
                xb, yb = x[idx], y[idx]
                if self.preprocess is not None:
                    xb = self.preprocess(xb)
                if self.augment is not None:
                    xb = self.augment(xb, self.rng)
                self.optimizer.zero_grad()
                scores = self.model.forward(xb)
                loss, dscores = self.loss_fn(scores, yb)
                if not np.isfinite(loss):
                    raise TrainingDiverged(
                        f"the loss became {loss} at epoch {self.epoch + 1}, batch "
                        f"{self._batch + 1}; try a lower learning rate"
                        + (f"; the last good checkpoint is {self.checkpoint} (epoch {self.epoch})"
                           if self.checkpoint is not None and self.checkpoint.exists() else ""))
                self.model.backward(dscores, input_grad=False)
                self.optimizer.step()
                self._batch += 1
                self._sums[0] += loss * len(idx)
                self._sums[1] += int(np.sum(scores.argmax(axis=1) == yb))
                self._sums[2] += len(idx)
                self._consistent = True
                images += len(idx)
                rate = images / max(time.perf_counter() - start, 1e-9)
                bar.update(1, loss=f"{loss:.4f}", acc=f"{self._sums[1] / self._sums[2]:.4f}",
                           img_s=f"{rate:.0f}")
                if self._stop_requested:
                    raise KeyboardInterrupt
        finally:
            bar.close()
        loss_sum, correct, seen = self._sums
        self._order, self._batch, self._sums = None, 0, [0.0, 0, 0]
        return loss_sum / seen, correct / seen

    def fit(self, train, val=None) -> dict:
        """Train for the remaining epochs (all of them, or those after a resumed checkpoint).

        ``train`` and ``val`` are ``(x, y)`` pairs of arrays (x may be a lazy
        :class:`cnnkit.data.Images` view, read a batch at a time). Returns the history: per
        epoch the train loss and accuracy (running, over the epoch's batches in train mode), the
        validation loss and accuracy (eval mode), the learning rate and the seconds taken.

        Raises
        ------
        TrainingDiverged
            On a NaN or infinite loss (the checkpoint of the last finished epoch is kept).
        TrainingInterrupted
            On Ctrl-C, after writing a checkpoint of the state at the last finished batch. A
            second Ctrl-C stops at once; a checkpoint is written then only if training stood
            between two batches, so a saved state always resumes exactly.
        """
        x, y = train
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"train x and y must be non-empty and of equal length, got "
                             f"{len(x)} and {len(y)}")
        self._stop_requested, self._consistent = False, True
        with self._deferred_interrupt():
            while self.epoch < self.epochs:
                t0 = time.perf_counter()
                lr = self.optimizer.lr
                try:
                    train_loss, train_acc = self._train_epoch(x, y)
                except KeyboardInterrupt as err:
                    if self.checkpoint is None:
                        where = ""
                    elif self._consistent:
                        self.save()
                        where = f"; saved {self.checkpoint}"
                    else:   # a second Ctrl-C inside a batch: the last checkpoint stays as it was
                        where = (f"; stopped inside a batch, so {self.checkpoint} keeps its "
                                 f"earlier state" if self.checkpoint.exists() else
                                 "; stopped inside a batch, before any checkpoint")
                    raise TrainingInterrupted(
                        f"interrupted in epoch {self.epoch + 1} after batch {self._batch}"
                        f"{where}") from err
                self.epoch += 1
                h = self.history
                h["epoch"].append(self.epoch)
                h["train_loss"].append(train_loss)
                h["train_acc"].append(train_acc)
                h["lr"].append(lr)
                line = (f"epoch {self.epoch}/{self.epochs}  loss {train_loss:.4f}  "
                        f"acc {train_acc:.4f}")
                if val is not None:
                    val_loss, val_acc = evaluate(self.model, val[0], val[1], self.loss_name,
                                                 self.eval_batch_size, self.preprocess)
                    h["val_loss"].append(val_loss)
                    h["val_acc"].append(val_acc)
                    line += f"  val_loss {val_loss:.4f}  val_acc {val_acc:.4f}"
                    if val_acc > self.best["val_acc"]:
                        self.best = {"val_acc": val_acc, "epoch": self.epoch}
                        self.best_state = self.model.state_dict()
                if self.scheduler is not None:
                    self.scheduler.step()
                h["seconds"].append(time.perf_counter() - t0)
                self.log(line + f"  lr {lr:.3g}  {h['seconds'][-1]:.1f}s")
                if self.checkpoint is not None:
                    self.save()
                if self.on_epoch_end is not None:
                    self.on_epoch_end(self)
        if self.restore_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.history
