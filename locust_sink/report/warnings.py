"""Why a run's data may be incomplete: each reason is one line the report shows as a visible warning."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .model import TOTAL, RunFigures
from .requests import RequestFigures


class Collected(Protocol):
    """What the warnings read of a run's collected documents (collect.RunCollector has it)."""

    run_doc: dict[str, Any] | None
    main: Mapping[str, Any]  # endpoint key / TOTAL -> series of the main source
    final: Mapping[str, dict[str, Any]]  # key -> final snapshot document
    events: Sequence[dict[str, Any]]
    events_dropped: int


def completeness_warnings(collector: Collected, fig: RunFigures, requests: RequestFigures) -> list[str]:
    out: list[str] = []
    run: dict[str, Any] = collector.run_doc or {}
    if not collector.run_doc:
        out.append("no run document: the run's metadata and the sink's accounting are unknown")
    elif run.get("status") == "running" or "end_time" not in run:
        out.append("the run has no end (status running): it is still going, or its process died before the end")
    if not collector.main:
        out.append("no stats snapshot: the table is built from the request documents alone")
    elif TOTAL not in collector.final:
        out.append("no final stats snapshot: the figures are those of the last snapshot, not Locust's final ones")
    if collector.run_doc and "sink" not in run:
        out.append("the run document has no sink accounting (the final flush did not finish)")
    if run.get("sink_final_flush_complete") is False:
        out.append("the final flush did not complete before its deadline: the rest went to the spool")
    sink = run.get("sink") or {}
    for field, what in (
        ("spooled", "spooled (on disk, not in this source until `locust-sink replay` delivers them)"),
        ("dead_lettered", "dead-lettered (refused by Elasticsearch; see the dead-letter folder)"),
        ("dropped", "dropped (--sink-overflow drop)"),
    ):
        if int(sink.get(field) or 0):
            out.append(f"{sink[field]} request records were {what}")
    for acc in fig.accounting:
        if not acc.balanced:
            c = acc.counts
            out.append(
                f"node {acc.node}: accounting unbalanced (emitted {c.get('emitted', 0)}, queued {c.get('queued', 0)}, "
                f"in flight {c.get('in_flight', 0)}; from its {acc.source})"
            )
        for field in ("spooled", "dead_lettered", "dropped"):
            if acc.counts.get(field) and not sink.get(field):
                out.append(f"node {acc.node}: {acc.counts[field]} request records {field.replace('_', '-')}")
    for node in run.get("sink_trouble_nodes") or ():
        messages = (run.get("sink_trouble") or {}).get(node) or []
        out.append(f"sink trouble on {node}: {'; '.join(str(m) for m in messages[:3]) or 'reported'}")
    for doc in collector.events:
        if doc.get("event") == "worker_lost" and (doc.get("details") or {}).get("reason") != "left":
            out.append(f"worker {doc.get('node')} was lost during the run: {doc.get('message')}")
    expected = fig.total.requests
    sample_rate = run.get("sample_rate", 1.0) or 1.0
    if collector.main and not requests.sampled and sample_rate >= 1.0 and requests.documents != expected:
        out.append(f"{requests.documents} request documents found, but Locust counted {expected} requests")
    if collector.events_dropped:
        out.append(f"{collector.events_dropped} more events are not shown")
    return out
