"""Issue 3 end to end: a real `locust --headless` against a real httpbin, the sink pointed at a real ES
(and, separately, at files), and what landed compared with Locust's own final stats (--json-file)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from e2e_util import assert_matches, es_landed, file_landed, locust_truth
from helpers import es_client, free_port, headless_args, run_locust, start_locust, subprocess_env

from locust_sink.cli import build_parser

XDIST_SPREAD = True  # its tests share only session fixtures: spread them over the workers (conftest.py)

LOCUSTFILE = Path(__file__).parent / "locustfiles" / "e2e.py"


def run_e2e(tmp: Path, host: str, *extra: str, env: dict[str, str] | None = None, run_time: str = "6s"):
    out = tmp / "stats"
    args = headless_args(
        LOCUSTFILE, host, 8, run_time, out, "--exit-code-on-error", "0", "--sink-dir", str(tmp / "results"), *extra
    )
    proc = run_locust(args, env=env, cwd=tmp, timeout=120)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    return Path(str(out) + ".json"), log


def run_id_from(log: str) -> str:
    match = re.search(r"locust-sink: run (\S+): recording requests", log)
    assert match, log[-2000:]
    return match.group(1)


def test_every_request_lands_in_elasticsearch(tmp_path, es_url, httpbin_url):
    prefix = f"t3-{uuid.uuid4().hex[:8]}"
    stats_json, log = run_e2e(tmp_path, httpbin_url, "--es-url", es_url, "--es-index-prefix", prefix)
    run_id = run_id_from(log)
    truth = locust_truth(stats_json)
    assert sum(truth["counts"].values()) > 200, "the run made too few requests to prove anything"
    assert any(not k[2] for k in truth["counts"]), "expected failures in the run"
    es = es_client(es_url)
    landed = es_landed(es, f"{prefix}-requests", run_id)
    assert_matches(truth, landed)
    # one start line and one end line, with counts, no secrets, balanced accounting
    assert re.search(r"-> Elasticsearch .*emitted=\d+ indexed=\d+ \(balanced\); final flush took", log), log[-2000:]
    # documents carry the fields the contract promises
    hit = es.search(index=f"{prefix}-requests", size=1, query={"term": {"success": False}})["hits"]["hits"][0]
    doc = hit["_source"]
    for field in (
        "@timestamp",
        "run_id",
        "node",
        "request_type",
        "name",
        "url",
        "response_time",
        "response_length",
        "success",
        "exception",
    ):
        assert field in doc, field
    assert doc["node"] == "local" and hit["_id"].startswith(f"{run_id}:local:")
    ctx = es.search(index=f"{prefix}-requests", size=1, query={"term": {"name": "/status/200"}})["hits"]["hits"]
    assert ctx[0]["_source"]["context"]["obj"] == "weird-object"


def test_file_mode_then_load(tmp_path, es_url, httpbin_url):
    stats_json, log = run_e2e(tmp_path, httpbin_url)
    run_id = run_id_from(log)
    truth = locust_truth(stats_json)
    run_dir = tmp_path / "results" / run_id
    files = sorted(run_dir.glob("*.ndjson"))
    assert files, f"no NDJSON files in {run_dir}"
    landed, run_ids, duplicates = file_landed(files)
    assert run_ids == {run_id} and duplicates == 0
    assert_matches(truth, landed)
    # the end of the run says how to load the files: run that command as printed (LOCUST_ES_URL points it at
    # the test's Elasticsearch instead of the CLI's default http://127.0.0.1:9200), twice: the second load
    # must not duplicate anything
    printed = re.search(r"`(locust-sink load [^`]+)`", log)
    assert printed, log[-2000:]
    prefix = "locust"  # file mode writes the default prefix's index names
    env = subprocess_env({"LOCUST_ES_URL": es_url})
    for attempt in range(2):
        proc = subprocess.run(
            ["bash", "-c", printed.group(1)], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        # besides the request records, file mode also holds stats snapshots, events and the run document
        assert re.search(rf"loaded \d+ documents \({sum(truth['counts'].values())} request records\)", proc.stdout), (
            attempt,
            proc.stdout,
        )
    es = es_client(es_url)
    assert_matches(truth, es_landed(es, f"{prefix}-requests", run_id))


@pytest.mark.parametrize("value", ["notaurl", "ftp://127.0.0.1:9200", "http://127.0.0.1:notaport"])
def test_malformed_url_is_refused_by_the_option_parser_at_start(tmp_path, httpbin_url, value):
    args = headless_args(LOCUSTFILE, httpbin_url, 2, "3s", tmp_path / "stats", "--es-url", value)
    proc = run_locust(args, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"argument --es-url: {value!r} is not" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "stats.json").exists(), "the test must not have started"


def test_unreachable_url_gives_one_clear_error_and_the_test_runs(tmp_path, httpbin_url):
    stats_json, log = run_e2e(tmp_path, httpbin_url, "--es-url", "http://127.0.0.1:1", run_time="3s")
    truth = locust_truth(stats_json)
    assert sum(truth["counts"].values()) > 0
    lines = [line for line in log.splitlines() if "locust-sink:" in line and ("ERROR" in line or "WARNING" in line)]
    problem = [line for line in lines if "Elasticsearch unreachable" in line]
    assert len(problem) == 1, lines
    # nothing lost: everything went to the spool, and the end says how to replay it
    assert re.search(r"emitted=(\d+) spooled=\1 \(balanced\)", log), log[-2000:]
    printed = re.search(r"`(locust-sink replay [^`]+)`", log)
    assert printed, log[-2000:]
    # as printed: the CLI's parser takes it (test_faults runs such a command against a live ES)
    args = build_parser().parse_args(shlex.split(printed.group(1))[1:])
    assert args.es_url == "http://127.0.0.1:1" and Path(args.path) == tmp_path / "results" / "spool"


def test_programmatic_api_with_a_hand_built_environment(tmp_path, es_url, httpbin_url):
    """`locust_sink.attach(env, ...)` for people who build their own Environment (run in a subprocess so the
    test process keeps its own gevent state)."""
    prefix = f"t3p-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "lib_use.py"
    script.write_text(
        f"""
import gevent
from locust import HttpUser, constant, task
from locust.env import Environment
import locust_sink

class U(HttpUser):
    wait_time = constant(0.05)
    host = {httpbin_url!r}
    @task
    def get(self):
        self.client.get("/get")

env = Environment(user_classes=[U])
sink = locust_sink.attach(env, es_url={es_url!r}, es_index_prefix={prefix!r}, run_id="lib-run",
                          run_tag=["suite=lib"])
runner = env.create_local_runner()
runner.start(4, spawn_rate=4)
gevent.sleep(3)
runner.quit()
assert sink.close(timeout=20)
status = sink.status()
print("TOTAL", env.stats.total.num_requests, "INDEXED", status["requests"]["indexed"], "RUN", status["run_id"])
"""
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=subprocess_env()
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = re.search(r"TOTAL (\d+) INDEXED (\d+) RUN (\S+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    total, indexed, run_id = int(match.group(1)), int(match.group(2)), match.group(3)
    assert total > 20 and indexed == total and run_id == "lib-run"
    es = es_client(es_url)
    es.indices.refresh(index=f"{prefix}-requests")
    assert es.count(index=f"{prefix}-requests", query={"term": {"run_id": "lib-run"}})["count"] == total


def test_web_ui_shows_status_and_hides_secrets(tmp_path, es_url, httpbin_url):
    import json
    import time
    import urllib.request

    port = free_port()
    secret = "pw-never-shown-3141"
    args = [
        "-f",
        str(LOCUSTFILE),
        "--autostart",
        "--autoquit",
        "3",
        "-t",
        "5s",
        "-u",
        "2",
        "-r",
        "2",
        "--web-host",
        "127.0.0.1",
        "--web-port",
        str(port),
        "--host",
        httpbin_url,
        "--es-url",
        es_url,
        "--es-index-prefix",
        f"t3w-{uuid.uuid4().hex[:6]}",
        "--es-password",
        secret,
        "--sink-dir",
        str(tmp_path / "results"),
    ]
    with start_locust(args, cwd=tmp_path) as proc:
        status, page = None, ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/locust-sink/status", timeout=2) as resp:
                    status = json.loads(resp.read())
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    page = resp.read().decode()
            except OSError:
                time.sleep(0.3)
        done = proc.wait(60)
    out = done.stdout + done.stderr
    assert status is not None, out[-2000:]
    assert status["state"] in ("up", "starting") and "emitted" in status["requests"]
    assert "es-url" in page or "es_url" in page  # our options are in the web UI form ...
    assert secret not in page and secret not in json.dumps(status) and secret not in out  # ... secrets are not
