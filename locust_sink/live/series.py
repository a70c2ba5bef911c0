"""Bounded rings of cumulative snapshots, and the exact sliding windows between them.

A `LiveSeries` is one (source, node, endpoint) as the stats recorder snapshots it: cumulative counters and
Locust's histogram, one `Sample` per snapshot, at most `max_points` of them (older ones fall out of the
ring). Its rows (`model.SERIES_COLUMNS`) are computed only when a page asks, and only for the samples added
since the last ask: a row is the difference between its sample and the newest earlier sample at least
`window_s` older (histogram difference, `report/histogram.py`; never an average of percentiles), made into
columns by the report's own `timeline.window_row`. Nobody watching, a snapshot costs one tuple of fields.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from ..report import histogram as h
from ..report.requests import epoch
from ..report.series import Window
from ..report.timeline import window_row

TOLERANCE_S = 0.5  # snapshot times jitter by the loop's scheduling: a base this much too young still counts


class Sample:
    """One snapshot document's cumulative figures (the histogram is the document's own copy, not Locust's)."""

    __slots__ = ("stamp", "requests", "failures", "none_requests", "total_rt", "hist", "users", "interval_s", "_t")

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.stamp = doc.get("@timestamp")
        self.requests = int(doc.get("num_requests") or 0)
        self.failures = int(doc.get("num_failures") or 0)
        self.none_requests = int(doc.get("num_none_requests") or 0)
        self.total_rt = float(doc.get("total_response_time") or 0.0)
        self.hist: Mapping[Any, int] = doc.get("response_times") or {}
        self.users = doc.get("user_count")
        self.interval_s = float(doc.get("interval_s") or 0.0)
        self._t: float | None = None

    @property
    def t(self) -> float:
        """Epoch seconds of the snapshot (parsed when first needed: only a watched series pays for it)."""
        if self._t is None:
            self._t = epoch(self.stamp) or 0.0
        return self._t

    @property
    def valid(self) -> int:
        return self.requests - self.none_requests


class LiveSeries:
    """The last `max_points` samples of one series and their rows, computed lazily."""

    def __init__(self, max_points: int) -> None:
        self.samples: deque[Sample] = deque(maxlen=max_points)
        self.rows: deque[dict[str, Any]] = deque(maxlen=max_points)
        self.pending = 0  # samples at the end of the ring without a row yet
        self.complete = True  # the ring still holds the series' first sample (its window starts at zero)

    def add(self, doc: Mapping[str, Any]) -> None:
        samples = self.samples
        if len(samples) == samples.maxlen:
            self.complete = False
        samples.append(Sample(doc))
        self.pending = min(self.pending + 1, len(samples))

    @property
    def last(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def update(self, window_s: float) -> deque[dict[str, Any]]:
        """Rows for the samples added since the last call; returns every row the ring holds."""
        n = len(self.samples)
        for i in range(n - self.pending, n):
            self.rows.append(self.row(i, window_s))
        self.pending = 0
        return self.rows

    def row(self, i: int, window_s: float) -> dict[str, Any]:
        """The window ending at sample `i`: from the newest earlier sample at least `window_s` older, else
        from the oldest one held, or from zero at the run's start while the ring still holds the first
        sample; as `SERIES_COLUMNS` values."""
        samples = self.samples
        s = samples[i]
        base: Sample | None = None
        for j in range(i - 1, -1, -1):
            base = samples[j]
            if base.t <= s.t - window_s + TOLERANCE_S:
                break
        zero_t = samples[0].t - samples[0].interval_s if self.complete and samples[0].interval_s > 0 else None
        if base is not None and base.requests > s.requests:
            base, zero_t = None, samples[i - 1].t  # Locust's stats were reset in between: from zero again
        elif zero_t is not None and (base is None or base.t > s.t - window_s + TOLERANCE_S):
            base = None  # not a full window back yet: the window from the run's start is closer to window_s
        if base is None:
            start = zero_t if zero_t is not None and zero_t < s.t else s.t - (s.interval_s or 1.0)
            window = Window(start, s.t, s.requests, s.failures, s.valid, s.total_rt, h.parse(s.hist), s.users)
        else:
            window = Window(
                base.t,
                s.t,
                s.requests - base.requests,
                s.failures - base.failures,
                s.valid - base.valid,
                s.total_rt - base.total_rt,
                h.subtract(h.parse(s.hist), h.parse(base.hist)),
                s.users,
            )
        return window_row(window)
