"""``python -m benchmarks``: time cnnkit against PyTorch on the CPU, print tables, write JSON.

``--threads`` takes one count or a comma list (default: 1 and all cores). Each count is one
configuration in which cnnkit's threads, NumPy's BLAS and PyTorch all use it; with several, the
library defaults' configuration and the speed-up table from the lowest to the highest count are
added (see :mod:`benchmarks.suite`). A single count runs that configuration alone.

``--extra`` adds the kernel cases of shapes the default run leaves out
(:func:`benchmarks.cases.extra_cases`). ``--compare A.json B.json`` times nothing: it prints two
result files side by side (:mod:`benchmarks.compare`) without importing PyTorch.

OpenBLAS reads ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` once, when NumPy loads it; they
can make it pick kernels for another core than the one it runs on. So that the measurement shows
this machine's own BLAS, this entry point, before importing NumPy, re-executes itself once with
both removed from its environment (a marker variable, which also records their old values for the
report, stops a second re-execution). ``--keep-openblas-env`` keeps them. Nothing else in the
environment changes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .machine import OPENBLAS_VARS, ORIGINAL_ENV_MARKER

COMPARE = "--compare"


def _reexec_without_openblas_env(argv: list[str]) -> None:
    """Replace this process by itself without the OpenBLAS variables (once; see above)."""
    if ("--keep-openblas-env" in argv or ORIGINAL_ENV_MARKER in os.environ
            or _wants_compare(argv)):                     # --compare loads no BLAS
        return
    present = {k: os.environ[k] for k in OPENBLAS_VARS if k in os.environ}
    os.environ[ORIGINAL_ENV_MARKER] = json.dumps(present)
    if not present:
        return                                  # nothing to remove: no need to start again
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
    sys.stdout.flush()
    os.execve(sys.executable, getattr(sys, "orig_argv", [sys.executable, "-m", "benchmarks",
                                                         *argv]), env)


def _count(minimum: int):
    """An argparse type: an int of at least ``minimum``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    return parse


def thread_counts(text: str) -> tuple[int, ...]:
    """``--threads``: one count ("2") or a comma list ("1,2"); ascending, without repeats.

    Raises ``argparse.ArgumentTypeError`` for anything but counts from 1 to cnnkit's
    ``MAX_THREADS``.
    """
    from cnnkit.parallel import MAX_THREADS

    counts = set()
    for part in text.split(","):
        try:
            value = int(part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a thread count or a comma list of them (1,2), got {text!r}") from None
        if not 1 <= value <= MAX_THREADS:
            raise argparse.ArgumentTypeError(
                f"thread counts must be from 1 to {MAX_THREADS:,}, got {value}")
        counts.add(value)
    return tuple(sorted(counts))


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text}")
    return value


def _wants_compare(argv: list[str]) -> bool:
    """Whether the arguments ask for ``--compare`` (or an abbreviation argparse would take)."""
    return any(len(a) >= 3 and COMPARE.startswith(a) for a in argv)


def build_parser() -> argparse.ArgumentParser:
    from .cases import extra_cases
    from .suite import QUICK, Settings, case_names, default_thread_counts

    defaults = Settings()
    all_counts = ",".join(map(str, default_thread_counts()))
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time cnnkit's kernels, training steps and inference against PyTorch (CPU, "
                    "float32, NCHW and channels_last) in one process, at 1 thread, at all "
                    "cores and at each library's defaults; print the tables and the 1 -> N "
                    "speed-ups and write them as JSON.",
        epilog="cases: " + ", ".join(case_names()) + "; with --extra also: "
               + ", ".join(c.name for c in extra_cases()))
    parser.add_argument("--threads", type=thread_counts, default=None, metavar="N[,M...]",
                        help="thread counts for cnnkit, NumPy's BLAS and PyTorch, one "
                             "configuration each; with several, the library defaults and the "
                             "speed-up from the lowest to the highest count are added; a single "
                             f"count runs that configuration alone (default: {all_counts})")
    parser.add_argument("--repeats", type=_count(1), default=None,
                        help=f"timed calls per measurement (default: {defaults.repeats})")
    parser.add_argument("--warmup", type=_count(0), default=None,
                        help=f"untimed calls first (default: {defaults.warmup})")
    parser.add_argument("--budget", type=_seconds, default=None,
                        help=f"seconds of samples after which a measurement stops early "
                             f"(default: {defaults.budget:g})")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK['repeats']} repeats, {QUICK['warmup']} "
                             f"warm-up, {QUICK['budget']:g} s budget (unless given)")
    parser.add_argument("--only", metavar="PATTERN",
                        help="run the cases whose name matches this regular expression")
    parser.add_argument("--extra", action="store_true",
                        help="add kernel cases of other shapes: a first layer, non-square maps, "
                             "stride-2 3x3 and 1x1, 5x5, small pooling and batch-norm maps "
                             "(listed below)")
    parser.add_argument(COMPARE, nargs=2, metavar=("A.json", "B.json"),
                        help="time nothing: print two result files side by side (each case's "
                             "cnnkit ms and ratios to PyTorch in A and in B, and B/A), headed by "
                             "each file's CPU, BLAS, threads, date and command")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="where to write the results (default: benchmarks/results/"
                             "latest.json)")
    parser.add_argument("--keep-openblas-env", action="store_true",
                        help="keep OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (default: unset them)")
    return parser


def settings_from(args: argparse.Namespace):
    """The :class:`benchmarks.suite.Settings` of parsed arguments: ``--quick``'s values unless
    given; the thread counts of ``--threads``, with the library defaults' configuration unless it
    named a single count (no ``--threads``: 1 and all cores, and the defaults)."""
    from .suite import QUICK, Settings

    base = dict(QUICK) if args.quick else {}
    given = {k: v for k, v in (("repeats", args.repeats), ("warmup", args.warmup),
                               ("budget", args.budget)) if v is not None}
    threads = {} if args.threads is None else {"threads": args.threads,
                                               "defaults": len(args.threads) > 1}
    return Settings(only=args.only, extra=args.extra, **threads, **{**base, **given})


def main(argv=None) -> int:
    given_argv = sys.argv[1:] if argv is None else list(argv)
    if _wants_compare(given_argv):                  # before anything imports PyTorch
        from .compare import main as compare

        return compare(given_argv)
    import re
    import shlex
    from pathlib import Path

    from .guard import KernelMismatch
    from .report import write_json
    from .suite import case_names, run, selected

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.only is not None:
        try:
            re.compile(args.only)
        except re.error as err:
            parser.error(f"--only: not a regular expression: {err}")
        if not any(selected(name, args.only) for name in case_names(args.extra)):
            hint = ("; it matches extra cases, which run with --extra"
                    if any(selected(name, args.only) for name in case_names(True)) else
                    f"; cases: {', '.join(case_names(args.extra))}")
            parser.error(f"--only {args.only!r} matches no case{hint}")
    settings = settings_from(args)
    try:
        payload = run(settings)
    except KernelMismatch as err:
        print(f"python -m benchmarks: error: {err}; nothing was written", file=sys.stderr)
        return 1
    payload["command"] = " ".join(["python -m benchmarks", shlex.join(given_argv)]).rstrip()
    path = Path(args.json) if args.json else Path(__file__).parent / "results" / "latest.json"
    path = write_json(path, payload)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    _reexec_without_openblas_env(sys.argv[1:])
    sys.exit(main())
