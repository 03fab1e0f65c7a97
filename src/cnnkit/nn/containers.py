"""Containers: Sequential chains layers, Residual adds a shortcut around a body, Concat stacks
parallel branches along the channels (GoogLeNet's inception module); and ZeroPadShortcut, the
parameter-free shortcut of a residual block that changes shape.

There is no autograd tape: ``backward`` walks the children in reverse, feeding each one's ``dx``
to the one before (Torch7's containers). A ``ValueError`` from a child is re-raised with the
child's index and one-line description in front (Torch7's ``rethrowErrors``), so a bad shape deep
in a net names the layer it hit.
"""

from __future__ import annotations

import numpy as np

from ..functional._utils import check_count, check_dout
from .module import Module, build, call_backward

__all__ = ["Sequential", "Residual", "Concat", "ZeroPadShortcut"]


def brief(module: Module) -> str:
    """A one-line description for error messages: ``Conv2d(3, 4, kernel_size=(3, 3))``, and
    ``Sequential(...)`` for a container (its full repr spans many lines)."""
    inner = "..." if module.children() else module.extra_repr()
    return f"{type(module).__name__}({inner})"


def _check_module(value, what: str) -> Module:
    if not isinstance(value, Module):
        raise TypeError(f"{what} must be a cnnkit.nn.Module, got {type(value).__name__}")
    return value


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

    def forward(self, x):
        for i, layer in enumerate(self):
            try:
                x = layer.forward(x)
            except ValueError as err:
                raise ValueError(f"layer {i} {brief(layer)}: {err}") from err
        return x

    def backward(self, dout, *, input_grad=True):
        layers = list(self)
        for i in reversed(range(len(layers))):
            layer = layers[i]
            try:
                dout = call_backward(layer, dout, input_grad or i > 0)
            except ValueError as err:
                raise ValueError(f"layer {i} {brief(layer)} (backward): {err}") from err
        return dout

    def get_config(self):
        return {"layers": [layer.config() for layer in self]}

    @classmethod
    def from_config(cls, config):
        layers = config.get("args", {}).get("layers")
        if not isinstance(layers, list):
            raise ValueError(f"a Sequential config needs args.layers, a list of layer configs; "
                             f"got {config!r}")
        return cls(*(build(c) for c in layers))


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
                return call_backward(module, value, input_grad)
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
                return call_backward(branch, value, input_grad)
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

    def get_config(self):
        return {"branches": [branch.config() for branch in self]}

    @classmethod
    def from_config(cls, config):
        branches = config.get("args", {}).get("branches")
        if not isinstance(branches, list):
            raise ValueError(f"a Concat config needs args.branches, a list of module configs; "
                             f"got {config!r}")
        return cls(*(build(c) for c in branches))


class ZeroPadShortcut(Module):
    """The parameter-free shortcut of a residual block that changes shape (He et al. 2016,
    option A, their CIFAR-10 ResNets): subsample by ``stride``, then append zero channels.

        out[n, c, i, j] = x[n, c, i*S, j*S]  for c < C_in,   0  for C_in <= c < C_out
        dx[n, c, i*S, j*S] = dout[n, c, i, j] for c < C_in, 0 elsewhere

    x (N, C_in, H, W) -> out (N, C_out, ceil(H/S), ceil(W/S)), which equals the output size of
    the block's 3x3 stride-S conv with padding 1.

    Examples
    --------
    >>> ZeroPadShortcut(16, 32, stride=2)(np.ones((2, 16, 32, 32))).shape
    (2, 32, 16, 16)
    """

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.in_channels = check_count(in_channels, "ZeroPadShortcut in_channels")
        self.out_channels = check_count(out_channels, "ZeroPadShortcut out_channels")
        self.stride = check_count(stride, "ZeroPadShortcut stride")
        if self.out_channels < self.in_channels:
            raise ValueError(f"ZeroPadShortcut: out_channels = {self.out_channels} is fewer than "
                             f"in_channels = {self.in_channels}; it can only add channels")

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ZeroPadShortcut: x must be (N, {self.in_channels}, H, W), "
                             f"got shape {x.shape}")
        s = self.stride
        kept = x[:, :, ::s, ::s]
        out = np.zeros((x.shape[0], self.out_channels, *kept.shape[2:]), dtype=x.dtype)
        out[:, :self.in_channels] = kept
        self._cache = x.shape
        return out

    def backward(self, dout, *, input_grad=True):
        x_shape = self._take_cache()
        n, _, h, w = x_shape
        s = self.stride
        dout = check_dout(dout, (n, self.out_channels, -(-h // s), -(-w // s)),
                          "ZeroPadShortcut.backward")
        dx = np.zeros(x_shape, dtype=dout.dtype)
        dx[:, :, ::s, ::s] = dout[:, :self.in_channels]
        return dx

    def get_config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "stride": self.stride}

    def extra_repr(self):
        stride = f", stride={self.stride}" if self.stride != 1 else ""
        return f"{self.in_channels}, {self.out_channels}{stride}"
