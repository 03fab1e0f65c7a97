"""`cnnkit train|evaluate|predict --data SOURCE` end to end on small sources written here: CIFAR-10
in both formats, folders of images, .npz arrays; the default net following the data; the one
preprocessing path; and every kind of bad input as one line and a non-zero exit."""

import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import cnnkit
from cnnkit.cli import main
from cnnkit.data import CIFAR10_CLASSES, load_mnist
from cnnkit.inference import load_for_inference
from cnnkit.io import load_checkpoint
from cnnkit.train import predict
from tests.test_cli import assert_one_line_error, run

QUICK = ["--epochs", "1", "--no-progress", "--batch-size", "16"]


# ---------------------------------------------------------------------------- writers

def write_cifar(root, rng, fmt, per_batch=10, skip=()):
    """A tiny CIFAR-10 folder: data_batch_1..5 and test_batch, ``per_batch`` images each."""
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        labels = np.arange(per_batch) % 10
        written[name] = (images, labels)
        if name in skip:
            continue
        if fmt == "binary":
            records = np.concatenate([labels.astype(np.uint8)[:, None],
                                      images.reshape(per_batch, -1)], axis=1)
            (root / f"{name}.bin").write_bytes(records.tobytes())
        else:
            batch = {b"data": images.reshape(per_batch, 3072), b"labels": labels.tolist()}
            (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    return written


COLOURS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (230, 30, 20)}


def write_folder(root, rng, per_class=12, size=(20, 20), layout="flat"):
    """Classes of noisy flat colours, easy to learn: DIR/red/*.png ..., or DIR/train + DIR/test."""
    for name, colour in COLOURS.items():
        for i in range(per_class):
            part = ("train" if i < per_class * 3 // 4 else "test") if layout == "split" else ""
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            noise = rng.integers(-25, 26, (*size, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


# ---------------------------------------------------------------------------- CIFAR-10

@pytest.mark.parametrize("fmt", ["binary", "python"])
def test_cifar10_round_trips_through_train_evaluate_and_predict(capsys, tmp_path, rng, fmt):
    written = write_cifar(tmp_path / "cifar", rng, fmt)
    source = f"cifar10:{tmp_path / 'cifar'}"
    code, out, err = run(capsys, "train", "--data", source, *QUICK, "--out", str(tmp_path),
                         "--name", "c")
    assert code == 0, err
    assert "training resnet20" in out, out        # the default net for 3x32x32 images
    assert "augment crop,flip" in out and "45 train / 5 val" in out
    assert "test accuracy" in out and "10 images" in out
    ckpt = tmp_path / "c" / "model.npz"
    meta = load_checkpoint(ckpt).extra["metadata"]
    assert meta["classes"] == list(CIFAR10_CLASSES)
    assert meta["source"] == f"cifar10:{(tmp_path / 'cifar').resolve()}"
    code, out, _ = run(capsys, "evaluate", str(ckpt))
    assert code == 0 and "test: 10 images" in out
    assert all(name in out for name in CIFAR10_CLASSES)      # per-class rows by name
    # predict reads PNGs of the test images and names classes; the same scores as evaluate's
    images, _ = written["test_batch"]
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(images[i].transpose(1, 2, 0)).save(paths[-1])
    code, out, _ = run(capsys, "predict", str(ckpt), *map(str, paths), "--top-k", "2")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 3 and all(line.split(": ")[1].split()[0] in CIFAR10_CLASSES
                                   for line in lines)
    model, preprocessing, _, _ = load_for_inference(ckpt)
    expected = predict(model, images[:3], preprocess=preprocessing)
    got = cnnkit.predict_images(ckpt, paths)
    shifted = np.exp(expected - expected.max(axis=1, keepdims=True))
    np.testing.assert_allclose(got.probabilities, shifted / shifted.sum(1, keepdims=True),
                               rtol=1e-5, atol=1e-7)
    assert got.labels == [CIFAR10_CLASSES[k] for k in expected.argmax(axis=1)]


def test_cifar10_sample_without_some_classes_trains(capsys, tmp_path, rng):
    """Three of the ten classes in every batch: the other seven only go untrained."""
    write_cifar(tmp_path / "cifar", rng, "python", per_batch=3)
    code, out, err = run(capsys, "train", "--data", f"cifar10:{tmp_path / 'cifar'}",
                         "--model", "three-layer-convnet", *QUICK, "--out", str(tmp_path))
    assert code == 0, err
    assert "test accuracy" in out and "3 images" in out


def test_cifar10_folder_missing_a_batch_file(capsys, tmp_path, rng):
    write_cifar(tmp_path / "cifar", rng, "binary", skip=("data_batch_3",))
    code, _, err = run(capsys, "train", "--data", f"cifar10:{tmp_path / 'cifar'}",
                       "--out", str(tmp_path))
    assert_one_line_error(code, err, "data_batch_3", str(tmp_path / "cifar"))


# ---------------------------------------------------------------------------- folders

def test_a_folder_trains_evaluates_and_predicts_by_class_name(capsys, tmp_path, rng,
                                                              monkeypatch):
    root = write_folder(tmp_path / "colours", rng)
    spec = "CONV3-8 -> RELU -> POOL2 -> FC-3"
    code, out, err = run(capsys, "train", "--data", f"folder:{root}", "--model", spec,
                         "--epochs", "4", "--batch-size", "8", "--no-progress",
                         "--out", str(tmp_path), "--name", "f", "--test-size", "0.25")
    assert code == 0, err
    assert "decoded 36 images" in out and "INPUT[3x20x20]" in out
    tested = out.split("test accuracy ")[1].split()[0]
    ckpt = tmp_path / "f" / "model.npz"
    meta = load_checkpoint(ckpt).extra["metadata"]
    assert meta["classes"] == ["blue", "green", "red"] and meta["image_shape"] == [3, 20, 20]
    # evaluate finds the same held-out images (the run's seed and --test-size) and the cache
    code, out, _ = run(capsys, "evaluate", str(ckpt))
    assert code == 0 and "from the cache" in out and "test: 9 images" in out
    assert f"accuracy {tested}" in out
    monkeypatch.chdir(tmp_path)     # the same folder spelled another way is the same source
    code, out, _ = run(capsys, "evaluate", str(ckpt), "--data", "folder:colours")
    assert code == 0 and "test: 9 images" in out and f"accuracy {tested}" in out
    assert "blue" in out and "green" in out and "red" in out
    # an image of another size and mode is decoded to 3x20x20 as in training
    Image.new("L", (64, 48), 60).save(tmp_path / "grey.png")
    Image.new("RGB", (7, 9), COLOURS["red"]).save(tmp_path / "red.jpg")
    code, out, _ = run(capsys, "predict", str(ckpt), str(tmp_path / "grey.png"),
                       str(tmp_path / "red.jpg"), "--top-k", "3")
    assert code == 0
    red_line = out.strip().splitlines()[1]
    assert red_line.startswith(f"{tmp_path / 'red.jpg'}: ") and len(red_line.split()) == 7


def test_a_folder_with_train_and_test_subfolders(capsys, tmp_path, rng):
    root = write_folder(tmp_path / "split", rng, per_class=8, layout="split")
    code, out, err = run(capsys, "train", "--data", f"folder:{root}", "--model",
                         "CONV3-4 -> RELU -> FC-3", *QUICK, "--out", str(tmp_path))
    assert code == 0, err
    assert "18 train / 0 val" in out or "17 train / 1 val" in out
    assert "6 images" in out   # the test/ folder: 2 per class


def test_a_train_folder_without_a_test_folder_is_split(capsys, tmp_path, rng):
    root = write_folder(tmp_path / "d" / "train", rng, per_class=8)
    code, out, err = run(capsys, "train", "--data", f"folder:{tmp_path / 'd'}", "--model",
                         "CONV3-4 -> RELU -> FC-3", *QUICK, "--out", str(tmp_path),
                         "--test-size", "0.25", "--name", "t")
    assert code == 0, err
    assert "6 images" in out        # 2 of each class's 8 held out to test on
    assert load_checkpoint(tmp_path / "t" / "model.npz").extra["metadata"]["classes"] == \
        sorted(p.name for p in root.iterdir())


def test_train_without_a_default_net_for_the_images_asks_for_one(capsys, tmp_path, rng):
    root = write_folder(tmp_path / "big", rng, per_class=3, size=(40, 40))
    code, _, err = run(capsys, "train", "--data", f"folder:{root}", "--out", str(tmp_path))
    assert_one_line_error(code, err, "no default net for 3x40x40 images", "--model")
    # --input resizes them to a size that has one
    code, out, err = run(capsys, "train", "--data", f"folder:{root}", "--input", "3x32x32",
                         *QUICK, "--out", str(tmp_path), "--limit", "6")
    assert code == 0, err
    assert "training resnet20" in out and "(3x32x32)" in out


def _truncated_png(path):
    Image.new("RGB", (20, 20), (200, 10, 10)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("case", ["missing", "file", "empty", "no-classes", "empty-class",
                                  "truncated", "test-class-absent", "one-class"])
def test_bad_folders_are_one_line_naming_the_place(capsys, tmp_path, rng, case):
    root = tmp_path / "data"
    fragments = [str(root)]
    if case == "file":
        root.write_text("not a folder")
        fragments.append("not a folder")
    elif case == "empty":
        root.mkdir()
        fragments.append("no class subfolders")
    elif case == "no-classes":
        root.mkdir()
        Image.new("L", (8, 8)).save(root / "loose.png")
        fragments.append("the images lie loose in it")
    elif case == "empty-class":
        write_folder(root, rng, per_class=2)
        (root / "yellow").mkdir()
        (root / "yellow" / "readme.txt").write_text("no images here")
        fragments = [str(root / "yellow"), "a class folder with no images"]
    elif case == "truncated":
        write_folder(root, rng, per_class=2)
        _truncated_png(root / "red" / "bad.png")
        fragments = [str(root / "red" / "bad.png"), "--skip-bad"]
    elif case == "test-class-absent":
        write_folder(root, rng, per_class=4, layout="split")
        (root / "test" / "violet").mkdir()
        Image.new("RGB", (20, 20)).save(root / "test" / "violet" / "v.png")
        fragments = [str(root / "test" / "violet"), "has no folder in"]
    elif case == "one-class":
        (root / "only").mkdir(parents=True)
        Image.new("RGB", (20, 20)).save(root / "only" / "a.png")
        fragments.append("a classifier needs 2 at least")
    else:
        fragments.append("no such folder")
    code, _, err = run(capsys, "train", "--data", f"folder:{root}", "--model",
                       "CONV3-4 -> FC-3", "--out", str(tmp_path))
    assert_one_line_error(code, err, *fragments)


def test_skip_bad_skips_and_counts_undecodable_images(capsys, tmp_path, rng):
    root = write_folder(tmp_path / "data", rng, per_class=4)
    _truncated_png(root / "red" / "bad.png")
    (root / "green" / "fake.jpg").write_text("not a jpeg")
    code, out, err = run(capsys, "train", "--data", f"folder:{root}", "--model",
                         "CONV3-4 -> FC-3", "--skip-bad", *QUICK, "--out", str(tmp_path),
                         "--name", "s")
    assert code == 0, err
    assert "skipped 2 image(s)" in out and "fake.jpg" in out     # green/ sorts before red/
    # evaluate without --skip-bad refuses the same folder, naming an image
    code, _, err = run(capsys, "evaluate", str(tmp_path / "s" / "model.npz"))
    assert_one_line_error(code, err, "fake.jpg", "--skip-bad")


def test_a_fifo_named_like_an_image_is_refused_or_skipped_never_opened(capsys, tmp_path, rng):
    from tests.data.test_folder_cache import within

    root = write_folder(tmp_path / "data", rng, per_class=4)
    os.mkfifo(root / "red" / "zz.png")
    argv = ["train", "--data", f"folder:{root}", "--model", "CONV3-4 -> FC-3", *QUICK,
            "--out", str(tmp_path)]
    with within(10):
        code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, str(root / "red" / "zz.png"), "a FIFO", "--skip-bad")
    with within(10):
        code, out, err = run(capsys, *argv, "--skip-bad")
    assert code == 0, err
    assert "skipped 1 image name(s) that are not regular files" in out and "zz.png" in out


def test_a_cnnkit_cache_that_names_no_folder_is_one_line_naming_it(capsys, tmp_path, rng,
                                                                    monkeypatch):
    root = write_folder(tmp_path / "data", rng, per_class=2)
    monkeypatch.setenv("CNNKIT_CACHE", "~nouser-cnnkit-26/x")
    code, _, err = run(capsys, "train", "--data", f"folder:{root}", "--model",
                       "CONV3-4 -> FC-3", *QUICK, "--out", str(tmp_path))
    assert_one_line_error(code, err, "environment variable CNNKIT_CACHE",
                          "'~nouser-cnnkit-26/x' names no folder")


# ---------------------------------------------------------------------------- npz

def _npz(path, **arrays):
    np.savez(path, **arrays)
    return f"npz:{path}"


@pytest.mark.parametrize("arrays, fragments", [
    ({"y": np.zeros(4, int)}, ["no array 'x'"]),
    ({"x": np.zeros((4, 8, 8), np.uint8)}, ["no array 'y'"]),
    ({"x": np.zeros((4, 8, 8), np.uint8), "y": np.array([0, 1, 2, 7]),
      "classes": np.array(["a", "b", "c"])}, ["label 7 is out of range for 3 classes"]),
    ({"x": np.zeros((4, 8, 8), np.uint8), "y": np.array([0, 1, 0.5, 1])},
     ["labels must be integers"]),
    ({"x": np.zeros((4, 8, 8), np.uint8), "y": np.zeros(4, int)},
     ["hold 1 class (0)", "a classifier needs 2 at least"]),
    ({"x": np.zeros((4, 8, 8), np.uint8), "y": np.array([0, 1, 0, 1]),
      "x_test": np.zeros((2, 8, 8), np.uint8), "y_test": np.array([0, 2])},
     ["y_test: label 2 is out of range for 2 classes"]),
    ({"x": np.zeros((4, 8, 8), np.uint8), "y": np.array([0, 1, 0, 1]),
      "x_test": np.zeros((2, 8, 8), np.uint8), "y_test": np.array([0, 2]),
      "classes": np.array(["a", "b", "c"])}, ["test split has class 'c'", "no training images"]),
    ({"x": np.zeros((4, 8, 8), np.uint8), "y": np.array([0, 1, 0])}, ["4 images", "3 labels"]),
])
def test_bad_npz_files_are_one_line_naming_the_file(capsys, tmp_path, arrays, fragments):
    source = _npz(tmp_path / "d.npz", **arrays)
    code, _, err = run(capsys, "train", "--data", source, "--model", "FC-3",
                       "--out", str(tmp_path))
    assert_one_line_error(code, err, str(tmp_path / "d.npz"), *fragments)


def test_npz_with_class_names_channels_last_and_a_small_limit(capsys, tmp_path, rng):
    x = rng.integers(0, 256, (30, 12, 12, 3), dtype=np.uint8)     # (N, H, W, C)
    y = np.arange(30) % 3
    source = _npz(tmp_path / "d.npz", x=x, y=y, classes=np.array(["ant", "bee", "cat"]))
    code, out, err = run(capsys, "train", "--data", source, "--model", "FC-3", *QUICK,
                         "--limit", "7", "--out", str(tmp_path), "--name", "n")
    assert code == 0, err      # --val-size's default adapts to 7 images (none held out)
    assert "7 train / 0 val" in out and "INPUT[3x12x12]" in out
    code, out, _ = run(capsys, "evaluate", str(tmp_path / "n" / "model.npz"), "--data",
                       source, "--split", "all")
    assert code == 0 and "30 images" in out and "ant" in out
    code, _, err = run(capsys, "train", "--data", source, "--model", "FC-3", *QUICK,
                       "--limit", "5", "--val-size", "5", "--out", str(tmp_path))
    assert_one_line_error(code, err, "--val-size 5 leaves no training images out of 5")


def test_evaluate_matches_a_source_s_classes_by_name(capsys, tmp_path, rng):
    x = rng.integers(0, 256, (12, 8, 8), dtype=np.uint8)
    good = _npz(tmp_path / "a.npz", x=x, y=np.arange(12) % 2, classes=np.array(["cat", "dog"]))
    swapped = _npz(tmp_path / "b.npz", x=x, y=1 - np.arange(12) % 2,
                   classes=np.array(["dog", "cat"]))      # the same labels, named the other way
    other = _npz(tmp_path / "c.npz", x=x, y=np.arange(12) % 2, classes=np.array(["cat", "emu"]))
    assert main(["train", "--data", good, "--model", "FC-2", *QUICK, "--out", str(tmp_path),
                 "--name", "e"]) == 0
    capsys.readouterr()
    ckpt = str(tmp_path / "e" / "model.npz")
    outs = [run(capsys, "evaluate", ckpt, "--data", source, "--split", "all")
            for source in (good, swapped)]
    assert [code for code, _, _ in outs] == [0, 0]
    assert outs[0][1].splitlines()[1:] == outs[1][1].splitlines()[1:]     # all but the title
    code, _, err = run(capsys, "evaluate", ckpt, "--data", other)
    assert_one_line_error(code, err, "has class 'emu', which the net was not trained on",
                          "its classes: cat, dog")


def test_unknown_source_and_options(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--data", "imagenet:/x", "--out", str(tmp_path))
    assert_one_line_error(code, err, "unknown data source 'imagenet:/x'", "folder:DIR")
    code, _, err = run(capsys, "train", "--augment", "blur", "--out", str(tmp_path))
    assert_one_line_error(code, err, "unknown augmentation 'blur'")
    with pytest.raises(SystemExit):
        main(["train", "--input", "3", "--out", str(tmp_path)])
    assert "argument --input: expected a volume CxHxW such as 3x32x32, got '3'" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--test-size", "1.5"])
    assert "expected a fraction in [0, 1)" in capsys.readouterr().err


# ---------------------------------------------------------------------------- one path

def test_predict_centres_digits_as_training_did(capsys, tmp_path):
    """LeNet-5 takes 32x32: training centres MNIST's 28x28 digits, and so must predict (it used
    to resize them, and lost 2.5 points)."""
    assert main(["train", "--model", "lenet5", "--limit", "300", *QUICK, "--out", str(tmp_path),
                 "--name", "l"]) == 0
    capsys.readouterr()
    ckpt = tmp_path / "l" / "model.npz"
    images, _ = load_mnist("test")
    digits = images[:20]
    model, preprocessing, classes, _ = load_for_inference(ckpt)
    assert preprocessing.fit == "centre" and preprocessing.describe() == "28x28 centred in 32x32"
    scores = predict(model, digits, preprocess=preprocessing)
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"d{i}.png")
        Image.fromarray(digits[i]).save(paths[-1])
    result = cnnkit.predict_images(ckpt, [*paths, *digits[5:]])     # files and arrays alike
    assert result.labels == [classes[k] for k in scores.argmax(axis=1)]
    log_probs = scores - np.log(np.exp(scores).sum(1, keepdims=True))
    np.testing.assert_allclose(np.log(result.probabilities), log_probs, rtol=1e-4, atol=1e-5)
    # a batch as the data stores it, (N, H, W) or (N, 1, H, W), goes in as training batches did
    for batch in (digits, digits[:, None]):
        np.testing.assert_allclose(np.log(cnnkit.predict_images(ckpt, batch).probabilities),
                                   log_probs, rtol=1e-4, atol=1e-5)
    # a channel-first array of another size is an image like any other: decoded to 28x28
    big = np.kron(digits[0], np.ones((2, 2), np.uint8))[None]          # (1, 56, 56)
    from_file = cnnkit.predict_images(ckpt, [tmp_path / "d0.png"]).probabilities
    Image.fromarray(big[0]).save(tmp_path / "big.png")
    np.testing.assert_array_equal(cnnkit.predict_images(ckpt, [big]).probabilities,
                                  cnnkit.predict_images(ckpt, [tmp_path / "big.png"]).probabilities)
    assert from_file.argmax() == scores[0].argmax()


def test_resume_of_a_folder_run_reopens_its_data(capsys, tmp_path, rng):
    root = write_folder(tmp_path / "colours", rng, per_class=6)
    argv = ["train", "--data", f"folder:{root}", "--model", "CONV3-4 -> RELU -> FC-3",
            "--batch-size", "4", "--no-progress", "--out", str(tmp_path), "--name", "r"]
    assert main([*argv, "--epochs", "1"]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "train", "--resume", str(tmp_path / "r" / "checkpoint.npz"),
                       "--epochs", "2", "--no-progress")
    assert code == 0 and "epoch 2/2" in out
    history = json.loads((tmp_path / "r" / "history.json").read_text())
    assert history["epoch"] == [1, 2]


# The peak resident memory of this process's own address space (VmHWM). Not getrusage's
# ru_maxrss: Linux carries the forking parent's high-water mark across exec into it.
ZOO_MEMORY = textwrap.dedent("""
    import sys
    from cnnkit.cli import main
    code = main(sys.argv[1:])
    with open("/proc/self/status") as f:
        peak = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    print("peak_kb", peak)
    sys.exit(code)
""")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's VmHWM")
def test_alexnet_on_ten_digits_stays_within_its_own_memory(tmp_path):
    """`--model alexnet --limit 10` used to pad all 60,000 digits to 227x227 first (20 GB)."""
    from cnnkit.models import build_model
    from cnnkit.models.zoo import MODELS
    from cnnkit.nn import shapes_only
    from cnnkit.summary import summarize

    with shapes_only():
        model, shape = build_model("alexnet", (1, *MODELS["alexnet"][1][1:]), num_classes=10)
    own = summarize(model, shape, batch=9).training_bytes   # 9 train images: one batch
    proc = subprocess.run([sys.executable, "-c", ZOO_MEMORY, "train", "--model", "alexnet",
                           "--limit", "10", "--epochs", "1", "--no-progress", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    rss = int(proc.stdout.split("peak_kb")[1]) * 1024
    assert rss < own + 2 * 2 ** 30, (rss / 2 ** 30, own / 2 ** 30)
