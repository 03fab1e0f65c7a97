"""cnnkit.fit: the library form of `cnnkit train`. The same settings give the same weights
through either; raw arrays train with no preprocessing of the user's; a Run predicts as its
saved checkpoint does; Ctrl-C and bad input end as the command's do; nothing is written before
the data and the net are known to work."""

import os
import signal

import numpy as np
import pytest

import cnnkit
from cnnkit import nn
from cnnkit.callbacks import Callback
from cnnkit.cli import main
from cnnkit.data import load_mnist
from cnnkit.errors import CnnkitError
from cnnkit.io import load_checkpoint
from cnnkit.train import TrainingInterrupted
from tests.test_data_cli import write_folder

NET = "CONV3-4 -> RELU -> POOL2 -> FC-10"
QUICK = {"epochs": 1, "limit": 300, "val_size": 50, "batch_size": 50, "progress": False}


def argv(settings: dict) -> list[str]:
    """The command line of fit's keywords."""
    out = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if key == "progress":
            out += [] if value else ["--no-progress"]
        elif value is True:
            out.append(flag)
        else:
            out += [flag, str(value)]
    return out


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def weights(path) -> dict:
    return load_checkpoint(path).model_state


def digits(n: int, offset: int = 0):
    x, y = load_mnist("train")
    return x[offset:offset + n], y[offset:offset + n]


# ---------------------------------------------------------------------------- the same run


@pytest.mark.parametrize("source", ["mnist", "folder"])
def test_train_and_fit_give_bit_identical_weights(tmp_path, rng, source):
    settings = dict(QUICK, seed=3, layer_stats=5, augment="crop")
    if source == "folder":
        data = f"folder:{write_folder(tmp_path / 'photos', rng, per_class=16)}"
        settings.update(model="INPUT[3x20x20] -> CONV3-4 -> BN -> RELU -> POOL2 -> FC-3",
                        val_size=6, batch_size=8, epochs=2, limit=None)
    else:
        data = "mnist"
        settings["model"] = NET
    assert main(["train", "--data", data, *argv(settings), "--out", str(tmp_path),
                 "--name", "cli"]) == 0
    run = cnnkit.fit(data, out=tmp_path, name="fit", **settings)
    for name in ("checkpoint.npz", "model.npz"):
        a, b = load_checkpoint(tmp_path / "cli" / name), load_checkpoint(tmp_path / "fit" / name)
        assert states_equal(a.model_state, b.model_state), name
        assert a.extra["metadata"] == b.extra["metadata"]
    assert states_equal(run.model.state_dict(), weights(tmp_path / "cli" / "model.npz"))
    for name in ("layer_stats.json", "test.json"):
        assert (tmp_path / "cli" / name).read_text() == (tmp_path / "fit" / name).read_text()
    cli_run = cnnkit.load_run(tmp_path / "cli")
    assert cli_run.history["val_acc"] == run.history["val_acc"]
    assert cli_run.history["batch_loss"] == run.history["batch_loss"]
    assert cli_run.test_accuracy == run.test_accuracy is not None
    assert run.folder == tmp_path / "fit"


def test_fit_in_memory_equals_fit_with_a_folder_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    memory = cnnkit.fit(model=NET, **QUICK)
    assert memory.folder is None and not list(tmp_path.iterdir())
    saved = cnnkit.fit(model=NET, out="runs", name="r", **QUICK)
    assert states_equal(memory.model.state_dict(), saved.model.state_dict())
    assert memory.test == saved.test and memory.best == saved.best
    assert memory.config == saved.config.replace(out=None, name=None)
    assert memory.layer_stats.to_dict() == saved.layer_stats.to_dict()


# ---------------------------------------------------------------------------- raw arrays


def test_raw_uint8_digits_train_and_predict_as_the_saved_checkpoint(tmp_path):
    x, y = digits(400)
    assert x.dtype == np.uint8 and x.shape == (400, 28, 28)
    run = cnnkit.fit((x, y), NET, epochs=2, batch_size=32, progress=False,
                     classes=[f"digit {k}" for k in range(10)])
    assert run.test_accuracy > 0.5          # 80 held-out digits (test_size 0.2 of 400)
    assert run.classes[3] == "digit 3" and run.config.data == "arrays"
    assert run.preprocessing.mean[0] == pytest.approx(x[run.dataset.train.images.indices]
                                                      .mean() / 255)
    images, _ = digits(7, offset=50_000)
    path = run.save(tmp_path / "net.npz")
    in_memory, saved = run.predict(images), cnnkit.predict_images(path, images)
    assert in_memory.labels == saved.labels
    np.testing.assert_array_equal(in_memory.probabilities, saved.probabilities)
    files = [tmp_path / f"{i}.png" for i in range(3)]
    for image, file in zip(images, files):
        from PIL import Image
        Image.fromarray(image).save(file)
    np.testing.assert_array_equal(run.predict(files).probabilities,
                                  cnnkit.predict_images(path, files).probabilities)
    again = cnnkit.load_run(path)
    assert states_equal(again.model.state_dict(), run.model.state_dict())
    assert again.history == run.history and again.test == run.test
    assert again.config.record() == run.config.record() and again.classes == run.classes
    with pytest.raises(CnnkitError, match="exists; pass overwrite=True"):
        run.save(path)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW-float", "column-labels", "with-test"])
def test_every_form_the_npz_source_takes(layout):
    x, y = digits(240)
    x_test = y_test = None
    if layout == "NHWC":
        x = np.repeat(x[..., None], 3, axis=3)            # (N, 28, 28, 3)
    elif layout == "NCHW-float":
        x = (x[:, None] / 255.0).astype(np.float64)       # (N, 1, 28, 28) in [0, 1]
    elif layout == "column-labels":
        y = y[:, None]
    else:
        x_test, y_test = digits(60, offset=1000)
    data = (x, y) if x_test is None else (x, y, x_test, y_test)
    model = "CONV3-4 -> RELU -> POOL2 -> FC-10"
    run = cnnkit.fit(data, model, epochs=1, batch_size=40, progress=False, val_size=40)
    assert run.test["images"] == len(run.dataset.test) == (60 if x_test is not None else
                                                             run.test["images"])
    assert 40 <= run.test["images"] <= 60
    assert run.preprocessing.image_shape == ((3, 28, 28) if layout == "NHWC" else (1, 28, 28))
    assert np.isfinite(run.history["train_loss"][0])


@pytest.mark.parametrize("data, classes, fragment", [
    ((np.zeros((10, 8, 8), np.uint8), np.array([0, 1] * 4 + [5, 5])), None, None),
    ((np.zeros((10, 8, 8), np.uint8), np.arange(10) % 3), ["a", "b"],
     "data: y: label 2 is out of range for 2 classes"),
    ((np.zeros((10, 8, 8), np.uint8), np.arange(9) % 2), None,
     "data: x holds 10 images but y holds 9 labels"),
    ((np.zeros((10, 8, 8), np.uint8), -(np.arange(10) % 2)), None, "label -1 is negative"),
    ((np.zeros((10, 8, 8), np.uint8), np.arange(10) % 2, np.zeros((4, 9, 9), np.uint8),
      np.arange(4) % 2), None, "data: x_test images are 1x9x9 (CxHxW), x's are 1x8x8"),
    ((np.full((10, 8, 8), np.nan), np.arange(10) % 2), None, "NaN or infinite"),
    ((np.zeros((10, 8, 8), np.uint8), np.arange(10) % 2 * 1.0), None, "must be integers"),
    ((np.zeros((10, 8, 8)),), None, "data= takes a source"),
    ("nosuch:x", None, "unknown data source 'nosuch:x'"),
    (np.zeros((10, 8, 8)), None, "data= takes a source"),
])
def test_bad_arrays_are_one_line_and_write_nothing(tmp_path, data, classes, fragment):
    if fragment is None:    # labels 0, 1 and 5: classes 2..4 have no image, which is fine
        run = cnnkit.fit(data, "FC-6", epochs=1, progress=False, layer_stats=0, val_size=2)
        assert run.classes == tuple("012345")
        return
    with pytest.raises(CnnkitError) as info:
        cnnkit.fit(data, "FC-2", classes=classes, epochs=1, progress=False,
                   out=tmp_path / "runs")
    assert fragment in str(info.value) and len(str(info.value).splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_classes_must_name_arrays():
    with pytest.raises(CnnkitError, match="classes= names the classes of arrays"):
        cnnkit.fit("mnist", classes=["a"], progress=False)


# ---------------------------------------------------------------------------- keywords


def test_a_wrong_keyword_is_pythons_type_error_with_the_closest_name():
    with pytest.raises(TypeError, match=r"^fit\(\) got an unexpected keyword argument "
                                        r"'batchsize'\. Did you mean 'batch_size'\?$"):
        cnnkit.fit(batchsize=32)
    with pytest.raises(TypeError, match="'no_progress'. Did you mean 'progress'"):
        cnnkit.fit(no_progress=True)
    with pytest.raises(TypeError, match="'workers'; fit trains data-parallel when the script "
                                        "runs under `mpiexec -n P`"):
        cnnkit.fit(workers=2)
    with pytest.raises(TypeError, match="'zzz'$"):
        cnnkit.fit(zzz=1)


@pytest.mark.parametrize("keyword, value, fragment", [
    ("epochs", 0, "epochs=0: expected a count from 1 to 100,000, got 0"),
    ("epochs", 2.0, "epochs=2.0: expected a count from 1 to 100,000, got 2.0"),
    ("lr", float("nan"), "lr=nan: expected a number >= 0"),
    ("optimizer", "lbfgs", "optimizer='lbfgs': expected one of sgd, momentum"),
    ("val_size", 1.5, "val_size=1.5: expected a count >= 0 or a fraction in [0, 1)"),
    ("input", "3x32", "input='3x32': expected a volume CxHxW"),
    ("input", (3, 0, 32), "input=(3, 0, 32): expected a volume CxHxW"),
    ("skip_bad", "yes", "skip_bad='yes': expected True or False"),
    ("memory_budget", "lots", "memory_budget='lots': expected a size such as 8G"),
])
def test_a_wrong_value_is_one_line_naming_the_keyword(keyword, value, fragment):
    with pytest.raises(CnnkitError) as info:
        cnnkit.fit(**{keyword: value})
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_a_spec_error_keeps_its_caret():
    with pytest.raises(CnnkitError) as info:
        cnnkit.fit(model="CONV5-6 -> POOL3 -> FC-10", progress=False)
    lines = str(info.value).splitlines()
    assert "POOL3 at layer 2" in lines[0] and lines[2].strip().startswith("^")


def test_report_needs_a_folder_before_training(tmp_path):
    with pytest.raises(CnnkitError, match="report=True writes report.html in the run folder"):
        cnnkit.fit(model=NET, report=True, **QUICK)


# ---------------------------------------------------------------------------- a net of one's own


class Doubler(nn.Module):
    """Not registered: its config cannot rebuild it."""

    def forward(self, x):
        return 2 * x

    def backward(self, dout):
        return 2 * dout

    def output_shape(self, in_shape):
        return tuple(in_shape)


def own_net(rng):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10, rng=rng), Doubler())


def test_a_module_of_ones_own_trains_in_memory_and_in_place(tmp_path, rng):
    net = own_net(rng)
    before = net[1].weight.data.copy()
    run = cnnkit.fit((digits(200)), net, epochs=1, batch_size=20, progress=False)
    assert run.model is net and not np.array_equal(before, net[1].weight.data)
    assert run.config.model == "module:Sequential" and run.test_accuracy is not None
    with pytest.raises(CnnkitError, match="cannot be saved in a run folder: unknown module "
                                          "type .*register_module\\(Doubler\\)"):
        cnnkit.fit(digits(200), own_net(rng), epochs=1, progress=False, out=tmp_path)
    assert not list(tmp_path.iterdir())
    with pytest.raises(CnnkitError, match="gives outputs of shape \\(10,\\) per image; the "
                                          "arrays has 3 classes|has 3 classes"):
        cnnkit.fit((np.zeros((9, 28, 28), np.uint8), np.arange(9) % 3), own_net(rng),
                   progress=False)


def test_a_registered_module_trains_to_a_folder_and_resumes(tmp_path, rng):
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10, rng=rng))
    first = cnnkit.fit(digits(300), net, epochs=1, batch_size=30, progress=False,
                       out=tmp_path, name="mine")
    assert first.folder == tmp_path / "mine"
    assert (tmp_path / "mine").name.startswith("mine")
    resumed = cnnkit.fit(digits(300), resume=tmp_path / "mine" / "checkpoint.npz", epochs=2,
                         progress=False)
    assert resumed.history["epoch"] == [1, 2]


# ---------------------------------------------------------------------------- resume, Ctrl-C


def test_resume_in_python_is_exact(tmp_path):
    settings = dict(QUICK, model=NET, layer_stats=0, schedule="none")   # epochs may then grow
    whole = cnnkit.fit(**{**settings, "epochs": 2})
    cnnkit.fit(out=tmp_path, name="r", **settings)
    resumed = cnnkit.fit(resume=tmp_path / "r" / "checkpoint.npz", epochs=2, progress=False)
    assert states_equal(whole.model.state_dict(), resumed.model.state_dict())
    assert resumed.history["batch_loss"] == whole.history["batch_loss"]
    with pytest.raises(CnnkitError, match="only epochs may change, not batch_size, lr"):
        cnnkit.fit(resume=tmp_path / "r" / "checkpoint.npz", lr=0.1, batch_size=10)
    with pytest.raises(CnnkitError, match="leave model= out"):
        cnnkit.fit(model=NET, resume=tmp_path / "r" / "checkpoint.npz")


class InterruptAt(Callback):
    """Ctrl-C (SIGINT, as a notebook's interrupt sends it) after the given iteration."""

    def __init__(self, iteration):
        self.iteration = iteration

    def on_batch_end(self, batch, logs):
        if logs["iteration"] == self.iteration:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("where", ["memory", "folder"])
def test_ctrl_c_raises_training_interrupted_with_the_partial_run(tmp_path, where):
    out = {"out": tmp_path, "name": "r"} if where == "folder" else {}
    settings = dict(QUICK, model=NET, epochs=2)
    with pytest.raises(TrainingInterrupted) as info:
        cnnkit.fit(callbacks=[InterruptAt(3)], **settings, **out)
    run = info.value.run
    assert isinstance(run, cnnkit.Run) and run.test is None
    assert len(run.history["batch_loss"]) == 3 and run.history["epoch"] == []
    if where == "memory":
        assert run.folder is None and not list(tmp_path.iterdir())
        return
    assert run.folder == tmp_path / "r" and "saved" in str(info.value)
    resumed = cnnkit.fit(resume=tmp_path / "r" / "checkpoint.npz", progress=False)
    whole = cnnkit.fit(**settings)
    assert states_equal(resumed.model.state_dict(), whole.model.state_dict())


# ---------------------------------------------------------------------------- the run


def test_a_run_evaluates_reports_and_loads_back(tmp_path):
    run = cnnkit.fit(model=NET, out=tmp_path, name="r", **QUICK)
    result = run.evaluate()
    assert result.title == "MNIST test" and len(result.labels) == 10_000
    from cnnkit.evaluation import evaluate_checkpoint
    cli = evaluate_checkpoint(tmp_path / "r" / "model.npz")
    np.testing.assert_array_equal(result.confusion, cli.confusion)
    assert "per-class accuracy" in str(result)
    x, y = digits(50, offset=2000)
    assert run.evaluate((x, y)).accuracy == pytest.approx(
        np.mean(run.predict(x).indices == y))
    page = run.report()
    assert page == tmp_path / "r" / "report.html" and "<title>cnnkit report: r</title>" in \
        page.read_text()
    loaded = cnnkit.load_run(tmp_path / "r")
    assert loaded.test == run.test and loaded.history["val_acc"] == run.history["val_acc"]
    assert loaded.config == run.config.replace(out=None, name=None, progress=True)
    assert states_equal(loaded.model.state_dict(), run.model.state_dict())
    assert "test accuracy" in repr(loaded) and "folder" in repr(loaded)
    in_memory = cnnkit.fit((x, y), "FC-10", epochs=1, progress=False, val_size=5)
    with pytest.raises(CnnkitError, match="trained in memory and has no folder"):
        in_memory.report()
    assert in_memory.report(tmp_path / "memory.html").is_file()
    with pytest.raises(CnnkitError, match="trained on arrays given in memory"):
        cnnkit.load_run(in_memory.save(tmp_path / "m.npz")).evaluate()


def test_log_lines_go_where_asked(capsys):
    lines = []
    cnnkit.fit(model=NET, log=lines.append, **QUICK)
    assert lines[0].startswith("training INPUT[1x28x28] -> CONV3-4") and "in memory" in lines[0]
    assert any(line.startswith("epoch 1/1") for line in lines)
    assert lines[-1].startswith("test accuracy")
    cnnkit.fit(model=NET, **QUICK)            # "auto": nothing outside a notebook
    assert capsys.readouterr().out == ""
