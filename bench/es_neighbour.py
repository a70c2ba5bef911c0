#!/usr/bin/env python3
"""Give Elasticsearch the indexing work of an es-mode run, from a process of its own.

    python3 bench/es_neighbour.py --es-url http://127.0.0.1:PORT --rate 4000 --duration 20 --run-id ID

bench/overhead.py runs this next to a *baseline* Locust process (no sink) for its `es-load` variant: the
sink's own code (locust-sink attached to a hand-built Environment, records fed to its `request` listener)
sends `--rate` request records per second to the same index the es variant uses. Elasticsearch then does
the same indexing work as in an es run, but none of the sink's work is in the Locust process. Comparing
es-load with baseline shows what an Elasticsearch indexing on the same machine costs Locust; comparing es
with es-load shows what the sink itself costs.

Prints one JSON line at the end: records emitted, indexed, and the accounting summary.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from locust.env import Environment  # noqa: E402
from synthetic import BenchUser, event  # noqa: E402

import locust_sink  # noqa: E402

TICK = 0.01  # seconds between bursts of records
MAX_LAG = 0.25  # seconds behind the clock that are made up; a longer pause is not


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--es-url", required=True)
    p.add_argument("--es-index-prefix", default="locust-bench")
    p.add_argument("--rate", type=float, default=4000.0, help="request records per second")
    p.add_argument("--duration", type=float, default=20.0, help="seconds (stops earlier on SIGTERM)")
    p.add_argument("--run-id", required=True)
    args = p.parse_args(argv)
    if not args.es_url.startswith(("http://127.0.0.1", "http://localhost")):
        p.error("only a local Elasticsearch")
    if not 0 < args.rate <= 100_000 or not 0 < args.duration <= 3600:
        p.error("--rate must be in (0, 100000] and --duration in (0, 3600]")
    logging.basicConfig(level=logging.WARNING)

    stop = Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    env = Environment(user_classes=[BenchUser])
    env.create_local_runner()
    sink_dir = tempfile.mkdtemp(prefix="bench-neighbour-")
    sink = locust_sink.attach(
        env, sink_dir=sink_dir, run_id=args.run_id, es_url=args.es_url, es_index_prefix=args.es_index_prefix
    )
    emitted = 0
    try:
        sink.on_test_start(env)
        started = time.monotonic()
        deadline = started + args.duration
        while not stop.is_set() and time.monotonic() < deadline:
            now = time.monotonic()
            due = int((now - started) * args.rate)  # paced by the clock, not by the loop
            if due - emitted > args.rate * MAX_LAG:
                # far behind: the process was stopped (bench/toggle.py pauses it with SIGSTOP) or starved;
                # carry on at the rate from here instead of sending the backlog as one burst
                started = now - emitted / args.rate
                due = emitted
            while emitted < due:
                sink.on_request(**event(emitted), start_time=time.time())  # the locustfile's mix
                emitted += 1
            stop.wait(TICK)
    finally:
        sink.close(timeout=60)
        shutil.rmtree(sink_dir, ignore_errors=True)
    acc = sink.buffer.accounting
    print(json.dumps({"emitted": emitted, "indexed": acc.indexed, "summary": acc.summary()}), flush=True)
    return 0 if acc.indexed == emitted else 1


if __name__ == "__main__":
    sys.exit(main())
