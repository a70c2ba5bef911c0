"""The pieces of locust_sink/stats/ one by one, and the recorder as a whole on a scripted clock.

No server, no Locust process: real Locust objects (RequestStats, Locust's own master merge and report
serialisation) and fakes only for the sink (a recording SinkPort) and time. Milliseconds each.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from locust.event import Events
from locust.runners import WorkerNode
from locust.stats import RequestStats, calculate_response_time_percentile, setup_distributed_stats_event_listeners
from stats_scenarios import GOLDEN, SCENARIOS, Clock, ScriptedMeter, ScriptedPort, run_scenario, worker_reports

from locust_sink.stats import SnapshotCursor, snapshot_documents
from locust_sink.stats.events import MAX_PENDING_EVENTS, USER_ERROR_EVENTS_PER_KIND, EventLog, failure_groups
from locust_sink.stats.lifecycle import Guard, Lifecycle, RunPhase
from locust_sink.stats.rundoc import SUMMARY_FIELDS, end_fields, exit_fields, node_summary, sink_by_node, sink_totals
from locust_sink.stats.trouble import PAYLOAD_KEY, TroubleRelay
from locust_sink.stats.workers import WorkerBook

ROOT = Path(__file__).resolve().parents[1]
STATS_PACKAGE = ROOT / "locust_sink" / "stats"


def snap(stats: RequestStats, cursor: SnapshotCursor, now: float, **kw: Any) -> list[tuple[str, dict[str, Any]]]:
    args: dict[str, Any] = {"run_id": "r", "node": "n", "source": "local", "run_start": 0.0, "user_count": None}
    args.update(kw)
    return list(snapshot_documents(stats, cursor, now=now, final=args.pop("final", False), **args))


def stats_with(requests: list[tuple[str, str, float]], errors: int = 0) -> RequestStats:
    stats = RequestStats()
    for method, name, rt in requests:
        stats.log_request(method, name, rt, 10)
    for i in range(errors):
        stats.log_error("GET", "/a", f"boom {i % 2}")
    return stats


# ------------------------------------------------------------------------------ the recorder as a whole


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_recorder_writes_byte_for_byte_the_documents_of_the_golden_run(scenario, tmp_path):
    """Every document (serialised as the sink serialises it: key order, ids, op types), every drain
    request and every worker-report payload, in order, equal to the golden run's
    (tests/data/stats_golden.json; see tests/stats_scenarios.py)."""
    golden = json.loads(GOLDEN.read_text())[scenario]
    got = json.loads(json.dumps(run_scenario(scenario, tmp_path)))
    assert len(got) == len(golden)
    for i, (entry, expected) in enumerate(zip(got, golden, strict=True)):
        assert entry == expected, f"entry {i}"
    assert got[-1] == ["log", []]  # and nothing was logged as a failure


def test_stats_package_imports_neither_the_plugin_nor_the_delivery_engine():
    """Not even for typing: no import of plugin, flusher, buffer (options.py only under TYPE_CHECKING)."""
    forbidden = {"plugin", "flusher", "buffer", "encoder", "transport", "spool", "filesink"}
    for path in STATS_PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[-1]} | {alias.name for alias in node.names}
                assert not names & forbidden, (path.name, ast.unparse(node))
    code = "import sys, locust_sink.stats; print(sorted(m for m in sys.modules if m.startswith('locust_sink')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    modules = set(ast.literal_eval(loaded.stdout))
    assert not {m for m in modules if m.split(".")[-1] in forbidden | {"options"}}, modules


# ------------------------------------------------------------------------------------------ snapshots


def test_snapshot_cursor_gives_intervals_and_sequence_for_any_source():
    runs = {}
    for source, node in (("local", "local"), ("worker", "w1")):  # the same cursor logic for a node and a worker
        stats = stats_with([("GET", "/a", 10), ("GET", "/a", 20), ("POST", "/b", 30)])
        cursor = SnapshotCursor()
        first = snap(stats, cursor, 103.0, node=node, source=source, run_start=100.0, user_count=2)
        stats.log_request("GET", "/a", 40, 10)
        second = snap(stats, cursor, 106.5, node=node, source=source, run_start=100.0, final=True)
        runs[source] = (first, second, cursor)
    for source, (first, second, cursor) in runs.items():
        node = "local" if source == "local" else "w1"
        assert [doc_id.rsplit(":", 1)[0] for doc_id, _ in first] == [f"r:{node}:{source}:1"] * 3
        assert first[-1][0] == f"r:{node}:{source}:1:agg" and second[-1][0] == f"r:{node}:{source}:2:agg"
        agg1, agg2 = first[-1][1], second[-1][1]
        assert (agg1["interval_s"], agg1["interval_requests"], agg1["user_count"]) == (3.0, 3, 2)
        assert (agg2["interval_s"], agg2["interval_requests"], agg2["final"]) == (3.5, 1, True)
        assert "user_count" not in agg2
        assert cursor.seq == 2 and cursor.last == 106.5
    assert runs["local"][0][0][1]["num_requests"] == 2  # /a before the extra request


def test_snapshot_cursor_reset_restarts_interval_counts_but_not_ids():
    stats = stats_with([("GET", "/a", 10)] * 4)
    cursor = SnapshotCursor()
    snap(stats, cursor, 1.0)
    stats.reset_all()
    cursor.reset()
    stats.log_request("GET", "/a", 10, 10)
    docs = dict(snap(stats, cursor, 2.0))
    assert docs["r:n:local:2:agg"]["interval_requests"] == 1 == docs["r:n:local:2:agg"]["num_requests"]


def test_snapshot_documents_pause_between_entries_and_stop_when_told():
    stats = stats_with([("GET", f"/e{i}", 10) for i in range(120)])
    pauses: list[int] = []

    def pause() -> bool:
        pauses.append(len(produced))
        return len(pauses) < 2  # the run was finalized during the second pause

    cursor = SnapshotCursor()
    produced: list[str] = []
    produced.extend(doc_id for doc_id, _ in snapshot_documents(
        stats, cursor, run_id="r", node="n", source="local", now=1.0, run_start=0.0, user_count=None, final=False,
        pause=pause,
    ))  # fmt: skip
    assert pauses == [50, 100] and len(produced) == 100  # stopped before entry 100: no Aggregated row
    assert len(cursor.previous) == 100
    everything = snap(stats, SnapshotCursor(), 1.0, final=True)
    assert len(everything) == 121 and everything[-1][1]["is_aggregated"]


def test_snapshot_documents_are_lazy_and_skip_empty_entries():
    stats = stats_with([("GET", "/a", 10)])
    stats.get("/never", "GET")  # an entry without requests or failures
    cursor = SnapshotCursor()
    docs = snapshot_documents(
        stats, cursor, run_id="r", node="n", source="local", now=1.0, run_start=0.0, user_count=None, final=False
    )
    assert cursor.seq == 0  # nothing happens before the first document is taken
    assert [d["name"] for _, d in docs] == ["/a", "Aggregated"] and cursor.seq == 1


# ------------------------------------------------------------------------------------------ the event log


def test_event_log_holds_events_until_the_run_id_is_known_and_the_sink_started():
    port = ScriptedPort()
    log = EventLog(port, lambda: "local")
    log.event("worker_joined", node="w1", when=10.0, message="worker w1 connected", details=None)
    log.begin_run("r1")
    log.event("early", when=11.0)  # run id known, sink not started: still held
    log.release()
    assert port.output == []
    port.is_started = True
    log.event("test_start", when=12.0, user_count=0)  # goes out at once, before the held ones
    log.release()
    docs = [(entry[3], json.loads(entry[5])) for entry in port.output]
    assert [doc_id for doc_id, _ in docs] == ["r1:local:e1", "r1:local:e2", "r1:local:e3"]
    assert [d["event"] for _, d in docs] == ["test_start", "worker_joined", "early"]
    assert list(docs[1][1]) == ["@timestamp", "node", "event", "message", "run_id"]  # None fields left out
    assert docs[1][1]["node"] == "w1" and docs[1][1]["@timestamp"] == "1970-01-01T00:00:10.000Z"
    log.begin_run("r2")
    log.event("test_start", when=13.0)
    assert port.output[-1][3] == "r2:local:e4"  # one sequence per process


def test_event_log_keeps_at_most_max_pending_events_and_says_so_once(caplog):
    port = ScriptedPort()
    log = EventLog(port, lambda: "local")
    with caplog.at_level(logging.WARNING, logger="locust_sink"):
        for i in range(MAX_PENDING_EVENTS + 5):
            log.event("worker_joined", when=1.0 + i)
    warnings = [r.getMessage() for r in caplog.records if "before the run started" in r.getMessage()]
    assert len(warnings) == 1
    port.is_started = True
    log.begin_run("r")
    log.release()
    assert len(port.output) == MAX_PENDING_EVENTS


def _raise_at(kind: type[BaseException], site: int) -> Any:
    try:
        if site:
            raise kind("one line")
        raise kind("another line")
    except BaseException as exc:  # noqa: BLE001
        return exc


def test_event_log_caps_live_user_errors_per_kind_and_run():
    port = ScriptedPort()
    port.is_started = True
    log = EventLog(port, lambda: "w1")
    log.begin_run("r")

    class Shopper:
        pass

    for _ in range(USER_ERROR_EVENTS_PER_KIND + 5):
        for kind, site in ((ValueError, 0), (ValueError, 1), (KeyError, 0)):
            exc = _raise_at(kind, site)
            log.user_error(Shopper(), exc, exc.__traceback__)
    docs = [json.loads(entry[5]) for entry in port.output]
    assert len(docs) == 3 * USER_ERROR_EVENTS_PER_KIND  # three kinds (type + raising line), ten each
    last_of_each = [d for d in docs if d["details"]["occurrence"] == USER_ERROR_EVENTS_PER_KIND]
    assert len(last_of_each) == 3 and all(d["details"]["further_occurrences_not_recorded"] for d in last_of_each)
    assert {d["details"]["user_class"] for d in docs} == {"Shopper"}
    assert "raise kind" in docs[0]["traceback"] and docs[0]["occurrences"] == 1
    log.begin_run("r2")  # a new run counts again
    exc = _raise_at(ValueError, 0)
    log.user_error(Shopper(), exc, exc.__traceback__)
    assert json.loads(port.output[-1][5])["details"]["occurrence"] == 1


def test_failure_groups_most_frequent_first_with_locusts_texts():
    stats = stats_with([("GET", "/a", 10)], errors=5)
    stats.log_error("POST", "/b", "rare")
    groups = failure_groups(stats)
    assert [(g["request_type"], g["name"], g["error"], g["occurrences"]) for g in groups] == [
        ("GET", "/a", "boom 0", 3),
        ("GET", "/a", "boom 1", 2),
        ("POST", "/b", "rare", 1),
    ]
    assert groups[0]["message"] == "GET /a: boom 0" and groups[0]["details"]["first_seen"].endswith("Z")


# ------------------------------------------------------------------------------------- the worker book


def test_worker_book_sums_equal_locusts_own_master_merge():
    rng = random.Random(3)
    clock = Clock()
    master_events = Events()
    master = RequestStats()
    setup_distributed_stats_event_listeners(master_events, master)
    book = WorkerBook(EventLog(ScriptedPort(), lambda: "master"))
    for seed, worker in enumerate(("w1", "w2", "w3")):
        for data in worker_reports(clock, 4, seed + rng.randint(0, 5)):
            master_events.worker_report.fire(client_id=worker, data=data)
            book.merge(worker, data)
    total = book.total()
    assert total is not None and list(book.workers) == ["w1", "w2", "w3"]
    assert all(w.dirty and w.reports == 4 and w.user_count == 5 for w in book.all())
    assert set(total.entries) == {k for k, e in master.entries.items() if e.num_requests or e.num_failures}
    for key, entry in total.entries.items():
        ref = master.entries[key]
        assert (entry.num_requests, entry.num_failures, entry.max_response_time) == (
            ref.num_requests,
            ref.num_failures,
            ref.max_response_time,
        )
        assert dict(entry.response_times) == dict(ref.response_times)
        assert math.isclose(entry.total_response_time, ref.total_response_time, rel_tol=1e-12)
    assert {k: e.occurrences for k, e in total.errors.items()} == {k: e.occurrences for k, e in master.errors.items()}
    book.reset_stats()
    assert all(w.stats.total.num_requests == 0 and w.cursor.previous == {} for w in book.all())
    book.new_run()
    assert book.total() is None and book.statuses() == []


def test_worker_book_sees_workers_join_go_missing_come_back_and_leave():
    port = ScriptedPort()
    port.is_started = True
    events = EventLog(port, lambda: "master")
    events.begin_run("r")
    book = WorkerBook(events)

    def seen() -> list[tuple[str, str, str, Any]]:
        docs = [json.loads(entry[5]) for entry in port.output]
        port.output.clear()
        return [(d["event"], d["node"], d["message"], d.get("details")) for d in docs]

    book.connected("w1")
    book.connected("w1")
    assert seen() == [("worker_joined", "w1", "worker w1 connected", None)]
    clients = {"w1": WorkerNode("w1", state="ready"), "w2": WorkerNode("w2", state="running")}
    book.watch(clients)
    assert seen() == [("worker_joined", "w2", "worker w2 connected", {"state": "running"})]
    book.watch(clients)
    assert seen() == []
    clients["w2"].state = "missing"
    book.watch(clients)
    book.watch(clients)  # once
    assert seen() == [("worker_lost", "w2", "worker w2 stopped sending heartbeats", None)]
    clients["w2"].state = "running"
    book.watch(clients)
    assert seen() == [("worker_joined", "w2", "worker w2 connected", {"state": "running"})]
    del clients["w1"]
    book.watch(clients)
    book.watch(None)
    assert seen() == [("worker_lost", "w1", "worker w1 left", {"reason": "left"})]


# ------------------------------------------------------------------------------------ the trouble relay


def test_trouble_relay_sends_each_message_once_and_records_per_node():
    port = ScriptedPort()
    port.is_started = True
    events = EventLog(port, lambda: "master")
    events.begin_run("r")
    worker, master = TroubleRelay(events), TroubleRelay(events)
    status = {"state": "down", "requests": {"emitted": 3}, "sampled_out": 1, "documents": {}, "trouble": ["x"]}
    trouble = ["es down"]
    first = worker.outgoing(status, trouble)
    assert first == {"state": "down", "requests": {"emitted": 3}, "sampled_out": 1, "trouble": ["es down"]}
    assert "trouble" not in worker.outgoing(status, trouble)
    trouble.append("spooling")
    assert worker.outgoing(status, trouble)["trouble"] == ["spooling"]
    assert master.receive("w1", {PAYLOAD_KEY: first}) == {"state": "down", "requests": {"emitted": 3}, "sampled_out": 1}
    assert master.receive("w1", {"stats": []}) is None and master.receive("w1", {PAYLOAD_KEY: "junk"}) is None
    master.record("w1", ["es down", "es down"])
    master.record("master", ["x"])
    sent = [json.loads(entry[5]) for entry in port.output]
    assert [(d["event"], d["node"], d["message"]) for d in sent] == [
        ("sink_trouble", "w1", "es down"),
        ("sink_trouble", "master", "x"),
    ]
    master.record("w2", [f"m{i}" for i in range(30)])
    assert master.nodes() == ["master", "w1", "w2"] and len(master.messages()["w2"]) == 20
    assert len(port.output) == 32  # one event per distinct message


# ------------------------------------------------------------------------------------- the run document


def test_run_document_end_fields_match_locusts_totals():
    stats = stats_with([("GET", "/a", rt) for rt in (5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560)])
    fields = end_fields(stats, {1: {"count": 3}, 2: {"count": None}}, 100.0, 104.0)
    assert list(fields) == ["status", "end_time", "duration_s", "totals", "failure_groups", "user_errors"]
    totals = fields["totals"]
    hist = dict(stats.total.response_times)
    for name, percent in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert totals[name] == calculate_response_time_percentile(hist, 10, percent)
    assert (totals["requests"], totals["rps"], fields["duration_s"], fields["user_errors"]) == (10, 2.5, 4.0, 3)
    assert fields["end_time"] == "1970-01-01T00:01:44.000Z"
    assert exit_fields(0) == {"exit_code": 0, "status": "stopped"} and exit_fields(2)["status"] == "failed"


def test_run_document_sink_fields_from_node_statuses():
    trouble = [f"t{i}" for i in range(25)]
    status = {"target": "t", "state": "up", "requests": {"emitted": 4, "indexed": 4}, "documents": {},
              "sampled_out": 2, "retries": {}, "encoding": {}, "trouble": trouble, "node": "n"}  # fmt: skip
    summary = node_summary(status)  # the stored order, whatever the order of the status it is given
    assert list(summary) == ["requests", "documents", "sampled_out", "state", "retries", "encoding", "trouble"]
    assert summary["trouble"] == [f"t{i}" for i in range(20)]
    workers = [("w1", {"state": "up", "requests": {"emitted": 5, "dropped": 1}, "sampled_out": 1})]
    assert sink_totals(s for _, s in workers)["emitted"] == 5 and sink_totals([summary])["sampled_out"] == 2
    totals = sink_totals([summary, workers[0][1]])
    assert (totals["emitted"], totals["indexed"], totals["dropped"], totals["sampled_out"]) == (9, 4, 1, 3)
    assert list(sink_by_node("master", summary, workers)) == ["master", "w1"]


# ------------------------------------------------------------------------------------------- lifecycle


def test_lifecycle_phases_end_once_and_close_once():
    life = Lifecycle()
    assert life.phase is RunPhase.IDLE and not life.active and not life.end()
    life.begin(5.0)
    assert life.phase is RunPhase.RUNNING and life.active and life.started_at == 5.0
    life.stop(6.0)
    life.finalize_later(60.0, lambda: None)
    assert life.phase is RunPhase.STOPPING and life.active and life.stopped_at == 6.0
    assert life.end() and life.phase is RunPhase.FINALIZED and not life.end()
    assert life.close() and not life.close() and life.closed


def test_guard_logs_each_distinct_failure_once(caplog):
    guard = Guard()

    def fails(n: int) -> None:
        raise RuntimeError(f"bad {n}")

    with caplog.at_level(logging.ERROR, logger="locust_sink"):
        for n in (1, 1, 2):
            assert guard("step", fails, n) is None
    assert [r.getMessage() for r in caplog.records] == ["locust-sink: step: RuntimeError: bad 1",
                                                        "locust-sink: step: RuntimeError: bad 2"]  # fmt: skip
    assert guard("step", lambda: 7) == 7


# ------------------------------------------------------------------------------------------- observer


class Watcher:
    def __init__(self, fail: bool = False) -> None:
        self.snapshots: list[dict[str, Any]] = []
        self.statuses: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail

    def on_snapshot(self, doc: dict[str, Any]) -> None:
        self.snapshots.append(doc)
        if self.fail:
            raise ValueError("observer broke")

    def on_status(self, node: str, status: dict[str, Any]) -> None:
        self.statuses.append((node, status))


@pytest.mark.parametrize("fail", [False, True])
def test_observer_sees_every_snapshot_and_status_and_cannot_break_recording(tmp_path, fail, caplog):
    from locust_sink.stats import StatsRecorder

    watchers: list[Watcher] = []

    def make(env, port, options):
        watchers.append(Watcher(fail))
        return StatsRecorder(env, port, options, observer=watchers[0], meter=ScriptedMeter())

    with caplog.at_level(logging.ERROR, logger="locust_sink"):
        observed = run_scenario("master", tmp_path, make)
    golden = json.loads(GOLDEN.read_text())["master"]
    # the documents are the golden ones: observing (even a failing observer) changes nothing but the log
    assert json.loads(json.dumps(observed))[:-1] == golden[:-1]
    watcher = watchers[0]
    stats_docs = [json.loads(e[5]) for e in golden if e[0] == "doc" and e[1] == "stats"]
    assert json.loads(json.dumps(watcher.snapshots)) == stats_docs
    nodes = [node for node, _ in watcher.statuses]
    assert {"master", "w1", "w2"} <= set(nodes) and nodes[-1] == "master"
    assert tuple(watcher.statuses[-1][1]) == SUMMARY_FIELDS
    failures = [r for r in caplog.records if "observer broke" in r.getMessage()]
    assert len(failures) == (1 if fail else 0)


# ------------------------------------------------------------------------------ load-generator health


def _watch_events(readings: list[float]) -> list[tuple[str, float, float]]:
    from locust_sink.stats.health import SaturationWatch, Usage

    port = ScriptedPort()
    port.is_started = True
    log = EventLog(port, lambda: "local")
    log.begin_run("r")
    watch = SaturationWatch(log)
    for i, cpu in enumerate(readings):
        watch.observe("local", Usage(cpu, 1), 1000.0 + 3 * i)
    docs = [json.loads(e[5]) for e in port.output]
    return [(d["event"], d["cpu_percent"], d["@timestamp"]) for d in docs]


def test_saturation_is_one_event_each_way_per_episode_with_hysteresis():
    """Enter at >= 90 %, leave below 80 %: readings between the two (hovering) change nothing, and a second
    episode is said again."""
    got = _watch_events([50.0, 89.9, 90.0, 85.0, 99.0, 80.0, 79.9, 89.0, 95.0, 10.0])
    assert [(kind, cpu) for kind, cpu, _ in got] == [
        ("cpu_saturated", 90.0),
        ("cpu_recovered", 79.9),
        ("cpu_saturated", 95.0),
        ("cpu_recovered", 10.0),
    ]
    assert [t for _, _, t in got] == ["1970-01-01T00:16:46.000Z", "1970-01-01T00:16:58.000Z",
                                      "1970-01-01T00:17:04.000Z", "1970-01-01T00:17:07.000Z"]  # fmt: skip
    assert _watch_events([70.0, 89.99, 80.0]) == []


def test_recovered_event_says_how_long_and_how_high():
    from locust_sink.stats.health import SaturationWatch, Usage

    port = ScriptedPort()
    port.is_started = True
    log = EventLog(port, lambda: "local")
    log.begin_run("r")
    watch = SaturationWatch(log)
    for when, cpu in ((10.0, 92.0), (13.0, 104.5), (16.0, 91.0), (19.0, 30.0)):
        watch.observe("w1", Usage(cpu, 1), when)
    recovered = json.loads(port.output[-1][5])
    assert recovered["node"] == "w1"
    assert recovered["details"] == {"demand_percent": 30.0, "saturated_s": 9.0, "peak_demand_percent": 104.5}
    assert "after 9 s saturated (peak 104.5 %)" in recovered["message"]
    assert recovered["details"]["demand_percent"] == 30.0


def test_a_node_waiting_for_a_cpu_is_saturated_too():
    """60 % CPU plus 35 % of the time runnable in the run queue: the process wanted 95 % of a core."""
    from locust_sink.stats.health import SaturationWatch, Usage

    port = ScriptedPort()
    port.is_started = True
    log = EventLog(port, lambda: "local")
    log.begin_run("r")
    watch = SaturationWatch(log)
    watch.observe("local", Usage(60.0, 1, 35.0), 1.0)
    watch.observe("local", Usage(60.0, 1, 10.0), 2.0)
    kinds = [json.loads(e[5]) for e in port.output]
    assert [k["event"] for k in kinds] == ["cpu_saturated", "cpu_recovered"]
    assert kinds[0]["cpu_percent"] == 60.0 and kinds[0]["details"] == {"demand_percent": 95.0, "cpu_wait_percent": 35.0}
    assert "60.0 % CPU + 35.0 % waiting for a CPU" in kinds[0]["message"]


def test_process_meter_measures_this_process_busy_and_idle():
    """psutil's CPU times over the wall time: a busy loop reads near one core, a sleep near zero; a window
    shorter than a second repeats the last figure."""
    import time

    from locust_sink.stats.health import ProcessMeter

    meter = ProcessMeter()
    assert meter.read() is None  # nothing measured yet, and a window under MIN_WINDOW_S is not measured
    deadline = time.monotonic() + 1.1
    while time.monotonic() < deadline:
        pass
    busy = meter.read()
    assert busy is not None and meter.read().cpu_percent == busy.cpu_percent  # not a 0-ms window's figure
    time.sleep(1.1)
    idle = meter.read()
    assert busy is not None and idle is not None
    assert busy.demand > 80.0 and busy.cpu_wait_percent is not None, busy  # used or waited for (shared CPUs)
    assert idle.cpu_percent < 30.0, idle
    assert busy.memory_rss_bytes > 10_000_000


def test_worker_usage_comes_from_its_report_else_from_locusts_heartbeats():
    from locust_sink.stats.health import USAGE_KEY, NodeHealth, Usage

    port = ScriptedPort()
    health = NodeHealth(EventLog(port, lambda: "master"), meter=ScriptedMeter())
    node = WorkerNode("w1")
    assert health.worker("w1", {}, node, 1.0) is None  # no report part, no heartbeat yet (memory 0)
    node.cpu_usage, node.memory_usage = 42.0, 7_000_000
    assert health.worker("w1", {}, node, 2.0) == Usage(42.0, 7_000_000)
    report = {USAGE_KEY: {"cpu_percent": 97.25, "memory_rss_bytes": 8_000_000}}
    assert health.worker("w1", report, node, 3.0) == Usage(97.2, 8_000_000)
    report = {USAGE_KEY: {"cpu_percent": 50.0, "cpu_wait_percent": 41.04, "memory_rss_bytes": 8_000_000}}
    assert health.worker("w1", report, node, 4.0) == Usage(50.0, 8_000_000, 41.0)
    bad_wait = {"cpu_percent": 1.0, "cpu_wait_percent": "x", "memory_rss_bytes": 1}
    for bad in (
        {"cpu_percent": "high", "memory_rss_bytes": 1},
        {"cpu_percent": True, "memory_rss_bytes": 1},
        5,
        bad_wait,
    ):
        assert Usage.parse(bad) is None
    assert set(health.watch.open) == {"w1"}  # the 97 % reading opened an episode
