"""Containers: Sequential chains layers, Residual adds a shortcut around a body.

There is no autograd tape: ``backward`` walks the children in reverse, feeding each one's ``dx``
to the one before (Torch7's containers). A ``ValueError`` from a child is re-raised with the
child's index and one-line description in front (Torch7's ``rethrowErrors``), so a bad shape deep
in a net names the layer it hit.
"""

from __future__ import annotations

from .module import Module, build, call_backward

__all__ = ["Sequential", "Residual"]


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
