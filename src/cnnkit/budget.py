"""The memory budget: large allocations are estimated first and refused when they would not fit.

Before cnnkit allocates something whose size the user controls (a model's parameters, a batch's
activations and im2col columns, a decoded image, an array read from a file), it calls
:func:`check_bytes` with the estimate. Above the budget that raises :class:`BudgetError`, one line
naming the thing, its size and the budget, instead of letting the operating system's
out-of-memory killer end the process (and take memory from everything else on the machine).

The budget is, in order: what :func:`set_memory_budget` set (``--memory-budget`` on the command
line), the environment variable ``CNNKIT_MEMORY_BUDGET`` (``8G``, ``512M``, ``1.5T``, bytes), or
the memory the operating system reports available to this process (``MemAvailable`` in
``/proc/meminfo``, a container's cgroup limit, an address-space limit), whichever is least.
"""

from __future__ import annotations

import contextlib
import os
import re

from .errors import CnnkitError

__all__ = ["BudgetError", "available_memory", "memory_budget", "set_memory_budget",
           "check_bytes", "parse_size", "format_size", "scoped_memory_budget"]

_UNITS = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}
_budget: int | None = None


class BudgetError(CnnkitError, ValueError):
    """An allocation would exceed the memory budget; the message names it, its size and the
    budget, and how to raise the budget."""


def parse_size(text) -> int:
    """"8G", "512M", "1.5T", "100000" (bytes; K, M, G, T are powers of 1024; "GB"/"GiB" too)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:I?B)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ValueError(f"expected a size such as 8G, 512M or a number of bytes, got {text!r}")
    value = float(match.group(1)) * _UNITS[match.group(2).upper()]
    if not value >= 1:
        raise ValueError(f"a memory budget must be at least 1 byte, got {text!r}")
    return int(value)


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
    """Set the budget in bytes (an int, or a size text such as "8G"); None goes back to the
    default (``CNNKIT_MEMORY_BUDGET``, else the available memory)."""
    global _budget
    _budget = None if nbytes is None else (parse_size(nbytes) if isinstance(nbytes, str)
                                           else int(nbytes))


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
    """(bytes, where the figure comes from); bytes is None when nothing is known."""
    if _budget is not None:
        return _budget, "the memory budget"
    env = os.environ.get("CNNKIT_MEMORY_BUDGET")
    if env:
        try:
            return parse_size(env), "CNNKIT_MEMORY_BUDGET"
        except ValueError:
            pass
    return available_memory(), "the available memory"


def check_bytes(nbytes: float, what: str) -> None:
    """Raise :class:`BudgetError` when ``what`` (e.g. "the parameters of vgg16 (138,357,544
    float32)") would need more than the budget."""
    budget, source = memory_budget()
    if budget is not None and nbytes > budget:
        raise BudgetError(f"{what} would need {format_size(nbytes)}, more than {source} "
                          f"({format_size(budget)}); raise the budget with --memory-budget "
                          f"(or CNNKIT_MEMORY_BUDGET) if the machine has the memory")
