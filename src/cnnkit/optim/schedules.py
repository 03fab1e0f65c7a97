"""Learning-rate schedules over epochs, in closed form.

A schedule reads the optimizer's ``lr`` once, as ``base_lr``, when it is built (epoch 0), and
from then on owns it: ``step()`` (once per epoch, after the epoch's updates) advances the epoch
and sets ``optimizer.lr = lr_at(epoch)``. Each value is computed from ``base_lr`` and the epoch
alone, so a schedule resumed from ``state_dict()`` gives the same values as one never stopped.
The formulas are PyTorch's ``torch.optim.lr_scheduler`` ones (their closed forms).
"""

from __future__ import annotations

import math
import numbers

from .optimizers import Optimizer, _number


def _count(owner: str, name: str, value, minimum: int) -> int:
    """``int(value)`` if it is an integer ``>= minimum``, else ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class LRSchedule:
    """Base class: ``epoch``, ``base_lr``, ``lr`` and the (JSON-able) state.

    Subclasses list their hyperparameters in ``_HYPER`` and implement ``lr_at(epoch)``.
    """

    _HYPER: tuple[str, ...] = ()

    def __init__(self, optimizer: Optimizer):
        if not isinstance(getattr(optimizer, "lr", None), float):
            raise TypeError(f"{type(self).__name__}: expected a cnnkit optimizer (with a float "
                            f"lr), got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0
        self.optimizer.lr = self.lr

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (0-based), from the base rate and the
        hyperparameters."""
        raise NotImplementedError

    @property
    def lr(self) -> float:
        """The learning rate of the current epoch."""
        return self.lr_at(self.epoch)

    def step(self) -> float:
        """Advance one epoch; set and return the optimizer's new learning rate."""
        self.epoch += 1
        self.optimizer.lr = self.lr
        return self.optimizer.lr

    def hyper(self) -> dict:
        """The schedule's hyperparameters by name (what a checkpoint stores)."""
        return {k: getattr(self, k) for k in self._HYPER}

    def state_dict(self) -> dict:
        """``{"type", "epoch", "base_lr", "hyper"}``, all JSON-able."""
        return {"type": type(self).__name__, "epoch": self.epoch, "base_lr": self.base_lr,
                "hyper": self.hyper()}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore epoch, base lr and hyperparameters, and set the optimizer's lr to match.

        Raises ``ValueError`` for another schedule type or malformed or invalid values.
        """
        owner = type(self).__name__
        if not isinstance(state_dict, dict) or not {"type", "epoch", "base_lr", "hyper"} <= set(
                state_dict):
            raise ValueError(f"{owner}.load_state_dict: expected a dict with 'type', 'epoch', "
                             f"'base_lr' and 'hyper', got {state_dict!r:.120}")
        if state_dict["type"] != owner:
            raise ValueError(f"{owner}.load_state_dict: the state dict is for a "
                             f"{state_dict['type']!r} schedule, not {owner!r}")
        hyper = state_dict["hyper"]
        if not isinstance(hyper, dict) or set(hyper) != set(self._HYPER):
            raise ValueError(f"{owner}.load_state_dict: hyperparameters {hyper!r:.120} do not "
                             f"fit {list(self._HYPER)}")
        epoch = _count(f"{owner}.load_state_dict", "epoch", state_dict["epoch"], 0)
        base_lr = _number(owner, "base_lr", state_dict["base_lr"], "> 0")
        self._set_hyper(**hyper)                  # validates
        self.base_lr, self.epoch = base_lr, epoch
        self.optimizer.lr = self.lr

    def _set_hyper(self, **hyper) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyper().items())
        return f"{type(self).__name__}({args}; epoch {self.epoch}, lr {self.lr:.6g})"


class StepLR(LRSchedule):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs (Caffe's "step").

        lr(epoch) = base_lr * gamma ** (epoch // step_size)

    Examples
    --------
    >>> from cnnkit.nn.module import Parameter
    >>> from cnnkit.optim import SGD
    >>> opt = SGD([Parameter([0.0, 0.0, 0.0])], lr=0.1)
    >>> sched = StepLR(opt, step_size=2, gamma=0.5)
    >>> [round(sched.step(), 6) for _ in range(5)]
    [0.1, 0.05, 0.05, 0.025, 0.025]
    """

    _HYPER = ("step_size", "gamma")

    def __init__(self, optimizer, step_size, gamma=0.1):
        self._set_hyper(step_size=step_size, gamma=gamma)
        super().__init__(optimizer)

    def _set_hyper(self, *, step_size, gamma):
        self.step_size = _count("StepLR", "step_size", step_size, 1)
        self.gamma = _number("StepLR", "gamma", gamma, "> 0")

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRSchedule):
    """Multiply the learning rate by ``gamma`` every epoch.

        lr(epoch) = base_lr * gamma ** epoch
    """

    _HYPER = ("gamma",)

    def __init__(self, optimizer, gamma):
        self._set_hyper(gamma=gamma)
        super().__init__(optimizer)

    def _set_hyper(self, *, gamma):
        self.gamma = _number("ExponentialLR", "gamma", gamma, "> 0")

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** epoch


class CosineLR(LRSchedule):
    """Cosine annealing from ``base_lr`` at epoch 0 to ``eta_min`` at epoch ``t_max``.

        lr(epoch) = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2

    (the closed form of ``torch.optim.lr_scheduler.CosineAnnealingLR``; past ``t_max`` it rises
    again, as PyTorch's does, so set ``t_max`` to the number of epochs).
    """

    _HYPER = ("t_max", "eta_min")

    def __init__(self, optimizer, t_max, eta_min=0.0):
        self._set_hyper(t_max=t_max, eta_min=eta_min)
        super().__init__(optimizer)

    def _set_hyper(self, *, t_max, eta_min):
        self.t_max = _count("CosineLR", "t_max", t_max, 1)
        self.eta_min = _number("CosineLR", "eta_min", eta_min, ">= 0")

    def lr_at(self, epoch):
        return self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * epoch / self.t_max)) / 2


class LinearWarmup(LRSchedule):
    """Ramp the learning rate up linearly over the first ``warmup_epochs``, optionally in front
    of another schedule, whose value it scales (PyTorch's ``LinearLR`` to ``end_factor=1``, and
    ``ChainedScheduler([LinearLR, after])`` for a multiplicative ``after``).

        factor(epoch) = start_factor + (1 - start_factor) * min(epoch, W) / W   (W = warmup_epochs)
        lr(epoch) = factor(epoch) * (after.lr_at(epoch) if after else base_lr)

    Build ``after`` on the same optimizer first; the warmup then steps it (keeps its epoch in
    step) and saves its state inside its own.

    Examples
    --------
    >>> from cnnkit.nn.module import Parameter
    >>> from cnnkit.optim import SGD
    >>> opt = SGD([Parameter([0.0, 0.0, 0.0])], lr=0.1)
    >>> sched = LinearWarmup(opt, warmup_epochs=4, start_factor=0.25,
    ...                      after=CosineLR(opt, t_max=10))
    >>> [round(opt.lr, 4)] + [round(sched.step(), 4) for _ in range(5)]
    [0.025, 0.0427, 0.0565, 0.0645, 0.0655, 0.05]
    """

    _HYPER = ("warmup_epochs", "start_factor")

    def __init__(self, optimizer, warmup_epochs, start_factor=0.1, after: LRSchedule | None = None):
        if after is not None and (not isinstance(after, LRSchedule)
                                  or after.optimizer is not optimizer):
            raise ValueError("LinearWarmup: after must be a schedule of the same optimizer")
        self._set_hyper(warmup_epochs=warmup_epochs, start_factor=start_factor)
        self.after = after
        super().__init__(optimizer)
        if after is not None:
            self.base_lr, self.epoch = after.base_lr, after.epoch
            self.optimizer.lr = self.lr

    def _set_hyper(self, *, warmup_epochs, start_factor):
        self.warmup_epochs = _count("LinearWarmup", "warmup_epochs", warmup_epochs, 1)
        start = _number("LinearWarmup", "start_factor", start_factor, "> 0")
        if start > 1:
            raise ValueError(f"LinearWarmup: start_factor must be in (0, 1], got {start_factor!r}")
        self.start_factor = start

    def lr_at(self, epoch):
        factor = self.start_factor + (1 - self.start_factor) * min(
            epoch, self.warmup_epochs) / self.warmup_epochs
        return factor * (self.after.lr_at(epoch) if self.after is not None else self.base_lr)

    def step(self):
        if self.after is not None:
            self.after.epoch += 1
        return super().step()

    def state_dict(self):
        sd = super().state_dict()
        sd["after"] = None if self.after is None else self.after.state_dict()
        return sd

    def load_state_dict(self, state_dict):
        after = state_dict.get("after") if isinstance(state_dict, dict) else None
        if (after is None) != (self.after is None):
            raise ValueError(f"LinearWarmup.load_state_dict: the state dict has "
                             f"{'no' if after is None else 'a'} schedule after the warmup, "
                             f"this one {'has' if self.after is not None else 'has none'}")
        if self.after is not None:
            self.after.load_state_dict(after)
        super().load_state_dict(state_dict)
