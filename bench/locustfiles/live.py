"""Benchmark locustfile for `python3 -m bench live`: the bench user with the sink, the live feed's observer
and data route metered (bench/_sink.py instrument_live). At test_start and test_stop it notes the process's
CPU time; at quit it writes the meters and that window's CPU to $LOCUST_BENCH_LIVE_OUT (JSON)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from _progress import BenchUser  # noqa: F401  (Locust puts this file's folder on sys.path)
from locust import events

import locust_sink  # noqa: F401
from bench import _sink

METER = _sink.instrument_live()
WINDOW: dict[str, float] = {}


@events.test_start.add_listener
def _start(**_kwargs: Any) -> None:
    WINDOW["cpu0"], WINDOW["t0"] = time.process_time(), time.time()


@events.test_stop.add_listener
def _stop(environment: Any, **_kwargs: Any) -> None:
    WINDOW["cpu1"], WINDOW["t1"] = time.process_time(), time.time()
    WINDOW["requests"] = environment.stats.total.num_requests


@events.quit.add_listener
def _quit(**_kwargs: Any) -> None:
    out = os.environ.get("LOCUST_BENCH_LIVE_OUT")
    if not out:
        return
    result = {
        "window_cpu_s": WINDOW.get("cpu1", 0.0) - WINDOW.get("cpu0", 0.0),
        "window_s": WINDOW.get("t1", 0.0) - WINDOW.get("t0", 0.0),
        "requests": WINDOW.get("requests", 0),
        "observer_s": METER.observer_s,
        "observer_calls": METER.observer_calls,
        "serve_s": METER.serve_s,
        "serve_calls": METER.serve_calls,
        "build_s": METER.build_s,
        "feed_bytes": METER.feed_bytes(),
    }
    with open(out, "w") as f:
        json.dump(result, f)
