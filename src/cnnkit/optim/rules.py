"""Update rules as pure functions, in the CS231n shape:
``new_w, new_state = rule(w, dw, state, *, hyperparameters)``.

Each rule reads the weights ``w``, their gradient ``dw`` and the rule's ``state`` (a dict of arrays
and the step count, or ``None`` before the first step) and returns new arrays; nothing passed in
is written to. The formulas are PyTorch's (``torch.optim``), so each rule can be checked against
it step by step. Weight decay and gradient clipping are not part of the rules: the optimizer
classes apply them to ``dw`` first (see :mod:`cnnkit.optim.optimizers`).
"""

from __future__ import annotations

import math

import numpy as np


def sgd_step(w, dw, state=None, *, lr, momentum=0.0, nesterov=False):
    """Stochastic gradient descent, with optional (Nesterov) momentum, as ``torch.optim.SGD``.

        without momentum:  w <- w - lr * dw
        with momentum mu:  v <- mu * v + dw                      (v = 0 before the first step)
                           w <- w - lr * v                       (classical)
                           w <- w - lr * (dw + mu * v)           (nesterov=True)

    Parameters
    ----------
    w, dw : arrays of one shape
    state : ``{"velocity": v}`` or ``None``/``{}`` (zero velocity). Unused when momentum is 0.
    lr, momentum, nesterov : step size, momentum coefficient mu, Nesterov's look-ahead form.

    Returns
    -------
    new_w : array
    new_state : ``{"velocity": new_v}`` with momentum, else ``{}``
    """
    if not momentum:
        return w - lr * dw, {}
    v = momentum * state["velocity"] + dw if state else np.array(dw, copy=True)
    step = dw + momentum * v if nesterov else v
    return w - lr * step, {"velocity": v}


def adagrad_step(w, dw, state=None, *, lr, eps):
    """Adagrad, as ``torch.optim.Adagrad`` with ``initial_accumulator_value=0``, ``lr_decay=0``.

        G <- G + dw**2                                            (G = 0 before the first step)
        w <- w - lr * dw / (sqrt(G) + eps)

    ``state`` is ``{"sum_sq": G}`` or ``None``; returns ``(new_w, {"sum_sq": new_G})``.
    """
    g2 = state["sum_sq"] + dw * dw if state else dw * dw
    return w - lr * dw / (np.sqrt(g2) + eps), {"sum_sq": g2}


def rmsprop_step(w, dw, state=None, *, lr, alpha, eps):
    """RMSProp, as ``torch.optim.RMSprop`` (not centred, no momentum; eps added after the root).

        s <- alpha * s + (1 - alpha) * dw**2                      (s = 0 before the first step)
        w <- w - lr * dw / (sqrt(s) + eps)

    ``state`` is ``{"mean_sq": s}`` or ``None``; returns ``(new_w, {"mean_sq": new_s})``.
    """
    s = alpha * state["mean_sq"] if state else np.zeros_like(dw)
    s = s + (1 - alpha) * (dw * dw)
    return w - lr * dw / (np.sqrt(s) + eps), {"mean_sq": s}


def adam_step(w, dw, state=None, *, lr, beta1, beta2, eps):
    """Adam with bias correction, as ``torch.optim.Adam``'s default (not AMSGrad).

        t <- t + 1                                                (t = 0, m = v = 0 at first)
        m <- beta1 * m + (1 - beta1) * dw
        v <- beta2 * v + (1 - beta2) * dw**2
        w <- w - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    that is ``w - lr * m_hat / (sqrt(v_hat) + eps)`` with eps added after the root of
    ``v_hat = v / (1 - beta2**t)``, which is where PyTorch adds it.

    ``state`` is ``{"m": m, "v": v, "t": t}`` or ``None``; returns ``(new_w, new_state)``.
    """
    m, v, t = (state["m"], state["v"], int(state["t"])) if state else (0.0, 0.0, 0)
    t += 1
    m = beta1 * m + (1 - beta1) * dw
    v = beta2 * v + (1 - beta2) * (dw * dw)
    denom = np.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps   # math: keeps float32 float32
    return w - (lr / (1 - beta1 ** t)) * m / denom, {"m": m, "v": v, "t": t}
