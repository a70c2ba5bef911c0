"""The connection to the cluster as one state machine: STARTING -> UP, DOWN (probed with growing intervals)
or BROKEN (a configuration problem: probed quietly every minute). Each outage is announced once, and the
recovery once a bulk request really succeeds (not when a probe answers while bulk requests still fail)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from enum import Enum
from typing import Any, Protocol

from ..bulk import ErrorKind, SinkTransportError
from .trouble import TroubleLog

log = logging.getLogger("locust_sink")

BROKEN_PROBE_INTERVAL = 60.0


class LinkState(Enum):
    STARTING = "starting"
    UP = "up"
    DOWN = "down"  # unreachable or overloaded: retried with growing probe intervals
    BROKEN = "broken"  # a configuration problem (auth, TLS, versions, product): only a quiet probe


class Backend(Protocol):
    """What the link needs of a cluster client (transport.ElasticsearchBackend is one)."""

    def describe(self) -> str: ...

    def check(self) -> str | None: ...  # raises SinkTransportError; the server's version

    def bulk(self, body: bytes) -> dict[str, Any]: ...  # raises SinkTransportError


class EsLink:
    """One node's connection to its cluster.

    connect: makes the backend (ValueError or SinkTransportError when it cannot); setup: run once per process
    after the first successful check (index templates), retried on the next probe while the cluster is not
    usable; outage_note: what happens to records meanwhile ("spooling to ..."); waiting: spooled documents of
    this process, for the recovery line.
    """

    def __init__(
        self,
        connect: Callable[[], Backend],
        setup: Callable[[Backend], None] | None,
        trouble: TroubleLog,
        outage_note: str,
        waiting: Callable[[], int],
        probe_interval_min: float = 1.0,
        probe_interval_max: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._connect = connect
        self._setup = setup
        self._trouble = trouble
        self._outage_note = outage_note
        self._waiting = waiting
        self._probe_interval_min = probe_interval_min
        self._probe_interval_max = probe_interval_max
        self._clock = clock
        self._jitter = jitter
        self.state = LinkState.STARTING
        self.backend: Backend | None = None
        self.ever_up = False
        self.last_error: str | None = None
        self._next_probe = 0.0
        self._probe_delay = probe_interval_min
        self._recovering = False
        self._outage_announced = False
        self._outage_cause: str | None = None

    @property
    def up(self) -> bool:
        return self.state is LinkState.UP

    def describe(self) -> str:
        return self.backend.describe() if self.backend is not None else "the cluster"

    def probe_due(self) -> bool:
        return not self.up and self._clock() >= self._next_probe

    def seconds_to_probe(self) -> float:
        return 0.0 if self.up else max(0.0, self._next_probe - self._clock())

    def probe(self) -> bool:
        """Check the cluster (and install templates once); True when the link is up now."""
        was = self.state
        try:
            if self.backend is None:
                self.backend = self._connect()
            self.backend.check()
            self._run_setup()
        except SinkTransportError as exc:
            self.went_down(exc)
            return False
        except ValueError as exc:  # a setting the client cannot use
            self.went_down(SinkTransportError(ErrorKind.CONFIG, f"bad Elasticsearch settings: {exc}"))
            return False
        self.state = LinkState.UP
        self.ever_up = True
        if was in (LinkState.DOWN, LinkState.BROKEN):
            self._recovering = True  # announced once a bulk request really succeeds
        return True

    def _run_setup(self) -> None:
        """Install templates once. A transport failure means the cluster is not usable yet (retry on the next
        probe); any other failure (a template the cluster refuses) is reported once and indexing goes on."""
        if self._setup is None:
            return
        assert self.backend is not None
        try:
            self._setup(self.backend)
        except SinkTransportError:
            raise
        except Exception as exc:
            self._trouble.note(f"index template setup failed, indexing without it: {exc}", error=True)
        self._setup = None

    def bulk(self, body: bytes) -> dict[str, Any]:
        assert self.backend is not None
        return self.backend.bulk(body)

    def delivered(self) -> None:
        """A bulk request indexed documents: if the link was recovering from an outage, say so once."""
        self._probe_delay = self._probe_interval_min
        if self._recovering:
            self._recovering = False
            self._outage_announced = False
            log.info(
                "locust-sink: %s takes documents again; replaying %d spooled documents",
                self.describe(),
                self._waiting(),
            )

    def went_down(self, exc: SinkTransportError) -> None:
        """The cluster cannot take documents: DOWN (or BROKEN for a configuration problem), announced once per
        outage (a probe that answers while bulk requests still fail is the same outage)."""
        config = exc.config_problem
        message = self._trouble.redact(str(exc))
        if not self._outage_announced or self._outage_cause != exc.cause:
            self._outage_announced = True
            self._trouble.note(f"{message} ({self._outage_note})", error=config, again=True)
        self._outage_cause = exc.cause
        self.state = LinkState.BROKEN if config else LinkState.DOWN
        self.last_error = message
        delay = BROKEN_PROBE_INTERVAL if config else self._probe_delay
        self._next_probe = self._clock() + delay * self._jitter(0.8, 1.2)
        if not config:
            self._probe_delay = min(self._probe_interval_max, self._probe_delay * 2)
