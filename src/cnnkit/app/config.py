"""RunConfig: the one schema of a training run's settings.

Every setting of a run is one field of :class:`RunConfig`: its name, type and bounds (a
:class:`Kind`), its default, its help text, and whether the run's checkpoint records it. Each
place that speaks of settings reads this table and nothing else:

- ``cnnkit.fit(**settings)`` checks its keywords against it (:meth:`RunConfig.from_keywords`);
- ``cnnkit train`` and ``cnnkit search`` generate their options from it (``cnnkit.cli.options``);
- a checkpoint records the run's settings as JSON (:meth:`RunConfig.record`), and ``--resume``
  reads them back, checked, with the defaults that checkpoints of older versions lack
  (:meth:`RunConfig.from_record`).

So adding a setting is adding one field here (and using it in :mod:`cnnkit.app.training`).

Two kinds of fields: the *run's* settings (data, net, optimizer, ...: what the run is, recorded
in its checkpoints) and the *session's* (``out``, ``name``, ``resume``, ``progress``,
``threads``, ...: how this process runs it, never recorded).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from dataclasses import dataclass, field, fields
from typing import Any

from ..budget import SIZE_EXPECTED, parse_size
from ..data import DEFAULT_SOURCE, FITS, source_names
from ..distributed.launch import MAX_WORKERS
from ..errors import CnnkitError, UsageError
from ..models import DATA_DEFAULTS, MODELS
from ..optim import OPTIMIZERS
from ..parallel import MAX_THREADS

__all__ = ["RunConfig", "Setting", "Kind", "SCHEDULES", "LOSSES", "setting_of", "volume_text"]

SCHEDULES = ("cosine", "step", "exp", "none")
LOSSES = ("softmax", "svm")


def volume_text(shape) -> str:
    """(C, H, W) as the command line writes it: "3x32x32"."""
    return "x".join(str(int(s)) for s in shape)


# ---------------------------------------------------------------------------- kinds of value

class Kind:
    """What values a setting takes: ``parse(text)`` reads the command line's text, ``check(value)``
    a Python or JSON value; both return the value in its one form or raise ``ValueError`` whose
    message says what was expected ("expected a count from 1 to 100,000, got 0")."""

    expected = "a value"
    metavar: str | None = None

    def parse(self, text: str):
        return self.check(text)

    def check(self, value):
        return value

    def to_json(self, value):
        return value

    def wrong(self, value, converted: bool = True) -> ValueError:
        """The error for ``value``: "got 0" when it had the right type, "got '0'" when not."""
        return ValueError(f"expected {self.expected}, got {value if converted else repr(value)}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class _Number(Kind):
    """A number the command line writes as text that ``convert`` (int, float) reads."""

    convert = staticmethod(float)

    def parse(self, text):
        try:
            value = self.convert(str(text).strip())
        except ValueError:
            raise self.wrong(text, converted=False) from None
        return self.check(value)


class Count(_Number):
    """An integer from ``lo`` to ``hi`` (no upper bound when None)."""

    convert = staticmethod(int)

    def __init__(self, lo: int, hi: int | None = None, expected: str | None = None):
        self.lo, self.hi = lo, hi
        self.expected = expected or (f"a count from {lo:,} to {hi:,}" if hi is not None else
                                     "a positive integer" if lo == 1 else f"a count >= {lo}")

    def check(self, value):
        if not _is_int(value):
            raise self.wrong(value, converted=False)
        if value < self.lo or (self.hi is not None and value > self.hi):
            raise self.wrong(value)
        return int(value)


class Real(_Number):
    """A finite number in [lo, hi) or [lo, hi], or > lo when ``open_lo``."""

    def __init__(self, lo: float, hi: float = math.inf, *, open_lo: bool = False,
                 open_hi: bool = False, expected: str):
        self.lo, self.hi, self.open_lo, self.open_hi = lo, hi, open_lo, open_hi
        self.expected = expected

    def check(self, value):
        if not _is_real(value):
            raise self.wrong(value, converted=False)
        value = float(value)
        above = value > self.lo if self.open_lo else value >= self.lo
        below = value < self.hi if self.open_hi else value <= self.hi
        if not (math.isfinite(value) and above and below):   # NaN fails every comparison
            raise self.wrong(value)
        return value


class Choice(Kind):
    def __init__(self, options):
        self.options = tuple(options)
        self.expected = "one of " + ", ".join(self.options)

    def check(self, value):
        if value not in self.options:
            raise ValueError(f"expected {self.expected}, got {value!r}")
        return value


class Flag(Kind):
    expected = "True or False"

    def check(self, value):
        if not isinstance(value, bool):
            raise self.wrong(value, converted=False)
        return value


class Text(Kind):
    expected = "a text"

    def check(self, value):
        if not isinstance(value, str):
            raise self.wrong(value, converted=False)
        if "\0" in value:
            raise ValueError(f"expected {self.expected} without NUL bytes, got {value!r}")
        return value


class PathText(Text):
    """A file or folder: a text or an ``os.PathLike``, kept as text."""

    expected = "a path"

    def check(self, value):
        import os

        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        return super().check(value)


class RateOrFind(Kind):
    """A learning rate (a number >= 0), or "find": the range test picks it
    (:mod:`cnnkit.lr_find`) before the run trains, which records the number."""

    expected = 'a number >= 0 or "find"'
    metavar = "LR"
    rate = Real(0.0, expected="a number >= 0")

    def parse(self, text):
        if str(text).strip().lower() == "find":
            return "find"
        try:
            value = float(str(text).strip())
        except ValueError:
            raise self.wrong(text, converted=False) from None
        return self.check(value)

    def check(self, value):
        if isinstance(value, str) and value == "find":
            return value
        try:
            return self.rate.check(value)
        except ValueError:
            raise self.wrong(value, converted=_is_real(value)) from None


class Volume(Kind):
    """An input volume (C, H, W): "3x32x32" on the command line, a sequence of 3 counts in
    Python, a list in JSON."""

    expected = "a volume CxHxW such as 3x32x32"
    metavar = "CxHxW"

    def parse(self, text):
        parts = str(text).lower().replace("×", "x").split("x")
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            raise self.wrong(text, converted=False) from None
        return self.check(shape, text)

    def check(self, value, text=None):
        shown = text if text is not None else value
        if isinstance(value, str):
            return self.parse(value)
        if not (isinstance(value, (tuple, list)) and len(value) == 3
                and all(_is_int(v) and v >= 1 for v in value)):
            raise ValueError(f"expected {self.expected}, got {shown!r}")
        if max(value) > 2 ** 31 - 1:
            raise ValueError(f"sizes go up to {2 ** 31 - 1:,}, got {shown!r}")
        return tuple(int(v) for v in value)

    def to_json(self, value):
        return list(value)


class CountOrFraction(Kind):
    """A count (an int >= 0) or a fraction in [0, 1)."""

    expected = "a count >= 0 or a fraction in [0, 1)"

    def parse(self, text):
        try:
            return self.check(int(str(text).strip()))
        except ValueError:
            pass
        try:
            return self.check(float(str(text).strip()))
        except ValueError:
            raise self.wrong(text, converted=False) from None

    def check(self, value):
        if _is_int(value):
            if value < 0:
                raise self.wrong(value)
            return int(value)
        if _is_real(value) and 0.0 <= value < 1.0:
            return float(value)
        raise self.wrong(value, converted=_is_real(value))


class CountOrAuto(Count):
    """A count, or the word "auto" (a value chosen by the run)."""

    def __init__(self, lo: int, hi: int | None = None, expected: str | None = None):
        super().__init__(lo, hi, expected)
        self.expected = f"auto or {self.expected}"

    def parse(self, text):
        return "auto" if str(text).strip() == "auto" else super().parse(text)

    def check(self, value):
        return "auto" if value == "auto" else super().check(value)


class Size(Kind):
    """A number of bytes: "8G", "8Gi", "512MiB", or a count (:func:`cnnkit.budget.parse_size`,
    which reads ``CNNKIT_MEMORY_BUDGET`` too)."""

    expected = SIZE_EXPECTED
    metavar = "SIZE"

    def check(self, value):
        if _is_int(value) or isinstance(value, str):
            return parse_size(value)
        raise self.wrong(value, converted=False)


class OrNone(Kind):
    """``kind`` or None."""

    def __init__(self, kind: Kind):
        self.kind = kind
        self.expected = kind.expected
        self.metavar = kind.metavar

    def parse(self, text):
        return self.kind.parse(text)

    def check(self, value):
        return None if value is None else self.kind.check(value)

    def to_json(self, value):
        return None if value is None else self.kind.to_json(value)


# ---------------------------------------------------------------------------- the schema

#: A Setting's ``older`` or ``cli_default`` when there is none.
REQUIRED = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()


@dataclass(frozen=True)
class Setting:
    """What the schema says of one field; see :func:`setting_of`.

    kind : its values (:class:`Kind`)
    help : the help text of its option (the default is appended by the parser)
    record : whether the run's checkpoint records it (the run's settings) or not (the session's)
    search : whether ``cnnkit search`` passes it through to every trial
    older : its value for checkpoints written before it existed (REQUIRED: it always existed)
    flag : the command-line option (default ``--name-with-dashes``)
    cli_default : the command line's default when it differs from the Python one (REQUIRED:
        the same)
    metavar, group : argparse's metavar; a mutually exclusive group's name
    """

    kind: Kind
    help: str
    record: bool = True
    search: bool = False
    older: Any = REQUIRED
    flag: str | None = None
    cli_default: Any = REQUIRED
    metavar: str | None = None
    group: str | None = None


def _field(default, kind: Kind, help: str, **options):
    return field(default=default, metadata={"setting": Setting(kind, help, **options)})


def setting_of(f: dataclasses.Field) -> Setting:
    return f.metadata["setting"]


_SOURCES = ", ".join(source_names())
_MODELS = ", ".join(["default", *MODELS])
_DEFAULT_NETS = ", ".join(f"{name} for {volume_text(shape)}"
                          for shape, name in DATA_DEFAULTS.items())
_LRS = ", ".join(f"{k} {choice.lr:g}" for k, choice in OPTIMIZERS.items())
_FRACTION = Real(0.0, 1.0, open_hi=True, expected="a fraction in [0, 1)")
_NON_NEGATIVE = Real(0.0, expected="a number >= 0")
_PASSES = Count(1, 100_000)
_SECONDS = Real(0.0, open_lo=True, expected="a positive number of seconds")


@dataclass(frozen=True)
class RunConfig:
    """A training run's settings, checked; the one table every interface reads (see the module
    docstring). ``RunConfig.from_keywords(epochs=10)`` makes one from ``fit``'s keywords.

    The run's settings are those of ``cnnkit train``'s options of the same names; the session's
    are where it writes (``out``, ``name``, ``overwrite``), how it starts (``resume``,
    ``weights``), what it shows (``progress``, ``report``) and where it runs (``threads``,
    ``memory_budget``, and under ``mpiexec`` ``sync_bn`` and ``timeout``).
    """

    # ---- the run's settings, recorded in its checkpoints
    data: str = _field(DEFAULT_SOURCE, Text(), "the images: " + _SOURCES, search=True,
                       older=DEFAULT_SOURCE, metavar="SOURCE")
    model: str = _field("default", Text(), "a zoo name (" + _MODELS + ") or a spec such as "
                        '"CONV5-6 -> RELU -> POOL2 -> FC-10"; default: the data\'s ('
                        + _DEFAULT_NETS + ")", search=True, metavar="MODEL")
    input: tuple | None = _field(None, OrNone(Volume()), "the net's input volume; a folder's "
                                 "images are decoded to it (default: a spec's INPUT, a zoo "
                                 "model's designed size, or the images' own)", search=True,
                                 older=None)
    fit: str = _field("auto", Choice(FITS), "how images of another size go into the net: centre "
                      "them in a zero field or resize them; auto centres when the margin is at "
                      "most a quarter of the image (28x28 digits in 32x32) and resizes otherwise",
                      search=True, older="auto")
    test_size: float | None = _field(0.2, OrNone(_FRACTION), "for a source without a test "
                                     "split of its own: the part of each class held out to test "
                                     "on, seeded by --seed", search=True, older=None,
                                     metavar="FRACTION")
    skip_bad: bool = _field(False, Flag(), "skip (and count) images that cannot be decoded "
                            "instead of stopping", search=True, older=False)
    epochs: int = _field(5, _PASSES, "epochs")
    batch_size: int = _field(64, Count(1), "mini-batch size", search=True)
    optimizer: str = _field("adam", Choice(OPTIMIZERS), "update rule", search=True)
    lr: float | str | None = _field(None, OrNone(RateOrFind()), "learning rate, or find: run "
                                    "the learning-rate range test first (as cnnkit lr-find "
                                    "does) and train with its suggestion, recorded as the "
                                    "number (default: " + _LRS + ")")
    momentum: float = _field(0.9, _NON_NEGATIVE, "for momentum/nesterov", search=True)
    weight_decay: float = _field(0.0, _NON_NEGATIVE, "L2 strength on the weights")
    schedule: str = _field("cosine", Choice(SCHEDULES), "learning-rate schedule per epoch",
                           search=True)
    step_size: int = _field(2, Count(1), "epochs per step of the step schedule", search=True)
    gamma: float = _field(0.5, _NON_NEGATIVE, "decay factor of the step/exp schedules",
                          search=True)
    seed: int = _field(0, Count(0, expected="a seed >= 0"), "seeds initialisation, split and "
                       "shuffling")
    val_size: int | float | None = _field(None, OrNone(CountOrFraction()), "training images "
                                          "held out for validation, a count or a fraction "
                                          "(default: a tenth, at most 5000)", search=True)
    loss: str = _field("softmax", Choice(LOSSES), "loss", search=True)
    limit: int | None = _field(None, OrNone(Count(1)), "use only the first N training images "
                               "and the first N test images (quick runs)", search=True,
                               metavar="N")
    augment: str = _field("auto", Text(), "training-time augmentation, a comma-separated list: "
                          "crop (random shifts: zero padding of 1/8 of the side, 4 for 32x32, then "
                          "a crop of the original size), crop:P (padding P), flip (horizontal "
                          "mirror; not for digits), none (default: the data source's own, "
                          "printed when training starts)", search=True, metavar="LIST")
    layer_stats: int | str = _field(
        "auto", CountOrAuto(0, 10 ** 9, "a number of iterations from 0 (never) to 10^9"),
        "every N iterations record each layer's activation percentiles, gradient norms and "
        "update/weight ratio (layer_stats.json and .png in the run folder); 0: none; auto: a "
        "cadence chosen from the run's length (epochs x batches), 41 to 60 records (every "
        "iteration of a run of fewer than 80), kept in the checkpoint so a resumed run keeps it",
        older=0, metavar="N|auto")

    # ---- the session's settings, never recorded
    out: str | None = _field(None, OrNone(PathText()), "parent folder of run folders "
                             "(Python: None trains in memory and writes nothing)", record=False,
                             cli_default="runs")
    name: str | None = _field(None, OrNone(PathText()), "run folder name (default: "
                              "MODEL-DATE-TIME, with -2, -3, ... when taken); one folder name, "
                              "not a path", record=False)
    overwrite: bool = _field(False, Flag(), "let --name replace a run folder that already holds "
                             "a run", record=False)
    resume: str | None = _field(None, OrNone(PathText()), "continue the run saved in CKPT (its "
                                "folder and settings; --epochs may extend it)", record=False,
                                metavar="CKPT", group="start")
    weights: str | None = _field(None, OrNone(PathText()), "start from the weights in FILE: a "
                                 "checkpoint, or a PyTorch .pt or .safetensors state dict of the "
                                 "same net", record=False, metavar="FILE", group="start")
    tensorboard: str | None = _field(None, OrNone(PathText()), "also write TensorBoard event "
                                     "files of the run in DIR (DIR/train, DIR/validation: "
                                     "losses, accuracies, learning rate, weight and gradient "
                                     "histograms, first-layer filters); open them with "
                                     "`tensorboard --logdir DIR`", record=False, metavar="DIR")
    report: bool = _field(False, Flag(), "at the end, write report.html in the run folder (see "
                          "`cnnkit report`)", record=False)
    progress: bool = _field(True, Flag(), "no progress bar", record=False, flag="--no-progress")
    sync_bn: bool = _field(False, Flag(), "under mpiexec: batch norm normalises with the "
                           "statistics of the whole batch, summed over the ranks (default: each "
                           "rank's own shard, as PyTorch's DistributedDataParallel)", record=False)
    timeout: float | None = _field(None, OrNone(_SECONDS),
                                   "under mpiexec: how long a rank waits for the others at a step "
                                   "before it names the ranks missing and stops the job (default: "
                                   "600)", record=False, metavar="SECONDS")
    threads: int | None = _field(None, OrNone(Count(1, MAX_THREADS, f"a thread count from 1 to "
                                                                      f"{MAX_THREADS:,}")),
                                 "threads for cnnkit's kernels (default: CNNKIT_NUM_THREADS, else "
                                 "the cores this process may use); results are the same on any "
                                 "count. NumPy's BLAS runs at 1 thread inside them", record=False)
    memory_budget: int | None = _field(None, OrNone(Size()), "refuse work estimated to need more "
                                       "memory than this, e.g. 8G (default: CNNKIT_MEMORY_BUDGET, "
                                       "else the memory the system reports available)",
                                       record=False)

    # ------------------------------------------------------------------ making one
    @classmethod
    def settings(cls) -> dict[str, Setting]:
        """Every field's :class:`Setting`, by name, in the table's order."""
        return {f.name: setting_of(f) for f in fields(cls)}

    @classmethod
    def recorded(cls) -> list[str]:
        """The names of the run's settings (those a checkpoint records)."""
        return [name for name, s in cls.settings().items() if s.record]

    @classmethod
    def from_keywords(cls, where: str = "fit", /, **keywords) -> "RunConfig":
        """A RunConfig from keywords (``fit``'s); every other field keeps its default.

        Raises
        ------
        TypeError
            For a name that is not a setting, as Python words it, with the closest name.
        UsageError
            For a value outside the setting's kind: ``epochs=0: expected a count from 1 to
            100,000``.
        """
        settings = cls.settings()
        for key in keywords:
            if key not in settings:
                raise TypeError(unknown_keyword(where, key, settings))
        return cls(**{key: check_value(key, settings[key], value)
                      for key, value in keywords.items()})

    def replace(self, **changes) -> "RunConfig":
        """A copy with ``changes``, each checked as :meth:`from_keywords` checks it."""
        settings = self.settings()
        for key in changes:
            if key not in settings:
                raise TypeError(unknown_keyword("RunConfig.replace", key, settings))
        return dataclasses.replace(self, **{key: check_value(key, settings[key], value)
                                            for key, value in changes.items()})

    # ------------------------------------------------------------------ the checkpoint's record
    def record(self) -> dict:
        """The run's settings as the checkpoint records them (JSON types)."""
        settings = self.settings()
        return {name: settings[name].kind.to_json(getattr(self, name))
                for name in self.recorded()}

    @classmethod
    def from_record(cls, record: dict, where: str = "the checkpoint") -> "RunConfig":
        """The run's settings a checkpoint recorded, each checked as the command line checks
        it, with the values checkpoints of older versions lack filled in; the session's
        settings keep their defaults.

        Raises
        ------
        CnnkitError
            For a missing or damaged setting, naming it and ``where``.
        """
        if not isinstance(record, dict):
            raise CnnkitError(f"{where}: the run settings are damaged (not a dict)")
        record = dict(record)
        if "data" not in record and record.get("augment") == "crop":
            # runs from before data sources trained on MNIST, whose own augmentation was "crop"
            record["augment"] = "auto"
        values = {}
        for name in cls.recorded():
            setting = cls.settings()[name]
            if name not in record:
                if setting.older is REQUIRED:
                    raise CnnkitError(f"{where}: the run settings have no {name!r}")
                values[name] = setting.older
                continue
            try:
                values[name] = setting.kind.check(record[name])
            except (ValueError, TypeError) as err:
                raise CnnkitError(f"{where}: the run settings are damaged: {name} = "
                                  f"{record[name]!r} ({err})") from None
        return cls(**values)


def check_value(name: str, setting: Setting, value):
    """``value`` of the setting ``name`` in its one form, or a UsageError naming it."""
    try:
        return setting.kind.check(value)
    except (ValueError, TypeError) as err:
        raise UsageError(f"{name}={value!r}: {err}") from None


def unknown_keyword(where: str, key: str, names) -> str:
    """Python's own words for a keyword a function does not take, with the closest name."""
    text = f"{where}() got an unexpected keyword argument {key!r}"
    if key == "workers":
        return text + (f"; {where} trains data-parallel when the script runs under "
                       f"`mpiexec -n P` (at most {MAX_WORKERS} ranks on one machine)")
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    return text + (f". Did you mean {close[0]!r}?" if close else "")
