"""Statistics for the suite: percentiles, per-repeat summaries and the median over repeats.

Percentiles are numpy's (``method="linear"``, Hyndman & Fan type 7: linear
interpolation between closest ranks), so ``percentile(xs, 50)`` is the usual
median; numpy is in the bench extra, like rich.
"""

from __future__ import annotations

import statistics
from typing import Iterable, NamedTuple, Optional, Sequence

import numpy as np


def percentiles(values: Iterable[float], qs: Sequence[float]) -> list[float]:
    """The ``qs``-th percentiles (each 0..100) of ``values``; ValueError if there are none."""
    xs = np.asarray(values if isinstance(values, (list, tuple, np.ndarray)) else list(values), dtype=float)
    if xs.size == 0:
        raise ValueError("percentile of an empty sequence")
    if any(not 0 <= q <= 100 for q in qs):
        raise ValueError(f"percentiles must be in 0..100, got {list(qs)}")
    return [float(v) for v in np.percentile(xs, qs, method="linear")]


def percentile(values: Iterable[float], q: float) -> float:
    return percentiles(values, [q])[0]


def median(values: Iterable[float]) -> float:
    return statistics.median(values)


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
    mid, p99, p999 = percentiles(np.asarray(samples_ns, dtype=float) / 1000.0, (50, 99, 99.9))
    return LatencySummary(len(samples_ns), mid, p99, p999)


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
