"""Several training runs side by side: ``cnnkit compare RUN...`` and :func:`compare`.

    cmp = compare("runs/plain", "runs/bn", "searches/lr")      # folders; a search's trials
    cmp = compare(run_plain, run_bn, names=["plain", "bn"])     # Runs from cnnkit.fit
    print(cmp)             # one row per run, the settings that differ, the same ones once
    cmp.plot()             # their curves overlaid (cnnkit.viz.plot_runs)
    cmp.html("cmp.html")   # one self-contained page: the table, the settings, the curves
    cmp.to_dict()          # the same as JSON (`cnnkit compare --json`)

For each run: its status, the epochs done of those planned, the best validation accuracy and
its epoch, the test accuracy, and the time trained (the sum of its epochs' seconds, validation
included). Its settings are those its checkpoint records (:meth:`RunConfig.record`); the table
shows those that differ between the runs, and names the others once.

What each argument may be:

- a :class:`cnnkit.Run` (``cnnkit.fit``'s, or ``cnnkit.load_run``'s);
- a run folder (``cnnkit train``'s) or a checkpoint (``model.npz``, ``checkpoint.npz``, a
  ``Run.save`` file). A run still training (another process holds its folder's lock) is read
  from its last checkpoint and history and marked "still training"; one that stopped before
  its end (no ``model.npz``, nobody writing it) is "interrupted";
- a search folder (``cnnkit search``'s ``search.json`` beside ``trial-NNN/``), which stands for
  its trials, or one trial's folder. A search keeps the weights of its best trial only: the
  others' settings are the best trial's with their own learning rate and weight decay, which
  is all a search varies, and their numbers come from their ``history.json`` and
  ``test.json``.

A path that is not a run, or whose files are damaged, is passed over with one line saying so
(:attr:`Comparison.skipped`; ``strict=True`` raises instead); when nothing is left to
compare, that is the error. The same run named twice is compared once. Runs whose classes
differ are compared, but their accuracies are on different tasks, and the comparison says so
rather than naming a best. At most :data:`MOST_RUNS` runs are compared; the figure draws the
:data:`cnnkit.viz.curves.MOST_RUNS` of highest validation accuracy.
"""

from __future__ import annotations

import json
import os
import stat
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import _html
from ._atomic import atomic_write_text
from ._json import jsonable
from .app.config import RunConfig
from .app.run import Run, _best_of, _is_history, _is_test, load_run
from .errors import CnnkitError, UsageError
from .files import file_kind, shown
from .runs import RunFolder, read_json
from .search import RESULT, SEARCH_JSON, _TRIAL
from .viz import plot_runs
from .viz.curves import MOST_RUNS as MOST_PLOTTED

__all__ = ["compare", "Comparison", "ComparedRun", "CompareError", "MOST_RUNS", "STATUSES"]

#: The most runs one comparison holds (a search folder counts its trials).
MOST_RUNS = 50
#: What :attr:`ComparedRun.status` may be.
STATUSES = ("finished", "still training", "interrupted", "diverged")
# a setting's value longer than this is listed under the table rather than in a column
_COLUMN_WIDTH = 24


class CompareError(CnnkitError, ValueError):
    """Nothing to compare, or a path that cannot be compared (with ``strict``); one line."""


# ---------------------------------------------------------------------------- one run

@dataclass
class ComparedRun:
    """One run of a :class:`Comparison`: what the comparison read of it.

    name : how tables and legends call it (the folder's name; a trial's is SEARCH/trial-NNN)
    path : its folder or checkpoint (None: a run in memory)
    status : one of :data:`STATUSES`
    settings : the run's recorded settings (:meth:`RunConfig.record`), None when unknown (a
        run that has not finished its first epoch)
    classes : its class names, None when unknown
    history : its history (per epoch and per iteration, :class:`cnnkit.train.Trainer`'s), None
        before its first epoch
    test : {"accuracy", "loss", "images"} on its test split, None when not tested
    notes : lines worth knowing (read from its last checkpoint, ...)
    """

    name: str
    path: Path | None
    status: str
    settings: dict | None
    classes: tuple | None
    history: dict | None
    test: dict | None
    notes: list = field(default_factory=list)
    _run: Run | None = field(default=None, repr=False)

    @property
    def epochs_done(self) -> int:
        """The epochs its history records."""
        return len((self.history or {}).get("epoch") or [])

    @property
    def epochs(self) -> int | None:
        """The epochs it was set to train (None when unknown)."""
        return None if self.settings is None else self.settings.get("epochs")

    @property
    def best(self) -> tuple[float, int] | None:
        """(best validation accuracy, its epoch), the earliest epoch on a tie; None without
        validation."""
        best = _best_of(self.history)
        return None if best["epoch"] == 0 else (best["val_acc"], best["epoch"])

    @property
    def test_accuracy(self) -> float | None:
        """Accuracy on its test split (None: not tested)."""
        return None if self.test is None else float(self.test["accuracy"])

    @property
    def seconds(self) -> float:
        """Time trained: the sum of its epochs' seconds (validation included)."""
        return float(sum((self.history or {}).get("seconds") or []))

    @property
    def run(self) -> Run:
        """The :class:`cnnkit.Run` (its net included): the one given, or loaded from its path
        on first use (a comparison of paths holds no nets)."""
        if self._run is None:
            if self.path is None:
                raise CompareError(f"{self.name}: no run to load")
            try:
                self._run = load_run(self.path)
            except CnnkitError as err:
                raise CompareError(f"{self.name}: {err} (a search keeps the weights of its "
                                   f"best trial only)" if _is_trial(self.path) else
                                   f"{self.name}: {err}") from None
        return self._run

    def to_dict(self) -> dict:
        """This run as JSON-able values (an item of :meth:`Comparison.to_dict`'s ``runs``): its
        name, path, status, epochs, best validation accuracy and epoch, test accuracy, loss and
        images, seconds, classes, settings and notes."""
        best = self.best
        return {"name": self.name, "path": None if self.path is None else str(self.path),
                "status": self.status, "epochs_done": self.epochs_done, "epochs": self.epochs,
                "best_val_acc": None if best is None else best[0],
                "best_epoch": None if best is None else best[1],
                "test_accuracy": self.test_accuracy,
                "test_loss": None if self.test is None else float(self.test["loss"]),
                "test_images": None if self.test is None else self.test["images"],
                "seconds": round(self.seconds, 3),
                "classes": None if self.classes is None else list(self.classes),
                "settings": self.settings, "notes": list(self.notes)}


# ---------------------------------------------------------------------------- the comparison

class Comparison:
    """Runs side by side (what :func:`compare` returns).

    Attributes
    ----------
    runs : the :class:`ComparedRun` of each run, in the order given (a search's trials by
        index)
    differing : {setting: [its value in each run]} of the settings that differ (None where a
        run's settings are unknown), in :class:`RunConfig`'s order; "classes" when they differ
    same : {setting: value} of those equal in every run whose settings are known
    skipped : [(path as given, why)] of what was passed over
    notes : lines on the comparison as a whole (classes or data that differ, runs named twice)
    """

    def __init__(self, runs, skipped=(), notes=()):
        self.runs = tuple(runs)
        self.skipped = list(skipped)
        self.notes = list(notes)
        known = [r.settings for r in self.runs if r.settings is not None]
        names = [n for n in RunConfig.recorded() if any(n in s for s in known)]
        names += sorted({n for s in known for n in s} - set(names))    # a newer run's own
        self.differing, self.same = {}, {}
        for name in names:
            values = [s.get(name) for s in known]
            if all(v == values[0] for v in values):
                self.same[name] = values[0]
            else:
                self.differing[name] = [None if r.settings is None else r.settings.get(name)
                                        for r in self.runs]
        classes = {r.classes for r in self.runs if r.classes is not None}
        self.classes_differ = len(classes) > 1
        if self.classes_differ:
            self.differing["classes"] = [None if r.classes is None else _classes_text(r.classes)
                                         for r in self.runs]
            self.notes.append("the runs' classes differ: their accuracies are on different "
                              "tasks and are not comparable")
        elif "data" in self.differing:
            self.notes.append("the runs trained on different data: their accuracies are "
                              "measured on different images")

    # ------------------------------------------------------------------ results
    @property
    def best(self) -> ComparedRun | None:
        """The run of the highest best validation accuracy, when there are two runs or more,
        all of the same classes, and no other run reached the same; else None (see
        :meth:`leaders`)."""
        leaders = self.leaders()
        return leaders[0] if len(leaders) == 1 and len(self.runs) > 1 else None

    def leaders(self) -> list[ComparedRun]:
        """The runs that share the highest best validation accuracy (empty when the classes
        differ, or no run has validated)."""
        ranked = [r for r in self.runs if r.best is not None]
        if self.classes_differ or not ranked:
            return []
        top = max(r.best[0] for r in ranked)
        return [r for r in ranked if r.best[0] == top]

    # ------------------------------------------------------------------ text
    def lines(self) -> list[str]:
        """The comparison as text: one row per run, the settings that differ (long values
        below the table), the settings the same in all, then the notes and what was skipped."""
        shown_here = [n for n in self.differing if n != "epochs"]    # the epochs column says
        long = [n for n in shown_here
                if max(len(self.cell(i, n)) for i in range(len(self.runs))) > _COLUMN_WIDTH]
        columns = [n for n in shown_here if n not in long]
        best = self.best
        head = ["run", "status", "epochs", "best val acc (epoch)", "test acc", "time",
                *columns]
        rows = []
        for i, r in enumerate(self.runs):
            rows.append([r.name + (" *" if r is best else ""), r.status, _epochs_text(r),
                         _best_text(r), _accuracy(r.test_accuracy), _html.duration(r.seconds),
                         *(self.cell(i, n) for n in columns)])
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        numeric = {2, 3, 4, 5}
        out = [f"compare: {len(self.runs)} run{'s' if len(self.runs) != 1 else ''}"]
        for row in [head, *rows]:
            out.append("  ".join(str(x).rjust(w) if i in numeric else str(x).ljust(w)
                                 for i, (x, w) in enumerate(zip(row, widths))).rstrip())
        if best is not None:
            out.append(f"* best validation accuracy: {best.name}, {best.best[0]:.4f} (epoch "
                       f"{best.best[1]})")
        elif len(self.leaders()) > 1:
            leaders = self.leaders()
            out.append(f"best validation accuracy {leaders[0].best[0]:.4f}: a tie between "
                       + ", ".join(r.name for r in leaders))
        for name in long:
            out.append(f"{name}:")
            out.extend(f"  {r.name}: {self.cell(i, name)}" for i, r in enumerate(self.runs))
        if not self.differing and sum(r.settings is not None for r in self.runs) > 1:
            out.append("no setting differs between the runs")
        if self.same:
            # a setting and its value stay on one line (no-break spaces while wrapping)
            same = "; ".join(f"{n} {_value_text(v)}".replace(" ", "\u00a0")
                             for n, v in self.same.items())
            head = "same in all" if len(self.runs) > 1 else "settings"
            out.extend(line.replace("\u00a0", " ") for line in textwrap.wrap(
                f"{head}: {same}", 100, subsequent_indent="  ", break_long_words=False,
                break_on_hyphens=False))
        for r in self.runs:
            out.extend(f"note: {r.name}: {n}" for n in r.notes)
        out.extend(f"note: {n}" for n in self.notes)
        out.extend(f"skipped {_path_text(p)}: {why}" for p, why in self.skipped)
        return out

    def cell(self, i: int, name: str) -> str:
        """Run ``i``'s value of the differing setting ``name`` as tables show it ("?" where
        unknown)."""
        r, value = self.runs[i], self.differing[name][i]
        unknown = r.classes is None if name == "classes" else r.settings is None
        return "?" if unknown else _value_text(value)

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        return f"Comparison({', '.join(r.name for r in self.runs)})"

    def to_dict(self) -> dict:
        """The comparison as JSON-able values (``cnnkit compare --json``): ``runs`` (each
        :meth:`ComparedRun.to_dict`), ``differing``, ``same``, ``classes_differ``, ``best``
        (a run's name or None), ``notes``, ``skipped`` ([{"path", "reason"}])."""
        best = self.best
        return jsonable({"runs": [r.to_dict() for r in self.runs],
                        "differing": self.differing, "same": self.same,
                        "classes_differ": self.classes_differ,
                        "best": None if best is None else best.name,
                        "notes": list(self.notes),
                        "skipped": [{"path": str(p), "reason": why} for p, why in self.skipped]})

    # ------------------------------------------------------------------ pictures
    def plotted(self) -> tuple[list[ComparedRun], str]:
        """(the runs the figure draws, a caption): all of them, or the
        :data:`cnnkit.viz.curves.MOST_RUNS` of highest validation accuracy."""
        if len(self.runs) <= MOST_PLOTTED:
            return list(self.runs), ""
        ranked = sorted(self.runs, key=lambda r: -(r.best or (-1.0, 0))[0])[:MOST_PLOTTED]
        shown_runs = [r for r in self.runs if r in ranked]
        return shown_runs, (f"The {MOST_PLOTTED} runs of highest validation accuracy of "
                            f"{len(self.runs)}.")

    def plot(self, path=None, *, x: str = "epoch", title: str | None = None):
        """The runs' curves overlaid (:func:`cnnkit.viz.plot_runs`); written to ``path`` as a
        PNG when given. Returns the figure."""
        runs, _ = self.plotted()
        return plot_runs({r.name: r.history for r in runs}, path, x=x, title=title)

    def html(self, path) -> Path:
        """Write the comparison as one self-contained HTML page (nothing fetched: the figure is
        inlined, as in ``cnnkit report``'s page) to ``path``, atomically; returns its path."""
        return atomic_write_text(path, self.html_text())

    def html_text(self) -> str:
        """The page :meth:`html` writes, as text."""
        start = time.perf_counter()
        best = self.best
        head = ("run", "status", "epochs", "best val acc", "best epoch", "test acc", "time",
                "folder")
        rows = [(r.name + (" (best)" if r is best else ""), r.status, _epochs_text(r),
                 _accuracy(None if r.best is None else r.best[0]),
                 "-" if r.best is None else r.best[1], _accuracy(r.test_accuracy),
                 _html.duration(r.seconds), "in memory" if r.path is None else str(r.path))
                for r in self.runs]
        notes = [f"{r.name}: {n}" for r in self.runs for n in r.notes] + self.notes + \
            [f"skipped {_path_text(p)}: {why}" for p, why in self.skipped]
        body = "".join(_html.note(n) for n in notes)
        body += _html.section("runs", "Runs", _html.table(head, rows, numeric=(2, 3, 4, 5, 6),
                                                          cls="layers"))
        if self.differing:
            diff = _html.table(("run", *self.differing), [
                (r.name, *(self.cell(i, n) for n in self.differing))
                for i, r in enumerate(self.runs)], cls="layers")
        else:
            diff = "<p>No setting differs between the runs.</p>"
        body += _html.section("settings", "Settings that differ", diff)
        runs, caption = self.plotted()
        if any(r.history for r in runs):
            curves = _html.figure(self.plot(), "the runs' training curves overlaid", caption)
        else:
            curves = _html.note("No run has finished an epoch yet.")
        body += _html.section("curves", "Training curves", curves)
        if self.same:
            body += _html.section("same", "Settings the same in all", _html.table(
                ("setting", "value"), [(n, _value_text(v)) for n, v in self.same.items()],
                cls="kv"))
        footer = (f"Written by <code>cnnkit compare</code> on "
                  f"{_html.escape(time.strftime('%Y-%m-%d %H:%M:%S'))} in "
                  f"{time.perf_counter() - start:.1f} s.")
        title = f"cnnkit compare: {len(self.runs)} run{'s' if len(self.runs) != 1 else ''}"
        return _html.page(title, body, footer=footer)


# ---------------------------------------------------------------------------- compare

def compare(*runs, names=None, strict: bool = False) -> Comparison:
    """Compare training runs: see the module docstring.

    Parameters
    ----------
    *runs : :class:`cnnkit.Run` objects, run folders, checkpoints, search folders or trial
        folders (paths as ``str`` or ``Path``), lists of them, or dicts {name: run or path}
    names : the names of the runs given, in order (default: a dict's keys, a folder's name;
        "run 1", ... for a run in memory); a search folder's name prefixes its trials'
    strict : raise :class:`CompareError` for a path that is not a run or is damaged, instead
        of passing it over with a line in :attr:`Comparison.skipped`

    Returns
    -------
    Comparison

    Raises
    ------
    CompareError
        When nothing is left to compare.
    UsageError
        For more than :data:`MOST_RUNS` runs, names that do not match the runs, or an
        argument that is neither a Run nor a path.
    """
    given, keys = [], []
    for item in runs:
        if isinstance(item, dict):
            given.extend(item.values())
            keys.extend(str(k) for k in item)
        else:
            item = item if isinstance(item, (list, tuple)) else [item]
            given.extend(item)
            keys.extend([None] * len(item))
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(given):
            raise UsageError(f"compare: {len(names)} names for {len(given)} runs")
    elif any(k is not None for k in keys):
        names = keys
    if not given:
        raise CompareError("nothing to compare: give at least one run (a run folder, a "
                           "search folder, a checkpoint or a Run)")
    skipped, notes, found = [], [], []
    for i, item in enumerate(given):
        name = None if names is None else names[i]      # None: its default name
        if isinstance(item, Run):
            found.append((name, item))
            continue
        if not isinstance(item, (str, os.PathLike)):
            raise UsageError(f"compare takes Runs and paths of runs, got a "
                             f"{type(item).__name__}")
        try:
            if not os.fspath(item):             # Path("") would be the current folder
                raise CompareError("an empty path")
            found.extend((name, source) for source in _expand(Path(item)))
        except (CnnkitError, OSError, ValueError) as err:
            if strict:
                raise CompareError(f"{shown(item)}: {_reason(err)}") from None
            skipped.append((item if isinstance(item, Path) else str(item), _reason(err)))
        if len(found) > MOST_RUNS:
            raise UsageError(f"compare takes at most {MOST_RUNS} runs, and these paths hold "
                             f"more (a search folder counts its trials): name fewer")
    compared, seen = [], {}
    for name, source in found:
        key = _identity(source)
        if key in seen:
            notes.append(f"{_label(source)} is {seen[key]}, named twice: compared once")
            continue
        try:
            run = _read(source)
        except (CnnkitError, OSError, ValueError) as err:
            if strict:
                raise CompareError(f"{_label(source)}: {_reason(err)}") from None
            skipped.append((Path(_label(source)), _reason(err)))
            continue
        if name is not None:
            run.name = name if not isinstance(source, _Trial) else f"{name}/{source.folder}"
        elif isinstance(source, Run) and source.folder is None:
            run.name = f"run {len(compared) + 1}"
        seen[key] = run.name
        compared.append(run)
    if not compared:
        why = "; ".join(f"{_path_text(p)}: {w}" for p, w in skipped[:3])
        raise CompareError(f"nothing to compare: {why}" if why else "nothing to compare")
    _unique_names(compared)
    return Comparison(compared, skipped, notes)


# ---------------------------------------------------------------------------- reading runs

@dataclass(frozen=True)
class _Trial:
    """A search's trial: its search folder, search.json's record of the search and of it."""

    search: Path
    record: dict
    trial: dict

    @property
    def folder(self) -> str:
        return self.trial["folder"]

    @property
    def path(self) -> Path:
        return self.search / self.folder


def _is_trial(path: Path) -> bool:
    return _TRIAL.fullmatch(path.name) is not None and (path.parent / SEARCH_JSON).is_file()


def _expand(path: Path) -> list:
    """What ``path`` stands for: [path] for a run folder or checkpoint, the trials of a search
    folder, the trial a trial folder is. Reads only search.json."""
    if not os.path.lexists(path):
        raise FileNotFoundError(f"not found")
    if path.is_dir():
        if (path / SEARCH_JSON).exists():
            record = _search_record(path)
            return [_Trial(path, record, t) for t in record["trials"]]
        if _is_trial(path):
            record = _search_record(path.parent)
            for t in record["trials"]:
                if t["folder"] == path.name:
                    return [_Trial(path.parent, record, t)]
            raise CompareError(f"{path.parent / SEARCH_JSON} does not list {path.name}")
    return [path]


def _search_record(folder: Path) -> dict:
    record = read_json(folder / SEARCH_JSON, "search record", _is_search_record)
    if record is None:            # a folder, a FIFO where search.json should be
        raise CompareError(f"{folder / SEARCH_JSON} is not a file")
    record["trials"] = sorted(record["trials"], key=lambda t: t["index"])
    return record


def _is_search_record(value) -> bool:
    """search.json as :mod:`cnnkit.search` writes it; a trial's folder must be one
    ``trial-NNN`` name (never a path out of the search folder)."""
    def trial_ok(t):
        return (isinstance(t, dict) and isinstance(t.get("folder"), str)
                and _TRIAL.fullmatch(t["folder"]) is not None and _is_int(t.get("index"))
                and all(_is_number(t.get(k)) for k in ("lr", "weight_decay"))
                and _is_int(t.get("epochs")))
    return (isinstance(value, dict) and isinstance(value.get("settings"), dict)
            and isinstance(value.get("trials"), list) and all(map(trial_ok, value["trials"])))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _identity(source):
    """What makes two arguments the same run: the real path of its folder (of a checkpoint
    inside a run folder too), or the Run object itself for one in memory."""
    if isinstance(source, Run):
        return os.path.realpath(source.folder) if source.folder is not None else id(source)
    path = source.path if isinstance(source, _Trial) else source
    if path.is_file() and path.name in (RunFolder.MODEL, RunFolder.CHECKPOINT) \
            and RunFolder(path.parent).history.is_file():
        path = path.parent
    return os.path.realpath(path)


def _label(source) -> str:
    if isinstance(source, Run):
        return str(source.folder) if source.folder is not None else "a run in memory"
    return str(source.path if isinstance(source, _Trial) else source)


def _path_text(path) -> str:
    """A path for a one-line message; '' for the empty one."""
    return shown(path) if os.fspath(path) else "''"


def _reason(err: BaseException) -> str:
    text = (str(err).splitlines() or [""])[0]
    return text or type(err).__name__


def _read(source) -> ComparedRun:
    if isinstance(source, Run):
        return _from_run(source, source, _folder_name(source.folder))
    if isinstance(source, _Trial):
        return _from_trial(source)
    if source.is_dir():
        return _from_folder(source)
    run = load_run(source)                      # a checkpoint file
    if run.folder is not None:                  # model.npz or checkpoint.npz of a run folder
        return _from_run(run, None, _folder_name(run.folder), source)
    compared = _from_run(run, None, source.stem, source)
    return compared


def _folder_name(folder) -> str | None:
    return None if folder is None else Path(os.path.abspath(folder)).name


def _from_folder(path: Path) -> ComparedRun:
    folder = RunFolder(path)
    if folder.weights() is None:
        if folder.writer() is None:
            raise CompareError("not a run folder (it holds no model.npz, checkpoint.npz or "
                               "search.json)")
        history = read_json(folder.history, "history", _is_history)
        return ComparedRun(_folder_name(path), path, "still training", None, None, history,
                           None, ["still training: no epoch finished yet, so no checkpoint "
                                  "to read its settings from"])
    return _from_run(load_run(path), None, _folder_name(path), path)


def _from_run(run: Run, keep: Run | None, name: str | None, path=None) -> ComparedRun:
    """The facts of ``run``; ``keep``: the Run to hold (one given in memory), else None."""
    folder = None if run.folder is None else RunFolder(run.folder)
    status, notes = "finished", []
    done = len((run.history or {}).get("epoch") or [])
    planned = run.config.epochs
    if folder is not None:
        writer = folder.writer()
        if writer is not None:
            status = "still training"
            notes.append(f"still training (process {writer}): read from its last checkpoint "
                         f"and history, epoch {done} of {planned}")
        elif run.weights_file != RunFolder.MODEL and not folder.model.exists():
            status = "interrupted"
            notes.append(f"stopped at epoch {done} of {planned} (interrupted, killed or "
                         f"diverged): no model.npz; read from its last checkpoint")
    elif keep is not None and run.seconds is None and run.test is None and done < planned:
        status = "interrupted"
        notes.append(f"stopped at epoch {done} of {planned}")
    elif keep is None and run.weights_file == RunFolder.CHECKPOINT and done < planned:
        status = "interrupted"
        notes.append(f"a checkpoint at epoch {done} of {planned}")
    if folder is not None:
        notes.extend(_unread(folder))
    if status == "finished" and run.test is None:
        notes.append("no test result")
    return ComparedRun(name or "run", None if path is None and run.folder is None
                       else Path(path if path is not None else run.folder), status,
                       run.config.record(), run.classes, run.history, run.test, notes,
                       _run=keep)


def _unread(folder: RunFolder) -> list[str]:
    """Notes on the run's JSON files that are there but are not regular files (a FIFO, a
    folder): never opened, so the run is read without them."""
    notes = []
    for path in (folder.history, folder.test):
        try:
            mode = os.stat(path).st_mode
        except OSError:                 # not there (or a link to nothing): nothing to say
            continue
        if not stat.S_ISREG(mode):
            notes.append(f"{path.name} is {file_kind(mode)}, not a file: not read")
    return notes


def _from_trial(trial: _Trial) -> ComparedRun:
    folder = RunFolder(trial.path)
    if not folder.path.is_dir():
        raise CompareError(f"{trial.path}: the trial folder is missing")
    name = f"{_folder_name(trial.search)}/{trial.folder}"
    if folder.weights() is not None:
        compared = _from_run(load_run(folder.path), None, name, folder.path)
        settings, classes = compared.settings, compared.classes
    else:
        settings, classes = _trial_settings(trial)
        compared = ComparedRun(name, folder.path, "finished", settings, classes,
                               read_json(folder.history, "history", _is_history),
                               read_json(folder.test, "test result", _is_test),
                               _unread(folder))
    result = read_json(folder.path / RESULT, "trial result", lambda v: isinstance(v, dict))
    writer = folder.writer()
    done = compared.epochs_done
    compared.notes = [n for n in compared.notes if not n.startswith(("stopped", "still"))]
    if writer is not None:
        compared.status = "still training"
        compared.notes.append(f"still training (process {writer}): epoch {done} of "
                              f"{trial.trial['epochs']}")
    elif result is None:
        compared.status = "interrupted"
        compared.notes.append(f"the search stopped before this trial ended (epoch {done} of "
                              f"{trial.trial['epochs']})")
    elif result.get("status") == "diverged":
        compared.status = "diverged"
        compared.notes.append("diverged: its loss became NaN or infinite")
    else:
        compared.status = "finished"
    return compared


def _trial_settings(trial: _Trial) -> tuple[dict, tuple | None]:
    """(settings, classes) of a trial whose weights the search removed: those of a trial of
    the same search that kept them, with this trial's lr, weight decay and epochs; without
    one, search.json's record of the settings it passed through."""
    own = {"lr": trial.trial["lr"], "weight_decay": trial.trial["weight_decay"],
           "epochs": trial.trial["epochs"]}
    for other in trial.record["trials"]:
        folder = RunFolder(trial.search / other["folder"])
        if folder.weights() is not None:
            run = load_run(folder.path)
            return {**run.config.record(), **own}, run.classes
    recorded = RunConfig.recorded()
    record = {k: v for k, v in trial.record["settings"].items() if k in recorded}
    record = {**record, **own, "layer_stats": 0}
    return RunConfig.from_record(record, str(trial.search / SEARCH_JSON)).record(), None


def _unique_names(runs) -> None:
    """Give runs that share a name their paths as names, then a number; every name one line
    (characters that are not printable escaped)."""
    counts = {}
    for r in runs:
        r.name = shown(r.name)
    for r in runs:
        counts[r.name] = counts.get(r.name, 0) + 1
    for r in runs:
        if counts[r.name] > 1 and r.path is not None:
            r.name = shown(r.path)
    taken = set()
    for r in runs:
        name, k = r.name, 2
        while name in taken:
            name, k = f"{r.name} ({k})", k + 1
        r.name = name
        taken.add(name)


# ---------------------------------------------------------------------------- text pieces

def _value_text(value) -> str:
    """A setting as tables show it: text as it is, None as "none", a float to 6 significant
    digits (JSON keeps every digit), the rest as JSON."""
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.6g}"
    return value if isinstance(value, str) else json.dumps(value)


def _classes_text(classes) -> str:
    shown_names = ", ".join(classes[:4]) + (", ..." if len(classes) > 4 else "")
    return f"{len(classes)}: {shown_names}"


def _epochs_text(r: ComparedRun) -> str:
    return f"{r.epochs_done}/{r.epochs if r.epochs is not None else '?'}"


def _best_text(r: ComparedRun) -> str:
    return "-" if r.best is None else f"{r.best[0]:.4f} ({r.best[1]})"


def _accuracy(value) -> str:
    return "-" if value is None else f"{value:.4f}"
