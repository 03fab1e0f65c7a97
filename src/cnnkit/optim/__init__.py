"""Optimizers and learning-rate schedules.

- :mod:`~cnnkit.optim.rules`: the update rules as pure functions,
  ``new_w, new_state = adam_step(w, dw, state, lr=..., beta1=..., beta2=..., eps=...)``;
- :mod:`~cnnkit.optim.optimizers`: ``SGD`` (momentum, Nesterov), ``Adagrad``, ``RMSProp``,
  ``Adam``, holding ``{param_name: state}`` with ``step()``, ``zero_grad()``, ``state_dict()``;
- :mod:`~cnnkit.optim.schedules`: ``StepLR``, ``ExponentialLR``, ``CosineLR``, ``LinearWarmup``,
  stepped once per epoch;
- :mod:`~cnnkit.optim.choices`: ``OPTIMIZERS``, the rules by name (adam, sgd, momentum, ...),
  and ``make_optimizer(name, params, ...)``.
"""

from .choices import OPTIMIZERS, make_optimizer
from .optimizers import SGD, Adagrad, Adam, Optimizer, RMSProp
from .rules import adagrad_step, adam_step, rmsprop_step, sgd_step
from .schedules import CosineLR, ExponentialLR, LinearWarmup, LRSchedule, StepLR

__all__ = ["sgd_step", "adagrad_step", "rmsprop_step", "adam_step",
           "Optimizer", "SGD", "Adagrad", "RMSProp", "Adam",
           "LRSchedule", "StepLR", "ExponentialLR", "CosineLR", "LinearWarmup",
           "OPTIMIZERS", "make_optimizer"]
