"""Peak memory of one training step (:mod:`benchmarks.steps`), one fresh process per framework.

What is measured, after two warm-up steps (so the optimizer state exists and first-call
allocations are done), on the third step:

- ``rss_peak_delta_mib``: the process's resident-set high-water mark during the step minus its
  resident set just before it. Linux keeps the high-water mark in ``VmHWM`` of
  ``/proc/self/status``; writing "5" to ``/proc/self/clear_refs`` resets it to the current
  resident set, so the mark read after the step belongs to that step alone. This counts
  everything both libraries allocate (NumPy's arrays, PyTorch's tensors and workspaces);
- ``rss_baseline_mib``: the resident set before the step (interpreter, libraries, the net, the
  optimizer state and the batch);
- ``tracemalloc_peak_mib`` (cnnkit only): the peak of memory allocated during the step and still
  live, as ``tracemalloc`` sees it. NumPy reports its array buffers to tracemalloc, so this is
  the peak of the NumPy side alone, without allocator slack; PyTorch does not report to
  tracemalloc, so it is None there. The tracemalloc step is a fourth step, after the RSS one,
  because tracing slows the step and adds its own memory.

Why a subprocess per framework: the RSS of a process that has already run the other framework's
step holds freed-but-kept memory and both libraries' code, which hides part of the next peak; a
fresh ``python -m benchmarks.memory --framework F --net NET`` has a clean baseline and loads only
its own library (the cnnkit process never imports torch). The parent sets
``MALLOC_MMAP_THRESHOLD_`` in the child's environment so that glibc serves every large block with
``mmap`` and returns it on free; otherwise glibc raises that threshold as blocks are freed and
keeps them on its heap, and a step after warm-up would reuse resident pages and show almost no
growth. For the same reason it sets ``CNNKIT_KEEP_FREED_MEMORY=0``: cnnkit otherwise asks glibc
to keep freed blocks when its kernels load (:mod:`cnnkit.allocator`), in the PyTorch child too,
which imports cnnkit to build its net. Where ``/proc`` or ``clear_refs`` is missing (not Linux), the RSS values are None.

The child runs at ``--threads`` (cnnkit's threads, NumPy's BLAS and PyTorch alike, through
:func:`benchmarks.threads.thread_count`); ``python -m benchmarks`` passes the first of its thread
counts, so memory is measured once, not per configuration. The child prints one line of JSON;
:func:`measure_memory` runs it and parses that line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

__all__ = ["measure_memory", "rss_step", "main"]

ROOT = Path(__file__).resolve().parent.parent        # the repository root, for ``-m``
MMAP_THRESHOLD = 64 * 1024


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def rss_step(step) -> dict:
    """Run ``step()`` once; the RSS before it and the growth of the high-water mark, in MiB."""
    if not _reset_high_water_mark():
        step()
        return {"rss_baseline_mib": None, "rss_peak_delta_mib": None}
    before = _status_kib("VmRSS")
    step()
    peak = _status_kib("VmHWM")
    if before is None or peak is None:
        return {"rss_baseline_mib": None, "rss_peak_delta_mib": None}
    return {"rss_baseline_mib": before / 1024, "rss_peak_delta_mib": (peak - before) / 1024}


def _tracemalloc_step(step) -> float:
    import tracemalloc

    tracemalloc.start()
    try:
        step()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _make_step(framework: str, net_name: str, layout: str):
    from .nets import batch, cnnkit_net, cnnkit_train_step, torch_net, torch_train_step

    x, y = batch(net_name)
    if framework == "cnnkit":
        return cnnkit_train_step(cnnkit_net(net_name), x, y)
    import torch

    net = torch_net(cnnkit_net(net_name), channels_last=layout == "channels_last")
    x_t = torch.from_numpy(x)
    if layout == "channels_last":
        x_t = x_t.contiguous(memory_format=torch.channels_last)
    return torch_train_step(net, x_t, torch.from_numpy(y))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memory",
        description="Peak memory of one training step; prints one line of JSON.")
    parser.add_argument("--framework", choices=("cnnkit", "torch"), required=True)
    parser.add_argument("--net", choices=("mnist", "cifar"), required=True)
    parser.add_argument("--layout", choices=("nchw", "channels_last"), default="nchw")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.framework == "cnnkit" and args.layout != "nchw":
        parser.error("cnnkit has only the nchw layout")
    torch = None
    if args.framework == "torch":
        import torch
    from .threads import thread_count

    with thread_count(args.threads, torch):
        step = _make_step(args.framework, args.net, args.layout)
        for _ in range(2):
            step()
        result = {"framework": args.framework, "net": args.net, "layout": args.layout,
                  "threads": args.threads, **rss_step(step),
                  "tracemalloc_peak_mib": (_tracemalloc_step(step)
                                           if args.framework == "cnnkit" else None)}
    print(json.dumps(result))
    return 0


def measure_memory(framework: str, net: str, layout: str = "nchw", threads: int = 1,
                   timeout: float = 600) -> dict:
    """Run the measurement in a fresh ``python -m benchmarks.memory`` and return its JSON; on a
    failure the same keys with None values and an ``error`` line."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD),
               CNNKIT_KEEP_FREED_MEMORY="0")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "benchmarks.memory", "--framework", framework, "--net", net,
           "--layout", layout, "--threads", str(threads)]
    failed = {"framework": framework, "net": net, "layout": layout, "threads": threads,
              "rss_baseline_mib": None, "rss_peak_delta_mib": None, "tracemalloc_peak_mib": None}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**failed, "error": f"timed out after {timeout:g} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        err = proc.stderr.strip().splitlines()
        return {**failed, "error": err[-1] if err else f"exit status {proc.returncode}"}
    return json.loads(lines[-1])


if __name__ == "__main__":
    sys.exit(main())
