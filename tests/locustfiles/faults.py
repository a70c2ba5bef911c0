"""Locustfile for the fault tests: steady traffic against httpbin, optional clashing context values, optional
context leaves longer than Lucene's 32,766-byte term limit, and a report of the process's peak memory at the
end (the no-loss tests also check that memory stayed bounded). With FAULT_STOP_FILE set, the run ends as
--run-time would end it (`runner.quit()`) as soon as that file exists: an outage test ends the run once it
has seen the recovery it waits for, instead of a fixed run time sized for the slowest restart."""

import os
import resource
from pathlib import Path

import gevent
from locust import HttpUser, constant, events, task

import locust_sink  # noqa: F401

BAD_CONTEXT_EVERY = int(os.environ.get("FAULT_BAD_CONTEXT_EVERY", "0"))
LONG_LEAF_EVERY = int(os.environ.get("FAULT_LONG_LEAF_EVERY", "0"))
LONG_LEAF_CHARS = 40_000
STOP_FILE = os.environ.get("FAULT_STOP_FILE")


class FaultUser(HttpUser):
    wait_time = constant(float(os.environ.get("FAULT_WAIT", "0.02")))
    counter = 0

    @task(4)
    def ok(self):
        FaultUser.counter += 1
        user_id = FaultUser.counter
        if BAD_CONTEXT_EVERY and FaultUser.counter % BAD_CONTEXT_EVERY == 0:
            user_id = f"not-a-number-{FaultUser.counter}"
        context: dict = {"user_id": user_id}
        if LONG_LEAF_EVERY and FaultUser.counter % LONG_LEAF_EVERY == 0:
            context["note"] = {"text": "x" * LONG_LEAF_CHARS}
        self.client.get("/status/200", context=context)

    @task(1)
    def fail(self):
        self.client.get("/status/500", context={"user_id": 0})


@events.quitting.add_listener
def report_memory(environment, **_kw):
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"FAULTS-PEAK-RSS-KB={peak_kb}", flush=True)


def _quit_when_asked(environment) -> None:
    assert STOP_FILE is not None
    while not Path(STOP_FILE).exists():
        gevent.sleep(0.2)
    print("FAULTS-STOP-FILE seen, shutting down", flush=True)
    environment.runner.quit()


@events.test_start.add_listener
def watch_stop_file(environment, **_kw):
    if STOP_FILE and environment.runner is not None:
        gevent.spawn(_quit_when_asked, environment)
