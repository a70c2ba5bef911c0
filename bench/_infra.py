"""What every bench subcommand shares: servers on 127.0.0.1 (nginx, httpbin, Elasticsearch, the peers'
PostgreSQL and InfluxDB), CPU pinning, process CPU and memory from /proc, the machine's description, and
the one results format (one JSON line per run in bench/results/<subcommand>.jsonl).

Nothing here imports Locust or locust_sink: the parent process of a benchmark only starts and watches
processes; Locust runs in child processes.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = Path(os.environ.get("LOCUST_BENCH_RESULTS") or HERE / "results")  # tests point it elsewhere
ES_LOCAL = REPO / "scripts" / "es-local.sh"
PEERS_SH = HERE / "peers.sh"
INDEX_PREFIX = "locust-bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
STATIC_BODY = b"<!doctype html><title>bench</title><p>locust-sink benchmark: a small static file.</p>\n"
LOCAL = ("http://127.0.0.1", "http://localhost", "https://127.0.0.1")


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
    if not url.startswith(LOCAL):
        raise ValueError(f"the bench only talks to 127.0.0.1, not {url}")
    headers = {"Content-Type": "application/x-ndjson" if url.endswith("_bulk") else "application/json"}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(url: str, timeout: float, ok: int = 200) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if http("GET", url, timeout=2)[0] == ok:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer {ok} within {timeout:.0f} s")


# ----- processes: CPU, memory, pinning ------------------------------------------------------------


def proc_cpu(pid: int) -> float | None:
    """user+sys CPU seconds of a whole process (all threads) from /proc/<pid>/stat; None when gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15 of stat)


def proc_rss_mib(pid: int) -> float | None:
    """Resident memory of a process in MiB (/proc/<pid>/statm); None when gone."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / (1 << 20)
    except (OSError, IndexError, ValueError):
        return None


def tree_pids(pid: int) -> list[int]:
    """pid and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            data = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        children.setdefault(int(data[data.rindex(b")") + 2 :].split()[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Like `taskset -a -p`: every thread of every process in the tree (threads started later inherit)."""
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(tid), cpus)


class CpuPlan:
    """Pinned mode: Locust alone on the last CPU, servers and helper processes on the others; on a
    one-CPU machine nothing is pinned."""

    def __init__(self, pinned: bool = True) -> None:
        ncpu = os.cpu_count() or 1
        self.all = set(range(ncpu))
        self.pinned = pinned and ncpu >= 2
        self.locust = ncpu - 1 if self.pinned else None
        self.servers = set(range(ncpu - 1)) if self.pinned else self.all

    def locust_cmd(self, cmd: list[str]) -> list[str]:
        return ["taskset", "-c", str(self.locust), *cmd] if self.locust is not None else cmd

    def servers_for(self, pid: int) -> None:
        if self.pinned:
            set_affinity(pid, self.servers)

    def describe(self) -> str:
        return f"pinned: Locust on CPU {self.locust}, servers on {sorted(self.servers)}" if self.pinned else "shared"


# ----- servers ---------------------------------------------------------------------------------------


class Nginx:
    """The cheapest request there is: a 97-byte static file, /ok (200) and /missing (404), keep-alive."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        d = self.dir
        os.chmod(d, 0o755)  # workers run as nobody when started as root: they must read the static file
        (d / "www").mkdir()
        (d / "www" / "index.html").write_bytes(STATIC_BODY)
        temp = "\n".join(
            f"    {kind}_temp_path {d}/tmp-{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (d / "nginx.conf").write_text(
            f"""daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp}
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
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        with open(d / "stderr.log", "wb") as err:
            self.proc = subprocess.Popen(
                [nginx, "-c", str(d / "nginx.conf"), "-p", str(d), "-e", str(d / "error.log")],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        wait_http(self.url + "/", 10)
        if http("GET", self.url + "/missing")[0] != 404:
            raise RuntimeError("nginx: /missing did not answer 404")
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


class HttpBin:
    """httpbin under gunicorn (gevent worker) from the system under test's virtualenv: `/delay/0.02` is the
    server with a fixed 20 ms delay of the latency comparison."""

    def __init__(self) -> None:
        self.venv = Path(os.environ.get("LOCUST_SINK_SUT_VENV", REPO / ".venv-sut"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="bench-httpbin-", suffix=".log")[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> HttpBin:
        gunicorn = self.venv / "bin" / "gunicorn"
        if not gunicorn.exists():
            raise SystemExit(f"{gunicorn} not found: run `bash scripts/bootstrap.sh` or set LOCUST_SINK_SUT_VENV")
        cmd = [
            str(gunicorn), "--pythonpath", str(REPO / "scripts"), "-b", f"127.0.0.1:{self.port}", "-w", "1",
            "-k", "gevent", "--worker-connections", "1000", "--log-level", "warning", "sut_app:app",
        ]  # fmt: skip
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(self.url + "/get", 60)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.unlink(missing_ok=True)


class Elasticsearch:
    """One started with scripts/es-local.sh (stopped and removed at the end), or a given local URL."""

    def __init__(self, url: str | None = None, instance: str = "bench") -> None:
        self.url = url.rstrip("/") if url else None
        self.instance = f"{instance}-{os.getpid()}"
        self.started = False
        self.pid: int | None = None
        self.version = "?"

    def start(self) -> Elasticsearch:
        if self.url is None:
            port = free_port(also_free_offset=100)
            log(f"starting Elasticsearch ({ES_LOCAL.name} start {self.instance} --port {port}) ...")
            out = subprocess.run(["bash", str(ES_LOCAL), "start", self.instance, "--port", str(port)],
                                 capture_output=True, text=True, timeout=300)  # fmt: skip
            if out.returncode != 0:
                raise SystemExit(f"es-local.sh start failed:\n{out.stdout}\n{out.stderr}")
            self.started = True
            self.url = out.stdout.strip().splitlines()[-1]
            run_base = Path(os.environ.get("LOCUST_SINK_ES_RUN", "/tmp/locust-sink-es"))
            with contextlib.suppress(OSError, ValueError):
                self.pid = int((run_base / self.instance / "pid").read_text().strip())
        if not self.url.startswith(LOCAL):
            raise SystemExit("the bench only talks to 127.0.0.1")
        # es-local.sh's stripped build answers 405 to `GET /`: _nodes has the version
        status, body = http("GET", self.url + "/_nodes/_local?filter_path=nodes.*.version")
        if status != 200:
            raise SystemExit(f"Elasticsearch at {self.url} answered {status}: {body[:200]!r}")
        self.version = next(iter(json.loads(body)["nodes"].values()))["version"]
        log(f"Elasticsearch {self.version} at {self.url}")
        return self

    def count(self, index: str, run_id: str | None = None) -> int:
        http("POST", f"{self.url}/{index}/_refresh")
        query = {"query": {"term": {"run_id": run_id}}} if run_id else {"query": {"match_all": {}}}
        status, body = http("POST", f"{self.url}/{index}/_count", json.dumps(query).encode())
        if status == 404:
            return 0
        if status != 200:
            raise RuntimeError(f"_count answered {status}: {body[:300]!r}")
        return int(json.loads(body)["count"])

    def count_requests(self, run_id: str, prefix: str = INDEX_PREFIX) -> int:
        return self.count(f"{prefix}-requests", run_id)

    def stop(self) -> None:
        if self.started:
            log("removing the bench's Elasticsearch")
            subprocess.run(["bash", str(ES_LOCAL), "remove", self.instance], capture_output=True, timeout=120)


class PeerServers:
    """The peers' stores, started by bench/peers.sh (PostgreSQL for locust-plugins' Timescale listener,
    InfluxDB 1.x for locust-influxdb-listener), both on 127.0.0.1, removed at the end."""

    def __init__(self) -> None:
        self.instance = f"peers-{os.getpid()}"
        self.pg_port = free_port()
        self.influx_port = free_port(also_free_offset=1)
        self.pg_up = self.influx_up = False

    @staticmethod
    def script(*args: str, timeout: float = 900) -> str:
        out = subprocess.run(["bash", str(PEERS_SH), *args], capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise SystemExit(f"bench/peers.sh {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""

    @classmethod
    def install(cls) -> None:
        cls.script("install")

    @classmethod
    def python(cls, peer: str) -> str:
        return str(Path(cls.script("venv", peer)) / "bin" / "python")

    def start_pg(self) -> None:
        self.pg_up = True  # set first: a start that fails half way is removed too
        self.script("pg-start", self.instance, str(self.pg_port), timeout=180)
        log(f"PostgreSQL at 127.0.0.1:{self.pg_port}")

    def start_influx(self) -> None:
        self.influx_up = True
        self.script("influx-start", self.instance, str(self.influx_port), timeout=180)
        log(f"InfluxDB at 127.0.0.1:{self.influx_port}")

    def pg_sql(self, sql: str) -> str:
        cmd = ["psql", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "locust", "-d", "locust", "-Atc", sql]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout.strip()

    def influx_query(self, database: str, query: str) -> dict[str, Any]:
        params = urllib.parse.urlencode({"db": database, "q": query})
        status, body = http("GET", f"http://127.0.0.1:{self.influx_port}/query?{params}", timeout=120)
        if status != 200:
            raise RuntimeError(f"InfluxDB query answered {status}: {body[:300]!r}")
        return json.loads(body)

    def stop(self) -> None:
        if self.pg_up or self.influx_up:
            self.script("remove", self.instance, timeout=120)


# ----- the machine and the results -------------------------------------------------------------------


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()


def python_of_locust_sink(python: str = sys.executable) -> str:
    """The folder of the locust_sink that `python` imports (with the PYTHONPATH the bench gives its children)."""
    return subprocess.run(
        [python, "-c", "import locust_sink, os; print(os.path.dirname(os.path.abspath(locust_sink.__file__)))"],
        capture_output=True, text=True, timeout=60, cwd=tempfile.gettempdir(), env=child_env(),
    ).stdout.strip()  # fmt: skip


def child_env(**extra: str) -> dict[str, str]:
    """The environment of every process the bench starts: this tree first on PYTHONPATH (so its locust_sink
    and bench package are the ones measured), unbuffered output, no Elasticsearch URL from the caller."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **extra)
    paths = [str(REPO), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(REPO)]]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.pop("LOCUST_ES_URL", None)
    return env


def machine_info(python: str = sys.executable) -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    locust_version = subprocess.run(
        [python, "-c", "import locust; print(locust.__version__)"], capture_output=True, text=True, timeout=60
    ).stdout.strip()
    return {
        "cpu": model,
        "vcpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "locust": locust_version,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def figure(
    value: float | int | None, unit: str, interval: list[float] | None = None, resolution: str = "", **more: Any
) -> dict[str, Any]:
    """One figure of a results line: the value, its unit, its interval (or None) and the method's resolution."""
    out: dict[str, Any] = {"value": value, "unit": unit, "interval": interval, "resolution": resolution}
    out.update(more)
    return out


def append_result(subcommand: str, argv: list[str], figures: dict[str, Any], problems: list[str],
                  details: dict[str, Any] | None = None, python: str = sys.executable) -> Path:  # fmt: skip
    """Append this run's ONE line to bench/results/<subcommand>.jsonl and return the file."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    line = {
        "subcommand": subcommand,
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "locust_sink", "bench")),
        "machine": machine_info(python),
        "command": " ".join(["python3", "-m", "bench", subcommand, *argv]),
        "ok": not problems,
        "problems": problems,
        "figures": figures,
        "details": details or {},
    }
    path = RESULTS / f"{subcommand}.jsonl"
    with path.open("a") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")
    log(f"results: one line appended to {path}")
    return path


def read_results(subcommand: str) -> list[dict[str, Any]]:
    path = RESULTS / f"{subcommand}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
