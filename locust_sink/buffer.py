"""Bounded in-memory buffer between the hot path and the background flusher, plus the accounting.

Plain lists with an explicit bound are used rather than `gevent.queue.Queue`: the hot path runs on the
gevent hub's thread only, so a list extend is already atomic with respect to greenlets and costs a fraction
of a Queue.put (no locks, no hub switch). The flusher is woken by a gevent Event only when a full batch is
waiting; otherwise it wakes on its flush interval.
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
    """A bounded FIFO of fixed-width records (tuples). `put` never blocks and never grows past `maxsize`.

    The fields of each record are stored flat, in lists of one batch each, and the record tuple itself is
    dropped at once. Why: a queued tuple is a garbage-collector-tracked object that lives until its batch is
    encoded, and every such survivor counts towards the next collection of the youngest generation. Stored
    flat, the sink adds no survivors of its own, so Locust's process collects about as often as without it
    (measured with bench/profile_sink.py: see docs/benchmarks.md). The flusher takes them flat (`take_flat`):
    the encoder reads them that way, in Locust's process or marshalled to the encoder helper process.
    """

    def __init__(self, maxsize: int, batch_size: int, wake: Any, width: int = 12) -> None:
        if maxsize < 1:
            raise ValueError("queue size must be at least 1")
        self.maxsize = maxsize
        self.batch_size = max(1, batch_size)
        self.width = width  # fields per record (RequestRecord has 12)
        self._full: deque[list[Any]] = deque()  # completed chunks of batch_size records each
        self._tail: list[Any] = []  # the chunk being filled
        self._chunk_len = self.batch_size * width
        self._len = 0
        self._wake = wake  # gevent.event.Event (or anything with set())
        self.accounting = Accounting()

    def put(self, record: Any) -> bool:
        """Append the record's fields, or count the record as overflowed when the queue is full.

        LocustSink.on_request does exactly this inline (a method call is a measurable part of the hot path):
        a change here must be made there too (test_on_request_fills_the_buffer_like_put checks they agree).
        """
        acc = self.accounting
        acc.emitted += 1
        if self._len >= self.maxsize:
            acc.overflowed += 1
            acc.dropped += 1
            return False
        tail = self._tail
        tail.extend(record)
        self._len += 1
        acc.queued += 1
        if len(tail) >= self._chunk_len:
            self._full.append(tail)
            self._tail = []
        if self._len == self.batch_size:
            # A full batch is waiting. (Not "a chunk was completed": a chunk the flusher took only part of,
            # to make room for other documents, stays queued, and the next full batch must still wake it.)
            self._wake.set()
        return True

    def take(self, limit: int) -> list[tuple[Any, ...]]:
        """Take up to `limit` records (oldest first) as tuples; they move from queued to in_flight."""
        it = iter(self.take_flat(limit))
        return list(zip(*([it] * self.width), strict=False))

    def take_flat(self, limit: int) -> list[Any]:
        """Take up to `limit` records (oldest first) as one flat list of their fields (`width` per record),
        the form the encoder reads; they move from queued to in_flight."""
        n = min(limit, self._len)
        if n <= 0:
            return []
        want = n * self.width
        parts: list[list[Any]] = []
        got = 0
        while got < want:
            chunk = self._full[0] if self._full else self._tail
            need = want - got
            if len(chunk) <= need:
                if self._full:
                    self._full.popleft()
                else:
                    self._tail = []
                parts.append(chunk)
                got += len(chunk)
            else:
                parts.append(chunk[:need])
                del chunk[:need]  # at most one chunk (a batch) is shifted
                got = want
        flat = parts[0]
        if len(parts) > 1:
            flat = []
            for part in parts:
                flat += part
        self._len -= n
        self.accounting.queued -= n
        self.accounting.in_flight += n
        return flat

    def __len__(self) -> int:
        return self._len

    @property
    def fill_ratio(self) -> float:
        return self._len / self.maxsize
