# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # More cores and machines
#
# Training a convnet is mostly large matrix products and passes over large arrays: work that
# splits. cnnkit splits it three ways, and this tutorial runs each one:
#
# 1. **Threads** inside one process: a layer's batch is cut into chunks that the cores take in
#    turn.
# 2. **Worker processes** (MPI ranks), on one machine or several: each trains on its share of
#    every batch, and the gradients are summed before each step.
# 3. **Independent trials**: a hyperparameter search runs whole training runs side by side.
#
# Each keeps the answer exact, or says precisely how it differs. This page measures on
# whatever machine builds it, so its timings are that machine's; the prose says what to expect
# elsewhere.

# %%
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import cnnkit
from cnnkit import functional as F
from cnnkit import io, search

# Default scale: the one-process and two-process runs train on 640 digits for 1 epoch (9
# steps), the search runs 4 trials of 1 epoch on 1,500 digits; the page runs in about 40 s on
# 2 cores. Full scale (CNNKIT_FULL_SCALE=1): the runs train on 20,000 digits for 2 epochs and
# the search runs 8 trials of 2 epochs on 10,000, a few minutes on 2 cores.
FULL_SCALE = os.environ.get("CNNKIT_FULL_SCALE") == "1"
LIMIT, EPOCHS = (20_000, 2) if FULL_SCALE else (640, 1)
TRIALS, TRIAL_EPOCHS, TRIAL_LIMIT = (8, 2, 10_000) if FULL_SCALE else (4, 1, 1_500)

workdir = tempfile.TemporaryDirectory()     # every file this page writes goes here,
home = os.getcwd()                          # and we work inside it, so that paths print short
os.chdir(workdir.name)

# %% [markdown]
# ## Threads
#
# cnnkit's kernels run on a pool of worker threads. By default it uses every core the process
# may use; `CNNKIT_NUM_THREADS` in the environment, `cnnkit.set_num_threads(n)`, the block form
# `with cnnkit.num_threads(n):` and the command line's `--threads N` all set the count.

# %%
print("cores this process may use:", len(os.sched_getaffinity(0)))
print("cnnkit's threads:", cnnkit.get_num_threads())
print(f"machine load now (processes wanting a core, last minute): {os.getloadavg()[0]:.1f}")

# %% [markdown]
# Why threads and not processes, in Python? Because NumPy lets go of the interpreter lock
# inside its matrix products, copies and elementwise loops, which is where a kernel spends its
# time. A convolution cuts its batch into chunks whose im2col columns fit in a core's cache,
# and each thread multiplies the filters by one chunk's columns at a time.
#
# We time the forward pass of a 3x3 convolution with 32 filters over a batch of 64 volumes of
# 16x32x32 (about 300 million multiply-adds), at 1 thread and at 2, taking the best of several
# repeats to keep out other programs' noise:

# %%
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 16, 32, 32), dtype=np.float32)
w = rng.standard_normal((32, 16, 3, 3), dtype=np.float32)
b = np.zeros(32, np.float32)


def best_times(call, repeats=15, calls=1):
    """Best time per call of call() on 1 and on 2 threads, and its results; the two counts
    take turns, so that a busy moment of the machine does not fall on one count alone."""
    best, results = {1: float("inf"), 2: float("inf")}, {}
    for _ in range(repeats):
        for threads in (1, 2):
            with cnnkit.num_threads(threads):
                start = time.perf_counter()
                for _ in range(calls):
                    results[threads] = call()
                best[threads] = min(best[threads], (time.perf_counter() - start) / calls)
    return best, results


def large_conv():
    out, _cache = F.conv2d_forward(x, w, b, 1, 1)             # stride 1, padding 1
    return out


best, out = best_times(large_conv)
print(f"1 thread  {best[1] * 1e3:6.1f} ms")
print(f"2 threads {best[2] * 1e3:6.1f} ms   speed-up {best[1] / best[2]:.2f}x")
print("the same bits on 1 and 2 threads:", np.array_equal(out[1], out[2]))

# %% [markdown]
# On an idle 2-core machine the speed-up comes close to 2; on a busy one (see the load printed
# above: more than 2 means the cores were shared) it is lower, even below 1, since the second
# thread waits for a core and the first then waits for it. The
# outputs are identical, bit for bit: how a layer cuts its work depends on the shapes and the
# cache size, never on the thread count, and partial sums (a convolution's weight gradient,
# batch norm's statistics) are added in the order of the chunks, not in the order threads
# finish. A run is reproducible on a laptop and on a server alike.
#
# What to expect on 8 to 64 cores: a layer speeds up while it has more chunks than threads,
# so large batches and large early layers scale best, and every thread then competes for the
# same memory bandwidth, which is what usually ends the gain. Small work stays on the calling
# thread, where waking the workers would cost more than it saves. A small layer shows it:

# %%
small = rng.standard_normal((4, 8, 14, 14), dtype=np.float32)
w_small = rng.standard_normal((8, 8, 3, 3), dtype=np.float32)
best, _ = best_times(lambda: F.conv2d_forward(small, w_small, None, 1, 1), repeats=7, calls=50)
for threads in (1, 2):
    print(f"{threads} thread(s): {best[threads] * 1e6:.0f} us a call")

# %% [markdown]
# The two times are about the same, up to noise: the small convolution never left the calling
# thread. On
# many cores, then, the large layers of a net speed up and the small ones do not, which is
# the point where more processes help.
#
# ## Worker processes
#
# `cnnkit train --workers P` starts P processes (MPI ranks, through `mpiexec` from the MPICH
# package that the `mpi` extra installs). Every rank builds the same net from the same seed and
# draws the same batches; of each batch of B images, rank r computes the gradients of its B/P
# rows, and one allreduce per step sums them over the ranks. Every rank then takes the same
# optimizer step. So the weights are those of one process training on the same batches.
#
# We check that on a short run (a few steps, to compare weights before rounding differences
# have time to grow; more on that below). First one process, here through `cnnkit.fit` (the
# same run as `cnnkit train`), on a net without batch norm:

# %%
NET = "CONV5-8 -> RELU -> POOL2 -> CONV5-16 -> RELU -> POOL2 -> FC-10"
settings = {"limit": LIMIT, "epochs": EPOCHS, "seed": 0, "batch_size": 64}
single = cnnkit.fit("mnist", NET, out="runs", name="one", progress=False, log=None, **settings)
print(f"one process: test accuracy {single.test_accuracy:.4f}")

# %% [markdown]
# Then the same run with `--workers 2`, from the command line, as a shell would run it:

# %%
def cnnkit_command(*args):
    """Run `cnnkit ARGS...` in a child process and print what it says (an error stops the page)."""
    print("$ cnnkit", " ".join(f'"{a}"' if " " in str(a) else str(a) for a in args))
    result = subprocess.run([sys.executable, "-m", "cnnkit", *map(str, args)],
                            capture_output=True, text=True, check=False)
    print((result.stdout + result.stderr).strip())
    if result.returncode:
        raise RuntimeError(f"cnnkit {args[0]} exited with status {result.returncode}")


options = [f"--{key.replace('_', '-')}={value}" for key, value in settings.items()]
cnnkit_command("train", "--model", NET, *options, "--out", "runs", "--name", "two",
               "--no-progress", "--workers", 2)

# %% [markdown]
# The first line says how the run is split: 2 ranks, each with its share of the cores, each
# batch of 64 as two halves of 32. Compare its test accuracy with the single process's, and
# the final weights of the two runs:

# %%
one_process = io.load_model("runs/one/checkpoint.npz").state_dict()
two_ranks = io.load_model("runs/two/checkpoint.npz").state_dict()
for name in one_process:
    gap = np.abs(one_process[name] - two_ranks[name]).max()
    largest = np.abs(one_process[name]).max()
    print(f"{name:<10} largest difference {gap:.1e}, "
          f"relative to the largest weight {gap / largest:.0e}")

# %% [markdown]
# The weights agree to float32 rounding (float32 keeps about 7 significant digits), not bit
# for bit: two ranks add each gradient as two half-batch sums, one process as one sum, and
# float32 addition depends on the order. Over a long run such differences grow: one flipped
# choice of a max pool or a ReLU near zero sends a gradient elsewhere, and Adam scales tiny
# gradients up to full steps. The runs stay the same computation (cnnkit's tests train in
# float64 and find one process and 2 or 3 ranks within 1e-10 after 20 Adam steps), but the
# last digits of a long run's weights differ, as they would after any change of summation
# order. Threads, by contrast, are bit-exact, because their sums keep one order.
#
# Batch norm is the one layer where ranks compute something different by default: each rank
# normalises with the statistics of its own B/P images, as PyTorch's DistributedDataParallel
# does. `--sync-bn` sums the statistics over the ranks instead, so the run is again one
# process's.
#
# `--workers` is a shortcut for launching `mpiexec` yourself, which is also how a job spans
# several machines (`mpiexec -n 8 -hosts a,b cnnkit train ...`; every rank needs the data, and
# rank 0 writes the run folder). Under `mpiexec`, `cnnkit.fit` trains data-parallel in the same
# way, and a training loop of your own gets the ranks from `cnnkit.distributed`:
# `distributed.world()` is the communicator (None in a plain process) and
# `distributed.DataParallel(comm)`, handed to the `Trainer`, sums the gradients; the guide's
# [threads and MPI](../guide/parallel.md) page shows the few lines.
#
# ## Searching hyperparameters
#
# The learning rate matters more than any other setting, and the right one is found by trying.
# The notes' advice: sample it log-uniformly over a wide range, train each trial briefly,
# compare on the validation split, then search again, more finely, around the best.
# `cnnkit.search.search` does this; each trial is a `cnnkit.fit` run.

# %%
start = time.perf_counter()
result = search.search(trials=TRIALS, lr=(1e-4, 1e-1), epochs=TRIAL_EPOCHS, model=NET,
                       data="mnist", limit=TRIAL_LIMIT, seed=0, out="searches", name="lr",
                       log=None)
print("\n".join(result.table()))
print(f"({time.perf_counter() - start:.0f} s in this process)")
best = result.best
print(f"best: {best['folder']}, lr {best['lr']:.3g}, validation accuracy {best['val_acc']:.3f}")
low, high = result.suggested["lr"]
print(f"search more finely within: lr {low:.2g} to {high:.2g}")

# %% [markdown]
# Read the table from the bottom up: the largest learning rates diverge or stall near chance
# (10% on ten classes), and the best is in between. The suggested range is centred, on a
# logarithmic scale, on the best trial and half as wide as this one (`rounds=2` runs that finer
# stage at once). The search folder holds each trial's run, `search.json` with every trial's
# settings and result, and `best.npz`, the best trial's weights:

# %%
print(sorted(path.name for path in Path("searches/lr").iterdir()))

# %% [markdown]
# ### The same search on two ranks
#
# Trials are independent, so a search scales better than splitting each batch: under `mpiexec
# -n P`, trial i runs on rank i mod P, each with a whole net, and the ranks read each other's
# results from the search folder (so ranks on several machines need it on a shared
# filesystem). Here is the same search on 2 ranks of 1 thread each, started the way you would
# start it, with the `mpiexec` that MPICH installed beside Python:

# %%
mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
command = [mpiexec, "-n", "2", sys.executable, "-m", "cnnkit", "search",
           "--trials", TRIALS, "--lr", "1e-4:1e-1", "--epochs", TRIAL_EPOCHS, "--model", NET,
           "--limit", TRIAL_LIMIT, "--seed", 0, "--out", "searches", "--name", "lr-mpi",
           "--threads", 1]
print("$ mpiexec -n 2 python -m cnnkit search --trials", TRIALS, "...")
start = time.perf_counter()
finished = subprocess.run(list(map(str, command)), capture_output=True, text=True, check=False)
print((finished.stdout + finished.stderr).strip())
print(f"({time.perf_counter() - start:.0f} s, starting the processes included)")
if finished.returncode:
    raise RuntimeError(f"mpiexec exited with status {finished.returncode}")

# %% [markdown]
# The same trials with the same learning rates (the seed decides them) and the same validation
# accuracies; the `rank` column says where each ran (rank 0 prints a line for each of its own
# trials as it ends, and the table of them all). Each rank trained its trials alone on one
# core, with no communication during training, which is why this is the form of parallelism
# that scales furthest: on 64 cores, 64 ranks of 1 thread, or 16 ranks of 4. Compare the two
# searches' times: on an idle machine two ranks can take about half as long as one process,
# because this small net's layers are too small to gain from a second thread (as we saw above)
# while a second rank runs whole trials; starting the processes costs a second or two.

# %%
os.chdir(home)
workdir.cleanup()

# %% [markdown]
# Where next: the guide's [threads and MPI](../guide/parallel.md) page covers stopping, faults
# and resuming on another number of ranks, and [benchmarks](../guide/benchmarks.md) how the
# speed-ups were measured.
