# The same test as locustfile.py with FastHttpUser (geventhttpclient): several times more requests per CPU
# core than HttpUser (requests), for when the load generator itself is the bottleneck. locust-sink records it
# the same way: it listens to Locust's request event, whatever client fired it.
#
#   locust -f examples/locustfile_fast.py --headless -u 50 -r 10 -t 1m --host http://127.0.0.1:8080 \
#          --es-url http://127.0.0.1:9200
#   LOCUSTFILE=./examples/locustfile_fast.py docker-compose -f docker-compose-mini.yml \
#          -f docker-compose-headless.yml up --build --scale worker=2 --exit-code-from master
#
# Some requests fail ON PURPOSE (see locustfile.py).

# The one line that enables locust-sink.
import locust_sink  # noqa: F401, I001  (imported first on purpose: the line that matters)

import itertools
import random

from locust import FastHttpUser, between, task

_user_numbers = itertools.count(1)


class FastHttpbinUser(FastHttpUser):
    wait_time = between(0.5, 2.0)
    # FastHttpUser keeps a pool of connections per user; one is enough for this request pattern.
    concurrency = 1

    def on_start(self) -> None:
        self.number = next(_user_numbers)
        self.tenant = random.choice(["acme", "globex", "initech"])

    def context(self) -> dict:
        # merged into every request's `context` (stored on each request document, field `context`)
        return {"tenant": self.tenant, "user": self.number, "client": "fasthttp"}

    @task(10)
    def get(self) -> None:
        self.client.get("/get")

    @task(2)
    def errors(self) -> None:
        # two URLs grouped under one name
        self.client.get(f"/status/{random.choice([404, 500])}", name="/status/[error]")

    @task(3)
    def checked(self) -> None:
        # the test decides what a failure is; the message lands in the document's `exception`
        with self.client.get("/uuid", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"unexpected status {response.status_code}")
            elif response.json().get("uuid", "").startswith(("0", "1")):
                response.failure("uuid starts with 0 or 1 (rejected by the example's business rule)")
            else:
                response.success()

    @task(1)
    def slow(self) -> None:
        self.client.get("/delay/1")

    @task(2)
    def order(self) -> None:
        items = random.randint(1, 5)
        self.client.post("/anything/order", json={"items": items}, name="/anything/order", context={"items": items})
