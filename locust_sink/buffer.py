"""Bounded in-memory buffer between the hot path and the background flusher, plus the accounting.

A plain `collections.deque` with an explicit bound is used rather than `gevent.queue.Queue`: the hot path
runs on the gevent hub's thread only, so a deque append is already atomic with respect to greenlets and
costs a fraction of a Queue.put (no locks, no hub switch). The flusher is woken by a gevent Event only
when a full batch is waiting; otherwise it wakes on its flush interval.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass
class Accounting:
    """Where every record went. `emitted` always equals the sum of the other fields.

    indexed: confirmed in Elasticsearch (a 409 on create counts: the document is already there)
    written: in NDJSON files of the embedded file mode
    spooled: on disk in the spool, waiting for replay
    dead_lettered: rejected for good by Elasticsearch, kept with its reason in the dead-letter file
    dropped: given up under an explicit policy (queue or spool full with overflow=drop)
    queued / in_flight: still in memory (0 at the end of a run)
    """

    emitted: int = 0
    indexed: int = 0
    written: int = 0
    spooled: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    queued: int = 0
    in_flight: int = 0
    overflowed: int = 0  # records that met a full queue (they are dropped; kept for the warning)

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


class RecordBuffer:
    """A bounded FIFO of records. `put` never blocks and never grows past `maxsize`."""

    def __init__(self, maxsize: int, batch_size: int, wake: Any) -> None:
        if maxsize < 1:
            raise ValueError("queue size must be at least 1")
        self.maxsize = maxsize
        self.batch_size = max(1, batch_size)
        self._items: deque[Any] = deque()
        self._wake = wake  # gevent.event.Event (or anything with set())
        self.accounting = Accounting()

    def put(self, record: Any) -> bool:
        """Hot path: append, or count the record as overflowed when the queue is full."""
        acc = self.accounting
        acc.emitted += 1
        items = self._items
        if len(items) >= self.maxsize:
            acc.overflowed += 1
            acc.dropped += 1
            return False
        items.append(record)
        acc.queued += 1
        if len(items) == self.batch_size:
            self._wake.set()
        return True

    def take(self, limit: int) -> list[Any]:
        """Take up to `limit` records (oldest first); they move from queued to in_flight."""
        items = self._items
        n = min(limit, len(items))
        batch = [items.popleft() for _ in range(n)]
        self.accounting.queued -= n
        self.accounting.in_flight += n
        return batch

    def __len__(self) -> int:
        return len(self._items)

    @property
    def fill_ratio(self) -> float:
        return len(self._items) / self.maxsize
