"""On-disk spool (records ES could not take yet), dead letters, and replay/load into Elasticsearch.

The spool is a folder of closed, bulk-format NDJSON segments, replayed oldest first. Because every record
carries a deterministic id and is written with `create`, a segment can be re-sent after a partial success
without duplicates; it is deleted only when every item in it is indexed or dead-lettered.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .filesink import ndjson_files, read_items, safe_name, write_items
from .transport import BulkItem, BulkOutcome, SinkTransportError, encode_body, send_bulk

log = logging.getLogger("locust_sink")

SEGMENT_BYTES = 8 * 1024 * 1024


class Spool:
    """Append-only segments under `<sink_dir>/spool/<run_id>/`, bounded by `max_bytes` in total."""

    def __init__(self, sink_dir: str | os.PathLike[str], node: str, max_bytes: int) -> None:
        self.root = Path(sink_dir) / "spool"
        self.node = safe_name(node)
        self.max_bytes = max_bytes
        self._handle: Any = None
        self._path: Path | None = None
        self._counter = 0
        self._open_bytes = 0
        self.total_bytes = sum(p.stat().st_size for p in ndjson_files(self.root)) if self.root.exists() else 0

    def has_room(self, nbytes: int) -> bool:
        return self.total_bytes + nbytes <= self.max_bytes

    def append(self, items: list[BulkItem]) -> int:
        """Write items to the open segment (rotating at SEGMENT_BYTES); returns bytes written."""
        if not items:
            return 0
        run_dir = self.root / safe_name(items[0].run_id or "unknown")
        if self._handle is not None and (self._open_bytes >= SEGMENT_BYTES or self._path.parent != run_dir):  # type: ignore[union-attr]
            self.close_segment()
        if self._handle is None:
            run_dir.mkdir(parents=True, exist_ok=True)
            self._counter += 1
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            self._path = run_dir / f"{self.node}-{stamp}-{os.getpid()}-{self._counter:05d}.ndjson.open"
            self._handle = self._path.open("ab")
            self._open_bytes = 0
        written = write_items(self._handle, items)
        self._handle.flush()
        self._open_bytes += written
        self.total_bytes += written
        return written

    def close_segment(self) -> None:
        """Close the open segment and give it its final name, which makes it replayable."""
        if self._handle is None:
            return
        self._handle.close()
        assert self._path is not None
        final = self._path.with_suffix("")  # drop ".open"
        self._path.rename(final)
        self._handle = None
        self._path = None

    def segments(self) -> list[Path]:
        """Closed segments of this node, oldest first (other nodes' segments are left to them or replay)."""
        if not self.root.exists():
            return []
        return [p for p in ndjson_files(self.root) if p.name.startswith(self.node + "-")]

    def forget(self, path: Path) -> None:
        size = path.stat().st_size
        path.unlink()
        self.total_bytes = max(0, self.total_bytes - size)


class DeadLetters:
    """Documents ES rejected for good, one JSON line each with ES's reason, under `<sink_dir>/dead-letter/`."""

    def __init__(self, sink_dir: str | os.PathLike[str], node: str) -> None:
        self.root = Path(sink_dir) / "dead-letter"
        self.node = safe_name(node)
        self.paths: set[Path] = set()

    def write(self, rejected: list[tuple[BulkItem, int, Any]]) -> None:
        if not rejected:
            return
        by_run: dict[str, list[tuple[BulkItem, int, Any]]] = {}
        for entry in rejected:
            by_run.setdefault(entry[0].run_id or "unknown", []).append(entry)
        for run_id, entries in by_run.items():
            path = self.root / safe_name(run_id) / f"{self.node}.ndjson"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as handle:
                for item, status, error in entries:
                    handle.write(
                        orjson.dumps(
                            {
                                "_index": item.index,
                                "_id": item.document_id(),
                                "status": status,
                                "error": error,
                                "source": orjson.Fragment(item.source),
                            }
                        )
                        + b"\n"
                    )
            self.paths.add(path)


@dataclass
class DeliveryReport:
    """What a load or replay did."""

    files: int = 0
    indexed: int = 0
    dead_lettered: int = 0
    failed_files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests_indexed: int = 0


def deliver_items(
    es: Any,
    items: list[BulkItem],
    batch_size: int = 500,
    max_attempts: int = 8,
    pause: Callable[[float], None] = time.sleep,
) -> tuple[BulkOutcome, SinkTransportError | None]:
    """Send items in batches, retrying retryable items/requests with capped backoff.

    Returns the combined outcome and, if delivery stopped early, the error that stopped it (items not
    yet confirmed are then neither in `indexed` nor `rejected`).
    """
    total = BulkOutcome()
    for start in range(0, len(items), batch_size):
        pending = items[start : start + batch_size]
        attempt = 0
        while pending:
            try:
                outcome = send_bulk(es, pending, encode_body(pending))
            except SinkTransportError as exc:
                if not exc.retryable or attempt + 1 >= max_attempts:
                    return total, exc
                attempt += 1
                pause(min(30.0, 0.5 * 2**attempt))
                continue
            total.indexed.extend(outcome.indexed)
            total.rejected.extend(outcome.rejected)
            pending = outcome.retry
            if pending:
                attempt += 1
                if attempt >= max_attempts:
                    return total, SinkTransportError("overloaded", f"{len(pending)} items still refused")
                pause(min(30.0, 0.5 * 2**attempt))
    return total, None


def iter_batches(path: Path, batch_size: int) -> Iterator[list[BulkItem]]:
    batch: list[BulkItem] = []
    for item in read_items(path):
        batch.append(item)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def deliver_files(
    es: Any,
    files: list[Path],
    sink_dir: Path,
    delete_delivered: bool,
    batch_size: int = 500,
    progress: Callable[[int, int], None] | None = None,
    pause: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    """Load (or replay) bulk files into ES. With `delete_delivered`, a fully settled file is removed."""
    report = DeliveryReport()
    dead = DeadLetters(sink_dir, "replay")
    total_bytes = sum(p.stat().st_size for p in files) or 1
    done_bytes = 0
    error: SinkTransportError | None = None
    for path in files:
        file_ok = True
        size = path.stat().st_size
        for batch in iter_batches(path, batch_size):
            outcome, error = deliver_items(es, batch, batch_size, pause=pause)
            rejected = [(item._replace(run_id=_run_id_of(item)), s, e) for item, s, e in outcome.rejected]
            dead.write(rejected)
            report.indexed += len(outcome.indexed)
            report.requests_indexed += sum(1 for i in outcome.indexed if i.is_request)
            report.dead_lettered += len(outcome.rejected)
            if error is not None:
                report.errors.append(f"{path}: {error}")
                file_ok = False
                break
        report.files += 1
        if not file_ok:
            report.failed_files.append(str(path))
            if error is not None and (error.config_problem or error.kind == "unreachable"):
                break  # no point trying the next files
        elif delete_delivered:
            path.unlink()
            _remove_empty_parent(path.parent)
        done_bytes += size
        if progress:
            progress(done_bytes, total_bytes)
    return report


def _run_id_of(item: BulkItem) -> str:
    """Run id of a document read back from a file (only needed to file its dead letter)."""
    if item.run_id:
        return item.run_id
    try:
        return str(orjson.loads(item.source).get("run_id") or "unknown")
    except orjson.JSONDecodeError:
        return "unknown"


def _remove_empty_parent(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()  # only succeeds when empty: a replayed run's folder disappears with its last segment
