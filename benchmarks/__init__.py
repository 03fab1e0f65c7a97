"""Ratio benchmarks: cnnkit against PyTorch on the CPU, measured in one process.

Run from the repository root::

    python -m benchmarks                  # everything at 1 thread, all cores, the defaults
    python -m benchmarks --quick          # a smoke run: few repeats, small time budget
    python -m benchmarks --only conv --threads 2      # one configuration: 2 threads
    python -m benchmarks --threads 1,4                # 1 and 4 threads, the defaults, speed-ups
    python -m benchmarks --extra --only '^conv'       # also the convolutions of other shapes
    python -m benchmarks --compare A.json B.json      # two result files side by side

Modules, each holding one thing:

- ``timing``: the timer (warm-up, then the median of repeats, within a time budget);
- ``threads``: one thread count for cnnkit, NumPy's BLAS (threadpoolctl) and PyTorch, or each
  library's defaults;
- ``guard``: the correctness check run once before a case is timed;
- ``cases``: the kernel cases (conv, pooling, batch norm, ReLU, linear), one table entry each,
  and the extra shapes of ``--extra``;
- ``kernels``: timing one kernel case on cnnkit and PyTorch (NCHW and channels_last);
- ``nets``: the benchmark nets in cnnkit (one built from a spec string) and the same nets in
  PyTorch;
- ``steps``: training steps (forward, loss, backward, Adam) and inference throughput;
- ``memory``: peak memory of one training step, in a fresh subprocess per framework;
- ``sgemm``: this machine's float32 GEMM rate, the peak the convolutions are compared with;
- ``machine``: CPU, library versions, BLAS (with its core type) and environment, for the JSON
  and the line naming them above every table;
- ``report``: the printed tables (one per thread configuration, the speed-ups) and the JSON;
- ``suite``: which cases run, in what order, at which thread counts and with what settings;
- ``compare``: ``--compare``, two result files side by side (times nothing, no PyTorch);
- ``__main__``: the command line;
- ``trainer``: ``python -m benchmarks.trainer``, what the Trainer's loop and its callbacks cost
  over a hand-written loop (cnnkit against itself, outside the ratio tables).

This package imports nothing heavy itself, so ``__main__`` can change the environment before
NumPy is loaded.
"""
