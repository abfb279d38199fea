"""The bench's one timing helper: contenders take turns, round after round, on the same machine.

Other processes on a shared machine come and go; timing each contender in its own block would
charge a busy minute to whoever ran in it. Taking turns within every round, and rotating who goes
first, exposes all contenders to the same drift, so a per-round ratio compares like with like and
its median is what one noisy round cannot move.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

__all__ = ["Samples", "best", "median", "race", "ratios", "spread"]

Samples = dict[str, list[float]]
"""Wall seconds per contender, one entry per timed round, in round order."""


def race(
    contenders: Mapping[str, Callable[[], object]], *, rounds: int, warmup: int = 1
) -> Samples:
    """Time every contender once per round, taking turns; the first `warmup` rounds are dropped.

    Warm-up rounds fill caches, connection pools and lazily built state; round r starts with the
    contender after the one that started round r - 1.
    """
    order = list(contenders.items())
    samples: Samples = {name: [] for name in contenders}
    for round_ in range(warmup + rounds):
        shift = round_ % len(order)
        for name, run in order[shift:] + order[:shift]:
            gc.collect()  # garbage left by the previous contender is not this one's cost
            started = time.perf_counter()
            run()
            elapsed = time.perf_counter() - started
            if round_ >= warmup:
                samples[name].append(elapsed)
    return samples


def best(values: Sequence[float]) -> float:
    """The least time: noise from other processes only ever adds time."""
    return min(values)


def median(values: Sequence[float]) -> float:
    """The middle value: what a robust ratio reports."""
    return statistics.median(values)


def ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Per-round ratios of two contenders' times (both ran in the same rounds)."""
    return [n / d for n, d in zip(numerator, denominator, strict=True)]


def spread(values: Sequence[float]) -> tuple[float, float]:
    """The lowest and highest value: how far one round strayed."""
    return min(values), max(values)
