"""LayerStats: what each layer's activations, gradients and updates do over training.

The course's checks of a healthy net, recorded every ``every`` iterations by a callback (or at a
cadence chosen from the run's length, ``every="auto"``: see :func:`auto_every`):

- activations: mean, standard deviation and the 15th/50th/85th percentiles of each layer's
  output (a sigmoid net's saturating at 0 and 1, a ReLU net's dying at 0, a deep net's
  collapsing towards zero under a too-small init);
- gradients: the norm of the gradient reaching each layer's output, ``||dL/d out||``, and of
  each parameter's gradient ``||dL/dW||`` (vanishing or exploding along the depth);
- updates: ``||delta W|| / ||W||`` per parameter, the ratio of the step the optimizer took to the
  weights, which the course advises to keep near 1e-3 (far below: the learning rate is too low;
  far above: too high).

For example::

    stats = LayerStats(every=20)
    Trainer(model, optimizer, callbacks=[stats]).fit(train, val)
    stats.layers["2"]["act_std"][-1], stats.params["0.weight"]["update_ratio"][-1]
    cnnkit.viz.plot_layer_stats(stats, "layer_stats.png")

On the iterations it samples, the callback registers forward and backward hooks before the batch
and takes them off after it, and keeps a copy of the monitored weights for the update ratio; on
the other iterations it costs nothing. Percentiles are computed on an evenly strided sample of at
most ``max_values`` values of each output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ._atomic import atomic_write_text
from .callbacks import Callback
from .nn import activation as _activation

__all__ = ["LayerStats", "PERCENTILES", "AUTO_RECORDS", "auto_every"]

#: The records ``every="auto"`` aims at: from AUTO_RECORDS + 1 to 1.5 x AUTO_RECORDS per run
#: (every iteration of a run of fewer than 2 x AUTO_RECORDS).
AUTO_RECORDS = 40

#: The percentiles of each layer's activations that ``LayerStats`` records.
PERCENTILES = (15, 50, 85)
_ACTIVATION_STATS = ("act_mean", "act_std", *(f"act_p{q}" for q in PERCENTILES),
                     "out_grad_norm")
_PARAM_STATS = ("weight_norm", "grad_norm", "update_ratio")


def _is_activation(module) -> bool:
    return type(module).__module__ == _activation.__name__


def default_layers(model) -> list[str]:
    """The leaf modules worth watching: those with parameters (conv, linear, batch norm) and the
    nonlinearities; containers, pooling, flatten and dropout are passed over."""
    return [name for name, m in model.named_modules()
            if name and not m.children() and (m.num_parameters() or _is_activation(m))]


def auto_every(iterations: int) -> int:
    """The cadence ``every="auto"`` chooses for a run of ``iterations`` mini-batches (epochs x
    batches per epoch): ``max(1, iterations // AUTO_RECORDS)``. Recording iteration 1 and every
    multiple of it keeps ``1 + iterations // every`` records: every iteration when the run has
    at most 2 x AUTO_RECORDS - 1 (79), else from AUTO_RECORDS + 1 to 1.5 x AUTO_RECORDS
    (41 to 60), however long the run."""
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) \
            or iterations < 0:
        raise ValueError(f"auto_every takes a count of iterations, got {iterations!r}")
    return max(1, int(iterations) // AUTO_RECORDS)


def _sample(values: np.ndarray, limit: int) -> np.ndarray:
    flat = values.reshape(-1)
    step = max(1, -(-flat.size // limit))
    return flat[::step]


class LayerStats(Callback):
    """Record per-layer statistics every ``every`` iterations (and at the first).

    Parameters
    ----------
    every : record on iteration 1 and on every multiple of ``every``; "auto": a cadence chosen
        when training starts from the run's iteration count, ``Trainer.epochs`` x batches per
        epoch (:func:`auto_every`), and kept in the Trainer's checkpoint, so that a resumed run,
        even one given more epochs, records at the same iterations
    layers : names (``model.named_modules()``) of the layers to watch; None: :func:`default_layers`
    max_values : the most values of one output the percentiles are computed from

    Attributes
    ----------
    every : the cadence (an int), None while "auto" waits for the first epoch to start
    iterations : the iterations recorded
    layers : layer name -> {"type", and lists aligned with ``iterations``: "act_mean",
        "act_std", "act_p15", "act_p50", "act_p85", "out_grad_norm"}
    params : parameter name -> {lists "weight_norm", "grad_norm", "update_ratio"}
    """

    def __init__(self, every: int | str = "auto", *, layers=None, max_values: int = 20_000):
        if every != "auto" and (isinstance(every, bool) or not isinstance(every, (int, np.integer))
                                or every < 1):
            raise ValueError(f"LayerStats every must be a positive int or 'auto', got {every!r}")
        if isinstance(max_values, bool) or not isinstance(max_values, (int, np.integer)) \
                or max_values < 1:
            raise ValueError(f"LayerStats max_values must be a positive int, got {max_values!r}")
        self.auto = every == "auto"
        self.every = None if self.auto else int(every)
        self.max_values = int(max_values)
        self.names = None if layers is None else list(layers)
        self.iterations: list[int] = []
        self.layers: dict[str, dict] = {}
        self.params: dict[str, dict] = {}
        self._handles, self._before, self._row = [], None, None

    def set_trainer(self, trainer) -> None:
        super().set_trainer(trainer)
        modules = dict(trainer.model.named_modules())
        names = default_layers(trainer.model) if self.names is None else self.names
        unknown = [n for n in names if n not in modules]
        if unknown:
            raise ValueError(f"LayerStats: the model has no layer {unknown[0]!r} (its layers: "
                             f"{', '.join(n for n in modules if n) or 'none'})")
        self._watched = [(n, modules[n]) for n in names]
        # records of iterations the trainer has not reached came from a run that stopped
        # inside a batch and resumed from the checkpoint before it: they are redone
        keep = sum(1 for i in self.iterations if i <= trainer.iteration)
        if keep < len(self.iterations):
            del self.iterations[keep:]
            for record in (*self.layers.values(), *self.params.values()):
                for key, values in record.items():
                    if key != "type":
                        del values[keep:]
        for name, module in self._watched:
            self.layers.setdefault(name, {"type": type(module).__name__,
                                          **{k: [] for k in _ACTIVATION_STATS}})
            for pname, _ in module.named_parameters(prefix=name + "."):
                self.params.setdefault(pname, {k: [] for k in _PARAM_STATS})
        self._parameters = dict(trainer.model.named_parameters())

    # ------------------------------------------------------------------ the cadence
    def on_epoch_begin(self, epoch, logs):
        if self.every is None:      # "auto", not taken back from a checkpoint: chosen now
            self.every = auto_every(self.trainer.epochs * logs["num_batches"])

    def state_dict(self) -> dict | None:
        """The cadence (``{"every": N}``), for the Trainer's checkpoint."""
        return None if self.every is None else {"every": self.every}

    def load_state_dict(self, state: dict) -> None:
        """With ``every="auto"``, take back the cadence the run chose; an ``every`` given as a
        number stays as given."""
        if not isinstance(state, dict):
            raise TypeError(f"expected a dict, got a {type(state).__name__}")
        every = state.get("every")
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"its cadence is {every!r}, not a positive int")
        if self.auto:
            self.every = int(every)

    # ------------------------------------------------------------------ recording
    def on_batch_begin(self, batch, logs):
        iteration = logs["iteration"]
        if iteration != 1 and iteration % self.every:
            return
        row = {name: {} for name, _ in self._watched}
        for name, module in self._watched:
            self._handles.append(module.register_forward_hook(self._forward_hook(row[name])))
            self._handles.append(module.register_backward_hook(self._backward_hook(row[name])))
        self._before = {name: self._parameters[name].data.copy() for name in self.params}
        self._row = row

    def _forward_hook(self, cell: dict):
        def hook(module, x, out):
            cell["act_mean"] = float(out.mean(dtype=np.float64))
            cell["act_std"] = float(out.std(dtype=np.float64))
            for q, v in zip(PERCENTILES, np.percentile(_sample(out, self.max_values),
                                                       PERCENTILES)):
                cell[f"act_p{q}"] = float(v)
        return hook

    @staticmethod
    def _backward_hook(cell: dict):
        def hook(module, dout, dx):
            cell["out_grad_norm"] = float(np.linalg.norm(dout))
        return hook

    def on_batch_end(self, batch, logs):
        if self._row is None:
            return
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.iterations.append(logs["iteration"])
        for name, cell in self._row.items():
            for key in _ACTIVATION_STATS:
                self.layers[name][key].append(cell.get(key, float("nan")))
        for name, before in self._before.items():
            p = self._parameters[name]
            weight = float(np.linalg.norm(before))
            record = self.params[name]
            record["weight_norm"].append(weight)
            record["grad_norm"].append(float(np.linalg.norm(p.grad)) if p.grad is not None
                                       else float("nan"))
            step = float(np.linalg.norm(p.data - before))
            record["update_ratio"].append(step / weight if weight > 0 else float("nan"))
        self._row, self._before = None, None

    def on_train_end(self, logs):
        for handle in self._handles:        # an exception inside a sampled batch
            handle.remove()
        self._handles, self._row, self._before = [], None, None

    # ------------------------------------------------------------------ results
    def to_dict(self) -> dict:
        """The records as JSON-able lists (None where a value was not available or not finite: a
        layer that gets no gradient, a parameter that was zero)."""
        def plain(record):
            return {k: v if isinstance(v, str) else [x if math.isfinite(x) else None for x in v]
                    for k, v in record.items()}

        return {"every": self.every or 0, "iterations": list(self.iterations),
                "layers": {k: plain(v) for k, v in self.layers.items()},
                "params": {k: plain(v) for k, v in self.params.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "LayerStats":
        """The records of :meth:`to_dict` back as a LayerStats (for plotting)."""
        def numbers(record):
            return {k: v if k == "type" else [float("nan") if x is None else float(x) for x in v]
                    for k, v in record.items()}

        try:
            every = int(data["every"])
            stats = cls(every if every >= 1 else "auto")      # 0: saved before training
            stats.iterations = [int(i) for i in data["iterations"]]
            stats.layers = {str(k): numbers(v) for k, v in data["layers"].items()}
            stats.params = {str(k): numbers(v) for k, v in data["params"].items()}
            for name, record in (*stats.layers.items(), *stats.params.items()):
                for key, values in record.items():
                    if key != "type" and len(values) != len(stats.iterations):
                        raise ValueError(f"{name} has {len(values)} values of {key} for "
                                         f"{len(stats.iterations)} iterations")
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"not LayerStats records: {err}") from None
        return stats

    def save(self, path) -> Path:
        """Write :meth:`to_dict` as JSON, atomically."""
        return atomic_write_text(path, json.dumps(self.to_dict(), allow_nan=False))

    @classmethod
    def load(cls, path) -> "LayerStats":
        """The statistics a ``save`` wrote to ``path`` (JSON); a damaged file is a
        ValueError naming it."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, RecursionError) as err:
            raise ValueError(f"{path} is damaged or unreadable: {err}") from None

    def __repr__(self):
        every = "'auto'" if self.every is None else self.every
        return f"LayerStats(every={every}, {len(self.iterations)} records)"
