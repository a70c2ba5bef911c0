"""Locustfile for the fault tests: steady traffic against httpbin, optional clashing context values, optional
context leaves longer than Lucene's 32,766-byte term limit, and a report of the process's peak memory at the
end (the no-loss tests also check that memory stayed bounded)."""

import os
import resource

from locust import HttpUser, constant, events, task

import locust_sink  # noqa: F401

BAD_CONTEXT_EVERY = int(os.environ.get("FAULT_BAD_CONTEXT_EVERY", "0"))
LONG_LEAF_EVERY = int(os.environ.get("FAULT_LONG_LEAF_EVERY", "0"))
LONG_LEAF_CHARS = 40_000


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
