"""EarlyStopping counts its epochs from 1, as the epoch log, ``history["epoch"]`` and
``Run.best["epoch"]`` do, and a checkpoint written when it counted from 0 resumes to the same
run."""

import numpy as np
import pytest

from cnnkit import nn, optim
from cnnkit.callbacks import Callback, EarlyStopping
from cnnkit.io import load_checkpoint, save_checkpoint
from cnnkit.train import Trainer


def _data(seed=0, n=200):
    """Non-square images (1 x 12 x 9) whose class follows a fixed linear rule."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 12, 9)).astype(np.float32)
    y = np.digitize(x.reshape(n, -1) @ rng.standard_normal(12 * 9), [-3.0, 3.0])
    return (x[:160], y[:160]), (x[160:], y[160:])


class _StopAfter(Callback):
    """End the run after epoch ``number`` (counted from 1), as a user would stop it."""

    def __init__(self, number):
        self.number = number

    def on_epoch_end(self, epoch, logs):
        if epoch + 1 == self.number:
            self.trainer.stop_training = True


def _run(path, callbacks=(), resume=None):
    """A learning rate far too high: the validation loss climbs after a few epochs and
    EarlyStopping (patience 2) stops the run."""
    rng = np.random.default_rng(3)
    model = nn.Sequential(nn.Conv2d(1, 4, (3, 2), rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 5 * 4, 3, rng=rng))
    stop = EarlyStopping("val_loss", patience=2)
    trainer = Trainer(model, optim.Adam(model.named_parameters(), lr=0.3), batch_size=30,
                      epochs=12, seed=5, checkpoint=path, progress=False,
                      callbacks=[stop, *callbacks])
    if resume is not None:
        trainer.resume(resume)
    trainer.fit(*_data())
    return trainer, stop


def test_its_epochs_are_the_epoch_logs_numbers(tmp_path):
    trainer, stop = _run(tmp_path / "run.npz")
    h = trainer.history
    assert stop.stopped_epoch is not None and len(h["epoch"]) < 12, "the run must stop early"
    assert stop.best_epoch == h["epoch"][int(np.argmin(h["val_loss"]))]
    assert stop.stopped_epoch == h["epoch"][-1] == trainer.epoch
    assert stop.stopped_epoch == stop.best_epoch + 2            # patience 2


@pytest.mark.parametrize("old", [False, True], ids=["new", "counted-from-0"])
def test_a_resumed_checkpoint_ends_as_the_whole_run(tmp_path, old):
    full, full_stop = _run(tmp_path / "full.npz")
    cut_at = full_stop.stopped_epoch - 1                         # it had waited 1 epoch
    _run(tmp_path / "cut.npz", [_StopAfter(cut_at)])
    ckpt = load_checkpoint(tmp_path / "cut.npz")
    state = ckpt.extra["trainer"]["callbacks"]["EarlyStopping:0"]
    assert state["wait"] == 1 and state["best_epoch"] == full_stop.best_epoch
    if old:                             # what a checkpoint from before epochs counted from 1 held
        del state["epochs_from"]
        state["best_epoch"] -= 1
    model = full.model
    model.load_state_dict(ckpt.model_state)
    save_checkpoint(tmp_path / "resume.npz", model, optimizer=ckpt.optimizer,
                    scheduler=ckpt.scheduler, extra=ckpt.extra)
    resumed, stop = _run(tmp_path / "resumed.npz", resume=tmp_path / "resume.npz")
    assert (stop.best, stop.best_epoch, stop.stopped_epoch) == \
        (full_stop.best, full_stop.best_epoch, full_stop.stopped_epoch)
    assert resumed.history["epoch"] == full.history["epoch"]


def test_an_old_checkpoint_of_a_stopped_run_stays_stopped_at_its_epoch():
    stop = EarlyStopping("val_loss", patience=2)
    stop.load_state_dict({"monitor": "val_loss", "mode": "min", "best": 0.5, "best_epoch": 0,
                          "wait": 2, "stopped_epoch": 2})
    assert (stop.best_epoch, stop.stopped_epoch) == (1, 3)
    again = EarlyStopping("val_loss", patience=2)
    again.load_state_dict(stop.state_dict())                     # the new form, unchanged
    assert (again.best_epoch, again.stopped_epoch) == (1, 3)


@pytest.mark.parametrize("counters", [{"best_epoch": 0, "epochs_from": 1},
                                      {"stopped_epoch": 0, "epochs_from": 1},
                                      {"epochs_from": 2}])
def test_counters_that_cannot_be_its_own_are_refused(counters):
    state = {"monitor": "val_loss", "mode": "min", "best": 0.5, "best_epoch": 1, "wait": 0,
             "stopped_epoch": None, **counters}
    with pytest.raises(ValueError, match="its counters are not EarlyStopping's"):
        EarlyStopping("val_loss").load_state_dict(state)
