"""Reading torch.save files without torch: round trips against real torch, and hostile files.

Every file here is written by torch itself (both the zip and the legacy format) or crafted from
a real one (edited sizes, a pickle built with torch's own rebuild functions and a persistent_id,
byte-swapped storages), so the reader is checked against the format as torch writes it. The
hostile files call ``os.system``, ``eval``, ``exec``, ``subprocess.Popen`` and ``getattr`` to
create a marker file: each must be refused with one line naming the global, and the marker must
never appear.
"""

import collections
import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from cnnkit.budget import BudgetError, set_memory_budget
from cnnkit.weights.errors import WeightsError
from cnnkit.weights.limits import MAX_DIMS
from cnnkit.weights.torchfile import TorchFileError, load_torch_state_dict

torch = pytest.importorskip("torch")

FORMATS = ["zip", "legacy"]
MAGIC, PROTOCOL = 0x1950A86A20F9469CFC6C, 1001


# ---------------------------------------------------------------------------- helpers

def save(obj, path, fmt="zip", **kwargs):
    torch.save(obj, path, _use_new_zipfile_serialization=fmt == "zip", **kwargs)
    return path


def expected(t):
    t = t.detach()
    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


def assert_loaded(arrays, state):
    assert list(arrays) == list(state)
    for name, t in state.items():
        want, got = expected(t), arrays[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert got.dtype.isnative, name
        repeats = [n > 1 and s == 0 for n, s in zip(t.size(), t.stride())]
        if any(repeats):      # torch's expand: its distinct elements, broadcast, read-only
            assert not got.flags.writeable, name
            assert [s == 0 for s in got.strides] == [s == 0 and n > 1 for n, s in
                                                     zip(t.size(), t.stride())], name
        else:
            assert got.flags.c_contiguous and got.flags.writeable, name


def refused(path, *fragments):
    """The one-line TorchFileError ``load_torch_state_dict(path)`` raises, checked to name the
    file and to contain each fragment."""
    with pytest.raises(TorchFileError) as info:
        load_torch_state_dict(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    assert isinstance(info.value, WeightsError) and isinstance(info.value, ValueError)
    for fragment in fragments:
        assert fragment in message, message
    return message


def tensor(rng, shape, dtype=np.float32):
    return torch.from_numpy(rng.standard_normal(shape).astype(dtype))


class Reduce:
    """Pickles as the call ``func(*args)`` (what a hostile class's __reduce__ returns)."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self):   # pickle only accepts callables as the func of a reduce
        raise AssertionError("never called")


class Plain:
    """An ordinary class: protocol 2 pickles an instance through copyreg._reconstructor."""


class FakeStorage:
    """Stands for a storage; the pickler below writes ``pid`` as its persistent id."""

    def __init__(self, pid):
        self.pid = pid


def storage(key, numel, kind="FloatStorage", legacy=False):
    pid = ("storage", getattr(torch, kind), key, "cpu", numel)
    return FakeStorage(pid + (None,) if legacy else pid)


class FakeTensor:
    """Pickles as torch does a tensor, with any offset, size and stride."""

    def __init__(self, store, offset, size, stride):
        self.args = (store, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, FakeStorage) else None


def dumps(obj, protocol=2):
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


def write_zip(path, pkl, storages=(), root="archive", byteorder=b"little",
              compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{root}/data.pkl", pkl)
        archive.writestr(f"{root}/byteorder", byteorder)
        for key, data in dict(storages).items():
            archive.writestr(f"{root}/data/{key}", data, compress_type=compression)
        archive.writestr(f"{root}/version", b"3\n")
    return path


def write_legacy(path, pkl, storages=(), first=None):
    """A legacy file: the magic number (or ``first``), version, system info, ``pkl``, the keys
    and each storage as an element count and bytes. ``storages``: key -> (count, bytes)."""
    storages = dict(storages)
    with open(path, "wb") as f:
        f.write(first if first is not None else pickle.dumps(MAGIC, protocol=2))
        for obj in (PROTOCOL, {"protocol_version": PROTOCOL, "little_endian": True,
                               "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(obj, f, protocol=2)
        f.write(pkl)
        pickle.dump(list(storages), f, protocol=2)
        for count, data in storages.values():
            f.write(struct.pack("<q", count) + data)
    return path


def write_crafted(path, fmt, state, data, kind="FloatStorage", numel=None):
    """``state`` (FakeTensors on storage "0") with ``data`` (a float32 array) as that storage."""
    raw = data.tobytes()
    numel = len(data) if numel is None else numel
    if fmt == "zip":
        return write_zip(path, dumps(state), {"0": raw})
    return write_legacy(path, dumps(state), {"0": (numel, raw)})


def patch_central_sizes(data: bytes, member: str, size: int) -> bytes:
    """The zip ``data`` with ``member``'s compressed and uncompressed sizes in the central
    directory set to ``size``."""
    buffer, start = bytearray(data), 0
    while True:
        start = data.index(b"PK\x01\x02", start + 1)
        length = struct.unpack_from("<H", data, start + 28)[0]
        if data[start + 46:start + 46 + length] == member.encode():
            struct.pack_into("<II", buffer, start + 20, size, size)
            return bytes(buffer)


@pytest.fixture
def marker(tmp_path):
    """A file a hostile pickle would create; each test checks it never appears."""
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a hostile pickle ran code"


@pytest.fixture
def budget():
    yield set_memory_budget
    set_memory_budget(None)


# ---------------------------------------------------------------------------- round trips

def every_dtype(rng):
    x = rng.standard_normal((3, 4))

    def ints(lo, hi, shape, dtype):
        return torch.from_numpy(rng.integers(lo, hi, shape, dtype))

    return {"f32": torch.from_numpy(x.astype(np.float32)), "f64": torch.from_numpy(x),
            "f16": torch.from_numpy(x.astype(np.float16)),
            "bf16": torch.from_numpy(x.astype(np.float32)).bfloat16(),
            "i64": ints(-2 ** 40, 2 ** 40, (5,), np.int64),
            "i32": ints(-2 ** 31, 2 ** 31, (2, 3), np.int32),
            "i16": ints(-2 ** 15, 2 ** 15, (4,), np.int16),
            "i8": ints(-128, 128, (2, 2, 2), np.int8), "u8": ints(0, 256, (7,), np.uint8),
            "bool": torch.from_numpy(rng.random(6) < 0.5),
            "u16": ints(0, 2 ** 16, (3,), np.uint16), "u32": ints(0, 2 ** 32, (3,), np.uint32),
            "u64": ints(0, 2 ** 63, (2,), np.uint64)}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_dtype_round_trips(tmp_path, rng, fmt):
    state = every_dtype(rng)
    arrays = load_torch_state_dict(save(state, tmp_path / "a.pt", fmt))
    assert_loaded(arrays, state)
    assert arrays["bf16"].dtype == np.float32 and type(arrays) is dict


@pytest.mark.parametrize("fmt", FORMATS)
def test_views_scalars_and_empty_tensors(tmp_path, rng, fmt):
    base = tensor(rng, (4, 6))
    flat = tensor(rng, (16,))
    state = {"scalar": torch.tensor(2.5), "scalar_int": torch.tensor(7),
             "empty": torch.zeros(0, 3), "empty_view": flat[16:],
             "transposed": base.t(), "every_other": base[:, ::2], "offset": flat[5:],
             "offset_2d": flat[3:15].view(3, 4), "shares_a": flat[:4], "shares_b": flat.view(2, 8),
             "expanded": torch.arange(3.0).view(3, 1).expand(3, 4), "base": base,
             "column": base[:, 1:2], "element": flat[9]}
    arrays = load_torch_state_dict(save(state, tmp_path / "v.pt", fmt))
    assert_loaded(arrays, state)
    assert arrays["scalar"].shape == () and arrays["empty"].shape == (0, 3)
    assert not np.shares_memory(arrays["shares_a"], arrays["shares_b"])
    arrays["shares_a"][0] = 100.0   # a fresh copy each: the other view does not change
    assert arrays["shares_b"][0, 0] == flat[0].item()


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_model_state_dict_with_batch_norm(tmp_path, rng, fmt):
    torch.manual_seed(int(rng.integers(2 ** 31)))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16, 2))
    model(torch.randn(2, 3, 4, 4))   # train mode: running stats and num_batches_tracked move
    state = model.state_dict()
    assert hasattr(state, "_metadata")
    arrays = load_torch_state_dict(save(state, tmp_path / "m.pth", fmt))
    assert_loaded(arrays, state)
    assert arrays["1.num_batches_tracked"].dtype == np.int64
    assert arrays["1.num_batches_tracked"].shape == () and arrays["1.num_batches_tracked"] == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_parameters_saved_in_a_dict(tmp_path, rng, fmt):
    model = torch.nn.Linear(3, 2)
    params = dict(model.named_parameters())
    assert_loaded(load_torch_state_dict(save(params, tmp_path / "p.pt", fmt)), params)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_training_checkpoint(tmp_path, rng, fmt):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(5, 4)).square().sum().backward()
    opt.step()
    state = model.state_dict()
    extras = {"betas": (0.9, 0.99), "name": "run", "ids": {1, 2}, "blob": b"\x00\xff",
              "size": torch.Size([2, 3]), "device": torch.device("cpu"), "c": 1 + 2j,
              "buffer": bytearray(b"ab"), "frozen": frozenset({3}), "none": None,
              "nested": [{"lr": 0.1, "steps": [1, 2, 3]}]}
    ckpt = {"epoch": 3, "model_state_dict": state, "optimizer": opt.state_dict(),
            "extra": extras}
    assert_loaded(load_torch_state_dict(save(ckpt, tmp_path / "c.pt", fmt)), state)


def test_each_state_dict_key_of_a_checkpoint(tmp_path, rng):
    state = {"w": tensor(rng, (2, 2)), "b": tensor(rng, (2,))}
    for key in ("state_dict", "model", "net", "state"):
        path = save({"epoch": 1, key: state, "lr": 0.5}, tmp_path / f"{key}.pt")
        assert_loaded(load_torch_state_dict(path), state)
    # a candidate that is not a dict of tensors is passed over for the next
    ckpt = {"model": {"0": {"step": 3}}, "state": state}
    assert_loaded(load_torch_state_dict(save(ckpt, tmp_path / "both.pt")), state)


def test_only_the_state_dicts_storages_are_read(tmp_path):
    """A checkpoint's other tensors (optimizer state) are unpickled as stand-ins, never read:
    the archive here lacks their storage, and the state dict loads."""
    data = np.arange(4, dtype=np.float32)
    ckpt = {"model": {"w": FakeTensor(storage("0", 4), 0, (4,), (1,))},
            "optimizer": {"exp_avg": FakeTensor(storage("1", 10 ** 9), 0, (2,), (1,))}}
    path = write_zip(tmp_path / "lazy.pt", dumps(ckpt), {"0": data.tobytes()})
    np.testing.assert_array_equal(load_torch_state_dict(path)["w"], data)


def test_other_ways_torch_writes_tensors(tmp_path, rng):
    with_attribute = tensor(rng, (3,))
    with_attribute.note = "kept by torch, ignored here"   # -> _rebuild_from_type_v2
    negated = torch.arange(4.0)._neg_view()                # saved with metadata {"neg": True}
    state = {"attr": with_attribute, "neg": negated, "plain": tensor(rng, (2, 3))}
    arrays = load_torch_state_dict(save(state, tmp_path / "o.pt"))
    assert_loaded(arrays, {k: v.clone() if k == "neg" else v for k, v in state.items()})
    np.testing.assert_array_equal(arrays["neg"], [-0.0, -1.0, -2.0, -3.0])
    # pickle protocol 4: FRAME, MEMOIZE, STACK_GLOBAL and "builtins" instead of "__builtin__"
    path = save({"model": state, "s": {1}}, tmp_path / "p4.pt", pickle_protocol=4)
    assert_loaded(load_torch_state_dict(path), {k: v.clone() for k, v in state.items()})
    # a compressed member is read too (torch stores them; other zip tools may not)
    plain = tensor(rng, (5,))
    with zipfile.ZipFile(save({"x": plain}, tmp_path / "s.pt")) as archive:
        members = {i.filename: archive.read(i) for i in archive.infolist()}
    with zipfile.ZipFile(tmp_path / "deflated.pt", "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    assert_loaded(load_torch_state_dict(tmp_path / "deflated.pt"), {"x": plain})


def test_a_big_endian_zip(tmp_path, rng):
    state = {"f": tensor(rng, (3, 2)), "i": torch.arange(-3, 3), "h": tensor(rng, (4,), np.float16),
             "bf": tensor(rng, (2, 2)).bfloat16(), "b": torch.tensor([True, False])}
    itemsizes = {str(i): t.element_size() for i, t in enumerate(state.values())}
    with zipfile.ZipFile(save(state, tmp_path / "le.pt")) as archive:
        members = {i.filename: archive.read(i) for i in archive.infolist()}
    with zipfile.ZipFile(tmp_path / "be.pt", "w") as archive:
        for name, data in members.items():
            folder, _, key = name.rpartition("/")
            if name.endswith("/byteorder"):
                data = b"big"
            elif folder.endswith("/data"):
                data = np.frombuffer(data, f"<u{itemsizes[key]}").astype(f">u{itemsizes[key]}")
                data = data.tobytes()
            archive.writestr(name, data)
    assert_loaded(load_torch_state_dict(tmp_path / "be.pt"), state)


@pytest.mark.parametrize("fmt", FORMATS)
def test_crafted_views_at_the_storage_bounds(tmp_path, fmt):
    """The crafted files the bounds tests edit load when they are in bounds."""
    data = np.arange(12, dtype=np.float32)
    legacy = fmt == "legacy"
    store = storage("0", 12, legacy=legacy)
    state = {"all": FakeTensor(store, 0, (3, 4), (4, 1)), "last": FakeTensor(store, 11, (), ()),
             "empty_at_end": FakeTensor(store, 12, (0,), (1,)),
             "huge_unused_stride": FakeTensor(store, 2, (1, 3), (10 ** 30, 2)),
             "broadcast": FakeTensor(store, 5, (2, 3), (0, 1)),
             "most_dims": FakeTensor(store, 0, (2, 3) + (1,) * (MAX_DIMS - 2),
                                     (4, 1) + (1,) * (MAX_DIMS - 2))}
    arrays = load_torch_state_dict(write_crafted(tmp_path / "ok.pt", fmt, state, data))
    np.testing.assert_array_equal(arrays["most_dims"].reshape(2, 3), [[0, 1, 2], [4, 5, 6]])
    np.testing.assert_array_equal(arrays["all"], data.reshape(3, 4))
    np.testing.assert_array_equal(arrays["last"], np.float32(11))
    assert arrays["empty_at_end"].shape == (0,)
    np.testing.assert_array_equal(arrays["huge_unused_stride"], [[2, 4, 6]])
    np.testing.assert_array_equal(arrays["broadcast"], [[5, 6, 7], [5, 6, 7]])


def test_a_legacy_storage_view(tmp_path):
    """torch < 1.0 wrote views of a storage as (view key, offset, numel) in the persistent id."""
    data = np.arange(10, dtype=np.float32)
    view = FakeStorage(("storage", torch.FloatStorage, "0", "cpu", 10, ("v", 4, 3)))
    path = write_legacy(tmp_path / "view.pt", dumps({"v": FakeTensor(view, 1, (2,), (1,))}),
                        {"0": (10, data.tobytes())})
    np.testing.assert_array_equal(load_torch_state_dict(path)["v"], [5, 6])
    outside = FakeTensor(view, 1, (3,), (1,))   # element 4 of a 3-element view
    path = write_legacy(tmp_path / "out.pt", dumps({"v": outside}), {"0": (10, data.tobytes())})
    refused(path, "reaches element 3")


def test_the_loader_does_not_import_torch(tmp_path, rng):
    path = save({"w": tensor(rng, (2, 3))}, tmp_path / "w.pt")
    code = ("import sys; from cnnkit.weights.torchfile import load_torch_state_dict; "
            f"a = load_torch_state_dict({str(path)!r}); assert a['w'].shape == (2, 3); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------------------- hostile pickles

def hostile_payloads(marker):
    touch = f"open({str(marker)!r}, 'w').close()"
    return {f"{os.system.__module__}.system": Reduce(os.system, (f"touch {marker}",)),
            "__builtin__.eval": Reduce(eval, (touch,)),
            "__builtin__.exec": Reduce(exec, (touch,)),
            # protocol 2 writes Python 2's names: subprocess.Popen as commands.Popen
            "commands.Popen": Reduce(subprocess.Popen, (["touch", str(marker)],)),
            "__builtin__.getattr": Reduce(Reduce(getattr, (Reduce(__import__, ("os",)),
                                                           "system")), (f"touch {marker}",)),
            f"{Plain.__module__}.Plain": Plain()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_pickles_are_refused_before_running(tmp_path, rng, marker, fmt):
    for name, payload in hostile_payloads(marker).items():
        # saved by torch itself, beside a real tensor, so the file is a well-formed .pt
        path = save({"w": tensor(rng, (2,)), "x": payload}, tmp_path / "evil.pt", fmt)
        refused(path, f"refuses to unpickle {name}: only tensors and containers are loaded "
                      f"(as torch.load(weights_only=True))")
        assert not marker.exists()


def test_hostile_pickles_in_protocol_4_and_at_the_top(tmp_path, marker):
    """Protocol 4 names globals with STACK_GLOBAL (refused in find_class as the unpickler runs,
    still before the call); a payload can also be the whole object, or the first pickle of a
    legacy file, where the magic number belongs."""
    for name, payload in hostile_payloads(marker).items():
        # protocol 4 makes an instance with NEWOBJ, refused as it is read
        name = ("the pickle opcode NEWOBJ" if name.endswith(".Plain") else
                f"to unpickle {name.replace('__builtin__', 'builtins')}".replace(
                    "commands", "subprocess"))
        path = save({"x": payload}, tmp_path / "p4.pt", pickle_protocol=4)
        refused(path, f"refuses {name}")
        refused(write_zip(tmp_path / "top.pt", dumps(payload)), "refuses to unpickle")
        refused(write_legacy(tmp_path / "first.pt", dumps({}), first=dumps(payload)),
                "refuses to unpickle")


def test_nothing_named_is_imported(tmp_path):
    if "this" in sys.modules:
        pytest.skip("the module 'this' is already imported")
    refused(write_zip(tmp_path / "imp.pt", b"\x80\x02cthis\ns\n."), "refuses to unpickle this.s")
    assert "this" not in sys.modules


def test_opcodes_that_build_objects_otherwise_are_refused(tmp_path, marker):
    cases = {"INST": b"(S'touch " + str(marker).encode() + b"'\nios\nsystem\n.",
             "OBJ": b"(ccollections\nOrderedDict\no.",
             "EXT1": b"\x80\x02\x82\x01.",
             "NEWOBJ": b"\x80\x02ccollections\nOrderedDict\n)\x81.",
             "PERSID": b"\x80\x02P0\n."}
    for opcode, pkl in cases.items():
        refused(write_zip(tmp_path / "op.pt", pkl), f"refuses the pickle opcode {opcode}")


def test_state_on_a_stand_in_is_refused(tmp_path):
    """BUILD with a slot state would set attributes (__defaults__) of the function it names."""
    pkl = (b"\x80\x02]ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__"
           b"K\x01\x85s\x86ba.")
    refused(write_zip(tmp_path / "build.pt", pkl), "sets the state of torch._utils")
    # the BUILD state PyTorch attaches to a state dict (_metadata) is fine
    pkl = b"\x80\x02ccollections\nOrderedDict\n)R}X\x09\x00\x00\x00_metadataK\x01sb."
    assert load_torch_state_dict(write_zip(tmp_path / "meta.pt", pkl)) == {}


def test_pickles_that_would_exhaust_the_interpreter(tmp_path):
    # a million nested tuples used as a dict key: hashing it overflows the C stack
    deep = b"\x80\x02}K\x01" + b"\x85" * 1_000_000 + b"K\x01s."
    refused(write_zip(tmp_path / "deep.pt", deep), "nests tuples more than 64 deep")
    # a memo index of 10**8: the C unpickler would allocate a table that long
    memo = b"\x80\x02}r" + struct.pack("<I", 10 ** 8) + b"."
    refused(write_zip(tmp_path / "memo.pt", memo), "stores memo entry 100,000,000")
    # a legacy file's pickle declaring 2**60 bytes: the size is never allocated, only read
    huge = b"\x80\x02\x8e" + struct.pack("<Q", 2 ** 60) + b"."
    message = refused(write_legacy(tmp_path / "huge.pt", huge), "corrupt or truncated pickle")
    assert "MemoryError" not in message
    # a bytearray of 10**12 bytes from a call with a number
    huge = b"\x80\x02c__builtin__\nbytearray\n\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x85R."
    refused(write_zip(tmp_path / "bytes.pt", huge), "bytearray is called with arguments")


@pytest.mark.parametrize("fmt", FORMATS)
def test_malformed_persistent_ids(tmp_path, fmt):
    legacy = fmt == "legacy"
    tail = (None,) if legacy else ()
    cases = {"short": (("storage",), "a tuple of 1 items"),
             "module": (("module", "os", "src", "x", "y") + tail, "not a tensor storage"),
             "text": ("storage", "is a string, not a tensor storage"),
             "negative": (("storage", torch.FloatStorage, "0", "cpu", -1) + tail, "not a count"),
             "float": (("storage", torch.FloatStorage, "0", "cpu", 1.5) + tail, "not a count"),
             "kind": (("storage", 5, "0", "cpu", 3) + tail, "not a storage type"),
             "size": (("storage", torch.Size, "0", "cpu", 3) + tail, "not a storage type"),
             "key": (("storage", torch.FloatStorage, 0, "cpu", 3) + tail, "not a string")}
    data = np.zeros(3, np.float32)
    for name, (pid, fragment) in cases.items():
        state = {"w": FakeTensor(FakeStorage(pid), 0, (3,), (1,))}
        refused(write_crafted(tmp_path / f"{name}.pt", fmt, state, data), fragment)
    # a persistent id in a pickle that is not the object's
    pkl = dumps(FakeStorage(("storage", torch.FloatStorage, "0", "cpu", 1, None)))
    refused(write_legacy(tmp_path / "first.pt", dumps({}), first=pkl),
            "persistent id outside the object's pickle")


@pytest.mark.parametrize("fmt", FORMATS)
def test_views_outside_their_storage_are_refused(tmp_path, fmt):
    data = np.arange(12, dtype=np.float32)
    store = storage("0", 12, legacy=fmt == "legacy")
    cases = {"rows": (0, (4, 4), (4, 1), "reaches element 15 of storage '0', which holds 12"),
             "offset": (10, (3,), (1,), "reaches element 12"),
             "stride": (0, (2,), (100,), "reaches element 100"),
             "empty_past_end": (13, (0,), (1,), "offset 13"),
             "huge_stride": (0, (2, 1), (2 ** 70, 1), "reaches element"),
             "huge_offset": (2 ** 63, (), (), "reaches element"),
             "negative_stride": (11, (3,), (-1,), "stride is not a sequence of non-negative"),
             "negative_offset": (-1, (), (), "storage offset is -1"),
             "mismatch": (0, (2, 2), (1,), "has size (2, 2) but stride (1,)"),
             "dims": (0, (1,) * (MAX_DIMS + 1), (1,) * (MAX_DIMS + 1),
                      f"has {MAX_DIMS + 1} dimensions, more than {MAX_DIMS}"),
             # counted before any size is read: the message is about the count, not the 'x's
             "dims_not_sizes": (0, ("x",) * 100_000, (1,), "has 100,000 dimensions"),
             "stride_dims": (0, (1,), (1,) * 100_000, "stride has 100,000 dimensions"),
             "empty_past_any_array": (0, (2 ** 62, 0), (1, 1), "more than any array can hold")}
    for name, (offset, size, stride, fragment) in cases.items():
        state = {"w": FakeTensor(store, offset, size, stride)}
        message = refused(write_crafted(tmp_path / f"{name}.pt", fmt, state, data), fragment)
        assert len(message) < len(str(tmp_path)) + 300, message


def test_storage_bytes_that_do_not_match_the_pickle(tmp_path):
    data = np.arange(12, dtype=np.float32)
    state = {"w": FakeTensor(storage("0", 12), 0, (12,), (1,))}
    legacy = {"w": FakeTensor(storage("0", 12, legacy=True), 0, (12,), (1,))}
    # a storage the pickle names but the archive lacks
    refused(write_zip(tmp_path / "missing.pt", dumps(state), {"1": data.tobytes()}),
            "storage '0' named in data.pkl is missing from the archive")
    refused(write_legacy(tmp_path / "missing_legacy.pt", dumps(legacy), {}),
            "storage '0' named in the pickle is missing")
    # fewer bytes than the pickle declares
    refused(write_zip(tmp_path / "short.pt", dumps(state), {"0": data[:10].tobytes()}),
            "holds 40 bytes, but data.pkl declares 12 float32 (48 bytes)")
    refused(write_legacy(tmp_path / "count.pt", dumps(legacy), {"0": (10, data.tobytes())}),
            "holds 10 elements, but the pickle declares 12")
    refused(write_legacy(tmp_path / "ends.pt", dumps(legacy), {"0": (12, data[:11].tobytes())}),
            "the file ends inside storage '0'")
    # one key declared as two different storages
    twice = {"a": FakeTensor(storage("0", 12), 0, (1,), (1,)),
             "b": FakeTensor(storage("0", 6, "DoubleStorage"), 0, (1,), (1,))}
    refused(write_zip(tmp_path / "twice.pt", dumps(twice), {"0": data.tobytes()}),
            "declared twice")
    # a zip member declaring more bytes than the whole archive
    path = save({"w": torch.zeros(4)}, tmp_path / "big.pt")
    member = next(n for n in zipfile.ZipFile(path).namelist() if n.endswith("/data/0"))
    path.write_bytes(patch_central_sizes(path.read_bytes(), member, 2 ** 31))
    refused(path, "declares 2,147,483,648 bytes, more than the whole archive")


def test_the_memory_budget_is_checked_before_reading(tmp_path, budget):
    # 40 MB of zeros deflated to a few kilobytes: the declared size is checked, not trusted
    data = np.zeros(10_000_000, np.float32)
    state = {"w": FakeTensor(storage("0", data.size), 0, (data.size,), (1,))}
    path = write_zip(tmp_path / "bomb.pt", dumps(state), {"0": data.tobytes()},
                     compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1_000_000
    budget("1M")
    with pytest.raises(BudgetError, match="bomb.pt"):
        load_torch_state_dict(path)
    # stride 0 over a one-element storage, a tiny file whose array would be huge: read as the
    # broadcast of its distinct elements, as torch reads it, so nothing large is allocated
    wide = {"b": FakeTensor(storage("0", 3), 0, (3,), (1,)),
            "w": FakeTensor(storage("0", 3), 0, (10 ** 6, 10 ** 6), (0, 0))}
    path = write_zip(tmp_path / "wide.pt", dumps(wide), {"0": b"\x00" * 12})
    arrays = load_torch_state_dict(path)
    assert arrays["w"].shape == (10 ** 6, 10 ** 6) and arrays["w"].strides == (0, 0)
    assert not arrays["w"].flags.writeable and arrays["w"].base.size == 1
    # 300 views of 1 MB each: 300 x 3 stored elements; a copy only where a net takes one
    views = {f"v{i}": FakeTensor(storage("0", 3), 0, (3, 2 ** 18 // 3 * 2), (1, 0))
             for i in range(300)}
    path = write_zip(tmp_path / "views.pt", dumps(views), {"0": b"\x00" * 12})
    assert path.stat().st_size < 20_000
    budget("1M")
    arrays = load_torch_state_dict(path)
    assert all(a.shape == (3, 174762) and a.base.size == 3 for a in arrays.values())


def test_a_file_of_views_is_refused_by_the_net_before_anything_large_is_copied(tmp_path,
                                                                                 budget):
    """The 80 KB file of stride-0 views that used to copy 4 GB before `cnnkit import` found it
    did not fit: under a budget far below its logical size it is refused for not fitting."""
    from cnnkit.models import lenet_bn
    from cnnkit.weights import WeightsError, load_weights

    views = {f"layer{i}.weight": FakeTensor(storage("0", 3), 0, (3, 2 ** 18 // 3 * 2), (1, 0))
             for i in range(4000)}
    path = write_zip(tmp_path / "views.pt", dumps(views), {"0": b"\x00" * 12})
    assert path.stat().st_size < 400_000
    budget("200M")                 # the views hold 4,000 x 2 MiB = 7.8 GiB logically
    with pytest.raises(WeightsError, match="views.pt"):
        load_weights(lenet_bn(), path)


# ---------------------------------------------------------------------------- other files

@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_files(tmp_path, rng, fmt):
    full = save({"w": tensor(rng, (3, 4)), "b": tensor(rng, (4,))}, tmp_path / "f.pt",
                fmt).read_bytes()
    cut = tmp_path / "cut.pt"
    n = len(full)
    for end in sorted({1, 2, 10, 40, 100, n // 3, n // 2, n - 60, n - 22, n - 8, n - 1}
                      | set(range(3, n, 37))):
        cut.write_bytes(full[:end])
        refused(cut)


def test_files_of_other_kinds(tmp_path, rng):
    paths = {}
    paths["random"] = tmp_path / "random.pt"
    paths["random"].write_bytes(b"\x01" + rng.bytes(999))
    paths["random_pickle"] = tmp_path / "rp.pt"
    paths["random_pickle"].write_bytes(b"\x80\x02" + rng.bytes(998))
    paths["random_zip"] = tmp_path / "rz.pt"
    paths["random_zip"].write_bytes(b"PK\x03\x04" + rng.bytes(996))
    (tmp_path / "empty.pt").write_bytes(b"")
    np.savez(tmp_path / "arrays.npz", w=np.zeros(3))
    np.save(tmp_path / "array.npy", np.zeros(3))
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    (tmp_path / "w.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with zipfile.ZipFile(tmp_path / "two.pt", "w") as archive:
        archive.writestr("a/data.pkl", pickle.dumps({}, protocol=2))
        archive.writestr("b/data.pkl", pickle.dumps({}, protocol=2))
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    refused(paths["random"], "is not a PyTorch file (neither a zip archive nor a pickle)")
    refused(paths["random_pickle"])
    refused(paths["random_zip"])
    refused(tmp_path / "empty.pt", "is empty")
    refused(tmp_path, "it is a folder, not a file")
    refused(tmp_path / "missing.pt", "PyTorch file not found")
    refused(tmp_path / "arrays.npz", "an .npz archive")
    refused(tmp_path / "array.npy", "a NumPy .npy array")
    refused(tmp_path / "w.safetensors", "safetensors")
    refused(tmp_path / "other.zip", "without <folder>/data.pkl")
    refused(tmp_path / "two.pt", "2 data.pkl members")
    refused(tmp_path / "plain.pkl", "not one torch.save writes")


@pytest.mark.parametrize("fmt", FORMATS)
def test_objects_that_are_not_state_dicts(tmp_path, rng, fmt):
    t = tensor(rng, (2,))
    cases = {"list": ([t, t], "holds a list, not a state dict"),
             "tensor": (t, "holds a tensor, not a state dict"),
             "no_tensors": ({"epoch": 3, "optimizer": {"lr": 0.1}},
                            "holds a dict with keys epoch, optimizer but no state dict of tensors"),
             "mixed": ({"w": t, "epoch": 3}, "(its 'epoch' is an int, not a tensor)"),
             "int_key": ({0: t, "b": t}, "the state dict has a key 0, not a name"),
             "inner_int_key": ({"model": {1: t}, "epoch": 2}, "has a key 1, not a name"),
             "many": ({f"k{i}": i for i in range(12)}, "k7, ... (12 in all)")}
    for name, (obj, fragment) in cases.items():
        refused(save(obj, tmp_path / f"{name}.pt", fmt), fragment)
    assert load_torch_state_dict(save({}, tmp_path / "empty.pt", fmt)) == {}
