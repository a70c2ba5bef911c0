"""Fixtures that start REAL servers: Elasticsearch (scripts/es-local.sh) and httpbin under gunicorn.

Locust is imported first: it monkey-patches the standard library through gevent, which must happen before
anything imports ssl (the elasticsearch client does), or ssl ends in a RecursionError.
"""

# ruff: noqa: I001  (locust must be imported before anything that imports ssl)
from __future__ import annotations

import locust  # noqa: F401  (must stay the first import: gevent monkey-patching)

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
ES_SCRIPT = ROOT / "scripts" / "es-local.sh"
SUT_VENV = Path(os.environ.get("LOCUST_SINK_SUT_VENV", ROOT / ".venv-sut"))
ES_USER = os.environ.get("ES_USER", "elastic-test")
ES_PASSWORD = os.environ.get("ES_PASSWORD", "changeme-test")


def es_local(*args: str, timeout: float = 240) -> str:
    proc = subprocess.run(["bash", str(ES_SCRIPT), *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"es-local.sh {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


class EsServer:
    """One named ES instance on a fixed free port; not started until start()."""

    def __init__(self, name: str, security: bool = False, tls: bool = False) -> None:
        self.name = name
        self.port = free_port()
        self.transport_port = free_port()
        self.security = security or tls
        self.tls = tls
        self.user = ES_USER if self.security else None
        self.password = ES_PASSWORD if self.security else None
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.ca_path = Path(os.environ.get("LOCUST_SINK_ES_RUN", "/tmp/locust-sink-es")) / name / "ca.pem"

    def start(self) -> str:
        args = ["start", self.name, "--port", str(self.port), "--transport-port", str(self.transport_port)]
        if self.tls:
            args.append("--tls")
        elif self.security:
            args.append("--security")
        return es_local(*args)

    def stop(self) -> None:
        es_local("stop", self.name)

    def kill(self) -> None:
        es_local("kill", self.name)

    def remove(self) -> None:
        es_local("remove", self.name)


@pytest.fixture(scope="session")
def es_url():
    """A real Elasticsearch for the whole session (or ES_TEST_URL if set)."""
    if os.environ.get("ES_TEST_URL"):
        yield os.environ["ES_TEST_URL"]
        return
    server = EsServer(f"test-{os.getpid()}")
    server.start()
    try:
        yield server.url
    finally:
        server.remove()


@pytest.fixture
def es_server_factory():
    """Extra ES instances a test can start, kill and restart; all stopped at the end of the test."""
    servers: list[EsServer] = []

    def make(name: str, security: bool = False, tls: bool = False) -> EsServer:
        server = EsServer(f"{name}-{uuid.uuid4().hex[:6]}", security=security, tls=tls)
        servers.append(server)
        return server

    yield make
    for server in servers:
        try:
            server.remove()
        except Exception as exc:  # keep stopping the others
            print(f"could not stop {server.name}: {exc}", file=sys.stderr)


def ensure_sut_venv() -> Path:
    """httpbin pins greenlet<3, which breaks gevent/Locust: it lives in its own virtualenv."""
    gunicorn = SUT_VENV / "bin" / "gunicorn"
    if not gunicorn.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SUT_VENV)], check=True)
        subprocess.run(
            [str(SUT_VENV / "bin" / "pip"), "install", "-q", "httpbin==0.10.2", "gunicorn>=21"],
            check=True,
            timeout=600,
        )
    return gunicorn


@pytest.fixture(scope="session")
def httpbin_url(tmp_path_factory):
    """PyPI httpbin under gunicorn (threaded workers: httpbin pins an old gevent) on 127.0.0.1."""
    gunicorn = ensure_sut_venv()
    port = free_port()
    log = tmp_path_factory.mktemp("httpbin") / "gunicorn.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [
                str(gunicorn),
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "2",
                "-k",
                "gthread",
                "--threads",
                "16",
                "--log-level",
                "warning",
                "httpbin:app",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/status/200", timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"httpbin did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
