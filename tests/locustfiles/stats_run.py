"""Locustfile for the stats / distributed tests: requests in on_start (before any custom message could
arrive), successes, HTTP failures, catch_response failures, a user exception now and then; at `quit` it
writes Locust's own final figures (total, failures table, exceptions) to $STATS_TRUTH_FILE for comparison.
$STATS_BREAK_ES_URL points this process's sink at a dead Elasticsearch (sink trouble on one worker).
$STATS_PAUSE_AT_QUITTING seconds of waiting in `quitting` (after the sink's own listener: Locust fires
`quitting` in reverse order) let the sink deliver everything first, so its flusher is idle (its connection
back in the pool) when Locust goes on to shut down."""

import json
import os
import random

import gevent
from locust import HttpUser, constant, events, task

import locust_sink  # noqa: F401

ERROR_EVERY = int(os.environ.get("STATS_ERROR_EVERY", "10"))


class StatsUser(HttpUser):
    wait_time = constant(float(os.environ.get("STATS_WAIT", "0.05")))
    booms = 0

    def on_start(self):
        self.client.get("/get", name="on_start")

    @task(6)
    def ok(self):
        self.client.get("/status/200")

    @task(2)
    def not_found(self):
        self.client.get("/status/404", name="/status/[missing]")

    @task(1)
    def checked(self):
        with self.client.get("/get", name="checked", catch_response=True) as resp:
            if random.random() < 0.5:
                resp.failure("checked: rejected on purpose")

    @task(1)
    def boom(self):
        StatsUser.booms += 1
        if StatsUser.booms % ERROR_EVERY == 1:
            raise ValueError("boom on purpose")


@events.quit.add_listener
def _write_truth(exit_code, **_kwargs):
    path = os.environ.get("STATS_TRUTH_FILE")
    runner = getattr(StatsUser, "_runner", None)
    if not path or runner is None or type(runner).__name__ == "WorkerRunner":
        return
    stats = runner.stats
    total = stats.total
    truth = {
        "exit_code": exit_code,
        "total": {
            "num_requests": total.num_requests,
            "num_failures": total.num_failures,
            "response_times": {str(k): v for k, v in total.response_times.items()},
            "min_response_time": total.min_response_time,
            "max_response_time": total.max_response_time,
            "total_response_time": total.total_response_time,
        },
        "errors": [
            {"method": e.method, "name": e.name, "error": e.to_dict()["error"], "occurrences": e.occurrences}
            for e in stats.errors.values()
        ],
        "exceptions": [{"count": r["count"], "msg": r["msg"]} for r in runner.exceptions.values()],
    }
    with open(path, "w") as handle:
        json.dump(truth, handle)


@events.quitting.add_listener
def _pause_at_quitting(**_kwargs):
    pause = float(os.environ.get("STATS_PAUSE_AT_QUITTING", "0"))
    if pause:
        gevent.sleep(pause)


@events.init.add_listener
def _remember_runner(environment, **_kwargs):
    StatsUser._runner = environment.runner
    # a worker whose Elasticsearch is unreachable (the master's options would otherwise win)
    broken = os.environ.get("STATS_BREAK_ES_URL")
    sink = getattr(environment, "locust_sink", None)
    if broken and sink is not None:
        sink.overrides["es_url"] = broken
