"""Module and Parameter: the stateful tier over the pure kernels of ``cnnkit.functional``.

A Module's ``forward(x)`` calls a kernel and keeps its cache; ``backward(dout)`` takes the cache,
returns ``dx`` as a new array and *adds* the parameter gradients into ``p.grad`` (Torch7's
``updateGradInput`` / ``accGradParameters``). There is no autograd tape: containers chain the
backwards in reverse.

Every module can describe itself as JSON (``config()``) and be rebuilt from it (``build``), so a
checkpoint holds the architecture next to the weights and loads without the code that built it.
"""

from __future__ import annotations

import inspect
from typing import Iterator

import numpy as np

_REGISTRY: dict[str, type] = {}


class Parameter:
    """A trainable array ``data`` and its gradient ``grad`` (same shape and dtype, zeros at first).

    Examples
    --------
    >>> p = Parameter(np.ones((2, 3)))
    >>> p.shape, float(p.grad.sum())
    ((2, 3), 0.0)
    """

    __slots__ = ("data", "grad")

    def __init__(self, data):
        data = np.array(data, copy=True)
        if not np.issubdtype(data.dtype, np.floating):
            raise TypeError(f"Parameter data must be a floating-point array, got dtype {data.dtype}")
        self.data = data
        self.grad = np.zeros_like(data)

    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of layers and containers.

    Subclasses assign ``Parameter``s, child ``Module``s and (through ``register_buffer``) buffers
    as attributes in ``__init__``; the registries keep their order, which is the order of
    ``parameters()`` and of ``state_dict()`` keys (PyTorch's names: ``0.weight``,
    ``3.running_mean``). Subclasses implement ``forward``, ``backward`` and ``get_config``.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_cache", None)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):      # private bases (_Pool2d) are not buildable
            _REGISTRY[cls.__name__] = cls

    # ------------------------------------------------------------------ registries
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                               f"before assigning attributes")
        params, modules, buffers = self._parameters, self._modules, self._buffers
        if isinstance(value, Parameter):
            modules.pop(name, None)
            buffers.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            buffers.pop(name, None)
            modules[name] = value
        elif name in buffers:
            value = buffers[name] = np.asarray(value)     # a new value for a registered buffer
        elif name in params or name in modules:
            if value is not None:
                raise TypeError(f"{type(self).__name__}.{name} holds a "
                                f"{'Parameter' if name in params else 'Module'}; cannot assign "
                                f"{type(value).__name__} (assign a new one, or None to remove it)")
            params.pop(name, None)
            modules.pop(name, None)
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array: np.ndarray) -> None:
        """A persistent non-trainable array (running statistics), saved in ``state_dict``."""
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self._buffers[name] = np.asarray(array)
        object.__setattr__(self, name, self._buffers[name])

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """``(dotted_name, Parameter)`` for this module and all descendants, in order."""
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, p
        for name, child in self._modules.items():
            yield from child.named_parameters(prefix + name + ".")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for name, b in self._buffers.items():
            yield prefix + name, b
        for name, child in self._modules.items():
            yield from child.named_buffers(prefix + name + ".")

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """``(dotted_name, module)`` for this module (name ``""``) and all descendants."""
        yield prefix.rstrip("."), self
        for name, child in self._modules.items():
            yield from child.named_modules(prefix + name + ".")

    def children(self) -> list["Module"]:
        return list(self._modules.values())

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.parameters()))

    # ------------------------------------------------------------------ forward / backward
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    def backward(self, dout, *, input_grad=True):
        """Accumulate the parameters' gradients into ``.grad`` and return dL/dx for ``dout``.

        ``input_grad=False`` says the caller has no use for dL/dx (the network's input is data):
        a module may then skip computing it and return None. ``Sequential`` passes it to its
        first layer; the Trainer asks for no input gradient.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement backward()")

    def __call__(self, x):
        return self.forward(x)

    def _take_cache(self):
        """The forward's cache, cleared so memory is released and a second backward is caught."""
        cache = self._cache
        if cache is None:
            raise RuntimeError(f"{type(self).__name__}: backward() called before forward() "
                               f"(or twice for one forward)")
        object.__setattr__(self, "_cache", None)
        return cache

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad[...] = 0

    # ------------------------------------------------------------------ modes and dtype
    def train(self, mode: bool = True) -> "Module":
        for _, m in self.named_modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def astype(self, dtype) -> "Module":
        """Cast every parameter (and its grad) and floating buffer to ``dtype``, in place."""
        for _, m in self.named_modules():
            for p in m._parameters.values():
                if p is not None:
                    p.data = p.data.astype(dtype)
                    p.grad = p.grad.astype(dtype)
            for name, b in list(m._buffers.items()):
                if np.issubdtype(b.dtype, np.floating):
                    m.register_buffer(name, b.astype(dtype))
        return self

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat ``{dotted_name: array copy}`` of parameters and buffers (PyTorch's names)."""
        sd = {}
        for mod_name, m in self.named_modules():      # PyTorch's order: own params, buffers, children
            prefix = f"{mod_name}." if mod_name else ""
            sd.update({prefix + k: p.data.copy() for k, p in m._parameters.items() if p is not None})
            sd.update({prefix + k: np.array(b, copy=True) for k, b in m._buffers.items()})
        return sd

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into parameters and buffers by name (cast to their current dtype).

        Raises ``RuntimeError`` naming every missing and unexpected key (``strict=True``) and
        every shape mismatch; nothing is changed unless everything fits.
        """
        # name -> (owning module, attribute name, is_parameter)
        slots = {}
        for mod_name, m in self.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for pname, p in m._parameters.items():
                if p is not None:
                    slots[prefix + pname] = (m, pname, True)
            for bname in m._buffers:
                slots[prefix + bname] = (m, bname, False)

        def current(name):
            m, attr, is_param = slots[name]
            return m._parameters[attr].data if is_param else m._buffers[attr]

        problems = []
        missing = [k for k in slots if k not in state]
        unexpected = [k for k in state if k not in slots]
        if strict and missing:
            problems.append(f"missing keys {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys {unexpected}")
        for name in state:
            if name in slots and np.shape(state[name]) != current(name).shape:
                problems.append(f"{name}: shape {np.shape(state[name])} in the state dict but "
                                f"{current(name).shape} in the model")
        if problems:
            raise RuntimeError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))
        for name, value in state.items():
            if name not in slots:
                continue
            m, attr, is_param = slots[name]
            value = np.array(value, dtype=current(name).dtype, copy=True)
            if is_param:
                m._parameters[attr].data = value
            else:
                m.register_buffer(attr, value)

    # ------------------------------------------------------------------ randomness
    def rng_states(self) -> dict[str, dict]:
        """Bit-generator states of every module that owns an ``rng`` (Dropout), by module name."""
        return {name: m.rng.bit_generator.state for name, m in self.named_modules()
                if isinstance(getattr(m, "rng", None), np.random.Generator)}

    def set_rng_states(self, states: dict[str, dict]) -> None:
        modules = dict(self.named_modules())
        for name, state in states.items():
            if name not in modules or not isinstance(getattr(modules[name], "rng", None),
                                                     np.random.Generator):
                raise RuntimeError(f"set_rng_states: no module {name!r} with an rng")
            modules[name].rng.bit_generator.state = state

    # ------------------------------------------------------------------ config and repr
    def get_config(self) -> dict:
        """Constructor arguments as JSON-able values; rebuilding from them gives the same
        architecture (weights come from the state dict)."""
        return {}

    def config(self) -> dict:
        return {"type": type(self).__name__, "args": self.get_config()}

    @classmethod
    def from_config(cls, config: dict) -> "Module":
        return cls(**config.get("args", {}))

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._modules:
            return head + ")"
        lines = [head]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        return "\n".join(lines) + "\n)"


def build(config: dict) -> Module:
    """Rebuild a module (and its children) from ``Module.config()``'s JSON-able description.

    Raises ``ValueError`` for an unknown type or a malformed description.
    """
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"a module config must be a dict with a 'type', got {config!r}")
    cls = _REGISTRY.get(config["type"])
    if cls is None:
        raise ValueError(f"unknown module type {config['type']!r}; known: {sorted(_REGISTRY)}")
    try:
        return cls.from_config(config)
    except TypeError as err:
        raise ValueError(f"bad config for {config['type']}: {err}") from err


def call_backward(module: Module, dout, input_grad: bool = True):
    """``module.backward(dout)``, passing ``input_grad=False`` only when it is asked for and the
    module's backward takes it, so that a custom Module written as ``backward(self, dout)`` keeps
    working inside containers and the Trainer (it then computes a dx nobody reads)."""
    if input_grad or "input_grad" not in inspect.signature(module.backward).parameters:
        return module.backward(dout)
    return module.backward(dout, input_grad=False)
