"""Where batches go: the `Writer` protocol, and file mode's writer (NDJSON files in bulk format).

The delivery loop hands every batch to `write` when the writer is `ready()`, and to `park` (what cannot go
now: synchronously onto disk) when it is not. `elastic.EsDelivery` is the other writer.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..accounting import Ledger, Outcome
from ..bulk import BulkItem
from ..filesink import FileWriter
from .batches import Batch
from .trouble import TroubleLog


class Writer(Protocol):
    state: str  # shown in the sink status: "up", or the cluster link's state

    def before_cycle(self) -> None:
        """Once per loop cycle, before its batches: connect or probe, replay spooled records."""

    def ready(self) -> bool:
        """Whether `write` can deliver now; when not, batches go to `park`."""

    def write(self, batch: Batch) -> None:
        """Deliver the batch: when this returns, every record of it is settled (or carried to the next batch)."""

    def park(self, items: list[BulkItem]) -> None:
        """These cannot go now (or the loop was interrupted): put them where nothing is lost, synchronously."""

    def waiting(self) -> bool:
        """Records this process parked that the final flush should still try to deliver."""

    def seconds_to_next_attempt(self) -> float:
        """When a cycle could make progress with what is waiting (0: now)."""

    def close(self) -> None: ...

    def status(self) -> dict[str, Any]: ...


class FileDelivery:
    """File mode: one folder per run under the sink dir, one bulk-format file per node. Records that cannot be
    written (the sink dir is not writable) are counted as dropped, and the problem is noted once."""

    state = "up"

    def __init__(self, files: FileWriter, ledger: Ledger, trouble: TroubleLog) -> None:
        self.files = files
        self.ledger = ledger
        self.trouble = trouble

    def before_cycle(self) -> None:
        pass

    def ready(self) -> bool:
        return True

    def write(self, batch: Batch) -> None:
        records = batch.records
        if records.written:  # the encoder helper appended them to the run's file already
            self.ledger.settle_counts(len(records), 0, Outcome.WRITTEN)
        elif len(records) and (run_id := records.single_run()) is not None:
            # the normal case, records of one run: their lines go to its file as they are, no bulk items
            try:
                self.files.write_body(run_id, records.ndjson)
            except OSError as exc:
                self._cannot_write(exc)
                self.ledger.settle_counts(len(records), 0, Outcome.DROPPED)
            else:
                self.ledger.settle_counts(len(records), 0, Outcome.WRITTEN)
        elif len(records):
            self.park(batch.items + records.items())
            return
        self.park(batch.items)

    def park(self, items: list[BulkItem]) -> None:
        if not items:
            return
        try:
            self.files.write(items)
        except OSError as exc:
            self._cannot_write(exc)
            self.ledger.settle(items, Outcome.DROPPED)
            return
        self.ledger.settle(items, Outcome.WRITTEN)

    def _cannot_write(self, exc: OSError) -> None:
        self.trouble.note(f"cannot write to {self.files.sink_dir}: {exc}", error=True)

    def waiting(self) -> bool:
        return False

    def seconds_to_next_attempt(self) -> float:
        return 0.0

    def close(self) -> None:
        self.files.close()

    def status(self) -> dict[str, Any]:
        return {"backoff_sleeps": 0}
