"""`locust-sink load` and `replay`: bulk-format files (file mode's results, the spool) into the cluster, through
the same sender and retry policy as live delivery (delivery/retry.py). No gevent, no Locust: the CLI runs it.

Idempotent: every document has a deterministic id and is written with `create` (a 409 counts as indexed),
so loading or replaying twice never duplicates anything. With `delete_delivered` (replay), a file is
removed once every item in it is indexed or dead-lettered.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .bulk import BulkItem, ErrorKind, SinkTransportError
from .delivery.retry import BulkSender, RetryPolicy
from .delivery.spool import DeadLetters
from .filesink import iter_batches
from .records import cut_long_leaves

FREE_FORM = ("context", "tags", "details")  # the schema's free-form fields


@dataclass
class DeliveryReport:
    """What a load or replay did."""

    files: int = 0
    indexed: int = 0
    dead_lettered: int = 0
    failed_files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests_indexed: int = 0


class _FileTally:
    """Settlement for one file: counts into the report, dead letters next to the sink dir."""

    def __init__(self, report: DeliveryReport, dead_letters: DeadLetters) -> None:
        self.report = report
        self.dead_letters = dead_letters
        self.error: SinkTransportError | None = None
        self.unsent = 0

    def indexed(self, items: list[BulkItem]) -> None:
        self.report.indexed += len(items)
        self.report.requests_indexed += sum(1 for i in items if i.is_request)

    def rejected(self, rejected: list[tuple[BulkItem, int, Any]]) -> None:
        self.dead_letters.write(rejected)
        self.report.dead_lettered += len(rejected)

    def unsent(self, items: list[BulkItem], error: SinkTransportError | None) -> None:
        self.unsent += len(items)
        self.error = error or SinkTransportError(ErrorKind.INTERNAL, f"{len(items)} items not sent")


def deliver_files(
    bulk: Callable[[bytes], dict[str, Any]],
    files: list[Path],
    sink_dir: Path,
    delete_delivered: bool,
    batch_size: int = 1000,
    policy: RetryPolicy | None = None,
    progress: Callable[[int, int], None] | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    max_leaf: int | None = None,
) -> DeliveryReport:
    """Load (or replay) bulk files through `bulk` (body -> response). A file whose items could not all be
    delivered is kept and named in the report; an unreachable or misconfigured cluster stops the run.
    `max_leaf`: cut longer strings in free-form fields first (the cluster would refuse those documents)."""
    sender = BulkSender(bulk, policy or RetryPolicy(timeout=60.0, max_attempts=30), sleep)
    report = DeliveryReport()
    dead = DeadLetters(sink_dir, "replay")
    total_bytes = sum(p.stat().st_size for p in files) or 1
    done_bytes = 0
    for path in files:
        tally = _FileTally(report, dead)
        size = path.stat().st_size
        for batch in iter_batches(path, batch_size):
            sender.deliver_all([_cut(i, max_leaf) for i in batch] if max_leaf else batch, tally)
            if tally.error is not None:
                report.errors.append(f"{path}: {tally.error}")
                break
        report.files += 1
        if tally.error is not None:
            report.failed_files.append(str(path))
            if tally.error.config_problem or tally.error.kind is ErrorKind.UNREACHABLE:
                break  # no point trying the next files
        elif delete_delivered:
            path.unlink()
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # only when empty: a replayed run's folder goes with its last segment
        done_bytes += size
        if progress:
            progress(done_bytes, total_bytes)
    return report


def _cut(item: BulkItem, limit: int) -> BulkItem:
    if not any(f'"{field}":'.encode() in item.source for field in FREE_FORM):
        return item
    doc = orjson.loads(item.source)
    if not any(len(orjson.dumps(doc.get(field))) > limit for field in FREE_FORM if field in doc):
        return item
    cut = {k: cut_long_leaves(v, limit) if k in FREE_FORM else v for k, v in doc.items()}
    return item._replace(source=orjson.dumps(cut))
