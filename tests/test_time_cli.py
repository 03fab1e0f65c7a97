"""``cnnkit time`` and ``cnnkit.timing``: the per-layer table, its JSON, its errors, and a timing
walk that computes exactly what a plain forward and backward compute. Nothing here asserts on
speed."""

import json
import re

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.nn import (BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Residual,
                       Sequential)
from cnnkit.optim import Adam
from cnnkit.timing import leaf_layers, time_layers

# lenet-bn's layer outputs at batch 2
LENET_SHAPES = [(2, 6, 28, 28), (2, 6, 28, 28), (2, 6, 28, 28), (2, 6, 14, 14),
                (2, 16, 10, 10), (2, 16, 10, 10), (2, 16, 10, 10), (2, 16, 5, 5),
                (2, 400), (2, 120), (2, 120), (2, 84), (2, 84), (2, 10)]


def test_time_prints_a_row_per_layer_and_writes_json(capsys, tmp_path):
    path = tmp_path / "out" / "lenet.json"
    assert main(["time", "lenet-bn", "--batch", "2", "--iterations", "1",
                 "--json", str(path)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"\s+\d+\s", line)]
    assert len(rows) == len(LENET_SHAPES), out
    for line, shape in zip(rows, LENET_SHAPES):
        assert str(shape) in line, line
    assert "Conv2d(1, 6, kernel_size=(5, 5)" in rows[0]
    assert "training step" in out and f"wrote {path}" in out

    report = json.loads(path.read_text())
    assert (report["model"], report["batch"], report["dtype"]) == ("lenet-bn", 2, "float32")
    assert [tuple(r["output_shape"]) for r in report["layers"]] == LENET_SHAPES
    assert [r["index"] for r in report["layers"]] == list(range(len(LENET_SHAPES)))
    for row in report["layers"]:
        assert row["forward_ms"] >= 0 and row["backward_ms"] >= 0
    assert set(report["totals"]) == {"forward_ms", "backward_ms", "update_ms", "step_ms"}


def _blas_threads():
    from threadpoolctl import threadpool_info
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_time_runs_with_the_threads_asked_and_restores_them(threads, capsys):
    from cnnkit import parallel

    before, cnnkit_before = _blas_threads(), parallel.get_num_threads()
    assert main(["time", "default", "--batch", "1", "--iterations", "1", "--warmup", "0",
                 "--dtype", "float64", "--threads", str(threads)]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "lenet-bn" in header and "float64" in header
    assert f"; {threads} thread{'s' if threads > 1 else ''} (BLAS 1 inside the kernels)" in header
    assert _blas_threads() == before and parallel.get_num_threads() == cnnkit_before


def test_commands_default_to_cnnkit_threads_and_one_blas_thread(capsys, monkeypatch):
    from cnnkit import parallel

    monkeypatch.setattr(parallel, "_threads", None)        # the default is read again
    monkeypatch.setenv("CNNKIT_NUM_THREADS", "3")
    assert main(["time", "default", "--batch", "1", "--iterations", "1", "--warmup", "0"]) == 0
    assert "; 3 threads (BLAS 1 inside the kernels)" in capsys.readouterr().out.splitlines()[0]
    monkeypatch.setattr(parallel, "_threads", None)
    monkeypatch.setenv("CNNKIT_NUM_THREADS", "lots")
    assert main(["time", "default", "--batch", "1", "--iterations", "1", "--warmup", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CNNKIT_NUM_THREADS: expected a thread count" in err
    monkeypatch.setattr(parallel, "_threads", None)


def test_unknown_model_is_one_line_and_bad_batch_exits_2(capsys):
    assert main(["time", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model 'nosuch'" in err and "lenet-bn" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["time", "lenet-bn", "--batch", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "expected a positive integer, got 0" in err and "Traceback" not in err


def _nested_net(seed):
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2d(2, 3, 3, padding=1, rng=rng), BatchNorm2d(3),
        Sequential(ReLU(), MaxPool2d(2)),
        Residual(Sequential(Conv2d(3, 3, 3, padding=1, rng=rng), ReLU())),
        Flatten(), Sequential(Sequential(Linear(3 * 4 * 4, 5, rng=rng))))


def test_time_layers_has_a_row_per_leaf_and_a_residual_is_one_layer(rng):
    x = rng.standard_normal((4, 2, 8, 8))
    prof = time_layers(_nested_net(0), x, iterations=2, warmup=1)
    assert [r.name for r in prof.rows] == ["0", "1", "2.0", "2.1", "3", "4", "5.0.0"]
    assert [r.layer.split("(")[0] for r in prof.rows] == [
        "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Residual", "Flatten", "Linear"]
    assert [r.output_shape for r in prof.rows] == [
        (4, 3, 8, 8), (4, 3, 8, 8), (4, 3, 8, 8), (4, 3, 4, 4), (4, 3, 4, 4), (4, 48), (4, 5)]
    assert prof.update_ms is None and prof.to_dict()["layers"][3]["name"] == "2.1"
    assert [name for name, _ in leaf_layers(Linear(2, 2))] == [""]


@pytest.mark.parametrize("iterations, warmup", [(1, 0), (3, 2)])
def test_time_layers_computes_what_forward_and_backward_compute(rng, iterations, warmup):
    timed, plain = _nested_net(1), _nested_net(1)
    x = rng.standard_normal((4, 2, 8, 8))
    dout = rng.standard_normal((4, 5))
    prof = time_layers(timed, x, iterations=iterations, warmup=warmup, dout=dout)
    out = plain.forward(x)
    dx = plain.backward(dout)
    np.testing.assert_array_equal(prof.output, out, err_msg="output")
    np.testing.assert_array_equal(prof.dx, dx, err_msg="dx")
    for (name, p), (_, q) in zip(timed.named_parameters(), plain.named_parameters()):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)


def test_time_layers_with_an_optimizer_times_the_update(rng):
    net = _nested_net(2)
    before = net.state_dict()["0.weight"]
    prof = time_layers(net, rng.standard_normal((4, 2, 8, 8)), iterations=1, warmup=0,
                       optimizer=Adam(net.named_parameters()))
    assert prof.update_ms is not None and prof.update_ms >= 0
    assert not np.array_equal(net.state_dict()["0.weight"], before)


def test_time_layers_errors_name_the_layer(rng):
    with pytest.raises(ValueError, match=r"^layer 0 Conv2d\(2, 3"):
        time_layers(_nested_net(0), rng.standard_normal((4, 5, 8, 8)), iterations=1)
    with pytest.raises(ValueError, match="iterations >= 1"):
        time_layers(_nested_net(0), rng.standard_normal((4, 2, 8, 8)), iterations=0)


# ---------------------------------------------------------------------------- checkpoints

@pytest.fixture(scope="module")
def smooth_run(tmp_path_factory):
    """A run of a small net with smooth activations on 7x9 grey images of 3 classes."""
    tmp = tmp_path_factory.mktemp("smooth")
    rng = np.random.default_rng(0)
    np.savez(tmp / "d.npz", x=rng.integers(0, 256, (24, 7, 9), dtype=np.uint8),
             y=np.arange(24) % 3)
    assert main(["train", "--data", f"npz:{tmp / 'd.npz'}", "--model",
                 "CONV3-3 -> TANH -> FC-3", "--epochs", "1", "--batch-size", "8",
                 "--no-progress", "--out", str(tmp), "--name", "s"]) == 0
    return tmp / "s"


@pytest.mark.parametrize("name", ["model.npz", "checkpoint.npz"])
def test_time_takes_a_checkpoint_and_its_input_volume(capsys, smooth_run, name):
    path = smooth_run / name
    assert main(["time", str(path), "--batch", "3", "--iterations", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"cnnkit time {path}: batch 3 x 1x7x9, float32, ")
    rows = [line for line in out.splitlines() if re.match(r"\s+\d+\s", line)]
    shapes = [(3, 3, 7, 9), (3, 3, 7, 9), (3, 189), (3, 3)]   # CONV3 pads: 7x9 stays
    assert len(rows) == len(shapes) and all(str(s) in r for r, s in zip(rows, shapes)), out


def test_a_folder_or_a_file_that_is_no_checkpoint_is_one_line(capsys, smooth_run, tmp_path,
                                                              monkeypatch):
    import os

    fifo = tmp_path / "net.npz"
    os.mkfifo(fifo)                   # never opened: a read would hang
    for argv, fragments in (
            (["time", str(smooth_run)], [f"{smooth_run} is a run folder; name one of its "
                                         f"checkpoints: {smooth_run / 'model.npz'} (the best "
                                         f"epoch's weights) or {smooth_run / 'checkpoint.npz'}"]),
            (["time", str(tmp_path)], [f"{tmp_path} is a folder, not a checkpoint"]),
            (["time", str(smooth_run / "history.json")], ["is not a readable cnnkit checkpoint"]),
            (["gradcheck", "--model", str(smooth_run)], ["is a run folder"]),
            # every command's MODEL goes through resolve_model, export's too
            (["export", str(smooth_run), "-o", str(tmp_path / "n.onnx")], ["is a run folder"]),
            (["gradcheck", "--model", str(smooth_run / "history.json")],
             ["history.json is not a readable cnnkit checkpoint"]),
            (["time", str(fifo)], ["cannot read checkpoint", "it is a FIFO (named pipe)"]),
            (["gradcheck", "--model", str(fifo)], ["it is a FIFO (named pipe)"])):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        for fragment in fragments:
            assert fragment in err, (fragment, err)
    with_folder = tmp_path / "zoo"
    (with_folder / "lenet-bn").mkdir(parents=True)
    monkeypatch.chdir(with_folder)   # a folder named as a zoo model does not hide the model
    assert main(["summary", "lenet-bn"]) == 0
    capsys.readouterr()
