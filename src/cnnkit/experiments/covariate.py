"""covariate-shift: the batch-norm paper's Figure 1 on MNIST (internal covariate shift, as the
batch-norm notes tell it).

Ioffe & Szegedy (2015), section 4.1: a net of 3 fully connected hidden layers of 100 sigmoid units
and a softmax output, trained with plain SGD on mini-batches of 60, without and with batch norm
(BN between each Linear and its sigmoid). Every ``eval_every`` steps, in eval mode on the first
``test_size`` test images, it records

    (a) the test accuracy;
    (b, c) the 15th, 50th and 85th percentiles of the input to one sigmoid of the last hidden
        layer (unit ``unit``; with BN that is BN's output, gamma * x_hat + beta) over the images.

Drift of a percentile q of unit u, from step t0 = ``early_step`` (by then BN's running averages,
momentum 0.9, have forgotten their initial (0, 1): 0.9**100 = 3e-5) to the end, T:

    drift_q(u)          = max_{t0 <= t <= T} |P_q(u, t) - P_q(u, t0)|    (sigmoid-input units)
    relative drift_q(u) = drift_q(u) / (P_85(u, T) - P_15(u, T))         (in units of the spread
                                                                          the unit ends with)

reported for the plotted unit and as the median over all units of the layer. The final spread
puts both nets on one scale (without BN a unit's spread may start near 0 and grow). The paper's
claim: with BN the distributions are much more stable (small drift) and the net reaches a higher
test accuracy earlier. (At step 0 the BN net's eval mode still uses the initial running
statistics, so its first point is not yet BN's.)

Weights are Glorot/Xavier normal for both nets (the paper does not say its initialisation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .. import nn
from ..data import BatchOrder
from ..optim import SGD
from ..viz._figure import close, finish, new_figure
from .common import Outcome, check_config, fmt, mnist, progress_bar, train_step

FIGURES = ("accuracy.png", "sigmoid_input_percentiles.png")
PERCENTILES = (15, 50, 85)
LABELS = {"plain": "without BN", "bn": "with BN"}


@dataclass
class Config:
    """Settings; the defaults take about half a minute on 2 cores."""

    steps: int = 10000        # the paper: 50,000
    batch_size: int = 60
    hidden: int = 100         # units per hidden layer
    depth: int = 3            # hidden layers
    lr: float = 0.1           # plain SGD, the same for both nets
    eval_every: int = 200     # steps between measurements (one more at early_step)
    early_step: int = 100     # t0 of the drift
    test_size: int = 10000    # test images for the accuracy and the percentiles
    train_size: int = 60000
    unit: int = 0             # the last hidden layer's unit whose percentiles are plotted
    threshold: float = 0.9    # the target: with BN the test accuracy reaches it in fewer steps

    @classmethod
    def full(cls) -> "Config":
        """The paper's 50,000 steps."""
        return cls(steps=50000, eval_every=500)

    def check(self) -> None:
        check_config(self, counts=("steps", "batch_size", "hidden", "depth", "eval_every",
                                   "early_step", "test_size", "train_size"),
                     positives=("lr",), fractions=("threshold",))
        if not 0 <= self.unit < self.hidden:
            raise ValueError(f"unit must be in [0, {self.hidden}) (the hidden "
                             f"width), got {self.unit!r}")
        if self.batch_size > self.train_size:
            raise ValueError(f"batch_size {self.batch_size} exceeds train_size "
                             f"{self.train_size}")
        if max(self.eval_every, self.early_step) >= self.steps:
            raise ValueError(f"eval_every {self.eval_every} and early_step "
                             f"{self.early_step} must be below steps {self.steps}")


def build(with_bn: bool, config: Config, rng):
    """[Linear -> (BatchNorm1d) -> Sigmoid] * depth -> Linear(hidden, 10)."""
    layers, d = [], 784
    for _ in range(config.depth):
        layers.append(nn.Linear(d, config.hidden, init="xavier", rng=rng))
        if with_bn:
            layers.append(nn.BatchNorm1d(config.hidden))
        layers.append(nn.Sigmoid())
        d = config.hidden
    return nn.Sequential(*layers, nn.Linear(d, 10, init="xavier", rng=rng))


def _measure(model, last_sigmoid, x, y) -> tuple[float, np.ndarray]:
    """(test accuracy, (3, hidden) percentiles of the last sigmoid's input) in eval mode."""
    seen = []
    handle = last_sigmoid.register_forward_hook(lambda m, inp, out: seen.append(inp))
    model.eval()
    try:
        scores = np.concatenate([model.forward(x[i:i + 2000]) for i in range(0, len(x), 2000)])
    finally:
        model.train()
        handle.remove()
    return (float(np.mean(scores.argmax(axis=1) == y)),
            np.percentile(np.concatenate(seen), PERCENTILES, axis=0))


def drift(percentiles: np.ndarray, t0: int) -> tuple[np.ndarray, np.ndarray]:
    """``(drift, relative)``, each (3, units): the largest change of each percentile after
    measurement ``t0`` from its value there, and that over the final 15-85 spread.
    ``percentiles`` is (T, 3, units), the 15th, 50th and 85th."""
    change = np.abs(percentiles[t0:] - percentiles[t0]).max(axis=0)
    spread = percentiles[-1, -1] - percentiles[-1, 0]
    return change, change / spread


def run(config: Config, folder, rng, progress: bool) -> Outcome:
    config.check()
    x_train, y_train = mnist("train", config.train_size)
    x_test, y_test = mnist("test", config.test_size)
    at = sorted({*range(0, config.steps + 1, config.eval_every), config.early_step,
                 config.steps})
    t0 = at.index(config.early_step)

    nets, timings = {}, {}
    for key in LABELS:
        net_rng = np.random.default_rng(rng.integers(2**63))
        model = build(key == "bn", config, net_rng)
        last_sigmoid = [m for m in model if isinstance(m, nn.Sigmoid)][-1]
        optimizer = SGD(model.named_parameters(), lr=config.lr)
        order = BatchOrder(len(x_train), config.batch_size, net_rng, drop_last=True)
        acc, pct = [], []
        start = time.perf_counter()
        with progress_bar(config.steps, f"{LABELS[key]}", progress) as bar:
            for step in range(config.steps + 1):
                if step == at[len(acc)]:
                    a, p = _measure(model, last_sigmoid, x_test, y_test)
                    acc.append(a)
                    pct.append(p)
                if step < config.steps:
                    idx = next(order)
                    train_step(model, optimizer, x_train[idx], y_train[idx])
                    bar.update()
        timings[f"{key}_s"] = time.perf_counter() - start
        pct = np.asarray(pct)                                    # (T, 3, hidden)
        change, relative = drift(pct, t0)
        nets[key] = {
            "test_acc": acc,
            "percentiles_unit": pct[:, :, config.unit].T.tolist(),    # (3, T)
            "drift_unit": change[:, config.unit].tolist(),
            "relative_drift_unit": relative[:, config.unit].tolist(),
            "drift_median_over_units": np.median(change, axis=1).tolist(),
            "relative_drift_median_over_units": np.median(relative, axis=1).tolist(),
            "steps_to_threshold": next((s for s, a in zip(at, acc) if a >= config.threshold),
                                       None),
        }

    numbers = {"steps": at, "percentiles": list(PERCENTILES), "early_step": at[t0],
               "threshold": config.threshold,
               "unit": config.unit, "nets": nets}
    _plot_accuracy(numbers, config, folder / FIGURES[0])
    _plot_percentiles(numbers, config, folder / FIGURES[1])
    return Outcome(numbers, _rows(numbers, config), _targets(numbers), list(FIGURES), timings)


def _acc_at(numbers: dict, key: str, step: int) -> float:
    return numbers["nets"][key]["test_acc"][numbers["steps"].index(step)]


def _report_steps(numbers: dict) -> list:
    """The steps whose accuracies the table shows: the measurements nearest 10% and 20% of the
    way, and the last."""
    steps = numbers["steps"]
    return sorted({min(steps, key=lambda s: abs(s - f * steps[-1])) for f in (0.1, 0.2, 1)})


def _steps_to(net: dict, config: Config) -> str:
    n = net["steps_to_threshold"]
    return f"> {config.steps:,}" if n is None else f"{n:,}"


def _rows(numbers: dict, config: Config) -> list:
    plain, bn = numbers["nets"]["plain"], numbers["nets"]["bn"]
    rows = [["", "without BN", "with BN"]]
    for step in _report_steps(numbers):
        rows.append([f"test accuracy at step {step:,}", fmt(_acc_at(numbers, "plain", step)),
                     fmt(_acc_at(numbers, "bn", step))])
    rows.append([f"steps to test accuracy {config.threshold:g}", _steps_to(plain, config),
                 _steps_to(bn, config)])
    since = f"from step {numbers['early_step']:,}"
    q = "/".join(map(str, PERCENTILES))
    for label, key in ((f"unit {config.unit}: drift of the {q}th pct {since}", "drift_unit"),
                       ("  same, over the final 15-85 spread", "relative_drift_unit"),
                       (f"median over the {config.hidden} units: drift", "drift_median_over_units"),
                       ("  same, over the final 15-85 spread",
                        "relative_drift_median_over_units")):
        rows.append([label, *("/".join(fmt(v, 2) for v in n[key]) for n in (plain, bn))])
    return rows


def _targets(numbers: dict) -> list:
    plain, bn = numbers["nets"]["plain"], numbers["nets"]["bn"]
    th = numbers["threshold"]
    n_plain, n_bn = (n["steps_to_threshold"] for n in (plain, bn))
    never = numbers["steps"][-1] + 1
    d_plain = float(np.mean(plain["relative_drift_median_over_units"]))
    d_bn = float(np.mean(bn["relative_drift_median_over_units"]))
    def when(n):
        return f"not within {never - 1:,} steps" if n is None else f"at step {n:,}"

    return [(f"with BN the test accuracy reaches {th:g} earlier: {when(n_bn)} with BN, "
             f"{when(n_plain)} without",
             n_bn is not None and n_bn < (never if n_plain is None else n_plain)),
            (f"with BN the sigmoid-input percentiles drift less: median relative drift "
             f"(mean of the 3 percentiles) {fmt(d_bn, 2)} with BN against {fmt(d_plain, 2)} "
             f"without", d_bn < d_plain)]


COLORS = {"plain": "tab:red", "bn": "tab:blue"}


def _plot_accuracy(numbers: dict, config: Config, path) -> None:
    fig = new_figure(7, 4.5)
    ax = fig.subplots()
    steps = np.asarray(numbers["steps"])
    for key, label in LABELS.items():
        ax.plot(steps, np.asarray(numbers["nets"][key]["test_acc"]) * 100, color=COLORS[key],
                label=label)
    ax.axhline(config.threshold * 100, color="grey", linestyle="--", linewidth=0.8,
               label=f"{config.threshold * 100:g}% (the table's threshold)")
    ax.set_xlabel(f"training step (mini-batches of {config.batch_size})")
    ax.set_ylabel(f"test accuracy (%, {config.test_size:,} images)")
    # from the first measurement after step 0 (at step 0 both guess): the paper's close-up
    after = [a for k in LABELS for a in numbers["nets"][k]["test_acc"][1:]]
    ax.set_ylim(max(0, min(after) * 100 - 2), min(100, max(after) * 100 + 2))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(f"(a) Test accuracy: {config.depth} x {config.hidden} sigmoid units, SGD lr "
                 f"{config.lr:g}")
    finish(fig, path)
    close(fig)


def _plot_percentiles(numbers: dict, config: Config, path) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig = new_figure(11, 4.8)
    axes = fig.subplots(1, 2, sharey=True)
    steps = np.asarray(numbers["steps"])
    styles = (":", "-", "--")
    for ax, (key, label), tag in zip(axes, LABELS.items(), "bc"):
        p = np.asarray(numbers["nets"][key]["percentiles_unit"])      # (3, T)
        ax.fill_between(steps, p[0], p[2], color=COLORS[key], alpha=0.2)
        for row, style in zip(p, styles):
            ax.plot(steps, row, style, color=COLORS[key])
        ax.axvline(numbers["early_step"], color="grey", linewidth=0.8)
        rel = numbers["nets"][key]["relative_drift_unit"]
        ax.set_title(f"({tag}) {label}\ndrift from step {numbers['early_step']} (grey line): "
                     f"{' / '.join(fmt(v, 2) for v in rel)} x final spread", fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(f"input to sigmoid {config.unit} of hidden layer {config.depth}")
    handles = [Line2D([], [], color="black", linestyle=s) for s in styles]
    handles.append(Patch(color="grey", alpha=0.3))
    fig.legend(handles, [f"{q}th percentile" for q in PERCENTILES] + ["15th to 85th"],
               loc="outside lower center", ncols=4)
    fig.suptitle(f"Distribution over {config.test_size:,} test images of one last-hidden-layer "
                 f"unit's sigmoid input (with BN: BN's output)")
    finish(fig, path)
    close(fig)
