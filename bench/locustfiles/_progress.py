"""The benchmark's user, plus an optional progress greenlet (no `request` listener: nothing per request).

With LOCUST_BENCH_PROGRESS=PATH, a greenlet appends "requests rss_mib" to PATH once a second from
test_start on; with LOCUST_BENCH_MAX_REQUESTS=N it also stops the test once Locust has counted N requests
(the RSS-over-a-million-records run of `python3 -m bench peers --rss`).
"""

from __future__ import annotations

import os
from typing import Any

import gevent
from locust import FastHttpUser, constant, events, task

PROGRESS = os.environ.get("LOCUST_BENCH_PROGRESS")
MAX_REQUESTS = int(os.environ.get("LOCUST_BENCH_MAX_REQUESTS") or 0)
PATH = os.environ.get("LOCUST_BENCH_PATH", "/")  # "/" of nginx, or e.g. /delay/0.02 of httpbin
PAGE = os.sysconf("SC_PAGE_SIZE")


class BenchUser(FastHttpUser):
    """No wait time: each user sends its next request as soon as the previous one returns, so one Locust
    process is CPU-bound and whatever a listener costs shows up as fewer requests per second."""

    wait_time = constant(0)

    @task(8)
    def static_file(self) -> None:
        self.client.get(PATH)  # a small static file (or the delayed endpoint)

    @task(1)
    def ok(self) -> None:
        self.client.get("/ok" if PATH == "/" else PATH)  # `return 200` in nginx

    @task(1)
    def missing(self) -> None:
        self.client.get("/missing" if PATH == "/" else "/status/404")  # a failure: the error path is measured too


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / (1 << 20)


def _watch(environment: Any) -> None:
    while True:
        n = environment.stats.total.num_requests
        if PROGRESS:
            with open(PROGRESS, "a") as f:
                f.write(f"{n} {_rss_mib():.2f}\n")
        if MAX_REQUESTS and n >= MAX_REQUESTS and environment.runner is not None:
            environment.runner.quit()
            return
        gevent.sleep(1.0)


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kwargs: Any) -> None:
    if PROGRESS or MAX_REQUESTS:
        gevent.spawn(_watch, environment)
