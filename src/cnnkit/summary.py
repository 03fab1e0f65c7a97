"""Per-layer shapes, activation memory, parameters and FLOPs: the notes' VGG-16 table.

``trace(model, input_shape)`` walks the module tree from the per-example input shape, (C, H, W)
or (D,), reading what each layer answers about itself (:mod:`cnnkit.nn.facts`: output shape,
cost, label, weight formula), so it costs nothing next to a forward pass and reads no weight (a
net built with ``nn.shapes_only()`` has none). ``summarize`` adds the totals and the notes' memory
estimate for training ("computational considerations"): activations and their gradients, the
data batch, the parameters with their gradients and the optimizer's caches, and the im2col
buffer of the largest conv. ``format_notes`` writes the notes' table line by line,
``format_layers`` a wider per-layer table.

Counting conventions
--------------------
Activations, as the notes count them: one volume per layer, the INPUT volume included. Layers
that frameworks run in place and that the notes' table does not list (ReLU, LeakyReLU, Sigmoid,
Tanh, Dropout, and Flatten, a view: ``in_place``) belong to the row of the layer before them and
are not counted again. Residual's sum and Concat's stacked output are new volumes and get a row
of their own after their children's rows.

MACs (multiply-accumulates) and FLOPs are each layer's ``cost``; its module's docstring gives the
formulas (``(C/groups*KH*KW) * F * H_out*W_out`` MACs for a conv). Papers' "FLOPs" are usually
these MACs (He et al. 2016: VGG-16 15.3G, ResNet-18 1.8G), which is why the totals report both.

A module that does not answer (a user's custom Module, or a subclass that overrides ``forward``)
is traced by one forward pass of zeros of shape (1, *in_shape) in its parameters' dtype (float32
if it has none), in eval mode, with its training flags and caches restored afterwards; its row
reports its parameters and shapes but no MACs or FLOPs (``counted=False``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .budget import check_bytes
from .checks import check_count, check_example_shape
from .functional.im2col import CHUNK_BYTES
from .nn import Module, brief
from .optim import OPTIMIZERS

__all__ = ["LayerInfo", "MemoryPart", "Summary", "trace", "summarize", "format_notes",
           "format_layers", "abbreviate", "format_bytes", "OPTIMIZER_SLOTS"]

#: Per-parameter state that each update rule keeps besides the value and its gradient.
OPTIMIZER_SLOTS = {name: spec.slots for name, spec in OPTIMIZERS.items()}


@dataclass
class LayerInfo:
    """One row of the trace: a layer, its per-example shapes and its counts (all ints).

    ``params`` counts every parameter the row's module holds (weights + biases, BN's gamma and
    beta); ``weights`` only the ``weight`` arrays, as the notes list them, and ``formula`` writes
    that count out: ``"(3*3*3)*64"`` for a conv ((KH*KW*C/groups)*F), ``"7*7*512*4096"`` for an FC
    over a flattened volume (H*W*C*F), ``"4096*1000"`` for one over features. ``label`` is the
    notes' name (CONV3-64, POOL2, FC, ...). Residual and Concat rows count only their own sum or
    stack (params 0); their children have rows of their own.
    """

    name: str                  # dotted name in the module tree ("" for the model itself)
    module: Module | None
    depth: int                 # number of components in the dotted name
    in_shape: tuple
    out_shape: tuple
    params: int = 0
    weights: int = 0
    formula: str = ""
    macs: int = 0
    flops: int = 0
    label: str = ""
    in_place: bool = False     # folded into the previous row's volume (ReLU, Dropout, Flatten...)
    counted: bool = True       # False: an unknown module, traced by a forward pass, no MACs/FLOPs

    @property
    def activations(self) -> int:
        """Values of the output volume this row adds (0 for a layer run in place)."""
        return 0 if self.in_place else math.prod(self.out_shape)

    def as_dict(self) -> dict:
        """The row as JSON-able values (a row of what ``cnnkit summary --json`` writes)."""
        return {"name": self.name, "type": None if self.module is None
                else type(self.module).__name__,
                "description": "" if self.module is None else brief(self.module),
                "label": self.label, "depth": self.depth, "in_shape": list(self.in_shape),
                "out_shape": list(self.out_shape), "activations": self.activations,
                "params": self.params, "weights": self.weights, "formula": self.formula,
                "macs": self.macs, "flops": self.flops, "in_place": self.in_place,
                "counted": self.counted}


@dataclass
class MemoryPart:
    """One source of training memory: ``values`` numbers (``count`` says how they were counted),
    ``nbytes`` = values * itemsize."""

    what: str
    count: str
    values: int
    nbytes: int


@dataclass
class Summary:
    """What ``summarize`` returns: the rows of ``trace``, the totals and the training estimate.

    ``activations`` is per image and includes the INPUT volume (``input_activations``), as the
    notes' table does; ``forward_bytes`` = activations * itemsize. ``training`` lists the parts
    of the notes' estimate for ``batch`` images and ``training_bytes`` is their sum. ``im2col``
    is (layer name, K rows, L columns) of the largest conv's column matrix per image, or None.
    """

    input_shape: tuple
    rows: list
    batch: int
    dtype: str
    itemsize: int
    optimizer: str
    params: int
    weights: int
    input_activations: int
    activations: int
    macs: int
    flops: int
    forward_bytes: int
    im2col: tuple | None
    training: list = field(default_factory=list)
    training_bytes: int = 0

    def as_dict(self) -> dict:
        """A JSON-able dict (no modules, no NumPy scalars), for ``cnnkit summary --json``."""
        return {"input_shape": list(self.input_shape), "batch": self.batch, "dtype": self.dtype,
                "itemsize": self.itemsize, "optimizer": self.optimizer,
                "rows": [row.as_dict() for row in self.rows],
                "totals": {"params": self.params, "weights": self.weights,
                           "input_activations": self.input_activations,
                           "activations": self.activations, "macs": self.macs,
                           "flops": self.flops, "forward_bytes": self.forward_bytes},
                "im2col": None if self.im2col is None else
                {"layer": self.im2col[0], "rows": self.im2col[1], "cols": self.im2col[2]},
                "training": [{"what": p.what, "count": p.count, "values": p.values,
                              "bytes": p.nbytes} for p in self.training],
                "training_bytes": self.training_bytes}


# ----------------------------------------------------------------------------- the walk

def trace(model: Module, input_shape, *, prefix: str = "") -> list[LayerInfo]:
    """Rows of every layer of ``model`` for one example of ``input_shape``, without a forward.

    One row per step of ``model.walk_shapes``: every layer answers its output shape, cost and
    label itself (:mod:`cnnkit.nn.facts`); Residual and Concat add a row for their sum and stack
    after their children's; a module of unknown type is run once on zeros for its shape.

    Parameters
    ----------
    model : Module
    input_shape : (C, H, W) or (D,) ints, one example (no batch axis)
    prefix : the dotted name ``model`` has inside a larger net, for the rows' names and the
        error messages

    Returns
    -------
    list of LayerInfo, in execution order (a Residual's or Concat's own row after its children's)

    Raises
    ------
    ValueError
        If the geometry fails at some layer: the layer's usual message (the size rule's, for a
        conv or pool), prefixed with ``layer <dotted name> <description>:``.

    Examples
    --------
    >>> from cnnkit import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    >>> [(r.label, r.out_shape, r.macs) for r in trace(net, (3, 32, 32))]
    [('CONV3-8', (8, 32, 32), 221184), ('RELU', (8, 32, 32), 0), ('POOL2', (8, 16, 16), 0)]
    """
    shape = check_example_shape(input_shape, "input_shape")
    rows: list[LayerInfo] = []
    origin = None                 # the volume a vector was flattened from, for FC formulas
    for step in model.walk_shapes(shape, prefix):
        m, in_shape, out_shape = step.module, step.in_shape, step.out_shape
        params = m.num_parameters(recurse=step.whole)
        weights = sum(p.size for name, p in m.named_parameters(recurse=step.whole)
                      if name.rsplit(".", 1)[-1] == "weight")
        cost = m.cost(in_shape)
        volume = origin if origin is not None and len(in_shape) == 1 else in_shape
        rows.append(LayerInfo(step.name, m, _depth(step.name), in_shape, out_shape, params,
                              int(weights), m.weight_formula(volume),
                              0 if cost is None else cost.macs, 0 if cost is None else cost.flops,
                              m.label(in_shape), m.in_place, cost is not None))
        if len(out_shape) == 1 and not params and math.prod(out_shape) == math.prod(in_shape):
            origin = in_shape if len(in_shape) > 1 else origin        # a reshape (Flatten)
        elif out_shape != in_shape:
            origin = None
    return rows


def _depth(name: str) -> int:
    return len(name.split(".")) if name else 0


# ----------------------------------------------------------------------------- the estimate

def _itemsize(dtype) -> tuple[str, int]:
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise ValueError(f"dtype must name a floating-point type, got {dtype!r}") from err
    if not np.issubdtype(dt, np.floating):
        raise ValueError(f"dtype must be a floating-point type (float32, float64), got {dt}")
    return dt.name, dt.itemsize


def summarize(model: Module, input_shape, *, batch: int = 1, dtype="float32",
              optimizer: str = "adam") -> Summary:
    """The trace with totals, the forward memory per image and the notes' training estimate.

        forward memory / image = (INPUT + every layer's volume) * itemsize   (the notes' TOTAL)
        training = layer volumes * 2 (values + gradients) * batch
                 + INPUT * batch                                             (the data batch)
                 + params * (1 value + 1 gradient + optimizer slots)
                 + (C/groups*KH*KW) * (H_out*W_out) * batch                  (im2col, largest conv)

    The input volume is counted once, as the data batch: it gets no gradient. Optimizer slots
    (``OPTIMIZER_SLOTS``): sgd 0, momentum/nesterov 1, adagrad 1, rmsprop 1, adam 2 (the notes'
    "x3 or more"). The im2col buffer is the notes' X_col for the whole batch (the locally
    connected layer lays out the same columns); cnnkit's conv chunks the batch, so its real
    buffer can be smaller. Every part is counted in values and in bytes of ``dtype``.

    Raises
    ------
    ValueError
        For a bad input shape, batch, dtype or optimizer name, or as ``trace``.
    """
    rows = trace(model, input_shape)
    shape = check_example_shape(input_shape, "input_shape")
    try:
        batch = check_count(batch, "batch")
    except TypeError as err:
        raise ValueError(str(err)) from None
    if optimizer not in OPTIMIZER_SLOTS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZER_SLOTS)}, got "
                         f"{optimizer!r}")
    dtype, itemsize = _itemsize(dtype)
    input_values = math.prod(shape)
    layer_values = sum(r.activations for r in rows)
    params = sum(r.params for r in rows)
    columns = [(r.name, *size) for r in rows if r.counted
               and (size := r.module.im2col_shape(r.in_shape)) is not None]
    im2col = max(columns, key=lambda c: c[1] * c[2], default=None)
    slots = OPTIMIZER_SLOTS[optimizer]
    a, b = abbreviate(layer_values, 3), abbreviate(input_values, 3)
    parts = [("activations + gradients", f"{a} * 2 * {batch}", layer_values * 2 * batch),
             ("data batch", f"{b} * {batch}", input_values * batch),
             (f"params + grads + {optimizer} caches",
              f"{abbreviate(params, 3)} * {2 + slots}", params * (2 + slots))]
    if im2col:
        parts.append((f"im2col of the largest conv (layer {im2col[0]})",
                      f"{im2col[1]} x {im2col[2]} * {batch}", im2col[1] * im2col[2] * batch))
    training = [MemoryPart(what, count, values, values * itemsize)
                for what, count, values in parts]
    return Summary(shape, rows, batch, dtype, itemsize, optimizer, params,
                   sum(r.weights for r in rows), input_values, input_values + layer_values,
                   sum(r.macs for r in rows), sum(r.flops for r in rows),
                   (input_values + layer_values) * itemsize, im2col, training,
                   sum(p.nbytes for p in training))


# ----------------------------------------------------------------------------- rendering

def abbreviate(count: int, digits: int = 2) -> str:
    """The notes' short form: ``digits`` significant figures with K/M/G (powers of 1000) from
    10,000 up, the exact count below: 150,528 -> "150K", 3,211,264 -> "3.2M", 4096 -> "4096".

    Examples
    --------
    >>> abbreviate(802816), abbreviate(25088), abbreviate(138357544, 3)
    ('800K', '25K', '138M')
    """
    if count < 10_000:
        return str(count)
    rounded = int(float(f"{count:.{digits}g}"))
    for unit, letter in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K")):
        if rounded >= unit:
            return f"{rounded / unit:g}{letter}"
    return str(rounded)


def format_bytes(nbytes: int) -> str:
    """Bytes in B/KB/MB/GB/TB, dividing by 1024 as the notes do: whole numbers from 10 up,
    one decimal below (60,950,432 -> "58MB", 5,000,000 -> "4.8MB")."""
    value, units = float(nbytes), ("B", "KB", "MB", "GB", "TB")
    i = 0
    while i < len(units) - 1 and round(value, 0 if value >= 10 else 1) >= 1024:
        value /= 1024
        i += 1
    if i == 0:
        return f"{nbytes}B"
    return f"{value:.0f}{units[i]}" if round(value, 1) >= 10 else f"{value:.1f}{units[i]}"


def _hwc(shape: tuple) -> str:
    """A per-example shape as the notes write a volume: HxWxC, features as 1x1xD."""
    if len(shape) == 3:
        c, h, w = shape
        return f"{h}x{w}x{c}"
    if len(shape) == 1:
        return f"1x1x{shape[0]}"
    return "x".join(str(s) for s in shape)


def _memory(shape: tuple) -> str:
    total = math.prod(shape)
    if len(shape) == 1:
        return str(total) if total < 10_000 else f"{total}={abbreviate(total)}"
    dims = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
    return "*".join(str(s) for s in dims) + f"={abbreviate(total)}"


def _weights(row: LayerInfo) -> str:
    if not row.weights:
        return "0"
    return f"{row.formula} = {row.weights:,}" if row.formula else f"{row.weights:,}"


def _training_lines(s: Summary) -> list[str]:
    lines = [f"TRAINING estimate, batch {s.batch}, {s.dtype}, {s.optimizer}:"]
    for p in s.training:
        lines.append(f"  {p.what}: {p.count} = {abbreviate(p.values, 3)} values "
                     f"~= {format_bytes(p.nbytes)}")
    if s.im2col is None:
        lines.append("  im2col: none (no conv layer)")
    total = sum(p.values for p in s.training)
    lines.append(f"TOTAL training: {abbreviate(total, 3)} * {s.itemsize} bytes "
                 f"~= {format_bytes(s.training_bytes)}")
    return lines


def format_notes(summary: Summary) -> str:
    """The notes' VGG-16 table for any net, one line per layer, then the totals and the training
    estimate::

        INPUT: [224x224x3] memory: 224*224*3=150K weights: 0
        CONV3-64: [224x224x64] memory: 224*224*64=3.2M weights: (3*3*3)*64 = 1,728
        ...
        TOTAL memory: 15.2M * 4 bytes ~= 58MB / image (only forward! ~*2 for bwd)
        TOTAL params: 138M parameters

    Layers run in place are left out, as the notes leave out ReLU. A row names its layer by its
    label, but an FC without its width (``FC``, not ``FC-4096``), as the notes' table does: the
    volume beside it gives the width. Volumes are HxWxC; memory uses ``abbreviate`` (2
    significant figures); weights exclude biases, as the notes list them; TOTAL params counts
    every parameter. TOTAL memory is the sum of the rows printed: for VGG-16 that is 15,237,608
    values (~15.2M, 58MB in float32), not the notes' "24M * 4 bytes ~= 93MB", a known slip in
    the CS231n notes (cs231n.github.io issue #88) that their own rows do not add up to.
    """
    s = summary
    lines = [f"INPUT: [{_hwc(s.input_shape)}] memory: {_memory(s.input_shape)} weights: 0"]
    for row in s.rows:
        if not row.in_place:
            name = "FC" if row.label.startswith("FC-") else row.label
            lines.append(f"{name}: [{_hwc(row.out_shape)}] memory: {_memory(row.out_shape)} "
                         f"weights: {_weights(row)}")
    lines.append(f"TOTAL memory: {abbreviate(s.activations, 3)} * {s.itemsize} bytes ~= "
                 f"{format_bytes(s.forward_bytes)} / image (only forward! ~*2 for bwd)")
    lines.append(f"TOTAL params: {abbreviate(s.params, 3)} parameters")
    return "\n".join(lines + _training_lines(s))


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def format_layers(summary: Summary) -> str:
    """A per-layer table for the terminal (Keras's ``model.summary()``): dotted name (indented by
    depth), description, output volume (CxHxW, as ``--input`` takes it), activations the row
    adds ("in place" for the folded ones), parameters and MACs; then the totals and the training
    estimate in MB/GB."""
    s = summary
    head = ("Layer", "Description", "Output (CxHxW)", "Activations", "Params", "MACs")
    table = [("input", "INPUT", "x".join(map(str, s.input_shape)), f"{s.input_activations:,}",
              "0", "0")]
    for row in s.rows:
        desc = brief(row.module) if row.module is not None else row.label
        table.append(("  " * max(row.depth - 1, 0) + (row.name or "(model)"), _cut(desc, 56),
                      "x".join(map(str, row.out_shape)),
                      "in place" if row.in_place else f"{row.activations:,}",
                      f"{row.params:,}", f"{row.macs:,}" if row.counted else "?"))
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head))]
    right = (False, False, False, True, True, True)

    def line(cells):
        return "  ".join(c.rjust(w) if r else c.ljust(w)
                         for c, w, r in zip(cells, widths, right)).rstrip()

    rule = "-" * len(line(head))
    out = [line(head), rule, *(line(r) for r in table), rule]
    out.append(f"Total params: {s.params:,} ({s.weights:,} in weight arrays)")
    out.append(f"Activations per image: {s.activations:,} (INPUT included) = "
               f"{format_bytes(s.forward_bytes)} forward in {s.dtype}")
    out.append(f"MACs per image: {s.macs:,} ({abbreviate(s.macs, 3)}); FLOPs: {s.flops:,} "
               f"({abbreviate(s.flops, 3)})")
    if not all(r.counted for r in s.rows):
        out.append("(? = a module of unknown type: its MACs and FLOPs are not counted)")
    return "\n".join(out + _training_lines(s))


# What one evaluation or prediction pass may hold in activations: large enough that NumPy's
# per-call overhead is spread over many images, small beside any machine's memory.
EVAL_BYTES = 256 * 2 ** 20


def images_within(model: Module, input_shape, budget_bytes: int = EVAL_BYTES, *,
                  most: int = 1000, dtype="float32") -> int:
    """How many images one forward pass may take so that its activations (every layer's output,
    the input, and the largest conv's im2col columns, per image) stay within ``budget_bytes``
    (by default ``EVAL_BYTES``): between 1 and ``most``."""
    s = summarize(model, input_shape, dtype=dtype)
    per_image = s.forward_bytes + (s.im2col[1] * s.im2col[2] * s.itemsize if s.im2col else 0)
    return int(max(1, min(most, budget_bytes // max(per_image, 1))))


def step_memory(model: Module, input_shape, batch: int, *, dtype="float32",
                optimizer: str = "adam") -> int:
    """Bytes a cnnkit training step of ``batch`` images is expected to hold at its peak:

        every layer's output, kept for the backward pass      activations * batch
        the gradients in flight: two layers' worth           2 * largest layer * batch
        parameters, their gradients, the optimizer's caches  params * (2 + slots)
        the update's temporaries                             3 * largest parameter
        im2col columns and their gradient, one chunk         2 * max(1 MB, one image's columns)

    in ``dtype``'s bytes, plus a tenth for NumPy's other temporaries and 256 MiB for the
    interpreter, NumPy and BLAS. The notes' estimate (``Summary.training_bytes``) counts every
    activation's gradient at once and the im2col of the whole batch, which cnnkit never holds.
    Against measured peaks (``/usr/bin/time``, batch 64, 1-channel inputs, in GiB): VGG-16 9.6
    for 8.0, ZFNet 2.9 for 2.0, AlexNet 2.2 for 2.0, ResNet-18 2.5 for 1.9, GoogLeNet 2.6 for
    2.4; the notes' count gives 16.1 GB for VGG-16.
    """
    s = summarize(model, input_shape, batch=batch, dtype=dtype, optimizer=optimizer)
    largest = max((r.activations for r in s.rows if not r.in_place), default=0)
    largest_param = max((p.size for _, p in model.named_parameters()), default=0)
    columns = s.im2col[1] * s.im2col[2] * s.itemsize if s.im2col else 0
    need = (s.activations * batch + 2 * largest * batch) * s.itemsize \
        + (s.params * (2 + OPTIMIZER_SLOTS[optimizer]) + 3 * largest_param) * s.itemsize \
        + 2 * max(CHUNK_BYTES, columns)
    return int(need * 1.1) + 256 * 2 ** 20


def check_memory(model: Module, input_shape, batch: int, label: str, *, dtype="float32",
                 optimizer: str = "adam", training: bool = True) -> None:
    """Refuse, before anything runs, a training step (:func:`step_memory`) or, with
    ``training=False``, a forward pass of ``batch`` images whose memory would exceed the budget
    (:class:`cnnkit.budget.BudgetError`, naming ``label``)."""
    shape = tuple(input_shape)
    if training:
        need, what = step_memory(model, shape, batch, dtype=dtype, optimizer=optimizer), \
            "a training step"
    else:
        s = summarize(model, shape, batch=batch, dtype=dtype)
        need = s.forward_bytes * batch + (s.im2col[1] * s.im2col[2] * s.itemsize * batch
                                          if s.im2col else 0)
        what = "a forward pass"
    check_bytes(need, f"{what} of {label} on {batch} x {'x'.join(map(str, shape))} ({dtype})")


def eval_batch_size(model: Module, input_shape, most: int = 1000) -> int:
    """Images per evaluation pass: up to ``most``, as many as keep the forward pass's
    activations within ``EVAL_BYTES`` (one at least, which must fit the memory budget)."""
    batch = images_within(model, input_shape, most=most)
    if batch == 1:
        check_memory(model, input_shape, 1, "the net", training=False)
    return batch
