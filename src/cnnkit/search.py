"""``cnnkit search``: a random hyperparameter search, its trials spread over MPI ranks.

The course's advice, as a command: sample the learning rate (and the weight decay) at random on
a log scale rather than on a grid, train each setting for a few epochs, compare them by
validation accuracy, then search again, finer, around the best ("coarse, then fine").

    cnnkit search --trials 16 --lr 1e-4:1e-1 --epochs 2
    mpiexec -n 4 cnnkit search --trials 16 --lr 1e-4:1e-1 --weight-decay 1e-6:1e-2 --rounds 2

Each trial is a whole ``cnnkit train`` run in this process (never data-parallel), with the
search's ``--seed`` for the initialisation and the split, so trials differ only in the sampled
settings. Round 1 draws ``--trials`` settings log-uniformly from the ranges given. Each later
round (the fine stage) draws from ranges centred, in log10, on the best trial so far and half as
many decades wide as the previous round's, and not clipped to them: a best value at the edge of
a range moves the next round past that edge. Every rank draws the same settings from its own
Generator seeded by ``--seed``; trial i runs on rank ``i % ranks``.

``OUT/NAME/`` holds ``trial-NNN/`` (a run folder of ``cnnkit train`` with ``train.log``, its
output, and ``result.json``), ``search.json`` (every trial's settings and best validation
accuracy) and ``best.npz``, the weights of the best trial (its ``model.npz``). Only the best
trial keeps its ``.npz`` files. The ranks must share ``--out``: after each round every rank
reads every trial's ``result.json`` from it, so that all agree on the next round's ranges.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np

from .cli import EXIT_INTERRUPTED, CLIError

__all__ = ["SearchError", "add_search_parser", "cmd_search", "log_uniform", "narrowed",
           "parse_range"]

#: Train options a search passes to every trial unchanged (argparse dests).
PASS_THROUGH = ("data", "model", "input", "fit", "test_size", "skip_bad", "batch_size",
                "optimizer", "momentum", "schedule", "step_size", "gamma", "loss", "augment",
                "val_size", "limit")

#: Searched settings: (argparse dest, the name shown in tables and JSON).
SEARCHED = (("lr", "lr"), ("weight_decay", "weight decay"))

#: Mixed into --seed for the sampling Generator, so its draws are not the trials' init draws.
_SAMPLING_STREAM = 0x5EA2C4

_TRIAL = re.compile(r"trial-\d{3,}")


class SearchError(CLIError, ValueError):
    """Bad input to a search, or a search that cannot go on; reported as one line.

    A ValueError too, so the error boundary of ``python -m cnnkit.cli`` (whose CLIError is
    another class object than ``cnnkit.cli.CLIError``) reports it as one line as well."""


# ---------------------------------------------------------------------------- ranges


def parse_range(text: str, *, zero: bool = False) -> tuple[float, float]:
    """``LO:HI`` (finite, 0 < LO <= HI) or one number V (V:V, not searched) -> (LO, HI).

    ``zero`` also accepts the single value 0. Raises ``argparse.ArgumentTypeError`` with one
    line saying what is wrong."""
    parts = text.split(":")
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"expected LO:HI such as 1e-4:1e-2, or one number, got "
                                         f"{text!r}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO:HI of numbers such as 1e-4:1e-2, or one "
                                         f"number, got {text!r}") from None
    lo, hi = values[0], values[-1]
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    if zero and len(values) == 1 and lo == 0:
        return 0.0, 0.0
    if lo <= 0:
        raise argparse.ArgumentTypeError(
            f"expected numbers > 0 (the range is sampled on a log scale)"
            f"{', or 0 alone' if zero else ''}, got {text!r}")
    if lo > hi:
        raise argparse.ArgumentTypeError(f"LO must not exceed HI, got {text!r}")
    return lo, hi


def _lr_range(text):
    return parse_range(text)


def _decay_range(text):
    return parse_range(text, zero=True)


def log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` draws whose log10 is uniform on [log10 lo, log10 hi]; ``lo == hi`` gives ``n``
    copies of it (0 included) and draws nothing from ``rng``."""
    if lo == hi:
        return np.full(n, float(lo))
    return 10.0 ** rng.uniform(math.log10(lo), math.log10(hi), n)


def narrowed(lo: float, hi: float, best: float) -> tuple[float, float]:
    """The next round's range: centred on ``best`` in log10, half as many decades wide as
    ``lo:hi``; not clipped to it. A fixed value (``lo == hi``) stays fixed."""
    if lo == hi:
        return lo, hi
    quarter = (math.log10(hi) - math.log10(lo)) / 4
    centre = math.log10(best)
    return 10.0 ** (centre - quarter), 10.0 ** (centre + quarter)


def _at_edge(lo: float, hi: float, value: float) -> str | None:
    """"bottom" or "top" when ``value`` lies in the outer tenth (in log10) of ``lo:hi``."""
    if lo == hi:
        return None
    where = (math.log10(value) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    return "bottom" if where < 0.1 else "top" if where > 0.9 else None


def _shown(lo: float, hi: float) -> str:
    return f"{lo:.3g}" if lo == hi else f"{lo:.3g}:{hi:.3g}"


# ---------------------------------------------------------------------------- the parser


def add_search_parser(sub) -> None:
    """Add the ``search`` command to the subparsers ``sub``, after ``train`` (whose options it
    passes through to every trial, copied with their types, defaults and help)."""
    from .cli import _add_common_options, _argument, _passes, add_folder_options

    train = sub.choices.get("train")
    if train is None:
        raise RuntimeError("add_search_parser: the train command must be added first")
    p = sub.add_parser(
        "search",
        help="random search of the learning rate and weight decay, trials over MPI ranks",
        description="Random hyperparameter search (log-uniform, coarse then fine): --trials "
        "runs of `cnnkit train` per round with the learning rate, and the weight decay when "
        "given a range, sampled log-uniformly; compared by validation accuracy. Under `mpiexec "
        "-n P` trial i runs on rank i mod P. Writes OUT/NAME/trial-NNN/ (each a train run "
        "folder with train.log and result.json), search.json and best.npz (the best trial's "
        "weights; the other trials' .npz files are deleted), and prints a table.",
    )
    p.add_argument("--trials", type=_passes, required=True, metavar="N",
                   help="trials per round")
    p.add_argument("--lr", type=_lr_range, default=(1e-4, 1e-2), metavar="LO:HI",
                   help="learning-rate range, sampled log-uniformly; one number fixes it "
                   "(default: 1e-4:1e-2)")
    p.add_argument("--weight-decay", type=_decay_range, default=(0.0, 0.0), metavar="LO:HI",
                   help="L2 strength range (0 < LO <= HI), sampled log-uniformly; one number "
                   "fixes it (default: 0, not searched)")
    p.add_argument("--epochs", type=_passes, default=2,
                   help="epochs of each trial (default: %(default)s)")
    p.add_argument("--rounds", type=_passes, default=1,
                   help="rounds of --trials each; round 2 on is the fine stage: each searched "
                   "range is centred, in log10, on the best trial so far and half as many "
                   "decades wide as the previous round's (not clipped to it, so a best value at "
                   "an edge moves the search past that edge) (default: %(default)s)")
    p.add_argument("--seed", type=_argument(int, lambda v: v >= 0, "a seed >= 0"), default=0,
                   help="seeds every trial's initialisation and split, and the sampling "
                   "(default: %(default)s)")
    add_folder_options(p, "searches", "search folder", "search-DATE-TIME", "a search or run")
    actions = {action.dest: action for action in train._actions}
    for dest in PASS_THROUGH:
        action = actions[dest]
        if action.nargs == 0:
            p.add_argument(*action.option_strings, dest=dest, action="store_true",
                           help=action.help)
        else:
            p.add_argument(*action.option_strings, dest=dest, type=action.type,
                           default=action.default, choices=action.choices,
                           metavar=action.metavar, help=action.help)
    _add_common_options(p)
    p.set_defaults(func=cmd_search)


# ---------------------------------------------------------------------------- ranks


def _agreed(error: BaseException, *, report: bool) -> BaseException:
    """Mark ``error`` for ``cli.main``'s error boundary as one every rank met at once: printed
    where ``report``, and no other rank told."""
    error.cnnkit_report, error.cnnkit_rank = report, None
    return error


def _together(comm, what: str, step):
    """``step()`` on every rank, then the ranks agree whether it failed anywhere (see
    :func:`cnnkit.distributed.together`), waiting as long as the slowest rank takes."""
    from .distributed import together

    return together(comm, what, step, timeout=math.inf)


def _share_text(comm, text: str | None, what: str) -> str:
    """Rank 0's ``text`` on every rank."""
    if comm is None:
        return text
    buf = np.zeros(4096, np.uint8)
    if comm.is_root:
        data = text.encode("utf-8")
        if len(data) > buf.size:
            raise SearchError(f"the search folder's path is over {buf.size} bytes: {text}")
        buf[:len(data)] = np.frombuffer(data, np.uint8)
    comm.bcast(buf, what=what)
    return bytes(buf).rstrip(b"\0").decode("utf-8")


# ---------------------------------------------------------------------------- trials


def _write_json(path: Path, value) -> None:
    from ._atomic import atomic_write_text

    atomic_write_text(path, json.dumps(value, indent=1) + "\n")


def _trial_name(index: int) -> str:
    return f"trial-{index:03d}"


def _train_args(args, folder: Path):
    """The ``cnnkit train`` arguments every trial starts from (lr, weight decay and name are
    set per trial); checks the net's spec and input at once."""
    from . import cli

    base = cli.build_parser().parse_args(
        ["train", "--no-progress", "--layer-stats", "0", "--overwrite", "--out", str(folder),
         "--name", _trial_name(0)])
    for dest in PASS_THROUGH:
        setattr(base, dest, getattr(args, dest))
    base.epochs, base.seed = args.epochs, args.seed
    base.epochs_given = True
    base.comm = None            # each trial trains in this process alone, never data-parallel
    if args.val_size == 0:
        raise SearchError("--val-size 0 leaves no validation images, and the search compares "
                          "its trials by validation accuracy")
    base.lr = args.lr[0]
    cli._train_settings(base)
    return base


def _best_epoch(history_path: Path) -> tuple[float, int]:
    """(best validation accuracy, its epoch, from 1) of a run's history.json."""
    try:
        accs = json.loads(history_path.read_text()).get("val_acc") or []
    except (OSError, ValueError, AttributeError) as err:
        raise SearchError(f"cannot read the validation accuracy in {history_path} ({err})") \
            from None
    if not accs:
        raise SearchError("the trials have no validation images to compare them by; give "
                          "--val-size (a count, or a fraction such as 0.1)")
    best = int(np.argmax(accs))
    return float(accs[best]), best + 1


def _run_trial(trial: dict, base, folder: Path) -> dict:
    """Train one trial in ``folder/trial-NNN`` (its output in train.log), write its
    result.json and return it; a loss that became NaN or infinite is status "diverged"."""
    from .cli import cmd_train
    from .train import TrainingDiverged

    run_dir = folder / trial["folder"]
    run_dir.mkdir(parents=True, exist_ok=True)
    args = argparse.Namespace(**vars(base))
    args.lr, args.weight_decay, args.name = trial["lr"], trial["weight_decay"], trial["folder"]
    log_path = run_dir / "train.log"
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log, redirect_stdout(log), \
            redirect_stderr(log):
        try:
            code = cmd_train(args)
        except TrainingDiverged as err:
            print(f"cnnkit train: {err}")
            code = None
    seconds = time.perf_counter() - start
    if code == EXIT_INTERRUPTED:
        raise KeyboardInterrupt
    diverged = code is None             # cmd_train raises on a divergence, caught above
    if code not in (0, None):
        raise SearchError(f"{trial['folder']} failed (exit {code}); its output is in {log_path}")
    val_acc, epoch = (None, None) if diverged else _best_epoch(run_dir / "history.json")
    result = {**trial, "val_acc": val_acc, "epoch": epoch, "seconds": round(seconds, 3),
              "status": "diverged" if diverged else "ok"}
    _write_json(run_dir / "result.json", result)
    return result


def _read_results(folder: Path, trials: list[dict]) -> list[dict]:
    """Every trial's result.json, as the rank that ran it wrote it."""
    results = []
    for trial in trials:
        path = folder / trial["folder"] / "result.json"
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise SearchError(f"cannot read {path} ({getattr(err, 'strerror', None) or err}); "
                              f"every rank must write to the same --out folder") from None
        if not isinstance(result, dict) or result.get("index") != trial["index"]:
            raise SearchError(f"{path} is not the result of {trial['folder']}")
        results.append(result)
    return results


def _best(results: list[dict]) -> dict | None:
    """The trial of the highest validation accuracy (the earliest on a tie); None if none."""
    ok = [r for r in results if r["val_acc"] is not None]
    return max(ok, key=lambda r: (r["val_acc"], -r["index"])) if ok else None


# ---------------------------------------------------------------------------- keeping the best


def _keep_best(folder: Path, results: list[dict], best: dict | None) -> Path | None:
    """Delete the ``.npz`` files of every trial but ``best``, and link (or copy) its model.npz
    to ``folder/best.npz``; returns that path (None without a best)."""
    from ._atomic import atomic_path

    for result in results:
        if best is None or result["index"] != best["index"]:
            for path in (folder / result["folder"]).glob("*.npz"):
                path.unlink(missing_ok=True)
    target = folder / "best.npz"
    if best is None:
        target.unlink(missing_ok=True)
        return None
    source = folder / best["folder"] / "model.npz"
    if target.exists() and os.path.samefile(source, target):
        return target          # (renaming a link over its own file would leave the link)
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
    return target


def _clear_old_search(folder: Path) -> None:
    """What an earlier search left in ``folder`` (with --overwrite): its trial folders,
    search.json and best.npz."""
    for entry in folder.iterdir():
        if entry.is_dir() and _TRIAL.fullmatch(entry.name):
            shutil.rmtree(entry)
    for name in ("search.json", "best.npz"):
        (folder / name).unlink(missing_ok=True)


# ---------------------------------------------------------------------------- output


def _table(results: list[dict], best: dict | None) -> list[str]:
    """One row per trial, by validation accuracy (diverged last), the best marked."""
    rows = sorted(results, key=lambda r: (r["val_acc"] is None, -(r["val_acc"] or 0),
                                          r["index"]))
    lines = [f"{'trial':>5}  {'round':>5}  {'rank':>4}  {'lr':>9}  {'weight decay':>12}  "
             f"{'val acc':>7}  {'epoch':>5}  {'seconds':>7}  status"]
    for r in rows:
        acc = "-" if r["val_acc"] is None else f"{r['val_acc']:.4f}"
        epoch = "-" if r["epoch"] is None else str(r["epoch"])
        mark = "  <- best" if best is not None and r["index"] == best["index"] else ""
        lines.append(f"{r['index']:>5}  {r['round']:>5}  {r['rank']:>4}  {r['lr']:>9.3g}  "
                     f"{r['weight_decay']:>12.3g}  {acc:>7}  {epoch:>5}  {r['seconds']:>7.1f}  "
                     f"{r['status']}{mark}")
    return lines


def _many(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _options(ranges: dict) -> str:
    return " ".join(f"--{dest.replace('_', '-')} {_shown(*ranges[dest])}"
                    for dest, _ in SEARCHED if ranges[dest][0] != ranges[dest][1])


def _write_search_json(folder: Path, args, size: int, rounds: list[dict], results: list[dict],
                       best: dict | None, best_path: Path | None, suggested: dict | None):
    _write_json(folder / "search.json", {
        "settings": {"trials": args.trials, "rounds": args.rounds, "epochs": args.epochs,
                     "seed": args.seed, "ranks": size,
                     **{dest: list(getattr(args, dest)) for dest, _ in SEARCHED},
                     **{dest: (list(v) if isinstance(v, tuple) else v)
                        for dest in PASS_THROUGH for v in [getattr(args, dest)]}},
        "rounds": rounds,
        "trials": sorted(results, key=lambda r: r["index"]),
        "best": None if best is None else best["index"],
        "best_weights": None if best_path is None else str(best_path),
        "suggested": suggested,
    })


# ---------------------------------------------------------------------------- the command


def cmd_search(args) -> int:
    """``cnnkit search``: the rounds of trials, over the MPI ranks when run under mpiexec;
    prints (rank 0) a line per round and the table. See the module docstring."""
    from .distributed import world

    comm = world()
    if comm is not None:
        # the error boundary (cli.main) prints an error once, tells the other ranks of one that
        # they did not agree on, and leaves at once
        args.active_comm = comm
    try:
        return _search(args, comm)
    except CLIError as err:
        if isinstance(err, ValueError):
            raise
        error = SearchError(str(err))
        error.__dict__.update(err.__dict__)
        raise error from err


def _search(args, comm) -> int:
    """Check the options, claim the search folder (rank 0) and share its path, run the
    rounds, release the folder."""
    from . import parallel
    from .distributed import share_cores
    from .runs import claim_run_folder

    rank, size = (0, 1) if comm is None else (comm.rank, comm.size)
    root = rank == 0
    say = print if root else (lambda *a, **k: None)
    share_cores(comm, args.threads)
    threads = parallel.get_num_threads()
    name = args.name or time.strftime("search-%Y%m%d-%H%M%S")
    _together(comm, "checking the options", lambda: _train_args(args, Path(args.out) / name))

    claimed = []

    def claim():
        if root:
            claimed.append(claim_run_folder(args.out, args.name, name,
                                            overwrite=args.overwrite))
            if args.overwrite:
                _clear_old_search(claimed[0].path)

    _together(comm, "claiming the search folder", claim)
    folder = Path(_share_text(comm, str(claimed[0].path) if root else None,
                              "the search folder's path"))
    try:
        return _rounds(args, comm, folder, rank, size, threads, say)
    finally:
        for lock in claimed:
            lock.release()


def _rounds(args, comm, folder: Path, rank: int, size: int, threads: int, say) -> int:
    """Each round: draw the settings, run this rank's trials, read every rank's results, keep
    the best checkpoint and write search.json; then the table (:func:`_finish`)."""
    base = _train_args(args, folder)
    rng = np.random.default_rng([args.seed, _SAMPLING_STREAM])
    ranges = {dest: tuple(getattr(args, dest)) for dest, _ in SEARCHED}
    where = (f"in 1 process ({_many(threads, 'thread')})" if size == 1 else
             f"over {size} ranks ({_many(threads, 'thread')} each)")
    say(f"search: {_many(args.trials, 'trial')} x {_many(args.rounds, 'round')} {where}, "
        f"{_many(args.epochs, 'epoch')} per trial, "
        + ", ".join(f"{label} {_shown(*ranges[dest])}"
                    + (" (log-uniform)" if ranges[dest][0] != ranges[dest][1] else "")
                    for dest, label in SEARCHED)
        + f", seed {args.seed}; folder {folder}", flush=True)
    results, rounds, best_path = [], [], None
    for number in range(1, args.rounds + 1):
        best = _best(results)
        if number > 1:
            ranges = {dest: narrowed(*ranges[dest], best[dest]) for dest, _ in SEARCHED}
            say(f"round {number}: {_options(ranges)} (centred on trial {best['index']}, half "
                f"the decades)", flush=True)
        draws = {dest: log_uniform(rng, *ranges[dest], args.trials) for dest, _ in SEARCHED}
        start = len(results)
        trials = [{"index": i, "round": number, "rank": i % size, "folder": _trial_name(i),
                   "lr": float(draws["lr"][i - start]),
                   "weight_decay": float(draws["weight_decay"][i - start]),
                   "epochs": args.epochs}
                  for i in range(start, start + args.trials)]
        rounds.append({"round": number,
                       **{dest: list(ranges[dest]) for dest, _ in SEARCHED}})

        def run_mine():
            for trial in trials:
                if trial["rank"] == rank:
                    say(_trial_line(_run_trial(trial, base, folder)), flush=True)

        _together(comm, f"the trials of round {number}", run_mine)
        round_results = _together(comm, f"reading round {number}'s results",
                                  lambda: _read_results(folder, trials))
        results.extend(round_results)
        best = _best(results)
        diverged = sum(r["status"] == "diverged" for r in round_results)
        say(f"round {number}: " + ("every trial diverged" if best is None else
                                   f"best so far trial {best['index']}, val acc "
                                   f"{best['val_acc']:.4f}")
            + (f"; {diverged} of {len(round_results)} diverged" if diverged and best else ""),
            flush=True)

        def book():
            if rank == 0:
                kept = _keep_best(folder, results, best)
                _write_search_json(folder, args, size, rounds, results, best, kept, None)
                return kept

        best_path = _together(comm, "writing search.json", book)
        if best is None:
            break
    return _finish(args, comm, folder, size, rounds, results, ranges, best_path, say)


def _trial_line(result: dict) -> str:
    how = ("diverged" if result["val_acc"] is None else
           f"val acc {result['val_acc']:.4f} (epoch {result['epoch']})")
    return (f"{result['folder']} (round {result['round']}, rank {result['rank']}): lr "
            f"{result['lr']:.3g}, weight decay {result['weight_decay']:.3g} -> {how}, "
            f"{result['seconds']:.1f} s")


def _finish(args, comm, folder, size, rounds, results, ranges, best_path, say) -> int:
    """The table, the best trial, the suggested fine range and search.json (rank 0)."""
    best = _best(results)
    say("")
    for line in _table(results, best):
        say(line)
    if best is None:
        # every rank read the same results: rank 0 reports, and no rank tells the others
        raise _agreed(SearchError(f"every trial diverged (see {folder / 'search.json'}); try a "
                                  f"lower --lr range"), report=comm is None or comm.is_root)
    suggested = {dest: list(narrowed(*ranges[dest], best[dest])) for dest, _ in SEARCHED}

    def book():
        if comm is None or comm.is_root:
            _write_search_json(folder, args, size, rounds, results, best, best_path, suggested)

    _together(comm, "writing search.json", book)
    say(f"best: {best['folder']}, val acc {best['val_acc']:.4f} (epoch {best['epoch']}), lr "
        f"{best['lr']:.3g}, weight decay {best['weight_decay']:.3g}; weights in {best_path}")
    fine = _options({dest: tuple(v) for dest, v in suggested.items()})
    if fine:
        say(f"a finer search around it: {fine}")
    last = rounds[-1]
    for dest, label in SEARCHED:
        edge = _at_edge(*last[dest], best[dest])
        if edge:
            say(f"note: the best {label} {best[dest]:.3g} lies at the {edge} edge of "
                f"{_shown(*last[dest])}; a better one may lie beyond it")
    say(f"wrote {folder / 'search.json'}")
    return 0
