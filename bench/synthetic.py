"""One synthetic event stream for the in-process benchmarks (hotpath, drain, callgrind): the benchmark
locustfile's mix (90 % `GET /` successes, 10 % `GET /missing` 404 failures), as the keyword arguments
Locust's EventHook.fire passes to `request` listeners. Import after gevent's monkey-patching."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from locust import FastHttpUser, constant
from locust.exception import CatchResponseError

URL = "http://127.0.0.1:9/"


class BenchUser(FastHttpUser):
    """A user class for a hand-built Environment; it never runs."""

    host = "http://127.0.0.1:9"
    wait_time = constant(0)


class _Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


SUCCESS: dict[str, Any] = {
    "request_type": "GET",
    "name": "/",
    "response_time": 1.5,
    "response_length": 97,
    "response": _Response(200),
    "context": {},
    "exception": None,
    "url": URL,
}
FAILURE: dict[str, Any] = {
    **SUCCESS,
    "name": "/missing",
    "response_length": 0,
    "response": _Response(404),
    "exception": CatchResponseError("404 Client Error: Not Found for url: /missing"),
}


def event(i: int) -> dict[str, Any]:
    """The keyword arguments of the i-th event (every tenth is a failure); add start_time when firing."""
    return FAILURE if i % 10 == 9 else SUCCESS


def events(n: int) -> Iterator[dict[str, Any]]:
    return (event(i) for i in range(n))
