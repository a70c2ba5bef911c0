"""`StatsRecorder`: Locust's listeners for snapshots, events and the run document on one node, and the
order in which the pieces of this package run.

Everything here runs off the hot path: listeners only copy a few values (or merge a worker's report, the
same work Locust's master does), and documents are built in a background greenlet or at the end of the run,
then queued with `SinkPort.submit` (which never blocks). No listener does I/O.

Sources of truth (see docs/stats.md):

- standalone: the local runner's `RequestStats` (source `local`);
- distributed: the master's `RequestStats` for the live aggregate (source `master`) and one cumulative
  `RequestStats` per worker rebuilt on the master from the workers' reports (source `worker`, workers.py);
- the final snapshot of the master is the sum of the per-worker stats, taken after the workers' last reports
  (Locust's `quit` event): by then `--json-file` has reset the entries of the master's own stats
  (`serialize_stats()` resets what it serialises), while the per-worker sums hold exactly the same deltas.

Per-worker snapshots are taken on the master from `worker_report`, not on each worker: the per-worker sums
equal the master's totals by construction, there is one clock for `@timestamp`, the master sees workers
join and leave, and the final per-worker snapshots can be written after the last reports. The cost is one
`StatsEntry.extend` per endpoint per report on the master, which Locust already does for its own totals.

The end of a run, in order (see also docs/stats.md, "When things are written"):

1. `stop_run` (test_stop, never blocks): a `test_stop` event. Standalone the run is finalized at once (all
   users have stopped); the master waits WORKER_REPORT_GRACE seconds for the workers' last reports.
2. finalizing (internal; once per run): final snapshots, failure groups, final user-error rows, the run
   document's end fields; the run document is written unless `finish` did the finalizing.
3. `finish(exit_code)` (Locust's quit): stops the greenlets, finalizes a run still open (the workers'
   last reports are in by then) and adds the exit code.
4. `closing_documents` (after the first pass of the final flush): the run document with where the records
   went, and one `sink_summary` event for this node.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import gevent
from locust.env import Environment
from locust.stats import RequestStats

from ..meta import provenance
from ..nodes import Role, node_id, node_role
from .events import EventLog, failure_groups, final_user_error_fields
from .health import USAGE_KEY, NodeHealth, Usage, UsageMeter
from .lifecycle import WORKER_REPORT_GRACE, Guard, Lifecycle
from .port import SinkPort, StatsObserver
from .rundoc import RunDocument, end_fields, node_summary, sink_fields, start_fields, target
from .snapshots import SnapshotCursor, SnapshotWriter
from .trouble import PAYLOAD_KEY, TroubleRelay
from .workers import Worker, WorkerBook

if TYPE_CHECKING:  # options.py is imported for its type only
    from ..options import SinkOptions

MIN_INTERVAL = 0.2  # seconds: the shortest stats interval honoured


class StatsRecorder:
    """Snapshots, run document and events for one Locust process."""

    def __init__(
        self,
        environment: Environment,
        port: SinkPort,
        options: Callable[[], SinkOptions],
        observer: StatsObserver | None = None,
        meter: UsageMeter | None = None,
    ) -> None:
        self.environment = environment
        self.port = port
        self.options = options  # the current options (a worker's arrive with the spawn message)
        self.origin = provenance(getattr(environment.parsed_options, "locustfile", None))
        self.lifecycle = Lifecycle()
        self.events = EventLog(port, lambda: self.node)
        self.book = WorkerBook(self.events)
        self.trouble = TroubleRelay(self.events)
        self.health = NodeHealth(self.events, meter)  # meter: this process's CPU/memory (psutil by default)
        self.cursor = SnapshotCursor()  # this node's own snapshots
        self.run = RunDocument(port)
        self._last_user_count: int | None = None
        self.guard = Guard()
        # an observer is called through the guard; without one nothing is built for it
        self._on_status: Callable[[str, dict[str, Any]], Any] | None = None
        on_snapshot = None
        if observer is not None:
            on_snapshot = partial(self.guard, "observer", observer.on_snapshot)
            self._on_status = partial(self.guard, "observer", observer.on_status)
        self.snapshots = SnapshotWriter(port, on_snapshot)

    @property
    def role(self) -> Role:
        return node_role(self.environment)

    @property
    def node(self) -> str:
        return node_id(self.environment)

    @property
    def run_id(self) -> str | None:
        return self.events.run_id

    @property
    def interval(self) -> float:
        return max(MIN_INTERVAL, float(self.options().stats_interval))

    # ----- listeners -------------------------------------------------------------------------------
    def register(self, events: Any) -> None:
        """Add the recorder's listeners to Locust's `events` (after Locust's own: they see its payloads)."""
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
            self.on_reset_stats()  # Locust resets its stats now too (--reset-stats)
        self.events.event("spawning_complete", user_count=user_count)

    def on_reset_stats(self, **_kw: Any) -> None:
        self.cursor.reset()
        self.book.reset_stats()

    def on_worker_connect(self, client_id: str, **_kw: Any) -> None:
        self.book.connected(client_id)

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        """Master: add the report's deltas to this worker's cumulative stats (CPU only, like Locust's own)."""
        self.guard("worker report", self._worker_report, client_id, data)

    def _worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        worker = self.book.merge(client_id, data)
        clients = getattr(self.environment.runner, "clients", None) or {}
        usage = self.health.worker(client_id, data, clients.get(client_id), time.time())
        worker.usage = usage or worker.usage
        status = self.trouble.receive(client_id, data)
        if status is not None:
            worker.status = status
            if self._on_status is not None:
                self._on_status(client_id, status)

    def on_report_to_master(self, client_id: str, data: dict[str, Any], **_kw: Any) -> None:
        """Worker: tell the master how this node's process (CPU, memory) and sink are doing (state, new
        trouble, accounting)."""
        usage = self.health.outgoing()
        if usage is not None:
            data[USAGE_KEY] = usage
        if not self.port.started():
            return
        status = self.port.status()
        data[PAYLOAD_KEY] = self.trouble.outgoing(status, self.port.trouble())
        if self._on_status is not None:
            self._on_status(self.node, node_summary(status))

    def on_user_error(self, user_instance: Any, exception: BaseException, tb: Any, **_kw: Any) -> None:
        """Local/worker: one event per occurrence with its traceback, capped per kind (type + raising line)."""
        if self.role != "master":
            self.events.user_error(user_instance, exception, tb)

    # ----- run lifecycle (called by the plugin) ------------------------------------------------------
    def start_run(self, run_id: str) -> None:
        """test_start, after the run id is chosen and delivery started."""
        if self.role == "worker":
            self.events.begin_run(run_id)
            self.events.release()
            return
        if self.lifecycle.active:
            self._finalize()  # a new run before the previous one was finalized (web UI)
        now = time.time()
        self.lifecycle.begin(now)
        self.cursor = SnapshotCursor()
        self._last_user_count = None
        self.book.new_run()
        self.health.begin_run()
        self.events.begin_run(run_id)
        self.snapshots.begin_run(run_id, now)
        fields = start_fields(
            self.environment,
            run_id=run_id,
            node=self.node,
            role=self.role,
            now=now,
            options=self.options(),
            origin=self.origin,
        )
        self.run.start(fields)
        self.events.event("test_start", when=now, user_count=self._user_count(), details=target(self.environment))
        if self.role == "master":
            self._watch_workers()  # workers that connected before the test and were not seen yet
        self.events.release()
        self.lifecycle.keep_ticking(self._run_loop)

    def stop_run(self) -> None:
        """test_stop: standalone, the local stats are final now (all users stopped); on the master the
        workers' last reports are still to come, so the run is finalized at quit (or after a grace period
        when the test is stopped from the web UI and Locust keeps running). Never blocks."""
        if self.role == "worker" or not self.lifecycle.active:
            return
        now = time.time()
        self.lifecycle.stop(now)
        self.events.event("test_stop", when=now, user_count=self._user_count())
        if self.role == "master":
            self.lifecycle.finalize_later(WORKER_REPORT_GRACE, self.guard, "finalize", self._finalize)
        else:
            self.guard("final snapshot", self._finalize)

    def finish(self, exit_code: int | None) -> None:
        """At the end of the process (quit): finalize the run if still open; record the exit code."""
        if not self.lifecycle.close() or self.role == "worker":
            return
        if self.lifecycle.active:
            self.guard("final snapshot", self._finalize, submit_run=False)
        self.run.exit(exit_code)

    def closing_documents(self, first_pass_done: bool) -> None:
        """After the first pass of the final flush: the run document with where the records went, and one
        `sink_summary` event per node with its own accounting."""
        summary = node_summary(self.port.status())
        if self._on_status is not None:
            self._on_status(self.node, summary)
        if self.run_id is not None:
            self.events.event("sink_summary", details=summary)
        if self.role == "worker" or self.run.doc is None:
            return
        self._own_trouble()
        sink = sink_fields(self.role, self.node, summary, self.book.statuses())
        self.run.write_closing(sink, self.trouble.nodes(), self.trouble.messages(), first_pass_done)

    # ----- snapshots ---------------------------------------------------------------------------------
    def _run_loop(self) -> None:
        while True:
            gevent.sleep(self.interval)
            self.guard("stats snapshot", self.tick)

    def tick(self) -> None:
        """One periodic pass: trouble, workers, user count, per-worker and own snapshots."""
        self._own_trouble()
        if self.role == "master":
            self._watch_workers()
        if self._on_status is not None:
            self._on_status(self.node, node_summary(self.port.status()))
        runner = self.environment.runner
        if not self.lifecycle.active or runner is None:
            return
        now = time.time()
        user_count = self._user_count()
        if user_count is not None and user_count != self._last_user_count:
            self._last_user_count = user_count
            self.events.event("user_count", user_count=user_count)
        usage = self.health.own(self.node, now)
        if self.role == "master":
            for worker in self.book.all():
                if worker.dirty:  # read as the loop gets there: a report may arrive during a pause
                    self._worker_snapshot(worker, now, final=False, pause=self._pause)
        self.snapshots.write(
            runner.stats, self.cursor, self.role, self.node, now, user_count, False, self._pause, _fields(usage)
        )

    def _pause(self) -> bool:
        """Between entries of a periodic snapshot: let other greenlets run; go on while the run is open."""
        gevent.sleep(0)
        return self.lifecycle.active

    def _worker_snapshot(self, worker: Worker, now: float, final: bool, pause: Callable[[], bool] | None) -> None:
        fields = _fields(worker.usage)
        self.snapshots.write(
            worker.stats, worker.cursor, "worker", worker.node, now, worker.user_count, final, pause, fields
        )
        worker.dirty = False

    def _finalize(self, submit_run: bool = True) -> None:
        """Final snapshot(s), failure groups and user-error groups; the run document gets its end."""
        if not self.lifecycle.end():
            return
        runner = self.environment.runner
        now = time.time()
        end = self.lifecycle.stopped_at or now
        stats = runner.stats if runner is not None else RequestStats()
        if self.role == "master":
            self._watch_workers()
            for worker in self.book.all():
                self._worker_snapshot(worker, now, final=True, pause=None)
            # the sum of what every worker reported == the master's stats (see the module docstring)
            total = self.book.total()
            stats = total if total is not None else stats
        usage = _fields(self.health.own(self.node, now))
        self.snapshots.write(stats, self.cursor, self.role, self.node, now, self._user_count(), True, None, usage)
        for fields in failure_groups(stats):
            self.events.event("failure_group", when=end, **fields)
        exceptions = getattr(runner, "exceptions", {})
        for row in list(exceptions.values()):
            self.events.event("user_error", when=end, **final_user_error_fields(row))
        workers = sorted(self.book.workers) if self.role == "master" else None
        self.run.end(end_fields(stats, exceptions, self.lifecycle.started_at, end), workers)
        if submit_run:
            self._own_trouble()
            self.run.write_end(self.trouble.nodes())
        self.port.request_drain()

    # ----- workers and trouble -------------------------------------------------------------------------
    def _watch_workers(self) -> None:
        self.book.watch(getattr(self.environment.runner, "clients", None))

    def _own_trouble(self) -> None:
        if self.port.started() and self.role != "worker":
            self.trouble.record(self.node, self.port.trouble())

    def _user_count(self) -> int | None:
        runner = self.environment.runner
        return getattr(runner, "user_count", None) if runner is not None else None


def _fields(usage: Usage | None) -> dict[str, Any] | None:
    return usage.fields() if usage is not None else None
