"""Trainer callbacks: the hooks' order and logs, stopping, the built-in callbacks, LayerStats'
numbers against direct computation, and the figures' rules (returned, saved only when asked,
the user's matplotlib backend left alone)."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from cnnkit import nn, optim
from cnnkit.callbacks import (Callback, CSVLogger, EarlyStopping, EpochLog, LambdaCallback,
                              ModelCheckpoint, ProgressBar)
from cnnkit.errors import CnnkitError
from cnnkit.monitor import AUTO_RECORDS, LayerStats, auto_every, default_layers
from cnnkit.train import Trainer
from cnnkit.writers import HistoryWriter


def _data(rng, n=40, d=6, k=3):
    x = rng.standard_normal((n, d))
    y = rng.integers(0, k, n)
    return x, y


def _mlp(rng, d=6, k=3, act=nn.ReLU):
    return nn.Sequential(nn.Linear(d, 8, rng=rng), act(), nn.Linear(8, k, rng=rng)).astype(
        np.float64)


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, logs):
        self.calls.append(("train_begin", dict(logs)))

    def on_train_end(self, logs):
        self.calls.append(("train_end", dict(logs)))

    def on_epoch_begin(self, epoch, logs):
        self.calls.append(("epoch_begin", epoch, dict(logs)))

    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch_end", epoch, dict(logs)))

    def on_batch_begin(self, batch, logs):
        self.calls.append(("batch_begin", batch, dict(logs)))

    def on_batch_end(self, batch, logs):
        self.calls.append(("batch_end", batch, dict(logs)))


def test_hooks_run_in_keras_order_with_their_logs(rng):
    x, y = _data(rng)
    model = _mlp(rng)
    rec = Recorder()
    trainer = Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), batch_size=16,
                      epochs=2, progress=False, callbacks=[rec])
    history = trainer.fit((x, y), (x, y))
    assert rec.trainer is trainer and rec.model is model
    kinds = [c[0] for c in rec.calls]
    per_epoch = ["epoch_begin"] + ["batch_begin", "batch_end"] * 3 + ["epoch_end"]
    assert kinds == ["train_begin", *per_epoch, *per_epoch, "train_end"]
    assert rec.calls[-1][1] == {"epochs": 2, "completed": True}
    assert rec.calls[1][2] == {"num_batches": 3, "batch": 0}
    ends = [c for c in rec.calls if c[0] == "batch_end"]
    assert [c[1] for c in ends] == [0, 1, 2, 0, 1, 2]
    assert [c[2]["iteration"] for c in ends] == [1, 2, 3, 4, 5, 6]
    assert [c[2]["size"] for c in ends] == [16, 16, 8] * 2
    assert [c[2]["loss"] for c in ends] == history["batch_loss"]
    epoch_logs = [c[2] for c in rec.calls if c[0] == "epoch_end"]
    assert set(epoch_logs[0]) == {"train_loss", "train_acc", "val_loss", "val_acc", "lr",
                                  "seconds"}
    # the epoch's train loss is the size-weighted mean of its mini-batches' losses
    first = ends[:3]
    weighted = sum(c[2]["loss"] * c[2]["size"] for c in first) / 40
    assert epoch_logs[0]["train_loss"] == pytest.approx(weighted, rel=1e-12)
    assert epoch_logs[0]["train_acc"] == pytest.approx(
        sum(c[2]["acc"] * c[2]["size"] for c in first) / 40, rel=1e-12)
    assert history["iterations"] == [3, 6]
    assert [e["val_acc"] for e in epoch_logs] == history["val_acc"]


def test_an_exception_still_ends_training_with_completed_false(rng):
    x, y = _data(rng)
    model = _mlp(rng)
    rec = Recorder()

    class Boom(Callback):
        def on_batch_end(self, batch, logs):
            if logs["iteration"] == 2:
                raise RuntimeError("boom")

    trainer = Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), batch_size=16,
                      epochs=2, progress=False, callbacks=[rec, Boom()])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit((x, y))
    assert rec.calls[-1] == ("train_end", {"epochs": 2, "completed": False})


def test_a_callback_stops_training_after_the_epoch(rng):
    x, y = _data(rng)
    model = _mlp(rng)

    class StopAfterTwo(Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                self.trainer.stop_training = True

    trainer = Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), batch_size=16,
                      epochs=10, progress=False, callbacks=StopAfterTwo())
    assert trainer.fit((x, y))["epoch"] == [1, 2]
    assert trainer.epoch == 2


def test_early_stopping_waits_patience_epochs_and_restores_the_best(rng):
    x, y = _data(rng)
    model = _mlp(rng)
    stop = EarlyStopping("val_loss", patience=2, restore_best=True)
    # a learning rate far too high makes the validation loss climb after the first epochs
    trainer = Trainer(model, optim.SGD(model.named_parameters(), lr=50.0), batch_size=8,
                      epochs=30, progress=False, callbacks=[stop], restore_best=False)
    history = trainer.fit((x, y), (x, y))
    losses = history["val_loss"]
    best = int(np.argmin(losses))                     # index; epochs count from 1
    assert stop.best_epoch == best + 1 and stop.best == losses[best]
    assert len(losses) == best + 3                    # two epochs without improvement
    assert stop.stopped_epoch == best + 3


def test_early_stopping_names_a_missing_log(rng):
    x, y = _data(rng)
    model = _mlp(rng)
    trainer = Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), batch_size=16,
                      epochs=2, progress=False, callbacks=[EarlyStopping("val_acc")])
    with pytest.raises(ValueError, match="val_acc.*pass validation data"):
        trainer.fit((x, y))


def test_callback_arguments_are_checked():
    with pytest.raises(TypeError, match="unknown hook 'on_step'"):
        LambdaCallback(on_step=print)
    with pytest.raises(TypeError, match="must be callable"):
        LambdaCallback(on_epoch_end=3)
    model = _mlp(np.random.default_rng(0))
    opt = optim.SGD(model.named_parameters(), lr=0.1)
    with pytest.raises(TypeError, match="LambdaCallback"):
        Trainer(model, opt, callbacks=[print])
    with pytest.raises(ValueError, match="'loud'"):
        Trainer(model, opt, log="loud")
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)


def test_lambda_callback_and_on_epoch_end_shorthand(rng):
    x, y = _data(rng)
    model = _mlp(rng)
    seen, old_style = [], []
    trainer = Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), batch_size=16,
                      epochs=2, progress=False,
                      callbacks=[LambdaCallback(on_batch_end=lambda b, logs: seen.append(b))],
                      on_epoch_end=lambda t: old_style.append(t.epoch))
    trainer.fit((x, y))
    assert seen == [0, 1, 2, 0, 1, 2] and old_style == [1, 2]
    later = []                  # a callback added between two fits runs in the next
    trainer.callbacks.append(LambdaCallback(on_batch_begin=lambda b, logs: later.append(b)))
    trainer.epochs = 3
    trainer.fit((x, y))
    assert later == [0, 1, 2] and len(seen) == 9
    with pytest.raises(TypeError, match="LambdaCallback"):
        trainer.callbacks.append(print)


def test_built_in_callbacks_follow_the_trainer_arguments(tmp_path, rng):
    model = _mlp(rng)
    opt = optim.SGD(model.named_parameters(), lr=0.1)
    mine = Recorder()
    trainer = Trainer(model, opt, checkpoint=tmp_path / "c.npz", log=print, callbacks=[mine])
    kinds = [type(cb) for cb in trainer.callbacks]
    assert kinds == [ProgressBar, EpochLog, Recorder, ModelCheckpoint]  # saves what mine did
    quiet = Trainer(model, opt, progress=False)
    assert len(quiet.callbacks) == 0       # outside a notebook, log="auto" prints nothing


def test_log_auto_prints_one_line_per_epoch_in_a_notebook(rng, monkeypatch, capsys):
    class ZMQInteractiveShell:
        pass

    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: ZMQInteractiveShell()
    monkeypatch.setitem(sys.modules, "IPython", fake)
    x, y = _data(rng)
    model = _mlp(rng)
    Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), batch_size=16, epochs=2,
            progress=False).fit((x, y), (x, y))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("epoch 2/2  loss ") and "val_acc" in lines[1]


def test_the_progress_bar_shows_each_epoch(rng, capsys):
    x, y = _data(rng)
    model = _mlp(rng)
    Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), batch_size=16, epochs=2,
            log=None).fit((x, y))
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err and "batch/s" in err


def test_repr_says_model_optimizer_position_and_callbacks(rng, tmp_path):
    x, y = _data(rng)
    model = _mlp(rng)
    trainer = Trainer(model, optim.Adam(model.named_parameters(), lr=1e-3), batch_size=16,
                      epochs=3, progress=False, checkpoint=tmp_path / "c.npz")
    trainer.fit((x, y), (x, y))
    text = repr(trainer)
    assert text.startswith("Trainer(Sequential of 3 modules, 83 parameters; Adam(lr=0.001")
    assert "softmax loss, batch 16; epoch 3/3, best val_acc" in text
    assert f"callbacks: ModelCheckpoint({str(tmp_path / 'c.npz')!r})" in text


def test_history_writer_writes_json_and_curves(tmp_path, rng):
    x, y = _data(rng)
    model = _mlp(rng)
    writer = HistoryWriter(tmp_path / "h.json", tmp_path / "curves.png", title="t")
    trainer = Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), batch_size=16,
                      epochs=2, progress=False, callbacks=[writer])
    trainer.fit((x, y), (x, y))
    saved = json.loads((tmp_path / "h.json").read_text())
    assert saved["batch_loss"] == trainer.history["batch_loss"] and len(saved["batch_loss"]) == 6
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_csv_logger_writes_a_row_per_epoch_and_a_resumed_run_continues_it(tmp_path, rng):
    """Keras' CSVLogger: epoch then the logs, exact floats; a run resumed from its epoch-2
    checkpoint after epoch 3's row was written (a crash) replaces that row, not repeats it."""
    import csv

    x, y = _data(rng)

    def trainer(epochs, callbacks, checkpoint=None):
        model = _mlp(np.random.default_rng(2))
        return Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), batch_size=16,
                       epochs=epochs, progress=False, log=None, callbacks=callbacks,
                       checkpoint=checkpoint)

    whole = trainer(4, [CSVLogger(tmp_path / "whole.csv", separator=";")])
    history = whole.fit((x, y), (x[:10], y[:10]))
    rows = list(csv.reader((tmp_path / "whole.csv").open(), delimiter=";"))
    keys = ["train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
    assert rows[0] == ["epoch", *keys]
    assert [[int(r[0]), *map(float, r[1:])] for r in rows[1:]] == \
        [[e, *(history[k][e - 1] for k in keys)] for e in history["epoch"]]

    first = trainer(2, [CSVLogger(tmp_path / "log.csv", separator=";")], tmp_path / "c.npz")
    first.fit((x, y), (x[:10], y[:10]))
    with (tmp_path / "log.csv").open("a") as f:
        f.write("3;9;9;9;9;9;9\n")                        # epoch 3, before a crash
    resumed = trainer(4, [CSVLogger(tmp_path / "log.csv", separator=";", append=True)])
    resumed.resume(tmp_path / "c.npz")
    resumed.fit((x, y), (x[:10], y[:10]))
    again = list(csv.reader((tmp_path / "log.csv").open(), delimiter=";"))
    assert [r[:5] for r in again] == [r[:5] for r in rows]          # seconds differ
    assert not list(tmp_path.glob(".*.tmp"))

    # append to what is not a log of epochs, or is not a file: one line, the file untouched
    (tmp_path / "notes.csv").write_text("name,score\na,1\n")
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    for path, message in ((tmp_path / "notes.csv", "not a CSV log of epochs"),
                          (fifo, "FIFO")):
        with pytest.raises(CnnkitError, match=message) as info:
            trainer(1, [CSVLogger(path, append=True)]).fit((x, y))
        assert "\n" not in str(info.value)
    assert (tmp_path / "notes.csv").read_text() == "name,score\na,1\n"
    for bad in ("", ";;", "\n", '"', 4):
        with pytest.raises(ValueError, match="separator"):
            CSVLogger(tmp_path / "x.csv", separator=bad)


# ---------------------------------------------------------------------------- LayerStats


def test_layer_stats_match_direct_computation(rng):
    """Activations and gradients against hooks of the test's own; the update ratio of plain
    SGD is lr * ||dW|| / ||W|| exactly."""
    x, y = _data(rng, n=48)
    model = _mlp(rng, act=nn.Sigmoid)
    lr = 0.3
    stats = LayerStats(every=2, max_values=10**6)
    captured = {}
    modules = dict(model.named_modules())
    first = modules["0"]
    weights_before = []

    class Capture(Callback):          # runs after LayerStats: sees the same batch
        def on_batch_begin(self, batch, logs):
            if logs["iteration"] == 2:
                weights_before.append(first.weight.data.copy())
                captured["h"] = first.register_forward_hook(
                    lambda m, x, out: captured.setdefault("out", out.copy()))
                captured["g"] = first.register_backward_hook(
                    lambda m, dout, dx: captured.setdefault("dout", dout.copy()))

        def on_batch_end(self, batch, logs):
            if logs["iteration"] == 2:
                captured["h"].remove()
                captured["g"].remove()
                captured["grad"] = first.weight.grad.copy()

    trainer = Trainer(model, optim.SGD(model.named_parameters(), lr=lr), batch_size=16,
                      epochs=2, progress=False, callbacks=[stats, Capture()])
    trainer.fit((x, y))
    assert stats.iterations == [1, 2, 4, 6]
    assert default_layers(model) == ["0", "1", "2"]
    assert set(stats.params) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    at = 1                                                   # iteration 2
    out = captured["out"]
    layer = stats.layers["0"]
    assert layer["type"] == "Linear"
    assert layer["act_mean"][at] == pytest.approx(out.mean(), rel=1e-12)
    assert layer["act_std"][at] == pytest.approx(out.std(), rel=1e-12)
    for q in (15, 50, 85):
        assert layer[f"act_p{q}"][at] == pytest.approx(np.percentile(out, q), rel=1e-12)
    assert layer["out_grad_norm"][at] == pytest.approx(np.linalg.norm(captured["dout"]),
                                                       rel=1e-12)
    record = stats.params["0.weight"]
    grad_norm, weight_norm = np.linalg.norm(captured["grad"]), np.linalg.norm(weights_before[0])
    assert record["grad_norm"][at] == pytest.approx(grad_norm, rel=1e-12)
    assert record["weight_norm"][at] == pytest.approx(weight_norm, rel=1e-12)
    assert record["update_ratio"][at] == pytest.approx(lr * grad_norm / weight_norm, rel=1e-9)
    # sigmoid outputs lie in (0, 1)
    assert 0 < stats.layers["1"]["act_p15"][0] < stats.layers["1"]["act_p85"][0] < 1
    # the hooks are gone after training
    assert all(not m._forward_hooks and not m._backward_hooks for _, m in model.named_modules())


def test_layer_stats_round_trip_and_bad_names(tmp_path, rng):
    x, y = _data(rng)
    model = _mlp(rng)
    stats = LayerStats(every=1, layers=["2"])
    Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), batch_size=16, epochs=1,
            progress=False, callbacks=[stats]).fit((x, y))
    # the first layer gets no input gradient in training, the last its dscores: all finite
    assert list(stats.layers) == ["2"] and len(stats.iterations) == 3
    stats.params["2.bias"]["update_ratio"][0] = float("nan")
    stats.save(tmp_path / "s.json")
    assert "NaN" not in (tmp_path / "s.json").read_text()
    back = LayerStats.load(tmp_path / "s.json")
    assert back.iterations == stats.iterations
    np.testing.assert_array_equal(back.params["2.bias"]["update_ratio"],
                                  stats.params["2.bias"]["update_ratio"])
    bad = LayerStats(layers=["7"])
    with pytest.raises(ValueError, match="no layer '7'"):
        Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), progress=False,
                callbacks=[bad]).fit((x, y))
    for every in (0, -2, 1.5, "often", True):
        with pytest.raises(ValueError, match="every must be a positive int or 'auto'"):
            LayerStats(every=every)
    with pytest.raises(ValueError, match="missing.json is damaged or unreadable"):
        LayerStats.load(tmp_path / "missing.json")
    (tmp_path / "short.json").write_text(json.dumps({**back.to_dict(), "iterations": [1]}))
    with pytest.raises(ValueError, match="3 values of act_mean for 1 iterations"):
        LayerStats.load(tmp_path / "short.json")


def _auto_run(rng, epochs, batches, resume=None, checkpoint=None):
    """A LayerStats("auto") trained for ``epochs`` of ``batches`` mini-batches (of 2 rows)."""
    x, y = _data(rng, n=2 * batches - 1)                 # the last batch of one row
    model = _mlp(np.random.default_rng(1))
    stats = LayerStats("auto", layers=["2"])
    trainer = Trainer(model, optim.SGD(model.named_parameters(), lr=0.05), batch_size=2,
                      epochs=epochs, progress=False, log=None, callbacks=[stats],
                      checkpoint=checkpoint)
    if resume is not None:
        trainer.resume(resume)
    trainer.fit((x, y))
    return stats, trainer


@pytest.mark.parametrize("epochs, batches", [(1, 6), (8, 6), (3, 37)])
def test_auto_layer_stats_keep_at_least_twenty_records_of_a_short_run(rng, epochs, batches):
    """1 x 6 and 8 x 6 iterations are all recorded (a run of 8 epochs of 6 batches kept only
    iteration 1 at the old fixed cadence of 50); 3 x 37 = 111 keeps every second one."""
    stats, trainer = _auto_run(rng, epochs, batches)
    total = epochs * batches
    assert trainer.iteration == total
    every = auto_every(total)
    assert stats.every == every == (1 if total < 2 * AUTO_RECORDS else 2)
    assert stats.iterations == [1, *range(every, total + 1, every)] if every > 1 \
        else list(range(1, total + 1))
    assert len(stats.iterations) >= min(20, total)
    assert all(len(v) == len(stats.iterations) for v in stats.params["2.weight"].values())


def test_auto_cadence_keeps_41_to_60_records_whatever_the_length():
    for total in [*range(0, 400), 844 * 5, 10 ** 5 + 7, 390 * 200, 10 ** 9, 2 ** 40 + 3]:
        every = auto_every(total)
        records = len({1, *range(every, total + 1, every)}) if total else 0
        assert (records == total) if total < 2 * AUTO_RECORDS \
            else AUTO_RECORDS + 1 <= records <= 1.5 * AUTO_RECORDS, (total, every, records)
        assert AUTO_RECORDS == 40
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(ValueError, match="count of iterations"):
            auto_every(bad)


def test_auto_cadence_is_kept_by_a_resumed_run_given_more_epochs(tmp_path, rng):
    """2 epochs of 48 batches choose every 2; the run resumed for 4 epochs (192 iterations,
    for which auto would choose 4) keeps 2, so its records continue the first run's."""
    first, _ = _auto_run(rng, 2, 48, checkpoint=tmp_path / "c.npz")
    assert first.every == 2 and first.iterations[-1] == 96
    resumed, trainer = _auto_run(rng, 4, 48, resume=tmp_path / "c.npz")
    assert auto_every(192) == 4 and resumed.every == 2
    assert resumed.iterations == list(range(98, 193, 2))
    # a number given stays as given, whatever the checkpoint chose
    fixed = LayerStats(every=5)
    fixed.load_state_dict({"every": 2})
    assert fixed.every == 5 and fixed.state_dict() == {"every": 5}
    for bad in ({"every": 0}, {"every": "2"}, {}, [2]):
        with pytest.raises((ValueError, TypeError)):
            LayerStats().load_state_dict(bad)


def test_plot_layer_stats_shows_vanishing_gradients_of_a_sigmoid_net(tmp_path, rng):
    """Small weights (N(0, 0.1^2)) keep the sigmoids near 0, where their slope is 1/4, so each
    layer shrinks the gradient about tenfold: the first layer's is ~1e5 below the last's, at
    least 1.5e3 over 1,000 seeds. He weights left it at ~1e3 with a heavy tail: the bound of
    100 failed about one seed in 300 (seed 114). Six layers keep the figure's legend (more
    lines than viz.layers.MOST_NAMED get a colour bar)."""
    from cnnkit.viz import plot_layer_stats

    d, layers = 20, []
    for _ in range(6):
        layers += [nn.Linear(d, 20, init="gaussian", weight_scale=0.1, rng=rng), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(20, 3, rng=rng)).astype(np.float64)
    x, y = _data(rng, n=64, d=20)
    stats = LayerStats(every=2)
    Trainer(model, optim.SGD(model.named_parameters(), lr=0.1), batch_size=16, epochs=2,
            progress=False, callbacks=[stats]).fit((x, y))
    first, last = stats.params["0.weight"]["grad_norm"][0], stats.params["12.weight"][
        "grad_norm"][0]
    assert first < last / 100
    fig = plot_layer_stats(stats.to_dict(), tmp_path / "stats.png")
    assert len(fig.axes) == 4 and all(ax.get_title() for ax in fig.axes)
    assert fig.axes[2].get_yscale() == "log"
    assert (tmp_path / "stats.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="no records"):
        plot_layer_stats(LayerStats())


# ---------------------------------------------------------------------------- figure rules


_FIGURE_RULES = r"""
import sys, numpy as np, matplotlib
matplotlib.use("{backend}")
{pyplot}
from cnnkit.viz import plot_history
h = {{"epoch": [1, 2], "train_loss": [1.0, 0.5], "train_acc": [0.5, 0.7], "val_loss": [0.9, 0.6],
     "val_acc": [0.6, 0.7], "batch_loss": [1.2, 0.9, 0.6, 0.4], "iterations": [2, 4]}}
fig = plot_history(h)
print(type(fig).__name__, matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules,
      len(fig.axes))
if "matplotlib.pyplot" in sys.modules:
    import matplotlib.pyplot as plt
    print(fig.number in plt.get_fignums())
"""


@pytest.mark.parametrize("pyplot", [False, True])
def test_figures_leave_the_backend_alone(pyplot):
    code = _FIGURE_RULES.format(backend="svg",
                                pyplot="import matplotlib.pyplot as plt" if pyplot else "")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[:4] == ["Figure", "svg", str(pyplot), "2"]
    if pyplot:            # made through pyplot, so plt.show() and notebooks see it
        assert out[4] == "True"


def test_plot_history_saves_only_when_given_a_path(tmp_path, monkeypatch):
    from cnnkit.viz import plot_history

    monkeypatch.chdir(tmp_path)
    history = {"epoch": [1], "train_loss": [0.5], "train_acc": [0.8], "val_loss": [],
               "val_acc": []}
    fig = plot_history(history)
    assert list(tmp_path.iterdir()) == []
    assert fig.axes[0].get_xlabel() == "epoch"          # no per-iteration losses recorded
    plot_history({**history, "batch_loss": [0.7, 0.4], "iterations": [2]},
                 tmp_path / "sub" / "c.png", title="run")
    assert (tmp_path / "sub" / "c.png").exists()


def test_plot_layer_stats_of_a_deep_net_keys_lines_by_a_colour_bar():
    """Beyond 14 lines a legend would cover the figure: a colour bar of depth replaces it."""
    from cnnkit.viz import plot_layer_stats

    rng = np.random.default_rng(0)
    names = [str(i) for i in range(20)]
    series = {k: list(rng.random(3)) for k in ("act_mean", "act_std", "act_p15", "act_p50",
                                                "act_p85", "out_grad_norm")}
    data = {"every": 5, "iterations": [1, 5, 10],
            "layers": {n: {"type": "Conv2d", **series} for n in names},
            "params": {f"{n}.weight": {k: list(rng.random(3) + 0.1) for k in
                                       ("weight_norm", "grad_norm", "update_ratio")}
                       for n in names}}
    fig = plot_layer_stats(data)
    plots = [ax for ax in fig.axes if ax.get_title()]
    assert len(plots) == 4 and len(fig.axes) == 7          # 3 colour bars
    assert all(ax.get_legend() is None for ax in plots[1:])
    assert "0 = '0' to 19 = '19'" in plots[0].get_xlabel()
