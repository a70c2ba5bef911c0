"""What the report takes from the request documents: status codes over time, the slowest requests, error
groups, per-endpoint and per-node document counts.

Elasticsearch sources fill `RequestFigures` with aggregations (`es.py`); file sources stream the documents
through `RequestAccumulator`, which keeps only bounded state: per-second status counters, a heap of the N
slowest requests and at most `MAX_ERROR_KEYS` error groups.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import histogram as h
from .model import endpoint_key

MAX_ERROR_KEYS = 1000
SLOWEST_FIELDS = ("time", "node", "method", "name", "url", "status", "response_time", "success")


def epoch(value: Any) -> float | None:
    """ISO-8601 (`2026-12-03T07:35:36.000Z`) or epoch seconds -> epoch seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class EndpointDocs:
    """Per-endpoint figures over the request documents (a fallback when no snapshot exists)."""

    requests: int = 0
    failures: int = 0
    total_rt: float = 0.0
    min_rt: float | None = None
    max_rt: float = 0.0
    total_len: int = 0
    hist: h.Histogram = field(default_factory=dict)  # Locust's buckets (file sources)
    percentiles: dict[str, float] | None = None  # Elasticsearch's `percentiles` (ES sources)


@dataclass
class RequestFigures:
    documents: int = 0
    first: float | None = None
    last: float | None = None
    status_bucket_s: float = 1.0
    status: dict[int, Counter] = field(default_factory=dict)  # bucket index (start // bucket_s) -> {code: n}
    slowest: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # method, name, error, count, first/last seen
    endpoints: dict[str, EndpointDocs] = field(default_factory=dict)
    per_node: Counter = field(default_factory=Counter)
    sampled: bool = False


class RequestAccumulator:
    """Streams request documents (one dict at a time) into a `RequestFigures`."""

    def __init__(self, slowest: int = 20) -> None:
        self.figures = RequestFigures()
        self._slowest_n = slowest
        self._heap: list[tuple[float, int, dict[str, Any]]] = []
        self._errors: dict[tuple[str, str, str], list] = {}
        self._other_errors: list = [0, None, None]
        self._seconds: dict[str, float] = {}

    def add(self, doc: dict[str, Any]) -> None:
        """One request document (this runs once per request of the run: kept lean)."""
        f = self.figures
        f.documents += 1
        t = self._epoch(doc.get("@timestamp"))
        rt = doc.get("response_time")
        method, name = doc.get("request_type") or "", doc.get("name") or ""
        f.per_node[doc.get("node") or ""] += 1
        if "sample_rate" in doc:
            f.sampled = True
        if t is not None:
            if f.first is None or t < f.first:
                f.first = t
            if f.last is None or t > f.last:
                f.last = t
            second = int(t)
            counts = f.status.get(second)
            if counts is None:
                counts = f.status[second] = Counter()
            code = doc.get("status_code")
            counts[code if type(code) is int else 0] += 1
        key = endpoint_key(method, name)
        ep = f.endpoints.get(key)
        if ep is None:
            ep = f.endpoints[key] = EndpointDocs()
        ep.requests += 1
        ep.total_len += doc.get("response_length") or 0
        if type(rt) in (float, int):
            ep.total_rt += rt
            if ep.min_rt is None or rt < ep.min_rt:
                ep.min_rt = rt
            if rt > ep.max_rt:
                ep.max_rt = rt
            ms = h.bucket(rt)
            ep.hist[ms] = ep.hist.get(ms, 0) + 1
            heap = self._heap
            if len(heap) < self._slowest_n:
                heapq.heappush(heap, (rt, f.documents, doc))
            elif rt > heap[0][0]:
                heapq.heapreplace(heap, (rt, f.documents, doc))
        if doc.get("success") is False:
            ep.failures += 1
            self._error((method, name, str(doc.get("exception") or "")), t)

    def _epoch(self, value: Any) -> float | None:
        """`epoch()` with the whole-second part cached: documents come in time order, many per second."""
        if type(value) is str and len(value) == 24 and value[19] == ".":
            base = self._seconds.get(value[:19])
            if base is None:
                parsed = epoch(value[:19] + "Z")
                if parsed is None:
                    return None
                if len(self._seconds) > 100_000:
                    self._seconds.clear()
                base = self._seconds[value[:19]] = parsed
            try:
                return base + int(value[20:23]) / 1000.0
            except ValueError:
                return epoch(value)
        return epoch(value)

    def _error(self, key: tuple[str, str, str], t: float | None) -> None:
        row = self._errors.get(key)
        if row is None:
            if len(self._errors) >= MAX_ERROR_KEYS:
                row = self._other_errors
            else:
                row = self._errors[key] = [0, None, None]
        row[0] += 1
        if t is not None:
            row[1] = t if row[1] is None else min(row[1], t)
            row[2] = t if row[2] is None else max(row[2], t)

    def result(self) -> RequestFigures:
        f = self.figures
        f.slowest = [slow_row(doc) for _, _, doc in sorted(self._heap, key=lambda x: (-x[0], x[1]))]
        rows = [(k, v) for k, v in self._errors.items()]
        if self._other_errors[0]:
            rows.append((("", "(other errors)", f"more than {MAX_ERROR_KEYS} distinct errors"), self._other_errors))
        f.errors = [
            {"method": m, "name": n, "error": e, "count": c, "first_seen": first, "last_seen": last}
            for (m, n, e), (c, first, last) in sorted(rows, key=lambda kv: (-kv[1][0], kv[0]))
        ]
        return f


def slow_row(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "time": epoch(doc.get("@timestamp")),
        "node": doc.get("node"),
        "method": doc.get("request_type"),
        "name": doc.get("name"),
        "url": doc.get("url"),
        "status": doc.get("status_code"),
        "response_time": doc.get("response_time"),
        "success": doc.get("success"),
    }
