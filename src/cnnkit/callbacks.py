"""Training callbacks: code that runs at the Trainer's batch and epoch boundaries.

A callback subclasses :class:`Callback` and overrides the hooks it needs (Keras' shape)::

    on_train_begin(logs)             on_train_end(logs)
    on_epoch_begin(epoch, logs)      on_epoch_end(epoch, logs)
    on_batch_begin(batch, logs)      on_batch_end(batch, logs)
    on_interrupt(consistent)         a stop signal (Ctrl-C, SIGTERM, SIGHUP): may save, returns
                                     what it did (a phrase) or None
    state_dict()                     what the callback must keep across a resume (None: nothing)
    load_state_dict(state)           take it back from a resumed checkpoint

The Trainer sets ``callback.trainer`` (and ``callback.model``) before training starts. ``epoch``
and ``batch`` count from 0 (within the run and within the epoch). The logs are plain dicts:

- batch: ``loss`` (this mini-batch's), ``acc`` (its accuracy), ``size``, ``iteration`` (mini-batches
  trained so far in the whole run, this one included), ``num_batches`` (in this epoch);
- epoch: ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc`` (when there is validation
  data), ``lr``, ``seconds``;
- train begin/end: ``epochs``; at the end also ``completed`` (False when an exception ends ``fit``).

A callback stops training after the current epoch by setting ``trainer.stop_training = True``.

A callback whose decisions depend on earlier epochs (EarlyStopping's patience) keeps that state
in the Trainer's checkpoint: ``state_dict()`` returns it (JSON-able values and arrays), the
checkpoint stores it under the callback's class name and its place among the callbacks of that
class (``EarlyStopping:0``), and a resumed Trainer hands it back to the callback in the same
place with ``load_state_dict``.

The Trainer's own conveniences are callbacks built from its arguments, so they run in this
order: the progress bar (``progress``), the epoch log line (``log``), the user's ``callbacks``
in the order given, then the checkpoint (``checkpoint``), last so that it saves what the others
did at the epoch's end.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Callable

from ._atomic import atomic_write_text
from ._progress import Bar, in_notebook
from .errors import CnnkitError
from .files import regular_file

__all__ = ["Callback", "CallbackList", "CSVLogger", "EarlyStopping", "EpochLog",
           "LambdaCallback", "ModelCheckpoint", "ProgressBar", "in_notebook"]


class Callback:
    """Base class: every hook does nothing; override the ones you need."""

    trainer = None
    model = None

    def set_trainer(self, trainer) -> None:
        """Called by the Trainer before training: keeps ``trainer`` and its model as
        ``self.trainer`` and ``self.model``."""
        self.trainer, self.model = trainer, trainer.model

    def on_train_begin(self, logs: dict) -> None:
        """At the start of ``fit``; ``logs``: ``{"epochs": total epochs}``."""
        pass

    def on_train_end(self, logs: dict) -> None:
        """At the end of ``fit``, also after an error or a stop; ``logs``: ``{"epochs",
        "completed"}`` (whether every epoch ran)."""
        pass

    def on_epoch_begin(self, epoch: int, logs: dict) -> None:
        """Before epoch ``epoch`` (0-based); ``logs``: ``{"num_batches", "batch"}`` (the
        batch it starts at: not 0 on a resumed epoch)."""
        pass

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        """After epoch ``epoch`` (0-based); ``logs``: its "train_loss", "train_acc",
        "val_loss", "val_acc" (with validation data), "lr" and "seconds"."""
        pass

    def on_batch_begin(self, batch: int, logs: dict) -> None:
        """Before mini-batch ``batch`` of the epoch; ``logs``: ``{"iteration" (1-based, over
        the run), "num_batches"}``."""
        pass

    def on_batch_end(self, batch: int, logs: dict) -> None:
        """After mini-batch ``batch``'s update; ``logs``: its "loss", "acc" and "size",
        "iteration" and "num_batches"."""
        pass

    def on_interrupt(self, consistent: bool) -> str | None:
        """On a stop signal: ``consistent`` says whether the weights, optimizer and position
        agree (between batches), so saving now is safe. Returns what it did (a phrase such
        as "saved PATH") or None."""
        return None

    def state_dict(self) -> dict | None:
        """What this callback must keep across a resume (JSON-able values and arrays), or None
        when it keeps nothing (the default)."""
        return None

    def load_state_dict(self, state: dict) -> None:
        """Take back what :meth:`state_dict` gave, from a resumed checkpoint; raise ValueError
        (or TypeError, KeyError) when ``state`` is not what it wrote."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _overrides(callback: Callback, hook: str) -> bool:
    """Whether the callback does something at ``hook`` (its class or the instance defines it)."""
    return hook in vars(callback) or getattr(type(callback), hook) is not getattr(Callback, hook)


class CallbackList:
    """The callbacks of a Trainer, called in order. Each batch hook is called only on the
    callbacks that override it, so a Trainer with no per-batch callbacks pays one empty loop
    per batch."""

    def __init__(self, callbacks):
        self.callbacks, self._batch_begin, self._batch_end = [], [], []
        for cb in callbacks:
            self.append(cb)

    def append(self, callback: Callback) -> None:
        """Add a callback after the others (between two ``fit`` calls)."""
        if not isinstance(callback, Callback):
            raise TypeError(f"a callback must be a cnnkit.callbacks.Callback, got "
                            f"{type(callback).__name__} (wrap a function in LambdaCallback)")
        self.callbacks.append(callback)
        if _overrides(callback, "on_batch_begin"):
            self._batch_begin.append(callback)
        if _overrides(callback, "on_batch_end"):
            self._batch_end.append(callback)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def set_trainer(self, trainer) -> None:
        """Give every callback the trainer (``Callback.set_trainer``)."""
        for cb in self.callbacks:
            cb.set_trainer(trainer)

    def train_begin(self, logs):
        """Call every callback's ``on_train_begin``."""
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def train_end(self, logs):
        """Call every callback's ``on_train_end``."""
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def epoch_begin(self, epoch, logs):
        """Call every callback's ``on_epoch_begin``."""
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def epoch_end(self, epoch, logs):
        """Call every callback's ``on_epoch_end``."""
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def batch_begin(self, batch, logs):
        """Call ``on_batch_begin`` of the callbacks that override it."""
        for cb in self._batch_begin:
            cb.on_batch_begin(batch, logs)

    def batch_end(self, batch, logs):
        """Call ``on_batch_end`` of the callbacks that override it."""
        for cb in self._batch_end:
            cb.on_batch_end(batch, logs)

    def interrupt(self, consistent: bool) -> list[str]:
        """What each callback did on a stop signal (the phrases they returned)."""
        return [done for cb in self.callbacks if (done := cb.on_interrupt(consistent))]

    def _keyed(self):
        """(key, callback) in order; the key is the class name and the callback's place among
        those of its class, ``EarlyStopping:0``, so the Trainer's own callbacks (which follow
        its arguments: progress, log) do not shift a user's callback's key."""
        seen: dict[str, int] = {}
        for cb in self.callbacks:
            name = type(cb).__name__
            seen[name] = seen.get(name, -1) + 1
            yield f"{name}:{seen[name]}", cb

    def state_dict(self) -> dict:
        """``{key: state}`` of the callbacks that keep state, for the Trainer's checkpoint."""
        states = {}
        for key, cb in self._keyed():
            state = cb.state_dict()
            if state is not None:
                states[key] = state
        return states

    def load_state_dict(self, states) -> None:
        """Hand each callback its state from ``states`` (from :meth:`state_dict`); a callback
        with none keeps its own (a checkpoint written before callbacks kept state). Raises
        ValueError naming the callback whose state does not fit it."""
        if not isinstance(states, dict):
            raise ValueError(f"the callbacks' state is a {type(states).__name__}, not a dict")
        for key, cb in self._keyed():
            if key not in states:
                continue
            try:
                cb.load_state_dict(states[key])
            except (ValueError, TypeError, KeyError) as err:
                raise ValueError(f"the state of callback {key} does not fit it: {err}") from err


class ProgressBar(Callback):
    """A tqdm bar over each epoch's mini-batches with the running loss, accuracy and images/s:
    text on a terminal, and in Jupyter a widget with ipywidgets installed, else text in the
    cell (:class:`cnnkit._progress.Bar`)."""

    def __init__(self):
        self.bar = None

    def on_epoch_begin(self, epoch, logs):
        self.bar = Bar(logs["num_batches"], f"epoch {epoch + 1}/{self.trainer.epochs}",
                       unit="batch", initial=logs["batch"])
        self._start, self._images = time.perf_counter(), 0
        self._loss, self._correct, self._seen = 0.0, 0.0, 0

    def on_batch_end(self, batch, logs):
        if self.bar is None:
            return
        n = logs["size"]
        self._images += n
        self._loss += logs["loss"] * n
        self._correct += logs["acc"] * n
        self._seen += n
        rate = self._images / max(time.perf_counter() - self._start, 1e-9)
        self.bar.set_postfix(loss=f"{self._loss / self._seen:.4f}",
                             acc=f"{self._correct / self._seen:.4f}", img_s=f"{rate:.0f}")
        self.bar.update(1)

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_epoch_end(self, epoch, logs):
        self._close()

    def on_train_end(self, logs):
        self._close()


def format_epoch(epoch: int, epochs: int, logs: dict) -> str:
    """The one-line summary of an epoch: ``epoch 3/10  loss 0.1234  acc 0.9612  val_loss ...``."""
    line = f"epoch {epoch + 1}/{epochs}  loss {logs['train_loss']:.4f}  acc {logs['train_acc']:.4f}"
    if "val_acc" in logs:
        line += f"  val_loss {logs['val_loss']:.4f}  val_acc {logs['val_acc']:.4f}"
    return line + f"  lr {logs['lr']:.3g}  {logs['seconds']:.1f}s"


class EpochLog(Callback):
    """Hands one summary line per epoch to ``log`` (``print`` by default)."""

    def __init__(self, log: Callable[[str], None] = print):
        self.log = log

    def on_epoch_end(self, epoch, logs):
        """Log the epoch's summary line (losses, accuracies, learning rate, time)."""
        self.log(format_epoch(epoch, self.trainer.epochs, logs))

    def __repr__(self):
        return f"EpochLog({getattr(self.log, '__name__', type(self.log).__name__)})"


class ModelCheckpoint(Callback):
    """Writes the Trainer's checkpoint (weights, optimizer, schedule, position, generators:
    everything exact resume needs, the other callbacks' state included) to ``path`` after
    every epoch, atomically, and on a stop signal when training stood between two batches."""

    def __init__(self, path):
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs):
        """Save the checkpoint (atomically: a stop during the write keeps the previous
        one)."""
        self.trainer.save(self.path)

    def on_interrupt(self, consistent):
        """Save the checkpoint when the state is consistent; otherwise say that the last one
        stays."""
        if consistent:
            self.trainer.save(self.path)
            return f"saved {self.path}"
        # a second stop signal inside a batch or an epoch's end: the last checkpoint stays
        return (f"stopped mid-step, so {self.path} keeps its earlier state"
                if self.path.exists() else "stopped mid-step, before any checkpoint")

    def __repr__(self):
        return f"ModelCheckpoint({str(self.path)!r})"


class CSVLogger(Callback):
    """One row per epoch in the CSV file ``path`` (Keras' CSVLogger): ``epoch`` (counting from
    1, as ``history["epoch"]`` and the epoch log do), then the epoch's logs in their order
    (``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``lr``, ``seconds``), cells
    separated by ``separator``, floats written exactly (Python's shortest repr). The file is
    rewritten whole, atomically, after every epoch, so a reader never sees half a row.

    ``append=False`` starts the file anew (replacing what ``path`` held); ``append=True``
    keeps its rows of the epochs before the one training starts at, so a resumed run continues
    the file, and the rows of epochs trained after the checkpoint it resumed from (written
    before a crash) are replaced, never repeated. A column the file lacks is added, its cells
    empty in the older rows.
    """

    #: The largest file ``append`` reads back.
    MAX_BYTES = 64 << 20

    def __init__(self, path, separator: str = ",", append: bool = False):
        if not isinstance(separator, str) or len(separator) != 1 or separator in "\r\n\"":
            raise ValueError(f"CSVLogger separator must be one character (not a quote or a "
                             f"line break), got {separator!r}")
        self.path, self.separator, self.append = Path(path), separator, bool(append)
        self.columns, self.rows = ["epoch"], []

    def on_train_begin(self, logs):
        self.columns, self.rows = ["epoch"], []
        if self.append and self.path.exists():
            self._read_back(self.trainer.epoch)

    def _read_back(self, epochs: int) -> None:
        path = regular_file(self.path, "CSV log", error=CnnkitError)
        if path.stat().st_size > self.MAX_BYTES:
            raise CnnkitError(f"{path} is larger than a CSV log of epochs "
                              f"({path.stat().st_size:,} bytes); give another path")
        try:
            table = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8")),
                                    delimiter=self.separator))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise CnnkitError(f"cannot append to {path}: {err}") from None
        if not table:
            return
        header = table[0]
        if not header or header[0] != "epoch" or len(set(header)) != len(header):
            raise CnnkitError(f"cannot append to {path}: it is not a CSV log of epochs "
                              f"separated by {self.separator!r} (its first line is "
                              f"{self.separator.join(header)[:80]!r})")
        self.columns = header
        for line in table[1:]:
            row = dict(zip(header, line))
            try:
                number = int(row["epoch"])
            except (KeyError, ValueError):
                raise CnnkitError(f"cannot append to {path}: a row's epoch is "
                                  f"{row.get('epoch')!r}") from None
            if number <= epochs:
                self.rows.append(row)

    def on_epoch_end(self, epoch, logs):
        row = {"epoch": epoch + 1, **logs}
        self.columns += [key for key in row if key not in self.columns]
        self.rows.append({key: repr(value) if isinstance(value, float) else value
                          for key, value in row.items()})
        text = io.StringIO()
        writer = csv.writer(text, delimiter=self.separator, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([row.get(key, "") for key in self.columns])
        atomic_write_text(self.path, text.getvalue())

    def __repr__(self):
        return f"CSVLogger({str(self.path)!r})"


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=lambda epoch, logs:
    print(logs["val_acc"]))``; each takes the arguments of the hook of its name."""

    _HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_batch_begin", "on_batch_end", "on_interrupt")

    def __init__(self, **hooks):
        for name, fn in hooks.items():
            if name not in self._HOOKS:
                raise TypeError(f"LambdaCallback: unknown hook {name!r}; the hooks are "
                                f"{', '.join(self._HOOKS)}")
            if not callable(fn):
                raise TypeError(f"LambdaCallback: {name} must be callable, got "
                                f"{type(fn).__name__}")
        self.hooks = hooks
        # only the hooks given run (and the batch ones cost nothing when absent)
        for name in self._HOOKS:
            if name in hooks:
                setattr(self, name, hooks[name])

    def __repr__(self):
        return f"LambdaCallback({', '.join(self.hooks)})"


def _epoch_count(value, none: bool = False) -> bool:
    """Whether ``value`` is a count (an int >= 0), or None where ``none`` allows it."""
    if value is None:
        return none
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class EarlyStopping(Callback):
    """Stop when ``monitor`` (an epoch log: "val_loss", "val_acc", "train_loss", ...) has not
    improved by more than ``min_delta`` for ``patience`` epochs. ``mode`` "min" or "max"; "auto"
    picks "max" for accuracies, "min" otherwise. With ``restore_best`` the weights of the best
    epoch are loaded when training stops (the Trainer's own ``restore_best`` follows its
    validation accuracy instead).

    ``best_epoch`` and ``stopped_epoch`` count from 1, as the epoch log, ``history["epoch"]``
    and ``Run.best["epoch"]`` do (None until there is one). Its counters (the best value and
    epoch, the epochs waited, the epoch it stopped at; with ``restore_best`` the best weights
    too) go into the Trainer's checkpoint, so a resumed run keeps its patience; a run that had
    stopped stays stopped."""

    # checkpoints without "epochs_from" were written when the epochs counted from 0
    _EPOCHS_FROM = 1

    def __init__(self, monitor: str = "val_loss", *, patience: int = 3, min_delta: float = 0.0,
                 mode: str = "auto", restore_best: bool = False):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping mode must be auto, min or max, got {mode!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping patience must be an int >= 0, got {patience!r}")
        if not math.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"EarlyStopping min_delta must be finite and >= 0, got {min_delta!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, float(min_delta)
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.restore_best = restore_best
        self.best, self.best_epoch, self.wait, self.stopped_epoch = None, None, 0, None
        self._best_state = None
        self._resumed_stopped = False     # a resumed run had stopped: it trains no more

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return (value < self.best - self.min_delta if self.mode == "min"
                else value > self.best + self.min_delta)

    def on_epoch_end(self, epoch, logs):
        """Compare the epoch's ``monitor`` value with the best so far; stop the Trainer
        after ``patience`` epochs without a better one."""
        if self.monitor not in logs:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which the epoch logs "
                             f"lack (they have {', '.join(logs)}); pass validation data to fit "
                             f"or monitor another")
        value = float(logs[self.monitor])
        number = epoch + 1                # the hook counts from 0, the epoch log from 1
        if self._better(value):
            self.best, self.best_epoch, self.wait = value, number, 0
            if self.restore_best:
                self._best_state = self.model.state_dict()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = number
            self.trainer.stop_training = True

    def on_train_begin(self, logs):
        """Stop at once a resumed run that had already stopped early."""
        if self._resumed_stopped:
            self._resumed_stopped = False
            self.trainer.stop_training = True

    def on_train_end(self, logs):
        """Put back the best epoch's weights when it stopped early and ``restore_best`` is
        set."""
        if self.restore_best and self._best_state is not None and self.stopped_epoch is not None:
            self.model.load_state_dict(self._best_state)

    def state_dict(self) -> dict:
        state = {"monitor": self.monitor, "mode": self.mode, "best": self.best,
                 "best_epoch": self.best_epoch, "wait": self.wait,
                 "stopped_epoch": self.stopped_epoch, "epochs_from": self._EPOCHS_FROM}
        if self.restore_best and self._best_state is not None:
            state["best_state"] = self._best_state
        return state

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"expected a dict, got a {type(state).__name__}")
        if (state.get("monitor"), state.get("mode")) != (self.monitor, self.mode):
            raise ValueError(f"it watched {state.get('monitor')!r} ({state.get('mode')}), this "
                             f"one watches {self.monitor!r} ({self.mode})")
        best, best_epoch, wait, stopped = (state.get(k) for k in ("best", "best_epoch", "wait",
                                                                  "stopped_epoch"))
        shift = self._EPOCHS_FROM - state.get("epochs_from", 0)    # 1 for an older checkpoint
        if not (best is None or (isinstance(best, (int, float)) and not isinstance(best, bool))) \
                or shift not in (0, 1) \
                or not all(_epoch_count(v, none=True) and (v is None or v + shift >= 1)
                           for v in (best_epoch, stopped)) \
                or not _epoch_count(wait):
            raise ValueError(f"its counters are not EarlyStopping's: best {best!r}, best_epoch "
                             f"{best_epoch!r}, wait {wait!r}, stopped_epoch {stopped!r}, "
                             f"epochs_from {state.get('epochs_from', 0)!r}")
        best_epoch, stopped = (None if v is None else v + shift for v in (best_epoch, stopped))
        best_state = state.get("best_state")
        if best_state is not None and not isinstance(best_state, dict):
            raise ValueError(f"its best weights are a {type(best_state).__name__}")
        self.best = None if best is None else float(best)
        self.best_epoch, self.wait, self.stopped_epoch = best_epoch, wait, stopped
        self._best_state = best_state
        self._resumed_stopped = stopped is not None

    def __repr__(self):
        return f"EarlyStopping({self.monitor!r}, patience={self.patience}, mode={self.mode!r})"

