"""vanishing-gradients: a deep sigmoid net's first layers get almost no gradient; ReLU's do
(the notes on ReLU against sigmoid).

Two fully connected nets of ``depth`` hidden layers of ``width`` units on MNIST, one with sigmoid,
one with ReLU, each initialised as its activation wants: Glorot/Xavier normal for sigmoid
(``std = sqrt(2 / (fan_in + fan_out))``, the notes' discussion), He normal for ReLU
(``std = sqrt(2 / fan_in)``), so the difference is the activation's, not the scale's. At step 0
and at ``snapshots`` points during training (SGD with momentum, the same for both) it measures,
on a fixed batch of ``probe_size`` training images,

    ||dL/dW_l||_F  for every Linear layer l = 1 .. depth + 1  (the last is the output layer)
    ||dL/dx_l||_F  the gradient reaching layer l's input

Backpropagating through a sigmoid multiplies the gradient by sigma'(z) <= 1/4 per layer, so in a
deep sigmoid net the first layer's gradient is orders of magnitude below the last one's; ReLU
passes it unchanged where the unit is on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .. import nn
from ..data import BatchOrder
from ..functional import softmax_loss
from ..optim import SGD
from ..viz._figure import close, finish, new_figure
from .common import Outcome, accuracy, check_config, fmt, mnist, progress_bar, train_step

FIGURES = ("gradients_at_init.png", "gradients_in_training.png")
NETS = {"sigmoid": "xavier", "relu": "he"}         # activation -> the init it is given


@dataclass
class Config:
    """Settings; the defaults take well under a minute on 2 cores."""

    depth: int = 9            # hidden layers
    width: int = 100          # units per hidden layer
    steps: int = 3000         # SGD steps of each net
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    snapshots: int = 6        # gradient measurements during training, after the one at step 0
    probe_size: int = 1000    # training images of the fixed batch the gradients are measured on
    train_size: int = 60000
    test_size: int = 10000

    @classmethod
    def full(cls) -> "Config":
        """20 epochs of MNIST for each net."""
        return cls(steps=20 * (60000 // 64), snapshots=10)

    def check(self) -> None:
        check_config(self, counts=("depth", "width", "steps", "batch_size", "snapshots",
                                   "probe_size", "train_size", "test_size"),
                     positives=("lr",), fractions=("momentum",))
        if self.batch_size > self.train_size:
            raise ValueError(f"batch_size {self.batch_size} exceeds train_size "
                             f"{self.train_size}")


def build(activation: str, config: Config, rng):
    """The net: [Linear -> activation] * depth -> Linear(width, 10)."""
    act, init = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}[activation], NETS[activation]
    layers, d = [], 784
    for _ in range(config.depth):
        layers += [nn.Linear(d, config.width, init=init, rng=rng), act()]
        d = config.width
    return nn.Sequential(*layers, nn.Linear(d, 10, init=init, rng=rng))


def gradient_norms(model, x, y) -> tuple[list, list]:
    """``(weight_norms, input_norms)``: ``||dL/dW||_F`` and ``||dL/dx||_F`` of every Linear of
    ``model`` for the mean softmax loss of (x, y), first layer first. Leaves ``.grad`` zeroed."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    input_norms = {}
    handles = [m.register_backward_hook(
        lambda m, dout, dx, k=k: input_norms.__setitem__(k, float(np.linalg.norm(dx))))
        for k, m in enumerate(linears)]
    try:
        model.zero_grad()
        _, dscores = softmax_loss(model.forward(x), y)
        model.backward(dscores, input_grad=True)
        weights = [float(np.linalg.norm(m.weight.grad)) for m in linears]
    finally:
        for h in handles:
            h.remove()
        model.zero_grad()
    return weights, [input_norms[k] for k in range(len(linears))]


def run(config: Config, folder, rng, progress: bool) -> Outcome:
    config.check()
    x_train, y_train = mnist("train", config.train_size)
    x_test, y_test = mnist("test", config.test_size)
    probe = rng.choice(len(x_train), size=min(config.probe_size, len(x_train)), replace=False)
    x_probe, y_probe = x_train[probe], y_train[probe]
    at = sorted({int(round(s)) for s in np.linspace(0, config.steps, config.snapshots + 1)})

    nets, timings = {}, {}
    for activation in NETS:
        net_rng = np.random.default_rng(rng.integers(2**63))
        model = build(activation, config, net_rng)
        optimizer = SGD(model.named_parameters(), lr=config.lr, momentum=config.momentum)
        order = BatchOrder(len(x_train), config.batch_size, net_rng, drop_last=True)
        record = {"step": [], "weight_grad_norm": [], "input_grad_norm": [], "test_acc": [],
                  "train_loss": []}
        losses = []
        start = time.perf_counter()
        with progress_bar(config.steps, f"{activation} net", progress) as bar:
            for step in range(config.steps + 1):
                if step in at:
                    w, dx = gradient_norms(model, x_probe, y_probe)
                    record["step"].append(step)
                    record["weight_grad_norm"].append(w)
                    record["input_grad_norm"].append(dx)
                    record["test_acc"].append(accuracy(model, x_test, y_test))
                    record["train_loss"].append(float(np.mean(losses)) if losses else None)
                    losses = []
                if step < config.steps:
                    idx = next(order)
                    losses.append(train_step(model, optimizer, x_train[idx], y_train[idx]))
                    bar.update()
        timings[f"{activation}_s"] = time.perf_counter() - start
        w = np.asarray(record["weight_grad_norm"])
        record["first_over_last"] = (w[:, 0] / w[:, -1]).tolist()
        nets[activation] = record

    _plot_init(nets, config, folder / FIGURES[0])
    _plot_training(nets, config, folder / FIGURES[1])
    numbers = {"nets": nets, "init": dict(NETS), "layers": config.depth + 1}
    return Outcome(numbers, _rows(nets, config), _targets(nets), list(FIGURES), timings)


def _rows(nets: dict, config: Config) -> list:
    last = config.depth + 1
    s, r = nets["sigmoid"], nets["relu"]
    rows = [["gradient norm ||dL/dW||, probe batch", "sigmoid (Xavier)", "ReLU (He)"]]
    for label, k in (("layer 1, at init", 0), (f"layer {last} (output), at init", -1)):
        rows.append([label, fmt(s["weight_grad_norm"][0][k]), fmt(r["weight_grad_norm"][0][k])])
    rows.append([f"layer 1 / layer {last}, at init", fmt(s["first_over_last"][0]),
                 fmt(r["first_over_last"][0])])
    rows.append([f"layer 1 / layer {last}, step {s['step'][-1]}", fmt(s["first_over_last"][-1]),
                 fmt(r["first_over_last"][-1])])
    rows.append([f"test accuracy, step {s['step'][-1]}", fmt(s["test_acc"][-1]),
                 fmt(r["test_acc"][-1])])
    return rows


def _targets(nets: dict) -> list:
    s, r = nets["sigmoid"]["first_over_last"][0], nets["relu"]["first_over_last"][0]
    return [(f"sigmoid: layer 1's gradient norm at init is orders of magnitude (>= 100x) below "
             f"the output layer's (ratio {fmt(s)})", s <= 1e-2),
            (f"ReLU: layer 1's gradient norm at init is within one order of magnitude of the "
             f"output layer's (ratio {fmt(r)})", 0.1 <= r <= 10)]


STYLE = {"sigmoid": ("tab:red", "o", "sigmoid, Xavier init"),
         "relu": ("tab:blue", "s", "ReLU, He init")}


def _plot_init(nets: dict, config: Config, path) -> None:
    fig = new_figure(10, 4.2)
    axes = fig.subplots(1, 2)
    layers = np.arange(1, config.depth + 2)
    # what each panel shows goes in its title: a y-label that said it all ran taller than
    # the panel, into the figure's title (a rotated label has only the panel's height)
    for ax, key, title, norm in ((axes[0], "weight_grad_norm", "Weight gradient", "||dL/dW||"),
                                 (axes[1], "input_grad_norm", "Gradient reaching each layer's "
                                  "input", "||dL/dx||")):
        for activation, rec in nets.items():
            color, marker, label = STYLE[activation]
            ax.semilogy(layers, rec[key][0], "-" + marker, color=color, label=label)
        ax.set_title(title)
        ax.set_xlabel("Linear layer (1 = next to the image, %d = output)" % layers[-1])
        ax.set_ylabel(f"{norm} (Frobenius norm)")
        ax.set_xticks(layers)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend()
    fig.suptitle(f"Gradient per layer at initialisation: {config.depth} hidden layers of "
                 f"{config.width} units on MNIST ({config.probe_size} training images)")
    finish(fig, path)
    close(fig)


def _plot_training(nets: dict, config: Config, path) -> None:
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig = new_figure(11, 8)
    axes = fig.subplots(2, 2)
    layers = np.arange(1, config.depth + 2)
    norm = Normalize(0, config.steps)
    cmap = colormaps["viridis"]
    low = min(min(map(min, rec["weight_grad_norm"])) for rec in nets.values())
    high = max(max(map(max, rec["weight_grad_norm"])) for rec in nets.values())
    for ax, (activation, rec) in zip(axes[0], nets.items()):
        for step, values in zip(rec["step"], rec["weight_grad_norm"]):
            ax.semilogy(layers, values, "-o", markersize=3, color=cmap(norm(step)))
        ax.set_ylim(low / 2, high * 2)          # one scale for both panels
        ax.set_xticks(layers)
        ax.set_xlabel("Linear layer (1 = next to the image)")
        ax.set_ylabel("weight gradient ||dL/dW||")
        ax.set_title(STYLE[activation][2])
        ax.grid(True, alpha=0.3)
        fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label="training step")
    ratio_ax, acc_ax = axes[1]
    for activation, rec in nets.items():
        color, marker, label = STYLE[activation]
        ratio_ax.semilogy(rec["step"], rec["first_over_last"], "-" + marker, color=color,
                          label=label)
        acc_ax.plot(rec["step"], np.asarray(rec["test_acc"]) * 100, "-" + marker, color=color,
                    label=label)
    ratio_ax.axhline(1, color="grey", linewidth=0.8, linestyle="--")
    ratio_ax.set_xlabel("training step")
    ratio_ax.set_ylabel("||dL/dW|| of layer 1 / of the output layer")
    ratio_ax.set_title("How much of the gradient reaches the first layer")
    ratio_ax.legend()
    ratio_ax.grid(True, alpha=0.3)
    acc_ax.set_xlabel("training step")
    acc_ax.set_ylabel("test accuracy (%)")
    acc_ax.set_ylim(0, 100)
    acc_ax.set_title(f"Test accuracy (SGD, lr {config.lr:g}, momentum {config.momentum:g}, "
                     f"batch {config.batch_size})")
    acc_ax.legend()
    acc_ax.grid(True, alpha=0.3)
    fig.suptitle(f"Gradient per layer during training: {config.depth} hidden layers of "
                 f"{config.width} units on MNIST")
    finish(fig, path)
    close(fig)
