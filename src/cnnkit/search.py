"""Random hyperparameter search, its trials spread over MPI ranks: ``cnnkit search`` and
:func:`search`.

The course's advice, as a function: sample the learning rate (and the weight decay) at random
on a log scale rather than on a grid, train each setting for a few epochs, compare them by
validation accuracy, then search again, finer, around the best ("coarse, then fine").

    search(trials=16, lr=(1e-4, 1e-1), epochs=2)                      # in Python
    mpiexec -n 4 cnnkit search --trials 16 --lr 1e-4:1e-1 --weight-decay 1e-6:1e-2 --rounds 2

Each trial is a whole training run (:func:`cnnkit.app.training.train`, what ``cnnkit.fit``
does) in this process, never data-parallel, with the search's ``seed`` for the initialisation
and the split, so trials differ only in the sampled settings. Round 1 draws ``trials`` settings
log-uniformly from the ranges given. Each later round (the fine stage) draws from ranges
centred, in log10, on the best trial so far and half as many decades wide as the previous
round's, and not clipped to them: a best value at the edge of a range moves the next round past
that edge. Every rank draws the same settings from its own Generator seeded by ``seed``; trial i
runs on rank ``i % ranks``.

``OUT/NAME/`` holds ``trial-NNN/`` (a run folder with ``train.log``, what the run printed, and
``result.json``), ``search.json`` (every trial's settings and best validation accuracy) and
``best.npz``, the weights of the best trial (its ``model.npz``). Only the best trial keeps its
``.npz`` files. The ranks must share ``out``: after each round every rank reads every trial's
``result.json`` from it, so that all agree on the next round's ranges.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import parallel
from ._atomic import atomic_path, atomic_write_text
from .app.config import RunConfig, check_value, setting_of, unknown_keyword
from .app.inputs import model_label
from .app.training import train
from .callbacks import in_notebook
from .distributed import AgreedError, share_cores, together, world
from .errors import CnnkitError, UsageError
from .runs import RunFolder, claim_run_folder
from .train import TrainingDiverged

__all__ = ["SearchError", "SearchResult", "search", "log_uniform", "narrowed", "parse_range",
           "PASSED_THROUGH"]

#: The run's settings a search passes to every trial unchanged (RunConfig says which).
PASSED_THROUGH = tuple(f.name for f in RunConfig.__dataclass_fields__.values()
                       if setting_of(f).search)

#: Searched settings: (name, how tables and messages show it).
SEARCHED = (("lr", "lr"), ("weight_decay", "weight decay"))

#: Mixed into the seed for the sampling Generator, so its draws are not the trials' init draws.
_SAMPLING_STREAM = 0x5EA2C4

_TRIAL = re.compile(r"trial-\d{3,}")
# the search folder's files, and a trial's record beside its run folder's
SEARCH_JSON, BEST, RESULT = "search.json", "best.npz", "result.json"


class SearchError(CnnkitError, ValueError):
    """Bad input to a search, or a search that cannot go on; one line. ``result`` is what the
    search found before it stopped (every trial diverged), when it ran any."""

    def __init__(self, message: str, result: "SearchResult | None" = None):
        super().__init__(message)
        self.result = result


# ---------------------------------------------------------------------------- ranges

#: The bounds of a searched value (a learning rate or a weight decay). Narrowing can move a
#: range at most half its width in decades past each end over all rounds (each round moves the
#: centre at most a quarter of that round's width, and the widths halve: 1/4 + 1/8 + ... = 1/2),
#: so every range a search ever uses lies within [1e-20 / 1e13, 1e6 * 1e13]: normal floats whose
#: log10 is finite, far from overflow (1e308) and underflow. Both ends are beyond any useful
#: setting (a learning rate of 1e6 diverges at once; a weight decay of 1e-20 is none).
LOWEST, HIGHEST = 1e-20, 1e6


def parse_range(text, *, zero: bool = False) -> tuple[float, float]:
    """``LO:HI`` (LOWEST <= LO <= HI <= HIGHEST) or one number V (V:V, not searched) -> (LO,
    HI); a pair of numbers or one number in Python. ``zero`` also accepts the single value 0.

    Raises ValueError with one line saying what is wrong."""
    if isinstance(text, (tuple, list)) and len(text) == 2:
        text = repr(text[0]) if text[0] == text[1] else f"{text[0]!r}:{text[1]!r}"
    elif isinstance(text, (int, float)) and not isinstance(text, bool):
        text = repr(text)
    shown = _quoted(text)
    parts = str(text).split(":")
    if len(parts) > 2:
        raise ValueError(f"expected LO:HI such as 1e-4:1e-2, or one number, got {shown}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"expected LO:HI of numbers such as 1e-4:1e-2, or one number, got "
                         f"{shown}") from None
    lo, hi = values[0], values[-1]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"expected finite numbers, got {shown}")
    if zero and len(values) == 1 and lo == 0:
        return 0.0, 0.0
    if lo <= 0:
        raise ValueError(f"expected numbers > 0 (the range is sampled on a log scale)"
                         f"{', or 0 alone' if zero else ''}, got {shown}")
    if lo > hi:
        raise ValueError(f"LO must not exceed HI, got {shown}")
    if lo < LOWEST or hi > HIGHEST:
        raise ValueError(f"expected numbers from 1e{math.log10(LOWEST):.0f} to "
                         f"1e{math.log10(HIGHEST):.0f}, got {shown}")
    return lo, hi


def _quoted(text) -> str:
    text = repr(str(text))
    return text if len(text) <= 60 else text[:57] + "..."


def log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` draws whose log10 is uniform on [log10 lo, log10 hi]; ``lo == hi`` gives ``n``
    copies of it (0 included) and draws nothing from ``rng``."""
    if lo == hi:
        return np.full(n, float(lo))
    return 10.0 ** rng.uniform(math.log10(lo), math.log10(hi), n)


def narrowed(lo: float, hi: float, best: float) -> tuple[float, float]:
    """The next round's range: centred on ``best`` in log10, half as many decades wide as
    ``lo:hi``; not clipped to it. A fixed value (``lo == hi``) stays fixed. From ranges
    :func:`parse_range` accepted, every range this gives is finite and positive (see
    :data:`LOWEST`)."""
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


def _many(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _options(ranges: dict) -> str:
    """The searched ranges as the command's options, e.g. ``--lr 1e-3:1e-2``."""
    return " ".join(f"--{name.replace('_', '-')} {_shown(*ranges[name])}"
                    for name, _ in SEARCHED if ranges[name][0] != ranges[name][1])


# ---------------------------------------------------------------------------- the result

@dataclass
class SearchResult:
    """What :func:`search` returns and writes to ``search.json``.

    folder : the search folder
    trials : every trial's record (index, round, rank, folder, lr, weight_decay, epochs,
        val_acc, epoch, seconds, status "ok" or "diverged"), by index
    rounds : each round's ranges
    best : the best trial's record (highest validation accuracy, earliest on a tie)
    best_weights : ``best.npz``, the best trial's weights
    suggested : ranges centred on the best, half the decades: a finer search's
    """

    folder: Path
    trials: list
    rounds: list
    best: dict | None
    best_weights: Path | None
    suggested: dict | None

    def table(self) -> list[str]:
        """One row per trial, by validation accuracy (diverged last), the best marked."""
        rows = sorted(self.trials, key=lambda r: (r["val_acc"] is None, -(r["val_acc"] or 0),
                                                  r["index"]))
        lines = [f"{'trial':>5}  {'round':>5}  {'rank':>4}  {'lr':>9}  {'weight decay':>12}  "
                 f"{'val acc':>7}  {'epoch':>5}  {'seconds':>7}  status"]
        for r in rows:
            acc = "-" if r["val_acc"] is None else f"{r['val_acc']:.4f}"
            epoch = "-" if r["epoch"] is None else str(r["epoch"])
            mark = "  <- best" if self.best is not None and r["index"] == self.best["index"] \
                else ""
            lines.append(f"{r['index']:>5}  {r['round']:>5}  {r['rank']:>4}  {r['lr']:>9.3g}  "
                         f"{r['weight_decay']:>12.3g}  {acc:>7}  {epoch:>5}  "
                         f"{r['seconds']:>7.1f}  {r['status']}{mark}")
        return lines

    def conclusion(self) -> list[str]:
        """The lines after the table: the best trial, a finer search, a best value at an edge."""
        best = self.best
        lines = [f"best: {best['folder']}, val acc {best['val_acc']:.4f} (epoch "
                 f"{best['epoch']}), lr {best['lr']:.3g}, weight decay "
                 f"{best['weight_decay']:.3g}; weights in {self.best_weights}"]
        fine = _options({name: tuple(v) for name, v in self.suggested.items()})
        if fine:
            lines.append(f"a finer search around it: {fine}")
        last = self.rounds[-1]
        for name, label in SEARCHED:
            edge = _at_edge(*last[name], best[name])
            if edge:
                lines.append(f"note: the best {label} {best[name]:.3g} lies at the {edge} edge "
                             f"of {_shown(*last[name])}; a better one may lie beyond it")
        return lines + [f"wrote {self.folder / SEARCH_JSON}"]


# ---------------------------------------------------------------------------- the search

def search(*, trials: int, lr=(1e-4, 1e-2), weight_decay=0.0, epochs: int = 2,
           rounds: int = 1, seed: int = 0, out="searches", name: str | None = None,
           overwrite: bool = False, log="auto", threads: int | None = None,
           **settings) -> SearchResult:
    """Random search of the learning rate and weight decay (see the module docstring).

    Under ``mpiexec -n P`` trial i runs on rank i mod P and every rank returns the result.

    Parameters
    ----------
    trials : trials per round
    lr, weight_decay : ranges ``(lo, hi)`` (or ``"lo:hi"``) sampled log-uniformly; one number
        fixes it (weight decay: 0, not searched, by default)
    epochs, seed : of every trial
    rounds : rounds of ``trials``; round 2 on is the fine stage
    out, name, overwrite : the search folder ``out/name`` (default name search-DATE-TIME)
    log : where the lines go (each trial's, each round's): a callable such as ``print``;
        "auto": ``print`` in a notebook, nothing elsewhere
    threads : cnnkit's threads in each process (default: the cores, shared among the ranks)
    **settings : the run's other settings, passed to every trial (:data:`PASSED_THROUGH`:
        ``data``, ``model``, ``batch_size``, ``optimizer``, ``limit``, ...)

    Raises
    ------
    TypeError, UsageError
        For a keyword that is not a setting a search passes through, or a wrong value.
    SearchError
        When every trial diverged, or a trial's result cannot be read.
    """
    for key in settings:
        if key not in PASSED_THROUGH:
            raise TypeError(unknown_keyword("search", key, [*PASSED_THROUGH, "trials", "lr",
                                                            "weight_decay", "epochs", "rounds",
                                                            "seed", "out", "name", "overwrite"]))
    for key, value in (("trials", trials), ("rounds", rounds)):
        check_value(key, RunConfig.settings()["epochs"], value)   # counts, bounded alike
    ranges = {}
    for key, value, zero in (("lr", lr, False), ("weight_decay", weight_decay, True)):
        try:
            ranges[key] = parse_range(value, zero=zero)
        except ValueError as err:
            raise UsageError(f"{key}={value!r}: {err}") from None
    if log == "auto":
        log = print if in_notebook() else None
    comm = world()
    share_cores(comm, threads)

    def check() -> RunConfig:
        base = RunConfig.from_keywords("search", **settings, epochs=epochs, seed=seed,
                                       lr=ranges["lr"][0], out=out, name=name,
                                       overwrite=overwrite, threads=threads)
        model_label(base.model)    # an unknown name or a spec error, before any folder
        if base.val_size == 0:
            raise SearchError("--val-size 0 leaves no validation images, and the search "
                              "compares its trials by validation accuracy")
        return base

    base = _together(comm, "checking the options", check)
    return _search(base, comm, trials, rounds, ranges, log)


def _together(comm, what: str, step):
    """``step()`` on every rank, then the ranks agree whether it failed anywhere (see
    :func:`cnnkit.distributed.together`), waiting as long as the slowest rank takes."""
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


def _search(base: RunConfig, comm, trials: int, rounds: int, ranges: dict, log) -> SearchResult:
    """Check the settings, claim the search folder (rank 0) and share its path, run the
    rounds, release the folder."""
    rank, size = (0, 1) if comm is None else (comm.rank, comm.size)
    say = log if (log is not None and rank == 0) else (lambda *a, **k: None)
    name = base.name or time.strftime("search-%Y%m%d-%H%M%S")
    claimed = []

    def claim():
        if rank == 0:
            claimed.append(claim_run_folder(base.out, base.name, name, overwrite=base.overwrite,
                                            files=(SEARCH_JSON, BEST), what="search folder"))
            if base.overwrite:
                _clear_old_search(claimed[0].path)

    _together(comm, "claiming the search folder", claim)
    folder = Path(_share_text(comm, str(claimed[0].path) if rank == 0 else None,
                              "the search folder's path"))
    try:
        return _rounds(base, comm, folder, rank, size, trials, rounds, ranges, say)
    finally:
        for lock in claimed:
            lock.release()


def _trial_name(index: int) -> str:
    return f"trial-{index:03d}"


def _run_trial(trial: dict, base: RunConfig, folder: Path) -> dict:
    """Train one trial in ``folder/trial-NNN`` (what it prints in train.log), write its
    result.json and return it; a loss that became NaN or infinite is status "diverged"."""
    run_dir = RunFolder(folder / trial["folder"])
    run_dir.path.mkdir(parents=True, exist_ok=True)
    config = base.replace(lr=trial["lr"], weight_decay=trial["weight_decay"], out=str(folder),
                          name=trial["folder"], overwrite=True, progress=False, layer_stats=0,
                          report=False)
    start = time.perf_counter()
    with open(run_dir.log, "w", encoding="utf-8") as log:
        def write(line=""):
            print(line, file=log)
        try:
            run = train(config, log=write, comm=None)
        except TrainingDiverged as err:
            write(f"cnnkit train: {err}")
            run = None
    seconds = time.perf_counter() - start
    if run is None:
        val_acc = epoch = None
    else:
        accs = run.history.get("val_acc") or []
        if not accs:
            raise SearchError("the trials have no validation images to compare them by; give "
                              "--val-size (a count, or a fraction such as 0.1)")
        best = int(np.argmax(accs))
        val_acc, epoch = float(accs[best]), best + 1
    result = {**trial, "val_acc": val_acc, "epoch": epoch, "seconds": round(seconds, 3),
              "status": "diverged" if run is None else "ok"}
    atomic_write_text(run_dir.path / RESULT, json.dumps(result, indent=1) + "\n")
    return result


def _read_results(folder: Path, trials: list[dict]) -> list[dict]:
    """Every trial's result.json, as the rank that ran it wrote it."""
    results = []
    for trial in trials:
        path = folder / trial["folder"] / RESULT
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


def _keep_best(folder: Path, results: list[dict], best: dict | None) -> Path | None:
    """Delete the checkpoints of every trial but ``best`` (the two files cnnkit wrote there,
    nothing else), and link (or copy) its model.npz to ``folder/best.npz``; returns that path
    (None without a best)."""
    for result in results:
        if best is None or result["index"] != best["index"]:
            trial = RunFolder(folder / result["folder"])
            for path in (trial.checkpoint, trial.model):
                path.unlink(missing_ok=True)
    target = folder / BEST
    if best is None:
        target.unlink(missing_ok=True)
        return None
    source = RunFolder(folder / best["folder"]).model
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
    """What an earlier search left in ``folder`` (with overwrite): search.json, best.npz, and in
    each trial folder the files cnnkit writes there (a run folder's and result.json), then the
    folder itself when that empties it. A file of the user's stays, and its folder with it."""
    for entry in folder.iterdir():
        if _TRIAL.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            for name in (*RunFolder.FILES, RESULT):
                (entry / name).unlink(missing_ok=True)
            try:
                entry.rmdir()
            except OSError:            # it holds something cnnkit did not write
                pass
    for name in (SEARCH_JSON, BEST):
        (folder / name).unlink(missing_ok=True)


def _write_search_json(result: SearchResult, base: RunConfig, trials: int, rounds: int,
                       size: int) -> None:
    record = base.record()
    atomic_write_text(result.folder / SEARCH_JSON, json.dumps({
        "settings": {"trials": trials, "rounds": rounds, "epochs": base.epochs,
                     "seed": base.seed, "ranks": size,
                     **{name: list(result.rounds[0][name]) for name, _ in SEARCHED},
                     **{name: record[name] for name in PASSED_THROUGH}},
        "rounds": result.rounds,
        "trials": sorted(result.trials, key=lambda r: r["index"]),
        "best": None if result.best is None else result.best["index"],
        "best_weights": None if result.best_weights is None else str(result.best_weights),
        "suggested": result.suggested,
    }, indent=1) + "\n")


def _rounds(base, comm, folder, rank, size, trials, rounds, ranges, say) -> SearchResult:
    """Each round: draw the settings, run this rank's trials, read every rank's results, keep
    the best checkpoint and write search.json; then the suggested finer ranges."""
    rng = np.random.default_rng([base.seed, _SAMPLING_STREAM])
    threads = parallel.get_num_threads()
    where = (f"in 1 process ({_many(threads, 'thread')})" if size == 1 else
             f"over {size} ranks ({_many(threads, 'thread')} each)")
    say(f"search: {_many(trials, 'trial')} x {_many(rounds, 'round')} {where}, "
        f"{_many(base.epochs, 'epoch')} per trial, "
        + ", ".join(f"{label} {_shown(*ranges[name])}"
                    + (" (log-uniform)" if ranges[name][0] != ranges[name][1] else "")
                    for name, label in SEARCHED)
        + f", seed {base.seed}; folder {folder}")
    result = SearchResult(folder, [], [], None, None, None)
    for number in range(1, rounds + 1):
        best = _best(result.trials)
        if number > 1:
            ranges = {name: narrowed(*ranges[name], best[name]) for name, _ in SEARCHED}
            say(f"round {number}: {_options(ranges)} (centred on trial {best['index']}, half "
                f"the decades)")
        draws = {name: log_uniform(rng, *ranges[name], trials) for name, _ in SEARCHED}
        start = len(result.trials)
        batch = [{"index": i, "round": number, "rank": i % size, "folder": _trial_name(i),
                  "lr": float(draws["lr"][i - start]),
                  "weight_decay": float(draws["weight_decay"][i - start]),
                  "epochs": base.epochs}
                 for i in range(start, start + trials)]
        result.rounds.append({"round": number,
                              **{name: list(ranges[name]) for name, _ in SEARCHED}})

        def run_mine():
            for trial in batch:
                if trial["rank"] == rank:
                    say(_trial_line(_run_trial(trial, base, folder)))

        _together(comm, f"the trials of round {number}", run_mine)
        found = _together(comm, f"reading round {number}'s results",
                          lambda: _read_results(folder, batch))
        result.trials.extend(found)
        result.best = _best(result.trials)
        diverged = sum(r["status"] == "diverged" for r in found)
        say(f"round {number}: " + ("every trial diverged" if result.best is None else
                                   f"best so far trial {result.best['index']}, val acc "
                                   f"{result.best['val_acc']:.4f}")
            + (f"; {diverged} of {len(found)} diverged" if diverged and result.best else ""))

        def book():
            if rank == 0:
                kept = _keep_best(folder, result.trials, result.best)
                _write_search_json(SearchResult(folder, result.trials, result.rounds,
                                                result.best, kept, None),
                                   base, trials, rounds, size)
                return kept

        result.best_weights = _together(comm, "writing search.json", book)
        if result.best is None:
            break
    if result.best is None:
        error = SearchError(f"every trial diverged (see {folder / SEARCH_JSON}); try a "
                            f"lower --lr range", result)
        if comm is None:
            raise error
        # every rank read the same results: rank 0 reports, and no rank tells the others
        raise AgreedError(error, report=comm.is_root) from error
    result.suggested = {name: list(narrowed(*ranges[name], result.best[name]))
                        for name, _ in SEARCHED}
    _together(comm, "writing search.json", lambda: rank == 0 and _write_search_json(
        result, base, trials, rounds, size))
    return result


def _trial_line(result: dict) -> str:
    how = ("diverged" if result["val_acc"] is None else
           f"val acc {result['val_acc']:.4f} (epoch {result['epoch']})")
    return (f"{result['folder']} (round {result['round']}, rank {result['rank']}): lr "
            f"{result['lr']:.3g}, weight decay {result['weight_decay']:.3g} -> {how}, "
            f"{result['seconds']:.1f} s")
