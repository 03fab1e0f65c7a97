"""``cnnkit predict`` over files and folders (:mod:`cnnkit.classify_files`): the
files a folder gives, the three formats read back by the standard library, batches, skipped
files, special files."""

import csv
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

import cnnkit
from cnnkit import classify_files
from cnnkit.classify_files import find_image_files, predict_files
from tests.test_cli import assert_one_line_error, run
from tests.test_data_cli import COLOURS, write_folder
from tests.test_hostile import clean_error, cnnkit as child

EXIT_SKIPPED = 3


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A net trained on a folder of three colour classes (blue, green, red) of 9x7 images."""
    from cnnkit.cli import main
    tmp = tmp_path_factory.mktemp("predict")
    root = write_folder(tmp / "colours", np.random.default_rng(5), per_class=4, size=(9, 7))
    assert main(["train", "--data", f"folder:{root}", "--model", "CONV3-4 -> RELU -> FC-3",
                 "--epochs", "1", "--batch-size", "4", "--no-progress", "--out", str(tmp),
                 "--name", "p", "--test-size", "0"]) == 0
    return tmp / "p" / "model.npz"


def _photos(folder, names, rng=np.random.default_rng(0)):
    """Small images of other sizes under ``folder`` (names may hold subfolders)."""
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        colour = list(COLOURS.values())[len(name) % 3]
        pixels = np.clip(np.array(colour) + rng.integers(-30, 31, (13, 17, 3)), 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(path)
    return folder


@pytest.fixture
def photos(tmp_path):
    folder = _photos(tmp_path / "photos", ["b.png", "a.JPG", "c.webp", "sub/d.png",
                                           "sub/deeper/e.bmp", ".hidden.png"])
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub" / "z.csv").write_text("1,2")
    return folder


def test_a_folder_gives_its_images_in_sorted_order_and_counts_the_rest(photos):
    files = find_image_files([photos])
    assert [p for p, _ in files.entries] == [str(photos / n) for n in ("a.JPG", "b.png",
                                                                       "c.webp")]
    assert (files.passed_over, files.subfolders, files.links) == (1, 1, 0)
    assert files.note() == ("passed over 1 file(s) that are not images (PNG, JPEG, BMP, GIF, "
                            "WebP or TIFF), 1 subfolder(s) (--recursive reads them)")
    deep = find_image_files([photos, photos / "b.png"], recursive=True)
    assert [p for p, _ in deep.entries] == [str(photos / n) for n in (
        "a.JPG", "b.png", "c.webp", "sub/d.png", "sub/deeper/e.bmp", "b.png")]
    assert (deep.passed_over, deep.subfolders) == (2, 0)


def test_the_three_formats_read_back_and_agree_with_predict_images(capsys, ckpt, photos):
    paths = [str(photos / n) for n in ("a.JPG", "b.png", "c.webp")]
    expected = cnnkit.predict_images(ckpt, paths).top(2)
    code, out, err = run(capsys, "predict", str(ckpt), str(photos), "--format", "json",
                         "--top-k", "2")
    assert code == 0 and err.startswith("passed over 1 file(s)") and err.count("\n") == 1, err
    got = json.loads(out)
    assert got["classes"] == ["blue", "green", "red"] and got["checkpoint"] == str(ckpt)
    assert [p["path"] for p in got["predictions"]] == paths
    assert (got["skipped"], got["passed_over"]) == ([], 1)
    for answer, top in zip(got["predictions"], expected):
        assert [t["class"] for t in answer["top"]] == [name for name, _ in top]
        np.testing.assert_allclose([t["probability"] for t in answer["top"]],
                                   [p for _, p in top], rtol=1e-6)

    code, out, _ = run(capsys, "predict", str(ckpt), str(photos), "--format", "csv",
                       "--top-k", "5")                           # at most the net's 3 classes
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and rows[0] == ["path", "class_1", "p_1", "class_2", "p_2", "class_3",
                                     "p_3", "skipped"]
    assert [r[0] for r in rows[1:]] == paths
    full = cnnkit.predict_images(ckpt, paths).top(3)
    for row, top in zip(rows[1:], full):
        assert row[1::2][:3] == [name for name, _ in top] and row[-1] == ""
        np.testing.assert_allclose([float(v) for v in row[2:7:2]], [p for _, p in top],
                                   rtol=1e-6)

    code, out, _ = run(capsys, "predict", str(ckpt), str(photos), "--top-k", "1")
    assert out.splitlines() == [f"{path}: {top[0][0]} {top[0][1]:.3f}"
                                for path, top in zip(paths, full)]


def test_answers_come_a_batch_at_a_time(ckpt, photos, monkeypatch):
    reads, batches = [], []
    read, classify = classify_files.read_image, classify_files.classify
    monkeypatch.setattr(classify_files, "read_image", lambda p, *a: reads.append(p) or read(p, *a))
    monkeypatch.setattr(classify_files, "classify",
                        lambda m, p, c, x, **kw: batches.append(len(x)) or classify(m, p, c, x,
                                                                                    **kw))
    stream = predict_files(ckpt, [photos], recursive=True, batch_size=2)
    assert reads == [] and len(stream) == 5             # listed, nothing decoded yet
    answers = iter(stream)
    first = next(answers)
    assert len(reads) == 2 and batches == [2]            # one batch read for the first answer
    rest = list(answers)
    assert batches == [2, 2, 1] and len(reads) == 5
    whole = predict_files(ckpt, [photos], recursive=True)
    np.testing.assert_allclose(np.array([a.probabilities for a in [first, *rest]]),
                               np.array([a.probabilities for a in whole]), rtol=1e-6)


def test_an_undecodable_image_is_one_line_or_skipped_with_its_reason(capsys, ckpt, photos):
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, out, err = run(capsys, "predict", str(ckpt), str(photos))
    assert_one_line_error(code, err, "broken.png", "pass --skip-bad")   # the note not printed
    for fmt in ("text", "json", "csv"):
        code, out, err = run(capsys, "predict", str(ckpt), str(photos), "--skip-bad",
                             "--format", fmt)
        assert code == EXIT_SKIPPED, err
        assert err.splitlines()[-1].startswith("skipped 1 of 4 file(s) (the first: cannot read "
                                               f"image {photos / 'broken.png'}")
        if fmt == "json":
            got = json.loads(out)
            assert [s["path"] for s in got["skipped"]] == [str(photos / "broken.png")]
            assert len(got["predictions"]) == 3
        elif fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(out)))
            assert [r["path"] for r in rows][2] == str(photos / "broken.png")  # sorted: b.png
            assert rows[2]["class_1"] == "" and "cannot read image" in rows[2]["skipped"]
            assert all(r["skipped"] == "" and r["class_1"] for i, r in enumerate(rows) if i != 2)
        else:
            assert out.splitlines()[2].startswith(f"{photos / 'broken.png'}: skipped: ")


def test_special_files_are_refused_or_skipped_never_opened(ckpt, tmp_path):
    folder = _photos(tmp_path / "f", ["a.png", "b.png"])
    os.mkfifo(folder / "queue.png")             # an image's name: refused
    os.mkfifo(folder / "queue")                 # another file: passed over, never opened
    code, out, err = child("predict", str(ckpt), str(folder), timeout=60)
    clean_error(code, err, "queue.png", "FIFO", "--skip-bad")
    assert out == ""                            # refused while listing, before any answer
    code, out, err = child("predict", str(ckpt), str(folder), "--skip-bad", "--format", "json",
                           timeout=60)
    got = json.loads(out)
    assert code == EXIT_SKIPPED and [p["path"] for p in got["predictions"]] == [
        str(folder / "a.png"), str(folder / "b.png")]
    assert "FIFO" in got["skipped"][0]["reason"] and got["passed_over"] == 1
    code, _, err = child("predict", str(ckpt), str(folder / "queue"), timeout=60)
    clean_error(code, err, "queue", "FIFO")
    os.symlink(folder, folder / "loop")                 # a link to a folder: not followed
    files = find_image_files([folder], recursive=True, skip_bad=True)
    assert files.links == 1 and len(files.entries) == 3


def test_what_is_no_image_is_one_line(capsys, ckpt, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    code, _, err = run(capsys, "predict", str(ckpt), str(tmp_path / "docs"))
    assert_one_line_error(code, err, "no image files", "passed over 1 file(s)")
    code, _, err = run(capsys, "predict", str(ckpt), str(tmp_path / "none.png"))
    assert_one_line_error(code, err, "image not found", "none.png")
    with pytest.raises(SystemExit) as exit_info:
        run(capsys, "predict", str(ckpt), str(tmp_path / "docs"), "--format", "xml")
    assert exit_info.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def test_every_file_skipped_is_still_valid_json_and_csv(capsys, ckpt, tmp_path):
    (tmp_path / "a.png").write_bytes(b"GIF89a")
    (tmp_path / "b.jpg").write_bytes(b"")
    code, out, _ = run(capsys, "predict", str(ckpt), str(tmp_path), "--skip-bad", "--format",
                       "json")
    got = json.loads(out)
    assert code == EXIT_SKIPPED and got["predictions"] == []
    assert [s["path"] for s in got["skipped"]] == [str(tmp_path / "a.png"),
                                                   str(tmp_path / "b.jpg")]
    stream = predict_files(ckpt, [tmp_path], skip_bad=True)
    assert [a.skipped is not None for a in stream] == [True, True]
    assert len(list(stream)) == 2 and len(stream.skipped) == 2     # a second pass, counted once
    code, out, _ = run(capsys, "predict", str(ckpt), str(tmp_path), "--skip-bad", "--format",
                       "csv", "--top-k", "1")
    assert list(csv.reader(io.StringIO(out)))[1:] == [
        [path, "", "", reason] for path, reason in stream.skipped]
