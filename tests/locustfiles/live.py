"""Locustfile for the live-page tests: a few endpoints (one failing, one slower) against a local httpbin.

LIVE_LINGER_S keeps the process up that long after the test stopped (a `quitting` listener that sleeps
cooperatively), so that a test can read the page's final figures before Locust exits; the live server and
the web UI keep answering meanwhile."""

import os

import gevent
from locust import HttpUser, constant, events, task

import locust_sink  # noqa: F401

LINGER_S = float(os.environ.get("LIVE_LINGER_S", "0"))


class LiveUser(HttpUser):
    wait_time = constant(float(os.environ.get("LIVE_WAIT", "0.05")))

    @task(5)
    def ok(self):
        self.client.get("/status/200")

    @task(2)
    def missing(self):
        self.client.get("/status/404", name="/status/[missing]")

    @task(1)
    def slow(self):
        self.client.get("/delay/0.2", name="/delay/[n]")


@events.quitting.add_listener
def _linger(**_kwargs):
    if LINGER_S > 0:
        gevent.sleep(LINGER_S)
