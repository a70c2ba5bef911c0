"""Request records (the buffer's flat fields) -> bulk-format NDJSON, in the helper process or in chunks that
yield; in file mode the helper may write them to the run's file itself."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent

from ..accounting import Ledger, Outcome
from ..bulk import BulkItem, action_prefix, encode_body
from ..records import RECORD_WIDTH, RUN_ID, RequestEncoder
from .helper import EncoderProcess, EncoderUnavailable

ENCODE_CHUNK = 100  # records encoded in-process between two yields (a fraction of a millisecond of CPU)
HELPER_MIN_RECORDS = 64  # smaller batches are encoded in-process: cheaper than a round trip to the helper


class EncodedRequests:
    """A batch's request records, encoded: their bulk-format NDJSON (action line, document, ...) in one bytes
    object, and their run ids.

    No object per record: bulk items (tuples that live until their request is answered) are made only when a
    record needs one -- a retry, the spool, a dead letter, a batch of several runs in file mode. On the normal
    path (Elasticsearch takes the whole batch) the body goes out as it is and only the counts change.
    """

    __slots__ = ("count", "index", "ndjson", "run_ids", "written")

    def __init__(self, index: str, ndjson: bytes, count: int, run_ids: list[str], written: bool = False) -> None:
        self.index = index
        self.ndjson = ndjson
        self.count = count
        self.run_ids = run_ids
        self.written = written  # file mode: the helper process already appended them to the run's file

    def __len__(self) -> int:
        return self.count

    def single_run(self) -> str | None:
        """The run id when every record belongs to one run (the normal case), else None."""
        ids = self.run_ids
        return ids[0] if ids and ids.count(ids[0]) == len(ids) else None

    def items(self) -> list[BulkItem]:
        """The records as bulk items; `doc_id` stays None (the action line carries the `_id`, see
        BulkItem.document_id())."""
        assert not self.written, "records written by the helper have no bytes here"
        lines = self.ndjson.split(b"\n")  # JSON lines hold no raw newline; the last element is the empty tail
        new_item, index = tuple.__new__, self.index
        rows = zip(lines[0:-1:2], lines[1:-1:2], self.run_ids, strict=True)
        return [
            new_item(BulkItem, ("create", index, None, source, True, run_id, action)) for action, source, run_id in rows
        ]

    def body(self, before: list[BulkItem]) -> bytes:
        """The `_bulk` body of `before` followed by these records."""
        return encode_body(before) + self.ndjson if before else self.ndjson


EMPTY = EncodedRequests("", b"", 0, [])


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class BatchEncoder:
    """Encodes one node's request records for one index, in the helper process when it has one.

    `file_for(run_id)` (file mode only) is the run's NDJSON file, which the helper may append a batch of one
    run to itself; `fill_ratio()` is the queue's fill, which decides how long in-process slices may be.
    """

    def __init__(
        self,
        node: str,
        index: str,
        ledger: Ledger,
        fill_ratio: Callable[[], float],
        high_water: float,
        use_helper: bool,
        file_for: Callable[[str], Path | None] | None = None,
    ) -> None:
        self.node = node
        self.index = index
        self.encoder = RequestEncoder(node, action_prefix("create", index) + b',"_id":')
        self.helper = EncoderProcess() if use_helper else None
        self._ledger = ledger
        self._fill_ratio = fill_ratio
        self._high_water = high_water
        self._file_for = file_for

    def encode(self, flat: list[Any], yielding: bool = True, final: bool = False) -> EncodedRequests:
        """Records -> their encoded lines. With the helper when there is one, the batch is big enough and the
        run is not over; otherwise here, ENCODE_CHUNK records at a time with a yield in between (`yielding`
        False: in one go, for the emergency path). `final`: the load is over (the final flush, maybe from an
        atexit hook during interpreter shutdown, where a child process can hang): encode here."""
        n = len(flat) // RECORD_WIDTH
        if not n:
            return EMPTY
        run_ids = flat[RUN_ID::RECORD_WIDTH]
        helper = self.helper
        if helper is not None and yielding and not final and n >= HELPER_MIN_RECORDS:
            try:
                return self._with_helper(helper, flat, n, run_ids)
            except EncoderUnavailable:
                helper.fallbacks += 1  # logged by the helper once; this batch is encoded here
        # Past the high-water mark the queue is about to overflow: bigger slices (a few ms) keep up with a
        # burst instead of dropping records; below it, short slices keep every user greenlet on time.
        chunk = ENCODE_CHUNK if self._fill_ratio() < self._high_water else ENCODE_CHUNK * 10
        lines: list[bytes] = []
        for first in range(0, n, chunk):
            if yielding and first:
                gevent.sleep(0)
            self.encoder.encode(flat, first, min(first + chunk, n), lines)
        return EncodedRequests(self.index, RequestEncoder.body(lines), n, run_ids)

    def _with_helper(self, helper: EncoderProcess, flat: list[Any], n: int, run_ids: list[str]) -> EncodedRequests:
        path = self._helper_file(run_ids)
        if path is None:
            body = helper.encode(self.node, self.encoder.action_head, flat, self.encoder.max_leaf)
            return EncodedRequests(self.index, body, n, run_ids)
        before = _file_size(path)
        try:
            helper.encode_to_file(self.node, self.encoder.action_head, flat, path, self.encoder.max_leaf)
        except EncoderUnavailable:
            raise
        except BaseException:
            self.after_interrupted_file_exchange(flat, path, before)
            raise
        return EncodedRequests(self.index, b"", n, run_ids, written=True)

    def _helper_file(self, run_ids: list[str]) -> Path | None:
        """File mode, records of one run: the file the helper may append them to (None: not this batch)."""
        if self._file_for is None or run_ids.count(run_ids[0]) != len(run_ids):
            return None
        try:
            return self._file_for(run_ids[0])
        except OSError:
            return None  # the sink dir is not writable: the file writer reports it

    def after_interrupted_file_exchange(self, flat: list[Any], path: Path, before: int) -> None:
        """The delivery loop was killed (final deadline, second Ctrl-C) while the helper had this batch to
        write; the helper has been stopped since (EncoderProcess gives up on an interrupted exchange). Did it
        write the batch? In-process encoding gives the same bytes, so the file's size tells: if it grew by
        exactly them, the records are settled as written and `flat` is emptied (nothing left to write);
        otherwise the file is cut back to where it was and the caller writes them."""
        n = len(flat) // RECORD_WIDTH
        lines: list[bytes] = []
        self.encoder.encode(flat, 0, n, lines)
        size = _file_size(path)
        if size == before + len(RequestEncoder.body(lines)):
            self._ledger.settle_counts(n, 0, Outcome.WRITTEN)
            flat.clear()
        elif size != before:
            os.truncate(path, before)

    def cut_long_leaves(self, limit: int | None) -> None:
        """From now on cut context strings longer than `limit` characters (None: keep them whole)."""
        self.encoder.max_leaf = limit or 0

    def status(self) -> dict[str, Any]:
        """Where request documents were encoded: batches by the helper (in file mode also written by it), and
        in-process fallbacks."""
        helper = self.helper
        if helper is None:
            return {"encoder": "inline"}
        counts: dict[str, Any] = {
            "encoder": "process",
            "helper_batches": helper.batches,
            "helper_file_batches": helper.file_batches,
            "fallbacks": helper.fallbacks,
        }
        if helper.broken:
            counts["helper_problem"] = helper.broken
        return counts

    def close(self) -> None:
        if self.helper is not None:
            self.helper.close()
