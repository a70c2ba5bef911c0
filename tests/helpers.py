"""Helpers shared by the tests: ports, Elasticsearch clients and instances, real Locust processes.

No fixtures here (see conftest.py), so test modules can import these directly.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

ROOT = Path(__file__).resolve().parents[1]
ES_SCRIPT = ROOT / "scripts" / "es-local.sh"
ES_RUN_BASE = Path(os.environ.get("LOCUST_SINK_ES_RUN", "/tmp/locust-sink-es"))
ES_USER = os.environ.get("ES_USER", "elastic-test")
ES_PASSWORD = os.environ.get("ES_PASSWORD", "changeme-test")
# OpenSearch builds the tests run against (Maven Central integ-test-zips): 2.x on Java 17, 3.x needs Java 21+
# (3.8.0 is the newest 3.x integ-test-zip Maven Central serves here: 3.9.0 has none).
OPENSEARCH_VERSIONS = ("2.19.6", "3.8.0")

# ---------------------------------------------------------------------------------------------------- ports

_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _port_range(start: int, stop: int) -> tuple[int, int]:
    """This process's share of [start, stop]: under pytest-xdist each worker picks from its own slice, so two
    workers never choose the same port (each one's `_handed_out` only knows its own)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or workers <= 1:
        return start, stop
    size = (stop - start) // workers
    index = int(worker[2:]) % workers
    return start + index * size, start + (index + 1) * size - 1


def port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port (an ES bound to ::ffff:127.0.0.1 counts as listening)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free TCP port on 127.0.0.1, below the kernel's ephemeral range.

    Ports are often used some time after they are chosen (an ES started late, restarted after a kill);
    an ephemeral port could meanwhile become the source port of one of Locust's many client connections.
    Ports are never handed out twice in one process.
    """
    low, _ = _ephemeral_range()
    start, stop = _port_range(*((20000, low - 1) if low > 21000 else (low, 65535)))
    for _ in range(200):
        port = random.randint(start, stop)
        if port not in _handed_out and port_is_free(port):
            _handed_out.add(port)
            return port
    with socket.socket() as sock:  # crowded range: let the kernel choose
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _handed_out.add(port)
    return port


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.5, what: str = "condition") -> Any:
    """Poll predicate until it returns something truthy (returned); AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {result!r})")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------- Elasticsearch


def es_client(url: str, **kwargs: Any) -> Elasticsearch:
    kwargs.setdefault("request_timeout", 30)
    return Elasticsearch(url, **kwargs)


# the body fields of the elasticsearch client's keyword style that OpenSearchClient moves into the body
_BODY_FIELDS = ("query", "aggs", "size", "sort", "source", "_source", "track_total_hits", "from_")


class _OpenSearchIndices:
    def __init__(self, client: Any) -> None:
        self.client = client

    def refresh(self, index: str, **params: Any) -> Any:
        return self.client.indices.refresh(index=index, params=_url_params(params))

    def create(self, index: str, mappings: dict | None = None, settings: dict | None = None) -> Any:
        body = {k: v for k, v in (("mappings", mappings), ("settings", settings)) if v is not None}
        return self.client.indices.create(index=index, body=body)

    def delete(self, index: str, **params: Any) -> Any:
        return self.client.indices.delete(index=index, params=_url_params(params))

    def get(self, index: str, **params: Any) -> Any:
        return self.client.indices.get(index=index, params=_url_params(params))

    def get_mapping(self, index: str) -> Any:
        return self.client.indices.get_mapping(index=index)


class OpenSearchClient:
    """A real opensearch-py client, called in the elasticsearch client's keyword style (`search(index=...,
    query=..., aggs=...)`, `count`, `get`, `indices.refresh/create/delete/get`): the suite's checks (e2e_util,
    test_stats) then read an OpenSearch exactly as they read an Elasticsearch."""

    def __init__(self, url: str) -> None:
        from opensearchpy import OpenSearch

        self.url = url
        self.client = OpenSearch(url, timeout=30)
        self.indices = _OpenSearchIndices(self.client)

    def search(self, index: str, **kwargs: Any) -> dict[str, Any]:
        body, params = _split(kwargs)
        return self.client.search(index=index, body=body, params=params)

    def count(self, index: str, query: dict | None = None, **params: Any) -> dict[str, Any]:
        return self.client.count(index=index, body={"query": query or {"match_all": {}}}, params=_url_params(params))

    def get(self, index: str, id: str) -> dict[str, Any]:  # noqa: A002  (the elasticsearch client's name)
        return self.client.get(index=index, id=id)


def _url_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: ("true" if v else "false") if isinstance(v, bool) else v for k, v in params.items()}


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    body = {("_source" if k == "source" else "from" if k == "from_" else k): v for k, v in kwargs.items()
            if k in _BODY_FIELDS}  # fmt: skip
    return body, _url_params({k: v for k, v in kwargs.items() if k not in _BODY_FIELDS})


def is_opensearch_url(url: str) -> bool:
    """Whether the server at url answers `GET /` as OpenSearch (`version.distribution`)."""
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url.split(",")[0], timeout=10) as resp:
            root = json.loads(resp.read())
    except (urllib.error.HTTPError, ValueError):  # the stripped Elasticsearch build answers 405
        return False
    return root.get("version", {}).get("distribution") == "opensearch"


def cluster_client(url: str) -> Any:
    """The test-side client for the server at url: `es_client` for Elasticsearch, OpenSearchClient for OpenSearch."""
    return OpenSearchClient(url) if is_opensearch_url(url) else es_client(url)


def count(es: Elasticsearch, index: str, query: dict | None = None) -> int:
    """Documents in index (a name, alias or pattern) matching query, after a refresh; 0 if it does not exist."""
    es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
    resp = es.count(index=index, query=query or {"match_all": {}}, ignore_unavailable=True, allow_no_indices=True)
    return resp["count"]


def delete_indices(es: Elasticsearch, pattern: str) -> list[str]:
    """Delete the indices matching pattern (e.g. "t1-abc-*"); returns their names.

    ES 8 refuses wildcard deletes (action.destructive_requires_name), so the names are resolved first.
    """
    found = es.indices.get(
        index=pattern, ignore_unavailable=True, allow_no_indices=True, expand_wildcards="open,closed"
    )
    names = sorted(found.keys())
    if names:
        es.indices.delete(index=",".join(names), ignore_unavailable=True)
    return names


def es_local(*args: str, timeout: float = 300) -> str:
    """Run scripts/es-local.sh; its last line of stdout (the URL for start/url)."""
    proc = subprocess.run(
        ["bash", str(ES_SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=subprocess_env()
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"es-local.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-6000:]}"
        )
    lines = proc.stdout.strip().splitlines()
    return lines[-1] if lines else ""


class EsServer:
    """A named real ES instance (scripts/es-local.sh) on ports chosen now; nothing runs until start().

    stop() is a clean shutdown, kill() a SIGKILL (a crash); start() again reuses ports, data and certificates.
    """

    def __init__(
        self,
        name: str,
        security: bool = False,
        tls: bool = False,
        port: int | None = None,
        transport_port: int | None = None,
        dist: str = "elasticsearch",
        version: str | None = None,
    ) -> None:
        self.name = name
        self.dist = dist  # `opensearch`: an OpenSearch (es-local.sh --dist opensearch), no security
        self.version = version  # None: es-local.sh's default for dist
        self.port = port or free_port()
        self.transport_port = transport_port or free_port()
        self.security = security or tls
        self.tls = tls
        self.user = ES_USER if self.security else None
        self.password = ES_PASSWORD if self.security else None
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.dir = ES_RUN_BASE / name
        self.ca_path = self.dir / "ca.pem"  # written by start() with tls
        self.startup_seconds: float | None = None  # of the last start()

    def start(self) -> str:
        args = ["start", self.name, "--port", str(self.port), "--transport-port", str(self.transport_port)]
        if self.tls:
            args.append("--tls")
        elif self.security:
            args.append("--security")
        if self.dist != "elasticsearch":
            args += ["--dist", self.dist]
        if self.version:
            args += ["--version", self.version]
        t0 = time.monotonic()
        es_local(*args)
        self.startup_seconds = time.monotonic() - t0
        return self.url

    def stop(self) -> None:
        es_local("stop", self.name)

    def kill(self) -> None:
        es_local("kill", self.name)

    def remove(self) -> None:
        """Stop and delete the instance's folder."""
        es_local("remove", self.name)

    @property
    def running(self) -> bool:
        status = subprocess.run(["bash", str(ES_SCRIPT), "status", self.name], capture_output=True, timeout=30)
        return status.returncode == 0

    def client(self, **kwargs: Any) -> Elasticsearch:
        """A client with this instance's credentials and CA."""
        if self.security:
            kwargs.setdefault("basic_auth", (self.user, self.password))
        if self.tls:
            kwargs.setdefault("ca_certs", str(self.ca_path))
        return es_client(self.url, **kwargs)


def consecutive_free_ports(n: int, gap: int = 100) -> int:
    """A base port P with P..P+n-1 and P+gap..P+gap+n-1 free (a cluster's HTTP and transport ports)."""
    low, _ = _ephemeral_range()
    start, stop = _port_range(*((20000, low - 1) if low > 21000 else (low, 65535)))
    stop -= gap + n
    for _ in range(500):
        base = random.randint(start, stop)
        ports = [base + i for i in range(n)] + [base + gap + i for i in range(n)]
        if not _handed_out.intersection(ports) and all(port_is_free(p) for p in ports):
            _handed_out.update(ports)
            return base
    raise RuntimeError(f"no {n} consecutive free ports (and {n} more {gap} above) found")


class EsCluster:
    """A named real N-node Elasticsearch cluster (`es-local.sh start-cluster`) on loopback; nothing runs until
    start(). Node i (1-based) is the instance `<name>-i` on port+i-1: kill_node(i) is a SIGKILL (a crash),
    start_node(i) brings it back with its data; remove() stops every node and deletes their folders."""

    def __init__(self, name: str, nodes: int = 3, port: int | None = None) -> None:
        self.name = name
        self.nodes = nodes
        self.port = port or consecutive_free_ports(nodes)
        self.transport_port = self.port + 100
        self.urls = [f"http://127.0.0.1:{self.port + i}" for i in range(nodes)]
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        """All node URLs comma-joined: what `--es-url` takes."""
        return ",".join(self.urls)

    def node_name(self, i: int) -> str:
        return f"{self.name}-{i}"

    def start(self) -> str:
        t0 = time.monotonic()
        printed = es_local(
            "start-cluster", self.name, "--nodes", str(self.nodes), "--port", str(self.port),
            "--transport-port", str(self.transport_port), timeout=600,
        )  # fmt: skip
        self.startup_seconds = time.monotonic() - t0
        assert printed == self.url, (printed, self.url)
        return self.url

    def kill_node(self, i: int) -> None:
        es_local("kill", self.node_name(i))

    def stop_node(self, i: int) -> None:
        es_local("stop", self.node_name(i))

    def start_node(self, i: int) -> None:
        """Restart node i as it was (same ports, data, cluster); returns once it has joined."""
        es_local("start", self.node_name(i), timeout=400)

    def node_running(self, i: int) -> bool:
        status = subprocess.run(["bash", str(ES_SCRIPT), "status", self.node_name(i)], capture_output=True, timeout=30)
        return status.returncode == 0

    def remove(self) -> None:
        es_local("remove-cluster", self.name)

    def client(self, **kwargs: Any) -> Elasticsearch:
        """A client that knows every node (it fails over to the live ones)."""
        kwargs.setdefault("request_timeout", 30)
        return Elasticsearch(self.urls, **kwargs)


def java_home(min_major: int) -> tuple[str | None, str]:
    """(a JDK folder with Java >= min_major, "") or (None, es-local.sh's reason)."""
    proc = subprocess.run(
        ["bash", str(ES_SCRIPT), "java-home", str(min_major)], capture_output=True, text=True, timeout=60
    )
    if proc.returncode == 0:
        return proc.stdout.strip(), ""
    return None, proc.stderr.strip()


# ------------------------------------------------------------------------------------------------ Locust runs


class LocustTimeout(subprocess.TimeoutExpired):
    """A Locust process (or a distributed run) outlived its timeout; everything was killed. Shows the output."""

    def __str__(self) -> str:
        out = self.output.decode() if isinstance(self.output, bytes) else (self.output or "")
        err = self.stderr.decode() if isinstance(self.stderr, bytes) else (self.stderr or "")
        return f"{super().__str__()}\n--- stdout (tail)\n{out[-3000:]}\n--- stderr (tail)\n{err[-6000:]}"


def headless_args(
    locustfile: str | Path, host: str, users: int, run_time: str, json_file: str | Path, *extra: str
) -> list[str]:
    """`-f F --headless -u N -r N -t T --host H --json-file J EXTRA...` for start_locust / run_locust: what every
    test's headless run shares (the --json-file is the ground truth the tests compare with)."""
    return [
        "-f", str(locustfile), "--headless", "-u", str(users), "-r", str(users),
        "-t", run_time, "--host", host, "--json-file", str(json_file), *extra,
    ]  # fmt: skip


# Variables of the test and bench machinery itself, passed on to subprocesses; every other LOCUST_* variable
# is an option of Locust's or the sink's (`--sink-flush-timeout` <- LOCUST_SINK_FLUSH_TIMEOUT) and is dropped,
# so that nothing in the caller's environment changes what a test runs. test_harness.py checks that none of
# these names an option.
INFRA_VARIABLES = (
    "LOCUST_SINK_ES_", "LOCUST_SINK_SUT_", "LOCUST_SINK_CACHE", "LOCUST_SINK_JVM_DIRS", "LOCUST_SINK_PG_BIN",
    "LOCUST_SINK_SCREENSHOTS", "LOCUST_SINK_BENCH_", "LOCUST_BENCH_",
)  # fmt: skip


def subprocess_env(env: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment of every subprocess a test starts (Locust, the locust-sink CLI, scripts): ours without
    inherited Locust/sink options (LOCUST_*, INFRA_VARIABLES aside) and without variables starting with one
    of `drop` (a tool's own knobs), unbuffered, plus `env`."""
    base = {
        k: v
        for k, v in os.environ.items()
        if (not k.startswith("LOCUST_") or k.startswith(INFRA_VARIABLES)) and not k.startswith(drop)
    }
    base["PYTHONUNBUFFERED"] = "1"
    base.update(env or {})
    return base


locust_env = subprocess_env  # the name the Locust-launching call sites read best with


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group (each Locust runs in its own session) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def _default_sigint() -> None:
    # SIGINT may be ignored in the parent (a background job): restore it so Ctrl-C tests are real
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class LocustProcess:
    """A real `locust` started in the background (start_locust): the one way tests launch Locust.

    Output goes to cwd/<label>.stdout and .stderr. Use it as a context manager (or call kill()): whatever
    happens in the test, the process group never outlives it.
    """

    def __init__(self, args: Sequence[str], env: dict[str, str] | None, cwd: Path, label: str) -> None:
        self.args = [sys.executable, "-m", "locust", *args]
        self.cwd = cwd
        self.stdout_path, self.stderr_path = cwd / f"{label}.stdout", cwd / f"{label}.stderr"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                self.args, cwd=cwd, env=locust_env(env), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_default_sigint,
            )  # fmt: skip

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """stdout and stderr so far (Locust logs to stderr)."""
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(errors="replace")

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.running:
            _kill_group(self.proc)

    def result(self) -> subprocess.CompletedProcess:
        done = subprocess.CompletedProcess(
            self.args,
            self.proc.returncode,
            self.stdout_path.read_text(errors="replace"),
            self.stderr_path.read_text(errors="replace"),
        )
        done.stdout_path = self.stdout_path  # type: ignore[attr-defined]
        done.stderr_path = self.stderr_path  # type: ignore[attr-defined]
        return done

    def wait(self, timeout: float) -> subprocess.CompletedProcess:
        """Wait for the end; past timeout seconds the process group is killed and LocustTimeout raised."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            done = self.result()
            raise LocustTimeout(self.args, timeout, output=done.stdout, stderr=done.stderr) from None
        finally:
            self.kill()  # KeyboardInterrupt and the like: never leave a Locust behind
        return self.result()

    def __enter__(self) -> LocustProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _workdir(cwd: str | Path | None) -> Path:
    # Locust reads ./locust.conf and ./pyproject.toml: by default run it in an empty folder, not the repo
    path = Path(cwd) if cwd is not None else Path(tempfile.mkdtemp(prefix="locust-run-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_locust(
    args: Sequence[str], env: dict[str, str] | None = None, cwd: str | Path | None = None, label: str = "locust"
) -> LocustProcess:
    """Start the real `locust` (this Python's `-m locust ARGS`) in the background, in cwd (default: a new
    empty folder)."""
    return LocustProcess(args, env, _workdir(cwd), label)


def run_locust(
    args: Sequence[str],
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 120,
    label: str = "locust",
) -> subprocess.CompletedProcess:
    """Run the real `locust` to completion (start_locust, then wait). Returns a CompletedProcess with text
    stdout/stderr (and stdout_path/stderr_path); past timeout seconds LocustTimeout."""
    return start_locust(args, env, cwd, label).wait(timeout)


@dataclass
class DistributedRun:
    master: subprocess.CompletedProcess
    workers: list[subprocess.CompletedProcess]
    master_port: int

    @property
    def returncodes(self) -> list[int]:
        return [self.master.returncode, *(w.returncode for w in self.workers)]


def run_locust_distributed(
    master_args: Sequence[str],
    worker_args: Sequence[str],
    n_workers: int,
    timeout: float = 180,
    env: dict[str, str] | None = None,
    worker_envs: Sequence[dict[str, str] | None] | None = None,
    cwd: str | Path | None = None,
    worker_grace: float = 30,
    master_env: dict[str, str] | None = None,
) -> DistributedRun:
    """A real master (`--master --expect-workers N`, bound to 127.0.0.1 on a free port) and N real workers.

    master_args must make the master end by itself (e.g. --headless -t 5s); the helper adds the master/worker
    wiring. Workers leave when the master quits; any still alive worker_grace seconds later is killed (its
    return code is then -9). Output files: cwd/master.* and cwd/worker-<i>.*. Past timeout seconds for the
    master, every process is killed and LocustTimeout raised (with the master's output). `env` is every
    process's, `master_env` and `worker_envs[i]` are added for the master and worker i.
    """
    workdir = _workdir(cwd)
    port = free_port()
    master = start_locust(
        [
            *master_args,
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            "--expect-workers",
            str(n_workers),
        ],
        {**(env or {}), **(master_env or {})},
        workdir,
        "master",
    )
    workers: list[LocustProcess] = []
    try:
        for i in range(n_workers):
            worker_env = {**(env or {}), **((worker_envs[i] if worker_envs else None) or {})}
            workers.append(
                start_locust(
                    [*worker_args, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                    worker_env,
                    workdir,
                    f"worker-{i}",
                )
            )
        try:
            master.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for started in (master, *workers):
                _kill_group(started.proc)
            done = master.result()
            raise LocustTimeout(master.args, timeout, output=done.stdout, stderr=done.stderr) from None
        deadline = time.monotonic() + worker_grace
        for started in workers:
            try:
                started.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(started.proc)
    finally:
        for started in (master, *workers):
            started.kill()
    return DistributedRun(master.result(), [w.result() for w in workers], port)
