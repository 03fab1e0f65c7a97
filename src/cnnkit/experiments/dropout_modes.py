"""dropout-modes: both of the notes' dropout modes keep the expected training output equal to the
test output (the notes on dropout).

    mode                  training                     test (eval)
    upscale_in_train      x * keep / (1 - p)           x
    downscale_in_infer    x * keep                     x * (1 - p)
                          E[keep] = 1 - p, so E[train output] = test output in both modes.

Part 1, one layer: a fixed input x of ``units`` values, ``masks`` independent masks. Per unit the
mean of the training outputs, its standard error ``SE = std / sqrt(masks)`` and
``z = (mean - test output) / SE``; with no bias |z| stays below about 4 (``Z_LIMIT`` is 5).

Part 2, a net: ``Linear(784, hidden) -> ReLU -> Dropout(p) -> Linear(hidden, 10)`` trained on MNIST
in each mode from the same initial weights and the same masks. A linear layer follows the dropout,
so the expected training-mode scores equal the eval scores; measured on ``probe_size`` test images
over ``score_masks`` masks. And the two modes are one net up to the next layer's scale: the
downscale net with the upscale net's last weight matrix divided by (1 - p) gives the same scores,
in eval and, with the same masks, in training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .. import nn
from ..data import BatchOrder
from ..optim import Adam
from ..viz._figure import close, finish, new_figure
from .common import Outcome, accuracy, check_config, fmt, mnist, progress_bar, train_step

FIGURES = ("expectation_per_unit.png", "trained_nets.png")
MODES = ("upscale_in_train", "downscale_in_infer")
Z_LIMIT = 5.0      # |z| above this is a bias, not chance: P(|z| > 5) = 6e-7 per value


@dataclass
class Config:
    """Settings; the defaults take a few seconds."""

    p: float = 0.5            # the probability to drop
    units: int = 20
    masks: int = 20000
    hidden: int = 256
    steps: int = 600          # Adam steps of each net (0: skip part 2)
    batch_size: int = 64
    lr: float = 1e-3
    test_size: int = 10000
    probe_size: int = 100     # test images whose scores are averaged over masks
    score_masks: int = 1000

    @classmethod
    def full(cls) -> "Config":
        return cls(masks=200000, steps=5000, score_masks=10000)

    def check(self) -> None:
        check_config(self, counts=("units", "masks", "hidden", "batch_size", "test_size",
                                   "probe_size", "score_masks"),
                     positives=("lr",), fractions=("p",))
        if self.masks < 2:
            raise ValueError(f"masks must be >= 2 (a standard error needs two), "
                             f"got {self.masks}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {self.steps!r}")
        if self.probe_size > self.test_size:
            raise ValueError(f"probe_size {self.probe_size} exceeds test_size "
                             f"{self.test_size}")


def expectation(x: np.ndarray, p: float, mode: str, masks: int, rng) -> dict:
    """Training outputs of ``Dropout(p, mode)`` on ``x`` (units,) under ``masks`` masks against
    its test output: per-unit mean, standard error, z, and the test output."""
    drop = nn.Dropout(p, mode, rng=rng)
    out = drop.forward(np.broadcast_to(x, (masks, len(x)))).astype(np.float64)   # (masks, units)
    mean = out.mean(axis=0)
    se = out.std(axis=0, ddof=1) / np.sqrt(masks)
    test = drop.eval().forward(x[None])[0].astype(np.float64)
    z = (mean - test) / se
    return {"train_mean": mean, "standard_error": se, "test_output": test, "z": z,
            "max_abs_deviation": float(np.max(np.abs(mean - test))),
            "max_standard_error": float(se.max()), "max_abs_z": float(np.max(np.abs(z)))}


def build(mode: str, config: Config, rng):
    """Sequential(features = Sequential(Linear, ReLU), Dropout, Linear)."""
    features = nn.Sequential(nn.Linear(784, config.hidden, rng=rng), nn.ReLU())
    return nn.Sequential(features, nn.Dropout(config.p, mode, rng=rng),
                         nn.Linear(config.hidden, 10, init="xavier", rng=rng))


def _scores_over_masks(model, x, masks: int, rng) -> dict:
    """Training-mode scores of ``x`` over ``masks`` masks (mean, standard error) against the
    eval scores, (N, 10) each; the layers before the dropout are deterministic, so they run
    once."""
    features, drop, head = model
    h = features.forward(x)                                          # (N, hidden)
    drop = drop.copy()
    drop.rng = rng
    total, squares = np.zeros((len(x), 10)), np.zeros((len(x), 10))
    for _ in range(masks):
        scores = head.forward(drop.train().forward(h)).astype(np.float64)
        total += scores
        squares += scores ** 2
    mean = total / masks
    se = np.sqrt(np.maximum(squares / masks - mean ** 2, 0) * masks / (masks - 1) / masks)
    test = head.forward(drop.eval().forward(h)).astype(np.float64)
    return {"mean": mean, "se": se, "eval": test, "max_abs_z": float(np.max(np.abs(
        (mean - test) / se)))}


def run(config: Config, folder, rng, progress: bool) -> Outcome:
    config.check()
    x = rng.uniform(0.5, 2.0, config.units).astype(np.float32)
    seed = rng.integers(2**63)
    units = {mode: expectation(x, config.p, mode, config.masks, np.random.default_rng(seed))
             for mode in MODES}
    # the same masks: the downscale output is the upscale one times (1 - p)
    same = float(np.max(np.abs(
        units["downscale_in_infer"]["train_mean"]
        - (1 - config.p) * units["upscale_in_train"]["train_mean"])))
    numbers = {"input": x, "p": config.p, "units": units, "same_masks_max_diff": same}
    timings = {}

    if config.steps:
        x_train, y_train = mnist("train")
        x_test, y_test = mnist("test", config.test_size)
        init_seed, mask_seed, order_seed, probe_seed = rng.integers(2**63, size=4)
        nets = {}
        start = time.perf_counter()
        with progress_bar(config.steps * len(MODES), "dropout nets", progress) as bar:
            for mode in MODES:
                model = build(mode, config, np.random.default_rng(init_seed))
                model[1].rng = np.random.default_rng(mask_seed)
                optimizer = Adam(model.named_parameters(), lr=config.lr)
                order = BatchOrder(len(x_train), config.batch_size,
                                   np.random.default_rng(order_seed), drop_last=True)
                for _ in range(config.steps):
                    idx = next(order)
                    train_step(model, optimizer, x_train[idx], y_train[idx])
                    bar.update()
                model.eval()
                scores = _scores_over_masks(model, x_test[:config.probe_size],
                                            config.score_masks, np.random.default_rng(probe_seed))
                nets[mode] = {"model": model, "test_acc": accuracy(model, x_test, y_test),
                              **scores}
        timings["train_s"] = time.perf_counter() - start
        numbers["nets"] = {mode: {"test_acc": n["test_acc"], "max_abs_z": n["max_abs_z"],
                                  "max_abs_mean_minus_eval_score": float(np.max(np.abs(
                                      n["mean"] - n["eval"])))}
                           for mode, n in nets.items()}
        numbers["score_masks"] = config.score_masks
        numbers["rescaled"] = _rescaled(nets["upscale_in_train"]["model"], config,
                                        x_test[:config.probe_size], rng)
    _plot_units(numbers, config, folder / FIGURES[0])
    figures = [FIGURES[0]]
    if config.steps:
        _plot_nets(nets, config, folder / FIGURES[1])
        figures.append(FIGURES[1])
    return Outcome(numbers, _rows(numbers, config), _targets(numbers), figures, timings)


def _rescaled(upscale_net, config: Config, x, rng) -> dict:
    """Max |score difference| between the trained upscale net and the downscale net made from it
    by dividing the last weight matrix by (1 - p): in eval, and in training with the same
    masks."""

    down = build("downscale_in_infer", config, rng)
    down.load_state_dict(upscale_net.state_dict())
    down[2].weight.data = down[2].weight.data / np.float32(1 - config.p)
    up = upscale_net
    diff = {"eval": float(np.max(np.abs(up.eval().forward(x) - down.eval().forward(x))))}
    seed = rng.integers(2**63)
    up[1].rng, down[1].rng = np.random.default_rng(seed), np.random.default_rng(seed)
    diff["train_same_masks"] = float(np.max(np.abs(up.train().forward(x)
                                                   - down.train().forward(x))))
    up.eval()
    return diff


def _rows(numbers: dict, config: Config) -> list:
    rows = [["mode", "test output", "max |mean - test|", "max SE", "max |z|",
             "net: max |z| of scores", "net: test acc"]]
    for mode, formula in zip(MODES, ("x", f"{1 - config.p:g} x")):
        u = numbers["units"][mode]
        net = numbers.get("nets", {}).get(mode, {})
        rows.append([mode, formula, fmt(u["max_abs_deviation"]), fmt(u["max_standard_error"]),
                     fmt(u["max_abs_z"], 2), fmt(net.get("max_abs_z"), 2),
                     fmt(net.get("test_acc"))])
    return rows


def _targets(numbers: dict) -> list:
    targets = []
    for mode in MODES:
        z = numbers["units"][mode]["max_abs_z"]
        targets.append((f"{mode}: the mean training output equals the test output within "
                        f"{Z_LIMIT} standard errors in every unit (max |z| {fmt(z, 2)})",
                        z < Z_LIMIT))
    targets.append((f"same masks: downscale_in_infer's training output is exactly (1 - p) x "
                    f"upscale_in_train's (max diff {fmt(numbers['same_masks_max_diff'])})",
                    numbers["same_masks_max_diff"] < 1e-5))
    if "rescaled" in numbers:
        r = numbers["rescaled"]
        worst = max(r.values())
        targets.append((f"the two modes are one net up to the next layer's scale: scores differ "
                        f"by {fmt(r['eval'])} in eval, {fmt(r['train_same_masks'])} in training "
                        f"with the same masks", worst < 1e-4))
        for mode, n in numbers["nets"].items():
            targets.append((f"{mode} net: the mean training-mode scores over "
                            f"{numbers['score_masks']:,} masks equal the eval scores within "
                            f"{Z_LIMIT} standard errors (max |z| {fmt(n['max_abs_z'], 2)})",
                            n["max_abs_z"] < Z_LIMIT))
    return targets


COLORS = {"upscale_in_train": "tab:blue", "downscale_in_infer": "tab:orange"}


def _plot_units(numbers: dict, config: Config, path) -> None:
    fig = new_figure(12, 4.5)
    axes = fig.subplots(1, 2, sharey=True)
    x = np.asarray(numbers["input"])
    order = np.argsort(x)
    k = np.arange(1, len(x) + 1)
    for ax, mode in zip(axes, MODES):
        u = numbers["units"][mode]
        ax.plot(k, x[order], "_", color="grey", markersize=14, markeredgewidth=2,
                label="input x")
        ax.plot(k, np.asarray(u["test_output"])[order], "x", color="black", markersize=8,
                label="test (eval) output")
        ax.errorbar(k, np.asarray(u["train_mean"])[order],
                    yerr=3 * np.asarray(u["standard_error"])[order], fmt="o", color=COLORS[mode],
                    markersize=4, capsize=3,
                    label=f"mean training output over {config.masks:,} masks, +/- 3 SE")
        formula = "x keep / (1-p)  ->  x" if mode == MODES[0] else "x keep  ->  (1-p) x"
        ax.set_title(f"{mode}: train {formula}\nmax |z| = {fmt(u['max_abs_z'], 2)}",
                     fontsize=10)
        ax.set_xlabel("unit (sorted by input value)")
        ax.set_xticks(k[::max(1, len(k) // 10)])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel("value")
    fig.suptitle(f"Dropout p = {config.p:g}: expected training output equals test output")
    finish(fig, path)
    close(fig)


def _plot_nets(nets: dict, config: Config, path) -> None:
    fig = new_figure(11, 4.8)
    axes = fig.subplots(1, 2)
    for ax, mode in zip(axes, MODES):
        n = nets[mode]
        e, m = n["eval"].ravel(), n["mean"].ravel()
        ax.plot(e, m, ".", color=COLORS[mode], markersize=3, alpha=0.6,
                label=f"{config.probe_size} test images x 10 class scores")
        lo, hi = min(e.min(), m.min()), max(e.max(), m.max())
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, label="y = x")
        ax.set_xlabel("eval-mode class score")
        ax.set_ylabel(f"mean training-mode score over {config.score_masks:,} masks")
        ax.set_title(f"{mode}: test accuracy {n['test_acc'] * 100:.1f}%, max |z| "
                     f"{fmt(n['max_abs_z'], 2)}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Linear(784, {config.hidden}) -> ReLU -> Dropout({config.p:g}) -> "
                 f"Linear({config.hidden}, 10) on MNIST\n{config.steps} Adam steps per mode, "
                 f"the same initial weights and masks; a dot per score of a test image")
    finish(fig, path)
    close(fig)
