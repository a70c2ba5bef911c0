# An example Locust test against httpbin, recorded by locust-sink.
#
#   locust -f examples/locustfile.py --headless -u 20 -r 5 -t 1m --host http://127.0.0.1:8080 \
#          --es-url http://127.0.0.1:9200 --run-tag purpose=example
#
# Without --es-url the documents go to NDJSON files in ./locust-results/<run id>/ (`locust-sink load` puts them
# into Elasticsearch later). In Docker: docker-compose-headless.yml runs this file (docs/docker.md).
# Some requests fail ON PURPOSE (404/500 and a checked response), so that the dashboards have failures to show:
# Locust then exits with code 1 unless you pass --exit-code-on-error 0.

# The one line that enables locust-sink: it adds the --es-*/--sink-*/--run-* options to Locust and records
# every request, the aggregated stats and the run document. Nothing else in this file is specific to it.
import locust_sink  # noqa: F401, I001  (imported first on purpose: the line that matters)

import itertools
import random

from locust import HttpUser, between, task

# Sequence numbers for the users (module level: one counter per Locust process).
_user_numbers = itertools.count(1)


class HttpbinUser(HttpUser):
    # Each user waits 0.5 to 2 s between tasks: 20 users make roughly 16 requests/s.
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.number = next(_user_numbers)
        self.tenant = random.choice(["acme", "globex", "initech"])

    def context(self) -> dict:
        # Locust merges this dict into the `context` of EVERY request of this user; locust-sink stores it on
        # each request document (field `context`, a flattened field: query it as context.tenant in Kibana).
        return {"tenant": self.tenant, "user": self.number}

    @task(10)
    def get(self) -> None:
        # A plain request: its name in the statistics (and the documents' `name`) is the path, "/get".
        self.client.get("/get")

    @task(2)
    def errors(self) -> None:
        # Two different URLs, one name: `name=` groups them, in Locust's table and in the documents (`url` keeps
        # the real URL). httpbin answers with the status in the path: both count as failures.
        code = random.choice([404, 500])
        self.client.get(f"/status/{code}", name="/status/[error]")

    @task(3)
    def checked(self) -> None:
        # `catch_response=True`: the test decides what a failure is. A 200 whose body does not satisfy our
        # (made-up) rule is marked failed with a message: locust-sink stores it in `exception`.
        with self.client.get("/uuid", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"unexpected status {response.status_code}")
            elif response.json().get("uuid", "").startswith(("0", "1")):
                response.failure("uuid starts with 0 or 1 (rejected by the example's business rule)")
            else:
                response.success()

    @task(1)
    def slow(self) -> None:
        # A delayed endpoint: about one second of response time, visible in the percentile panels.
        self.client.get("/delay/1")

    @task(2)
    def order(self) -> None:
        # Per-request context on top of the user's (the `context=` argument wins on equal keys).
        items = random.randint(1, 5)
        self.client.post("/anything/order", json={"items": items}, name="/anything/order", context={"items": items})
