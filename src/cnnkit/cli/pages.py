"""What a run leaves to read: ``cnnkit report`` (``cnnkit.load_run(RUN_DIR).report()``) and
``cnnkit experiment`` (:func:`cnnkit.experiments.run_experiment`)."""

from __future__ import annotations

from ..app.run import load_run
from ..data import source_names
from ..experiments import EXPERIMENTS, run_experiment
from ..finite import quiet_if
from ..report import SECTIONS, select_sections
from .options import (SEED, add_allow_nonfinite, add_common_options, add_folder_options,
                      add_no_progress)


def add_parsers(sub) -> None:
    """Add the parsers of report and experiment to ``sub``, argparse's subparsers."""
    p = sub.add_parser(
        "report", help="write RUN_DIR/report.html: one self-contained page on a training run",
        description="Write one self-contained HTML page (images inlined, nothing fetched) on a "
        "run folder of `cnnkit train`. It leads with the answer (test accuracy, best epoch, "
        "time trained, a thumbnail of the curves, the data and model in one line), then, in "
        "this order: the curves; the confusion matrix, per-class accuracy and misclassified "
        "test images; the settings; the model summary; the layer statistics with a verdict on "
        "each weight's updates; the first layer's filters; activation maps and a saliency map "
        "of a test image; per-layer times.",
        examples=("cnnkit report runs/first -o first.html",
                  "cnnkit report runs/first --sections all,-timing,-maps"))
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `cnnkit train`")
    p.add_argument("--output", "-o", metavar="PATH",
                   help="where to write the page (default: RUN_DIR/report.html)")
    p.add_argument("--sections", metavar="LIST",
                   help="the parts to write, comma-separated, from: " + ", ".join(SECTIONS)
                   + ". Names keep those only (headline,curves); all,-name,... keeps every part "
                   "but the -names (all,-timing,-maps; or --sections=-timing,-maps, a list "
                   "starting with -name starting from all); names apply left to right, the "
                   "page keeps its own order (default: all)")
    add_no_progress(p)
    add_allow_nonfinite(p, "write the page on the net (with a warning)")
    add_common_options(p)
    p.set_defaults(run=_report)

    p = sub.add_parser(
        "experiment", help="run one of the notes' experiments: " + ", ".join(EXPERIMENTS),
        description="Run one of the notes' experiments and write its figures (PNG) and numbers "
        "(JSON) to OUT/NAME, then print a short table. "
        + " ".join(f"{name}: {e.summary}." for name, e in EXPERIMENTS.items()),
        examples=("cnnkit experiment fc-to-conv", "cnnkit experiment bn-init --full"))
    p.add_argument("experiment", choices=list(EXPERIMENTS), metavar="NAME",
                   help="one of: " + ", ".join(EXPERIMENTS))
    p.add_argument("--full", action="store_true",
                   help="the published scale (longer) instead of the few-minute default")
    add_folder_options(p, "experiments", "results folder", "the experiment's", "results")
    p.add_argument("--data", metavar="SOURCE", default=None,
                   help="the images of an experiment that takes a source (small-batch): "
                   + ", ".join(source_names()) + " (default: the experiment's, MNIST)")
    p.add_argument("--seed", type=SEED, default=0, help="(default: %(default)s)")
    add_no_progress(p)
    add_common_options(p)
    p.set_defaults(run=_experiment)


def _report(args) -> int:
    if args.sections is not None:
        select_sections(args.sections)          # a bad name: one line, before the run is read
    run = load_run(args.run_dir)
    with quiet_if(args.allow_nonfinite):
        path = run.report(args.output, progress=args.progress,
                          allow_nonfinite=args.allow_nonfinite, sections=args.sections)
    print(f"wrote {path}")
    return 0


def _experiment(args) -> int:
    run_experiment(args.experiment, out=args.out, name=args.name, overwrite=args.overwrite,
                   full=args.full, seed=args.seed, progress=args.progress, log=print,
                   data=args.data)
    return 0
