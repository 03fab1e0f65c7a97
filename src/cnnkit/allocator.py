"""Keeping freed memory for the next step: glibc's malloc thresholds.

A training step allocates and frees the same large arrays at every step: each layer's output
and gradient, the im2col and Winograd scratch. glibc's malloc serves an allocation above its
mmap threshold (128 KiB at first, raised as large blocks are freed, up to 32 MiB) with fresh
pages from the kernel and returns them on ``free``, and it gives the top of its heap back to the
kernel once more than its trim threshold is free there. Either way the next step's arrays start
on pages the kernel must fault in and zero again, one 4 KiB page at a time. Measured on the
2-core Intel Xeon (AVX-512): a CIFAR-size training step (batch 128) took ~6,000 minor page
faults and an MNIST step (batch 64) ~2,100; with the thresholds below, 0-13, and the steps ran
in 0.91-0.96x and 0.74x the time. The peak memory of a step does not change (freed blocks are
reused, not added to); what changes is that up to :data:`TRIM_THRESHOLD` of freed memory stays
with the process between steps instead of going back to the system.

:func:`keep_freed_memory` sets both thresholds once per process, when cnnkit's kernels load
(:mod:`cnnkit.parallel` calls it). malloc's settings belong to the whole process, so other
libraries in it (PyTorch, in the benchmark) keep their freed memory alike.
``CNNKIT_KEEP_FREED_MEMORY=0`` leaves malloc as it is. Other C libraries (macOS, musl) have no
``mallopt``: nothing is done there.

This module imports nothing of cnnkit but :mod:`cnnkit.environment`.
"""

from __future__ import annotations

import ctypes
import platform
import threading

from .environment import parse_switch, read_variable

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

#: Blocks up to this size come from malloc's heaps and are reused after ``free``; larger ones
#: are mapped and unmapped as before (a batch's activations are a few to tens of MiB).
MMAP_THRESHOLD = 64 << 20

#: Free memory at the top of a heap that malloc keeps rather than returns to the system.
TRIM_THRESHOLD = 256 << 20

_M_TRIM_THRESHOLD = -1        # glibc's <malloc.h> parameter numbers
_M_MMAP_THRESHOLD = -3

_lock = threading.Lock()
_state: bool | None = None    # None: not yet decided; then whether the thresholds were set


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring) unless
    ``CNNKIT_KEEP_FREED_MEMORY`` is 0; once per process. Returns whether they are set.

    Raises :class:`~cnnkit.environment.EnvironmentVariableError` (one line naming the variable)
    if the variable holds something other than a switch (1/0, yes/no, true/false, on/off).
    """
    global _state
    if _state is not None:
        return _state
    with _lock:
        if _state is None:
            wanted = read_variable("CNNKIT_KEEP_FREED_MEMORY", parse_switch)
            _state = wanted is not False and _set_thresholds()
    return _state


def _set_thresholds() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success; setting the mmap threshold also stops glibc from moving it
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
