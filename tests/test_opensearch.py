"""Issue 17 §2: everything the Elasticsearch path proves, proven against a real OpenSearch.

Each test runs once per version of OPENSEARCH_VERSIONS (2.19.6 always; 3.8.0 where a JDK 21+ exists, else
skipped with the reason), on the session's OpenSearch servers (`opensearch_url`, each started once) or, where
the test kills or starts the server itself, on its own instance. Real `locust` processes against the real
httpbin; what landed is read back through opensearch-py (helpers.OpenSearchClient) with the same checks the
Elasticsearch tests make (e2e_util, test_stats, test_distributed, test_faults, test_report), and compared
with Locust's own `--json-file` stats.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest
from conftest import OPENSEARCH_IDS, skip_without_jdk
from e2e_util import assert_matches, es_landed, file_landed, locust_truth
from helpers import OPENSEARCH_VERSIONS, ROOT, EsServer, OpenSearchClient, headless_args, run_locust, subprocess_env
from test_distributed import USERS, master_run_id, run_distributed, sum_snapshots
from test_faults import FAULTS, PEAK_RSS_LIMIT_KB, LocustRun, accounting, peak_rss_kb, run_id_of
from test_report import LOCUSTFILE as REPORT_LOCUSTFILE
from test_report import PERCENTILES, truth
from test_report import Run as ReportRun
from test_stats import (
    assert_error_groups,
    assert_run_document,
    assert_snapshot_equals_locust,
    by_key,
    events_of,
    final_snapshot,
    indices_with,
    run_document,
    run_ids_in,
    run_standalone,
    search_all,
)

from locust_sink.opensearch import FREE_FORM_LEAF_CHARS
from locust_sink.report.es import read_es_run
from locust_sink.report.model import TOTAL

pytestmark = pytest.mark.slow

E2E = Path(__file__).parent / "locustfiles" / "e2e.py"
FAMILIES = ("requests", "stats", "runs", "events")


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a `locust-sink` command: this tree's package, no inherited LOCUST_* options."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess_env({"PYTHONPATH": path, **(extra or {})})


def run_command(command: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A command line run by bash as a user would type it."""
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env=cli_env(env))  # fmt: skip


def shell(command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """run_command, exit status 0 and no traceback asserted; its stdout + stderr."""
    proc = run_command(command, cwd, env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{command}\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    return out


def json_of(command: str, cwd: Path) -> dict | list:
    """The JSON a command prints on stdout (exit status 0 asserted)."""
    proc = run_command(command, cwd)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, f"{command}\n{proc.stdout[-2000:]}{proc.stderr}"
    return json.loads(proc.stdout)


def end_line(log: str) -> str:
    """The sink's end-of-run line (`N request records -> PRODUCT URL (indices ...): emitted=... (balanced)`)."""
    match = re.search(r"request records -> .*\((?:balanced|UNBALANCED)\).*", log)
    assert match, log[-3000:]
    return match.group(0)


def requests_in(os_client: OpenSearchClient, prefix: str, run_id: str) -> int:
    os_client.indices.refresh(index=f"{prefix}-requests")
    return os_client.count(index=f"{prefix}-requests", query={"term": {"run_id": run_id}})["count"]


@pytest.fixture(params=OPENSEARCH_VERSIONS, ids=OPENSEARCH_IDS)
def own_opensearch(request):
    """An OpenSearch of its own (not started) for a test that kills or starts it; removed at the end."""
    version: str = request.param
    skip_without_jdk(version)
    server = EsServer(f"os-own-{uuid.uuid4().hex[:6]}", dist="opensearch", version=version)
    try:
        yield server
    finally:
        server.remove()


# ------------------------------------------------------------------------ 1. counts, snapshots, run documents


@pytest.mark.parametrize("backend", ["auto", "opensearch"])
def test_standalone_run_lands_exactly_with_snapshots_and_run_document(tmp_path, opensearch_url, httpbin_url, backend):
    """`--es-backend auto` (the default: picked from `GET /`) and forced `opensearch`: every request document
    per (type, name, success) with its response-time and size sums equal Locust's --json-file; the final
    snapshot equals Locust's final stats entry by entry (histograms and percentiles); periodic snapshots add up;
    the run document, error groups and events are complete; the free-form fields are `flat_object`."""
    prefix = f"os1-{uuid.uuid4().hex[:8]}"
    extra = [] if backend == "auto" else ["--es-backend", "opensearch"]
    run = run_standalone(tmp_path, httpbin_url, opensearch_url, prefix, "--run-tag", "suite=os", *extra, run_time="7s")
    assert re.search(r"-> OpenSearch .*emitted=(\d+) indexed=\1 \(balanced\)", end_line(run.log)), end_line(run.log)
    os_client = OpenSearchClient(opensearch_url)
    ids = run_ids_in(os_client, prefix)
    assert len(ids) == 1, ids
    run_id = next(iter(ids))
    assert set(indices_with(os_client, prefix, run_id)) == {f"{prefix}-{f}" for f in FAMILIES}

    truth_stats = locust_truth(run.json_path)
    assert sum(truth_stats["counts"].values()) > 100 and any(not k[2] for k in truth_stats["counts"])
    assert_matches(truth_stats, es_landed(os_client, f"{prefix}-requests", run_id))

    assert_snapshot_equals_locust(final_snapshot(os_client, prefix, run_id, "local", "local"), run.entries,
                                  run.truth["total"])  # fmt: skip
    rows = search_all(os_client, f"{prefix}-stats", {"bool": {"filter": [{"term": {"run_id": run_id}}]}})
    agg_rows = sorted((d for d in rows if d["is_aggregated"]), key=lambda d: d["@timestamp"])
    assert len(agg_rows) >= 3
    assert [d["num_requests"] for d in agg_rows] == sorted(d["num_requests"] for d in agg_rows)
    assert sum(d["interval_requests"] for d in agg_rows) == run.truth["total"]["num_requests"]

    doc = run_document(os_client, prefix, run_id)
    assert_run_document(doc, run_id, run.truth, run.rc)
    assert doc["tags"] == {"suite": "os"} and doc["mode"] == "standalone"
    assert doc["sink"]["emitted"] == doc["sink"]["indexed"] == run.truth["total"]["num_requests"]
    assert_error_groups(os_client, prefix, run_id, run.truth)
    kinds = Counter(e["event"] for e in search_all(os_client, f"{prefix}-events", {"term": {"run_id": run_id}}))
    assert kinds["test_start"] == kinds["test_stop"] == kinds["spawning_complete"] == kinds["sink_summary"] == 1

    mapping = os_client.indices.get_mapping(index=f"{prefix}-requests")[f"{prefix}-requests"]["mappings"]
    assert mapping["properties"]["context"]["type"] == "flat_object"


def test_master_and_two_workers_record_one_consistent_run(tmp_path, opensearch_url, httpbin_url):
    """Distributed: one run id on every document; each worker wrote its own request documents; the documents
    equal the master's --json-file; the master's final snapshot equals Locust's and the workers' sum to it;
    the run document names both workers."""
    prefix = f"os1d-{uuid.uuid4().hex[:8]}"
    run, worker_logs = run_distributed(tmp_path, httpbin_url, opensearch_url, prefix)
    os_client = OpenSearchClient(opensearch_url)
    run_id = master_run_id(run.log)
    assert run_ids_in(os_client, prefix) == {run_id: sum(indices_with(os_client, prefix, run_id).values())}
    assert set(indices_with(os_client, prefix, run_id)) == {f"{prefix}-{f}" for f in FAMILIES}
    for wlog in worker_logs:
        assert re.search(r"-> OpenSearch .*emitted=(\d+) indexed=\1 \(balanced\)", end_line(wlog)), end_line(wlog)

    doc = run_document(os_client, prefix, run_id)
    workers = doc["workers"]
    assert len(workers) == 2
    nodes = os_client.search(index=f"{prefix}-requests", size=0, query={"term": {"run_id": run_id}},
                             aggs={"n": {"terms": {"field": "node"}}})["aggregations"]["n"]["buckets"]  # fmt: skip
    assert sorted(b["key"] for b in nodes) == sorted(workers)
    assert_matches(locust_truth(run.json_path), es_landed(os_client, f"{prefix}-requests", run_id))

    master_final = final_snapshot(os_client, prefix, run_id, "master", "master")
    assert_snapshot_equals_locust(master_final, run.entries, run.truth["total"])
    summed = sum_snapshots([final_snapshot(os_client, prefix, run_id, "worker", w) for w in workers])
    master_keyed = by_key(master_final)
    assert set(summed) == set(master_keyed)
    for key, acc in summed.items():
        assert acc["num_requests"] == master_keyed[key]["num_requests"], key
        assert dict(acc["response_times"]) == master_keyed[key]["response_times"], key
    assert_run_document(doc, run_id, run.truth, run.rc)
    assert doc["mode"] == "distributed" and doc["expected_workers"] == 2 and doc["users"] == USERS
    assert_error_groups(os_client, prefix, run_id, run.truth)
    assert sorted(e["node"] for e in events_of(os_client, prefix, run_id, "worker_joined")) == sorted(workers)


# -------------------------------------------------------------------------------- 2. killed and restarted


def test_opensearch_killed_mid_run_spools_and_replays_by_itself(tmp_path, own_opensearch, httpbin_url):
    """SIGKILL 8 s into the run, restarted 15 s later: with a 5 s retry budget the outage goes through the
    spool, the sink replays it by itself once OpenSearch answers again (the run ends 3 s after the spool is
    empty), and at the end every request Locust counted is in OpenSearch exactly once (ids are deterministic,
    written with `create`), nothing spooled, dropped or dead-lettered, the accounting balanced."""
    server = own_opensearch
    server.start()
    prefix = f"os2-{uuid.uuid4().hex[:6]}"
    args = ["--es-url", server.url, "--es-index-prefix", prefix, "--sink-retry-timeout", "5"]
    run = LocustRun(tmp_path, FAULTS, httpbin_url, args, run_time="150s")
    time.sleep(8)
    server.kill()
    killed_at = time.monotonic()
    time.sleep(15)
    server.start()
    print(f"\nOpenSearch {server.version}: down {time.monotonic() - killed_at:.0f} s (restart included)")
    run.end_after_recovery(90)
    log = run.wait()
    replayed = [int(n) for n in re.findall(r"OpenSearch at \S+ takes documents again; replaying (\d+) spooled", log)]
    assert replayed and sum(replayed) > 0, log[-4000:]
    acc = accounting(log)
    total = run.truth_total()
    assert acc["emitted"] == acc["indexed"] == total, (acc, total)
    assert acc.get("spooled", 0) == acc.get("dropped", 0) == acc.get("dead_lettered", 0) == 0, acc
    os_client = OpenSearchClient(server.url)
    assert requests_in(os_client, prefix, run_id_of(log)) == total
    assert_matches(locust_truth(Path(str(run.stats) + ".json")), es_landed(os_client, f"{prefix}-requests",
                                                                          run_id_of(log)))  # fmt: skip
    assert peak_rss_kb(log) < PEAK_RSS_LIMIT_KB
    print(f"replayed {sum(replayed)} spooled documents by itself; {total} requests, all in OpenSearch once")


# ---------------------------------------------------------------------- 3. dead letters, long free-form leaves


def test_mapping_conflict_dead_letters_with_the_reason(tmp_path, opensearch_url, httpbin_url):
    """An existing index maps context.user_id as a number; every 7th record carries a string there: those are
    dead-lettered with OpenSearch's reason (one log line), the rest land, and together they are Locust's count."""
    prefix = f"os3-{uuid.uuid4().hex[:6]}"
    os_client = OpenSearchClient(opensearch_url)
    os_client.indices.create(index=f"{prefix}-requests", mappings={"properties": {
        "run_id": {"type": "keyword"}, "context": {"properties": {"user_id": {"type": "long"}}}}})  # fmt: skip
    args = ["--es-url", opensearch_url, "--es-index-prefix", prefix, "--es-setup", "false"]
    run = LocustRun(tmp_path, FAULTS, httpbin_url, args, env={"FAULT_BAD_CONTEXT_EVERY": "7"}, run_time="8s")
    log = run.wait()
    acc = accounting(log)
    total = run.truth_total()
    assert acc["emitted"] == total and acc.get("dropped", 0) == 0
    assert acc["dead_lettered"] > 0 and acc["indexed"] + acc["dead_lettered"] == total, acc
    assert requests_in(os_client, prefix, run_id_of(log)) == total - acc["dead_lettered"]
    letters = [orjson.loads(line) for p in (tmp_path / "results" / "dead-letter").rglob("*.ndjson")
               for line in p.read_bytes().splitlines()]  # fmt: skip
    assert len(letters) == acc["dead_lettered"]
    assert {(letter["status"], letter["error"]["type"]) for letter in letters} == {(400, "mapper_parsing_exception")}
    assert all(str(letter["source"]["context"]["user_id"]).startswith("not-a-number") for letter in letters)
    assert len([line for line in log.splitlines() if "rejected documents for good" in line]) == 1


def cut_leaf_query(run_id: str) -> dict:
    """The run's documents whose context.note.text is the long leaf as cut (the indexed term itself)."""
    cut = "x" * FREE_FORM_LEAF_CHARS
    return {"bool": {"filter": [{"term": {"run_id": run_id}}, {"term": {"context.note.text": cut}}]}}


def test_exists_on_a_free_form_sub_path_differs_between_versions(opensearch_url):
    """Measured for docs/opensearch.md: on `flat_object`, `exists` on an inner object's path (context.note)
    matches on 2.x only and `exists` on a leaf path (context.note.text) on 3.x only; `term` on a leaf and
    `exists` on the field itself work on both."""
    index = f"os-exists-{uuid.uuid4().hex[:6]}"
    os_client = OpenSearchClient(opensearch_url)
    os_client.indices.create(index=index, mappings={"properties": {"context": {"type": "flat_object"}}})
    os_client.client.index(index=index, id="1", body={"context": {"user": 5, "note": {"text": "xx"}}})
    os_client.client.index(index=index, id="2", body={"context": {"user": 6}})
    os_client.indices.refresh(index=index)
    version = os_client.client.info()["version"]["number"]

    def hits(query: dict) -> int:
        return os_client.count(index=index, query=query)["count"]

    inner, leaf = hits({"exists": {"field": "context.note"}}), hits({"exists": {"field": "context.note.text"}})
    assert (inner, leaf) == ((1, 0) if version.startswith("2.") else (0, 1)), (version, inner, leaf)
    assert hits({"term": {"context.note.text": "xx"}}) == 1 and hits({"exists": {"field": "context"}}) == 2
    os_client.indices.delete(index=index)


def test_long_free_form_leaves_are_cut_and_land(tmp_path, opensearch_url, httpbin_url):
    """`flat_object` has no ignore_above and Lucene refuses a term over 32,766 bytes (the whole document would
    be refused): context strings of 40,000 characters are cut to FREE_FORM_LEAF_CHARS before sending, so every
    record lands, none is dead-lettered, and the cut value is what OpenSearch holds."""
    prefix = f"os3l-{uuid.uuid4().hex[:6]}"
    args = ["--es-url", opensearch_url, "--es-index-prefix", prefix]
    run = LocustRun(tmp_path, FAULTS, httpbin_url, args, env={"FAULT_LONG_LEAF_EVERY": "5"}, run_time="8s")
    log = run.wait()
    acc = accounting(log)
    total = run.truth_total()
    assert acc["emitted"] == acc["indexed"] == total and acc.get("dead_lettered", 0) == 0, acc
    os_client = OpenSearchClient(opensearch_url)
    run_id = run_id_of(log)
    assert requests_in(os_client, prefix, run_id) == total
    long_ones = search_all(os_client, f"{prefix}-requests", cut_leaf_query(run_id))
    assert len(long_ones) > 10
    assert {len(d["context"]["note"]["text"]) for d in long_ones} == {FREE_FORM_LEAF_CHARS}


# ------------------------------------------------------------------------------------- 4. setup, load, replay


def test_cli_setup_then_load_a_file_mode_run_twice(tmp_path, opensearch_url, httpbin_url):
    """`locust-sink setup` installs the OpenSearch flavor of the templates; a file-mode run (with context leaves
    longer than Lucene's term limit) is loaded with the command the run printed, twice: every request record
    lands once (the second load duplicates nothing), the long leaves cut by `load`."""
    prefix = f"os4s-{uuid.uuid4().hex[:6]}"
    setup = shell(f"locust-sink setup --es-url {opensearch_url} --es-index-prefix {prefix}", tmp_path)
    assert f"_component_template/{prefix}-sink@custom: created empty" in setup, setup
    for family in FAMILIES:
        assert f"_index_template/{prefix}-{family}: created" in setup, setup
    os_client = OpenSearchClient(opensearch_url)
    template = os_client.client.indices.get_index_template(name=f"{prefix}-requests")["index_templates"][0]
    assert template["index_template"]["composed_of"][-1] == f"{prefix}-sink@custom"
    assert template["index_template"]["template"]["mappings"]["properties"]["context"] == {"type": "flat_object"}
    again = shell(f"locust-sink setup --es-url {opensearch_url} --es-index-prefix {prefix}", tmp_path)
    assert "created" not in again, again  # installed once: a second setup changes nothing

    args = headless_args(FAULTS, httpbin_url, 5, "6s", tmp_path / "stats", "--exit-code-on-error", "0",
                         "--sink-dir", str(tmp_path / "results"))  # fmt: skip
    proc = run_locust(args, env={"FAULT_LONG_LEAF_EVERY": "5"}, cwd=tmp_path, timeout=120)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in log, log[-3000:]
    run_id = run_id_of(log)
    truth_stats = locust_truth(tmp_path / "stats.json")
    landed, run_ids, duplicates = file_landed(sorted((tmp_path / "results" / run_id).glob("*.ndjson")))
    assert run_ids == {run_id} and duplicates == 0
    assert_matches(truth_stats, landed)
    printed = re.search(r"`(locust-sink load [^`]+)`", log)
    assert printed, log[-2000:]
    records = sum(truth_stats["counts"].values())
    for _ in range(2):
        out = shell(printed.group(1), tmp_path, {"LOCUST_ES_URL": opensearch_url})
        assert f"({records} request records)" in out and "dead-lettered 0" in out, out
    assert requests_in(os_client, "locust", run_id) == records
    assert_matches(truth_stats, es_landed(os_client, "locust-requests", run_id))
    cut = search_all(os_client, "locust-requests", cut_leaf_query(run_id))
    assert len(cut) > 10 and {len(d["context"]["note"]["text"]) for d in cut} == {FREE_FORM_LEAF_CHARS}
    assert run_document(os_client, "locust", run_id)["status"] == "stopped"


def test_cli_replay_as_printed_once_opensearch_is_up(tmp_path, own_opensearch, httpbin_url):
    """OpenSearch not running during the run: everything is spooled and the end says how to replay it. Once
    it runs, the printed command delivers the spool as printed: Locust's counts exactly, delivered segments
    removed; a second replay finds nothing and duplicates nothing."""
    server = own_opensearch
    prefix = f"os4r-{uuid.uuid4().hex[:6]}"
    run = LocustRun(tmp_path, FAULTS, httpbin_url, ["--es-url", server.url, "--es-index-prefix", prefix],
                    run_time="6s", env={"LOCUST_SINK_FLUSH_TIMEOUT": "3"})  # fmt: skip
    log = run.wait()
    acc = accounting(log)
    total = run.truth_total()
    assert acc["spooled"] == acc["emitted"] == total, acc
    printed = re.search(r"`(locust-sink replay [^`]+)`", log)
    assert printed, log[-2000:]
    server.start()
    out = shell(printed.group(1), tmp_path)
    assert f"({total} request records)" in out and "OpenSearch" in out, out
    spool = tmp_path / "results" / "spool"
    assert not list(spool.rglob("*.ndjson")), "delivered segments are removed"
    again = shell(printed.group(1), tmp_path)
    assert "no .ndjson files" in again, again
    os_client = OpenSearchClient(server.url)
    run_id = run_id_of(log)
    assert requests_in(os_client, prefix, run_id) == total
    assert_matches(locust_truth(Path(str(run.stats) + ".json")), es_landed(os_client, f"{prefix}-requests", run_id))
    assert run_document(os_client, prefix, run_id)["sink"]["emitted"] == total


# ------------------------------------------------------------------------------- 5. report, compare, runs


def test_report_compare_and_runs_read_opensearch(tmp_path, opensearch_url, httpbin_url):
    """A run recorded into OpenSearch, read back by `locust-sink report --format json`: per-endpoint and total
    counts, failures and percentiles equal Locust's --json-file; `runs` lists it with Locust's totals; `compare`
    of the run with itself passes; an unknown run id is one line and exit status 2."""
    prefix = f"os5-{uuid.uuid4().hex[:8]}"
    work = tmp_path / "run"
    work.mkdir()
    args = headless_args(REPORT_LOCUSTFILE, httpbin_url, 6, "6s", work / "stats", "--exit-code-on-error", "0",
                         "--sink-stats-interval", "1", "--run-tag", "suite=os-report", "--es-url", opensearch_url,
                         "--es-index-prefix", prefix, "--sink-dir", str(tmp_path / "results"))  # fmt: skip
    proc = run_locust(args, cwd=work, timeout=120)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and not re.search(r"/(ERROR|WARNING)/locust_sink", log), log[-3000:]
    run = ReportRun("os", run_id_of(log), work / "stats.json", prefix=prefix)
    want = truth(run)
    assert want[TOTAL]["requests"] > 150 and want[TOTAL]["failures"] > 0

    es_args = f"--es-url {opensearch_url} --es-index-prefix {prefix}"
    doc = json_of(f"locust-sink report {run.run_id} {es_args} --format json -o -", tmp_path)
    assert doc["run_id"] == run.run_id and doc["source"].startswith("opensearch ")
    got = {r["key"]: r for r in [*doc["endpoints"], doc["total"]]}
    assert set(got) == set(want)
    fields = ("requests", "failures", *PERCENTILES)
    for key, expected in want.items():
        assert {k: got[key][k] for k in fields} == {k: expected[k] for k in fields}, key
    assert doc["warnings"] == [] and doc["request_documents"] == want[TOTAL]["requests"]
    assert doc["run"]["tags"]["suite"] == "os-report" and doc["slowest"] and doc["errors"]
    # in-process too, with a bare opensearch-py client
    in_process = read_es_run(OpenSearchClient(opensearch_url).client, run.run_id, prefix=prefix)
    assert in_process.total.requests == want[TOTAL]["requests"]

    rows = json_of(f"locust-sink runs {es_args} --format json", tmp_path)
    assert [r["run_id"] for r in rows] == [run.run_id]
    assert rows[0]["requests"] == want[TOTAL]["requests"] and rows[0]["p95"] == want[TOTAL]["p95"]
    compared = json_of(f"locust-sink compare {run.run_id} {run.run_id} {es_args} --format json "
                       "--fail-on 'p95>+10%' --fail-on 'failure_rate>+1pp'", tmp_path)  # fmt: skip
    candidate = compared["candidates"][0]
    assert compared["failed"] == 0 and candidate["run_id"] == run.run_id and len(candidate["verdicts"]) > 0
    assert {row["endpoint"] for row in candidate["endpoints"]} == set(want)
    assert all(row["baseline"] == row["candidate"] for row in candidate["endpoints"])
    missing = run_command(f"locust-sink report nope {es_args} --format json", tmp_path)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "nope" in missing.stderr, missing.stderr
