"""Locustfile for the fault tests: steady traffic against httpbin, optional clashing context values, and a
report of the process's peak memory at the end (the no-loss tests also check that memory stayed bounded)."""

import os
import resource

from locust import HttpUser, constant, events, task

import locust_sink  # noqa: F401

BAD_CONTEXT_EVERY = int(os.environ.get("FAULT_BAD_CONTEXT_EVERY", "0"))


class FaultUser(HttpUser):
    wait_time = constant(float(os.environ.get("FAULT_WAIT", "0.02")))
    counter = 0

    @task(4)
    def ok(self):
        FaultUser.counter += 1
        user_id = FaultUser.counter
        if BAD_CONTEXT_EVERY and FaultUser.counter % BAD_CONTEXT_EVERY == 0:
            user_id = f"not-a-number-{FaultUser.counter}"
        self.client.get("/status/200", context={"user_id": user_id})

    @task(1)
    def fail(self):
        self.client.get("/status/500", context={"user_id": 0})


@events.quitting.add_listener
def report_memory(environment, **_kw):
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"FAULTS-PEAK-RSS-KB={peak_kb}", flush=True)
