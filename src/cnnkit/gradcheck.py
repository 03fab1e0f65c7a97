"""Numerical gradients by centred differences, and checks of analytic backwards against them.

    df/dx_i ~= (f(x + h e_i) - f(x - h e_i)) / (2h)          error O(h^2)

For an array-valued ``f`` with upstream gradient ``dout`` the scalar is ``sum(f(x) * dout)``, so
the numerical result is the vector-Jacobian product a backward computes (CS231n's
``eval_numerical_gradient_array``). Work in float64: in float32 the round-off of the difference
quotient (~1e-7 / h) swamps the answer.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from .errors import UsageError
from .functional.losses import get_loss
from .models import is_checkpoint, resolve_model
from .summary import check_memory

__all__ = ["numerical_gradient", "numerical_gradient_array", "rel_error", "check_kernel",
           "check_loss", "check_model", "check_named_model", "ModelCheck"]


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray,
                       h: float = 1e-5) -> np.ndarray:
    """Gradient of the scalar function ``f`` at ``x`` (a float array of any shape), by centred
    differences.

    ``f`` is called as ``f(x)`` with ``x`` itself perturbed in place, one element at a time, and
    every element is restored exactly (also when ``f`` raises). So ``f`` may ignore its argument
    and read the array through a model that holds it, the CS231n idiom for whole-model checks:
    ``numerical_gradient(lambda _: model_loss(), model_weight)``.

    Raises
    ------
    TypeError
        If x is not a writable floating-point ndarray (the perturbation must reach it).
    """
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        raise TypeError("numerical_gradient: x must be a floating-point ndarray (perturbed in "
                        f"place), got {type(x).__name__} {getattr(x, 'dtype', '')}")
    if not x.flags.writeable:
        raise TypeError("numerical_gradient: x must be writable; pass a copy")
    grad = np.zeros(x.shape, dtype=np.float64)
    for idx in np.ndindex(*x.shape):
        grad[idx] = _centred_difference(f, x, idx, h)
    return grad.astype(x.dtype, copy=False)


def _centred_difference(f, x: np.ndarray, idx: tuple, h: float) -> float:
    """(f(x + h e_idx) - f(x - h e_idx)) / 2h, perturbing x[idx] in place and restoring it."""
    old = x[idx]
    try:
        x[idx] = old + h
        fplus = float(f(x))
        x[idx] = old - h
        fminus = float(f(x))
    finally:
        x[idx] = old
    return (fplus - fminus) / (2 * h)


def numerical_gradient_array(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                             dout: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Vector-Jacobian product ``dout . df/dx`` of the array-valued ``f`` at ``x`` (perturbed in
    place and restored, as in :func:`numerical_gradient`)."""
    dout = np.asarray(dout)
    return numerical_gradient(lambda z: np.sum(np.asarray(f(z)) * dout), x, h)


def rel_error(a, b) -> float:
    """Relative error ``||a - b|| / max(||a|| + ||b||, tiny)`` of two arrays (Frobenius norms).

    Whole-array norms rather than CS231n's element-wise ``max |a-b| / (|a|+|b|)``: an element that
    is ~0 in both (a dead ReLU, a pooling window's non-max) would otherwise turn pure round-off into
    a relative error of order 1. Equal arrays give 0, two zero arrays give 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / max(denom, np.finfo(np.float64).tiny))


def _named_inputs(forward: Callable, inputs) -> dict:
    if isinstance(inputs, Mapping):
        return dict(inputs)
    names = [p.name for p in inspect.signature(forward).parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    inputs = list(inputs)
    if len(inputs) > len(names):
        raise ValueError(f"check_kernel: {len(inputs)} inputs for a forward with "
                         f"{len(names)} positional arguments {names}")
    return dict(zip(names, inputs))


def check_kernel(forward: Callable, backward: Callable, inputs: Mapping | Sequence, *,
                 dout: np.ndarray | None = None, rng: np.random.Generator | None = None,
                 h: float = 1e-5, **hyper) -> dict[str, float]:
    """Check every gradient a kernel's backward returns against centred differences.

    Parameters
    ----------
    forward, backward : a kernel pair, ``forward(*inputs, **hyper) -> (out, cache)`` and
        ``backward(dout, cache) -> gradients`` in the forward's argument order (one array or a
        tuple).
    inputs : the forward's leading positional arguments, as a sequence or a ``{name: array}``
        mapping in argument order. ``None`` entries (a missing bias) are passed through and
        not checked; neither are inputs past the number of gradients returned.
    dout : upstream gradient, shape of ``out``. Default: standard normal from ``rng`` (never
        ones, which hides errors that cancel).
    h : step of the centred difference.
    **hyper : keyword arguments for ``forward`` (stride, pad, ...).

    Returns
    -------
    ``{"dx": 3e-11, "dw": 5e-12, ...}``: ``rel_error(analytic, numerical)`` per gradient, named
    ``d`` + argument name.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import functional as F
    >>> rng = np.random.default_rng(0)
    >>> errs = check_kernel(F.affine_forward, F.affine_backward,
    ...                     [rng.standard_normal((3, 4)), rng.standard_normal((4, 2)),
    ...                      rng.standard_normal(2)], rng=rng)
    >>> sorted(errs), max(errs.values()) < 1e-7
    (['db', 'dw', 'dx'], True)
    """
    named = _named_inputs(forward, inputs)
    names = list(named)
    values = [None if v is None else np.array(v, copy=True) for v in named.values()]
    out, cache = forward(*values, **hyper)
    if dout is None:
        rng = np.random.default_rng() if rng is None else rng
        dout = rng.standard_normal(np.shape(out)).astype(np.asarray(out).dtype)
    grads = backward(dout, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    if len(grads) > len(values):
        raise ValueError(f"check_kernel: backward returned {len(grads)} gradients for "
                         f"{len(values)} inputs {names}")

    errors = {}
    for k, analytic in enumerate(grads):
        if values[k] is None or analytic is None:
            continue

        def f(z, k=k):
            args = list(values)
            args[k] = z
            return forward(*args, **hyper)[0]

        numeric = numerical_gradient_array(f, values[k], dout, h)
        errors["d" + names[k]] = rel_error(analytic, numeric)
    return errors


def check_loss(loss_fn: Callable, scores: np.ndarray, *args, h: float = 1e-5, **kwargs) -> float:
    """Relative error of a loss's ``dscores`` against centred differences of the loss.

    ``loss_fn(scores, *args, **kwargs) -> (loss, dscores)``, e.g.
    ``check_loss(softmax_loss, s, y)``.
    """
    scores = np.array(scores, dtype=np.float64, copy=True)
    _, dscores = loss_fn(scores, *args, **kwargs)
    numeric = numerical_gradient(lambda s: loss_fn(s, *args, **kwargs)[0], scores, h)
    return rel_error(dscores, numeric)


def _model_error(analytic, numeric, zero_tol):
    if np.linalg.norm(analytic) < zero_tol and np.linalg.norm(numeric) < zero_tol:
        return 0.0
    return rel_error(analytic, numeric)


def check_model(model, x: np.ndarray, y: np.ndarray, loss="softmax", *, reg: float = 0.0,
                num_checks: int | None = None, rng: np.random.Generator | None = None,
                h: float = 1e-5, zero_tol: float = 1e-8) -> dict[str, float]:
    """Whole-model gradient check: every parameter's backprop gradient against centred differences
    of the model's loss.

        L(theta) = loss(model(x), y) + 0.5 * reg * sum over weights (ndim >= 2) of ||W||^2

    The model stays in whatever mode it is in (train mode checks batch norm's batch-statistics
    path); dropout masks are held fixed by restoring every module's rng before each forward.
    Buffers (running statistics) and rng states are restored afterwards, so the check leaves the
    model as it found it, gradients aside (``p.grad`` holds the analytic gradient).

    Parameters
    ----------
    model : a ``cnnkit.nn.Module`` in float64 (``model.astype(np.float64)``)
    x : input batch; y : (N,) integer labels
    loss : "softmax", "svm" or a callable ``(scores, y) -> (loss, dscores)``
    reg : L2 strength on the weights (parameters with ndim >= 2), as in training
    num_checks : check this many random entries per parameter (CS231n's sparse check) instead of
        all of them
    h : step of the centred difference
    zero_tol : a parameter whose analytic and numerical gradients both have a norm below this is
        reported as 0.0: both are zero up to round-off (a conv bias right before batch norm in
        train mode has an identically zero gradient, and the ratio of two round-off errors,
        ~1e-11 each, would read as a relative error of ~1)

    Returns
    -------
    ``{parameter_name: rel_error}`` in the model's parameter order.
    """
    loss_fn = get_loss(loss)
    params = list(model.named_parameters())
    for name, p in params:
        if p.data.dtype != np.float64:
            raise ValueError(f"check_model needs float64 parameters ({name} is {p.data.dtype}); "
                             f"call model.astype(np.float64) first")
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng() if rng is None else rng
    saved_state, saved_rngs = model.state_dict(), model.rng_states()

    def total_loss():
        model.set_rng_states(saved_rngs)
        value, dscores = loss_fn(model.forward(x), y)
        value += 0.5 * reg * sum(float(np.sum(p.data ** 2)) for _, p in params if p.data.ndim >= 2)
        return value, dscores

    try:
        model.zero_grad()
        _, dscores = total_loss()
        model.backward(dscores)
        errors = {}
        for name, p in params:
            analytic = p.grad + (reg * p.data if p.data.ndim >= 2 else 0.0)
            if num_checks is None or num_checks >= p.data.size:
                numeric = numerical_gradient(lambda _: total_loss()[0], p.data, h)
                errors[name] = _model_error(analytic, numeric, zero_tol)
                continue
            flat = rng.choice(p.data.size, size=num_checks, replace=False)
            idxs = [np.unravel_index(i, p.data.shape) for i in flat]
            numeric = np.array([_centred_difference(lambda _: total_loss()[0], p.data, idx, h)
                                for idx in idxs])
            errors[name] = _model_error(np.array([analytic[idx] for idx in idxs]), numeric,
                                        zero_tol)
        return errors
    finally:
        model.load_state_dict(saved_state)
        model.set_rng_states(saved_rngs)


@dataclass
class ModelCheck:
    """What :func:`check_named_model` found: each parameter's relative error against ``tol``."""

    label: str
    parameters: int
    loss: str
    batch: int
    num_checks: int | None
    shapes: dict
    errors: dict
    tol: float

    @property
    def worst(self) -> float:
        """The largest relative error over all the checked parameters (0 with none)."""
        return max(self.errors.values(), default=0.0)

    @property
    def passed(self) -> bool:
        """Whether every relative error is below ``tol``."""
        return self.worst < self.tol

    def lines(self) -> list[str]:
        """The table ``cnnkit gradcheck`` prints, a row per parameter."""
        checks = "all entries" if self.num_checks is None else \
            f"{self.num_checks} random entries per parameter"
        out = [f"gradient check of {self.label} ({self.parameters:,} parameters) in float64, "
               f"{self.loss} loss, batch {self.batch}, {checks}",
               f"  {'parameter':<24} {'shape':<20} {'rel error':>10}"]
        for name, err in self.errors.items():
            flag = "" if err < self.tol else "  FAIL"
            if err == 0.0:
                flag = "  (gradient identically zero, e.g. a bias before batch norm)"
            out.append(f"  {name:<24} {str(self.shapes[name]):<20} {err:>10.2e}{flag}")
        out.append(f"max relative error {self.worst:.2e} ({'pass' if self.passed else 'FAIL'}: "
                   f"threshold {self.tol:g})")
        return out


def check_named_model(text: str, input_shape=None, *, batch: int = 4, loss: str = "softmax",
              reg: float = 0.0, num_checks: int | None = None, eval_mode: bool = False,
              tol: float = 1e-6, seed: int = 0) -> ModelCheck:
    """Every parameter of the net ``text`` names against centred differences, in float64, on a
    random batch (:func:`cnnkit.gradcheck.check_model`); ``num_checks`` entries per parameter
    (default: all, or 20 for nets over 5,000 parameters).

    ``text`` is what every command's MODEL is (:func:`cnnkit.models.resolve_model`): a zoo
    name or a spec, built with weights drawn from ``seed``, or a checkpoint (a run's model.npz
    or checkpoint.npz), checked at its trained weights on its recorded input volume (unless
    ``input_shape``)."""
    rng = np.random.default_rng(seed)
    sketch, shape, _, _ = resolve_model(text, input_shape, rng, weights=False)
    check_memory(sketch, shape, batch, "the net", dtype="float64", optimizer="sgd")
    # a checkpoint's net holds its weights already; a zoo model or spec draws them now
    model = sketch if is_checkpoint(text) else resolve_model(text, input_shape, rng)[0]
    model.astype(np.float64)
    if eval_mode:
        model.eval()
    out = tuple(model.output_shape(shape))
    if len(out) != 1:
        raise UsageError(f"{text if len(text) < 60 else 'the spec'} gives outputs of shape "
                         f"{out} per example; a loss needs a vector of class scores")
    x = rng.standard_normal((batch, *shape))
    y = rng.integers(0, out[0], batch)
    if num_checks is None and model.num_parameters() > 5000:
        num_checks = 20
    errors = check_model(model, x, y, loss, reg=reg, num_checks=num_checks, rng=rng)
    shapes = {name: p.shape for name, p in model.named_parameters()}
    return ModelCheck(text, model.num_parameters(), loss, batch, num_checks, shapes, errors, tol)
