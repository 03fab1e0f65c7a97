"""NaN and infinite values in a net's arrays and in its inputs: found, counted and named.

A net with one NaN in a batch norm's running variance still runs: every score it gives is NaN,
every image falls in class 0, and an evaluation prints an accuracy as if it meant something. So
whatever serves a net's answers (``evaluate``, ``predict``, :func:`cnnkit.predict_images`,
``Run.predict`` and ``Run.evaluate``, ``report``, ``export``, ``import``) first asks
:func:`check_net` about every parameter *and* buffer, and refuses in one line naming the first
array at fault, unless told to look anyway (``--allow-nonfinite`` on the command line,
``allow_nonfinite=True`` in Python):

    >>> import numpy as np
    >>> check_arrays([("3.running_var", np.array([1.0, np.nan, 2.0]))], "model.npz")
    Traceback (most recent call last):
    ...
    cnnkit.finite.NonFiniteError: model.npz: 3.running_var holds NaN (1 of 3 values); pass \
--allow-nonfinite (allow_nonfinite=True) to use it anyway
    >>> check_arrays([("3.running_var", np.array([1.0, np.inf]))], "model.npz", allow=True)
    ['3.running_var holds infinite values (1 of 2 values)']

:func:`nonfinite` says what one array holds; inputs (images) use it for their own messages.
A finite array costs one ``sum`` and no allocation (a sum is finite only when every term is);
only an array that fails it is counted value by value.

This module imports nothing of cnnkit but its error base: every tier may import it.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np

from .errors import CnnkitError

__all__ = ["NonFiniteError", "ALLOW_HINT", "nonfinite", "net_arrays", "nonfinite_arrays",
           "check_arrays", "check_net", "quiet_if"]

#: What an error about NaN or infinite values tells the user to do to go on anyway.
ALLOW_HINT = "pass --allow-nonfinite (allow_nonfinite=True) to use it anyway"


class NonFiniteError(CnnkitError, ValueError):
    """A net's weights or statistics hold NaN or infinite values; the message names the file,
    the first such array and how many of its values, and the option that looks anyway."""


def nonfinite(array) -> str | None:
    """What an array of numbers holds that is not finite, e.g. "NaN (1 of 16 values)",
    "infinite values (2 of 6 values)" or "NaN and infinite values (3 of 16 values)"; None when
    every value is finite or the array holds no floats (integers are always finite)."""
    array = np.asarray(array)
    if array.dtype.kind not in "fc" or array.size == 0:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(array.sum()):          # a float sum is finite only if every term is
            return None
    nan = int(np.count_nonzero(np.isnan(array)))
    inf = int(np.count_nonzero(np.isinf(array)))
    if not nan + inf:                         # finite values whose sum overflowed
        return None
    what = "NaN and infinite values" if nan and inf else "NaN" if nan else "infinite values"
    return f"{what} ({nan + inf:,} of {array.size:,} value{'s' if array.size > 1 else ''})"


def net_arrays(model):
    """``(name, array)`` of every parameter and buffer of ``model`` (a :class:`cnnkit.nn.Module`)
    under its state-dict name, in state-dict order; weights without values (a net built with
    ``shapes_only()``) are left out. Nothing is copied."""
    for name, _, value in model.state_entries():
        if getattr(value, "is_placeholder", False):
            continue
        yield name, getattr(value, "data", value)


def nonfinite_arrays(arrays) -> list[str]:
    """One phrase per array of ``arrays`` (``(name, array)`` pairs) that holds NaN or infinite
    values, e.g. "3.running_var holds NaN (1 of 16 values)", in their order."""
    found = []
    for name, array in arrays:
        what = nonfinite(array)
        if what is not None:
            found.append(f"{name} holds {what}")
    return found


def check_arrays(arrays, where, *, allow: bool = False, hint: str = ALLOW_HINT) -> list[str]:
    """Refuse ``arrays`` (``(name, array)`` pairs) when any holds NaN or infinite values,
    unless ``allow``; returns :func:`nonfinite_arrays`' phrases (empty when all are finite).
    ``hint`` ends the message: how to look anyway, or why nothing can (training).

    Raises
    ------
    NonFiniteError
        ``"{where}: {the first}, and N more arrays as well; {hint}"``.
    """
    found = nonfinite_arrays(arrays)
    if found and not allow:
        more = len(found) - 1
        others = f", and {more} more array{'s' if more > 1 else ''} as well" if more else ""
        raise NonFiniteError(f"{where}: {found[0]}{others}; {hint}")
    return found


def check_net(model, where, *, allow: bool = False, hint: str = ALLOW_HINT) -> list[str]:
    """:func:`check_arrays` on every parameter and buffer of ``model`` (the running statistics
    of batch norm too); ``where`` names it in the message (its file, or "the net")."""
    return check_arrays(net_arrays(model), where, allow=allow, hint=hint)


@contextlib.contextmanager
def quiet_if(allow: bool):
    """NumPy's warnings about overflow and invalid values silenced while ``allow`` (a command
    run with ``--allow-nonfinite``, whose net answers NaN by design and whose output is its
    result, not a page of warnings); nothing changes otherwise. The filter is the process's,
    so the kernels' worker threads are quiet too."""
    if not allow:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
