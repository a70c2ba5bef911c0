"""Push a bounded number of records through the sink's real hot path (no HTTP): the `request` event fired
in a loop at HOTLOOP_RATE records/s (default 20,000: seven times what one Locust process reaches here),
yielding between slices of 100 the way a busy Locust process would. Samples the queue length while it runs
and prints the maxima at the end."""

import os
import resource
import time

import gevent
from locust import User, events, task

import locust_sink  # noqa: F401

TOTAL = int(os.environ.get("HOTLOOP_RECORDS", "200000"))
RATE = float(os.environ.get("HOTLOOP_RATE", "20000"))
state = {"sent": 0, "max_queue": 0, "done": False}


def sample(environment):
    sink = environment.locust_sink
    while not state["done"]:
        state["max_queue"] = max(state["max_queue"], len(sink.buffer))
        gevent.sleep(0.05)


@events.test_start.add_listener
def start_sampler(environment, **_kw):
    gevent.spawn(sample, environment)


class HotLoop(User):
    @task
    def burst(self):
        fire = self.environment.events.request.fire
        started = time.monotonic()
        deadline = started + 120
        while state["sent"] < TOTAL and time.monotonic() < deadline:
            for _ in range(100):
                state["sent"] += 1
                fire(
                    request_type="GET",
                    name="/hot",
                    response_time=1.5,
                    response_length=10,
                    exception=None,
                    context={},
                    start_time=time.time(),
                    url="http://127.0.0.1/hot",
                    response=None,
                )
            ahead = state["sent"] / RATE - (time.monotonic() - started)
            gevent.sleep(max(0.0, ahead))
        state["done"] = True
        self.environment.runner.quit()


@events.quitting.add_listener
def report(environment, **_kw):
    state["done"] = True
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"HOTLOOP sent={state['sent']} max_queue={state['max_queue']} peak_rss_kb={peak_kb}", flush=True)
