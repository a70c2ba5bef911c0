"""End-to-end locustfile: 2xx, 404, 5xx, catch_response failures, a delayed endpoint, odd context values,
with both HttpUser and FastHttpUser, against a local httpbin."""

from locust import FastHttpUser, HttpUser, constant, task

import locust_sink  # noqa: F401  (the one line that enables the sink)


class Weird:
    def __str__(self) -> str:
        return "weird-object"


class WebUser(HttpUser):
    wait_time = constant(0.05)

    @task(5)
    def ok(self):
        self.client.get("/status/200", context={"tenant": "a", "raw": b"\x00bytes", "obj": Weird()})

    @task(2)
    def not_found(self):
        self.client.get("/status/404", name="/status/[missing]")

    @task(2)
    def server_error(self):
        self.client.get("/status/500")

    @task(2)
    def checked(self):
        with self.client.get("/bytes/64", catch_response=True) as resp:
            if self.environment.runner.stats.total.num_requests % 3 == 0:
                resp.failure("checked: body did not match")
            else:
                resp.success()

    @task(1)
    def slow(self):
        self.client.get("/delay/1", name="/delay/[n]")


class FastUser(FastHttpUser):
    wait_time = constant(0.05)

    @task(4)
    def get(self):
        self.client.get("/get")

    @task(1)
    def fail(self):
        self.client.get("/status/503")

    @task(1)
    def posting(self):
        with self.client.post("/post", json={"a": 1}, catch_response=True) as resp:
            if resp.status_code == 200:
                resp.failure("fast: rejected on purpose")
