"""Time series from cumulative stats snapshots, with exact per-window figures.

A series is one (source, node, method, name) row of `<prefix>-stats` over a run: cumulative counters and
histograms, one point per snapshot. A window between two points is their difference, so its percentiles are
exact for that window. To keep the report small whatever the run length, a series keeps at most
`2 * max_points` points: past that, every other point is dropped (the counters are cumulative, so dropping a
point merges two windows, still exactly). The stride is counted per clock (one clock per source and node:
all rows of one snapshot share its timestamp), so the rows of one node stay on the same window edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import histogram as h

DEFAULT_MAX_POINTS = 240


@dataclass
class Point:
    t: float  # epoch seconds of the snapshot
    requests: int
    failures: int
    none_requests: int
    total_rt: float
    raw_hist: dict[str, Any] | None  # as stored; parsed only for the points a series keeps
    users: int | None = None
    final: bool = False
    stamp: Any = None  # the snapshot's @timestamp as stored (to ask Elasticsearch for the same snapshot's rows)
    _hist: h.Histogram | None = None

    @property
    def hist(self) -> h.Histogram:
        if self._hist is None:
            self._hist = h.parse(self.raw_hist)
            self.raw_hist = None
        return self._hist

    @classmethod
    def from_doc(cls, t: float, doc: dict[str, Any]) -> Point:
        return cls(
            t=t,
            requests=int(doc.get("num_requests") or 0),
            failures=int(doc.get("num_failures") or 0),
            none_requests=int(doc.get("num_none_requests") or 0),
            total_rt=float(doc.get("total_response_time") or 0.0),
            raw_hist=doc.get("response_times"),
            users=doc.get("user_count"),
            final=bool(doc.get("final")),
            stamp=doc.get("@timestamp"),
        )


@dataclass
class Window:
    start: float
    end: float
    requests: int
    failures: int
    valid: int  # requests with a response time
    total_rt: float
    hist: h.Histogram
    users: int | None

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 1e-9)


class Clock:
    """The snapshot times of one (source, node): decides which points every series of it keeps."""

    def __init__(self, max_points: int) -> None:
        self.max_points = max_points
        self.stride = 1
        self.ticks: dict[float, int] = {}

    def tick(self, t: float) -> int:
        index = self.ticks.get(t)
        if index is None:
            index = self.ticks[t] = len(self.ticks)
            if len(self.ticks) // self.stride > 2 * self.max_points:
                self.stride *= 2
        return index

    def keeps(self, index: int) -> bool:
        return index % self.stride == 0


@dataclass
class Series:
    clock: Clock
    points: list[tuple[int, Point]] = field(default_factory=list)

    def add(self, t: float, doc: dict[str, Any]) -> None:
        index = self.clock.tick(t)
        point = Point.from_doc(t, doc)
        if self.points and self.points[-1][1].t > t:
            return  # an older copy of a snapshot (e.g. loaded twice): the cumulative figures only grow
        # the newest point is always kept; the one before it only if the stride wants it
        if self.points and not self.clock.keeps(self.points[-1][0]) and not self.points[-1][1].final:
            self.points.pop()
        self.points.append((index, point))
        if len(self.points) > 2 * self.clock.max_points + 2:
            self.points = [p for i, p in enumerate(self.points) if self.clock.keeps(p[0]) or i == len(self.points) - 1]

    def stamps(self) -> list[Any]:
        """The stored @timestamp of every point kept (thinned as it is now)."""
        return [p.stamp for _, p in self.points]

    @property
    def last(self) -> Point | None:
        return self.points[-1][1] if self.points else None

    def windows(self, start: float | None) -> list[Window]:
        """Consecutive differences, the first from zero at `start` (the run's start). A point followed within
        a second (or a quarter of the usual interval) by the next one is skipped: the final snapshot comes
        milliseconds after the last periodic one, and a window that short is only noise."""
        out: list[Window] = []
        prev: Point | None = None
        prev_t = start
        points = [p for _, p in self.points]
        gaps = sorted(b.t - a.t for a, b in zip(points, points[1:], strict=False))
        min_gap = max(1.0, 0.25 * gaps[len(gaps) // 2]) if gaps else 0.0
        points = [p for i, p in enumerate(points) if i == len(points) - 1 or points[i + 1].t - p.t >= min_gap]
        for point in points:
            if prev is not None and point.requests < prev.requests:
                prev = None  # a stats reset: counting starts again from zero
            if prev is None:
                begin = prev_t if prev_t is not None and prev_t < point.t else point.t - 1.0
                window = Window(
                    begin,
                    point.t,
                    point.requests,
                    point.failures,
                    point.requests - point.none_requests,
                    point.total_rt,
                    dict(point.hist),
                    point.users,
                )
            else:
                window = Window(
                    prev.t,
                    point.t,
                    point.requests - prev.requests,
                    point.failures - prev.failures,
                    (point.requests - point.none_requests) - (prev.requests - prev.none_requests),
                    point.total_rt - prev.total_rt,
                    h.subtract(point.hist, prev.hist),
                    point.users,
                )
            if window.end > window.start:
                out.append(window)
            prev, prev_t = point, point.t
        return out
