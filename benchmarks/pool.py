"""``python -m benchmarks.pool``: where cnnkit's worker pool starts to pay, and what a call costs.

cnnkit runs a kernel's tasks on the calling thread alone when the call's work is under
``cnnkit.parallel.MIN_PARALLEL_BYTES``: waking the workers costs more than tiny work saves. This
measures the two sides of that rule on this machine, for float32 ReLU forward + backward (the
cheapest kernel per byte, so the one that needs the most bytes to pay):

- the cost of an empty parallel call (``for_each`` over tasks that do nothing), all cores;
- for arrays from 256 KiB to 16 MiB, the kernel on one thread and on all cores, forced past the
  threshold (``MIN_PARALLEL_BYTES`` set to 0 for the measurement), and their ratio.

The threshold belongs where the ratio passes 1. Times are medians (``--repeats``) in one process;
like the main benchmark, this re-executes itself without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .__main__ import _reexec_without_openblas_env


def _median_ms(function, repeats: int) -> float:
    import statistics

    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(repeats: int = 50, threads: int | None = None) -> dict:
    """The empty-call cost and the 1-thread / all-cores ReLU times by size (a JSON-able dict)."""
    import numpy as np

    from cnnkit import functional as F
    from cnnkit import parallel

    threads = threads or len(os.sched_getaffinity(0))
    result = {"threads": threads, "threshold_bytes": parallel.MIN_PARALLEL_BYTES,
              "task_bytes": parallel.TASK_BYTES, "sizes": []}
    with parallel.num_threads(threads):
        result["empty_call_us"] = 1e3 * _median_ms(
            lambda: parallel.for_each(threads, lambda i, slot: None), repeats * 10)
    saved = parallel.MIN_PARALLEL_BYTES
    parallel.MIN_PARALLEL_BYTES = 0
    try:
        rng = np.random.default_rng(0)
        for kib in (256, 1024, 1536, 2048, 3072, 4096, 16384):
            x = rng.standard_normal(kib * 256, dtype=np.float32)
            dout = rng.standard_normal(x.shape, dtype=np.float32)

            def step():
                F.relu_backward(dout, F.relu_forward(x)[1])

            ms = {}
            for count in (1, threads):
                with parallel.num_threads(count):
                    ms[count] = _median_ms(step, repeats)
            result["sizes"].append({"kib": kib, "ms_1": ms[1],
                                    "ms_n": ms[threads], "speedup": ms[1] / ms[threads]})
    finally:
        parallel.MIN_PARALLEL_BYTES = saved
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pool", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per size")
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    args = parser.parse_args(argv)
    r = measure(args.repeats, args.threads)
    print(f"empty parallel call on {r['threads']} threads: {r['empty_call_us']:.0f} us")
    print(f"ReLU forward+backward, float32; the kernels' threshold is "
          f"{r['threshold_bytes'] >> 10} KiB of input, tasks of {r['task_bytes'] >> 10} KiB")
    print(f"{'input KiB':>10}{'1 thread ms':>13}{r['threads']:>3} threads ms{'speed-up':>10}")
    for s in r["sizes"]:
        print(f"{s['kib']:>10}{s['ms_1']:>13.3f}{s['ms_n']:>14.3f}{s['speedup']:>9.2f}x")
    return 0


if __name__ == "__main__":
    _reexec_without_openblas_env(sys.argv[1:])
    sys.exit(main())
