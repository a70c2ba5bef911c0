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


# ----- the live page (bench/live.py) ---------------------------------------------------------------------


class LiveMeter:
    """CPU seconds (this thread's) spent in the live feed's observer calls and in the live data route, and
    the page build's CPU in Locust's process (the build runs in a child process). None of the wrapped calls yields, so
    `time.thread_time` around each one counts that call alone (resolution: the clock's, ~1 µs)."""

    def __init__(self) -> None:
        self.observer_s = 0.0
        self.observer_calls = 0
        self.serve_s = 0.0
        self.serve_calls = 0
        self.build_s = 0.0
        self.feeds: list[Any] = []

    def feed_bytes(self) -> int:
        """Deep size of the feeds' rings: samples, their histograms (dict, keys, counts) and computed rows."""
        import sys

        seen: set[int] = set()

        def size(obj: Any) -> int:
            if id(obj) in seen:
                return 0
            seen.add(id(obj))
            n = sys.getsizeof(obj)
            if isinstance(obj, dict):
                n += sum(size(k) + size(v) for k, v in obj.items())
            return n

        total = 0
        for feed in self.feeds:
            for series in [feed.total, *feed.endpoints.values(), *feed.workers.values()]:
                total += sys.getsizeof(series.samples) + sys.getsizeof(series.rows)
                for sample in series.samples:
                    total += sys.getsizeof(sample) + size(sample.hist)
                for row in series.rows:
                    total += size(row)
        return total


def instrument_live() -> LiveMeter:
    """Wrap the live feed's observer methods, the data route and the page build with CPU meters."""
    from locust_sink.live import feed as live_feed
    from locust_sink.live import page as live_page
    from locust_sink.live import web as live_web

    meter = LiveMeter()

    def metered(func: Callable[..., Any], kind: str) -> Callable[..., Any]:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if kind == "observer" and self not in meter.feeds:
                meter.feeds.append(self)
            t0 = time.thread_time()
            try:
                return func(self, *args, **kwargs)
            finally:
                spent = time.thread_time() - t0
                if kind == "observer":
                    meter.observer_s += spent
                    meter.observer_calls += 1
                else:
                    meter.serve_s += spent
                    meter.serve_calls += 1

        return wrapper

    live_feed.LiveFeed.on_snapshot = metered(live_feed.LiveFeed.on_snapshot, "observer")  # type: ignore[method-assign]
    live_feed.LiveFeed.on_status = metered(live_feed.LiveFeed.on_status, "observer")  # type: ignore[method-assign]
    live_web.LiveRoutes.data_view = metered(live_web.LiveRoutes.data_view, "serve")  # type: ignore[method-assign]
    build = live_page.build

    def metered_build() -> str:
        t0 = time.thread_time()
        try:
            return build()
        finally:
            meter.build_s += time.thread_time() - t0

    live_page.build = metered_build
    return meter
