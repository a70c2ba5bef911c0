"""`locust-sink agent`: host metrics of the system under test's machine, every `--interval` seconds, into
Elasticsearch (`--es-url`, index `--index`) or NDJSON files (`--out DIR`), with the ECS names Metricbeat uses
(hosts/ecs.py), so the report charts either.

It must never get in the way of the test: documents wait in a bounded buffer (`--buffer`, oldest dropped
and counted when full) while the cluster is unreachable or refuses them; each condition is said once (one
line when it starts, one when delivery works again); SIGINT / SIGTERM (or `--duration`) end it with one
summary line of what was sampled, sent, failed (refused by the cluster for good) and dropped.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import orjson

from ..bulk import SinkTransportError
from . import ecs
from .sampler import HostSampler

log = logging.getLogger("locust_sink.agent")

BATCH = 500  # documents per bulk request
DEFAULT_BUFFER = 10_000  # samples kept while the cluster is away (at 5 s: ~14 hours)


@dataclass
class Counts:
    sampled: int = 0
    sent: int = 0  # indexed by the cluster, or written to the file
    failed: int = 0  # refused for good (a mapping conflict, a 4xx item): never retried
    dropped: int = 0  # pushed out of the full buffer

    def line(self, buffered: int) -> str:
        return (f"{self.sampled} samples, {self.sent} sent, {self.failed} failed, {self.dropped} dropped, "
                f"{buffered} still buffered")  # fmt: skip


class Outcome(Enum):
    DELIVERED = "delivered"  # every document left the buffer (sent or failed for good)
    HELD = "held"  # the output cannot take documents now: they stay buffered


class Output(Protocol):
    def describe(self) -> str: ...

    def deliver(self, docs: list[dict[str, Any]]) -> tuple[int, list[int]]:
        """Deliver `docs`: (how many were taken, the indexes of those refused for good among them).
        Raises SinkTransportError (or OSError) when nothing could be delivered."""
        ...


def doc_id(doc: dict[str, Any]) -> str:
    """Host and timestamp: a document sent twice (a retry after a timeout) is stored once."""
    return f"{ecs.get(doc, ecs.HOST_NAME)}:{doc[ecs.TIMESTAMP]}"


def bulk_lines(index: str, docs: list[dict[str, Any]]) -> bytes:
    parts = []
    for doc in docs:
        parts.append(orjson.dumps({"create": {"_index": index, "_id": doc_id(doc)}}))
        parts.append(orjson.dumps(doc))
    parts.append(b"")
    return b"\n".join(parts)


class FileOutput:
    """NDJSON in the bulk format (`locust-sink load` can load it): `<out>/<run id>/host-<host>.ndjson`, or
    `<out>/host-metrics/host-<host>.ndjson` without a run id; the report reads both (docs/hosts.md)."""

    def __init__(self, out: Path, index: str, host_name: str, run_id: str | None) -> None:
        folder = out / (run_id or "host-metrics")
        self.path = folder / f"host-{host_name}.ndjson"
        self.index = index

    def describe(self) -> str:
        return str(self.path)

    def deliver(self, docs: list[dict[str, Any]]) -> tuple[int, list[int]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as handle:
            handle.write(bulk_lines(self.index, docs))
        return len(docs), []


class EsOutput:
    """The cluster through the sink's backends (transport.connect): connected and the index template
    installed on first use, again after a failure."""

    def __init__(self, connect: Callable[[], Any], index: str, describe: str, replicas: int = 0) -> None:
        self._connect = connect
        self.index = index
        self._describe = describe
        self.replicas = replicas
        self.backend: Any = None

    def describe(self) -> str:
        return f"{self._describe} index {self.index}"

    def _ready(self) -> Any:
        if self.backend is None:
            backend = self._connect()
            backend.check()
            self._install_template(backend)
            self.backend = backend
        return self.backend

    def _install_template(self, backend: Any) -> None:
        from ..rest import RestError

        body = ecs.index_template(self.index, self.replicas)
        try:
            backend.request("PUT", f"/_index_template/{self.index}", body)
        except RestError as exc:  # e.g. no privilege for templates: documents still go, dynamically mapped
            log.warning("locust-sink agent: index template %s not installed (%s); sending anyway", self.index, exc)

    def deliver(self, docs: list[dict[str, Any]]) -> tuple[int, list[int]]:
        backend = self._ready()
        try:
            result = backend.bulk(bulk_lines(self.index, docs))
        except SinkTransportError:
            self.backend = None  # connect (and check) again next time
            raise
        if not result.get("errors"):
            return len(docs), []
        refused, retry_from = [], len(docs)
        for i, entry in enumerate(result.get("items") or []):
            status = int(next(iter(entry.values())).get("status", 500))
            if status in (429, 500, 502, 503, 504) and retry_from == len(docs):
                retry_from = i  # this one and the rest stay buffered, in order
            elif status >= 300 and status != 409 and i < retry_from:
                refused.append(i)
        return retry_from, refused


class Agent:
    """The sampling loop: sample, deliver what is buffered, wait for the next tick (or a stop)."""

    def __init__(self, sampler: HostSampler, output: Output, interval: float, buffer: int = DEFAULT_BUFFER,
                 duration: float | None = None, stream: Any = None) -> None:  # fmt: skip
        self.sampler = sampler
        self.output = output
        self.interval = interval
        self.duration = duration
        self.buffer: deque[dict[str, Any]] = deque()
        self.max_buffer = max(1, buffer)
        self.counts = Counts()
        self.stop = threading.Event()
        self.stop_reason = "done"
        self.stream = stream or sys.stderr
        self._condition: str | None = None  # what is wrong with delivery now (said once)

    def say(self, text: str) -> None:
        print(f"locust-sink agent: {text}", file=self.stream, flush=True)

    def request_stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.stop.set()

    def tick(self) -> None:
        """One sample into the buffer, then deliver what the output takes."""
        doc = self.sampler.sample()
        self.counts.sampled += 1
        if len(self.buffer) >= self.max_buffer:
            self.buffer.popleft()
            self.counts.dropped += 1
            if self.counts.dropped == 1:
                self.say(f"buffer full ({self.max_buffer} samples): the oldest are dropped (counted)")
        self.buffer.append(doc)
        self.flush()

    def flush(self) -> Outcome:
        while self.buffer:
            batch = [self.buffer[i] for i in range(min(BATCH, len(self.buffer)))]
            try:
                taken, refused = self.output.deliver(batch)
            except (SinkTransportError, OSError) as exc:
                self._trouble(str(exc))
                return Outcome.HELD
            for _ in range(taken):
                self.buffer.popleft()
            self.counts.failed += len(refused)
            self.counts.sent += taken - len(refused)
            if refused:
                self.say(f"{len(refused)} documents refused by {self.output.describe()} for good (counted failed)")
            if taken < len(batch):
                self._trouble(f"{self.output.describe()} asks to slow down (429/5xx items)")
                return Outcome.HELD
        if self._condition is not None:
            self.say(f"delivering again to {self.output.describe()}")
            self._condition = None
        return Outcome.DELIVERED

    def _trouble(self, condition: str) -> None:
        if condition != self._condition:
            self._condition = condition
            self.say(f"{condition}; keeping up to {self.max_buffer} samples and trying again every interval")

    def run(self) -> int:
        started = time.monotonic()
        self.say(f"sampling {self.sampler.host_name} every {self.interval:g} s into {self.output.describe()}")
        next_tick = started + self.interval
        while not self.stop.is_set():
            if self.stop.wait(max(0.0, next_tick - time.monotonic())):
                break
            self.tick()
            next_tick += self.interval
            if next_tick < time.monotonic():  # a slow delivery: skip the ticks it took rather than burst
                next_tick = time.monotonic() + self.interval
            if self.duration is not None and time.monotonic() - started >= self.duration:
                self.request_stop(f"--duration {self.duration:g} s")
        if self.buffer:
            self.flush()  # one last try: what stays is counted as still buffered (lost with the process)
        self.say(f"stopped ({self.stop_reason}): {self.counts.line(len(self.buffer))}")
        return 0


def install_signal_handlers(agent: Agent) -> None:
    """SIGINT and SIGTERM end the loop at once (the wait is interrupted; a request in flight finishes
    within its timeout)."""

    def handler(signum: int, _frame: Any) -> None:
        agent.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
