#!/usr/bin/env python3
"""How `locust-sink report` scales: a synthetic 1,000,000-request run, reported from its files and from ES.

    python3 bench/report_scale.py --requests 1000000 --duration 3600

1. Generates a file-mode results folder (`<out>/<run id>/local.ndjson`) with the sink's own document shapes:
   request documents encoded by `locust_sink.records.RequestEncoder`, a stats snapshot every 3 s built by
   `locust_sink.stats.entry_document` from real Locust `RequestStats` (cumulative histograms), the run
   document (start and closing copies), events. (In a child process: it imports Locust.)
2. `locust-sink report FOLDER` (streams the files): wall time, peak RSS (wait4's ru_maxrss), HTML size.
3. `locust-sink load FOLDER` into Elasticsearch (a local one from scripts/es-local.sh unless --es-url),
   bounded by --load-timeout, then `locust-sink report RUN --es-url ...` (aggregations): same figures.
4. Removes the indices (and the ES it started, and the folder unless --keep). Prints a markdown table;
   exit status 1 if a target is missed (ES <= 10 s and <= 300 MB, files <= 60 s, HTML <= 3 MB) or the
   two reports disagree on the request count.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"es_s": 10.0, "es_mb": 300.0, "files_s": 60.0, "html_mb": 3.0}
ENDPOINTS = [
    ("GET", "/api/items", 8.0, 0.01),
    ("GET", "/api/items/[id]", 12.0, 0.02),
    ("POST", "/api/orders", 45.0, 0.03),
    ("GET", "/api/search", 120.0, 0.05),
    ("GET", "/static/[file]", 2.0, 0.0),
    ("PUT", "/api/cart", 30.0, 0.01),
    ("GET", "/api/slow-report", 900.0, 0.1),
    ("DELETE", "/api/cart/[id]", 20.0, 0.02),
    ("GET", "/login", 60.0, 0.0),
    ("GET", "/missing", 3.0, 1.0),
]  # fmt: skip  (method, name, median ms, failure share)


def generate(out: Path, run_id: str, prefix: str, requests: int, duration: float, seed: int) -> Path:
    """The synthetic run's folder; request times spread evenly over `duration` seconds."""
    from locust.stats import RequestStats

    from locust_sink.records import RequestEncoder, dumps
    from locust_sink.stats import entry_document, iso

    rng = random.Random(seed)
    folder = out / run_id
    folder.mkdir(parents=True)
    start = time.time() - duration - 60
    stats = RequestStats(use_response_times_cache=False)
    previous: dict[Any, tuple[int, int]] = {}
    encoder = RequestEncoder("local", b'{"create":{"_index":"%b-requests","_id":' % prefix.encode())
    users = 50
    events = 0

    def item(handle: Any, family: str, doc: dict[str, Any], doc_id: str, op: str = "create") -> None:
        handle.write(dumps({op: {"_index": f"{prefix}-{family}", "_id": doc_id}}) + b"\n" + dumps(doc) + b"\n")

    def event(handle: Any, kind: str, when: float, **fields: Any) -> None:
        nonlocal events
        events += 1
        doc = {"@timestamp": iso(when), "node": "local", "event": kind, "run_id": run_id, **fields}
        item(handle, "events", doc, f"{run_id}:local:e{events}")

    run_doc: dict[str, Any] = {
        "run_id": run_id, "@timestamp": iso(start), "node": "local", "status": "running", "start_time": iso(start),
        "locustfile": "bench/report_scale.py (synthetic)", "host": "http://127.0.0.1:8080", "users": users,
        "spawn_rate": 10.0, "run_time_limit": int(duration), "tags": {"bench": "report_scale"},
        "locust_version": "synthetic", "sink_version": "synthetic", "mode": "standalone", "sample_rate": 1.0,
        "stats_interval_s": 3.0, "index_prefix": prefix,
    }  # fmt: skip
    seq = 0
    snap = 0
    with (folder / "local.ndjson").open("wb") as handle:
        item(handle, "runs", run_doc, run_id)
        event(handle, "test_start", start, user_count=0)
        event(handle, "spawning_complete", start + 5, user_count=users)

        def snapshot(now: float, final: bool) -> None:
            nonlocal snap
            snap += 1
            base = {"@timestamp": iso(now), "run_id": run_id, "node": "local", "source": "local"}
            for key, entry in list(stats.entries.items()):
                doc = entry_document(entry, base, previous.get(key, (0, 0)), 3.0, users, final, False)
                previous[key] = (entry.num_requests, entry.num_failures)
                item(handle, "stats", doc, f"{run_id}:local:local:{snap}:{entry.method}{entry.name}")
            doc = entry_document(stats.total, base, previous.get("agg", (0, 0)), 3.0, users, final, True)
            previous["agg"] = (stats.total.num_requests, stats.total.num_failures)
            item(handle, "stats", doc, f"{run_id}:local:local:{snap}:agg")

        step = duration / requests
        next_snapshot = start + 3.0
        batch: list[Any] = []
        for i in range(requests):
            t = start + i * step
            if t >= next_snapshot:
                snapshot(next_snapshot, final=False)
                next_snapshot += 3.0
            method, name, median, fail_share = ENDPOINTS[rng.randrange(len(ENDPOINTS))]
            rt = rng.lognormvariate(0, 0.5) * median
            failed = rng.random() < fail_share
            status = 500 if failed and rng.random() < 0.5 else 404 if failed else 200
            error = f"HTTPError('{status} Server Error for url: {name}')" if failed else None
            length = 0 if failed else 512
            stats.log_request(method, name, rt, length)
            if failed:
                stats.log_error(method, name, error)
            seq += 1
            batch += [
                seq,
                t,
                method,
                name,
                rt,
                length,
                status,
                error,
                None,
                f"http://127.0.0.1:8080{name}",
                run_id,
                1.0,
            ]
            if len(batch) >= 12 * 1000:
                lines: list[bytes] = []
                encoder.encode(batch, 0, len(batch) // 12, lines)
                handle.write(RequestEncoder.body(lines))
                batch = []
        if batch:
            lines = []
            encoder.encode(batch, 0, len(batch) // 12, lines)
            handle.write(RequestEncoder.body(lines))
        end = start + duration
        event(handle, "test_stop", end, user_count=0)
        snapshot(end + 0.01, final=True)
        for error in stats.errors.values():
            event(handle, "failure_group", end, request_type=error.method, name=error.name,
                  error=error.error, occurrences=error.occurrences)  # fmt: skip
        total = stats.total
        run_doc.update(
            {"status": "stopped", "end_time": iso(end), "duration_s": duration, "exit_code": 1,
             "totals": {"requests": total.num_requests, "failures": total.num_failures,
                        "rps": round(total.num_requests / duration, 3),
                        "p95": total.get_response_time_percentile(0.95)},
             "sink": {"emitted": requests, "written": requests, "indexed": 0, "spooled": 0, "dead_lettered": 0,
                      "dropped": 0, "queued": 0, "in_flight": 0, "sampled_out": 0},
             "sink_final_flush_complete": True, "sink_trouble_nodes": []}
        )  # fmt: skip
        summary = {"requests": {k: run_doc["sink"][k] for k in run_doc["sink"] if k != "sampled_out"}, "state": "file"}
        run_doc["sink_by_node"] = {"local": summary}
        event(handle, "sink_summary", end + 1, details=summary)
        item(handle, "runs", run_doc, run_id, op="index")
    return folder


def timed(cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run cmd; its wall time, peak RSS (this child's own ru_maxrss, from wait4) and exit status."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # output into files: a pipe nobody reads while waiting would fill up and block the child
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out_file, stderr=err_file)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise TimeoutError(f"{' '.join(cmd)} took more than {timeout} s")
            time.sleep(0.02)
        seconds = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read().decode(), err_file.read().decode()
    return {"seconds": round(seconds, 2), "peak_mb": round(usage.ru_maxrss / 1024, 1),
            "status": proc.returncode, "stdout": out, "stderr": err}  # fmt: skip


def start_es(name: str) -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import EsServer  # noqa: PLC0415  (the tests' helper: free ports, es-local.sh)

    server = EsServer(name)
    server.start()
    return server.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds the synthetic run lasts")
    parser.add_argument("--out", default=None, help="folder for the synthetic run (default: a temp folder)")
    parser.add_argument("--es-url", default=None, help="an Elasticsearch to use (default: start one)")
    parser.add_argument("--no-es", action="store_true", help="only the file-mode report")
    parser.add_argument("--load-timeout", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the folder and the indices")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--generate-into", default=None, help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--run-id", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate_into:
        generate(Path(args.generate_into), args.run_id, args.prefix, args.requests, args.duration, args.seed)
        return 0

    out = Path(args.out or tempfile.mkdtemp(prefix="report-scale-"))
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    prefix = f"bench19-{uuid.uuid4().hex[:6]}"
    cli = [sys.executable, "-m", "locust_sink.cli"]
    results: dict[str, Any] = {"requests": args.requests, "duration_s": args.duration}
    es_name = None
    es_url = args.es_url
    try:
        t0 = time.monotonic()
        gen = timed([sys.executable, __file__, "--generate-into", str(out), "--run-id", run_id, "--prefix", prefix,
                     "--requests", str(args.requests), "--duration", str(args.duration), "--seed", str(args.seed)],
                    timeout=1800)  # fmt: skip
        assert gen["status"] == 0, gen["stderr"][-3000:]
        folder = out / run_id
        results["generate_s"] = round(time.monotonic() - t0, 1)
        results["files_mb"] = round(sum(p.stat().st_size for p in folder.glob("*.ndjson")) / 1e6, 1)
        html_files = out / "report-files.html"
        files = timed([*cli, "report", str(folder), "-o", str(html_files)], timeout=600)
        assert files["status"] == 0, files["stderr"][-3000:]
        results["files"] = {"seconds": files["seconds"], "peak_mb": files["peak_mb"],
                            "html_mb": round(html_files.stat().st_size / 1e6, 2)}  # fmt: skip
        count_files = json.loads(timed([*cli, "report", str(folder), "--format", "json"], 600)["stdout"])
        results["files"]["requests_shown"] = count_files["total"]["requests"]
        if not args.no_es:
            if es_url is None:
                es_name = f"bench-report-{os.getpid()}"
                es_url = start_es(es_name)
            load = timed([*cli, "load", str(folder), "--es-url", es_url], timeout=args.load_timeout)
            assert load["status"] == 0, load["stdout"][-2000:] + load["stderr"][-3000:]
            results["load_s"] = load["seconds"]
            html_es = out / "report-es.html"
            es = timed([*cli, "report", run_id, "--es-url", es_url, "--es-index-prefix", prefix, "-o", str(html_es)],
                       timeout=600)  # fmt: skip
            assert es["status"] == 0, es["stderr"][-3000:]
            results["es"] = {"seconds": es["seconds"], "peak_mb": es["peak_mb"],
                             "html_mb": round(html_es.stat().st_size / 1e6, 2)}  # fmt: skip
            shown = timed([*cli, "report", run_id, "--es-url", es_url, "--es-index-prefix", prefix, "--format",
                           "json"], 600)["stdout"]  # fmt: skip
            results["es"]["requests_shown"] = json.loads(shown)["total"]["requests"]
    finally:
        if es_url and not args.no_es and not args.keep:
            _delete_indices(es_url, prefix)
        if es_name:
            subprocess.run(["bash", str(ROOT / "scripts" / "es-local.sh"), "remove", es_name], capture_output=True)
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if verdict(results) else 1


def _delete_indices(es_url: str, prefix: str) -> None:
    from elasticsearch import Elasticsearch

    es = Elasticsearch(es_url, request_timeout=60)
    for family in ("requests", "stats", "runs", "events"):
        es.indices.delete(index=f"{prefix}-{family}", ignore_unavailable=True)


def verdict(r: dict[str, Any]) -> bool:
    ok = r["files"]["seconds"] <= TARGETS["files_s"] and r["files"]["html_mb"] <= TARGETS["html_mb"]
    ok = ok and r["files"]["requests_shown"] == r["requests"]
    if "es" in r:
        ok = ok and r["es"]["seconds"] <= TARGETS["es_s"] and r["es"]["peak_mb"] <= TARGETS["es_mb"]
        ok = ok and r["es"]["html_mb"] <= TARGETS["html_mb"] and r["es"]["requests_shown"] == r["requests"]
    return ok


def table(r: dict[str, Any]) -> str:
    lines = [
        f"synthetic run: {r['requests']:,} requests over {r['duration_s']:.0f} s, {r['files_mb']} MB of NDJSON "
        f"(generated in {r['generate_s']} s)" + (f"; loaded into ES in {r['load_s']} s" if "load_s" in r else ""),
        "",
        "| source | report wall time (s) | peak RSS (MB) | HTML (MB) | requests shown | target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    f = r["files"]
    lines.append(f"| files (streamed) | {f['seconds']} | {f['peak_mb']} | {f['html_mb']} | {f['requests_shown']:,} "
                 f"| <= {TARGETS['files_s']:.0f} s, HTML <= {TARGETS['html_mb']} MB |")  # fmt: skip
    if "es" in r:
        e = r["es"]
        lines.append(
            f"| Elasticsearch (aggregations) | {e['seconds']} | {e['peak_mb']} | {e['html_mb']} | "
            f"{e['requests_shown']:,} | <= {TARGETS['es_s']:.0f} s, <= {TARGETS['es_mb']:.0f} MB |"
        )
    lines.append("")
    lines.append("verdict: " + ("all targets met" if verdict(r) else "a target was missed"))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
