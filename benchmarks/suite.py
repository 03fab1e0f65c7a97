"""The whole benchmark: which cases run, in what order, at what thread counts; the JSON payload.

Thread configurations. Every timed case runs once per configuration:

- each count of ``Settings.threads`` (by default 1 and all the cores this process may use),
  inside :func:`benchmarks.threads.thread_count`, so cnnkit's threads, NumPy's BLAS and PyTorch
  all use that count: the ratio at 1 thread compares the kernels' code, the ratio at all cores
  what each library does with the machine;
- the library defaults (``Settings.defaults``), inside
  :func:`benchmarks.threads.library_defaults`: cnnkit at its default thread count, NumPy's BLAS
  as it was, PyTorch at the count it had when the run started, which is what a user who
  configures nothing gets. When those counts equal one of the measured configurations' exactly,
  that table already is the defaults comparison and it is not measured twice (a line says so).

Before those, with the library defaults (not with a single ``--threads`` count), the cases of
no configuration: ``train-spec-cifar`` steps a net built from a spec string
(:data:`benchmarks.nets.SPEC_CIFAR`) as a user does from Python, with no thread count set by
anyone: cnnkit at its default, NumPy's BLAS as it loaded, PyTorch as it started. It runs first,
before any configuration has set a count, and is recorded as the run ``unconfigured``.

Then, with at least two counts, the speed-up table (:func:`benchmarks.report.speedup_rows`):
each side's time at the lowest count over its time at the highest, so cnnkit's gain from threads
stands beside PyTorch's.

Every table is headed by the CPU model and NumPy's BLAS with its core type
(:func:`benchmarks.machine.measured_on`), which the JSON's ``machine`` records.

Order within a configuration: the SGEMM peak (at that configuration's threads), the kernel cases
(forward, then forward+backward), the training steps, inference. The memory measurements
(subprocesses, at the first count) come last, after the timings so they do not compete with them.
Rows are printed as they are measured.

Case names, for ``--only`` (a regular expression searched in each name): the kernel cases of
:data:`benchmarks.cases.CASES` (and with ``Settings.extra``, ``--extra``, those of
:func:`benchmarks.cases.extra_cases`), ``train-mnist``, ``train-cifar``, ``train-spec-cifar``,
``infer-mnist-b1``, ``infer-mnist-b256``, ``memory-mnist``, ``memory-cifar``. The SGEMM peak is
measured when a GEMM-shaped kernel case runs.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field

from .cases import CASES, extra_cases
from .kernels import time_case
from .machine import machine_info, measured_on, openblas_env
from .memory import measure_memory
from .nets import NETS, SPEC_NETS, batch_and_shape
from .report import (format_row, make_row, memory_table, speedup_rows, speedup_table,
                     table_header, threads_label, throughput_table)
from .sgemm import sgemm_gflops
from .steps import INFERENCE_BATCHES, time_inference, time_training
from .threads import all_cores, describe_threads, library_defaults, thread_count

__all__ = ["Settings", "QUICK", "default_thread_counts", "kernel_cases", "case_names",
           "unconfigured_names", "selected", "kernel_rows", "defaults_same_as", "run"]

INFERENCE_NET = "mnist"
MEMORY_SIDES = (("cnnkit", "nchw"), ("torch", "nchw"), ("torch", "channels_last"))
DEFAULTS = "defaults"
UNCONFIGURED = "unconfigured"


def default_thread_counts() -> tuple[int, ...]:
    """1 and all cores (one count on a one-core machine)."""
    return tuple(sorted({1, all_cores()}))


@dataclass(frozen=True)
class Settings:
    """How to measure: the thread counts (one configuration each, ascending, no repeats), whether
    to add the library defaults' configuration, repeats and warm-up calls per measurement, the
    time budget (s) of one measurement's samples, the ``--only`` pattern, the SGEMM size and
    repeats, whether the extra kernel cases run (``--extra``). A single int for ``threads``
    means that one count."""

    threads: tuple[int, ...] = field(default_factory=default_thread_counts)
    defaults: bool = True
    repeats: int = 20
    warmup: int = 3
    budget: float = 10.0
    only: str | None = None
    sgemm_n: int = 2048
    sgemm_repeats: int = 5
    quick: bool = False
    extra: bool = False

    def __post_init__(self):
        counts = (self.threads,) if isinstance(self.threads, int) else tuple(self.threads)
        if not counts or any(not isinstance(n, int) or n < 1 for n in counts):
            raise ValueError(f"thread counts must be ints >= 1, got {self.threads!r}")
        object.__setattr__(self, "threads", tuple(sorted(set(counts))))

    @property
    def timed(self) -> dict:
        return dict(repeats=self.repeats, warmup=self.warmup, budget=self.budget)


QUICK = dict(repeats=3, warmup=1, budget=0.5, sgemm_repeats=2, quick=True)


def kernel_cases(extra: bool = False) -> list:
    """The kernel cases: :data:`benchmarks.cases.CASES`, then the extra ones if ``extra``."""
    return CASES + (extra_cases() if extra else [])


def unconfigured_names() -> list[str]:
    """The cases run with no thread count set (``train-spec-cifar``)."""
    return [f"train-{n}" for n in SPEC_NETS]


def case_names(extra: bool = False) -> list[str]:
    """Every case name, in running order within a configuration (with the extra kernel cases if
    ``extra``), then the unconfigured cases and the memory ones."""
    return ([c.name for c in kernel_cases(extra)] + [f"train-{n}" for n in NETS]
            + [f"infer-{INFERENCE_NET}-b{b}" for b in INFERENCE_BATCHES]
            + unconfigured_names() + [f"memory-{n}" for n in NETS])


def selected(name: str, only: str | None) -> bool:
    return only is None or re.search(only, name) is not None


def kernel_rows(case, settings: Settings, peak_gflops: float | None) -> list[dict]:
    """The fwd and fwd+bwd rows of one kernel case (guard first; see :mod:`benchmarks.kernels`)."""
    results = time_case(case, **settings.timed)
    return [make_row(case.name, pass_, "kernel", case.description, results[pass_],
                     flops=None if case.flops is None else factor * case.flops,
                     peak_gflops=peak_gflops)
            for pass_, factor in (("fwd", 1), ("fwd+bwd", 3))]


def _count_name(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def defaults_same_as(defaults: dict, counts) -> int | None:
    """The count n of ``counts`` whose configuration (cnnkit, NumPy's BLAS and PyTorch all at n)
    equals the library defaults ``defaults`` (``{"cnnkit", "numpy_blas", "torch"}``), else None.
    A BLAS count of None (no BLAS pool found) matches any n."""
    for n in counts:
        if (defaults["cnnkit"] == n and defaults["numpy_blas"] in (n, None)
                and defaults["torch"] == n):
            return n
    return None


def _preamble(settings: Settings, torch, machine: dict, configured: bool,
              unconfigured: bool) -> list[str]:
    env = openblas_env()
    unset = [f"{k} (was {v['at_start']!r})" for k, v in env.items() if v["unset_by_benchmark"]]
    kept = [f"{k}={v['in_effect']!r}" for k, v in env.items() if v["in_effect"] is not None]
    cores = all_cores()
    configurations = ((["no configuration (train-spec-cifar)"] if unconfigured else [])
                      + ([_count_name(n) + (" (all cores)" if n == cores and n > 1 else "")
                          for n in settings.threads]
                         + (["library defaults"] if settings.defaults else [])
                         if configured else []))
    lines = [
        f"cnnkit vs PyTorch {torch.__version__}, float32",
        f"measured on: {measured_on(machine)}",
        f"configurations: {', '.join(configurations)}; at a count, cnnkit's threads, NumPy's "
        f"BLAS and PyTorch all use it (change with --threads N or --threads 1,N)",
        f"each time: median of up to {settings.repeats} calls after {settings.warmup} warm-up "
        f"call(s), at most {settings.budget:g} s of samples per measurement"
        + (" (--quick: a smoke run, not a measurement)" if settings.quick else ""),
        "OpenBLAS environment: " + ("; ".join(
            ([f"unset {', '.join(unset)}"] if unset else [])
            + ([f"kept {', '.join(kept)}"] if kept else [])) or "OPENBLAS_CORETYPE and "
            "OPENBLAS_L2_SIZE not set"),
    ]
    if configured or unconfigured:
        lines.append("ratio = cnnkit ms / torch ms (above 1: cnnkit slower); CL = channels_last; "
                     "%pk = GFLOP/s as % of the SGEMM peak")
    return lines


def _training_row(net: str, batch_shape, settings: Settings) -> dict:
    n, shape = batch_shape
    return make_row(f"train-{net}", "step", "train",
                    f"batch {n} x {'x'.join(map(str, shape))}, forward + loss + backward + Adam",
                    time_training(net, **settings.timed))


def _measure(settings: Settings, torch, machine: dict, threads: dict, title: str,
             emit) -> tuple[dict, list]:
    """Every selected timed case at the thread counts in force: (SGEMM result, rows)."""
    cases = [c for c in kernel_cases(settings.extra) if selected(c.name, settings.only)]
    rows, sgemm = [], None
    emit("")
    emit(f"threads: {title} ({threads_label(threads)})")
    emit(f"measured on: {measured_on(machine)}")
    if any(c.flops is not None for c in cases):
        sgemm = sgemm_gflops(settings.sgemm_n, repeats=settings.sgemm_repeats, torch=torch)
        emit(f"SGEMM peak: {sgemm['gflops']:.1f} GFLOP/s (NumPy, float32 "
             f"{sgemm['n']}x{sgemm['n']} @ {sgemm['n']}x{sgemm['n']}, median); PyTorch's "
             f"matmul: {sgemm['torch_gflops']:.1f} GFLOP/s")
    emit(table_header())
    peak = None if sgemm is None else sgemm["gflops"]
    for case in cases:
        for row in kernel_rows(case, settings, peak):
            rows.append(row)
            emit(format_row(row))
    for net in NETS:
        if selected(f"train-{net}", settings.only):
            rows.append(_training_row(net, NETS[net], settings))
            emit(format_row(rows[-1]))
    for b in INFERENCE_BATCHES:
        name = f"infer-{INFERENCE_NET}-b{b}"
        if selected(name, settings.only):
            rows.append(make_row(name, "eval fwd", "inference",
                                 f"{INFERENCE_NET} net, eval mode, batch {b}",
                                 time_inference(INFERENCE_NET, b, **settings.timed), batch=b))
            emit(format_row(rows[-1]))
    inference = [r for r in rows if r["group"] == "inference"]
    if inference:
        emit("")
        for line in throughput_table(inference):
            emit(line)
    return sgemm, rows


def _measure_unconfigured(settings: Settings, torch, machine: dict, emit) -> dict:
    """The unconfigured cases, with no thread count set by anyone (see the module docstring):
    the ``unconfigured`` run."""
    threads = describe_threads(torch)
    emit("")
    emit(f"threads: none set, each library as it started ({threads_label(threads)}): a net "
         f"built from a spec in Python")
    emit(f"measured on: {measured_on(machine)}")
    emit(table_header())
    rows = []
    for net, (n, text) in SPEC_NETS.items():
        if selected(f"train-{net}", settings.only):
            rows.append(_training_row(net, batch_and_shape(net), settings))
            rows[-1]["spec"] = text
            emit(format_row(rows[-1]))
            emit(f"  spec: {text}")
    return {"name": UNCONFIGURED, "requested_threads": None, "threads": threads, "sgemm": None,
            "rows": rows}


def run(settings: Settings, emit=print) -> dict:
    """Run the selected cases in every configuration, emitting lines as they come; return the
    JSON payload (schema 2: one entry of ``runs`` per configuration, then ``speedups``)."""
    import torch

    from cnnkit import parallel

    start = time.time()
    at_start = describe_threads(torch)             # before any configuration changes a count
    defaults = {"cnnkit": parallel.default_num_threads(),
                "numpy_blas": at_start["numpy_blas"], "torch": at_start["torch"]}
    machine = machine_info(torch)
    configured_any = any(selected(name, settings.only) for name in case_names(settings.extra)
                         if not name.startswith("memory-") and name not in unconfigured_names())
    wanted = [name for name in unconfigured_names() if selected(name, settings.only)]
    unconfigured = settings.defaults and bool(wanted)
    for line in _preamble(settings, torch, machine, configured_any, unconfigured):
        emit(line)

    runs = []
    if unconfigured:
        runs.append(_measure_unconfigured(settings, torch, machine, emit))
    elif wanted:
        emit("")
        emit(f"{', '.join(wanted)}: not run; it runs with no thread count set, as each library "
             f"starts, which a single --threads count leaves out")
    if configured_any:
        for n in settings.threads:
            with thread_count(n, torch) as threads:
                sgemm, rows = _measure(settings, torch, machine, threads, str(n), emit)
            runs.append({"name": _count_name(n), "requested_threads": n, "threads": threads,
                         "sgemm": sgemm, "rows": rows})
    defaults_info = None
    if settings.defaults and configured_any:
        same = defaults_same_as(defaults, settings.threads)
        defaults_info = {"counts": defaults, "measured": same is None,
                         "same_as": None if same is None else _count_name(same)}
        if same is None:
            with library_defaults(torch, defaults["torch"]) as threads:
                sgemm, rows = _measure(settings, torch, machine, threads, "library defaults",
                                       emit)
            runs.append({"name": DEFAULTS, "requested_threads": None, "threads": threads,
                         "sgemm": sgemm, "rows": rows})
        else:
            emit("")
            emit(f"library defaults ({threads_label(defaults)}) are the {same}-thread "
                 f"configuration exactly: the {same}-thread table IS the defaults comparison, "
                 f"not measured again")

    speedups = []
    counted = [r for r in runs if r["requested_threads"] is not None]
    if len(counted) >= 2:
        low, high = counted[0], counted[-1]
        lo, hi = low["requested_threads"], high["requested_threads"]
        speedups = speedup_rows(low["rows"], high["rows"], lo, hi)
        emit("")
        emit(f"speed-up from {lo} to {hi} threads = each side's ms at {lo} / its ms at {hi} "
             f"({hi:.1f}x would be perfect); ck/NCHW and ck/CL: the ratios at {hi} threads")
        emit(f"measured on: {measured_on(machine)}")
        for line in speedup_table(speedups, lo, hi):
            emit(line)

    memory = [measure_memory(framework, net, layout, settings.threads[0])
              for net in NETS if selected(f"memory-{net}", settings.only)
              for framework, layout in MEMORY_SIDES]
    if memory:
        emit("")
        emit(f"memory: each step in a fresh process at {_count_name(settings.threads[0])}")
        emit(f"measured on: {measured_on(machine)}")
        for line in memory_table(memory):
            emit(line)
    return {"schema": 2, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start)),
            "duration_s": round(time.time() - start, 1),
            "settings": {**asdict(settings), "dtype": "float32"},
            "threads_at_start": at_start, "defaults": defaults_info, "machine": machine,
            "runs": runs, "speedups": speedups, "memory": memory}
