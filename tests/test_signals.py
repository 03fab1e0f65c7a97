"""Stop signals (Ctrl-C, SIGTERM, SIGHUP) in the Trainer and on the command line: the first
finishes the batch, saves and stops, and resuming ends where the uninterrupted run ends, in every
array and every history key; a second stops at once; one request sent twice counts once; the
state of callbacks (EarlyStopping's patience) rides in the checkpoint. Each test sends the
signal from inside the process at a chosen point (a callback, a patched function), so nothing
depends on timing."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnkit import interrupts, nn, optim
from cnnkit.callbacks import Callback, EarlyStopping
from cnnkit.io import CheckpointError, load_checkpoint, save_checkpoint
from cnnkit.train import Trainer, TrainingInterrupted

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]


def _data(seed=0, n=200):
    """Non-square images (1 x 12 x 9) whose class follows a fixed linear rule."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 12, 9)).astype(np.float32)
    w = rng.standard_normal(12 * 9)
    y = np.digitize(x.reshape(n, -1) @ w, [-3.0, 3.0])
    return (x[:160], y[:160]), (x[160:], y[160:])


def _parts(seed=3, lr=3e-3):
    """A net with batch norm and dropout (running statistics and a Generator to restore), Adam
    and a cosine schedule."""
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, (3, 2), rng=rng), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.2, rng=rng),
                          nn.Linear(4 * 5 * 4, 3, rng=rng))
    opt = optim.Adam(model.named_parameters(), lr=lr)
    return model, opt, optim.CosineLR(opt, t_max=4)


def _trainer(path, epochs=3, callbacks=(), lr=3e-3):
    model, opt, sched = _parts(lr=lr)
    # 160 images in batches of 30: five full batches and a short one per epoch
    return Trainer(model, opt, scheduler=sched, batch_size=30, epochs=epochs, seed=5,
                   checkpoint=path, progress=False, callbacks=list(callbacks))


class SendSignal(Callback):
    """Send ``signum`` to this process (once per item of ``times``) at the end of mini-batch
    ``iteration`` (counted in the whole run), or at the end of epoch ``epoch``."""

    def __init__(self, signum, *, iteration=None, epoch=None, times=1):
        self.signum, self.iteration, self.epoch, self.times = signum, iteration, epoch, times

    def _send(self):
        for _ in range(self.times):
            os.kill(os.getpid(), self.signum)

    def on_batch_end(self, batch, logs):
        if logs["iteration"] == self.iteration:
            self._send()

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epoch:
            self._send()


def assert_same(a, b, where="checkpoint"):
    """Every array, number and key of two nested states equal (NaN equal to NaN), but for the
    seconds each epoch took."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {a.keys()} != {b.keys()}"
        for key in a:
            if key != "seconds":
                assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, f"{where}: dtypes differ"
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_checkpoints(path_a, path_b):
    a, b = load_checkpoint(path_a), load_checkpoint(path_b)
    for part in ("model_state", "optimizer", "scheduler", "extra"):
        assert_same(getattr(a, part), getattr(b, part), part)
    assert a.extra["trainer"]["history"]["seconds"].__len__() == \
        b.extra["trainer"]["history"]["seconds"].__len__()


def _finish(trainer, train, val, path):
    """Fit, then save the end state (a resumed run with nothing left to train writes none)."""
    trainer.fit(train, val)
    trainer.save(path)
    return trainer


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of 3 epochs, its final state saved."""
    folder = tmp_path_factory.mktemp("reference")
    train, val = _data()
    _finish(_trainer(folder / "c.npz"), train, val, folder / "end.npz")
    return folder / "end.npz"


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("send, said", [
    pytest.param({"iteration": 9}, "in epoch 2 after batch 3", id="mid-epoch"),
    pytest.param({"iteration": 6}, "in epoch 1 after batch 6", id="last-batch"),
    pytest.param({"epoch": 0}, "after epoch 1", id="epoch-end"),      # before epoch 2's batch 1
    pytest.param({"epoch": 2}, "after epoch 3", id="last-epoch-end"),  # trained; before return
])
def test_a_stop_signal_finishes_the_batch_saves_and_resume_is_exact(
        tmp_path, reference, signum, send, said):
    train, val = _data()
    trainer = _trainer(tmp_path / "c.npz", callbacks=[SendSignal(signum, **send)])
    name = "interrupted" if signum == signal.SIGINT else \
        f"interrupted by {signal.Signals(signum).name}"
    with pytest.raises(TrainingInterrupted, match=f"^{name} {said}; saved ") as caught:
        trainer.fit(train, val)
    assert caught.value.signum == signum and not caught.value.at_once
    assert interrupts.exit_status(caught.value) == 128 + signum
    assert signal.getsignal(signum) is not interrupts._on_signal      # handlers given back
    assert not list(tmp_path.glob(".*.tmp"))
    resumed = _trainer(tmp_path / "c2.npz").resume(tmp_path / "c.npz")
    _finish(resumed, train, val, tmp_path / "end.npz")
    assert_same_checkpoints(reference, tmp_path / "end.npz")


def test_a_second_request_stops_at_once_and_a_repeated_signal_is_the_same_request(
        tmp_path, monkeypatch, reference):
    """Two SIGTERMs within REPEAT_SECONDS are one request (timeout(1) signals the command and
    then its process group): the batch is finished and saved. Two apart are two requests: the
    second stops at once, here between two batches, so it still saves."""
    train, val = _data()
    monkeypatch.setattr(interrupts, "REPEAT_SECONDS", 1e9)
    trainer = _trainer(tmp_path / "one.npz",
                       callbacks=[SendSignal(signal.SIGTERM, iteration=9, times=2)])
    with pytest.raises(TrainingInterrupted, match="after batch 3; saved") as caught:
        trainer.fit(train, val)
    assert not caught.value.at_once
    monkeypatch.setattr(interrupts, "REPEAT_SECONDS", 0.0)
    trainer = _trainer(tmp_path / "two.npz",
                       callbacks=[SendSignal(signal.SIGTERM, iteration=9, times=2)])
    with pytest.raises(TrainingInterrupted, match="after batch 3; saved") as caught:
        trainer.fit(train, val)
    assert caught.value.at_once and caught.value.signum == signal.SIGTERM
    for name in ("one", "two"):
        resumed = _trainer(tmp_path / f"{name}2.npz").resume(tmp_path / f"{name}.npz")
        _finish(resumed, train, val, tmp_path / f"{name}-end.npz")
        assert_same_checkpoints(reference, tmp_path / f"{name}-end.npz")


def test_a_second_request_while_an_epoch_end_is_recorded_saves_nothing(
        tmp_path, monkeypatch, reference):
    """Between the epoch count and the schedule's step the state is no batch boundary's: a
    second request there stops at once and must not save it."""
    monkeypatch.setattr(interrupts, "REPEAT_SECONDS", 0.0)
    train, val = _data()
    trainer = _trainer(tmp_path / "c.npz")
    step, calls = trainer.scheduler.step, []

    def stepping():
        calls.append(1)
        if len(calls) == 2:                       # the end of epoch 2
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
        return step()

    trainer.scheduler.step = stepping
    with pytest.raises(TrainingInterrupted, match="at the end of epoch 2; stopped mid-step, so "):
        trainer.fit(train, val)
    assert load_checkpoint(tmp_path / "c.npz").extra["trainer"]["epoch"] == 1
    resumed = _trainer(tmp_path / "c2.npz").resume(tmp_path / "c.npz")
    _finish(resumed, train, val, tmp_path / "end.npz")
    assert_same_checkpoints(reference, tmp_path / "end.npz")


def test_stop_requests_count_a_repeat_within_the_window_once():
    now = [0.0]
    requests = interrupts.StopRequests(clock=lambda: now[0])
    assert requests.pending is None
    assert requests.note(signal.SIGTERM)
    now[0] = interrupts.REPEAT_SECONDS / 2
    assert not requests.note(signal.SIGINT)          # the same request, sent again
    assert (requests.count, requests.pending) == (1, signal.SIGTERM)
    now[0] = interrupts.REPEAT_SECONDS * 1.6          # measured from the request, not the repeat
    assert requests.note(signal.SIGHUP)
    assert (requests.count, requests.signum) == (2, signal.SIGTERM)


def test_an_ignored_signal_stays_ignored_and_handlers_are_given_back():
    before = {s: signal.getsignal(s) for s in interrupts.STOP_SIGNALS}
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)       # what nohup does
    try:
        with interrupts.stop_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is interrupts._on_signal
            with pytest.raises(interrupts.Interrupted) as caught:
                os.kill(os.getpid(), signal.SIGTERM)
                signal.sigtimedwait([], 0)           # a point where the handler has run
            assert caught.value.signum == signal.SIGTERM
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert {s: signal.getsignal(s) for s in interrupts.STOP_SIGNALS} == before


def test_a_request_held_by_a_deferral_is_raised_when_it_ends_in_the_raise_mode():
    with interrupts.stop_signals():
        with pytest.raises(interrupts.Interrupted) as caught:
            with interrupts.deferred() as requested:
                os.kill(os.getpid(), signal.SIGHUP)
                assert requested() == signal.SIGHUP     # held, not raised
        assert caught.value.signum == signal.SIGHUP and interrupts.requested() is None


# ---------------------------------------------------------------------------- EarlyStopping

def _early(tmp_path, name, callbacks=(), resume=None, epochs=12):
    """A learning rate far too high: the validation loss climbs after a few epochs, and
    EarlyStopping (patience 2, restoring its best weights) stops the run."""
    stop = EarlyStopping("val_loss", patience=2, restore_best=True)
    trainer = _trainer(tmp_path / f"{name}.npz", epochs=epochs, callbacks=[stop, *callbacks],
                       lr=0.3)
    if resume is not None:
        trainer.resume(resume)
    train, val = _data()
    trainer.fit(train, val)
    return trainer, stop


def test_early_stopping_keeps_its_patience_across_a_resume(tmp_path):
    full, full_stop = _early(tmp_path, "full")
    assert full_stop.stopped_epoch is not None and full.epoch < 12, "the run must stop early"
    waited = full_stop.stopped_epoch - 1            # an epoch (from 1) after which it waited 1
    iteration = waited * 6 + 2                      # 6 batches per epoch: mid-epoch after that
    with pytest.raises(TrainingInterrupted):
        _early(tmp_path, "cut", [SendSignal(signal.SIGTERM, iteration=iteration)])
    saved = load_checkpoint(tmp_path / "cut.npz").extra["trainer"]["callbacks"]
    assert saved["EarlyStopping:0"]["wait"] == 1 and "SendSignal:0" not in saved
    resumed, stop = _early(tmp_path, "resumed", resume=tmp_path / "cut.npz")
    assert stop.stopped_epoch == full_stop.stopped_epoch and resumed.epoch == full.epoch
    assert (stop.best, stop.best_epoch) == (full_stop.best, full_stop.best_epoch)
    for key, values in full.history.items():
        if key != "seconds":
            assert resumed.history[key] == values, key
    for name, value in full.model.state_dict().items():         # the best weights, restored
        np.testing.assert_array_equal(resumed.model.state_dict()[name], value, err_msg=name)


def test_a_run_early_stopping_ended_resumes_ended(tmp_path):
    full, full_stop = _early(tmp_path, "full")
    again, stop = _early(tmp_path, "again", resume=tmp_path / "full.npz")
    assert again.epoch == full.epoch and stop.stopped_epoch == full_stop.stopped_epoch
    assert len(again.history["epoch"]) == full.epoch            # nothing more trained


def test_a_checkpoint_from_before_callbacks_kept_state_still_resumes(tmp_path):
    with pytest.raises(TrainingInterrupted):
        _early(tmp_path, "cut", [SendSignal(signal.SIGTERM, iteration=8)])
    ckpt = load_checkpoint(tmp_path / "cut.npz")
    del ckpt.extra["trainer"]["callbacks"]                      # what older versions wrote
    model, opt, sched = _parts(lr=0.3)
    model.load_state_dict(ckpt.model_state)
    save_checkpoint(tmp_path / "old.npz", model, optimizer=ckpt.optimizer,
                    scheduler=ckpt.scheduler, extra=ckpt.extra)
    trainer, stop = _early(tmp_path, "resumed", resume=tmp_path / "old.npz", epochs=3)
    assert trainer.epoch == 3 and stop.best_epoch is not None   # patience started afresh


@pytest.mark.parametrize("damage, says", [
    ({"wait": -1}, "callback EarlyStopping:0 does not fit it: its counters"),
    ({"monitor": "val_acc", "mode": "max"}, "it watched 'val_acc' \\(max\\)"),
    ("not a dict", "EarlyStopping:0 does not fit it: expected a dict"),
])
def test_a_callback_state_that_does_not_fit_is_one_line_naming_it(tmp_path, damage, says):
    with pytest.raises(TrainingInterrupted):
        _early(tmp_path, "cut", [SendSignal(signal.SIGTERM, iteration=8)])
    ckpt = load_checkpoint(tmp_path / "cut.npz")
    state = ckpt.extra["trainer"]["callbacks"]
    state["EarlyStopping:0"] = damage if isinstance(damage, str) else \
        {**state["EarlyStopping:0"], **damage}
    model, _, _ = _parts()
    model.load_state_dict(ckpt.model_state)
    save_checkpoint(tmp_path / "bad.npz", model, optimizer=ckpt.optimizer,
                    scheduler=ckpt.scheduler, extra=ckpt.extra)
    with pytest.raises(CheckpointError, match=f"bad.npz: the trainer state is damaged: .*{says}"):
        _early(tmp_path, "resumed", resume=tmp_path / "bad.npz")


# ---------------------------------------------------------------------------- command line

QUICK = ["--limit", "300", "--batch-size", "50", "--epochs", "2", "--no-progress",
         "--layer-stats", "0", "--val-size", "60", "--model", "CONV3-4 -> BN -> RELU -> POOL2 -> FC-10"]


def _cnnkit(code: str, cwd, timeout=120):
    """Run ``code`` (Python that ends by calling the command line) in a child process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    env.pop("CNNKIT_DEBUG", None)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _main(argv) -> str:
    return f"import sys\nfrom cnnkit.cli import main\nsys.exit(main({argv!r}))\n"


def _kill_on(target: str, signum: int, call: int = 1, after: bool = True) -> str:
    """Python that wraps ``target`` ("module:Class.method" or "module:function") to send
    ``signum`` to its own process on the ``call``-th call (after it returns, or before)."""
    module, name = target.split(":")
    owner, _, attr = name.rpartition(".")
    return (f"import os, importlib\n"
            f"_m = importlib.import_module({module!r})\n"
            f"_o = {('_m.' + owner) if owner else '_m'}\n"
            f"_f = getattr(_o, {attr!r})\n"
            f"_n = [0]\n"
            f"def _wrapped(*a, **k):\n"
            f"    _n[0] += 1\n"
            f"    if _n[0] == {call} and not {after}:\n"
            f"        os.kill(os.getpid(), {int(signum)})\n"
            f"    out = _f(*a, **k)\n"
            f"    if _n[0] == {call} and {after}:\n"
            f"        os.kill(os.getpid(), {int(signum)})\n"
            f"    return out\n"
            f"setattr(_o, {attr!r}, _wrapped)\n")


def _leftovers(folder: Path) -> list[str]:
    """Temporary files and locks left anywhere under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith(".tmp") or p.name.endswith(".lock"))


@pytest.mark.slow
def test_sigterm_to_cnnkit_train_saves_one_line_and_the_resume_is_exact(tmp_path):
    """SIGTERM after the 7th optimizer step of `cnnkit train`: one line with the resume command,
    exit 143, the lock released; resuming ends with the uninterrupted run's every array and
    history key."""
    done = _cnnkit(_main(["train", *QUICK, "--out", "runs", "--name", "full"]), tmp_path)
    assert done.returncode == 0, done.stderr
    done = _cnnkit(_kill_on("cnnkit.optim.optimizers:Optimizer.step", signal.SIGTERM, 7)
                   + _main(["train", *QUICK, "--out", "runs", "--name", "cut"]), tmp_path)
    assert done.returncode == 143, done.stderr
    assert done.stderr.splitlines() == [
        "cnnkit train: interrupted by SIGTERM in epoch 2 after batch 2; saved "
        "runs/cut/checkpoint.npz; resume with: cnnkit train --resume runs/cut/checkpoint.npz"]
    assert _leftovers(tmp_path) == [] and not (tmp_path / "runs/cut/model.npz").exists()
    done = _cnnkit(_main(["train", "--resume", "runs/cut/checkpoint.npz", "--no-progress"]),
                   tmp_path)
    assert done.returncode == 0, done.stderr
    assert_same_checkpoints(tmp_path / "runs/full/checkpoint.npz",
                            tmp_path / "runs/cut/checkpoint.npz")
    full, cut = (json.loads((tmp_path / f"runs/{n}/history.json").read_text())
                 for n in ("full", "cut"))
    assert_same(full, cut, "history.json")
    assert_same(load_checkpoint(tmp_path / "runs/full/model.npz").model_state,
                load_checkpoint(tmp_path / "runs/cut/model.npz").model_state, "model.npz")


def test_a_signal_during_the_last_write_leaves_nothing_half_written(tmp_path):
    """After training, cnnkit writes model.npz in the raise mode: a signal in the middle of
    that write stops the command with one line, no model.npz, no temporary file, no lock."""
    signum = signal.SIGHUP
    done = _cnnkit(_kill_on("numpy:savez", signum, call=3, after=False)   # 2 checkpoints, then
                   + _main(["train", *QUICK, "--out", "runs", "--name", "r"]), tmp_path)
    name = signal.Signals(signum).name
    assert done.returncode == 128 + signum, done.stderr
    assert done.stderr.splitlines() == [f"cnnkit train: interrupted by {name}"]
    assert _leftovers(tmp_path) == [] and not (tmp_path / "runs/r/model.npz").exists()
    assert load_checkpoint(tmp_path / "runs/r/checkpoint.npz").extra["trainer"]["epoch"] == 2


def test_a_signal_during_a_checkpoint_write_in_training_waits_for_the_write(tmp_path):
    """Inside training the first signal is held: the epoch's checkpoint is written whole, and
    the run stops before the next batch."""
    done = _cnnkit(_kill_on("numpy:savez", signal.SIGTERM, call=1, after=False)
                   + _main(["train", *QUICK, "--out", "runs", "--name", "r"]), tmp_path)
    assert done.returncode == 143, done.stderr
    assert done.stderr.splitlines() == [
        "cnnkit train: interrupted by SIGTERM after epoch 1; saved runs/r/checkpoint.npz; "
        "resume with: cnnkit train --resume runs/r/checkpoint.npz"]
    assert _leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A finished run folder of the quick settings, trained in this process."""
    import cnnkit

    out = tmp_path_factory.mktemp("runs")
    run = cnnkit.fit("mnist", QUICK[QUICK.index("--model") + 1], limit=300, batch_size=50,
                     epochs=1, progress=False, layer_stats=0, val_size=60, out=str(out),
                     name="r")
    return Path(run.folder)


@pytest.mark.parametrize("command, target, call, signum", [
    pytest.param("report", "matplotlib.figure:Figure.savefig", 2, signal.SIGHUP, id="report",
                 marks=pytest.mark.slow),
    pytest.param("evaluate", "cnnkit.nn.containers:Sequential.forward", 2, signal.SIGTERM,
                 id="evaluate", marks=pytest.mark.slow),
    pytest.param("search", "cnnkit.optim.optimizers:Optimizer.step", 7, signal.SIGTERM,
                 id="search", marks=pytest.mark.slow),
    pytest.param("experiment", "cnnkit.optim.optimizers:Optimizer.step", 30, signal.SIGTERM,
                 id="experiment", marks=pytest.mark.slow),
])
def test_other_commands_stop_with_one_line_and_leave_nothing_half_written(
        tmp_path, small_run, command, target, call, signum):
    """The command line's raise mode: the signal raises where the command stands, and atomic
    writes and ``with`` blocks leave no temporary file, no lock and no partial page."""
    argv = {"report": ["report", str(small_run), "--no-progress"],
            "evaluate": ["evaluate", str(small_run / "model.npz")],
            "search": ["search", "--trials", "2", *QUICK[:2], "--epochs", "1", "--out", "out"],
            "experiment": ["experiment", "dropout-modes", "--out", "out", "--no-progress"],
            }[command]
    before = sorted(p.name for p in small_run.iterdir())
    done = _cnnkit(_kill_on(target, signum, call, after=False) + _main(argv), tmp_path)
    assert done.returncode == 128 + signum, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip() and "\r" not in line]
    assert lines == [f"cnnkit {command}: interrupted by {signal.Signals(signum).name}"]
    assert _leftovers(tmp_path) == [] and _leftovers(small_run) == []
    assert sorted(p.name for p in small_run.iterdir()) == before     # no report.html begun


@pytest.mark.parametrize("group", [pytest.param(False, id="to-cnnkit", marks=pytest.mark.slow),
                                   pytest.param(True, id="to-its-group")])
def test_sigterm_during_a_folder_decode_by_worker_processes(tmp_path, group):
    """SIGTERM while worker processes decode a folder into the cache (to cnnkit alone, as
    ``kill`` sends it, or to its process group, workers included, as ``timeout`` does): one
    line, exit 143, no temporary cache file, no run folder. The workers start from 2 images
    of 100 each here, not thousands (the module's thresholds, set by the child)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(2):
        (tmp_path / "imgs" / f"c{c}").mkdir(parents=True)
        for i in range(200):
            Image.fromarray(rng.integers(0, 255, (10, 7), dtype=np.uint8)).save(
                tmp_path / "imgs" / f"c{c}" / f"{i}.png")
    kill = "os.killpg(0, signal.SIGTERM)" if group else "os.kill(os.getpid(), signal.SIGTERM)"
    code = ("import os, signal, sys, concurrent.futures as futures\n"
            "import cnnkit.data.folder as folder\n"
            "folder._PROCESSES_FROM, folder._CHUNK = 2, 100\n"
            "_result = futures.Future.result\n"
            "def result(self, *a, **k):\n"
            f"    {kill}\n"
            "    return _result(self, *a, **k)\n"
            "futures.Future.result = result\n"
            + _main(["train", "--data", "folder:imgs", "--input", "1x28x28", *QUICK[6:],
                     "--out", "runs", "--name", "r"]))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
               CNNKIT_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, start_new_session=True)
    assert done.returncode == 143, done.stderr
    assert done.stderr.splitlines() == ["cnnkit train: interrupted by SIGTERM"]
    assert _leftovers(tmp_path) == [] and not (tmp_path / "runs").exists()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.suffix == ".npy"]
