"""The ONE place where bench code touches the sink's internals.

When a name changes in the sink (plugin.LocustSink, buffer.RecordBuffer, delivery.engine.Delivery), this
file is the only one in bench/ to adapt. Everything else in bench/ goes through these functions or through
the sink's public API (`locust_sink.attach`, `sink.close`, `sink.run_id`).

Import it only in a process that runs Locust or the sink (after gevent's monkey-patching).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent

import locust_sink

CONNECTED = "up"  # the delivery's state once it can deliver (files, or the cluster probed and set up)


def attach(environment: Any, **options: Any) -> Any:
    """The sink on a hand-built Environment (the public API), with its run started as at test_start."""
    sink = locust_sink.attach(environment, **options)
    sink.on_test_start(environment)
    return sink


def of(environment: Any) -> Any:
    """The sink `import locust_sink` attached to a Locust process's Environment."""
    return environment.locust_sink


def request_listener(sink: Any) -> Callable[..., None]:
    """The sink's real `request` listener (what toggling adds and removes)."""
    return sink.buffer.on_request


def wait_connected(sink: Any, timeout: float = 60.0) -> None:
    """Block (yielding) until the delivery can deliver: connecting and installing templates is not part of
    any per-record price the bench measures. Delivers nothing: the queue is empty here."""
    deadline = time.monotonic() + timeout
    delivery = sink.delivery
    while delivery is not None and delivery.state != CONNECTED:
        delivery.request_drain()  # its next cycle connects; with a long --sink-flush-interval it would wait
        if time.monotonic() > deadline:
            raise RuntimeError(f"the sink did not connect within {timeout:.0f} s (state {delivery.state})")
        gevent.sleep(0.05)


def make_room(sink: Any, records: int) -> None:
    """Let the in-memory queue hold `records` without overflowing (a bench pre-fills it)."""
    buffer = sink.buffer
    buffer.resize(max(buffer.maxsize, records + 1), buffer.batch_size)


def feed(sink: Any, events: Iterable[dict[str, Any]]) -> int:
    """Call the sink's request listener once per event, without yielding (what user greenlets pay inline)."""
    listener = request_listener(sink)
    n = 0
    for kwargs in events:
        listener(**kwargs, start_time=time.time())
        n += 1
    return n


def deliver(sink: Any, timeout: float = 120.0, poll: float = 0.02) -> bool:
    """Deliver everything queued the way a running test does (drain requested, batches through the encoder
    helper when it is on), waiting in this greenlet; True when nothing is left in memory. Not the final flush
    (that one encodes in-process and switches the delivery loop to its end-of-run mode for good)."""
    if sink.delivery is None:
        return True
    acc = sink.buffer.accounting
    deadline = time.monotonic() + timeout
    while acc.queued or acc.in_flight:
        if time.monotonic() > deadline:
            return False
        sink.delivery.request_drain()
        gevent.sleep(poll)
    return True


def accounting(sink: Any) -> dict[str, int]:
    """The sink's request counters: emitted, indexed, written, spooled, dead_lettered, dropped, queued, in_flight."""
    return dict(sink.buffer.accounting.as_dict())


def summary(sink: Any) -> str:
    return str(sink.buffer.accounting.summary())
