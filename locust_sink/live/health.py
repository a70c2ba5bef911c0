"""The sink's live health per node, from the statuses the stats recorder shows its observer.

This node's status arrives every stats interval (the stored `node_summary` shape: requests, documents,
retries, state, trouble); on the master each worker's arrives with its stats report (state, requests,
sampled_out: what the worker sends). A field a node does not report is None, never a made-up zero.

Lag: the sink does not time records from the request to their delivery, so the page shows an estimate it
can state exactly: records waiting (queued + in flight) divided by the node's recent emission rate, i.e. how
many seconds of traffic are waiting to be written or indexed. With a steady rate and a FIFO queue that is the
age of the oldest waiting record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HEALTH_COLUMNS = (
    "node", "state", "emitted", "queued", "in_flight", "indexed", "written", "retried", "spooled",
    "dead_lettered", "dropped", "lag_s", "trouble", "age_s",
)  # fmt: skip
COUNTS = ("emitted", "queued", "in_flight", "indexed", "written", "spooled", "dead_lettered", "dropped")
MIN_RATE_SPAN_S = 0.5  # two statuses closer than this give no rate


@dataclass
class NodeHealth:
    """One node's latest status, when it arrived, and the emission rate between the last two."""

    status: dict[str, Any]
    at: float
    emitted_rate: float | None = None
    trouble: list[str] = field(default_factory=list)

    def update(self, status: dict[str, Any], now: float) -> None:
        before = _requests(self.status).get("emitted")
        after = _requests(status).get("emitted")
        span = now - self.at
        if span >= MIN_RATE_SPAN_S and isinstance(before, int) and isinstance(after, int) and after >= before:
            self.emitted_rate = (after - before) / span
        self.status, self.at = status, now
        for message in status.get("trouble") or ():
            if message not in self.trouble:
                self.trouble.append(str(message))


def _requests(status: Mapping[str, Any]) -> Mapping[str, Any]:
    value = status.get("requests")
    return value if isinstance(value, Mapping) else {}


class HealthBook:
    """Every node's health as last reported; `columns()` is the page's health table."""

    def __init__(self, clock: Any = time.time) -> None:
        self.clock = clock
        self.nodes: dict[str, NodeHealth] = {}

    def update(self, node: str, status: dict[str, Any]) -> None:
        now = self.clock()
        health = self.nodes.get(node)
        if health is None:
            health = self.nodes[node] = NodeHealth(status, now)
            health.update(status, now)
        else:
            health.update(status, now)

    def row(self, node: str, health: NodeHealth, now: float) -> dict[str, Any]:
        status = health.status
        requests = _requests(status)
        row: dict[str, Any] = {"node": node, "state": str(status.get("state") or "unknown")}
        for name in COUNTS:
            value = requests.get(name)
            row[name] = int(value) if isinstance(value, int) else None
        retries = status.get("retries")
        row["retried"] = int(retries.get("items_carried", 0)) if isinstance(retries, Mapping) else None
        waiting = (row["queued"] or 0) + (row["in_flight"] or 0)
        rate = health.emitted_rate
        if row["queued"] is None:
            row["lag_s"] = None
        elif waiting == 0:
            row["lag_s"] = 0.0
        else:
            row["lag_s"] = round(waiting / rate, 1) if rate else None
        row["trouble"] = health.trouble[-1] if health.trouble else ""
        row["age_s"] = round(max(0.0, now - health.at), 1)
        return row

    def columns(self) -> dict[str, list]:
        now = self.clock()
        rows = [self.row(node, health, now) for node, health in sorted(self.nodes.items(), key=_node_order)]
        return {name: [r[name] for r in rows] for name in HEALTH_COLUMNS}


def _node_order(item: tuple[str, NodeHealth]) -> tuple[int, str]:
    node = item[0]
    return (0 if node in ("master", "local") else 1, node)
