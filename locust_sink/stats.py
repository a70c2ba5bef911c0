"""Aggregated stats snapshots, the run document and event documents (issue 5).

Everything here runs off the hot path: listeners only copy a few values (or merge a worker's report, the
same work Locust's master does), and documents are built in a background greenlet or at the end of the run,
then queued with `Flusher.submit_document` (which never blocks). No listener does I/O.

Sources of truth (see docs/stats.md):

- standalone: the local runner's `RequestStats` (source `local`);
- distributed: the master's `RequestStats` for the live aggregate (source `master`) and one cumulative
  `RequestStats` per worker rebuilt on the master from the workers' reports (source `worker`);
- the final snapshot of the master is the sum of the per-worker stats, taken after the workers' last reports
  (Locust's `quit` event): by then `--json-file` has reset the entries of the master's own stats
  (`serialize_stats()` resets what it serialises), while the per-worker sums hold exactly the same deltas.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import gevent
from locust.env import Environment
from locust.stats import RequestStats, StatsEntry, StatsError

from .nodes import node_id, node_role
from .options import SinkOptions
from .records import iso_timestamp

log = logging.getLogger("locust_sink")

PERCENTILES: tuple[float, ...] = (0.50, 0.66, 0.75, 0.80, 0.90, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0)
PERCENTILE_FIELDS: tuple[str, ...] = ("p50", "p66", "p75", "p80", "p90", "p95", "p98", "p99", "p99_9", "p99_99", "p100")
USER_ERROR_EVENTS_PER_KIND = 10  # live user_error documents per (exception type, raising line) and node
MAX_ERROR_KINDS = 1000
MAX_PENDING_EVENTS = 1000
YIELD_EVERY = 50  # entries between two yields while building a snapshot in the background
# The master's grace period after test_stop (web UI "stop") for the workers' last reports before the run is
# finalized; Locust's workers report every 3 s. At quit the run is finalized at once (the reports are in).
WORKER_REPORT_GRACE = 4.0


# ----------------------------------------------------------------------------------------------- helpers


def iso(epoch: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds (records.iso_timestamp), None for None."""
    return None if epoch is None else iso_timestamp(epoch)


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
    for percent, field in sorted(zip(PERCENTILES, PERCENTILE_FIELDS, strict=True), reverse=True):
        need = num_requests - int(num_requests * percent)
        while (i < 0 or processed < need) and i + 1 < len(keys):
            i += 1
            processed += response_times[keys[i]]
        result[field] = keys[i] if processed >= need else 0
    return result


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


def _key_hash(method: str, name: str) -> str:
    return hashlib.blake2b(f"{method}\x00{name}".encode(), digest_size=8).hexdigest()


def entry_document(
    entry: StatsEntry,
    base: Mapping[str, Any],
    previous: tuple[int, int],
    interval_s: float,
    user_count: int | None,
    final: bool,
    aggregated: bool,
) -> dict[str, Any]:
    """One `<prefix>-stats` document (see docs/DESIGN.md and docs/stats.md)."""
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


def git_commit(path: str | None) -> str | None:
    """HEAD commit of the git repository holding `path` (read from .git, no subprocess); None if none."""
    if not path:
        return None
    try:
        here = Path(path).resolve()
        here = here if here.is_dir() else here.parent
        for folder in (here, *here.parents):
            dot_git = folder / ".git"
            if dot_git.is_file():  # worktree or submodule: "gitdir: <path>"
                text = dot_git.read_text().strip()
                if not text.startswith("gitdir:"):
                    return None
                git_dir = (folder / text.split(":", 1)[1].strip()).resolve()
            elif dot_git.is_dir():
                git_dir = dot_git
            else:
                continue
            return _resolve_head(git_dir)
    except (OSError, ValueError):
        return None
    return None


def _resolve_head(git_dir: Path) -> str | None:
    head = (git_dir / "HEAD").read_text().strip()
    if not head.startswith("ref:"):
        return head or None
    ref = head.split(":", 1)[1].strip()
    common = git_dir
    if (git_dir / "commondir").is_file():
        common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
    for base in (git_dir, common):
        ref_file = base / ref
        if ref_file.is_file():
            return ref_file.read_text().strip() or None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref:
                return parts[0]
    return None


class WorkerStats:
    """What the master knows about one worker: its cumulative stats, rebuilt from its reports."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.stats = RequestStats(use_response_times_cache=False)
        self.dirty = False
        self.user_count: int | None = None
        self.sink: dict[str, Any] = {}
        self.previous: dict[tuple[str, str], tuple[int, int]] = {}
        self.last_snapshot: float | None = None
        self.seq = 0
        self.reports = 0


# ---------------------------------------------------------------------------------------------- recorder


class StatsRecorder:
    """Snapshots, run document and events for one Locust process; owned by `LocustSink`.

    Per-worker snapshots are taken on the MASTER from `worker_report` (not on each worker from
    `report_to_master`), because:

    - the master merges exactly the deltas it received into its own totals; summing the same deltas per
      worker makes "per-worker totals == master totals" hold by construction (a report lost in transit, or
      sent after the master stopped listening, is in neither), which worker-side snapshots cannot promise;
    - a worker's report holds deltas (Locust resets the worker's stats on every report), so cumulative
      per-worker figures need an accumulator anyway; on the master it is one place, one clock for
      `@timestamp`, and it sees workers join, go missing and quit (`runner.clients`);
    - the workers' LAST reports reach the master during its shutdown (`runner.quit()`), so the final
      per-worker and master snapshots can be written together, after all of them, at `quit`;
    - the cost is one `StatsEntry.extend` per endpoint per report on the master (what Locust already does
      for its own totals) and the master's sink writes (workers x endpoints) small documents per interval.

    Workers send their sink's state, new trouble messages and accounting inside their report
    (`report_to_master`, key `locust_sink`): it arrives in order with the stats, including the final report.
    """

    def __init__(self, environment: Environment, port: Any, options: Callable[[], SinkOptions]) -> None:
        self.port = port
        self.options = options
        self.environment = environment
        parsed = self.environment.parsed_options
        self.locustfile: str | None = getattr(parsed, "locustfile", None) if parsed is not None else None
        self.git_commit = git_commit(self.locustfile.split(",")[0] if self.locustfile else None)
        self.hostname = socket.gethostname()
        # current run
        self.run_id: str | None = None
        self.run_doc: dict[str, Any] | None = None
        self.start: float | None = None
        self.active = False  # a run started and is not finalized yet
        self.stopped_at: float | None = None
        self.exit_code: int | None = None
        self._previous: dict[tuple[str, str], tuple[int, int]] = {}
        self._last_snapshot: float | None = None
        self._snap_seq = 0
        self._event_seq = 0
        self._last_user_count: int | None = None
        self.workers: dict[str, WorkerStats] = {}
        self._known_workers: dict[str, str] = {}  # id -> last state seen
        self.trouble: dict[str, list[str]] = {}  # node -> messages (own node and workers)
        self._trouble_seen: set[tuple[str, str]] = set()
        self._trouble_sent = 0  # worker: messages already sent to the master
        self._user_errors: dict[tuple[str, str, int], int] = {}
        self._pending_events: list[dict[str, Any]] = []
        self._loop: gevent.Greenlet | None = None
        self._grace: gevent.Greenlet | None = None
        self._failed_once: set[str] = set()
        self.finished = False

    # ----- small utilities -------------------------------------------------------------------------
    @property
    def role(self) -> str:
        return node_role(self.environment)

    @property
    def node(self) -> str:
        return node_id(self.environment)

    @property
    def interval(self) -> float:
        return max(0.2, float(self.options().stats_interval))

    def _submit(self, family: str, doc: dict[str, Any], doc_id: str | None, op: str = "create") -> None:
        self.port.submit(family, doc, doc["run_id"], doc_id=doc_id, op=op)

    def event(self, kind: str, node: str | None = None, when: float | None = None, **fields: Any) -> None:
        """Queue one `<prefix>-events` document (held until the run id is known and the sink started)."""
        doc: dict[str, Any] = {"@timestamp": iso(when or time.time()), "node": node or self.node, "event": kind}
        doc.update({k: v for k, v in fields.items() if v is not None})
        if not self.port.started() or self.run_id is None:
            if len(self._pending_events) < MAX_PENDING_EVENTS:
                self._pending_events.append(doc)
            return
        self._emit_event(doc)

    def _emit_event(self, doc: dict[str, Any]) -> None:
        assert self.run_id is not None
        doc["run_id"] = self.run_id
        self._event_seq += 1
        self._submit("events", doc, f"{self.run_id}:{self.node}:e{self._event_seq}")

    def _guarded(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Stats must never break the load test: log each distinct failure once."""
        try:
            return fn(*args, **kwargs)
        except gevent.GreenletExit:
            raise
        except Exception as exc:
            message = f"{what}: {type(exc).__name__}: {exc}"
            if message not in self._failed_once:
                self._failed_once.add(message)
                log.error("locust-sink: %s", message, exc_info=True)
            return None

    # ----- listeners (registered by plugin.register_listeners) -----------------------------------------
    def register(self, events: Any) -> None:
        events.spawning_complete.add_listener(self.on_spawning_complete)
        events.worker_connect.add_listener(self.on_worker_connect)
        events.worker_report.add_listener(self.on_worker_report)
        events.report_to_master.add_listener(self.on_report_to_master)
        events.user_error.add_listener(self.on_user_error)
        events.reset_stats.add_listener(self.on_reset_stats)

    def on_spawning_complete(self, user_count: int, **_kw: Any) -> None:
        if self.role == "worker":
            return
        if self.environment.reset_stats:
            self._reset_counters()  # Locust resets its stats now too (--reset-stats)
        self.event("spawning_complete", user_count=user_count)

    def on_reset_stats(self, **_kw: Any) -> None:
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._previous = {}
        for worker in self.workers.values():
            worker.stats = RequestStats(use_response_times_cache=False)
            worker.previous = {}

    def on_worker_connect(self, client_id: str, **_kw: Any) -> None:
        if client_id not in self._known_workers:
            self._known_workers[client_id] = "ready"
            self.event("worker_joined", node=client_id, message=f"worker {client_id} connected")

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        """Master: add the report's deltas to this worker's cumulative stats (CPU only, like Locust's own)."""
        self._guarded("worker report", self._worker_report, client_id, data)

    def _worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        worker = self.workers.get(client_id)
        if worker is None:
            worker = self.workers[client_id] = WorkerStats(client_id)
        merge_report(worker.stats, data)
        worker.dirty = True
        worker.reports += 1
        if "user_count" in data:
            worker.user_count = data["user_count"]
        payload = data.get("locust_sink")
        if isinstance(payload, dict):
            for message in payload.get("trouble") or ():
                self._record_trouble(client_id, str(message))
            worker.sink = {k: v for k, v in payload.items() if k != "trouble"}

    def on_report_to_master(self, client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        """Worker: tell the master how this node's sink is doing (state, new trouble, accounting)."""
        if not self.port.started():
            return
        status = self.port.status()
        payload: dict[str, Any] = {
            "state": status["state"],
            "requests": status["requests"],
            "sampled_out": status["sampled_out"],
        }
        trouble = self.port.trouble()
        if len(trouble) > self._trouble_sent:
            payload["trouble"] = list(trouble[self._trouble_sent :])
            self._trouble_sent = len(trouble)
        data["locust_sink"] = payload

    def on_user_error(self, user_instance: Any, exception: BaseException, tb: Any, **_kw: Any) -> None:
        """Local/worker: one event per occurrence with its traceback, capped per kind (type + raising line)."""
        if self.role == "master":
            return
        last = tb
        while last is not None and last.tb_next is not None:
            last = last.tb_next
        where = (last.tb_frame.f_code.co_filename, last.tb_lineno) if last is not None else ("", 0)
        key = (type(exception).__name__, where[0], where[1])
        count = self._user_errors.get(key, 0) + 1
        if count == 1 and len(self._user_errors) >= MAX_ERROR_KINDS:
            return
        self._user_errors[key] = count
        if count > USER_ERROR_EVENTS_PER_KIND:
            return
        user = getattr(user_instance, "user", user_instance)  # a TaskSet knows its User
        details: dict[str, Any] = {"user_class": type(user).__name__, "occurrence": count}
        if count == USER_ERROR_EVENTS_PER_KIND:
            details["further_occurrences_not_recorded"] = True
        self.event(
            "user_error",
            message=f"{type(exception).__name__}: {exception}"[:4000],
            error=type(exception).__name__,
            occurrences=1,
            traceback="".join(traceback.format_exception(type(exception), exception, tb))[-20000:],
            details=details,
        )

    # ----- run lifecycle (called by LocustSink) ---------------------------------------------------------
    def start_run(self, run_id: str) -> None:
        """test_start, after the run id is chosen and the flusher started."""
        if self.role == "worker":
            self.run_id = run_id
            self._user_errors = {}
            self._flush_pending()
            return
        if self.active:
            self.finalize()  # a new run before the previous one was finalized (web UI)
        now = time.time()
        self.run_id = run_id
        self.start = now
        self.active = True
        self.stopped_at = None
        self.exit_code = None
        self._previous = {}
        self._last_snapshot = now
        self._snap_seq = 0
        self._last_user_count = None
        self.workers = {}
        self._user_errors = {}
        self.run_doc = self._run_document(now)
        # create, not index: a start document replayed late from the spool must not overwrite the final one
        self._submit("runs", dict(self.run_doc), self.run_id, op="create")
        self.event("test_start", when=now, user_count=self._user_count(), details=self._target())
        if self.role == "master":
            self._watch_workers()  # workers that connected before the test and were not seen yet
        self._flush_pending()
        if self._loop is None or self._loop.dead:
            self._loop = gevent.spawn(self._run_loop)

    def stop_run(self) -> None:
        """test_stop: standalone, the local stats are final now (all users stopped); on the master the
        workers' last reports are still to come, so the run is finalized at quit (or after a grace period
        when the test is stopped from the web UI and Locust keeps running)."""
        if self.role == "worker" or not self.active:
            return
        self.stopped_at = time.time()
        self.event("test_stop", when=self.stopped_at, user_count=self._user_count())
        if self.role == "master":
            if self._grace is None or self._grace.dead:
                self._grace = gevent.spawn_later(WORKER_REPORT_GRACE, self._guarded, "finalize", self.finalize)
        else:
            self._guarded("final snapshot", self.finalize)

    def finish(self, exit_code: int | None) -> None:
        """At the end of the process (quit): finalize the run if still open; remember the exit code."""
        if self.finished:
            return
        self.finished = True
        if self._grace is not None:
            self._grace.kill(block=False)
        if self._loop is not None:
            self._loop.kill(block=False)
        if self.role == "worker":
            return
        if self.active:
            self._guarded("final snapshot", self.finalize, submit_run=False)
        if self.run_doc is not None and exit_code is not None:
            self.exit_code = exit_code
            self.run_doc["exit_code"] = exit_code
            self.run_doc["status"] = "failed" if exit_code else "stopped"

    def closing_documents(self, first_pass_done: bool) -> None:
        """After the first pass of the final flush: the run document with where the records went, and one
        `sink_summary` event per node with its own accounting."""
        summary = self._sink_summary()
        if self.run_id is not None:
            self.event("sink_summary", details=summary)
        if self.role != "worker" and self.run_doc is not None:
            doc = self.run_doc
            doc["sink"] = self._run_sink_totals(summary)
            doc["sink_by_node"] = self._sink_by_node(summary)
            self._own_trouble()
            doc["sink_trouble_nodes"] = sorted(self.trouble)
            doc["sink_trouble"] = {node: msgs[:20] for node, msgs in self.trouble.items()}
            doc["sink_final_flush_complete"] = first_pass_done
            self._submit("runs", dict(doc), doc["run_id"], op="index")

    # ----- the background loop ------------------------------------------------------------------------
    def _run_loop(self) -> None:
        while True:
            gevent.sleep(self.interval)
            self._guarded("stats snapshot", self.tick)

    def tick(self, yielding: bool = True) -> None:
        """One periodic pass: trouble, workers, user count, per-worker and own snapshots."""
        self._own_trouble()
        if self.role == "master":
            self._watch_workers()
        if not self.active:
            return
        runner = self.environment.runner
        if runner is None:
            return
        now = time.time()
        user_count = self._user_count()
        if user_count is not None and user_count != self._last_user_count:
            self._last_user_count = user_count
            self.event("user_count", user_count=user_count)
        if self.role == "master":
            for worker in list(self.workers.values()):
                if worker.dirty:
                    self._worker_snapshot(worker, now, final=False, yielding=yielding)
        self._snapshot(runner.stats, self.role, self.node, now, user_count, False, yielding)

    def _snapshot(
        self,
        stats: RequestStats,
        source: str,
        node: str,
        now: float,
        user_count: int | None,
        final: bool,
        yielding: bool,
        previous: dict[tuple[str, str], tuple[int, int]] | None = None,
        last: float | None = None,
        seq: int | None = None,
    ) -> None:
        own = previous is None
        if own:
            previous = self._previous
            last = self._last_snapshot
            self._snap_seq += 1
            seq = self._snap_seq
            self._last_snapshot = now
        assert previous is not None and self.run_id is not None
        interval_s = now - (last or self.start or now)
        base = {"@timestamp": iso(now), "run_id": self.run_id, "node": node, "source": source}
        prefix = f"{self.run_id}:{node}:{source}:{seq}"
        entries = [(k, e) for k, e in list(stats.entries.items()) if e.num_requests or e.num_failures]
        for i, (key, entry) in enumerate(entries):
            if yielding and i and i % YIELD_EVERY == 0:
                gevent.sleep(0)
                if not self.active:
                    return  # the run was finalized meanwhile: the final snapshot supersedes this one
            doc = entry_document(entry, base, previous.get(key, (0, 0)), interval_s, user_count, final, False)
            previous[key] = (entry.num_requests, entry.num_failures)
            self._submit("stats", doc, f"{prefix}:{_key_hash(entry.method, entry.name)}")
        total = stats.total
        key = ("Aggregated", "")
        doc = entry_document(total, base, previous.get(key, (0, 0)), interval_s, user_count, final, True)
        previous[key] = (total.num_requests, total.num_failures)
        self._submit("stats", doc, f"{prefix}:agg")

    def _worker_snapshot(self, worker: WorkerStats, now: float, final: bool, yielding: bool) -> None:
        worker.seq += 1
        self._snapshot(
            worker.stats,
            "worker",
            worker.node,
            now,
            worker.user_count,
            final,
            yielding,
            previous=worker.previous,
            last=worker.last_snapshot,
            seq=worker.seq,
        )
        worker.last_snapshot = now
        worker.dirty = False

    def finalize(self, submit_run: bool = True) -> None:
        """Final snapshot(s), failure groups and user-error groups; the run document gets its end."""
        if not self.active:
            return
        self.active = False
        if self._grace is not None and self._grace is not gevent.getcurrent():
            self._grace.kill(block=False)
        runner = self.environment.runner
        now = time.time()
        end = self.stopped_at or now
        if self.role == "master":
            self._watch_workers()
            for worker in list(self.workers.values()):
                self._worker_snapshot(worker, now, final=True, yielding=False)
            # the sum of what every worker reported == the master's stats (see the module docstring)
            stats = merge_stats(w.stats for w in self.workers.values())
            if not self.workers and runner is not None:
                stats = runner.stats
        else:
            stats = runner.stats if runner is not None else RequestStats()
        user_count = self._user_count()
        self._snapshot(stats, self.role, self.node, now, user_count, True, False)
        for error in sorted(stats.errors.values(), key=lambda e: (-e.occurrences, e.method, e.name)):
            self.event(
                "failure_group",
                when=end,
                request_type=error.method,
                name=error.name,
                error=StatsError.parse_error(error.error),
                occurrences=error.occurrences,
                message=error.to_name(),
                details={"first_seen": iso(error.first_seen), "last_seen": iso(error.last_seen)},
            )
        for row in list(getattr(runner, "exceptions", {}).values()):
            self.event(
                "user_error",
                when=end,
                message=str(row.get("msg"))[:4000],
                occurrences=row.get("count"),
                traceback=str(row.get("traceback"))[-20000:],
                details={"final": True, "nodes": sorted(str(n) for n in row.get("nodes") or ())},
            )
        if self.run_doc is not None:
            total = stats.total
            pct = percentile_values(total.response_times, total.num_requests - total.num_none_requests)
            self.run_doc.update(
                {
                    "status": "stopped",
                    "end_time": iso(end),
                    "duration_s": round(end - (self.start or end), 3),
                    "totals": {
                        "requests": total.num_requests,
                        "failures": total.num_failures,
                        "rps": round(total.num_requests / max(end - (self.start or end), 1e-9), 3),
                        "p50": pct["p50"],
                        "p95": pct["p95"],
                        "p99": pct["p99"],
                        "avg_response_time": total.avg_response_time,
                        "max_response_time": total.max_response_time,
                    },
                    "failure_groups": len(stats.errors),
                    "user_errors": sum(int(r.get("count") or 0) for r in getattr(runner, "exceptions", {}).values()),
                }
            )
            if self.role == "master":
                self.run_doc["workers"] = sorted(self.workers)
            if submit_run:
                self._own_trouble()
                self.run_doc["sink_trouble_nodes"] = sorted(self.trouble)
                self._submit("runs", dict(self.run_doc), self.run_doc["run_id"], op="index")
        self.port.request_drain()

    # ----- workers, trouble, metadata -----------------------------------------------------------------
    def _watch_workers(self) -> None:
        clients = getattr(self.environment.runner, "clients", None)
        if clients is None:
            return
        current = {cid: str(getattr(clients[cid], "state", "")) for cid in list(clients)}
        for cid, state in current.items():
            before = self._known_workers.get(cid)
            if before is None or (before == "missing" and state != "missing"):
                self.event("worker_joined", node=cid, message=f"worker {cid} connected", details={"state": state})
            elif state == "missing" and before != "missing":
                self.event("worker_lost", node=cid, message=f"worker {cid} stopped sending heartbeats")
        for cid in list(self._known_workers):
            if cid not in current:
                self.event("worker_lost", node=cid, message=f"worker {cid} left", details={"reason": "left"})
                del self._known_workers[cid]
        self._known_workers.update(current)

    def _record_trouble(self, node: str, message: str) -> None:
        if (node, message) in self._trouble_seen:
            return
        self._trouble_seen.add((node, message))
        self.trouble.setdefault(node, []).append(message)
        self.event("sink_trouble", node=node, message=message)

    def _own_trouble(self) -> None:
        if self.port.started() and self.role != "worker":
            for message in list(self.port.trouble()):
                self._record_trouble(self.node, message)

    def _flush_pending(self) -> None:
        if not self.port.started() or self.run_id is None:
            return
        pending, self._pending_events = self._pending_events, []
        for doc in pending:
            self._emit_event(doc)

    def _user_count(self) -> int | None:
        runner = self.environment.runner
        return getattr(runner, "user_count", None) if runner is not None else None

    def _target(self) -> dict[str, Any]:
        runner = self.environment.runner
        parsed = self.environment.parsed_options
        return {
            "target_user_count": getattr(runner, "target_user_count", None),
            "spawn_rate": getattr(runner, "spawn_rate", None) or getattr(parsed, "spawn_rate", None),
        }

    def _run_document(self, now: float) -> dict[str, Any]:
        import locust

        from . import __version__

        env = self.environment
        parsed = env.parsed_options
        runner = env.runner
        user_classes = getattr(runner, "user_classes", None) or env.user_classes or []
        opts = self.options()
        users = getattr(runner, "target_user_count", None) or getattr(parsed, "num_users", None)
        spawn_rate = getattr(runner, "spawn_rate", None) or getattr(parsed, "spawn_rate", None)
        doc: dict[str, Any] = {
            "run_id": self.run_id,
            "@timestamp": iso(now),
            "node": self.node,
            "status": "running",
            "start_time": iso(now),
            "locustfile": self.locustfile,
            "host": env.host,
            "user_classes": [
                {
                    "name": cls.__name__,
                    "weight": getattr(cls, "weight", 1),
                    "fixed_count": getattr(cls, "fixed_count", 0),
                }
                for cls in user_classes
            ],
            "users": users,
            "spawn_rate": spawn_rate,
            "run_time_limit": getattr(parsed, "run_time", None),
            "tags": opts.tags or None,
            "description": opts.description,
            "locust_version": locust.__version__,
            "sink_version": __version__,
            "git_commit": self.git_commit,
            "hostname": self.hostname,
            "pid": os.getpid(),
            "mode": "distributed" if self.role == "master" else "standalone",
            "sample_rate": opts.sample_rate,
            "stats_interval_s": opts.stats_interval,
            "index_prefix": opts.index_prefix,
        }
        if self.role == "master":
            doc["expected_workers"] = getattr(parsed, "expect_workers", None)
            doc["workers_at_start"] = getattr(runner, "worker_count", None)
        return {k: v for k, v in doc.items() if v is not None}

    def _sink_summary(self) -> dict[str, Any]:
        status = self.port.status()
        return {
            "requests": status["requests"],
            "documents": status["documents"],
            "sampled_out": status["sampled_out"],
            "state": status["state"],
            "retries": status["retries"],
            "encoding": status["encoding"],
            "trouble": list(status["trouble"])[:20],
        }

    def _sink_by_node(self, summary: dict[str, Any]) -> dict[str, Any]:
        nodes: dict[str, Any] = {self.node: summary}
        for worker in self.workers.values():
            if worker.sink:
                nodes[worker.node] = worker.sink
        return nodes

    def _run_sink_totals(self, summary: dict[str, Any]) -> dict[str, int]:
        """Request records per outcome, summed over the nodes that recorded them (the master records none;
        its workers' figures are as of their last report, see docs/stats.md)."""
        fields = ("emitted", "indexed", "written", "spooled", "dead_lettered", "dropped", "queued", "in_flight")
        sources = [w.sink for w in self.workers.values() if w.sink] if self.role == "master" else [summary]
        totals = dict.fromkeys(fields, 0)
        sampled = 0
        for src in sources:
            for k in fields:
                totals[k] += int((src.get("requests") or {}).get(k, 0))
            sampled += int(src.get("sampled_out") or 0)
        totals["sampled_out"] = sampled
        return totals
