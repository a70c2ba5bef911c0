#!/usr/bin/env python3
"""What does `import locust_sink` cost a Locust process? One command, interleaved rounds, a markdown table.

    python3 bench/overhead.py --rounds 3 --duration 20

Starts its own nginx (127.0.0.1, free port, generated config in a temp dir) and, unless --es-url is given,
an Elasticsearch with scripts/es-local.sh. Then, per round and per CPU mode, runs one headless Locust
process (FastHttpUser, no wait time, no --processes) for --duration seconds in each of four variants:

    baseline  locustfile without `import locust_sink`
    file      with the sink, no --es-url: NDJSON files under a temp --sink-dir
    es        with the sink -> the real Elasticsearch
    es-load   the baseline locustfile, while bench/es_neighbour.py (a process of its own, pinned like
              Elasticsearch) sends --neighbour-rate records/s through the sink to the same Elasticsearch:
              what an indexing Elasticsearch on the same machine costs Locust, without the sink in Locust
    es-bg     the es variant with every Elasticsearch thread at SCHED_IDLE for the run: ES gets only CPU
              time that nginx and Locust leave unused, so its indexing bursts cannot delay the server under
              test -- a stand-in for an Elasticsearch on another machine. The Locust process does exactly
              the es variant's work (same sink, same bulk requests); only ES's claim on the CPUs changes

The variant order rotates from round to round so that drift (other load on the machine, thermal, ES merging)
does not favour one variant. CPU modes: `shared` (no pinning) and `pinned` (Locust on the last CPU, nginx,
Elasticsearch, the es-load neighbour and the sink's encoder helper process on the others: the helper is found
as Locust's child process and moved there, and its CPU is reported in a column of its own). Per run:
requests/s (Locust's --json-file totals over the window Locust measured), Locust CPU per request (user+sys
from wait4's rusage for the whole process, and for the load window only from /proc samples), p50/p99 from
Locust's response-time histograms, the sink's final-flush time from its log line, and a delivery check: the
number of request records in ES (or in the NDJSON file) must equal Locust's request count, else the benchmark
fails (exit status 1).

Raw results go to bench/results/overhead-<UTC time>.json. Traffic only to 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LOCUSTFILES = {"baseline": HERE / "locustfiles" / "plain.py", "sink": HERE / "locustfiles" / "sink.py"}
ES_LOCAL = REPO / "scripts" / "es-local.sh"
ES_INSTANCE = "bench-overhead"
INDEX_PREFIX = "locust-bench"
VARIANTS = ("baseline", "file", "es", "es-load", "es-bg")
ES_VARIANTS = ("es", "es-bg")  # Locust runs the sink -> Elasticsearch
NEIGHBOUR = HERE / "es_neighbour.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")
STATIC_BODY = b"<!doctype html><title>bench</title><p>locust-sink overhead benchmark: a small static file.</p>\n"
FLUSH_RE = re.compile(r"locust-sink: run (\S+): (\d+) request records -> .*?: (.*); final flush took ([0-9.]+) s")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port(also_free_offset: int | None = None) -> int:
    """A free TCP port on 127.0.0.1 (and, if asked, port+offset free too: ES's transport port)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if also_free_offset is None:
            return port
        other = port + also_free_offset
        if other < 65536:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", other))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair found")


def http(method: str, url: str, body: bytes | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# ----- CPU accounting --------------------------------------------------------------------------------


def proc_cpu(pid: int) -> float | None:
    """user+sys CPU seconds of a whole process (all threads) from /proc/<pid>/stat; None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15 of stat)


def system_busy() -> float:
    """Busy CPU seconds of the whole machine since boot (all CPUs, everything but idle and iowait)."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    ticks = [int(x) for x in parts[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK


def tree_pids(pid: int) -> list[int]:
    """pid and its descendants (nginx master + workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        ppid = int(data[data.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_threads(pid: int) -> list[int]:
    """Thread ids of every process in the tree (processes that are gone by now are skipped)."""
    tids: list[int] = []
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            tids.extend(int(t) for t in os.listdir(f"/proc/{p}/task"))
    return tids


def set_idle_priority(pid: int, idle: bool) -> None:
    """Every thread of a process tree to SCHED_IDLE (runs only on otherwise idle CPUs) or back to SCHED_OTHER.

    Threads started later inherit the policy of the thread that starts them, so the whole tree is walked
    again when switching back.
    """
    policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
    for tid in tree_threads(pid):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(tid, policy, os.sched_param(0))


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Like `taskset -a -p`: every thread of every process in the tree (threads started later inherit)."""
    for tid in tree_threads(pid):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)


# ----- nginx -----------------------------------------------------------------------------------------


class Nginx:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        d = self.dir
        os.chmod(d, 0o755)  # workers run as nobody when started as root: they must read the static file
        (d / "www").mkdir()
        (d / "www" / "index.html").write_bytes(STATIC_BODY)
        conf = f"""
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp-body;
    proxy_temp_path {d}/tmp-proxy;
    fastcgi_temp_path {d}/tmp-fastcgi;
    uwsgi_temp_path {d}/tmp-uwsgi;
    scgi_temp_path {d}/tmp-scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    default_type text/html;
    server {{
        listen 127.0.0.1:{self.port};
        root {d}/www;
        location = / {{ try_files /index.html =404; }}
        location = /ok {{ return 200 "ok\\n"; }}
        location = /missing {{ return 404; }}
    }}
}}
"""
        (d / "nginx.conf").write_text(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen(
            [nginx, "-c", str(d / "nginx.conf"), "-p", str(d), "-e", str(d / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=open(d / "stderr.log", "wb"),  # noqa: SIM115  (closed with the process)
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(d / 'stderr.log').read_text()} {(d / 'error.log').read_text()}")
            with contextlib.suppress(OSError):
                status, body = http("GET", self.url + "/", timeout=1)
                if status == 200 and body == STATIC_BODY:
                    assert http("GET", self.url + "/ok", timeout=1)[0] == 200
                    assert http("GET", self.url + "/missing", timeout=1)[0] == 404
                    return
            time.sleep(0.1)
        raise RuntimeError("nginx did not answer within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


# ----- Elasticsearch ---------------------------------------------------------------------------------


class Elasticsearch:
    """Either one started with scripts/es-local.sh (and stopped + removed at the end) or a given URL."""

    def __init__(self, url: str | None) -> None:
        self.url = url.rstrip("/") if url else None
        self.started = False
        self.pid: int | None = None
        self.version = "?"

    def start(self) -> None:
        if self.url is None:
            if not ES_LOCAL.exists():
                raise SystemExit(f"{ES_LOCAL} not found: pass --es-url of a running Elasticsearch")
            port = free_port(also_free_offset=100)
            log(f"starting Elasticsearch ({ES_LOCAL.name} start {ES_INSTANCE} --port {port}) ...")
            out = subprocess.run(
                ["bash", str(ES_LOCAL), "start", ES_INSTANCE, "--port", str(port)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if out.returncode != 0:
                raise SystemExit(f"es-local.sh start failed:\n{out.stdout}\n{out.stderr}")
            self.started = True
            self.url = out.stdout.strip().splitlines()[-1]
            run_base = Path(os.environ.get("LOCUST_SINK_ES_RUN", "/tmp/locust-sink-es"))
            with contextlib.suppress(OSError, ValueError):
                self.pid = int((run_base / ES_INSTANCE / "pid").read_text().strip())
        if not self.url.startswith(("http://127.0.0.1", "http://localhost", "https://127.0.0.1")):
            raise SystemExit("this benchmark only talks to 127.0.0.1")
        # `GET /` is missing from es-local.sh's stripped build (405): ask _nodes for the version
        status, body = http("GET", self.url + "/_nodes/_local?filter_path=nodes.*.version")
        if status != 200:
            raise SystemExit(f"Elasticsearch at {self.url} answered {status}: {body[:200]!r}")
        self.version = next(iter(json.loads(body)["nodes"].values()))["version"]
        log(f"Elasticsearch {self.version} at {self.url} (pid {self.pid or 'unknown: not pinned'})")

    def count_requests(self, run_id: str) -> int:
        index = f"{INDEX_PREFIX}-requests"
        http("POST", f"{self.url}/{index}/_refresh")
        query = json.dumps({"query": {"term": {"run_id": run_id}}}).encode()
        status, body = http("POST", f"{self.url}/{index}/_count", query)
        if status != 200:
            raise RuntimeError(f"_count answered {status}: {body[:300]!r}")
        return int(json.loads(body)["count"])

    def stop(self) -> None:
        if self.started:
            log("stopping and removing the benchmark's Elasticsearch")
            subprocess.run(["bash", str(ES_LOCAL), "remove", ES_INSTANCE], capture_output=True, timeout=120)


# ----- one Locust run --------------------------------------------------------------------------------


@dataclass
class Run:
    round: int
    mode: str
    variant: str
    order: int
    run_id: str
    exit_code: int | None = None
    requests: int = 0
    failures: int = 0
    window_s: float = 0.0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_total_s: float = 0.0  # whole process: imports, ramp-up, load, final flush (wait4 rusage)
    cpu_window_s: float = 0.0  # only the load window Locust measured (interpolated /proc samples)
    cpu_us_per_req: float = 0.0
    cpu_window_us_per_req: float = 0.0
    wall_s: float = 0.0
    locust_busy: float = 0.0  # Locust CPU / window: 1.0 = CPU-bound (rps is then 1 / CPU per request)
    nginx_cores: float = 0.0  # CPU of nginx (master + worker) / window
    es_cores: float = 0.0  # CPU of our Elasticsearch / window (0 when --es-url: pid unknown)
    other_cpu_s: float = 0.0  # busy CPU of everything else on the machine during the load window
    flush_s: float | None = None
    sink_emitted: int | None = None
    sink_summary: str | None = None
    delivered: int | None = None  # request records found in ES / in the NDJSON file
    neighbour_cores: float = 0.0  # es-load: CPU of bench/es_neighbour.py / window
    neighbour_indexed: int | None = None  # es-load: records the neighbour indexed (must equal what it emitted)
    helper_cores: float = 0.0  # the sink's encoder helper process: CPU / window
    problems: list[str] = field(default_factory=list)


def percentile(histogram: dict[float, int], total: int, percent: float) -> float:
    """Locust's own rule (stats.calculate_response_time_percentile) on its rounded-bucket histogram."""
    wanted = int(total * percent)
    processed = 0
    for rt in sorted(histogram, reverse=True):
        processed += histogram[rt]
        if total - processed <= wanted:
            return rt
    return 0.0


def count_file_records(sink_dir: Path, run_id: str) -> int:
    n = 0
    for path in (sink_dir / run_id).glob("*.ndjson"):
        with path.open("rb") as f:
            for i, line in enumerate(f):
                if i % 2 == 0 and b'-requests"' in line:
                    n += 1
    return n


def interpolate(samples: list[tuple[float, float]], t: float) -> float:
    if t <= samples[0][0]:
        return samples[0][1]
    for (t0, c0), (t1, c1) in zip(samples, samples[1:], strict=False):
        if t0 <= t <= t1:
            return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)
    return samples[-1][1]


def run_locust(
    args: argparse.Namespace,
    run: Run,
    nginx: Nginx,
    es: Elasticsearch,
    locust_cpu: int | None,
    work: Path,
    server_pids: dict[str, list[int]],
    other_cpus: set[int] | None = None,
) -> Run:
    sink = run.variant in ("file", *ES_VARIANTS)
    out = work / f"r{run.round}-{run.mode}-{run.variant}"
    out.mkdir()
    cmd = [
        args.python, "-m", "locust",
        "-f", str(args.sink_locustfile if sink else LOCUSTFILES["baseline"]),
        "--headless", "--only-summary",
        "-u", str(args.users), "-r", str(args.users),
        "-t", f"{args.duration}s",
        "--host", nginx.url,
        "--json-file", str(out / "stats"),
        "--exit-code-on-error", "0",  # the 404s are failures on purpose
    ]  # fmt: skip
    if sink:
        cmd += ["--run-id", run.run_id, "--sink-dir", str(out / "sink")]
    if run.variant in ES_VARIANTS:
        cmd += ["--es-url", str(es.url), "--es-index-prefix", INDEX_PREFIX]
    if locust_cpu is not None:
        cmd = ["taskset", "-c", str(locust_cpu), *cmd]  # taskset execs: the pid stays Locust's
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("LOCUST_ES_URL", None)
    stderr_path = out / "locust.log"
    neighbour = None
    if run.variant == "es-load":
        # The es variant's indexing work for Elasticsearch, from a process of its own, next to a Locust
        # without the sink (it runs a little longer than Locust and is stopped when Locust is done).
        neighbour = subprocess.Popen(
            [
                args.python, str(NEIGHBOUR), "--es-url", str(es.url), "--es-index-prefix", INDEX_PREFIX,
                "--rate", str(args.neighbour_rate), "--duration", str(args.duration + args.grace),
                "--run-id", run.run_id,
            ],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        if other_cpus is not None:
            set_affinity(neighbour.pid, other_cpus)
        server_pids = {**server_pids, "neighbour": [neighbour.pid]}
        time.sleep(1.0)  # imports, connection and templates, before Locust starts
    started = time.time()
    with open(stderr_path, "wb") as errf:
        proc = subprocess.Popen(cmd, cwd=out, stdout=errf, stderr=subprocess.STDOUT, env=env)
    pid = proc.pid
    samples: list[tuple[float, float]] = []  # (wall time, CPU s of the Locust process)
    sys_samples: list[tuple[float, float]] = []  # (wall time, busy CPU s of the machine)
    srv_samples: dict[str, list[tuple[float, float]]] = {name: [] for name in server_pids}  # nginx, es
    deadline = time.monotonic() + args.duration + args.grace
    rusage = None
    status = 0
    # The sink's encoder helper (a child of Locust, started at the first batch): its CPU is reported on its
    # own, and when pinned it goes with nginx and Elasticsearch, off Locust's CPU (see docs/benchmarks.md).
    helper_pid: int | None = None
    helper_samples: list[tuple[float, float]] = []
    next_scan = 0.0
    while True:
        cpu = proc_cpu(pid)
        now = time.time()
        if cpu is not None:
            samples.append((now, cpu))
        if sink and helper_pid is None and time.monotonic() >= next_scan:
            next_scan = time.monotonic() + 0.5
            children = [p for p in tree_pids(pid) if p != pid]
            if children:
                helper_pid = children[0]
                if other_cpus is not None:
                    set_affinity(helper_pid, other_cpus)
        if helper_pid is not None:
            helper_cpu = proc_cpu(helper_pid)
            if helper_cpu is not None:
                helper_samples.append((now, helper_cpu))
            elif helper_samples:
                helper_samples.append((now, helper_samples[-1][1]))  # exited: its total stays
        sys_samples.append((now, system_busy()))
        for name, pids in server_pids.items():
            srv_samples[name].append((now, sum(proc_cpu(p) or 0.0 for p in pids)))
        wpid, status, rusage = os.wait4(pid, os.WNOHANG)
        if wpid == pid:
            break
        if time.monotonic() > deadline:
            run.problems.append(f"Locust did not exit within {args.duration + args.grace} s: killed")
            os.kill(pid, signal.SIGKILL)
            _, status, rusage = os.wait4(pid, 0)
            break
        time.sleep(0.1)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    if neighbour is not None:
        neighbour.send_signal(signal.SIGTERM)
        try:
            output, _ = neighbour.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            neighbour.kill()
            output, _ = neighbour.communicate()
            run.problems.append("es_neighbour.py did not stop within 120 s")
        lines = output.decode(errors="replace").strip().splitlines()
        try:
            report = json.loads(lines[-1])
            run.neighbour_indexed = report["indexed"]
            if report["indexed"] != report["emitted"]:
                run.problems.append(f"es_neighbour.py: {report['summary']}")
        except (IndexError, ValueError, KeyError):
            run.problems.append("es_neighbour.py: " + " | ".join(lines[-5:]))
    run.exit_code = proc.returncode
    run.wall_s = time.time() - started
    run.cpu_total_s = rusage.ru_utime + rusage.ru_stime
    if run.exit_code != 0:
        run.problems.append(f"Locust exit code {run.exit_code}")

    stats_file = out / "stats.json"
    if not stats_file.exists():
        run.problems.append("no --json-file written")
        return _attach_log(run, stderr_path)
    entries = json.loads(stats_file.read_text())
    histogram: dict[float, int] = {}
    for e in entries:
        run.requests += e["num_requests"]
        run.failures += e["num_failures"]
        for k, v in e["response_times"].items():
            histogram[float(k)] = histogram.get(float(k), 0) + v
    t_start = min(e["start_time"] for e in entries)
    t_end = max(e["last_request_timestamp"] for e in entries if e["last_request_timestamp"])
    run.window_s = t_end - t_start
    run.rps = run.requests / run.window_s if run.window_s > 0 else 0.0
    run.p50_ms = percentile(histogram, run.requests, 0.50)
    run.p99_ms = percentile(histogram, run.requests, 0.99)
    if samples:
        run.cpu_window_s = interpolate(samples, t_end) - interpolate(samples, t_start)
        machine = interpolate(sys_samples, t_end) - interpolate(sys_samples, t_start)
        server = {name: interpolate(v, t_end) - interpolate(v, t_start) for name, v in srv_samples.items()}
        helper = interpolate(helper_samples, t_end) - interpolate(helper_samples, t_start) if helper_samples else 0.0
        run.other_cpu_s = max(0.0, machine - run.cpu_window_s - sum(server.values()) - helper)
        if run.window_s > 0:
            run.locust_busy = run.cpu_window_s / run.window_s
            run.nginx_cores = server.get("nginx", 0.0) / run.window_s
            run.es_cores = server.get("es", 0.0) / run.window_s
            run.neighbour_cores = server.get("neighbour", 0.0) / run.window_s
            run.helper_cores = helper / run.window_s
    if run.requests:
        run.cpu_us_per_req = run.cpu_total_s / run.requests * 1e6
        run.cpu_window_us_per_req = run.cpu_window_s / run.requests * 1e6

    text = stderr_path.read_text(errors="replace")
    if sink:
        matches = list(FLUSH_RE.finditer(text))
        match = matches[-1] if matches else None
        if match is None:
            run.problems.append("no 'final flush took' line in Locust's log")
        else:
            run.sink_emitted, run.sink_summary, run.flush_s = int(match.group(2)), match.group(3), float(match.group(4))
            if run.sink_emitted != run.requests:
                run.problems.append(f"sink saw {run.sink_emitted} requests, Locust counted {run.requests}")
            if "UNBALANCED" in run.sink_summary:
                run.problems.append(f"sink accounting unbalanced: {run.sink_summary}")
        if run.variant in ES_VARIANTS:
            run.delivered = es.count_requests(run.run_id)
        else:
            run.delivered = count_file_records(out / "sink", run.run_id)
        if run.delivered != run.requests:
            run.problems.append(f"{run.delivered} request records delivered, Locust counted {run.requests}")
    for line in text.splitlines():
        if "Traceback" in line or ("locust-sink" in line and ("ERROR" in line or "WARNING" in line)):
            run.problems.append(f"log: {line.strip()[:200]}")
    if run.problems:
        return _attach_log(run, stderr_path)
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return run


def _attach_log(run: Run, path: Path) -> Run:
    tail = path.read_text(errors="replace").splitlines()[-15:] if path.exists() else []
    run.problems.append("log tail: " + " | ".join(tail))
    return run


# ----- the schedule and the report -------------------------------------------------------------------


def measure_sink_cpu(args: argparse.Namespace, es_url: str | None) -> dict[str, Any]:
    """bench/sink_cpu.py in a subprocess: the sink's own CPU per record, hardly affected by other load."""
    log("in-process sink CPU per record (bench/sink_cpu.py) ...")
    cmd = [args.python, str(HERE / "sink_cpu.py"), "--json", "--es-index-prefix", INDEX_PREFIX]
    if es_url:
        cmd += ["--es-url", es_url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=HERE)
    if out.returncode != 0:
        log(f"sink_cpu.py failed: {out.stderr[-2000:]}")
        return {}
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_plan(modes: list[str]) -> tuple[set[int], int, set[int]]:
    """All CPUs, Locust's CPU in pinned mode (the last) and the servers' (the others); drops `pinned` from
    modes on a one-CPU machine."""
    ncpu = os.cpu_count() or 1
    if "pinned" in modes and ncpu < 2:
        log("one CPU only: no pinned mode")
        modes.remove("pinned")
    return set(range(ncpu)), ncpu - 1, set(range(ncpu - 1))


def measured_locust_sink(python: str) -> str:
    """The folder of the locust_sink that `python` imports, with a loud warning when it is not this tree's.

    The runs import whatever locust_sink the interpreter finds (an editable install can point at another
    checkout, e.g. a CI clone): measure this tree's code or say loudly which code was measured.
    """
    found = subprocess.run(
        [python, "-c", "import locust_sink, os; print(os.path.dirname(os.path.abspath(locust_sink.__file__)))"],
        capture_output=True, text=True, timeout=60, cwd=tempfile.gettempdir(),
    ).stdout.strip()  # fmt: skip
    if Path(found) != REPO / "locust_sink":
        log(f"WARNING: {python} imports locust_sink from {found or '(nowhere)'}, not from {REPO}: ")
        log(f"         the numbers are for that code (pip install -e {REPO} to measure this tree)")
    return found


def machine_info() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "locust_sink"], capture_output=True, text=True
    ).stdout
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "git_commit": commit.strip(),
        "locust_sink_dirty": bool(dirty.strip()),
        "loadavg_before": os.getloadavg(),
    }


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(runs: list[Run], modes: list[str], variants: list[str]) -> tuple[list[dict[str, Any]], str]:
    rows = []
    for mode in modes:
        base = [r.rps for r in runs if r.mode == mode and r.variant == "baseline" and r.requests]
        for variant in variants:
            rs = [r for r in runs if r.mode == mode and r.variant == variant and r.requests]
            if not rs:
                continue
            row: dict[str, Any] = {
                "mode": mode,
                "variant": variant,
                "n": len(rs),
                "rps": med([r.rps for r in rs]),
                "rps_min": min(r.rps for r in rs),
                "rps_max": max(r.rps for r in rs),
                "cpu_us_per_req": med([r.cpu_us_per_req for r in rs]),
                "cpu_window_us_per_req": med([r.cpu_window_us_per_req for r in rs]),
                "p50_ms": med([r.p50_ms for r in rs]),
                "p99_ms": med([r.p99_ms for r in rs]),
                "flush_ms": med([r.flush_s * 1000 for r in rs if r.flush_s is not None])
                if variant in ("file", *ES_VARIANTS)
                else None,
                "other_cores": med([r.other_cpu_s / r.window_s for r in rs if r.window_s]),
                "locust_busy": med([r.locust_busy for r in rs]),
                "nginx_cores": med([r.nginx_cores for r in rs]),
                "es_cores": med([r.es_cores for r in rs]),
                "neighbour_cores": med([r.neighbour_cores for r in rs]),
                "helper_cores": med([r.helper_cores for r in rs]),
                "delivered_ok": (
                    all(r.delivered == r.requests for r in rs) if variant in ("file", *ES_VARIANTS) else None
                ),
            }
            row["ratio"] = row["rps"] / med(base) if base else float("nan")
            # paired per-round ratio: each sink run against the baseline of its own round and mode
            paired = []
            for r in rs:
                b = [x.rps for x in runs if x.mode == mode and x.variant == "baseline" and x.round == r.round]
                if b and b[0]:
                    paired.append(r.rps / b[0])
            row["ratio_paired"] = med(paired)
            rows.append(row)
    lines = [
        "| CPUs | variant | req/s median (min-max) | ratio to baseline (paired) | Locust CPU µs/req (load window) "
        "| p50 ms | p99 ms | final flush ms | records delivered |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        flush = "-" if row["flush_ms"] is None else f"{row['flush_ms']:.0f}"
        delivered = "-" if row["delivered_ok"] is None else ("all" if row["delivered_ok"] else "**MISSING**")
        lines.append(
            f"| {row['mode']} | {row['variant']} | {row['rps']:.0f} ({row['rps_min']:.0f}-{row['rps_max']:.0f}) "
            f"| {row['ratio']:.3f} ({row['ratio_paired']:.3f}) | {row['cpu_window_us_per_req']:.0f} "
            f"| {row['p50_ms']:.0f} | {row['p99_ms']:.0f} | {flush} | {delivered} |"
        )
    lines += [
        "",
        "| CPUs | variant | Locust CPU µs/req (whole process) | Locust busy | nginx cores | Elasticsearch cores "
        "| es_neighbour.py (cores) | sink encoder helper (cores) | other processes (cores) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['mode']} | {row['variant']} | {row['cpu_us_per_req']:.0f} | {row['locust_busy']:.2f} "
            f"| {row['nginx_cores']:.2f} | {row['es_cores']:.2f} | {row['neighbour_cores']:.2f} "
            f"| {row['helper_cores']:.2f} | {row['other_cores']:.2f} |"
        )
    return rows, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=20, help="seconds of load per run (Locust -t)")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--es-url", help="use this running Elasticsearch (127.0.0.1) instead of starting one")
    p.add_argument("--modes", default="shared,pinned", help="shared (no pinning) and/or pinned (comma separated)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument(
        "--neighbour-rate",
        type=float,
        default=4000.0,
        help="records/s that bench/es_neighbour.py indexes in the es-load variant (about the es variant's rate)",
    )
    p.add_argument("--python", default=sys.executable, help="interpreter that has locust and locust_sink")
    p.add_argument("--grace", type=int, default=90, help="seconds past --duration before a Locust run is killed")
    p.add_argument("--warmup", type=int, default=15, help="seconds of the unmeasured first run (the es variant)")
    p.add_argument("--pause", type=float, default=2.0, help="seconds between runs")
    p.add_argument(
        "--sink-locustfile",
        type=Path,
        default=LOCUSTFILES["sink"],
        help="locustfile of the sink variants (e.g. one that patches a candidate change into the sink)",
    )
    p.add_argument("--no-sink-cpu", action="store_true", help="skip the in-process bench/sink_cpu.py step")
    p.add_argument("--keep", action="store_true", help="keep every run's folder (log, stats, NDJSON)")
    p.add_argument("--output", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    modes = [m for m in args.modes.split(",") if m]
    if bad := set(variants) - set(VARIANTS) or set(modes) - {"shared", "pinned"}:
        p.error(f"unknown variant/mode {bad}")
    uses_es = bool({"es", "es-load", "es-bg"} & set(variants))
    all_cpus, locust_cpu, server_cpus = cpu_plan(modes)

    info = machine_info()
    info["locust_sink_path"] = measured_locust_sink(args.python)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    nginx = Nginx()
    es = Elasticsearch(args.es_url)
    runs: list[Run] = []
    sink_cpu: dict[str, Any] = {}
    try:
        nginx.start()
        log(f"nginx at {nginx.url}")
        if uses_es:
            es.start()
            if "es-bg" in variants and not es.pid:
                raise SystemExit("the es-bg variant needs the benchmark's own Elasticsearch (its pid), not --es-url")
        info["es_version"] = es.version
        info["locust_version"] = subprocess.run(
            [args.python, "-c", "import locust; print(locust.__version__)"], capture_output=True, text=True, timeout=60
        ).stdout.strip()
        # warm-up: first imports, ES index creation and JIT, not measured
        log(f"warm-up run of {args.warmup} s (not measured)")
        warm = Run(0, "shared", "es" if uses_es else variants[0], 0, f"bench-{stamp}-warmup")
        warm_args = argparse.Namespace(**{**vars(args), "duration": args.warmup})
        server_pids = {"nginx": tree_pids(nginx.proc.pid), "es": [es.pid] if es.pid else []}  # type: ignore[union-attr]
        run_locust(warm_args, warm, nginx, es, None, work, server_pids)
        if warm.problems:
            log("warm-up problems: " + "; ".join(warm.problems))
        order = 0
        for rnd in range(1, args.rounds + 1):
            round_modes = modes if rnd % 2 else list(reversed(modes))
            for mode in round_modes:
                pinned = mode == "pinned"
                set_affinity(nginx.proc.pid, server_cpus if pinned else all_cpus)  # type: ignore[union-attr]
                if es.pid:
                    set_affinity(es.pid, server_cpus if pinned else all_cpus)
                shift = (rnd - 1) % len(variants)
                for variant in variants[shift:] + variants[:shift]:
                    order += 1
                    run = Run(rnd, mode, variant, order, f"bench-{stamp}-r{rnd}-{mode}-{variant}")
                    log(f"round {rnd}/{args.rounds} {mode:6s} {variant:8s} ...")
                    if variant == "es-bg":
                        set_idle_priority(es.pid, True)  # type: ignore[arg-type]
                    try:
                        run_locust(
                            args, run, nginx, es, locust_cpu if pinned else None, work, server_pids,
                            server_cpus if pinned else None,
                        )  # fmt: skip
                    finally:
                        if variant == "es-bg":
                            set_idle_priority(es.pid, False)  # type: ignore[arg-type]
                    runs.append(run)
                    flush = f" flush {run.flush_s * 1000:.0f} ms" if run.flush_s is not None else ""
                    log(
                        f"  {run.rps:7.0f} req/s  {run.cpu_window_us_per_req:4.0f} µs CPU/req  p50 {run.p50_ms:.0f} ms"
                        f"  p99 {run.p99_ms:.0f} ms{flush}  delivered {run.delivered}/{run.requests}"
                        f"  busy {run.locust_busy:.2f}  es {run.es_cores:.2f}  helper {run.helper_cores:.2f}"
                        f"  other {run.other_cpu_s / max(run.window_s, 1):.2f}"
                    )
                    for problem in run.problems:
                        log(f"  PROBLEM: {problem}")
                    time.sleep(args.pause)
        if not args.no_sink_cpu:
            sink_cpu = measure_sink_cpu(args, es.url if uses_es else None)
    finally:
        if es.pid:
            set_affinity(es.pid, all_cpus)
        nginx.stop()
        es.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"run folders kept in {work}")

    info["loadavg_after"] = os.getloadavg()
    rows, table = summarize(runs, modes, variants)
    args.output.mkdir(parents=True, exist_ok=True)
    result_path = args.output / f"overhead-{stamp}.json"
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": info,
        "summary": rows,
        "sink_cpu_per_record_us": sink_cpu,
        "runs": [asdict(r) for r in runs],
    }
    result_path.write_text(json.dumps(result, indent=2))
    print()
    print(
        f"{args.rounds} rounds x {args.duration} s, {args.users} users, one Locust process; "
        f"Locust {info['locust_version']}, Elasticsearch {info['es_version']}, {info['cpus']} CPUs ({info['cpu']}); "
        f"medians over rounds"
    )
    print()
    print(table)
    print()
    for target, r in sink_cpu.items():
        total = r["hot_path_us"] + r["flush_us"]
        print(
            f"sink CPU per record, in-process ({target}): hot path {r['hot_path_us']:.1f} µs "
            f"+ flush {r['flush_us']:.1f} µs = {total:.1f} µs"
        )
    print(f"raw results: {result_path}")
    failed = [r for r in runs if r.problems]
    if failed:
        print(f"\nFAILED: {len(failed)} run(s) had problems:", file=sys.stderr)
        for r in failed:
            print(f"  round {r.round} {r.mode} {r.variant}: " + "; ".join(r.problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
