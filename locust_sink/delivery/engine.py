"""One Locust process's delivery engine, put together: what plugin.py (and, through it, stats) talks to."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

from .. import transport
from ..accounting import Accounting, Ledger
from ..buffer import RecordBuffer
from ..config import EsConfig
from ..filesink import FileWriter
from ..options import SinkSettings
from .batches import BatchAssembler
from .elastic import EsDelivery
from .encoding import BatchEncoder
from .link import Backend, EsLink
from .loop import DeliveryLoop
from .retry import RetryPolicy
from .spool import DeadLetters, Fallback, Spool
from .trouble import TroubleLog
from .writer import FileDelivery, Writer


class Mode(Enum):
    ES = "es"  # to a cluster, spooling what it cannot take
    FILE = "file"  # to NDJSON files (no --es-url)


class Delivery:
    """Records from `buffer` and documents from `submit_document` to the cluster (`es_config`) or to files.

    setup: run once against the cluster after the first successful check (index templates); connect: makes
    the cluster's backend (default: transport.connect, Elasticsearch or OpenSearch as `es_config` says).
    """

    def __init__(
        self,
        buffer: RecordBuffer,
        node: str,
        index_prefix: str,
        sink_dir: str | Path,
        settings: SinkSettings,
        es_config: EsConfig | None = None,
        setup: Callable[[Backend], None] | None = None,
        connect: Callable[[], Backend] | None = None,
    ) -> None:
        self.buffer = buffer
        self.mode = Mode.ES if es_config else Mode.FILE
        self.ledger = Ledger(buffer.accounting, Accounting())
        self.trouble = TroubleLog(es_config.secrets() if es_config else [])
        self.files = FileWriter(sink_dir, node) if es_config is None else None
        encoder = BatchEncoder(
            node,
            f"{index_prefix}-requests",
            self.ledger,
            lambda: buffer.fill_ratio,
            settings.high_water,
            use_helper=settings.encoder == "process",
            file_for=self.files.prepare if self.files is not None else None,
        )
        self.assembler = BatchAssembler(buffer, encoder, self.ledger, settings, index_prefix)
        self.spool: Spool | None = None
        self.writer: Writer
        if es_config is None:
            assert self.files is not None
            self.writer = FileDelivery(self.files, self.ledger, self.trouble)
        else:
            connect = connect or (lambda: transport.connect(es_config))
            self.writer = self._es_writer(node, sink_dir, settings, es_config, setup, connect)
        self.assembler.park = self.writer.park
        self.loop = DeliveryLoop(self.assembler, self.writer, self.ledger, self.trouble, settings)
        buffer.notify = self.loop.notify

    def _es_writer(
        self,
        node: str,
        sink_dir: str | Path,
        settings: SinkSettings,
        config: EsConfig,
        setup: Callable[[Backend], None] | None,
        connect: Callable[[], Backend],
    ) -> EsDelivery:
        spool = self.spool = Spool(sink_dir, node, settings.spool_max_bytes)
        fallback = Fallback(spool, self.ledger, self.trouble, settings.overflow)
        link = EsLink(
            connect,
            setup,
            self.trouble,
            fallback.describe(),
            spool.waiting,
            settings.probe_interval_min,
            settings.probe_interval_max,
        )
        policy = RetryPolicy(settings.retry_timeout, settings.max_attempts, settings.backoff_base, settings.backoff_cap)
        return EsDelivery(
            link,
            config,
            self.assembler,
            self.buffer,
            self.ledger,
            spool,
            fallback,
            DeadLetters(sink_dir, node),
            self.trouble,
            settings,
            policy,
            self._connected,
        )

    def _connected(self, backend: Backend) -> None:
        """What the cluster needs of the documents: OpenSearch's `flat_object` has no length limit per leaf."""
        limit = getattr(backend, "max_free_form_leaf", None)
        self.assembler.encoder.cut_long_leaves(limit)
        self.assembler.max_leaf = limit or 0

    # ----- what plugin.py uses ------------------------------------------------------------------------
    def start(self) -> None:
        self.loop.start()

    def submit_document(
        self, family: str, doc: dict[str, Any], run_id: str, doc_id: str | None = None, op: str = "create"
    ) -> bool:
        return self.assembler.submit_document(family, doc, run_id, doc_id, op)

    def request_drain(self) -> None:
        self.loop.request_drain()

    def flush(self, timeout: float) -> bool:
        return self.loop.flush(timeout)

    def close(self, timeout: float) -> bool:
        return self.loop.close(timeout)

    @property
    def state(self) -> str:
        return self.writer.state

    def product(self) -> str | None:
        """The cluster's product once the link has connected ("Elasticsearch", "OpenSearch"), else None."""
        link = getattr(self.writer, "link", None)
        backend = link.backend if link is not None else None
        return getattr(backend, "product", None)

    @property
    def spooled(self) -> int:
        return self.ledger.spooled()

    def file_for(self, run_id: str) -> Path | None:
        """File mode: the file this node wrote the run's documents to, if it wrote any."""
        return self.files.paths.get(run_id) if self.files is not None else None

    def status(self) -> dict[str, Any]:
        """This node's delivery: state, accounting of requests and documents, retries, encoding, trouble."""
        return {
            "mode": self.mode.value,
            "state": self.writer.state,
            "requests": self.ledger.requests.as_dict(),
            "documents": self.ledger.documents.as_dict(),
            "sampled_out": self.buffer.sampled_out,
            "retries": {"items_carried": self.assembler.items_carried, **self.writer.status()},
            "encoding": self.assembler.encoder.status(),
            "trouble": list(self.trouble.messages),
        }
