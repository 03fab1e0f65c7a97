"""Special files: only regular files are read as data, images, checkpoints or weights, and only
regular files are replaced by writes (cnnkit.files, and cnnkit._atomic.atomic_path which every
write goes through).

FIFOs are made with os.mkfifo inside tmp_path. A device node is read from /dev/null and
/dev/zero (reading is harmless), but never written to: writes aim at a link to /dev/null inside
tmp_path, or, as root, at a character device node made inside tmp_path (/dev/null's numbers), so
that a broken check replaces a node of the test's own and never a real device.

Every reader is called with ``open`` watched: a FIFO opened for reading would hang the test, so
the watch raises at the open instead, and the test fails rather than hangs.
"""

from __future__ import annotations

import builtins
import importlib.util
import io
import os
import socket
import stat
from pathlib import Path

import numpy as np
import pytest

from cnnkit._atomic import atomic_path, atomic_write_bytes, atomic_write_text
from cnnkit._npz import npz_headers, read_npz
from cnnkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cnnkit.data import DataError
from cnnkit.data.cifar import load_cifar10, read_cifar10_binary, read_cifar10_python
from cnnkit.data.idx import read_idx, write_idx
from cnnkit.data.images import decode_image
from cnnkit.data.mnist import load_mnist
from cnnkit.data.npz import load_npz
from cnnkit.errors import CnnkitError
from cnnkit.export import to_onnx
from cnnkit.files import (NotRegularFile, check_output_path, file_kind, is_regular_file,
                          regular_file, shown)
from cnnkit.models import convnet_check
from cnnkit.weights import WeightsError, load_torch_state_dict, read_weights
from cnnkit.weights.safetensors import read_safetensors, write_safetensors

ROOT = os.geteuid() == 0


class Opened(BaseException):
    """A watched path was opened: what would have hung on a FIFO (a BaseException, so that no
    reader's ``except Exception`` turns it into an ordinary refusal)."""


@pytest.fixture
def watch(monkeypatch):
    """``watch(path)``: from now on, opening ``path`` (by any name that resolves to it) raises
    :class:`Opened` instead of blocking."""
    watched = set()

    def guard(opener):
        def opened(file, *args, **kwargs):
            if isinstance(file, (str, bytes, os.PathLike)) and \
                    os.path.realpath(os.fsdecode(file)) in watched:
                raise Opened(os.fsdecode(file))
            return opener(file, *args, **kwargs)
        return opened

    monkeypatch.setattr(builtins, "open", guard(builtins.open))
    monkeypatch.setattr(io, "open", guard(io.open))
    monkeypatch.setattr(os, "open", guard(os.open))

    def add(path):
        watched.add(os.path.realpath(path))
        return Path(path)
    return add


def fifo(path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def unix_socket(folder: Path) -> Path:
    """A socket file in ``folder`` (its own short path: a socket's name has a ~100-byte limit)."""
    path = folder / "s.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    here = os.getcwd()
    try:
        os.chdir(folder)
        sock.bind("s.sock")
    finally:
        os.chdir(here)
    sock.close()      # the file stays
    return path


def device_node(folder: Path) -> Path:
    """A character device node of the test's own, with /dev/null's numbers (root only)."""
    path = folder / "null-node"
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


def one_line(err: BaseException, *fragments: str) -> str:
    message = str(err)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# ---------------------------------------------------------------------------- the checks

def test_regular_file_names_each_kind_without_opening_it(tmp_path, watch):
    good = tmp_path / "good.png"
    good.write_bytes(b"x")
    assert regular_file(good, "image") == good and is_regular_file(good)
    (tmp_path / "folder").mkdir()
    kinds = {"FIFO (named pipe)": watch(fifo(tmp_path / "zz.png")),
             "a folder": tmp_path / "folder",
             "a socket": unix_socket(tmp_path),
             "a character device": Path("/dev/null")}
    link = tmp_path / "link.png"
    link.symlink_to(kinds["FIFO (named pipe)"])
    kinds["a link to a FIFO"] = watch(link)
    for kind, path in kinds.items():
        assert not is_regular_file(path)
        with pytest.raises(NotRegularFile) as info:
            regular_file(path, "image")
        one_line(info.value, f"cannot read image {path}: it is ", kind, "not a file")
        assert isinstance(info.value, (CnnkitError, OSError)) and info.value.path == path
    with pytest.raises(FileNotFoundError, match="image not found: .*none.png"):
        regular_file(tmp_path / "none.png", "image")


def test_regular_file_raises_the_readers_own_class(tmp_path):
    path = fifo(tmp_path / "c.npz")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*c.npz: it is a FIFO") \
            as info:
        regular_file(path, "checkpoint", error=CheckpointError)
    assert info.value.path == path
    with pytest.raises(WeightsError, match="^weights file not found: "):
        regular_file(tmp_path / "none.pt", "weights file", error=WeightsError)


def test_messages_stay_on_one_line_whatever_the_name(tmp_path):
    path = fifo(tmp_path / "a\nb\tc.png")
    with pytest.raises(NotRegularFile) as info:
        regular_file(path, "image")
    one_line(info.value, "a\\nb\\tc.png")
    assert shown(Path("x\ny")) == "x\\ny" and file_kind(stat.S_IFREG) == "a regular file"


def test_check_output_path_passes_new_and_regular_files_only(tmp_path):
    assert check_output_path(tmp_path / "new.onnx") == tmp_path / "new.onnx"
    (tmp_path / "old.onnx").write_bytes(b"old")
    assert check_output_path(tmp_path / "old.onnx") == tmp_path / "old.onnx"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert check_output_path(tmp_path / "dangling") == tmp_path / "dangling"
    # a folder on the way is a file: left to the writer, which fails on it
    assert check_output_path(tmp_path / "old.onnx" / "x") == tmp_path / "old.onnx" / "x"
    with pytest.raises(NotRegularFile) as info:
        check_output_path(fifo(tmp_path / "out.onnx"))
    one_line(info.value, f"cannot write {tmp_path / 'out.onnx'}: it is a FIFO",
             "replaces only files")


# ---------------------------------------------------------------------------- writes

def _targets(tmp_path: Path) -> dict:
    """Things that are not regular files, to write to: the real devices only through a link."""
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-folder" / "mine.txt").write_text("kept")
    (tmp_path / "to-null").symlink_to("/dev/null")
    targets = {"FIFO": fifo(tmp_path / "out.fifo"), "link to /dev/null": tmp_path / "to-null",
               "folder": tmp_path / "a-folder", "socket": unix_socket(tmp_path)}
    if Path("/dev/full").exists():
        (tmp_path / "to-full").symlink_to("/dev/full")
        targets["link to /dev/full"] = tmp_path / "to-full"
    if ROOT:
        targets["device node"] = device_node(tmp_path)
    return targets


def _snapshot(folder: Path) -> dict:
    """Every name in ``folder`` with its lstat kind and, for a link, its target."""
    out = {}
    for entry in sorted(folder.iterdir()):
        mode = os.lstat(entry).st_mode
        out[entry.name] = (stat.S_IFMT(mode), os.readlink(entry) if entry.is_symlink() else None)
    return out


def test_atomic_writes_refuse_every_special_target_before_writing(tmp_path):
    targets = _targets(tmp_path)
    before = _snapshot(tmp_path)
    for kind, target in targets.items():
        calls = []
        with pytest.raises(NotRegularFile) as info:
            atomic_write_bytes(target, calls.append)
        one_line(info.value, f"cannot write {target}: it is ", "replaces only files")
        assert calls == [], f"{kind}: the writer ran before the refusal"
        with pytest.raises(NotRegularFile):
            with atomic_path(target):
                raise AssertionError(f"{kind}: atomic_path yielded")
    assert _snapshot(tmp_path) == before      # every target as it was, no temporary left
    assert (tmp_path / "a-folder" / "mine.txt").read_text() == "kept"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    if Path("/dev/full").exists():
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_a_special_file_that_appears_during_the_write_is_not_replaced(tmp_path):
    target = tmp_path / "history.json"

    def write(f):
        f.write(b"{}")
        os.mkfifo(target)          # another process made a FIFO there meanwhile

    with pytest.raises(NotRegularFile, match="it is a FIFO"):
        atomic_write_bytes(target, write)
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json"]


def test_a_regular_file_and_a_link_to_one_are_still_replaced(tmp_path):
    (tmp_path / "old.json").write_text("old")
    atomic_write_text(tmp_path / "old.json", "new")
    assert (tmp_path / "old.json").read_text() == "new"
    (tmp_path / "target.json").write_text("target")
    (tmp_path / "link.json").symlink_to(tmp_path / "target.json")
    atomic_write_text(tmp_path / "link.json", "new")     # the link is replaced, not its target
    assert (tmp_path / "target.json").read_text() == "target"
    assert not (tmp_path / "link.json").is_symlink()


def _writers(rng) -> dict:
    """name -> write(path), one for each kind of file cnnkit writes (ONNX where onnx is here)."""
    model = convnet_check(rng=rng)
    writers = {"atomic_write_text": lambda path: atomic_write_text(path, "{}"),
               "save_checkpoint": lambda path: save_checkpoint(path, model),
               "write_idx": lambda path: write_idx(path, np.zeros((3, 5), np.uint8)),
               "write_safetensors": lambda path: write_safetensors(path, {"w": np.ones(3)})}
    if importlib.util.find_spec("onnx") is not None:
        writers["to_onnx"] = lambda path: to_onnx(model, (1, 8, 8), path)
    return writers


def test_every_writer_goes_through_the_check(tmp_path, rng):
    writers = _writers(rng)
    for name, write in writers.items():
        target = fifo(tmp_path / f"{name}.out")
        with pytest.raises(NotRegularFile, match="it is a FIFO"):
            write(target)
        assert stat.S_ISFIFO(os.lstat(target).st_mode), name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.out" for n in writers)


# ---------------------------------------------------------------------------- reads

# name -> (read(path), the error class its callers catch)
READERS = {
    "decode_image": (lambda p: decode_image(p, 1, (5, 7)), NotRegularFile),
    "load_npz": (load_npz, NotRegularFile),
    "npz_headers": (npz_headers, ValueError),
    "read_npz": (read_npz, ValueError),
    "load_checkpoint": (load_checkpoint, CheckpointError),
    "read_idx": (read_idx, NotRegularFile),
    "read_cifar10_binary": (read_cifar10_binary, NotRegularFile),
    "read_cifar10_python": (read_cifar10_python, NotRegularFile),
    "read_weights": (read_weights, WeightsError),
    "read_safetensors": (read_safetensors, WeightsError),
    "load_torch_state_dict": (load_torch_state_dict, WeightsError),
}


@pytest.mark.parametrize("name", list(READERS))
def test_every_reader_refuses_a_fifo_and_a_device_without_opening_them(tmp_path, watch, name):
    read, error = READERS[name]
    for path in (watch(fifo(tmp_path / "zz.png")), watch("/dev/zero")):
        with pytest.raises(error) as info:
            read(path)
        assert isinstance(info.value, CnnkitError)
        one_line(info.value, str(path), "FIFO" if path.name == "zz.png" else "device",
                 "not a file")


def test_dataset_folders_with_a_fifo_in_them_are_refused_by_name(tmp_path, watch):
    cifar = tmp_path / "cifar" / "cifar-10-batches-bin"
    batch = watch(fifo(cifar / "data_batch_1.bin"))
    with pytest.raises(NotRegularFile) as info:
        load_cifar10(tmp_path / "cifar")
    one_line(info.value, f"CIFAR-10 batch {batch}: it is a FIFO")
    images = watch(fifo(tmp_path / "mnist" / "train-images-idx3-ubyte.gz"))
    with pytest.raises(NotRegularFile) as info:
        load_mnist(root=tmp_path / "mnist", verify=False)
    one_line(info.value, f"MNIST file {images}: it is a FIFO")


def test_a_run_folder_whose_model_is_a_fifo_is_refused_not_replaced_by_its_checkpoint(
        tmp_path, watch, rng):
    from cnnkit.app.run import load_run

    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "checkpoint.npz", convnet_check(rng=rng))
    watch(fifo(run / "model.npz"))
    with pytest.raises(CheckpointError) as info:
        load_run(run)
    one_line(info.value, f"cannot read checkpoint {run / 'model.npz'}: it is a FIFO")


def test_a_lone_npy_is_named_from_its_first_bytes(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros((3, 2)))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    with pytest.raises(DataError, match="a single array"):
        load_npz(tmp_path / "one.npz")
    with pytest.raises(CheckpointError, match=r"a single array \(.npy\)"):
        load_checkpoint(tmp_path / "one.npz")


def test_import_names_a_fifo_output_rather_than_asking_for_overwrite(tmp_path, capsys):
    from cnnkit.cli import main

    (tmp_path / "w.pt").write_bytes(b"not read: the output is refused first")
    out = fifo(tmp_path / "o.npz")
    code = main(["import", str(tmp_path / "w.pt"), "--model", "lenet-bn", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and f"cannot write {out}: it is a FIFO" in err and "--overwrite" not in err
    assert stat.S_ISFIFO(os.lstat(out).st_mode)
