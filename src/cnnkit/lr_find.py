"""The learning-rate range test: which rates lower the loss, and a suggested one.

    result = lr_find("folder:photos", "resnet20", batch_size=32)
    result.suggestion, result.rule_text, result.plot()
    cnnkit.fit("folder:photos", "resnet20", lr=result.suggestion)      # or lr="find"

A copy of the net starts from its initial weights and trains for ``iterations`` mini-batches
while the learning rate grows exponentially from ``start`` to ``end`` (the test of Smith's
"Cyclical learning rates for training neural networks"):

    lr_i = start * (end / start) ** (i / (iterations - 1)),        i = 0 .. iterations - 1

so ``lrs[0] == start`` and, when no early stop comes, ``lrs[-1] == end``. Each iteration's
mini-batch loss is recorded and smoothed by an exponential moving average with bias correction
(the smoothing of Adam's moments):

    a_i = beta * a_{i-1} + (1 - beta) * loss_i,    a_{-1} = 0
    smoothed_i = a_i / (1 - beta ** (i + 1))

A moving average lags its input by about ``beta / (1 - beta)`` iterations, so ``beta``
defaults to :func:`default_beta`, ``1 - 20 / iterations`` (0.9 at the default 200 iterations,
0.8 at 100): a lag of a twentieth of the test, 0.4 decade of the 8 from 1e-7 to 10. The usual
fixed 0.98 lags 49 iterations, which at 100 iterations is 4 decades: on MNIST it moved the
smoothed curve's descent, and the suggestion, far to the right.

The test stops early once ``smoothed_i > diverge * min(smoothed_0..i)`` (the loss has blown
up: larger rates only tell the same) or a loss is NaN or infinite. The suggestion is read from
the smoothed curve by a stated rule (:data:`RULES`):

- ``"minimum"`` (the default): a tenth of the rate at the smoothed loss's minimum;
- ``"steepest"``: the rate at which the smoothed loss falls fastest against ln(lr),
  ``argmin_i d smoothed / d ln(lr)`` (NumPy's central differences), among the iterations from
  the ``1 / (1 - beta)``-th (10 at 200 iterations: before it the average rests on a few
  losses, and one noisy batch can look steep) up to the smoothed loss's minimum.

The default was decided by a measurement (``cnnkit experiment lr-find``, three seeds; the
guide's "Finding a learning rate" gives the numbers): on MNIST and on a folder of PNG digits,
each rule's suggestion trained within the noise of the best of a grid of 5 rates from 1e-4 to
1e-1, and "minimum"'s rate moved less from seed to seed (within a factor of 1.8 where
"steepest"'s moved by a factor of 9, once taking a noisy drop just before the minimum for the
steepest fall).

:func:`lr_find` runs the test with everything a training run of the same settings uses: the
data source, the validation split, the preprocessing, the augmentation, the loss, the
optimizer (its momentum, weight decay), the batch size and the seed (the shuffle and the
augmentation draw the same numbers as the run's first epochs). ``cnnkit.fit(lr="find")`` and
``cnnkit train --lr find`` run it first and train with the suggestion, recorded in the
checkpoint as a number. :func:`range_test` is the test itself, on a net and an optimizer of
yours.
"""

from __future__ import annotations

from ._lr_range import (DEFAULT_RULE, DIVERGE, END, FIND, ITERATIONS, MAX_ITERATIONS, RULES,
                        START, LRFindResult, check_range, default_beta, range_test, schedule,
                        smooth, suggest)
from .app.config import RunConfig
from .app.training import range_test_for_run
from .errors import UsageError

__all__ = ["lr_find", "range_test", "LRFindResult", "schedule", "smooth", "suggest", "RULES",
           "default_beta", "DEFAULT_RULE", "FIND", "MAX_ITERATIONS"]

# ---------------------------------------------------------------------------- from settings

#: fit's settings that have no meaning for a range test alone (it writes nothing, starts fresh)
_NOT_HERE = ("out", "name", "overwrite", "resume", "report")


def lr_find(data=None, model=None, *, start: float = START, end: float = END,
            iterations: int = ITERATIONS, rule: str = DEFAULT_RULE, beta: float | None = None,
            diverge: float = DIVERGE, classes=None, log=None, **settings) -> LRFindResult:
    """The range test for the run ``cnnkit.fit(data, model, **settings)`` would train.

    A copy of the net the run would start from (its initial weights; a Module of yours is
    copied, never changed) is trained with the run's data pipeline, loss, optimizer, weight
    decay, batch size and seed while the rate grows from ``start`` to ``end`` (see the module
    docstring for the schedule, the smoothing, the early stop and the rules).

    Parameters
    ----------
    data, model, classes : as :func:`cnnkit.fit`'s
    start, end : the first and last rate tried, 0 < start < end
    iterations : the training steps, 2 .. MAX_ITERATIONS (the data is cycled when it holds
        fewer batches)
    rule : how the suggestion is read, a key of :data:`RULES`
    beta : the smoothing of the loss, in [0, 1); None: ``default_beta(iterations)``
    diverge : the early stop's factor, > 1
    log : a callable that gets the data's notes (images skipped, classes found); None: none
    **settings : ``fit``'s settings (``batch_size``, ``optimizer``, ``weight_decay``,
        ``seed``, ``augment``, ``limit``, ``progress``, ...); those of a run folder
        (``out``, ``name``, ``overwrite``, ``resume``, ``report``) are refused, and ``lr``,
        ``epochs`` and the schedule's play no part

    Returns
    -------
    LRFindResult : ``suggestion``, ``rule``, ``lrs``, ``losses``, ``smoothed``, ``plot()``,
        ``to_dict()``

    Raises
    ------
    TypeError
        For a keyword that is not a setting.
    CnnkitError
        For a wrong value, data or net, or a curve with no descent, in one line.
    """
    refused = sorted(set(settings) & set(_NOT_HERE))
    if refused:
        raise UsageError(f"lr_find trains a copy of the net and writes nothing; "
                         f"{', '.join(refused)} belong to a training run (cnnkit.fit)")
    check_range(start, end, iterations, beta, diverge, rule)
    config = RunConfig.from_keywords("lr_find", **settings)
    return range_test_for_run(config, data, model, classes=classes, start=start, end=end,
                              log=log, iterations=iterations, rule=rule, beta=beta,
                              diverge=diverge)
