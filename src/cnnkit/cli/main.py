"""``cnnkit``'s parser and its error boundary: every failure is one line on stderr and a
non-zero exit (``--debug`` or ``CNNKIT_DEBUG=1`` shows the traceback). Ctrl-C, SIGTERM and SIGHUP
stop a command alike (:mod:`cnnkit.interrupts`): one line, exit status 128 + the signal."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import reprlib
import sys
import time

from .. import __version__, parallel
from ..budget import budget_from_environment, set_memory_budget
from ..distributed import AgreedError, DistributedError, active, exit_now
from ..distributed.comm import QUIET_EXIT_DELAY, job_rank, job_size
from ..environment import parse_switch, read_variable
from ..errors import CnnkitError
from ..interrupts import exit_status, interrupted_by, signal_of, stop_signals
from ..models.spec import SpecError
from ..train import NonFiniteBatch, TrainingDiverged
from . import compare, lr_find, nets, pages, search, train, transfer, use
from .options import Parser

EXIT_ERROR, EXIT_BROKEN_PIPE = 1, 141

#: The modules of the commands, each with ``add_parsers(sub)``; ``cnnkit --help`` lists the
#: commands in this order.
COMMANDS = (train, lr_find, use, nets, transfer, pages, compare, search)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``cnnkit`` and its commands; building it reads and changes nothing, so the
    docs generate the command-line reference from it (with :func:`command_parsers`)."""
    parser = Parser(prog="cnnkit", description="Convolutional networks from first principles "
                    "in NumPy. Run `cnnkit help COMMAND` for the options of a command.",
                    examples=("cnnkit train --epochs 2 --name first", "cnnkit help train"))
    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.add_parsers(sub)
    p = sub.add_parser("help", help="the help of a command (as `cnnkit COMMAND --help`)",
                       description="Print the help of COMMAND (as `cnnkit COMMAND --help` "
                       "does), or cnnkit's.", examples=("cnnkit help evaluate",))
    p.add_argument("topic", nargs="?", type=lambda text: _command(parser, text),
                   metavar="COMMAND", help="a command (default: cnnkit's own help)")
    # help takes none of the common options; main reads their defaults
    p.set_defaults(run=lambda args: (args.topic or parser).print_help() or 0, debug=False,
                   threads=None, memory_budget=None)
    return parser


def command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser of each command of ``parser`` (:func:`build_parser`'s), by name, in the order
    ``cnnkit --help`` lists them."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _command(parser, text: str) -> argparse.ArgumentParser:
    """``cnnkit help``'s argument: the parser of the command ``text``, else argparse's one line
    naming it, with the closest command's name."""
    commands = command_parsers(parser)
    if text in commands:
        return commands[text]
    close = difflib.get_close_matches(text.lower(), commands, n=1)
    raise argparse.ArgumentTypeError(f"no command {reprlib.repr(text)}; " + (
        f"did you mean {close[0]!r}?" if close else f"choose from {', '.join(commands)}"))


def main(argv=None) -> int:
    """Run ``cnnkit ARGV`` and return its exit status (0, 1 for an error, 128 + the signal when
    a stop signal ended it: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if job_size() > 1 and job_rank() != 0:
        # every rank of an mpiexec job parses the same words: rank 0 alone says what is wrong
        with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet), \
                contextlib.redirect_stdout(quiet):
            args = parser.parse_args(argv)
    else:
        args = parser.parse_args(argv)
    if args.command is None:
        parser.error(f"choose a command: {', '.join(command_parsers(parser))} (cnnkit help "
                     f"COMMAND for its options)")
    debug, threads_before = args.debug, None
    set_memory_budget(args.memory_budget)
    try:
        debug = debug or read_variable("CNNKIT_DEBUG", parse_switch)     # 0: no; junk: refused
        # --threads, else the default, which reads CNNKIT_NUM_THREADS (and says so if it is not
        # a count); restored on return, for callers of main() such as the tests
        threads_before = parallel.get_num_threads()
        budget_from_environment()       # a CNNKIT_MEMORY_BUDGET that is not a size: refused now
        if args.threads is not None:
            parallel.set_num_threads(args.threads)
        # the ranks of an MPI job stop where they agree, not each where the signal finds it
        with stop_signals("defer" if job_size() > 1 else "raise"):
            if getattr(args, "workers", None) and args.workers > 1:
                return train.launch_workers(argv, args)
            with parallel.blas_single_thread():   # cnnkit's threads split the work, not BLAS's
                return args.run(args)
    except KeyboardInterrupt as err:
        return _error_exit(args, interrupted_by(signal_of(err)), exit_status(err), err,
                           prefix="")
    except BrokenPipeError:
        # the reader left (`cnnkit evaluate CKPT | head`): stop quietly, as a shell tool would;
        # stdout goes to /dev/null so that Python's flush at exit raises nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (CnnkitError, ValueError, TypeError, RuntimeError, OSError) as err:
        if debug:
            raise
        return _error_exit(args, _message(err), EXIT_ERROR, err)
    except MemoryError as err:
        if debug:
            raise
        return _error_exit(args, f"out of memory ({err or 'an allocation failed'}); a smaller "
                           f"--batch-size or input would need less", EXIT_ERROR, err)
    except Exception as err:   # the boundary: whatever escaped is still one line, not a traceback
        if debug:
            raise
        first = (str(err).splitlines() or [""])[0]
        return _error_exit(args, f"internal error, {type(err).__name__}: {first} (a bug in "
                           f"cnnkit; --debug shows where)", EXIT_ERROR, err)
    finally:
        if threads_before is not None:
            parallel.set_num_threads(threads_before)
        set_memory_budget(None)


def _message(err: BaseException) -> str:
    """The line to print: the first of the error's message (a spec error's later lines echo
    the spec with a caret under the offending token, and stay), with its rank where known."""
    inner = err.error if isinstance(err, AgreedError) else err
    lines = str(inner).splitlines()
    if not lines or not lines[0].strip():        # nothing to show: name the exception instead
        doc = next((c.__doc__ for c in type(inner).__mro__ if c.__doc__), "")
        what = doc.strip().split("\n")[0].rstrip(".")
        lines = [f"{type(inner).__name__} with an empty message ({what}); --debug shows where"]
    text = "\n".join(lines) if isinstance(inner, SpecError) else lines[0]
    rank = getattr(err, "rank", None) if isinstance(err, CnnkitError) else None
    return text if rank is None else f"rank {rank}: {text}"


def _error_exit(args, message: str, code: int, err: BaseException, *,
                prefix: str = "error: ") -> int:
    """Print ``cnnkit COMMAND: error: MESSAGE`` and return ``code``; as one rank of several,
    print it only where it should appear once, tell the other ranks, and leave at once."""
    comm = active()
    if comm is None:
        if getattr(err, "report", True):
            print(f"cnnkit {args.command}: {prefix}{message}", file=sys.stderr)
        return code
    # Errors every rank knows of at the same point leave no collective pending: the ranks then
    # end the ordinary way (MPI finalised, the same exit status), and mpiexec ends quietly.
    together = True
    if isinstance(err, DistributedError):           # agreed on, a peer failed, or a timeout
        report, together = err.report, err.agreed
    elif isinstance(err, KeyboardInterrupt):
        # a stop the ranks agreed on ends them together; a second signal stops each at once
        report, together = comm.is_root, not getattr(err, "at_once", False)
    elif isinstance(err, (TrainingDiverged, NonFiniteBatch)):
        report = comm.is_root                          # every rank met it at the same step
    else:                              # this rank failed: the lowest rank that did says so
        message = f"rank {comm.rank}: {message}"
        report, together = comm.fail(message), False
    if report:
        print(f"cnnkit {args.command}: {prefix}{message}", file=sys.stderr)
    if together:
        return code
    if not report:                      # the rank that reports ends the job when it has spoken
        time.sleep(QUIET_EXIT_DELAY)
    exit_now(code, comm)
    return code
