"""Locustfile for the load-generator health tests (tests/test_hosts.py), chosen by $HOSTS_MODE:

- `cpu`: CPU-bound on purpose: FastHttpUser, no wait, and each task also burns ~2 ms of CPU in Python, so a
  single Locust process runs its core flat out whatever the system under test does;
- `light` (default): one user's worth of work, a request per second.
"""

import os
import time

import gevent
from locust import FastHttpUser, constant, events, task

import locust_sink  # noqa: F401  (the one line that enables the sink)

MODE = os.environ.get("HOSTS_MODE", "light")
BURN_S = 0.002


@events.init.add_listener
def fresh_loop_clock(environment, **_kwargs) -> None:
    """Make `-t` last what it says (see tests/locustfiles/queries.py)."""
    gevent.get_hub().loop.update_now()


class HostsUser(FastHttpUser):
    wait_time = constant(0) if MODE == "cpu" else constant(1)

    @task
    def get(self) -> None:
        if MODE == "cpu":
            deadline = time.perf_counter() + BURN_S
            while time.perf_counter() < deadline:
                pass
        self.client.get("/status/200")
