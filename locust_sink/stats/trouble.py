"""The trouble relay: which node's sink had which trouble (Elasticsearch unreachable, spooling, dead
letters, ...). A worker sends its sink's status and its new trouble messages to the master inside its stats
report (`report_to_master`, key `locust_sink`), so they arrive in order with the stats, the final report
included; the master records them per node next to its own."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .events import EventLog

PAYLOAD_KEY = "locust_sink"  # the key of a worker report that carries the sink's part
MESSAGES_PER_NODE = 20  # trouble messages per node kept in the run document


class TroubleRelay:
    """Distinct trouble messages per node (this process's own node and, on the master, its workers); each
    new one is a `sink_trouble` event."""

    def __init__(self, events: EventLog) -> None:
        self.events = events
        self.by_node: dict[str, list[str]] = {}  # for the whole process: trouble is not reset between runs
        self._seen: set[tuple[str, str]] = set()
        self._sent = 0  # worker: own messages already sent to the master

    def record(self, node: str, messages: Iterable[str]) -> None:
        """Note the messages of `node`: a `sink_trouble` event for each one not seen before."""
        for message in messages:
            if (node, message) in self._seen:
                continue
            self._seen.add((node, message))
            self.by_node.setdefault(node, []).append(message)
            self.events.event("sink_trouble", node=node, message=message)

    def outgoing(self, status: Mapping[str, Any], trouble: list[str]) -> dict[str, Any]:
        """Worker: the payload for its next report: the sink's state and accounting, and the trouble
        messages not sent yet."""
        payload: dict[str, Any] = {
            "state": status["state"],
            "requests": status["requests"],
            "sampled_out": status["sampled_out"],
        }
        if len(trouble) > self._sent:
            payload["trouble"] = list(trouble[self._sent :])
            self._sent = len(trouble)
        return payload

    def receive(self, client_id: str, data: Mapping[str, Any]) -> dict[str, Any] | None:
        """Master: record the trouble messages in one report of `client_id`; returns the worker's sink
        status from it (None when the report has no sink part: the worker's sink had not started)."""
        payload = data.get(PAYLOAD_KEY)
        if not isinstance(payload, dict):
            return None
        self.record(client_id, (str(message) for message in payload.get("trouble") or ()))
        return {k: v for k, v in payload.items() if k != "trouble"}

    def nodes(self) -> list[str]:
        """The nodes that had trouble, sorted (the run document's `sink_trouble_nodes`)."""
        return sorted(self.by_node)

    def messages(self) -> dict[str, list[str]]:
        """The first messages of each node (the run document's `sink_trouble`)."""
        return {node: msgs[:MESSAGES_PER_NODE] for node, msgs in self.by_node.items()}
