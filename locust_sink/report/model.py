"""The figures of one run, as the report shows them: plain data, JSON-ready, no Bokeh.

Column layouts (each is a dict of equal-length lists, the `data` of a Bokeh `ColumnDataSource`; a live page
can serve the same dicts from a JSON route to an `AjaxDataSource`):

- `SERIES_COLUMNS` (per endpoint, Total and per worker): one row per window, `t` its end and `t0` its start
  (epoch ms, what a Bokeh datetime axis takes), `rps` / `fail_s` requests and failures per second in the
  window, `requests` / `failures` their counts, `p50` `p95` `p99` `avg` the window's exact response times
  (ms, from the histogram difference), `users` the user count at `t`.
- `HISTOGRAM_COLUMNS` (per endpoint and Total, final): one row per Locust histogram bucket, `ms` the rounded
  response time, `left` / `right` the bucket's edges, `count` requests in it.
- `STATUS_COLUMNS`: `t`, `t0` as above and one `s<code>` column per HTTP status (`s0`: no response), the
  requests per second with that status in the window (from the request documents).
- `EVENT_COLUMNS`: `t`, `event`, `node`, `message`.
- `loadgen.NODE_COLUMNS` (per load generator node) and `hosts.HOST_COLUMNS` (per host of the system under test).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from . import histogram as h

TOTAL = "Total"
SERIES_COLUMNS = ("t", "t0", "rps", "fail_s", "requests", "failures", "p50", "p95", "p99", "avg", "users")
HISTOGRAM_COLUMNS = ("ms", "left", "right", "count")
EVENT_COLUMNS = ("t", "event", "node", "message")
PERCENTILE_COLUMNS = tuple(name for name, _ in h.PERCENTILES)
ACCOUNTING_FIELDS = ("emitted", "indexed", "written", "spooled", "dead_lettered", "dropped", "queued", "in_flight")


def endpoint_key(method: str | None, name: str) -> str:
    return f"{method} {name}" if method else name


@dataclass
class EndpointRow:
    """One row of the per-endpoint table (or Total): Locust's final figures."""

    key: str
    method: str
    name: str
    requests: int = 0
    failures: int = 0
    failure_pct: float = 0.0
    rps: float = 0.0
    avg_ms: float = 0.0
    min_ms: float | None = None
    max_ms: float = 0.0
    p50: float = 0.0
    p90: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    p99_9: float = 0.0
    avg_size: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class NodeAccounting:
    node: str
    counts: dict[str, int]
    state: str | None = None
    sampled_out: int = 0
    source: str = "sink_summary"  # or "run document" (a worker's last report)

    @property
    def balanced(self) -> bool:
        c = self.counts
        delivered = sum(int(c.get(k, 0)) for k in ACCOUNTING_FIELDS[1:])
        return int(c.get("emitted", 0)) == delivered and not c.get("queued") and not c.get("in_flight")

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            **{k: int(self.counts.get(k, 0)) for k in ACCOUNTING_FIELDS},
            "sampled_out": self.sampled_out,
            "state": self.state,
            "balanced": self.balanced,
            "from": self.source,
        }


@dataclass
class RunFigures:
    """Everything a report of one run shows; `as_dict()` is the `--format json` document."""

    run_id: str
    source: str
    run: dict[str, Any] = field(default_factory=dict)
    total: EndpointRow = field(default_factory=lambda: EndpointRow(TOTAL, "", TOTAL))
    endpoints: list[EndpointRow] = field(default_factory=list)
    series: dict[str, dict[str, list]] = field(default_factory=dict)  # endpoint key / TOTAL -> SERIES_COLUMNS
    histograms: dict[str, dict[str, list]] = field(default_factory=dict)  # -> HISTOGRAM_COLUMNS
    workers: list[EndpointRow] = field(default_factory=list)  # key = worker id, Total figures of that worker
    worker_series: dict[str, dict[str, list]] = field(default_factory=dict)
    status_codes: dict[str, list] = field(default_factory=dict)  # STATUS_COLUMNS
    events: dict[str, list] = field(default_factory=dict)  # EVENT_COLUMNS
    errors: list[dict[str, Any]] = field(default_factory=list)
    user_errors: list[dict[str, Any]] = field(default_factory=list)
    slowest: list[dict[str, Any]] = field(default_factory=list)
    accounting: list[NodeAccounting] = field(default_factory=list)
    request_documents: int = 0
    window_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    load_generators: dict[str, dict[str, list]] = field(default_factory=dict)  # node -> loadgen.NODE_COLUMNS
    saturation: list[dict[str, Any]] = field(default_factory=list)  # CPU-saturated ranges (loadgen.episodes)
    bottleneck: list[str] = field(default_factory=list)  # one sentence per saturated range
    hosts: Any = None  # hosts.HostFigures of the system under test's hosts, when read

    @property
    def start(self) -> float | None:
        return self.run.get("start_epoch")

    def row(self, key: str) -> EndpointRow | None:
        if key == TOTAL:
            return self.total
        return next((r for r in self.endpoints if r.key == key), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "source": self.source,
            "run": self.run,
            "warnings": self.warnings,
            "total": self.total.as_dict(),
            "endpoints": [r.as_dict() for r in self.endpoints],
            "workers": [r.as_dict() for r in self.workers],
            "window_s": self.window_s,
            "series": self.series,
            "worker_series": self.worker_series,
            "histograms": self.histograms,
            "status_codes": self.status_codes,
            "events": self.events,
            "errors": self.errors,
            "user_errors": self.user_errors,
            "slowest": self.slowest,
            "accounting": [a.as_dict() for a in self.accounting],
            "request_documents": self.request_documents,
            "bottleneck": self.bottleneck,
            "saturation": self.saturation,
            "load_generators": self.load_generators,
            "host_metrics": self.hosts.as_dict() if self.hosts is not None else None,
        }
