"""What the recorder needs from the rest of the sink, and what a live observer gets: two Protocols, so
that the stats package knows nothing of the delivery engine (no import of it, not even for typing)."""

from __future__ import annotations

from typing import Any, Protocol


class SinkPort(Protocol):
    """This node's sink as the recorder sees it (implemented by `LocustSink`)."""

    def started(self) -> bool:
        """The delivery engine exists (after the first test_start); before that documents are not queued."""
        ...

    def submit(
        self, family: str, doc: dict[str, Any], run_id: str, doc_id: str | None = None, op: str = "create"
    ) -> bool:
        """Queue one document for `<prefix>-<family>`; never blocks. False: not queued (counted as dropped
        in the sink's document accounting)."""
        ...

    def request_drain(self) -> None:
        """Deliver what is queued now, partial batches included."""
        ...

    def status(self) -> dict[str, Any]:
        """This node's sink status. The recorder reads `state`, `requests`, `documents`, `sampled_out`,
        `retries`, `encoding` and `trouble`, and ignores any other key."""
        ...

    def trouble(self) -> list[str]:
        """This node's distinct trouble messages, oldest first; the list only grows."""
        ...


class StatsObserver(Protocol):
    """Sees what the recorder produces, as it is produced (e.g. a live page). Both calls run in the
    recorder's greenlet: they must return quickly and must not change what they are given. A failure is
    logged once and does not stop the recording."""

    def on_snapshot(self, doc: dict[str, Any]) -> None:
        """One snapshot document, after it was queued for delivery."""
        ...

    def on_status(self, node: str, status: dict[str, Any]) -> None:
        """A node's sink status: this node's at every snapshot interval and at the end, a worker's (on
        the master) whenever its report arrives."""
        ...
