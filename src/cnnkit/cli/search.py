"""``cnnkit search``: :func:`cnnkit.search.search`, the trials' options generated from
:class:`cnnkit.RunConfig` (those it passes through to every trial)."""

from __future__ import annotations

import argparse

from ..distributed import AgreedError, active
from ..search import PASSED_THROUGH, SearchError, parse_range, search
from .options import (PASSES, SEED, add_common_options, add_folder_options, add_settings,
                      settings_given)


def _range(zero: bool):
    def parse(text):
        try:
            return parse_range(text, zero=zero)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return parse


def add_parsers(sub) -> None:
    """Add the parser of search to ``sub``, argparse's subparsers."""
    p = sub.add_parser(
        "search", help="random search of the learning rate and weight decay, trials over MPI "
        "ranks",
        description="Random hyperparameter search (log-uniform, coarse then fine): --trials "
        "training runs per round with the learning rate, and the weight decay when given a "
        "range, sampled log-uniformly; compared by validation accuracy. Under `mpiexec -n P` "
        "trial i runs on rank i mod P. Writes OUT/NAME/trial-NNN/ (each a run folder with "
        "train.log and result.json), search.json and best.npz (the best trial's weights; the "
        "other trials' .npz files are deleted), and prints a table.",
        examples=("cnnkit search --trials 4 --epochs 1 --limit 5000", "cnnkit search --trials 4 "
                  "--rounds 2 --weight-decay 1e-5:1e-2 --limit 5000 --name fine"))
    p.add_argument("--trials", type=PASSES, required=True, metavar="N", help="trials per round")
    p.add_argument("--lr", type=_range(False), default=(1e-4, 1e-2), metavar="LO:HI",
                   help="learning-rate range, sampled log-uniformly; one number fixes it "
                   "(default: 1e-4:1e-2)")
    p.add_argument("--weight-decay", type=_range(True), default=(0.0, 0.0), metavar="LO:HI",
                   help="L2 strength range (0 < LO <= HI), sampled log-uniformly; one number "
                   "fixes it (default: 0, not searched)")
    p.add_argument("--epochs", type=PASSES, default=2,
                   help="epochs of each trial (default: %(default)s)")
    p.add_argument("--rounds", type=PASSES, default=1,
                   help="rounds of --trials each; round 2 on is the fine stage: each searched "
                   "range is centred, in log10, on the best trial so far and half as many "
                   "decades wide as the previous round's (not clipped to it, so a best value at "
                   "an edge moves the search past that edge) (default: %(default)s)")
    p.add_argument("--seed", type=SEED, default=0, help="seeds every trial's initialisation and "
                   "split, and the sampling (default: %(default)s)")
    add_folder_options(p, "searches", "search folder", "search-DATE-TIME", "a search or run")
    add_settings(p, PASSED_THROUGH)
    add_common_options(p)
    p.set_defaults(run=_run)


def _run(args) -> int:
    try:
        result = search(trials=args.trials, lr=args.lr, weight_decay=args.weight_decay,
                        epochs=args.epochs, rounds=args.rounds, seed=args.seed, out=args.out,
                        name=args.name, overwrite=args.overwrite, threads=args.threads,
                        log=lambda line="": print(line, flush=True),
                        **settings_given(args, PASSED_THROUGH))
    except (SearchError, AgreedError) as err:
        stopped = err.error if isinstance(err, AgreedError) else err
        comm = active()
        if isinstance(stopped, SearchError) and stopped.result is not None \
                and (comm is None or comm.is_root):
            print("\n" + "\n".join(stopped.result.table()), flush=True)  # what it found
        raise
    comm = active()
    if comm is None or comm.is_root:                 # rank 0 alone prints
        print("\n" + "\n".join([*result.table(), *result.conclusion()]))
    return 0
