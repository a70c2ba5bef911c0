#!/usr/bin/env python3
"""CPU the sink spends per request record, measured in-process (no load generator, no server under test).

    python3 bench/sink_cpu.py [--records 50000] [--es-url http://127.0.0.1:PORT] [--json]

Feeds --records synthetic `request` events (10 % failures) into a sink attached to a hand-built Locust
Environment and measures process CPU (user+sys) for (1) the hot path (the `request` listener: what each
user greenlet pays inline) and (2) the flush: encoding and delivering them to NDJSON files and, with
--es-url, to Elasticsearch (`_bulk` over HTTP, client side only). Unlike the end-to-end numbers of
bench/overhead.py this hardly depends on other load on the machine: it is the sink's own price per record,
to compare with what Locust itself spends per request (bench/overhead.py, CPU µs/req of the baseline).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from locust.env import Environment  # noqa: E402
from synthetic import BenchUser, event  # noqa: E402

import locust_sink  # noqa: E402


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def measure(records: int, es_url: str | None, index_prefix: str) -> dict[str, float]:
    env = Environment(user_classes=[BenchUser])
    env.create_local_runner()
    sink_dir = tempfile.mkdtemp(prefix="bench-sink-cpu-")
    options: dict[str, object] = {"sink_dir": sink_dir, "run_id": f"sink-cpu-{time.time_ns()}"}
    if es_url:
        options.update(es_url=es_url, es_index_prefix=index_prefix)
    sink = locust_sink.attach(env, **options)
    try:
        sink.on_test_start(env)
        deadline = time.monotonic() + 60
        while sink.delivery is not None and sink.delivery.state != "up" and time.monotonic() < deadline:
            gevent.sleep(0.1)  # connected, templates installed: not part of the per-record price
        sink.buffer.resize(max(sink.buffer.maxsize, records + 1), sink.buffer.batch_size)
        start = cpu()
        for i in range(records):
            sink.buffer.on_request(**event(i), start_time=time.time())
        hot = cpu() - start
        start = cpu()
        assert sink.delivery is not None
        done = sink.delivery.flush(120)
        flush = cpu() - start
        acc = sink.buffer.accounting
        delivered = acc.indexed if es_url else acc.written
        if not done or delivered != records:
            raise SystemExit(f"sink did not deliver everything: {acc.summary()}")
    finally:
        sink.close(timeout=30)
        shutil.rmtree(sink_dir, ignore_errors=True)
    return {"hot_path_us": hot / records * 1e6, "flush_us": flush / records * 1e6}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=50_000)
    p.add_argument("--es-url", help="also measure delivery to this Elasticsearch (127.0.0.1 only)")
    p.add_argument("--es-index-prefix", default="locust-bench")
    p.add_argument("--repeat", type=int, default=3, help="take the median of this many measurements")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = p.parse_args(argv)
    if args.es_url and not args.es_url.startswith(("http://127.0.0.1", "http://localhost")):
        p.error("only a local Elasticsearch")
    logging.basicConfig(level=logging.WARNING)
    result: dict[str, dict[str, float]] = {}
    for target, url in (("file", None), ("es", args.es_url)):
        if target == "es" and not url:
            continue
        runs = [measure(args.records, url, args.es_index_prefix) for _ in range(args.repeat)]
        result[target] = {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in runs[0]}
    if args.json:
        print(json.dumps(result))
    else:
        for target, r in result.items():
            total = r["hot_path_us"] + r["flush_us"]
            print(
                f"{target:4s}: hot path {r['hot_path_us']:.1f} µs + flush {r['flush_us']:.1f} µs "
                f"= {total:.1f} µs CPU per record"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
