"""The test harness itself works: a real ES (session and extra instances), httpbin, real Locust processes."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from base64 import b64encode
from pathlib import Path

import pytest
from elasticsearch import AuthenticationException
from helpers import (
    INFRA_VARIABLES,
    LocustTimeout,
    count,
    delete_indices,
    es_client,
    run_locust,
    run_locust_distributed,
    start_locust,
    subprocess_env,
)

XDIST_SPREAD = True  # its tests share only session fixtures: spread them over the workers (conftest.py)

LOCUSTFILE = """
from locust import HttpUser, constant, task


class Reader(HttpUser):
    wait_time = constant(0.1)

    @task
    def get(self):
        self.client.get("/get")
"""


def http_get(url: str, timeout: float = 10, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def basic(user: str, password: str) -> str:
    return "Basic " + b64encode(f"{user}:{password}".encode()).decode()


def processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            pass
    return found


def test_session_es_is_healthy_and_indexes(es_url):
    es = es_client(es_url)
    assert es.cluster.health(wait_for_status="yellow", timeout="30s")["status"] in ("green", "yellow")
    index = f"harness-{uuid.uuid4().hex[:8]}"
    es.index(index=index, id="1", document={"msg": "hello", "n": 1})
    es.index(index=index, id="2", document={"msg": "world", "n": 2})
    assert count(es, index) == 2
    assert count(es, index, {"term": {"n": 2}}) == 1
    assert delete_indices(es, f"{index}*") == [index]
    assert count(es, index) == 0  # a missing index counts 0


def test_httpbin_serves_what_the_locustfiles_use(httpbin_url):
    assert http_get(f"{httpbin_url}/status/200")[0] == 200
    assert http_get(f"{httpbin_url}/status/404")[0] == 404
    assert http_get(f"{httpbin_url}/status/500")[0] == 500
    status, body = http_get(f"{httpbin_url}/get")
    assert status == 200 and json.loads(body)["url"].endswith("/get")
    status, body = http_get(f"{httpbin_url}/bytes/100")  # cut short by gunicorn without conftest's wrapper
    assert status == 200 and len(body) == 100
    t0 = time.monotonic()
    assert http_get(f"{httpbin_url}/delay/1")[0] == 200
    assert 1 <= time.monotonic() - t0 < 5


@pytest.mark.slow
def test_security_instance_checks_credentials(es_server_factory):
    server = es_server_factory("harness-sec", security=True)
    assert not server.running
    server.start()
    assert server.running
    assert server.client().cluster.health()["status"] in ("green", "yellow")
    with pytest.raises(AuthenticationException) as info:
        es_client(server.url, basic_auth=(server.user, "wrong-password")).cluster.health()
    assert info.value.meta.status == 401
    health = f"{server.url}/_cluster/health"
    assert http_get(health, Authorization=basic(server.user, server.password))[0] == 200
    assert http_get(health, Authorization=basic(server.user, "wrong-password"))[0] == 401
    assert http_get(health)[0] == 401
    server.kill()  # SIGKILL, as a crash
    assert not server.running
    with pytest.raises(OSError):
        urllib.request.urlopen(health, timeout=5)


def test_run_locust_runs_a_real_locust(tmp_path, httpbin_url):
    (tmp_path / "lf.py").write_text(LOCUSTFILE)
    args = ["-f", "lf.py", "--headless", "-u", "2", "-r", "2", "-t", "2s", "--host", httpbin_url, "--json-file", "out"]
    done = run_locust(args, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads((tmp_path / "out.json").read_text())
    assert row["name"] == "/get" and row["num_requests"] > 0 and row["num_failures"] == 0
    assert done.stderr_path.exists()


def test_run_locust_timeout_kills_it(tmp_path, httpbin_url):
    locustfile = tmp_path / "lf.py"
    locustfile.write_text(LOCUSTFILE)
    with pytest.raises(LocustTimeout):
        run_locust(["-f", str(locustfile), "--headless", "-u", "1", "-t", "60s", "--host", httpbin_url], timeout=4)
    assert processes_mentioning(str(locustfile)) == []


def test_run_locust_distributed_master_and_two_workers(tmp_path, httpbin_url):
    (tmp_path / "lf.py").write_text(LOCUSTFILE)
    run = run_locust_distributed(
        ["-f", "lf.py", "--headless", "-u", "4", "-r", "4", "-t", "3s", "--host", httpbin_url, "--json-file", "out"],
        ["-f", "lf.py"],
        n_workers=2,
        timeout=90,
        cwd=tmp_path,
    )
    assert run.returncodes == [0, 0, 0], run.master.stderr[-3000:]
    (row,) = json.loads((tmp_path / "out.json").read_text())
    assert row["num_requests"] > 0 and row["num_failures"] == 0
    for worker in run.workers:
        assert "Traceback" not in worker.stderr


def test_start_locust_in_the_background_and_killed_on_leaving(tmp_path, httpbin_url):
    locustfile = tmp_path / "lf.py"
    locustfile.write_text(LOCUSTFILE)
    with start_locust(["-f", str(locustfile), "--headless", "-u", "1", "-t", "60s", "--host", httpbin_url]) as proc:
        deadline = time.monotonic() + 30
        while "Ramping to 1 users" not in proc.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.running and "Ramping to 1 users" in proc.log(), proc.log()[-2000:]
    assert not proc.running
    assert processes_mentioning(str(locustfile)) == []


def test_subprocess_env_drops_every_option_and_keeps_the_machinery(monkeypatch):
    """Inherited LOCUST_* options (Locust's and the sink's) never reach a test's subprocess; the test and bench
    machinery's own variables do; and none of those names an option of Locust or the sink."""
    from locust.argument_parser import get_parser

    from locust_sink.options import OPTIONS

    option_vars = {o.env_var for o in OPTIONS} | {
        a.env_var for a in get_parser()._actions if getattr(a, "env_var", None)
    }
    assert "LOCUST_SINK_FLUSH_TIMEOUT" in option_vars and "LOCUST_HOST" in option_vars
    assert not [v for v in option_vars if v.startswith(INFRA_VARIABLES)], "an infrastructure prefix names an option"
    for name in option_vars:
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("LOCUST_SINK_SUT_VENV", "/x")
    monkeypatch.setenv("KIBANA_X", "1")
    env = subprocess_env({"EXTRA": "y"}, drop=("KIBANA_",))
    assert not option_vars & env.keys()
    assert env["LOCUST_SINK_SUT_VENV"] == "/x" and env["EXTRA"] == "y" and "KIBANA_X" not in env
