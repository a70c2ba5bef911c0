"""Benchmark locustfile WITHOUT the sink: the baseline of bench/overhead.py.

No wait time, so each user sends its next request as soon as the previous one returns and the single
Locust process is CPU-bound: whatever the sink costs shows up as fewer requests per second.
"""

from locust import FastHttpUser, constant, task


class BenchUser(FastHttpUser):
    wait_time = constant(0)

    @task(8)
    def static_file(self) -> None:
        self.client.get("/")  # a small static file

    @task(1)
    def ok(self) -> None:
        self.client.get("/ok")  # `return 200` in nginx

    @task(1)
    def missing(self) -> None:
        self.client.get("/missing")  # `return 404`: a failure, so the error path is measured too
