"""Optimizer classes: per-parameter state around the pure rules of :mod:`cnnkit.optim.rules`.

An optimizer is built from ``model.named_parameters()`` (or a list of Parameters, then named
``"0"``, ``"1"``, ...) and keeps ``{name: state}``. ``step()`` works in Caffe's order:

1. clip: if ``max_grad_norm`` is set and the global norm ``sqrt(sum_p ||dW_p||^2)`` of all the
   gradients exceeds it, every gradient is scaled by ``max_grad_norm / (norm + 1e-6)``
   (``torch.nn.utils.clip_grad_norm_``'s formula);
2. weight decay: the L2 penalty ``0.5 * weight_decay * ||W||^2`` adds ``weight_decay * W`` to the
   gradient of **weights only**, the parameters with ``ndim >= 2`` (Linear, Conv2d and locally
   connected weights), never biases or batch-norm ``weight``/``bias`` (1-D), as DESIGN.md's L2
   regularisation says. ``torch.optim``'s ``weight_decay`` decays every parameter it is given,
   so to match it in PyTorch put the 1-D parameters in a group with ``weight_decay=0``;
3. the update rule, written into ``p.data`` in place (``p.data[...] = new``), so views of the
   parameter held elsewhere see it.

``p.grad`` is read, never written, by ``step()``: clipping and decay act on copies.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import parallel
from ..nn.module import Parameter
from .rules import adagrad_step, adam_step, rmsprop_step, sgd_step

_CLIP_EPS = 1e-6          # torch.nn.utils.clip_grad_norm_ divides by (norm + 1e-6)

_RULES = {
    "> 0": lambda x: x > 0,
    ">= 0": lambda x: x >= 0,
    "in [0, 1)": lambda x: 0 <= x < 1,
}


def _number(owner: str, name: str, value, rule: str) -> float:
    """``float(value)`` if it is a finite real number obeying ``rule``, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{owner}: {name} must be a number {rule}, got {value!r}")
    x = float(value)
    if not (math.isfinite(x) and _RULES[rule](x)):
        raise ValueError(f"{owner}: {name} must be {rule}, got {value!r}")
    return x


def _named_parameters(params, owner: str) -> dict[str, Parameter]:
    """``{name: Parameter}`` from (name, Parameter) pairs or bare Parameters (named by position)."""
    if isinstance(params, Parameter) or hasattr(params, "named_parameters"):
        raise TypeError(f"{owner}: params must be an iterable of Parameters or (name, Parameter) "
                        f"pairs, e.g. model.named_parameters(); got a {type(params).__name__}")
    named, owners = {}, {}
    for i, item in enumerate(params):
        if isinstance(item, Parameter):
            name, p = str(i), item
        elif (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
              and isinstance(item[1], Parameter)):
            name, p = item
        else:
            raise TypeError(f"{owner}: params must be Parameters or (name, Parameter) pairs "
                            f"(e.g. model.named_parameters()); item {i} is {item!r:.80}")
        if name in named:
            raise ValueError(f"{owner}: duplicate parameter name {name!r}")
        if p.is_placeholder:
            raise ValueError(f"{owner}: parameter {name!r} is a placeholder without values (its "
                             f"net was built with nn.shapes_only()); load weights into it first")
        if id(p) in owners:
            raise ValueError(f"{owner}: parameter {name!r} is the same Parameter as "
                             f"{owners[id(p)]!r}; it would be updated twice")
        named[name], owners[id(p)] = p, name
    if not named:
        raise ValueError(f"{owner}: got an empty parameter list")
    return named


def _is_count(value) -> bool:
    """Whether ``value`` is a non-negative integral number (an int, or one read back from .npz)."""
    try:
        return (not isinstance(value, (bool, str)) and np.ndim(value) == 0
                and float(value) == int(value) >= 0)
    except (TypeError, ValueError, OverflowError):
        return False


class Optimizer:
    """Base class: holds the parameters, their state and the hyperparameters.

    Subclasses list their hyperparameters in ``_HYPER`` (constructor order), validate them in
    ``_check_rule``, give the fresh state of one parameter in ``_fresh`` and apply their rule in
    ``_rule``. The hyperparameters are attributes of the same names; ``lr`` may be set at any
    time (schedules do), to any finite value ``>= 0``.
    """

    _HYPER: tuple[str, ...] = ()

    def __init__(self, params, hyper: dict):
        owner = type(self).__name__
        self.params = _named_parameters(params, owner)
        _number(owner, "lr", hyper["lr"], "> 0")          # a schedule may take it to 0 later
        hyper = self._check_hyper(hyper)
        self._apply_hyper(hyper)
        self.state = {name: self._fresh(p.data, hyper) for name, p in self.params.items()}
        self.last_grad_norm = None    # global gradient norm before clipping, when clipping

    # ------------------------------------------------------------------ hyperparameters
    @property
    def lr(self) -> float:
        """The learning rate of the next step (a schedule sets it at each epoch)."""
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = _number(type(self).__name__, "lr", value, ">= 0")

    def _check_hyper(self, hyper: dict) -> dict:
        """Validated, normalised copy of ``hyper``; ``ValueError`` names the bad value."""
        owner = type(self).__name__
        if not isinstance(hyper, dict):
            raise ValueError(f"{owner}: hyperparameters must be a dict, got {hyper!r:.80}")
        missing = [k for k in self._HYPER if k not in hyper]
        unknown = [k for k in hyper if k not in self._HYPER]
        if missing or unknown:
            raise ValueError(f"{owner}: hyperparameters {sorted(hyper)} do not fit "
                             f"{list(self._HYPER)} (missing {missing}, unknown {unknown})")
        h = dict(hyper)
        h["lr"] = _number(owner, "lr", h["lr"], ">= 0")
        h["weight_decay"] = _number(owner, "weight_decay", h["weight_decay"], ">= 0")
        if h["max_grad_norm"] is not None:
            h["max_grad_norm"] = _number(owner, "max_grad_norm", h["max_grad_norm"], "> 0")
        self._check_rule(h, owner)
        return h

    def _apply_hyper(self, hyper: dict) -> None:
        for k, v in hyper.items():
            setattr(self, k, v)

    def hyper(self) -> dict:
        """The hyperparameters as JSON-able values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in ((k, getattr(self, k)) for k in self._HYPER)}

    # ------------------------------------------------------------------ subclass hooks
    def _check_rule(self, h: dict, owner: str) -> None:
        raise NotImplementedError

    def _fresh(self, w: np.ndarray, h: dict) -> dict:
        raise NotImplementedError

    def _rule(self, w, dw, state):
        raise NotImplementedError

    # ------------------------------------------------------------------ stepping
    def zero_grad(self) -> None:
        """Set every parameter's ``grad`` to zero, in place."""
        for p in self.params.values():
            p.grad[...] = 0

    def step(self) -> None:
        """One update of every parameter from its ``grad``: clip, weight decay, rule (in place).

        Raises
        ------
        ValueError
            If a parameter's ``grad`` does not have the shape of its ``data``.
        """
        grads = {}
        for name, p in self.params.items():
            if np.shape(p.grad) != p.data.shape:
                raise ValueError(f"{type(self).__name__}.step: parameter {name!r} has data of "
                                 f"shape {p.data.shape} but grad of shape {np.shape(p.grad)}")
            grads[name] = np.asarray(p.grad, dtype=p.data.dtype)
        if self.max_grad_norm is not None:
            norms = [math.sqrt(float(np.vdot(g, g))) for g in
                     (g.astype(np.float64, copy=False).ravel() for g in grads.values())]
            self.last_grad_norm = math.hypot(*norms)
            coef = self.max_grad_norm / (self.last_grad_norm + _CLIP_EPS)
            if coef < 1.0:
                grads = {k: g * g.dtype.type(coef) for k, g in grads.items()}
        names = list(self.params)

        def update(i, slot):                      # one parameter: its own arrays only
            name = names[i]
            p, g = self.params[name], grads[name]
            if self.weight_decay and p.data.ndim >= 2:
                g = g + self.weight_decay * p.data
            new_w, self.state[name] = self._rule(p.data, g, self.state[name])
            p.data[...] = new_w

        # The parameters are independent, so cnnkit's threads update them in any order.
        parallel.for_each(len(names), update,
                          work_bytes=sum(p.data.nbytes for p in self.params.values()))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """``{"type", "hyper", "state"}``: the class name, JSON-able hyperparameters, and per
        parameter name its slots (array copies, and the step count as an int)."""
        state = {name: {k: v.copy() if isinstance(v, np.ndarray) else int(v) for k, v in s.items()}
                 for name, s in self.state.items()}
        return {"type": type(self).__name__, "hyper": self.hyper(), "state": state}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and state saved by ``state_dict`` (copies; cast to each
        parameter's dtype), so that training continues exactly where it was saved.

        Raises
        ------
        ValueError
            If ``state_dict`` is malformed, is for another optimizer type, or holds invalid
            hyperparameters.
        RuntimeError
            Naming every missing or unexpected parameter name, slot and shape that does not fit
            this optimizer's parameters. Nothing is changed unless everything fits.
        """
        owner = type(self).__name__
        if not isinstance(state_dict, dict) or not {"type", "hyper", "state"} <= set(state_dict):
            raise ValueError(f"{owner}.load_state_dict: expected a dict with 'type', 'hyper' and "
                             f"'state', got {state_dict!r:.120}")
        if state_dict["type"] != owner:
            raise ValueError(f"{owner}.load_state_dict: the state dict is for a "
                             f"{state_dict['type']!r} optimizer, not {owner!r}")
        hyper = self._check_hyper(state_dict["hyper"])
        saved = state_dict["state"]
        if not isinstance(saved, dict):
            raise ValueError(f"{owner}.load_state_dict: 'state' must be a dict of parameter "
                             f"names, got {type(saved).__name__}")
        problems = []
        missing = [k for k in self.params if k not in saved]
        unexpected = [k for k in saved if k not in self.params]
        if missing:
            problems.append(f"missing parameters {missing}")
        if unexpected:
            problems.append(f"unexpected parameters {unexpected}")
        new_state = {}
        for name, p in self.params.items():
            if name not in saved:
                continue
            fresh, slots = self._fresh(p.data, hyper), saved[name]
            if not isinstance(slots, dict) or set(slots) != set(fresh):
                got = sorted(slots) if isinstance(slots, dict) else repr(slots)
                problems.append(f"{name}: slots {got} but {owner} with these hyperparameters "
                                f"keeps {sorted(fresh)}")
                continue
            new_state[name] = {}
            for k, ref in fresh.items():
                value = slots[k]
                if isinstance(ref, np.ndarray):
                    if np.shape(value) != ref.shape:
                        problems.append(f"{name}.{k}: shape {np.shape(value)} in the state dict "
                                        f"but {ref.shape} for the parameter")
                    else:
                        new_state[name][k] = np.array(value, dtype=ref.dtype, copy=True)
                elif _is_count(value):
                    new_state[name][k] = int(value)
                else:
                    problems.append(f"{name}.{k}: expected a step count >= 0, got {value!r:.40}")
        if problems:
            raise RuntimeError(f"{owner}.load_state_dict: " + "; ".join(problems))
        self._apply_hyper(hyper)
        self.state = new_state

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._HYPER)
        return f"{type(self).__name__}({args}; {len(self.params)} parameters)"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum or Nesterov momentum.

    The rule is :func:`cnnkit.optim.rules.sgd_step` (``torch.optim.SGD`` with dampening 0);
    ``weight_decay`` applies to weights (``ndim >= 2``) only and ``max_grad_norm`` clips the
    global gradient norm first (see the module docstring).

    Examples
    --------
    >>> from cnnkit.nn.module import Parameter
    >>> w = Parameter(np.array([[1.0, 2.0]]))
    >>> opt = SGD([("w", w)], lr=0.1, momentum=0.9)
    >>> w.grad[...] = [[1.0, -1.0]]
    >>> opt.step(); opt.step()             # v = 1, then 0.9 * 1 + 1 = 1.9 (times the gradient)
    >>> w.data
    array([[0.71, 2.29]])
    >>> opt.state_dict()["state"]["w"]["velocity"]
    array([[ 1.9, -1.9]])
    """

    _HYPER = ("lr", "momentum", "nesterov", "weight_decay", "max_grad_norm")

    def __init__(self, params, lr=1e-2, momentum=0.0, nesterov=False, weight_decay=0.0,
                 max_grad_norm=None):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov,
                                      weight_decay=weight_decay, max_grad_norm=max_grad_norm))

    def _check_rule(self, h, owner):
        h["momentum"] = _number(owner, "momentum", h["momentum"], "in [0, 1)")
        if not isinstance(h["nesterov"], (bool, np.bool_)):
            raise ValueError(f"{owner}: nesterov must be True or False, got {h['nesterov']!r}")
        h["nesterov"] = bool(h["nesterov"])
        if h["nesterov"] and h["momentum"] == 0:
            raise ValueError(f"{owner}: nesterov=True requires a momentum > 0, got momentum "
                             f"{h['momentum']!r}")

    def _fresh(self, w, h):
        return {"velocity": np.zeros_like(w)} if h["momentum"] else {}

    def _rule(self, w, dw, state):
        return sgd_step(w, dw, state, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov)


class Adagrad(Optimizer):
    """Adagrad: per-element steps scaled by the root of the summed squared gradients.

    The rule is :func:`cnnkit.optim.rules.adagrad_step` (``torch.optim.Adagrad`` with
    ``initial_accumulator_value=0``, ``lr_decay=0``); weight decay and clipping as for all
    optimizers (see the module docstring).
    """

    _HYPER = ("lr", "eps", "weight_decay", "max_grad_norm")

    def __init__(self, params, lr=1e-2, eps=1e-10, weight_decay=0.0, max_grad_norm=None):
        super().__init__(params, dict(lr=lr, eps=eps, weight_decay=weight_decay,
                                      max_grad_norm=max_grad_norm))

    def _check_rule(self, h, owner):
        h["eps"] = _number(owner, "eps", h["eps"], "> 0")

    def _fresh(self, w, h):
        return {"sum_sq": np.zeros_like(w)}

    def _rule(self, w, dw, state):
        return adagrad_step(w, dw, state, lr=self.lr, eps=self.eps)


class RMSProp(Optimizer):
    """RMSProp: steps scaled by the root of a moving average of squared gradients.

    The rule is :func:`cnnkit.optim.rules.rmsprop_step` (``torch.optim.RMSprop``, not centred,
    no momentum); ``alpha`` is the decay rate of the average (Hinton's 0.9, PyTorch's 0.99).
    """

    _HYPER = ("lr", "alpha", "eps", "weight_decay", "max_grad_norm")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
                 max_grad_norm=None):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      max_grad_norm=max_grad_norm))

    def _check_rule(self, h, owner):
        h["alpha"] = _number(owner, "alpha", h["alpha"], "in [0, 1)")
        h["eps"] = _number(owner, "eps", h["eps"], "> 0")

    def _fresh(self, w, h):
        return {"mean_sq": np.zeros_like(w)}

    def _rule(self, w, dw, state):
        return rmsprop_step(w, dw, state, lr=self.lr, alpha=self.alpha, eps=self.eps)


class Adam(Optimizer):
    """Adam: bias-corrected moving averages of the gradient and of its square.

    The rule is :func:`cnnkit.optim.rules.adam_step` (``torch.optim.Adam``'s default, not
    AMSGrad). ``weight_decay`` is L2 regularisation of the weights added to the gradient before
    the moments (PyTorch's Adam ``weight_decay``, restricted to ``ndim >= 2``), not AdamW's
    decoupled decay.

    Examples
    --------
    >>> from cnnkit.nn.module import Parameter
    >>> params = [("fc.weight", Parameter(np.ones((2, 3)))), ("fc.bias", Parameter(np.zeros(2)))]
    >>> opt = Adam(params, lr=1e-3, weight_decay=5e-4)     # usually model.named_parameters()
    >>> params[0][1].grad[...] = 0.5
    >>> opt.step()                         # the first step moves each element by about lr
    >>> round(float(params[0][1].data[0, 0]), 6)
    0.999
    >>> sorted(opt.state_dict()["state"]["fc.weight"]), opt.state_dict()["state"]["fc.bias"]["t"]
    (['m', 't', 'v'], 1)
    >>> opt.lr = 1e-4                      # schedules set it the same way
    >>> opt.state_dict()["hyper"]          # doctest: +NORMALIZE_WHITESPACE
    {'lr': 0.0001, 'betas': [0.9, 0.999], 'eps': 1e-08, 'weight_decay': 0.0005,
     'max_grad_norm': None}
    """

    _HYPER = ("lr", "betas", "eps", "weight_decay", "max_grad_norm")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 max_grad_norm=None):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      max_grad_norm=max_grad_norm))

    def _check_rule(self, h, owner):
        betas = h["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
        h["betas"] = tuple(_number(owner, f"betas[{i}]", b, "in [0, 1)")
                           for i, b in enumerate(betas))
        h["eps"] = _number(owner, "eps", h["eps"], "> 0")

    def _fresh(self, w, h):
        return {"m": np.zeros_like(w), "v": np.zeros_like(w), "t": 0}

    def _rule(self, w, dw, state):
        beta1, beta2 = self.betas
        return adam_step(w, dw, state, lr=self.lr, beta1=beta1, beta2=beta2, eps=self.eps)
