"""Fixtures that start REAL servers: Elasticsearch (scripts/es-local.sh) and httpbin under gunicorn.

Locust is imported first: it monkey-patches the standard library through gevent, which must happen before
anything imports ssl (the elasticsearch client does), or ssl ends in a RecursionError.
"""

# ruff: noqa: I001, E402  (gevent patching, then Locust, must come before anything that imports ssl)
from __future__ import annotations

import os
import sys


def _xdist_controller() -> bool:
    """This process only hands tests to pytest-xdist workers (`-n N`, N > 0) and runs none itself."""
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        value = None
        if arg in ("-n", "--numprocesses") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--numprocesses="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-n") and len(arg) > 2:
            value = arg[2:]
        if value is not None:
            return value not in ("0", "") and not os.environ.get("PYTEST_XDIST_WORKER")
    return False


if _xdist_controller():
    # The controller talks to its workers through execnet's threads: left unpatched (gevent would turn them
    # into greenlets of one loop, and a blocking call among them stalls every worker). It imports no Locust.
    pass
elif os.environ.get("PYTEST_XDIST_WORKER"):
    # A pytest-xdist worker talks to the controller from a second real thread (execnet): patching threading
    # would make its queue's Event a gevent one that thread cannot wake (LoopExit). So threads stay real, and
    # so do subprocess, os and signal (gevent waits for children only on the main thread's loop, and tests
    # start processes from threads; a cooperative waitpid without that loop never returns). Everything else
    # is patched as Locust does; Locust is told not to patch again.
    from gevent import monkey

    monkey.patch_all(thread=False, subprocess=False, os=False, signal=False)
    os.environ["LOCUST_SKIP_MONKEY_PATCH"] = "1"
    import locust  # noqa: F401

    del os.environ["LOCUST_SKIP_MONKEY_PATCH"]
    import urllib3
    from gevent import queue

    urllib3.connectionpool.ConnectionPool.QueueCls = queue.LifoQueue  # as locust/__init__.py does
else:
    import locust  # noqa: F401  (must stay the first import: gevent monkey-patching)

import fcntl
import hashlib
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

# EsServer and es_local are re-exported: tests import them from conftest too
from helpers import (  # noqa: F401
    ES_PASSWORD,
    ES_USER,
    OPENSEARCH_VERSIONS,
    ROOT,
    EsCluster,
    EsServer,
    es_local,
    free_port,
    java_home,
    port_is_free,
)

SUT_VENV = Path(os.environ.get("LOCUST_SINK_SUT_VENV", ROOT / ".venv-sut"))
# httpbin 0.10.2 pins greenlet<3 (hence its own virtualenv, away from Locust's gevent); gevent 23.9 is the
# last gevent on greenlet 2, and gunicorn >= 24 refuses gevent < 24.10 for its gevent worker.
SUT_PACKAGES = ["httpbin==0.10.2", "gunicorn>=21,<24", "gevent>=23.9,<24"]

SUT_APP_DIR = ROOT / "scripts"  # sut_app.py: httpbin with a fix for its bytearray bodies


# ------------------------------------------------------------------------------------ parallel (xdist)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `pytest -n N --dist loadgroup` (scripts/test.sh) a module's tests stay on one worker, so its
    module-scoped servers (a 3-node cluster, a secured ES) start once; a module whose tests share nothing
    but session fixtures says `XDIST_SPREAD = True` and its tests are spread over the workers one by one.
    Tests of one OpenSearch version (`[opensearch-X...]`, any module) form one group: that version's server
    starts on one worker only; modules that share a session server name one group (`XDIST_GROUP`)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        version = next((v for v in OPENSEARCH_VERSIONS if f"opensearch-{v}" in callspec.id), None) if callspec else None
        module = getattr(item, "module", None)
        if version is not None:
            item.add_marker(pytest.mark.xdist_group(f"opensearch-{version}"))
        elif module is not None and not getattr(module, "XDIST_SPREAD", False):
            item.add_marker(pytest.mark.xdist_group(getattr(module, "XDIST_GROUP", module.__name__)))


# ------------------------------------------------------------------------------------------- Elasticsearch


@pytest.fixture(scope="session")
def es_url() -> Iterator[str]:
    """A real Elasticsearch for the whole session (or ES_TEST_URL if set).

    It runs on 19200/19300 when those are free; the instance name carries the pid, so two sessions on one
    machine never share (and tear down) each other's node.
    """
    if os.environ.get("ES_TEST_URL"):
        yield os.environ["ES_TEST_URL"]
        return
    name = f"test-{os.getpid()}"
    server = None
    if port_is_free(19200) and port_is_free(19300):
        server = EsServer(name, port=19200, transport_port=19300)
        try:
            server.start()
        except RuntimeError as exc:
            if "already in use" not in str(exc):  # lost a race for the port: take free ones below
                server.remove()
                raise
            server = None
    if server is None:
        server = EsServer(name)
        server.start()
    print(f"\nes_url: {server.url} ({name}) healthy in {server.startup_seconds:.0f} s", file=sys.stderr)
    try:
        yield server.url
    finally:
        server.remove()


@pytest.fixture
def es_server_factory() -> Iterator[Callable[..., EsServer]]:
    """Extra named ES instances (not started): make(name, security=False, tls=False) -> EsServer with
    .start() .stop() .kill() .url .user .password .ca_path .client(); all removed at the end of the test."""
    servers: list[EsServer] = []

    def make(name: str, security: bool = False, tls: bool = False) -> EsServer:
        server = EsServer(f"{name}-{uuid.uuid4().hex[:6]}", security=security, tls=tls)
        servers.append(server)
        return server

    yield make
    for server in servers:
        try:
            server.remove()
        except Exception as exc:  # keep removing the others
            print(f"could not remove ES instance {server.name}: {exc}", file=sys.stderr)


class OpenSearchServers:
    """The session's real single-node OpenSearch servers (es-local.sh --dist opensearch), one per version,
    each started at its first use and shared by every module; 3.x is skipped, with the reason, where no
    JDK 21+ is found."""

    def __init__(self) -> None:
        self.servers: dict[str, EsServer] = {}

    def url(self, version: str) -> str:
        skip_without_jdk(version)
        if version not in self.servers:
            server = EsServer(f"test-os{version.replace('.', '')}-{os.getpid()}", dist="opensearch", version=version)
            self.servers[version] = server
            server.start()
            seconds = server.startup_seconds or 0.0
            print(f"\nopensearch {version}: {server.url} healthy in {seconds:.0f} s", file=sys.stderr)
        return self.servers[version].url

    def remove_all(self) -> None:
        for server in self.servers.values():
            try:
                server.remove()
            except Exception as exc:  # keep removing the others
                print(f"could not remove OpenSearch instance {server.name}: {exc}", file=sys.stderr)


def skip_without_jdk(version: str) -> None:
    """Skip the test, with the reason, when OpenSearch `version` needs a JDK this machine lacks (3.x: 21+)."""
    if int(version.split(".")[0]) >= 3:
        jdk, reason = java_home(21)
        if jdk is None:
            pytest.skip(f"OpenSearch {version} needs Java 21+: {reason}")


@pytest.fixture(scope="session")
def opensearch_servers() -> Iterator[OpenSearchServers]:
    servers = OpenSearchServers()
    try:
        yield servers
    finally:
        servers.remove_all()


OPENSEARCH_IDS = [f"opensearch-{v}" for v in OPENSEARCH_VERSIONS]


@pytest.fixture(scope="session", params=OPENSEARCH_VERSIONS, ids=OPENSEARCH_IDS)
def opensearch_url(request, opensearch_servers) -> str:
    """A real single-node OpenSearch for the session, once per version of OPENSEARCH_VERSIONS."""
    return opensearch_servers.url(request.param)


@pytest.fixture(scope="session", params=["elasticsearch", *OPENSEARCH_VERSIONS], ids=["es", *OPENSEARCH_IDS])
def cluster_url(request, opensearch_servers) -> str:
    """Each product in turn: the session's Elasticsearch (`es_url`), then each OpenSearch version."""
    if request.param == "elasticsearch":
        return request.getfixturevalue("es_url")
    return opensearch_servers.url(request.param)


@pytest.fixture(scope="session")
def _es_cluster() -> Iterator[EsCluster]:
    server = EsCluster(f"cl-{os.getpid()}-{uuid.uuid4().hex[:4]}", nodes=3)
    try:
        server.start()
        print(f"\ncluster: {server.url} green in {server.startup_seconds:.0f} s", file=sys.stderr)
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="module")
def cluster(_es_cluster: EsCluster) -> EsCluster:
    """A real 3-node Elasticsearch cluster (384 MB heaps), started once for the session and shared by the
    modules that ask for it (test_cluster.py, test_cluster_blocks.py: one xdist group, `XDIST_GROUP`). Each
    module gets it with every node running and the cluster green: a node a module left down is started."""
    for i in range(1, _es_cluster.nodes + 1):
        if not _es_cluster.node_running(i):
            _es_cluster.start_node(i)
    client = _es_cluster.client().options(request_timeout=190)
    health = client.cluster.health(wait_for_status="green", wait_for_nodes=str(_es_cluster.nodes), timeout="180s")
    assert health["status"] == "green" and not health["timed_out"], dict(health)
    return _es_cluster


# ---------------------------------------------------------------------------------------- httpbin (the SUT)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # two test sessions must not build the same virtualenv at once
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _quiet_ok(*cmd: str) -> bool:
    return subprocess.run(list(cmd), capture_output=True, timeout=120).returncode == 0


def ensure_sut_venv() -> Path:
    """The SUT virtualenv's python, after creating the virtualenv if it is missing or lacks httpbin."""
    python = SUT_VENV / "bin" / "python"
    digest = hashlib.sha1(str(SUT_VENV.resolve()).encode()).hexdigest()[:12]
    lock = Path(tempfile.gettempdir()) / f"locust-sink-sut-{digest}.lock"
    with _file_lock(lock):
        if not (python.exists() and _quiet_ok(str(python), "-c", "import httpbin, gunicorn")):
            subprocess.run([sys.executable, "-m", "venv", str(SUT_VENV)], check=True, timeout=300)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *SUT_PACKAGES],
                check=True,
                timeout=900,
            )
    return python


def gunicorn_worker_args(python: Path) -> list[str]:
    """gevent workers when this virtualenv's gunicorn accepts its gevent, else threads (same capacity for /delay)."""
    if _quiet_ok(str(python), "-c", "import gunicorn.workers.ggevent"):
        return ["-w", "4", "-k", "gevent", "--worker-connections", "1000"]
    return ["-w", "2", "-k", "gthread", "--threads", "32"]


@pytest.fixture(scope="session")
def httpbin_url(tmp_path_factory) -> Iterator[str]:
    """PyPI httpbin under gunicorn, from its own virtualenv, on 127.0.0.1 and a free port."""
    python = ensure_sut_venv()
    log = tmp_path_factory.mktemp("httpbin") / "gunicorn.log"
    port = free_port()
    cmd = [
        str(python),
        "-m",
        "gunicorn",
        "-b",
        f"127.0.0.1:{port}",
        *gunicorn_worker_args(python),
        "--graceful-timeout",
        "5",
        "--log-level",
        "warning",
        "--pythonpath",
        str(SUT_APP_DIR),
        "sut_app:app",
    ]
    with log.open("w") as handle:
        # its own session: at the end the whole group (master and workers) can be killed at once
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/status/200", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"httpbin did not start ({' '.join(cmd)}):\n{log.read_text()[-3000:]}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        with suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # workers a stuck master left behind
        proc.wait(10)
