"""The background greenlet: takes records from the buffer, encodes them in small chunks that yield, and
delivers them to Elasticsearch (retrying, spooling to disk, dead-lettering) or to NDJSON files.

Modelled on OpenTelemetry's BatchSpanProcessor (queue size, batch size, schedule delay, export timeout)
and sentry-python's background worker (`flush(timeout)`), with the no-loss rules of this project: every
record ends up counted as exactly one of indexed / written / spooled / dead-lettered / dropped.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event

from .buffer import Accounting, RecordBuffer
from .encoder import EncoderProcess, EncoderUnavailable
from .filesink import FileWriter
from .records import RECORD_WIDTH, RequestEncoder, dumps
from .spool import DeadLetters, Spool, iter_batches
from .transport import (
    BulkItem,
    BulkOutcome,
    EsConfig,
    SinkTransportError,
    action_prefix,
    bulk_request,
    check_server,
    classify,
    cli_command,
    encode_body,
    make_client,
    redact,
    send_bulk,
    sort_items,
)

log = logging.getLogger("locust_sink")

ENCODE_CHUNK = 100  # records encoded in-process between two yields: ~0.3 ms of CPU
HELPER_MIN_RECORDS = 64  # smaller batches are encoded in-process: cheaper than a round trip to the helper
MAX_BULK_BYTES = 5 * 1024 * 1024


@dataclass
class SinkSettings:
    """Tuning knobs; see docs/DESIGN.md for the matching command-line options."""

    batch_size: int = 1000
    flush_interval: float = 1.0
    queue_size: int = 100_000
    flush_timeout: float = 30.0
    retry_timeout: float = 30.0  # how long one batch is retried before ES counts as down and we spool
    max_attempts: int = 30  # the time budget (retry_timeout) is what normally ends retrying
    high_water: float = 0.5  # queue fill ratio past which retrying stops and batches go to the spool
    spool_max_bytes: int = 1024 * 1024 * 1024
    overflow: str = "spool"  # or "drop": when ES cannot take records, drop (counted) instead of spooling
    probe_interval_max: float = 10.0
    docs_queue_size: int = 20_000
    encoder: str = "process"  # or "inline": see encoder.py


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class EncodedRequests:
    """A batch's request records, encoded: their bulk-format NDJSON (action line, document, ...) in one bytes
    object, and their run ids.

    No object per record: bulk items (tuples that live until their request is answered) are made only when a
    record needs one -- a retry, the spool, a dead letter, a batch of several runs in file mode. On the normal
    path (Elasticsearch takes the whole batch) the body goes out as it is and the counts go into the
    accounting, and that is all (sampled: ~0.4 % of Locust's CPU less in es mode than with one bulk item per
    record). The helper process sends the body as one object, so Locust's process allocates nothing per record.
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


class Flusher:
    """Owns delivery for one Locust process (one node)."""

    def __init__(
        self,
        buffer: RecordBuffer,
        wake: Event,
        node: str,
        index_prefix: str,
        sink_dir: str | Path,
        settings: SinkSettings,
        es_config: EsConfig | None = None,
        setup: Callable[[Any], None] | None = None,
    ) -> None:
        self.buffer = buffer
        self.accounting: Accounting = buffer.accounting
        self.doc_accounting = Accounting()
        self._docs: deque[BulkItem] = deque()
        self._wake = wake
        self.node = node
        self.requests_index = f"{index_prefix}-requests"
        self.index_prefix = index_prefix
        self.sink_dir = Path(sink_dir)
        self.settings = settings
        self.es_config = es_config
        self._setup = setup
        self.mode = "es" if es_config else "file"
        self.state = "starting" if es_config else "file"
        self.last_error: str | None = None
        self.trouble: list[str] = []  # one line per distinct problem, for the run document
        self.server_version: str | None = None
        self.es: Any = None
        self.file_writer = FileWriter(self.sink_dir, node) if self.mode == "file" else None
        self.encoder = RequestEncoder(node, action_prefix("create", self.requests_index) + b',"_id":')
        self.encoder_process = EncoderProcess() if settings.encoder == "process" else None
        self.spool = Spool(self.sink_dir, node, settings.spool_max_bytes)
        self.dead_letters = DeadLetters(self.sink_dir, node)
        self._segment_counts: dict[Path, tuple[int, int]] = {}
        self._open_counts = [0, 0]
        self._next_probe = 0.0
        self._probe_delay = 1.0
        self._greenlet: gevent.Greenlet | None = None
        self._closing = False
        self._busy = False
        self._secrets = es_config.secrets() if es_config else []
        self._stale_spool_reported = False
        self._ever_up = False
        self._drain_requested = False
        self._last_drain = time.monotonic()
        self._dead_letter_kinds: set[str] = set()
        self._recovering = False
        self._outage_announced = False
        # Items ES refused one by one (429s inside a successful bulk response) while a full batch of new
        # records was waiting: they ride with the next batch instead of holding it up with a backoff sleep.
        self._carry: list[BulkItem] = []
        # per carried item (by id(); the items stay alive while in flight): (times refused, first refusal)
        self._carry_meta: dict[int, tuple[int, float]] = {}
        self._batch_meta: dict[int, tuple[int, float]] = {}  # the same, for the carried items now being sent
        self.items_carried = 0  # how many item retries went out with a later batch (shown in the stats)
        self.retry_sleeps = 0  # backoff sleeps before a retry (whole-request failures, or nothing else to send)

    # ----- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)

    def wake(self) -> None:
        """Deliver everything queued now (test stop, final flush), partial batches included."""
        self._drain_requested = True
        self._wake.set()

    def submit_document(
        self, family: str, doc: dict[str, Any], run_id: str, doc_id: str | None = None, op: str = "create"
    ) -> bool:
        """Queue a non-request document (stats, events, runs); never blocks."""
        acc = self.doc_accounting
        acc.emitted += 1
        if len(self._docs) >= self.settings.docs_queue_size:
            acc.dropped += 1
            return False
        item = BulkItem(op, f"{self.index_prefix}-{family}", doc_id, dumps(doc), False, run_id)
        self._docs.append(item)
        acc.queued += 1
        return True

    def pending(self) -> int:
        # carried items are in flight: counted here through the accounting
        return len(self.buffer) + len(self._docs) + self.accounting.in_flight + self.doc_accounting.in_flight

    def retry_counts(self) -> dict[str, int]:
        """How often delivery had to retry: refused items sent again with a later batch, and backoff sleeps."""
        return {"items_carried": self.items_carried, "backoff_sleeps": self.retry_sleeps}

    def encoder_counts(self) -> dict[str, Any]:
        """Where request documents were encoded: batches by the helper process (in file mode also written by
        it), and in-process fallbacks."""
        helper = self.encoder_process
        if helper is None:
            return {"encoder": "inline"}
        counts: dict[str, Any] = {
            "encoder": "process",
            "helper_batches": helper.batches,
            "helper_file_batches": helper.file_batches,  # of those, written to the NDJSON file by the helper
            "fallbacks": helper.fallbacks,
        }
        if helper.broken:
            counts["helper_problem"] = helper.broken
        return counts

    def flush(self, timeout: float | None = None, final: bool = False) -> bool:
        """Deliver everything queued; returns True when nothing is left in memory.

        Called from the main greenlet at quit. Past the deadline (or on a second Ctrl-C) whatever is still
        in memory goes to the spool (or the file), so nothing is lost either way.
        """
        deadline = time.monotonic() + (self.settings.flush_timeout if timeout is None else timeout)
        self._closing = self._closing or final
        self.start()
        try:
            while time.monotonic() < deadline:
                if not self.pending() and not self._busy and not self._worth_waiting_for_spool():
                    break
                self.wake()
                gevent.sleep(0.02)
        except KeyboardInterrupt:
            # A second Ctrl-C: stop waiting for Elasticsearch, but keep every record (spool), and let
            # Locust finish its own shutdown (stats, --json-file) instead of dying with a traceback.
            log.warning("locust-sink: interrupted during the final flush; spooling what is left")
            self._emergency()
            return self.pending() == 0
        except gevent.GreenletExit:
            self._emergency()
            raise
        if self.pending() or self._busy:
            self._emergency()
        return self.pending() == 0

    def _worth_waiting_for_spool(self) -> bool:
        """At the end, keep replaying this run's spool while ES is up, or while it is briefly down after
        having worked in this run (a restart); a never-reachable or misconfigured ES is not waited for."""
        if not self._my_segments():
            return False
        return self.state == "up" or (self.state == "down" and self._ever_up)

    def close(self, timeout: float | None = None) -> bool:
        done = self.flush(timeout, final=True)
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=5)
        self.spool.close_segment()
        if self.file_writer is not None:
            self.file_writer.close()
        if self.encoder_process is not None:
            self.encoder_process.close()
        return done

    def _emergency(self) -> None:
        """Stop the flusher and put everything still in memory on disk, synchronously."""
        if self._greenlet is not None and not self._greenlet.dead:
            self._greenlet.kill(block=True, timeout=5)  # its in-flight batch is spooled by _deliver
        carried, self._carry = self._carry, []
        self._park(carried)
        while len(self.buffer) or self._docs:
            items = self._encode(self.buffer.take_flat(self.settings.batch_size), yielding=False).items()
            items += self._take_docs(self.settings.batch_size)
            self._park(items)
        self.spool.close_segment()

    # ----- the loop --------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(timeout=self.settings.flush_interval)
            self._wake.clear()
            self._busy = True
            try:
                self._cycle()
            except gevent.GreenletExit:
                raise
            except Exception as exc:  # never let the flusher die: log once per distinct problem
                self._note_trouble(f"internal error in the flusher: {type(exc).__name__}: {exc}", error=True)
                log.debug("flusher error", exc_info=True)
                gevent.sleep(0.5)
            finally:
                self._busy = False

    def _cycle(self) -> None:
        # Full batches go out as soon as they are queued; a partial batch only once per flush interval (or
        # when a flush is requested). Sending whatever is queued after each 20 ms bulk request would make
        # tiny batches: many more HTTP requests, and more CPU taken from the load test.
        now = time.monotonic()
        drain_all = self._drain_requested or self._closing or now - self._last_drain >= self.settings.flush_interval
        if drain_all:
            self._drain_requested = False
            self._last_drain = now
        batch = self.settings.batch_size
        # A drain sends what is queued *now*, partial last batch included, and then stops: records that arrive
        # while it sends wait for a full batch or the next interval. Draining "while anything is queued" never
        # ends under load (each ~20 ms bulk request lets ~100 records in) and degrades into a stream of tiny
        # bulk requests -- the costliest way to deliver (measured: ~46 records per request instead of 500).
        backlog = len(self.buffer) + len(self._docs) + len(self._carry) if drain_all else 0

        def more() -> bool:
            queued = len(self.buffer) + len(self._docs) + len(self._carry)
            return queued >= batch or (backlog > 0 and queued > 0)

        def send(deliver: Callable[[list[BulkItem], EncodedRequests], None]) -> None:
            nonlocal backlog
            items, encoded = self._next_batch()
            backlog -= len(items) + len(encoded)
            deliver(items, encoded)

        if self.mode == "file":
            while more():
                send(self._write_file)
            return
        if self.state != "up" and now >= self._next_probe:
            self._connect()
        if self.state == "up":
            self._replay_one_segment()
        while more() and self.state == "up":
            send(self._deliver)
        while more() and self.state != "up":
            send(lambda items, encoded: self._park(items + encoded.items()))

    def _next_batch(self) -> tuple[list[BulkItem], EncodedRequests]:
        """The next batch: carried retries and other documents (bulk items), then encoded request records."""
        carried, self._carry = self._carry, []  # already encoded and in flight: first in line
        self._batch_meta, self._carry_meta = self._carry_meta, {}
        docs = self._take_docs(self.settings.batch_size - len(carried))
        room = self.settings.batch_size - len(carried) - len(docs)
        records = self.buffer.take_flat(room) if room > 0 else []
        try:
            encoded = self._encode(records)
        except BaseException:
            # killed while yielding between chunks: these records left the queue, so they must land somewhere
            self._park(carried + docs + self._encode(records, yielding=False).items())
            raise
        return carried + docs, encoded

    def _take_docs(self, limit: int) -> list[BulkItem]:
        docs = self._docs
        n = min(limit, len(docs))
        taken = [docs.popleft() for _ in range(n)]
        self.doc_accounting.queued -= n
        self.doc_accounting.in_flight += n
        return taken

    def _encode(self, flat: list[Any], yielding: bool = True) -> EncodedRequests:
        """Records (the buffer's flat fields) -> their action lines and documents.

        Encoding goes to the helper process when there is one (see encoder.py); otherwise, or when it cannot
        take this batch, it runs here, ENCODE_CHUNK records at a time with a yield in between. Not yielding
        (the emergency path of a killed flusher) means in-process, without the helper; so does the final flush.
        In file mode the helper also appends a batch of one run to that run's file (then `written` is set).
        """
        n = len(flat) // RECORD_WIDTH
        if not n:
            return EMPTY
        ndjson = b""
        run_ids = flat[10::RECORD_WIDTH]
        helper = self.encoder_process
        # Not at the end (final flush, possibly from an atexit hook during interpreter shutdown, where starting or
        # talking to a child process can hang until the flush deadline): the load is over, CPU is free here.
        if helper is not None and yielding and not self._closing and n >= HELPER_MIN_RECORDS:
            head = self.encoder.action_head
            try:
                path = self._helper_file(run_ids)
                if path is not None:
                    before = _file_size(path)
                    try:
                        helper.encode_to_file(self.node, head, flat, path)
                    except EncoderUnavailable:
                        raise
                    except BaseException:
                        self._after_interrupted_file_exchange(flat, path, before)
                        raise
                    return EncodedRequests(self.requests_index, b"", n, run_ids, written=True)
                ndjson = helper.encode(self.node, head, flat)
            except EncoderUnavailable:
                helper.fallbacks += 1  # logged by the helper once; this batch is encoded here
        if not ndjson:
            # Past the high-water mark the queue is about to overflow: bigger slices (a few ms) keep up with a
            # burst instead of dropping records; below it, ~0.3 ms slices keep every user greenlet on time.
            chunk = ENCODE_CHUNK if self.buffer.fill_ratio < self.settings.high_water else ENCODE_CHUNK * 10
            lines: list[bytes] = []
            for first in range(0, n, chunk):
                if yielding and first:
                    gevent.sleep(0)
                self.encoder.encode(flat, first, min(first + chunk, n), lines)
            ndjson = RequestEncoder.body(lines)
        return EncodedRequests(self.requests_index, ndjson, n, run_ids)

    def _helper_file(self, run_ids: list[str]) -> Path | None:
        """File mode, records of one run: the file the helper may append them to (None: not this batch)."""
        if self.file_writer is None or run_ids.count(run_ids[0]) != len(run_ids):
            return None
        try:
            return self.file_writer.prepare(run_ids[0])
        except OSError:
            return None  # the sink dir is not writable: _write_file reports it

    def _after_interrupted_file_exchange(self, flat: list[Any], path: Path, before: int) -> None:
        """The flusher was killed (final deadline, second Ctrl-C) while the helper had this batch to write; the
        helper has been stopped since (EncoderProcess gives up on an interrupted exchange). Did it write the
        batch? In-process encoding gives the same bytes, so the file's size tells: if it grew by exactly them,
        the records are settled as written and `flat` is emptied (nothing left to write again); otherwise the
        file is cut back to where it was and the caller writes them."""
        n = len(flat) // RECORD_WIDTH
        lines: list[bytes] = []
        self.encoder.encode(flat, 0, n, lines)
        size = _file_size(path)
        if size == before + len(RequestEncoder.body(lines)):
            self._settle_requests(n, "written")
            flat.clear()
        elif size != before:
            os.truncate(path, before)

    # ----- outcomes and accounting -----------------------------------------------------------------
    def _settle(self, items: list[BulkItem], field: str) -> None:
        n_req = sum(1 for i in items if i.is_request)
        for acc, n in ((self.accounting, n_req), (self.doc_accounting, len(items) - n_req)):
            if n:
                acc.in_flight -= n
                setattr(acc, field, getattr(acc, field) + n)

    def _settle_requests(self, n: int, field: str) -> None:
        acc = self.accounting
        acc.in_flight -= n
        setattr(acc, field, getattr(acc, field) + n)

    def _write_file(self, items: list[BulkItem], encoded: EncodedRequests = EMPTY) -> None:
        assert self.file_writer is not None
        run_ids = encoded.run_ids
        if encoded.written:
            self._settle_requests(len(encoded), "written")
            encoded = EMPTY
        elif len(encoded) and run_ids.count(run_ids[0]) == len(run_ids):
            # the normal case, records of one run: their lines go to its file as they are, no bulk items
            try:
                self.file_writer.write_body(run_ids[0], encoded.ndjson)
            except OSError as exc:
                self._note_trouble(f"cannot write to {self.sink_dir}: {exc}", error=True)
                self._settle_requests(len(encoded), "dropped")
            else:
                self._settle_requests(len(encoded), "written")
            encoded = EMPTY
        if len(encoded):
            items = items + encoded.items()
        if not items:
            return
        try:
            self.file_writer.write(items)
        except OSError as exc:
            self._note_trouble(f"cannot write to {self.sink_dir}: {exc}", error=True)
            self._settle(items, "dropped")
            return
        self._settle(items, "written")

    def _park(self, items: list[BulkItem]) -> None:
        """ES cannot take these now: spool them (or drop them, counted, under overflow=drop)."""
        if not items:
            return
        if self.mode == "file":
            self._write_file(items)
            return
        if self.settings.overflow == "drop":
            self._settle(items, "dropped")
            return
        size = sum(len(i.source) + 64 for i in items)
        if not self.spool.has_room(size):
            self._note_trouble(
                f"spool is full ({self.settings.spool_max_bytes // (1024 * 1024)} MiB); dropping records",
                error=True,
            )
            self._settle(items, "dropped")
            return
        try:
            self.spool.append(items)
        except OSError as exc:
            self._note_trouble(f"cannot write the spool in {self.spool.root}: {exc}", error=True)
            self._settle(items, "dropped")
            return
        self._track_spooled(items)
        self._settle(items, "spooled")

    def _track_spooled(self, items: list[BulkItem]) -> None:
        n_req = sum(1 for i in items if i.is_request)
        path = self.spool._path
        assert path is not None
        final = path.with_suffix("")
        old = self._segment_counts.get(final, (0, 0))
        self._segment_counts[final] = (old[0] + n_req, old[1] + len(items) - n_req)

    def _my_segments(self) -> list[Path]:
        return [p for p in self._segment_counts if p.exists()]

    # ----- Elasticsearch ---------------------------------------------------------------------------
    def _connect(self) -> None:
        assert self.es_config is not None
        was = self.state
        try:
            if self.es is None:
                self.es = make_client(self.es_config)
            self.server_version = check_server(self.es)
            self._run_setup()
        except SinkTransportError as exc:
            self._went_down(exc)
            return
        except ValueError as exc:  # a URL the client cannot parse
            self._went_down(SinkTransportError("config", f"bad --es-url: {exc}"))
            return
        except Exception as exc:
            self._went_down(classify(exc))
            return
        self.state = "up"
        self._ever_up = True
        self.spool.close_segment()  # closed segments are what the replay picks up
        if was in ("down", "broken"):
            self._recovering = True  # announced once a bulk request really succeeds (not just the probe)
        self._report_stale_spool()

    def _run_setup(self) -> None:
        """Install templates once. A transport failure means ES is not usable yet (retry on the next probe);
        any other failure (e.g. a template ES refuses) is reported once and indexing goes on without it."""
        if self._setup is None:
            return
        try:
            self._setup(self.es)
        except SinkTransportError:
            raise
        except Exception as exc:
            transport_failure = classify(exc)
            if transport_failure.retryable or transport_failure.config_problem:
                raise transport_failure from exc
            self._note_trouble(f"index template setup failed, indexing without it: {exc}", error=True)
        self._setup = None

    def _delivered(self) -> None:
        """A bulk request succeeded: if we were recovering from an outage, say so once."""
        self._probe_delay = 1.0
        if self._recovering:
            self._recovering = False
            self._outage_announced = False
            waiting = sum(c[0] + c[1] for p, c in self._segment_counts.items() if p.exists())
            log.info(
                "locust-sink: Elasticsearch at %s takes documents again; replaying %d spooled documents",
                self.es_config.describe() if self.es_config else "?",
                waiting,
            )

    def _went_down(self, exc: SinkTransportError) -> None:
        config = exc.config_problem or exc.kind == "config"
        new_state = "broken" if config else "down"
        message = redact(str(exc), self._secrets)
        if not self._outage_announced or self.last_error != message:
            # one line per outage (a probe that answers while bulk requests still fail is the same outage)
            self._outage_announced = True
            where = "spooling to " + str(self.spool.root) if self.settings.overflow == "spool" else "dropping"
            text = f"{message} ({where})"
            if text not in self.trouble:
                self.trouble.append(text)
            (log.error if config else log.warning)("locust-sink: %s", text)
        self.state = new_state
        self.last_error = message
        delay = 60.0 if config else self._probe_delay
        self._next_probe = time.monotonic() + delay * random.uniform(0.8, 1.2)
        if not config:
            self._probe_delay = min(self.settings.probe_interval_max, self._probe_delay * 2)

    def _note_trouble(self, message: str, error: bool = False) -> None:
        message = redact(message, self._secrets)
        if message not in self.trouble:
            self.trouble.append(message)
            (log.error if error else log.warning)("locust-sink: %s", message)

    def _report_stale_spool(self) -> None:
        if self._stale_spool_reported:
            return
        self._stale_spool_reported = True
        mine = set(self._segment_counts)
        stale = [p for p in self.spool.segments() if p not in mine]
        if stale:
            assert self.es_config is not None
            log.warning(
                "locust-sink: %d spool segment(s) from an earlier run are in %s; deliver them with `%s`%s",
                len(stale),
                self.spool.root,
                cli_command("replay", str(self.spool.root), *self.es_config.cli_args()),
                self.es_config.secret_env_hint(),
            )

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, capped."""
        return random.uniform(0, min(8.0, 0.25 * 2**attempt))

    def _deliver(self, items: list[BulkItem], encoded: EncodedRequests = EMPTY) -> None:
        """Send items and encoded records (split by bytes), retrying what is retryable; spool what cannot be
        delivered. The normal case -- one request, Elasticsearch takes everything -- makes no bulk items for
        the encoded records; anything else turns them into items and takes the general path below."""
        if len(encoded):
            body = encoded.body(items)
            if len(body) >= MAX_BULK_BYTES or self.state != "up":
                self._deliver(items + encoded.items())
                return
            result: dict[str, Any] | SinkTransportError
            try:
                result = bulk_request(self.es, body)
            except SinkTransportError as exc:
                result = exc
            except BaseException:
                self._park(items + encoded.items())  # killed mid-request: the batch must not vanish
                raise
            if not isinstance(result, SinkTransportError) and not result.get("errors"):
                self._delivered()
                self._settle(items, "indexed")
                self._settle_requests(len(encoded), "indexed")
                return
            items = items + encoded.items()
            first: BulkOutcome | SinkTransportError
            if isinstance(result, SinkTransportError):
                first = result
            else:
                try:
                    first = sort_items(items, result)  # the first attempt's outcome, item by item
                except SinkTransportError as exc:
                    first = exc
            self._deliver_chunk(items, body, first)  # parks its own items if interrupted
            return
        start = 0
        try:
            body = encode_body(items)  # normally one request: encode once, no per-item size bookkeeping
            if len(body) < MAX_BULK_BYTES:
                start = len(items)  # from here on _deliver_chunk parks its own items if interrupted
                self._deliver_chunk(items, body)
                return
            while start < len(items):
                end, size = start, 0
                while end < len(items) and (end == start or size + len(items[end].source) < MAX_BULK_BYTES):
                    size += len(items[end].source) + 100
                    end += 1
                current, start = items[start:end], end  # the current chunk parks itself if interrupted
                self._deliver_chunk(current)
        except BaseException:
            self._park(items[start:])
            raise

    def _deliver_chunk(
        self, items: list[BulkItem], body: bytes | None = None, first: BulkOutcome | SinkTransportError | None = None
    ) -> None:
        """One bulk request's worth of items (`body`: already encoded, or None), until they are settled.
        `first`: the outcome (or error) of a first attempt already made by the caller with `body`."""
        pending = items
        attempt = 0
        started = time.monotonic()
        try:
            while pending:
                if self.state != "up":
                    self._park(pending)
                    return
                try:
                    if first is not None:
                        earlier, first = first, None
                        if isinstance(earlier, SinkTransportError):
                            raise earlier
                        outcome = earlier
                    else:
                        outcome = send_bulk(self.es, pending, body)
                except SinkTransportError as exc:
                    if exc.kind == "too_large" and len(pending) > 1:
                        half = len(pending) // 2
                        front, back, pending = pending[:half], pending[half:], []
                        try:
                            self._deliver_chunk(front)  # parks its own items if interrupted
                        except BaseException:
                            self._park(back)
                            raise
                        self._deliver_chunk(back)
                        return
                    if exc.retryable and self._may_retry(attempt, started):
                        attempt += 1
                        self.retry_sleeps += 1
                        gevent.sleep(self._backoff(attempt))
                        continue
                    self._went_down(exc)
                    self._park(pending)
                    return
                self._delivered()
                self._settle(outcome.indexed, "indexed")
                if outcome.rejected:
                    self._dead_letter(outcome.rejected)
                pending, body = outcome.retry, None
                if not pending:
                    return
                if self._carry_along(pending):
                    return
                if self._may_retry(attempt, started):
                    attempt += 1
                    self.retry_sleeps += 1
                    gevent.sleep(self._backoff(attempt))
                    continue
                statuses = ", ".join(f"{s}x{n}" for s, n in sorted(outcome.retry_statuses.items()))
                self._went_down(SinkTransportError("overloaded", f"Elasticsearch keeps refusing items ({statuses})"))
                self._park(pending)
                return
        except BaseException:
            # Killed (final deadline, second Ctrl-C) or crashed mid-request: the batch must not vanish.
            if pending:
                self._park(pending)
            raise

    def _carry_along(self, items: list[BulkItem]) -> bool:
        """Item-level retries (429s inside a bulk response) ride with the next batch when a full batch of new
        records is already waiting: a backoff sleep here would hold up every record behind them (measured
        through the fault proxy: ~100-150 records/s with 10 % of items refused). That batch goes out at once
        anyway, so ES sees no more requests than without refusals. With no full batch waiting the caller
        retries after a backoff, as before. Each item keeps the budget of a retried batch (max_attempts,
        retry_timeout) across the batches it rides with; past it the caller gives up on ES (and spools)."""
        if len(self.buffer) < self.settings.batch_size or self.buffer.fill_ratio >= self.settings.high_water:
            return False  # nothing to ride with, or the queue is about to overflow (then the caller spools)
        now, max_attempts, timeout = time.monotonic(), self.settings.max_attempts, self.settings.retry_timeout
        known = self._batch_meta
        meta = []
        for item in items:
            refused, first = known.get(id(item), (0, now))
            if refused + 1 >= max_attempts or now - first >= timeout:
                return False
            meta.append((id(item), (refused + 1, first)))
        self._carry_meta.update(meta)
        self._carry.extend(items)
        self.items_carried += len(items)
        return True

    def _may_retry(self, attempt: int, started: float) -> bool:
        return (
            attempt + 1 < self.settings.max_attempts
            and time.monotonic() - started < self.settings.retry_timeout
            and self.buffer.fill_ratio < self.settings.high_water
        )

    def _dead_letter(self, rejected: list[tuple[BulkItem, int, Any]]) -> None:
        try:
            self.dead_letters.write(rejected)
        except OSError as exc:
            self._note_trouble(f"cannot write dead letters: {exc}", error=True)
        for _item, status, error in rejected:
            kind = error.get("type") if isinstance(error, dict) else str(error)
            if kind in self._dead_letter_kinds:
                continue  # one line per kind of rejection: the reasons differ per document (values)
            self._dead_letter_kinds.add(kind)
            example = error.get("reason") if isinstance(error, dict) else ""
            self._note_trouble(
                f"Elasticsearch rejected documents for good ({status} {kind}, e.g. {example}); "
                f"kept with the reasons in {self.dead_letters.root}",
                error=True,
            )
        self._settle([item for item, _s, _e in rejected], "dead_lettered")

    def _replay_one_segment(self) -> None:
        """Deliver the oldest of this process's spool segments, then delete it (idempotent: create + ids)."""
        segments = sorted(self._my_segments(), key=lambda p: p.stat().st_mtime)
        if not segments:
            return
        path = segments[0]
        n_req, n_doc = self._segment_counts[path]
        indexed = dead = indexed_req = dead_req = 0
        for batch in iter_batches(path, self.settings.batch_size):
            gevent.sleep(0)
            try:
                outcome = send_bulk(self.es, batch)
            except SinkTransportError as exc:
                self._went_down(exc)
                return
            if outcome.retry:
                self._went_down(SinkTransportError("overloaded", "Elasticsearch refuses items during replay"))
                return
            self._delivered()
            indexed += len(outcome.indexed)
            indexed_req += sum(1 for i in outcome.indexed if i.is_request)
            if outcome.rejected:
                run_id = next(iter(self._segment_runs(path)), "")
                self.dead_letters.write([(i._replace(run_id=run_id), s, e) for i, s, e in outcome.rejected])
                dead += len(outcome.rejected)
                dead_req += sum(1 for i, _s, _e in outcome.rejected if i.is_request)
        self.spool.forget(path)
        del self._segment_counts[path]
        for acc, n_idx, n_dead in (
            (self.accounting, indexed_req, dead_req),
            (self.doc_accounting, indexed - indexed_req, dead - dead_req),
        ):
            acc.spooled -= n_idx + n_dead
            acc.indexed += n_idx
            acc.dead_lettered += n_dead
        if indexed + dead != n_req + n_doc:
            self._note_trouble(f"spool segment {path.name} held {indexed + dead} of {n_req + n_doc} documents")

    def _segment_runs(self, path: Path) -> list[str]:
        return [path.parent.name]
