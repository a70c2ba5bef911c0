"""The ONE place where bench code touches the sink's internals.

The delivery engine is being restructured (flusher, buffer, plugin): when a name changes there, this file
is the only one in bench/ to adapt. Everything else in bench/ goes through these functions or through the
sink's public API (`locust_sink.attach`, `sink.close`, `sink.run_id`).

Import it only in a process that runs Locust or the sink (after gevent's monkey-patching).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent

import locust_sink

CONNECTED_STATES = ("up", "file")  # the flusher's states once it can deliver (ES probed and set up, or files)


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
    return sink.on_request


def wait_connected(sink: Any, timeout: float = 60.0) -> None:
    """Block (yielding) until the flusher can deliver: connecting and installing templates is not part of
    any per-record price the bench measures. Flushes nothing: the queue is empty here."""
    deadline = time.monotonic() + timeout
    flusher = sink.flusher
    while flusher is not None and flusher.state not in CONNECTED_STATES:
        flusher.wake()  # its first cycle connects; with a long --sink-flush-interval it would wait for it
        if time.monotonic() > deadline:
            raise RuntimeError(f"the sink did not connect within {timeout:.0f} s (state {flusher.state})")
        gevent.sleep(0.05)


def make_room(sink: Any, records: int) -> None:
    """Let the in-memory queue hold `records` without overflowing into the spool (a bench pre-fills it)."""
    sink.buffer.maxsize = max(sink.buffer.maxsize, records + 1)


def feed(sink: Any, events: Iterable[dict[str, Any]]) -> int:
    """Call the sink's request listener once per event, without yielding (what user greenlets pay inline)."""
    listener = request_listener(sink)
    n = 0
    for kwargs in events:
        listener(**kwargs, start_time=time.time())
        n += 1
    return n


def flush(sink: Any, timeout: float = 120.0) -> bool:
    """Deliver everything queued (the flusher's own drain, in this greenlet's time); True when nothing is left."""
    if sink.flusher is None:
        return True
    return bool(sink.flusher.flush(timeout))


def accounting(sink: Any) -> dict[str, int]:
    """The sink's counters: emitted, indexed, written, spooled, dead_lettered, dropped, queued, in_flight."""
    return dict(sink.buffer.accounting.as_dict())


def summary(sink: Any) -> str:
    return str(sink.buffer.accounting.summary())
