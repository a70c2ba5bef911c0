"""Issue 4, security: a real ES with basic auth, and one with HTTP TLS. Right credentials index; wrong ones
give one clear error and spool; TLS is verified with --es-ca-certs and fails clearly without it; the API-key
header path goes through the fault proxy (this stripped ES cannot create API keys). No secret ever reaches
a log line or a stored document."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from helpers import es_client
from test_faults import FAULTS, LocustRun, accounting, docs_in_es, proxy_stats, run_id_of, start_proxy

pytestmark = pytest.mark.slow

PASSWORD_IN_TEST = "changeme-test"


def problem_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "locust-sink:" in line and ("ERROR" in line or "WARNING" in line)]


def assert_secret_absent(secret: str, log: str, es=None, pattern: str | None = None) -> None:
    assert secret not in log
    if es is not None and pattern:
        es.indices.refresh(index=pattern)
        hits = es.search(index=pattern, size=1000, query={"match_all": {}})["hits"]["hits"]
        assert hits
        assert secret not in json.dumps([h["_source"] for h in hits])


@pytest.fixture(scope="module")
def secure_es(request):
    from conftest import EsServer

    server = EsServer(f"sec-{uuid.uuid4().hex[:6]}", security=True)
    try:
        server.start()
        yield server
    finally:
        server.remove()


def test_basic_auth_right_credentials_index(tmp_path, secure_es, httpbin_url):
    prefix = f"t4s-{uuid.uuid4().hex[:6]}"
    run = LocustRun(
        tmp_path,
        FAULTS,
        httpbin_url,
        ["--es-url", secure_es.url, "--es-index-prefix", prefix, "--es-username", secure_es.user],
        env={"LOCUST_ES_PASSWORD": secure_es.password},
        run_time="6s",
    )
    log = run.wait()
    acc = accounting(log)
    assert acc["indexed"] == acc["emitted"] == run.truth_total()
    es = es_client(secure_es.url, basic_auth=(secure_es.user, secure_es.password))
    assert docs_in_es_auth(es, prefix, run_id_of(log)) == run.truth_total()
    assert_secret_absent(secure_es.password, log, es, f"{prefix}-*")


def docs_in_es_auth(es, prefix: str, run_id: str) -> int:
    es.indices.refresh(index=f"{prefix}-requests")
    return es.count(index=f"{prefix}-requests", query={"term": {"run_id": run_id}})["count"]


def test_basic_auth_wrong_password_one_clear_error_and_spool(tmp_path, secure_es, httpbin_url):
    wrong = "definitely-wrong-pw-4711"
    prefix = f"t4w-{uuid.uuid4().hex[:6]}"
    run = LocustRun(
        tmp_path,
        FAULTS,
        httpbin_url,
        [
            "--es-url",
            secure_es.url,
            "--es-index-prefix",
            prefix,
            "--es-username",
            secure_es.user,
            "--es-password",
            wrong,
        ],
        run_time="5s",
    )
    log = run.wait()
    problems = problem_lines(log)
    auth = [line for line in problems if "authentication failed (401)" in line]
    assert len(auth) == 1, problems
    assert "--es-username/--es-password" in auth[0]
    acc = accounting(log)
    assert acc["spooled"] == acc["emitted"] == run.truth_total()
    assert "locust-sink replay" in log
    assert wrong not in log
    spooled = b"".join(p.read_bytes() for p in (tmp_path / "results" / "spool").rglob("*.ndjson"))
    assert spooled and wrong.encode() not in spooled


@pytest.fixture(scope="module")
def tls_es():
    """A real ES with HTTP TLS (and basic auth), once for the module: both verify cases run against it."""
    from conftest import EsServer

    server = EsServer(f"tls-{uuid.uuid4().hex[:6]}", tls=True)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.mark.parametrize("verify", ["ca", "none"])
def test_tls_verified_with_ca_and_clear_error_without(tmp_path, tls_es, httpbin_url, verify):
    server = tls_es
    prefix = f"t4t-{uuid.uuid4().hex[:6]}"
    args = ["--es-url", server.url, "--es-index-prefix", prefix, "--es-username", server.user]
    if verify == "ca":
        args += ["--es-ca-certs", str(server.ca_path)]
    run = LocustRun(tmp_path, FAULTS, httpbin_url, args, env={"LOCUST_ES_PASSWORD": server.password}, run_time="5s")
    log = run.wait()
    acc = accounting(log)
    if verify == "ca":
        assert acc["indexed"] == acc["emitted"] == run.truth_total()
        es = es_client(server.url, basic_auth=(server.user, server.password), ca_certs=str(server.ca_path))
        assert docs_in_es_auth(es, prefix, run_id_of(log)) == run.truth_total()
    else:
        tls = [line for line in problem_lines(log) if "TLS failure" in line]
        assert len(tls) == 1, problem_lines(log)
        assert "--es-ca-certs" in tls[0]
        assert acc["spooled"] == acc["emitted"]
    assert server.password not in log


def test_api_key_header_path(tmp_path, es_url, httpbin_url):
    api_key = "bG9jdXN0LXNpbms6c2VjcmV0LWtleS12YWx1ZQ=="
    proxy, url = start_proxy(es_url, "--require-api-key", "--fake-api-key-ok")
    try:
        prefix = f"t4k-{uuid.uuid4().hex[:6]}"
        run = LocustRun(
            tmp_path,
            FAULTS,
            httpbin_url,
            ["--es-url", url, "--es-index-prefix", prefix],
            env={"LOCUST_ES_API_KEY": api_key},
            run_time="5s",
        )
        log = run.wait()
        schemes = proxy_stats(url)["auth_schemes"]
    finally:
        proxy.terminate()
        proxy.wait(10)
    assert set(schemes) == {"ApiKey"}, schemes
    acc = accounting(log)
    assert acc["indexed"] == acc["emitted"] == run.truth_total()
    assert docs_in_es(es_url, prefix, run_id_of(log)) == run.truth_total()
    assert api_key not in log and not re.search(r"secret-key-value", log)
