"""The bad inputs of the hostile-input exercise, written into a temporary folder.

``build_cases(tmp)`` returns (group, name, argv) triples; every file a case needs is created
under ``tmp`` first. Groups: spec, options, checkpoint, data, folder, image, runs, weights (export
and import), distributed (``train --workers``), lr-find.
"""

from __future__ import annotations

import io
import itertools
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------- specs

SPECS = {
    "huge-fc": "INPUT[1x28x28] -> FC-3000000",
    "huge-fc-train": "INPUT[1x28x28] -> FC-3000000 -> FC-10",
    "huge-conv": "INPUT[3x32x32] -> CONV3-1000000 -> GAP -> FC-10",
    "huge-input": "INPUT[3x1000000x1000000] -> CONV3-8 -> GAP -> FC-10",
    "wide-input": "INPUT[1x1x100000000] -> FC-10",
    "empty-repeat-huge": "INPUT[1x28x28] -> [[RELU]*0]*" + "9" * 23 + " -> FC-10",
    "repeat-huge": "INPUT[1x28x28] -> [RELU]*" + "9" * 23,
    "nested-repeat": "INPUT[1x28x28] -> [[[RELU]*100]*100]*100 -> FC-10",
    "deep-brackets": "INPUT[1x28x28] -> " + "[" * 500 + "RELU" + "]" * 500 + " -> FC-10",
    "unbalanced": "INPUT[1x28x28] -> [RELU -> FC-10",
    "long": "INPUT[1x28x28] -> " + " -> ".join(["RELU"] * 3000) + " -> FC-10",
    "very-long-text": "INPUT[1x28x28] -> " + "RELU -> " * 12000 + "FC-10",   # 96 KB
    "zero-channels": "INPUT[0x28x28] -> FC-10",
    "zero-filters": "INPUT[1x28x28] -> CONV3-0 -> FC-10",
    "zero-fc": "INPUT[1x28x28] -> FC-0",
    "kernel-too-big": "INPUT[1x28x28] -> CONV99-8 -> FC-10",
    "stride-zero": "INPUT[1x28x28] -> CONV3-8/s0 -> FC-10",
    "pool-zero": "INPUT[1x28x28] -> POOL0 -> FC-10",
    "bad-size-rule": "INPUT[1x28x28] -> POOL3 -> FC-10",
    "dropout-1.5": "INPUT[1x28x28] -> DROPOUT1.5 -> FC-10",
    "dropout-neg": "INPUT[1x28x28] -> DROPOUT-0.5 -> FC-10",
    "unknown-token": "INPUT[1x28x28] -> BLUR3 -> FC-10",
    "unicode": "INPUT[1x28x28] → CONV3-8 → FC-10",
    "only-arrows": "-> -> ->",
    "empty": "",
    "spaces": "   ",
    "input-only": "INPUT[1x28x28]",
    "input-2d": "INPUT[28x28] -> FC-10",
    "input-negative": "INPUT[-1x28x28] -> FC-10",
    "input-huge-number": "INPUT[1x" + "9" * 40 + "x28] -> FC-10",
    "fc-huge-number": "INPUT[1x28x28] -> FC-" + "9" * 40,
    "conv-huge-number": "INPUT[1x28x28] -> CONV3-" + "9" * 40,
    "res-mismatch": "INPUT[3x32x32] -> RES-64 -> FC-10",
    "gap-on-vector": "INPUT[1x28x28] -> FC-10 -> GAP",
    "conv-after-fc": "INPUT[1x28x28] -> FC-10 -> CONV3-8",
    "bn-first": "INPUT[1x28x28] -> BN -> FC-10",
    "star-without-group": "INPUT[1x28x28] -> RELU*2 -> FC-10",
    "lrn-big": "INPUT[1x28x28] -> LRN999 -> FC-10",
    "many-fc": "INPUT[1x28x28] -> " + " -> ".join(["FC-4096"] * 2000),
    # LN and GN: groups that do not split the channels, a missing or absurd number, no volume
    "gn-zero": "INPUT[1x28x28] -> CONV3-16 -> GN0 -> FC-10",
    "gn-huge-number": "INPUT[1x28x28] -> CONV3-16 -> GN99999999999 -> FC-10",
    "gn-not-dividing": "INPUT[1x28x28] -> CONV3-16 -> GN3 -> FC-10",
    "gn-more-than-channels": "INPUT[1x28x28] -> CONV3-16 -> GN32 -> FC-10",
    "gn-on-vector-not-dividing": "INPUT[1x28x28] -> FC-10 -> GN4",
    "gn-no-number": "INPUT[1x28x28] -> GN -> FC-10",
    "gn-fraction": "INPUT[1x28x28] -> CONV3-16 -> GN2.5 -> FC-10",
    "ln-on-nothing": "LN",
    "ln-with-number": "INPUT[1x28x28] -> LN2 -> FC-10",
    # the dropout mode
    "dropout-mode-twice": "INPUT[1x28x28] -> DROPOUT0.5/infer/infer -> FC-10",
    "dropout-mode-unknown": "INPUT[1x28x28] -> DROPOUT0.5/inverted -> FC-10",
    "dropout-mode-empty": "INPUT[1x28x28] -> DROPOUT0.5/ -> FC-10",
    # the initialisation of CONV, LC and FC
    "init-twice": "INPUT[1x28x28] -> CONV3-8/he/he -> FC-10",
    "init-unknown": "INPUT[1x28x28] -> CONV3-8/kaiming -> FC-10",
    "init-options-twice": "INPUT[1x28x28] -> CONV3-8/s2/p1/he -> FC-10",
    "init-exponent": "INPUT[1x28x28] -> FC-10/w1e-3",
    "init-scale-zero": "INPUT[1x28x28] -> FC-10/w0",
    "init-scale-negative": "INPUT[1x28x28] -> LC3-4/w-1 -> FC-10",
    "init-scale-word": "INPUT[1x28x28] -> FC-10/wabc",
    "init-scale-bare": "INPUT[1x28x28] -> FC-10/w",
    "init-scale-huge": "INPUT[1x28x28] -> FC-10/w" + "9" * 400,
    "init-scale-tiny": "INPUT[1x28x28] -> FC-10/w0." + "0" * 400 + "1",
    "init-on-pool": "INPUT[1x28x28] -> POOL2/he -> FC-10",
    "init-on-gn": "INPUT[1x28x28] -> CONV3-8 -> GN2/xavier -> FC-10",
    # all of them well formed: a result, not an error
    "norms-inits-modes": "INPUT[1x28x28] -> CONV4-8/s2p1/he -> GN4 -> RELU -> CONV3-8/xavier "
                         "-> LN -> GAP -> FC-16/w0.05 -> LN -> DROPOUT0.5/infer -> FC-10/he",
}


def spec_cases():
    for name, spec in SPECS.items():
        yield "spec", f"summary/{name}", ["summary", spec]
        yield "spec", f"summary-input/{name}", ["summary", spec, "--input", "1x28x28"]
        yield "spec", f"train/{name}", ["train", "--model", spec, "--limit", "20", "--epochs",
                                        "1", "--no-progress", "--out", "runs-spec"]
        yield "spec", f"time/{name}", ["time", spec, "--batch", "2", "--iterations", "1"]
    for name in ("huge-fc", "huge-conv", "huge-input", "nested-repeat", "bad-size-rule"):
        yield "spec", f"convert/{name}", ["convert", SPECS[name], "--image", "1x512x512"]
        yield "spec", f"gradcheck/{name}", ["gradcheck", "--model", SPECS[name]]


# ---------------------------------------------------------------------------- options

NUMBERS = ["0", "-1", "abc", "1e400", "nan", "inf", "9" * 30, "", "0x10", "1.5"]
VOLUMES = ["0x0x0", "1x0x28", "3", "1x28", "1x99999x99999", "3x100000x100000", "axbxc",
           "1x28x28x3", "-1x28x28", "9" * 25 + "x1x1"]


def option_cases():
    for value in NUMBERS:
        for option in ("--epochs", "--batch-size", "--lr", "--limit", "--val-size",
                       "--test-size", "--momentum", "--weight-decay", "--seed", "--layer-stats"):
            yield "options", f"train{option}={value}", ["train", option, value, "--limit", "20",
                                                         "--epochs", "1", "--no-progress",
                                                         "--out", "runs-opt"]
        for option in ("--batch", "--iterations", "--warmup"):
            yield "options", f"time{option}={value}", ["time", "lenet-bn", option, value,
                                                        "--iterations", "1"]
        for option in ("--batch", "--num-checks", "--tol", "--reg"):
            yield "options", f"gradcheck{option}={value}", ["gradcheck", option, value]
        yield "options", f"threads={value}", ["summary", "lenet-bn", "--threads", value]
        yield "options", f"budget={value}", ["summary", "lenet-bn", "--memory-budget", value]
    for volume in VOLUMES:
        yield "options", f"summary--input={volume}", ["summary", "lenet-bn", "--input", volume]
        yield "options", f"time--input={volume}", ["time", "lenet-bn", "--input", volume,
                                                    "--iterations", "1"]
        yield "options", f"gradcheck--input={volume}", ["gradcheck", "--input", volume]
        yield "options", f"train--input={volume}", ["train", "--input", volume, "--limit", "20",
                                                     "--epochs", "1", "--no-progress", "--out",
                                                     "runs-opt"]
        yield "options", f"convert--image={volume}", ["convert", "vgg16", "--image", volume]
    for option, value in (("--augment", "blur"), ("--augment", "crop:-3"), ("--augment", ""),
                          ("--fit", "stretch"), ("--data", "imagenet"), ("--data", ""),
                          ("--data", "npz:"), ("--data", "folder:"), ("--data", "cifar10:"),
                          ("--model", "vgg19"), ("--model", ""), ("--optimizer", "lbfgs"),
                          ("--schedule", "linear"), ("--loss", "hinge")):
        yield "options", f"train{option}={value}", ["train", option, value, "--limit", "20",
                                                     "--epochs", "1", "--no-progress", "--out",
                                                     "runs-opt"]
    yield "options", "train-batch-huge", ["train", "--batch-size", "100000000", "--limit", "20",
                                          "--epochs", "1", "--no-progress", "--out", "runs-opt"]
    yield "options", "time-batch-huge", ["time", "vgg16", "--batch", "100000"]
    yield "options", "gradcheck-batch-huge", ["gradcheck", "--batch", "100000000"]
    yield "options", "no-command", []
    yield "options", "unknown-command", ["fly"]
    # cnnkit help COMMAND: an unknown, empty, huge or odd command name is one line
    for name, words in (("typo", ["trian"]), ("unknown", ["fly"]), ("empty", [""]),
                        ("case", ["TRAIN"]), ("unicode", ["tráin\u200b"]), ("dash", ["-1"]),
                        ("option", ["--threads", "2"]), ("two", ["train", "evaluate"]),
                        ("huge", ["t" * 100_000]), ("after-dashes", ["--", "--help"])):
        yield "options", f"help-{name}", ["help", *words]
    # sizes with binary suffixes are sizes; values starting with '-' reach the option's check;
    # search ranges are bounded before any trial runs
    for value in ("8Gi", "512MiB", "1.5Ti", "1e30", "-1Gi", "8Gx", "9" * 400):
        yield "options", f"budget={value[:40]}", ["summary", "lenet-bn", "--memory-budget",
                                                  value]
    search = ["search", "--trials", "2", "--epochs", "1", "--limit", "20", "--out", "runs-opt"]
    for option, value in (("--lr", "1e300:1e308"), ("--lr", "1e-4:1e7"), ("--lr", "1e-30:1e-2"),
                          ("--lr", "-1:1"), ("--lr", "-1e-3"), ("--lr", "-inf"),
                          ("--weight-decay", "-1"), ("--weight-decay", "1e300"),
                          ("--lr", "1e-4:1e-2:1"), ("--lr", "x" * 5000)):
        yield "options", f"search{option}={value[:40]}", [*search, option, value]
    for option, value in (("--seed", "-1"), ("--epochs", "-5e2"), ("--lr", "-.5"),
                          ("--input", "-3x32x32")):
        yield "options", f"train{option}={value}(separate)", ["train", option, value, "--limit",
                                                              "20", "--epochs", "1",
                                                              "--no-progress", "--out",
                                                              "runs-opt"]


# ---------------------------------------------------------------------------- checkpoints

def _savez_with_meta(path, arrays, meta):
    arrays = dict(arrays)
    arrays["__meta__.json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)


def checkpoint_cases(tmp: Path, good: Path):
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays.pop("__meta__.json").tobytes())
    folder = tmp / "ckpt"
    folder.mkdir()
    made = {}

    def variant(name, edit=None, raw=None):
        path = folder / f"{name}.npz"
        if raw is not None:
            path.write_bytes(raw)
        else:
            m, a = json.loads(json.dumps(meta)), dict(arrays)
            edit(m, a)
            _savez_with_meta(path, a, m)
        made[name] = path

    data = good.read_bytes()
    variant("empty", raw=b"")
    variant("garbage", raw=b"garbage" * 100)
    for cut in (0.1, 0.5, 0.9, 0.99):
        variant(f"truncated-{cut}", raw=data[:int(len(data) * cut)])
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    variant("npy", raw=buffer.getvalue())
    variant("no-meta", raw=_zip({"x.npy": _npy(np.zeros(3))}))
    variant("meta-not-json", raw=_zip({"__meta__.json.npy": _npy(np.frombuffer(b"{nope",
                                                                                np.uint8))}))
    variant("meta-list", lambda m, a: m.clear() or m.update({"format": ["x"]}))
    variant("meta-is-list", raw=_zip({"__meta__.json.npy": _npy(np.frombuffer(b"[1, 2]",
                                                                               np.uint8))}))
    variant("meta-deep", raw=_zip({"__meta__.json.npy": _npy(np.frombuffer(
        b"[" * 100000 + b"]" * 100000, np.uint8))}))
    variant("newer", lambda m, a: m.update(version=99))
    variant("version-str", lambda m, a: m.update(version="1"))
    variant("model-missing", lambda m, a: m.pop("model"))
    variant("model-unknown-type", lambda m, a: m["model"].update(type="Teleport"))
    variant("model-config-list", lambda m, a: m.update(model=[1, 2]))
    variant("model-bad-args", lambda m, a: m["model"].update(args={"bogus": 1}))
    variant("keys-missing-array", lambda m, a: a.pop("model/0.weight"))
    variant("keys-not-list", lambda m, a: m.update(model_keys="0.weight"))
    variant("weight-wrong-shape", lambda m, a: a.update({"model/0.weight": np.zeros((2, 2))}))
    variant("weight-nan", lambda m, a: a.update({"model/0.weight": np.full_like(
        a["model/0.weight"], np.nan)}))
    variant("weight-int", lambda m, a: a.update({"model/0.weight": a["model/0.weight"].astype(
        np.int64)}))
    variant("extra-list", lambda m, a: m.update(extra=[1]))
    variant("metadata-str", lambda m, a: m["extra"].update(metadata="x"))
    variant("input-shape-bad", lambda m, a: m["extra"]["metadata"].update(input_shape=[1, 2]))
    variant("input-shape-str", lambda m, a: m["extra"]["metadata"].update(input_shape="abc"))
    variant("input-shape-huge", lambda m, a: m["extra"]["metadata"].update(
        input_shape=[1, 99999, 99999]))
    variant("mean-wrong", lambda m, a: m["extra"]["metadata"].update(mean=[1, 2, 3]))
    variant("std-zero", lambda m, a: m["extra"]["metadata"].update(std=[0.0]))
    variant("classes-short", lambda m, a: m["extra"]["metadata"].update(classes=["a"]))
    variant("classes-int", lambda m, a: m["extra"]["metadata"].update(classes=5))
    variant("source-bad", lambda m, a: m["extra"]["metadata"].update(source="nowhere:x"))
    variant("settings-list", lambda m, a: m["extra"]["metadata"].update(settings=[1]))
    variant("settings-epochs-str", lambda m, a: m["extra"]["metadata"]["settings"].update(
        epochs="many"))
    variant("settings-batch-zero", lambda m, a: m["extra"]["metadata"]["settings"].update(
        batch_size=0))
    variant("settings-model-int", lambda m, a: m["extra"]["metadata"]["settings"].update(
        model=5))
    variant("settings-optimizer-bad", lambda m, a: m["extra"]["metadata"]["settings"].update(
        optimizer="lbfgs"))
    variant("trainer-epoch-neg", lambda m, a: m["extra"]["trainer"].update(epoch=-3))
    variant("trainer-order-bad", lambda m, a: m["extra"]["trainer"].update(order=[5, 5]))
    variant("trainer-rng-bad", lambda m, a: m["extra"]["trainer"].update(rng={"x": 1}))
    variant("trainer-missing", lambda m, a: m["extra"].pop("trainer"))
    variant("optimizer-bad", lambda m, a: m.update(optimizer={"lr": "fast"}))
    variant("array-ref-missing", lambda m, a: m["extra"].update(ghost={"__array__": "nope"}))
    # a member whose header claims terabytes, and an unreferenced member inflating to 300 MB
    huge = dict(arrays)
    raw = _zip({**{f"{k}.npy": _npy(v) for k, v in huge.items()},
                "__meta__.json.npy": _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))},
               override={"model/0.weight.npy": _header_only((10 ** 6, 10 ** 6), "<f8")})
    variant("header-terabytes", raw=raw)
    bomb = folder / "bomb.npz"
    bomb.write_bytes(data)
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("junk.npy", "w", force_zip64=True) as member:
            member.write(_header_only((300 * 2 ** 17,), "<f8"))
            for _ in range(300):
                member.write(bytes(2 ** 20))
    made["zip-bomb"] = bomb
    variant("object-member", raw=_zip({**{f"{k}.npy": _npy(v) for k, v in arrays.items()},
                                       "__meta__.json.npy": _npy(np.frombuffer(
                                           json.dumps(meta).encode(), np.uint8)),
                                       "evil.npy": _pickled_object_npy()}))
    image = tmp / "digit.png"
    Image.new("L", (28, 28), 30).save(image)
    for name, path in made.items():
        yield "checkpoint", f"evaluate/{name}", ["evaluate", str(path), "--no-progress"]
        yield "checkpoint", f"predict/{name}", ["predict", str(path), str(image)]
        yield "checkpoint", f"summary/{name}", ["summary", str(path)]
        yield "checkpoint", f"resume/{name}", ["train", "--resume", str(path), "--epochs", "2",
                                               "--no-progress"]
    for name in ("garbage", "weight-wrong-shape", "model-unknown-type"):
        yield "checkpoint", f"weights/{name}", ["train", "--weights", str(made[name]),
                                                "--limit", "20", "--epochs", "1",
                                                "--no-progress", "--out", "runs-w"]
        yield "checkpoint", f"convert/{name}", ["convert", str(made[name])]
    yield "checkpoint", "missing", ["evaluate", str(tmp / "none.npz")]
    yield "checkpoint", "folder", ["evaluate", str(tmp)]
    # each damaged checkpoint as the model.npz of a run folder under `cnnkit report`
    for name, path in made.items():
        run = tmp / "report-runs" / name
        run.mkdir(parents=True)
        (run / "model.npz").write_bytes(path.read_bytes())
        yield "checkpoint", f"report/{name}", ["report", str(run), "--no-progress"]


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _header_only(shape, descr) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False,
                                                  "shape": shape})
    return buffer.getvalue()


def _pickled_object_npy() -> bytes:
    return _npy(np.array([print], dtype=object))


def _zip(members: dict, override: dict | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in {**members, **(override or {})}.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- data files

def npz_cases(tmp: Path):
    folder = tmp / "npz"
    folder.mkdir()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 8, 8), dtype=np.uint8)
    y = np.arange(30) % 3
    variants = {
        "ok": dict(x=x, y=y),
        "no-x": dict(y=y), "no-y": dict(x=x), "empty": dict(),
        "y-column": dict(x=x, y=y[:, None]), "y-2d": dict(x=x, y=np.stack([y, y], 1)),
        "y-float": dict(x=x, y=y + 0.5), "y-neg": dict(x=x, y=y - 1),
        "y-huge": dict(x=x, y=y * 10 ** 12), "y-str": dict(x=x, y=y.astype(str)),
        "y-bool": dict(x=x, y=y.astype(bool)), "y-short": dict(x=x, y=y[:10]),
        "one-class": dict(x=x, y=np.zeros(30, int)),
        "x-int32": dict(x=x.astype(np.int32), y=y), "x-int-300": dict(x=x.astype(int) + 100,
                                                                     y=y),
        "x-float": dict(x=x / 255.0, y=y), "x-nan": dict(x=np.full((30, 8, 8), np.nan), y=y),
        "x-inf": dict(x=np.full((30, 8, 8), np.inf), y=y), "x-bool": dict(x=x > 3, y=y),
        "x-complex": dict(x=x.astype(complex), y=y), "x-str": dict(x=x.astype(str), y=y),
        "x-1d": dict(x=x.reshape(-1), y=y), "x-5d": dict(x=x[:, None, None], y=y),
        "x-zero-size": dict(x=np.zeros((30, 0, 8), np.uint8), y=y),
        "x-nhwc": dict(x=np.repeat(x[..., None], 3, -1), y=y),
        "x-channels-7": dict(x=np.repeat(x[:, None], 7, 1), y=y),
        "x-huge-image": dict(x=np.zeros((2, 1, 1, 100000), np.uint8), y=np.array([0, 1])),
        "classes-short": dict(x=x, y=y, classes=np.array(["a", "b"])),
        "classes-int": dict(x=x, y=y, classes=np.array([1, 2, 3])),
        "classes-2d": dict(x=x, y=y, classes=np.array([["a"], ["b"], ["c"]])),
        "test-only-x": dict(x=x, y=y, x_test=x), "test-class-absent": dict(
            x=x, y=y % 2, x_test=x[:3], y_test=np.array([0, 1, 2]),
            classes=np.array(["a", "b", "c"])),
        "test-shape": dict(x=x, y=y, x_test=x[:, :4], y_test=y),
    }
    for name, arrays in variants.items():
        path = folder / f"{name}.npz"
        np.savez(path, **arrays)
        yield "data", f"train/{name}", ["train", "--data", f"npz:{path}", "--model", "FC-3",
                                        "--epochs", "1", "--no-progress", "--out", "runs-npz"]
    np.savez(folder / "objects.npz", x=np.array([print] * 30, dtype=object), y=y)
    (folder / "junk.npz").write_bytes(b"PK\x03\x04junk")
    (folder / "npy.npz").write_bytes(_npy(x))
    (folder / "header-huge.npz").write_bytes(_zip({"x.npy": _header_only((10 ** 7, 10 ** 6),
                                                                         "|u1"),
                                                   "y.npy": _npy(y)}))
    for name in ("objects", "junk", "npy", "header-huge"):
        yield "data", f"train/{name}", ["train", "--data", f"npz:{folder / name}.npz",
                                        "--model", "FC-3", "--epochs", "1", "--no-progress",
                                        "--out", "runs-npz"]
    yield "data", "missing-file", ["train", "--data", f"npz:{folder / 'none.npz'}"]
    # evaluate a digits net on odd arrays
    yield "data", "evaluate/ok", ["evaluate", str(tmp / "good" / "r" / "model.npz"), "--data",
                                  str(folder / "ok.npz")]


def cifar_cases(tmp: Path):
    folder = tmp / "cifar"
    rng = np.random.default_rng(0)

    def batch(n):
        return rng.integers(0, 256, (n, 3072), dtype=np.uint8), list(np.arange(n) % 10)

    def write(root, skip=(), corrupt=None, evil=False):
        root.mkdir(parents=True)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            if name in skip:
                continue
            data, labels = batch(10)
            raw = pickle.dumps({b"data": data, b"labels": labels}, protocol=2)
            if corrupt == name:
                raw = raw[:len(raw) // 2]
            if evil and name == "data_batch_2":
                raw = b"cos\nsystem\n(S'echo pwned > " + str(root / "pwned").encode() + \
                    b"'\ntR."
            (root / name).write_bytes(raw)

    write(folder / "ok")
    write(folder / "missing", skip=("data_batch_3",))
    write(folder / "truncated", corrupt="data_batch_4")
    write(folder / "evil", evil=True)
    (folder / "binary-bad").mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / "binary-bad" / f"{name}.bin").write_bytes(bytes(3073 * 2 + 5))
    for name in ("ok", "missing", "truncated", "evil", "binary-bad", "nonexistent"):
        yield "data", f"cifar/{name}", ["train", "--data", f"cifar10:{folder / name}", "--model",
                                        "three-layer-convnet", "--epochs", "1",
                                        "--no-progress", "--out", "runs-cifar"]


def folder_cases(tmp: Path):
    base = tmp / "folders"
    colours = {"red": (220, 20, 20), "green": (20, 220, 20)}

    def classes(root, n=3, size=(12, 12)):
        for name, colour in colours.items():
            (root / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", size, colour).save(root / name / f"{i}.png")
        return root

    cases = {}
    cases["ok"] = classes(base / "ok")
    (base / "empty").mkdir(parents=True)
    cases["empty"] = base / "empty"
    cases["missing"] = base / "missing"
    (base / "file").write_text("x")
    cases["file"] = base / "file"
    loose = base / "loose"
    loose.mkdir()
    Image.new("L", (5, 5)).save(loose / "a.png")
    cases["loose"] = loose
    cases["empty-class"] = classes(base / "empty-class")
    (base / "empty-class" / "blue").mkdir()
    cases["one-class"] = base / "one-class"
    (base / "one-class" / "a").mkdir(parents=True)
    Image.new("L", (5, 5)).save(base / "one-class" / "a" / "x.png")
    cases["truncated"] = classes(base / "truncated")
    raw = (base / "truncated" / "red" / "0.png").read_bytes()
    (base / "truncated" / "red" / "0.png").write_bytes(raw[:len(raw) // 2])
    cases["fake-jpg"] = classes(base / "fake-jpg")
    (base / "fake-jpg" / "red" / "x.jpg").write_text("not a jpeg")
    cases["zero-byte"] = classes(base / "zero-byte")
    (base / "zero-byte" / "red" / "z.png").write_bytes(b"")
    cases["bomb"] = classes(base / "bomb")
    Image.new("1", (20000, 20000)).save(base / "bomb" / "red" / "big.png")    # 400M pixels
    cases["mixed-sizes"] = classes(base / "mixed-sizes")
    Image.new("RGB", (1, 400), (220, 20, 20)).save(base / "mixed-sizes" / "red" / "thin.png")
    cases["modes"] = classes(base / "modes")
    for mode in ("L", "P", "RGBA", "CMYK", "I;16", "1", "LA", "F", "I"):
        img = Image.new(mode, (9, 9))
        img.save(base / "modes" / "green" / f"m-{mode.replace(';', '')}."
                 f"{'tif' if mode in ('F', 'I', 'CMYK') else 'png'}")
    cases["split-extra-class"] = base / "split-extra-class"
    classes(base / "split-extra-class" / "train")
    classes(base / "split-extra-class" / "test")
    (base / "split-extra-class" / "test" / "blue").mkdir()
    Image.new("RGB", (12, 12)).save(base / "split-extra-class" / "test" / "blue" / "b.png")
    cases["symlink-loop"] = classes(base / "symlink-loop")
    (base / "symlink-loop" / "red" / "loop").symlink_to(base / "symlink-loop" / "red")
    for name, root in cases.items():
        yield "folder", f"train/{name}", ["train", "--data", f"folder:{root}", "--model",
                                          "CONV3-4 -> FC-2", "--epochs", "1", "--no-progress",
                                          "--out", "runs-folder"]
    for name in ("truncated", "fake-jpg", "zero-byte", "bomb"):
        yield "folder", f"skip-bad/{name}", ["train", "--data", f"folder:{cases[name]}",
                                             "--model", "CONV3-4 -> FC-2", "--epochs", "1",
                                             "--no-progress", "--skip-bad", "--out",
                                             "runs-folder"]
    for volume in ("3x60000x60000", "3x1x1", "1x12x12", "7x12x12"):
        yield "folder", f"input/{volume}", ["train", "--data", f"folder:{cases['ok']}",
                                            "--input", volume, "--model", "FC-2", "--epochs",
                                            "1", "--no-progress", "--out", "runs-folder"]


def image_cases(tmp: Path):
    folder = tmp / "images"
    folder.mkdir()
    files = {}
    Image.new("L", (28, 28), 200).save(folder / "ok.png")
    files["ok"] = folder / "ok.png"
    files["missing"] = folder / "none.png"
    files["folder"] = folder
    (folder / "text.png").write_text("hello")
    files["text"] = folder / "text.png"
    (folder / "zero.png").write_bytes(b"")
    files["zero"] = folder / "zero.png"
    raw = files["ok"].read_bytes()
    (folder / "cut.png").write_bytes(raw[:len(raw) // 2])
    files["truncated"] = folder / "cut.png"
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")
    files["bomb"] = folder / "bomb.png"
    for mode in ("RGBA", "P", "CMYK", "I;16", "F", "LA"):
        path = folder / f"m-{mode.replace(';', '')}.{'tif' if mode in ('F', 'CMYK') else 'png'}"
        Image.new(mode, (30, 30)).save(path)
        files[f"mode-{mode}"] = path
    Image.new("RGB", (1, 1)).save(folder / "tiny.png")
    files["tiny"] = folder / "tiny.png"
    Image.new("L", (60000, 1)).save(folder / "long.png")
    files["long"] = folder / "long.png"
    frames = [Image.new("L", (20, 20), v) for v in (0, 255)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    files["animated"] = folder / "anim.gif"
    model = tmp / "good" / "r" / "model.npz"
    for name, path in files.items():
        for invert in ("auto", "yes"):
            yield "image", f"predict/{name}/{invert}", ["predict", str(model), str(path),
                                                        "--invert", invert]
    yield "image", "predict/top-k-0", ["predict", str(model), str(files["ok"]), "--top-k", "0"]
    yield "image", "predict/top-k-huge", ["predict", str(model), str(files["ok"]), "--top-k",
                                          "999999"]


def run_cases(tmp: Path):
    (tmp / "runs-file").write_text("a file where a folder should be")
    yield "runs", "out-is-file", ["train", "--limit", "20", "--epochs", "1", "--no-progress",
                                  "--out", str(tmp / "runs-file")]
    yield "runs", "name-exists", ["train", "--limit", "20", "--epochs", "1", "--no-progress",
                                  "--out", str(tmp / "good"), "--name", "r"]
    yield "runs", "name-with-slash", ["train", "--limit", "20", "--epochs", "1",
                                      "--no-progress", "--out", str(tmp / "x"), "--name",
                                      "../../escape"]
    yield "runs", "name-empty", ["train", "--limit", "20", "--epochs", "1", "--no-progress",
                                 "--out", str(tmp / "x"), "--name", ""]
    yield "runs", "resume-and-weights", ["train", "--resume", "a", "--weights", "b"]
    # report: folders that are not runs, and a good run's side files damaged
    yield "runs", "report-missing", ["report", str(tmp / "no-such-run")]
    yield "runs", "report-file", ["report", str(tmp / "runs-file")]
    (tmp / "empty-run").mkdir()
    yield "runs", "report-empty", ["report", str(tmp / "empty-run")]
    good = tmp / "good" / "r"
    damaged = [("history.json", b"{not json"), ("history.json", b"[1, 2]"),
               ("history.json", b'{"epoch": "x"}'), ("history.json", b"\xff\xfe"),
               ("history.json", b"[" * 100000), ("layer_stats.json", b"{nope"),
               ("layer_stats.json", b'{"every": 1, "iterations": [1], "layers": 3, '
                                    b'"params": {}}'),
               ("layer_stats.json", b'{"every": 1, "iterations": [1], "layers": {}, '
                                    b'"params": {"w": {"grad_norm": ["x"]}}}')]
    for k, (side, content) in enumerate(damaged):
        run = tmp / "report-side" / f"{side}-{k}"
        run.mkdir(parents=True)
        for member in ("model.npz", "checkpoint.npz", "history.json"):
            (run / member).write_bytes((good / member).read_bytes())
        (run / side).write_bytes(content)
        yield "runs", f"report-{run.name}", ["report", str(run), "--no-progress"]
    yield "runs", "report-output-is-folder", ["report", str(good), "-o", str(tmp),
                                              "--no-progress"]
    # experiment: an unknown name, a results folder that cannot be made or is taken
    yield "runs", "experiment-unknown", ["experiment", "dropout"]
    yield "runs", "experiment-out-is-file", ["experiment", "dropout-modes", "--out",
                                             str(tmp / "runs-file"), "--no-progress"]
    yield "runs", "experiment-name-slash", ["experiment", "dropout-modes", "--out",
                                            str(tmp / "exp"), "--name", "../../escape",
                                            "--no-progress"]
    # experiment --data: for an experiment without a source, unknown, missing, images too
    # small for the net's pools, too few images
    exp = ["--out", str(tmp / "exp-data"), "--no-progress"]
    yield "runs", "experiment-data-not-taken", ["experiment", "dropout-modes", "--data",
                                                "mnist", *exp]
    yield "runs", "experiment-data-unknown", ["experiment", "small-batch", "--data",
                                              "imagenet", *exp]
    yield "runs", "experiment-data-missing", ["experiment", "small-batch", "--data",
                                              f"folder:{tmp / 'no-such'}", *exp]
    np.savez(tmp / "exp-3x3.npz", x=np.zeros((20, 3, 3), np.uint8), y=np.arange(20) % 2)
    yield "runs", "experiment-data-too-small", ["experiment", "small-batch", "--data",
                                                f"npz:{tmp / 'exp-3x3.npz'}", *exp]
    np.savez(tmp / "exp-few.npz", x=np.zeros((20, 28, 28), np.uint8), y=np.arange(20) % 2)
    yield "runs", "experiment-data-too-few", ["experiment", "small-batch", "--data",
                                              f"npz:{tmp / 'exp-few.npz'}", *exp]


class _System:
    """Unpickles as ``os.system(touch <marker>)``: what a malicious .pt runs under torch.load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def _safetensors(header, data=b"", length=None) -> bytes:
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return (len(raw) if length is None else length).to_bytes(8, "little") + raw + data


def weights_cases(tmp: Path, good: Path):
    """`cnnkit export` options and `cnnkit import` of damaged and malicious weight files."""
    folder = tmp / "weights"
    folder.mkdir()
    for value in ("0", "-1", "abc", "1e9", "99999999999999999999"):
        yield "weights", f"export--batch={value}", ["export", "lenet-bn", "-o",
                                                    str(folder / "b.onnx"), "--batch", value]
    for value in ("0", "10", "999", "abc", "-17"):
        yield "weights", f"export--opset={value}", ["export", "lenet-bn", "-o",
                                                    str(folder / "o.onnx"), "--opset", value]
    for name, argv in (
            ("to-folder", ["export", "lenet-bn", "-o", str(folder)]),
            ("to-proc", ["export", "lenet-bn", "-o", "/proc/cnnkit.onnx"]),
            ("no-suffix", ["export", "lenet-bn", "-o", str(folder / "net")]),
            ("huge-spec", ["export", SPECS["huge-fc"], "-o", str(folder / "h.onnx")]),
            ("local-opset-11", ["export", "INPUT[3x8x8] -> LC3-4 -> FC-2", "-o",
                                str(folder / "l.onnx"), "--opset", "11"]),
            ("checkpoint", ["export", str(good), "-o", str(folder / "good.onnx")]),
            ("checkpoint-safetensors", ["export", str(good), "-o", str(folder / "g.safetensors")]),
            ("safetensors-with-opset", ["export", "lenet-bn", "-o", str(folder / "x.safetensors"),
                                        "--opset", "13"])):
        yield "weights", f"export-{name}", argv
    marker = folder / "ran"
    files = {
        "empty.pt": b"",
        "random.pt": bytes(range(256)) * 40,
        "text.pt": b"not a state dict",
        "zip-junk.pt": b"PK\x03\x04junk",
        "pickle-system.pt": pickle.dumps({"0.weight": _System(marker)}, protocol=2),
        "zip-system.pt": _zip({"a/data.pkl": pickle.dumps({"w": _System(marker)}, protocol=2),
                               "a/version": b"3\n"}),
        "zip-eval.pt": _zip({"a/data.pkl": b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1"
                                           b"q\x00\x85q\x01Rq\x02."}),
        "zip-deep-tuples.pt": _zip({"a/data.pkl": b"\x80\x02" + b")" + b"\x85" * 200000 + b"."}),
        "zip-no-pickle.pt": _zip({"a/version": b"3\n"}),
        "zip-list.pt": _zip({"a/data.pkl": pickle.dumps([1, 2, 3], protocol=2)}),
        "zip-only-storage.pt": _zip({"a/data/0": b"\0" * 64}),
        "st-huge-header.safetensors": _safetensors(b"{}", length=2 ** 62),
        "st-list.safetensors": _safetensors([1, 2]),
        "st-past-end.safetensors": _safetensors({"w": {"dtype": "F32", "shape": [4],
                                                       "data_offsets": [0, 16]}}, b"\0" * 8),
        "st-huge-shape.safetensors": _safetensors({"w": {"dtype": "F32", "shape": [2 ** 40, 2 ** 40],
                                                         "data_offsets": [0, 8]}}, b"\0" * 8),
        "st-negative.safetensors": _safetensors({"w": {"dtype": "F32", "shape": [-2],
                                                       "data_offsets": [0, 8]}}, b"\0" * 8),
        "st-fp8.safetensors": _safetensors({"w": {"dtype": "F8_E4M3", "shape": [8],
                                                  "data_offsets": [0, 8]}}, b"\0" * 8),
    }
    for name, content in files.items():
        path = folder / name
        path.write_bytes(content)
        yield "weights", f"import-{name}", ["import", str(path), "--model", "lenet-bn", "-o",
                                            str(folder / f"{name}.npz")]
    (folder / "dir.pt").mkdir()
    for name, argv in (
            ("folder", [str(folder / "dir.pt"), "--model", "lenet-bn"]),
            ("missing", [str(folder / "missing.pt"), "--model", "lenet-bn"]),
            ("checkpoint-into-wrong-net", [str(good), "--model", "resnet20"]),
            ("checkpoint-as-model", [str(good), "--model", str(good)]),
            ("huge-spec", [str(good), "--model", SPECS["huge-fc"]]),
            ("mean-nan", [str(good), "--model", "lenet-bn", "--mean", "nan"]),
            ("mean-count", [str(good), "--model", "lenet-bn", "--mean", "1,2,3"]),
            ("by-bogus", [str(good), "--model", "lenet-bn", "--by", "size"])):
        yield "weights", f"import-{name}", ["import", *argv, "-o", str(folder / f"{name}.npz")]
    # shapes far past the dimension cap, names and values of a megabyte, and a .pt of stride-0
    # views that would copy gigabytes out of a few kilobytes
    long = "n" * 1_000_000
    bounded = {
        "st-100k-dims.safetensors": _safetensors({"w": {"dtype": "F32", "shape": [1] * 100_000,
                                                        "data_offsets": [0, 4]}}, b"\0" * 4),
        "st-33-dims.safetensors": _safetensors({"w": {"dtype": "F32", "shape": [1] * 33,
                                                      "data_offsets": [0, 4]}}, b"\0" * 4),
        "st-empty-past-any-array.safetensors": _safetensors(
            {"w": {"dtype": "F32", "shape": [2 ** 62, 0], "data_offsets": [0, 0]}}),
        "st-long-name.safetensors": _safetensors({long: {"dtype": "F31", "shape": [1],
                                                         "data_offsets": [0, 4]}}, b"\0" * 4),
        "st-long-dtype.safetensors": _safetensors({"w": {"dtype": long, "shape": [1],
                                                         "data_offsets": [0, 4]}}, b"\0" * 4),
        "pt-100k-dims.pt": _zip({"a/data.pkl": _torch_views({"w": (1, (1,) * 100_000,
                                                                   (0,) * 100_000)}),
                                 "a/data/0": b"\0" * 4}),
        "pt-stride0-8g.pt": _zip({"a/data.pkl": _torch_views({"w": (1, (2 ** 31 - 1,), (0,))}),
                                  "a/data/0": b"\0" * 4}),
    }
    for name, content in bounded.items():
        path = folder / name
        path.write_bytes(content)
        yield "weights", f"import-{name}", ["import", str(path), "--model", "lenet-bn", "-o",
                                            str(folder / f"{name}.npz")]
    # 4000 views of 1 MB each from one stored float: 3.7 GiB in all (under the budget of a big
    # machine it is copied, then refused as not fitting the net: so here with a budget)
    path = folder / "pt-stride0-views.pt"
    path.write_bytes(_zip({"a/data.pkl": _torch_views(
        {f"w{i}": (1, (250_000,), (0,)) for i in range(4000)}), "a/data/0": b"\0" * 4}))
    yield "weights", "import-pt-stride0-views-budget", [
        "import", str(path), "--model", "lenet-bn", "-o", str(folder / "views.npz"),
        "--memory-budget", "1Gi"]


def _torch_views(tensors: dict) -> bytes:
    """The data.pkl of a state dict whose tensors are views of float storage "0": ``{name:
    (storage elements, size, stride)}``, written as torch.save writes one (protocol 2, each
    tensor a call of torch._utils._rebuild_tensor_v2), without torch."""
    def text(value: str) -> bytes:
        raw = value.encode()
        return b"X" + len(raw).to_bytes(4, "little") + raw

    def ints(values) -> bytes:
        return b"(" + b"".join(b"J" + v.to_bytes(4, "little", signed=True) for v in values) \
            + b"t"

    out = [b"\x80\x02}("]
    for name, (numel, size, stride) in tensors.items():
        storage = (b"(" + text("storage") + b"ctorch\nFloatStorage\n" + text("0") + text("cpu")
                   + b"J" + numel.to_bytes(4, "little") + b"tQ")
        out.append(text(name) + b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + b"K\x00"
                   + ints(size) + ints(stride) + b"\x89ccollections\nOrderedDict\n)RtR")
    out.append(b"u.")
    return b"".join(out)


def distributed_cases(tmp: Path, good: Path):
    """`cnnkit train --workers P` with bad counts, batches, timeouts and nets (MPI ranks)."""
    quick = ["--limit", "60", "--epochs", "1", "--no-progress", "--layer-stats", "0",
             "--out", str(tmp / "distributed")]
    for value in ("0", "-1", "abc", "1e9", "100000", "2.5", ""):
        yield "distributed", f"workers={value!r}", ["train", "--workers", value, *quick]
    for value in ("0", "-5", "nan", "inf", "abc"):
        yield "distributed", f"timeout={value}", ["train", "--workers", "2", "--timeout", value,
                                                  *quick]
    yield "distributed", "batch-not-divided", ["train", "--workers", "3", "--batch-size", "64",
                                               *quick]
    yield "distributed", "resume-batch-not-divided", ["train", "--workers", "4", "--resume",
                                                      str(good), "--no-progress"]
    yield "distributed", "shard-of-one-with-batchnorm", [
        "train", "--workers", "2", "--batch-size", "2", *quick, "--model",
        "INPUT[1x28x28] -> FC-20 -> BN -> RELU -> FC-10"]
    yield "distributed", "more-ranks-than-images", ["train", "--workers", "4", "--batch-size",
                                                    "4", "--limit", "3", "--epochs", "1",
                                                    "--no-progress", "--out",
                                                    str(tmp / "distributed")]
    yield "distributed", "sync-bn-without-bn", ["train", "--workers", "2", "--sync-bn", *quick,
                                                "--model", "INPUT[1x28x28] -> FC-10"]
    yield "distributed", "missing-data", ["train", "--workers", "2", "--data",
                                          f"folder:{tmp / 'no-such-folder'}", *quick]
    yield "distributed", "huge-net", ["train", "--workers", "2", *quick, "--model",
                                      SPECS["huge-fc-train"]]


# ---------------------------------------------------------------------------- shared machines
# Issue 26's groups; each generator is filled by the change that makes its group clean.

def run_folder_cases(tmp: Path, good: Path):
    """Run names that are paths, stale and foreign locks, files cnnkit did not create."""
    import os
    import shutil

    root = tmp / "run-folder"
    out = root / "o1" / "sub"
    quick = ["--limit", "20", "--epochs", "1", "--no-progress", "--out", str(out)]
    search = ["--limit", "20", "--epochs", "1", "--out", str(out)]
    # a run name is one folder name: never a path, never empty; every command that takes one
    names = {"dotdot-escape": "../../escape", "dotdot": "..", "dot": ".", "empty": "",
             "slash": "sub/run", "trailing-slash": "run/", "absolute": str(root / "abs-escape"),
             "backslash": "a\\b", "dot-inside": "x/../y", "long": "n" * 300}
    for label, name in names.items():
        yield "run-folder", f"train-name-{label}", ["train", *quick, "--name", name]
    for label in ("dotdot-escape", "absolute", "empty", "dot"):
        yield "run-folder", f"search-name-{label}", ["search", "--trials", "1", *search,
                                                     "--name", names[label]]
        yield "run-folder", f"experiment-name-{label}", [
            "experiment", "dropout-modes", "--no-progress", "--out", str(out), "--name",
            names[label]]
    # something in the way of the folder: a file, a link to nothing, a file as a parent
    there = root / "there"
    there.mkdir(parents=True)
    (there / "file").write_text("the user's")
    (there / "dangling").symlink_to(there / "gone")
    (there / "link-to-file").symlink_to(there / "file")
    quick_there = [*quick[:-1], str(there)]
    for name in ("file", "dangling", "link-to-file"):
        yield "run-folder", f"name-is-{name}", ["train", *quick_there, "--name", name]
    yield "run-folder", "out-is-dangling", ["train", *quick[:-1], str(there / "dangling")]
    yield "run-folder", "out-under-a-file", ["train", *quick[:-1], str(there / "file" / "o")]
    yield "run-folder", "search-name-is-file", ["search", "--trials", "1", *search[:-1],
                                                str(there), "--name", "file"]
    yield "run-folder", "experiment-out-dangling", [
        "experiment", "dropout-modes", "--no-progress", "--out", str(there / "dangling")]
    # resuming a run whose lock is stale, foreign or not a lock at all; and the user's files
    live = os.getpid()         # this exercise runs every case, so its own pid stays alive
    locks = {"dead-pid": f"{2 ** 22} 1", "live-pid": f"{live}",
             "live-pid-other-start": f"{live} 999999999999", "garbage": "abc\0\xff",
             "empty": "", "huge-pid": "9" * 400, "negative-pid": "-1"}
    kinds = [*locks, "symlink", "fifo", "folder", "user-draft"]
    for kind in kinds:
        folder = root / f"lock-{kind}"
        folder.mkdir()
        shutil.copyfile(good / "checkpoint.npz", folder / "checkpoint.npz")
        lock = folder / ".cnnkit-train.lock"
        if kind in locks:
            lock.write_text(locks[kind], errors="surrogateescape")
        elif kind == "symlink":
            lock.symlink_to(good / "model.npz")
        elif kind == "fifo":
            os.mkfifo(lock)
        elif kind == "folder":
            lock.mkdir()
        else:
            (folder / ".draft.tmp").write_text("x")
            (folder / ".checkpoint.npz.notes.tmp").write_text("x")
        yield "run-folder", f"resume-lock-{kind}" if kind != "user-draft" else "resume-draft", [
            "train", "--resume", str(folder / "checkpoint.npz"), "--epochs", "2",
            "--no-progress"]
    overwritten = root / "overwrite"
    shutil.copytree(good, overwritten / "r")
    (overwritten / "r" / ".draft.tmp").write_text("x")
    yield "run-folder", "overwrite-draft", ["train", *quick[:-1], str(overwritten), "--name",
                                            "r", "--overwrite"]


def special_file_cases(tmp: Path, good: Path):
    """FIFOs, devices and sockets where data, images, checkpoints or outputs are named."""
    yield from _special_reads(tmp / "special", good)
    yield from _special_writes(tmp / "special-out", good)
    yield from _special_folders(tmp / "special-folder")


def _special(folder: Path, suffix: str) -> dict:
    """kind -> path of things in ``folder`` (created) that are not regular files, each named
    KIND + ``suffix``: a FIFO, a socket, a folder, links to /dev/null, /dev/zero and /dev/full,
    and (as root) a character device node of the case's own. A real device is never named as
    an output: should a check break, only what is in tmp is replaced."""
    import os
    import socket
    import stat

    folder.mkdir(parents=True, exist_ok=True)
    things = {kind: folder / f"{kind}{suffix}" for kind in ("fifo", "folder", "link-null",
                                                             "link-zero", "socket")}
    os.mkfifo(things["fifo"])
    things["folder"].mkdir()
    things["link-null"].symlink_to("/dev/null")
    things["link-zero"].symlink_to("/dev/zero")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(things["socket"]))
    sock.close()
    if Path("/dev/full").exists():
        things["link-full"] = folder / f"link-full{suffix}"
        things["link-full"].symlink_to("/dev/full")
    if os.geteuid() == 0:
        things["device-node"] = folder / f"device-node{suffix}"
        os.mknod(things["device-node"], stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return things


def _special_reads(folder: Path, good: Path):
    """Every command that reads a file, given a FIFO (which would hang a reader), a device
    (/dev/zero: endless bytes) and the rest of :func:`_special`'s things."""
    import os
    import shutil

    model = str(good / "model.npz")
    image = folder / "ok.png"
    folder.mkdir()
    Image.new("L", (20, 31), 200).save(image)
    quick = ["--limit", "20", "--epochs", "1", "--no-progress", "--out", str(folder / "runs")]
    for kind, path in _special(folder / "png", ".png").items():
        yield "special", f"predict-image-{kind}", ["predict", model, str(path)]
        yield "special", f"predict-second-image-{kind}", ["predict", model, str(image),
                                                          str(path)]
    yield "special", "predict-image-dev-zero", ["predict", model, "/dev/zero"]
    for kind, path in _special(folder / "npz", ".npz").items():
        path = str(path)
        yield "special", f"predict-checkpoint-{kind}", ["predict", path, str(image)]
        yield "special", f"evaluate-{kind}", ["evaluate", path, "--no-progress"]
        yield "special", f"evaluate-data-npz-{kind}", ["evaluate", model, "--data",
                                                       f"npz:{path}", "--no-progress"]
        yield "special", f"train-data-npz-{kind}", ["train", "--data", f"npz:{path}", *quick]
        yield "special", f"train-resume-{kind}", ["train", "--resume", path, "--no-progress"]
        yield "special", f"summary-{kind}", ["summary", path]
        yield "special", f"convert-{kind}", ["convert", path]
        yield "special", f"export-{kind}", ["export", path, "-o",
                                            str(folder / f"export-{kind}.onnx")]
    yield "special", "train-data-npz-dev-zero", ["train", "--data", "npz:/dev/zero", *quick]
    for suffix in (".pt", ".safetensors"):
        for kind, path in _special(folder / suffix[1:], suffix).items():
            yield "special", f"import-{kind}{suffix}", [
                "import", str(path), "--model", "lenet-bn", "-o",
                str(folder / f"import-{kind}{suffix}.npz")]
            yield "special", f"train-weights-{kind}{suffix}", ["train", "--weights", str(path),
                                                               *quick]
    yield "special", "import-dev-zero", ["import", "/dev/zero", "--model", "lenet-bn", "-o",
                                         str(folder / "import-dev-zero.npz")]
    # a FIFO or a device where a folder of batches or a run folder has a file
    for kind in ("fifo", "link-zero"):
        cifar = folder / f"cifar-{kind}"
        cifar.mkdir()
        batch = cifar / "data_batch_1.bin"
        if kind == "fifo":
            os.mkfifo(batch)
        else:
            batch.symlink_to("/dev/zero")
        yield "special", f"train-cifar10-batch-{kind}", ["train", "--data", f"cifar10:{cifar}",
                                                         *quick]
    for member in ("model.npz", "checkpoint.npz"):
        run = folder / f"run-{member}"
        run.mkdir()
        for name in ("history.json", "model.npz", "checkpoint.npz"):
            if name != member and not (member == "checkpoint.npz" and name == "model.npz"):
                shutil.copy(good / name, run / name)
        os.mkfifo(run / member)
        yield "special", f"report-run-{member}-fifo", ["report", str(run), "--no-progress"]
        yield "special", f"resume-run-{member}-fifo", ["train", "--resume",
                                                       str(run / "checkpoint.npz"),
                                                       "--no-progress"]


def _special_writes(folder: Path, good: Path):
    """Every command that writes a file, told to write it onto a FIFO, a device node (or a link
    to one), a socket or a folder: refused before anything is written."""
    import os
    import shutil

    model = str(good / "model.npz")
    writers = {
        ".onnx": lambda out: [("export-onnx", ["export", "lenet-bn", "-o", out])],
        ".safetensors": lambda out: [("export-safetensors", ["export", model, "-o", out])],
        ".npz": lambda out: [("import", ["import", model, "--model", "lenet-bn", "-o", out,
                                         "--overwrite"]),
                             ("import-no-overwrite", ["import", model, "--model", "lenet-bn",
                                                      "-o", out]),
                             ("convert", ["convert", "lenet-bn", "-o", out])],
        ".json": lambda out: [("summary-json", ["summary", "lenet-bn", "--json", out]),
                              ("time-json", ["time", "lenet-bn", "--batch", "2",
                                             "--iterations", "1", "--json", out])],
        ".html": lambda out: [("report", ["report", str(good), "-o", out, "--no-progress"])],
    }
    for suffix, commands in writers.items():
        for kind, path in _special(folder / suffix[1:], suffix).items():
            for name, argv in commands(str(path)):
                yield "special", f"{name}-to-{kind}", argv
    # the files a command writes into a run folder, already there as FIFOs
    run = folder / "report-page-fifo"
    shutil.copytree(good, run)
    os.mkfifo(run / "report.html")
    yield "special", "report-page-is-fifo", ["report", str(run), "--no-progress"]
    runs = folder / "runs"
    (runs / "r").mkdir(parents=True)
    os.mkfifo(runs / "r" / "checkpoint.npz")
    yield "special", "train-overwrite-checkpoint-fifo", [
        "train", "--limit", "20", "--epochs", "1", "--no-progress", "--out", str(runs),
        "--name", "r", "--overwrite"]


def _special_folders(base: Path):
    """The folder source given, in a class folder, an image name that is not a regular file
    (refused in one line, or skipped with --skip-bad, never opened), and a class folder that is
    a link to a folder outside the dataset (followed, with a note)."""
    import os
    import socket
    import stat

    def dataset(root):
        for name, colour in (("red", (220, 20, 20)), ("green", (20, 220, 20))):
            (root / name).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (12, 10), colour).save(root / name / f"{i}.png")
        return root

    def bound(path):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))

    makers = {"fifo": os.mkfifo, "dangling-link": lambda p: p.symlink_to(p.parent / "gone"),
              "link-dev-zero": lambda p: p.symlink_to("/dev/zero"), "socket": bound}
    if os.geteuid() == 0:
        makers["device-node"] = lambda p: os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(1, 5))
    train = ["--model", "CONV3-4 -> FC-2", "--epochs", "1", "--no-progress", "--out",
             str(base / "runs")]
    for kind, make in makers.items():
        root = dataset(base / kind)
        make(root / "red" / "zz.png")
        yield "special", f"folder-image-{kind}", ["train", "--data", f"folder:{root}", *train]
        yield "special", f"folder-image-{kind}-skip-bad", ["train", "--data", f"folder:{root}",
                                                            *train, "--skip-bad"]
    linked = dataset(base / "linked")
    dataset(base / "elsewhere" / "d")
    (linked / "blue").symlink_to(base / "elsewhere" / "d" / "red")
    yield "special", "folder-class-linked-outside", ["train", "--data", f"folder:{linked}",
                                                     *train[2:], "--model", "CONV3-4 -> FC-3"]


def nonfinite_cases(tmp: Path, good: Path):
    """Checkpoints and inputs holding NaN or infinite values: nets built from the good run
    (loaded, one value set, saved with cnnkit.io.save_checkpoint) under every command that
    serves a net, with and without --allow-nonfinite; weights files with NaN under import and
    train --weights; images and data holding NaN, infinities or nothing."""
    # the checkpoint functions, when the cases are built (as build_cases imports the command)
    from cnnkit.io import load_checkpoint, save_checkpoint

    folder = tmp / "nonfinite"
    folder.mkdir()
    digit = folder / "digit.png"
    Image.new("L", (20, 31), 40).save(digit)
    ckpt = load_checkpoint(good / "model.npz")
    edits = {
        "var-nan": lambda m: dict(m.named_buffers())["1.running_var"].__setitem__(0, np.nan),
        "mean-inf": lambda m: dict(m.named_buffers())["5.running_mean"].__setitem__(3, -np.inf),
        "weight-nan": lambda m: m.parameters()[0].data.__setitem__((0, 0, 2, 1), np.nan),
        "bias-inf": lambda m: m.parameters()[-1].data.__setitem__(9, np.inf),
        "all-nan": lambda m: [p.data.fill(np.nan) for p in m.parameters()],
    }
    nets = {}
    for name, edit in edits.items():
        model = ckpt.build_model()
        edit(model)
        run = folder / name              # a run folder whose best weights hold the value
        run.mkdir()
        for part in ("history.json", "test.json", "layer_stats.json"):
            if (good / part).is_file():
                (run / part).write_bytes((good / part).read_bytes())
        nets[name] = save_checkpoint(run / "model.npz", model, extra=ckpt.extra)
        for extra in ([], ["--allow-nonfinite"]):
            flag = "/allow" if extra else ""
            yield "nonfinite", f"evaluate/{name}{flag}", ["evaluate", str(nets[name]),
                                                         "--no-progress", *extra]
            yield "nonfinite", f"predict/{name}{flag}", ["predict", str(nets[name]),
                                                        str(digit), *extra]
            yield "nonfinite", f"report/{name}{flag}", ["report", str(run), "--no-progress",
                                                       *extra]
            for kind in ("onnx", "safetensors"):
                out = folder / f"{name}{flag.replace('/', '-')}.{kind}"
                yield "nonfinite", f"export-{kind}/{name}{flag}", ["export", str(nets[name]),
                                                                  "-o", str(out), *extra]
        yield "nonfinite", f"summary/{name}", ["summary", str(nets[name])]
        yield "nonfinite", f"train-weights/{name}", [
            "train", "--weights", str(nets[name]), "--limit", "20", "--epochs", "1",
            "--no-progress", "--out", str(folder / "runs")]
        yield "nonfinite", f"resume/{name}", ["train", "--resume", str(nets[name]),
                                              "--epochs", "2", "--no-progress"]
    # a training checkpoint (optimizer and trainer state kept) whose weights hold NaN, resumed
    last = load_checkpoint(good / "checkpoint.npz")
    model = last.build_model()
    dict(model.named_buffers())["5.running_var"][0] = np.nan
    resumable = save_checkpoint(folder / "resumable" / "checkpoint.npz", model,
                                optimizer=last.optimizer, scheduler=last.scheduler,
                                extra=last.extra)
    yield "nonfinite", "resume/checkpoint-var-nan", ["train", "--resume", str(resumable),
                                                     "--epochs", "2", "--no-progress"]
    # weights files holding NaN, under import (with and without the flag, by name and by
    # position) and as a spec net's --weights
    state = ckpt.model_state
    files = {"nan.npz": {k: np.full_like(v, np.nan) if k == "4.weight" else v
                         for k, v in state.items()},
             "renamed-nan.npz": {f"net.{k}": np.full_like(v, np.nan) if k == "11.bias" else v
                                 for k, v in state.items()},
             "double-overflow.npz": {k: np.full(v.shape, 1e300) if k == "9.weight" else v
                                     for k, v in state.items()}}
    for name, arrays in files.items():
        path = folder / name
        np.savez(path, **arrays)
        for extra in ([], ["--allow-nonfinite"]):
            flag = "/allow" if extra else ""
            yield "nonfinite", f"import/{name}{flag}", [
                "import", str(path), "--model", "lenet-bn", "-o",
                str(folder / f"imported{flag.replace('/', '-')}-{name}"), *extra]
    # images and data holding NaN, infinities or nothing
    grey = np.full((31, 20), 0.5, np.float32)
    for name, values in (("nan", np.nan), ("inf", np.inf)):
        image = grey.copy()
        image[3:9, 4:7] = values
        Image.fromarray(image, mode="F").save(folder / f"{name}.tif")
        yield "nonfinite", f"predict-image/{name}.tif", ["predict", str(nets["var-nan"]),
                                                         str(folder / f"{name}.tif"),
                                                         "--allow-nonfinite"]
        yield "nonfinite", f"predict-image/{name}.tif/good", [
            "predict", str(good / "model.npz"), str(folder / f"{name}.tif")]
    x = np.random.default_rng(0).random((12, 28, 28)).astype(np.float32)
    labels = np.arange(12) % 10
    for name, images in (("nan", np.where(np.arange(28) == 5, np.nan, x)),
                         ("inf", np.where(np.arange(28) == 5, np.inf, x)),
                         ("complex", x.astype(np.complex64)), ("empty", x[:0])):
        path = folder / f"data-{name}.npz"
        np.savez(path, x=images, y=labels[:len(images)])
        yield "nonfinite", f"evaluate-data/{name}", ["evaluate", str(good / "model.npz"),
                                                     "--data", f"npz:{path}", "--no-progress"]
        yield "nonfinite", f"train-data/{name}", ["train", "--data", f"npz:{path}", "--epochs",
                                                  "1", "--no-progress", "--out",
                                                  str(folder / "runs")]


TEXTS = {"frac": r"$\frac{$", "power": r"$x^$", "money": r"cost $5 and $6", "backslash": "\\",
         "underscore": "a_b", "unicode": "Ωμé → ∑ ü", "newline": "two\nlines",
         "long": "L" * 200 + "$"}


def text_cases(tmp: Path, good: Path):
    """User text (folder, class and file names) that figures and pages show: each TEXTS entry
    as a data folder's name, a class folder's, an npz file's, npz class names and a run name,
    under train, --resume and report. matplotlib reads "$...$" as math: before, these stopped
    training after its first epoch (drawing curves.png) with an empty error line."""
    import contextlib

    from cnnkit.cli import main

    root = tmp / "text"
    quick = ["--epochs", "1", "--no-progress", "--model", "CONV3-4 -> RELU -> GAP -> FC-3",
             "--layer-stats", "1"]
    rng = np.random.default_rng(0)
    for label, text in TEXTS.items():
        data = root / label / f"d{text}"
        for k, name in enumerate((text, "plain", f"x{text}")):
            (data / name).mkdir(parents=True)
            for i in range(6):
                Image.new("RGB", (9, 7), (40 * k, 20 * i, 90)).save(data / name / f"{i}.png")
        npz = root / label / f"d{text}.npz"
        np.savez(npz, x=rng.integers(0, 256, (30, 7, 9), dtype=np.uint8), y=np.arange(30) % 3,
                 classes=np.array([text, "plain", f"x{text}"]))
        out = str(root / label / "runs")
        yield "text", f"train-folder-{label}", ["train", "--data", f"folder:{data}", *quick,
                                                "--out", out, "--name", "folder", "--report"]
        yield "text", f"train-npz-{label}", ["train", "--data", f"npz:{npz}", *quick, "--out",
                                             out, "--name", "npz", "--report"]
        # the run name is in the report's page (one holding "\\" is refused as a run name)
        yield "text", f"run-name-{label}", ["train", "--data", f"npz:{npz}", *quick, "--out",
                                            out, "--name", text, "--report"]
        # a run of the npz (classes named by the text) made now, then resumed and reported;
        # should it fail, the cases below show how
        made = root / label / "made"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            main(["train", "--data", f"npz:{npz}", *quick, "--out", str(made), "--name", "r"])
        yield "text", f"resume-{label}", ["train", "--resume", str(made / "r" / "checkpoint.npz"),
                                          "--epochs", "2", "--no-progress"]
        yield "text", f"report-{label}", ["report", str(made / "r"), "--no-progress", "-o",
                                          str(root / label / "page.html")]


def onnx_cases(tmp: Path, good: Path):
    """`cnnkit export --include-preprocessing` (ONNX with its preprocessing) of checkpoints
    whose recorded preprocessing is damaged, conflicting options, and two that must succeed."""
    folder = tmp / "onnx-pre"
    folder.mkdir()
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays.pop("__meta__.json").tobytes())
    out = str(folder / "net.onnx")
    edits = {
        "resized": dict(image_shape=[1, 45, 37], fit="resize"),
        "centre-larger": dict(image_shape=[1, 40, 40], fit="centre"),
        "fit-unknown": dict(image_shape=[1, 40, 40], fit="stretch"),
        "image-zero": dict(image_shape=[1, 0, 28], fit="resize"),
        "image-negative": dict(image_shape=[1, -5, 28], fit="centre"),
        "image-huge": dict(image_shape=[1, 10 ** 12, 10 ** 12], fit="resize"),
        "image-str": dict(image_shape="28x28"),
        "image-channels": dict(image_shape=[3, 28, 28]),
        "mean-nan": dict(mean=[float("nan")]),
        "std-inf": dict(std=[float("inf")]),
        "std-beyond-float32": dict(std=[1e300]),
        "mean-list-of-lists": dict(mean=[[0.1]]),
        "no-input-shape": dict(input_shape=None),
        "unknown-normalisation": dict(normalisation_unknown=True),
    }
    for name, edit in edits.items():
        m = json.loads(json.dumps(meta))
        recorded = m["extra"]["metadata"]
        recorded.update(edit)
        for key in [k for k, v in edit.items() if v is None]:
            recorded.pop(key)
        _savez_with_meta(folder / f"{name}.npz", arrays, m)
        yield "onnx", f"export-preprocessing/{name}", ["export", str(folder / f"{name}.npz"),
                                                       "-o", out, "--include-preprocessing"]
    for name, extra in (("resized-opset-17", ["--opset", "17"]),
                        ("resized-opset-11", ["--opset", "11"]),
                        ("resized-fixed-batch", ["--batch", "3"])):
        yield "onnx", f"export-preprocessing/{name}", ["export", str(folder / "resized.npz"),
                                                       "-o", out, "--include-preprocessing",
                                                       *extra]
    for name, argv in (
            ("good", [str(good), "-o", out]),
            ("good-opset-11", [str(good), "-o", out, "--opset", "11"]),
            ("zoo", ["lenet-bn", "-o", out]),
            ("spec", ["INPUT[1x28x28] -> FC-10", "-o", out]),
            ("safetensors", [str(good), "-o", str(folder / "w.safetensors")]),
            ("other-input", [str(good), "-o", out, "--input", "1x32x32"]),
            ("same-input", [str(good), "-o", out, "--input", "1x28x28"]),
            ("num-classes", [str(good), "-o", out, "--num-classes", "3"])):
        yield "onnx", f"export-preprocessing/{name}", ["export", *argv,
                                                       "--include-preprocessing"]
def compare_cases(tmp: Path, good: Path):
    """`cnnkit compare` on what is not a run, damaged run files, special files, hostile
    search.json files, outputs that are not regular files or are a run's own, too many runs."""
    import os
    import shutil

    root = tmp / "compare"
    root.mkdir()

    def copy(name, drop=()):
        folder = root / name
        shutil.copytree(good, folder)
        for f in drop:
            (folder / f).unlink()
        return folder

    (root / "empty").mkdir()
    (root / "file.txt").write_text("not a run")
    os.mkfifo(root / "fifo")
    yield "compare", "missing", ["compare", str(root / "nope")]
    for name in ("empty", "file.txt", "fifo"):
        yield "compare", f"not-a-run-{name}", ["compare", str(root / name)]
        yield "compare", f"beside-a-run-{name}", ["compare", str(good), str(root / name)]
    yield "compare", "empty-path", ["compare", ""]
    yield "compare", "dev-null", ["compare", "/dev/null"]
    yield "compare", "dev-zero", ["compare", str(good), "/dev/zero"]
    # damaged or special run files
    os.mkfifo(copy("model-fifo", ["model.npz"]) / "model.npz")
    (copy("model-garbage") / "model.npz").write_bytes(b"PK\x03\x04 garbage")
    (copy("history-garbage") / "history.json").write_text("{\"epoch\": [1, \"x\"]")
    os.mkfifo(copy("history-fifo", ["history.json"]) / "history.json")
    with open(copy("history-huge") / "history.json", "r+b") as f:
        f.truncate(300 * 2 ** 20)                    # sparse: over a run's JSON bound
    (copy("history-deep") / "history.json").write_text("[" * 100_000 + "]" * 100_000)
    (copy("test-garbage") / "test.json").write_text('{"accuracy": "high"}')
    (copy("test-infinite") / "test.json").write_text(
        '{"accuracy": NaN, "loss": Infinity, "images": Infinity}')
    (copy("history-infinite") / "history.json").write_text(
        '{"epoch": [Infinity, NaN], "val_acc": [NaN, Infinity], "seconds": [Infinity, 1]}')
    for kind in ("fifo", "symlink", "garbage", "folder"):
        lock = copy(f"lock-{kind}", ["model.npz"]) / ".cnnkit-train.lock"
        if kind == "fifo":
            os.mkfifo(lock)
        elif kind == "symlink":
            lock.symlink_to("/dev/zero")
        elif kind == "folder":
            lock.mkdir()
        else:
            lock.write_bytes(b"\xff\x00" * 40)
    for name in ("model-fifo", "model-garbage", "history-garbage", "history-fifo",
                 "history-huge", "history-deep", "test-garbage", "test-infinite",
                 "history-infinite", "lock-fifo", "lock-symlink",
                 "lock-garbage", "lock-folder"):
        yield "compare", name, ["compare", str(root / name)]
        yield "compare", f"{name}-beside-a-run", ["compare", str(good), str(root / name),
                                                  "--json"]
    odd = copy("run\nwith a newline $x^$")
    yield "compare", "odd-name", ["compare", str(odd), str(good), "--plot",
                                  str(root / "odd.png"), "--html", str(root / "odd.html")]
    # hostile search folders
    searches = {"garbage": "{", "not-a-record": "[]", "deep": "[" * 100_000,
                "escape": {"folder": "../../../etc"}, "absolute": {"folder": "/etc"},
                "missing-trial": {"folder": "trial-007"}, "index-text": {"index": "0"},
                "lr-text": {"lr": "fast"}}
    for label, content in searches.items():
        folder = root / f"search-{label}"
        shutil.copytree(good, folder / "trial-000")
        if isinstance(content, dict):
            trial = {"index": 0, "round": 1, "rank": 0, "folder": "trial-000", "lr": 1e-3,
                     "weight_decay": 0.0, "epochs": 1, "val_acc": 0.5, "epoch": 1,
                     "seconds": 1.0, "status": "ok", **content}
            content = json.dumps({"settings": {"epochs": 1}, "trials": [trial]})
        (folder / "search.json").write_text(content)
        yield "compare", f"search-{label}", ["compare", str(folder)]
        yield "compare", f"trial-of-search-{label}", ["compare", str(folder / "trial-000")]
    # outputs
    os.mkfifo(root / "out.html")
    (root / "out-folder.png").mkdir()
    for option, path in (("--html", root / "out.html"), ("--plot", root / "out-folder.png"),
                         ("--html", root / "file.txt" / "x.html"), ("--html", "/dev/full"),
                         ("--plot", good / "curves.png"), ("--html", good / "report.html"),
                         ("--plot", good / "model.npz")):
        yield "compare", f"output{option}-{path.name if isinstance(path, Path) else path}", [
            "compare", str(good), option, str(path)]
    yield "compare", "same-output-twice", ["compare", str(good), "--html",
                                           str(root / "same.png"), "--plot",
                                           str(root / "same.png")]
    yield "compare", "too-many", ["compare", *[str(good)] * 200]
    yield "compare", "same-run-twice", ["compare", str(good), str(good) + "/",
                                        str(good / "model.npz")]
def logs_cases(tmp: Path, good: Path):
    """--tensorboard DIR that cannot hold the event files, --layer-stats words, and a resumed
    run whose history.csv is not a CSV of epochs, or not a file."""
    import os
    import shutil

    root = tmp / "logs"
    root.mkdir()
    quick = ["--limit", "20", "--epochs", "1", "--no-progress", "--out", str(root / "runs")]
    (root / "a-file").write_text("mine")
    os.mkfifo(root / "a-fifo")
    locked = root / "locked"
    locked.mkdir(mode=0o500)
    for label, where in (("file", root / "a-file"), ("below-a-file", root / "a-file" / "tb"),
                         ("fifo", root / "a-fifo"), ("unwritable", locked / "tb"),
                         ("device", "/dev/null"), ("empty", "")):
        yield "logs", f"tensorboard-{label}", ["train", *quick, "--tensorboard", str(where)]
    for value in ("Auto", "auto5", "-1", "often"):
        yield "logs", f"layer-stats-{value}", ["train", *quick, "--layer-stats", value]
    for label, content in (("not-epochs", b"name,score\na,1\n"), ("binary", b"\xff\xfe\0\0"),
                           ("bad-epoch", b"epoch,train_loss\nx,1\n")):
        run = root / f"csv-{label}"
        shutil.copytree(good, run)
        (run / "history.csv").write_bytes(content)
        yield "logs", f"resume-history-csv-{label}", [
            "train", "--resume", str(run / "checkpoint.npz"), "--epochs", "2", "--no-progress"]
    run = root / "csv-fifo"
    shutil.copytree(good, run)
    (run / "history.csv").unlink(missing_ok=True)
    os.mkfifo(run / "history.csv")
    yield "logs", "resume-history-csv-fifo", [
        "train", "--resume", str(run / "checkpoint.npz"), "--epochs", "2", "--no-progress"]
def report_cases(tmp: Path, good: Path):
    """`cnnkit report --sections`: names that are not sections, empty and absurd lists, a list
    that leaves nothing, and a value starting with "-" without the "="; each is one line before
    the run is read. A few lists that are fine write their page."""
    out = str(tmp / "report-sections.html")
    bad = {"unknown": "headline,timming", "empty": "", "empty-item": "headline,,curves",
           "only-comma": ",", "only-dash": "-", "nothing-left": "-all",
           "nothing-left-2": "curves,-curves", "unicode": "k\u00f6pfe,\u2192", "spaces": "  ",
           "huge": "x" * 100_000, "many": ",".join(["headline"] * 10_000 + ["nope"]),
           "nul-like": "headline\x01", "path": "../../etc/passwd"}
    for label, spec in bad.items():
        yield "report", f"sections-{label}", ["report", str(good), "-o", out, "--no-progress",
                                              f"--sections={spec}"]
    yield "report", "sections-dash-without-equals", ["report", str(good), "-o", out,
                                                     "--sections", "-timing"]
    yield "report", "sections-unknown-missing-run", ["report", str(tmp / "no-such-run"),
                                                     "--sections", "nope"]
    for label, spec in {"headline": "headline", "all-but": "all,-timing,-maps,-evaluation",
                        "case": "HEADLINE, Curves"}.items():
        yield "report", f"sections-ok-{label}", ["report", str(good), "-o", out,
                                                 "--no-progress", f"--sections={spec}"]
def lr_find_cases(tmp: Path, good: Path):
    """`cnnkit lr-find` and `train --lr find`: bad ranges, too little data, a plot or JSON path
    that exists (a user's file, a folder, a FIFO, a dangling link, a device), bad data and
    nets, and data-parallel ranks."""
    import os

    quick = ["--limit", "300", "--batch-size", "32", "--iterations", "20", "--no-progress"]
    for value in NUMBERS:
        for option in ("--start", "--end", "--iterations"):
            yield "lr-find", f"{option}={value}", ["lr-find", option, value, *quick]
    for start, end in (("1", "0.1"), ("0.1", "0.1"), ("1e-300", "1e300"), ("1e-7", "1e-6")):
        yield "lr-find", f"range={start}:{end}", ["lr-find", *quick, "--start", start,
                                                  "--end", end]
    yield "lr-find", "huge-iterations", ["lr-find", *quick, "--iterations", "100001"]
    yield "lr-find", "too-little-data", ["lr-find", "--limit", "20", "--no-progress"]
    yield "lr-find", "train-too-little-data", ["train", "--lr", "find", "--limit", "20",
                                               "--no-progress", "--out", str(tmp / "lr-runs")]
    for value in ("fnd", "FIND", "find:3", "-find"):
        yield "lr-find", f"train--lr={value}", ["train", "--lr", value, "--limit", "20",
                                                "--no-progress", "--out", str(tmp / "lr-runs")]
    paths = tmp / "lr-find"
    paths.mkdir(exist_ok=True)
    mine = paths / "mine.png"
    mine.write_bytes(b"the user's own file")
    folder = paths / "folder"
    folder.mkdir(exist_ok=True)
    fifo = paths / "fifo.png"
    if not fifo.exists():
        os.mkfifo(fifo)
    dangling = paths / "dangling.png"
    if not dangling.is_symlink():
        dangling.symlink_to(paths / "nowhere.png")
    for name, path in (("existing-file", mine), ("folder", folder), ("fifo", fifo),
                       ("dangling-link", dangling), ("device", Path("/dev/null")),
                       ("inside-a-file", mine / "x.png")):
        for option in ("--plot", "--json"):
            yield "lr-find", f"{option}-{name}", ["lr-find", *quick, option, str(path)]
    yield "lr-find", "same-plot-and-json", ["lr-find", *quick, "--plot", str(paths / "a"),
                                            "--json", str(paths / "a")]
    yield "lr-find", "missing-folder", ["lr-find", "--data", f"folder:{tmp / 'no-such'}",
                                        "--no-progress"]
    yield "lr-find", "huge-net", ["lr-find", *quick, "--model", SPECS["huge-fc-train"]]
    yield "lr-find", "bad-spec", ["lr-find", *quick, "--model", SPECS["unbalanced"]]
    yield "lr-find", "weights-of-another-net", ["lr-find", *quick, "--model", "resnet20",
                                                "--weights", str(good)]
    yield "lr-find", "resume", ["lr-find", *quick, "--resume", str(good)]
    yield "lr-find", "workers-lr-find", ["train", "--workers", "2", "--lr", "find", "--limit",
                                         "200", "--batch-size", "32", "--epochs", "1",
                                         "--no-progress", "--layer-stats", "0", "--out",
                                         str(tmp / "lr-runs")]
def outputs_cases(tmp: Path, good: Path):
    """Machine-readable outputs and nets named by path: predict over folders (a FIFO with an
    image's name inside one, a FIFO with another name, only non-images, a link that loops,
    a broken image, a bad --format), evaluate --json on data of other or fewer classes,
    import --classes and --classes-file (a huge file, newline, NUL, not UTF-8, a FIFO, a
    device), time and gradcheck on a run folder and on files that are no checkpoint."""
    import contextlib
    import os

    from cnnkit.cli import main

    root = tmp / "outputs"
    model = str(good / "model.npz")
    images = root / "images"
    images.mkdir(parents=True)
    for i in range(3):
        Image.new("L", (17 + i, 23), 40 * i).save(images / f"d{i}.png")
    (images / "notes.txt").write_text("not an image")
    os.mkfifo(images / "queue")                       # passed over, never opened
    (images / "sub").mkdir()
    (images / "sub" / "loop").symlink_to(images)      # not followed with --recursive
    fifo_folder = root / "fifo-image"
    fifo_folder.mkdir()
    Image.new("L", (28, 28)).save(fifo_folder / "a.png")
    os.mkfifo(fifo_folder / "b.png")                  # an image's name: refused, never opened
    text_only = root / "text-only"
    text_only.mkdir()
    for name in ("a.txt", "b.csv", ".hidden.png"):
        (text_only / name).write_text("x")
    broken = root / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    for fmt in ("text", "json", "csv"):
        yield "outputs", f"predict-folder/{fmt}", ["predict", model, str(images), "--format",
                                                   fmt, "--recursive"]
        yield "outputs", f"predict-fifo-in-folder/{fmt}", ["predict", model, str(fifo_folder),
                                                           "--format", fmt]
        yield "outputs", f"predict-broken/{fmt}", ["predict", model, str(broken), "--format",
                                                   fmt]
    yield "outputs", "predict-only-non-images", ["predict", model, str(text_only)]
    yield "outputs", "predict-empty-folder-name", ["predict", model, ""]
    yield "outputs", "predict-format-bad", ["predict", model, str(images), "--format", "xml"]
    yield "outputs", "predict-format-empty", ["predict", model, str(images), "--format", ""]

    x = np.random.default_rng(0).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    for name, classes in (("fewer", ["3", "7"]), ("unknown", ["3", "cat"]),
                          ("newline", ["3", "7\n8"]), ("many", [str(i) for i in range(12)])):
        np.savez(root / f"{name}.npz", x=x, y=np.arange(12) % 2 if name != "many"
                 else np.arange(12), classes=np.array(classes))
        yield "outputs", f"evaluate-json/{name}", ["evaluate", model, "--data",
                                                   f"npz:{root / f'{name}.npz'}", "--json",
                                                   "--split", "all"]

    weights = root / "w.safetensors"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["export", model, "-o", str(weights)]) == 0
    imported = ["import", str(weights), "--model", "lenet-bn", "--overwrite", "-o",
                str(root / "imported.npz")]
    files = {"huge": b"c\n" * 2_000_000, "nul": b"0\n1\n2\n3\n4\n5\n6\n7\n8\n9\x00\n",
             "latin1": "0\n1\n2\n3\n4\n5\n6\n7\n8\nneuf\xe9\n".encode("latin-1"),
             "empty": b"", "blank-lines": b"\n" * 10, "ten": "".join(
                 f"ç{i}\n" for i in range(10)).encode()}
    for name, content in files.items():
        (root / f"{name}.txt").write_bytes(content)
        yield "outputs", f"import-classes-file/{name}", [*imported, "--classes-file",
                                                         str(root / f"{name}.txt")]
    with open(root / "sparse.txt", "wb") as handle:      # 1 GiB that occupies no disk
        handle.truncate(2**30)
    yield "outputs", "import-classes-file/sparse-1GiB", [*imported, "--classes-file",
                                                         str(root / "sparse.txt")]
    os.mkfifo(root / "classes-fifo")
    yield "outputs", "import-classes-file/fifo", [*imported, "--classes-file",
                                                  str(root / "classes-fifo")]
    yield "outputs", "import-classes-file/dev-zero", [*imported, "--classes-file", "/dev/zero"]
    for name, text in (("newline", "0,1,2,3,4,5,6,7,8,9\nx"), ("too-few", "a,b"),
                       ("duplicate", "a,b,c,d,e,f,g,h,i,a"), ("empty", ""),
                       ("commas", ","  * 9), ("long", ",".join("n" * 10_000 + str(i)
                                                               for i in range(10)))):
        yield "outputs", f"import-classes/{name}", [*imported, "--classes", text]

    (root / "not-a-checkpoint.npz").write_bytes(b"PK\x03\x04 no zip")
    for command in (["time"], ["gradcheck", "--model"]):
        for name, path in (("run-folder", good), ("folder", root), ("text", images / "notes.txt"),
                           ("bad-npz", root / "not-a-checkpoint.npz"),
                           ("fifo", images / "queue")):
            yield "outputs", f"{command[0]}/{name}", [*command, str(path)]
    yield "outputs", "time/checkpoint", ["time", str(good / "checkpoint.npz"), "--batch", "2",
                                         "--iterations", "1"]
    yield "outputs", "gradcheck/checkpoint", ["gradcheck", "--model", model, "--num-checks",
                                              "2", "--batch", "2"]


def build_cases(tmp: Path) -> list[tuple[str, str, list[str]]]:
    from cnnkit.cli import main

    good = tmp / "good"
    assert main(["train", "--limit", "60", "--epochs", "1", "--no-progress", "--out",
                 str(good), "--name", "r", "--batch-size", "30"]) == 0
    return list(itertools.chain(spec_cases(), option_cases(),
                                checkpoint_cases(tmp, good / "r" / "checkpoint.npz"),
                                npz_cases(tmp), cifar_cases(tmp), folder_cases(tmp),
                                image_cases(tmp), run_cases(tmp),
                                weights_cases(tmp, good / "r" / "model.npz"),
                                distributed_cases(tmp, good / "r" / "checkpoint.npz"),
                                run_folder_cases(tmp, good / "r"),
                                special_file_cases(tmp, good / "r"),
                                nonfinite_cases(tmp, good / "r"), text_cases(tmp, good / "r"),
                                onnx_cases(tmp, good / "r" / "model.npz"),
                                compare_cases(tmp, good / "r"), logs_cases(tmp, good / "r"),
                                report_cases(tmp, good / "r"),
                                lr_find_cases(tmp, good / "r" / "model.npz"),
                                outputs_cases(tmp, good / "r")))
