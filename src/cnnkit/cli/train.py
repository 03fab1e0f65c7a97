"""``cnnkit train``: :func:`cnnkit.fit` with the options of :class:`cnnkit.RunConfig`, and
``--workers P``, which starts P MPI ranks that each run it."""

from __future__ import annotations

import sys

from ..app import RunConfig
from ..app.training import fit
from ..data import source_names
from ..distributed import active, exit_now, job_size
from ..distributed.launch import MAX_WORKERS, launch
from ..errors import UsageError
from ..interrupts import exit_status
from ..runs import RunFolder
from ..train import TrainingInterrupted
from .options import Count, add_common_options, add_settings, settings_given, typed

#: The settings train's options set: all but the common options every command has.
SETTINGS = tuple(name for name in RunConfig.settings() if name not in ("threads",
                                                                         "memory_budget"))
DISTRIBUTED = ("sync_bn", "timeout")


def add_parsers(sub) -> None:
    """Add the parser of train to ``sub``, argparse's subparsers."""
    p = sub.add_parser(
        "train",
        help="train a net on a data source (default: the shipped MNIST), print test accuracy",
        description="Train a net on a data source: " + ", ".join(source_names()) + ". Writes "
        "OUT/NAME/checkpoint.npz (every epoch, for --resume), model.npz (best validation "
        "weights), history.json and .csv, curves.png, layer_stats.json and .png and test.json; "
        "then prints the test accuracy. From Python: cnnkit.fit(data, model, **settings), whose "
        "keywords are these options' names with underscores.",
        examples=("cnnkit train --epochs 2 --name first",
                  "cnnkit train --resume runs/first/checkpoint.npz --epochs 3"))
    add_settings(p, [name for name in SETTINGS if name not in DISTRIBUTED])
    group = p.add_argument_group(
        "data-parallel training (MPI)",
        "Under `mpiexec -n P cnnkit train ...` each of the P ranks trains on batch/P images of "
        "every batch and one allreduce per step sums the gradients; the weights are those of "
        "one process training on the same batches. Needs `pip install \"cnnkit[mpi]\"`.")
    workers = Count(1, MAX_WORKERS, f"a count from 1 to {MAX_WORKERS} (ranks on one machine)")
    group.add_argument("--workers", type=typed(workers), default=None, metavar="P",
                       help="start P ranks on this machine (runs mpiexec -n P for you); each "
                       "gets cores/P threads unless --threads says")
    add_settings(group, DISTRIBUTED)
    add_common_options(p)
    p.set_defaults(run=_run)


def _run(args) -> int:
    try:
        fit(log=_print, **settings_given(args, SETTINGS))
    except TrainingInterrupted as err:
        comm = active()
        if comm is None or comm.is_root:             # rank 0 alone speaks (and saved)
            folder = err.run.folder if err.run is not None else None
            resume = "" if folder is None else \
                f"; resume with: cnnkit train --resume {RunFolder(folder).checkpoint}"
            print(f"cnnkit train: {err}{resume}", file=sys.stderr)
        if comm is not None and err.at_once:         # a second signal: the ranks are not in
            exit_now(exit_status(err), comm)         # step, so end the job without waiting
        return exit_status(err)
    return 0


def _print(line: str = "") -> None:
    print(line, flush=True)


def launch_workers(argv, args) -> int:
    """``cnnkit train --workers P``: check what can be checked here, then start the P ranks."""
    if job_size() > 1:
        raise UsageError("--workers starts its own MPI ranks; under mpiexec leave it out")
    batch = getattr(args, "batch_size", RunConfig.batch_size)
    if getattr(args, "resume", None) is None and batch % args.workers:
        raise UsageError(f"--batch-size {batch} does not split over --workers {args.workers} "
                         f"(each rank trains batch/ranks images); give a batch that is a "
                         f"multiple of {args.workers}")
    return launch(argv, args.workers, args.threads)
