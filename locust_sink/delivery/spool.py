"""What Elasticsearch cannot take now: the on-disk spool, the overflow policy in front of it, dead letters, and
the replay of this process's spooled segments once the cluster is back.

The spool is a folder of closed, bulk-format NDJSON segments, replayed oldest first. Every record carries a
deterministic id and is written with `create`, so a segment can be sent again after a partial success without
duplicates; it is deleted only when every item in it is indexed or dead-lettered.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import orjson

from ..accounting import Ledger, Outcome
from ..bulk import BulkItem, SinkTransportError, encode_body
from ..filesink import iter_batches, ndjson_files, safe_name
from .retry import BulkSender
from .trouble import TroubleLog

SEGMENT_BYTES = 8 * 1024 * 1024


@dataclass
class Segment:
    """A closed spool segment this process wrote, and how many records of each kind it holds."""

    path: Path
    requests: int
    documents: int


class Spool:
    """Append-only segments under `<sink_dir>/spool/<run_id>/`, bounded by `max_bytes` in total. Knows the
    segments this process wrote (and their counts): those are the ones it replays by itself."""

    def __init__(self, sink_dir: str | os.PathLike[str], node: str, max_bytes: int) -> None:
        self.root = Path(sink_dir) / "spool"
        self.node = safe_name(node)
        self.max_bytes = max_bytes
        self._handle: Any = None
        self._open: Segment | None = None
        self._counter = 0
        self._open_bytes = 0
        self._own: dict[Path, Segment] = {}  # final path -> its closed segment
        self.total_bytes = sum(p.stat().st_size for p in ndjson_files(self.root)) if self.root.exists() else 0

    def has_room(self, nbytes: int) -> bool:
        return self.total_bytes + nbytes <= self.max_bytes

    def append(self, items: list[BulkItem]) -> int:
        """Write items to the open segment (rotating at SEGMENT_BYTES or at a new run); returns bytes written."""
        if not items:
            return 0
        run_dir = self.root / safe_name(items[0].run_id or "unknown")
        if self._open is not None and (self._open_bytes >= SEGMENT_BYTES or self._open.path.parent != run_dir):
            self.close_segment()
        if self._open is None:
            run_dir.mkdir(parents=True, exist_ok=True)
            self._counter += 1
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            path = run_dir / f"{self.node}-{stamp}-{os.getpid()}-{self._counter:05d}.ndjson"
            self._open = Segment(path, 0, 0)
            self._handle = path.with_name(path.name + ".open").open("ab")
            self._open_bytes = 0
        data = encode_body(items)
        self._handle.write(data)  # one write per batch: a torn write can only cut the last pair (read_items skips it)
        self._handle.flush()
        n_req = sum(1 for i in items if i.is_request)
        self._open.requests += n_req
        self._open.documents += len(items) - n_req
        self._open_bytes += len(data)
        self.total_bytes += len(data)
        return len(data)

    def close_segment(self) -> None:
        """Close the open segment and give it its final name, which makes it replayable."""
        if self._open is None:
            return
        self._handle.close()
        segment, self._open, self._handle = self._open, None, None
        segment.path.with_name(segment.path.name + ".open").rename(segment.path)
        self._own[segment.path] = segment

    def own_segments(self) -> list[Segment]:
        """Closed segments this process wrote that are still there, oldest first."""
        found = [s for s in self._own.values() if s.path.exists()]
        return sorted(found, key=lambda s: s.path.stat().st_mtime)

    def waiting(self) -> int:
        """Records this process spooled and has not replayed yet (its open segment included)."""
        open_records = self._open.requests + self._open.documents if self._open is not None else 0
        return open_records + sum(s.requests + s.documents for s in self.own_segments())

    def segments(self) -> list[Path]:
        """Closed segments of this node (also of earlier processes), oldest first."""
        if not self.root.exists():
            return []
        return [p for p in ndjson_files(self.root) if p.name.startswith(self.node + "-")]

    def stale_segments(self) -> list[Path]:
        """This node's segments left by an earlier process: `locust-sink replay` delivers those."""
        return [p for p in self.segments() if p not in self._own]

    def forget(self, segment: Segment) -> None:
        """Delete a delivered segment."""
        size = segment.path.stat().st_size
        segment.path.unlink()
        self._own.pop(segment.path, None)
        self.total_bytes = max(0, self.total_bytes - size)


class DeadLetters:
    """Documents Elasticsearch rejected for good, one JSON line each with the reason, under
    `<sink_dir>/dead-letter/<run_id>/<node>.ndjson`."""

    def __init__(self, sink_dir: str | os.PathLike[str], node: str) -> None:
        self.root = Path(sink_dir) / "dead-letter"
        self.node = safe_name(node)

    def write(self, rejected: list[tuple[BulkItem, int, Any]]) -> None:
        by_run: dict[str, list[tuple[BulkItem, int, Any]]] = {}
        for entry in rejected:
            by_run.setdefault(entry[0].run_id or run_id_of(entry[0]), []).append(entry)
        for run_id, entries in by_run.items():
            path = self.root / safe_name(run_id) / f"{self.node}.ndjson"
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = [
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
                for item, status, error in entries
            ]
            with path.open("ab") as handle:
                handle.write(b"".join(lines))


def run_id_of(item: BulkItem) -> str:
    """Run id of a document read back from a file (only needed to file its dead letter)."""
    if item.run_id:
        return item.run_id
    try:
        return str(orjson.loads(item.source).get("run_id") or "unknown")
    except orjson.JSONDecodeError:
        return "unknown"


class Fallback:
    """Parks what Elasticsearch cannot take now: into the spool, or dropped and counted under `overflow=drop`,
    when the spool is full, or when it cannot be written."""

    def __init__(self, spool: Spool, ledger: Ledger, trouble: TroubleLog, overflow: str) -> None:
        self.spool = spool
        self.ledger = ledger
        self.trouble = trouble
        self.overflow = overflow

    def describe(self) -> str:
        return f"spooling to {self.spool.root}" if self.overflow == "spool" else "dropping"

    def park(self, items: list[BulkItem]) -> None:
        if not items:
            return
        if self.overflow == "drop":
            self.ledger.settle(items, Outcome.DROPPED)
            return
        if not self.spool.has_room(sum(len(i.source) + 64 for i in items)):
            mib = self.spool.max_bytes // (1024 * 1024)
            self.trouble.note(f"spool is full ({mib} MiB); dropping records", error=True)
            self.ledger.settle(items, Outcome.DROPPED)
            return
        try:
            self.spool.append(items)
        except OSError as exc:
            self.trouble.note(f"cannot write the spool in {self.spool.root}: {exc}", error=True)
            self.ledger.settle(items, Outcome.DROPPED)
            return
        self.ledger.settle(items, Outcome.SPOOLED)


class _SegmentTally:
    """Settlement of one segment's replay: counts what was indexed and rejected; stops at the first unsent."""

    def __init__(self, dead_letters: DeadLetters, run_id: str) -> None:
        self.dead_letters = dead_letters
        self.run_id = run_id
        self.counts = {Outcome.INDEXED: [0, 0], Outcome.DEAD_LETTERED: [0, 0]}  # outcome -> [requests, documents]
        self.error: SinkTransportError | None = None
        self.stopped = False

    def _count(self, outcome: Outcome, items: list[BulkItem]) -> None:
        n_req = sum(1 for i in items if i.is_request)
        self.counts[outcome][0] += n_req
        self.counts[outcome][1] += len(items) - n_req

    def indexed(self, items: list[BulkItem]) -> None:
        self._count(Outcome.INDEXED, items)

    def rejected(self, rejected: list[tuple[BulkItem, int, Any]]) -> None:
        self.dead_letters.write([(i._replace(run_id=self.run_id), s, e) for i, s, e in rejected])
        self._count(Outcome.DEAD_LETTERED, [i for i, _s, _e in rejected])

    def unsent(self, items: list[BulkItem], error: SinkTransportError | None) -> None:
        self.stopped = True
        self.error = error


class Replayer:
    """Delivers this process's spooled segments, oldest first, through the live delivery's sender (one retry
    policy), then deletes each one and moves its records from spooled to indexed / dead-lettered."""

    def __init__(
        self,
        spool: Spool,
        ledger: Ledger,
        dead_letters: DeadLetters,
        trouble: TroubleLog,
        batch_size: int,
        on_error: Callable[[SinkTransportError], None],
    ) -> None:
        self.spool = spool
        self.ledger = ledger
        self.dead_letters = dead_letters
        self.trouble = trouble
        self.batch_size = batch_size
        self.on_error = on_error  # the link goes down

    def replay_one(self, sender: BulkSender) -> bool:
        """Deliver the oldest segment; False when there was none or it could not be delivered (yet)."""
        segments = self.spool.own_segments()
        if not segments:
            return False
        segment = segments[0]
        tally = _SegmentTally(self.dead_letters, segment.path.parent.name)
        for batch in iter_batches(segment.path, self.batch_size):
            gevent.sleep(0)
            sender.deliver(batch, tally)
            if tally.stopped:
                if tally.error is not None:
                    self.on_error(tally.error)
                return False  # the segment stays; what went in is `create`d again next time (409: indexed)
        self.spool.forget(segment)
        for outcome, (n_req, n_doc) in tally.counts.items():
            self.ledger.unspool(n_req, n_doc, outcome)
        done = sum(tally.counts[Outcome.INDEXED]) + sum(tally.counts[Outcome.DEAD_LETTERED])
        if done != segment.requests + segment.documents:
            held = segment.requests + segment.documents
            self.trouble.note(f"spool segment {segment.path.name} held {done} of {held} documents")
        return True
