"""Issue 5: aggregated snapshots, the run document, events and sampling.

Unit tests check the building blocks against Locust's own functions; the end-to-end tests run real
`locust --headless` processes against a real httpbin and a real Elasticsearch and compare what landed with
Locust's own final figures (`--json-file`, and $STATS_TRUTH_FILE written by the locustfile at `quit`).
The distributed tests (master + workers) are in test_distributed.py and reuse the helpers below.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from e2e_util import es_landed, locust_truth
from helpers import es_client, headless_args, run_locust
from locust.stats import RequestStats, StatsEntry, calculate_response_time_percentile

from locust_sink.stats import (
    PERCENTILE_FIELDS,
    PERCENTILES,
    entry_document,
    git_commit,
    merge_report,
    merge_stats,
    percentile_values,
)

XDIST_SPREAD = True  # its tests share only session fixtures: spread them over the workers (conftest.py)

HERE = Path(__file__).parent
LOCUSTFILE = HERE / "locustfiles" / "stats_run.py"
PROC_TIMEOUT = 60


# ------------------------------------------------------------------------------------ process helpers


class Run:
    """One finished headless Locust run (standalone or the master of a distributed one)."""

    def __init__(self, tmp: Path, proc_rc: int, log: str, name: str) -> None:
        self.tmp = tmp
        self.rc = proc_rc
        self.log = log
        self.json_path = tmp / f"{name}.json"
        self.truth_path = tmp / f"{name}-truth.json"

    @property
    def entries(self) -> list[dict[str, Any]]:
        return json.loads(self.json_path.read_text())

    @property
    def truth(self) -> dict[str, Any]:
        return json.loads(self.truth_path.read_text())


def run_standalone(
    tmp: Path,
    host: str,
    es_url: str,
    prefix: str,
    *extra: str,
    users: int = 5,
    run_time: str = "6s",
    name: str = "run",
    env: dict[str, str] | None = None,
) -> Run:
    args = headless_args(
        LOCUSTFILE, host, users, run_time, tmp / name,
        "--es-url", es_url, "--es-index-prefix", prefix, "--sink-dir", str(tmp / f"{name}-results"),
        "--sink-stats-interval", "2", *extra,
    )  # fmt: skip
    full_env = {"STATS_TRUTH_FILE": str(tmp / f"{name}-truth.json"), **(env or {})}
    proc = run_locust(args, env=full_env, cwd=tmp, timeout=PROC_TIMEOUT, label=name)
    log = proc.stdout + proc.stderr
    run = Run(tmp, proc.returncode, log, name)
    check_log(log, proc.returncode, run)
    return run


def check_log(log: str, rc: int, run: Run | None = None) -> None:
    # the locustfile raises ValueError on purpose (user_error); anything else in a traceback is a bug
    tracebacks = log.count("Traceback")
    assert tracebacks == log.count("ValueError: boom on purpose"), log[-4000:]
    assert "locust-sink: stats" not in log and "locust-sink: final snapshot" not in log, log[-4000:]
    assert "UNBALANCED" not in log, log[-3000:]
    if run is not None:
        assert rc == run.truth["exit_code"], (rc, log[-3000:])


# --------------------------------------------------------------------------------------- ES helpers


def search_all(es: Any, index: str, query: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    es.indices.refresh(index=index)
    resp = es.search(index=index, query=query, size=10_000, **kwargs)
    return [h["_source"] for h in resp["hits"]["hits"]]


def run_ids_in(es: Any, prefix: str) -> dict[str, int]:
    """Documents per run id over all four indices of a prefix."""
    es.indices.refresh(index=f"{prefix}-*")
    resp = es.search(index=f"{prefix}-*", size=0, aggs={"r": {"terms": {"field": "run_id", "size": 100}}})
    return {b["key"]: b["doc_count"] for b in resp["aggregations"]["r"]["buckets"]}


def indices_with(es: Any, prefix: str, run_id: str) -> dict[str, int]:
    resp = es.search(
        index=f"{prefix}-*",
        size=0,
        query={"term": {"run_id": run_id}},
        aggs={"i": {"terms": {"field": "_index", "size": 10}}},
    )
    return {b["key"]: b["doc_count"] for b in resp["aggregations"]["i"]["buckets"]}


def final_snapshot(es: Any, prefix: str, run_id: str, source: str, node: str | None = None) -> list[dict]:
    must: list[dict] = [{"term": {"run_id": run_id}}, {"term": {"final": True}}, {"term": {"source": source}}]
    if node:
        must.append({"term": {"node": node}})
    return search_all(es, f"{prefix}-stats", {"bool": {"filter": must}})


def events_of(es: Any, prefix: str, run_id: str, kind: str) -> list[dict]:
    query = {"bool": {"filter": [{"term": {"run_id": run_id}}, {"term": {"event": kind}}]}}
    return search_all(es, f"{prefix}-events", query)


def run_document(es: Any, prefix: str, run_id: str) -> dict[str, Any]:
    es.indices.refresh(index=f"{prefix}-runs")
    return es.get(index=f"{prefix}-runs", id=run_id)["_source"]


def by_key(docs: list[dict]) -> dict[tuple[str | None, str], dict]:
    keyed = {(d.get("request_type"), d["name"]): d for d in docs}
    assert len(keyed) == len(docs), "one final document per endpoint and source"
    return keyed


def assert_snapshot_equals_locust(docs: list[dict], entries: list[dict], total: dict[str, Any]) -> None:
    """A final snapshot (one source) against Locust's --json-file entries and its final total."""
    keyed = by_key(docs)
    expected = {(e["method"], e["name"]) for e in entries} | {(None, "Aggregated")}
    assert set(keyed) == expected
    for e in entries:
        doc = keyed[(e["method"], e["name"])]
        assert doc["num_requests"] == e["num_requests"], e["name"]
        assert doc["num_failures"] == e["num_failures"], e["name"]
        assert doc["num_none_requests"] == e["num_none_requests"]
        assert doc["response_times"] == {str(k): v for k, v in e["response_times"].items()}, e["name"]
        assert doc["min_response_time"] == e["min_response_time"]
        assert doc["max_response_time"] == e["max_response_time"]
        assert doc["total_content_length"] == e["total_content_length"]
        assert math.isclose(doc["total_response_time"], e["total_response_time"], rel_tol=1e-9)
        valid = e["num_requests"] - e["num_none_requests"]
        for percent, field in zip(PERCENTILES, PERCENTILE_FIELDS, strict=True):
            hist = {int(k): v for k, v in e["response_times"].items()}
            assert doc["percentiles"][field] == calculate_response_time_percentile(hist, valid, percent)
    agg = keyed[(None, "Aggregated")]
    assert agg["is_aggregated"] is True
    assert agg["num_requests"] == total["num_requests"] == sum(e["num_requests"] for e in entries)
    assert agg["num_failures"] == total["num_failures"] == sum(e["num_failures"] for e in entries)
    assert agg["response_times"] == total["response_times"]
    assert all(d["final"] is True for d in docs)


def assert_error_groups(es: Any, prefix: str, run_id: str, truth: dict[str, Any]) -> None:
    groups = events_of(es, prefix, run_id, "failure_group")
    got = Counter((g["request_type"], g["name"], g["error"], g["occurrences"]) for g in groups)
    want = Counter((e["method"], e["name"], e["error"], e["occurrences"]) for e in truth["errors"])
    assert got == want
    finals = [e for e in events_of(es, prefix, run_id, "user_error") if e.get("details", {}).get("final")]
    assert Counter((e["message"], e["occurrences"]) for e in finals) == Counter(
        (x["msg"], x["count"]) for x in truth["exceptions"]
    )


def assert_run_document(doc: dict[str, Any], run_id: str, truth: dict[str, Any], rc: int) -> None:
    for key in ("run_id", "status", "start_time", "end_time", "duration_s", "locustfile", "host", "users"):
        assert doc.get(key) not in (None, ""), key
    assert doc["run_id"] == run_id
    assert doc["exit_code"] == rc == truth["exit_code"]
    assert doc["status"] == ("failed" if rc else "stopped")
    assert doc["end_time"] >= doc["start_time"] and doc["duration_s"] > 0
    assert doc["user_classes"] == [{"name": "StatsUser", "weight": 1, "fixed_count": 0}]
    assert doc["totals"]["requests"] == truth["total"]["num_requests"]
    assert doc["totals"]["failures"] == truth["total"]["num_failures"]
    hist = {int(k): v for k, v in truth["total"]["response_times"].items()}
    n = truth["total"]["num_requests"]
    assert doc["totals"]["p95"] == calculate_response_time_percentile(hist, n, 0.95)
    assert doc["locust_version"] and doc["sink_version"] and doc["hostname"]
    assert doc["sink_trouble_nodes"] == []
    assert doc["sink"]["dropped"] == 0 and doc["sink"]["dead_lettered"] == 0


# ------------------------------------------------------------------------------------------- unit tests


def test_percentiles_match_locust_for_random_histograms():
    rng = random.Random(5)
    for _ in range(300):
        hist = {
            rng.choice([rng.randint(0, 99), rng.randint(1, 99) * 10, rng.randint(1, 99) * 100]): 0 for _ in range(40)
        }
        hist = {k: rng.randint(1, 50) for k in hist}
        n = sum(hist.values())
        got = percentile_values(hist, n)
        for percent, field in zip(PERCENTILES, PERCENTILE_FIELDS, strict=True):
            assert got[field] == calculate_response_time_percentile(hist, n, percent), (percent, hist)
    assert percentile_values({}, 0) == dict.fromkeys(PERCENTILE_FIELDS, 0)
    # inconsistent input (fewer samples than requests) gives 0 like Locust
    assert percentile_values({5: 1}, 10)["p50"] == calculate_response_time_percentile({5: 1}, 10, 0.5)


def _worker_reports(rng: random.Random, n_reports: int) -> list[dict[str, Any]]:
    """Reports as a worker sends them: Locust's own report_to_master listener on a fresh RequestStats."""
    from locust.event import Events
    from locust.stats import setup_distributed_stats_event_listeners

    events = Events()
    stats = RequestStats(use_response_times_cache=False)
    setup_distributed_stats_event_listeners(events, stats)
    reports = []
    for _ in range(n_reports):
        for _ in range(rng.randint(0, 200)):
            name = rng.choice(["/a", "/b", "/c"])
            method = rng.choice(["GET", "POST"])
            stats.log_request(method, name, rng.expovariate(1 / 80), rng.randint(0, 999))
            if rng.random() < 0.1:
                stats.log_error(method, name, rng.choice(["e1", "e2"]))
        data: dict[str, Any] = {}
        events.report_to_master.fire(client_id="w", data=data)
        reports.append(data)
    return reports


def test_per_worker_sums_equal_locusts_master_merge():
    from locust.event import Events
    from locust.stats import setup_distributed_stats_event_listeners

    rng = random.Random(7)
    master_events = Events()
    master = RequestStats()
    setup_distributed_stats_event_listeners(master_events, master)
    per_worker = {w: RequestStats(use_response_times_cache=False) for w in ("w1", "w2", "w3")}
    for worker, mirror in per_worker.items():
        for data in _worker_reports(rng, 5):
            master_events.worker_report.fire(client_id=worker, data=data)
            merge_report(mirror, data)
    merged = merge_stats(per_worker.values())
    assert set(merged.entries) == {k for k, e in master.entries.items() if e.num_requests or e.num_failures}
    for key, entry in merged.entries.items():
        ref = master.entries[key]
        for attr in ("num_requests", "num_failures", "min_response_time", "max_response_time", "total_content_length"):
            assert getattr(entry, attr) == getattr(ref, attr), (key, attr)
        assert dict(entry.response_times) == dict(ref.response_times)
        assert math.isclose(entry.total_response_time, ref.total_response_time, rel_tol=1e-12)
    assert merged.total.num_requests == master.total.num_requests
    assert dict(merged.total.response_times) == dict(master.total.response_times)
    assert {k: e.occurrences for k, e in merged.errors.items()} == {k: e.occurrences for k, e in master.errors.items()}


def test_entry_document_fields_and_interval():
    stats = RequestStats()
    for rt in (10, 20, 30, 400):
        stats.log_request("GET", "/x", rt, 100)
    stats.log_error("GET", "/x", "boom")
    entry: StatsEntry = stats.entries[("/x", "GET")]
    base = {"@timestamp": "t", "run_id": "r", "node": "local", "source": "local"}
    doc = entry_document(entry, base, (1, 0), 3.0, 4, False, False)
    assert doc["request_type"] == "GET" and doc["name"] == "/x" and doc["is_aggregated"] is False
    assert (doc["num_requests"], doc["num_failures"], doc["interval_requests"], doc["interval_failures"]) == (
        4,
        1,
        3,
        1,
    )
    assert doc["response_times"] == {10: 1, 20: 1, 30: 1, 400: 1}
    assert doc["percentiles"]["p100"] == 400 and doc["percentiles"]["p50"] == 30  # as Locust computes it
    assert doc["user_count"] == 4 and doc["avg_content_length"] == 100
    stored = orjson.loads(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS))
    assert stored["response_times"] == {"10": 1, "20": 1, "30": 1, "400": 1}  # keys as strings in ES
    agg = entry_document(stats.total, base, (0, 0), 3.0, None, True, True)
    assert "request_type" not in agg and agg["name"] == "Aggregated" and agg["final"] is True


def test_git_commit_reads_head_branch_and_packed_refs(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / "sub").mkdir()
    (repo / "sub" / "locustfile.py").write_text("")
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "refs" / "heads" / "main").write_text("a" * 40 + "\n")
    assert git_commit(str(repo / "sub" / "locustfile.py")) == "a" * 40
    (repo / ".git" / "refs" / "heads" / "main").unlink()
    (repo / ".git" / "packed-refs").write_text("# pack-refs\n" + "b" * 40 + " refs/heads/main\n")
    assert git_commit(str(repo / "sub" / "locustfile.py")) == "b" * 40
    (repo / ".git" / "HEAD").write_text("c" * 40 + "\n")  # detached
    assert git_commit(str(repo / "sub" / "locustfile.py")) == "c" * 40
    assert git_commit(str(tmp_path / "elsewhere.py")) in (None, git_commit(str(tmp_path)))
    assert git_commit(None) is None


def test_in_process_run_documents_without_secrets(tmp_path, httpbin_url):
    """attach() on a hand-built Environment, file mode: run document, snapshots and events are written,
    the run's totals match Locust's, and no secret appears anywhere (the options are never stored)."""
    import gevent
    from locust import HttpUser, constant, task
    from locust.env import Environment

    import locust_sink

    class QuickUser(HttpUser):
        wait_time = constant(0.02)

        @task
        def get(self):
            self.client.get("/status/200")
            self.client.get("/status/500")

    env = Environment(user_classes=[QuickUser], host=httpbin_url)
    sink = locust_sink.attach(
        env,
        sink_dir=str(tmp_path / "out"),
        es_password="s3cret-password-xyz",
        es_api_key="s3cret-api-key-xyz",
        run_tag=["suite=unit", "team=perf"],
        run_description="in-process run",
        sink_stats_interval=0.5,
    )
    runner = env.create_local_runner()
    runner.start(3, spawn_rate=30)
    gevent.sleep(2.0)
    runner.quit()
    assert sink.close(timeout=10)
    docs = _file_documents(tmp_path / "out")
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert b"s3cret" not in path.read_bytes(), path
    runs = docs["runs"]
    final_run = runs[-1]
    assert final_run["run_id"] == sink.run_id and final_run["status"] == "stopped"
    assert final_run["tags"] == {"suite": "unit", "team": "perf"} and final_run["description"] == "in-process run"
    assert final_run["totals"]["requests"] == runner.stats.total.num_requests > 0
    assert final_run["totals"]["failures"] == runner.stats.total.num_failures > 0
    assert final_run["sink"]["emitted"] == runner.stats.total.num_requests
    assert final_run["sink"]["written"] == final_run["sink"]["emitted"]
    finals = [d for d in docs["stats"] if d["final"]]
    agg = next(d for d in finals if d["is_aggregated"])
    assert agg["num_requests"] == runner.stats.total.num_requests
    assert sum(d["interval_requests"] for d in docs["stats"] if d["is_aggregated"]) == agg["num_requests"]
    kinds = Counter(e["event"] for e in docs["events"])
    assert kinds["test_start"] == kinds["test_stop"] == kinds["sink_summary"] == 1
    assert kinds["failure_group"] == 1 and kinds["spawning_complete"] == 1
    assert {d["run_id"] for family in docs.values() for d in family} == {sink.run_id}


def _file_documents(folder: Path) -> dict[str, list[dict]]:
    """Documents per family from NDJSON bulk files, in write order."""
    docs: dict[str, list[dict]] = {}
    for path in sorted(folder.rglob("*.ndjson")):
        lines = path.read_bytes().splitlines()
        for action, source in zip(lines[0::2], lines[1::2], strict=True):
            index = next(iter(orjson.loads(action).values()))["_index"]
            docs.setdefault(index.rsplit("-", 1)[1], []).append(orjson.loads(source))
    return docs


def test_restarts_from_the_web_ui_make_separate_finalized_runs(tmp_path, httpbin_url):
    """Start/stop twice in one process (as from the web UI): two run ids, each run finalized at its stop."""
    import gevent
    from locust import HttpUser, constant, task
    from locust.env import Environment

    import locust_sink

    class QuickUser(HttpUser):
        wait_time = constant(0.02)

        @task
        def get(self):
            self.client.get("/status/200")

    env = Environment(user_classes=[QuickUser], host=httpbin_url)
    sink = locust_sink.attach(env, sink_dir=str(tmp_path / "out"), sink_stats_interval=0.4)
    runner = env.create_local_runner()
    totals = {}
    for _ in range(2):
        runner.start(2, spawn_rate=20)
        gevent.sleep(1.2)
        runner.stop()
        totals[sink.run_id] = runner.stats.total.num_requests
        gevent.sleep(0.2)
    runner.quit()
    assert sink.close(timeout=10)
    assert len(totals) == 2
    docs = _file_documents(tmp_path / "out")
    for run_id, requests in totals.items():
        last = [d for d in docs["runs"] if d["run_id"] == run_id][-1]
        assert last["status"] == "stopped" and last["end_time"] and last["totals"]["requests"] == requests > 0
        finals = [d for d in docs["stats"] if d["run_id"] == run_id and d["final"] and d["is_aggregated"]]
        assert [d["num_requests"] for d in finals] == [requests]
        assert sum(1 for d in docs["requests"] if d["run_id"] == run_id) == requests
        kinds = Counter(e["event"] for e in docs["events"] if e["run_id"] == run_id)
        assert kinds["test_start"] == kinds["test_stop"] == 1


# --------------------------------------------------------------------------------- end to end (real ES)


@pytest.mark.slow
def test_standalone_run_stats_events_and_run_document(tmp_path, es_url, httpbin_url):
    prefix = f"t5-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    run = run_standalone(
        tmp_path,
        httpbin_url,
        es_url,
        prefix,
        "--run-tag",
        "suite=stats",
        "--run-description",
        "standalone proof",
        run_time="7s",
    )
    es = es_client(es_url)
    ids = run_ids_in(es, prefix)
    assert len(ids) == 1, ids
    run_id = next(iter(ids))
    assert set(indices_with(es, prefix, run_id)) == {f"{prefix}-{f}" for f in ("requests", "stats", "runs", "events")}

    # every request document, per (type, name, success), equals Locust's final stats
    truth = locust_truth(run.json_path)
    assert dict(es_landed(es, f"{prefix}-requests", run_id)["counts"]) == dict(truth["counts"])

    # the final snapshot equals Locust's final stats, entry by entry and in total
    finals = final_snapshot(es, prefix, run_id, "local", "local")
    assert_snapshot_equals_locust(finals, run.entries, run.truth["total"])
    # periodic snapshots: several, cumulative counts never decrease, intervals add up to the total
    aggs = sorted(
        search_all(es, f"{prefix}-stats", {"bool": {"filter": [{"term": {"run_id": run_id}}]}}),
        key=lambda d: d["@timestamp"],
    )
    agg_rows = [d for d in aggs if d["is_aggregated"]]
    assert len(agg_rows) >= 3
    assert [d["num_requests"] for d in agg_rows] == sorted(d["num_requests"] for d in agg_rows)
    assert sum(d["interval_requests"] for d in agg_rows) == run.truth["total"]["num_requests"]

    doc = run_document(es, prefix, run_id)
    assert_run_document(doc, run_id, run.truth, run.rc)
    assert doc["tags"] == {"suite": "stats"} and doc["description"] == "standalone proof"
    assert doc["mode"] == "standalone" and doc["sample_rate"] == 1.0 and doc["run_time_limit"] == 7
    assert doc["sink"]["emitted"] == doc["sink"]["indexed"] == run.truth["total"]["num_requests"]
    assert_error_groups(es, prefix, run_id, run.truth)

    kinds = Counter(e["event"] for e in search_all(es, f"{prefix}-events", {"term": {"run_id": run_id}}))
    assert kinds["test_start"] == kinds["test_stop"] == kinds["spawning_complete"] == 1
    assert kinds["user_count"] >= 1 and kinds["sink_summary"] == 1
    live = [e for e in events_of(es, prefix, run_id, "user_error") if not e.get("details", {}).get("final")]
    assert live and all("boom on purpose" in e["traceback"] and e["details"]["user_class"] == "StatsUser" for e in live)
    assert time.monotonic() - started < 40


@pytest.mark.slow
def test_sampling_keeps_every_failure_and_a_binomial_share_of_successes(tmp_path, es_url, httpbin_url):
    prefix = f"t5s-{uuid.uuid4().hex[:8]}"
    rate = 0.1
    run = run_standalone(
        tmp_path,
        httpbin_url,
        es_url,
        prefix,
        "--sink-sample-rate",
        str(rate),
        users=12,
        run_time="8s",
        env={"STATS_WAIT": "0.005"},
    )
    es = es_client(es_url)
    (run_id,) = run_ids_in(es, prefix)
    truth = locust_truth(run.json_path)["counts"]
    landed = es_landed(es, f"{prefix}-requests", run_id)["counts"]
    failures = {k: v for k, v in truth.items() if not k[2]}
    successes = sum(v for k, v in truth.items() if k[2])
    # every failure is kept, per endpoint and error class
    assert {k: landed.get(k, 0) for k in failures} == failures and sum(failures.values()) > 50
    # successes: K ~ Binomial(S, R); accept |K - R*S| <= 5 sigma (false alarm ~ 6e-7)
    kept = sum(v for k, v in landed.items() if k[2])
    sigma = math.sqrt(successes * rate * (1 - rate))
    print(
        f"\nsampling R={rate}: successes S={successes}, kept K={kept} "
        f"(expected {rate * successes:.1f}, sigma {sigma:.1f})"
    )
    assert successes >= 500, successes  # enough for the bound to mean something (sigma >= 6.7)
    assert abs(kept - rate * successes) <= 5 * sigma + 1, (kept, successes, sigma)
    # documents say how to scale back: sample_rate on kept successes, absent on failures (weight 1)
    rates = es.search(
        index=f"{prefix}-requests",
        size=0,
        query={"term": {"run_id": run_id}},
        aggs={"s": {"terms": {"field": "success"}, "aggs": {"r": {"terms": {"field": "sample_rate", "missing": -1}}}}},
    )["aggregations"]["s"]["buckets"]
    seen = {b["key_as_string"]: {r["key"]: r["doc_count"] for r in b["r"]["buckets"]} for b in rates}
    assert seen["true"] == {rate: kept}
    assert seen["false"] == {-1: sum(failures.values())}
    # snapshots and run totals stay exact (they come from Locust's stats, not from the sampled documents)
    doc = run_document(es, prefix, run_id)
    assert doc["sample_rate"] == rate
    assert doc["totals"]["requests"] == run.truth["total"]["num_requests"]
    assert doc["sink"]["emitted"] + doc["sink"]["sampled_out"] == run.truth["total"]["num_requests"]
    finals = final_snapshot(es, prefix, run_id, "local", "local")
    assert_snapshot_equals_locust(finals, run.entries, run.truth["total"])


@pytest.mark.slow
def test_two_runs_back_to_back_stay_separable(tmp_path, es_url, httpbin_url):
    prefix = f"t5b-{uuid.uuid4().hex[:8]}"
    runs = []
    for name in ("first", "second"):
        run = run_standalone(tmp_path, httpbin_url, es_url, prefix, users=3, run_time="4s", name=name)
        runs.append(run)
    es = es_client(es_url)
    ids = run_ids_in(es, prefix)
    assert len(ids) == 2, ids
    es.indices.refresh(index=f"{prefix}-runs")
    run_docs = search_all(es, f"{prefix}-runs", {"match_all": {}})
    assert len(run_docs) == 2
    by_start = sorted(run_docs, key=lambda d: d["start_time"])
    for run, doc in zip(runs, by_start, strict=True):
        run_id = doc["run_id"]
        truth = locust_truth(run.json_path)
        assert dict(es_landed(es, f"{prefix}-requests", run_id)["counts"]) == dict(truth["counts"])
        assert_snapshot_equals_locust(final_snapshot(es, prefix, run_id, "local"), run.entries, run.truth["total"])
        assert_run_document(doc, run_id, run.truth, run.rc)
        assert_error_groups(es, prefix, run_id, run.truth)
    assert by_start[0]["end_time"] <= by_start[1]["start_time"]


@pytest.mark.slow
def test_final_flush_and_run_document_even_if_quit_never_fires(tmp_path, es_url, httpbin_url):
    """Locust's shutdown fails between `quitting` and `quit` (here: --json-file cannot be written): the
    sink's interpreter-exit fallback still finalizes the run and delivers everything.

    The pause at `quitting` makes the flusher idle when the interpreter exits, its connection back in the
    client's pool: that is when an exit hook that ran before the sink's (urllib3's pool finalizer) emptied the
    pool and the final flush waited for a connection until its deadline."""
    prefix = f"t5q-{uuid.uuid4().hex[:8]}"
    args = [
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        "3",
        "-r",
        "3",
        "-t",
        "3s",
        "--host",
        httpbin_url,
        "--json-file",
        "/dev/null/cannot",
        "--es-url",
        es_url,
        "--es-index-prefix",
        prefix,
        "--sink-dir",
        str(tmp_path / "results"),
    ]
    proc = run_locust(args, env={"STATS_PAUSE_AT_QUITTING": "2.5"}, cwd=tmp_path, timeout=PROC_TIMEOUT)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "/dev/null" in log
    assert "quit event did not fire; final flush at interpreter exit" in log, log[-3000:]
    match = re.search(r"request records -> .*?: emitted=(\d+) indexed=(\d+) \(balanced\)", log)
    assert match and match.group(1) == match.group(2), log[-3000:]
    es = es_client(es_url)
    (run_id,) = run_ids_in(es, prefix)
    doc = run_document(es, prefix, run_id)
    assert doc["status"] == "stopped" and doc["end_time"] and "exit_code" not in doc
    assert doc["totals"]["requests"] == int(match.group(1)) == doc["sink"]["indexed"]
    finals = final_snapshot(es, prefix, run_id, "local")
    assert by_key(finals)[(None, "Aggregated")]["num_requests"] == int(match.group(1))
