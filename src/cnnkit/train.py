"""Trainer: epochs of shuffled mini-batches, validation, history, best weights, checkpoints.

After CS231n's Solver (explicit model API, histories, best validation weights, per-epoch
schedules, batched accuracy) with its defects fixed: a full permutation per epoch from a
Generator, atomic ``.npz`` + JSON checkpoints, exact resume, unknown options rejected (keyword-only
arguments), a clean stop on a non-finite loss (naming the data when the batch itself holds NaN),
and a stop signal (Ctrl-C, SIGTERM, SIGHUP: :mod:`cnnkit.interrupts`) that saves before it exits.

The progress bar, the epoch log line and the checkpoint are callbacks (:mod:`cnnkit.callbacks`)
built from the Trainer's arguments; a user's own run beside them, at every batch and epoch
boundary, without touching the Trainer.

Exact resume: the checkpoint holds everything the next batch depends on (weights and buffers,
optimizer moments, schedule, the shuffling Generator, every dropout Generator, the epoch's batch
order and how far into it training got, and the state of callbacks that keep one, such as
EarlyStopping's patience), so a resumed run ends with bit-identical weights.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .callbacks import (Callback, CallbackList, EpochLog, LambdaCallback, ModelCheckpoint,
                        ProgressBar, in_notebook)
from .data.errors import DataError
from .data.loader import BatchOrder
from .errors import CnnkitError, UsageError
from .functional.losses import get_loss
from .interrupts import Interrupted, acted_on, deferred, interrupted_by, signal_of
from .io import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .nn import Module

__all__ = ["Trainer", "TrainingDiverged", "TrainingInterrupted", "NonFiniteBatch", "evaluate",
           "predict"]


class TrainingDiverged(CnnkitError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class NonFiniteBatch(DataError):
    """A training batch, as the net sees it (after preprocessing and augmentation), holds NaN or
    infinite values: the data is at fault, not the learning rate."""


class TrainingInterrupted(Interrupted):
    """A stop signal (Ctrl-C, SIGTERM, SIGHUP: ``signum``) during ``fit``: a checkpoint of the
    state at the last finished batch was written (where the run has one). ``run`` is the
    partial :class:`cnnkit.Run` when ``cnnkit.fit`` raised it, None when ``Trainer.fit`` did."""

    def __init__(self, message: str = "", run=None, *, signum: int = signal.SIGINT, at_once: bool = False):
        super().__init__(message, signum=signum, at_once=at_once)
        self.run = run


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


def _check_parts(model, optimizer, scheduler) -> None:
    """Refuse, in one line, a model that is not a Module, an optimizer or schedule without the
    methods the Trainer calls, and an optimizer over parameters that are not the model's (it
    would train nothing of it)."""
    if not isinstance(model, Module):
        raise UsageError(f"Trainer model must be a cnnkit.nn.Module, got {_kind(model)}")
    missing = [name for name in ("zero_grad", "step", "state_dict", "load_state_dict")
               if not callable(getattr(optimizer, name, None))]
    if missing or not hasattr(optimizer, "lr"):
        raise UsageError(f"Trainer optimizer must be a cnnkit.optim optimizer (SGD, Adam, ...) "
                         f"over model.named_parameters(), got {_kind(optimizer)}")
    mine = {id(p) for p in model.parameters()}
    params = getattr(optimizer, "params", None)
    strays = [name for name, p in params.items() if id(p) not in mine] \
        if isinstance(params, dict) else []
    if strays:
        raise UsageError(f"Trainer optimizer updates {strays[0]!r}, which is not a parameter of "
                         f"the model (built over another net?); build it over this model's "
                         f"named_parameters()")
    if scheduler is not None and not all(
            callable(getattr(scheduler, name, None))
            for name in ("step", "state_dict", "load_state_dict")):
        raise UsageError(f"Trainer scheduler must be a cnnkit.optim schedule (StepLR, CosineLR, "
                         f"...) or None, got {_kind(scheduler)}")


def _kind(value) -> str:
    """``None`` or "a NAME" for a message about a value of the wrong kind."""
    return "None" if value is None else f"a {type(value).__name__}"


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


def _nonfinite_rows(xb) -> np.ndarray | None:
    """The rows of a batch that hold NaN or infinite values, or None when every value is
    finite (or the batch is not numbers the check applies to)."""
    try:
        values = np.asarray(xb)
        if values.dtype.kind not in "fc" or values.ndim == 0:
            return None
        finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    except (TypeError, ValueError):
        return None
    bad = np.flatnonzero(~finite)
    return bad if len(bad) else None


def _no_request() -> None:
    return None


class Trainer:
    """Train a model with an optimizer on in-memory arrays.

    The history (``fit``'s result, also ``trainer.history``) holds per epoch "epoch",
    "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds" and "iterations" (the
    mini-batches trained by the end of the epoch), and per iteration "batch_loss" (each
    mini-batch's loss, the curve the course plots beside the per-epoch one).

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
    checkpoint : path of the checkpoint written after every epoch (and on a stop signal); None:
        none (a :class:`cnnkit.callbacks.ModelCheckpoint`)
    metadata : JSON-able dict stored in every checkpoint (dataset, normalisation, classes)
    progress : show a progress bar (tqdm; a widget in a notebook) with loss, accuracy and images/s
    log : callable receiving one summary line per epoch; "auto" (the default): ``print`` in a
        notebook, none elsewhere; None: none
    restore_best : at the end of ``fit``, load the weights of the best validation epoch
    callbacks : :class:`cnnkit.callbacks.Callback` objects run at the batch and epoch boundaries,
        after the progress bar and the log and before the checkpoint, which saves the state
        they keep (``Callback.state_dict``)
    on_epoch_end : optional callable ``(trainer) -> None`` run after each epoch's checkpoint
        (shorthand for a :class:`cnnkit.callbacks.LambdaCallback`)
    distributed : optional :class:`cnnkit.distributed.DataParallel`: this process is one of
        several MPI ranks that train the model together, each on its shard of every batch of
        ``batch_size`` (which the ranks must divide), with the gradients, the epoch's loss and
        accuracy and the validation summed over the ranks. Give the progress bar, the log and
        the checkpoint to one rank (rank 0).

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
                 log: Callable[[str], None] | str | None = "auto", restore_best: bool = True,
                 eval_batch_size: int = 1000, on_epoch_end: Callable | None = None,
                 preprocess: Callable | None = None, callbacks=(), distributed=None):
        for name, value in (("batch_size", batch_size), ("epochs", epochs),
                            ("eval_batch_size", eval_batch_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise UsageError(f"Trainer {name} must be a positive int, got {value!r}")
        _check_parts(model, optimizer, scheduler)
        self.distributed = distributed
        if distributed is not None:
            distributed.check_batch(int(batch_size))
        self.loss_name = loss
        try:
            self.loss_fn = get_loss(loss)
        except ValueError as err:
            raise UsageError(f"Trainer {err}") from None
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.batch_size, self.epochs, self.seed = int(batch_size), int(epochs), seed
        self.augment, self.preprocess = augment, preprocess
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.metadata = dict(metadata or {})
        self.restore_best, self.eval_batch_size = restore_best, int(eval_batch_size)
        if isinstance(log, str):
            if log != "auto":
                raise ValueError(f"Trainer log must be a callable, 'auto' or None, got {log!r}")
            log = print if in_notebook() else None
        if log is not None and not callable(log):
            raise TypeError(f"Trainer log must be a callable, 'auto' or None, got "
                            f"{type(log).__name__}")
        if isinstance(callbacks, Callback):
            callbacks = [callbacks]
        # the checkpoint after the user's callbacks: it saves what they did at the epoch's end
        # (EarlyStopping's counters, a stop)
        built_in = ([ProgressBar()] if progress else []) + \
            ([EpochLog(log)] if log is not None else [])
        saving = [ModelCheckpoint(self.checkpoint)] if self.checkpoint is not None else []
        extra = [LambdaCallback(on_epoch_end=lambda epoch, logs: on_epoch_end(self))] \
            if on_epoch_end is not None else []
        self.callbacks = CallbackList([*built_in, *callbacks, *saving, *extra])
        self.stop_training = False          # a callback sets it to end fit after this epoch
        self.rng = np.random.default_rng(seed)
        self.epoch = 0                      # completed epochs
        self.iteration = 0                  # mini-batches trained in the whole run
        self.history = {k: [] for k in ("epoch", "train_loss", "train_acc", "val_loss",
                                        "val_acc", "lr", "seconds", "iterations",
                                        "batch_loss")}
        self.best = {"val_acc": -1.0, "epoch": 0}
        self.best_state = None
        # position inside an interrupted epoch: its batch order, batches done, running sums
        self._order, self._batch, self._sums = None, 0, [0.0, 0, 0]
        self._requested = _no_request   # what fit's deferral says of a stop signal
        self._agreed_stop = False   # data-parallel: the ranks agreed to stop after this batch
        self._consistent = True     # the state is that of a batch boundary (safe to save)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """The trainer's own state (JSON-able, with arrays) for a checkpoint's ``extra``."""
        return {
            "trainer": {
                "epoch": self.epoch, "history": self.history, "best": self.best,
                "rng": self.rng.bit_generator.state, "model_rngs": self.model.rng_states(),
                "order": self._order, "batch": self._batch, "sums": list(self._sums),
                "iteration": self.iteration,
                "callbacks": self.callbacks.state_dict(),
                "config": {"loss": self.loss_name, "batch_size": self.batch_size,
                           "epochs": self.epochs, "seed": self.seed},
            },
            "best_state": self.best_state,
            "metadata": self.metadata,
        }

    def save(self, path=None) -> Path:
        """Write the checkpoint (weights, optimizer, schedule, position, callbacks' state)
        to ``path``, by default the Trainer's ``checkpoint``; returns the path."""
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
        for key in ("iterations", "batch_loss"):     # absent from checkpoints of older runs
            self.history.setdefault(key, [])
        iteration = state.get("iteration", len(self.history["batch_loss"]))
        self.iteration = int(iteration) if isinstance(iteration, (int, np.integer)) \
            and not isinstance(iteration, bool) and iteration >= 0 else 0
        best_state = ckpt.extra.get("best_state")
        self.best_state = best_state if isinstance(best_state, dict) else None
        try:      # absent from checkpoints written before callbacks kept state: none is given
            self.callbacks.load_state_dict(state.get("callbacks", {}))
        except ValueError as err:
            raise CheckpointError(f"{path}: the trainer state is damaged: {err}") from err
        return self

    # ------------------------------------------------------------------ stop signals
    def _stop_now(self) -> bool:
        """Whether to stop at this safe point (a batch or epoch boundary): a stop signal came
        (Ctrl-C, SIGTERM, SIGHUP), or, data-parallel, the ranks agreed that one came to some."""
        if self.distributed is not None:
            return self._agreed_stop
        return self._requested() is not None

    def _interrupted(self, err: BaseException, where: str | None = None) -> TrainingInterrupted:
        """The TrainingInterrupted for a stop ``err`` (``where``: when it came, if not at or
        inside a batch), once the callbacks did what they do on a stop (the checkpoint saves
        when the state is a batch boundary's)."""
        if self.distributed is not None and self._consistent and self._agreed_stop:
            self.distributed.sync_buffers()      # every rank stopped after the same batch
        if where is None:
            where = f"after epoch {self.epoch}" if self._order is None \
                else f"in epoch {self.epoch + 1} after batch {self._batch}"
        done = self.callbacks.interrupt(self._consistent)
        signum = signal_of(err)
        return TrainingInterrupted(f"{interrupted_by(signum)} {where}"
                                   + "".join(f"; {d}" for d in done), signum=signum,
                                   at_once=getattr(err, "at_once", False))

    # ------------------------------------------------------------------ training
    def _train_epoch(self, x, y):
        n = len(x)
        if self._stop_now():                      # asked during the last epoch's end
            raise acted_on()
        if self._order is not None and len(self._order) != n:
            raise ValueError(f"the resumed epoch's batch order covers {len(self._order)} images, "
                             f"but the training data holds {n}: it is not the data the run "
                             f"was saved with")
        # The epoch's order and position; self._order and self._batch hold the position at the
        # last batch boundary, which is what a checkpoint saves.
        batches = BatchOrder(n, self.batch_size, self.rng, what="Trainer")
        if self._order is None:                   # a fresh epoch (not resuming inside one)
            self._consistent = False
            self._order, self._batch, self._sums = batches.start_epoch(), 0, [0.0, 0, 0]
            self._consistent = True
        else:
            batches.load_state_dict({"order": self._order, "batch": self._batch})
        num_batches = len(batches)
        callbacks = self.callbacks
        callbacks.epoch_begin(self.epoch, {"num_batches": num_batches, "batch": self._batch})
        self.model.train()
        while self._batch < num_batches:
            batch = self._batch
            callbacks.batch_begin(batch, {"iteration": self.iteration + 1,
                                          "num_batches": num_batches})
            # From here until the counters below are advanced, the weights, the optimizer,
            # the Generators and the position disagree: a stop in between saves nothing.
            self._consistent = False
            idx = next(batches)                   # batch `batch` of the epoch's order
            xb, yb = x[idx], y[idx]
            if self.preprocess is not None:
                xb = self.preprocess(xb)
            if self.augment is not None:
                xb = self.augment(xb, self.rng)
            self.optimizer.zero_grad()
            if self.distributed is None:
                scores = self.model.forward(xb)
                loss, dscores = self.loss_fn(scores, yb)
                self._check_finite(loss, batch, xb, idx)
                self.model.backward(dscores, input_grad=False)
                correct = int(np.sum(scores.argmax(axis=1) == yb))
            else:
                loss, correct = self._distributed_step(xb, yb, batch, idx)
            self.optimizer.step()
            loss = float(loss)
            self._batch = batches.batch
            self.iteration += 1
            self.history["batch_loss"].append(loss)
            self._sums[0] += loss * len(idx)
            self._sums[1] += correct
            self._sums[2] += len(idx)
            self._consistent = True
            callbacks.batch_end(batch, {"loss": loss, "acc": correct / len(idx),
                                        "size": len(idx), "iteration": self.iteration,
                                        "num_batches": num_batches})
            # ranks stop together, after the batch whose allreduce carried a rank's request
            if self._stop_now():
                raise acted_on()
        loss_sum, correct, seen = self._sums
        self._consistent = False                  # until the epoch's end is recorded
        self._order, self._batch, self._sums = None, 0, [0.0, 0, 0]
        return loss_sum / seen, correct / seen

    def _check_finite(self, loss, batch, xb, idx) -> None:
        """Stop on a loss that is not finite: as bad data when the batch the net saw (``xb``,
        the images ``idx`` of the training data) holds NaN or infinite values, else as
        divergence. The batch is looked at only then, so a finite loss costs nothing more."""
        if np.isfinite(loss):
            return
        bad = _nonfinite_rows(xb)
        if bad is not None:
            raise NonFiniteBatch(
                f"the training batch holds NaN or infinite values (epoch {self.epoch + 1}, batch "
                f"{batch + 1}: {len(bad)} of its {len(xb)} images, the first being image "
                f"{int(idx[bad[0]])} of the training data, after preprocessing); the data is "
                f"at fault, not the learning rate")
        raise TrainingDiverged(
            f"the loss became {loss} at epoch {self.epoch + 1}, batch "
            f"{batch + 1}; try a lower learning rate"
            + (f"; the last good checkpoint is {self.checkpoint} (epoch {self.epoch})"
               if self.checkpoint is not None and self.checkpoint.exists() else ""))

    def _distributed_step(self, xb, yb, batch, idx):
        """Forward and backward on this rank's rows of the batch, then the one allreduce:
        returns the global batch's mean loss and correct count, the gradients summed in place.

        Each rank scales its loss gradient by n_r / n, so the sum over the ranks is the
        gradient of the global batch's mean loss. A rank with no row of a short last batch
        trains one row with weight 0 (so that it takes part in every collective)."""
        dp, n = self.distributed, len(yb)
        lo, hi = dp.shard(n)
        mine = slice(lo, hi) if hi > lo else slice(0, 1)
        with dp.step(lo, hi, n):
            scores = self.model.forward(xb[mine])
            loss, dscores = self.loss_fn(scores, yb[mine])
            count = hi - lo
            self.model.backward(dscores * dscores.dtype.type(count / n), input_grad=False)
        correct = int(np.sum(scores.argmax(axis=1) == yb[mine])) if count else 0
        loss_sum, correct, stop = dp.reduce(float(loss) * count, correct,
                                            self._requested() is not None)
        self._agreed_stop = stop
        loss = loss_sum / n
        self._check_finite(loss, batch, xb, idx)   # on every rank alike: the global loss and
                                                   # the whole batch, which every rank holds
        return loss, correct

    def _evaluate(self, val) -> tuple[float, float]:
        """Validation loss and accuracy; over the ranks, each evaluating its share."""
        x, y = val
        dp = self.distributed
        if dp is None:
            return evaluate(self.model, x, y, self.loss_name, self.eval_batch_size,
                            self.preprocess)
        lo, hi = dp.shard(len(y))
        loss = accuracy = 0.0
        if hi > lo:
            loss, accuracy = evaluate(self.model, x[lo:hi], y[lo:hi], self.loss_name,
                                      self.eval_batch_size, self.preprocess)
        loss_sum, correct, count = dp.evaluate_sums(loss * (hi - lo),
                                                    round(accuracy * (hi - lo)), hi - lo)
        return loss_sum / count, correct / count

    def fit(self, train, val=None) -> dict:
        """Train for the remaining epochs (all of them, or those after a resumed checkpoint).

        ``train`` and ``val`` are ``(x, y)`` pairs of arrays (x may be a lazy
        :class:`cnnkit.data.Images` view, read a batch at a time). Returns the history (see the
        class docstring): per epoch the train loss and accuracy (running, over the epoch's
        batches in train mode), the validation loss and accuracy (eval mode), the learning rate
        and the seconds taken; per iteration the mini-batch's loss.

        Raises
        ------
        TrainingDiverged
            On a NaN or infinite loss (the checkpoint of the last finished epoch is kept).
        NonFiniteBatch
            When a training batch itself holds NaN or infinite values.
        TrainingInterrupted
            On a stop signal (Ctrl-C, SIGTERM, SIGHUP), after writing a checkpoint of the state
            at the last finished batch. A second one stops at once; a checkpoint is written then
            only if training stood between two batches, so a saved state always resumes exactly.
        """
        x, y = train
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"train x and y must be non-empty and of equal length, got "
                             f"{len(x)} and {len(y)}")
        if self.preprocess is None and np.dtype(getattr(x, "dtype", np.float32)).kind in "iub":
            raise ValueError(f"the training images are {np.dtype(x.dtype).name} pixels and the "
                             f"Trainer has no preprocess= to make them the net's floats; give "
                             f"preprocess=cnnkit.data.Preprocessing(...), or train with "
                             f"cnnkit.fit((x, y), model), which measures, applies and records it")
        self._consistent, self.stop_training, self._agreed_stop = True, False, False
        if self.distributed is not None:
            self.distributed.attach(self.model)
        self.callbacks.set_trainer(self)
        with deferred() as self._requested:
            try:
                self._fit_epochs(x, y, val)
            except TrainingInterrupted:
                raise
            except KeyboardInterrupt as err:      # a stop outside the epochs' batches
                raise self._interrupted(err) from err
            finally:
                self._requested = _no_request
        if self.restore_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.history

    def _fit_epochs(self, x, y, val) -> None:
        """The epochs left, between the callbacks' train begin and end; a stop asked during
        the last epoch's end stops here, before ``fit`` returns."""
        completed = False
        self.callbacks.train_begin({"epochs": self.epochs})
        try:
            while self.epoch < self.epochs and not self.stop_training:
                self._fit_epoch(x, y, val)
            if self._stop_now():
                raise acted_on()
            completed = True
        finally:
            self.callbacks.train_end({"epochs": self.epochs, "completed": completed})

    def _fit_epoch(self, x, y, val) -> None:
        """One epoch: train, validate, step the schedule, record, run the epoch-end callbacks."""
        t0 = time.perf_counter()
        lr = self.optimizer.lr
        number = self.epoch + 1
        try:
            train_loss, train_acc = self._train_epoch(x, y)
        except KeyboardInterrupt as err:
            raise self._interrupted(err) from err
        try:
            self._end_epoch(train_loss, train_acc, val, lr, t0)
        except KeyboardInterrupt as err:      # a second signal: the epoch is half recorded
            raise self._interrupted(err, f"at the end of epoch {number}") from err
        self._consistent = True

    def _end_epoch(self, train_loss, train_acc, val, lr, t0) -> None:
        """Validate, keep the best weights, step the schedule, record the history, run the
        epoch-end callbacks (the checkpoint last) and, data-parallel, agree on stopping."""
        self.epoch += 1
        logs = {"train_loss": train_loss, "train_acc": train_acc}
        if self.distributed is not None:
            self.distributed.sync_buffers()   # validation and the checkpoint see the average
        if val is not None:
            logs["val_loss"], logs["val_acc"] = self._evaluate(val)
            if logs["val_acc"] > self.best["val_acc"]:
                self.best = {"val_acc": logs["val_acc"], "epoch": self.epoch}
                self.best_state = self.model.state_dict()
        if self.scheduler is not None:
            self.scheduler.step()
        logs["lr"], logs["seconds"] = lr, time.perf_counter() - t0
        h = self.history
        h["epoch"].append(self.epoch)
        for key, value in logs.items():
            h[key].append(value)
        h["iterations"].append(self.iteration)
        self.callbacks.epoch_end(self.epoch - 1, logs)
        if self.distributed is not None:
            # a callback on one rank may have said stop, or a signal come to one rank only
            codes = self.distributed.comm.agree(
                int(self.stop_training) | 2 * (self._requested() is not None),
                "the epoch's stop decision")
            self.stop_training = bool(np.any(codes & 1))
            self._agreed_stop = bool(np.any(codes & 2))

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        model = self.model
        layers = sum(1 for _ in model.named_modules()) - 1
        where = f"epoch {self.epoch}/{self.epochs}"
        if self._order is not None:
            where += f" (+{self._batch} batches)"
        if self.best.get("epoch"):
            where += f", best val_acc {self.best['val_acc']:.4f} at epoch {self.best['epoch']}"
        names = ", ".join(repr(cb) for cb in self.callbacks) or "none"
        return (f"Trainer({type(model).__name__} of {layers} modules, "
                f"{model.num_parameters():,} parameters; {self.optimizer!r}; "
                f"{self.loss_name} loss, batch {self.batch_size}; {where}; "
                f"callbacks: {names})")
