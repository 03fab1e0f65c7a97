"""``cnnkit evaluate --json`` (:meth:`cnnkit.evaluation.Evaluation.to_dict`) and evaluation on
data holding only some of the net's classes, matched by name."""

import json
import shutil

import numpy as np
import pytest

from cnnkit.evaluation import evaluate_checkpoint
from tests.test_cli import assert_one_line_error, run
from tests.test_data_cli import write_folder


def _strict_json(text):
    """json.loads refusing NaN and infinities, which are no JSON."""
    def refuse(name):
        raise AssertionError(f"{name} in the JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """A net trained on a folder of three colour classes (blue, green, red), 11x13 images."""
    from cnnkit.cli import main
    tmp = tmp_path_factory.mktemp("colours")
    root = write_folder(tmp / "colours", np.random.default_rng(3), per_class=8, size=(11, 13))
    assert main(["train", "--data", f"folder:{root}", "--model", "CONV3-4 -> RELU -> FC-3",
                 "--epochs", "2", "--batch-size", "8", "--no-progress", "--out", str(tmp),
                 "--name", "c", "--test-size", "0.25", "--seed", "1"]) == 0
    return tmp / "c" / "model.npz", root


def test_json_is_the_whole_evaluation_and_equals_the_python_dict(capsys, colours):
    ckpt, root = colours
    code, out, err = run(capsys, "evaluate", str(ckpt), "--json", "--no-progress")
    assert code == 0, err
    got = _strict_json(out)
    expected = evaluate_checkpoint(ckpt).to_dict()
    expected["notes"] = got["notes"]       # the first opening wrote the cache, this one read it
    assert got == expected
    assert got["checkpoint"] == str(ckpt) and got["classes"] == ["blue", "green", "red"]
    assert got["data"] == {"source": f"folder:{root.resolve()}",
                           "title": f"the folder {root.resolve()} test", "split": "test",
                           "images": 6, "skipped_bad": 0}
    counts = np.array(got["confusion"]["counts"])
    assert counts.shape == (3, 3) and counts.sum() == 6
    assert (got["confusion"]["rows"], got["confusion"]["columns"]) == ("true class",
                                                                        "predicted class")
    assert got["confusion"]["classes"] == got["classes"]
    assert got["per_class"] == [{"class": name, "accuracy": counts[c, c] / counts[c].sum(),
                                 "correct": int(counts[c, c]), "images": int(counts[c].sum())}
                                for c, name in enumerate(got["classes"])]
    assert got["accuracy"] == pytest.approx(np.trace(counts) / 6)
    assert got["missing_classes"] == [] and isinstance(got["loss"], float)
    # the text says the same
    code, text, _ = run(capsys, "evaluate", str(ckpt), "--no-progress")
    assert f"6 images, accuracy {got['accuracy']:.4f}" in text


def _subset(root, dest, keep):
    for name in keep:
        shutil.copytree(root / name, dest / name)
    return dest


def test_a_folder_of_some_classes_is_evaluated_on_those(capsys, colours, tmp_path):
    ckpt, root = colours
    code, out, _ = run(capsys, "evaluate", str(ckpt), "--data", f"folder:{root}", "--split",
                       "all", "--json", "--no-progress")
    whole = _strict_json(out)
    some = _subset(root, tmp_path / "some", ["blue", "red"])
    code, out, err = run(capsys, "evaluate", str(ckpt), "--data", f"folder:{some}", "--split",
                         "all", "--json", "--no-progress")
    assert code == 0, err
    part = _strict_json(out)
    assert part["classes"] == ["blue", "green", "red"] and part["missing_classes"] == ["green"]
    full, counts = np.array(whole["confusion"]["counts"]), np.array(part["confusion"]["counts"])
    # the same images give the same rows, under the net's class numbers; green's row is empty
    np.testing.assert_array_equal(counts[[0, 2]], full[[0, 2]])
    np.testing.assert_array_equal(counts[1], 0)
    assert part["per_class"][1] == {"class": "green", "accuracy": None, "correct": 0,
                                    "images": 0}
    assert part["per_class"][0] == whole["per_class"][0]
    assert part["per_class"][2] == whole["per_class"][2]
    assert part["data"]["images"] == 16
    assert part["accuracy"] == pytest.approx((full[0, 0] + full[2, 2]) / 16)
    # the text: one note, rows of the present classes only, a column for every class
    code, out, _ = run(capsys, "evaluate", str(ckpt), "--data", f"folder:{some}", "--split",
                       "all", "--no-progress")
    lines = out.splitlines()
    assert [line for line in lines if "green" in line and "holds" in line] == [
        f"the folder {some} holds 2 of the net's 3 classes; no images of green"]
    table = lines[lines.index("per-class accuracy:") + 1:]
    assert [line.split()[0] for line in table[:2]] == ["blue", "red"]
    header = table[3]
    assert header.split() == ["blue", "green", "red"]
    assert [line.split()[0] for line in table[4:]] == ["blue", "red"]
    assert [int(v) for v in table[4].split()[1:]] == full[0].tolist()


def test_a_class_the_net_does_not_know_is_refused(capsys, colours, tmp_path):
    ckpt, root = colours
    other = _subset(root, tmp_path / "other", ["blue", "red"])
    shutil.copytree(root / "green", other / "purple")
    code, _, err = run(capsys, "evaluate", str(ckpt), "--data", f"folder:{other}",
                       "--no-progress")
    assert_one_line_error(code, err, "has class 'purple', which the net was not trained on",
                          "blue, green, red")


def test_skipped_images_are_counted(capsys, colours, tmp_path):
    ckpt, root = colours
    some = _subset(root, tmp_path / "bad", ["red"])
    (some / "red" / "broken.png").write_bytes(b"\x89PNG not really")
    code, out, err = run(capsys, "evaluate", str(ckpt), "--data", f"folder:{some}", "--json",
                         "--skip-bad", "--no-progress")
    assert code == 0, err
    got = _strict_json(out)
    assert got["data"]["skipped_bad"] == 1 and got["data"]["images"] == 8
    assert got["missing_classes"] == ["blue", "green"]
    assert any("skipped 1 image(s) that cannot be decoded" in n for n in got["notes"])
