"""``cnnkit lr-find``: the learning-rate range test (:func:`cnnkit.lr_find.lr_find`) for the run
``cnnkit train`` would train with the same options; prints the suggested rate and its rule."""

from __future__ import annotations

import json
import os
import sys

from .._atomic import atomic_write_text
from ..app import RunConfig
from ..errors import UsageError
from .._lr_range import DEFAULT_RULE, DIVERGE, END, ITERATIONS, MAX_ITERATIONS, RULES, START
from ..lr_find import lr_find
from .options import Count, Real, add_common_options, add_settings, settings_given, typed

#: train's options that shape the range test: the data, the net, the optimizer, the batches and
#: the seed. The rate, the epochs, the schedule and the run folder play no part in it.
SETTINGS = tuple(name for name, s in RunConfig.settings().items()
                 if (s.record and name not in ("lr", "epochs", "schedule", "step_size", "gamma",
                                               "layer_stats"))
                 or name in ("weights", "progress"))
RATE = Real(0.0, open_lo=True, expected="a learning rate > 0")


def add_parsers(sub) -> None:
    """Add the parser of lr-find to ``sub``, argparse's subparsers."""
    p = sub.add_parser(
        "lr-find",
        help="the learning-rate range test: loss against an exponentially growing rate, and a "
        "suggested rate",
        description="Train a copy of the net cnnkit train would start from, with the same data, "
        "split, preprocessing, augmentation, loss, optimizer, weight decay, batch size and seed, "
        "for --iterations mini-batches while the learning rate grows exponentially from --start "
        "to --end; stop early once the smoothed loss passes 4 x its minimum. Prints the "
        "suggested rate and the rule that read it (minimum: " + RULES["minimum"] + "; steepest: "
        + RULES["steepest"] + "). Writes nothing unless --plot or --json names a file. "
        "`cnnkit train --lr find` runs this first and trains with the suggestion.",
        examples=("cnnkit lr-find --limit 2000 --iterations 100 --plot lr.png",))
    add_settings(p, SETTINGS)
    g = p.add_argument_group("the range test")
    g.add_argument("--start", type=typed(RATE), default=START, metavar="LR",
                   help="the first rate tried (default: %(default)g)")
    g.add_argument("--end", type=typed(RATE), default=END, metavar="LR",
                   help="the last rate tried (default: %(default)g)")
    g.add_argument("--iterations", type=typed(Count(2, MAX_ITERATIONS)), default=ITERATIONS,
                   metavar="N", help="training steps, one per rate; the data is cycled when it "
                   "holds fewer batches (default: %(default)s)")
    g.add_argument("--rule", choices=tuple(RULES), default=DEFAULT_RULE,
                   help="how the suggestion is read from the smoothed loss (default: "
                   "%(default)s)")
    g.add_argument("--plot", metavar="PNG", default=None,
                   help="write the loss-against-rate figure there (a new file; an existing one "
                   "is refused)")
    g.add_argument("--json", metavar="PATH", default=None,
                   help="write the rates, losses, smoothed losses, suggestion and rule as JSON "
                   "there (a new file), or to standard output with -")
    add_common_options(p)
    p.set_defaults(run=_run)


def _new_file(path: str | None, option: str) -> None:
    """Refuse, before the test runs, a path that exists (whatever it is: a user's file, a
    folder, a FIFO, a link): lr-find never writes over anything."""
    if path is not None and path != "-" and os.path.lexists(path):
        raise UsageError(f"{option} {path} already exists; lr-find writes only new files: "
                         f"give another path")


def _run(args) -> int:
    _new_file(args.plot, "--plot")
    _new_file(args.json, "--json")
    if args.plot is not None and args.json is not None and args.plot == args.json:
        raise UsageError("--plot and --json name the same file")
    # with --json -, standard output holds the JSON alone and the lines go to stderr
    stream = sys.stderr if args.json == "-" else sys.stdout

    def say(line: str = "") -> None:
        print(line, file=stream, flush=True)

    result = lr_find(start=args.start, end=args.end, iterations=args.iterations,
                     rule=args.rule, diverge=DIVERGE, log=say,
                     **settings_given(args, SETTINGS))
    say(result.summary())
    # the exact number: train --lr with it trains as train --lr find does, bit for bit
    say(f"train with it: cnnkit train --lr {result.suggestion!r} (or --lr find)")
    if args.plot is not None:
        _new_file(args.plot, "--plot")         # nothing appeared there while the test ran
        result.plot(args.plot)
        say(f"wrote {args.plot}")
    text = json.dumps(result.to_dict(), indent=1) + "\n"
    if args.json == "-":
        sys.stdout.write(text)
    elif args.json is not None:
        _new_file(args.json, "--json")
        atomic_write_text(args.json, text)
        say(f"wrote {args.json}")
    return 0
