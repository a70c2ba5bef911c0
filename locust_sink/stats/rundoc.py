"""The run document (`<prefix>-runs`, `_id` = run id): pure functions for the fields known at the start,
the fields added when the run ends (from the final stats), the exit code and the sink's fields (from the
nodes' sink statuses), and `RunDocument`, which applies them in that order to one dict and writes it
(see docs/stats.md)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import locust
from locust.env import Environment
from locust.stats import RequestStats

from .. import __version__
from ..meta import Provenance
from ..records import iso_timestamp
from .port import SinkPort
from .snapshots import percentile_values

if TYPE_CHECKING:  # options.py is imported for its type only
    from ..options import SinkOptions

SUMMARY_FIELDS = ("requests", "documents", "sampled_out", "state", "retries", "encoding", "trouble")
SUMMARY_TROUBLE = 20  # trouble messages in a node's summary
SINK_TOTAL_FIELDS = ("emitted", "indexed", "written", "spooled", "dead_lettered", "dropped", "queued", "in_flight")


def target(environment: Environment) -> dict[str, Any]:
    """The users and spawn rate asked for (the `test_start` event's details)."""
    runner = environment.runner
    parsed = environment.parsed_options
    return {
        "target_user_count": getattr(runner, "target_user_count", None),
        "spawn_rate": getattr(runner, "spawn_rate", None) or getattr(parsed, "spawn_rate", None),
    }


def start_fields(
    environment: Environment,
    *,
    run_id: str,
    node: str,
    role: str,
    now: float,
    options: SinkOptions,
    origin: Provenance,
) -> dict[str, Any]:
    """The run document as written at test start (`status: running`); None values are left out. No
    option values but the index prefix, sample rate and stats interval: secrets never reach it."""
    parsed = environment.parsed_options
    runner = environment.runner
    user_classes = getattr(runner, "user_classes", None) or environment.user_classes or []
    users = getattr(runner, "target_user_count", None) or getattr(parsed, "num_users", None)
    spawn_rate = getattr(runner, "spawn_rate", None) or getattr(parsed, "spawn_rate", None)
    doc: dict[str, Any] = {
        "run_id": run_id,
        "@timestamp": iso_timestamp(now),
        "node": node,
        "status": "running",
        "start_time": iso_timestamp(now),
        "locustfile": origin.locustfile,
        "host": environment.host,
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
        "tags": options.tags or None,
        "description": options.description,
        "locust_version": locust.__version__,
        "sink_version": __version__,
        "git_commit": origin.git_commit,
        "hostname": origin.hostname,
        "pid": os.getpid(),
        "mode": "distributed" if role == "master" else "standalone",
        "sample_rate": options.sample_rate,
        "stats_interval_s": options.stats_interval,
        "index_prefix": options.index_prefix,
    }
    if role == "master":
        doc["expected_workers"] = getattr(parsed, "expect_workers", None)
        doc["workers_at_start"] = getattr(runner, "worker_count", None)
    return {k: v for k, v in doc.items() if v is not None}


def end_fields(
    stats: RequestStats, exceptions: Mapping[Any, Mapping[str, Any]], start: float | None, end: float
) -> dict[str, Any]:
    """What the run document gets when the run ends: `status: stopped`, end time, duration and totals
    (Locust's percentiles of the Aggregated histogram), failure rows and user errors."""
    total = stats.total
    pct = percentile_values(total.response_times, total.num_requests - total.num_none_requests)
    duration = end - (start or end)
    return {
        "status": "stopped",
        "end_time": iso_timestamp(end),
        "duration_s": round(duration, 3),
        "totals": {
            "requests": total.num_requests,
            "failures": total.num_failures,
            "rps": round(total.num_requests / max(duration, 1e-9), 3),
            "p50": pct["p50"],
            "p95": pct["p95"],
            "p99": pct["p99"],
            "avg_response_time": total.avg_response_time,
            "max_response_time": total.max_response_time,
        },
        "failure_groups": len(stats.errors),
        "user_errors": sum(int(row.get("count") or 0) for row in exceptions.values()),
    }


def exit_fields(exit_code: int) -> dict[str, Any]:
    """Locust's exit code, and `status: failed` when it is not 0."""
    return {"exit_code": exit_code, "status": "failed" if exit_code else "stopped"}


def node_summary(status: Mapping[str, Any]) -> dict[str, Any]:
    """One node's sink status in the stored shape (a `sink_summary` event, an entry of `sink_by_node`)."""
    summary = {name: status[name] for name in SUMMARY_FIELDS}
    summary["trouble"] = list(status["trouble"])[:SUMMARY_TROUBLE]
    return summary


def sink_totals(sources: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Request records per outcome summed over the nodes that recorded them (standalone: this node; on the
    master its workers, as of their last report: the master records no requests)."""
    totals = dict.fromkeys(SINK_TOTAL_FIELDS, 0)
    sampled = 0
    for src in sources:
        for name in SINK_TOTAL_FIELDS:
            totals[name] += int((src.get("requests") or {}).get(name, 0))
        sampled += int(src.get("sampled_out") or 0)
    totals["sampled_out"] = sampled
    return totals


def sink_by_node(node: str, summary: dict[str, Any], workers: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Each node's sink figures: this node's summary, then each worker's last reported status."""
    nodes: dict[str, Any] = {node: summary}
    nodes.update(workers)
    return nodes


def sink_fields(
    role: str, node: str, summary: dict[str, Any], workers: list[tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    """Where the records went: the totals (the master's are its workers') and each node's figures."""
    sources = [status for _, status in workers] if role == "master" else [summary]
    return {"sink": sink_totals(sources), "sink_by_node": sink_by_node(node, summary, workers)}


class RunDocument:
    """The current run's document: the fields above applied in order to one dict, written through the
    port (`create` at the start, `index` afterwards). `doc` is None before the first run."""

    def __init__(self, port: SinkPort) -> None:
        self.port = port
        self.doc: dict[str, Any] | None = None

    def start(self, fields: dict[str, Any]) -> None:
        self.doc = fields
        # create, not index: a start document replayed late from the spool must not overwrite the final one
        self._write("create")

    def end(self, fields: dict[str, Any], workers: list[str] | None) -> None:
        """The run ended: end fields, and on the master the workers that reported."""
        assert self.doc is not None
        self.doc.update(fields)
        if workers is not None:
            self.doc["workers"] = workers

    def write_end(self, trouble_nodes: list[str]) -> None:
        assert self.doc is not None
        self.doc["sink_trouble_nodes"] = trouble_nodes
        self._write("index")

    def exit(self, exit_code: int | None) -> None:
        """Locust's exit code (none when the process did not end through Locust's quit)."""
        if self.doc is not None and exit_code is not None:
            self.doc.update(exit_fields(exit_code))

    def write_closing(
        self, sink: dict[str, Any], trouble_nodes: list[str], trouble: dict[str, list[str]], complete: bool
    ) -> None:
        """After the first pass of the final flush: where the records went (`sink_fields`), which nodes had
        trouble, and whether the first pass delivered everything."""
        assert self.doc is not None
        self.doc.update(sink)
        self.doc["sink_trouble_nodes"] = trouble_nodes
        self.doc["sink_trouble"] = trouble
        self.doc["sink_final_flush_complete"] = complete
        self._write("index")

    def _write(self, op: str) -> None:
        assert self.doc is not None
        run_id = self.doc["run_id"]
        self.port.submit("runs", dict(self.doc), run_id, doc_id=run_id, op=op)
