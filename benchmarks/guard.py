"""The correctness guard: a benchmark never times a kernel that computes the wrong thing.

Before a case is timed, cnnkit's result is compared once with PyTorch's on the same float32
inputs; the tolerances are loose (float32, and the two libraries sum in different orders):

- forward outputs elementwise: ``|cnnkit - torch| <= atol + rtol * |torch|``, rtol 1e-3,
  atol 1e-4;
- gradients in norm: ``||cnnkit - torch|| <= tol * ||torch|| + atol * sqrt(size)``, tol 1e-3.
  A gradient is a sum over the batch and the positions, and behind batch norm most of it
  cancels, so a few of its elements can be far off relative to their own size while the
  gradient as a whole agrees to 1e-6 (cnnkit's and PyTorch's NCHW float32 gradients of the
  benchmark nets are that close to the float64 ones); the norm says how far the whole is off.

The tests of ``tests/`` check the kernels tightly in float64; this guard only catches a kernel
that is plainly wrong, or a case whose two sides do not compute the same operation.
"""

from __future__ import annotations

import numpy as np

__all__ = ["KernelMismatch", "check_close", "check_gradient", "RTOL", "ATOL", "GRAD_TOL"]

RTOL, ATOL, GRAD_TOL = 1e-3, 1e-4, 1e-3


class KernelMismatch(AssertionError):
    """cnnkit and PyTorch disagree on a case; the message names the case, tensor and error."""


def _as_pair(case, what, got, want):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise KernelMismatch(f"{case}: cnnkit's {what} has shape {got.shape}, PyTorch's "
                             f"{want.shape}")
    if not np.all(np.isfinite(got)):
        raise KernelMismatch(f"{case}: cnnkit's {what} has non-finite values")
    return got, want


def check_close(case: str, what: str, got, want, *, rtol: float = RTOL,
                atol: float = ATOL) -> None:
    """Raise :class:`KernelMismatch` unless ``got`` matches ``want`` elementwise (and in shape).

    Examples
    --------
    >>> check_close("demo", "out", np.ones(3, np.float32), np.ones(3))
    >>> check_close("demo", "out", np.zeros(3), np.ones(3))
    Traceback (most recent call last):
    ...
    benchmarks.guard.KernelMismatch: demo: cnnkit's out differs from PyTorch's: max |error| 1 \
at index (0,) (cnnkit 0, torch 1); tolerance atol 0.0001 + rtol 0.001 * |torch|
    """
    got, want = _as_pair(case, what, got, want)
    err = np.abs(got - want)
    bad = err > atol + rtol * np.abs(want)
    if np.any(bad):
        i = np.unravel_index(int(np.argmax(np.where(bad, err, -1.0))), err.shape)
        raise KernelMismatch(
            f"{case}: cnnkit's {what} differs from PyTorch's: max |error| {err[i]:.3g} at index "
            f"{tuple(int(k) for k in i)} (cnnkit {got[i]:.6g}, torch {want[i]:.6g}); tolerance "
            f"atol {atol:.3g} + rtol {rtol:g} * |torch|")


def check_gradient(case: str, what: str, got, want, *, tol: float = GRAD_TOL,
                   atol: float = ATOL) -> None:
    """Raise :class:`KernelMismatch` unless ``||got - want|| <= tol * ||want|| + atol *
    sqrt(size)`` (Frobenius norms) and the shapes agree.

    Examples
    --------
    >>> check_gradient("demo", "dw", np.array([1.0, 2.0]), np.array([1.0, 2.0005]))
    >>> check_gradient("demo", "dw", np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    Traceback (most recent call last):
    ...
    benchmarks.guard.KernelMismatch: demo: cnnkit's dw differs from PyTorch's: relative error \
0.186 in norm (tolerance 0.001); largest at index (1,) (cnnkit 2, torch 2.5)
    """
    got, want = _as_pair(case, what, got, want)
    diff = float(np.linalg.norm(got - want))
    scale = float(np.linalg.norm(want))
    if diff > tol * scale + atol * np.sqrt(want.size):
        err = np.abs(got - want)
        i = np.unravel_index(int(np.argmax(err)), err.shape)
        raise KernelMismatch(
            f"{case}: cnnkit's {what} differs from PyTorch's: relative error "
            f"{diff / scale if scale else float('inf'):.3g} in norm (tolerance {tol:g}); largest "
            f"at index {tuple(int(k) for k in i)} (cnnkit {got[i]:.6g}, torch {want[i]:.6g})")
