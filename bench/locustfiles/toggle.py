"""`python3 -m bench overhead`'s locustfile: the sink on and off in alternating windows of ONE Locust process.

The same user as plain.py plus `import locust_sink`. Once the test starts, a greenlet removes and adds the
sink's real `request` listener in windows of LOCUST_BENCH_WINDOW seconds, in the order on, off, off, on
(a linear drift cancels out within each group of four), and notes for every window the wall time, the
process's CPU time and Locust's request count, LOCUST_BENCH_GUARD seconds after the switch and at the
window's end. Everything else of the sink (flusher, stats snapshots, run documents) stays on all the time,
so the difference between the windows is the sink's per-record work. At test stop the windows and the
sink's accounting go to LOCUST_BENCH_OUT as JSON.

LOCUST_BENCH_CONTROL=empty is the method's own control: the sink's listener stays off for the whole test
and an empty listener with its signature is toggled instead (what one more listener call costs, and how
far from 1.000 the method reads when nothing is measured).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import gevent
from _progress import BenchUser  # noqa: F401  (Locust puts this file's folder on sys.path)
from locust import events

import locust_sink  # noqa: F401  (the one line that enables the sink)
from bench import _sink
from bench._stats import PATTERN

WINDOW_S = float(os.environ.get("LOCUST_BENCH_WINDOW", "1.5"))
GUARD_S = float(os.environ.get("LOCUST_BENCH_GUARD", "0.3"))
SETTLE_S = float(os.environ.get("LOCUST_BENCH_SETTLE", "2"))
OUT = os.environ.get("LOCUST_BENCH_OUT", "toggle.json")
EMPTY = os.environ.get("LOCUST_BENCH_CONTROL") == "empty"

_windows: list[dict[str, Any]] = []
_greenlets: list[gevent.Greenlet] = []


def empty_listener(
    request_type: Any, name: Any, response_time: Any, response_length: Any, response: Any = None,
    context: Any = None, exception: Any = None, start_time: Any = None, url: Any = None, **_kwargs: Any,
) -> None:  # fmt: skip
    """The sink listener's signature, no work: the price of being called at all."""


class Toggle:
    """Adds and removes one listener of Locust's `request` hook, remembering whether it is attached."""

    def __init__(self, hook: Any, listener: Any, attached: bool) -> None:
        self.hook, self.listener, self.attached = hook, listener, attached

    def set(self, on: bool) -> None:
        if on and not self.attached:
            self.hook.add_listener(self.listener)
        elif not on and self.attached:
            self.hook.remove_listener(self.listener)
        self.attached = on


def _point(environment: Any) -> tuple[float, float, int]:
    return time.monotonic(), time.process_time(), environment.stats.total.num_requests


def _run(environment: Any, toggle: Toggle) -> None:
    gevent.sleep(SETTLE_S)  # users spawned, connections open
    index = 0
    while True:
        on = PATTERN[index % len(PATTERN)]
        toggle.set(on)
        switched = time.monotonic()
        gevent.sleep(GUARD_S)
        t0, cpu0, n0 = _point(environment)
        gevent.sleep(max(0.0, WINDOW_S - (time.monotonic() - switched)))
        t1, cpu1, n1 = _point(environment)
        _windows.append({"index": index, "on": on, "t0": t0, "t1": t1, "cpu0": cpu0, "cpu1": cpu1, "n0": n0, "n1": n1})
        index += 1


_toggles: list[Toggle] = []


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kwargs: Any) -> None:
    hook = environment.events.request
    sink_toggle = Toggle(hook, _sink.request_listener(_sink.of(environment)), attached=True)
    if EMPTY:
        sink_toggle.set(False)
        toggle = Toggle(hook, empty_listener, attached=False)
    else:
        toggle = sink_toggle
    _toggles[:] = [sink_toggle, toggle]
    _greenlets.append(gevent.spawn(_run, environment, toggle))


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_kwargs: Any) -> None:
    for greenlet in _greenlets:
        greenlet.kill(block=True, timeout=5)
    sink_toggle, toggle = _toggles
    if toggle is not sink_toggle:
        toggle.set(False)
    sink_toggle.set(True)  # the final flush path is the normal one
    sink = _sink.of(environment)
    report = {
        "window_s": WINDOW_S,
        "guard_s": GUARD_S,
        "control": "empty" if EMPTY else None,
        "windows": _windows,
        "locust_requests": environment.stats.total.num_requests,
        "accounting": _sink.accounting(sink),
        "run_id": sink.run_id,
    }
    with open(OUT, "w") as f:
        json.dump(report, f)
