"""`LiveFeed`: the stats recorder's observer (`stats/port.StatsObserver`) that keeps what a live page shows.

It is fed only from what the recorder already built: every snapshot document it queued (standalone: source
`local`; on the master: `master` and the per-worker `worker` documents made from the workers' reports) and
each node's sink status. `on_snapshot` and `on_status` run in the recorder's greenlet (never on the request
hot path) and only store: one `Sample` (a few fields and a reference to the document's own histogram copy)
into a bounded ring. Windows and percentiles are computed when a page asks (`figures.py`).

Memory bound: `max_points` samples (default 100: 5 minutes of 3-s snapshots) for each of at most
`max_endpoints` (50) endpoints of this node's source plus its Total, and one Total series per worker (at most
`max_workers`, 200), plus one computed row per sample once a page asked. Measured with tracemalloc
(docs/report.md, "Live"): a sample holds its histogram, ~1.5 KB with 20 buckets, ~5 KB with 80, ~40 KB
with 400 (Locust's buckets for response times spread from 1 ms to 100 s: the most there can be), a row
~0.65 KB; so 0.2 / 0.5 / 3.9 MiB per full series, and at most 51 + workers such series.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .health import HealthBook
from .series import LiveSeries

MAX_POINTS = 100
MAX_ENDPOINTS = 50  # as many as the report makes selectable
MAX_WORKERS = 200
WINDOW_S = 10.0  # the page's windows: p50/p95/p99, rps and failures/s over the last ~10 s at each point
OWN_SOURCES = ("local", "master")

EndpointKey = tuple[str, str]  # (method, name); ("", "Aggregated") is Total


class LiveFeed:
    """Bounded rings of the current run's snapshots per endpoint and per worker, and every node's health."""

    def __init__(
        self,
        max_points: int = MAX_POINTS,
        max_endpoints: int = MAX_ENDPOINTS,
        max_workers: int = MAX_WORKERS,
        window_s: float = WINDOW_S,
    ) -> None:
        self.max_points = max_points
        self.max_endpoints = max_endpoints
        self.max_workers = max_workers
        self.window_s = window_s
        self.health = HealthBook()
        self.version = 0  # changes with every document or status: what a page's cache is keyed on
        self._new_run(None)

    def _new_run(self, run_id: str | None) -> None:
        self.run_id = run_id
        self.total = LiveSeries(self.max_points)
        self.endpoints: dict[EndpointKey, LiveSeries] = {}
        self.workers: dict[str, LiveSeries] = {}
        self.untracked: set[EndpointKey] = set()  # endpoints past max_endpoints (Locust holds them anyway)
        self.final = False
        self.last_stamp: str | None = None

    # ----- StatsObserver ---------------------------------------------------------------------------------
    def on_snapshot(self, doc: dict[str, Any]) -> None:
        """Keep one snapshot document's cumulative figures (no copy of its histogram, no computation)."""
        run_id = doc.get("run_id")
        if run_id != self.run_id:
            self._new_run(run_id)
        self.version += 1
        source = doc.get("source")
        aggregated = doc.get("is_aggregated")
        if source == "worker":
            if aggregated:
                self._worker(str(doc.get("node"))).add(doc)
            return
        if source not in OWN_SOURCES:
            return
        if aggregated:
            self.total.add(doc)
            self.final = bool(doc.get("final"))
            self.last_stamp = doc.get("@timestamp")
            return
        key = (str(doc.get("request_type") or ""), str(doc.get("name")))
        series = self.endpoints.get(key)
        if series is None:
            if len(self.endpoints) >= self.max_endpoints:
                self.untracked.add(key)
                return
            series = self.endpoints[key] = LiveSeries(self.max_points)
        series.add(doc)

    def on_status(self, node: str, status: dict[str, Any]) -> None:
        """Keep a node's latest sink status (the recorder's dict is not changed after it is shown)."""
        self.version += 1
        self.health.update(str(node), dict(status) if isinstance(status, Mapping) else {})

    def _worker(self, node: str) -> LiveSeries:
        series = self.workers.get(node)
        if series is None:
            if len(self.workers) >= self.max_workers:
                return LiveSeries(1)  # past the bound: not kept
            series = self.workers[node] = LiveSeries(self.max_points)
        return series
