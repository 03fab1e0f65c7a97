"""One thread count for both sides: NumPy's BLAS (through threadpoolctl) and PyTorch.

A ratio between two libraries means something only if both use the same number of threads.
NumPy's BLAS (OpenBLAS in NumPy's wheels) sizes its pool from the core count when it loads and
offers no Python call to change it; threadpoolctl finds the loaded library and calls its own
``set_num_threads``. PyTorch has ``torch.set_num_threads``. ``thread_count(n)`` sets both (and any
other OpenMP/BLAS pool threadpoolctl can see) and reads them back, so the report states the
counts that were in force, not the ones that were asked for.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from pathlib import Path

__all__ = ["numpy_blas_pools", "thread_count", "describe_threads"]


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
    """The thread counts in force: NumPy's BLAS pools (each) and PyTorch's intra-op pool."""
    pools = numpy_blas_pools()
    counts = sorted({p["num_threads"] for p in pools})
    return {
        "numpy_blas": counts[0] if len(counts) == 1 else counts or None,
        "torch": None if torch is None else torch.get_num_threads(),
        "blas_pools": pools,
    }


@contextmanager
def thread_count(n: int, torch=None):
    """Within the block, NumPy's BLAS and (if given the ``torch`` module) PyTorch use n threads.

    Yields :func:`describe_threads`'s dict. Raises ``RuntimeError`` if a library did not take
    the count (a BLAS that ignores threadpoolctl would make every ratio meaningless).
    """
    from threadpoolctl import threadpool_limits

    importlib.import_module("numpy")     # threadpoolctl limits only the libraries loaded so far

    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    torch_before = None if torch is None else torch.get_num_threads()
    with threadpool_limits(limits=n):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            info = describe_threads(torch)
            if info["numpy_blas"] not in (n, None) or info["torch"] not in (n, None):
                raise RuntimeError(f"asked for {n} threads but NumPy's BLAS has "
                                   f"{info['numpy_blas']} and PyTorch {info['torch']}")
            yield info
        finally:
            if torch is not None:
                torch.set_num_threads(torch_before)
