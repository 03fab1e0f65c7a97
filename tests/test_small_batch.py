"""The small-batch experiment (the group-norm paper's Figure 1) at a tiny scale: what it writes,
the rate it trains each batch size at, the batches it cuts, the same initial weights for every
norm, another data source through --data, and its settings refused in one line."""

import json

import numpy as np
import pytest

from cnnkit.cli import main
from cnnkit.experiments import run_experiment, small_batch

#: 63 training images: batch 2 leaves one out of each epoch, batch 4 three.
TINY = small_batch.Config(batch_sizes=(4, 2), channels=(4, 8), groups=2, train_size=63,
                          test_size=40, epochs=2, drop_at=0.5)


def run(config, tmp_path, **kwargs):
    lines = []
    results = run_experiment("small-batch", out=tmp_path, config=config, progress=False,
                             log=lines.append, **kwargs)
    return results, lines


def test_a_tiny_run_writes_every_norm_at_every_batch_size(tmp_path):
    results, lines = run(TINY, tmp_path)
    folder = tmp_path / "small-batch"
    saved = json.loads((folder / "results.json").read_text())
    assert saved == json.loads(json.dumps({k: v for k, v in results.items() if k != "folder"}))
    png = (folder / "error_vs_batch_size.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert sorted(p.name for p in folder.iterdir()) == ["error_vs_batch_size.png", "results.json"]

    r = saved["results"]
    assert r["batch_sizes"] == [2, 4]                         # sorted
    assert r["lr"] == pytest.approx([0.02 * 2 / 32, 0.02 * 4 / 32], rel=1e-12)
    assert r["base_lr"] == 0.02 and r["reference_batch"] == 32
    assert r["images_seen"] == 2 * 63 and r["image_shape"] == [1, 28, 28] and r["classes"] == 10
    assert list(r["nets"]) == ["bn", "gn", "ln", "none"]
    for net in r["nets"].values():
        assert net["iterations_per_epoch"] == [31, 15]        # floor(63 / B)
        assert net["iterations"] == [62, 30]
        assert all(0 <= e <= 1 for e in net["test_error"])
        assert all(np.isfinite(net["final_loss"]))
    assert saved["settings"]["data"] == "mnist" and saved["settings"]["base_lr"] == 0.02

    # the paper's claims, with the largest batch (4) as the reference without 32
    targets = [t["target"] for t in saved["targets"]]
    assert len(targets) == 4
    assert targets[0].startswith("GroupNorm (2 groups) is flat") and "at 4" in targets[0]
    assert targets[1].startswith("LayerNorm is flat")
    assert "over GroupNorm's, from batch 4 to 2" in targets[2]
    assert targets[3].startswith("the lines cross: BatchNorm is at least as good as GroupNorm "
                                 "at batch 4")
    assert any("GroupNorm (2 groups) error %" in line for line in lines)
    assert sum(line.lstrip().startswith(("2 ", "4 ")) for line in lines) == 2


def test_each_batch_size_trains_at_its_scaled_rate_on_whole_batches(monkeypatch):
    """lr(B) = base_lr * B / 32 until drop_at of the iterations, a tenth of it after; every
    step takes B images; floor(N / B) steps an epoch."""
    seen = []
    real = small_batch.train_step

    def spy(model, optimizer, x, y):
        seen.append((optimizer.lr, len(x), len(y)))
        return real(model, optimizer, x, y)

    monkeypatch.setattr(small_batch, "train_step", spy)
    config = small_batch.Config(norms=("bn",), channels=(2,), train_size=23, epochs=3,
                                base_lr=0.4, drop_at=0.75)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((23, 1, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, 23)

    class Bar:
        def update(self):
            pass

    for b in (2, 8):
        seen.clear()
        model = small_batch.build("bn", config, (1, 4, 4), 3, np.random.default_rng(1))
        got = small_batch.train(model, config, b, x, y, np.random.default_rng(2), Bar())
        steps = 3 * (23 // b)
        assert got["iterations"] == len(seen) == steps and got["iterations_per_epoch"] == 23 // b
        assert all(n == m == b for _, n, m in seen)           # the short batch is dropped
        drop = int(np.ceil(0.75 * steps))
        assert [lr for lr, _, _ in seen] == pytest.approx(
            [0.4 * b / 32] * drop + [0.4 * b / 320] * (steps - drop), rel=1e-12)
    assert small_batch.Config(base_lr=0.1).lr(2) == pytest.approx(0.1 / 16, rel=1e-15)


def test_every_norm_starts_from_the_same_weights():
    config = small_batch.Config(channels=(4, 8), groups=2)
    nets = {norm: small_batch.build(norm, config, (3, 10, 12), 5, np.random.default_rng(7))
            for norm in small_batch.NORMS}
    kinds = {norm: [type(m).__name__ for m in net] for norm, net in nets.items()}
    assert kinds["bn"][:2] == ["Conv2d", "BatchNorm2d"]
    assert kinds["gn"][:2] == kinds["ln"][:2] == ["Conv2d", "GroupNorm"]
    assert (nets["gn"][1].num_groups, nets["ln"][1].num_groups) == (2, 1)
    assert kinds["none"][:2] == ["Conv2d", "ReLU"]
    assert nets["none"][0].bias is not None and nets["bn"][0].bias is None   # bias before a norm
    weights = {norm: [p.data for name, p in net.named_parameters()
                      if name.endswith("weight") and p.data.ndim > 1]
               for norm, net in nets.items()}
    for norm in ("gn", "ln", "none"):
        assert len(weights[norm]) == 3                        # two convs and the FC
        for a, b in zip(weights["bn"], weights[norm]):
            np.testing.assert_array_equal(a, b)
    assert nets["bn"][-1].weight.shape == (5, 8 * 2 * 3)      # 10x12 pooled twice: 2x3
    out = nets["gn"].forward(np.zeros((2, 3, 10, 12), np.float32))
    assert out.shape == (2, 5)


def test_data_runs_on_another_source_with_its_own_shape(tmp_path):
    """An npz source of 3-channel 12x12 images in 4 classes, without a test split: a fifth is
    held out, and the net takes 3x12x12 and scores 4 classes."""
    rng = np.random.default_rng(0)
    path = tmp_path / "rgb.npz"
    np.savez(path, x=rng.integers(0, 256, (60, 12, 12, 3), dtype=np.uint8),
             y=np.repeat(np.arange(4), 15))
    config = small_batch.Config(norms=("bn", "gn"), batch_sizes=(2, 4), channels=(4,),
                                groups=2, train_size=40, test_size=10, epochs=1)
    results, _ = run(config, tmp_path / "out", data=f"npz:{path}")
    r = results["results"]
    assert r["image_shape"] == [3, 12, 12] and r["classes"] == 4
    assert r["data"] == f"npz:{path.resolve()}"
    assert results["settings"]["data"] == f"npz:{path}" and results["scale"] == "custom"
    with pytest.raises(ValueError, match="train_size 60 exceeds the 48 train images"):
        run(small_batch.Config(train_size=60, batch_sizes=(2,)), tmp_path / "more",
            data=f"npz:{path}")


@pytest.mark.parametrize("change, message", [
    ({"batch_sizes": (2, 128), "train_size": 100}, "batch size 128 exceeds train_size 100"),
    ({"batch_sizes": ()}, "batch_sizes must be a non-empty list"),
    ({"batch_sizes": (2, 2)}, "batch_sizes holds a value twice"),
    ({"batch_sizes": (2, 0)}, "batch_sizes must hold integers >= 1, got 0"),
    ({"norms": ("bn", "in")}, "unknown norm 'in'; choose from bn, gn, ln, none"),
    ({"norms": ()}, "norms must be a non-empty list"),
    ({"norms": (["bn"],)}, "unknown norm ['bn']"),
    ({"norms": ("gn", "gn")}, "norms holds a value twice"),
    ({"batch_sizes": ([2],)}, "batch_sizes must hold integers >= 1, got [2]"),
    ({"groups": 3}, "groups 3 must divide each of channels [16, 32] (16 % 3 = 1)"),
    ({"drop_at": 0.0}, "drop_at must be in (0, 1]"),
    ({"base_lr": -1.0}, "base_lr must be a number > 0"),
    ({"momentum": 1.0}, "momentum must be in [0, 1)"),
    ({"data": "imagenet"}, "unknown data source 'imagenet'"),
    ({"data": "npz:/no/such/file.npz"}, "/no/such/file.npz does not exist"),
])
def test_bad_settings_are_one_line_errors_before_any_folder(tmp_path, change, message):
    config = small_batch.Config(**change)
    with pytest.raises(ValueError) as err:
        run(config, tmp_path)
    assert str(err.value).startswith("small-batch: ") and message in str(err.value)
    assert "\n" not in str(err.value)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_images_past_the_memory_budget_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNKIT_MEMORY_BUDGET", "1M")
    config = small_batch.Config(batch_sizes=(2,), train_size=1000, test_size=10, epochs=1)
    with pytest.raises(ValueError, match=r"1,000 train images of 1x28x28 as float32 would need "
                                         r"6\.0 MiB, more than"):
        run(config, tmp_path)


def test_images_too_small_for_the_pools_are_refused(tmp_path):
    path = tmp_path / "tiny.npz"
    np.savez(path, x=np.zeros((20, 3, 3), np.uint8), y=np.arange(20) % 2)
    config = small_batch.Config(batch_sizes=(2,), train_size=10, test_size=2, epochs=1)
    with pytest.raises(ValueError, match=r"images are 1x3x3; 2 POOL2 layers need 4x4 at least"):
        run(config, tmp_path / "out", data=f"npz:{path}")


def test_data_is_refused_in_one_line_for_an_experiment_without_it(tmp_path, capsys):
    code = main(["experiment", "dropout-modes", "--data", "mnist", "--out", str(tmp_path),
                 "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "dropout-modes has its data fixed and takes no --data; --data is for small-batch" in err
    assert not any(tmp_path.iterdir())
    code = main(["experiment", "small-batch", "--data", "folder:" + str(tmp_path / "none"),
                 "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "does not exist" in err
    assert not any(tmp_path.iterdir())



def test_a_run_starts_every_net_from_the_same_weights_and_batches(tmp_path, monkeypatch):
    """In a run: the same first conv weights for every norm and batch size, and the same
    batches (labels in order) for every norm of one batch size."""
    weights, batches = [], {}
    real_build, real_step = small_batch.build, small_batch.train_step

    def build(norm, *args):
        model = real_build(norm, *args)
        weights.append(model[0].weight.data.copy())
        batches[model] = []
        return model

    def step(model, optimizer, x, y):
        batches[model].append(y.copy())
        return real_step(model, optimizer, x, y)

    monkeypatch.setattr(small_batch, "build", build)
    monkeypatch.setattr(small_batch, "train_step", step)
    config = small_batch.Config(norms=("bn", "gn", "none"), batch_sizes=(2, 4), channels=(4,),
                                groups=2, train_size=20, test_size=10, epochs=1)
    run(config, tmp_path)
    assert len(weights) == 6
    for w in weights[1:]:
        np.testing.assert_array_equal(w, weights[0])
    seen = list(batches.values())             # bn, gn, none at batch 2, then at batch 4
    for first, others in ((seen[0], seen[1:3]), (seen[3], seen[4:6])):
        for other in others:
            assert len(other) == len(first) and all(
                np.array_equal(a, b) for a, b in zip(first, other))
    assert len(seen[0]) == 10 and len(seen[3]) == 5


@pytest.mark.parametrize("bn, met", [
    ([0.30, 0.26, 0.24], [True, True, True, True]),     # the paper's: BN rises 6 points past GN
    ([0.248, 0.245, 0.24], [True, True, False, True]),  # rises, but by less than a point
    ([0.23, 0.235, 0.24], [True, True, False, False]),  # flat, and better at the smallest batch
    ([0.31, 0.27, 0.25], [True, True, True, False]),    # worse than GN already at 32
])
def test_the_targets_state_the_papers_claims(bn, met):
    """Errors at batch 2, 8, 32 (and 64): GN and LN flat within a point from 32 down to 2; BN's
    rise over GN's, by more than a point; the lines cross (BN no worse at 32, worse at 2)."""
    def targets(gn=(0.242, 0.238, 0.24), at_64=None):
        nets = {"bn": bn, "gn": gn, "ln": (0.25, 0.26, 0.255)}
        extra = [] if at_64 is None else [at_64]
        numbers = {"batch_sizes": [2, 8, 32, *(64,) * len(extra)],
                   "nets": {n: {"test_error": [*e, *extra]} for n, e in nets.items()}}
        return [m for _, m in small_batch._targets(numbers, small_batch.Config())]

    assert targets() == met
    assert targets(gn=(0.26, 0.238, 0.24))[0] is False               # 2 points off at batch 2
    # a batch above 32 is outside the paper's claim: 3 points off at 64 leaves them flat
    assert targets(at_64=0.28) == met
