"""Issue 17 §3 on a real 3-node Elasticsearch 8.19.21 cluster (the session's, shared with the node-loss
scenarios of test_cluster.py, which hand it back green with all nodes): write blocks.

- read-only indices: `index.blocks.read_only_allow_delete` (what the flood-stage disk watermark sets) on the
  sink's indices mid-run for 8 s with a 2 s retry budget: the `cluster_block_exception` answers are retried,
  then spooled, never dead-lettered, one log line says why, and delivery resumes by itself once the block
  is lifted, with the final counts equal to Locust's.
- printed commands: a run whose documents stay spooled (indices read-only to the end) prints a
  `locust-sink replay ... --es-url <three URLs>` hint; the test runs it as printed with `bash -c`.
- writable again during the final flush: documents spooled before it are delivered by it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_util import assert_matches, es_landed, locust_truth
from helpers import EsCluster, es_client, headless_args, run_locust, start_locust, subprocess_env, wait_until
from test_cluster import FAULTS, accountings, spooled_segments

from locust_sink import schema

XDIST_GROUP = "es-cluster"  # one worker runs both modules of the shared 3-node cluster (conftest.py)

pytestmark = pytest.mark.slow


# -------------------------------------------------------------------------------- scenario: read-only indices


BLOCK = "index.blocks.read_only_allow_delete"
# The block is set 5 s after the indices exist and held 8 s; the sink's probes back off up to 10 s, so 35 s
# leaves it the time to find the indices writable again before the run ends (the final flush is another case,
# test_documents_spooled_before_the_final_flush_are_delivered_when_es_takes_them_again_during_it).
READ_ONLY_RUN_SECONDS = 35


@dataclass
class ReadOnlyRun:
    cluster: EsCluster
    prefix: str
    log: str
    truth: dict[str, Any]
    sink_dir: Path
    blocked_for: float


def set_block(es: Any, prefix: str, value: bool | None) -> None:
    es.indices.put_settings(index=f"{prefix}-*", settings={BLOCK: value})


@pytest.fixture(scope="module")
def read_only(cluster: EsCluster, httpbin_url: str, tmp_path_factory) -> ReadOnlyRun:
    workdir = tmp_path_factory.mktemp("read-only")
    prefix = f"tc2-{uuid.uuid4().hex[:6]}"
    es = cluster.client()
    blocked: dict[str, float] = {}

    def block_then_lift() -> None:
        wait_until(lambda: es.indices.exists(index=f"{prefix}-requests"), 60, what="the sink's indices")
        time.sleep(5)
        set_block(es, prefix, True)
        blocked["on"] = time.monotonic()
        time.sleep(8)
        set_block(es, prefix, None)
        blocked["off"] = time.monotonic()

    chaos = threading.Thread(target=block_then_lift, daemon=True)
    chaos.start()
    try:
        done = run_locust(
            headless_args(
                FAULTS, httpbin_url, 3, f"{READ_ONLY_RUN_SECONDS}s", workdir / "stats",
                "--exit-code-on-error", "0", "--es-url", cluster.url, "--es-index-prefix", prefix,
                "--sink-dir", str(workdir / "results"), "--sink-retry-timeout", "2",
            ),
            env={"FAULT_WAIT": "0.05"},
            cwd=workdir,
            timeout=180,
        )  # fmt: skip
    finally:
        chaos.join(60)
        set_block(es, prefix, None)  # never leave the block behind, whatever happened
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert "off" in blocked, "the block was never set and lifted"
    return ReadOnlyRun(
        cluster, prefix, log, locust_truth(workdir / "stats.json"), workdir / "results", blocked["off"] - blocked["on"]
    )


def test_read_only_blocks_are_retried_spooled_and_delivered_by_themselves(read_only: ReadOnlyRun):
    (acc,) = accountings(read_only.log)
    total = sum(read_only.truth["counts"].values())
    assert acc["emitted"] == total and acc.get("dropped", 0) == 0, acc
    assert acc.get("dead_lettered", 0) == 0, acc
    assert not (read_only.sink_dir / "dead-letters").exists() or not list(
        (read_only.sink_dir / "dead-letters").rglob("*.ndjson")
    ), "nothing may be dead-lettered"
    # went through the spool (the 8 s block outlasts the 2 s retry budget) and came back by itself
    assert "takes documents again" in read_only.log, read_only.log[-3000:]
    assert acc.get("spooled", 0) == 0 and acc["indexed"] == total, acc
    assert not spooled_segments(read_only.sink_dir)
    es = read_only.cluster.client()
    run_id = re.search(r"locust-sink: run (\S+): recording", read_only.log).group(1)  # type: ignore[union-attr]
    assert_matches(read_only.truth, es_landed(es, f"{read_only.prefix}-requests", run_id))
    assert "could not be delivered" not in read_only.log, read_only.log[-3000:]
    print(f"\nread-only for {read_only.blocked_for:.1f} s: {total} requests, all indexed, none dead-lettered")


def test_read_only_one_log_line_says_why(read_only: ReadOnlyRun):
    lines = [line for line in read_only.log.splitlines() if "locust-sink" in line]
    why = [line for line in lines if "cluster_block_exception" in line or "read-only" in line or "read_only" in line]
    assert len(why) == 1, "\n".join(lines)


# ---------------------------------------------------------------------------- scenario: printed commands run


@pytest.fixture(scope="module")
def spooled_run(cluster: EsCluster, httpbin_url: str, tmp_path_factory) -> tuple[Path, str, str, dict[str, Any]]:
    """A short run whose indices stay read-only to the end: every document is spooled and a replay hint
    with the three URLs is printed. The block is lifted afterwards."""
    workdir = tmp_path_factory.mktemp("hint")
    prefix = f"tc3-{uuid.uuid4().hex[:6]}"
    es = cluster.client()
    # the sink's own templates and indices, as its setup makes them, then blocked before it starts
    schema.install_templates(es, prefix, replicas=1)
    schema.create_indices(es, prefix)
    set_block(es, prefix, True)
    try:
        done = run_locust(
            headless_args(
                FAULTS, httpbin_url, 2, "6s", workdir / "stats",
                "--exit-code-on-error", "0", "--es-url", cluster.url, "--es-index-prefix", prefix,
                "--sink-dir", str(workdir / "results"), "--sink-retry-timeout", "1", "--sink-flush-timeout", "3",
                "--es-replicas", "1",
            ),
            env={"FAULT_WAIT": "0.1"},
            cwd=workdir,
            timeout=120,
        )  # fmt: skip
    finally:
        set_block(es, prefix, None)
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in log, log[-3000:]
    return workdir, prefix, log, locust_truth(workdir / "stats.json")


def test_the_printed_replay_command_runs_as_printed(spooled_run):
    workdir, prefix, log, truth = spooled_run
    commands = re.findall(r"`(locust-sink replay [^`]+)`", log)
    assert commands, log[-3000:]
    command = commands[-1]
    assert "127.0.0.1" in command, command
    assert spooled_segments(workdir / "results"), "the run spooled what the printed command delivers"
    print(f"\nprinted: {command}")
    proc = subprocess.run(
        ["bash", "-c", command], cwd=workdir, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
    urls = shlex.split(command)[shlex.split(command).index("--es-url") + 1]
    assert urls.split(",") == spooled_run_cluster_urls(log), urls
    run_id = re.search(r"locust-sink: run (\S+): recording", log).group(1)  # type: ignore[union-attr]
    es = es_client(urls.split(",")[0])
    assert_matches(truth, es_landed(es, f"{prefix}-requests", run_id))


def spooled_run_cluster_urls(log: str) -> list[str]:
    """The URLs the run was given, from its start line (`recording requests to URL, URL, ... (indices`)."""
    match = re.search(r"recording requests to (?:Elasticsearch |OpenSearch )?(.*?) \(indices", log)
    assert match, log[-2000:]
    return [u.strip() for u in match.group(1).split(",")]


def test_everything_was_spooled_with_three_urls_in_the_hint(spooled_run):
    """The premise of the printed-command test: the hint is there and names all three nodes."""
    workdir, _prefix, log, truth = spooled_run
    (acc,) = accountings(log)
    assert acc["emitted"] == sum(truth["counts"].values()) == acc.get("spooled", 0), acc
    hint = re.search(r"`(locust-sink replay [^`]+)`", log)
    assert hint, log[-3000:]
    assert all(url in hint.group(1) for url in spooled_run_cluster_urls(log)), hint.group(1)


# ------------------------------------------------------------- scenario: writable again during the final flush


@pytest.fixture(scope="module")
def lifted_in_final_flush(cluster: EsCluster, httpbin_url: str, tmp_path_factory) -> tuple[Path, str, str]:
    """Indices read-only from the start; the block is lifted 1 s after Locust logs the end of its run, i.e.
    while the final flush (25 s budget) waits for the spool."""
    workdir = tmp_path_factory.mktemp("final-flush")
    prefix = f"tc4-{uuid.uuid4().hex[:6]}"
    es = cluster.client()
    schema.install_templates(es, prefix, replicas=1)
    schema.create_indices(es, prefix)
    set_block(es, prefix, True)
    cmd = headless_args(
        FAULTS, httpbin_url, 2, "8s", workdir / "stats",
        "--exit-code-on-error", "0", "--es-url", cluster.url, "--es-index-prefix", prefix, "--es-replicas", "1",
        "--sink-dir", str(workdir / "results"), "--sink-retry-timeout", "1", "--sink-flush-timeout", "25",
    )  # fmt: skip
    try:
        with start_locust(cmd, {"FAULT_WAIT": "0.1"}, cwd=workdir) as proc:
            wait_until(lambda: "--run-time limit reached" in proc.log(), 90, 0.2, "the end of the run")
            time.sleep(1.0)
            set_block(es, prefix, None)
            done = proc.wait(120)
    finally:
        set_block(es, prefix, None)
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in log, log[-3000:]
    return workdir, prefix, log


def test_documents_spooled_before_the_final_flush_are_delivered_when_es_takes_them_again_during_it(
    lifted_in_final_flush,
):
    workdir, _prefix, log = lifted_in_final_flush
    (acc,) = accountings(log)
    assert "takes documents again" in log, log[-3000:]
    assert acc.get("spooled", 0) == 0 and acc["indexed"] == acc["emitted"], acc
    leftover = spooled_segments(workdir / "results")
    hint = [line for line in log.splitlines() if "could not be delivered" in line]
    assert not hint and not leftover, (hint, [p.read_text()[:300] for p in leftover])
