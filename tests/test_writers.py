"""cnnkit.writers: HistoryWriter draws the curves when it pays (against a fake clock, and for
real: a short run draws once, at its end, Ctrl-C included), history.json after every epoch."""

import json
import os
import signal
import types

import numpy as np
import pytest

from cnnkit import nn, optim
from cnnkit.callbacks import Callback, LambdaCallback
from cnnkit.train import Trainer, TrainingInterrupted
from cnnkit.writers import HistoryWriter


def _data(rng, n=40, d=6, k=3):
    return rng.standard_normal((n, d)), rng.integers(0, k, n)


def _mlp(rng, d=6, k=3):
    return nn.Sequential(nn.Linear(d, 8, rng=rng), nn.ReLU(), nn.Linear(8, k, rng=rng)).astype(
        np.float64)


class _Clock(Callback):
    """A fake clock for cnnkit.writers: each epoch takes ``epoch_seconds``, each drawing of the
    curves ``draw_seconds``; records the epochs each drawing showed, and the clock then."""

    def __init__(self, monkeypatch, epoch_seconds, draw_seconds):
        import cnnkit.writers as writers

        self.now, self.epoch_seconds, self.drawn = 0.0, epoch_seconds, []

        def draw(history, path, title=None):
            self.now += draw_seconds
            self.drawn.append((len(history["epoch"]), self.now))

        monkeypatch.setattr(writers, "time", types.SimpleNamespace(perf_counter=lambda: self.now))
        monkeypatch.setattr(writers, "plot_history", draw)
        monkeypatch.setattr(writers, "close", lambda figure: None)

    def on_epoch_begin(self, epoch, logs):
        self.now += self.epoch_seconds


def test_history_writer_draws_when_it_pays(tmp_path, rng, monkeypatch):
    """The curves are drawn at the end, and in between only every 10 s or more and while the
    drawings stay within 2% of the time trained; history.json after every epoch."""
    x, y = _data(rng)

    def fit(epochs, epoch_seconds, draw_seconds, stop_at=None):
        clock = _Clock(monkeypatch, epoch_seconds, draw_seconds)
        short = epochs <= 10            # the long runs write no history.json: they are quicker
        writer = HistoryWriter(tmp_path / "h.json" if short else None, tmp_path / "curves.png")
        written = []
        spy = LambdaCallback(on_epoch_end=lambda epoch, logs: written.append(
            len(json.loads((tmp_path / "h.json").read_text())["epoch"])) if short else None)
        stop = LambdaCallback(on_epoch_end=lambda epoch, logs: (_ for _ in ()).throw(
            RuntimeError("stop")) if epoch + 1 == stop_at else None)
        model = _mlp(np.random.default_rng(0))
        trainer = Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), batch_size=40,
                          epochs=epochs, progress=False, log=None,
                          callbacks=[clock, writer, spy, stop])
        if stop_at is None:
            trainer.fit((x, y))
        else:
            with pytest.raises(RuntimeError, match="stop"):
                trainer.fit((x, y))
        assert written == list(range(1, len(written) + 1))
        assert writer.drawings == len(clock.drawn)
        return clock.drawn, writer

    # a short run: one drawing, at the end, of every epoch
    drawn, _ = fit(10, 0.5, 0.5)
    assert drawn == [(10, 5.5)]
    # a long one: drawn in between, never within 10 s of the last, the drawings before each
    # within 2% of the time since training began; the last at the end
    drawn, writer = fit(200, 2.0, 0.3)
    assert drawn[-1][0] == 200 and 8 <= len(drawn) <= 40, drawn
    spent = 0.0
    for (epochs, at), (_, before) in zip(drawn[:-1], [(0, 0.0), *drawn[:-2]]):
        assert at - 0.3 - before >= 10
        assert spent + 0.3 <= 0.02 * (at - 0.3) + 1e-9 or spent == 0
        spent += 0.3
    assert writer.draw_seconds == pytest.approx(0.3 * len(drawn))
    # dearer drawings are rarer: 3 s each, at most one every 150 s of training
    drawn, _ = fit(200, 2.0, 3.0)
    assert 2 <= len(drawn) <= 5, drawn
    # an error ends fit: the curves still show every epoch that ended
    drawn, _ = fit(10, 0.5, 0.5, stop_at=3)
    assert drawn == [(3, 2.0)]


def test_a_short_run_draws_its_curves_once_at_the_end_ctrl_c_included(tmp_path, rng):
    """For real: 6 quick epochs draw curves.png once, when training ends; a run stopped by
    Ctrl-C in epoch 3 draws the 2 epochs that ended."""
    from cnnkit.viz import close, plot_history

    x, y = _data(rng)
    for stop in (None, 16):
        folder = tmp_path / str(stop)
        writer = HistoryWriter(folder / "h.json", folder / "curves.png", title="t")
        sigint = LambdaCallback(on_batch_end=lambda batch, logs: os.kill(os.getpid(),
                                                                          signal.SIGINT)
                                if logs["iteration"] == stop else None)
        model = _mlp(np.random.default_rng(0))
        trainer = Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), batch_size=6,
                          epochs=6, progress=False, log=None, callbacks=[writer, sigint])
        if stop is None:
            trainer.fit((x, y), (x, y))
        else:
            with pytest.raises(TrainingInterrupted):
                trainer.fit((x, y), (x, y))
        assert writer.drawings == 1 and 0 < writer.draw_seconds
        epochs = json.loads((folder / "h.json").read_text())["epoch"]
        assert epochs == ([1, 2, 3, 4, 5, 6] if stop is None else [1, 2])
        # the picture is the one of those epochs
        close(plot_history(trainer.history, folder / "again.png", title="t"))
        assert (folder / "curves.png").read_bytes() == (folder / "again.png").read_bytes()
    for bad in ({"budget": -0.1}, {"every_seconds": float("nan")}, {"first_estimate": "1"}):
        with pytest.raises(ValueError, match="HistoryWriter"):
            HistoryWriter(tmp_path / "h.json", **bad)
