"""One retry policy and one sender for every `_bulk` the sink makes: live delivery, the in-process replay of
the spool, and the CLI's `load` / `replay`.

`RetryPolicy` is capped exponential backoff with full jitter within a time budget and a number of attempts.
`BulkSender.deliver` sends items until each one is settled -- indexed, rejected for good, or handed back as
unsent (the caller spools them) -- and reports every outcome through a `Settlement` as it happens, so that
an interrupted delivery (the final deadline, a second Ctrl-C) never loses track of an item.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..bulk import BulkItem, BulkOutcome, ErrorKind, SinkTransportError, encode_body, sort_items

MAX_BULK_BYTES = 5 * 1024 * 1024  # bodies are split past this size (Elasticsearch's default limit is 100 MB)


class RetryPolicy:
    """Backoff `uniform(0, min(cap, base * 2**attempt))`, while attempts < max_attempts and the time since
    the first attempt < timeout."""

    def __init__(
        self,
        timeout: float,
        max_attempts: int,
        base: float = 0.25,
        cap: float = 8.0,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.base = base
        self.cap = cap
        self.clock = clock
        self.jitter = jitter

    def budget(self) -> RetryBudget:
        return RetryBudget(self)


class RetryBudget:
    """The retries left for one delivery."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.attempts = 0
        self.started = policy.clock()

    def next_delay(self) -> float | None:
        """The pause before the next attempt, or None when the budget is spent."""
        p = self.policy
        if self.attempts + 1 >= p.max_attempts or p.clock() - self.started >= p.timeout:
            return None
        self.attempts += 1
        return p.jitter(0, min(p.cap, p.base * 2**self.attempts))


class Settlement(Protocol):
    """Where the sender reports outcomes; every item it was given ends in exactly one of these calls."""

    def indexed(self, items: list[BulkItem]) -> None: ...

    def rejected(self, rejected: list[tuple[BulkItem, int, Any]]) -> None: ...

    def unsent(self, items: list[BulkItem], error: SinkTransportError | None) -> None:
        """Not delivered: `error` says why (None: the delivery was interrupted, or the target is not ready)."""


def _always() -> bool:
    return True


def _never(_items: list[BulkItem]) -> bool:
    return False


def split_by_bytes(items: list[BulkItem], limit: int = MAX_BULK_BYTES) -> list[list[BulkItem]]:
    """Consecutive chunks of items whose bodies stay below `limit` (an item larger than it goes alone)."""
    chunks: list[list[BulkItem]] = []
    start = 0
    while start < len(items):
        end, size = start, 0
        while end < len(items) and (end == start or size + len(items[end].source) < limit):
            size += len(items[end].source) + 100
            end += 1
        chunks.append(items[start:end])
        start = end
    return chunks


class BulkSender:
    """Sends bulk items until settled.

    bulk: body -> the bulk response (raises SinkTransportError); ready: whether to send at all now (live
    delivery: the link is up); keep_trying: whether retrying still makes sense (live delivery: the queue is
    below its high-water mark); carry: hands per-item refusals to the next batch (True) instead of a backoff
    sleep; delivered: called after every request that indexed something.
    """

    def __init__(
        self,
        bulk: Callable[[bytes], dict[str, Any]],
        policy: RetryPolicy,
        sleep: Callable[[float], Any],
        ready: Callable[[], bool] = _always,
        keep_trying: Callable[[], bool] = _always,
        carry: Callable[[list[BulkItem]], bool] = _never,
        delivered: Callable[[], Any] = lambda: None,
    ) -> None:
        self.bulk = bulk
        self.policy = policy
        self.sleep = sleep
        self.ready = ready
        self.keep_trying = keep_trying
        self.carry = carry
        self.delivered = delivered
        self.backoff_sleeps = 0  # pauses before a retry (shown in the sink status)

    def attempt(self, items: list[BulkItem], body: bytes | None = None) -> BulkOutcome:
        """One `_bulk` request of `items` (`body`: their encoding, if already made), sorted item by item."""
        outcome = sort_items(items, self.bulk(body if body is not None else encode_body(items)))
        if outcome.indexed:
            self.delivered()
        return outcome

    def deliver_all(self, items: list[BulkItem], out: Settlement) -> None:
        """`deliver`, in chunks below MAX_BULK_BYTES (normally one: the body is encoded once)."""
        body = encode_body(items)
        if len(body) < MAX_BULK_BYTES:
            self.deliver(items, out, body)
            return
        chunks = split_by_bytes(items)
        for i, chunk in enumerate(chunks):
            try:
                self.deliver(chunk, out)  # settles its own items, also when interrupted
            except BaseException:
                out.unsent([item for rest in chunks[i + 1 :] for item in rest], None)
                raise

    def deliver(
        self,
        items: list[BulkItem],
        out: Settlement,
        body: bytes | None = None,
        first: BulkOutcome | SinkTransportError | None = None,
    ) -> None:
        """Send `items` until each is settled through `out`. `first`: the outcome (or error) of an attempt the
        caller already made with `body`."""
        pending = items
        budget = self.policy.budget()
        try:
            while pending:
                if not self.ready():
                    out.unsent(pending, None)
                    pending = []
                    return
                try:
                    if first is None:
                        outcome = self.attempt(pending, body)
                    elif isinstance(first, SinkTransportError):
                        raise first
                    else:
                        outcome = first
                except SinkTransportError as exc:
                    first = None
                    if exc.kind is ErrorKind.TOO_LARGE and len(pending) > 1:
                        half, pending = pending, []
                        self._halve(half, out)
                        return
                    if exc.retryable and self._pause(budget):
                        continue
                    out.unsent(pending, exc)
                    pending = []
                    return
                first = None
                out.indexed(outcome.indexed)
                if outcome.rejected:
                    out.rejected(outcome.rejected)
                pending, body = outcome.retry, None
                if not pending:
                    return
                if self.carry(pending):
                    pending = []
                    return
                if self._pause(budget):
                    continue
                refused = SinkTransportError(
                    ErrorKind.OVERLOADED,
                    f"Elasticsearch keeps refusing items ({outcome.describe_retries()})",
                    cause=f"refused:{outcome.retry_cause()}",
                )
                out.unsent(pending, refused)
                pending = []
        except BaseException:
            if pending:  # killed or crashed mid-request: these items must not vanish
                out.unsent(pending, None)
            raise

    def _halve(self, items: list[BulkItem], out: Settlement) -> None:
        """A 413: send each half on its own (recursively, down to single items)."""
        half = len(items) // 2
        front, back = items[:half], items[half:]
        try:
            self.deliver(front, out)
        except BaseException:
            out.unsent(back, None)
            raise
        self.deliver(back, out)

    def _pause(self, budget: RetryBudget) -> bool:
        """Sleep before the next attempt if retrying is still worth it; False when it is not."""
        if not self.keep_trying():
            return False
        delay = budget.next_delay()
        if delay is None:
            return False
        self.backoff_sleeps += 1
        self.sleep(delay)
        return True
