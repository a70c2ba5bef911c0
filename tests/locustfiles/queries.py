"""Locustfile for tests/test_queries.py: distinct names with known outcomes against a local httpbin.

/get (fast, ok), /status/404 and /status/500 (always fail, an HTTPError each), /delay/1 named "/delay/[n]"
(the slowest endpoint), /bytes/512 (ok, except every 4th one of the process, failed with catch_response:
one name with both outcomes and a plain-string error).

With QUERIES_ERRORS_FILE set, Locust's failures table is written there as JSON at the very end (`quit`, after
--json-file): the `--csv` failures file is written earlier and can miss requests that fail while stopping.
"""

import itertools
import json
import os
from pathlib import Path

import gevent
from locust import HttpUser, between, events, task

import locust_sink  # noqa: F401  (the one line that enables the sink)

PAYLOADS = itertools.count(1)


ENVIRONMENTS = []


@events.init.add_listener
def fresh_loop_clock(environment, **_kwargs) -> None:
    """Make `-t` last what it says. Locust arms the run-time timer with `gevent.spawn_later` before its main
    greenlet has ever yielded, so libev's cached clock still reads the time the loop was created (before the
    imports): on a busy machine an 8 s run lasted 2.5 s. Refreshing the clock here fixes that."""
    gevent.get_hub().loop.update_now()
    ENVIRONMENTS.append(environment)


@events.quit.add_listener
def write_failures(**_kwargs) -> None:
    path = os.environ.get("QUERIES_ERRORS_FILE")
    if path and ENVIRONMENTS:
        errors = ENVIRONMENTS[0].runner.stats.serialize_errors()  # error = StatsError.parse_error string
        Path(path).write_text(json.dumps(list(errors.values())))


class QueryUser(HttpUser):
    wait_time = between(0.05, 0.15)

    @task(6)
    def fast(self):
        self.client.get("/get")

    @task(2)
    def not_found(self):
        self.client.get("/status/404")

    @task(2)
    def server_error(self):
        self.client.get("/status/500")

    @task(1)
    def slow(self):
        self.client.get("/delay/1", name="/delay/[n]")

    @task(2)
    def payload(self):
        with self.client.get("/bytes/512", catch_response=True) as resp:
            if next(PAYLOADS) % 4 == 0:
                resp.failure("short read: expected 512 bytes")
            else:
                resp.success()
