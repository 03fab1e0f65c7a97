"""``python -m benchmarks.distributed``: data-parallel throughput on this machine.

Trains the benchmarks' CIFAR-size net (:mod:`benchmarks.nets`: three conv-BN-ReLU-pool blocks,
3x32x32, batch 128; ``--model resnet20`` or another zoo name instead) with Adam on random images
for a number of steps through the real Trainer, three ways:

* 1 process x 1 thread, and 1 process x T threads (T = the cores): cnnkit's threads;
* P ranks x 1 thread (P = the cores), under ``mpiexec -n P``: data parallelism.

and reports images per second, and for the ranks the share of a step spent in the gradient
allreduce: the wait as the Trainer sees it (including waiting for the slower rank) and the bare
allreduce of the same buffer timed alone after a barrier. Each figure is the median of
``--repeats`` runs. The OpenBLAS variables are removed from this process's environment first,
as ``python -m benchmarks`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_name, None)

import numpy as np  # noqa: E402  (after the environment is settled)


def _train(steps: int, batch: int, model_name: str, comm=None) -> dict:
    from cnnkit import distributed, optim
    from cnnkit.models import build_model
    from cnnkit.train import Trainer

    if model_name == "cifar":
        from benchmarks.nets import cnnkit_net

        model, shape = cnnkit_net("cifar"), (3, 32, 32)
    else:
        model, shape = build_model(model_name, (3, 32, 32), num_classes=10,
                                   rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((steps * batch, *shape)).astype(np.float32)
    y = rng.integers(0, 10, len(x))
    dp = distributed.DataParallel(comm) if comm is not None else None
    trainer = Trainer(model, optim.Adam(model.named_parameters(), lr=1e-3), batch_size=batch,
                      epochs=1, progress=False, log=None, distributed=dp, restore_best=False)
    trainer.fit((x[:batch * 2], y[:batch * 2]))             # warm-up: caches, pools, MPI
    trainer.epochs = 2
    if dp is not None:
        dp.reduce_seconds = 0.0
        comm.barrier("the benchmark's start")
    start = time.perf_counter()
    trainer.fit((x, y))
    seconds = time.perf_counter() - start
    result = {"seconds": seconds, "images_per_s": steps * batch / seconds}
    if dp is not None:
        result["wait_share"] = dp.reduce_seconds / seconds
        flat = next(iter(dp._flat.values())).copy()
        alone = []
        for _ in range(30):
            comm.barrier("the allreduce timing")
            t0 = time.perf_counter()
            comm.allreduce(flat, "the allreduce timing")
            alone.append(time.perf_counter() - t0)
        result["allreduce_ms"] = 1e3 * statistics.median(alone)
        result["allreduce_share"] = result["allreduce_ms"] / 1e3 / (seconds / steps)
        result["buffer_mb"] = flat.nbytes / 2**20
    return result


def _worker(args) -> int:
    from cnnkit import distributed, parallel

    comm = distributed.world()
    with parallel.num_threads(args.threads), parallel.blas_single_thread():
        result = _train(args.steps, args.batch, args.model, comm)
    if comm is None or comm.is_root:
        print(json.dumps(result))
    return 0


def _run(command: list[str], threads: int) -> dict:
    env = dict(os.environ, CNNKIT_NUM_THREADS=str(threads))
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--model", default="cifar")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ranks", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if args.worker:
        return _worker(args)
    mpiexec = Path(sys.executable).parent / "mpiexec"
    base = [sys.executable, "-m", "benchmarks.distributed", "--worker", "--steps",
            str(args.steps), "--batch", str(args.batch), "--model", args.model]
    cores = len(os.sched_getaffinity(0))
    setups = {"1 process x 1 thread": (base + ["--threads", "1"], 1),
              f"1 process x {cores} threads": (base + ["--threads", str(cores)], cores),
              f"{args.ranks} ranks x 1 thread": ([str(mpiexec), "-n", str(args.ranks)] + base
                                                 + ["--threads", "1"], 1)}
    runs = {name: [] for name in setups}
    for _ in range(args.repeats):               # interleaved, so drift hits every setup alike
        for name, (command, threads) in setups.items():
            runs[name].append(_run(command, threads))
    print(f"{args.model}, batch {args.batch}, {args.steps} steps, medians of {args.repeats}")
    summary = {}
    for name, results in runs.items():
        rates = [r["images_per_s"] for r in results]
        row = {"images_per_s": statistics.median(rates), "min": min(rates), "max": max(rates)}
        line = f"  {name:<24} {row['images_per_s']:7.1f} images/s  ({min(rates):.1f}-" \
               f"{max(rates):.1f})"
        if "wait_share" in results[0]:
            for key in ("wait_share", "allreduce_ms", "allreduce_share", "buffer_mb"):
                row[key] = statistics.median(r[key] for r in results)
            line += (f"; allreduce of {row['buffer_mb']:.2f} MB alone {row['allreduce_ms']:.2f} "
                     f"ms = {row['allreduce_share']:.1%} of a step; waiting in it "
                     f"{row['wait_share']:.1%} of training")
        summary[name] = row
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
