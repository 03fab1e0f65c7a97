"""The learning-rate range test: its schedule, smoothing, early stop and rules, the net it leaves
alone, `train --lr find` equal to `train --lr X` bit for bit, and bad input as one line."""

import json
import math
import os

import numpy as np
import pytest

import cnnkit
from cnnkit import nn, optim
from cnnkit.checkpoint import load_checkpoint
from cnnkit.cli import main
from cnnkit.errors import CnnkitError, UsageError
from cnnkit.lr_find import (RULES, LRFindResult, default_beta, lr_find, range_test, schedule,
                            smooth, suggest)
from tests.test_cli import assert_one_line_error, run

NET = "INPUT[1x28x28] -> CONV3-4 -> BN -> RELU -> POOL2 -> DROPOUT0.3 -> FC-10"


def _digits(n=150, seed=0):
    """n small random 'images' (n, 1, 6, 5) float32 with labels of 3 classes that depend on
    them, so a linear net can learn."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 6, 5)).astype(np.float32)
    y = (x[:, 0, :3].sum(axis=(1, 2)) > 0).astype(np.int64) + (x[:, 0, 3, 0] > 1)
    return x, y


def _linear(seed=0):
    """A linear classifier of _digits' images starting from zero weights: its first loss is
    ln 3 on any batch, and small steps lower it."""
    rng = np.random.default_rng(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(30, 3, rng=rng))
    for _, p in net.named_parameters():
        p.data[...] = 0
    return net


class SpySGD(optim.SGD):
    """SGD that records the rate of every step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.used = []

    def step(self):
        self.used.append(self.lr)
        super().step()


# ---------------------------------------------------------------------------- the arithmetic

def test_schedule_is_exponential_from_start_to_end():
    lrs = schedule(3e-6, 0.7, 13)
    i = np.arange(13)
    np.testing.assert_allclose(lrs, 3e-6 * (0.7 / 3e-6) ** (i / 12), rtol=1e-13)
    assert lrs[0] == 3e-6 and lrs[-1] == 0.7
    np.testing.assert_allclose(lrs[1:] / lrs[:-1], (0.7 / 3e-6) ** (1 / 12), rtol=1e-12)


def test_each_step_uses_the_rate_of_its_iteration_and_the_data_is_cycled():
    x, y = _digits(50)                  # 50 images, batch 16: 4 batches a pass, 11 iterations
    net = _linear()
    spy = SpySGD(net.named_parameters(), lr=0.1)
    result = range_test(net, spy, x, y, batch_size=16, start=1e-2, end=3.0, iterations=11,
                        diverge=1e9)
    assert result.stopped == "end" and len(result.losses) == 11
    falling = np.argmin(result.smoothed) == 10
    assert ("still falling at the last rate" in result.summary()) == falling
    np.testing.assert_array_equal(spy.used, schedule(1e-2, 3.0, 11))
    np.testing.assert_array_equal(result.lrs, schedule(1e-2, 3.0, 11))
    np.testing.assert_array_equal(result.smoothed, smooth(result.losses, result.beta))


def test_smoothing_is_the_bias_corrected_moving_average():
    losses = [2.0, 1.0, 4.0, 0.5, 3.25]
    beta, a, expected = 0.7, 0.0, []
    for i, loss in enumerate(losses):
        a = beta * a + (1 - beta) * loss
        expected.append(a / (1 - beta ** (i + 1)))
    np.testing.assert_allclose(smooth(losses, beta), expected, rtol=1e-15)
    assert smooth(losses, beta)[0] == 2.0
    np.testing.assert_array_equal(smooth(losses, 0.0), losses)


def test_the_default_smoothing_lags_a_twentieth_of_the_test():
    for iterations, beta in ((200, 0.9), (100, 0.8), (1000, 0.98), (20, 0.0), (2, 0.0)):
        assert default_beta(iterations) == pytest.approx(beta, abs=1e-15)
    x, y = _digits(50)
    net = _linear()
    result = range_test(net, optim.SGD(net.named_parameters(), lr=0.1), x, y, batch_size=16,
                        start=1e-2, end=3.0, iterations=40, diverge=1e9)
    assert result.beta == pytest.approx(0.5)


def _curve():
    """A loss that falls fastest exactly at lr 1e-3 (tanh's steepest point in ln lr) and blows
    up past 1e-1; its minimum on this grid is at lrs[lowest]."""
    lrs = np.logspace(-6, 0, 61)               # 10 points a decade: 1e-3 is lrs[30]
    u = np.log(lrs / 1e-3)
    loss = 2.0 - np.tanh(u / 1.5) + np.exp(np.log(lrs / 1e-1) * 2)
    return lrs, loss


def test_the_rules_read_the_known_rate_from_a_synthetic_curve():
    lrs, loss = _curve()
    assert suggest(lrs, loss, "steepest") == pytest.approx(1e-3, rel=1e-12)
    lowest = int(np.argmin(loss))
    assert 35 < lowest < 60
    assert suggest(lrs, loss, "minimum") == pytest.approx(lrs[lowest] / 10, rel=1e-15)
    # a steeper fall after the minimum is not looked at: only the descent up to it
    dipped = loss.copy()
    dipped[lowest + 5:] = np.linspace(loss[lowest] + 5, loss[lowest] + 0.1, len(loss) - lowest - 5)
    assert suggest(lrs, dipped, "steepest") == pytest.approx(1e-3, rel=1e-12)


def test_steepest_skips_the_first_points_of_the_average():
    lrs, loss = _curve()
    noisy = loss.copy()
    noisy[0] += 0.5                  # one noisy first batch: the steepest slope of all
    assert suggest(lrs, noisy, "steepest") == lrs[0]
    assert suggest(lrs, noisy, "steepest", skip=10) == pytest.approx(1e-3, rel=1e-12)
    # a minimum before the skipped points leaves them in
    assert suggest(lrs[:8], -np.arange(8.0) ** 2, "steepest", skip=10) == lrs[7]


def test_a_curve_that_only_rises_has_no_suggestion():
    lrs = np.logspace(-5, 0, 20)
    with pytest.raises(CnnkitError, match="lowest at the first rate"):
        suggest(lrs, np.linspace(1, 3, 20))
    with pytest.raises(CnnkitError, match="too few"):
        suggest(lrs[:1], np.ones(1))
    with pytest.raises(UsageError, match="rule"):
        suggest(lrs, np.ones(20), "median")


def test_early_stop_when_the_smoothed_loss_blows_up():
    x, y = _digits(120)
    net = _linear()
    result = range_test(net, optim.SGD(net.named_parameters(), lr=1.0), x, y, batch_size=20,
                        start=1e-4, end=1e6, iterations=300, beta=0.5)
    assert result.stopped in ("diverged", "nonfinite")
    assert 10 < len(result.lrs) < 300
    if result.stopped == "diverged":   # the last smoothed loss passed 4 x the lowest before it
        assert result.smoothed[-1] > 4 * result.smoothed[:-1].min()
        assert np.all(result.smoothed[:-1] <= 4 * np.minimum.accumulate(result.smoothed[:-1]))
    assert result.suggestion < result.lrs[-1]
    assert set(result.suggestions) == set(RULES)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_a_nonfinite_loss_ends_the_test_with_what_was_recorded():
    x, y = _digits(60)
    net = _linear()
    result = range_test(net, optim.SGD(net.named_parameters(), lr=1.0), x, y, batch_size=20,
                        start=1e-3, end=1e200, iterations=200, diverge=1e300)
    assert result.stopped == "nonfinite"
    assert len(result.losses) == len(result.lrs) == len(result.smoothed) < 200
    json.dumps(result.to_dict(), allow_nan=False)             # NaN and infinity become null


# ---------------------------------------------------------------------------- the run's test

def test_lr_find_leaves_the_users_net_alone(tmp_path):
    """A Module of the user's: weights, BN running statistics, gradients, the dropout
    generator's state and the train/eval mode are all as before."""
    rng = np.random.default_rng(3)
    net, _ = cnnkit.models.build_model(NET, rng=rng)
    net.eval()
    for _, p in net.named_parameters():
        p.grad[...] = rng.standard_normal(p.grad.shape)
    before = (net.state_dict(), {n: p.grad.copy() for n, p in net.named_parameters()},
              json.dumps(net.rng_states(), default=str), [m.training for m in net.modules()])
    result = lr_find(model=net, limit=300, iterations=30, batch_size=32, progress=False)
    after = (net.state_dict(), {n: p.grad.copy() for n, p in net.named_parameters()},
             json.dumps(net.rng_states(), default=str), [m.training for m in net.modules()])
    assert before[0].keys() == after[0].keys() and before[1].keys() == after[1].keys()
    for b, a in zip(before[:2], after[:2]):
        for key in b:
            np.testing.assert_array_equal(b[key], a[key], err_msg=key)
    assert before[2:] == after[2:]
    assert isinstance(result, LRFindResult) and len(result.lrs) <= 30
    assert result.settings["batch_size"] == 32 and "lr" not in result.settings


def test_lr_find_reads_the_runs_settings_and_refuses_a_run_folders():
    with pytest.raises(TypeError, match="epoch"):
        lr_find(epoch=3)
    with pytest.raises(UsageError, match="out"):
        lr_find(out="runs")
    with pytest.raises(UsageError, match="resume"):
        lr_find(resume="runs/x/checkpoint.npz")
    with pytest.raises(UsageError, match="batch_size=0"):
        lr_find(batch_size=0)


@pytest.mark.parametrize("options, fragment", [
    ({"start": 1.0, "end": 0.1}, "start must be below end"),
    ({"start": 0.1, "end": 0.1}, "start must be below end"),
    ({"start": 0.0}, "start must be a positive"),
    ({"start": -1e-3}, "start must be a positive"),
    ({"end": math.inf}, "end must be a positive finite"),
    ({"end": math.nan}, "end must be a positive finite"),
    ({"start": "1e-5"}, "start must be a number"),
    ({"iterations": 0}, "iterations must be a count from 2"),
    ({"iterations": 1}, "iterations must be a count from 2"),
    ({"iterations": 10 ** 9}, "iterations must be a count from 2"),
    ({"iterations": 2.5}, "iterations must be a count from 2"),
    ({"beta": 1.0}, "beta"),
    ({"diverge": 1.0}, "diverge"),
    ({"rule": "fastest"}, "rule must be one of"),
])
def test_bad_settings_are_one_line_before_any_data_is_read(options, fragment):
    with pytest.raises(UsageError, match=fragment) as info:
        lr_find(data="folder:/no/such/folder", **options)
    assert "\n" not in str(info.value)


def test_too_little_data_for_one_batch():
    x, y = _digits(10)
    net = _linear()
    with pytest.raises(UsageError, match="at least one batch of 16 training images.*holds 10"):
        range_test(net, optim.SGD(net.named_parameters(), lr=0.1), x, y, batch_size=16)


def test_the_result_plots_and_serialises(tmp_path):
    x, y = _digits(80)
    net = _linear()
    result = range_test(net, optim.SGD(net.named_parameters(), lr=0.1), x, y, batch_size=16,
                        start=1e-4, end=10, iterations=40)
    fig = result.plot(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig._repr_png_()[:4] == b"\x89PNG"
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert any(list(line.get_xdata()) == [result.suggestion] * 2 for line in ax.lines)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["suggestion"] == result.suggestion and data["rule"] == "minimum"
    assert data["lrs"] == result.lrs.tolist() and data["losses"] == result.losses.tolist()
    assert data["rule_text"].startswith("minimum: a tenth of the rate") and "suggested lr" in repr(result)


# ---------------------------------------------------------------------------- train --lr find

def _state(path):
    ckpt = load_checkpoint(path)
    return ckpt.model_state, ckpt.extra.get("trainer", {}).get("history")


def test_train_lr_find_equals_train_lr_suggestion_bit_for_bit(capsys, tmp_path):
    """The range test leaves every stream the run draws from as it was: the initial weights,
    the split, the shuffle, the augmentation (crop), dropout's masks and BN's statistics."""
    common = ["--limit", "400", "--val-size", "80", "--epochs", "2", "--batch-size", "32",
              "--model", NET, "--no-progress", "--out", str(tmp_path), "--layer-stats", "0"]
    code, out, err = run(capsys, "train", "--lr", "find", "--name", "found", *common)
    assert code == 0, err
    assert "learning-rate range test: suggested lr" in out
    found = load_checkpoint(tmp_path / "found" / "checkpoint.npz")
    settings = found.extra["metadata"]["settings"]
    lr = settings["lr"]
    assert isinstance(lr, float) and lr == found.extra["metadata"]["lr_find"]["suggestion"]
    code, out, err = run(capsys, "train", "--lr", repr(lr), "--name", "given", *common)
    assert code == 0, err
    given = load_checkpoint(tmp_path / "given" / "checkpoint.npz")
    assert given.extra["metadata"]["settings"] == settings
    for name in ("checkpoint.npz", "model.npz"):
        a, b = (load_checkpoint(tmp_path / run_ / name) for run_ in ("found", "given"))
        assert a.model_state.keys() == b.model_state.keys()
        for key in a.model_state:
            np.testing.assert_array_equal(a.model_state[key], b.model_state[key], err_msg=key)
    history = [json.loads((tmp_path / r / "history.json").read_text()) for r in ("found", "given")]
    for h in history:
        h.pop("seconds", None)
    assert history[0] == history[1]
    assert found.extra["trainer"]["rng"] == given.extra["trainer"]["rng"]
    assert found.extra["trainer"]["model_rngs"] == given.extra["trainer"]["model_rngs"]
    assert (tmp_path / "found" / "test.json").read_text() == \
        (tmp_path / "given" / "test.json").read_text()

    # --resume continues with the recorded number: no second range test
    code, out, err = run(capsys, "train", "--resume", str(tmp_path / "found" / "checkpoint.npz"),
                         "--epochs", "3", "--no-progress")
    assert code == 0, err
    assert "range test" not in out and f"lr {lr:g}" in out


def test_fit_lr_find_returns_a_run_with_the_number():
    run_ = cnnkit.fit(limit=300, epochs=1, lr="find", batch_size=32, progress=False,
                      layer_stats=0)
    assert isinstance(run_.config.lr, float) and run_.config.lr > 0
    assert run_.metadata["lr_find"]["suggestion"] == run_.config.lr
    assert run_.metadata["settings"]["lr"] == run_.config.lr


# ---------------------------------------------------------------------------- cnnkit lr-find

def test_lr_find_command_prints_the_suggestion_and_writes_new_files(capsys, tmp_path):
    plot, data = tmp_path / "lr.png", tmp_path / "lr.json"
    code, out, err = run(capsys, "lr-find", "--limit", "300", "--batch-size", "32",
                         "--iterations", "40", "--start", "1e-5", "--end", "1", "--no-progress",
                         "--plot", str(plot), "--json", str(data))
    assert code == 0, err
    saved = json.loads(data.read_text())
    assert f"train with it: cnnkit train --lr {saved['suggestion']!r}" in out
    assert "suggested lr" in out and "(minimum: a tenth of the rate" in out
    assert saved["start"] == 1e-5 and saved["end"] == 1 and len(saved["lrs"]) <= 40
    assert plot.read_bytes()[:4] == b"\x89PNG"
    # the same again is refused: nothing is written over
    before = plot.read_bytes()
    code, out, err = run(capsys, "lr-find", "--limit", "300", "--plot", str(plot))
    assert_one_line_error(code, err, "--plot", "already exists")
    assert plot.read_bytes() == before


def test_lr_find_command_json_to_stdout_is_json_alone(capsys):
    code, out, err = run(capsys, "lr-find", "--limit", "300", "--batch-size", "32",
                         "--iterations", "20", "--no-progress", "--json", "-", "--rule",
                         "steepest")
    assert code == 0, err
    data = json.loads(out)
    assert data["rule"] == "steepest" and "suggested lr" in err
    assert data["suggestion"] == data["suggestions"]["steepest"]


@pytest.mark.parametrize("argv, fragment", [
    (["--start", "1", "--end", "0.1"], "start must be below end"),
    (["--limit", "20"], "at least one batch of 64"),
])
def test_lr_find_command_bad_input_is_one_line(capsys, argv, fragment):
    code, out, err = run(capsys, "lr-find", "--no-progress", *argv)
    assert_one_line_error(code, err, fragment)


@pytest.mark.parametrize("command, argv, fragment", [
    ("lr-find", ["--start", "0"], "argument --start: expected a learning rate > 0, got 0"),
    ("lr-find", ["--end", "nan"], "argument --end: expected a learning rate > 0, got nan"),
    ("lr-find", ["--iterations", "0"], "argument --iterations: expected a count from 2"),
    ("lr-find", ["--iterations", "1000000000"], "argument --iterations: expected a count"),
    ("lr-find", ["--rule", "fast"], "argument --rule: invalid choice"),
    ("lr-find", ["--lr", "0.1"], "unrecognized arguments: --lr"),
    ("lr-find", ["--epochs", "3"], "unrecognized arguments: --epochs"),
    ("train", ["--lr", "fnd"], 'argument --lr: expected a number >= 0 or "find", got \'fnd\''),
    ("train", ["--lr", "-1"], "argument --lr: expected a number >= 0"),
    ("train", ["--lr", "nan"], "argument --lr: expected a number >= 0"),
    ("train", ["--lr", ""], "argument --lr: expected a number >= 0"),
])
def test_bad_options_are_argparse_errors(capsys, command, argv, fragment):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--no-progress", *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.strip().splitlines()[-1].endswith(fragment) or fragment in err.splitlines()[-1]
    assert "Traceback" not in err


def test_lr_find_command_refuses_a_special_file_for_the_plot(capsys, tmp_path):
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    code, out, err = run(capsys, "lr-find", "--limit", "300", "--plot", str(fifo))
    assert_one_line_error(code, err, "already exists")
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "nowhere.png")
    code, out, err = run(capsys, "lr-find", "--limit", "300", "--json", str(link))
    assert_one_line_error(code, err, "already exists")
    assert not (tmp_path / "nowhere.png").exists()


@pytest.mark.slow
def test_workers_lr_find_equals_workers_lr_suggestion_and_one_process_lr_find(tmp_path, capsys):
    """Under --workers every rank runs the same range test (same data, seed and net), so they
    agree on the rate without a message; it is the one-process test's rate."""
    from tests.distributed import mpi

    common = ["train", "--workers", "2", "--limit", "300", "--batch-size", "32", "--epochs", "1",
              "--no-progress", "--layer-stats", "0", "--out", str(tmp_path)]
    done, _ = mpi.cnnkit([*common, "--lr", "find", "--name", "found"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("learning-rate range test") == 1          # rank 0 alone speaks
    lr = load_checkpoint(tmp_path / "found" / "checkpoint.npz").extra["metadata"]["settings"]["lr"]
    done, _ = mpi.cnnkit([*common, "--lr", repr(lr), "--name", "given"])
    assert done.returncode == 0, done.stderr
    a, b = (load_checkpoint(tmp_path / n / "model.npz").model_state for n in ("found", "given"))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    code, out, err = run(capsys, "lr-find", "--limit", "300", "--batch-size", "32",
                         "--no-progress", "--json", "-")
    assert code == 0 and json.loads(out)["suggestion"] == lr
