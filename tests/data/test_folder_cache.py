"""The folder source's cache as trusted storage (cnnkit.data.cache), and the folder scan on a
shared machine.

- What is read back is what this user decoded: files of other owners, files others may write,
  links and FIFOs at a cache name are passed over; rows changed after the write are caught by
  the record's digests; every component of the key invalidates the cache on its own.
- Writing allocates first: a cache without room is one error naming it and the bytes needed
  (a fallocate that fails; a real 1 MiB tmpfs, as root; two processes sharing it), and the
  temporaries of dead writers are removed and named, nobody else's files.
- The scan: FIFOs, sockets, devices and dangling links named like images are refused or skipped
  without being opened; linked class folders are noted; one large image does not size the cache.

Every test has its own cache folder (``CNNKIT_CACHE`` under ``tmp_path``).
"""

import errno
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

from cnnkit.data import DataError, cache, folder, open_source
from cnnkit.errors import UsageError

ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every test's folder cache lives in its own tmp_path."""
    path = tmp_path / "cache"
    monkeypatch.setenv("CNNKIT_CACHE", str(path))
    return path


def _folder(root, rng, counts=None, size=(6, 5)):
    """root/CLASS/NNN.png, random grey images of ``size`` (H, W); returns (N, 1, H, W) in the
    folder source's order."""
    images = []
    for name, n in sorted((counts or {"a": 3, "b": 2}).items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 256, size, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
            images.append(pixels[None])
    return np.stack(images)


def _open(root, **options):
    return open_source(f"folder:{root}", **options)


def _all(dataset):
    return dataset.split("all").images[:]


def _files(cache_dir, suffix):
    return sorted(p for p in cache_dir.iterdir() if p.name.endswith(suffix)
                  and not p.name.startswith("."))


def _decoded(dataset):
    return any(note.startswith("decoded") for note in dataset.notes)


class Hung(BaseException):
    """Raised by :func:`within`; no ``except OSError`` (or Exception) on the way swallows it."""


@contextmanager
def within(seconds):
    """Fail, rather than hang, when the block runs longer than ``seconds`` (SIGALRM interrupts
    a blocking open of a FIFO)."""
    def fail(signum, frame):
        raise Hung(f"still running after {seconds} s: it hangs")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------------------- the cache folder

def test_the_cache_folder_is_created_private_and_its_files_are_the_users_own(tmp_path, rng,
                                                                               cache_dir):
    _folder(tmp_path / "d", rng)
    _open(tmp_path / "d")
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    for path in cache_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert f"-u{os.getuid()}." in path.name            # one copy per user in a shared cache


@pytest.mark.parametrize("value", ["~nouser-cnnkit-26/x", "FILE"])
def test_an_unusable_cnnkit_cache_is_one_line_naming_the_variable(tmp_path, rng, monkeypatch,
                                                                   value):
    _folder(tmp_path / "d", rng)
    if value == "FILE":
        value = str(tmp_path / "a-file")
        (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("CNNKIT_CACHE", value)
    with pytest.raises(UsageError, match=f"^environment variable CNNKIT_CACHE: "
                                         f"{re.escape(repr(value))} names no folder") as err:
        _open(tmp_path / "d")
    assert "\n" not in str(err.value)


def test_a_cache_folder_that_cannot_be_made_is_one_line(tmp_path, rng, monkeypatch):
    _folder(tmp_path / "d", rng)
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("CNNKIT_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(DataError, match="cannot create the cache folder.*CNNKIT_CACHE"):
        _open(tmp_path / "d")


# ---------------------------------------------------------------------------- the key

def test_each_component_of_the_key_alone_changes_it(tmp_path, rng):
    """A key missing one component would pass a test that changes two, so each is changed
    alone here: every field of an ImageFile but the full path (which the folder stands for)."""
    _folder(tmp_path / "d", rng)
    root = (tmp_path / "d").resolve()
    files = folder.scan_folder(root)["files"]
    for f in files:                             # the scan records each component as it is
        st = os.stat(f.path)
        assert f == (f.path, os.path.relpath(f.path, root), st.st_size, st.st_mtime_ns,
                     st.st_ctime_ns, st.st_ino)
    key = folder._cache_key(root, (1, 6, 5), files)
    for field in folder.ImageFile._fields[1:]:
        changed = list(files)
        value = getattr(files[1], field)
        changed[1] = files[1]._replace(**{field: value + ("x" if isinstance(value, str) else 1)})
        assert folder._cache_key(root, (1, 6, 5), changed) != key, field
    assert folder._cache_key(root, (1, 6, 4), files) != key
    assert folder._cache_key(root / "other", (1, 6, 5), files) != key
    assert folder._cache_key(root, (1, 6, 5), list(files)) == key


def test_an_image_rewritten_with_its_size_and_mtime_kept_is_decoded_again(tmp_path, rng):
    """Only the ctime tells: same path, size, mtime and inode (a BMP's size is its shape's)."""
    root = tmp_path / "d"
    _folder(root, rng)
    path = root / "a" / "x.bmp"
    Image.fromarray(rng.integers(0, 256, (6, 5), dtype=np.uint8)).save(path)
    _open(root)
    before = os.stat(path)
    new = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    Image.fromarray(new).save(path)                     # rewritten in place: the same inode
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == \
        (before.st_size, before.st_mtime_ns, before.st_ino)
    dataset = _open(root)
    assert _decoded(dataset)
    np.testing.assert_array_equal(dataset.train.images[3][0], new)   # a/000-002.png, x.bmp


def test_a_renamed_image_is_decoded_again(tmp_path, rng):
    root = tmp_path / "d"
    _folder(root, rng)
    _open(root)
    os.rename(root / "a" / "002.png", root / "a" / "002b.png")   # the same order, size, inode
    assert _decoded(_open(root))


# ---------------------------------------------------------------------------- reading back

def _swap_rows(path, header, row_bytes, i, j):
    """Swap rows i and j of the .npy file at ``path`` in place (shape and record kept)."""
    with open(path, "r+b") as f:
        f.seek(header + i * row_bytes)
        a = f.read(row_bytes)
        f.seek(header + j * row_bytes)
        b = f.read(row_bytes)
        f.seek(header + i * row_bytes)
        f.write(b)
        f.seek(header + j * row_bytes)
        f.write(a)


def test_rows_changed_in_the_cache_are_caught_and_decoded_again(tmp_path, rng, cache_dir):
    root = tmp_path / "d"
    truth = _folder(root, rng)
    _open(root)
    [npy] = _files(cache_dir, ".npy")
    header = npy.stat().st_size - truth.nbytes
    _swap_rows(npy, header, truth[0].nbytes, 0, 4)             # class a's first, class b's last
    dataset = _open(root)
    assert any("does not match its record" in note and str(npy) in note
               for note in dataset.notes)
    assert _decoded(dataset)
    np.testing.assert_array_equal(_all(dataset), truth)
    assert not any("does not match" in n for n in _open(root).notes)   # rewritten intact


@pytest.mark.parametrize("damage", ["truncated", "header", "record-json", "record-digests",
                                    "record-stats"])
def test_a_damaged_cache_is_decoded_again(tmp_path, rng, cache_dir, damage):
    root = tmp_path / "d"
    truth = _folder(root, rng)
    _open(root)
    [npy], [record] = _files(cache_dir, ".npy"), _files(cache_dir, ".json")
    if damage == "truncated":
        os.truncate(npy, npy.stat().st_size - 1)
    elif damage == "header":
        data = npy.read_bytes()
        npy.write_bytes(data.replace(b"(5, 1, 6, 5)", b"(5, 1, 5, 6)"))
    elif damage == "record-json":
        record.write_text("{")
    else:
        content = json.loads(record.read_text())
        if damage == "record-digests":
            content["digests"] = ["0" * 64] * len(content["digests"])
        else:
            content["stats"] = {k: [[float("nan")], "x"] for k in content["stats"]}
        record.write_text(json.dumps(content))
    os.chmod(npy, 0o600)
    os.chmod(record, 0o600)
    dataset = _open(root)
    np.testing.assert_array_equal(_all(dataset), truth)
    assert _decoded(dataset) == (damage != "record-stats")
    assert all(np.isfinite(dataset.stats[0])) and all(s > 0 for s in dataset.stats[1])


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666], ids=["group", "world", "both"])
def test_cache_files_others_may_write_are_passed_over(tmp_path, rng, cache_dir, mode):
    root = tmp_path / "d"
    truth = _folder(root, rng)
    _open(root)
    [npy], [record] = _files(cache_dir, ".npy"), _files(cache_dir, ".json")
    _swap_rows(npy, npy.stat().st_size - truth.nbytes, truth[0].nbytes, 0, 4)
    content = json.loads(record.read_text())   # the digests made to match the changed rows
    content["digests"] = cache._digests(np.load(npy, mmap_mode="r"))
    record.write_text(json.dumps(content))
    for path in (npy, record):
        os.chmod(path, mode)
    dataset = _open(root)
    assert any("writable by others" in note for note in dataset.notes)
    np.testing.assert_array_equal(_all(dataset), truth)
    assert stat.S_IMODE(npy.stat().st_mode) == 0o600       # replaced by the user's own


@pytest.mark.skipif(not ROOT, reason="changing a file's owner needs root")
def test_cache_files_of_another_user_are_never_read(tmp_path, rng, cache_dir):
    """Another user writes a consistent pair (rows swapped, digests to match) at this user's
    names in a world-writable cache folder: it is passed over, and the user's own decode
    replaces it."""
    root = tmp_path / "d"
    truth = _folder(root, rng)
    _open(root)
    os.chmod(cache_dir, 0o777)
    [npy], [record] = _files(cache_dir, ".npy"), _files(cache_dir, ".json")
    _swap_rows(npy, npy.stat().st_size - truth.nbytes, truth[0].nbytes, 0, 4)
    content = json.loads(record.read_text())
    content["digests"] = cache._digests(np.load(npy, mmap_mode="r"))
    record.write_text(json.dumps(content))
    for path in (npy, record):
        os.chown(path, 4321, 4321)
    dataset = _open(root)
    assert any("owned by uid 4321" in note for note in dataset.notes)
    np.testing.assert_array_equal(_all(dataset), truth)
    assert npy.stat().st_uid == os.getuid() and record.stat().st_uid == os.getuid()


def test_a_link_or_a_fifo_at_a_cache_name_is_not_followed_or_opened(tmp_path, rng, cache_dir):
    root = tmp_path / "d"
    truth = _folder(root, rng)
    _open(root)
    [npy], [record] = _files(cache_dir, ".npy"), _files(cache_dir, ".json")
    shutil.copy(npy, tmp_path / "elsewhere.npy")
    npy.unlink()
    npy.symlink_to(tmp_path / "elsewhere.npy")
    dataset = _open(root)
    assert any(f"passed over the cache file {npy}" in note for note in dataset.notes)
    assert not npy.is_symlink()
    record.unlink()
    os.mkfifo(record)
    with within(10):
        dataset = _open(root)
    assert any("not a regular file" in note for note in dataset.notes)
    np.testing.assert_array_equal(_all(dataset), truth)


def test_a_cache_name_held_by_another_users_file_serves_this_run_only(tmp_path, rng,
                                                                     monkeypatch, cache_dir):
    """In a sticky world-writable folder another user's file cannot be replaced."""
    root = tmp_path / "d"
    truth = _folder(root, rng)
    real_replace = os.replace

    def refuse(src, dst):
        if str(dst).endswith(".npy"):
            raise PermissionError(errno.EPERM, "Operation not permitted")
        real_replace(src, dst)

    monkeypatch.setattr(cache.os, "replace", refuse)
    dataset = _open(root)
    assert any("serve this run only" in note for note in dataset.notes)
    np.testing.assert_array_equal(_all(dataset), truth)
    assert not any(cache_dir.iterdir())                 # nothing left behind


# ---------------------------------------------------------------------------- room

def test_no_room_is_one_line_naming_the_cache_and_the_bytes(tmp_path, rng, monkeypatch,
                                                             cache_dir):
    _folder(tmp_path / "d", rng, {"a": 30, "b": 30}, size=(40, 30))

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.os, "posix_fallocate", full)
    with pytest.raises(DataError) as err:
        _open(tmp_path / "d")
    line = str(err.value)
    assert "\n" not in line
    assert f"need 70.4 KiB in the cache {cache_dir}, which has" in line
    assert "60 x 1x40x30" in line and "CNNKIT_CACHE" in line
    assert not any(cache_dir.iterdir())                 # the temporary is gone


def test_no_room_found_while_writing_rows_is_the_same_line(tmp_path, rng, monkeypatch,
                                                           cache_dir):
    """Where the file system cannot allocate ahead, a full disk shows in a row's write."""
    _folder(tmp_path / "d", rng)

    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.os, "posix_fallocate", unsupported)
    monkeypatch.setattr(cache, "write_row", full)
    with pytest.raises(DataError, match=f"need .* in the cache {cache_dir}, which has"):
        _open(tmp_path / "d")
    assert not any(cache_dir.iterdir())


def test_a_file_size_limit_is_no_room_through_the_real_allocation(tmp_path, rng, cache_dir):
    """Without root: a child whose files may not pass 64 KiB (``ulimit -f``; SIGXFSZ ignored,
    so the kernel answers EFBIG) asks the real posix_fallocate for 70 KiB."""
    import resource

    _folder(tmp_path / "d", rng, {"a": 30, "b": 30}, size=(40, 30))

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    code = ("import sys\nfrom cnnkit.data import open_source\nfrom cnnkit.errors import "
            "CnnkitError\ntry:\n    open_source(sys.argv[1])\nexcept CnnkitError as err:\n"
            "    sys.exit(str(err))\n")
    done = subprocess.run([sys.executable, "-c", code, f"folder:{tmp_path / 'd'}"],
                          preexec_fn=limited, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CNNKIT_CACHE": str(cache_dir)})
    assert done.returncode == 1, done.stderr
    assert f"need 70.4 KiB in the cache {cache_dir}" in done.stderr
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs mounted at tmp_path/disk (as root; skipped otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                              capture_output=True)
    except OSError:
        done = None
    if done is None or done.returncode:
        pytest.skip("cannot mount a tmpfs (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _train(root, out, env):
    return subprocess.Popen(
        [sys.executable, "-m", "cnnkit.cli", "train", "--data", f"folder:{root}", "--model",
         "FC-2", "--epochs", "1", "--no-progress", "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_trainings_sharing_a_small_cache_end_in_one_line_not_a_signal(tmp_path, rng,
                                                                         small_disk):
    """Each folder's cache needs 0.7 MiB of a 1 MiB tmpfs: one gets it, the other is told in
    one line (a sparse memory-mapped cache died of SIGBUS here, leaving its temporary)."""
    env = {**os.environ, "CNNKIT_CACHE": str(small_disk / "cache")}
    for name in ("one", "two"):
        _folder(tmp_path / name, rng, {"a": 30, "b": 30}, size=(100, 128))
    procs = [_train(tmp_path / name, tmp_path / "runs", env) for name in ("one", "two")]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert all(code >= 0 for code, _ in results), results      # no signal
    failed = [err for code, err in results if code]
    assert len(failed) == 1, results
    lines = failed[0].strip().splitlines()
    assert len(lines) == 1 and f"in the cache {small_disk / 'cache'}" in lines[0], lines
    assert "need 750.1 KiB" in lines[0]
    leftovers = [p.name for p in (small_disk / "cache").iterdir() if p.name.endswith(".tmp")]
    assert not leftovers


# ---------------------------------------------------------------------------- temporaries

def test_the_temporaries_of_dead_writers_are_removed_and_named_nobody_elses(tmp_path, rng,
                                                                           cache_dir):
    root = tmp_path / "d"
    _folder(root, rng)
    cache_dir.mkdir(mode=0o700)
    slug = folder._slug(root.resolve())
    dead = cache_dir / f".{slug}-{'0' * 20}-u{os.getuid()}.npy.ab12.tmp"
    old_style = cache_dir / f".other-{'1' * 8}-{'2' * 20}.npy.x_y9.tmp"   # before issue 26
    live = cache_dir / f".{slug}-{'3' * 20}-u{os.getuid()}.npy.cd34.tmp"
    users = [cache_dir / ".draft.tmp", cache_dir / f".{slug}-notes.npy.tmp",
             cache_dir / "keep.npy"]
    for path in (dead, old_style, live, *users):
        path.write_bytes(b"x" * 1000)
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)          # a decode running now
    try:
        dataset = _open(root)
    finally:
        os.close(holder)
    assert not dead.exists() and not old_style.exists()
    assert live.exists() and all(p.exists() for p in users)
    [note] = [n for n in dataset.notes if n.startswith("removed 2 temporary")]
    assert dead.name in note and old_style.name in note and str(cache_dir) in note


def test_a_temporary_being_written_is_not_taken_for_a_dead_writers(tmp_path):
    """The writer holds its temporary's flock from the moment it exists."""
    final = tmp_path / f"x-{'1' * 8}-{'2' * 20}-u{os.getuid()}.npy"
    with cache._temporary(final) as (fd, tmp):
        notes = []
        assert cache.remove_dead_temporaries(tmp_path, notes) == [(tmp.name, 0)]
        assert tmp.exists() and not notes
    assert not tmp.exists()


def test_a_running_decodes_temporary_is_named_when_there_is_no_room(tmp_path, rng,
                                                                   monkeypatch, cache_dir):
    root = tmp_path / "d"
    _folder(root, rng)
    cache_dir.mkdir(mode=0o700)
    live = cache_dir / f".x-{'3' * 8}-{'4' * 20}-u{os.getuid()}.npy.cd34.tmp"
    live.write_bytes(b"x" * 3 * 2 ** 20)
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.os, "posix_fallocate", full)
    try:
        with pytest.raises(DataError, match=f"3.0 MiB of it held by 1 decode.* {live.name}"):
            _open(root)
    finally:
        os.close(holder)


def test_a_new_cache_replaces_the_users_older_ones_of_that_folder_only(tmp_path, rng,
                                                                       cache_dir):
    slug = folder._slug((tmp_path / "d").resolve())
    _folder(tmp_path / f"{slug}-x", rng)        # its cache names start as "d"'s do
    _open(tmp_path / f"{slug}-x")
    other = {p.name for p in cache_dir.iterdir()}
    _folder(tmp_path / "d", rng)
    _open(tmp_path / "d")
    before = {p.name for p in cache_dir.iterdir()}
    Image.new("L", (5, 6)).save(tmp_path / "d" / "a" / "new.png")
    _open(tmp_path / "d")
    after = {p.name for p in cache_dir.iterdir()}
    assert len(after) == 4 and len(after - before) == 2 and other <= after


# ---------------------------------------------------------------------------- the scan

def _special(path, kind):
    """Make ``path`` a FIFO, a socket, a link to a character device or a dangling link."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":              # bound by a relative name: AF_UNIX paths are short
        here = os.getcwd()
        os.chdir(path.parent)
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.bind(path.name)
        finally:
            os.chdir(here)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    else:
        path.symlink_to(path.parent / "nothing-here.png")


KINDS = {"fifo": "a FIFO", "socket": "a socket", "device": "a character device",
         "dangling": "not found"}


@pytest.mark.parametrize("kind", list(KINDS))
def test_an_image_name_that_is_not_a_regular_file_is_refused_without_opening_it(tmp_path, rng,
                                                                                kind):
    root = tmp_path / "d"
    truth = _folder(root, rng)
    _special(root / "b" / "zz.png", kind)
    with within(10), pytest.raises(DataError) as err:
        _open(root)
    line = str(err.value)
    assert str(root.resolve() / "b" / "zz.png") in line and KINDS[kind] in line
    assert "--skip-bad" in line and "\n" not in line
    with within(10):
        dataset = _open(root, skip_bad=True)
    assert any(n.startswith("skipped 1 image name(s) that are not regular files") and
               "zz.png" in n for n in dataset.notes)
    np.testing.assert_array_equal(_all(dataset), truth)


def test_a_class_folder_linked_from_outside_is_followed_with_a_note(tmp_path, rng):
    root = tmp_path / "d"
    _folder(root, rng)
    _folder(tmp_path / "elsewhere", rng, {"c": 2})
    (root / "c").symlink_to(tmp_path / "elsewhere" / "c")
    (root / "a" / "loop").symlink_to(root / "a")                 # nested: not followed
    dataset = _open(root)
    assert dataset.classes == ("a", "b", "c") and len(dataset.train) == 7
    assert any(f"{root.resolve() / 'c'} is a link to {tmp_path / 'elsewhere' / 'c'}" in n
               for n in dataset.notes)
    assert any(n.startswith("did not follow 1 link(s)") for n in dataset.notes)
    assert not any("is a link to" in n for n in _open(tmp_path / "elsewhere").notes)


def test_one_large_image_first_does_not_size_the_cache(tmp_path, rng, cache_dir):
    root = tmp_path / "d"
    _folder(root, rng, {"a": 3, "b": 3}, size=(6, 5))
    Image.new("L", (3000, 2000)).save(root / "a" / "000.png")   # sorted first
    dataset = _open(root)
    assert dataset.image_shape == (1, 6, 5)
    assert any("5x6 (width x height)" in n and "5 of 6" in n for n in dataset.notes)
    [npy] = _files(cache_dir, ".npy")
    assert npy.stat().st_size < 4096
