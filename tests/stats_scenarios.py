"""Scripted runs of the stats recorder on a fake clock, and what it hands to the sink.

Each scenario drives a `StatsRecorder` (standalone, master, worker) through a whole process life with real
Locust objects (`Environment`, `RequestStats`, Locust's own stats listeners and report serialisation) but
without a network, greenlets that run on their own, or real time: `time.time` is a scripted clock and the
recorder's loop and grace greenlets are captured so that the scenario decides when they run. What the
recorder hands to its `SinkPort` (every document, byte for byte as the sink serialises it, with family, id
and op type, and every drain request) plus each worker report's sink payload is the scenario's output.

tests/data/stats_golden.json holds that output; test_stats_pieces.py checks that the recorder produces
exactly that. A deliberate change of the documents rewrites the file (review its diff):
    PYTHONPATH=. python3 tests/stats_scenarios.py --write
"""

from __future__ import annotations

import json
import logging
import sys
import time
from argparse import Namespace
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gevent
import orjson
from locust import User, constant
from locust.env import Environment
from locust.runners import DistributedRunner, LocalRunner, MasterRunner, Runner, WorkerNode, WorkerNodes, WorkerRunner
from locust.stats import RequestStats, setup_distributed_stats_event_listeners

from locust_sink.options import SinkOptions, option_values
from locust_sink.records import dumps

GOLDEN = Path(__file__).parent / "data" / "stats_golden.json"
START = 1_764_000_000.125  # the scripted clock's first reading (epoch seconds)
VOLATILE = {"hostname": "<host>", "pid": 0, "locust_version": "<locust>", "sink_version": "<sink>"}


# ---------------------------------------------------------------------------------------- test doubles


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now = round(self.now + seconds, 6)


class CapturedGreenlet:
    """Stands in for the recorder's loop and grace greenlets: runs only when the scenario says so."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args
        self.dead = False

    def run(self) -> None:
        assert not self.dead, "a killed or finished greenlet must not run"
        self.dead = True
        self.fn(*self.args)

    def kill(self, block: bool = True) -> None:
        self.dead = True


class ScriptedPort:
    """A SinkPort that records what it is given (documents as the sink would serialise them)."""

    def __init__(self) -> None:
        self.output: list[list[Any]] = []
        self.is_started = False
        self.state = "up"
        self.trouble_list: list[str] = []
        self.requests = {"emitted": 0, "indexed": 0, "queued": 0}
        self.documents = {"emitted": 0, "indexed": 0}
        self.sampled_out = 0

    def started(self) -> bool:
        return self.is_started

    def submit(self, family: str, doc: dict[str, Any], run_id: str, doc_id: str | None = None, op: str = "create"):
        self.output.append(["doc", family, run_id, doc_id, op, dumps(doc).decode()])
        return True

    def request_drain(self) -> None:
        self.output.append(["drain"])

    def status(self) -> dict[str, Any]:
        # the shape of LocustSink.status(): more keys than the recorder reads, in another order
        return {
            "run_id": "ignored",
            "node": "ignored",
            "target": "ignored",
            "state": self.state,
            "requests": dict(self.requests),
            "documents": dict(self.documents),
            "sampled_out": self.sampled_out,
            "retries": {"backoff_sleeps": 1},
            "encoding": {"helper_batches": 2},
            "trouble": list(self.trouble_list),
        }

    def trouble(self) -> list[str]:
        return list(self.trouble_list)

    def count(self, done: int) -> None:
        self.requests = {"emitted": done, "indexed": done, "queued": 0}
        self.documents = {"emitted": len(self.output), "indexed": len(self.output)}


class ScriptedMeter:
    """A UsageMeter reading a fixed cycle of CPU figures (saturation, hovering, recovery) and a growing RSS."""

    CPU = (12.5, 95.0, 97.5, 85.0, 79.5, 91.0, 40.0)

    def __init__(self) -> None:
        self.readings = 0

    def read(self) -> Any:
        from locust_sink.stats.health import Usage

        cpu = self.CPU[self.readings % len(self.CPU)]
        wait = (None, 0.5, 30.0)[self.readings % 3]  # 30 % waiting turns 79.5 % CPU into a saturated reading
        self.readings += 1
        return Usage(cpu, 100_000_000 + 4096 * self.readings, wait)


class ScenarioUser(User):
    wait_time = constant(1)


class ScriptedLocalRunner(LocalRunner):
    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.scripted_users = 0

    @property
    def user_count(self) -> int:
        return self.scripted_users


class ScriptedMaster(MasterRunner):
    """A master without sockets or greenlets; its workers are what the scenario puts into `clients`."""

    def __init__(self, environment: Environment) -> None:  # not MasterRunner's: no rpc server, no greenlets
        DistributedRunner.__init__(self, environment)
        self.clients = WorkerNodes()
        self.spawn_rate = 2.5
        self.spawning_completed = False
        self.worker_indexes = {}
        self.worker_index_max = 0


class ScriptedWorker(WorkerRunner):
    def __init__(self, environment: Environment, client_id: str) -> None:  # no connection to a master
        DistributedRunner.__init__(self, environment)
        self.client_id = client_id
        self.scripted_users = 0

    @property
    def user_count(self) -> int:
        return self.scripted_users


RecorderFactory = Callable[[Environment, ScriptedPort, Callable[[], SinkOptions]], Any]


def new_recorder(environment: Environment, port: ScriptedPort, options: Callable[[], SinkOptions]) -> Any:
    from locust_sink.stats import StatsRecorder

    return StatsRecorder(environment, port, options, meter=ScriptedMeter())


# ------------------------------------------------------------------------------------------ the harness


class Harness:
    def __init__(self, tmp: Path, make: RecorderFactory, runner: str, client_id: str = "") -> None:
        self.port = ScriptedPort()
        locustfile = tmp / "repo" / "locustfile.py"
        if not locustfile.exists():
            (tmp / "repo" / ".git").mkdir(parents=True)
            (tmp / "repo" / ".git" / "HEAD").write_text("1234abcd" * 5 + "\n")
            locustfile.write_text("")
        parsed = Namespace(locustfile=str(locustfile), num_users=5, spawn_rate=2.0, run_time=30, expect_workers=2)
        self.env = Environment(user_classes=[ScenarioUser], host="http://127.0.0.1:1", parsed_options=parsed)
        if runner == "local":
            self.runner: Runner = ScriptedLocalRunner(self.env)
        elif runner == "master":
            self.runner = ScriptedMaster(self.env)
        else:
            self.runner = ScriptedWorker(self.env, client_id)
        self.env.runner = self.runner
        self.options = SinkOptions.from_values(
            option_values(
                None,
                {
                    "es_index_prefix": "gold",
                    "run_tag": ["suite=golden", "team=perf"],
                    "run_description": "scripted",
                    "sink_sample_rate": 0.5,
                    "sink_stats_interval": 2,
                },
            )
        )
        self.recorder = make(self.env, self.port, lambda: self.options)
        self.recorder.register(self.env.events)
        self.done = 0

    def out(self, *entry: Any) -> None:
        self.port.output.append(list(entry))

    def requests(self, names: list[str], times: int, fail_every: int = 0) -> None:
        """Fire Locust's request event: Locust's own listener logs them into the runner's stats."""
        for i in range(times):
            for j, name in enumerate(names):
                method = "POST" if j % 3 == 2 else "GET"
                exception = RuntimeError(f"HTTP {500 + j}") if fail_every and i % fail_every == 0 else None
                self.env.events.request.fire(
                    request_type=method,
                    name=name,
                    response_time=7.0 + (i * 37 + j * 11) % 900,
                    response_length=100 + j,
                    exception=exception,
                    context={},
                )
                self.done += 1
        self.port.count(self.done)

    def user_error(self, kind: type[BaseException], message: str, site: int = 0, user: Any = None) -> None:
        try:
            if site == 0:
                raise kind(message)
            raise kind(message)  # a second raising line: another kind
        except BaseException as exc:  # noqa: BLE001
            self.env.events.user_error.fire(
                user_instance=user or ScenarioUser(self.env), exception=exc, tb=exc.__traceback__
            )


def worker_reports(clock: Clock, rounds: int, seed: int) -> list[dict[str, Any]]:
    """Reports as a worker sends them: Locust's own report_to_master listener on a RequestStats of its own."""
    from locust.event import Events

    events = Events()
    stats = RequestStats(use_response_times_cache=False)
    setup_distributed_stats_event_listeners(events, stats)
    reports = []
    for r in range(rounds):
        for i in range(20 + 7 * r + seed):
            name = ("/a", "/b", "/c")[(i + seed) % 3]
            stats.log_request("GET" if i % 4 else "POST", name, 3 + (i * 53 + seed * 17) % 700, 50 + i)
            if (i + r + seed) % 9 == 0:
                stats.log_error("GET", name, f"e{(i + seed) % 2}")
        data: dict[str, Any] = {}
        events.report_to_master.fire(client_id="w", data=data)
        data["user_count"] = 2 + r
        reports.append(data)
        clock.advance(0.01)
    return reports


# -------------------------------------------------------------------------------------------- scenarios


def standalone(h: Harness, clock: Clock, spawned: list[CapturedGreenlet]) -> None:
    """Three runs in one process (as from the web UI): stopped normally, then a new run started while the
    previous one was still open, then quit with a non-zero exit code."""
    rec, port = h.recorder, h.port
    h.user_error(ValueError, "before the sink started")  # held until the run starts
    port.is_started = True
    rec.start_run("run-1")
    clock.advance(0.5)
    h.requests(["/a", "/b", "/c", "/d"], 12, fail_every=4)
    h.env.events.spawning_complete.fire(user_count=3)
    h.runner.scripted_users = 3
    clock.advance(2.0)
    rec.tick()
    for _ in range(12):
        h.user_error(ValueError, "boom")  # capped at 10 live events of this kind
    h.user_error(KeyError, "missing", site=1, user=Namespace(user=ScenarioUser(h.env)))  # a TaskSet's user
    for text in ("ValueError: boom", "ValueError: boom", "KeyError: missing"):
        h.runner.log_exception("local", text, f"Traceback: {text}")
    port.trouble_list.append("Elasticsearch unreachable: connection refused")
    clock.advance(2.0)
    h.requests([f"/many/{i}" for i in range(60)], 2)  # more than one pause's worth of entries
    h.runner.scripted_users = 5
    rec.tick()
    h.runner.stats.reset_all()
    h.env.events.reset_stats.fire()
    clock.advance(2.0)
    h.requests(["/a", "/b"], 5, fail_every=2)
    rec.tick()
    clock.advance(1.0)
    rec.stop_run()
    clock.advance(0.5)
    rec.tick()  # after the run: trouble only, no snapshot
    # run 2, restarted before it was stopped
    h.runner.stats.reset_all()
    h.runner.exceptions = {}
    clock.advance(3.0)
    rec.start_run("run-2")
    h.requests(["/x"], 4, fail_every=3)
    clock.advance(2.0)
    rec.tick()
    port.trouble_list.append("spooled 10 records")
    h.runner.stats.reset_all()
    clock.advance(1.0)
    rec.start_run("run-3")  # finalizes run 2 first
    h.requests(["/y", "/z"], 3)
    clock.advance(2.0)
    rec.stop_run()
    clock.advance(0.2)
    rec.finish(1)
    rec.finish(1)  # a second quit changes nothing
    rec.closing_documents(True)
    h.out("greenlets", [g.dead for g in spawned])


def master(h: Harness, clock: Clock, spawned: list[CapturedGreenlet]) -> None:
    """Two workers reporting, one lost and back, one leaving, a stranger's report; a run finalized by the
    grace period, then one still open at quit."""
    rec, port = h.recorder, h.port
    clients = h.runner.clients
    h.env.events.worker_connect.fire(client_id="w1")  # before the test: held
    clients["w1"] = WorkerNode("w1", state="ready")
    clients["w2"] = WorkerNode("w2", state="ready")
    h.runner.target_user_count = 6
    port.is_started = True
    rec.start_run("m-1")
    reports = {w: worker_reports(clock, 4, seed) for seed, w in enumerate(("w1", "w2"), start=1)}
    for r in range(3):
        clock.advance(1.0)
        for w in ("w1", "w2"):
            data = reports[w][r]
            payload: dict[str, Any] = {"state": "up", "requests": {"emitted": 10 * (r + 1)}, "sampled_out": r}
            if w == "w2" and r == 1:
                payload["trouble"] = ["w2: Elasticsearch unreachable", "w2: spooling"]
            if not (w == "w1" and r == 0):  # w1's first report came before its sink started
                data["locust_sink"] = payload
            if w == "w1":  # w1 sends its usage; w2 is an older sink: its heartbeats' figures stand in
                data["locust_sink_usage"] = {"cpu_percent": (99.0, 93.0, 70.0)[r], "memory_rss_bytes": 5_000_000 + r}
            elif r:  # before w2's first heartbeat (memory 0) there is no figure at all
                clients[w].cpu_usage, clients[w].memory_usage = 50.0 + r, 6_000_000 + r
            clients[w].user_classes_count = {"ScenarioUser": data["user_count"]}
            h.env.events.worker_report.fire(client_id=w, data=data)
        if r == 0:
            h.env.events.spawning_complete.fire(user_count=4)
        clock.advance(1.0)
        rec.tick()
    port.trouble_list.append("master: templates not installed")
    clients["w2"].state = "missing"
    clock.advance(1.0)
    rec.tick()
    clients["w2"].state = "running"
    clock.advance(1.0)
    rec.tick()
    del clients["w2"]
    h.env.events.worker_report.fire(client_id="w9", data=worker_reports(clock, 1, 5)[0])  # not in clients
    clock.advance(1.0)
    rec.tick()
    rec.stop_run()
    clock.advance(1.0)
    h.env.events.worker_report.fire(client_id="w1", data=reports["w1"][3])
    rec.tick()  # during the grace period: still snapshots
    grace = spawned[-1]
    clock.advance(3.0)
    grace.run()  # the grace period ends: finalized, run document written
    # run 2: stopped, and quit before the grace period ends
    clock.advance(5.0)
    rec.start_run("m-2")
    first, second = worker_reports(clock, 2, 3), worker_reports(clock, 1, 4)
    h.env.events.worker_report.fire(client_id="w1", data=first[0])  # w1 reports first, without its sink's part
    second[0]["locust_sink"] = {"state": "up", "requests": {"emitted": 7}, "sampled_out": 1}
    h.env.events.worker_report.fire(client_id="w2", data=second[0])
    first[1]["locust_sink"] = {"state": "down", "requests": {"emitted": 5}, "sampled_out": 0, "trouble": ["w1: down"]}
    h.env.events.worker_report.fire(client_id="w1", data=first[1])
    clock.advance(2.0)
    rec.tick()
    rec.stop_run()
    clock.advance(0.5)
    rec.finish(0)
    rec.closing_documents(False)
    h.out("greenlets", [g.dead for g in spawned])


def worker(h: Harness, clock: Clock, spawned: list[CapturedGreenlet]) -> None:
    """A worker: user errors (one before the run id is known), its sink's part of the stats reports."""
    rec, port = h.recorder, h.port

    def report() -> None:
        data: dict[str, Any] = {}
        h.env.events.report_to_master.fire(client_id="w-abc", data=data)
        h.out("report", data.get("locust_sink"), data.get("locust_sink_usage"))

    h.user_error(ValueError, "early")
    report()  # before the sink started: no payload
    port.is_started = True
    rec.start_run("m-1")
    h.requests(["/a"], 3)
    report()
    h.user_error(ValueError, "boom")
    port.trouble_list += ["worker: Elasticsearch unreachable", "worker: spooling"]
    report()
    port.state = "down"
    report()  # no new trouble: no trouble key
    port.trouble_list.append("worker: dead letters")
    report()
    rec.stop_run()  # nothing on a worker
    rec.finish(None)
    rec.closing_documents(True)
    h.out("greenlets", [g.dead for g in spawned])


SCENARIOS: dict[str, tuple[Callable[[Harness, Clock, list[CapturedGreenlet]], None], str, str]] = {
    "standalone": (standalone, "local", ""),
    "master": (master, "master", ""),
    "worker": (worker, "worker", "w-abc"),
}


@contextmanager
def scripted_time(clock: Clock, spawned: list[CapturedGreenlet]) -> Iterator[list[str]]:
    """time.time is `clock`; gevent.spawn / spawn_later are captured; the sink's log records are collected."""
    saved = (time.time, gevent.spawn, gevent.spawn_later)
    errors: list[str] = []

    def spawn(fn: Callable[..., Any], *args: Any) -> CapturedGreenlet:
        spawned.append(CapturedGreenlet(fn, args))
        return spawned[-1]

    def spawn_later(_delay: float, fn: Callable[..., Any], *args: Any) -> CapturedGreenlet:
        return spawn(fn, *args)

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(f"{record.levelname}: {record.getMessage()}")

    handler = Collect(level=logging.WARNING)
    logging.getLogger("locust_sink").addHandler(handler)
    time.time, gevent.spawn, gevent.spawn_later = clock, spawn, spawn_later  # type: ignore[assignment]
    try:
        yield errors
    finally:
        time.time, gevent.spawn, gevent.spawn_later = saved  # type: ignore[assignment]
        logging.getLogger("locust_sink").removeHandler(handler)


def normalized(entry: list[Any]) -> list[Any]:
    """Machine- and checkout-dependent values replaced (documents stay in their serialised key order)."""
    if entry[0] != "doc":
        return entry
    doc = json.loads(entry[5])
    for key, value in VOLATILE.items():
        if key in doc:
            doc[key] = value
    if "locustfile" in doc:
        doc["locustfile"] = Path(doc["locustfile"]).name
    if doc.get("event") == "user_error":
        doc["traceback"] = doc["traceback"].strip().splitlines()[-1]  # not the paths and line numbers above it
    return [*entry[:5], orjson.dumps(doc).decode()]


def run_scenario(name: str, tmp: Path, make: RecorderFactory = new_recorder) -> list[list[Any]]:
    script, runner, client_id = SCENARIOS[name]
    clock = Clock()
    spawned: list[CapturedGreenlet] = []
    with scripted_time(clock, spawned) as logged:
        harness = Harness(tmp, make, runner, client_id)
        script(harness, clock, spawned)
    harness.out("log", logged)
    return [normalized(entry) for entry in harness.port.output]


def run_all(tmp: Path, make: RecorderFactory = new_recorder) -> dict[str, list[list[Any]]]:
    return {name: run_scenario(name, tmp, make) for name in SCENARIOS}


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: {sys.argv[0]} --write   (rewrites {GOLDEN})")
    with tempfile.TemporaryDirectory() as tmp:
        result = run_all(Path(tmp))
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {GOLDEN}: " + ", ".join(f"{k} {len(v)} entries" for k, v in result.items()))
