"""The update rules by the names the command line and the summaries use, in one table.

    name       optimizer                            state per parameter   default lr
    sgd        SGD                                   0                     0.1
    momentum   SGD(momentum=...)                     1 (velocity)          0.05
    nesterov   SGD(momentum=..., nesterov=True)      1 (velocity)          0.05
    adagrad    Adagrad                               1 (sum of squares)    0.05
    rmsprop    RMSProp                               1 (mean of squares)   1e-3
    adam       Adam                                  2 (m, v)              3e-3

The default learning rates are those ``cnnkit train`` starts from: each trains the default net
on MNIST within a few tenths of a point of the best rate tried for it.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from .optimizers import SGD, Adagrad, Adam, Optimizer, RMSProp

__all__ = ["Choice", "OPTIMIZERS", "make_optimizer"]


class Choice(NamedTuple):
    """One named update rule: how to build it, how many arrays of state it keeps per parameter
    besides the value and its gradient (the memory estimate's "optimizer caches"), and its
    default learning rate."""

    build: Callable[..., Optimizer]        # (named parameters, lr, momentum, weight_decay)
    slots: int
    lr: float


#: The optimizers ``--optimizer`` names: each one's builder, its state slots per parameter and its
#: default learning rate.
OPTIMIZERS = {
    "sgd": Choice(lambda p, lr, momentum, wd: SGD(p, lr=lr, weight_decay=wd), 0, 0.1),
    "momentum": Choice(lambda p, lr, momentum, wd: SGD(p, lr=lr, momentum=momentum,
                                                       weight_decay=wd), 1, 0.05),
    "nesterov": Choice(lambda p, lr, momentum, wd: SGD(p, lr=lr, momentum=momentum,
                                                       nesterov=True, weight_decay=wd), 1, 0.05),
    "adagrad": Choice(lambda p, lr, momentum, wd: Adagrad(p, lr=lr, weight_decay=wd), 1, 0.05),
    "rmsprop": Choice(lambda p, lr, momentum, wd: RMSProp(p, lr=lr, weight_decay=wd), 1, 1e-3),
    "adam": Choice(lambda p, lr, momentum, wd: Adam(p, lr=lr, weight_decay=wd), 2, 3e-3),
}


def make_optimizer(name: str, params, *, lr: float | None = None, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> Optimizer:
    """The optimizer ``name`` (a key of ``OPTIMIZERS``) over ``params`` (a model's
    ``named_parameters()``); ``lr`` defaults to the table's.

    Raises ``ValueError`` for an unknown name (listing the known ones) or a bad hyperparameter.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    choice = OPTIMIZERS[name]
    return choice.build(params, choice.lr if lr is None else lr, momentum, weight_decay)
