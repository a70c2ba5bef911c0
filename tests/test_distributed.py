"""Issue 5, distributed mode: a real `locust --master --expect-workers 2` and two real `--worker` processes
(headless, against a local httpbin, sink options given to the master only), and a real Elasticsearch.

Proves: one run id (the master's) on every document from every node, including requests made in on_start;
request documents per (type, name, success) == the master's final stats; per-worker final snapshots sum to
the master's, which equals Locust's final stats; the run document is complete; error groups match Locust's
failures; a worker that cannot reach Elasticsearch is named in the run document and loses nothing.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from e2e_util import es_landed, locust_truth
from helpers import es_client, free_port, headless_args, run_locust_distributed, subprocess_env
from test_stats import (
    LOCUSTFILE,
    Run,
    assert_error_groups,
    assert_run_document,
    assert_snapshot_equals_locust,
    by_key,
    check_log,
    events_of,
    final_snapshot,
    indices_with,
    run_document,
    run_ids_in,
    search_all,
)

XDIST_SPREAD = True  # its tests share only session fixtures: spread them over the workers (conftest.py)

pytestmark = pytest.mark.slow

USERS = 6


def run_distributed(
    tmp: Path,
    host: str,
    es_url: str,
    prefix: str,
    run_time: str = "8s",
    worker_env: list[dict[str, str]] | None = None,
) -> tuple[Run, list[str]]:
    """Master (with every sink option) + two bare workers; returns the master's run and the worker logs."""
    name = "master"
    master_args = headless_args(
        LOCUSTFILE, host, USERS, run_time, tmp / name,
        "--es-url", es_url, "--es-index-prefix", prefix, "--sink-dir", str(tmp / "results"),
        "--sink-stats-interval", "2",
    )  # fmt: skip
    envs = worker_env or [{}, {}]
    done = run_locust_distributed(
        master_args,
        ["-f", str(LOCUSTFILE)],
        len(envs),
        timeout=60,
        worker_envs=envs,
        cwd=tmp,
        worker_grace=20,
        master_env={"STATS_TRUTH_FILE": str(tmp / f"{name}-truth.json")},
    )
    rc, worker_rcs = done.master.returncode, [w.returncode for w in done.workers]
    log = done.master.stdout + done.master.stderr
    run = Run(tmp, rc, log, name)
    check_log(log, rc, run)
    worker_logs = [w.stdout + w.stderr for w in done.workers]
    for wlog, wrc in zip(worker_logs, worker_rcs, strict=True):
        check_log(wlog, wrc)
        assert wrc == 0, wlog[-3000:]
    return run, worker_logs


def master_run_id(log: str) -> str:
    match = re.search(r"locust-sink: run (\S+): workers send requests", log)
    assert match, log[-3000:]
    return match.group(1)


def sum_snapshots(per_worker: list[list[dict]]) -> dict[tuple, dict]:
    summed: dict[tuple, dict] = {}
    for docs in per_worker:
        for key, doc in by_key(docs).items():
            acc = summed.setdefault(key, {"num_requests": 0, "num_failures": 0, "response_times": Counter()})
            acc["num_requests"] += doc["num_requests"]
            acc["num_failures"] += doc["num_failures"]
            acc["response_times"].update(doc["response_times"])
    return summed


def test_master_and_two_workers_record_one_consistent_run(tmp_path, es_url, httpbin_url):
    started = time.monotonic()
    prefix = f"t5d-{uuid.uuid4().hex[:8]}"
    run, worker_logs = run_distributed(tmp_path, httpbin_url, es_url, prefix)
    es = es_client(es_url)
    run_id = master_run_id(run.log)

    # one run id, the master's, on every document of every index, from every node
    assert run_ids_in(es, prefix) == {run_id: sum(indices_with(es, prefix, run_id).values())}
    assert set(indices_with(es, prefix, run_id)) == {f"{prefix}-{f}" for f in ("requests", "stats", "runs", "events")}
    for wlog in worker_logs:
        assert f"locust-sink: run {run_id}: recording requests" in wlog
    doc = run_document(es, prefix, run_id)
    workers = doc["workers"]
    assert len(workers) == 2
    nodes = es.search(
        index=f"{prefix}-requests",
        size=0,
        query={"term": {"run_id": run_id}},
        aggs={"n": {"terms": {"field": "node"}, "aggs": {"s": {"filter": {"term": {"name": "on_start"}}}}}},
    )["aggregations"]["n"]["buckets"]
    # each worker wrote its own documents straight to ES, including the requests made in on_start
    assert sorted(b["key"] for b in nodes) == sorted(workers)
    assert sum(b["s"]["doc_count"] for b in nodes) == USERS and all(b["s"]["doc_count"] > 0 for b in nodes)

    # request documents == the master's final stats, per (type, name, success)
    assert dict(es_landed(es, f"{prefix}-requests", run_id)["counts"]) == dict(locust_truth(run.json_path)["counts"])

    # final snapshots: master == Locust's final stats; per-worker snapshots sum to the master's
    master_final = final_snapshot(es, prefix, run_id, "master", "master")
    assert_snapshot_equals_locust(master_final, run.entries, run.truth["total"])
    per_worker = [final_snapshot(es, prefix, run_id, "worker", w) for w in workers]
    assert all(per_worker)
    summed = sum_snapshots(per_worker)
    master_keyed = by_key(master_final)
    assert set(summed) == set(master_keyed)
    for key, acc in summed.items():
        assert acc["num_requests"] == master_keyed[key]["num_requests"], key
        assert acc["num_failures"] == master_keyed[key]["num_failures"], key
        assert dict(acc["response_times"]) == master_keyed[key]["response_times"], key
    # per-worker snapshots during the run, too (not only the final one)
    worker_rows = search_all(
        es, f"{prefix}-stats", {"bool": {"filter": [{"term": {"run_id": run_id}}, {"term": {"source": "worker"}}]}}
    )
    for worker, final in zip(workers, per_worker, strict=True):
        rows = [d for d in worker_rows if d["is_aggregated"] and d["node"] == worker]
        assert len(rows) >= 3  # every few seconds, and the final one
        # intervals are the worker's reports: they add up to its final cumulative count
        assert sum(d["interval_requests"] for d in rows) == by_key(final)[(None, "Aggregated")]["num_requests"]
        # each worker's own CPU % and RSS ride on its Aggregated rows (the first may precede a CPU window)
        measured = [d for d in rows if "cpu_percent" in d]
        assert measured and len(measured) >= len(rows) - 1, rows[-1]
        for d in measured:
            assert 0 <= d["cpu_percent"] <= 400 and d["memory_rss_bytes"] > 10 * 2**20, d
    master_total = by_key(master_final)[(None, "Aggregated")]
    assert 0 <= master_total["cpu_percent"] <= 400 and master_total["memory_rss_bytes"] > 10 * 2**20, master_total

    print(
        f"\ndistributed run {run_id}: {run.truth['total']['num_requests']} requests "
        f"({run.truth['total']['num_failures']} failures), per worker "
        f"{[by_key(f)[(None, 'Aggregated')]['num_requests'] for f in per_worker]}, "
        f"{len(run.truth['errors'])} failure groups, {sum(x['count'] for x in run.truth['exceptions'])} user errors"
    )
    assert_run_document(doc, run_id, run.truth, run.rc)
    assert doc["mode"] == "distributed" and doc["expected_workers"] == 2 and doc["users"] == USERS
    assert doc["sink"]["emitted"] == run.truth["total"]["num_requests"]  # as reported by the workers
    assert_error_groups(es, prefix, run_id, run.truth)

    joined = events_of(es, prefix, run_id, "worker_joined")
    assert sorted(e["node"] for e in joined) == sorted(workers)
    summaries = events_of(es, prefix, run_id, "sink_summary")
    assert sorted(e["node"] for e in summaries) == sorted([*workers, "master"])
    for summary in summaries:
        if summary["node"] != "master":
            requests = summary["details"]["requests"]
            assert requests["emitted"] == requests["indexed"] > 0
    live_errors = [e for e in events_of(es, prefix, run_id, "user_error") if not e["details"].get("final")]
    assert live_errors and {e["node"] for e in live_errors} <= set(workers)
    assert time.monotonic() - started < 45


def test_worker_that_cannot_reach_es_is_named_and_loses_nothing(tmp_path, es_url, httpbin_url):
    prefix = f"t5t-{uuid.uuid4().hex[:8]}"
    dead = f"http://127.0.0.1:{free_port()}"
    run, worker_logs = run_distributed(
        tmp_path, httpbin_url, es_url, prefix, run_time="6s", worker_env=[{}, {"STATS_BREAK_ES_URL": dead}]
    )
    es = es_client(es_url)
    run_id = master_run_id(run.log)
    doc = run_document(es, prefix, run_id)
    assert len(doc["sink_trouble_nodes"]) == 1, doc["sink_trouble_nodes"]
    broken = doc["sink_trouble_nodes"][0]
    assert broken in doc["workers"]
    assert any("unreachable" in m and "spool" in m for m in doc["sink_trouble"][broken])
    trouble = events_of(es, prefix, run_id, "sink_trouble")
    assert {e["node"] for e in trouble} == {broken}
    assert "spool" in worker_logs[1]

    # the broken worker's documents wait in its spool; a replay completes the picture exactly
    landed = es_landed(es, f"{prefix}-requests", run_id)
    assert broken not in {b["key"] for b in _nodes(es, prefix, run_id)}
    truth = locust_truth(run.json_path)
    assert sum(landed["counts"].values()) < sum(truth["counts"].values())
    proc = subprocess.run(
        [sys.executable, "-m", "locust_sink.cli", "replay", str(tmp_path / "results" / "spool"), "--es-url", es_url],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dict(es_landed(es, f"{prefix}-requests", run_id)["counts"]) == dict(truth["counts"])
    assert run_ids_in(es, prefix).keys() == {run_id}


def _nodes(es, prefix: str, run_id: str) -> list[dict]:
    es.indices.refresh(index=f"{prefix}-requests")
    return es.search(
        index=f"{prefix}-requests",
        size=0,
        query={"term": {"run_id": run_id}},
        aggs={"n": {"terms": {"field": "node"}}},
    )["aggregations"]["n"]["buckets"]
