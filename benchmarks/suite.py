"""The whole benchmark: which cases run, in what order, at what settings; the JSON payload.

Order: the SGEMM peak, the kernel cases (forward, then forward+backward), the training steps,
inference, then the memory measurements (subprocesses, after the timings so they do not compete
with them). Every timing runs inside one :func:`benchmarks.threads.thread_count` block, so cnnkit
and PyTorch use the same number of threads throughout. Rows are printed as they are measured.

Case names, for ``--only`` (a regular expression searched in each name): the kernel cases of
:data:`benchmarks.cases.CASES`, ``train-mnist``, ``train-cifar``, ``infer-mnist-b1``,
``infer-mnist-b256``, ``memory-mnist``, ``memory-cifar``. The SGEMM peak is measured when a
GEMM-shaped kernel case runs.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass

from .cases import CASES
from .kernels import time_case
from .machine import cpu_model, machine_info, openblas_env
from .memory import measure_memory
from .nets import NETS
from .report import format_row, make_row, memory_table, table_header, throughput_table
from .sgemm import sgemm_gflops
from .steps import INFERENCE_BATCHES, time_inference, time_training
from .threads import thread_count

__all__ = ["Settings", "QUICK", "case_names", "selected", "kernel_rows", "run"]

INFERENCE_NET = "mnist"
MEMORY_SIDES = (("cnnkit", "nchw"), ("torch", "nchw"), ("torch", "channels_last"))


@dataclass(frozen=True)
class Settings:
    """How to measure: threads, repeats and warm-up calls per measurement, the time budget (s) of
    one measurement's samples, the ``--only`` pattern, the SGEMM size and repeats."""

    threads: int = 1
    repeats: int = 20
    warmup: int = 3
    budget: float = 10.0
    only: str | None = None
    sgemm_n: int = 2048
    sgemm_repeats: int = 5
    quick: bool = False

    @property
    def timed(self) -> dict:
        return dict(repeats=self.repeats, warmup=self.warmup, budget=self.budget)


QUICK = dict(repeats=3, warmup=1, budget=0.5, sgemm_repeats=2, quick=True)


def case_names() -> list[str]:
    """Every case name, in running order."""
    return ([c.name for c in CASES] + [f"train-{n}" for n in NETS]
            + [f"infer-{INFERENCE_NET}-b{b}" for b in INFERENCE_BATCHES]
            + [f"memory-{n}" for n in NETS])


def selected(name: str, only: str | None) -> bool:
    return only is None or re.search(only, name) is not None


def kernel_rows(case, settings: Settings, peak_gflops: float | None) -> list[dict]:
    """The fwd and fwd+bwd rows of one kernel case (guard first; see :mod:`benchmarks.kernels`)."""
    results = time_case(case, **settings.timed)
    return [make_row(case.name, pass_, "kernel", case.description, results[pass_],
                     flops=None if case.flops is None else factor * case.flops,
                     peak_gflops=peak_gflops)
            for pass_, factor in (("fwd", 1), ("fwd+bwd", 3))]


def _header(settings: Settings, threads: dict, torch) -> list[str]:
    env = openblas_env()
    unset = [f"{k} (was {v['at_start']!r})" for k, v in env.items() if v["unset_by_benchmark"]]
    kept = [f"{k}={v['in_effect']!r}" for k, v in env.items() if v["in_effect"] is not None]
    return [
        f"cnnkit vs PyTorch {torch.__version__} on {cpu_model()}, float32",
        f"threads: {settings.threads} (NumPy BLAS {threads['numpy_blas']}, PyTorch "
        f"{threads['torch']})" + ("; the default, change with --threads N"
                                  if settings.threads == 1 else ""),
        f"each time: median of up to {settings.repeats} calls after {settings.warmup} warm-up "
        f"call(s), at most {settings.budget:g} s of samples per measurement"
        + (" (--quick: a smoke run, not a measurement)" if settings.quick else ""),
        "OpenBLAS environment: " + ("; ".join(
            ([f"unset {', '.join(unset)}"] if unset else [])
            + ([f"kept {', '.join(kept)}"] if kept else [])) or "OPENBLAS_CORETYPE and "
            "OPENBLAS_L2_SIZE not set"),
    ]


def run(settings: Settings, emit=print) -> dict:
    """Run the selected cases, emitting lines as they come; return the JSON payload."""
    import torch

    start = time.time()
    cases = [c for c in CASES if selected(c.name, settings.only)]
    rows, sgemm = [], None
    with thread_count(settings.threads, torch) as threads:
        for line in _header(settings, threads, torch):
            emit(line)
        if any(c.flops is not None for c in cases):
            sgemm = sgemm_gflops(settings.sgemm_n, repeats=settings.sgemm_repeats, torch=torch)
            emit(f"SGEMM peak: {sgemm['gflops']:.1f} GFLOP/s (NumPy, float32 "
                 f"{sgemm['n']}x{sgemm['n']} @ {sgemm['n']}x{sgemm['n']}, median); PyTorch's "
                 f"matmul: {sgemm['torch_gflops']:.1f} GFLOP/s")
        if any(selected(name, settings.only) for name in case_names()
               if not name.startswith("memory-")):
            emit("ratio = cnnkit ms / torch ms (above 1: cnnkit slower); CL = channels_last; "
                 "%pk = GFLOP/s as % of the SGEMM peak")
            emit("")
            emit(table_header())
        peak = None if sgemm is None else sgemm["gflops"]
        for case in cases:
            for row in kernel_rows(case, settings, peak):
                rows.append(row)
                emit(format_row(row))
        for net in NETS:
            if selected(f"train-{net}", settings.only):
                n, shape = NETS[net]
                rows.append(make_row(f"train-{net}", "step", "train",
                                     f"batch {n} x {'x'.join(map(str, shape))}, forward + "
                                     f"loss + backward + Adam",
                                     time_training(net, **settings.timed)))
                emit(format_row(rows[-1]))
        for b in INFERENCE_BATCHES:
            name = f"infer-{INFERENCE_NET}-b{b}"
            if selected(name, settings.only):
                rows.append(make_row(name, "eval fwd", "inference",
                                     f"{INFERENCE_NET} net, eval mode, batch {b}",
                                     time_inference(INFERENCE_NET, b, **settings.timed),
                                     batch=b))
                emit(format_row(rows[-1]))
        machine = machine_info(torch)
    memory = [measure_memory(framework, net, layout, settings.threads)
              for net in NETS if selected(f"memory-{net}", settings.only)
              for framework, layout in MEMORY_SIDES]
    inference = [r for r in rows if r["group"] == "inference"]
    if inference:
        emit("")
        for line in throughput_table(inference):
            emit(line)
    if memory:
        emit("")
        for line in memory_table(memory):
            emit(line)
    return {"schema": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start)),
            "duration_s": round(time.time() - start, 1),
            "settings": {**asdict(settings), "dtype": "float32"}, "threads": threads,
            "machine": machine, "sgemm": sgemm, "rows": rows, "memory": memory}
