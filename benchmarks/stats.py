"""Statistics for the suite: percentiles, per-repeat summaries and the median over repeats.

Percentiles use linear interpolation between closest ranks (numpy's default
``method="linear"``, Hyndman & Fan type 7), so ``percentile(xs, 50)`` is the usual
median. Pure Python: the suite must run without numpy.
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Optional, Sequence


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``; ValueError if there are none."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in 0..100, got {q}")
    xs = sorted(values)
    if not xs:
        raise ValueError("percentile of an empty sequence")
    rank = (len(xs) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


def median(values: Iterable[float]) -> float:
    return percentile(values, 50)


class Spread(NamedTuple):
    """How far repeats disagree: their minimum, maximum, and (max - min) / median in percent."""

    low: float
    high: float
    percent: float


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("spread of an empty sequence")
    mid = median(values)
    low, high = min(values), max(values)
    return Spread(low, high, 0.0 if mid == 0 else 100.0 * (high - low) / mid)


class LatencySummary(NamedTuple):
    """One repeat of a ping-pong run: round-trip times in microseconds."""

    n: int
    median_us: float
    p99_us: float
    p999_us: float


def summarize_latency(samples_ns: Sequence[int]) -> LatencySummary:
    us = [s / 1000.0 for s in samples_ns]
    return LatencySummary(len(us), median(us), percentile(us, 99), percentile(us, 99.9))


def combine_latency(repeats: Sequence[LatencySummary]) -> dict:
    """Median over repeats of each statistic, with the spread of the per-repeat medians."""
    s = spread([r.median_us for r in repeats])
    return {
        "n": sum(r.n for r in repeats),
        "n_per_repeat": [r.n for r in repeats],
        "median_us": median(r.median_us for r in repeats),
        "p99_us": median(r.p99_us for r in repeats),
        "p999_us": median(r.p999_us for r in repeats),
        "spread_percent": s.percent,
        "spread_low_us": s.low,
        "spread_high_us": s.high,
        "repeats": [r._asdict() for r in repeats],
    }


def combine_throughput(repeats: Sequence[tuple[int, float]], size: int) -> dict:
    """``repeats`` is a list of (messages, seconds); the result is the median rate over repeats."""
    rates = [n / sec for n, sec in repeats if sec > 0]
    if not rates:
        raise ValueError("no throughput repeat took measurable time")
    mid = median(rates)
    s = spread(rates)
    return {
        "n": sum(n for n, _ in repeats),
        "msgs_per_s": mid,
        "mb_per_s": mid * size / 1e6,
        "spread_percent": s.percent,
        "spread_low_msgs_per_s": s.low,
        "spread_high_msgs_per_s": s.high,
        "repeats": [{"messages": n, "seconds": sec} for n, sec in repeats],
    }


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b
