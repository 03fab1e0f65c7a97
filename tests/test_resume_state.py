"""A run stopped at any batch and resumed is the uninterrupted run, in every piece of its state.

The reference run saves a checkpoint at the end of every batch. A run stopped by Ctrl-C at a
mid-epoch position must then have written exactly the reference's checkpoint of that position;
a Trainer resumed from it must hold exactly that state before it trains (saved again, the same
file); and the resumed run must end with the reference's final checkpoint and history. "Exactly"
is every array of the ``.npz`` (weights, buffers, the optimizer's moments, the best weights,
EarlyStopping's) bit for bit, and every value of its JSON (the trainer's position, batch order
and running loss and accuracy sums, every history key, the best epoch, the shuffling and dropout
Generators' states, the schedule, the callbacks' counters), with one exception: the history's
"seconds", the epochs' wall-clock time.

The net is small but has every kind of state: batch norm's running statistics, dropout's
Generator, Adam's moments with weight decay and clipping, a cosine schedule, augmentation that
draws from the Trainer's Generator, EarlyStopping's counters and best weights; the batch does not
divide the data, so the last batch of an epoch is short.
"""

from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest

from cnnkit import nn, optim
from cnnkit.callbacks import Callback, EarlyStopping
from cnnkit.data import random_hflip
from cnnkit.train import Trainer, TrainingInterrupted

EPOCHS, BATCH, IMAGES = 3, 32, 230
BATCHES = -(-IMAGES // BATCH)                 # 8 an epoch, the last one of 6 images
#: The only values two runs may differ in: wall-clock time.
TIMING = {("extra", "trainer", "history", "seconds")}


def _data():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((IMAGES + 60, 1, 8, 7)).astype(np.float32)
    y = rng.integers(0, 4, IMAGES + 60)
    x[np.arange(len(y)), 0, 2 * y, :] += 1.5      # a bright row per class (hflip keeps it)
    return (x[:IMAGES], y[:IMAGES]), (x[IMAGES:], y[IMAGES:])


def _trainer(checkpoint, callbacks=()):
    rng = np.random.default_rng(5)
    model = nn.Sequential(
        nn.Conv2d(1, 4, (3, 2), padding=(1, 0), rng=rng), nn.BatchNorm2d(4), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.3, rng=np.random.default_rng(6)),
        nn.Linear(4 * 4 * 3, 4, rng=rng))                  # 8x7 -> 8x6 -> 4x3
    opt = optim.Adam(model.named_parameters(), lr=5e-3, weight_decay=1e-3, max_grad_norm=5.0)
    return Trainer(model, opt, scheduler=optim.CosineLR(opt, t_max=EPOCHS), batch_size=BATCH,
                   epochs=EPOCHS, seed=7, augment=lambda xb, r: random_hflip(xb, r),
                   checkpoint=checkpoint, progress=False, log=None,
                   callbacks=[EarlyStopping("val_loss", patience=10, restore_best=True),
                              *callbacks])


class _EveryBatch(Callback):
    """Saves the trainer's checkpoint at the end of every batch, as ``{iteration}.npz``."""

    def __init__(self, folder):
        self.folder = folder

    def on_batch_end(self, batch, logs):
        self.trainer.save(self.folder / f"{logs['iteration']}.npz")


class _StopAfter(Callback):
    """Ctrl-C at the end of the run's ``iteration``-th batch: the Trainer finishes that batch,
    saves and stops."""

    def __init__(self, iteration):
        self.iteration = iteration

    def on_batch_end(self, batch, logs):
        if logs["iteration"] == self.iteration:
            os.kill(os.getpid(), signal.SIGINT)


def _read(path) -> tuple[dict, dict]:
    """A checkpoint's arrays (without pickle) and its parsed JSON."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(arrays.pop("__meta__.json").tobytes().decode("utf-8"))
    return arrays, meta


def assert_same_values(a, b, where=(), skip=frozenset()):
    """a and b are equal all the way down: dict keys, list lengths, floats bit for bit (NaN
    equal to NaN), arrays in dtype, shape and bytes; paths in ``skip`` are not compared."""
    label = "/".join(map(str, where)) or "the top"
    if tuple(where) in skip:
        return
    if isinstance(a, dict) or isinstance(b, dict):
        assert isinstance(a, dict) and isinstance(b, dict), f"{label}: {a!r:.80} vs {b!r:.80}"
        assert a.keys() == b.keys(), \
            f"{label}: keys {sorted(set(a) ^ set(b))} are in only one of the two"
        for key in a:
            assert_same_values(a[key], b[key], (*where, key), skip)
    elif isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        assert isinstance(b, (list, tuple)) and isinstance(a, (list, tuple)) \
            and len(a) == len(b), f"{label}: {a!r:.120} vs {b!r:.120}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_values(x, y, (*where, i), skip)
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, \
            f"{label}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        assert a.tobytes() == b.tobytes(), \
            f"{label}: {np.count_nonzero(a != b)} of {a.size} values differ"
    elif isinstance(a, float) and isinstance(b, float):
        assert a == b or (math.isnan(a) and math.isnan(b)), f"{label}: {a!r} vs {b!r}"
    else:
        assert type(a) is type(b) and a == b, f"{label}: {a!r} vs {b!r}"


def assert_same_checkpoint(path, reference):
    """Every array and every JSON value of two checkpoints, but the epochs' wall-clock time."""
    (arrays, meta), (ref_arrays, ref_meta) = _read(path), _read(reference)
    assert_same_values(arrays, ref_arrays, ("arrays",))
    assert_same_values(meta, ref_meta, skip=TIMING)


def assert_same_history(history, reference):
    """Every history key, every value; "seconds" only in its length."""
    assert len(history["seconds"]) == len(reference["seconds"])
    assert_same_values({k: v for k, v in history.items() if k != "seconds"},
                       {k: v for k, v in reference.items() if k != "seconds"}, ("history",))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: its checkpoint after every batch ({iteration}.npz), its final
    checkpoint and its history."""
    folder = tmp_path_factory.mktemp("reference")
    train, val = _data()
    trainer = _trainer(folder / "final.npz", [_EveryBatch(folder)])
    history = trainer.fit(train, val)
    assert trainer.iteration == EPOCHS * BATCHES
    return folder, history


# (epoch, batch): mid-epoch positions early, in the middle and one batch before the short last
# batch, and the end of an epoch's last batch before its validation
POSITIONS = [(1, 3), (2, 5), (3, 7), (2, 8)]


@pytest.mark.parametrize("epoch, batch", POSITIONS,
                         ids=[f"epoch{e}-batch{b}" for e, b in POSITIONS])
def test_a_stop_at_any_batch_saves_and_resumes_every_piece_of_state(tmp_path, reference, epoch,
                                                                    batch):
    folder, ref_history = reference
    iteration = (epoch - 1) * BATCHES + batch
    train, val = _data()
    stopped = _trainer(tmp_path / "run.npz", [_StopAfter(iteration)])
    with pytest.raises(TrainingInterrupted):
        stopped.fit(train, val)
    assert stopped.iteration == iteration
    # the checkpoint of the stop is the reference's at that batch, every piece of it
    assert_same_checkpoint(tmp_path / "run.npz", folder / f"{iteration}.npz")

    resumed = _trainer(tmp_path / "resumed.npz")
    resumed.resume(tmp_path / "run.npz")
    # what resume restored, saved again, is that same state: nothing dropped on the way in
    resumed.save(tmp_path / "as-resumed.npz")
    assert_same_checkpoint(tmp_path / "as-resumed.npz", folder / f"{iteration}.npz")

    history = resumed.fit(train, val)
    assert resumed.iteration == EPOCHS * BATCHES
    assert_same_history(history, ref_history)
    assert_same_checkpoint(tmp_path / "resumed.npz", folder / "final.npz")


def test_the_comparison_sees_a_single_changed_sum(tmp_path, reference):
    """The guard guards: a checkpoint whose running loss sum differs in its last bit, or whose
    Generator state moved one draw, is not the same checkpoint."""
    folder, _ = reference
    source = folder / f"{BATCHES + 3}.npz"
    arrays, meta = _read(source)
    trainer_state = meta["extra"]["trainer"]
    assert trainer_state["batch"] == 3 and trainer_state["sums"][2] == 3 * BATCH
    for change in ("sums", "rng"):
        changed = json.loads(json.dumps(meta))
        state = changed["extra"]["trainer"]
        if change == "sums":
            state["sums"][0] = float(np.nextafter(state["sums"][0], np.inf))
        else:
            gen = np.random.default_rng()
            gen.bit_generator.state = state["rng"]
            gen.random()
            state["rng"] = json.loads(json.dumps(gen.bit_generator.state))
        path = tmp_path / f"{change}.npz"
        np.savez(path, **arrays,
                 **{"__meta__.json": np.frombuffer(json.dumps(changed).encode(), np.uint8)})
        with pytest.raises(AssertionError, match=change):
            assert_same_checkpoint(path, source)


# ---------------------------------------------------------------------------- layer statistics


def _fit_digits(**settings):
    import cnnkit

    (x, y), _ = _data()
    if "resume" in settings:          # the recorded settings, with more epochs
        return cnnkit.fit((x, y), progress=False, **settings)
    return cnnkit.fit((x, y), "FC-4", **{"epochs": 2, "batch_size": 3, "val_size": 30,
                                         "progress": False, "schedule": "none", "seed": 2,
                                         **settings})


def test_a_resumed_run_keeps_its_auto_layer_stats_cadence_and_records(tmp_path):
    """layer_stats defaults to auto: 2 epochs of 52 batches (154 images by 3) choose every 2
    (and record it in the checkpoint); resumed for 4 epochs (208 iterations, for which auto
    would choose 5), the run keeps 2, and its layer_stats.json is that of the uninterrupted
    4-epoch run with the cadence 2, record for record."""
    from cnnkit.monitor import LayerStats, auto_every

    first = _fit_digits(out=tmp_path, name="r")
    assert first.history["iterations"] == [52, 104]
    ckpt = tmp_path / "r" / "checkpoint.npz"
    _, meta = _read(ckpt)
    assert meta["extra"]["metadata"]["settings"]["layer_stats"] == "auto"
    assert meta["extra"]["trainer"]["callbacks"]["LayerStats:0"] == {"every": 2}
    assert first.layer_stats.iterations == [1, *range(2, 105, 2)]
    resumed = _fit_digits(resume=ckpt, epochs=4)
    assert auto_every(208) == 5 and resumed.layer_stats.every == 2
    whole = _fit_digits(epochs=4, layer_stats=2)
    saved = LayerStats.load(tmp_path / "r" / "layer_stats.json")
    assert saved.iterations == [1, *range(2, 209, 2)]
    assert_same_values(saved.to_dict(), whole.layer_stats.to_dict())
    # history.csv, continued: a row per epoch of history.json, none twice
    import csv

    rows = list(csv.DictReader((tmp_path / "r" / "history.csv").open()))
    history = json.loads((tmp_path / "r" / "history.json").read_text())
    assert [int(r["epoch"]) for r in rows] == history["epoch"] == [1, 2, 3, 4]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"):
        assert [float(r[key]) for r in rows] == history[key], key


def test_a_checkpoint_from_before_the_auto_cadence_still_resumes(tmp_path):
    """A checkpoint of an older version records layer_stats as a number and no cadence among
    the callbacks' state (or no layer_stats at all: none were kept): it resumes with that."""
    _fit_digits(out=tmp_path, name="r", layer_stats=7)
    ckpt = tmp_path / "r" / "checkpoint.npz"
    arrays, meta = _read(ckpt)
    del meta["extra"]["trainer"]["callbacks"]["LayerStats:0"]
    before = (tmp_path / "r" / "layer_stats.json").read_bytes()
    for settings, every in (({}, None), ({"layer_stats": 7}, 7)):
        changed = json.loads(json.dumps(meta))
        recorded = changed["extra"]["metadata"]["settings"]
        del recorded["layer_stats"]
        recorded.update(settings)
        old = tmp_path / "r" / "old.npz"
        np.savez(old, **arrays,
                 **{"__meta__.json": np.frombuffer(json.dumps(changed).encode(), np.uint8)})
        run = _fit_digits(resume=old, epochs=3)
        assert run.history["epoch"] == [1, 2, 3]
        if every is None:
            assert (tmp_path / "r" / "layer_stats.json").read_bytes() == before
        else:
            assert run.layer_stats.every == 7 and run.layer_stats.iterations[-1] == 154
