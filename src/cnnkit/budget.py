"""The memory budget: large allocations are estimated first and refused when they would not fit.

Before cnnkit allocates something whose size the user controls (a model's parameters, a batch's
activations and im2col columns, a decoded image, an array read from a file), it calls
:func:`check_bytes` with the estimate. Above the budget that raises :class:`BudgetError`, one line
naming the thing, its size and the budget, instead of letting the operating system's
out-of-memory killer end the process (and take memory from everything else on the machine).

The budget is, in order: what :func:`set_memory_budget` set (``--memory-budget`` on the command
line), the environment variable ``CNNKIT_MEMORY_BUDGET`` (a size as ``--memory-budget`` takes it,
refused in one line naming the variable when it is not one), or the memory the operating system
reports available to this process (the least of ``MemAvailable`` in ``/proc/meminfo``, a
container's cgroup limit and an address-space limit).

A size (:func:`parse_size`) is a number of bytes with an optional unit: K, M, G, T or P, each a
power of 1024, written bare or with ``i``, ``B`` or ``iB`` (``8G``, ``8Gi``, ``8GiB`` and ``8GB``
are all 8 * 2**30); ``1.5T``, ``1e9`` and ``100000`` too. A size above :data:`MAX_SIZE` (8 EiB)
is taken as that: no allocation can be larger, so a larger budget could not allow more, and
estimates beyond it are still refused in one line rather than reaching NumPy.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
import sys

from .environment import read_variable
from .errors import CnnkitError

__all__ = ["BudgetError", "available_memory", "memory_budget", "set_memory_budget",
           "check_bytes", "parse_size", "format_size", "scoped_memory_budget",
           "budget_from_environment", "MAX_SIZE", "SIZE_EXPECTED", "BUDGET_VARIABLE"]

#: The largest size: the most bytes any allocation can have (NumPy's and the C library's index).
MAX_SIZE = sys.maxsize
#: What a size looks like, for messages.
SIZE_EXPECTED = "a size such as 8G, 8Gi, 512MiB or a number of bytes"
BUDGET_VARIABLE = "CNNKIT_MEMORY_BUDGET"

_UNITS = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40, "P": 2 ** 50}
_SIZE = re.compile(r"\s*((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)\s*"
                   r"(?:([KMGTP])(?:i|B|iB)?|B)?\s*", re.IGNORECASE)
_budget: int | None = None


class BudgetError(CnnkitError, ValueError):
    """An allocation would exceed the memory budget; the message names it, its size and the
    budget, and how to raise the budget."""


def parse_size(text) -> int:
    """A size in bytes, at least 1: a text such as "8G", "8Gi", "512MiB", "1.5T", "1e9" or
    "100000" (see the module docstring), or an int. Above :data:`MAX_SIZE`, MAX_SIZE.

    Raises ValueError, one line, for anything else ("8X", "-1", "0", "inf", "8 G B")."""
    if isinstance(text, numbers.Integral) and not isinstance(text, bool):
        value = int(text)
    else:
        match = _SIZE.fullmatch(str(text)) if isinstance(text, str) else None
        if not match:
            raise ValueError(f"expected {SIZE_EXPECTED}, got {_shown(text)}")
        value = float(match.group(1)) * _UNITS[(match.group(2) or "").upper()]
        if not math.isfinite(value):
            raise ValueError(f"expected a finite size, got {_shown(text)}")
    if not value >= 1:
        raise ValueError(f"a memory budget must be at least 1 byte, got {_shown(text)}")
    return min(int(value), MAX_SIZE)


def _shown(text) -> str:
    text = repr(text) if isinstance(text, str) else str(text)
    return text if len(text) <= 60 else text[:57] + "..."


def format_size(nbytes: float) -> str:
    """1536 -> "1.5 KiB", 17.5 * 2**30 -> "17.5 GiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(nbytes) < 1024 or unit == "PiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} PiB"


def available_memory() -> int | None:
    """Bytes this process can still allocate, as the operating system reports it: the least of
    the memory available without swapping (``MemAvailable``), what a container's cgroup limit
    leaves (``memory.max`` less ``memory.current``), and what an address-space limit
    (``ulimit -v``) leaves of this process's own; None where none of these is known."""
    limits = [_meminfo_available(), _cgroup_available(), _address_space_available()]
    known = [x for x in limits if x is not None]
    return max(0, min(known)) if known else None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            current = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else int(limit) - current


def _address_space_available() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (ImportError, OSError, ValueError, StopIteration):
        return None
    return soft - size


def set_memory_budget(nbytes) -> None:
    """Set the budget in bytes (an int, or a size text such as "8G": :func:`parse_size`); None
    goes back to the default (``CNNKIT_MEMORY_BUDGET``, else the available memory)."""
    global _budget
    _budget = None if nbytes is None else parse_size(nbytes)


@contextlib.contextmanager
def scoped_memory_budget(nbytes):
    """``with scoped_memory_budget("8G"):`` the budget is ``nbytes`` inside the block, then
    what it was; None leaves it as it is."""
    global _budget
    before = _budget
    if nbytes is not None:
        set_memory_budget(nbytes)
    try:
        yield
    finally:
        _budget = before


def memory_budget() -> tuple[int | None, str]:
    """(bytes, where the figure comes from); bytes is None when nothing is known.

    Raises :class:`~cnnkit.environment.EnvironmentVariableError` when no budget is set and
    ``CNNKIT_MEMORY_BUDGET`` is not a size."""
    if _budget is not None:
        return _budget, "the memory budget"
    nbytes = budget_from_environment()
    if nbytes is not None:
        return nbytes, BUDGET_VARIABLE
    return available_memory(), "the available memory"


def budget_from_environment() -> int | None:
    """``CNNKIT_MEMORY_BUDGET`` in bytes, None when it is unset or blank.

    Raises :class:`~cnnkit.environment.EnvironmentVariableError` (one line, naming the
    variable) when it is not a size ``--memory-budget`` would take."""
    return read_variable(BUDGET_VARIABLE, parse_size)


def check_bytes(nbytes: float, what: str) -> None:
    """Raise :class:`BudgetError` when ``what`` (e.g. "the parameters of vgg16 (138,357,544
    float32)") would need more than the budget."""
    budget, source = memory_budget()
    if budget is not None and nbytes > budget:
        raise BudgetError(f"{what} would need {format_size(nbytes)}, more than {source} "
                          f"({format_size(budget)}); raise the budget with --memory-budget "
                          f"(or {BUDGET_VARIABLE}) if the machine has the memory")
