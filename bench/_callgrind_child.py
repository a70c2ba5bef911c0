"""`python3 -m bench callgrind`'s measured program: one synthetic event stream through one listener, run
under `valgrind --tool=callgrind --instr-atstart=no --dump-before=getsid`.

    python3 -m bench._callgrind_child VARIANT RECORDS [--es-url URL] [--pg-port P] [--influx-port P] [--run-id ID]

VARIANT: `baseline` (Locust's own stats listener only), `sink-file`, `sink-es` (locust_sink; in-process
encoding, so all of the sink's work is counted in this process), `sink-file-helper` (the default encoder
helper process: only Locust's side is counted), `timescale` (locust-plugins 5.0.3) or
`influx` (locust-influxdb-listener 1.0.2); the peers run in their own virtualenvs.

After setup and a warm-up (uninstrumented: imports and start-up cost nothing here), the program switches
callgrind's instrumentation on and marks its phases with os.getsid(0) (callgrind dumps its counters when
getsid is entered): (1) RECORDS events fired through Locust's `request` hook without yielding, as user
greenlets fire them; (2) the listener's own delivery of them (the sink's flush; the peers' final flush),
waiting included (an idle event loop executes almost nothing). Servers are other processes: not counted.
Prints one JSON line: the records the listener saw and delivered by its own count.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from locust.env import Environment  # noqa: E402

from bench.synthetic import BenchUser, event  # noqa: E402


def instrumentation_on() -> None:
    """Ask callgrind to start instrumenting, and keep executing until it has (it reads commands between
    blocks of executed code, so a blocking wait would never be answered)."""
    proc = subprocess.Popen(["callgrind_control", "-i", "on", str(os.getpid())], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    spin = 0
    while proc.poll() is None:
        spin = (spin + 1) % 1000
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("callgrind_control did not answer within 120 s (is this running under callgrind?)")
    if proc.returncode != 0:
        raise SystemExit(f"callgrind_control -i on failed ({proc.returncode})")


def mark() -> None:
    os.getsid(0)  # callgrind's --dump-before=getsid: the counters so far are one phase


def fire(env: Environment, start: int, n: int) -> None:
    """Fire n events through Locust's hook with the clock standing still: Locust's stats do extra work
    whenever the wall clock enters a new second, and under valgrind a second covers a number of events
    that depends on the machine's load; a frozen clock makes the count depend on the events only."""
    request = env.events.request
    real_time, now = time.time, time.time()
    time.time = lambda: now  # nothing else runs meanwhile: the loop never yields
    try:
        for i in range(start, start + n):
            request.fire(**event(i), start_time=now)
    finally:
        time.time = real_time


def setup(args: argparse.Namespace, env: Environment, work: str) -> tuple[Callable[[], None], Callable[[], int]]:
    """Attach the variant's listener; returns (deliver everything, records delivered by its own count)."""
    if args.variant.startswith("sink-"):
        from bench import _sink

        options: dict[str, Any] = {
            "sink_dir": work,
            "run_id": args.run_id,
            "sink_encoder": "process" if args.variant == "sink-file-helper" else "inline",
            "sink_stats_interval": 3600,
            "sink_flush_interval": 3600,
        }
        if args.variant == "sink-es":
            options.update(es_url=args.es_url, es_index_prefix="locust-bench-cg")
        sink = _sink.attach(env, **options)
        _sink.wait_connected(sink)
        _sink.make_room(sink, args.records + args.warmup)
        field = "indexed" if args.variant == "sink-es" else "written"
        return (lambda: _sink.deliver(sink, 600) or None), (lambda: _sink.accounting(sink)[field] - args.warmup)
    if args.variant == "timescale":
        from locust.argument_parser import parse_options
        from locust_plugins.listeners.timescale import Timescale

        env.parsed_options = parse_options(
            [
                "-f",
                "plain.py",
                "--timescale",
                "--pghost",
                "127.0.0.1",
                "--pgport",
                str(args.pg_port),
                "--pguser",
                "locust",
                "--pgdatabase",
                "locust",
            ]
        )
        listener = Timescale(env=env)
        env.events.test_start.fire(environment=env)
        return (lambda: listener.on_quit(exit_code=0)), (lambda: -1)
    if args.variant == "influx":
        from locust_influxdb_listener import InfluxDBListener, InfluxDBSettings

        settings = InfluxDBSettings(influx_host="127.0.0.1", influx_port=args.influx_port, database=args.run_id)
        influx = InfluxDBListener(env=env, influxDbSettings=settings)
        return influx.last_flush_on_quitting, (lambda: -1)
    if args.variant == "baseline":
        return (lambda: None), (lambda: 0)
    raise SystemExit(f"unknown variant {args.variant}")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("variant")
    p.add_argument("records", type=int)
    p.add_argument("--es-url")
    p.add_argument("--pg-port", type=int)
    p.add_argument("--influx-port", type=int)
    p.add_argument("--run-id", default=f"callgrind-{os.getpid()}")
    p.add_argument("--warmup", type=int, default=300, help="events fired and delivered before counting")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = tempfile.mkdtemp(prefix="bench-callgrind-")
    env = Environment(user_classes=[BenchUser])
    env.create_local_runner()
    try:
        deliver, delivered = setup(args, env, work)
        fire(env, 0, args.warmup)  # first calls: specialised bytecode, caches, connections
        if args.variant.startswith("sink"):
            deliver()  # the sink's own flush delivers the warm-up records
        else:
            gevent.sleep(2.0)  # the peers' background greenlets write them on their schedule (0.5 s, 1 s)
        gc.collect()
        gc.freeze()  # what setup left behind is never scanned again: the phases' collections cost the same
        # whatever the imports allocated (a change elsewhere in the sink must not move the hot path's count)
        instrumentation_on()
        mark()  # ---- everything before this is setup
        fire(env, args.warmup, args.records)
        mark()  # ---- phase 1: the hot path
        deliver()
        mark()  # ---- phase 2: delivery
        print(
            json.dumps(
                {
                    "variant": args.variant,
                    "records": args.records,
                    "delivered": delivered(),
                    "locust_requests": env.stats.total.num_requests - args.warmup,
                }
            ),
            flush=True,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    os._exit(0)  # interpreter teardown and exit hooks are not a phase: the counts are taken, leave at once


if __name__ == "__main__":
    raise SystemExit(main())
