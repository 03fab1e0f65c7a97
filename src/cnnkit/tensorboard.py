"""TensorBoard event files, written with NumPy and the standard library alone.

``TensorBoard(log_dir)`` is a Trainer callback (Keras' name and layout): it writes
``log_dir/train`` and ``log_dir/validation`` event files, so that ``tensorboard --logdir
log_dir`` draws the training and validation curves of a tag on one chart:

- scalars: ``batch_loss`` and ``batch_accuracy`` of every mini-batch; ``epoch_loss`` and
  ``epoch_accuracy`` (train and validation), ``learning_rate`` and ``epoch_seconds`` of every
  epoch;
- histograms, every ``histogram_freq`` epochs: each parameter's values (``weights/0.weight``) and
  its gradient on the epoch's last mini-batch (``gradients/0.weight``);
- images (``write_images``): the first convolution's filters every epoch, and the first training
  batch as the net sees it (after preprocessing and augmentation), once.

Every value's step is the iteration (mini-batches trained in the run), so per-batch and
per-epoch charts share their x axis; a resumed run writes a new file beside the old ones, which
starts with a "session start" at its first step, so TensorBoard drops what the old files hold
from that step on (batches trained after the checkpoint the run resumed from).

The format, what TensorBoard and TensorFlow read: a file ``events.out.tfevents.TIME.HOST.PID.N``
(never one that exists) of records, each ``length`` (uint64, little-endian), the masked CRC-32C
of those 8 bytes (uint32), the data, the data's masked CRC-32C; the data is an ``Event``
protocol buffer: ``wall_time`` (field 1, double), ``step`` (2, int64), and one of
``file_version`` (3, the first record: "brain.Event:2"), ``summary`` (5) or ``session_log``
(7: status 1, START). A ``Summary`` holds ``Value`` s (1): ``tag`` (1) and ``simple_value`` (2,
float), ``image`` (4: height 1, width 2, colorspace 3, PNG bytes 4) or ``histo`` (5: min 1, max
2, num 3, sum 4, sum_squares 5, bucket_limit 6 and bucket 7, packed doubles). Protocol buffers'
wire format: each field is a key ``(number << 3) | type`` (varint) and a value: type 0 a varint,
1 eight bytes, 2 a varint length and that many bytes, 5 four bytes.
"""

from __future__ import annotations

import os
import socket
import struct
import time
import zlib
from itertools import count
from pathlib import Path

import numpy as np

from .callbacks import Callback
from .errors import CnnkitError, UsageError
from .viz._images import grid_shape, mosaic

__all__ = ["TensorBoard", "EventWriter", "check_log_dir", "crc32c", "png"]

_CRC_TABLE = []
for _byte in range(256):
    _crc = _byte
    for _ in range(8):       # the Castagnoli polynomial, reflected
        _crc = (_crc >> 1) ^ 0x82F63B78 if _crc & 1 else _crc >> 1
    _CRC_TABLE.append(_crc)


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``: ``crc32c(b"123456789") == 0xE3069283``."""
    crc, table = 0xFFFFFFFF, _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> bytes:
    """The masked CRC a TFRecord stores: rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _record(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + _masked(length) + data + _masked(data)


# ---------------------------------------------------------------------------- protocol buffers

def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1              # a negative int64 as two's complement
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _int(number: int, value: int) -> bytes:
    return _field(number, 0, _varint(int(value)))


def _double(number: int, value: float) -> bytes:
    return _field(number, 1, struct.pack("<d", value))


def _float(number: int, value: float) -> bytes:
    return _field(number, 5, struct.pack("<f", value))


def _bytes(number: int, value: bytes) -> bytes:
    return _field(number, 2, _varint(len(value)) + value)


def _doubles(number: int, values) -> bytes:
    return _bytes(number, np.asarray(values, dtype="<f8").tobytes())


def png(pixels: np.ndarray) -> bytes:
    """A PNG file of ``pixels``: uint8 (H, W) grey or (H, W, 3) RGB (zlib, no filter)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    colour = 2 if pixels.ndim == 3 else 0
    rows = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, -1)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))


# ---------------------------------------------------------------------------- the file

_FILE_NUMBER = count()


class EventWriter:
    """An event file of its own in ``folder`` (created if missing), written as it goes and
    flushed by :meth:`flush`; any OSError is a CnnkitError naming the folder.

    ``scalar(tag, value, step)``, ``histogram(tag, values, step, bins=30)``,
    ``image(tag, pixels, step)`` (uint8 (H, W) or (H, W, 3)), ``session_start(step)``."""

    def __init__(self, folder):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            while True:     # a new name: never another writer's file, never a link
                name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                        f"{os.getpid()}.{next(_FILE_NUMBER)}")
                try:
                    fd = os.open(self.folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                 | getattr(os, "O_NOFOLLOW", 0), 0o666)   # less the umask
                    break
                except FileExistsError:
                    continue
            self.path = self.folder / name
            self._file = os.fdopen(fd, "wb")
        except OSError as err:
            raise self._error(err) from None
        self._write(_bytes(3, b"brain.Event:2"), 0)

    def _error(self, err: OSError) -> CnnkitError:
        reason = err.strerror or str(err)
        return CnnkitError(f"cannot write TensorBoard logs in {self.folder}: {reason}")

    def _write(self, what: bytes, step: int) -> None:
        event = _double(1, time.time()) + _int(2, step) + what
        try:
            self._file.write(_record(event))
        except OSError as err:
            raise self._error(err) from None

    def _summary(self, tag: str, value: bytes, step: int) -> None:
        self._write(_bytes(5, _bytes(1, _bytes(1, tag.encode("utf-8")) + value)), step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """``value`` (stored as a float32, as TensorBoard's scalars are) under ``tag``."""
        self._summary(tag, _float(2, float(value)), step)

    def histogram(self, tag: str, values, step: int, bins: int = 30) -> None:
        """``values``' histogram in ``bins`` equal buckets from their min to their max (the
        non-finite ones left out)."""
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        counts, edges = np.histogram(values, bins=bins)
        histo = (_double(1, values.min()) + _double(2, values.max()) + _double(3, values.size)
                 + _double(4, values.sum()) + _double(5, np.square(values).sum())
                 + _doubles(6, edges[1:]) + _doubles(7, counts))
        self._summary(tag, _bytes(5, histo), step)

    def image(self, tag: str, pixels: np.ndarray, step: int) -> None:
        """``pixels``, uint8 (H, W) grey or (H, W, 3) RGB, as a PNG under ``tag``."""
        height, width = pixels.shape[:2]
        channels = pixels.shape[2] if pixels.ndim == 3 else 1
        image = _int(1, height) + _int(2, width) + _int(3, channels) + _bytes(4, png(pixels))
        self._summary(tag, _bytes(4, image), step)

    def session_start(self, step: int) -> None:
        """A "session start" at ``step``: TensorBoard drops the events at or after it that
        earlier files hold."""
        self._write(_bytes(7, _int(1, 1)), step)

    def flush(self) -> None:
        """Hand what was written to the operating system (TensorBoard then sees it)."""
        try:
            self._file.flush()
        except OSError as err:
            raise self._error(err) from None

    def close(self) -> None:
        """Flush and close the file (again: nothing)."""
        if not self._file.closed:
            try:
                self._file.close()
            except OSError as err:
                raise self._error(err) from None


def check_log_dir(folder) -> Path:
    """``folder`` when event files can be written there: a folder, or a path whose nearest
    existing ancestor is a folder this process may write in (the others are created); else a
    CnnkitError in one line, before anything is written (``cnnkit train`` checks
    ``--tensorboard`` before it opens the data)."""
    folder = Path(folder)
    if not str(folder):
        raise UsageError("the TensorBoard folder is empty: give the folder for the event files")
    there = folder
    while not os.path.lexists(there) and there != there.parent:
        there = there.parent
    if not there.is_dir():
        what = "a file" if there.is_file() else "not a folder"
        raise CnnkitError(f"cannot write TensorBoard logs in {folder}: {there} is {what}")
    if not os.access(there, os.W_OK | os.X_OK):
        raise CnnkitError(f"cannot write TensorBoard logs in {folder}: {there} is not "
                          f"writable")
    return folder


# ---------------------------------------------------------------------------- the callback

def _to_pixels(tiles: np.ndarray, scale: int = 1, per_tile: bool = False) -> np.ndarray:
    """(N, C, h, w) with C 1 or 3 as one uint8 image: the tiles in a near-square grid with a
    1-pixel border, each pixel repeated ``scale`` times; values min-max scaled to 0..255
    together, or each tile on its own (``per_tile``)."""
    tiles = np.asarray(tiles, dtype=np.float64)
    axes = (1, 2, 3) if per_tile else (0, 1, 2, 3)
    lo, hi = tiles.min(axis=axes, keepdims=True), tiles.max(axis=axes, keepdims=True)
    tiles = (tiles - lo) / np.where(hi > lo, hi - lo, 1.0)
    tiles = tiles.repeat(scale, axis=2).repeat(scale, axis=3)
    n, c = tiles.shape[:2]
    # (N, h, w) or (N, h, w, 3) as mosaic takes them; the border runs round the outside too
    tiles = tiles[:, 0] if c == 1 else tiles.transpose(0, 2, 3, 1)
    grid = mosaic(tiles, *grid_shape(n), fill=0.0)
    grid = np.pad(grid, [(1, 1), (1, 1)] + [(0, 0)] * (grid.ndim - 2))
    return np.round(grid * 255).astype(np.uint8)


def _as_tiles(x: np.ndarray) -> np.ndarray | None:
    """(N, C, h, w) with C 1 or 3 (other C: each channel a grey tile), or None."""
    if x.ndim != 4:
        return None
    return x if x.shape[1] in (1, 3) else x.reshape(-1, 1, *x.shape[2:])


class TensorBoard(Callback):
    """Writes TensorBoard event files of the training to ``log_dir/train`` and
    ``log_dir/validation`` (see the module docstring for what).

    Parameters
    ----------
    log_dir : the folder (created if missing); runs compared in TensorBoard are its subfolders
    histogram_freq : histograms of the weights and gradients every this many epochs; 0: none
    write_images : the first convolution's filters every epoch and the first training batch
    update_freq : "batch" (the default): the per-batch scalars too; "epoch": only per epoch
    """

    def __init__(self, log_dir, *, histogram_freq: int = 1, write_images: bool = True,
                 update_freq: str = "batch"):
        if isinstance(histogram_freq, bool) or not isinstance(histogram_freq, int) \
                or histogram_freq < 0:
            raise ValueError(f"TensorBoard histogram_freq must be an int >= 0, got "
                             f"{histogram_freq!r}")
        if update_freq not in ("batch", "epoch"):
            raise ValueError(f"TensorBoard update_freq must be 'batch' or 'epoch', got "
                             f"{update_freq!r}")
        if not str(log_dir):
            raise UsageError("TensorBoard log_dir is empty: give the folder for the event files")
        self.log_dir, self.histogram_freq = Path(log_dir), histogram_freq
        self.write_images, self.update_freq = bool(write_images), update_freq
        self.train = self.validation = None
        self._hook = None

    def on_train_begin(self, logs):
        self.close()
        self.train = EventWriter(self.log_dir / "train")
        self.validation = EventWriter(self.log_dir / "validation")
        step = self.trainer.iteration
        if step:                      # resumed: newer than what older files hold from here on
            for writer in (self.train, self.validation):
                writer.session_start(step + 1)
        elif self.write_images:
            self._hook = self.model.register_forward_hook(self._first_batch)

    def _first_batch(self, module, x, out):
        self._hook.remove()
        self._hook = None
        tiles = _as_tiles(np.asarray(x)[:16])
        if tiles is not None:
            self.train.image("first_batch", _to_pixels(tiles, per_tile=True), 1)

    def on_batch_end(self, batch, logs):
        if self.update_freq == "batch":
            self.train.scalar("batch_loss", logs["loss"], logs["iteration"])
            self.train.scalar("batch_accuracy", logs["acc"], logs["iteration"])

    def on_epoch_end(self, epoch, logs):
        step = self.trainer.iteration
        self.train.scalar("epoch_loss", logs["train_loss"], step)
        self.train.scalar("epoch_accuracy", logs["train_acc"], step)
        self.train.scalar("learning_rate", logs["lr"], step)
        self.train.scalar("epoch_seconds", logs["seconds"], step)
        if "val_loss" in logs:
            self.validation.scalar("epoch_loss", logs["val_loss"], step)
            self.validation.scalar("epoch_accuracy", logs["val_acc"], step)
        if self.histogram_freq and (epoch + 1) % self.histogram_freq == 0:
            for name, p in self.model.named_parameters():
                self.train.histogram(f"weights/{name}", p.data, step)
                if p.grad is not None:
                    self.train.histogram(f"gradients/{name}", p.grad, step)
        if self.write_images:
            first = next((p for name, p in self.model.named_parameters()
                          if name.endswith("weight") and p.data.ndim == 4), None)
            tiles = None if first is None else _as_tiles(first.data)
            if tiles is not None:
                scale = max(1, 24 // max(tiles.shape[2:]))
                self.train.image("filters", _to_pixels(tiles, scale), step)
        self.train.flush()
        self.validation.flush()

    def on_train_end(self, logs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.close()

    def close(self) -> None:
        """Flush and close the event files (``on_train_end`` does)."""
        for writer in (self.train, self.validation):
            if writer is not None:
                writer.close()
        self.train = self.validation = None

    def __repr__(self):
        return f"TensorBoard({str(self.log_dir)!r})"
