"""The delivery engine (delivery/) against a scripted cluster: every retry and outage case in milliseconds,
with the accounting checked at every bulk request.

`FakeCluster` answers `check()` and `bulk(body)` from a script and keeps what it indexed by `_id` with the
semantics of `create` (a second create of an id is a 409), so "nothing lost, nothing twice" is checked
document by document. What only a real server can show (a real kill and restart, auth, TLS, a real mapping
conflict, distributed runs) is in test_faults.py, test_security.py and test_distributed.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import orjson
import pytest
from unit_util import flat, record

from locust_sink.accounting import Accounting, Ledger
from locust_sink.buffer import RecordBuffer
from locust_sink.bulk import BulkItem, ErrorKind, SinkTransportError
from locust_sink.config import EsConfig
from locust_sink.delivery.batches import BatchAssembler
from locust_sink.delivery.encoding import BatchEncoder
from locust_sink.delivery.engine import Delivery
from locust_sink.delivery.link import LinkState
from locust_sink.delivery.retry import RetryPolicy
from locust_sink.filesink import read_items
from locust_sink.options import SinkSettings

Status = tuple[int, dict[str, Any] | None]


class FakeCluster:
    """A scripted cluster (the delivery engine's Backend)."""

    def __init__(self) -> None:
        self.docs: dict[str, bytes] = {}  # _id -> source of everything indexed
        self.unreachable = 0  # the next N calls (check or bulk) fail as unreachable
        self.request_errors: list[SinkTransportError] = []  # whole-request failures of the next bulk calls
        self.check_error: SinkTransportError | None = None  # every check fails with this (e.g. auth)
        self.item_status: Callable[[dict[str, Any], dict[str, Any]], Status] | None = None
        self.too_large_over: int | None = None  # a 413 for bodies of more items than this
        self.hang = False  # bulk requests never answer
        self.sizes: list[int] = []  # items per bulk request
        self.conflicts = 0  # creates of an id already there (answered 409)
        self.on_call: Callable[[], None] = lambda: None  # runs at the start of every bulk request

    def describe(self) -> str:
        return "the fake cluster"

    def check(self) -> str | None:
        if self.unreachable:
            self.unreachable -= 1
            raise SinkTransportError(ErrorKind.UNREACHABLE, "Elasticsearch unreachable: connection refused")
        if self.check_error is not None:
            raise self.check_error
        return "8.19.21"

    def bulk(self, body: bytes) -> dict[str, Any]:
        self.on_call()
        lines = body.split(b"\n")[:-1]
        pairs = list(zip(lines[0::2], lines[1::2], strict=True))
        self.sizes.append(len(pairs))
        if self.hang:
            gevent.sleep(3600)
        if self.unreachable:
            self.unreachable -= 1
            raise SinkTransportError(ErrorKind.UNREACHABLE, "Elasticsearch unreachable: connection refused")
        if self.request_errors:
            raise self.request_errors.pop(0)
        if self.too_large_over is not None and len(pairs) > self.too_large_over:
            raise SinkTransportError(ErrorKind.TOO_LARGE, "Elasticsearch refused the bulk request as too large", 413)
        items, errors = [], False
        for action, source in pairs:
            ((op, meta),) = orjson.loads(action).items()
            doc = orjson.loads(source)
            status, error = self.item_status(meta, doc) if self.item_status else (201, None)
            if status < 300 and op == "create" and meta["_id"] in self.docs:
                status, error = 409, {"type": "version_conflict_engine_exception"}
                self.conflicts += 1
            elif status < 300:
                self.docs[meta["_id"]] = source
            errors = errors or status >= 300
            items.append({op: {"status": status, **({"error": error} if error else {})}})
        return {"errors": True, "items": items} if errors else {"errors": False}

    def request_ids(self) -> set[str]:
        return {i for i in self.docs if orjson.loads(self.docs[i]).get("request_type") is not None}


FAST = dict(
    batch_size=100,
    flush_interval=0.05,
    retry_timeout=0.3,
    backoff_base=0.001,
    backoff_cap=0.004,
    probe_interval_min=0.01,
    probe_interval_max=0.02,
    encoder="inline",
)


def engine(tmp_path: Path, cluster: FakeCluster | None, **settings: Any) -> tuple[Delivery, RecordBuffer]:
    """A delivery engine with fast timings; to `cluster` (None: file mode). Accounting is checked at every
    bulk request."""
    cfg = SinkSettings(**{**FAST, **settings})
    buffer = RecordBuffer(cfg.queue_size, cfg.batch_size, lambda: None, run_id="r1")
    es = EsConfig(urls=["http://127.0.0.1:9"]) if cluster is not None else None
    delivery = Delivery(buffer, "local", "t", tmp_path, cfg, es, connect=(lambda: cluster) if cluster else None)
    if cluster is not None:
        cluster.on_call = lambda: assert_balanced(delivery)
    return delivery, buffer


def assert_balanced(delivery: Delivery) -> None:
    requests, documents = delivery.ledger.requests, delivery.ledger.documents
    assert requests.balanced(), requests
    assert documents.balanced(), documents


def feed(buffer: RecordBuffer, n: int, name: str = "/x", pause_every: int = 0) -> None:
    for i in range(n):
        buffer.on_request("GET", name, 1.0 + i % 7, 10, exception=None, start_time=1700000000.0 + i, url="u")
        if pause_every and i % pause_every == pause_every - 1:
            gevent.sleep(0.01)


def assert_all_indexed_once(delivery: Delivery, cluster: FakeCluster, n: int) -> None:
    acc = delivery.ledger.requests
    assert (acc.emitted, acc.indexed, acc.spooled, acc.dropped, acc.dead_lettered) == (n, n, 0, 0, 0), acc
    assert acc.balanced() and acc.queued == acc.in_flight == 0
    assert cluster.request_ids() == {f"r1:local:{seq}" for seq in range(1, n + 1)}


def outage_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


# ------------------------------------------------------------------------------------- the retry policy


def test_retry_policy_backs_off_with_jitter_within_its_budget():
    now = [0.0]
    draws: list[tuple[float, float]] = []
    policy = RetryPolicy(timeout=10.0, max_attempts=5, base=0.25, cap=1.0, clock=lambda: now[0],
                         jitter=lambda low, high: draws.append((low, high)) or high)  # fmt: skip
    budget = policy.budget()
    assert [budget.next_delay() for _ in range(5)] == [0.5, 1.0, 1.0, 1.0, None]  # capped; 5 attempts in all
    assert draws == [(0, 0.5), (0, 1.0), (0, 1.0), (0, 1.0)]  # full jitter: uniform(0, backoff)
    budget = policy.budget()
    now[0] = 10.0
    assert budget.next_delay() is None  # the time budget is spent too


# ------------------------------------------------------------------------------ the normal path, drains


def test_the_normal_path_indexes_every_record_once_with_full_batches(tmp_path):
    cluster = FakeCluster()
    delivery, buffer = engine(tmp_path, cluster)
    delivery.start()
    feed(buffer, 1050, pause_every=100)
    delivery.submit_document("events", {"run_id": "r1", "event": "x"}, "r1", doc_id="r1:local:e1")
    assert delivery.flush(5)
    assert_all_indexed_once(delivery, cluster, 1050)
    assert delivery.ledger.documents.indexed == 1 and "r1:local:e1" in cluster.docs
    assert max(cluster.sizes) == 100 and sum(cluster.sizes) == 1051 and cluster.conflicts == 0
    assert delivery.close(1)


def test_partial_batches_only_once_per_interval_under_load(tmp_path):
    """A drain (flush interval, request) sends what is queued at that moment and stops; records that arrive
    while a slow delivery is under way wait for a full batch. Regression: draining "while anything is
    queued" degraded under load into a stream of ~50-record bulk requests (the costliest way to deliver)."""
    delivery, buffer = engine(tmp_path, None, flush_interval=0.2)
    sizes: list[int] = []
    write = delivery.writer.write

    def slow_write(batch: Any) -> None:
        sizes.append(len(batch))
        gevent.sleep(0.01)  # a ~10 ms bulk request: records keep arriving meanwhile
        write(batch)

    delivery.writer.write = slow_write  # type: ignore[method-assign]
    delivery.start()
    started = time.monotonic()
    for seq in range(1, 4001):  # ~4,000 records/s for about a second
        buffer.put(record(seq))
        if seq % 20 == 0:
            gevent.sleep(0.005)
    elapsed = time.monotonic() - started
    assert delivery.close(10)
    assert sum(sizes) == 4000 and buffer.accounting.written == 4000
    partial = [s for s in sizes if s < 100]
    # at most one partial batch per interval, plus the final flush's
    assert len(partial) <= elapsed / 0.2 + 2, sizes
    assert len(sizes) <= 40 + len(partial), sizes


# --------------------------------------------------------------------------------- item-level refusals


def test_refused_items_ride_with_the_next_batch_and_all_land_once(tmp_path):
    """10 % of the items refused with 429 on the first requests while full batches wait: the refused items go
    out again at the front of the next batch, without a backoff sleep, and every record lands exactly once."""
    cluster = FakeCluster()
    refusals = {"left": 60}

    def status(meta: dict[str, Any], doc: dict[str, Any]) -> Status:
        seq = int(meta["_id"].rsplit(":", 1)[1])
        if seq % 10 == 0 and refusals["left"] > 0:
            refusals["left"] -= 1
            return 429, {"type": "es_rejected_execution_exception", "reason": "queue full"}
        return 201, None

    cluster.item_status = status
    delivery, buffer = engine(tmp_path, cluster)
    feed(buffer, 2000)  # queued before the loop starts: full batches are always waiting
    delivery.start()
    assert delivery.flush(5)
    assert_all_indexed_once(delivery, cluster, 2000)
    retries = delivery.status()["retries"]
    assert retries["items_carried"] >= 50 and retries["backoff_sleeps"] == 0, retries


def test_carried_retries_have_a_budget():
    """Refused items ride with the next batch only while a full batch waits, and each item for at most
    max_attempts refusals in all: then the caller gives up on ES (and spools)."""
    acc = Accounting()
    ledger = Ledger(acc)
    buffer = RecordBuffer(1000, 4, lambda: None)
    buffer.accounting = acc
    settings = SinkSettings(batch_size=4, max_attempts=3, encoder="inline")
    encoder = BatchEncoder("local", "pfx-requests", ledger, lambda: buffer.fill_ratio, 0.5, use_helper=False)
    assembler = BatchAssembler(buffer, encoder, ledger, settings, "pfx")
    refused = encoder.encode(flat([record(1), record(2)]), yielding=False).items()
    assert not assembler.carry(refused)  # nothing waiting: the caller retries after a backoff
    for i in range(12):
        buffer.put(record(10 + i))
    assert assembler.carry(refused)
    assert assembler.items_carried == 2
    batch = assembler.next_batch().all_items()
    assert batch[:2] == refused and len(batch) == 4  # carried first, batch size holds
    assert assembler.carry(refused)  # refused a second time: still within the budget of 3 attempts
    assembler.next_batch()
    assert not assembler.carry(refused)  # a third refusal: the budget is spent
    newcomer = encoder.encode(flat([record(99)]), yielding=False).items()
    assert assembler.carry(newcomer)  # other items keep their own budget


def test_items_refused_until_the_budget_is_spent_are_spooled_then_replayed(tmp_path, caplog):
    """Items refused again and again with nothing to ride with: retried with backoff for the retry budget,
    then the cluster counts as down (one line saying why, with the reason) and they are spooled; once the
    cluster takes them again the spool is replayed and deleted. Nothing is dead-lettered."""
    cluster = FakeCluster()
    blocked = {"on": True}
    reason = "index [t-requests] blocked by: [TOO_MANY_REQUESTS/12/index read-only / allow delete (api)];"

    def status(meta: dict[str, Any], doc: dict[str, Any]) -> Status:
        if blocked["on"]:
            return 429, {"type": "cluster_block_exception", "reason": reason}
        return 201, None

    cluster.item_status = status
    delivery, buffer = engine(tmp_path, cluster, retry_timeout=0.1)
    delivery.start()
    with caplog.at_level(logging.INFO, logger="locust_sink"):
        feed(buffer, 150)
        delivery.request_drain()
        gevent.sleep(0.5)
        assert delivery.ledger.requests.spooled == 150  # probes answer meanwhile: the link flips up and down
        blocked["on"] = False
        assert delivery.flush(5)
    assert_all_indexed_once(delivery, cluster, 150)
    lines = outage_lines(caplog, "keeps refusing items")
    assert len(lines) == 1 and "cluster_block_exception" in lines[0] and "read-only" in lines[0], lines
    assert len(outage_lines(caplog, "takes documents again")) == 1
    assert not list((tmp_path / "spool").rglob("*.ndjson")), "replayed segments are deleted"
    assert not (tmp_path / "dead-letter").exists()


def test_one_refusal_condition_is_announced_once_whatever_the_counts(tmp_path, caplog):
    """Records keep arriving while the index is blocked: the live batch is refused as 429x150, then the
    replay of the spool segment (those 150 and the 60 parked meanwhile) as 429x210. It is one condition,
    so one line says why until the cluster takes documents again."""
    cluster = FakeCluster()
    blocked = {"on": True}

    def status(meta: dict[str, Any], doc: dict[str, Any]) -> Status:
        if blocked["on"]:
            return 429, {"type": "cluster_block_exception", "reason": "index [t-requests] blocked"}
        return 201, None

    cluster.item_status = status
    delivery, buffer = engine(
        tmp_path, cluster, retry_timeout=0.1, batch_size=1000, probe_interval_min=0.3, probe_interval_max=0.3
    )
    delivery.start()
    with caplog.at_level(logging.INFO, logger="locust_sink"):
        feed(buffer, 150)
        delivery.request_drain()
        gevent.sleep(0.2)  # refused for the retry budget: spooled, the link is down until the next probe
        feed(buffer, 60)
        delivery.request_drain()
        gevent.sleep(0.8)  # parked into the open segment; the probe closes it and the replay is refused
        assert delivery.ledger.requests.spooled == 210
        blocked["on"] = False
        assert delivery.flush(5)
    assert_all_indexed_once(delivery, cluster, 210)
    refused = outage_lines(caplog, "keeps refusing items")
    assert len(refused) == 1 and "429x150" in refused[0], refused
    assert len(outage_lines(caplog, "takes documents again")) == 1


def test_a_403_block_on_single_items_is_temporary_too(tmp_path):
    """An operator's write block answers 403 cluster_block_exception per item: retried, never dead-lettered."""
    cluster = FakeCluster()
    left = {"n": 3}

    def status(meta: dict[str, Any], doc: dict[str, Any]) -> Status:
        if left["n"] > 0:
            left["n"] -= 1
            return 403, {"type": "cluster_block_exception", "reason": "blocked by: [FORBIDDEN/8/index write (api)];"}
        return 201, None

    cluster.item_status = status
    delivery, buffer = engine(tmp_path, cluster)
    feed(buffer, 50)
    delivery.start()
    assert delivery.flush(5)
    assert_all_indexed_once(delivery, cluster, 50)


def test_mapping_conflict_dead_letters_with_the_reason(tmp_path, caplog):
    cluster = FakeCluster()

    def status(meta: dict[str, Any], doc: dict[str, Any]) -> Status:
        if doc.get("name") == "/bad":
            return 400, {"type": "mapper_parsing_exception", "reason": "failed to parse field [status_code]"}
        return 201, None

    cluster.item_status = status
    delivery, buffer = engine(tmp_path, cluster)
    with caplog.at_level(logging.WARNING, logger="locust_sink"):
        feed(buffer, 30)
        feed(buffer, 5, name="/bad")
        feed(buffer, 30)
        delivery.start()
        assert delivery.flush(5)
    acc = delivery.ledger.requests
    assert (acc.indexed, acc.dead_lettered, acc.spooled, acc.dropped) == (60, 5, 0, 0) and acc.balanced()
    path = tmp_path / "dead-letter" / "r1" / "local.ndjson"
    letters = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert len(letters) == 5 and {d["source"]["name"] for d in letters} == {"/bad"}
    assert letters[0]["status"] == 400 and letters[0]["error"]["type"] == "mapper_parsing_exception"
    assert letters[0]["_id"] == "r1:local:31"
    lines = outage_lines(caplog, "rejected documents for good")
    assert len(lines) == 1 and "failed to parse field" in lines[0]


def test_a_413_halves_the_request_until_it_fits(tmp_path):
    cluster = FakeCluster()
    cluster.too_large_over = 30
    delivery, buffer = engine(tmp_path, cluster)
    feed(buffer, 100)
    delivery.start()
    assert delivery.flush(5)
    assert_all_indexed_once(delivery, cluster, 100)
    assert cluster.sizes[:3] == [100, 50, 25] and max(s for s in cluster.sizes if s <= 30) == 25


# ------------------------------------------------------------------------------------- whole outages


def test_unreachable_at_start_then_back_spools_and_replays_by_itself(tmp_path, caplog):
    """The cluster refuses connections for the first calls: batches go to the spool (one warning), the link is
    probed with growing intervals, and once it answers the spool is replayed between live batches and
    deleted (one recovery line). Every record lands once."""
    cluster = FakeCluster()
    cluster.unreachable = 6
    delivery, buffer = engine(tmp_path, cluster)
    with caplog.at_level(logging.INFO, logger="locust_sink"):
        delivery.start()
        feed(buffer, 500, pause_every=50)
        gevent.sleep(0.3)
        assert delivery.state == "up"
        assert delivery.flush(5)
    assert_all_indexed_once(delivery, cluster, 500)
    assert len(outage_lines(caplog, "Elasticsearch unreachable")) == 1
    recovered = outage_lines(caplog, "takes documents again")
    assert len(recovered) == 1 and "the fake cluster" in recovered[0]
    assert not list((tmp_path / "spool").rglob("*.ndjson*"))


def test_overloaded_past_the_retry_budget_goes_down_then_recovers(tmp_path, caplog):
    """503s for longer than the retry budget: retried with backoff, then down and spooled; later delivered."""
    cluster = FakeCluster()
    cluster.request_errors = [SinkTransportError(ErrorKind.OVERLOADED, "Elasticsearch answered 503", 503)] * 40
    delivery, buffer = engine(tmp_path, cluster, retry_timeout=0.05)
    with caplog.at_level(logging.INFO, logger="locust_sink"):
        delivery.start()
        feed(buffer, 300, pause_every=100)
        assert delivery.flush(5)
    assert_all_indexed_once(delivery, cluster, 300)
    assert delivery.status()["retries"]["backoff_sleeps"] > 0
    assert len(outage_lines(caplog, "answered 503")) == 1


def test_a_configuration_problem_is_broken_spools_everything_and_says_so_once(tmp_path, caplog):
    cluster = FakeCluster()
    cluster.check_error = SinkTransportError(
        ErrorKind.AUTH, "Elasticsearch authentication failed (401): check --es-username/--es-password", 401
    )
    delivery, buffer = engine(tmp_path, cluster)
    with caplog.at_level(logging.WARNING, logger="locust_sink"):
        delivery.start()
        feed(buffer, 250, pause_every=50)
        assert delivery.close(2)
    acc = delivery.ledger.requests
    assert (acc.spooled, acc.indexed) == (250, 0) and acc.balanced()
    assert delivery.writer.link.state is LinkState.BROKEN  # type: ignore[attr-defined]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "authentication failed" in r.getMessage()]
    assert len(errors) == 1 and cluster.sizes == []
    items = [item for path in (tmp_path / "spool").rglob("*.ndjson") for item in read_items(path)]
    assert len([i for i in items if i.is_request]) == 250


def test_killed_mid_request_the_batch_is_spooled_not_lost(tmp_path):
    """The final deadline passes while a bulk request hangs: the loop is killed, the batch in flight and
    everything still queued go to the spool, synchronously; nothing is left in memory."""
    cluster = FakeCluster()
    delivery, buffer = engine(tmp_path, cluster)
    delivery.start()
    feed(buffer, 20)
    gevent.sleep(0.1)  # connected, idle
    cluster.hang = True
    feed(buffer, 230)
    started = time.monotonic()
    assert delivery.close(0.3)  # True: nothing left in memory (all of it spooled)
    assert time.monotonic() - started < 2
    acc = delivery.ledger.requests
    assert acc.indexed + acc.spooled == 250 and acc.balanced() and acc.queued == acc.in_flight == 0
    spooled = [i for path in (tmp_path / "spool").rglob("*.ndjson") for i in read_items(path) if i.is_request]
    ids = [i.doc_id for i in spooled]
    assert len(ids) == len(set(ids)) == acc.spooled > 0


# ------------------------------------------------------------------------------------------ file mode


def test_file_mode_counts_records_it_cannot_write_as_dropped(tmp_path):
    """File mode on a sink dir that cannot hold files: the batch's records (encoded lines and bulk items
    alike) are counted as dropped, the problem is noted once, nothing is left in flight."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the sink dir should be")
    delivery, buffer = engine(blocker, None, batch_size=10)
    for i in range(1, 8):
        buffer.put(record(i))
    delivery.submit_document("events", {"run_id": "r1", "kind": "x"}, "r1")
    batch = delivery.assembler.next_batch()
    assert len(batch.items) == 1 and len(batch.records) == 7
    delivery.writer.write(batch)
    acc = buffer.accounting
    assert (acc.dropped, acc.written, acc.in_flight, acc.queued) == (7, 0, 0, 0) and acc.balanced()
    assert delivery.ledger.documents.dropped == 1 and delivery.ledger.documents.balanced()
    assert any("cannot write" in line for line in delivery.trouble.messages)


def test_file_mode_writes_encoded_lines_of_one_or_several_runs(tmp_path):
    """Records of one run go to its file as encoded lines; a batch that spans two runs (a new test from the
    web UI while records of the old one were queued) is split by run. Every record is in its run's file."""
    delivery, buffer = engine(tmp_path, None, batch_size=10)
    for i in range(1, 6):
        buffer.put(record(i, run_id="run-a"))
    delivery.writer.write(delivery.assembler.next_batch())
    for i in range(6, 10):
        buffer.put(record(i, run_id="run-a" if i < 8 else "run-b"))
    delivery.writer.write(delivery.assembler.next_batch())
    delivery.writer.close()
    acc = buffer.accounting
    assert acc.written == 9 and acc.balanced()
    seqs = {
        run: [int(item.doc_id.rsplit(":", 1)[1]) for item in read_items(tmp_path / run / "local.ndjson")]
        for run in ("run-a", "run-b")
    }
    assert seqs == {"run-a": [1, 2, 3, 4, 5, 6, 7], "run-b": [8, 9]}


def test_bulk_item_ids_survive_a_round_trip_through_the_spool(tmp_path):
    """Spooled items are read back with their action lines, so the replay creates the same `_id`s."""
    cluster = FakeCluster()
    cluster.unreachable = 10**6
    delivery, buffer = engine(tmp_path, cluster)
    feed(buffer, 10)
    delivery.start()
    assert delivery.close(1)
    items: list[BulkItem] = [i for p in (tmp_path / "spool").rglob("*.ndjson") for i in read_items(p)]
    assert sorted(i.doc_id for i in items) == sorted(f"r1:local:{s}" for s in range(1, 11))
