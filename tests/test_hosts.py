"""Issue 20: who is the bottleneck. Load generators' CPU/memory and saturation, and the system under test's
host metrics (`locust-sink agent`, Metricbeat-shaped documents), on real servers and real Locust runs.

- (a) a real run against the local SUT (httpbin) with the agent running alongside: its documents land in
  Elasticsearch and the report (json) has the Locust node's CPU and the host's CPU on one time axis;
- (b) a run CPU-bound on purpose is flagged saturated in the events and the report, a light run is not;
- (c) documents shaped like Metricbeat's (ECS field reference: system cpu / memory / network / diskio
  metricsets) indexed into a real Elasticsearch are read by the same code path, and files give the same;
- (d) the agent against an Elasticsearch that is down keeps running, counts, exits cleanly (and delivers what
  it kept once the cluster answers);
- (e) the HTML report with these charts opens in headless Chromium without console errors.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from browser import Browser
from helpers import (
    ROOT,
    count,
    delete_indices,
    es_client,
    free_port,
    headless_args,
    run_locust,
    subprocess_env,
    wait_until,
)

from locust_sink.hosts import ecs
from locust_sink.report.files import documents, read_run_folder
from locust_sink.report.hosts import read_es_hosts, read_file_hosts

pytestmark = pytest.mark.slow

LOCUSTFILE = Path(__file__).parent / "locustfiles" / "hosts_run.py"


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = subprocess_env({"PYTHONPATH": str(ROOT)})
    return subprocess.run([sys.executable, "-m", "locust_sink.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)  # fmt: skip


def start_agent(*args: str, log: Path) -> subprocess.Popen:
    env = subprocess_env({"PYTHONPATH": str(ROOT)})
    with log.open("w") as handle:
        return subprocess.Popen([sys.executable, "-m", "locust_sink.cli", "agent", *args], stdout=handle,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip


def stop_agent(proc: subprocess.Popen, log: Path, sig: int = signal.SIGTERM) -> tuple[str, float]:
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(15)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    assert proc.returncode == 0, log.read_text()
    return log.read_text(), time.monotonic() - t0


SUMMARY = re.compile(
    r"stopped \(([^)]+)\): (\d+) samples, (\d+) sent, (\d+) failed, (\d+) dropped, (\d+) still buffered"
)


def summary(text: str) -> dict[str, Any]:
    match = SUMMARY.search(text)
    assert match, text
    reason, *numbers = match.groups()
    return {"reason": reason, **dict(zip(("sampled", "sent", "failed", "dropped", "buffered"), map(int, numbers),
                                         strict=True))}  # fmt: skip


def locust(tmp: Path, label: str, host: str, users: int, run_time: str, *extra: str, mode: str = "light"):
    work = tmp / label
    work.mkdir(parents=True)
    args = headless_args(LOCUSTFILE, host, users, run_time, work / "stats", "--sink-stats-interval", "1",
                         "--exit-code-on-error", "0", *extra)  # fmt: skip
    proc = run_locust(args, env={"HOSTS_MODE": mode}, cwd=work, timeout=180)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert not re.search(r"/ERROR/locust_sink", log), log[-3000:]
    match = re.search(r"locust-sink: run (\S+): ", log)
    assert match, log[-3000:]
    truth = json.loads((work / "stats.json").read_text())
    return match.group(1), truth, log


def requests_in(truth: list[dict[str, Any]]) -> int:
    return sum(e["num_requests"] for e in truth)


# ------------------------------------------------------------------------ (a) agent beside a real run


def test_agent_documents_land_and_the_report_has_locust_and_host_cpu_on_one_axis(tmp_path, es_url, httpbin_url):
    prefix = f"t20-{uuid.uuid4().hex[:8]}"
    index = f"{prefix}-host-metrics"
    run_id = f"hosts-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "agent.log"
    agent = start_agent("--es-url", es_url, "--run-id", run_id, "--interval", "1", "--index", index,
                        "--host-name", "sut-host", log=log)  # fmt: skip
    try:
        time.sleep(1.5)
        _, truth, _ = locust(tmp_path, "a", httpbin_url, 4, "8s", "--es-url", es_url, "--es-index-prefix", prefix,
                             "--run-id", run_id)  # fmt: skip
        time.sleep(1.5)
    finally:
        text, took = stop_agent(agent, log)
    got = summary(text)
    assert got["reason"] == "SIGTERM" and took < 5, text
    assert got["sampled"] >= 9 and got["sent"] == got["sampled"] and got["failed"] == got["dropped"] == 0, got
    assert "unreachable" not in text and "refused" not in text, text
    es = es_client(es_url)
    try:
        assert count(es, index) == got["sent"]
        doc = es.search(index=index, size=1, sort=[{"@timestamp": "desc"}])["hits"]["hits"][0]["_source"]
        assert ecs.get(doc, "agent.type") == "locust-sink" and ecs.get(doc, ecs.RUN_ID) == run_id
        assert ecs.get(doc, ecs.HOST_NAME) == "sut-host"
        assert 0.0 <= ecs.get(doc, ecs.CPU_PCT) <= 1.0 and 0.0 < ecs.get(doc, ecs.MEMORY_PCT) < 1.0
        assert ecs.get(doc, ecs.MEMORY_USED_BYTES) > 0 and ecs.get(doc, ecs.NET_IN) >= 0
        mapping = es.indices.get_mapping(index=index)[index]["mappings"]["properties"]
        assert mapping["host"]["properties"]["name"]["type"] == "keyword"  # the agent's template applied

        report = cli("report", run_id, "--es-url", es_url, "--es-index-prefix", prefix, "--format", "json", "-o", "-",
                     "--host-metrics-index", f"{index}*")  # fmt: skip
        assert report.returncode == 0, report.stderr
        fig = json.loads(report.stdout)
        assert fig["total"]["requests"] == requests_in(truth)  # Locust's own --json-file
        start, end = fig["run"]["start_epoch"] * 1000, fig["run"]["end_epoch"] * 1000
        node = fig["load_generators"]["local"]
        assert len(node["t"]) >= 6 and all(start <= t <= end + 2000 for t in node["t"]), (start, end, node["t"])
        assert all(0.0 <= c < 400 for c in node["cpu"]) and max(node["cpu"]) > 0.0, node
        assert min(node["memory_mb"]) > 10
        hosts = fig["host_metrics"]["hosts"]
        assert list(hosts) == ["sut-host"], fig["host_metrics"]
        host = hosts["sut-host"]
        cpu_points = [(t, c) for t, c in zip(host["t"], host["cpu"], strict=True) if c is not None]
        assert len(cpu_points) >= 6, host
        window = fig["host_metrics"]["window_s"] * 1000
        # one axis: the host's windows cover the run, as the node's snapshots do
        assert min(t for t, _ in cpu_points) <= start + 2 * window and max(t for t, _ in cpu_points) >= end - window
        assert all(0.0 <= c <= 100.0 for _, c in cpu_points)
        assert sum(v for v in host["net_in"] if v) > 0  # Locust <-> httpbin on loopback
    finally:
        delete_indices(es, f"{prefix}-*")


# ------------------------------------------------------------------------ (b) saturated and light runs


def _events(folder: Path) -> list[dict[str, Any]]:
    return [doc for path in sorted(folder.glob("*.ndjson")) for family, doc in documents(path) if family == "events"]


def test_cpu_bound_run_is_flagged_saturated_and_a_light_run_is_not(tmp_path, httpbin_url):
    results = tmp_path / "results"
    heavy_id, heavy_truth, _ = locust(tmp_path, "heavy", httpbin_url, 50, "20s", "--sink-dir", str(results),
                                      mode="cpu")  # fmt: skip
    light_id, light_truth, _ = locust(tmp_path, "light", httpbin_url, 1, "6s", "--sink-dir", str(results))
    heavy = _events(results / heavy_id)
    saturated = [e for e in heavy if e["event"] == "cpu_saturated"]
    assert saturated and all(e["node"] == "local" and e["details"]["demand_percent"] >= 90.0 for e in saturated), [
        (e["event"], e.get("message")) for e in heavy
    ]
    recovered = [e for e in heavy if e["event"] == "cpu_recovered"]
    assert len(recovered) <= len(saturated) <= len(recovered) + 1  # each said once per episode
    assert not [e for e in _events(results / light_id) if e["event"].startswith("cpu_")]

    fig = read_run_folder(results / heavy_id)
    assert fig.total.requests == requests_in(heavy_truth)
    assert fig.saturation and fig.saturation[0]["node"] == "local" and fig.saturation[0]["seconds"] >= 3
    assert (
        fig.bottleneck[0].startswith("Between ")
        and "load generator local was CPU-saturated (>= 90 %" in (fig.bottleneck[0])
        and fig.bottleneck[0].endswith("results in that range measure Locust, not the system under test.")
    )
    # used or waited for: on a machine whose cores are shared, the process gets less than a core but wants one
    demand = fig.load_generators["local"]["demand"]
    assert max(demand) >= 90.0 and sum(d >= 90.0 for d in demand) >= 3, fig.load_generators["local"]

    text = cli("report", str(results / heavy_id), "--format", "text", "-o", "-")
    assert text.returncode == 0 and "BOTTLENECK: Between " in text.stdout, text.stdout
    assert "Between " in text.stderr  # said on the terminal too
    light = json.loads(cli("report", str(results / light_id), "--format", "json", "-o", "-").stdout)
    assert light["total"]["requests"] == requests_in(light_truth)
    assert light["saturation"] == [] and light["bottleneck"] == []
    assert light["load_generators"]["local"]["demand"] and max(light["load_generators"]["local"]["demand"]) < 90.0


# ------------------------------------------------------------------------ (c) Metricbeat-shaped documents


def metricbeat_docs(start: float) -> list[dict[str, Any]]:
    """Documents as Metricbeat's system module writes them (ECS field reference, system cpu / memory /
    network / diskio metricsets, period 10 s): per host every 10 s one cpu, one memory, one network document
    per interface and one diskio document per disk; `host.*.bytes` are the bytes since the last collection."""
    docs = []
    for h, host in enumerate(("sut-1", "sut-2")):
        for i in range(6):
            t = start + 10 * i + 1
            base = {"@timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000Z",
                    "host": {"name": host}, "agent": {"type": "metricbeat"}, "metricset": {"period": 10000},
                    "event": {"module": "system"}}  # fmt: skip
            cpu = 0.10 + 0.05 * i + 0.3 * h
            docs.append({**base, "event": {"dataset": "system.cpu", "module": "system"},
                         "metricset": {"name": "cpu", "period": 10000}, "host": {"name": host, "cpu": {"usage": cpu}},
                         "system": {"cpu": {"cores": 4, "total": {"norm": {"pct": cpu}, "pct": cpu * 4}}}})  # fmt: skip
            used = {"pct": 0.5 + 0.01 * i, "bytes": int(8e9 * (0.5 + 0.01 * i))}
            docs.append({**base, "event": {"dataset": "system.memory", "module": "system"},
                         "system": {"memory": {"total": 8_000_000_000, "actual": {"used": used},
                                               "used": {"bytes": 6_000_000_000, "pct": 0.75}}}})  # fmt: skip
            for n, iface in enumerate(("eth0", "lo")):
                docs.append({**base, "event": {"dataset": "system.network", "module": "system"},
                             "host": {"name": host, "network": {"ingress": {"bytes": 1_000_000 * (n + 1)},
                                                                "egress": {"bytes": 500_000 * (n + 1)}}},
                             "system": {"network": {"name": iface, "in": {"bytes": 10**9 + i * 10**6},
                                                    "out": {"bytes": 10**9}}}})  # fmt: skip
            docs.append({**base, "event": {"dataset": "system.diskio", "module": "system"},
                         "host": {"name": host, "disk": {"read": {"bytes": 200_000}, "write": {"bytes": 400_000}}},
                         "system": {"diskio": {"name": "sda", "read": {"bytes": 10**10 + i}}}})  # fmt: skip
    return docs


def test_metricbeat_shaped_documents_are_read_by_the_same_code_path_from_es_and_files(tmp_path, es_url):
    es = es_client(es_url)
    start = float(int(time.time()) - 3600)
    end = start + 60
    index = f"t20-mb-{uuid.uuid4().hex[:6]}"
    body = b"".join(orjson.dumps({"index": {"_index": index}}) + b"\n" + orjson.dumps(d) + b"\n"
                    for d in metricbeat_docs(start))  # fmt: skip
    # Metricbeat's own template maps host.name as a keyword (ECS)
    es.indices.create(index=index, mappings={"properties": {"host": {"properties": {"name": {"type": "keyword"}}},
                                                            "@timestamp": {"type": "date"}}})  # fmt: skip
    try:
        assert not es.bulk(operations=body, refresh=True)["errors"]
        from_es = read_es_hosts(es, f"{index}*", start, end)
        path = tmp_path / "host-mb.ndjson"
        path.write_bytes(body)
        from_files = read_file_hosts((d for _, d in documents(path)), start, end, "files")
        assert from_es.columns == from_files.columns
        assert set(from_es.columns) == {"sut-1", "sut-2"} and from_es.window_s == 1
        one = from_es.columns["sut-1"]
        assert [c for c in one["cpu"] if c is not None] == [round(100 * (0.10 + 0.05 * i), 2) for i in range(6)]
        assert [m for m in one["memory"] if m is not None] == [round(100 * (0.5 + 0.01 * i), 2) for i in range(6)]
        # two interfaces' deltas of one 10-s collection: 3 MB in, 1.5 MB out per 10 s
        assert set(one["net_in"]) - {None} == {300_000.0} and set(one["net_out"]) - {None} == {150_000.0}
        assert set(one["disk_read"]) - {None} == {20_000.0} and set(one["disk_write"]) - {None} == {40_000.0}
        two = from_es.columns["sut-2"]
        assert [c for c in two["cpu"] if c is not None][0] == 40.0
        only = read_es_hosts(es, f"{index}*", start, end, hosts=("sut-2",))
        assert list(only.columns) == ["sut-2"]
        assert read_es_hosts(es, f"{index}*", start + 7200, end + 7200).columns == {}  # another time range
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)


# ------------------------------------------------------------------------ (d) the agent and a cluster away


def test_agent_keeps_running_while_es_is_down_counts_drops_and_exits_cleanly(tmp_path, es_url):
    port = free_port()
    log = tmp_path / "down.log"
    agent = start_agent("--es-url", f"http://127.0.0.1:{port}", "--interval", "0.3", "--buffer", "5", log=log)
    wait_until(lambda: "unreachable" in log.read_text(), 20, what="the unreachable line")
    time.sleep(3.0)
    assert agent.poll() is None, log.read_text()  # still sampling
    text, took = stop_agent(agent, log, signal.SIGINT)
    got = summary(text)
    assert got["reason"] == "SIGINT" and took < 8, (text, took)
    assert got["sent"] == got["failed"] == 0 and got["buffered"] == 5
    assert got["dropped"] == got["sampled"] - 5 > 0, got
    assert text.count("unreachable") == 1 and text.count("buffer full") == 1, text  # one line per condition
    assert "Traceback" not in text and "Node <" not in text, text

    # the same agent through a port that starts refusing and then forwards to the real cluster
    index = f"t20-back-{uuid.uuid4().hex[:6]}"
    relay = Relay(port, es_url)
    log2 = tmp_path / "back.log"
    agent = start_agent("--es-url", f"http://127.0.0.1:{port}", "--interval", "0.3", "--index", index,
                        "--duration", "6", log=log2)  # fmt: skip
    try:
        wait_until(lambda: "unreachable" in log2.read_text(), 20, what="the unreachable line")
        relay.start()
        agent.wait(30)
    finally:
        relay.stop()
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
    text = log2.read_text()
    got = summary(text)
    assert agent.returncode == 0 and got["reason"] == "--duration 6 s"
    assert "delivering again" in text and got["sent"] == got["sampled"] and got["buffered"] == 0, text
    es = es_client(es_url)
    try:
        assert count(es, index) == got["sent"]
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)


class Relay:
    """A TCP relay on 127.0.0.1:port to the cluster, started late (before that, the port refuses)."""

    def __init__(self, port: int, target: str) -> None:
        self.port = port
        self.target = target

    def start(self) -> None:
        host, target_port = self.target.rsplit("/", 1)[-1].split(":")
        code = (
            "import socket,threading\n"
            f"srv=socket.create_server(('127.0.0.1',{self.port}))\n"
            "def pipe(a,b):\n"
            "    try:\n"
            "        while (d:=a.recv(65536)): b.sendall(d)\n"
            "    except OSError: pass\n"
            "    finally: a.close(); b.close()\n"
            "while True:\n"
            "    c,_=srv.accept()\n"
            f"    u=socket.create_connection(('{host}',{target_port}))\n"
            "    threading.Thread(target=pipe,args=(c,u),daemon=True).start()\n"
            "    threading.Thread(target=pipe,args=(u,c),daemon=True).start()\n"
        )
        self.proc = subprocess.Popen([sys.executable, "-c", code])
        wait_until(lambda: _listening(self.port), 10, 0.1, what="the relay")

    def stop(self) -> None:
        if getattr(self, "proc", None) is not None:
            self.proc.kill()
            self.proc.wait(5)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# ------------------------------------------------------------------------ (e) the HTML report in Chromium


def test_html_report_with_load_generator_and_host_charts_opens_without_console_errors(tmp_path, httpbin_url):
    results = tmp_path / "results"
    run_id = f"html-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "agent.log"
    agent = start_agent("--out", str(results), "--run-id", run_id, "--interval", "1", log=log)
    try:
        time.sleep(1.2)
        _, truth, _ = locust(tmp_path, "h", httpbin_url, 3, "6s", "--sink-dir", str(results), "--run-id", run_id)
    finally:
        text, _ = stop_agent(agent, log)
    assert summary(text)["sent"] >= 5, text
    fig = read_run_folder(results / run_id)
    assert fig.total.requests == requests_in(truth)
    assert fig.hosts is not None and list(fig.hosts.columns) == [socket.gethostname()]
    page = tmp_path / "report.html"
    done = cli("report", str(results / run_id), "-o", str(page))
    assert done.returncode == 0, done.stderr
    with Browser() as browser:
        state = browser.open(page.as_uri())
        assert browser.errors() == [], browser.errors()
        assert len(browser.painted()) >= state["figures"] >= 7, (state, browser.canvases())
        outside = [u for u in browser.requests if not u.startswith(("file://", "data:", "blob:", "about:"))]
        assert outside == []
        section = browser.driver.find_element("id", "health")
        assert "Who is the bottleneck" in section.text
        rows = browser.table("loadgen")
        assert [r[0] for r in rows] == ["local"]
