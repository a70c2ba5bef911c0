"""Benchmark locustfile with locust-influxdb-listener 1.0.2 (the peer), as its README sets it up in
`events.init`. Runs only in the peer's own virtualenv (bench/peers.sh); LOCUST_BENCH_INFLUX_PORT is the
bench's InfluxDB on 127.0.0.1."""

import os
from typing import Any

from _progress import BenchUser  # noqa: F401  (Locust puts this file's folder on sys.path)
from locust import events
from locust_influxdb_listener import InfluxDBListener, InfluxDBSettings

DATABASE = os.environ.get("LOCUST_BENCH_INFLUX_DB", "locust_bench")


@events.init.add_listener
def _on_init(environment: Any, **_kwargs: Any) -> None:
    settings = InfluxDBSettings(
        influx_host="127.0.0.1",
        influx_port=int(os.environ["LOCUST_BENCH_INFLUX_PORT"]),
        user="admin",
        pwd="pass",
        database=DATABASE,
    )
    InfluxDBListener(env=environment, influxDbSettings=settings)
