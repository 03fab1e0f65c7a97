"""What the numbers were measured on: CPU, library versions, BLAS pools and environment.

Recorded in the JSON next to the results, because a ratio to PyTorch depends on the CPU, on the
BLAS NumPy loaded (and the core type it chose) and on the thread counts. The core type is the
kernel set OpenBLAS picked for this CPU when it loaded (SkylakeX, Haswell, Zen, SapphireRapids,
...), which threadpoolctl reports as the pool's "architecture"; it sets NumPy's GEMM rate, so
every printed table names it with the CPU (:func:`measured_on`). The two OpenBLAS
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

__all__ = ["OPENBLAS_VARS", "ORIGINAL_ENV_MARKER", "cpu_model", "openblas_env", "blas_summary",
           "measured_on", "blas_label", "machine_info"]

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


_BLAS_NAMES = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS", "flexiblas": "FlexiBLAS"}


def blas_summary(pools: list[dict]) -> dict:
    """NumPy's BLAS from threadpoolctl's pools: ``{"library", "version", "core_type",
    "threading_layer"}``, each None when no pool says (distinct values of several pools joined
    by " + ").

    Examples
    --------
    >>> blas_summary([{"internal_api": "openblas", "version": "0.3.31", "architecture": "Zen",
    ...                "threading_layer": "pthreads"}])["core_type"]
    'Zen'
    >>> blas_summary([])["library"] is None
    True
    """
    def joined(key):
        values = list(dict.fromkeys(str(p[key]) for p in pools if p.get(key) is not None))
        return " + ".join(values) or None

    return {"library": joined("internal_api"), "version": joined("version"),
            "core_type": joined("architecture"), "threading_layer": joined("threading_layer")}


def measured_on(machine: dict) -> str:
    """The CPU and NumPy's BLAS of a ``machine_info`` dict, as every table names them.

    Examples
    --------
    >>> measured_on({"cpu_model": "AMD EPYC 7B13", "logical_cpus": 2,
    ...              "blas": {"library": "openblas", "version": "0.3.31", "core_type": "Zen"}})
    "AMD EPYC 7B13 (2 logical CPUs); NumPy's BLAS: OpenBLAS 0.3.31, core type Zen"
    """
    cpus = machine.get("logical_cpus")
    return (f"{machine.get('cpu_model') or 'unknown CPU'}"
            + (f" ({cpus} logical CPUs)" if cpus else "")
            + f"; NumPy's BLAS: {blas_label(machine)}")


def blas_label(machine: dict) -> str:
    """NumPy's BLAS of a ``machine_info`` dict: "OpenBLAS 0.3.31, core type Zen" (its summary,
    or one made from its pools when it has none)."""
    blas = machine.get("blas") or blas_summary(machine.get("numpy_blas") or [])
    library = blas.get("library")
    name = " ".join(str(v) for v in (_BLAS_NAMES.get(library, library), blas.get("version"))
                    if v is not None) or "not found"
    return f"{name}, core type {blas.get('core_type') or 'not reported'}"


def machine_info(torch=None) -> dict:
    """CPU, OS, versions, NumPy's BLAS pools and their summary (``blas``: library, version, core
    type), PyTorch's parallel setup, OpenBLAS variables."""
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
    info["blas"] = blas_summary(info["numpy_blas"])
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_mkldnn"] = bool(torch.backends.mkldnn.is_available())
        info["torch_parallel_info"] = torch.__config__.parallel_info()
    return info
