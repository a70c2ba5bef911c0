"""The trouble relay: which node's sink had which trouble (Elasticsearch unreachable, spooling, dead
letters, ...). A worker sends its sink's status and its new trouble messages to the master inside its stats
report (`report_to_master`, key `locust_sink`), so they arrive in order with the stats, the final report
included; the master records them per node next to its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PAYLOAD_KEY = "locust_sink"  # the key of a worker report that carries the sink's part
MESSAGES_PER_NODE = 20  # trouble messages per node kept in the run document


class TroubleRelay:
    """Distinct trouble messages per node (this process's own node and, on the master, its workers)."""

    def __init__(self) -> None:
        self.by_node: dict[str, list[str]] = {}  # for the whole process: trouble is not reset between runs
        self._seen: set[tuple[str, str]] = set()
        self._sent = 0  # worker: own messages already sent to the master

    def record(self, node: str, message: str) -> bool:
        """Note one message of `node`; True when it is new (then it deserves a `sink_trouble` event)."""
        if (node, message) in self._seen:
            return False
        self._seen.add((node, message))
        self.by_node.setdefault(node, []).append(message)
        return True

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

    @staticmethod
    def incoming(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]] | None:
        """Master: (the worker's sink status, its new trouble messages) from one report; None if it has none."""
        payload = data.get(PAYLOAD_KEY)
        if not isinstance(payload, dict):
            return None
        messages = [str(message) for message in payload.get("trouble") or ()]
        return {k: v for k, v in payload.items() if k != "trouble"}, messages

    def nodes(self) -> list[str]:
        """The nodes that had trouble, sorted (the run document's `sink_trouble_nodes`)."""
        return sorted(self.by_node)

    def messages(self) -> dict[str, list[str]]:
        """The first messages of each node (the run document's `sink_trouble`)."""
        return {node: msgs[:MESSAGES_PER_NODE] for node, msgs in self.by_node.items()}
