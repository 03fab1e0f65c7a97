"""cnnkit.tensorboard: the event files read back by an independent reader, the ``tensorboard``
package's (its CRC-32C, its ``Event`` protocol buffer class, its EventAccumulator), every value
against the Trainer's own; a resumed run's files; names never reused; folders it cannot write."""

import io
import os
import struct

import numpy as np
import pytest

from cnnkit import nn, optim
from cnnkit.errors import CnnkitError
from cnnkit.tensorboard import EventWriter, TensorBoard, _masked, check_log_dir, crc32c, png
from cnnkit.train import Trainer

pb = pytest.importorskip("tensorboard.compat.proto.event_pb2",
                         reason="the tensorboard package (the test extra) reads the files back")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c  # noqa: E402

Image = pytest.importorskip("PIL.Image")


def read_events(folder) -> list:
    """Every record of every event file in ``folder``, CRCs checked, as ``Event`` messages."""
    events = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            header = data[at:at + 8]
            (length,) = struct.unpack("<Q", header)
            (crc,) = struct.unpack("<I", data[at + 8:at + 12])
            assert crc == masked_crc32c(header)
            body = data[at + 12:at + 12 + length]
            assert struct.unpack("<I", data[at + 12 + length:at + 16 + length])[0] \
                == masked_crc32c(body)
            events.append(pb.Event.FromString(body))
            at += 16 + length
    return events


def values(events, tag) -> list:
    return [(e.step, v) for e in events for v in e.summary.value if v.tag == tag]


def _net(rng):
    return nn.Sequential(nn.Conv2d(3, 5, (3, 2), rng=rng), nn.ReLU(), nn.Flatten(),
                         nn.Linear(5 * 7 * 6, 4, rng=rng))


def _data():
    rng = np.random.default_rng(3)
    return rng.standard_normal((45, 3, 9, 7)).astype(np.float32), rng.integers(0, 4, 45)


def _trainer(rng, callbacks, epochs=3, checkpoint=None):
    model = _net(rng)
    return Trainer(model, optim.SGD(model.named_parameters(), lr=0.1, momentum=0.9),
                   batch_size=16, epochs=epochs, progress=False, log=None, restore_best=False,
                   callbacks=callbacks, checkpoint=checkpoint, scheduler=None)


def test_crc32c_and_its_mask_are_the_formats():
    assert crc32c(b"") == 0 and crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA                    # RFC 3720's test vector
    rng = np.random.default_rng(0)
    for n in (1, 7, 100, 1000):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert struct.unpack("<I", _masked(data))[0] == masked_crc32c(data)


def test_png_decodes_to_its_pixels():
    rng = np.random.default_rng(1)
    for shape in ((5, 7), (4, 9, 3)):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png(pixels)))), pixels)


def test_a_run_reads_back_as_the_trainer_saw_it(tmp_path):
    x, y = _data()
    board = TensorBoard(tmp_path / "tb", histogram_freq=2)
    trainer = _trainer(np.random.default_rng(0), [board])
    history = trainer.fit((x, y), (x[:20], y[:20]))
    assert board.train is None                  # closed at the end
    train = read_events(tmp_path / "tb" / "train")
    val = read_events(tmp_path / "tb" / "validation")
    assert train[0].file_version == val[0].file_version == "brain.Event:2"
    f32 = [float(np.float32(v)) for v in history["batch_loss"]]
    assert [(s, v.simple_value) for s, v in values(train, "batch_loss")] == \
        list(zip(range(1, 10), f32))
    ends = history["iterations"]
    assert ends == [3, 6, 9]
    for tag, key, events in (("epoch_loss", "train_loss", train), ("epoch_accuracy", "train_acc",
                             train), ("learning_rate", "lr", train), ("epoch_loss", "val_loss",
                             val), ("epoch_accuracy", "val_acc", val)):
        assert [(s, v.simple_value) for s, v in values(events, tag)] == \
            [(s, float(np.float32(v))) for s, v in zip(ends, history[key])], tag
    # histograms every second epoch: at iteration 6, of the weights of then (the last = now)
    weights = values(train, "weights/3.weight")
    assert [s for s, _ in weights] == [6]
    grads = values(train, "gradients/0.weight")
    assert [s for s, _ in grads] == [6]
    histo = weights[0][1].histo
    model = _trainer(np.random.default_rng(0), [], epochs=2)
    model.fit((x, y), (x[:20], y[:20]))
    w = model.model.state_dict()["3.weight"].astype(np.float64).ravel()
    counts, edges = np.histogram(w, bins=30)
    assert (histo.min, histo.max, histo.num) == (w.min(), w.max(), w.size)
    assert histo.sum == pytest.approx(w.sum(), rel=1e-12, abs=1e-12)
    assert histo.sum_squares == pytest.approx(np.dot(w, w), rel=1e-12)
    assert list(histo.bucket_limit) == list(edges[1:]) and list(histo.bucket) == list(counts)
    # images: the filters each epoch (5 filters of 3x(3x2) as RGB tiles, 8 times larger), the
    # first batch once (16 images of 9x7, each scaled to 0..255 on its own)
    filters = values(train, "filters")
    assert [s for s, _ in filters] == [3, 6, 9]
    image = filters[-1][1].image
    pixels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)))
    assert pixels.shape == (image.height, image.width, 3) == (2 * 25 + 1, 3 * 17 + 1, 3)
    w = trainer.model.state_dict()["0.weight"]
    scaled = (w - w.min()) / (w.max() - w.min()) * 255
    tile = scaled[4].transpose(1, 2, 0).repeat(8, axis=0).repeat(8, axis=1)
    np.testing.assert_array_equal(pixels[26:50, 18:34], np.round(tile).astype(np.uint8))
    [(step, first)] = values(train, "first_batch")
    assert step == 1
    batch = np.asarray(Image.open(io.BytesIO(first.image.encoded_image_string)))
    assert batch.shape == (4 * 10 + 1, 4 * 8 + 1, 3)
    # TensorBoard's own reader sees the same
    acc = EventAccumulator(str(tmp_path / "tb" / "train"),
                           size_guidance={"scalars": 0, "images": 0, "histograms": 0}).Reload()
    assert set(acc.Tags()["scalars"]) == {"batch_loss", "batch_accuracy", "epoch_loss",
                                          "epoch_accuracy", "learning_rate", "epoch_seconds"}
    assert [e.value for e in acc.Scalars("batch_loss")] == f32
    assert set(acc.Tags()["images"]) == {"filters", "first_batch"}
    assert len(acc.Tags()["histograms"]) == 8


def test_a_resumed_run_continues_the_curves_without_duplicates(tmp_path):
    """Stopped after epoch 2 of 3 with the events of epoch 3's batches already written (a
    crash after the checkpoint), the resumed run's new file starts a session at iteration 7:
    TensorBoard shows each step once, the resumed run's values."""
    x, y = _data()
    ckpt = tmp_path / "c.npz"
    whole = _trainer(np.random.default_rng(0), [TensorBoard(tmp_path / "whole")])
    whole.fit((x, y), (x[:20], y[:20]))

    first = _trainer(np.random.default_rng(0), [TensorBoard(tmp_path / "tb")], checkpoint=ckpt,
                     epochs=2)
    first.fit((x, y), (x[:20], y[:20]))
    stale = EventWriter(tmp_path / "tb" / "train")          # what a crash left after it
    for step in (7, 8):
        stale.scalar("batch_loss", 99.0, step)
    stale.close()
    resumed = _trainer(np.random.default_rng(0), [TensorBoard(tmp_path / "tb")])
    resumed.resume(ckpt)
    resumed.fit((x, y), (x[:20], y[:20]))
    names = sorted(os.listdir(tmp_path / "tb" / "train"))
    assert len(names) == 3 and len(set(names)) == 3
    acc = EventAccumulator(str(tmp_path / "tb" / "train")).Reload()
    ref = EventAccumulator(str(tmp_path / "whole" / "train")).Reload()
    for tag in ("batch_loss", "epoch_loss"):
        assert [(e.step, e.value) for e in acc.Scalars(tag)] == \
            [(e.step, e.value) for e in ref.Scalars(tag)], tag


def test_event_files_are_never_reused_and_bad_folders_are_one_line(tmp_path):
    a, b = EventWriter(tmp_path), EventWriter(tmp_path)
    assert a.path != b.path and a.path.name.startswith("events.out.tfevents.")
    assert f".{os.getpid()}." in a.path.name
    a.close(), b.close()
    (tmp_path / "file").write_text("mine")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for where in (tmp_path / "file", tmp_path / "file" / "below", fifo):
        with pytest.raises(CnnkitError, match="cannot write TensorBoard logs in") as info:
            EventWriter(where)
        assert "\n" not in str(info.value)
    assert (tmp_path / "file").read_text() == "mine"
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(CnnkitError, match="Permission denied"):
            EventWriter(locked)
    for bad in ({"histogram_freq": -1}, {"histogram_freq": True}, {"update_freq": "step"},
                {"log_dir": ""}):
        with pytest.raises(ValueError, match="TensorBoard"):
            TensorBoard(**{"log_dir": tmp_path, **bad})


def test_fit_writes_tensorboard_logs_as_a_session_setting(tmp_path):
    """``cnnkit.fit(tensorboard=DIR)`` (``--tensorboard DIR``): the events of the run, the
    folder not recorded in the checkpoint; a resumed run given the folder adds files to it and
    the curves run on without a repeated step."""
    import cnnkit
    from cnnkit.io import load_checkpoint

    rng = np.random.default_rng(4)
    x, y = rng.random((90, 6, 5)), rng.integers(0, 3, 90)
    run = cnnkit.fit((x, y), "FC-3", epochs=2, batch_size=20, val_size=10, test_size=None,
                     progress=False, out=tmp_path, name="r", tensorboard=tmp_path / "tb")
    settings = load_checkpoint(tmp_path / "r" / "checkpoint.npz").extra["metadata"]["settings"]
    assert "tensorboard" not in settings and "out" not in settings
    train = read_events(tmp_path / "tb" / "train")
    assert [s for s, _ in values(train, "batch_loss")] == list(range(1, 9))
    assert [(s, v.simple_value) for s, v in values(read_events(tmp_path / "tb" / "validation"),
                                                  "epoch_accuracy")] == \
        [(s, float(np.float32(a))) for s, a in zip([4, 8], run.history["val_acc"])]
    assert [s for s, _ in values(train, "filters")] == []          # no convolution
    cnnkit.fit((x, y), resume=tmp_path / "r" / "checkpoint.npz", epochs=3, progress=False,
               tensorboard=tmp_path / "tb")
    assert len(list((tmp_path / "tb" / "train").iterdir())) == 2
    acc = EventAccumulator(str(tmp_path / "tb" / "train")).Reload()
    assert [e.step for e in acc.Scalars("batch_loss")] == list(range(1, 13))
    assert [e.step for e in acc.Scalars("epoch_loss")] == [4, 8, 12]


def test_train_refuses_a_tensorboard_folder_it_cannot_write_in_one_line(tmp_path):
    from tests.test_hostile import clean_error, cnnkit

    os.mkfifo(tmp_path / "fifo")
    code, _, err = cnnkit("train", "--limit", "20", "--epochs", "1", "--no-progress", "--out",
                          str(tmp_path / "runs"), "--tensorboard", str(tmp_path / "fifo"))
    clean_error(code, err, "cannot write TensorBoard logs in", "fifo")
    assert (tmp_path / "fifo").is_fifo()
    assert not (tmp_path / "runs").exists()        # refused before the run folder is claimed
    (tmp_path / "file").write_text("mine")
    for where, message in ((tmp_path / "file", "is a file"),
                           (tmp_path / "file" / "tb" / "x", "file is a file"),
                           (tmp_path / "fifo" / "tb", "fifo is not a folder")):
        with pytest.raises(CnnkitError, match=message) as info:
            check_log_dir(where)
        assert "\n" not in str(info.value)
    assert check_log_dir(tmp_path / "new" / "tb") == tmp_path / "new" / "tb"
    assert not (tmp_path / "new").exists()
    if os.geteuid() != 0:
        (tmp_path / "locked").mkdir(mode=0o500)
        with pytest.raises(CnnkitError, match="locked is not writable"):
            check_log_dir(tmp_path / "locked" / "tb")
