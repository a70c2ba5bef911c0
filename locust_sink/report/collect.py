"""Builds one run's `RunFigures` from its documents: run documents, stats snapshots and events, fed one at
a time in the order they were written, plus what the request documents gave (`RequestFigures`).

The per-endpoint table and the histograms are Locust's final figures (the `final` snapshot of source
`local` or `master`, equal to Locust's `--json-file`); the time series are exact windows between snapshots
(`series.py`); per-worker figures come from the master's `source: worker` snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import histogram as h
from .loadgen import LoadGenerators, saturation_sentence
from .model import ACCOUNTING_FIELDS, TOTAL, EndpointRow, NodeAccounting, RunFigures, endpoint_key
from .requests import EndpointDocs, RequestFigures, epoch
from .series import DEFAULT_MAX_POINTS, Clock, Point, Series
from .timeline import build_series, event_columns, status_columns
from .warnings import completeness_warnings

MAIN_SOURCES = ("local", "master")
MAX_EVENTS = 500
RUN_FIELDS = (
    "run_id", "status", "mode", "start_time", "end_time", "duration_s", "host", "locustfile", "users", "spawn_rate",
    "run_time_limit", "tags", "description", "git_commit", "locust_version", "sink_version", "exit_code",
    "hostname", "sample_rate", "workers", "expected_workers", "totals", "sink", "sink_trouble_nodes",
    "sink_trouble", "sink_final_flush_complete", "index_prefix",
)  # fmt: skip


class RunCollector:
    def __init__(self, run_id: str | None, max_points: int = DEFAULT_MAX_POINTS) -> None:
        self.run_id = run_id
        self.max_points = max_points
        self.run_doc: dict[str, Any] | None = None
        self.run_docs_seen = 0
        self.clocks: dict[tuple[str, str], Clock] = {}
        self.main: dict[str, Series] = {}  # endpoint key / TOTAL -> series of the main source
        self.main_rows: dict[str, tuple[str, str]] = {}  # key -> (method, name)
        self.final: dict[str, dict[str, Any]] = {}  # key -> final snapshot document (main source)
        self.workers: dict[str, Series] = {}  # worker id -> its Aggregated series
        self.worker_final: dict[str, dict[str, Any]] = {}
        self.main_source: str | None = None
        self.events: list[dict[str, Any]] = []
        self.events_dropped = 0
        self.failure_groups: list[dict[str, Any]] = []
        self.user_errors_final: list[dict[str, Any]] = []
        self.user_errors_live: dict[str, dict[str, Any]] = {}
        self.summaries: dict[str, dict[str, Any]] = {}
        self.loadgen = LoadGenerators()  # nodes' CPU/memory and saturated ranges

    # ----- feeding -----------------------------------------------------------------------------------
    def add(self, family: str, doc: Mapping[str, Any]) -> None:
        """One document of the run; with `run_id` None, the first run id seen is the run's (a results folder
        holds one run), otherwise documents of other runs are ignored."""
        run_id = doc.get("run_id")
        if self.run_id is None and run_id:
            self.run_id = str(run_id)
        elif run_id not in (None, self.run_id):
            return
        if family == "runs":
            self.add_run(dict(doc))
        elif family == "stats":
            self.add_stats(dict(doc))
        elif family == "events":
            self.add_event(dict(doc))

    def add_run(self, doc: dict[str, Any]) -> None:
        """The run document is written several times (`create`, then `index`): the last one wins."""
        self.run_docs_seen += 1
        if self.run_doc is None or run_rank(doc) >= run_rank(self.run_doc):
            self.run_doc = doc

    def add_stats(self, doc: dict[str, Any]) -> None:
        t = epoch(doc.get("@timestamp"))
        if t is None:
            return
        source, node = str(doc.get("source") or ""), str(doc.get("node") or "")
        clock = self.clocks.get((source, node))
        if clock is None:
            clock = self.clocks[(source, node)] = Clock(self.max_points)
        aggregated = bool(doc.get("is_aggregated"))
        if aggregated:
            self.loadgen.add_snapshot(t, doc)
        if source in MAIN_SOURCES:
            self.main_source = self.main_source or source
            key = TOTAL if aggregated else endpoint_key(doc.get("request_type"), str(doc.get("name")))
            if not aggregated:
                self.main_rows[key] = (str(doc.get("request_type") or ""), str(doc.get("name") or ""))
            series = self.main.get(key)
            if series is None:
                series = self.main[key] = Series(clock)
            series.add(t, doc)
            if doc.get("final"):
                self.final[key] = doc
        elif source == "worker" and aggregated:
            series = self.workers.get(node)
            if series is None:
                series = self.workers[node] = Series(clock)
            series.add(t, doc)
            if doc.get("final"):
                self.worker_final[node] = doc

    def kept_main_timestamps(self) -> list[Any]:
        """The snapshot times the main source's Total series keeps: the only ones whose per-endpoint rows
        the report needs (the rows of one snapshot share its timestamp and its clock)."""
        total = self.main.get(TOTAL)
        return total.stamps() if total is not None else []

    def add_event(self, doc: dict[str, Any]) -> None:
        kind = doc.get("event")
        details = doc.get("details") or {}
        if kind == "failure_group":
            self.failure_groups.append(doc)
        elif kind == "user_error" and details.get("final"):
            self.user_errors_final.append(doc)
        elif kind == "user_error":
            self.user_errors_live.setdefault(str(doc.get("message")), doc)
        elif kind == "sink_summary":
            self.summaries[str(doc.get("node"))] = details
        elif kind in ("cpu_saturated", "cpu_recovered"):
            self.loadgen.add_event(doc)
        if kind in ("failure_group", "sink_summary") or (kind == "user_error" and details.get("final")):
            return
        if kind == "user_error" and len(self.user_errors_live) > 20:
            return
        if len(self.events) < MAX_EVENTS:
            self.events.append(doc)
        else:
            self.events_dropped += 1

    # ----- building ----------------------------------------------------------------------------------
    def build(self, requests: RequestFigures, source: str) -> RunFigures:
        fig = RunFigures(run_id=self.run_id or "", source=source, request_documents=requests.documents)
        fig.run = self._header(requests)
        start = fig.run.get("start_epoch")
        duration = fig.run.get("duration_s") or 0.0
        fig.total, fig.endpoints = self._table(requests, duration)
        fig.series, fig.window_s = build_series(self.main, start)
        fig.histograms = {key: _histogram_columns(self._final_hist(key, requests)) for key in [TOTAL, *self._keys()]}
        fig.workers = [
            _row(node, "", node, self.worker_final.get(node) or _last_doc(series), duration)
            for node, series in sorted(self.workers.items())
        ]
        worker_series, _ = build_series(self.workers, start)
        fig.worker_series = worker_series
        fig.status_codes = status_columns(requests, fig.series.get(TOTAL))
        fig.events = event_columns(self.events)
        fig.errors = self._errors(requests)
        fig.user_errors = self._user_errors()
        fig.slowest = requests.slowest
        fig.accounting = self._accounting()
        fig.warnings = completeness_warnings(self, fig, requests)
        fig.load_generators = self.loadgen.columns()
        fig.saturation = self.loadgen.episodes(fig.run.get("end_epoch"))
        fig.bottleneck = [saturation_sentence(e) for e in fig.saturation]
        return fig

    def _keys(self) -> list[str]:
        return sorted(k for k in self.main if k != TOTAL)

    def _header(self, requests: RequestFigures) -> dict[str, Any]:
        doc = self.run_doc or {}
        run = {k: doc[k] for k in RUN_FIELDS if k in doc}
        start = epoch(doc.get("start_time"))
        end = epoch(doc.get("end_time"))
        if start is None and requests.first is not None:
            start = requests.first
        if end is None:
            last = self.main.get(TOTAL)
            end = last.last.t if last and last.last else requests.last
        run["start_epoch"] = start
        run["end_epoch"] = end
        if "duration_s" not in run and start is not None and end is not None:
            run["duration_s"] = round(end - start, 3)
        run.setdefault("run_id", self.run_id)
        return run

    def _table(self, requests: RequestFigures, duration: float) -> tuple[EndpointRow, list[EndpointRow]]:
        if self.main:
            rows = []
            for key in self._keys():
                method, name = self.main_rows.get(key, ("", key))
                rows.append(_row(key, method, name, self.final.get(key) or _last_doc(self.main[key]), duration))
            total_doc = self.final.get(TOTAL) or _last_doc(self.main.get(TOTAL))
            return _row(TOTAL, "", TOTAL, total_doc, duration), sorted(rows, key=lambda r: (r.name, r.method))
        # no snapshot at all: the request documents are all there is
        rows = [_docs_row(key, ep, duration) for key, ep in sorted(requests.endpoints.items())]
        merged = EndpointDocs()
        for ep in requests.endpoints.values():
            merged.requests += ep.requests
            merged.failures += ep.failures
            merged.total_rt += ep.total_rt
            merged.total_len += ep.total_len
            merged.max_rt = max(merged.max_rt, ep.max_rt)
            if ep.min_rt is not None:
                merged.min_rt = ep.min_rt if merged.min_rt is None else min(merged.min_rt, ep.min_rt)
            h.add(merged.hist, ep.hist)
        return _docs_row(TOTAL, merged, duration), rows

    def _final_hist(self, key: str, requests: RequestFigures) -> h.Histogram:
        doc = self.final.get(key) or _last_doc(self.main.get(key))
        if doc is not None:
            return h.parse(doc.get("response_times"))
        if key == TOTAL:
            return _sum_hists(requests)
        ep = requests.endpoints.get(key)
        return dict(ep.hist) if ep else {}

    def _errors(self, requests: RequestFigures) -> list[dict[str, Any]]:
        if self.failure_groups:
            rows = []
            for doc in self.failure_groups:
                details = doc.get("details") or {}
                rows.append(
                    {
                        "method": doc.get("request_type"),
                        "name": doc.get("name"),
                        "error": doc.get("error"),
                        "count": int(doc.get("occurrences") or 0),
                        "first_seen": epoch(details.get("first_seen")),
                        "last_seen": epoch(details.get("last_seen")),
                    }
                )
            return sorted(rows, key=lambda r: (-r["count"], str(r["name"])))
        return requests.errors

    def _user_errors(self) -> list[dict[str, Any]]:
        docs = self.user_errors_final or list(self.user_errors_live.values())
        rows = [
            {
                "count": int(d.get("occurrences") or 0),
                "message": d.get("message"),
                "traceback": str(d.get("traceback") or "")[-4000:],
                "nodes": (d.get("details") or {}).get("nodes") or [d.get("node")],
            }
            for d in docs
        ]
        return sorted(rows, key=lambda r: -r["count"])[:50]

    def _accounting(self) -> list[NodeAccounting]:
        by_node = dict((self.run_doc or {}).get("sink_by_node") or {})
        nodes = sorted(set(by_node) | set(self.summaries))
        out = []
        for node in nodes:
            summary = self.summaries.get(node)
            origin = "sink_summary" if summary is not None else "run document"
            data = summary if summary is not None else by_node[node]
            counts = {k: int((data.get("requests") or {}).get(k, 0)) for k in ACCOUNTING_FIELDS}
            out.append(NodeAccounting(node, counts, data.get("state"), int(data.get("sampled_out") or 0), origin))
        return out


def run_rank(doc: Mapping[str, Any]) -> int:
    """Which copy of the run document is the newest: the closing one has `sink`, the finished one `end_time`."""
    return ("sink" in doc) + ("end_time" in doc) + ("exit_code" in doc)


def _last_doc(series: Series | None) -> dict[str, Any] | None:
    if series is None or series.last is None:
        return None
    p: Point = series.last
    return {
        "num_requests": p.requests,
        "num_failures": p.failures,
        "num_none_requests": p.none_requests,
        "total_response_time": p.total_rt,
        "response_times": {str(k): v for k, v in p.hist.items()},
        "_partial": True,
    }


def _row(key: str, method: str, name: str, doc: Mapping[str, Any] | None, duration: float) -> EndpointRow:
    row = EndpointRow(key, method, name)
    if not doc:
        return row
    hist = h.parse(doc.get("response_times"))
    row.requests = int(doc.get("num_requests") or 0)
    row.failures = int(doc.get("num_failures") or 0)
    valid = row.requests - int(doc.get("num_none_requests") or 0)
    row.failure_pct = round(100.0 * row.failures / row.requests, 3) if row.requests else 0.0
    row.rps = round(row.requests / duration, 3) if duration else 0.0
    total_rt = float(doc.get("total_response_time") or 0.0)
    row.avg_ms = round(total_rt / valid, 3) if valid else 0.0
    row.min_ms = doc.get("min_response_time", min(hist) if hist else None)
    row.max_ms = doc.get("max_response_time", max(hist) if hist else 0.0)
    if row.min_ms is not None:
        row.min_ms = round(float(row.min_ms), 3)
    row.max_ms = round(float(row.max_ms or 0.0), 3)
    for name_, value in h.percentiles(hist, valid).items():
        setattr(row, name_, value)
    row.avg_size = round(float(doc.get("total_content_length") or 0) / row.requests, 1) if row.requests else 0.0
    return row


def _docs_row(key: str, ep: EndpointDocs, duration: float) -> EndpointRow:
    method, _, name = key.partition(" ") if key != TOTAL else ("", "", TOTAL)
    doc = {
        "num_requests": ep.requests,
        "num_failures": ep.failures,
        "total_response_time": ep.total_rt,
        "min_response_time": ep.min_rt,
        "max_response_time": ep.max_rt,
        "total_content_length": ep.total_len,
        "response_times": {str(k): v for k, v in ep.hist.items()},
    }
    row = _row(key, method, name or key, doc, duration)
    if ep.percentiles and not ep.hist:
        for name_, value in ep.percentiles.items():
            setattr(row, name_, round(value, 3))
    return row


def _sum_hists(requests: RequestFigures) -> h.Histogram:
    out: h.Histogram = {}
    for ep in requests.endpoints.values():
        h.add(out, ep.hist)
    return out


def _histogram_columns(hist: Mapping[int, int]) -> dict[str, list]:
    keys = sorted(hist)
    return {
        "ms": keys,
        "left": [k - _half_bucket(k) for k in keys],
        "right": [k + _half_bucket(k) for k in keys],
        "count": [hist[k] for k in keys],
    }


def _half_bucket(ms: int) -> float:
    """Half the width of Locust's bucket around a rounded value (1 ms, 10 ms, 100 ms, 1 s buckets)."""
    return 0.5 if ms < 100 else 5.0 if ms < 1000 else 50.0 if ms < 10000 else 500.0
