"""small-batch: batch norm's error grows as the batch shrinks, group norm's does not (the Group
Norm paper, Wu and He 2018, Figure 1: ResNet-50 on ImageNet, 32 down to 2 images per worker).

One small conv net, the same but for its normalisation layer NORM,

    INPUT[CxHxW] -> [CONV3-c1 -> NORM -> RELU -> POOL2] -> [CONV3-c2 -> NORM -> RELU -> POOL2]
                 -> FC-classes            (c1, c2 = ``channels``; conv bias only without a NORM)

    NORM   bn     BatchNorm2d(c): each channel over the batch's N*H*W values
           gn     GroupNorm(groups, c): each image's groups of c / groups channels
           ln     GroupNorm(1, c): each image's C*H*W values (the paper's LN)
           none   nothing

is trained at each batch size B of ``batch_sizes`` for the same ``epochs`` on a random subset
of ``train_size`` training images (the same images seen whatever B; the last N % B of an epoch
skipped), with SGD, momentum 0.9, and the paper's linear scaling of the rate,

    lr(B) = base_lr * B / 32        (divided by 10 after ``drop_at`` of the iterations),

then tested in eval mode on ``test_size`` held-out images, where BN uses the running mean and
variance it gathered in training, not the test batch's. The nets of every norm and batch size
start from the same weights (drawn from one seed; conv biases are zeros), and the nets of one
batch size see the same batches. ``data`` names the images (``mnist``, ``cifar10:DIR``,
``folder:DIR``, ``npz:FILE``); the net's input follows them.

The default scale took 333 to 423 s on 2 shared cores (six runs of seeds 0, 1, 2). There group
and layer norm are flat from batch 32 down to 2, as in the paper, and so is batch norm, unlike
the paper: the target on its rise is missed on every seed (the guide's "Batch size and
normalisation" gives the numbers and what was tried).
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import nn
from ..budget import check_bytes
from ..data import BatchOrder, canonical_source, open_source
from ..optim import SGD
from ..viz._figure import close, finish, new_figure, set_tick_labels, shorten
from .common import Outcome, accuracy, check_config, fmt, progress_bar, train_step

FIGURES = ("error_vs_batch_size.png",)
#: The rate is base_lr at this batch size and scales linearly with the batch (the paper: 0.1
#: at 32 images per worker).
REFERENCE_BATCH = 32
NORMS = {"bn": "BatchNorm", "gn": "GroupNorm", "ln": "LayerNorm", "none": "no norm"}
STYLE = {"bn": ("tab:blue", "o"), "gn": ("tab:red", "s"), "ln": ("tab:green", "^"),
         "none": ("tab:grey", "x")}
#: Held out of a source without a test split of its own (a folder, an npz without x_test).
HELD_OUT = 0.2

# The paper's claims. GN's error at 2 images per worker is that at 32 within a few tenths of a
# point (24.1 on ImageNet) and LN's is flat too; BN's grows by 11 points (23.6 -> 34.7), from
# below GN's to far above it.
FLAT_POINTS = 1.0       # "flat": within this many percentage points of the reference batch


@dataclass
class Config:
    """Settings; the defaults take about 7 minutes on 2 cores."""

    data: str = "mnist"
    batch_sizes: tuple = (2, 4, 8, 16, 32, 64)
    norms: tuple = ("bn", "gn", "ln", "none")
    groups: int = 4           # GN's groups in every layer (must divide each of channels)
    channels: tuple = (16, 32)
    train_size: int = 10000   # a random subset of the training images
    test_size: int = 5000     # a random subset of the test images
    epochs: int = 4
    base_lr: float = 0.02     # SGD's rate at batch 32; lr(B) = base_lr * B / 32
    momentum: float = 0.9
    drop_at: float = 0.75     # the rate falls 10x after this fraction of the iterations (1: never)

    @classmethod
    def full(cls) -> "Config":
        """All of MNIST's 60,000 training and 10,000 test images (six times the default's
        training: about 40 minutes)."""
        return cls(train_size=60000, test_size=10000)

    def check(self) -> None:
        check_config(self, counts=("groups", "train_size", "test_size", "epochs"),
                     positives=("base_lr",), fractions=("momentum",))
        if not isinstance(self.data, str) or not self.data.strip():
            raise ValueError(f"data must name a source, got {self.data!r}")
        _, _, path = canonical_source(self.data).partition(":")      # an unknown name
        if path and not Path(path).exists():         # refused before a results folder is made
            raise ValueError(f"data {self.data!r}: {path} does not exist")
        for name, most in (("batch_sizes", 16), ("norms", len(NORMS)), ("channels", 8)):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or not value:
                raise ValueError(f"{name} must be a non-empty list, got {value!r}")
            if len(value) > most:
                raise ValueError(f"{name} holds {len(value)} values; at most {most}")
            for v in value:
                if name == "norms" and not (isinstance(v, str) and v in NORMS):
                    raise ValueError(f"unknown norm {v!r}; choose from {', '.join(NORMS)}")
                if name != "norms" and (isinstance(v, bool) or not isinstance(
                        v, numbers.Integral) or v < 1):
                    raise ValueError(f"{name} must hold integers >= 1, got {v!r}")
            if len(set(value)) != len(value):
                raise ValueError(f"{name} holds a value twice: {list(value)}")
        if max(self.channels) > 1024:
            raise ValueError(f"channels must be at most 1,024, got {max(self.channels)}")
        if "gn" in self.norms:
            for c in self.channels:
                if c % self.groups:
                    raise ValueError(f"groups {self.groups} must divide each of channels "
                                     f"{list(self.channels)} ({c} % {self.groups} = "
                                     f"{c % self.groups})")
        if max(self.batch_sizes) > self.train_size:
            raise ValueError(f"batch size {max(self.batch_sizes)} exceeds train_size "
                             f"{self.train_size}")
        if isinstance(self.drop_at, bool) or not isinstance(self.drop_at, numbers.Real) \
                or not 0 < self.drop_at <= 1:
            raise ValueError(f"drop_at must be in (0, 1], got {self.drop_at!r}")

    def lr(self, batch_size: int) -> float:
        """The rate at ``batch_size``, linear in the batch: ``base_lr * B / 32``."""
        return self.base_lr * batch_size / REFERENCE_BATCH

    def label(self, norm: str) -> str:
        """How the figure and the table name ``norm``."""
        return f"GroupNorm ({self.groups} groups)" if norm == "gn" else NORMS[norm]


def norm_layer(norm: str, channels: int, groups: int):
    """The normalisation layer of ``norm`` for ``channels`` channels (None for "none")."""
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    if norm == "gn":
        return nn.GroupNorm(groups, channels)
    if norm == "ln":
        return nn.GroupNorm(1, channels)     # all C*H*W values of an image: the paper's LN
    return None


def build(norm: str, config: Config, input_shape: tuple, classes: int, rng) -> nn.Sequential:
    """The net of the module docstring for (C, H, W) images. Conv weights He, drawn from ``rng``
    in the same order for every norm, so the same ``rng`` state gives every norm the same
    weights."""
    layers, (c, h, w) = [], input_shape
    for width in config.channels:
        norm_here = norm_layer(norm, width, config.groups)
        layers.append(nn.Conv2d(c, width, 3, padding=1, bias=norm_here is None, rng=rng))
        layers += [norm_here] if norm_here is not None else []
        layers += [nn.ReLU(), nn.MaxPool2d(2, strict=False)]
        c, h, w = width, h // 2, w // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * h * w, classes, rng=rng))


def load(config: Config, rng) -> dict:
    """Random subsets of ``config.data``'s training and test images, as float32 (N, C, H, W)
    normalised by the training split's per-channel mean and std, and int64 labels."""
    data = open_source(config.data, test_size=HELD_OUT, seed=int(rng.integers(2 ** 31)))
    smallest = 2 ** len(config.channels)
    if min(data.image_shape[1:]) < smallest:
        raise ValueError(f"{data.title}'s images are {'x'.join(map(str, data.image_shape))}; "
                         f"{len(config.channels)} POOL2 layers need {smallest}x{smallest} at "
                         f"least")
    (mean,), (std,) = np.asarray(data.channel_stats())[:, None]
    parts = {}
    for split, n in (("train", config.train_size), ("test", config.test_size)):
        part = data.split(split)
        if n > len(part):
            raise ValueError(f"{split}_size {n:,} exceeds the {len(part):,} {split} images of "
                             f"{data.title}")
        check_bytes(n * math.prod(data.image_shape) * 4 * 2,     # float32, and one temporary
                    f"{n:,} {split} images of {'x'.join(map(str, data.image_shape))} as float32")
        part = part.subset(np.sort(rng.choice(len(part), n, replace=False)))
        x = np.asarray(part.images[:], dtype=np.float32)
        if part.images.dtype == np.uint8:
            x /= 255
        x = (x - mean[:, None, None].astype(np.float32)) / std[:, None, None].astype(np.float32)
        parts[split] = (x, np.asarray(part.labels))
    return {"title": data.title, "source": data.source, "image_shape": data.image_shape,
            "classes": data.num_classes, "train": parts["train"], "test": parts["test"]}


def train(model, config: Config, batch_size: int, x, y, order_rng, bar) -> dict:
    """SGD with momentum at lr(B), ``epochs`` epochs of floor(N / B) batches; the rate falls 10x
    after ``drop_at`` of the iterations. Returns the iterations and the last epoch's mean loss."""
    optimizer = SGD(model.named_parameters(), lr=config.lr(batch_size),
                    momentum=config.momentum)
    order = BatchOrder(len(x), batch_size, order_rng, drop_last=True)
    per_epoch = len(order)                      # floor(N / B): the short batch is dropped
    total = config.epochs * per_epoch
    drop = math.ceil(config.drop_at * total)
    step, losses = 0, []
    for _ in range(config.epochs):
        losses = []
        for _ in range(per_epoch):
            if step == drop:
                optimizer.lr = config.lr(batch_size) / 10
            idx = next(order)
            losses.append(train_step(model, optimizer, x[idx], y[idx]))
            step += 1
        bar.update()
    return {"iterations": total, "iterations_per_epoch": per_epoch,
            "final_loss": float(np.mean(losses))}


def run(config: Config, folder, rng, progress: bool) -> Outcome:
    config.check()
    data_seed, init_seed, order_seed = rng.integers(2 ** 63, size=3)
    data = load(config, np.random.default_rng(data_seed))
    (x, y), (x_test, y_test) = data["train"], data["test"]
    sizes = sorted(int(b) for b in config.batch_sizes)
    nets = {norm: {"test_error": [], "final_loss": [], "iterations": [],
                   "iterations_per_epoch": [], "seconds": []} for norm in config.norms}
    start = time.perf_counter()
    with progress_bar(len(sizes) * len(config.norms) * config.epochs, "batch sizes",
                      progress) as bar:
        for batch_size in sizes:
            for norm in config.norms:
                t0 = time.perf_counter()
                model = build(norm, config, data["image_shape"], data["classes"],
                              np.random.default_rng(init_seed))
                got = train(model, config, batch_size, x, y, np.random.default_rng(order_seed),
                            bar)
                got["test_error"] = 1 - accuracy(model, x_test, y_test, batch_size=500)
                got["seconds"] = time.perf_counter() - t0
                for key, value in got.items():
                    nets[norm][key].append(value)
    timings = {"train_s": time.perf_counter() - start}
    numbers = {"data": data["source"], "data_title": data["title"],
               "image_shape": list(data["image_shape"]), "classes": data["classes"],
               "batch_sizes": sizes, "lr": [config.lr(b) for b in sizes],
               "base_lr": config.base_lr, "reference_batch": REFERENCE_BATCH,
               "images_seen": config.epochs * config.train_size, "nets": nets}
    _plot(numbers, config, folder / FIGURES[0])
    return Outcome(numbers, _rows(numbers, config), _targets(numbers, config), list(FIGURES),
                   timings)


def _reference(sizes) -> int:
    """The batch the errors are compared against: 32 (the paper's), else the largest."""
    return REFERENCE_BATCH if REFERENCE_BATCH in sizes else max(sizes)


def _rows(numbers: dict, config: Config) -> list:
    norms = list(numbers["nets"])
    rows = [["batch", "lr", *(f"{config.label(n)} error %" for n in norms)]]
    for k, b in enumerate(numbers["batch_sizes"]):
        rows.append([str(b), fmt(numbers["lr"][k]),
                     *(f"{100 * numbers['nets'][n]['test_error'][k]:.2f}" for n in norms)])
    return rows


def _targets(numbers: dict, config: Config) -> list:
    """The paper's claims on this run: GN (and LN) flat, BN rising past GN at the smallest
    batch. Errors in percentage points."""
    sizes = numbers["batch_sizes"]
    small, ref = min(sizes), _reference(sizes)
    if small == ref:
        return []

    def error(norm, b):
        return 100 * numbers["nets"][norm]["test_error"][sizes.index(b)]

    targets = []
    below = [b for b in sizes if b <= ref]     # the paper's range: 32 down to 2
    for norm in ("gn", "ln"):
        if norm in numbers["nets"]:
            worst = max(abs(error(norm, b) - error(norm, ref)) for b in below)
            targets.append((f"{config.label(norm)} is flat: its error at every batch size from "
                            f"{ref} down to {small} is within {FLAT_POINTS:g} point of its error "
                            f"at {ref} ({error(norm, ref):.2f}%; largest gap {worst:.2f})",
                            worst <= FLAT_POINTS))
    if "bn" in numbers["nets"] and "gn" in numbers["nets"]:
        # against GN's: what both lose or gain with the batch (fewer steps at a large one)
        # cancels, what is left is BN's own dependence on the batch
        rise = {n: error(n, small) - error(n, ref) for n in ("bn", "gn")}
        targets.append((f"BatchNorm's error rises with the shrinking batch by more than "
                        f"{FLAT_POINTS:g} point over GroupNorm's, from batch {ref} to {small}: "
                        f"{rise['bn']:+.2f} against {rise['gn']:+.2f} points",
                        rise["bn"] - rise["gn"] > FLAT_POINTS))
        targets.append((f"the lines cross: BatchNorm is at least as good as GroupNorm at batch "
                        f"{ref} ({error('bn', ref):.2f}% against {error('gn', ref):.2f}%) and "
                        f"worse at {small} ({error('bn', small):.2f}% against "
                        f"{error('gn', small):.2f}%)",
                        error("bn", ref) <= error("gn", ref)
                        and error("bn", small) > error("gn", small)))
    return targets


def _plot(numbers: dict, config: Config, path) -> None:
    fig = new_figure(11, 4.4)
    axes = fig.subplots(1, 2)
    sizes = np.asarray(numbers["batch_sizes"])
    for norm, net in numbers["nets"].items():
        color, marker = STYLE[norm]
        axes[0].plot(sizes, 100 * np.asarray(net["test_error"], float), "-" + marker,
                     color=color, label=config.label(norm))
        axes[1].plot(sizes, np.asarray(net["final_loss"], float), "-" + marker, color=color,
                     label=config.label(norm))
    for ax in axes:
        ax.set_xscale("log", base=2)
        set_tick_labels(ax.xaxis, sizes, sizes)
        ax.minorticks_off()
        ax.invert_xaxis()                       # as the paper: the batch shrinks to the right
        ax.set_xlabel("batch size (images), shrinking to the right")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(f"test error (%), {config.test_size:,} images, eval mode")
    axes[0].set_title("Test error (BN with its running statistics)")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("training loss, mean of the last epoch")
    axes[1].set_title("Training loss (BN with each batch's statistics)")
    fig.suptitle(f"Normalisation against batch size on {shorten(numbers['data_title'], 80)}\n"
                 f"{config.train_size:,} training images x {config.epochs} epochs at every "
                 f"batch size; SGD, momentum {config.momentum:g}, "
                 f"lr = {config.base_lr:g} x B / {REFERENCE_BATCH}")
    finish(fig, path)
    close(fig)
