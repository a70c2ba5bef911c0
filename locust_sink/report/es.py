"""A run in Elasticsearch or OpenSearch as a report source.

The request documents are aggregated by the cluster and never fetched whole: per-endpoint and per-node
counts in one search, status codes over time with a composite aggregation (date_histogram x status code)
paged with `after_key`, the N slowest requests with a sorted search, error groups (only when the run has no
`failure_group` events) with a composite aggregation. Stats snapshots, events and the run document are
small (one per endpoint per snapshot) and are scrolled in time order into the same `RunCollector` that file
sources use. Every read goes through a `search.Search` (the official client of the cluster's product), so
the same bodies serve both products.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from typing import Any

from ..hosts.ecs import DEFAULT_READ_PATTERN
from .collect import MAIN_SOURCES, RunCollector
from .hosts import read_es_hosts
from .model import RunFigures, endpoint_key
from .requests import EndpointDocs, RequestFigures, epoch, slow_row
from .search import SCROLL_KEEP, Search, search_for
from .source_error import SourceError

PAGE = 1000
STATUS_POINTS = 240
PERCENTS = {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p99_9": 99.9}


def _run_filter(run_id: str) -> dict[str, Any]:
    return {"bool": {"filter": [{"term": {"run_id": run_id}}]}}


def newest_run_id(source: Any, prefix: str) -> str:
    es = search_for(source)
    refresh(es, prefix)
    body = {"size": 1, "sort": [{"start_time": {"order": "desc", "unmapped_type": "date"}}], "_source": ["run_id"]}
    resp = es.search(f"{prefix}-runs", body, ignore_unavailable=True, allow_no_indices=True)
    hits = resp["hits"]["hits"]
    if not hits:
        raise SourceError(f"no run in {prefix}-runs")
    return str(hits[0]["_source"].get("run_id") or hits[0]["_id"])


def read_es_run(
    source: Any,
    run_id: str,
    prefix: str = "locust",
    slowest: int = 20,
    max_points: int | None = None,
    host_pattern: str | None = DEFAULT_READ_PATTERN,
    hosts: tuple[str, ...] = (),
) -> RunFigures:
    """One run's figures; `source` is a backend of `transport.connect`, a client of either library or a
    `search.Search`. With `host_pattern`, the host metrics of the run's time range from those indices."""
    es = search_for(source)
    refresh(es, prefix)
    collector = RunCollector(run_id, **({"max_points": max_points} if max_points else {}))
    run = es.get_source(f"{prefix}-runs", run_id)
    if run is not None:
        collector.add_run(run)
    _read_snapshots(es, prefix, run_id, collector)
    for doc in _scan(es, f"{prefix}-events", _run_filter(run_id)):
        collector.add("events", doc)
    if collector.run_doc is None and not collector.main:
        requests = _request_overview(es, prefix, run_id, with_percentiles=True)
        if not requests.documents:
            raise SourceError(f"run {run_id} not found in {prefix}-runs, {prefix}-stats or {prefix}-requests")
    else:
        requests = _request_overview(es, prefix, run_id, with_percentiles=not collector.main)
    start = epoch((collector.run_doc or {}).get("start_time")) or requests.first
    end = epoch((collector.run_doc or {}).get("end_time")) or requests.last
    if start is not None and end is not None:
        requests.status_bucket_s = float(max(1, math.ceil((end - start) / STATUS_POINTS)))
        requests.status = _status_over_time(es, prefix, run_id, int(requests.status_bucket_s))
    requests.slowest = _slowest(es, prefix, run_id, slowest)
    if not collector.failure_groups:
        requests.errors = _error_groups(es, prefix, run_id)
    fig = collector.build(requests, f"{es.product.lower()} {prefix}-* run {run_id}")
    start, end = fig.run.get("start_epoch"), fig.run.get("end_epoch")
    if host_pattern and start is not None and end is not None:
        fig.hosts = read_es_hosts(es, host_pattern, start, end, hosts)
    return fig


def refresh(es: Search, prefix: str) -> None:
    """Make the last seconds of a run that just ended visible (the indices refresh every 5 s); a user without
    the privilege to refresh just sees them a little later."""
    with contextlib.suppress(Exception):  # refreshing is a courtesy, not a requirement
        es.refresh(f"{prefix}-*")


def _read_snapshots(es: Search, prefix: str, run_id: str, collector: RunCollector) -> None:
    """Snapshots in two passes, to fetch only the histograms the report keeps: first the Aggregated rows (the
    Total and per-worker series; their thinning decides which snapshot times are kept), then the main source's
    per-endpoint rows of those times only. Per-endpoint rows of workers are never needed."""
    index = f"{prefix}-stats"
    aggregated = {"bool": {"filter": [{"term": {"run_id": run_id}}, {"term": {"is_aggregated": True}}]}}
    for doc in _scan(es, index, aggregated):
        collector.add("stats", doc)
    times = collector.kept_main_timestamps()
    for i in range(0, len(times), PAGE):
        rows = {"bool": {"filter": [
            {"term": {"run_id": run_id}}, {"term": {"is_aggregated": False}},
            {"terms": {"source": list(MAIN_SOURCES)}}, {"terms": {"@timestamp": times[i : i + PAGE]}},
        ]}}  # fmt: skip
        for doc in _scan(es, index, rows):
            collector.add("stats", doc)


def _scan(es: Search, index: str, query: dict[str, Any]) -> Any:
    """The run's documents of one index in @timestamp order, PAGE at a time: a sorted scroll (core in every
    build, and ordered across shards, where `search_after` on @timestamp would need a unique tiebreaker)."""
    body = {"size": PAGE, "query": query, "sort": [{"@timestamp": "asc"}, "_doc"]}
    resp = es.search(index, body, scroll=SCROLL_KEEP, ignore_unavailable=True, allow_no_indices=True)
    scroll_id = resp.get("_scroll_id")
    try:
        while True:
            hits = resp["hits"]["hits"]
            for hit in hits:
                yield hit["_source"]
            if len(hits) < PAGE or not scroll_id:
                return
            resp = es.scroll(scroll_id)
            scroll_id = resp.get("_scroll_id", scroll_id)
    finally:
        if scroll_id:
            es.clear_scroll(scroll_id)


def _request_overview(es: Search, prefix: str, run_id: str, with_percentiles: bool) -> RequestFigures:
    figures = RequestFigures()
    sub: dict[str, Any] = {
        "failures": {"filter": {"term": {"success": False}}},
        "rt": {"stats": {"field": "response_time"}},
        "len": {"sum": {"field": "response_length"}},
    }
    if with_percentiles:
        sub["pct"] = {"percentiles": {"field": "response_time", "percents": list(PERCENTS.values())}}
    after = None
    first = True
    while True:
        comp: dict[str, Any] = {
            "size": PAGE,
            "sources": [{"m": {"terms": {"field": "request_type"}}}, {"n": {"terms": {"field": "name"}}}],
        }
        if after:
            comp["after"] = after
        aggs: dict[str, Any] = {"rows": {"composite": comp, "aggs": sub}}
        if first:
            aggs.update(
                {
                    "first": {"min": {"field": "@timestamp"}},
                    "last": {"max": {"field": "@timestamp"}},
                    "nodes": {"terms": {"field": "node", "size": 10000}},
                    "sampled": {"filter": {"exists": {"field": "sample_rate"}}},
                }
            )
        body = {"size": 0, "query": _run_filter(run_id), "aggs": aggs, "track_total_hits": True}
        resp = es.search(f"{prefix}-requests", body, ignore_unavailable=True, allow_no_indices=True)
        result = resp.get("aggregations") or {}
        if first:
            figures.documents = int(resp["hits"]["total"]["value"])
            figures.first = _ms(result.get("first"))
            figures.last = _ms(result.get("last"))
            figures.per_node = Counter({b["key"]: b["doc_count"] for b in result.get("nodes", {}).get("buckets", [])})
            figures.sampled = bool(result.get("sampled", {}).get("doc_count"))
            first = False
        rows = result.get("rows") or {}
        for b in rows.get("buckets", []):
            stats = b["rt"]
            ep = EndpointDocs(
                requests=b["doc_count"],
                failures=b["failures"]["doc_count"],
                total_rt=float(stats.get("sum") or 0.0),
                min_rt=stats.get("min"),
                max_rt=float(stats.get("max") or 0.0),
                total_len=int(b["len"]["value"] or 0),
            )
            if "pct" in b:
                values = b["pct"]["values"]
                ep.percentiles = {name: float(values.get(f"{float(p)}") or 0.0) for name, p in PERCENTS.items()}
            figures.endpoints[endpoint_key(b["key"]["m"], b["key"]["n"])] = ep
        after = rows.get("after_key")
        if not rows.get("buckets") or not after:
            return figures


def _ms(agg: dict[str, Any] | None) -> float | None:
    value = (agg or {}).get("value")
    return float(value) / 1000.0 if value is not None else None


def _status_over_time(es: Search, prefix: str, run_id: str, bucket_s: int) -> dict[int, Counter]:
    out: dict[int, Counter] = {}
    for key, b in _composite(
        es, f"{prefix}-requests", _run_filter(run_id),
        [
            {"t": {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{bucket_s}s"}}},
            {"s": {"terms": {"field": "status_code", "missing_bucket": True}}},
        ],
    ):  # fmt: skip
        out.setdefault(int(key["t"] // 1000) // bucket_s, Counter())[int(key["s"] or 0)] += b["doc_count"]
    return out


def _slowest(es: Search, prefix: str, run_id: str, n: int) -> list[dict[str, Any]]:
    if n <= 0:
        return []
    body = {
        "size": n, "query": _run_filter(run_id), "sort": [{"response_time": "desc"}],
        "_source": ["@timestamp", "node", "request_type", "name", "url", "status_code", "response_time", "success"],
    }  # fmt: skip
    resp = es.search(f"{prefix}-requests", body, ignore_unavailable=True, allow_no_indices=True)
    return [slow_row(hit["_source"]) for hit in resp["hits"]["hits"]]


def _error_groups(es: Search, prefix: str, run_id: str) -> list[dict[str, Any]]:
    query_sources = [
        {"m": {"terms": {"field": "request_type"}}},
        {"n": {"terms": {"field": "name"}}},
        {"e": {"terms": {"field": "exception.keyword", "missing_bucket": True}}},
    ]
    sub = {"first": {"min": {"field": "@timestamp"}}, "last": {"max": {"field": "@timestamp"}}}
    rows = []
    failed = {"bool": {"filter": [{"term": {"run_id": run_id}}, {"term": {"success": False}}]}}
    for key, b in _composite(es, f"{prefix}-requests", failed, query_sources, sub):
        rows.append(
            {
                "method": key["m"],
                "name": key["n"],
                "error": key["e"] if key["e"] is not None else "(message longer than 1024 characters)",
                "count": b["doc_count"],
                "first_seen": _ms(b["first"]),
                "last_seen": _ms(b["last"]),
            }
        )
    return sorted(rows, key=lambda r: (-r["count"], str(r["name"])))[:1000]


def _composite(es: Search, index: str, query: dict, sources: list[dict[str, Any]], sub: dict | None = None) -> Any:
    """(key, bucket) of every bucket of a composite aggregation, PAGE buckets a request (`after_key`)."""
    after = None
    while True:
        comp: dict[str, Any] = {"size": PAGE, "sources": sources}
        if after:
            comp["after"] = after
        agg: dict[str, Any] = {"composite": comp, **({"aggs": sub} if sub else {})}
        body = {"size": 0, "query": query, "aggs": {"g": agg}}
        resp = es.search(index, body, ignore_unavailable=True, allow_no_indices=True)
        result = (resp.get("aggregations") or {}).get("g") or {}
        for b in result.get("buckets", []):
            yield b["key"], b
        after = result.get("after_key")
        if not result.get("buckets") or not after:
            return
