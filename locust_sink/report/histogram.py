"""Locust's response-time histogram math, without importing Locust.

A histogram is `{rounded response time in ms: count}` (Locust's `StatsEntry.response_times`; the keys are
strings in the stored JSON and ints here). Percentiles walk it exactly as Locust's
`calculate_response_time_percentile` does, so a percentile of a histogram equals Locust's own figure; a
window's histogram is the difference of two cumulative snapshots' histograms (never an average of
percentiles). `tests/test_report_units.py` proves the equality against Locust's functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Histogram = dict[int, int]

# the percentiles the report shows, as fractions and as column names
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 0.5),
    ("p90", 0.9),
    ("p95", 0.95),
    ("p99", 0.99),
    ("p99_9", 0.999),
)


def bucket(response_time: float) -> int:
    """Locust's rounding of one response time into its histogram key (`locust.stats.bucket_response_time`)."""
    if response_time < 100:
        return round(response_time)
    if response_time < 1000:
        return int(round(response_time, -1))
    if response_time < 10000:
        return int(round(response_time, -2))
    return int(round(response_time, -3))


def parse(raw: Mapping[Any, Any] | None) -> Histogram:
    """A stored histogram (string keys, from JSON) as ints; bad entries are skipped."""
    if not raw:
        return {}
    try:  # the usual case: Locust's int keys as JSON strings, int counts
        return {int(key): int(count) for key, count in raw.items() if count}
    except (TypeError, ValueError):
        pass
    hist: Histogram = {}
    for key, count in raw.items():
        try:
            ms, n = int(float(key)), int(count)
        except (TypeError, ValueError):
            continue
        if n:
            hist[ms] = hist.get(ms, 0) + n
    return hist


def add(into: Histogram, other: Mapping[int, int]) -> Histogram:
    for ms, n in other.items():
        into[ms] = into.get(ms, 0) + n
    return into


def subtract(newer: Mapping[int, int], older: Mapping[int, int]) -> Histogram:
    """The window between two cumulative histograms of one series (`newer` taken after `older`)."""
    out = {ms: n - older.get(ms, 0) for ms, n in newer.items()}
    return {ms: n for ms, n in out.items() if n > 0}


def percentile(hist: Mapping[int, int], n: int, percent: float) -> int:
    """Locust's `calculate_response_time_percentile`: n = requests with a response time."""
    target = int(n * percent)
    processed = 0
    for ms in sorted(hist, reverse=True):
        processed += hist[ms]
        if n - processed <= target:
            return ms
    return 0


def percentiles(hist: Mapping[int, int], n: int, wanted: Iterable[tuple[str, float]] = PERCENTILES) -> dict[str, int]:
    """Several of Locust's percentiles in one descending walk (same values as `percentile` for each)."""
    pairs = sorted(wanted, key=lambda p: p[1], reverse=True)
    result = {name: 0 for name, _ in pairs}
    if n <= 0 or not hist:
        return result
    keys = sorted(hist, reverse=True)
    i, processed = 0, 0
    for name, percent in pairs:
        target = int(n * percent)
        while i < len(keys) and (i == 0 or n - processed > target):
            processed += hist[keys[i]]
            i += 1
        if n - processed <= target and i:
            result[name] = keys[i - 1]
    return result


def total(hist: Mapping[int, int]) -> int:
    return sum(hist.values())
