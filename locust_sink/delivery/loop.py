"""The delivery loop: one greenlet that turns what is queued into batches and hands them to the writer.

    while True: wait for a full batch, a drain request or the flush interval; then, per the drain policy,
    take batches from the assembler and `write` them (or `park` them when the writer is not ready).

Shutdown: `flush(timeout)` switches the loop to its final mode (partial batches at once, encoding in
process) and waits until nothing is left or the deadline passes; `kill()` stops the loop and parks what is
left, synchronously; `close(timeout)` is flush, then releases the writer and the encoder helper.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import Enum

import gevent
from gevent.event import Event

from ..accounting import Ledger
from ..options import SinkSettings
from .batches import BatchAssembler
from .trouble import TroubleLog
from .writer import Writer

log = logging.getLogger("locust_sink")


class Drain(Enum):
    """How much one cycle sends."""

    FULL_BATCHES = "full batches"  # between flush intervals: only while a full batch is queued
    # What was queued when the cycle began, partial last batch included, and then stop: records that arrive
    # meanwhile wait for a full batch or the next interval. Draining "while anything is queued" never ends
    # under load (each bulk request lets new records in) and turns into a stream of tiny bulk requests.
    BACKLOG = "backlog"


class DeliveryLoop:
    """Owns the greenlet; `notify` (a full batch is waiting) is what the request buffer calls."""

    def __init__(
        self,
        assembler: BatchAssembler,
        writer: Writer,
        ledger: Ledger,
        trouble: TroubleLog,
        settings: SinkSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.assembler = assembler
        self.writer = writer
        self.ledger = ledger
        self.trouble = trouble
        self.settings = settings
        self._clock = clock
        self._wake = Event()
        self._drained = Event()  # set after a final-mode cycle that left nothing to do
        self._greenlet: gevent.Greenlet | None = None
        self._drain_requested = False
        self._final = False
        self._last_drain = clock()

    # ----- control ------------------------------------------------------------------------------------
    def notify(self) -> None:
        self._wake.set()

    def request_drain(self) -> None:
        """Send everything queued now (test stop, a new document), partial batches included."""
        self._drain_requested = True
        self._wake.set()

    def start(self) -> None:
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)

    def flush(self, timeout: float) -> bool:
        """Deliver everything in memory within `timeout` seconds; True when nothing is left in memory. Past
        the deadline, or on a second Ctrl-C, the loop is killed and what is left parked (spool or files)."""
        self._final = True
        self._drained.clear()
        self.start()
        self._wake.set()
        try:
            done = self._drained.wait(timeout=max(0.0, timeout))
        except KeyboardInterrupt:
            # A second Ctrl-C: stop waiting for the cluster, but keep every record (spool), and let Locust
            # finish its own shutdown (stats, --json-file) instead of dying with a traceback.
            log.warning("locust-sink: interrupted during the final flush; spooling what is left")
            self.kill()
            return self.ledger.in_memory() == 0
        except gevent.GreenletExit:
            self.kill()
            raise
        if not done:
            self.kill()
        return self.ledger.in_memory() == 0

    def kill(self) -> None:
        """Stop the loop and park everything still in memory, synchronously (its batch in flight is parked by
        the writer as the greenlet dies)."""
        if self._greenlet is not None and not self._greenlet.dead:
            self._greenlet.kill(block=True, timeout=5)
        self.writer.park(self.assembler.take_everything())
        self.writer.close()

    def close(self, timeout: float) -> bool:
        """Flush within `timeout`, then stop the loop and release the writer and the encoder helper."""
        done = self.flush(timeout)
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=5)
        self.writer.close()
        self.assembler.encoder.close()
        return done

    # ----- the loop -----------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(timeout=self._pause())
            self._wake.clear()
            try:
                self._cycle()
            except gevent.GreenletExit:
                raise
            except Exception as exc:  # never let the loop die: note each distinct problem once
                self.trouble.note(f"internal error in the delivery loop: {type(exc).__name__}: {exc}", error=True)
                log.debug("delivery loop error", exc_info=True)
                gevent.sleep(0.5)
            if self._final and not self._work_left():
                self._drained.set()

    def _pause(self) -> float:
        """How long to wait for a wake-up before the next cycle."""
        interval = self.settings.flush_interval
        if not self._final:
            return interval
        if self.assembler.queued():
            return 0.0
        if self.writer.waiting():  # the spool, while the cluster is (briefly) down: until the next probe
            return min(interval, self.writer.seconds_to_next_attempt())
        return interval

    def _drain(self) -> Drain:
        now = self._clock()
        if self._drain_requested or self._final or now - self._last_drain >= self.settings.flush_interval:
            self._drain_requested = False
            self._last_drain = now
            return Drain.BACKLOG
        return Drain.FULL_BATCHES

    def _cycle(self) -> None:
        drain = self._drain()
        self.writer.before_cycle()
        assembler, batch_size = self.assembler, self.settings.batch_size
        backlog = assembler.queued() if drain is Drain.BACKLOG else 0
        while True:
            queued = assembler.queued()
            if not (queued >= batch_size or (backlog > 0 and queued > 0)):
                return
            batch = assembler.next_batch(final=self._final)
            backlog -= len(batch)
            if self.writer.ready():
                self.writer.write(batch)
            else:
                self.writer.park(batch.all_items())

    def _work_left(self) -> bool:
        return self.assembler.queued() > 0 or self.writer.waiting()
