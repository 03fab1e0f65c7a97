"""Checkpoints: round trip without the building code, atomic writes, no pickle, clear errors."""

import json

import numpy as np
import pytest

from cnnkit.io import (CheckpointError, atomic_write_text, load_checkpoint, load_model,
                       save_checkpoint)
from cnnkit.models import convnet_check


def _model(rng):
    return convnet_check(rng=rng)


def test_round_trip_rebuilds_the_model_without_its_code(tmp_path, rng):
    model = _model(rng).eval()
    x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    path = save_checkpoint(tmp_path / "m.npz", model, extra={"note": "hi", "arr": np.arange(3)})
    loaded = load_model(path)
    assert type(loaded) is type(model) and repr(loaded) == repr(model)
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    ckpt = load_checkpoint(path)
    assert ckpt.extra["note"] == "hi"
    np.testing.assert_array_equal(ckpt.extra["arr"], np.arange(3))
    # the file is a plain npz readable without pickle, with the JSON inside
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(f["__meta__.json"].tobytes())
    assert meta["format"] == "cnnkit-checkpoint" and meta["model"]["type"] == "Sequential"


def test_optimizer_and_nested_state_round_trip(tmp_path, rng):
    from cnnkit import optim
    model = _model(rng)
    opt = optim.Adam(model.named_parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad[...] = rng.standard_normal(p.shape)
    opt.step()
    save_checkpoint(tmp_path / "c.npz", model, optimizer=opt,
                    extra={"nested": {"a": [1, {"b": np.ones(2)}], "rng": rng.bit_generator.state}})
    ckpt = load_checkpoint(tmp_path / "c.npz")
    assert ckpt.optimizer["type"] == "Adam"
    np.testing.assert_array_equal(ckpt.extra["nested"]["a"][1]["b"], np.ones(2))
    assert ckpt.extra["nested"]["rng"] == rng.bit_generator.state
    opt2 = optim.Adam(model.named_parameters(), lr=1e-3)
    opt2.load_state_dict(ckpt.optimizer)


def test_missing_and_corrupt_files_raise_checkpoint_error(tmp_path, rng):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nope.npz"):
        load_checkpoint(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(CheckpointError, match="bad.npz is not a readable cnnkit checkpoint"):
        load_checkpoint(bad)
    good = save_checkpoint(tmp_path / "good.npz", _model(rng))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.npz"):
        load_checkpoint(truncated)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.ones(3))
    with pytest.raises(CheckpointError, match="not a cnnkit checkpoint"):
        load_checkpoint(other)
    single = tmp_path / "single.npz"
    with open(single, "wb") as f:
        np.save(f, np.ones(3))                  # a .npy array under an .npz name
    with pytest.raises(CheckpointError, match=r"single.npz .*single array \(.npy\)"):
        load_checkpoint(single)


def test_pickled_object_arrays_are_refused(tmp_path):
    evil = tmp_path / "evil.npz"
    np.savez(evil, **{"__meta__.json": np.array([{"x": 1}], dtype=object)})
    with pytest.raises(CheckpointError, match="evil.npz"):
        load_checkpoint(evil)


def test_a_missing_model_array_is_named(tmp_path, rng):
    path = save_checkpoint(tmp_path / "m.npz", _model(rng))
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    del arrays["model/0.weight"]
    np.savez(tmp_path / "cut.npz", **arrays)
    with pytest.raises(CheckpointError, match=r"missing .*0\.weight"):
        load_checkpoint(tmp_path / "cut.npz")


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, rng, monkeypatch):
    model = _model(rng)
    path = save_checkpoint(tmp_path / "m.npz", model)
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left behind
    atomic_write_text(tmp_path / "t.txt", "ok")
    assert (tmp_path / "t.txt").read_text() == "ok"
