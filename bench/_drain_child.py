"""`python3 -m bench drain`'s measuring process: the sink draining a pre-filled queue into a real
Elasticsearch, against that Elasticsearch's raw `_bulk` ceiling, in alternating rounds.

    python3 -m bench._drain_child --es-url URL --records N --rounds R --batch-size B [--encoder process]
    -> one JSON line: per round, the sink's and the raw records/s

The raw ceiling sends the very documents the sink sends: the NDJSON of the same N records, made once by the
sink in file mode (same encoder, same bytes), split into bulk requests of B records and posted back to back
over one keep-alive connection; only the run id (in `_id` and the document) differs per round, so that
every round creates new documents as the sink's rounds do.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
from pathlib import Path  # noqa: E402

from locust.env import Environment  # noqa: E402

from bench import _sink  # noqa: E402
from bench.synthetic import BenchUser, events  # noqa: E402

PREFIX = "locust-drain"


def run_id(kind: str, n: int) -> str:
    return f"drain-{kind}-{n:06d}"  # one length for every round: the raw body's bytes only change in place


def new_sink(options: dict[str, object]) -> object:
    env = Environment(user_classes=[BenchUser])
    env.create_local_runner()
    return _sink.attach(env, es_index_prefix=PREFIX, **options)


def request_pairs(records: int, batch_size: int, work: Path) -> list[bytes]:
    """The N request documents as the sink writes them, as action+document line pairs."""
    sink_dir = work / "file"
    sink = new_sink(
        {
            "sink_dir": str(sink_dir),
            "run_id": run_id("file", 0),
            "sink_encoder": "inline",
            "sink_batch_size": batch_size,
        }
    )
    _sink.make_room(sink, records)
    _sink.feed(sink, events(records))
    _sink.deliver(sink, 300)
    sink.close(timeout=30)
    pairs: list[bytes] = []
    for path in sorted((sink_dir / run_id("file", 0)).glob("*.ndjson")):
        lines = path.read_bytes().splitlines(keepends=True)
        pairs += [lines[i] + lines[i + 1] for i in range(0, len(lines) - 1, 2) if b'-requests"' in lines[i]]
    if len(pairs) != records:
        raise SystemExit(f"file mode wrote {len(pairs)} request documents, expected {records}")
    return pairs


def sink_round(es_url: str, records: int, batch_size: int, encoder: str, n: int, work: Path) -> float:
    sink = new_sink(
        {
            "es_url": es_url,
            "sink_dir": str(work / f"sink-{n}"),
            "run_id": run_id("sink", n),
            "sink_encoder": encoder,
            "sink_batch_size": batch_size,
        }
    )
    try:
        _sink.wait_connected(sink)
        _sink.feed(sink, events(batch_size))  # one batch first: the encoder helper starts, the connection warms
        _sink.deliver(sink, 120)
        _sink.make_room(sink, records)
        _sink.feed(sink, events(records))
        started = time.perf_counter()
        done = _sink.deliver(sink, 600, poll=0.002)  # a fine poll: this one is timed by the clock
        took = time.perf_counter() - started
        indexed = _sink.accounting(sink)["indexed"]
        if not done or indexed != records + batch_size:
            raise SystemExit(f"sink round {n}: {_sink.summary(sink)}")
    finally:
        sink.close(timeout=60)
    return records / took


def raw_round(es_url: str, pairs: list[bytes], batch_size: int, n: int) -> float:
    old, new = run_id("file", 0).encode(), run_id("raw", n).encode()
    bodies = [b"".join(pairs[i : i + batch_size]).replace(old, new) for i in range(0, len(pairs), batch_size)]
    url = urllib.parse.urlsplit(es_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    headers = {"Content-Type": "application/x-ndjson"}
    started = time.perf_counter()
    for body in bodies:
        conn.request("POST", "/_bulk", body, headers)
        resp = conn.getresponse()
        answer = resp.read()
        if resp.status != 200 or b'"errors":false' not in answer[:100]:
            raise SystemExit(f"raw round {n}: _bulk answered {resp.status}: {answer[:300]!r}")
    took = time.perf_counter() - started
    conn.close()
    return len(pairs) / took


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--es-url", required=True)
    p.add_argument("--records", type=int, required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--encoder", default="process")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="bench-drain-"))
    rounds = []
    try:
        pairs = request_pairs(args.records, args.batch_size, work)
        raw_round(args.es_url, pairs[: args.batch_size], args.batch_size, 0)  # index created, connection warm
        for n in range(1, args.rounds + 1):
            order = ("sink", "raw") if n % 2 else ("raw", "sink")
            rates = {}
            for kind in order:
                if kind == "sink":
                    rates[kind] = sink_round(args.es_url, args.records, args.batch_size, args.encoder, n, work)
                else:
                    rates[kind] = raw_round(args.es_url, pairs, args.batch_size, n)
            rounds.append({"round": n, "order": list(order), **rates})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"rounds": rounds, "bytes_per_record": sum(map(len, pairs)) / len(pairs)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
