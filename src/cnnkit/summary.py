"""Per-layer shapes, activation memory, parameters and FLOPs: the notes' VGG-16 table.

``trace(model, input_shape)`` walks the module tree from the per-example input shape, (C, H, W)
or (D,), with a shape rule per known layer type, so it costs nothing next to a forward pass.
``summarize`` adds the totals and the notes' memory estimate for training ("computational
considerations"): activations and their gradients, the data batch, the parameters with their
gradients and the optimizer's caches, and the im2col buffer of the largest conv.
``format_notes`` writes the notes' table line by line, ``format_layers`` a wider per-layer table.

Counting conventions
--------------------
Activations, as the notes count them: one volume per layer, the INPUT volume included. Layers
that frameworks run in place and that the notes' table does not list (ReLU, LeakyReLU, Sigmoid,
Tanh, Dropout, and Flatten, a view) belong to the row of the layer before them and are not counted
again; their rows say ``in_place``. Residual's sum and Concat's stacked output are new volumes and
get a row of their own after their children's rows.

MACs (multiply-accumulates) are counted for the layers with weights:
``(C/groups*KH*KW) * F * H_out*W_out`` for Conv2d, ``(C*KH*KW) * F * H_out*W_out`` for
LocallyConnected2d (zero padding included in the window) and ``D_in * D_out`` for Linear. Papers'
"FLOPs" are usually these MACs (He et al. 2016: VGG-16 15.3G, ResNet-18 1.8G), which is why the
totals report both. FLOPs = 2 * MACs, plus one add per output element for a bias, plus for the
other layers, per output element: ReLU 1; LeakyReLU 2 (compare, multiply); Sigmoid 3 (exp, add,
divide); Tanh 1 (one elementary function); batch norm 2 (its eval form ``x * scale + shift``);
max pool KH*KW - 1 comparisons; average pool KH*KW (KH*KW - 1 adds and a divide); L2 pool 2*KH*KW
(squares, adds, a square root); global average pool H*W (adds and a divide); local response norm
2*size + 3 (size squares, size - 1 adds, then scale, shift, power and multiply); Residual 1 (the
add); Dropout 0 in eval with ``upscale_in_train`` and 1 with ``downscale_in_infer``; Flatten,
Concat and ZeroPadShortcut 0 (copies).

A module of a type this file does not know (a user's custom Module, or a subclass that overrides
``forward``) is traced by one forward pass of zeros of shape (1, *in_shape) in its parameters'
dtype (float32 if it has none), in eval mode, with its training flags and caches restored
afterwards; its row reports its parameters and shapes but no MACs or FLOPs (``counted=False``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import nn
from .functional._utils import check_count, window_geometry
from .nn.containers import brief
from .nn.module import Module

__all__ = ["LayerInfo", "MemoryPart", "Summary", "trace", "summarize", "format_notes",
           "format_layers", "abbreviate", "format_bytes", "OPTIMIZER_SLOTS"]

# Per-parameter state that each update rule keeps besides the value and its gradient.
OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "nesterov": 1, "adagrad": 1, "rmsprop": 1, "adam": 2}


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


# ----------------------------------------------------------------------------- shape rules

class _Leaf(NamedTuple):
    """A shape rule's answer for one layer."""

    out: tuple
    label: str
    macs: int = 0
    flops: int = 0
    formula: str = ""
    in_place: bool = False
    origin: tuple | None = None     # the volume a 1-D shape was flattened from, for FC formulas


def _volume(shape: tuple, what: str) -> tuple:
    if len(shape) != 3:
        raise ValueError(f"{what} expects a (C, H, W) volume per example, got shape {shape} "
                         f"({len(shape)}-D per example)")
    return shape


def _channels(c: int, expected: int, what: str) -> None:
    if c != expected:
        raise ValueError(f"{what}: the input has C = {c} channels but the layer expects "
                         f"{expected}")


def _suffix(m, default_pad: tuple) -> str:
    """The notes' grammar for a non-default window: ``/s2p0`` (plus d2, g2 for dilation, groups)."""
    parts = ""
    for letter, value, default in (("s", m.stride, (1, 1)), ("p", m.padding, default_pad),
                                   ("d", m.dilation, (1, 1))):
        if value != default:
            parts += letter + _side(value)
    if getattr(m, "groups", 1) != 1:
        parts += f"g{m.groups}"
    return "/" + parts if parts else ""


def _side(pair: tuple) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _weighted_window(m, shape, what, prefix):
    c, h, w = _volume(shape, what)
    _channels(c, m.in_channels, what)
    win = window_geometry((1, *shape), m.kernel_size, m.stride, m.padding, m.dilation, what,
                          m.strict)
    kh, kw = m.kernel_size
    same = ((kh - 1) // 2, (kw - 1) // 2)      # the grammar's default padding, (k-1)/2
    return win, f"{prefix}{_side(m.kernel_size)}-{m.out_channels}" + _suffix(m, same)


def _conv(m, shape, origin):
    win, label = _weighted_window(m, shape, "conv2d", "CONV")
    groups = getattr(m, "groups", 1)
    c, f, positions = shape[0], m.out_channels, win.h_out * win.w_out
    macs = (c // groups) * win.kh * win.kw * f * positions
    flops = 2 * macs + (f * positions if m.bias is not None else 0)
    per_group = f"{c}/{groups}" if groups != 1 else f"{c}"
    return _Leaf((f, win.h_out, win.w_out), label, macs, flops,
                 f"({win.kh}*{win.kw}*{per_group})*{f}")


def _local(m, shape, origin):
    win, label = _weighted_window(m, shape, "locally_connected2d", "LC")
    if (win.h_out, win.w_out) != tuple(m.output_size):
        raise ValueError(f"locally_connected2d: the layer was built for input_size "
                         f"{m.input_size} (a {m.output_size[0]}x{m.output_size[1]} output grid) "
                         f"but a {shape[1]}x{shape[2]} input gives {win.h_out}x{win.w_out}")
    c, f, positions = shape[0], m.out_channels, win.h_out * win.w_out
    macs = c * win.kh * win.kw * f * positions
    flops = 2 * macs + (f * positions if m.bias is not None else 0)
    return _Leaf((f, win.h_out, win.w_out), label, macs, flops,
                 f"{win.h_out}*{win.w_out}*({win.kh}*{win.kw}*{c})*{f}")


def _linear(m, shape, origin):
    d, f = math.prod(shape), m.out_features
    if d != m.in_features:
        raise ValueError(f"Linear: an input of shape {shape} per example has D = {d} features, "
                         f"expected in_features = {m.in_features}")
    volume = shape if len(shape) > 1 else origin
    if volume is not None and len(volume) == 3:
        c, h, w = volume
        formula = f"{h}*{w}*{c}*{f}"             # the notes write a volume H*W*C
    elif volume is not None:
        formula = "*".join(str(s) for s in volume) + f"*{f}"
    else:
        formula = f"{d}*{f}"
    macs = d * f
    return _Leaf((f,), "FC", macs, 2 * macs + (f if m.bias is not None else 0), formula)


def _flatten(m, shape, origin):
    return _Leaf((math.prod(shape),), "FLATTEN", in_place=True,
                 origin=shape if len(shape) > 1 else origin)


def _pool(what, name, flops_per_window):
    def rule(m, shape, origin):
        c, h, w = _volume(shape, what)
        win = window_geometry((1, *shape), m.kernel_size, m.stride, m.padding, 1, what,
                              m.strict)
        label = name + _side(m.kernel_size)
        if m.stride != m.kernel_size:
            label += "/" + _side(m.stride)
        if m.padding != (0, 0):
            label += "p" + _side(m.padding)
        out = (c, win.h_out, win.w_out)
        return _Leaf(out, label, flops=flops_per_window(win.kh * win.kw) * math.prod(out))
    return rule


def _global_avg(m, shape, origin):
    c, h, w = _volume(shape, "global_avg_pool2d")
    return _Leaf((c, 1, 1), "GAP", flops=c * h * w)


def _batchnorm(rank):
    def rule(m, shape, origin):
        name = type(m).__name__
        if len(shape) != rank:
            layout = "(C, H, W)" if rank == 3 else "(K,)"
            raise ValueError(f"{name} expects {layout} per example, got shape {shape}")
        _channels(shape[0], m.num_features, name)
        return _Leaf(shape, "BN", flops=2 * math.prod(shape), origin=origin)
    return rule


def _elementwise(label, flops_per_value):
    def rule(m, shape, origin):
        return _Leaf(shape, label, flops=flops_per_value * math.prod(shape), in_place=True,
                     origin=origin)
    return rule


def _dropout(m, shape, origin):
    per_value = 1 if m.mode == "downscale_in_infer" else 0
    return _Leaf(shape, f"DROPOUT{m.p:g}", flops=per_value * math.prod(shape), in_place=True,
                 origin=origin)


def _lrn(m, shape, origin):
    if len(shape) < 2:
        raise ValueError(f"lrn x must be (N, C, ...) with at least 3 axes, e.g. (N, C, H, W); "
                         f"got shape {shape} per example")
    return _Leaf(shape, "LRN", flops=(2 * m.size + 3) * math.prod(shape))


def _zero_pad(m, shape, origin):
    c, h, w = _volume(shape, "ZeroPadShortcut")
    _channels(c, m.in_channels, "ZeroPadShortcut")
    s = m.stride
    return _Leaf((m.out_channels, -(-h // s), -(-w // s)), f"ZEROPAD-{m.out_channels}")


def _leaf_rules() -> dict:
    """Shape rules by class name; the layers another module adds later are looked up by name."""
    return {"Conv2d": _conv, "LocallyConnected2d": _local, "Linear": _linear,
            "Flatten": _flatten,
            "MaxPool2d": _pool("max_pool2d", "POOL", lambda k: k - 1),
            "AvgPool2d": _pool("avg_pool2d", "AVGPOOL", lambda k: k),
            "L2Pool2d": _pool("l2_pool2d", "L2POOL", lambda k: 2 * k),
            "GlobalAvgPool2d": _global_avg,
            "BatchNorm1d": _batchnorm(1), "BatchNorm2d": _batchnorm(3),
            "Dropout": _dropout, "ReLU": _elementwise("RELU", 1),
            "LeakyReLU": _elementwise("LRELU", 2), "Sigmoid": _elementwise("SIGMOID", 3),
            "Tanh": _elementwise("TANH", 1), "LocalResponseNorm": _lrn,
            "ZeroPadShortcut": _zero_pad}


def _known(module: Module, names) -> str | None:
    """The name of the nearest class of ``module`` (by MRO) among ``names``, unless ``module``
    overrides that class's ``forward`` (its shapes are then its own business: None)."""
    for cls in type(module).__mro__:
        if cls.__name__ in names and getattr(nn, cls.__name__, None) is cls:
            return cls.__name__ if type(module).forward is cls.forward else None
    return None


# ----------------------------------------------------------------------------- the walk

def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _where(name: str, module: Module) -> str:
    return f"layer {name} {brief(module)}" if name else brief(module)


def _depth(name: str) -> int:
    return len(name.split(".")) if name else 0


def _own(module: Module) -> tuple[int, int]:
    """(all parameters, the ``weight`` arrays) of a module and its descendants."""
    params = weights = 0
    for pname, p in module.named_parameters():
        params += p.size
        if pname.rsplit(".", 1)[-1] == "weight":
            weights += p.size
    return int(params), int(weights)


def _opaque(module: Module, shape: tuple) -> tuple:
    """Output shape of an unknown module by a forward pass of zeros, leaving no trace on it."""
    params = module.parameters()
    dtype = params[0].dtype if params else np.float32
    saved = [(m, m.training, m._cache) for _, m in module.named_modules()]
    try:
        module.eval()
        out = module.forward(np.zeros((1, *shape), dtype))
    finally:
        for m, training, cache in saved:
            object.__setattr__(m, "training", training)
            object.__setattr__(m, "_cache", cache)
    return tuple(int(s) for s in np.shape(out)[1:])


def _walk(module, name, shape, origin, rows, rules):
    """Append the rows of ``module`` (input ``shape`` per example); return (out shape, origin)."""
    kind = _known(module, ("Sequential", "Residual", "Concat"))
    if kind == "Sequential":
        for i, layer in enumerate(module):
            shape, origin = _walk(layer, _join(name, str(i)), shape, origin, rows, rules)
        return shape, origin
    if kind == "Residual":
        return _residual(module, name, shape, origin, rows, rules), None
    if kind == "Concat":
        return _concat(module, name, shape, origin, rows, rules), None
    rule = rules.get(_known(module, rules))
    params, weights = _own(module)
    try:
        leaf = rule(module, shape, origin) if rule else None
        out = leaf.out if leaf else _opaque(module, shape)
    except ValueError as err:
        raise ValueError(f"{_where(name, module)}: {err}") from err
    if leaf is None:
        rows.append(LayerInfo(name, module, _depth(name), shape, out, params, weights,
                              label=type(module).__name__, counted=False))
        return out, None
    rows.append(LayerInfo(name, module, _depth(name), shape, out, params, weights, leaf.formula,
                          leaf.macs, leaf.flops, leaf.label, leaf.in_place))
    return out, leaf.origin


def _residual(module, name, shape, origin, rows, rules):
    body, _ = _walk(module.body, _join(name, "body"), shape, origin, rows, rules)
    if module.shortcut is None:
        short, which = shape, "the input (identity shortcut)"
    else:
        short, _ = _walk(module.shortcut, _join(name, "shortcut"), shape, origin, rows, rules)
        which = "the shortcut output"
    if body != short:
        raise ValueError(f"{_where(name, module)}: the body's output {body} per example differs "
                         f"from {which} {short}; give the shortcut a projection that matches")
    label = f"RES-{body[0]}"
    rows.append(LayerInfo(name, module, _depth(name), shape, body, flops=math.prod(body),
                          label=label))
    return body


def _concat(module, name, shape, origin, rows, rules):
    outs = [_walk(branch, _join(name, str(i)), shape, origin, rows, rules)[0]
            for i, branch in enumerate(module)]
    for i, out in enumerate(outs):
        if len(out) != len(outs[0]) or out[1:] != outs[0][1:]:
            raise ValueError(f"{_where(name, module)}: the branches' outputs "
                             f"{', '.join(str(o) for o in outs)} per example differ in a size "
                             f"other than the channels (axis 0), first at branch {i}")
    out = (sum(o[0] for o in outs), *outs[0][1:])
    rows.append(LayerInfo(name, module, _depth(name), shape, out, label=f"CONCAT-{out[0]}"))
    return out


def _input_shape(input_shape) -> tuple:
    try:
        shape = tuple(check_count(s, "input_shape size") for s in input_shape)
    except (TypeError, ValueError) as err:
        raise ValueError(f"input_shape must be (C, H, W) or (D,) of positive ints, got "
                         f"{input_shape!r} ({err})") from None
    if not shape:
        raise ValueError("input_shape must be (C, H, W) or (D,) of positive ints, got ()")
    return shape


def trace(model: Module, input_shape, *, prefix: str = "") -> list[LayerInfo]:
    """Rows of every layer of ``model`` for one example of ``input_shape``, without a forward.

    Sequential chains its layers; Residual traces body and shortcut from the block's input
    (their outputs must agree) and adds a row for the sum; Concat traces its branches from the
    same input and adds a row for the stack (channels summed). Every other known layer has a
    shape rule (see the module docstring for the FLOP counts); an unknown module runs one
    forward pass of zeros (1, *in_shape) instead.

    Parameters
    ----------
    model : Module
    input_shape : (C, H, W) or (D,) ints, one example (no batch axis)
    prefix : the dotted name ``model`` has inside a larger net, for the rows' names and the
        error messages (:mod:`cnnkit.convert` traces a net layer by layer)

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
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    >>> [(r.label, r.out_shape, r.macs) for r in trace(net, (3, 32, 32))]
    [('CONV3-8', (8, 32, 32), 221184), ('RELU', (8, 32, 32), 0), ('POOL2', (8, 16, 16), 0)]
    """
    rows: list[LayerInfo] = []
    _walk(model, prefix, _input_shape(input_shape), None, rows, _leaf_rules())
    return rows


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
    shape = _input_shape(input_shape)
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
    convs = (nn.Conv2d, nn.LocallyConnected2d)
    windows = [r for r in rows if r.counted and isinstance(r.module, convs)]
    im2col = None
    if windows:
        best = max(windows, key=lambda r: _im2col_size(r)[0] * _im2col_size(r)[1])
        im2col = (best.name, *_im2col_size(best))
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


def _im2col_size(row: LayerInfo) -> tuple[int, int]:
    """(K, L) of a conv's column matrix: K = C/groups*KH*KW, L = H_out*W_out."""
    m = row.module
    kh, kw = m.kernel_size
    return row.in_shape[0] // getattr(m, "groups", 1) * kh * kw, row.out_shape[1] * row.out_shape[2]


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

    Layers run in place are left out, as the notes leave out ReLU. Volumes are HxWxC; memory
    uses ``abbreviate`` (2 significant figures); weights exclude biases, as the notes list them;
    TOTAL params counts every parameter. TOTAL memory is the sum of the rows printed: for VGG-16
    that is 15,237,608 values (~15.2M, 58MB in float32), not the notes' "24M * 4 bytes ~= 93MB",
    a known slip in the CS231n notes (cs231n.github.io issue #88) that their own rows do not add
    up to.
    """
    s = summary
    lines = [f"INPUT: [{_hwc(s.input_shape)}] memory: {_memory(s.input_shape)} weights: 0"]
    for row in s.rows:
        if not row.in_place:
            lines.append(f"{row.label}: [{_hwc(row.out_shape)}] memory: {_memory(row.out_shape)} "
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
