"""`python3 -m bench profile`'s Locust process: Locust run in this process under a SIGPROF sampler.

    python3 -m bench._profile_child OUT.json (window|whole) LOCUST_ARGS...

A SIGPROF timer (ITIMER_PROF: it ticks with the process's own user+sys CPU time) fires every millisecond
(in practice every kernel tick) and records the Python stack of whatever greenlet is running, so the
samples are proportional to CPU, attributed in place (cold caches, GC and all). `window` samples only from
test_start to test_stop (imports, start-up and the final flush left out). Garbage collection is timed with
gc.callbacks: a cost the samples cannot attribute (a collection runs wherever an allocation crossed the
threshold). The stack counts go to OUT.json at exit.
"""

from __future__ import annotations

import atexit
import collections
import gc
import json
import os
import runpy
import signal
import sys
import time
from typing import Any

INTERVAL = 0.001  # seconds of process CPU time between samples


def main() -> None:
    out_path, scope, locust_args = sys.argv[1], sys.argv[2], sys.argv[3:]
    counts: collections.Counter[tuple[str, ...]] = collections.Counter()
    gc_time = {"s": 0.0, "full": 0.0, "started": 0.0, "on": 0.0}
    window: dict[str, float] = {}

    def on_sigprof(_signum: int, frame: Any) -> None:
        stack = []
        while frame is not None and len(stack) < 60:
            stack.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")
            frame = frame.f_back
        counts[tuple(stack)] += 1

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if not gc_time["on"]:
            return
        if phase == "start":
            gc_time["started"] = time.process_time()
        else:
            spent = time.process_time() - gc_time["started"]
            gc_time["s"] += spent
            if info.get("generation") == 2:
                gc_time["full"] += spent

    def sampling(on: bool) -> None:
        gc_time["on"] = 1.0 if on else 0.0
        signal.setitimer(signal.ITIMER_PROF, INTERVAL if on else 0, INTERVAL if on else 0)

    written: list[bool] = []

    def dump() -> None:
        if written:
            return
        written.append(True)
        sampling(False)
        cpu_s = window.get("cpu_s", time.process_time() - window.get("cpu0", 0.0))
        with open(out_path, "w") as fh:
            json.dump(
                {
                    "cpu_s": cpu_s,
                    "gc_s": gc_time["s"],
                    "gc_full_s": gc_time["full"],
                    "samples": [[list(k), v] for k, v in counts.items()],
                },
                fh,
            )

    atexit.register(dump)
    gc.callbacks.append(on_gc)
    signal.signal(signal.SIGPROF, on_sigprof)
    if scope == "window":
        from locust import events

        @events.test_start.add_listener
        def _start(**_kw: object) -> None:
            window["cpu0"] = time.process_time()
            sampling(True)

        @events.test_stop.add_listener
        def _stop(**_kw: object) -> None:
            sampling(False)
            window["cpu_s"] = time.process_time() - window.get("cpu0", 0.0)

    else:
        sampling(True)
    sys.argv = ["locust", *locust_args]
    try:
        runpy.run_module("locust", run_name="__main__", alter_sys=True)
    finally:
        dump()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
