"""The command line's options: those of a run's settings generated from
:class:`~cnnkit.app.config.RunConfig`, and the argparse types of the others, made from the same
:class:`~cnnkit.app.config.Kind` checks."""

from __future__ import annotations

import argparse
import itertools
import re

from ..app.config import REQUIRED, Choice, Count, Flag, Kind, Real, RunConfig, Volume, setting_of
from ..models import MODELS

MODEL_HELP = ('a spec such as "INPUT[1x28x28] -> CONV5-6 -> RELU -> POOL2 -> FC-10" or a zoo '
              "name: " + ", ".join(["default", *MODELS]))
SUPPRESS = argparse.SUPPRESS
# argparse takes a word of '-' then a digit, '.digit', inf or nan (--lr -1:1, -1x28x28) for an
# option it lacks; as a value, its option's own check judges it. No option looks like one.
VALUE_WITH_MINUS = re.compile(r"-(\.?\d|(inf(inity)?|nan)(:|$))", re.IGNORECASE)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's, but indented lines (an epilog's examples) are kept as written."""

    def _fill_text(self, text, width, indent):
        fill = super()._fill_text
        return "\n".join("\n".join(indent + line for line in lines) if kept
                         else fill(" ".join(lines), width, indent)
                         for kept, lines in itertools.groupby(text.splitlines(),
                                                              lambda line: line[:1] == " "))


class Parser(argparse.ArgumentParser):
    """The parser of ``cnnkit`` and of each of its commands (argparse gives a subcommand its
    parent's class): ``examples``, command lines shown under "examples:" at the end of the
    help, are its one home (the tests run each); values starting with '-' as VALUE_WITH_MINUS
    says."""

    def __init__(self, *args, examples: tuple[str, ...] = (), **kwargs):
        self.examples = tuple(examples)
        if examples:
            kwargs["epilog"] = "examples:\n" + "\n".join(f"  {line}" for line in examples)
        super().__init__(*args, formatter_class=HelpFormatter, **kwargs)
        self._negative_number_matcher = VALUE_WITH_MINUS      # argparse's hook, used with .match


def typed(kind: Kind):
    """An argparse type: ``kind.parse(text)``, its error as argparse's one line."""
    def parse(text):
        try:
            return kind.parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return parse


POSITIVE = typed(Count(1))
PASSES = typed(Count(1, 100_000))
SEED = typed(Count(0, expected="a seed >= 0"))
VOLUME = typed(Volume())
NON_NEGATIVE = typed(Real(0.0, expected="a number >= 0"))


def _default(name: str):
    """The default a setting's help shows: its command-line default, else the library's."""
    setting = RunConfig.settings()[name]
    return setting.cli_default if setting.cli_default is not REQUIRED \
        else RunConfig.__dataclass_fields__[name].default


def add_settings(parser, names) -> None:
    """An option for each of the RunConfig settings ``names``, its type, help and bounds from
    the schema. The options default to nothing (argparse's SUPPRESS), so that
    :func:`settings_given` hands the library only what the user typed; the help shows the
    defaults."""
    groups = {}
    fields = RunConfig.__dataclass_fields__
    for name in names:
        s = setting_of(fields[name])
        flag = s.flag or "--" + name.replace("_", "-")
        if s.group and s.group not in groups:
            groups[s.group] = parser.add_mutually_exclusive_group()
        target = groups[s.group] if s.group else parser
        default = _default(name)
        text = s.help if default is None or isinstance(default, bool) or "default:" in s.help \
            else f"{s.help} (default: {default})"
        if isinstance(s.kind, Flag):
            action = "store_false" if flag.startswith("--no-") else "store_true"
            target.add_argument(flag, dest=name, action=action, default=SUPPRESS, help=text)
        elif isinstance(s.kind, Choice):
            target.add_argument(flag, dest=name, choices=s.kind.options, default=SUPPRESS,
                                help=text)
        else:
            kind = getattr(s.kind, "kind", s.kind)          # OrNone's inner kind
            target.add_argument(flag, dest=name, type=typed(kind), default=SUPPRESS,
                                metavar=s.metavar or kind.metavar, help=text)


def settings_given(args, names) -> dict:
    """The settings among ``names`` the user typed, and the schema's command-line defaults of
    the others that have one."""
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    for name in names:
        cli_default = RunConfig.settings()[name].cli_default
        if name not in given and cli_default is not REQUIRED:
            given[name] = cli_default
    return given


def add_common_options(p) -> None:
    """--threads, --memory-budget and --debug, which every command takes."""
    add_settings(p, ("threads", "memory_budget"))
    p.set_defaults(threads=None, memory_budget=None)
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an error (as CNNKIT_DEBUG=1 does)")


def add_folder_options(p, out: str, folder: str, default_name: str, holds: str) -> None:
    """``--out``, ``--name`` and ``--overwrite`` of a command that writes a ``folder`` (a
    results folder, a search folder), never over one that ``holds`` something unless asked."""
    p.add_argument("--out", default=out, help=f"parent folder of {folder}s (default: %(default)s)")
    p.add_argument("--name", default=None,
                   help=f"{folder} name (default: {default_name}, with -2, -3, ... when taken)")
    p.add_argument("--overwrite", action="store_true",
                   help=f"let --name replace a {folder} that already holds {holds}")


def add_input_option(p) -> None:
    """--input, a net's input volume CxHxW."""
    p.add_argument("--input", type=VOLUME, metavar="CxHxW", default=None,
                   help="input volume (default: a zoo model's designed input, a spec's INPUT)")


def add_model_argument(p, checkpoint: bool = False) -> None:
    """The MODEL positional (a spec or a zoo name, and a checkpoint where it may be) and
    --input."""
    p.add_argument("model", metavar="MODEL",
                   help=("a checkpoint (.npz), " if checkpoint else "") + MODEL_HELP)
    add_input_option(p)


def add_no_progress(p, what: str = "") -> None:
    """--no-progress, which turns the progress bar (``what``) off."""
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar" + what)


def add_allow_nonfinite(p, what: str) -> None:
    """--allow-nonfinite: ``what`` a net whose weights or statistics hold NaN or infinite values,
    which the command refuses by default (:mod:`cnnkit.finite`)."""
    p.add_argument("--allow-nonfinite", action="store_true",
                   help=f"{what} even when its weights or statistics hold NaN or infinite values")


def add_choice(p, flag: str, choices, default, what: str = "") -> None:
    """An option ``flag`` that takes one of ``choices``, its help ``what`` and the default."""
    p.add_argument(flag, choices=tuple(choices), default=default,
                   help=f"{what}{' ' if what else ''}(default: %(default)s)")
