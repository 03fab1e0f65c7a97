"""``cnnkit compare RUN...``: training runs side by side (:func:`cnnkit.compare.compare`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..compare import MOST_RUNS, compare
from ..errors import UsageError
from ..files import check_output_path
from ..runs import RunFolder
from ..search import BEST, RESULT, SEARCH_JSON
from ..viz import close
from .options import add_common_options

# what each output option writes, by the suffixes its path may have
_SUFFIXES = {"html": (".html", ".htm"), "plot": (".png",)}


def add_parsers(sub) -> None:
    """Add the parser of compare to ``sub``, argparse's subparsers."""
    p = sub.add_parser(
        "compare", help="training runs side by side: the settings that differ, accuracies, "
                        "curves",
        description="Compare training runs: one row per run (its status, epochs, best "
        "validation accuracy and its epoch, test accuracy, time trained), the settings that "
        "differ between them (the others named once), and optionally their curves overlaid "
        "and a self-contained HTML page. RUN is a run folder of `cnnkit train`, a checkpoint, "
        "or a search folder of `cnnkit search` (which stands for its trials). A run still "
        "training is read from its last checkpoint and marked so; a path that is not a run, "
        f"or whose files are damaged, is passed over with a line saying why. At most "
        f"{MOST_RUNS} runs.",
        examples=("cnnkit compare runs/first searches/fine",
                  "cnnkit compare runs/first searches/fine --html compare.html --plot "
                  "compare.png"))
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="a run folder, a checkpoint (.npz) or a search folder")
    p.add_argument("--html", metavar="PATH", default=None,
                   help="also write a self-contained HTML page (.html) there")
    p.add_argument("--plot", metavar="PATH", default=None,
                   help="also write the runs' curves overlaid as a PNG (.png) there")
    p.add_argument("--json", action="store_true",
                   help="print the comparison as JSON instead of the table")
    add_common_options(p)
    p.set_defaults(run=_compare)


def _compare(args) -> int:
    outputs = {kind: getattr(args, kind) for kind in _SUFFIXES
               if getattr(args, kind) is not None}
    for kind, path in outputs.items():
        if not path.lower().endswith(_SUFFIXES[kind]):
            raise UsageError(f"--{kind} {path}: the file's name must end in "
                             f"{' or '.join(_SUFFIXES[kind])}")
        check_output_path(path)         # a folder or a FIFO there: refused before any work
    if len(outputs) == 2 and _same_file(*outputs.values()):
        raise UsageError("--html and --plot name the same file")
    comparison = compare(*args.runs)
    protected = _run_files(comparison)
    for kind, path in outputs.items():
        if os.path.realpath(path) in protected:
            raise UsageError(f"--{kind} {path} is a file of a compared run; choose another "
                             f"path")
    if args.json:
        print(json.dumps(comparison.to_dict(), indent=1))
    else:
        print(comparison)
    wrote = []
    if args.plot is not None:
        close(comparison.plot(args.plot))
        wrote.append(args.plot)
    if args.html is not None:
        wrote.append(str(comparison.html(args.html)))
    if not args.json:
        for path in wrote:
            print(f"wrote {path}")
    return 0


def _same_file(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _run_files(comparison) -> set:
    """The real paths of the files cnnkit wrote in the compared runs' folders and their
    searches' folders (an output named as one of them is refused, not written over it)."""
    files = set()
    for r in comparison.runs:
        if r.path is None:
            continue
        folder = r.path if r.path.is_dir() else r.path.parent
        files.update(os.path.realpath(folder / name) for name in (*RunFolder.FILES, RESULT))
        files.add(os.path.realpath(r.path))
        search = Path(folder).parent
        files.update(os.path.realpath(search / name) for name in (SEARCH_JSON, BEST))
    files.discard(None)
    return files
