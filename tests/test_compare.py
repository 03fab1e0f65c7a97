"""cnnkit.compare, cnnkit.viz.plot_runs and `cnnkit compare`, on small real runs."""

import json
import os
import shutil

import numpy as np
import pytest

import cnnkit
from cnnkit.checkpoint import load_checkpoint
from cnnkit.cli import main
from cnnkit.compare import MOST_RUNS, CompareError, compare
from cnnkit.errors import UsageError
from cnnkit.viz import close, plot_runs

from .test_cli import assert_one_line_error, run

PLAIN = "INPUT[1x28x28] -> CONV5-6 -> RELU -> POOL2 -> FC-10"
BN = "INPUT[1x28x28] -> CONV5-6 -> BN -> RELU -> POOL2 -> FC-10"
QUICK = ["--limit", "300", "--val-size", "60", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs that differ in net, epochs, batch size and learning rate; a search of three
    trials; a run on three classes of arrays."""
    out = tmp_path_factory.mktemp("compare")
    assert main(["train", *QUICK, "--epochs", "2", "--model", PLAIN, "--out", str(out / "runs"),
                 "--name", "plain"]) == 0
    assert main(["train", *QUICK, "--epochs", "3", "--model", BN, "--batch-size", "32",
                 "--lr", "0.01", "--out", str(out / "runs"), "--name", "bn"]) == 0
    assert main(["search", "--trials", "3", "--epochs", "1", *QUICK[:-1], "--model", PLAIN,
                 "--out", str(out / "searches"), "--name", "s"]) == 0
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (90, 9, 7), dtype=np.uint8), np.arange(90) % 3
    cnnkit.fit((x, y), "INPUT[1x9x7] -> FC-3", classes=["cat", "dog", "eel"], epochs=1,
               out=str(out / "runs"), name="three", log=None, progress=False)
    return out


def _json(path):
    return json.loads(path.read_text())


def test_the_settings_that_differ_exactly(runs):
    cmp = compare(runs / "runs" / "plain", runs / "runs" / "bn")
    records = [load_checkpoint(runs / "runs" / n / "model.npz").extra["metadata"]["settings"]
               for n in ("plain", "bn")]
    assert cmp.differing == {"model": [PLAIN, BN], "epochs": [2, 3], "batch_size": [64, 32],
                             "lr": [records[0]["lr"], 0.01]}
    assert cmp.same == {k: v for k, v in records[0].items() if k not in cmp.differing}
    assert cmp.same == {k: v for k, v in records[1].items() if k not in cmp.differing}
    text = str(cmp)
    assert "same in all: data mnist;" in text and f"bn: {BN}" in text and f"plain: {PLAIN}" in text
    assert not cmp.notes and not cmp.skipped


def test_the_numbers_are_each_runs_history_and_test(runs):
    cmp = compare(runs / "runs" / "plain", runs / "runs" / "bn")
    assert [r.name for r in cmp.runs] == ["plain", "bn"]
    for r in cmp.runs:
        history = _json(r.path / "history.json")
        test = _json(r.path / "test.json")
        val = history["val_acc"]
        best = int(np.argmax(val))
        d = r.to_dict()
        assert (d["best_val_acc"], d["best_epoch"]) == (val[best], history["epoch"][best])
        assert (d["test_accuracy"], d["test_loss"], d["test_images"]) == (
            test["accuracy"], test["loss"], test["images"])
        assert d["seconds"] == round(sum(history["seconds"]), 3)
        assert (d["epochs_done"], d["epochs"], d["status"]) == (len(val), len(val), "finished")
    best = max(cmp.runs, key=lambda r: r.best[0])
    assert cmp.best is best
    assert f"* best validation accuracy: {best.name}, {best.best[0]:.4f}" in str(cmp)


def test_json_schema(runs, capsys):
    code, out, err = run(capsys, "compare", str(runs / "runs" / "plain"),
                         str(runs / "runs" / "bn"), "--json")
    assert code == 0 and not err
    d = json.loads(out)
    assert set(d) == {"runs", "differing", "same", "classes_differ", "best", "notes", "skipped"}
    assert set(d["runs"][0]) == {"name", "path", "status", "epochs_done", "epochs",
                                 "best_val_acc", "best_epoch", "test_accuracy", "test_loss",
                                 "test_images", "seconds", "classes", "settings", "notes"}
    assert d["runs"][0]["classes"] == [str(i) for i in range(10)]
    assert d["differing"]["batch_size"] == [64, 32] and d["classes_differ"] is False
    assert d["best"] in ("plain", "bn")


def test_a_search_stands_for_its_trials(runs):
    search = _json(runs / "searches" / "s" / "search.json")
    cmp = compare(runs / "searches" / "s")
    assert [r.name for r in cmp.runs] == ["s/trial-000", "s/trial-001", "s/trial-002"]
    # only the best trial keeps its weights; every trial's settings are still known
    assert [t["lr"] for t in search["trials"]] == [r.settings["lr"] for r in cmp.runs]
    assert set(cmp.differing) == {"lr"}
    for r, t in zip(cmp.runs, search["trials"]):
        assert r.status == "finished" and r.best == (t["val_acc"], t["epoch"])
        assert r.test == _json(r.path / "test.json")
    assert cmp.best.name == f"s/{search['trials'][search['best']]['folder']}"
    # one trial alone, and its search's own run against a run of the same data
    one = compare(runs / "searches" / "s" / "trial-002", runs / "runs" / "plain")
    assert [r.name for r in one.runs] == ["s/trial-002", "plain"]
    assert one.runs[0].settings["lr"] == search["trials"][2]["lr"]


def test_different_classes_are_compared_but_no_best_is_claimed(runs, capsys):
    cmp = compare(runs / "runs" / "plain", runs / "runs" / "three")
    assert cmp.classes_differ and cmp.best is None
    assert cmp.differing["classes"] == ["10: 0, 1, 2, 3, ...", "3: cat, dog, eel"]
    assert any("classes differ" in n and "not comparable" in n for n in cmp.notes)
    assert "* best" not in str(cmp)
    code, out, err = run(capsys, "compare", str(runs / "runs" / "plain"),
                         str(runs / "runs" / "three"))
    assert code == 0 and "note: the runs' classes differ" in out


def test_the_same_run_twice_is_compared_once(runs):
    plain = runs / "runs" / "plain"
    cmp = compare(plain, str(plain) + "/", plain / "model.npz", runs / "runs" / "bn")
    assert [r.name for r in cmp.runs] == ["plain", "bn"]
    assert len(cmp.notes) == 2 and all("named twice" in n for n in cmp.notes)


def test_a_run_still_training_and_one_interrupted(runs, tmp_path):
    for name in ("live", "stopped"):
        folder = tmp_path / name
        folder.mkdir()
        for f in ("checkpoint.npz", "history.json"):
            shutil.copyfile(runs / "runs" / "bn" / f, folder / f)
    (tmp_path / "live" / ".cnnkit-train.lock").write_text(str(os.getpid()))
    (tmp_path / "stopped" / ".cnnkit-train.lock").write_text(f"{2 ** 22} 1")    # stale
    starting = tmp_path / "starting"            # claimed, no epoch yet
    starting.mkdir()
    (starting / ".cnnkit-train.lock").write_text(str(os.getpid()))
    cmp = compare(tmp_path / "live", tmp_path / "stopped", starting)
    live, stopped, first = cmp.runs
    assert (live.status, stopped.status, first.status) == ("still training", "interrupted",
                                                            "still training")
    assert live.test is None and live.best == compare(runs / "runs" / "bn").runs[0].best
    assert "read from its last checkpoint" in live.notes[0]
    assert "stopped at epoch 3 of 3" in stopped.notes[0]
    assert first.settings is None and first.history is None and first.epochs_done == 0
    assert "?" in str(cmp)                       # its settings are unknown
    fig = cmp.plot()
    assert "starting (no epoch yet)" in [t.get_text() for t in fig.axes[1].get_legend().texts]
    close(fig)


def test_what_is_not_a_run_is_passed_over_in_one_line(runs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    damaged = tmp_path / "damaged"
    shutil.copytree(runs / "runs" / "plain", damaged)
    (damaged / "history.json").write_text("{not json")
    cmp = compare(runs / "runs" / "plain", empty, damaged, tmp_path / "gone")
    assert [r.name for r in cmp.runs] == ["plain"]
    reasons = dict(cmp.skipped)
    assert "not a run folder" in reasons[empty]
    assert "history.json is damaged" in reasons[damaged]
    assert "not found" in reasons[tmp_path / "gone"]
    with pytest.raises(CompareError, match="history.json is damaged"):
        compare(runs / "runs" / "plain", damaged, strict=True)
    code, out, err = run(capsys, "compare", str(empty), str(damaged))
    assert_one_line_error(code, err, "nothing to compare", "not a run folder")
    code, out, err = run(capsys, "compare", str(runs / "runs" / "plain"), str(empty))
    assert code == 0 and f"skipped {empty}: not a run folder" in out


def test_bounds(runs, capsys):
    with pytest.raises(CompareError, match="nothing to compare"):
        compare()
    with pytest.raises(UsageError, match=f"at most {MOST_RUNS} runs"):
        compare([runs / "runs" / "plain"] * (MOST_RUNS + 1))
    with pytest.raises(UsageError, match="2 names for 1 runs"):
        compare(runs / "runs" / "plain", names=["a", "b"])
    with pytest.raises(SystemExit):
        main(["compare"])
    assert "the following arguments are required: RUN" in capsys.readouterr().err
    code, out, err = run(capsys, "compare", *[str(runs / "runs" / "plain")] * (MOST_RUNS + 1))
    assert_one_line_error(code, err, f"at most {MOST_RUNS} runs")


def test_plot_runs_draws_one_line_per_run(runs, tmp_path):
    histories = {r.name: r.history for r in compare(runs / "runs" / "plain",
                                                     runs / "runs" / "bn").runs}
    fig = plot_runs(histories, tmp_path / "c.png")
    loss, acc = fig.axes[:2]
    assert [t.get_text() for t in acc.get_legend().texts] == ["plain", "bn"]
    # per run: its running-mean loss and validation loss; its validation and train accuracy
    assert len(loss.lines) == 4 and len(acc.lines) == 4
    colors = [line.get_color() for line in acc.lines]
    assert colors[0] == colors[1] != colors[2] == colors[3]
    # the bn run's validation accuracy at its epochs, as recorded
    np.testing.assert_array_equal(acc.lines[2].get_xydata(),
                                  np.c_[histories["bn"]["epoch"], histories["bn"]["val_acc"]])
    # on the epoch axis the bn run's last iteration ends at epoch 3, the plain run's at 2
    assert loss.lines[0].get_xdata()[-1] == pytest.approx(2.0)
    assert loss.lines[2].get_xdata()[-1] == pytest.approx(3.0)
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig._repr_png_()[:4] == b"\x89PNG"          # shown in a notebook
    close(fig)
    by_iteration = plot_runs(histories, x="iteration")
    assert by_iteration.axes[0].lines[2].get_xdata()[-1] == len(histories["bn"]["batch_loss"])
    close(by_iteration)
    for bad, match in (({}, "no runs"), ([{}] * 21, "at most 20"),
                       ({"a": 3}, "not a history")):
        with pytest.raises(ValueError, match=match):
            plot_runs(bad)
    with pytest.raises(ValueError, match="x must be"):
        plot_runs([{}], x="time")


def test_in_memory_runs():
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 256, (60, 8, 6), dtype=np.uint8), np.arange(60) % 2
    a = cnnkit.fit((x, y), "INPUT[1x8x6] -> FC-2", epochs=2, log=None, progress=False)
    b = cnnkit.fit((x, y), "INPUT[1x8x6] -> FC-2", epochs=2, lr=0.1, log=None, progress=False)
    cmp = compare(a, b, names=["slow", "fast"])
    assert [r.name for r in cmp.runs] == ["slow", "fast"]
    assert set(cmp.differing) == {"lr"} and cmp.runs[0].run is a
    assert [r.status for r in cmp.runs] == ["finished", "finished"]
    assert [r.name for r in compare(a, b).runs] == ["run 1", "run 2"]
    close(cmp.plot())


def test_html_page_is_self_contained(runs, tmp_path, capsys):
    page, png = tmp_path / "c.html", tmp_path / "c.png"
    code, out, err = run(capsys, "compare", str(runs / "runs" / "plain"),
                         str(runs / "searches" / "s"), "--html", str(page), "--plot", str(png))
    assert code == 0, err
    assert f"wrote {page}" in out and f"wrote {png}" in out
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert text.count('src="data:image/png;base64,') == 1
    for name in ("plain", "s/trial-000", "s/trial-002", "Settings that differ",
                 "Settings the same in all"):
        assert name in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.html", "c.png"]   # no temporaries


def test_outputs_never_replace_a_runs_files(runs, tmp_path, capsys):
    plain = runs / "runs" / "plain"
    before = (plain / "model.npz").read_bytes()
    code, out, err = run(capsys, "compare", str(plain), "--plot", str(plain / "curves.png"))
    assert_one_line_error(code, err, "is a file of a compared run")
    code, out, err = run(capsys, "compare", str(plain), "--html", str(plain / "model.npz"))
    assert_one_line_error(code, err, "must end in .html or .htm")
    code, out, err = run(capsys, "compare", str(plain), "--html", str(tmp_path / "a.html"),
                         "--plot", str(tmp_path / "a.html"))
    assert_one_line_error(code, err, "must end in .png")
    assert (plain / "model.npz").read_bytes() == before


def test_a_tie_names_no_best(runs, tmp_path):
    shutil.copytree(runs / "runs" / "plain", tmp_path / "again")
    cmp = compare(runs / "runs" / "plain", tmp_path / "again")
    assert cmp.best is None and [r.name for r in cmp.leaders()] == ["plain", "again"]
    assert "no setting differs between the runs" in str(cmp)
    assert f"best validation accuracy {cmp.runs[0].best[0]:.4f}: a tie between plain, " \
           f"again" in str(cmp)


def test_a_dict_names_its_runs(runs):
    cmp = compare({"no BN": runs / "runs" / "plain", "BN": runs / "runs" / "bn"})
    assert [r.name for r in cmp.runs] == ["no BN", "BN"]
    assert cmp.best.name in ("no BN", "BN")


def test_a_trial_without_weights_says_so_when_its_net_is_asked_for(runs):
    cmp = compare(runs / "searches" / "s")
    kept = [r for r in cmp.runs if (r.path / "model.npz").exists()]
    assert len(kept) == 1 and kept[0].run.test_accuracy == kept[0].test_accuracy
    removed = next(r for r in cmp.runs if r not in kept)
    with pytest.raises(CompareError, match="keeps the weights of its best trial only"):
        removed.run


def test_the_figure_draws_the_best_twenty(runs, tmp_path):
    folders = []
    for i in range(22):
        folder = tmp_path / f"r{i:02d}"
        shutil.copytree(runs / "runs" / "plain", folder)
        history = _json(folder / "history.json")
        history["val_acc"] = [0.01 * i, 0.01 * i]
        (folder / "history.json").write_text(json.dumps(history))
        folders.append(folder)
    cmp = compare(*folders)
    plotted, caption = cmp.plotted()
    assert [r.name for r in plotted] == [f"r{i:02d}" for i in range(2, 22)]
    assert caption == "The 20 runs of highest validation accuracy of 22."
    fig = cmp.plot()
    assert len(fig.axes[1].get_legend().texts) == 20
    close(fig)
    assert caption in cmp.html_text()
