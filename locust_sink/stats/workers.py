"""The master's book of its workers: each worker's cumulative stats, rebuilt from its reports exactly as
Locust's master merges them into its own totals; its snapshot cursor and its sink's last status; and which
workers joined, went missing or left (from Locust's `runner.clients`).

A worker's report holds deltas (Locust resets the worker's stats on every report), so the per-worker sums
of the same deltas always add up to the master's totals: a report lost in transit is in neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from locust.stats import RequestStats, StatsEntry, StatsError

from .events import EventLog
from .health import Usage
from .snapshots import SnapshotCursor


def merge_report(stats: RequestStats, data: Mapping[str, Any]) -> None:
    """Add one worker report (deltas) to `stats`, exactly as Locust's master does (`on_worker_report`)."""
    for stats_data in data.get("stats") or ():
        entry = StatsEntry.unserialize(stats_data, stats)
        key = (entry.name, entry.method)
        if key not in stats.entries:
            stats.entries[key] = StatsEntry(stats, entry.name, entry.method)
        stats.entries[key].extend(entry)
    for error_key, error in (data.get("errors") or {}).items():
        _merge_error(stats, error_key, StatsError.unserialize(error))
    total = data.get("stats_total")
    if total:
        stats.total.extend(StatsEntry.unserialize(total, stats))


def _merge_error(stats: RequestStats, key: str, error: StatsError) -> None:
    existing = stats.errors.get(key)
    if existing is None:
        stats.errors[key] = StatsError(
            error.method, error.name, error.error, error.occurrences, error.first_seen, error.last_seen
        )
        return
    existing.occurrences += error.occurrences
    if error.first_seen is not None:
        existing.first_seen = (
            error.first_seen if existing.first_seen is None else min(existing.first_seen, error.first_seen)
        )
    if error.last_seen is not None:
        existing.last_seen = error.last_seen if existing.last_seen is None else max(existing.last_seen, error.last_seen)


def merge_stats(parts: Iterable[RequestStats]) -> RequestStats:
    """Sum of several `RequestStats` (per-worker stats -> the master's aggregate)."""
    merged = RequestStats(use_response_times_cache=False)
    for part in parts:
        # fresh entries start "now"; extend() keeps the earliest start_time of the parts
        for (name, method), entry in part.entries.items():
            merged.entries[(name, method)].extend(entry)
        for key, error in part.errors.items():
            _merge_error(merged, key, error)
        merged.total.extend(part.total)
    return merged


def _fresh_stats() -> RequestStats:
    return RequestStats(use_response_times_cache=False)


@dataclass
class Worker:
    """What the master knows about one worker in the current run."""

    node: str
    stats: RequestStats = field(default_factory=_fresh_stats)  # cumulative, rebuilt from the reports
    cursor: SnapshotCursor = field(default_factory=SnapshotCursor)
    dirty: bool = False  # a report arrived since the worker's last snapshot
    user_count: int | None = None
    status: dict[str, Any] = field(default_factory=dict)  # its sink's status as of its last report
    reports: int = 0
    usage: Usage | None = None  # its process's CPU and memory as of its last report (health.py)


class WorkerBook:
    """The workers of the current run (in the order their first report arrived), and every worker seen:
    joins and losses are `worker_joined` / `worker_lost` events."""

    def __init__(self, events: EventLog) -> None:
        self.events = events
        self.workers: dict[str, Worker] = {}
        self._states: dict[str, str] = {}  # worker id -> state last seen in runner.clients, for the whole process

    def new_run(self) -> None:
        """A run starts: no reports yet (workers already seen stay known: no second `worker_joined`)."""
        self.workers = {}

    def reset_stats(self) -> None:
        """Locust reset its stats: every worker's cumulative stats and interval counts start again."""
        for worker in self.workers.values():
            worker.stats = _fresh_stats()
            worker.cursor.reset()

    def merge(self, client_id: str, data: Mapping[str, Any]) -> Worker:
        """Add one report of `client_id` (Locust's `worker_report` data) to its cumulative stats."""
        worker = self.workers.get(client_id)
        if worker is None:
            worker = self.workers[client_id] = Worker(client_id)
        merge_report(worker.stats, data)
        worker.dirty = True
        worker.reports += 1
        if "user_count" in data:
            worker.user_count = data["user_count"]
        return worker

    def all(self) -> list[Worker]:
        return list(self.workers.values())

    def total(self) -> RequestStats | None:
        """The sum of every worker's stats (== the master's own), None when no worker reported."""
        if not self.workers:
            return None
        return merge_stats(w.stats for w in self.workers.values())

    def statuses(self) -> list[tuple[str, dict[str, Any]]]:
        """(worker, its sink's last status) for the workers that sent one, in report order."""
        return [(w.node, w.status) for w in self.workers.values() if w.status]

    def connected(self, client_id: str) -> None:
        """Locust's `worker_connect`: `worker_joined` the first time this worker is seen."""
        if client_id not in self._states:
            self._states[client_id] = "ready"
            self.events.event("worker_joined", node=client_id, message=f"worker {client_id} connected")

    def watch(self, clients: Mapping[str, Any] | None) -> None:
        """Compare `runner.clients` with what was seen before: joined, back, missing (no heartbeats), left."""
        if clients is None:
            return
        event = self.events.event
        current = {cid: str(getattr(clients[cid], "state", "")) for cid in list(clients)}
        for cid, state in current.items():
            before = self._states.get(cid)
            if before is None or (before == "missing" and state != "missing"):
                event("worker_joined", node=cid, message=f"worker {cid} connected", details={"state": state})
            elif state == "missing" and before != "missing":
                event("worker_lost", node=cid, message=f"worker {cid} stopped sending heartbeats")
        for cid in list(self._states):
            if cid not in current:
                event("worker_lost", node=cid, message=f"worker {cid} left", details={"reason": "left"})
                del self._states[cid]
        self._states.update(current)
