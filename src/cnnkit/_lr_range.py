"""The range test itself, below the application tier: the schedule, the smoothing, the rules
and :func:`range_test` on a net and an optimizer. :mod:`cnnkit.lr_find` is its public face (and
says what each part computes); :mod:`cnnkit.app.training` runs it for ``lr="find"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._json import jsonable
from ._progress import Bar
from .callbacks import Callback
from .errors import CnnkitError, UsageError
from .train import Trainer, TrainingDiverged, TrainingInterrupted

__all__ = ["range_test", "LRFindResult", "schedule", "smooth", "suggest", "check_range",
           "default_beta", "RULES", "DEFAULT_RULE", "FIND", "MAX_ITERATIONS"]

#: The value of the ``lr`` setting that asks for a range test first.
FIND = "find"
#: The rules a suggestion is read by, each as the docs and the command line state it.
RULES = {
    "minimum": "a tenth of the rate at which the smoothed loss is lowest",
    "steepest": "the rate at which the smoothed loss falls fastest against log(lr), after its "
                "first 1/(1 - beta) iterations and before its minimum",
}
#: The rule a range test suggests its rate by unless told (see RULES).
DEFAULT_RULE = "minimum"
#: The most iterations a range test takes (each one a training step).
MAX_ITERATIONS = 100_000
#: The defaults: the rates tried, the steps and the early stop's factor; the smoothing's
#: default depends on the steps (:func:`default_beta`).
START, END, ITERATIONS, DIVERGE = 1e-7, 10.0, 200, 4.0
#: The lag of the default smoothing, as a fraction of the iterations.
LAG = 1 / 20


def default_beta(iterations: int) -> float:
    """``max(0, 1 - 1 / (LAG * iterations))``: the smoothing whose lag, about
    ``beta / (1 - beta)`` iterations, is a twentieth of the test less one iteration
    (0.9 at 200 iterations, 0.8 at 100, 0.98 at 1,000), so the smoothed curve trails the
    losses by the same part of the range of rates whatever the number of iterations."""
    return max(0.0, 1.0 - 1.0 / (LAG * iterations))


# ---------------------------------------------------------------------------- the arithmetic

def check_range(start, end, iterations, beta=None, diverge=DIVERGE, rule=DEFAULT_RULE) -> None:
    """Raise UsageError, one line naming the value, unless 0 < start < end (finite),
    2 <= iterations <= MAX_ITERATIONS, 0 <= beta < 1 (or None), diverge > 1 and rule is one of
    RULES."""
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating,
                                                             np.integer)):
            raise UsageError(f"lr_find {name} must be a number, got {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"lr_find {name} must be a positive finite learning rate, got "
                             f"{value!r}")
    if not start < end:
        raise UsageError(f"lr_find start must be below end (the rate grows from one to the "
                         f"other), got start {start:g} and end {end:g}")
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) \
            or not 2 <= iterations <= MAX_ITERATIONS:
        raise UsageError(f"lr_find iterations must be a count from 2 to {MAX_ITERATIONS:,}, "
                         f"got {iterations!r}")
    if beta is not None and (isinstance(beta, bool) or not isinstance(beta, (int, float))
                             or not 0 <= beta < 1):
        raise UsageError(f"lr_find beta (the smoothing) must be in [0, 1), got {beta!r}")
    if isinstance(diverge, bool) or not isinstance(diverge, (int, float)) \
            or not 1 < diverge < math.inf:
        raise UsageError(f"lr_find diverge must be a finite number > 1, got {diverge!r}")
    if rule not in RULES:
        raise UsageError(f"lr_find rule must be one of {', '.join(RULES)}, got {rule!r}")


def schedule(start: float, end: float, iterations: int) -> np.ndarray:
    """(iterations,) float64: ``start * (end / start) ** (i / (iterations - 1))``, computed as
    ``exp(ln start + i / (iterations - 1) * (ln end - ln start))`` (``end / start`` itself may
    overflow); the first is exactly ``start``, the last exactly ``end``."""
    check_range(start, end, iterations)
    t = np.arange(iterations, dtype=np.float64) / (iterations - 1)
    lrs = np.exp(math.log(start) + t * (math.log(end) - math.log(start)))
    lrs[0], lrs[-1] = start, end
    return lrs


def smooth(losses, beta: float) -> np.ndarray:
    """The bias-corrected exponential moving average of ``losses`` (see the module
    docstring): ``smoothed[0] == losses[0]``; (N,) float64."""
    losses = np.asarray(losses, dtype=np.float64)
    out = np.empty_like(losses)
    average = 0.0
    for i, loss in enumerate(losses):
        average = beta * average + (1.0 - beta) * loss
        out[i] = average / (1.0 - beta ** (i + 1))
    return out


def suggest(lrs, smoothed, rule: str = DEFAULT_RULE, skip: int = 0) -> float:
    """The rate ``rule`` (a key of :data:`RULES`) reads from the smoothed loss curve.

    Parameters
    ----------
    lrs : (N,) the rates, increasing
    smoothed : (N,) the smoothed losses at them
    rule : "minimum" or "steepest" (see :mod:`cnnkit.lr_find`)
    skip : "steepest" looks at the slope from point ``skip`` on (the first points of a moving
        average rest on a few losses, and one noisy batch there can look like the steepest
        fall); all points when the minimum comes before ``skip + 1``

    Raises
    ------
    CnnkitError
        When the curve has no descent to read: its minimum is its first point (the loss only
        rose: start lower), or it holds fewer than 2 points.
    """
    lrs, smoothed = np.asarray(lrs, dtype=np.float64), np.asarray(smoothed, dtype=np.float64)
    if rule not in RULES:
        raise UsageError(f"lr_find rule must be one of {', '.join(RULES)}, got {rule!r}")
    if len(lrs) < 2:
        raise CnnkitError(f"the range test recorded {len(lrs)} iteration(s): too few to read a "
                          f"rate from (the loss blew up at once; give a lower start)")
    finite = np.where(np.isfinite(smoothed), smoothed, np.inf)
    lowest = int(np.argmin(finite))
    if lowest == 0:
        raise CnnkitError(f"the smoothed loss is lowest at the first rate tried ({lrs[0]:.3g}): "
                          f"no rate of the range lowered it; give a lower start")
    if rule == "minimum":
        return float(lrs[lowest] / 10)
    first = skip if lowest - skip >= 1 else 0
    slope = np.gradient(smoothed[first:lowest + 1], np.log(lrs[first:lowest + 1]))
    return float(lrs[first + int(np.argmin(slope))])


# ---------------------------------------------------------------------------- the result

@dataclass
class LRFindResult:
    """What a range test measured and suggests.

    lrs : (n,) float64, the rate of each iteration run (n <= the iterations asked: an early
        stop ends it)
    losses : (n,) float64, each iteration's mini-batch loss (at its rate, before its update)
    smoothed : (n,) float64, their bias-corrected moving average (see :mod:`cnnkit.lr_find`)
    suggestion : the suggested rate, by ``rule``
    rule : the rule's name, a key of :data:`RULES`; ``rule_text`` states it
    suggestions : every rule's rate for this curve (the suggestion is ``suggestions[rule]``)
    stopped : why the test ended: "end" (every iteration ran), "diverged" (the smoothed loss
        passed ``diverge`` x its minimum) or "nonfinite" (a loss was NaN or infinite)
    start, end, iterations, beta, diverge : the test's settings
    settings : the run's settings it trained with (:func:`cnnkit.lr_find.lr_find` fills them;
        empty from :func:`range_test`)
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: float
    rule: str
    suggestions: dict
    stopped: str
    start: float
    end: float
    iterations: int
    beta: float
    diverge: float = DIVERGE
    settings: dict = field(default_factory=dict)

    @property
    def rule_text(self) -> str:
        """The rule in words, as printed and documented."""
        return f"{self.rule}: {RULES[self.rule]}"

    def summary(self) -> str:
        """One line: the suggestion, the rule, how many iterations over which rates, why it
        stopped."""
        how = {"end": "ran to the end",
               "diverged": f"stopped when the smoothed loss passed {self.diverge:g} x its minimum",
               "nonfinite": "stopped at a NaN or infinite loss"}[self.stopped]
        still = "" if self.stopped != "end" or np.argmin(self.smoothed) < len(self.lrs) - 1 \
            else "; the loss was still falling at the last rate: a larger end may find more"
        return (f"suggested lr {self.suggestion:.3g} ({self.rule_text}); {len(self.lrs)} of "
                f"{self.iterations} iterations from lr {self.start:.3g} to "
                f"{self.lrs[-1]:.3g}, {how}{still}")

    def to_dict(self) -> dict:
        """JSON types: the settings, the rule, the suggestions and the three curves (lists;
        NaN and infinities as None)."""
        return {"suggestion": self.suggestion, "rule": self.rule, "rule_text": self.rule_text,
                "suggestions": {k: (None if v is None else float(v))
                                for k, v in self.suggestions.items()},
                "stopped": self.stopped, "start": self.start, "end": self.end,
                "iterations": self.iterations, "beta": self.beta, "diverge": self.diverge,
                "settings": dict(self.settings),
                "lrs": jsonable(self.lrs), "losses": jsonable(self.losses),
                "smoothed": jsonable(self.smoothed)}

    def plot(self, path=None, title: str | None = None):
        """The loss against the rate (log x): each mini-batch's loss (faint), the smoothed
        loss, and the suggestion marked; the y range is the smoothed curve's, so the blow-up
        at the end does not flatten the rest.

        Parameters
        ----------
        path : write the figure there as a PNG (atomically); None writes nothing
        title : the figure's title (default: the suggestion and the rule)

        Returns
        -------
        Figure : a ``matplotlib.figure.Figure``, shown as a notebook cell's last expression
            (see :mod:`cnnkit.viz`)
        """
        from .viz._figure import finish, new_figure      # matplotlib: keeps the import cheap

        fig = new_figure(7, 4.2)
        ax = fig.subplots()
        ax.plot(self.lrs, self.losses, color="tab:blue", alpha=0.3, linewidth=0.8,
                label="each mini-batch")
        ax.plot(self.lrs, self.smoothed, color="tab:blue", linewidth=1.8,
                label=f"smoothed (moving average, beta {self.beta:g})")
        ax.axvline(self.suggestion, color="tab:red", linestyle="--", linewidth=1.2,
                   label=f"suggestion {self.suggestion:.3g} ({self.rule})")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("training loss")
        finite = self.smoothed[np.isfinite(self.smoothed)]
        if len(finite):
            lo, hi = float(finite.min()), float(min(finite.max(), finite[0] * 1.5,
                                                    finite.min() * self.diverge))
            hi = max(hi, float(finite[0]), lo + 1e-12)
            pad = 0.05 * (hi - lo)
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(title or f"Learning-rate range test: suggested {self.suggestion:.3g} "
                              f"({self.rule})")
        ax.legend(loc="lower left", fontsize="small")    # the flat, high start is upper left
        ax.grid(True, which="major", alpha=0.3)
        return finish(fig, path)

    def __repr__(self) -> str:
        return f"LRFindResult({self.summary()})"


# ---------------------------------------------------------------------------- the test

def _settled(beta: float) -> int:
    """The iterations before a moving average of ``beta`` rests on about 1 / (1 - beta) losses
    (10 at 0.9): the points "steepest" skips."""
    return int(round(1.0 / (1.0 - beta)))


class _Stop(Exception):
    """Ends the Trainer's loop when the test is done (raised from a callback)."""


class _RangeCallback(Callback):
    """Sets each iteration's rate before its batch; records its loss after; ends the test."""

    def __init__(self, lrs, beta, diverge, bar):
        self.lrs, self.beta, self.diverge, self.bar = lrs, beta, diverge, bar
        self.losses, self.smoothed, self.stopped = [], [], "end"
        self._average, self._lowest = 0.0, math.inf

    def on_batch_begin(self, batch, logs):
        self.trainer.optimizer.lr = float(self.lrs[len(self.losses)])

    def on_batch_end(self, batch, logs):
        loss, i = float(logs["loss"]), len(self.losses)
        self._average = self.beta * self._average + (1.0 - self.beta) * loss
        smoothed = self._average / (1.0 - self.beta ** (i + 1))     # as smooth() computes it
        self.losses.append(loss)
        self.smoothed.append(smoothed)
        self._lowest = min(self._lowest, smoothed)
        self.bar.update()
        if not math.isfinite(smoothed):
            self.stopped = "nonfinite"
        elif smoothed > self.diverge * self._lowest:
            self.stopped = "diverged"
        elif len(self.losses) < len(self.lrs):
            return
        raise _Stop


def range_test(model, optimizer, x, y, *, loss: str = "softmax", batch_size: int = 64,
               seed: int = 0, preprocess=None, augment=None, start: float = START,
               end: float = END, iterations: int = ITERATIONS, beta: float | None = None,
               diverge: float = DIVERGE, rule: str = DEFAULT_RULE,
               progress: bool = False) -> LRFindResult:
    """Run the range test on ``model`` with ``optimizer``, which it trains and leaves changed
    (give copies: :func:`lr_find` and ``fit(lr="find")`` do).

    The steps are the :class:`cnnkit.train.Trainer`'s, with a Trainer seeded by ``seed``: the
    same batch order (a permutation per pass over the data; the data is cycled when the
    iterations outnumber its batches), augmentation and update as a training run's first
    iterations, only the rate differs.

    Parameters
    ----------
    model : a :class:`cnnkit.nn.Module`
    optimizer : a :mod:`cnnkit.optim` optimizer over ``model.named_parameters()``; its rate is
        set before every step
    x, y : the training images (N, ...) (arrays, or a lazy :class:`cnnkit.data.Images`) and
        labels (N,); N must be at least ``batch_size``
    loss, batch_size, seed, preprocess, augment : as the Trainer's
    start, end, iterations : the rates tried, ``schedule(start, end, iterations)``
    beta : the smoothing, in [0, 1); None: :func:`default_beta` of ``iterations``
    diverge : stop once the smoothed loss exceeds ``diverge`` x its minimum
    rule : how the suggestion is read (:data:`RULES`)
    progress : show a bar over the iterations

    Returns
    -------
    LRFindResult

    Raises
    ------
    UsageError
        For a bad setting, or fewer images than one batch, in one line.
    CnnkitError
        When the curve has no descent to read a rate from (:func:`suggest`).
    TrainingInterrupted
        On a stop signal (Ctrl-C, SIGTERM, SIGHUP).
    """
    check_range(start, end, iterations, beta, diverge, rule)
    beta = default_beta(iterations) if beta is None else beta
    n = len(y)
    if n < batch_size:
        raise UsageError(f"the range test needs at least one batch of {batch_size} training "
                         f"images, and the training split holds {n}: every step would see the "
                         f"same images; give a smaller --batch-size or more data")
    lrs = schedule(start, end, iterations)
    passes = -(-iterations // -(-n // batch_size))          # ceil(iterations / batches per pass)
    with Bar(iterations, "lr find", enabled=progress) as bar:
        recorder = _RangeCallback(lrs, beta, diverge, bar)
        trainer = Trainer(model, optimizer, loss=loss, batch_size=batch_size, epochs=passes,
                          seed=seed, augment=augment, preprocess=preprocess, progress=False,
                          log=None, restore_best=False, callbacks=[recorder])
        try:
            # the test drives the net to blow up on purpose: an overflow is a result here
            with np.errstate(over="ignore", invalid="ignore"):
                trainer.fit((x, y))
        except _Stop:
            pass
        except TrainingDiverged:          # the loss was NaN or infinite: recorded up to there
            recorder.stopped = "nonfinite"
        except TrainingInterrupted as err:
            raise TrainingInterrupted(f"the learning-rate range test was stopped after "
                                      f"{len(recorder.losses)} of {iterations} iterations",
                                      signum=err.signum, at_once=err.at_once) from err
    done = len(recorder.losses)
    lrs, smoothed = lrs[:done], np.asarray(recorder.smoothed, dtype=np.float64)
    suggestions = {}
    for name in RULES:
        try:
            suggestions[name] = suggest(lrs, smoothed, name, skip=_settled(beta))
        except CnnkitError:
            if name == rule:
                raise
            suggestions[name] = None
    return LRFindResult(lrs=lrs, losses=np.asarray(recorder.losses, dtype=np.float64),
                        smoothed=smoothed, suggestion=suggestions[rule], rule=rule,
                        suggestions=suggestions, stopped=recorder.stopped, start=float(start),
                        end=float(end), iterations=int(iterations), beta=float(beta),
                        diverge=float(diverge))
