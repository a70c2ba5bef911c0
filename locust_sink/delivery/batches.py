"""Batch assembly: refused items carried to the next batch, other documents, then request records.

The assembler owns every record that has left the hot path but not its batch yet: the queue of non-request
documents (snapshots, run documents, events), the items Elasticsearch refused that ride with the next batch,
and what it takes from the request buffer. A batch is at most `batch_size` records, in that order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..accounting import Ledger
from ..buffer import RecordBuffer
from ..bulk import BulkItem
from ..options import SinkSettings
from ..records import cut_long_leaves, dumps
from .encoding import BatchEncoder, EncodedRequests

FREE_FORM = frozenset({"context", "tags", "details"})  # the schema's free-form (flattened / flat_object) fields


class Carried(NamedTuple):
    """An item Elasticsearch refused (a 429 inside a bulk response) that rides with the next batch: how often
    it was refused so far and when first, so that it keeps one retry budget across the batches it rides with."""

    item: BulkItem
    refusals: int
    since: float


@dataclass
class Batch:
    """One bulk request's worth: `items` (carried retries first, then other documents) and `records`."""

    items: list[BulkItem]
    records: EncodedRequests

    def __len__(self) -> int:
        return len(self.items) + len(self.records)

    def all_items(self) -> list[BulkItem]:
        """Everything as bulk items (for a batch that cannot take the fast path: a retry, the spool, ...)."""
        return self.items + self.records.items() if len(self.records) else self.items


class BatchAssembler:
    """Builds batches for the delivery loop; `park` receives what must not vanish when a batch is interrupted."""

    def __init__(
        self,
        buffer: RecordBuffer,
        encoder: BatchEncoder,
        ledger: Ledger,
        settings: SinkSettings,
        index_prefix: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.buffer = buffer
        self.encoder = encoder
        self.ledger = ledger
        self.settings = settings
        self.index_prefix = index_prefix
        self.park: Callable[[list[BulkItem]], None] = lambda items: None  # set by the engine (the writer's park)
        self._clock = clock
        self._docs: deque[BulkItem] = deque()
        self._carry: list[Carried] = []  # refused items waiting for the next batch
        self._riding: dict[BulkItem, Carried] = {}  # carried items in the batch being delivered now
        self.items_carried = 0  # item retries that went out with a later batch (shown in the sink status)
        self.max_leaf = 0  # > 0: cut longer strings in free-form fields (the cluster refuses them otherwise)

    # ----- what comes in ----------------------------------------------------------------------------
    def submit_document(
        self, family: str, doc: dict[str, Any], run_id: str, doc_id: str | None = None, op: str = "create"
    ) -> bool:
        """Queue a non-request document (stats, events, runs); never blocks. False: the queue is full and the
        document was dropped (counted)."""
        room = len(self._docs) < self.settings.docs_queue_size
        self.ledger.document_in(queued=room)
        if room:
            if self.max_leaf:
                doc = {k: cut_long_leaves(v, self.max_leaf) if k in FREE_FORM else v for k, v in doc.items()}
            source = dumps(doc)
            self._docs.append(BulkItem(op, f"{self.index_prefix}-{family}", doc_id, source, False, run_id))
        return room

    def carry(self, refused: list[BulkItem]) -> bool:
        """Let refused items ride with the next batch instead of holding up every record behind them with a
        backoff sleep: only while a full batch of records is already waiting (it goes out at once anyway, so
        Elasticsearch gets no more requests than without refusals), the queue is below its high-water mark,
        and each item is within the budget of a retried batch (`max_attempts`, `retry_timeout`) counted over
        all its refusals. False: the caller retries after a backoff, or gives up (and spools)."""
        settings = self.settings
        if len(self.buffer) < settings.batch_size or self.buffer.fill_ratio >= settings.high_water:
            return False
        now = self._clock()
        entries = []
        for item in refused:
            before = self._riding.get(item)
            refusals, since = (before.refusals, before.since) if before is not None else (0, now)
            if refusals + 1 >= settings.max_attempts or now - since >= settings.retry_timeout:
                return False
            entries.append(Carried(item, refusals + 1, since))
        self._carry.extend(entries)
        self.items_carried += len(entries)
        return True

    # ----- what goes out ----------------------------------------------------------------------------
    def queued(self) -> int:
        """Records waiting for a batch: request records, documents and carried items."""
        return len(self.buffer) + len(self._docs) + len(self._carry)

    def next_batch(self, final: bool = False) -> Batch:
        """The next batch: carried retries and documents (bulk items), then encoded request records. Encoding
        yields between chunks; if the greenlet is killed meanwhile, the batch goes to `park`."""
        carried, self._carry = self._carry, []
        self._riding = {c.item: c for c in carried}
        items = [c.item for c in carried] + self._take_docs(self.settings.batch_size - len(carried))
        room = self.settings.batch_size - len(items)
        records = self.buffer.take_flat(room) if room > 0 else []
        try:
            encoded = self.encoder.encode(records, final=final)
        except BaseException:
            # killed while yielding between chunks: these records left the queue, so they must land somewhere
            self.park(items + self.encoder.encode(records, yielding=False).items())
            raise
        return Batch(items, encoded)

    def take_everything(self) -> list[BulkItem]:
        """Everything still in memory as bulk items, encoded here without yielding (the emergency path)."""
        items = [c.item for c in self._carry]
        self._carry = []
        while len(self.buffer) or self._docs:
            items += self._take_docs(self.settings.batch_size)
            records = self.buffer.take_flat(self.settings.batch_size)
            items += self.encoder.encode(records, yielding=False).items()
        return items

    def _take_docs(self, limit: int) -> list[BulkItem]:
        n = min(limit, len(self._docs))
        taken = [self._docs.popleft() for _ in range(n)]
        self.ledger.take_documents(n)
        return taken
