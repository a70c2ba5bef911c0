"""Snapshot documents (`<prefix>-stats`): one per endpoint plus the Aggregated row, per source and node.

The documents are pure functions of Locust's `RequestStats`. Their only state is a `SnapshotCursor` per
(source, node), the node's own and one per worker on the master: what the previous snapshot counted per
entry, when it was taken and its sequence number (part of every document id, so a resent snapshot never
duplicates). `SnapshotWriter` queues them through the sink.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from locust.stats import RequestStats, StatsEntry

from ..records import iso_timestamp
from .port import SinkPort

PERCENTILES: tuple[float, ...] = (0.50, 0.66, 0.75, 0.80, 0.90, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0)
PERCENTILE_FIELDS: tuple[str, ...] = ("p50", "p66", "p75", "p80", "p90", "p95", "p98", "p99", "p99_9", "p99_99", "p100")
YIELD_EVERY = 50  # entries between two pauses while a snapshot is built in the background
AGGREGATED_KEY = ("Aggregated", "")

EntryKey = tuple[str, str]  # Locust's (name, method)


def percentile_values(response_times: Mapping[Any, int], num_requests: int) -> dict[str, float]:
    """All of Locust's reported percentiles from one histogram in one pass.

    Same result as `locust.stats.calculate_response_time_percentile` for each percentile (descending walk
    over the rounded response times until `num_requests - processed <= int(num_requests * percent)`).
    """
    result = dict.fromkeys(PERCENTILE_FIELDS, 0)
    if num_requests <= 0 or not response_times:
        return result
    keys = sorted(response_times, reverse=True)
    i, processed = -1, 0
    for percent, name in sorted(zip(PERCENTILES, PERCENTILE_FIELDS, strict=True), reverse=True):
        need = num_requests - int(num_requests * percent)
        while (i < 0 or processed < need) and i + 1 < len(keys):
            i += 1
            processed += response_times[keys[i]]
        result[name] = keys[i] if processed >= need else 0
    return result


def entry_document(
    entry: StatsEntry,
    base: Mapping[str, Any],
    previous: tuple[int, int],
    interval_s: float,
    user_count: int | None,
    final: bool,
    aggregated: bool,
) -> dict[str, Any]:
    """One `<prefix>-stats` document (see docs/DESIGN.md and docs/stats.md); `previous` is the entry's
    (requests, failures) at the previous snapshot."""
    valid = entry.num_requests - entry.num_none_requests
    doc: dict[str, Any] = dict(base)
    if not aggregated:
        doc["request_type"] = entry.method
    doc.update(
        {
            "name": entry.name,
            "is_aggregated": aggregated,
            "final": final,
            "interval_s": round(interval_s, 3),
            "interval_requests": entry.num_requests - previous[0],
            "interval_failures": entry.num_failures - previous[1],
            "num_requests": entry.num_requests,
            "num_failures": entry.num_failures,
            "num_none_requests": entry.num_none_requests,
            "current_rps": round(float(entry.current_rps), 3),
            "current_fail_per_sec": round(float(entry.current_fail_per_sec), 3),
            "min_response_time": entry.min_response_time,
            "avg_response_time": entry.avg_response_time,
            "max_response_time": entry.max_response_time,
            "percentiles": percentile_values(entry.response_times, valid),
            "avg_content_length": entry.avg_content_length,
            # exact re-aggregation: sums, not averages, and Locust's histogram {rounded ms: count}
            "total_response_time": entry.total_response_time,
            "total_content_length": entry.total_content_length,
            "response_times": dict(entry.response_times),
        }
    )
    if user_count is not None:
        doc["user_count"] = user_count
    return doc


def key_hash(method: str, name: str) -> str:
    """The endpoint part of a snapshot document's id (names can be long and hold any character)."""
    return hashlib.blake2b(f"{method}\x00{name}".encode(), digest_size=8).hexdigest()


@dataclass
class SnapshotCursor:
    """Where the snapshots of one (source, node) stand: each entry's (requests, failures) at the previous
    snapshot, when that was taken (None: none yet) and the last sequence number."""

    previous: dict[EntryKey, tuple[int, int]] = field(default_factory=dict)
    last: float | None = None
    seq: int = 0

    def advance(self, now: float) -> tuple[int, float | None]:
        """Begin the next snapshot at `now`: its sequence number and when the previous one was taken."""
        self.seq += 1
        last, self.last = self.last, now
        return self.seq, last

    def reset(self) -> None:
        """Locust reset its stats (`--reset-stats`, the web UI): interval counts start from zero again."""
        self.previous = {}


def snapshot_documents(
    stats: RequestStats,
    cursor: SnapshotCursor,
    *,
    run_id: str,
    node: str,
    source: str,
    now: float,
    run_start: float | None,
    user_count: int | None,
    final: bool,
    pause: Callable[[], bool] | None = None,
    node_fields: Mapping[str, Any] | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(document id, document) for every entry with requests or failures, then the Aggregated row, which
    also carries `node_fields` (the node's process usage: `cpu_percent`, `memory_rss_bytes`) when given.

    Lazy: the cursor advances when the first document is taken, and each entry's counts are recorded in it
    as its document is made. `pause`, if given, runs before every YIELD_EVERY-th entry (the caller lets other
    greenlets run there); when it returns False the snapshot ends at that point (the run was finalized
    meanwhile, and the final snapshot supersedes this one).
    """
    seq, last = cursor.advance(now)
    interval_s = now - (last or run_start or now)
    base = {"@timestamp": iso_timestamp(now), "run_id": run_id, "node": node, "source": source}
    prefix = f"{run_id}:{node}:{source}:{seq}"
    previous = cursor.previous
    entries = [(k, e) for k, e in list(stats.entries.items()) if e.num_requests or e.num_failures]
    for i, (key, entry) in enumerate(entries):
        if pause is not None and i and i % YIELD_EVERY == 0 and not pause():
            return
        doc = entry_document(entry, base, previous.get(key, (0, 0)), interval_s, user_count, final, False)
        previous[key] = (entry.num_requests, entry.num_failures)
        yield f"{prefix}:{key_hash(entry.method, entry.name)}", doc
    total = stats.total
    doc = entry_document(total, base, previous.get(AGGREGATED_KEY, (0, 0)), interval_s, user_count, final, True)
    if node_fields:
        doc.update(node_fields)
    previous[AGGREGATED_KEY] = (total.num_requests, total.num_failures)
    yield f"{prefix}:agg", doc


class SnapshotWriter:
    """Queues the snapshot documents of the current run through the port, and shows each one to an
    observer's `on_snapshot` (if any) after it was queued."""

    def __init__(self, port: SinkPort, on_snapshot: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.port = port
        self.on_snapshot = on_snapshot
        self.run_id: str | None = None
        self.run_start: float | None = None

    def begin_run(self, run_id: str, start: float) -> None:
        self.run_id, self.run_start = run_id, start

    def write(
        self,
        stats: RequestStats,
        cursor: SnapshotCursor,
        source: str,
        node: str,
        now: float,
        user_count: int | None,
        final: bool,
        pause: Callable[[], bool] | None = None,
        node_fields: Mapping[str, Any] | None = None,
    ) -> None:
        """One snapshot of `stats` (see `snapshot_documents`)."""
        run_id = self.run_id
        assert run_id is not None
        docs = snapshot_documents(
            stats,
            cursor,
            run_id=run_id,
            node=node,
            source=source,
            now=now,
            run_start=self.run_start,
            user_count=user_count,
            final=final,
            pause=pause,
            node_fields=node_fields,
        )
        for doc_id, doc in docs:
            self.port.submit("stats", doc, run_id, doc_id=doc_id, op="create")
            if self.on_snapshot is not None:
                self.on_snapshot(doc)
