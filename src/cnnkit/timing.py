"""Per-layer timing of a net, as Caffe's ``caffe time`` does: ``cnnkit time MODEL``.

What is measured: the wall time (``time.perf_counter``) of each layer's ``forward`` and of its
``backward``, called one after another the way ``Sequential`` calls them, over ``iterations``
passes after ``warmup`` untimed ones; each row reports the median over the passes. A pass is
``model.zero_grad()`` (untimed), the forward of every layer in order, the backward of every layer
in reverse from a fixed upstream gradient, then, if an optimizer is given, ``optimizer.step()``.
The totals are medians over the passes of the per-pass sums (so they need not equal the sums of
the per-layer medians). The garbage collector is off while the passes run.

The layers are those the model runs one after another (``Module.named_chain``: a Sequential's
layers, nested Sequentials expanded); any other module (a ``Residual`` block, say) is timed as
one layer. Since the walk makes exactly the calls ``Sequential.forward``
and ``Sequential.backward`` make, the outputs and the accumulated gradients are those of a plain
forward and backward.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from .nn import Module, brief

__all__ = ["LayerTime", "Profile", "leaf_layers", "time_layers"]


@dataclass(frozen=True)
class LayerTime:
    """One row: the layer's position, dotted name, one-line description, output shape, and its
    median forward and backward times in milliseconds."""

    index: int
    name: str
    layer: str
    output_shape: tuple
    forward_ms: float
    backward_ms: float

    def to_dict(self) -> dict:
        """The row as JSON-able values."""
        return {"index": self.index, "name": self.name, "layer": self.layer,
                "output_shape": list(self.output_shape), "forward_ms": self.forward_ms,
                "backward_ms": self.backward_ms}


@dataclass
class Profile:
    """The rows and the totals (medians over the passes of the per-pass sums, in ms).

    ``step_ms`` is forward + backward (+ the optimizer update, ``update_ms``, when one was
    given). ``output`` and ``dx`` are the last pass's output and input gradient (None when
    ``time_layers`` was asked for no input gradient).
    """

    rows: list[LayerTime]
    forward_ms: float
    backward_ms: float
    update_ms: float | None
    step_ms: float
    iterations: int
    warmup: int
    input_shape: tuple
    output: np.ndarray = field(repr=False)
    dx: np.ndarray | None = field(repr=False)

    def lines(self, update: str = "update") -> list[str]:
        """The table ``cnnkit time`` prints: a row per layer, then the totals and the images a
        second of training steps (``update`` names the optimizer in the totals line)."""
        width = max(5, *(len(r.layer) for r in self.rows))
        name_width = max(4, *(len(r.name) for r in self.rows))
        out = [f"  {'#':>3}  {'name':<{name_width}}  {'layer':<{width}}  {'output':<18}"
               f"{'forward ms':>11}{'backward ms':>13}"]
        for r in self.rows:
            out.append(f"  {r.index:>3}  {r.name:<{name_width}}  {r.layer:<{width}}  "
                       f"{str(r.output_shape):<18}{r.forward_ms:>11.3f}{r.backward_ms:>13.3f}")
        batch = self.input_shape[0]
        step = f"training step {self.step_ms:.3f} ms ({batch / (self.step_ms * 1e-3):,.0f} " \
               f"images/s)"
        out.append(f"forward {self.forward_ms:.3f} ms, backward {self.backward_ms:.3f} ms, "
                   + (f"{update} {self.update_ms:.3f} ms; " if self.update_ms is not None
                      else "") + step)
        return out

    def to_dict(self) -> dict:
        """The whole profile as JSON-able values: its settings, a row per layer and the
        totals."""
        return {"input_shape": list(self.input_shape), "iterations": self.iterations,
                "warmup": self.warmup, "layers": [r.to_dict() for r in self.rows],
                "totals": {"forward_ms": self.forward_ms, "backward_ms": self.backward_ms,
                           "update_ms": self.update_ms, "step_ms": self.step_ms}}


def leaf_layers(model: Module) -> list[tuple[str, Module]]:
    """``(dotted_name, layer)`` of the layers ``model`` runs one after another, in forward order
    (``Module.named_chain``); a module that is not a Sequential is one layer (named ``""``).

    Examples
    --------
    >>> from cnnkit.nn import Linear, ReLU, Sequential
    >>> net = Sequential(Linear(4, 3), Sequential(ReLU(), Linear(3, 2)))
    >>> [name for name, _ in leaf_layers(net)]
    ['0', '1.0', '1.1']
    """
    return list(model.named_chain())


def _median_ms(samples) -> float:
    return 1e3 * statistics.median(samples)


def time_layers(model: Module, x: np.ndarray, *, iterations: int = 50, warmup: int = 1,
                dout: np.ndarray | None = None, optimizer=None, rng=None,
                input_grad: bool = True) -> Profile:
    """Time each layer's forward and backward (see the module docstring).

    Parameters
    ----------
    model : a Module, usually a Sequential (nested ones are walked into)
    x : (N, ...) input array, in the dtype to time
    iterations : int >= 1, timed passes
    warmup : int >= 0, untimed passes first
    dout : upstream gradient of the output's shape; by default a standard normal draw from
        ``rng`` (the times do not depend on its values), fixed for all passes
    optimizer : if given, its ``step()`` ends each pass and is timed as the update
    rng : numpy Generator for the default ``dout`` (default: seed 0)
    input_grad : if False, the first layer's backward is asked for no input gradient, as in
        training (``Trainer``); the Profile's ``dx`` is then None

    Returns
    -------
    Profile

    Raises
    ------
    ValueError
        If iterations < 1 or warmup < 0, or a layer raises (prefixed with its name and
        description, as ``Sequential`` does).

    Examples
    --------
    >>> from cnnkit.nn import Conv2d, Flatten, Linear, ReLU, Sequential
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(1, 2, 3, rng=rng), ReLU(), Flatten(), Linear(2 * 4 * 4, 3, rng=rng))
    >>> prof = time_layers(net, np.zeros((5, 1, 6, 6), np.float32), iterations=2)
    >>> [(r.name, r.output_shape) for r in prof.rows]
    [('0', (5, 2, 4, 4)), ('1', (5, 2, 4, 4)), ('2', (5, 32)), ('3', (5, 3))]
    """
    if iterations < 1 or warmup < 0:
        raise ValueError(f"time_layers: need iterations >= 1 and warmup >= 0, got "
                         f"iterations={iterations}, warmup={warmup}")
    layers = leaf_layers(model)
    rng = np.random.default_rng(0) if rng is None else rng
    n = len(layers)
    fwd = [[] for _ in range(n)]
    bwd = [[] for _ in range(n)]
    totals = {"forward": [], "backward": [], "update": [], "step": []}
    shapes = [None] * n
    clock = time.perf_counter

    def call(i, method, value):
        name, layer = layers[i]
        try:
            if method == "backward":
                return layer.backward(value, input_grad=input_grad or i > 0)
            return layer.forward(value)
        except ValueError as err:
            where = " (backward)" if method == "backward" else ""
            raise ValueError(f"layer {name} {brief(layer)}{where}: {err}") from err

    def one_pass(record: bool):
        nonlocal dout
        model.zero_grad()
        out = x
        for i in range(n):
            start = clock()
            out = call(i, "forward", out)
            fwd[i].append(clock() - start)
            shapes[i] = np.shape(out)
        if dout is None:
            dout = rng.standard_normal(np.shape(out)).astype(np.asarray(out).dtype)
        grad = dout
        for i in reversed(range(n)):
            start = clock()
            grad = call(i, "backward", grad)
            bwd[i].append(clock() - start)
        update = 0.0
        if optimizer is not None:
            start = clock()
            optimizer.step()
            update = clock() - start
        if not record:
            for samples in fwd + bwd:
                samples.pop()
            return out, grad
        f, b = sum(s[-1] for s in fwd), sum(s[-1] for s in bwd)
        totals["forward"].append(f)
        totals["backward"].append(b)
        totals["update"].append(update)
        totals["step"].append(f + b + update)
        return out, grad

    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(warmup):
            one_pass(record=False)
        for _ in range(iterations):
            out, dx = one_pass(record=True)
    finally:
        if was_enabled:
            gc.enable()
    rows = [LayerTime(i, name, brief(layer), tuple(shapes[i]), _median_ms(fwd[i]),
                      _median_ms(bwd[i]))
            for i, (name, layer) in enumerate(layers)]
    return Profile(rows=rows, forward_ms=_median_ms(totals["forward"]),
                   backward_ms=_median_ms(totals["backward"]),
                   update_ms=None if optimizer is None else _median_ms(totals["update"]),
                   step_ms=_median_ms(totals["step"]), iterations=iterations, warmup=warmup,
                   input_shape=tuple(np.shape(x)), output=out, dx=dx)
