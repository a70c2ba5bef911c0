"""The hot path: Locust's `request` listener and the bounded in-memory queue it appends to.

`RecordBuffer.on_request` is registered with Locust as the listener itself (a bound method of the object
that owns all the state it touches: no second call level, no reach into another object). It appends the
record's fields and returns; encoding and I/O happen in the delivery engine's greenlet.

Plain lists with an explicit bound rather than `gevent.queue.Queue`: the hot path runs on the gevent hub's
thread only, so a list extend is already atomic with respect to greenlets and costs a fraction of a
Queue.put (no locks, no hub switch). The delivery loop is woken (`notify`) only when a full batch is waiting;
otherwise it wakes on its flush interval.

The fields of each record are stored flat, in lists of one batch each; no tuple per record is kept. A queued
tuple would be a garbage-collector-tracked object living until its batch is encoded, and every such survivor
counts towards the next collection of the youngest generation; stored flat, the sink adds no survivors of
its own (measured: docs/benchmarks-history.md). The delivery engine takes them flat (`take_flat`), the form
the encoder reads. No Locust import here.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from random import random
from typing import Any

from .accounting import Accounting
from .records import RECORD_WIDTH, RequestRecord


class _Status:
    """A response for `put`: all on_request reads of a response is its status code."""

    __slots__ = ("status_code",)

    def __init__(self, status_code: int | None) -> None:
        self.status_code = status_code


class RecordBuffer:
    """A bounded FIFO of request records, filled by `on_request`; never blocks, never grows past `maxsize`."""

    def __init__(
        self,
        maxsize: int,
        batch_size: int,
        notify: Callable[[], Any],
        error_text: Callable[[Any], str] = str,
        run_id: str = "",
        sample_rate: float = 1.0,
    ) -> None:
        self.accounting = Accounting()
        self.notify = notify  # called once each time a full batch is waiting
        self.error_text = error_text  # exception -> the text Locust's failure stats use
        self.run_id = run_id  # stored on every record; the sink sets it at each test start
        self.sample_rate = sample_rate
        self.seq = 0  # per-node sequence number of the last record (part of its document id)
        self.sampled_out = 0  # successful requests not recorded because of --sink-sample-rate
        self._full: deque[list[Any]] = deque()  # completed chunks of batch_size records each
        self._tail: list[Any] = []  # the chunk being filled
        self._len = 0
        self.maxsize = 0
        self.batch_size = 0
        self._chunk_len = 0
        self.resize(maxsize, batch_size)

    def resize(self, maxsize: int, batch_size: int) -> None:
        """Set the bound and the batch size (a worker gets them from the master with the spawn message)."""
        if maxsize < 1:
            raise ValueError("queue size must be at least 1")
        self.maxsize = maxsize
        self.batch_size = max(1, batch_size)
        self._chunk_len = self.batch_size * RECORD_WIDTH

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        response: Any = None,
        context: Any = None,
        exception: Any = None,
        start_time: float | None = None,
        url: str | None = None,
        **_kwargs: Any,
    ) -> None:
        """Locust's `request` listener: the record's fields go straight into the queue. Runs on every request."""
        if exception is None:
            rate = self.sample_rate
            if rate < 1.0 and random() >= rate:
                self.sampled_out += 1
                return
            error = None
        else:
            rate = 1.0  # failures are always kept: their documents carry no sample_rate (weight 1)
            error = self.error_text(exception)
        self.seq += 1
        acc = self.accounting
        acc.emitted += 1
        if self._len >= self.maxsize:
            acc.overflowed += 1
            acc.dropped += 1
            return
        tail = self._tail
        tail += (  # the fields in RequestRecord's order
            self.seq,
            start_time if start_time is not None else time.time() - (response_time or 0) / 1000.0,
            request_type,
            name,
            response_time,
            response_length or 0,
            getattr(response, "status_code", None),
            error,
            context or None,
            url,
            self.run_id,
            rate,
        )
        self._len += 1
        acc.queued += 1
        if len(tail) >= self._chunk_len:
            self._full.append(tail)
            self._tail = []
        if self._len == self.batch_size:
            # A full batch is waiting. (Not "a chunk was completed": a chunk the delivery engine took only part
            # of, to make room for other documents, stays queued, and the next full batch must still wake it.)
            self.notify()

    def put(self, record: RequestRecord) -> bool:
        """Queue `record` through `on_request` (the one copy of the append logic), keeping its sequence number
        and run id. For tests and benchmarks; returns False when the queue was full."""
        if record.exception is None and record.sample_rate != 1.0:
            raise ValueError("put() queues unsampled records only")
        self.seq, self.run_id = record.seq - 1, record.run_id
        dropped = self.accounting.dropped
        rate, self.sample_rate = self.sample_rate, 1.0
        try:
            self.on_request(
                record.request_type,
                record.name,
                record.response_time,
                record.response_length,
                response=_Status(record.status_code),
                context=record.context,
                exception=record.exception,
                start_time=record.start_time,
                url=record.url,
            )
        finally:
            self.sample_rate = rate
        return self.accounting.dropped == dropped

    def take(self, limit: int) -> list[RequestRecord]:
        """Take up to `limit` records (oldest first) as RequestRecords; they move from queued to in_flight."""
        it = iter(self.take_flat(limit))
        return [RequestRecord(*fields) for fields in zip(*([it] * RECORD_WIDTH), strict=False)]

    def take_flat(self, limit: int) -> list[Any]:
        """Take up to `limit` records (oldest first) as one flat list of their fields (RECORD_WIDTH per
        record), the form the encoder reads; they move from queued to in_flight."""
        n = min(limit, self._len)
        if n <= 0:
            return []
        want = n * RECORD_WIDTH
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
