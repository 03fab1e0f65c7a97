"""What the numbers were measured on: CPU, library versions, BLAS pools and environment.

Recorded in the JSON next to the results, because a ratio to PyTorch depends on the CPU, on the
BLAS NumPy loaded (and the core type it chose) and on the thread counts. The two OpenBLAS
variables that can change which kernels OpenBLAS picks, ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE``, are reported as they were when the command started and as they are in the
measuring process (``python -m benchmarks`` removes both unless ``--keep-openblas-env``; see
``benchmarks.__main__``).
"""

from __future__ import annotations

import json
import os
import platform
import sys

__all__ = ["OPENBLAS_VARS", "ORIGINAL_ENV_MARKER", "cpu_model", "openblas_env", "machine_info"]

OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# Set by __main__ before it re-executes itself: the variables' values at the start, as JSON.
ORIGINAL_ENV_MARKER = "CNNKIT_BENCH_ORIGINAL_OPENBLAS_ENV"


def cpu_model() -> str | None:
    """The first "model name" of /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def openblas_env() -> dict:
    """Per variable: its value when the command started, its value now, and whether the
    benchmark unset it."""
    original = json.loads(os.environ.get(ORIGINAL_ENV_MARKER, "null"))
    report = {}
    for name in OPENBLAS_VARS:
        now = os.environ.get(name)
        before = now if original is None else original.get(name)
        report[name] = {"at_start": before, "in_effect": now,
                        "unset_by_benchmark": before is not None and now is None}
    return report


def machine_info(torch=None) -> dict:
    """CPU, OS, versions, NumPy's BLAS pools, PyTorch's parallel setup, OpenBLAS variables."""
    import numpy
    import threadpoolctl

    import cnnkit

    from .threads import numpy_blas_pools

    info = {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "threadpoolctl": threadpoolctl.__version__,
        "cnnkit": getattr(cnnkit, "__version__", None),
        "numpy_blas": numpy_blas_pools(),
        "openblas_env": openblas_env(),
    }
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_mkldnn"] = bool(torch.backends.mkldnn.is_available())
        info["torch_parallel_info"] = torch.__config__.parallel_info()
    return info
