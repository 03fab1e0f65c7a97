"""Weights across frameworks: safetensors in NumPy against the ``safetensors`` package, PyTorch
state dicts into cnnkit models and back (logits equal to PyTorch's), and the reports when a file
does not fit.

The ``.pt`` tests read PyTorch files through ``cnnkit.weights.torchfile``; they skip, saying so,
while that module does not exist.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
import safetensors
import safetensors.numpy
import safetensors.torch
import torch

import cnnkit.io
from cnnkit import nn
from cnnkit.budget import BudgetError, set_memory_budget
from cnnkit.models.zoo import get_model
from cnnkit.nn.module import build, shapes_only
from cnnkit.weights import (Match, WeightsError, load_safetensors, load_weights, match_state,
                            read_safetensors, read_weights, safetensors_header, weights_format,
                            write_safetensors)
from cnnkit.weights.limits import MAX_DIMS
from tests.twins import randomize_cnnkit, randomize_torch, relative_error, torch_twin

TOL = 1e-5          # max |ours - torch| / max |torch| over the logits, float32
HAS_TORCHFILE = importlib.util.find_spec("cnnkit.weights.torchfile") is not None
needs_torchfile = pytest.mark.skipif(not HAS_TORCHFILE,
                                     reason="cnnkit.weights.torchfile is not written yet")

# zoo name, builder arguments, input (C, H, W): scaled down where the zoo allows
NETS = {"resnet18": ({"width": 8}, (3, 64, 64)),
        "resnet20": ({}, (3, 32, 32)),
        "lenet-bn": ({}, (1, 28, 28))}


def _net(name, rng, **kwargs):
    args, shape = NETS[name]
    return get_model(name, rng=rng, **{**args, **kwargs}), shape


def _twin(model, rng):
    return randomize_torch(torch_twin(model), int(rng.integers(2**31)))


def _torch_state(twin) -> dict:
    return {k: v.detach().numpy() for k, v in twin.state_dict().items()}


def _logits_agree(model, twin, shape, rng, what):
    """cnnkit's eval forward against the twin's on the same random batch of 3."""
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    ours = model.eval()(x)
    with torch.no_grad():
        theirs = twin.eval()(torch.from_numpy(x)).numpy()
    err = relative_error(ours, theirs)
    assert ours.dtype == np.float32
    assert err <= TOL, f"{what}: max |cnnkit - torch| / max |torch| = {err:.2e} > {TOL:g}"


def _one_line(err, path=None):
    message = str(err.value)
    assert "\n" not in message, message
    if path is not None:
        assert str(path) in message, message
    return message


# ============================================================================ safetensors format

def _random_arrays(rng) -> dict:
    """Arrays of every dtype both sides have, 0-d and empty ones included."""
    dtypes = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
              np.uint64, np.uint32, np.uint16, np.uint8, np.bool_, np.complex64]
    shapes = [(), (0,), (3,), (2, 0, 4), (1, 5, 7), (2, 3, 4, 5)]
    arrays = {}
    for i, dtype in enumerate(dtypes):
        for j in rng.choice(len(shapes), 2, replace=False):
            shape = shapes[j]
            if np.dtype(dtype).kind == "b":
                a = rng.random(shape) < 0.5
            elif np.dtype(dtype).kind in "iu":
                info = np.iinfo(dtype)
                a = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
            elif np.dtype(dtype).kind == "c":
                a = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
            else:
                a = (rng.standard_normal(shape) * 100).astype(dtype)
            arrays[f"t{i}.{j}/{np.dtype(dtype).name}"] = np.asarray(a, dtype)
    return arrays


def _assert_same(got: dict, want: dict):
    assert set(got) == set(want)
    for k in want:
        g, w = np.asarray(got[k]), np.asarray(want[k])
        assert g.dtype == w.dtype and g.shape == w.shape, (k, g.dtype, w.dtype, g.shape, w.shape)
        np.testing.assert_array_equal(g, w, err_msg=k)


def test_reads_what_the_reference_numpy_writer_writes(tmp_path, rng):
    arrays = _random_arrays(rng)
    path = tmp_path / "ref.safetensors"
    safetensors.numpy.save_file(arrays, path, metadata={"a": "1", "note": "é"})
    got, meta = read_safetensors(path)
    _assert_same(got, arrays)
    assert meta == {"a": "1", "note": "é"}
    for a in got.values():
        assert a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
    header, meta2 = safetensors_header(path)
    assert meta2 == meta and {k: v[1] for k, v in header.items()} == {
        k: a.shape for k, a in arrays.items()}


def test_reads_what_the_reference_torch_writer_writes_bf16_included(tmp_path, rng):
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    tensors = {"bf16": torch.randn(3, 4, generator=g).to(torch.bfloat16),
               "bf16_scalar": torch.tensor(-1.5e-3, dtype=torch.bfloat16),
               "f16": torch.randn(5, generator=g).half(), "f32": torch.randn(2, 2, generator=g),
               "f64": torch.randn(0, 3, generator=g).double(),
               "i64": torch.randint(-2**40, 2**40, (4,), generator=g),
               "u8": torch.randint(0, 256, (2, 3), generator=g, dtype=torch.uint8),
               "bool": torch.tensor([True, False, True])}
    path = tmp_path / "torch.safetensors"
    safetensors.torch.save_file(tensors, path, metadata={"format": "pt"})
    got, meta = read_safetensors(path)
    assert meta == {"format": "pt"}
    want = {k: (t.float() if t.dtype == torch.bfloat16 else t).numpy() for k, t in tensors.items()}
    _assert_same(got, want)          # bf16 -> float32 is exact
    for a in got.values():
        assert isinstance(a, np.ndarray) and a.flags.writeable and a.flags.aligned
    assert got["bf16"].dtype == np.float32


def test_the_reference_reads_what_we_write(tmp_path, rng):
    arrays = _random_arrays(rng)
    path = write_safetensors(tmp_path / "ours.safetensors", arrays, {"k": "v"})
    _assert_same(safetensors.numpy.load_file(path), arrays)
    torch_arrays = {k: a for k, a in arrays.items()
                    if a.dtype not in (np.uint16, np.uint32, np.uint64)}   # torch's own ops lag
    loaded = safetensors.torch.load_file(path)
    _assert_same({k: loaded[k].numpy() for k in torch_arrays}, torch_arrays)
    with safetensors.safe_open(path, framework="np") as f:
        assert f.metadata() == {"k": "v"} and set(f.keys()) == set(arrays)
        name = next(iter(arrays))
        np.testing.assert_array_equal(f.get_tensor(name), arrays[name])


def test_writes_the_callers_order_aligned_data_and_a_padded_header(tmp_path):
    arrays = {"z": np.arange(3, dtype=np.float32), "n": np.array(7, np.int64),
              "a": np.ones((2, 3), np.float16).T, "big": np.arange(4, dtype=">i4"),
              "b": np.array([True])}
    path = write_safetensors(tmp_path / "o.safetensors", arrays)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0 and raw[8 + n - 1:8 + n] in (b" ", b"}")
    header = json.loads(raw[8:8 + n])
    assert list(header) == list(arrays)
    for info in header.values():
        itemsize = {"F32": 4, "I64": 8, "F16": 2, "I32": 4, "BOOL": 1}[info["dtype"]]
        assert info["data_offsets"][0] % itemsize == 0
    got, meta = read_safetensors(path)
    assert list(got) == list(arrays) and meta == {}
    _assert_same(got, {k: np.asarray(a).astype(np.asarray(a).dtype.newbyteorder("="))
                       for k, a in arrays.items()})
    assert got["n"].shape == ()


def test_the_write_is_atomic(tmp_path):
    path = write_safetensors(tmp_path / "w.safetensors", {"a": np.zeros(3, np.float32)})
    before = path.read_bytes()
    with pytest.raises(WeightsError):
        write_safetensors(path, {"a": np.zeros(3, np.float32), "b": np.array(["x"])})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


@pytest.mark.parametrize("arrays, metadata, error, text", [
    ({"a": np.array([object()])}, None, WeightsError, "Python objects"),
    ({"a": np.array(["text"])}, None, WeightsError, "dtype <U4"),
    ({"a": np.zeros(2, np.complex128)}, None, WeightsError, "complex128"),
    ({1: np.zeros(2)}, None, TypeError, "names must be strings"),
    ({"__metadata__": np.zeros(2)}, None, TypeError, "names must be strings"),
    ({"a": np.zeros(2)}, {"k": 1}, TypeError, "metadata must map strings"),
    ([np.zeros(2)], None, TypeError, "must be a dict"),
])
def test_write_refuses_what_the_format_cannot_hold(tmp_path, arrays, metadata, error, text):
    with pytest.raises(error, match=text) as err:
        write_safetensors(tmp_path / "x.safetensors", arrays, metadata)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "x.safetensors").exists()


# ---------------------------------------------------------------------------- hostile files

def _file(header, data=b"", *, length=None, pad=True) -> bytes:
    """A safetensors file from a header (dict, or raw bytes) and a data buffer; ``length``
    overrides the header-length field."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def _t(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


HOSTILE = {
    "empty": (b"", "the file is empty"),
    "too short": (b"\x01\x02\x03", "too short"),
    "huge header length": (struct.pack("<Q", 2**62) + b"{}", "more than the format's"),
    "header past the end": (_file({"a": _t()}, bytes(8), length=4096), "truncated"),
    "not utf-8": (_file(b"{\xff\xfe}"), "not UTF-8"),
    "not json": (_file(b"{not json}"), "not valid JSON"),
    "json list": (_file(b"[1, 2]"), "does not start with '{'"),
    "json nan": (_file(b'{"__metadata__": {"a": NaN}}'), "not valid JSON"),
    "duplicate name": (_file(b'{"a": ' + json.dumps(_t()).encode() + b', "a": '
                             + json.dumps(_t()).encode() + b"}", bytes(8)), "names 'a' twice"),
    "dtype not a string": (_file({"a": {**_t(), "dtype": ["F32"]}}, bytes(8)),
                           "not a name such as 'F32'"),
    "unknown dtype": (_file({"a": _t("F31")}, bytes(8)), "unknown dtype 'F31'"),
    "fp8": (_file({"a": _t("F8_E4M3", (2,), (0, 2))}, bytes(2)), "F8_E4M3, a 8-bit float"),
    "negative dim": (_file({"a": _t(shape=(-2,))}, bytes(8)), "not a non-negative integer"),
    "float dim": (_file({"a": _t(shape=(2.0,))}, bytes(8)), "not a non-negative integer"),
    "bool dim": (_file({"a": _t(shape=(True, 2))}, bytes(8)), "not a non-negative integer"),
    "shape not a list": (_file({"a": {**_t(), "shape": 2}}, bytes(8)), "not a list of sizes"),
    "three offsets": (_file({"a": _t(offsets=(0, 4, 8))}, bytes(8)), "not [begin, end]"),
    "offsets backwards": (_file({"a": _t(shape=(0,), offsets=(8, 0))}, bytes(8)), "end before"),
    "negative offset": (_file({"a": _t(offsets=(-8, 0))}, bytes(8)), "not a non-negative"),
    "wrong size for shape": (_file({"a": _t(shape=(3,))}, bytes(8)), "takes 12 bytes but"),
    "huge shape": (_file({"a": _t(shape=(2**40, 2**40))}, bytes(8)),
                   "spans more than 2**63 - 1 bytes"),
    "empty but past any array": (_file({"a": _t(shape=(2**62, 0), offsets=(0, 0))}),
                                 "more than any array can hold"),
    "33 dims": (_file({"a": _t(shape=(1,) * 33, offsets=(0, 4))}, bytes(4)),
                "its shape [1, 1, 1, 1, 1, 1, ... (33 sizes)] has 33 dimensions, more than 32"),
    # the count is checked before any size is read: the message is about the dimensions, not 'x'
    "100,000 dims, none a size": (_file({"a": _t(shape=("x",) * 100_000, offsets=(0, 4))},
                                        bytes(4)), "has 100,000 dimensions, more than 32"),
    "overlap": (_file({"a": _t(), "b": _t(offsets=(4, 12))}, bytes(12)), "overlap"),
    "gap": (_file({"a": _t(), "b": _t(offsets=(12, 20))}, bytes(20)), "gap of 4 unused bytes"),
    "not from zero": (_file({"a": _t(offsets=(8, 16))}, bytes(16)), "gap of 8"),
    "offsets past the end": (_file({"a": _t(shape=(4,), offsets=(0, 16))}, bytes(8)),
                             "truncated"),
    "trailing bytes": (_file({"a": _t()}, bytes(12)), "4 bytes after the last tensor"),
    "entry not an object": (_file({"a": [1, 2]}, b""), "not an object with dtype"),
    "entry lacks offsets": (_file({"a": {"dtype": "F32", "shape": [0]}}), "lacks data_offsets"),
    "metadata not strings": (_file({"__metadata__": {"epoch": 3}}), "'epoch' is a int"),
    "metadata a list": (_file({"__metadata__": ["a"]}), "not an object of strings"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_files_fail_in_one_line_naming_the_file(tmp_path, name):
    raw, text = HOSTILE[name]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(raw)
    with pytest.raises(WeightsError) as err:
        read_safetensors(path)
    message = _one_line(err, path)
    assert text in message, message
    with pytest.raises(WeightsError):
        safetensors_header(path)


REFERENCE_ALSO_REFUSES = [n for n in HOSTILE if n not in ("duplicate name", "fp8",
                                                         "json nan", "33 dims")]


def test_the_dimension_cap_is_the_same_in_both_readers_and_counted_first(tmp_path):
    """MAX_DIMS dimensions read, one more is refused, and a shape far over the cap is refused
    on its count alone: its sizes are never read (they are not numbers here), and the message
    shows a few of them and the count, never all of them."""
    data = np.arange(6, dtype=np.float32).reshape((2, 3) + (1,) * (MAX_DIMS - 2))
    path = write_safetensors(tmp_path / "most.safetensors", {"w": data})
    np.testing.assert_array_equal(read_safetensors(path)[0]["w"], data)
    for dims in (MAX_DIMS + 1, 100_000):
        path = tmp_path / f"dims{dims}.safetensors"
        path.write_bytes(_file({"w": _t(shape=["x"] * dims, offsets=(0, 4))}, bytes(4)))
        with pytest.raises(WeightsError) as err:
            read_safetensors(path)
        message = _one_line(err, path)
        assert f"has {dims:,} dimensions, more than {MAX_DIMS}" in message, message
        assert f"({dims:,} sizes)]" in message and len(message) < len(str(path)) + 200, message
        assert "non-negative" not in message, message


LONG = "n" * 1_000_000
_LONG_FILES = {
    "name": {LONG: _t("F31")}, "dtype": {"a": _t(LONG)},
    "shape": {"a": _t(shape=[7] * 31 + [LONG])}, "shape not a list": {"a": _t(shape=LONG)},
    "offsets": {"a": {**_t(), "data_offsets": [LONG, 0]}},
    "offset list": {"a": {**_t(), "data_offsets": [0] * 100_000}},
    "metadata key": {"__metadata__": {LONG: 1}},
    "huge integer": {"a": _t(shape=[int("9" * 4000), 0], offsets=(0, 0))},
}


@pytest.mark.parametrize("name", list(_LONG_FILES))
def test_messages_show_a_files_long_values_cut_short(tmp_path, name):
    """A megabyte name, dtype, size or key in a header is refused in a line of a few hundred
    characters: each message formats at most the start of what the file holds."""
    path = tmp_path / "long.safetensors"
    path.write_bytes(_file(_LONG_FILES[name], bytes(8)))
    with pytest.raises(WeightsError) as err:
        read_safetensors(path)
    assert len(_one_line(err, path)) < len(str(path)) + 300, str(err.value)[:1000]


@pytest.mark.parametrize("name", REFERENCE_ALSO_REFUSES)
def test_the_reference_refuses_them_too(tmp_path, name):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(HOSTILE[name][0])
    with pytest.raises(Exception):
        safetensors.numpy.load_file(path)


def test_random_bytes_and_truncations_fail_cleanly(tmp_path, rng):
    good = write_safetensors(tmp_path / "good.safetensors",
                             {"w": rng.standard_normal((4, 5)).astype(np.float32),
                              "n": np.array(3, np.int64)}, {"m": "x"}).read_bytes()
    path = tmp_path / "bad.safetensors"
    for size in [0, 4, 8, 9, 20, len(good) // 2, len(good) - 1]:
        path.write_bytes(good[:size])
        with pytest.raises(WeightsError) as err:
            read_safetensors(path)
        _one_line(err, path)
    for _ in range(30):
        path.write_bytes(rng.bytes(int(rng.integers(1, 200))))
        with pytest.raises(WeightsError) as err:
            read_safetensors(path)
        _one_line(err, path)
    for _ in range(30):             # one flipped byte in the header: an error or the same file
        raw = bytearray(good)
        raw[int(rng.integers(8, 8 + struct.unpack("<Q", good[:8])[0]))] ^= 1 << int(
            rng.integers(8))
        path.write_bytes(bytes(raw))
        try:
            read_safetensors(path)
        except WeightsError as err:
            assert "\n" not in str(err) and str(path) in str(err)


def test_other_kinds_of_file_are_named(tmp_path):
    torch.save({"a": torch.zeros(2)}, tmp_path / "m.pt")
    torch.save({"a": torch.zeros(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    np.savez(tmp_path / "a.npz", a=np.zeros(2))
    np.save(tmp_path / "a.npy", np.zeros(2))
    for name, text in [("m.pt", "zip archive"), ("legacy.pt", "pickle"), ("a.npz", "zip archive"),
                       ("a.npy", "single NumPy array")]:
        with pytest.raises(WeightsError) as err:
            read_safetensors(tmp_path / name)
        assert text in _one_line(err, tmp_path / name)
    for path, text in [(tmp_path / "none.safetensors", "not found"), (tmp_path, "is a folder")]:
        with pytest.raises(WeightsError, match=text):
            read_safetensors(path)


def test_the_memory_budget_is_checked_before_the_data_is_read(tmp_path):
    path = write_safetensors(tmp_path / "b.safetensors", {"w": np.zeros((64, 64), np.float32)})
    set_memory_budget(1000)
    try:
        with pytest.raises(BudgetError, match="the 1 tensors of"):
            read_safetensors(path)
        safetensors_header(path)                 # the header alone is fine
    finally:
        set_memory_budget(None)


# ============================================================================ PyTorch <-> cnnkit

@pytest.mark.parametrize("name", list(NETS))
def test_a_torch_safetensors_file_gives_torchs_logits(tmp_path, rng, name):
    model, shape = _net(name, rng)
    twin = _twin(model, rng)
    path = tmp_path / f"{name}.safetensors"
    safetensors.torch.save_file(twin.state_dict(), path)
    match = load_weights(model, path)
    assert match.ok and match.describe().endswith(f"all {len(twin.state_dict())} arrays fit "
                                                  f"the model")
    state = model.state_dict()
    for k, v in twin.state_dict().items():       # buffers too, num_batches_tracked int64
        assert state[k].dtype == v.numpy().dtype
        np.testing.assert_array_equal(state[k], v.numpy(), err_msg=k)
    _logits_agree(model, twin, shape, rng, f"{name} from safetensors.torch")
    model2, _ = _net(name, rng)
    load_safetensors(model2, path)
    _logits_agree(model2, twin, shape, rng, f"{name} through load_safetensors")


@needs_torchfile
@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_torch_pt_file_gives_torchs_logits(tmp_path, rng, name, legacy):
    model, shape = _net(name, rng)
    twin = _twin(model, rng)
    path = tmp_path / f"{name}.pt"
    torch.save(twin.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    assert weights_format(path) == ("torch-legacy" if legacy else "torch-zip")
    state = cnnkit.io.load_torch_state_dict(path)
    assert list(state) == list(twin.state_dict())
    model.load_state_dict(state)
    _logits_agree(model, twin, shape, rng, f"{name} from torch.save (legacy={legacy})")
    model2, _ = _net(name, rng)
    assert load_weights(model2, path).ok
    _logits_agree(model2, twin, shape, rng, f"{name} through load_weights")


@pytest.mark.parametrize("name", list(NETS))
def test_cnnkit_weights_load_into_the_torch_twin(tmp_path, rng, name):
    model, shape = _net(name, rng)
    randomize_cnnkit(model, rng)
    path = cnnkit.io.save_safetensors(model, tmp_path / f"{name}.safetensors",
                                      metadata={"epoch": "3"})
    state = safetensors.torch.load_file(path)
    twin = torch_twin(model)
    twin.load_state_dict(state, strict=True)
    for k, v in model.state_dict().items():
        assert twin.state_dict()[k].numpy().dtype == v.dtype
    _logits_agree(model, twin, shape, rng, f"{name} into torch through save_safetensors")
    with safetensors.safe_open(path, framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and meta["epoch"] == "3"
    rebuilt = build(json.loads(meta["cnnkit.model"]))
    assert repr(rebuilt) == repr(model)
    assert load_safetensors(rebuilt, path).ok            # and back into cnnkit, by name
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.eval()(x), model(x))


def test_a_net_of_every_twinned_layer_round_trips(tmp_path, rng):
    """The layers the zoo nets above do not use, in a small net, both directions."""
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, groups=3, rng=rng), nn.LeakyReLU(0.1),
        nn.LocalResponseNorm(3, alpha=1e-2, beta=0.75, k=2.0),
        nn.Concat(nn.Sequential(nn.Conv2d(6, 4, 1, rng=rng), nn.Sigmoid()),
                  nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), nn.Tanh()),
                  nn.MaxPool2d(3, stride=1, padding=1)),
        nn.Residual(nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, dilation=1, rng=rng),
                                  nn.BatchNorm2d(16))),
        nn.Residual(nn.Conv2d(16, 24, 3, stride=2, padding=1, strict=False, rng=rng),
                    nn.ZeroPadShortcut(16, 24, 2)),
        nn.MaxPool2d(2, strict=False), nn.Flatten(), nn.Linear(24 * 2 * 2, 12, rng=rng),
        nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.5), nn.Linear(12, 5, rng=rng))
    shape = (3, 9, 9)
    twin = _twin(model, rng)
    path = tmp_path / "t.safetensors"
    safetensors.torch.save_file(twin.state_dict(), path)
    assert load_weights(model, path).ok
    _logits_agree(model, twin, shape, rng, "every layer, torch -> cnnkit")
    randomize_cnnkit(model, rng)
    cnnkit.io.save_safetensors(model, path)
    twin.load_state_dict(safetensors.torch.load_file(path), strict=True)
    _logits_agree(model, twin, shape, rng, "every layer, cnnkit -> torch")


@pytest.mark.slow
@pytest.mark.parametrize("name, shape", [("resnet18", (3, 224, 224)),
                                         ("resnet20", (3, 32, 32)), ("lenet-bn", (1, 28, 28))])
def test_full_size_nets_both_ways(tmp_path, rng, name, shape):
    model = get_model(name, rng=rng)
    twin = _twin(model, rng)
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(twin.state_dict(), path)
    assert load_weights(model, path).ok
    _logits_agree(model, twin, shape, rng, f"full-size {name}, torch -> cnnkit")
    if HAS_TORCHFILE:
        torch.save(twin.state_dict(), tmp_path / "w.pt")
        model2 = get_model(name, rng=rng)
        assert load_weights(model2, tmp_path / "w.pt").ok
        _logits_agree(model2, twin, shape, rng, f"full-size {name}, .pt -> cnnkit")
    randomize_cnnkit(model, rng)
    cnnkit.io.save_safetensors(model, path)
    twin.load_state_dict(safetensors.torch.load_file(path), strict=True)
    _logits_agree(model, twin, shape, rng, f"full-size {name}, cnnkit -> torch")


# ---------------------------------------------------------------------------- by position

def _torchvision_name(key: str) -> str:
    """cnnkit resnet18's name -> torchvision's: 0/1 are the stem's conv1/bn1, 4..11 the blocks
    of layer1..4, 14 the fc; in a block, body.0/1/3/4 are conv1/bn1/conv2/bn2 and shortcut.0/1
    the downsample."""
    parts = key.split(".")
    index = int(parts[0])
    if index in (0, 1):
        return f"{('conv1', 'bn1')[index]}.{parts[1]}"
    if index == 14:
        return f"fc.{parts[1]}"
    _, _, branch, layer, leaf = parts                # "0" is the Residual of Sequential(., ReLU)
    where = {"body.0": "conv1", "body.1": "bn1", "body.3": "conv2", "body.4": "bn2",
             "shortcut.0": "downsample.0", "shortcut.1": "downsample.1"}[f"{branch}.{layer}"]
    return f"layer{(index - 4) // 2 + 1}.{(index - 4) % 2}.{where}.{leaf}"


def _torchvision_state(twin) -> dict:
    state = {_torchvision_name(k): v for k, v in _torch_state(twin).items()}
    assert len(state) == len(twin.state_dict())
    return state


def test_the_torchvision_renaming_is_torchvisions():
    names = list(_torchvision_state(torch_twin(get_model("resnet18", width=8))))
    assert names[:6] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                         "bn1.running_var", "bn1.num_batches_tracked"]
    assert names[6] == "layer1.0.conv1.weight" and names[-2:] == ["fc.weight", "fc.bias"]
    assert "layer2.0.downsample.0.weight" in names and "layer4.1.bn2.running_var" in names
    assert len(names) == 122                          # torchvision's resnet18 state dict


def test_torchvision_names_load_by_order(tmp_path, rng):
    model, shape = _net("resnet18", rng)
    twin = _twin(model, rng)
    state = _torchvision_state(twin)
    match = match_state(model, state, by="name")
    assert not match.ok and len(match.unexpected) == 122
    assert len(match.missing) == 122 - 20          # the step counts are never missing
    assert 'by="order"' in match.describe() and "\n" not in match.describe()
    path = write_safetensors(tmp_path / "tv.safetensors", state)    # keeps the order
    with pytest.raises(WeightsError, match='by="order"'):
        load_weights(model, path, by="name")
    match = load_weights(model, path, by="order")
    assert match.ok and match.file_names["4.0.body.0.weight"] == "layer1.0.conv1.weight"
    _logits_agree(model, twin, shape, rng, "torchvision names by order")
    # the default pairs by position when no name is shared, and says so
    fresh, _ = _net("resnet18", rng)
    match = load_weights(fresh, path)
    assert match.ok and match.by == "order" and "paired by position" in match.describe()
    _logits_agree(fresh, twin, shape, rng, "torchvision names, by=auto")


@needs_torchfile
def test_torchvision_names_load_by_order_from_a_pt_file(tmp_path, rng):
    model, shape = _net("resnet18", rng)
    twin = _twin(model, rng)
    torch.save({k: torch.from_numpy(v) for k, v in _torchvision_state(twin).items()},
               tmp_path / "resnet18.pth")
    assert load_weights(model, tmp_path / "resnet18.pth", by="order").ok
    _logits_agree(model, twin, shape, rng, "torchvision names by order from .pth")


def test_by_order_says_where_the_order_breaks(tmp_path, rng):
    model, _ = _net("resnet18", rng)
    state = _torchvision_state(_twin(model, rng))
    before = model.state_dict()
    # the reference writer stores names alphabetically: the order is lost
    path = tmp_path / "sorted.safetensors"
    safetensors.numpy.save_file(state, path)
    with pytest.raises(WeightsError) as err:
        load_weights(model, path, by="order")
    message = _one_line(err, path)
    assert "alphabetical order" in message and "entry 0" in message, message
    assert "the file's bn1.num_batches_tracked () pairs with the model's 0.weight (8, 3, 7, " \
           "7)" in message
    # one entry dropped: the counts differ, and the first pair off is named
    items = list(state.items())
    del items[0]
    with pytest.raises(WeightsError) as err:
        load_weights(model, write_safetensors(tmp_path / "short.safetensors", dict(items)),
                     by="order", strict=False)
    message = _one_line(err)
    assert "the file has 121 arrays and the model 122" in message, message
    assert "entry 0 (counting from 0): the file's bn1.weight (8,) pairs with the model's " \
           "0.weight (8, 3, 7, 7)" in message, message
    for k, v in model.state_dict().items():           # nothing changed
        np.testing.assert_array_equal(v, before[k])


def test_by_order_without_step_counts_in_the_file(rng):
    model, _ = _net("resnet18", rng)
    twin = _twin(model, rng)
    state = {k: v for k, v in _torchvision_state(twin).items()
             if not k.endswith("num_batches_tracked")}
    before = model.state_dict()
    assert 'by="order"' in match_state(model, state, by="name").describe()
    assert match_state(model, state).by == "order"              # what by="auto" falls back to
    match = match_state(model, state, by="order")
    assert match.ok and match.model_count == len(state) == 102
    model.load_state_dict(match.state, strict=False)
    assert model.state_dict()["1.num_batches_tracked"] == before["1.num_batches_tracked"]


# ---------------------------------------------------------------------------- reports

def test_missing_unexpected_and_mismatched_are_reported(tmp_path, rng):
    model, _ = _net("lenet-bn", rng)
    state = _torch_state(_twin(model, rng))
    del state["1.running_var"], state["0.weight"]
    state["extra.weight"] = np.zeros(3, np.float32)
    state["9.weight"] = np.zeros((120, 401), np.float32)
    path = write_safetensors(tmp_path / "m.safetensors", state)
    before = model.state_dict()
    with pytest.raises(WeightsError) as err:
        load_weights(model, path)
    message = _one_line(err, path)
    assert "2 missing (0.weight, 1.running_var)" in message, message
    assert "1 unexpected (extra.weight)" in message, message
    assert "1 of another shape (first 9.weight: (120, 401) in the file, (120, 400) in the " \
           "model)" in message, message
    listing = err.value.match.problems()
    assert listing.splitlines()[0] == message
    assert "missing from the file (2):\n  0.weight\n  1.running_var" in listing
    assert "unexpected in the file (1):\n  extra.weight" in listing
    assert "shapes that differ (1):\n  9.weight: (120, 401) in the file, (120, 400) in the " \
           "model" in listing
    for k, v in model.state_dict().items():           # nothing changed
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    # non-strict: the shape mismatch is still an error, and still nothing changes
    with pytest.raises(WeightsError, match="another shape"):
        load_weights(model, path, strict=False)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_non_strict_loads_what_fits_and_keeps_the_rest(tmp_path, rng):
    model, _ = _net("lenet-bn", rng)
    state = _torch_state(_twin(model, rng))
    del state["1.running_var"]
    state["extra"] = np.ones(2, np.float32)
    before = model.state_dict()
    match = load_weights(model, write_safetensors(tmp_path / "p.safetensors", state),
                         strict=False)
    assert not match.ok and match.fits(strict=False)
    assert match.missing == ["1.running_var"] and match.unexpected == ["extra"]
    after = model.state_dict()
    np.testing.assert_array_equal(after["1.running_var"], before["1.running_var"])
    np.testing.assert_array_equal(after["0.weight"], state["0.weight"])


def test_dtypes_are_cast_but_an_integer_never_becomes_a_weight(tmp_path, rng):
    model, _ = _net("lenet-bn", rng)
    state = _torch_state(_twin(model, rng))
    wide = {k: (v.astype(np.float64) if v.dtype == np.float32 else v.astype(np.int32))
            for k, v in state.items()}
    path = write_safetensors(tmp_path / "f64.safetensors", wide)
    assert load_weights(model, path).ok
    after = model.state_dict()
    assert after["0.weight"].dtype == np.float32 and after["1.num_batches_tracked"].dtype == \
        np.int64
    np.testing.assert_array_equal(after["0.weight"], state["0.weight"])
    assert after["1.num_batches_tracked"] == state["1.num_batches_tracked"]
    bad = dict(state, **{"9.bias": np.arange(120, dtype=np.int64)})
    with pytest.raises(WeightsError) as err:
        load_weights(model, write_safetensors(tmp_path / "int.safetensors", bad))
    message = _one_line(err)
    assert "9.bias: int64 in the file, float32 in the model" in message, message
    with pytest.raises(WeightsError, match="9.bias"):
        load_weights(model, tmp_path / "int.safetensors", strict=False)


def test_the_classifier_size_says_which_num_classes(tmp_path, rng):
    file_model = get_model("lenet-bn", num_classes=7, rng=rng)
    path = tmp_path / "seven.safetensors"
    safetensors.torch.save_file(_twin(file_model, rng).state_dict(), path)
    model, _ = _net("lenet-bn", rng)
    with pytest.raises(WeightsError) as err:
        load_weights(model, path)
    message = _one_line(err, path)
    assert "the file's classifier has 7 outputs; build the model with num_classes=7" in message
    assert err.value.match.num_classes == 7
    assert load_weights(get_model("lenet-bn", num_classes=7), path).ok
    # another mismatch too: no such hint
    state = safetensors.numpy.load_file(path)
    state["0.weight"] = np.zeros((6, 1, 3, 3), np.float32)
    assert match_state(model, state).num_classes is None


def test_long_lists_are_cut(rng):
    model, _ = _net("resnet18", rng)
    match = match_state(model, {})
    assert len(match.missing) == 122 - 20          # the step counts are never missing
    listing = match.problems(limit=5)
    assert "missing from the file (102):" in listing and "  ... and 97 more" in listing
    assert len(listing.splitlines()) == 1 + 1 + 5 + 1
    assert "102 missing (0.weight, 1.weight, 1.bias, ...)" in match.describe()


def test_a_state_dict_without_step_counts_is_complete(rng):
    model, _ = _net("lenet-bn", rng)
    state = {k: v for k, v in _torch_state(_twin(model, rng)).items()
             if "num_batches_tracked" not in k}
    assert match_state(model, state).ok


def test_a_wrapper_prefix_is_pointed_out(rng):
    model, _ = _net("lenet-bn", rng)
    state = {f"module.{k}": v for k, v in _torch_state(_twin(model, rng)).items()}
    assert "starts with 'module.'" in match_state(model, state, by="name").describe()


def test_match_state_refuses_bad_arguments(rng):
    model, _ = _net("lenet-bn", rng)
    with pytest.raises(ValueError, match="by must be one of"):
        match_state(model, {}, by="shape")
    with pytest.raises(TypeError, match="keys must be strings"):
        match_state(model, {0: np.zeros(1)})
    assert isinstance(match_state(model, {}), Match)


# ---------------------------------------------------------------------------- files and kinds

def test_the_kind_comes_from_the_content_not_the_suffix(tmp_path, rng):
    model, shape = _net("lenet-bn", rng)
    twin = _twin(model, rng)
    misnamed = tmp_path / "weights.pt"                  # a safetensors file called .pt
    safetensors.torch.save_file(twin.state_dict(), misnamed)
    assert weights_format(misnamed) == "safetensors"
    assert load_weights(model, misnamed).ok
    _logits_agree(model, twin, shape, rng, "safetensors named .pt")
    # a cnnkit checkpoint, and a plain .npz of arrays
    randomize_cnnkit(model, rng)
    ckpt = cnnkit.io.save_checkpoint(tmp_path / "ckpt.npz", model)
    np.savez(tmp_path / "plain.npz", **model.state_dict())
    for path, kind in [(ckpt, "checkpoint"), (tmp_path / "plain.npz", "npz")]:
        assert weights_format(path) == kind
        other, _ = _net("lenet-bn", rng)
        assert load_weights(other, path).ok
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(other.state_dict()[k], v)
    assert list(read_weights(ckpt)) == list(model.state_dict())


@needs_torchfile
def test_a_pt_file_named_safetensors_loads(tmp_path, rng):
    model, shape = _net("lenet-bn", rng)
    twin = _twin(model, rng)
    torch.save(twin.state_dict(), tmp_path / "w.safetensors")
    assert weights_format(tmp_path / "w.safetensors") == "torch-zip"
    assert load_weights(model, tmp_path / "w.safetensors").ok
    _logits_agree(model, twin, shape, rng, ".pt named .safetensors")


@pytest.mark.parametrize("name, content, text", [
    ("empty.pt", b"", "is empty"),
    ("noise.bin", b"\x01\x02garbage bytes here", "of no format cnnkit reads"),
    ("a.npy", None, "single NumPy array"),
    ("bad.zip", b"PK\x03\x04 not really a zip", "not a readable one"),
    ("other.zip", None, "neither a PyTorch state dict"),
    ("noise.safetensors", b"\x01\x02garbage bytes here", "not a safetensors file"),
])
def test_unreadable_files_fail_in_one_line(tmp_path, rng, name, content, text):
    import zipfile

    path = tmp_path / name
    if name == "a.npy":
        np.save(path, np.zeros(3))
    elif name == "other.zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "hello")
    else:
        path.write_bytes(content)
    model, _ = _net("lenet-bn", rng)
    with pytest.raises(WeightsError) as err:
        load_weights(model, path)
    assert text in _one_line(err, path)
    for missing, text in [(tmp_path / "nope.pt", "not found"), (tmp_path, "is a folder")]:
        with pytest.raises(WeightsError, match=text):
            load_weights(model, missing)


def test_a_corrupt_checkpoint_is_a_weights_error(tmp_path, rng):
    np.savez(tmp_path / "c.npz", **{"__meta__.json": np.frombuffer(b"{bad", np.uint8)})
    model, _ = _net("lenet-bn", rng)
    with pytest.raises(WeightsError, match="metadata is corrupt"):
        load_weights(model, tmp_path / "c.npz")


def test_a_model_built_without_weights_loads_only_complete_files(tmp_path, rng):
    model, shape = _net("lenet-bn", rng)
    twin = _twin(model, rng)
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(twin.state_dict(), path)
    with shapes_only():
        skeleton = get_model("lenet-bn")
    assert load_weights(skeleton, path).ok
    _logits_agree(skeleton, twin, shape, rng, "into a shapes_only model")
    with shapes_only():
        skeleton = get_model("lenet-bn")
    state = safetensors.numpy.load_file(path)
    del state["0.weight"]
    with pytest.raises(WeightsError, match="would stay without values"):
        load_weights(skeleton, write_safetensors(tmp_path / "part.safetensors", state),
                     strict=False)
    with pytest.raises(RuntimeError, match="placeholder"):
        cnnkit.io.save_safetensors(skeleton, tmp_path / "x.safetensors")


def test_cnnkit_io_exports_and_imports_without_torchfile():
    for name in ("save_safetensors", "load_safetensors", "load_torch_state_dict"):
        assert name in cnnkit.io.__all__ and callable(getattr(cnnkit.io, name))
    code = ("import sys; sys.modules['cnnkit.weights.torchfile'] = None; "
            "import cnnkit.io, cnnkit.weights; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_match_shows_as_its_pairing_not_its_arrays():
    """A notebook shows a cell's last value by its repr: a Match is one line, not a state dict."""
    from cnnkit.models import build_model
    from cnnkit.weights.transfer import match_state
    model, _ = build_model("CONV3-4 -> RELU -> FC-3", (1, 6, 5))
    state = {k: np.full(v.shape, 0.123456, v.dtype) for k, v in model.state_dict().items()}
    text = repr(match_state(model, state))
    assert "\n" not in text and "0.123456" not in text and "fit the model" in text
