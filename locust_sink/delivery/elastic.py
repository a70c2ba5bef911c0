"""The writer to Elasticsearch: one bulk request per batch in the normal case, the general path otherwise.

Normal case (Elasticsearch takes the whole batch): the batch's body goes out as it is and only the counts
change; no object is made per record. Anything else -- a failed request, refused or rejected items, a body
past MAX_BULK_BYTES -- turns the records into bulk items and goes through `BulkSender`: retries with one
policy, 413 halving, refused items carried with the next batch, rejections dead-lettered with the reason,
and whatever cannot go parked in the spool (or dropped, counted, under overflow=drop).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent

from ..accounting import Ledger, Outcome
from ..buffer import RecordBuffer
from ..bulk import BulkItem, SinkTransportError, sort_items
from ..config import EsConfig, cli_command
from ..options import SinkSettings
from .batches import Batch, BatchAssembler
from .link import EsLink, LinkState
from .retry import MAX_BULK_BYTES, BulkSender, RetryPolicy
from .spool import DeadLetters, Fallback, Replayer, Spool
from .trouble import TroubleLog

log = logging.getLogger("locust_sink")


class EsDelivery:
    """Writer for a cluster (see writer.Writer), over one EsLink."""

    def __init__(
        self,
        link: EsLink,
        config: EsConfig,
        assembler: BatchAssembler,
        buffer: RecordBuffer,
        ledger: Ledger,
        spool: Spool,
        fallback: Fallback,
        dead_letters: DeadLetters,
        trouble: TroubleLog,
        settings: SinkSettings,
        policy: RetryPolicy,
        on_connected: Callable[[Any], None] = lambda backend: None,
    ) -> None:
        self.link = link
        self._on_connected = on_connected  # the backend answered a probe: what it needs of the encoding
        self.config = config
        self.buffer = buffer
        self.ledger = ledger
        self.spool = spool
        self.fallback = fallback
        self.dead_letters = dead_letters
        self.trouble = trouble
        self.settings = settings
        self.sender = BulkSender(
            link.bulk,
            policy,
            gevent.sleep,
            ready=lambda: link.up,
            keep_trying=self._below_high_water,
            carry=assembler.carry,
            delivered=link.delivered,
        )
        # the replay never carries items into live batches: they are accounted as spooled, not in flight
        self.replay_sender = BulkSender(
            link.bulk, policy, gevent.sleep, ready=lambda: link.up, delivered=link.delivered
        )
        self.replayer = Replayer(spool, ledger, dead_letters, trouble, settings.batch_size, link.went_down)
        self._dead_letter_kinds: set[str] = set()
        self._stale_spool_reported = False

    @property
    def state(self) -> str:
        return self.link.state.value

    def _below_high_water(self) -> bool:
        return self.buffer.fill_ratio < self.settings.high_water

    # ----- Writer -------------------------------------------------------------------------------------
    def before_cycle(self) -> None:
        if self.link.probe_due() and self.link.probe():
            self._on_connected(self.link.backend)
            self.spool.close_segment()  # closed segments are what the replay picks up
            self._report_stale_spool()
        if self.link.up:
            self.replayer.replay_one(self.replay_sender)

    def ready(self) -> bool:
        return self.link.up

    def write(self, batch: Batch) -> None:
        records = batch.records
        if not len(records):
            self.sender.deliver_all(batch.items, self)
            return
        body = records.body(batch.items)
        if len(body) >= MAX_BULK_BYTES:
            self.sender.deliver_all(batch.all_items(), self)
            return
        first: dict[str, Any] | SinkTransportError
        try:
            first = self.link.bulk(body)
        except SinkTransportError as exc:
            first = exc
        except BaseException:
            self.park(batch.all_items())  # killed mid-request: the batch must not vanish
            raise
        if not isinstance(first, SinkTransportError) and not first.get("errors"):
            self.link.delivered()
            self.ledger.settle(batch.items, Outcome.INDEXED)
            self.ledger.settle_counts(len(records), 0, Outcome.INDEXED)
            return
        items = batch.all_items()
        outcome: Any = first
        if not isinstance(first, SinkTransportError):
            try:
                outcome = sort_items(items, first)  # the first attempt's outcome, item by item
                if outcome.indexed:
                    self.link.delivered()
            except SinkTransportError as exc:
                outcome = exc
        self.sender.deliver(items, self, body, first=outcome)

    def park(self, items: list[BulkItem]) -> None:
        self.fallback.park(items)

    def waiting(self) -> bool:
        """At the end, keep replaying this process's spool while the cluster is up, or while it is briefly down
        after having worked in this run (a restart); a never-reachable or misconfigured one is not waited for."""
        if not self.spool.waiting():
            return False
        return self.link.up or (self.link.state is LinkState.DOWN and self.link.ever_up)

    def seconds_to_next_attempt(self) -> float:
        return self.link.seconds_to_probe()

    def close(self) -> None:
        self.spool.close_segment()

    def status(self) -> dict[str, Any]:
        return {"backoff_sleeps": self.sender.backoff_sleeps + self.replay_sender.backoff_sleeps}

    # ----- Settlement (BulkSender's outcomes) ---------------------------------------------------------
    def indexed(self, items: list[BulkItem]) -> None:
        self.ledger.settle(items, Outcome.INDEXED)

    def rejected(self, rejected: list[tuple[BulkItem, int, Any]]) -> None:
        try:
            self.dead_letters.write(rejected)
        except OSError as exc:
            self.trouble.note(f"cannot write dead letters: {exc}", error=True)
        for _item, status, error in rejected:
            kind = error.get("type") if isinstance(error, dict) else str(error)
            if kind in self._dead_letter_kinds:
                continue  # one line per kind of rejection: the reasons differ per document (values)
            self._dead_letter_kinds.add(kind)
            example = error.get("reason") if isinstance(error, dict) else ""
            self.trouble.note(
                f"Elasticsearch rejected documents for good ({status} {kind}, e.g. {example}); "
                f"kept with the reasons in {self.dead_letters.root}",
                error=True,
            )
        self.ledger.settle([item for item, _s, _e in rejected], Outcome.DEAD_LETTERED)

    def unsent(self, items: list[BulkItem], error: SinkTransportError | None) -> None:
        if error is not None:
            self.link.went_down(error)
        self.park(items)

    # ----- reporting ------------------------------------------------------------------------------------
    def _report_stale_spool(self) -> None:
        if self._stale_spool_reported:
            return
        self._stale_spool_reported = True
        stale = self.spool.stale_segments()
        if stale:
            log.warning(
                "locust-sink: %d spool segment(s) from an earlier run are in %s; deliver them with `%s`%s",
                len(stale),
                self.spool.root,
                cli_command("replay", str(self.spool.root), *self.config.cli_args()),
                self.config.secret_env_hint(),
            )
