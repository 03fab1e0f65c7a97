"""Module and Parameter: the stateful tier over the pure kernels of ``cnnkit.functional``.

A Module's ``forward(x)`` calls a kernel and keeps its cache; ``backward(dout)`` takes the cache,
returns ``dx`` as a new array and *adds* the parameter gradients into ``p.grad`` (Torch7's
``updateGradInput`` / ``accGradParameters``). There is no autograd tape: containers chain the
backwards in reverse.

Every module describes itself without running (``output_shape``, ``cost``, ``label``, ...; see
:mod:`cnnkit.nn.facts`), offers the tree utilities other tiers use (``named_modules``, ``apply``,
``clear_state``, ``copy``, forward and backward hooks), and can describe itself as JSON
(``config()``) to be rebuilt from it (``build``), so a checkpoint holds the architecture next to
the weights and loads without the code that built it. ``build`` finds a type in an explicit
registry (``register_module``): cnnkit's layers under their class names, a user's own layers
under the names they register.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import inspect
import itertools
from typing import Iterator

import numpy as np

from .facts import FACTS, LayerFacts

__all__ = ["Module", "Parameter", "HookHandle", "build", "register_module", "shapes_only"]

_REGISTRY: dict[str, type] = {}          # config "type" -> class
_NAMES: dict[type, str] = {}             # class -> its registered name
_SHAPES_ONLY = contextvars.ContextVar("cnnkit_shapes_only", default=False)
_HOOK_IDS = itertools.count()


def register_module(cls: type, name: str | None = None, *, replace: bool = False) -> type:
    """Make ``cls`` buildable from a config whose "type" is ``name`` (default: the class name),
    so checkpoints of nets holding it load (:func:`build`). Returns ``cls``, so it also serves
    as a class decorator; cnnkit's own layers are registered that way.

    Registering a name that another class holds is an error unless ``replace=True``, so a
    user's own ``class Conv2d(Module)`` never silently stands in for cnnkit's; register it under
    another name (``register_module(Conv2d, name="MyConv2d")``). Registering the same class
    under the same name again does nothing.

    Raises
    ------
    TypeError
        If ``cls`` is not a Module subclass.
    ValueError
        If the name is taken by another class, or ``cls`` is registered under another name
        (without ``replace=True``), or the name is empty.
    """
    if not (isinstance(cls, type) and issubclass(cls, Module)):
        raise TypeError(f"register_module takes a Module subclass, got {cls!r}")
    name = cls.__name__ if name is None else name
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_module: the name must be a non-empty string, got {name!r}")
    holder, old_name = _REGISTRY.get(name), _NAMES.get(cls)
    if (holder, old_name) == (cls, name):
        return cls
    if not replace and holder is not None:
        raise ValueError(f"register_module: the name {name!r} is taken by {_qualified(holder)}; "
                         f"register {_qualified(cls)} under another name "
                         f"(register_module(cls, name=...)) or pass replace=True")
    if not replace and old_name is not None:
        raise ValueError(f"register_module: {_qualified(cls)} is registered as {old_name!r} "
                         f"already; pass replace=True to rename it")
    _REGISTRY.pop(old_name, None)
    if holder is not None:
        _NAMES.pop(holder, None)
    _REGISTRY[name], _NAMES[cls] = cls, name
    return cls


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _lookup(name: str) -> type | None:
    """The class registered as ``name``; or, for a config written before its class was
    registered (under its full dotted name), the registered class of that dotted name."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    return next((cls for cls in _NAMES if _qualified(cls) == name), None)


@contextlib.contextmanager
def shapes_only():
    """Build modules without drawing or allocating their weights.

    Inside the ``with`` block, every weight a cnnkit layer creates is a placeholder: a
    read-only array of zeros that takes no memory (a broadcast view), with the real shape and
    dtype, so every count, shape and fact is the real one. ``cnnkit summary vgg16`` builds its
    138M parameters this way in milliseconds, and a checkpoint loads into such a skeleton
    (``load_state_dict`` replaces the placeholders). Nothing may train or save a net whose
    weights are still placeholders.

    Examples
    --------
    >>> from cnnkit import nn
    >>> with shapes_only():
    ...     fc = nn.Linear(25088, 4096)
    >>> fc.weight.is_placeholder, fc.num_parameters()
    (True, 102764544)
    """
    token = _SHAPES_ONLY.set(True)
    try:
        yield
    finally:
        _SHAPES_ONLY.reset(token)


def building_shapes_only() -> bool:
    """Whether modules are being built inside :func:`shapes_only`."""
    return _SHAPES_ONLY.get()


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
        """The shape of ``data`` (and of ``grad``)."""
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        """The dtype of ``data`` (and of ``grad``)."""
        return self.data.dtype

    @property
    def size(self) -> int:
        """The number of elements of ``data``."""
        return self.data.size

    @classmethod
    def placeholder(cls, shape, dtype=np.float32) -> "Parameter":
        """A Parameter of ``shape`` with no values: a read-only broadcast view of one zero, for
        nets built with :func:`shapes_only`."""
        p = cls.__new__(cls)
        p.data = p.grad = np.broadcast_to(np.zeros((), dtype), tuple(shape))
        return p

    @property
    def is_placeholder(self) -> bool:
        """True for a placeholder without values (see :meth:`placeholder`)."""
        return not self.data.flags.writeable and all(s == 0 for s in self.data.strides)

    def cast(self, dtype) -> None:
        """Convert ``data`` and ``grad`` to ``dtype`` in place (the object stays, so an optimizer
        holding it keeps working)."""
        if self.is_placeholder:
            self.data = self.grad = np.broadcast_to(np.zeros((), dtype), self.shape)
        else:
            self.data, self.grad = self.data.astype(dtype), self.grad.astype(dtype)

    def __deepcopy__(self, memo):
        if self.is_placeholder:
            return Parameter.placeholder(self.shape, self.dtype)
        p = Parameter.__new__(Parameter)
        p.data, p.grad = self.data.copy(), self.grad.copy()
        return p

    def __repr__(self) -> str:
        kind = ", placeholder" if self.is_placeholder else ""
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype}{kind})"


class Module(LayerFacts):
    """Base class of layers and containers.

    Subclasses assign ``Parameter``s, child ``Module``s and (through ``register_buffer``) buffers
    as attributes in ``__init__``; the registries keep their order, which is the order of
    ``parameters()`` and of ``state_dict()`` keys (PyTorch's names: ``0.weight``,
    ``3.running_mean``). Subclasses implement ``forward``, ``backward`` and ``get_config``, and
    answer the facts of :mod:`cnnkit.nn.facts` (at least ``output_shape``) so that summaries,
    specs and conversions need not run them.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_cache", None)
        object.__setattr__(self, "_forward_hooks", {})
        object.__setattr__(self, "_backward_hooks", {})

    def __init_subclass__(cls, **kwargs):
        """Wrap a subclass's own ``forward`` and ``backward`` so that hooks run after them
        whoever calls them (a container, the Trainer, the user), and so that every backward
        takes ``input_grad`` (a backward written as ``backward(self, dout)`` is called without
        it; the signature is read once here, never per step). A class that replaces an
        inherited ``forward`` without answering ``output_shape`` itself drops the facts it
        inherits (:data:`~cnnkit.nn.facts.FACTS`): they describe its parent's forward, not its
        own, so it is traced as a module of unknown type."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        replaces = "forward" in own and super(cls, cls).forward is not Module.forward
        if "forward" in own:
            cls.forward = _run_forward_hooks(own["forward"])
        if "backward" in own:
            cls.backward = _run_backward_hooks(own["backward"])
        if replaces and "output_shape" not in own:
            for name in FACTS:
                if name not in own:
                    setattr(cls, name, getattr(LayerFacts, name))

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

    def named_parameters(self, prefix: str = "", *,
                         recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """``(dotted_name, Parameter)`` for this module and (``recurse``) all descendants, in
        order."""
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, p
        if recurse:
            for name, child in self._modules.items():
                yield from child.named_parameters(prefix + name + ".")

    def parameters(self) -> list[Parameter]:
        """The parameters of this module and of its descendants, in ``named_parameters``
        order."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(dotted_name, array)`` for every buffer (running statistics), this
        module's first."""
        for name, b in self._buffers.items():
            yield prefix + name, b
        for name, child in self._modules.items():
            yield from child.named_buffers(prefix + name + ".")

    def num_parameters(self, *, recurse: bool = True) -> int:
        """Values in the parameters of this module and (``recurse``) its descendants."""
        return int(sum(p.size for _, p in self.named_parameters(recurse=recurse)))

    # ------------------------------------------------------------------ the tree
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """``(dotted_name, module)`` for this module (name ``""``) and all descendants."""
        yield prefix.rstrip("."), self
        for name, child in self._modules.items():
            yield from child.named_modules(prefix + name + ".")

    def modules(self) -> list["Module"]:
        """This module and all its descendants, parents before children."""
        return [m for _, m in self.named_modules()]

    def children(self) -> list["Module"]:
        """The direct child modules, in registration order."""
        return list(self._modules.values())

    def apply(self, fn) -> "Module":
        """Call ``fn(module)`` on every descendant and then on this module (PyTorch's order);
        returns self."""
        for child in self._modules.values():
            child.apply(fn)
        fn(self)
        return self

    def clear_state(self) -> "Module":
        """Drop every forward cache in the tree (Torch7's ``clearState``): the memory a forward
        kept for its backward is released, and a backward now raises. Returns self."""
        for m in self.modules():
            object.__setattr__(m, "_cache", None)
        return self

    def copy(self) -> "Module":
        """A deep copy (weights, buffers, modes, a Dropout's generator state) that leaves the
        forward caches and the hooks behind: the copy is a fresh net, ready for a forward.
        (``copy.deepcopy`` copies everything, a pending backward included.)"""
        with self._set_aside():
            return copy.deepcopy(self)

    @contextlib.contextmanager
    def _set_aside(self):
        """Within the block every module of the tree has no cache and no hooks; afterwards each
        gets back its cache, its hooks and its training flag."""
        saved = [(m, m.training, m._cache, m._forward_hooks, m._backward_hooks)
                 for m in self.modules()]
        try:
            for m, *_ in saved:
                object.__setattr__(m, "_cache", None)
                object.__setattr__(m, "_forward_hooks", {})
                object.__setattr__(m, "_backward_hooks", {})
            yield
        finally:
            for m, training, cache, forward_hooks, backward_hooks in saved:
                object.__setattr__(m, "training", training)
                object.__setattr__(m, "_cache", cache)
                object.__setattr__(m, "_forward_hooks", forward_hooks)
                object.__setattr__(m, "_backward_hooks", backward_hooks)

    # ------------------------------------------------------------------ hooks
    def register_forward_hook(self, hook) -> "HookHandle":
        """Call ``hook(module, x, out)`` after every forward of this module; a hook that returns
        something other than None replaces the output. Returns a handle whose ``remove()``
        takes the hook off."""
        return HookHandle(self._forward_hooks, hook)

    def register_backward_hook(self, hook) -> "HookHandle":
        """Call ``hook(module, dout, dx)`` after every backward of this module, when its
        parameters' ``.grad`` hold the accumulated gradients (dx is None when no input gradient
        was asked for); a hook that returns something other than None replaces dx. Returns a
        handle whose ``remove()`` takes the hook off."""
        return HookHandle(self._backward_hooks, hook)

    # ------------------------------------------------------------------ forward / backward
    def forward(self, x):
        """The output for input ``x``; keeps what ``backward`` needs (each layer says its
        shapes)."""
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
        """Set every parameter's ``grad`` to zero (gradients accumulate across backward
        calls)."""
        for p in self.parameters():
            if not p.is_placeholder:          # a placeholder's gradient is a zero already
                p.grad[...] = 0

    # ------------------------------------------------------------------ modes and dtype
    def train(self, mode: bool = True) -> "Module":
        """Set ``training`` to ``mode`` on this module and every descendant; returns
        ``self``."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        """Evaluation mode (``train(False)``): Dropout passes everything, BatchNorm uses its
        running statistics."""
        return self.train(False)

    def astype(self, dtype) -> "Module":
        """Cast every parameter (and its grad) and floating buffer to ``dtype``, in place."""
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    p.cast(dtype)
            for name, b in list(m._buffers.items()):
                if np.issubdtype(b.dtype, np.floating):
                    m.register_buffer(name, b.astype(dtype))
        return self

    # ------------------------------------------------------------------ state
    def state_entries(self) -> Iterator[tuple[str, "Module", "Parameter | np.ndarray"]]:
        """``(dotted_name, owning module, Parameter or buffer)`` of every entry of
        :meth:`state_dict`, in its order (PyTorch's: a module's parameters, then its buffers,
        then its children's), placeholders included; nothing is copied."""
        for mod_name, m in self.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for k, p in m._parameters.items():
                if p is not None:
                    yield prefix + k, m, p
            for k, b in m._buffers.items():
                yield prefix + k, m, b

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat ``{dotted_name: array copy}`` of parameters and buffers (PyTorch's names).

        Raises ``RuntimeError`` if a weight is still a placeholder (:func:`shapes_only`): it has
        no values to save."""
        sd = {}
        for name, _, value in self.state_entries():
            if isinstance(value, Parameter):
                if value.is_placeholder:
                    raise RuntimeError(f"{name} is a placeholder without values (the net was "
                                       f"built with shapes_only()); load weights into it first")
                sd[name] = value.data.copy()
            else:
                sd[name] = np.array(value, copy=True)
        return sd

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into parameters and buffers by name (cast to their current dtype).

        Raises ``RuntimeError`` naming every missing and unexpected key (``strict=True``) and
        every shape mismatch; nothing is changed unless everything fits. A placeholder weight
        (:func:`shapes_only`) gets real values and a gradient of zeros.
        """
        # name -> (owning module, attribute name, is_parameter)
        slots = {name: (m, name.rsplit(".", 1)[-1], isinstance(value, Parameter))
                 for name, m, value in self.state_entries()}

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
                p = m._parameters[attr]
                if p.is_placeholder:
                    p.grad = np.zeros_like(value)
                p.data = value
            else:
                m.register_buffer(attr, value)

    # ------------------------------------------------------------------ randomness
    def rng_states(self) -> dict[str, dict]:
        """Bit-generator states of every module that owns an ``rng`` (Dropout), by module name."""
        return {name: m.rng.bit_generator.state for name, m in self.named_modules()
                if isinstance(getattr(m, "rng", None), np.random.Generator)}

    def set_rng_states(self, states: dict[str, dict]) -> None:
        """Restore what ``rng_states`` returned; a name without a module that owns an rng is
        a RuntimeError."""
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
        """``{"type": registered name, "args": get_config()}``. A class nobody registered is
        written by its full dotted name, which :func:`build` refuses until it is registered."""
        cls = type(self)
        return {"type": _NAMES.get(cls, _qualified(cls)), "args": self.get_config()}

    @classmethod
    def from_config(cls, config: dict) -> "Module":
        """The module that ``config`` (from ``config()``) describes, with fresh weights."""
        return cls(**config.get("args", {}))

    def extra_repr(self) -> str:
        """The hyperparameters ``repr`` shows inside the parentheses (non-default ones
        only)."""
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


class HookHandle:
    """What ``register_*_hook`` returns: ``remove()`` takes the hook off (twice is harmless)."""

    def __init__(self, hooks: dict, hook):
        if not callable(hook):
            raise TypeError(f"a hook must be callable, got {type(hook).__name__}")
        self._hooks, self._id = hooks, next(_HOOK_IDS)
        hooks[self._id] = hook

    def remove(self) -> None:
        """Take the hook off; removing it again does nothing."""
        self._hooks.pop(self._id, None)


def _run_forward_hooks(forward):
    """``forward`` followed by the instance's forward hooks. Only the most derived class's
    wrapper runs them, so a ``super().forward(x)`` inside an override does not run them twice."""
    @functools.wraps(forward)
    def run(self, x):
        out = forward(self, x)
        if self._forward_hooks and type(self).forward is run:
            out = _call_hooks(self._forward_hooks, self, x, out)
        return out
    return run


def _run_backward_hooks(backward):
    """``backward`` taking ``input_grad`` (passed on only if the written method takes it),
    followed by the instance's backward hooks (most derived class only, as for forward)."""
    params = inspect.signature(backward).parameters
    takes_flag = "input_grad" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())

    @functools.wraps(backward)
    def run(self, dout, *, input_grad=True):
        dx = backward(self, dout, input_grad=input_grad) if takes_flag else backward(self, dout)
        if self._backward_hooks and type(self).backward is run:
            dx = _call_hooks(self._backward_hooks, self, dout, dx)
        return dx
    return run


def _call_hooks(hooks: dict, module, given, result):
    """Run ``hook(module, given, result)`` for every hook in order; one that returns something
    other than None replaces ``result`` for the hooks after it and for the caller."""
    for hook in tuple(hooks.values()):
        replaced = hook(module, given, result)
        if replaced is not None:
            result = replaced
    return result


def build(config: dict) -> Module:
    """Rebuild a module (and its children) from ``Module.config()``'s JSON-able description.

    Raises ``ValueError`` for an unknown type (saying how to register a custom layer) or a
    malformed description.
    """
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"a module config must be a dict with a 'type', got {config!r}")
    name = config["type"]
    cls = _lookup(name) if isinstance(name, str) else None
    if cls is None:
        short = str(name).rsplit(".", 1)[-1]
        raise ValueError(f"unknown module type {name!r}; if it is a layer of your own, register "
                         f"its class before loading: cnnkit.nn.register_module({short}); known: "
                         f"{', '.join(sorted(_REGISTRY))}")
    try:
        return cls.from_config(config)
    except TypeError as err:
        raise ValueError(f"bad config for {name}: {err}") from err
