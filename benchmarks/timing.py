"""The timer: warm-up calls, then the median wall time of repeated calls.

What is measured: the wall-clock time (``time.perf_counter``) of one call of a function of no
arguments, taken ``repeats`` times after ``warmup`` untimed calls. The warm-up pays for first-call
costs (allocator growth, lazy initialisation, caches) so that the samples show the steady state.
The median is reported, with the samples, because it ignores the odd slow call that a shared
machine produces; the minimum and the interquartile range come along in the JSON.

The garbage collector is run before the samples and kept off while they are taken (as ``timeit``
does), so that a collection started by one framework is not charged to the next call. A time
``budget`` in seconds stops the repeats early, after at least ``min_repeats`` samples, so a slow
case does not take minutes; the number of samples actually taken is recorded.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field

__all__ = ["Timing", "measure"]


@dataclass(frozen=True)
class Timing:
    """Samples of one measurement, in seconds; ``median_ms`` is the number reported."""

    samples: tuple[float, ...] = field(repr=False)

    @property
    def median_ms(self) -> float:
        return 1e3 * statistics.median(self.samples)

    @property
    def min_ms(self) -> float:
        return 1e3 * min(self.samples)

    @property
    def iqr_ms(self) -> float:
        """Interquartile range (0 for fewer than two samples)."""
        if len(self.samples) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return 1e3 * (q3 - q1)

    def to_dict(self) -> dict:
        return {"median_ms": self.median_ms, "min_ms": self.min_ms, "iqr_ms": self.iqr_ms,
                "repeats": len(self.samples)}


def measure(fn, *, repeats: int = 20, warmup: int = 3, budget: float = float("inf"),
            min_repeats: int = 3) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then up to ``repeats`` timed ones.

    Parameters
    ----------
    fn : callable of no arguments; its result is dropped after each call
    repeats : int >= 1, the most samples to take
    warmup : int >= 0, untimed calls first
    budget : seconds; once the samples add up to more, stop (after ``min_repeats`` of them)
    min_repeats : the fewest samples taken whatever the budget (capped by ``repeats``)

    Returns
    -------
    Timing

    Raises
    ------
    ValueError
        If repeats < 1 or warmup < 0.

    Examples
    --------
    >>> t = measure(lambda: sum(range(100)), repeats=5, warmup=1)
    >>> len(t.samples), t.median_ms >= 0
    (5, True)
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"measure: need repeats >= 1 and warmup >= 0, got repeats={repeats}, "
                         f"warmup={warmup}")
    for _ in range(warmup):
        fn()
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    samples = []
    try:
        total = 0.0
        while len(samples) < repeats:
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            samples.append(elapsed)
            total += elapsed
            if total > budget and len(samples) >= min(min_repeats, repeats):
                break
    finally:
        if was_enabled:
            gc.enable()
    return Timing(tuple(samples))
