"""`python3 -m bench hotpath`'s measuring process: the sink attached to a hand-built Environment, fed
synthetic `request` events in-process (no load generator, no server under test).

    python3 -m bench._hotpath_child --records N --repeat R [--es-url URL] -> one JSON object on stdout

Process CPU (time.process_time: user+sys of this process, ns clock) for (1) the hot path, i.e. the sink's
`request` listener called N times without yielding (what user greenlets pay inline), and (2) the flush:
the flusher draining those N records into NDJSON files or Elasticsearch (client side; the encoder helper
process's CPU is not this process's and is not counted, as it is not Locust's).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from locust.env import Environment  # noqa: E402

from bench import _sink  # noqa: E402
from bench.synthetic import BenchUser, events  # noqa: E402


def measure(records: int, es_url: str | None, prefix: str, encoder: str) -> dict[str, float]:
    env = Environment(user_classes=[BenchUser])
    env.create_local_runner()
    sink_dir = tempfile.mkdtemp(prefix="bench-hotpath-")
    options: dict[str, object] = {"sink_dir": sink_dir, "run_id": f"hotpath-{time.time_ns()}", "sink_encoder": encoder}
    if es_url:
        options.update(es_url=es_url, es_index_prefix=prefix)
    sink = _sink.attach(env, **options)
    try:
        _sink.wait_connected(sink)
        _sink.make_room(sink, records)
        start = time.process_time()
        _sink.feed(sink, events(records))
        hot = time.process_time() - start
        start = time.process_time()
        done = _sink.deliver(sink, 300)
        flush = time.process_time() - start
        acc = _sink.accounting(sink)
        delivered = acc["indexed"] if es_url else acc["written"]
        if not done or delivered != records:
            raise SystemExit(f"the sink did not deliver everything: {_sink.summary(sink)}")
    finally:
        sink.close(timeout=30)
        shutil.rmtree(sink_dir, ignore_errors=True)
    return {"hot_path_us": hot / records * 1e6, "flush_us": flush / records * 1e6, "delivered": delivered}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, required=True)
    p.add_argument("--repeat", type=int, required=True)
    p.add_argument("--es-url")
    p.add_argument("--es-index-prefix", default="locust-bench")
    p.add_argument("--encoder", default="process")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    runs = [measure(args.records, args.es_url, args.es_index_prefix, args.encoder) for _ in range(args.repeat)]
    print(json.dumps(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
