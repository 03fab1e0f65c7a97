"""Thread counts: cnnkit's own threads, NumPy's BLAS (through threadpoolctl) and PyTorch.

A ratio between two libraries means something only if the thread counts behind it are known.
Three counts matter:

- cnnkit's: its kernels split a batch's chunks over ``cnnkit.parallel``'s threads, set with
  ``cnnkit.parallel.num_threads``; inside those kernels NumPy's BLAS runs at one thread;
- NumPy's BLAS (OpenBLAS in NumPy's wheels): it sizes its pool from the core count when it loads
  and offers no Python call to change it; threadpoolctl finds the loaded library and calls its
  own ``set_num_threads``. It is what a NumPy call outside cnnkit's kernels (a linear layer's
  GEMM) runs on;
- PyTorch's intra-op pool, ``torch.set_num_threads``.

``thread_count(n)`` sets all three to n (and any other OpenMP/BLAS pool threadpoolctl can see)
and reads them back, so the report states the counts that were in force, not the ones that were
asked for. ``library_defaults`` leaves each library as a user finds it: cnnkit at
``cnnkit.parallel.default_num_threads()``, NumPy's BLAS untouched, PyTorch at the count it had
when the benchmark started; that is the comparison a user gets without configuring anything.
"""

from __future__ import annotations

import importlib
import os
from contextlib import contextmanager
from pathlib import Path

__all__ = ["all_cores", "numpy_blas_pools", "describe_threads", "thread_count",
           "library_defaults"]


def all_cores() -> int:
    """The cores this process may run on (``os.sched_getaffinity``; the CPU count elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def numpy_blas_pools() -> list[dict]:
    """threadpoolctl's description of the BLAS pools NumPy uses.

    NumPy's wheels ship their own OpenBLAS in ``numpy.libs`` (or ``numpy/.libs``); a NumPy built
    against a system BLAS has no such file, and then every BLAS pool in the process is listed.
    """
    import numpy
    from threadpoolctl import threadpool_info

    blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    numpy_dir = Path(numpy.__file__).resolve().parent
    own = [p for p in blas
           if Path(p["filepath"]).resolve().parent.name == "numpy.libs"
           or numpy_dir in Path(p["filepath"]).resolve().parents]
    return own or blas


def describe_threads(torch=None) -> dict:
    """The thread counts in force: cnnkit's, NumPy's BLAS pools (each) and PyTorch's intra-op
    pool (None without the ``torch`` module)."""
    from cnnkit import parallel

    pools = numpy_blas_pools()
    counts = sorted({p["num_threads"] for p in pools})
    return {
        "cnnkit": parallel.get_num_threads(),
        "numpy_blas": counts[0] if len(counts) == 1 else counts or None,
        "torch": None if torch is None else torch.get_num_threads(),
        "blas_pools": pools,
    }


@contextmanager
def thread_count(n: int, torch=None):
    """Within the block, cnnkit, NumPy's BLAS and (if given the ``torch`` module) PyTorch use n
    threads; each count is restored after.

    Yields :func:`describe_threads`'s dict. Raises ``RuntimeError`` if a library did not take
    the count (a BLAS that ignores threadpoolctl would make every ratio meaningless).
    """
    from threadpoolctl import threadpool_limits

    from cnnkit import parallel

    importlib.import_module("numpy")     # threadpoolctl limits only the libraries loaded so far

    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    torch_before = None if torch is None else torch.get_num_threads()
    with threadpool_limits(limits=n), parallel.num_threads(n):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            info = describe_threads(torch)
            if (info["cnnkit"] != n or info["numpy_blas"] not in (n, None)
                    or info["torch"] not in (n, None)):
                raise RuntimeError(f"asked for {n} threads but cnnkit has {info['cnnkit']}, "
                                   f"NumPy's BLAS {info['numpy_blas']} and PyTorch "
                                   f"{info['torch']}")
            yield info
        finally:
            if torch is not None:
                torch.set_num_threads(torch_before)


@contextmanager
def library_defaults(torch=None, torch_threads: int | None = None):
    """Within the block each library runs as a user finds it: cnnkit at
    ``cnnkit.parallel.default_num_threads()``, NumPy's BLAS as it is, PyTorch (if given the
    module) at ``torch_threads``, the count it had at the start (None: as it is).

    Yields :func:`describe_threads`'s dict; cnnkit's and PyTorch's counts are restored after.
    """
    from cnnkit import parallel

    torch_before = None if torch is None else torch.get_num_threads()
    with parallel.num_threads(parallel.default_num_threads()):
        if torch is not None and torch_threads is not None:
            torch.set_num_threads(torch_threads)
        try:
            yield describe_threads(torch)
        finally:
            if torch is not None:
                torch.set_num_threads(torch_before)
