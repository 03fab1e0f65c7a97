"""cnnkit's environment variables: the list of them, and the one way each is read.

A variable that stands for an option is read with that option's own parser, so a value the
option would refuse is refused here too, in one line naming the variable, rather than ignored
(a budget of ``8Gi`` silently falling back to the available memory) or misread (``CNNKIT_DEBUG=0``
turning the tracebacks on). An empty value counts as unset.

========================  ==========================  ============================================
variable                  stands for                  read by
========================  ==========================  ============================================
CNNKIT_NUM_THREADS        ``--threads``               :func:`cnnkit.parallel.default_num_threads`
CNNKIT_MEMORY_BUDGET      ``--memory-budget``         :func:`cnnkit.budget.memory_budget`
CNNKIT_DEBUG              ``--debug`` (1/0, yes/no)   the command line's error boundary
CNNKIT_CACHE              the folder cache's folder   :mod:`cnnkit.data.cache`
CNNKIT_RANK_DIR           (set by ``cnnkit train      each MPI rank, which writes its pid there
                          --workers`` for its ranks)
CNNKIT_KEEP_FREED_MEMORY  1/0: malloc keeps freed     :func:`cnnkit.allocator.keep_freed_memory`
                          memory (default 1)
========================  ==========================  ============================================

This module imports nothing of cnnkit but :mod:`cnnkit.errors`: every tier may import it.
"""

from __future__ import annotations

import os

from .errors import UsageError

__all__ = ["VARIABLES", "EnvironmentVariableError", "read_variable", "parse_switch",
           "parse_rank_folder", "RANK_FOLDER_PREFIX"]

#: Every environment variable cnnkit reads, and what it takes.
VARIABLES = {
    "CNNKIT_NUM_THREADS": "a thread count, as --threads takes",
    "CNNKIT_MEMORY_BUDGET": "a size, as --memory-budget takes",
    "CNNKIT_DEBUG": "1 or 0 (or yes/no, true/false, on/off): --debug",
    "CNNKIT_CACHE": "the folder of the decoded-image cache",
    "CNNKIT_RANK_DIR": "the folder `cnnkit train --workers` makes for its ranks",
    "CNNKIT_KEEP_FREED_MEMORY": "1 or 0 (or yes/no, true/false, on/off): whether malloc keeps "
                                "freed memory for the next step (default 1)",
}

#: The start of the name of the folder ``cnnkit train --workers`` makes for its ranks,
#: ``CNNKIT_RANK_DIR``: a rank writes its pid into no other folder.
RANK_FOLDER_PREFIX = "cnnkit-ranks-"

_SWITCH = {"1": True, "yes": True, "true": True, "on": True,
           "0": False, "no": False, "false": False, "off": False}


class EnvironmentVariableError(UsageError):
    """An environment variable holds a value its option would refuse; the message names the
    variable and says what it takes. ``variable`` is its name."""

    def __init__(self, message: str, variable: str):
        super().__init__(message)
        self.variable = variable


def read_variable(name: str, parse):
    """``parse(value)`` of the environment variable ``name``, or None when it is unset or
    blank. ``parse`` is the option's own parser: its ``ValueError`` (or ``TypeError``) becomes
    an :class:`EnvironmentVariableError` naming the variable, one line."""
    if name not in VARIABLES:
        raise KeyError(f"{name} is not one of cnnkit's environment variables: add it to "
                       f"cnnkit.environment.VARIABLES")
    text = os.environ.get(name)
    if text is None or not text.strip():
        return None
    try:
        return parse(text)
    except (ValueError, TypeError) as err:
        why = (str(err).splitlines() or [""])[0] or f"expected {VARIABLES[name]}"
        raise EnvironmentVariableError(f"environment variable {name}: {why}", name) from None


def parse_switch(text: str) -> bool:
    """``1``/``0``, ``yes``/``no``, ``true``/``false``, ``on``/``off`` (any case) -> bool."""
    value = _SWITCH.get(str(text).strip().lower())
    if value is None:
        raise ValueError(f"expected 1 or 0 (or yes/no, true/false, on/off), got "
                         f"{str(text)[:40]!r}")
    return value


def parse_rank_folder(text: str) -> str:
    """``CNNKIT_RANK_DIR``: an existing folder named ``cnnkit-ranks-*``, as the launcher makes
    (so that a variable left set by hand never has a rank write ``rank-N`` into a folder of the
    user's)."""
    name = os.path.basename(os.path.normpath(text))
    if not (name.startswith(RANK_FOLDER_PREFIX) and os.path.isdir(text)):
        raise ValueError(f"expected the folder `cnnkit train --workers` makes for its ranks "
                         f"({RANK_FOLDER_PREFIX}*), got {text[:80]!r}; the launcher sets it "
                         f"itself: unset it")
    return text
