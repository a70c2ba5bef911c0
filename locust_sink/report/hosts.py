"""The system under test's hosts in a report: Metricbeat's system metrics or `locust-sink agent`'s (the same
ECS fields, locust_sink/hosts/ecs.py) for the run's time range, per `host.name`, in time windows
(docs/hosts.md).

Both sources fill one `HostBuckets`: Elasticsearch aggregates (terms on `host.name`, then a date_histogram,
then averages, sums and a timestamp count), files are streamed document by document into the same sums.
Per window: CPU and memory are averages (in %); disk and network rates are the bytes of the window divided
by the time its samples cover (distinct sample times x the mean `metricset.period`), so Metricbeat's one
document per interface or disk and the agent's one document per sample give the same bytes per second.

Column layout `HOST_COLUMNS`: `t0` / `t` the window's edges (epoch ms), `cpu` / `memory` (%), `disk_read`,
`disk_write`, `net_in`, `net_out` (bytes/s); a window without a figure holds None (a gap in the line).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..hosts import ecs
from .requests import epoch
from .search import search_for
from .source_error import SourceError

HOST_COLUMNS = ("t", "t0", "cpu", "memory", "disk_read", "disk_write", "net_in", "net_out")
MAX_HOSTS = 20
POINTS = 240  # windows over the run
GROUPS = {"disk": (ecs.DISK_READ, ecs.DISK_WRITE), "net": (ecs.NET_IN, ecs.NET_OUT)}
COLUMN_OF = {ecs.DISK_READ: "disk_read", ecs.DISK_WRITE: "disk_write", ecs.NET_IN: "net_in", ecs.NET_OUT: "net_out"}


def window_seconds(start: float, end: float) -> int:
    return max(1, math.ceil((end - start) / POINTS))


@dataclass
class Group:
    """Disk or network figures of one window: bytes per field, sample times, periods."""

    sums: dict[str, float] = field(default_factory=dict)
    times: set[float] = field(default_factory=set)
    distinct: int = 0  # from Elasticsearch: the cardinality of @timestamp
    period_sum: float = 0.0
    period_n: int = 0

    def rates(self, window: float) -> dict[str, float]:
        samples = self.distinct or len(self.times)
        covered = samples * (self.period_sum / self.period_n) if self.period_n and samples else window
        return {COLUMN_OF[f]: round(v / max(covered, 1e-3), 1) for f, v in self.sums.items()}


@dataclass
class Window:
    cpu: list[float] = field(default_factory=lambda: [0.0, 0])  # sum, count
    memory: list[float] = field(default_factory=lambda: [0.0, 0])
    groups: dict[str, Group] = field(default_factory=dict)


class HostBuckets:
    """Windows of `window_s` seconds from `start` per host, for [start, end]."""

    def __init__(self, start: float, end: float, hosts: Sequence[str] = ()) -> None:
        self.window_s = window_seconds(start, end)
        self.start = start - self.window_s  # one window of margin each side: the samples around the edges
        self.end = end + self.window_s
        self.wanted = set(hosts)
        self.hosts: dict[str, dict[int, Window]] = {}
        self.docs: dict[str, int] = {}
        self.skipped_hosts: set[str] = set()

    def _window(self, host: str, t: float) -> Window | None:
        if not self.start <= t <= self.end or (self.wanted and host not in self.wanted):
            return None
        windows = self.hosts.get(host)
        if windows is None:
            if len(self.hosts) >= MAX_HOSTS:
                self.skipped_hosts.add(host)
                return None
            windows = self.hosts[host] = {}
        index = int((t - self.start) // self.window_s)
        return windows.setdefault(index, Window())

    def add_doc(self, doc: dict[str, Any]) -> None:
        """One host-metrics document (files)."""
        t, host = epoch(doc.get(ecs.TIMESTAMP)), ecs.get(doc, ecs.HOST_NAME)
        if t is None or host is None:
            return
        window = self._window(str(host), t)
        if window is None:
            return
        self.docs[str(host)] = self.docs.get(str(host), 0) + 1
        for name, acc in ((ecs.CPU_PCT, window.cpu), (ecs.MEMORY_PCT, window.memory)):
            value = ecs.get(doc, name)
            if isinstance(value, (int, float)):
                acc[0] += float(value)
                acc[1] += 1
        period = ecs.get(doc, "metricset.period")
        for key, fields in GROUPS.items():
            values = {f: ecs.get(doc, f) for f in fields}
            values = {f: float(v) for f, v in values.items() if isinstance(v, (int, float))}
            if not values:
                continue
            group = window.groups.setdefault(key, Group())
            for f, v in values.items():
                group.sums[f] = group.sums.get(f, 0.0) + v
            group.times.add(t)
            if isinstance(period, (int, float)) and period > 0:
                group.period_sum += float(period) / 1000.0
                group.period_n += 1

    def add_bucket(self, host: str, t: float, bucket: dict[str, Any]) -> None:
        """One date_histogram bucket of `host` (Elasticsearch; the sub-aggregations of `es_aggregations`)."""
        window = self._window(host, t)
        if window is None:
            return
        self.docs[host] = self.docs.get(host, 0) + int(bucket.get("doc_count") or 0)
        for name, acc in (("cpu", window.cpu), ("memory", window.memory)):
            agg = bucket.get(name) or {}
            if agg.get("count"):
                acc[0] += float(agg["sum"])
                acc[1] += int(agg["count"])
        for key, fields in GROUPS.items():
            sub = bucket.get(key) or {}
            if not sub.get("doc_count"):
                continue
            group = window.groups.setdefault(key, Group())
            for f in fields:
                value = (sub.get(COLUMN_OF[f]) or {}).get("value")
                if value is not None and (sub.get(f"{COLUMN_OF[f]}_n") or {}).get("value"):
                    group.sums[f] = group.sums.get(f, 0.0) + float(value)
            group.distinct += int((sub.get("times") or {}).get("value") or 0)
            period = sub.get("period") or {}
            if period.get("count"):
                group.period_sum += float(period["sum"]) / 1000.0
                group.period_n += int(period["count"])

    def columns(self) -> dict[str, dict[str, list]]:
        out: dict[str, dict[str, list]] = {}
        for host in sorted(self.hosts):
            rows = []
            for index, w in sorted(self.hosts[host].items()):
                t0 = self.start + index * self.window_s
                row: dict[str, Any] = {"t0": round(t0 * 1000), "t": round((t0 + self.window_s) * 1000)}
                row["cpu"] = round(100 * w.cpu[0] / w.cpu[1], 2) if w.cpu[1] else None
                row["memory"] = round(100 * w.memory[0] / w.memory[1], 2) if w.memory[1] else None
                for group in w.groups.values():
                    row.update(group.rates(self.window_s))
                rows.append(row)
            out[host] = {c: [r.get(c) for r in rows] for c in HOST_COLUMNS}
        return out


@dataclass
class HostFigures:
    """What the report shows of the hosts: columns per host and where they came from."""

    source: str = ""
    columns: dict[str, dict[str, list]] = field(default_factory=dict)
    window_s: int = 0
    documents: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "window_s": self.window_s, "documents": self.documents,
                "hosts": self.columns, "warnings": self.warnings}  # fmt: skip


def _figures(buckets: HostBuckets, source: str, warnings: list[str]) -> HostFigures:
    if buckets.skipped_hosts:
        warnings.append(
            f"{len(buckets.skipped_hosts) + len(buckets.hosts)} hosts have metrics in the run's time range; the "
            f"report shows {len(buckets.hosts)} (pick them with --host-metrics-host NAME)"
        )
    return HostFigures(source, buckets.columns(), buckets.window_s, dict(sorted(buckets.docs.items())), warnings)


# ------------------------------------------------------------------------------------------ Elasticsearch


def es_aggregations(window_s: int, start: float) -> dict[str, Any]:
    """Per host (the MAX_HOSTS with the most documents), per window: the figures `HostBuckets.add_bucket`
    reads. Windows are aligned on the run's start (`offset`), as in file mode."""
    offset = int(start) % window_s
    per_window: dict[str, Any] = {
        "cpu": {"stats": {"field": ecs.CPU_PCT}},
        "memory": {"stats": {"field": ecs.MEMORY_PCT}},
    }
    for key, fields in GROUPS.items():
        sub: dict[str, Any] = {
            "times": {"cardinality": {"field": ecs.TIMESTAMP}},
            "period": {"stats": {"field": "metricset.period"}},
        }
        for f in fields:
            sub[COLUMN_OF[f]] = {"sum": {"field": f}}
            sub[f"{COLUMN_OF[f]}_n"] = {"value_count": {"field": f}}
        per_window[key] = {"filter": {"bool": {"should": [{"exists": {"field": f}} for f in fields]}}, "aggs": sub}
    return {
        "hosts": {
            "terms": {"field": ecs.HOST_NAME, "size": MAX_HOSTS},
            "aggs": {
                "w": {
                    "date_histogram": {"field": ecs.TIMESTAMP, "fixed_interval": f"{window_s}s", "min_doc_count": 1,
                                       "offset": f"{offset}s"},
                    "aggs": per_window,
                }
            },
        },
        "host_count": {"cardinality": {"field": ecs.HOST_NAME}},
    }  # fmt: skip


def read_es_hosts(source: Any, pattern: str, start: float, end: float, hosts: Sequence[str] = ()) -> HostFigures:
    """Host metrics from the indices matching `pattern` (comma-separated) for [start, end]: one search.
    `source`: as for search.search_for (a backend, a client of either library, a Search)."""
    es = search_for(source)
    buckets = HostBuckets(start, end, hosts)
    query: dict[str, Any] = {"bool": {"filter": [{"range": {ecs.TIMESTAMP: {
        "gte": int(buckets.start * 1000), "lte": int(buckets.end * 1000), "format": "epoch_millis"}}}]}}  # fmt: skip
    if hosts:
        query["bool"]["filter"].append({"terms": {ecs.HOST_NAME: list(hosts)}})
    warnings: list[str] = []
    try:
        resp = es.search(
            pattern, {"size": 0, "query": query, "aggs": es_aggregations(buckets.window_s, buckets.start)},
            ignore_unavailable=True, allow_no_indices=True,
        )  # fmt: skip
    except SourceError as exc:  # a host-metrics index mapped otherwise (host.name as text): say so, report the rest
        warning = f"host metrics in {pattern} not read: {exc}"[:400]
        return HostFigures(f"{es.product.lower()} {pattern}", warnings=[warning])
    aggs = resp.get("aggregations") or {}
    for host_bucket in (aggs.get("hosts") or {}).get("buckets", []):
        for bucket in (host_bucket.get("w") or {}).get("buckets", []):
            buckets.add_bucket(str(host_bucket["key"]), float(bucket["key"]) / 1000.0, bucket)
    total = int((aggs.get("host_count") or {}).get("value") or 0)
    if total > len(buckets.hosts) and not hosts:
        warnings.append(
            f"{total} hosts have metrics in the run's time range; the report shows the {len(buckets.hosts)} with "
            "the most documents (pick them with --host-metrics-host NAME)"
        )
    return _figures(buckets, f"{es.product.lower()} {pattern}", warnings)


# ------------------------------------------------------------------------------------------------- files


def host_metric_files(run_folder: Path) -> list[Path]:
    """The agent's files for a run: `host-*.ndjson` in its folder, and the run-independent ones in
    `<results root>/host-metrics/` (filtered by time)."""
    own = sorted(run_folder.glob("host-*.ndjson"))
    shared = run_folder.parent / "host-metrics"
    return own + (sorted(shared.glob("*.ndjson")) if shared.is_dir() else [])


def read_file_hosts(docs: Iterable[dict[str, Any]], start: float, end: float, source: str,
                    hosts: Sequence[str] = ()) -> HostFigures:  # fmt: skip
    buckets = HostBuckets(start, end, hosts)
    for doc in docs:
        if ecs.looks_like_host_metrics(doc):
            buckets.add_doc(doc)
    return _figures(buckets, source, [])
