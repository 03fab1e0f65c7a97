"""Containers: Sequential chains layers, Residual adds a shortcut around a body, Concat stacks
parallel branches along the channels (GoogLeNet's inception module).

There is no autograd tape: ``backward`` walks the children in reverse, feeding each one's ``dx``
to the one before (Torch7's containers). A ``ValueError`` from a child is re-raised with the
child's index and one-line description in front (Torch7's ``rethrowErrors``), so a bad shape deep
in a net names the layer it hit.

Their facts compose their children's: ``walk_shapes`` yields the children's steps (and then the
container's own operation: Residual's sum, Concat's stack), ``output_shape`` is where the walk
ends, and ``output_stride`` multiplies along a chain.
"""

from __future__ import annotations

import math

import numpy as np

from .. import notation
from ..parallel import single_thread_blas
from .facts import Cost, LayerError, Step, brief, join_name, last_out
from .module import Module, build, register_module

__all__ = ["Sequential", "Residual", "Concat"]


def _check_module(value, what: str) -> Module:
    if not isinstance(value, Module):
        raise TypeError(f"{what} must be a cnnkit.nn.Module, got {type(value).__name__}")
    return value


@register_module
class Sequential(Module):
    """Layers applied in order; children are named "0", "1", ... as in PyTorch.

    ``forward`` feeds each layer's output to the next; ``backward(dout)`` runs the layers'
    backwards in reverse and returns the first layer's ``dx``. Indexing gives a layer, slicing a
    new Sequential of the same layer objects.

    Raises
    ------
    ValueError
        ``"layer i Conv2d(...): <the layer's message>"`` when layer i raises ValueError.
    TypeError
        If a layer is not a Module.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, Flatten, Linear, ReLU
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential(Conv2d(1, 4, 3, rng=rng), ReLU(), Flatten(),
    ...                  Linear(4 * 6 * 6, 10, rng=rng))
    >>> net(np.zeros((2, 1, 8, 8), np.float32)).shape, len(net), list(net.state_dict())[:2]
    ((2, 10), 4, ['0.weight', '0.bias'])
    """

    def __init__(self, *layers):
        super().__init__()
        for layer in layers:
            self.append(layer)

    def append(self, layer) -> "Sequential":
        """Add a layer at the end (named by its index); returns self."""
        setattr(self, str(len(self)), _check_module(layer, f"Sequential layer {len(self)}"))
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        layers = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*layers[index])
        return layers[index]

    @single_thread_blas          # once for all the layers' kernels (see cnnkit.parallel)
    def forward(self, x):
        for i, layer in enumerate(self):
            try:
                x = layer.forward(x)
            except ValueError as err:
                raise ValueError(f"layer {i} {brief(layer)}: {err}") from err
        return x

    @single_thread_blas
    def backward(self, dout, *, input_grad=True):
        layers = list(self)
        for i in reversed(range(len(layers))):
            layer = layers[i]
            try:
                dout = layer.backward(dout, input_grad=input_grad or i > 0)
            except ValueError as err:
                raise ValueError(f"layer {i} {brief(layer)} (backward): {err}") from err
        return dout

    def walk_shapes(self, in_shape, prefix=""):
        shape = tuple(in_shape)
        for i, layer in enumerate(self):
            steps = list(layer.walk_shapes(shape, join_name(prefix, str(i))))
            yield from steps
            shape = last_out(steps, shape)

    def output_shape(self, in_shape):
        return last_out(self.walk_shapes(in_shape), in_shape)

    def output_stride(self, in_shape):
        """The product of the layers' strides (None if one is unknown)."""
        sh = sw = 1
        shape = tuple(in_shape)
        for layer in self:
            stride = layer.output_stride(shape)
            if stride is None:
                return None
            sh, sw = sh * stride[0], sw * stride[1]
            shape = layer.output_shape(shape)
        return sh, sw

    def named_chain(self, prefix=""):
        for i, layer in enumerate(self):
            yield from layer.named_chain(join_name(prefix, str(i)))

    def to_onnx(self, graph, x, in_shape, name):
        shape = tuple(in_shape)
        for i, layer in enumerate(self):
            x = graph.add(layer, x, shape, join_name(name, str(i)))
            shape = tuple(layer.output_shape(shape))
        return x

    def get_config(self):
        return {"layers": [layer.config() for layer in self]}

    @classmethod
    def from_config(cls, config):
        layers = config.get("args", {}).get("layers")
        if not isinstance(layers, list):
            raise ValueError(f"a Sequential config needs args.layers, a list of layer configs; "
                             f"got {config!r}")
        return cls(*(build(c) for c in layers))


@register_module
class Residual(Module):
    """``out = body(x) + shortcut(x)``, the identity shortcut when ``shortcut`` is None (ResNet).

    ``backward`` adds the two paths' gradients: ``dx = body.backward(dout) + shortcut'(dout)``.
    Children are named "body" and "shortcut" (state_dict keys ``body.0.weight``, ...).

    Raises
    ------
    ValueError
        If the two paths' outputs differ in shape (naming both), or a path raises
        ValueError (prefixed with "body ..." or "shortcut ...").

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit.nn import Conv2d, ReLU
    >>> block = Residual(Sequential(Conv2d(4, 4, 3, padding=1), ReLU()))
    >>> block(np.zeros((2, 4, 8, 8), np.float32)).shape
    (2, 4, 8, 8)
    """

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = _check_module(body, "Residual body")
        self.shortcut = None if shortcut is None else _check_module(shortcut,
                                                                    "Residual shortcut")

    def _run(self, path: str, method: str, value, input_grad=True):
        module = getattr(self, path)
        try:
            if method == "backward":
                return module.backward(value, input_grad=input_grad)
            return module.forward(value)
        except ValueError as err:
            where = " (backward)" if method == "backward" else ""
            raise ValueError(f"{path} {brief(module)}{where}: {err}") from err

    def forward(self, x):
        out = self._run("body", "forward", x)
        short = x if self.shortcut is None else self._run("shortcut", "forward", x)
        if out.shape != short.shape:
            which = "the input (identity shortcut)" if self.shortcut is None else "shortcut output"
            raise ValueError(f"Residual: body output shape {out.shape} differs from {which} "
                             f"shape {short.shape}; give the shortcut a projection (e.g. a 1x1 "
                             f"Conv2d with the body's stride) that matches")
        self._cache = True                # only marks that a forward ran
        return out + short

    def backward(self, dout, *, input_grad=True):
        self._take_cache()
        dx = self._run("body", "backward", dout, input_grad)
        short = dout if self.shortcut is None else self._run("shortcut", "backward", dout,
                                                             input_grad)
        return dx + short if input_grad else None

    def walk_shapes(self, in_shape, prefix=""):
        """The body's steps, the shortcut's (both from the block's input), then the sum."""
        in_shape = tuple(in_shape)
        body = list(self.body.walk_shapes(in_shape, join_name(prefix, "body")))
        yield from body
        out = last_out(body, in_shape)
        if self.shortcut is None:
            short, which = in_shape, "the input (identity shortcut)"
        else:
            steps = list(self.shortcut.walk_shapes(in_shape, join_name(prefix, "shortcut")))
            yield from steps
            short, which = last_out(steps, in_shape), "the shortcut output"
        if out != short:
            raise LayerError(prefix, self, f"the body's output {out} per example differs from "
                                           f"{which} {short}; give the shortcut a projection "
                                           f"that matches")
        yield Step(prefix, self, in_shape, out, whole=False)

    def output_shape(self, in_shape):
        return last_out(self.walk_shapes(in_shape), in_shape)

    def cost(self, in_shape):
        """The sum: one add per output value (the paths answer for themselves)."""
        return Cost(0, math.prod(self.output_shape(in_shape)))

    def label(self, in_shape):
        """RES-n, with /sS when the block subsamples (:func:`cnnkit.notation.res`): the token of
        a basic block (:func:`cnnkit.models.blocks.basic_block`) that builds it."""
        return notation.res(self.output_shape(in_shape)[0], self.output_stride(in_shape) or 1)

    def output_stride(self, in_shape):
        return self.body.output_stride(in_shape)

    def to_onnx(self, graph, x, in_shape, name):
        """The body's operators and the shortcut's on the same input, then ``Add``."""
        body = graph.add(self.body, x, in_shape, join_name(name, "body"))
        short = x if self.shortcut is None else graph.add(self.shortcut, x, in_shape,
                                                          join_name(name, "shortcut"))
        return graph.node("Add", [body, short], name=join_name(name, "add"))

    def get_config(self):
        return {"body": self.body.config(),
                "shortcut": None if self.shortcut is None else self.shortcut.config()}

    @classmethod
    def from_config(cls, config):
        args = config.get("args", {})
        if "body" not in args:
            raise ValueError(f"a Residual config needs args.body; got {config!r}")
        shortcut = args.get("shortcut")
        return cls(build(args["body"]), None if shortcut is None else build(shortcut))


@register_module
class Concat(Module):
    """Parallel branches on the same input, their outputs stacked along the channels (axis 1).

        out = concatenate([branch_0(x), ..., branch_{B-1}(x)], axis=1)
        dx  = sum_b branch_b.backward(dout[:, channels of branch b])

    GoogLeNet's inception module is a Concat of a 1x1 conv, a 1x1 -> 3x3 and a 1x1 -> 5x5 conv
    path and a 3x3 max pool -> 1x1 conv path (Szegedy et al. 2015, Fig. 2b). Children are named
    "0", "1", ... The branches must agree on every axis but the channels.

    Raises
    ------
    ValueError
        If the branch outputs differ in rank or in a non-channel size (naming the shapes), or a
        branch raises ValueError (prefixed with "branch i ...").

    Examples
    --------
    >>> from cnnkit.nn import Conv2d, MaxPool2d
    >>> block = Concat(Conv2d(3, 4, 1), Conv2d(3, 2, 3, padding=1),
    ...                MaxPool2d(3, stride=1, padding=1))
    >>> block(np.zeros((2, 3, 8, 8), np.float32)).shape
    (2, 9, 8, 8)
    """

    def __init__(self, *branches):
        super().__init__()
        if not branches:
            raise ValueError("Concat needs at least one branch")
        for i, branch in enumerate(branches):
            setattr(self, str(i), _check_module(branch, f"Concat branch {i}"))

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        return list(self._modules.values())[index]

    def _run(self, i: int, branch: Module, method: str, value, input_grad=True):
        try:
            if method == "backward":
                return branch.backward(value, input_grad=input_grad)
            return branch.forward(value)
        except ValueError as err:
            where = " (backward)" if method == "backward" else ""
            raise ValueError(f"branch {i} {brief(branch)}{where}: {err}") from err

    def forward(self, x):
        outs = [self._run(i, branch, "forward", x) for i, branch in enumerate(self)]
        first = outs[0].shape
        for i, out in enumerate(outs):
            if out.ndim < 2 or out.ndim != len(first) or out.shape[2:] != first[2:] \
                    or out.shape[0] != first[0]:
                shapes = ", ".join(str(o.shape) for o in outs)
                raise ValueError(f"Concat: branch outputs {shapes} differ in a size other than "
                                 f"the channels (axis 1), first at branch {i}")
        self._cache = [out.shape[1] for out in outs]
        return np.concatenate(outs, axis=1)

    def backward(self, dout, *, input_grad=True):
        channels = self._take_cache()
        dout = np.asarray(dout)
        if dout.ndim < 2 or dout.shape[1] != sum(channels):
            raise ValueError(f"Concat.backward: dout of shape {dout.shape} must have "
                             f"{sum(channels)} channels (axis 1), the branches' {channels}")
        bounds = np.cumsum([0, *channels])
        dx = None
        for i, branch in enumerate(self):
            part = self._run(i, branch, "backward", dout[:, bounds[i]:bounds[i + 1]], input_grad)
            if input_grad:
                dx = part if dx is None else dx + part
        return dx

    def walk_shapes(self, in_shape, prefix=""):
        """Every branch's steps (each from the block's input), then the stack."""
        in_shape = tuple(in_shape)
        outs = []
        for i, branch in enumerate(self):
            steps = list(branch.walk_shapes(in_shape, join_name(prefix, str(i))))
            yield from steps
            outs.append(last_out(steps, in_shape))
        for i, out in enumerate(outs):
            if len(out) != len(outs[0]) or out[1:] != outs[0][1:]:
                raise LayerError(prefix, self, f"the branches' outputs "
                                               f"{', '.join(str(o) for o in outs)} per example "
                                               f"differ in a size other than the channels "
                                               f"(axis 0), first at branch {i}")
        yield Step(prefix, self, in_shape, (sum(o[0] for o in outs), *outs[0][1:]), whole=False)

    def output_shape(self, in_shape):
        return last_out(self.walk_shapes(in_shape), in_shape)

    def cost(self, in_shape):
        return Cost(0, 0)                  # a copy

    def label(self, in_shape):
        return f"CONCAT-{self.output_shape(in_shape)[0]}"

    def output_stride(self, in_shape):
        """The branches' common stride; they must agree."""
        strides = [branch.output_stride(in_shape) for branch in self]
        if len(set(strides)) > 1:
            raise ValueError(f"Concat: its branches have strides {strides}; they must agree")
        return strides[0]

    def to_onnx(self, graph, x, in_shape, name):
        """Every branch's operators on the same input, then ``Concat`` on axis 1."""
        outs = [graph.add(branch, x, in_shape, join_name(name, str(i)))
                for i, branch in enumerate(self)]
        return graph.node("Concat", outs, name=join_name(name, "concat"), axis=1)

    def get_config(self):
        return {"branches": [branch.config() for branch in self]}

    @classmethod
    def from_config(cls, config):
        branches = config.get("args", {}).get("branches")
        if not isinstance(branches, list):
            raise ValueError(f"a Concat config needs args.branches, a list of module configs; "
                             f"got {config!r}")
        return cls(*(build(c) for c in branches))
