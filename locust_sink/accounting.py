"""Where every record went: the counters, the outcomes, and the one place that moves records between them.

Two `Accounting`s per node: request records (filled by the hot path, buffer.py) and other documents
(snapshots, run documents, events). The hot path only counts records in (`emitted`, `queued`, or `dropped`
when the queue is full) and the buffer counts what leaves its queue (`in_flight`); every later change goes
through `Ledger`, so that
`emitted == indexed + written + spooled + dead_lettered + dropped + queued + in_flight` holds after every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Outcome(Enum):
    """Where a record ends up. Every record ends up as exactly one of these."""

    INDEXED = "indexed"  # confirmed by Elasticsearch (a 409 on create counts: the document is already there)
    WRITTEN = "written"  # in the NDJSON files of file mode
    SPOOLED = "spooled"  # on disk in the spool, waiting for a replay
    DEAD_LETTERED = "dead_lettered"  # rejected for good by Elasticsearch, kept with its reason
    DROPPED = "dropped"  # given up under an explicit policy (queue or spool full, overflow=drop), counted


@dataclass
class Accounting:
    """Counts of one kind of record. `emitted` always equals the sum of the others (`balanced`)."""

    emitted: int = 0
    indexed: int = 0
    written: int = 0
    spooled: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    queued: int = 0  # in the in-memory queue
    in_flight: int = 0  # taken from the queue, not settled yet
    overflowed: int = 0  # of `dropped`: records that met a full queue (kept for the warning)

    def settled(self) -> int:
        return self.indexed + self.written + self.spooled + self.dead_lettered + self.dropped

    def balanced(self) -> bool:
        return self.emitted == self.settled() + self.queued + self.in_flight

    def as_dict(self) -> dict[str, int]:
        return {
            "emitted": self.emitted,
            "indexed": self.indexed,
            "written": self.written,
            "spooled": self.spooled,
            "dead_lettered": self.dead_lettered,
            "dropped": self.dropped,
            "queued": self.queued,
            "in_flight": self.in_flight,
        }

    def summary(self) -> str:
        parts = [f"{k}={v}" for k, v in self.as_dict().items() if v or k == "emitted"]
        ok = "balanced" if self.balanced() else "UNBALANCED"
        return " ".join(parts) + f" ({ok})"


class Ledger:
    """Moves request records and documents from the queue to in flight to an outcome, and spooled ones back
    to an outcome when a replay delivers them. Items are anything with an `is_request` flag (bulk items)."""

    def __init__(self, requests: Accounting, documents: Accounting | None = None) -> None:
        self.requests = requests
        self.documents = documents if documents is not None else Accounting()

    def document_in(self, queued: bool) -> None:
        """A document was submitted: queued, or dropped at once (its queue is full)."""
        acc = self.documents
        acc.emitted += 1
        if queued:
            acc.queued += 1
        else:
            acc.dropped += 1

    def take_documents(self, n: int) -> None:
        """Documents left their queue for delivery (request records: RecordBuffer.take_flat counts them)."""
        self.documents.queued -= n
        self.documents.in_flight += n

    def settle(self, items: Sequence[Any], outcome: Outcome) -> None:
        n_req = sum(1 for i in items if i.is_request)
        self.settle_counts(n_req, len(items) - n_req, outcome)

    def settle_counts(self, requests: int, documents: int, outcome: Outcome) -> None:
        field = outcome.value
        for acc, n in ((self.requests, requests), (self.documents, documents)):
            if n:
                acc.in_flight -= n
                setattr(acc, field, getattr(acc, field) + n)

    def unspool(self, requests: int, documents: int, outcome: Outcome) -> None:
        """Spooled records were replayed: they are `outcome` now (indexed or dead-lettered)."""
        field = outcome.value
        for acc, n in ((self.requests, requests), (self.documents, documents)):
            if n:
                acc.spooled -= n
                setattr(acc, field, getattr(acc, field) + n)

    def in_memory(self) -> int:
        """Records not settled yet (queued or in flight), of both kinds."""
        r, d = self.requests, self.documents
        return r.queued + r.in_flight + d.queued + d.in_flight

    def spooled(self) -> int:
        return self.requests.spooled + self.documents.spooled
