"""Locustfile for the report / compare / browser tests: several endpoints with known outcomes.

- `/get` (fast, ok), `/status/404` named `/status/[missing]` (always fails), `/bytes/256` (ok, except every
  5th one of the process, failed with catch_response: one name with both outcomes);
- `/api/slow`: httpbin's `/delay/<s>` with `REPORT_SLOW_S` seconds (default 0.05); a candidate run with a
  larger value is the regression planted on purpose for `locust-sink compare`;
- a user exception now and then (`ValueError`), for the report's user-error table.

At `quit` (after --json-file) Locust's failures table is written to $REPORT_ERRORS_FILE as JSON.
"""

import itertools
import json
import os
from pathlib import Path

import gevent
from locust import HttpUser, between, events, task

import locust_sink  # noqa: F401  (the one line that enables the sink)

SLOW_S = float(os.environ.get("REPORT_SLOW_S", "0.05"))
PAYLOADS = itertools.count(1)
BOOMS = itertools.count(1)
ENVIRONMENTS = []


@events.init.add_listener
def fresh_loop_clock(environment, **_kwargs) -> None:
    """Make `-t` last what it says: Locust arms its run-time timer before the loop's cached clock was ever
    refreshed (see tests/locustfiles/queries.py)."""
    gevent.get_hub().loop.update_now()
    ENVIRONMENTS.append(environment)


@events.quit.add_listener
def write_failures(**_kwargs) -> None:
    path = os.environ.get("REPORT_ERRORS_FILE")
    runner = ENVIRONMENTS[0].runner if ENVIRONMENTS else None
    if path and runner is not None and type(runner).__name__ != "WorkerRunner":
        Path(path).write_text(json.dumps(list(runner.stats.serialize_errors().values())))


class ReportUser(HttpUser):
    wait_time = between(0.02, 0.08)

    @task(6)
    def fast(self):
        self.client.get("/get")

    @task(2)
    def missing(self):
        self.client.get("/status/404", name="/status/[missing]")

    @task(2)
    def slow(self):
        self.client.get(f"/delay/{SLOW_S}", name="/api/slow")

    @task(2)
    def payload(self):
        with self.client.get("/bytes/256", catch_response=True) as resp:
            if next(PAYLOADS) % 5 == 0:
                resp.failure("short read: expected 256 bytes")
            else:
                resp.success()

    @task(1)
    def boom(self):
        if next(BOOMS) % 20 == 1:
            raise ValueError("boom on purpose")
