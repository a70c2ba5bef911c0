"""bench/toggle.py's locustfile: the sink on and off in alternating windows of ONE Locust process.

The same user as plain.py plus `import locust_sink`. Once the test starts, a greenlet detaches and re-attaches
the sink's `request` listener in windows of LOCUST_SINK_TOGGLE_WINDOW seconds, in the order on, off, off, on
(ABBA: a linear drift cancels out within each group of four), and notes for every window the wall time, the
process's CPU time and Locust's request count, LOCUST_SINK_TOGGLE_GUARD seconds after the switch and at the
window's end. Everything else of the sink (options, flusher, stats snapshots, run documents) stays on all the
time: the control run in docs/benchmarks.md found it costs nothing measurable, so the difference between the
windows is the sink's per-record work. At test stop the windows go to LOCUST_SINK_TOGGLE_OUT as JSON.

With LOCUST_SINK_TOGGLE_PID set, the sink's listener stays detached for the whole test and that process (a
neighbour on the other CPUs, e.g. bench/es_neighbour.py) is resumed (SIGCONT) for the on windows and stopped
(SIGSTOP) for the off windows instead: what the neighbour's work costs this Locust, measured the same way.
With LOCUST_SINK_TOGGLE_SWAP=1 as well, the two take turns: the sink records in the on windows, the neighbour
runs in the off windows (bench/toggle.py's es-swap variant: Elasticsearch indexes about the same stream in
both kinds of window, so only the sink's own work in Locust differs).
With LOCUST_SINK_TOGGLE_LISTENER=noop, a listener with the sink's signature that does nothing is toggled instead
of the sink's (which stays detached): what one more `request` listener costs in Locust's event loop alone.
With LOCUST_SINK_TOGGLE_LISTENER=discard, the sink's listener is toggled as usual but fills a buffer of its own
that a greenlet empties every 0.25 s, discarding the records (no encoding, no helper, no file): what the hot
path alone costs, in situ. The sink's real buffer is put back at test stop (its final flush then has nothing
of these records to deliver).
With LOCUST_SINK_TOGGLE_LISTENER=slim, an experimental hot path is toggled instead (the sink's stays detached):
all its state in one object with __slots__, 9 fields a record (no sequence number, run id or sample rate: those
would be per chunk), and nothing but one `len()` check per record; its chunks are discarded like `discard`'s.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from typing import Any

import gevent
from locust import events
from plain import BenchUser  # noqa: F401  (Locust puts this file's folder on sys.path)

import locust_sink  # noqa: F401  (the one line that enables the sink)
from locust_sink.plugin import error_text

WINDOW_S = float(os.environ.get("LOCUST_SINK_TOGGLE_WINDOW", "1.5"))
GUARD_S = float(os.environ.get("LOCUST_SINK_TOGGLE_GUARD", "0.3"))
SETTLE_S = float(os.environ.get("LOCUST_SINK_TOGGLE_SETTLE", "2"))
OUT = os.environ.get("LOCUST_SINK_TOGGLE_OUT", "toggle.json")
NEIGHBOUR_PID = int(os.environ.get("LOCUST_SINK_TOGGLE_PID") or 0)
SWAP = os.environ.get("LOCUST_SINK_TOGGLE_SWAP") == "1"
NOOP = os.environ.get("LOCUST_SINK_TOGGLE_LISTENER") == "noop"
DISCARD = os.environ.get("LOCUST_SINK_TOGGLE_LISTENER") == "discard"
SLIM = os.environ.get("LOCUST_SINK_TOGGLE_LISTENER") == "slim"
PATTERN = (True, False, False, True)  # sink on, off, off, on; repeated

_state: dict[str, Any] = {"windows": [], "greenlet": None, "drain": None, "real_buffer": None, "discarded": 0}


class _NoWake:
    def set(self) -> None:
        """The discarding greenlet polls; nothing to wake."""


def _discard_records(buffer: Any) -> None:
    while True:
        gevent.sleep(0.25)
        flat = buffer.take_flat(len(buffer))
        n = len(flat) // buffer.width
        buffer.accounting.in_flight -= n
        _state["discarded"] += n


def noop_listener(
    request_type: Any,
    name: Any,
    response_time: Any,
    response_length: Any,
    response: Any = None,
    context: Any = None,
    exception: Any = None,
    start_time: Any = None,
    url: Any = None,
    **_kwargs: Any,
) -> None:
    """The sink's listener signature, no work: the price of being called at all."""


class SlimHotPath:
    """The experiment of LOCUST_SINK_TOGGLE_LISTENER=slim: the least state a hot path could touch."""

    __slots__ = ("tail", "chunk_len", "sample_rate", "full", "sampled_out")

    def __init__(self, batch_size: int, sample_rate: float) -> None:
        self.tail: list[Any] = []
        self.chunk_len = batch_size * 9
        self.sample_rate = sample_rate
        self.full: list[list[Any]] = []
        self.sampled_out = 0

    def on_request(
        self,
        request_type: Any,
        name: Any,
        response_time: Any,
        response_length: Any,
        response: Any = None,
        context: Any = None,
        exception: Any = None,
        start_time: Any = None,
        url: Any = None,
        **_kwargs: Any,
    ) -> None:
        if exception is None:
            if self.sample_rate < 1.0 and random.random() >= self.sample_rate:
                self.sampled_out += 1
                return
            error = None
        else:
            error = error_text(exception)
        tail = self.tail
        tail += (
            start_time if start_time is not None else time.time() - (response_time or 0) / 1000.0,
            request_type,
            name,
            response_time,
            response_length or 0,
            getattr(response, "status_code", None),
            error,
            context or None,
            url,
        )
        if len(tail) >= self.chunk_len:
            self.full.append(tail)
            self.tail = []


def _discard_slim(hot: SlimHotPath) -> None:
    while True:
        gevent.sleep(0.25)
        n = sum(len(chunk) for chunk in hot.full) // 9
        hot.full = []
        _state["discarded"] += n


def _point(environment: Any) -> tuple[float, float, int]:
    return time.monotonic(), time.process_time(), environment.stats.total.num_requests


def _toggle(environment: Any) -> None:
    sink = environment.locust_sink
    hook = environment.events.request
    gevent.sleep(SETTLE_S)  # users spawned, connections open
    if DISCARD:
        from locust_sink.buffer import RecordBuffer

        real = sink.buffer
        _state["real_buffer"] = real
        own = RecordBuffer(real.maxsize, real.batch_size, _NoWake(), real.width)
        sink.buffer = own
        _state["drain"] = gevent.spawn(_discard_records, own)
    slim = SlimHotPath(sink.buffer.batch_size, 1.0)
    if SLIM:
        _state["slim_drain"] = gevent.spawn(_discard_slim, slim)
    index = 0
    while True:
        on = PATTERN[index % len(PATTERN)]
        attached = sink.on_request in hook._handlers
        if NOOP or SLIM:
            if attached:
                hook.remove_listener(sink.on_request)
            extra = noop_listener if NOOP else slim.on_request
            if on and extra not in hook._handlers:
                hook.add_listener(extra)
            elif not on and extra in hook._handlers:
                hook.remove_listener(extra)
        elif NEIGHBOUR_PID and SWAP:
            if on and not attached:
                hook.add_listener(sink.on_request)
            elif not on and attached:
                hook.remove_listener(sink.on_request)
            os.kill(NEIGHBOUR_PID, signal.SIGSTOP if on else signal.SIGCONT)
        elif NEIGHBOUR_PID:
            if attached:
                hook.remove_listener(sink.on_request)
            os.kill(NEIGHBOUR_PID, signal.SIGCONT if on else signal.SIGSTOP)
        elif on and not attached:
            hook.add_listener(sink.on_request)
        elif not on and attached:
            hook.remove_listener(sink.on_request)
        switched = time.monotonic()
        gevent.sleep(GUARD_S)
        start = _point(environment)
        gevent.sleep(max(0.0, WINDOW_S - (time.monotonic() - switched)))
        end = _point(environment)
        _state["windows"].append(
            {
                "index": index,
                "on": on,
                "t0": start[0],
                "t1": end[0],
                "cpu0": start[1],
                "cpu1": end[1],
                "n0": start[2],
                "n1": end[2],
            }  # fmt: skip
        )
        index += 1


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kwargs: Any) -> None:
    _state["greenlet"] = gevent.spawn(_toggle, environment)


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_kwargs: Any) -> None:
    greenlet = _state["greenlet"]
    if greenlet is not None:
        greenlet.kill(block=True, timeout=5)
    if _state["drain"] is not None:
        _state["drain"].kill(block=True, timeout=5)
        environment.locust_sink.buffer = _state["real_buffer"]
    if _state.get("slim_drain") is not None:
        _state["slim_drain"].kill(block=True, timeout=5)
    if NEIGHBOUR_PID:
        os.kill(NEIGHBOUR_PID, signal.SIGCONT)  # bench/toggle.py stops it
    sink = environment.locust_sink
    if sink.on_request not in environment.events.request._handlers:
        environment.events.request.add_listener(sink.on_request)  # the final flush path is the normal one
    acc = sink.buffer.accounting
    report = {
        "window_s": WINDOW_S,
        "guard_s": GUARD_S,
        "windows": _state["windows"],
        "locust_requests": environment.stats.total.num_requests,
        "sink_emitted": acc.emitted,
        "sink_dropped": acc.dropped,
        "run_id": sink.run_id,
        "discarded": _state["discarded"],
    }
    with open(OUT, "w") as f:
        json.dump(report, f)
