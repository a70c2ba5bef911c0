"""Pure logic: record shapes, buffer bounds and accounting, options, redaction. No server needed."""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import subprocess
import sys
import time

import orjson
import pytest

from locust_sink.buffer import RecordBuffer
from locust_sink.options import SinkOptions, option_values, parse_tags, str2bool
from locust_sink.records import RequestRecord, dumps, iso_timestamp, request_document
from locust_sink.transport import EsConfig, redact, redact_url, split_urls


class Wake:
    def __init__(self) -> None:
        self.count = 0

    def set(self) -> None:
        self.count += 1


def record(seq: int = 1, **kw) -> RequestRecord:
    base = dict(
        seq=seq,
        start_time=1700000000.123456,
        request_type="GET",
        name="/x",
        response_time=12.5,
        response_length=10,
        status_code=200,
        exception=None,
        context=None,
        url="http://h/x",
        run_id="r1",
        sample_rate=1.0,
    )
    base.update(kw)
    return RequestRecord(**base)


def flat(records) -> list:
    """Records as the buffer hands them to the flusher: their fields in one flat list."""
    return [field for rec in records for field in rec]


def test_iso_timestamp_is_utc_with_milliseconds():
    for epoch in (1700000000.123456, 1700000000.999, 0.0, 1700000001.0005):
        text = iso_timestamp(epoch)
        parsed = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
        assert abs(parsed.timestamp() - epoch) < 0.001, (epoch, text)
    assert iso_timestamp(1700000000.123456) == "2023-11-14T22:13:20.123Z"


def test_request_document_shape_success_and_failure():
    ok = request_document(record(), "local")
    assert ok == {
        "@timestamp": "2023-11-14T22:13:20.123Z",
        "run_id": "r1",
        "node": "local",
        "request_type": "GET",
        "name": "/x",
        "url": "http://h/x",
        "response_time": 12.5,
        "response_length": 10,
        "success": True,
        "status_code": 200,
    }
    failed = request_document(record(exception="HTTPError('500')", status_code=500, context={"a": 1}), "w1")
    assert failed["success"] is False and failed["exception"] == "HTTPError('500')"
    assert failed["context"] == {"a": 1} and failed["node"] == "w1"
    no_response = request_document(record(status_code=None), "local")
    assert "status_code" not in no_response
    sampled = request_document(record(sample_rate=0.25), "local")
    assert sampled["sample_rate"] == 0.25


def test_values_json_cannot_carry_become_strings():
    class Custom:
        def __str__(self) -> str:
            return "custom!"

    doc = {
        "context": {
            "b": b"\xffbytes",
            "e": ValueError("boom"),
            "c": Custom(),
            "s": {2, 1},
            5: "int key",
            "big": 2**70,
            "nested": {"t": (1, Custom())},
        }
    }
    out = orjson.loads(dumps(doc))
    ctx = out["context"]
    assert ctx["b"].endswith("bytes") and ctx["e"] == "boom" and ctx["c"] == "custom!"
    assert ctx["s"] == ["1", "2"] and ctx["5"] == "int key"
    assert ctx["big"] == str(2**70) and ctx["nested"]["t"] == [1, "custom!"]


def test_buffer_is_bounded_and_accounts_every_record():
    wake = Wake()
    buf = RecordBuffer(maxsize=5, batch_size=3, wake=wake)
    results = [buf.put(record(i)) for i in range(8)]
    assert results == [True] * 5 + [False] * 3
    acc = buf.accounting
    assert len(buf) == 5 and acc.emitted == 8 and acc.queued == 5 and acc.dropped == 3 and acc.overflowed == 3
    assert wake.count == 1  # woken once, when a full batch was waiting
    batch = buf.take(3)
    assert batch == [record(0), record(1), record(2)] and acc.in_flight == 3 and acc.queued == 2
    assert buf.take(1) == [record(3)] and len(buf) == 1  # a partial take from the chunk being filled
    assert buf.put(record(8)) and buf.put(record(9)) and buf.put(record(10))
    assert buf.take(10) == [record(i) for i in (4, 8, 9, 10)] and len(buf) == 0 and buf.take(5) == []
    acc.in_flight -= 5
    acc.indexed += 5
    assert acc.balanced()
    acc.in_flight -= 3
    acc.indexed += 3
    assert acc.balanced() and "indexed=8" in acc.summary()


def test_options_defaults_tags_and_validation():
    opts = SinkOptions.from_values(option_values(None))
    assert opts.es is None and opts.index_prefix == "locust" and opts.sink_dir == "locust-results"
    assert opts.settings.batch_size == 1000 and opts.sample_rate == 1.0
    opts = SinkOptions.from_values(
        option_values(None, {"es_url": "http://a:9200,http://b:9200", "run_tag": ["x=1", "y=2"]})
    )
    assert opts.es is not None and opts.es.urls == ["http://a:9200", "http://b:9200"]
    assert opts.tags == {"x": "1", "y": "2"}
    assert parse_tags("a=1,b=2") == {"a": "1", "b": "2"}
    with pytest.raises(ValueError):
        parse_tags(["novalue"])
    with pytest.raises(TypeError):
        option_values(None, {"not_an_option": 1})
    assert str2bool("false") is False and str2bool("ON") is True
    with pytest.raises(argparse.ArgumentTypeError):
        SinkOptions.from_values(option_values(None, {"sink_sample_rate": 0}))
    with pytest.raises(ValueError, match="not an http"):
        SinkOptions.from_values(option_values(None, {"es_url": "http://a:9200,notaurl"}))


def test_secrets_are_redacted():
    assert redact_url("http://user:pw@host:9200/x") == "http://host:9200/x"
    assert redact("failed http://u:secret@h:1 with key K3Y", ["K3Y"]) == "failed http://***@h:1 with key ***"
    cfg = EsConfig(urls=split_urls(["http://u:urlpw@h:9200"]), password="pw1", api_key="key1")
    assert set(cfg.secrets()) == {"pw1", "key1", "urlpw"}
    assert "urlpw" not in cfg.describe()


def test_locust_parser_gets_options_once_and_hides_secrets():
    import locust.argument_parser as ap

    from locust_sink.options import add_arguments

    parser = ap.get_empty_argument_parser()
    ap.setup_parser_arguments(parser)
    add_arguments(parser)
    add_arguments(parser)  # web-UI page loads fire the hook again: must not raise
    opts = parser.parse_args(
        ["--es-url", "http://127.0.0.1:9200", "--run-tag", "a=1", "--run-tag", "b=2", "--es-verify-certs", "false"]
    )
    assert opts.es_url == "http://127.0.0.1:9200" and opts.run_tag == ["a=1", "b=2"]
    assert opts.es_verify_certs is False
    web = parser.args_included_in_web_ui
    assert "es_url" in web and "es_password" not in web and "es_api_key" not in web


def test_cli_import_path_does_not_import_locust():
    code = "import sys, locust_sink.cli; print('locust' in sys.modules, 'gevent.monkey' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_every_option_has_its_locust_env_var(monkeypatch):
    import locust.argument_parser as ap

    from locust_sink.options import DEFAULTS, add_arguments

    monkeypatch.setenv("LOCUST_ES_URL", "http://127.0.0.1:9200")
    monkeypatch.setenv("LOCUST_ES_PASSWORD", "from-env")
    monkeypatch.setenv("LOCUST_RUN_TAG", "team=perf")
    monkeypatch.setenv("LOCUST_SINK_FLUSH_TIMEOUT", "3")
    parser = ap.get_empty_argument_parser()
    ap.setup_parser_arguments(parser)
    add_arguments(parser)
    opts = parser.parse_args([])
    assert opts.es_url == "http://127.0.0.1:9200" and opts.es_password == "from-env"
    assert opts.run_tag == ["team=perf"] and opts.sink_flush_timeout == 3.0
    env_names = {a.dest: getattr(a, "env_var", None) for a in parser._actions}
    for dest in DEFAULTS:
        assert env_names[dest] == "LOCUST_" + dest.upper(), dest


ODD_RECORDS = [
    record(1),
    record(2, exception="HTTPError('500')", status_code=500, context={"user": 3, 4: b"\xff", "s": {"b", "a"}}),
    record(3, status_code=None, url=None, run_id='we"ird\\id', sample_rate=0.25),
    record(4, start_time=1700000000.9999, name="/ü/\n", response_time=float("nan")),
    record(5, request_type=7, name=None, response_length=2**70, context={"n": (1, 2.5, None)}),
]


def check_encoded(items, records) -> None:
    """Items must be exactly document_id / action_line / dumps of request_document of each record."""
    from locust_sink.records import document_id
    from locust_sink.transport import action_line, encode_body

    assert len(items) == len(records)
    for item, rec in zip(items, records, strict=True):
        doc_id = document_id(rec.run_id, "w-1", rec.seq)
        assert (item.op, item.index, item.document_id(), item.run_id, item.is_request) == (
            "create",
            "pfx-requests",
            doc_id,
            rec.run_id,
            True,
        )
        assert item.source == dumps(request_document(rec, "w-1"))
        assert item.action_line() == action_line("create", "pfx-requests", doc_id)
        assert orjson.loads(item.action_line()) == {"create": {"_index": "pfx-requests", "_id": doc_id}}
    body = encode_body(items).split(b"\n")
    assert body[-1] == b"" and len(body) == 2 * len(records) + 1


def test_flusher_encoding_equals_the_reference_shapes(tmp_path):
    """The flusher's in-process encoding produces exactly the reference shapes, for plain records and for the
    odd ones (failures, context with bytes / non-str keys / sets, sampling, no response, NaN, huge ints)."""
    from gevent.event import Event

    from locust_sink.flusher import Flusher, SinkSettings

    wake = Event()
    flusher = Flusher(RecordBuffer(10, 10, wake), wake, "w-1", "pfx", tmp_path, SinkSettings(encoder="inline"))
    items = flusher._encode(flat(ODD_RECORDS), yielding=False).items()
    check_encoded(items, ODD_RECORDS)
    assert orjson.loads(items[1].source)["context"] == {"user": 3, "4": "\ufffd", "s": ["a", "b"]}
    assert orjson.loads(items[3].source)["response_time"] is None


def test_encoder_process_gives_the_same_bytes_and_falls_back_per_batch(tmp_path):
    """The helper process encodes a batch to exactly the in-process bytes; a batch it cannot take (a custom
    object in a context: marshal refuses it) is encoded in-process, and the helper stays in use."""
    from gevent.event import Event

    from locust_sink.flusher import HELPER_MIN_RECORDS, Flusher, SinkSettings

    wake = Event()
    flusher = Flusher(RecordBuffer(10, 10, wake), wake, "w-1", "pfx", tmp_path, SinkSettings())
    helper = flusher.encoder_process
    assert helper is not None
    try:
        records = [r._replace(seq=i * 10 + r.seq) for i in range(HELPER_MIN_RECORDS) for r in ODD_RECORDS]
        items = flusher._encode(flat(records)).items()
        check_encoded(items, records)
        assert helper.batches == 1 and helper.fallbacks == 0 and helper.pid is not None

        class Custom:
            def __str__(self) -> str:
                return "custom!"

        odd = records[:-1] + [record(999, context={"obj": Custom()})]
        items = flusher._encode(flat(odd)).items()
        check_encoded(items, odd)
        assert orjson.loads(items[-1].source)["context"] == {"obj": "custom!"}
        assert helper.batches == 1 and helper.fallbacks == 1 and not helper.broken
        check_encoded(flusher._encode(flat(records)).items(), records)
        assert helper.batches == 2
    finally:
        flusher.close(timeout=1)
    assert helper.pid is None


def test_encoder_process_that_dies_is_replaced_by_in_process_encoding(tmp_path, caplog):
    """A helper that is killed (or crashes) costs nothing but one warning: the batch and every later one are
    encoded in Locust's process, nothing is lost, nothing is encoded twice."""
    import os
    import signal

    from gevent.event import Event

    from locust_sink.flusher import HELPER_MIN_RECORDS, Flusher, SinkSettings

    wake = Event()
    flusher = Flusher(RecordBuffer(10, 10, wake), wake, "w-1", "pfx", tmp_path, SinkSettings())
    helper = flusher.encoder_process
    # two runs in each batch: the helper answers with the bytes (a batch of one run it writes to the file)
    records = [record(i, run_id=f"r{i % 2}") for i in range(HELPER_MIN_RECORDS)]
    try:
        check_encoded(flusher._encode(flat(records)).items(), records)
        pid = helper.pid
        os.kill(pid, signal.SIGKILL)
        with caplog.at_level("WARNING", logger="locust_sink"):
            for _ in range(3):
                check_encoded(flusher._encode(flat(records)).items(), records)
        warnings = [r.getMessage() for r in caplog.records if "encoder helper" in r.getMessage()]
        assert len(warnings) == 1, warnings
        assert "exited" in warnings[0] or "Broken pipe" in warnings[0], warnings
        assert helper.broken and helper.batches == 1 and helper.fallbacks == 3 and helper.pid is None
    finally:
        flusher.close(timeout=1)


def _file_mode_flusher(tmp_path):
    from gevent.event import Event

    from locust_sink.flusher import Flusher, SinkSettings

    wake = Event()
    return Flusher(RecordBuffer(10, 10, wake), wake, "w-1", "pfx", tmp_path, SinkSettings())


def _in_process_body(flusher, records) -> bytes:
    from locust_sink.records import RequestEncoder

    lines: list[bytes] = []
    flusher.encoder.encode(flat(records), 0, len(records), lines)
    return RequestEncoder.body(lines)


def test_encoder_process_appends_file_mode_batches_itself(tmp_path):
    """File mode: the helper writes a batch of one run to that run's file, byte for byte what Locust's process
    would have written, and Locust's process writes its other documents to the same file in between. A batch
    of two runs comes back as bytes; a file the helper cannot write means that batch (and every later one)
    is encoded in Locust's process, and the file is as it was."""
    from locust_sink.flusher import HELPER_MIN_RECORDS

    flusher = _file_mode_flusher(tmp_path)
    helper = flusher.encoder_process
    records = [record(i) for i in range(HELPER_MIN_RECORDS)]
    path = tmp_path / "r1" / "w-1.ndjson"
    try:
        encoded = flusher._encode(flat(records))
        assert encoded.written and len(encoded) == len(records) and encoded.ndjson == b""
        assert path.read_bytes() == _in_process_body(flusher, records)
        other = b'{"create":{}}\n{"other":1}\n'  # e.g. a stats snapshot
        flusher.file_writer.write_body("r1", other)
        more = [record(i + 1000) for i in range(HELPER_MIN_RECORDS)]
        assert flusher._encode(flat(more)).written
        expected = _in_process_body(flusher, records) + other + _in_process_body(flusher, more)
        assert path.read_bytes() == expected
        assert helper.batches == 2 and helper.file_batches == 2 and helper.fallbacks == 0

        mixed = [record(i, run_id=f"r{i % 2}") for i in range(HELPER_MIN_RECORDS)]
        encoded = flusher._encode(flat(mixed))
        assert not encoded.written and encoded.ndjson == _in_process_body(flusher, mixed)
        assert helper.batches == 3 and helper.file_batches == 2

        blocked = tmp_path / "r2" / "w-1.ndjson"
        blocked.mkdir(parents=True)  # a folder where the file should be: the helper's open() fails
        doomed = [record(i, run_id="r2") for i in range(HELPER_MIN_RECORDS)]
        encoded = flusher._encode(flat(doomed))
        assert not encoded.written and encoded.ndjson == _in_process_body(flusher, doomed)
        assert helper.fallbacks == 1 and "IsADirectoryError" in helper.broken
        assert path.read_bytes() == expected  # the other run's file is untouched
    finally:
        flusher.close(timeout=1)


def test_killed_file_exchange_writes_each_record_once(tmp_path):
    """The flusher killed while the helper has a batch to write (final deadline, second Ctrl-C): the file's
    size says whether the helper wrote it. Here the helper is stopped (SIGSTOP), so it did not: the records are
    left to the caller and the file is as it was. Then each outcome of `_after_interrupted_file_exchange`:
    written (settled, nothing left to write), not written, torn (cut back)."""
    import os
    import signal

    import gevent

    from locust_sink.flusher import HELPER_MIN_RECORDS

    flusher = _file_mode_flusher(tmp_path)
    helper = flusher.encoder_process
    records = [record(i) for i in range(HELPER_MIN_RECORDS)]
    path = tmp_path / "r1" / "w-1.ndjson"
    try:
        assert flusher._encode(flat(records)).written  # starts the helper
        before = path.read_bytes()
        os.kill(helper.pid, signal.SIGSTOP)
        batch = flat([record(i + 100) for i in range(HELPER_MIN_RECORDS)])
        job = gevent.spawn(flusher._encode, batch)
        gevent.sleep(0.5)
        job.kill(block=True, timeout=10)  # EncoderProcess gives up and kills the stopped helper
        assert job.dead and helper.broken and helper.pid is None
        assert path.read_bytes() == before and len(batch) == HELPER_MIN_RECORDS * 12  # left to the caller

        acc = flusher.accounting
        body = _in_process_body(flusher, records)
        for grown, expect_cleared, expect_size in ((body, True, 2 * len(body)), (b"", False, len(body)),
                                                    (body[:100], False, len(body))):  # fmt: skip
            path.write_bytes(body + grown)
            acc.in_flight, acc.written = len(records), 0
            batch = flat(records)
            flusher._after_interrupted_file_exchange(batch, path, len(body))
            assert (batch == []) is expect_cleared
            assert path.stat().st_size == expect_size
            assert (acc.written, acc.in_flight) == ((len(records), 0) if expect_cleared else (0, len(records)))
    finally:
        flusher.close(timeout=1)


def test_serializer_skips_item_parsing_only_for_error_free_bulk_responses():
    from locust_sink.transport import SinkSerializer

    ser = SinkSerializer()
    ok = b'{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":409}}]}'
    assert ser.loads(ok) == {"errors": False}
    failed = b'{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":400,"error":{"type":"x"}}}]}'
    assert ser.loads(failed)["items"][1]["create"]["error"] == {"type": "x"}
    other = b'{"cluster_name":"c","errors":false}'
    assert ser.loads(other) == {"cluster_name": "c", "errors": False}
    assert ser.loads(b"") is None


def test_partial_batches_only_once_per_interval_under_load(tmp_path):
    """A drain (flush interval, wake) sends what is queued at that moment and stops; records that arrive
    while a slow delivery is under way wait for a full batch. Regression: draining "while anything is
    queued" degraded under load into a stream of ~50-record bulk requests (the costliest way to deliver)."""
    import gevent
    from gevent.event import Event

    from locust_sink.flusher import Flusher, SinkSettings

    sizes: list[int] = []

    class SlowDelivery(Flusher):
        def _write_file(self, items, encoded):  # type: ignore[no-untyped-def]
            sizes.append(len(items) + len(encoded))
            gevent.sleep(0.01)  # a ~10 ms bulk request: records keep arriving meanwhile
            super()._write_file(items, encoded)

    wake = Event()
    buffer = RecordBuffer(100_000, 100, wake)
    settings = SinkSettings(batch_size=100, flush_interval=0.2)
    flusher = SlowDelivery(buffer, wake, "local", "pfx", tmp_path, settings)
    flusher.start()
    started = time.monotonic()
    for seq in range(1, 4001):  # ~4,000 records/s for about a second
        buffer.put(record(seq))
        if seq % 20 == 0:
            gevent.sleep(0.005)
    elapsed = time.monotonic() - started
    assert flusher.close(timeout=10)
    assert sum(sizes) == 4000 and buffer.accounting.written == 4000
    partial = [s for s in sizes if s < 100]
    # at most one partial batch per interval, plus the final flush's
    assert len(partial) <= elapsed / settings.flush_interval + 2, sizes
    assert len(sizes) <= 40 + len(partial), sizes


def test_buffer_wakes_the_flusher_whenever_a_full_batch_waits():
    """Regression: the flusher may take only part of a batch (room for stats documents); the next time a full
    batch is queued it must be woken again, or it sleeps a whole flush interval while the queue overflows."""
    wake = Wake()
    buf = RecordBuffer(maxsize=100, batch_size=3, wake=wake)
    for i in range(3):
        buf.put(record(i))
    assert wake.count == 1
    assert buf.take(2) == [record(0), record(1)]  # part of the queued batch
    for i in range(3, 5):
        buf.put(record(i))
    assert len(buf) == 3 and wake.count == 2
    assert buf.take(3) == [record(2), record(3), record(4)]


def test_carried_retries_have_a_budget(tmp_path):
    """Refused items ride with the next batch only while a full batch waits, and each item for at most
    max_attempts refusals in all: then the caller gives up on ES (and spools)."""
    from gevent.event import Event

    from locust_sink.flusher import Flusher, SinkSettings

    wake = Event()
    buffer = RecordBuffer(1000, 4, wake)
    flusher = Flusher(buffer, wake, "local", "pfx", tmp_path, SinkSettings(batch_size=4, max_attempts=3))
    refused = flusher._encode(flat([record(1), record(2)]), yielding=False).items()
    assert not flusher._carry_along(refused)  # nothing waiting: the caller retries after a backoff
    for i in range(12):
        buffer.put(record(10 + i))
    assert flusher._carry_along(refused)
    assert flusher.items_carried == 2 and flusher._carry == refused
    items, encoded = flusher._next_batch()
    batch = items + encoded.items()
    assert batch[:2] == refused and len(batch) == 4 and not flusher._carry  # carried first, batch size holds
    assert flusher._carry_along(refused)  # refused a second time: still within the budget of 3 attempts
    flusher._next_batch()
    assert not flusher._carry_along(refused)  # a third refusal: the budget is spent
    newcomer = flusher._encode(flat([record(99)]), yielding=False).items()
    assert flusher._carry_along(newcomer)  # other items keep their own budget


def test_error_text_is_locusts_parse_error_cached_only_when_safe():
    """The hot path's cached error text equals StatsError.parse_error for Locust's, the HTTP clients' and
    builtin exceptions (first call and cached), and is not cached for objects that are not plain values."""
    import requests
    from locust.contrib.fasthttp import LocustBadStatusCode
    from locust.exception import CatchResponseError
    from locust.stats import StatsError

    from locust_sink import plugin

    class Mine(Exception):
        calls = 0

        def __repr__(self) -> str:
            Mine.calls += 1
            return f"Mine#{Mine.calls}"

    response = requests.Response()
    response.status_code = 500
    from geventhttpclient.url import URL

    errors = [
        LocustBadStatusCode(URL("http://h/x"), code=404),  # what FastHttpUser raises for a 404
        LocustBadStatusCode(URL("http://h/x"), code=500),
        LocustBadStatusCode("http://h/x", code=404),
        LocustBadStatusCode("http://h/y", code=500),
        CatchResponseError("404 Client Error: Not Found for url: /missing"),
        ConnectionRefusedError(111, "Connection refused"),
        requests.HTTPError("500 Server Error", response=response),
        ValueError(object()),
        "already a string",
    ]
    plugin._error_texts.clear()
    for _ in range(2):
        for error in errors:
            assert plugin.error_text(error) == StatsError.parse_error(error), error
    assert plugin.error_text(Mine()) == "Mine#1" and plugin.error_text(Mine()) == "Mine#2"  # not cached
    cached_types = {key[0] for key in plugin._error_texts}
    assert cached_types == {LocustBadStatusCode, CatchResponseError, ConnectionRefusedError}
    assert len(plugin._error_texts) == 6


def test_on_request_fills_the_buffer_like_put():
    """LocustSink.on_request inlines RecordBuffer.put: both must leave the same fields, counts and wake-ups,
    including overflow once the queue is full."""
    from locust.env import Environment

    import locust_sink

    env = Environment()
    sink = locust_sink.attach(env, sink_dir="unused", run_id="r1", sink_batch_size=2, sink_queue_size=3)
    wake = Wake()
    sink.buffer._wake = wake
    reference = RecordBuffer(maxsize=3, batch_size=2, wake=Wake())
    for i in range(1, 5):
        sink.on_request("GET", "/x", 12.5, 10, response=None, context={}, exception=None, start_time=1.0 + i, url="u")
        reference.put(record(i, start_time=1.0 + i, status_code=None, url="u"))
    assert sink.buffer.accounting.as_dict() == reference.accounting.as_dict()
    assert sink.buffer.accounting.overflowed == reference.accounting.overflowed == 1
    assert wake.count == reference._wake.count == 1
    assert (
        sink.buffer.take(10)
        == reference.take(10)
        == [record(i, start_time=1.0 + i, status_code=None, url="u") for i in (1, 2, 3)]
    )


def test_bulk_bodies_reach_the_wire_without_copies():
    """The client's NDJSON serializer would copy each ~300 kB bulk body twice; ours hands an encoded body
    (bytes ending in a newline) through as the same object, and still serializes anything else."""
    from locust_sink.transport import BulkBodySerializer, EsConfig, SinkSerializer, make_client

    es = make_client(EsConfig(urls=["http://127.0.0.1:9"]))
    collection = es.transport.serializers
    ndjson = collection.get_serializer("application/x-ndjson")
    assert isinstance(ndjson, BulkBodySerializer)
    assert isinstance(collection.get_serializer("application/json"), SinkSerializer)
    body = b'{"create":{"_index":"i","_id":"1"}}\n{"a":1}\n'
    assert ndjson.dumps(body) is body
    assert ndjson.dumps([{"create": {}}, {"a": 1}]) == b'{"create":{}}\n{"a":1}\n'
    assert ndjson.dumps(b'{"a":1}') == b'{"a":1}\n'


def test_file_mode_counts_records_it_cannot_write_as_dropped(tmp_path):
    """File mode on a sink dir that cannot hold files: the batch's records (encoded lines and bulk items
    alike) are counted as dropped, the problem is noted once, nothing is left in flight."""
    from gevent.event import Event

    from locust_sink.flusher import Flusher, SinkSettings

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the sink dir should be")
    wake = Event()
    buffer = RecordBuffer(100, 10, wake)
    flusher = Flusher(buffer, wake, "local", "pfx", blocker, SinkSettings(batch_size=10, encoder="inline"))
    for i in range(1, 8):
        buffer.put(record(i))
    flusher.submit_document("events", {"run_id": "r1", "kind": "x"}, "r1")
    items, encoded = flusher._next_batch()
    assert len(items) == 1 and len(encoded) == 7
    flusher._write_file(items, encoded)
    acc = buffer.accounting
    assert (acc.dropped, acc.written, acc.in_flight, acc.queued) == (7, 0, 0, 0) and acc.balanced()
    assert flusher.doc_accounting.dropped == 1 and flusher.doc_accounting.balanced()
    assert any("cannot write" in line for line in flusher.trouble)


def test_file_mode_writes_encoded_lines_of_one_or_several_runs(tmp_path):
    """Records of one run go to its file as encoded lines; a batch that spans two runs (a new test from the
    web UI while records of the old one were queued) is split by run. Every record is in its run's file."""
    from gevent.event import Event

    from locust_sink.filesink import read_items
    from locust_sink.flusher import Flusher, SinkSettings

    wake = Event()
    buffer = RecordBuffer(100, 10, wake)
    flusher = Flusher(buffer, wake, "local", "pfx", tmp_path, SinkSettings(batch_size=10, encoder="inline"))
    for i in range(1, 6):
        buffer.put(record(i, run_id="run-a"))
    flusher._write_file(*flusher._next_batch())
    for i in range(6, 10):
        buffer.put(record(i, run_id="run-a" if i < 8 else "run-b"))
    flusher._write_file(*flusher._next_batch())
    flusher.file_writer.close()
    acc = buffer.accounting
    assert acc.written == 9 and acc.balanced()
    seqs = {
        run: [int(item.doc_id.rsplit(":", 1)[1]) for item in read_items(tmp_path / run / "local.ndjson")]
        for run in ("run-a", "run-b")
    }
    assert seqs == {"run-a": [1, 2, 3, 4, 5, 6, 7], "run-b": [8, 9]}


def test_final_flush_encodes_in_process(tmp_path):
    """Once the flusher is closing (the final flush, maybe from an atexit hook during interpreter shutdown) it
    neither starts nor uses the helper process: encoding there costs the finished load test nothing, and a child
    process started during shutdown could hang until the flush deadline (seen in CI: 64 records spooled)."""
    from gevent.event import Event

    from locust_sink.flusher import HELPER_MIN_RECORDS, Flusher, SinkSettings

    wake = Event()
    flusher = Flusher(RecordBuffer(10, 10, wake), wake, "w-1", "pfx", tmp_path, SinkSettings())
    records = [record(i) for i in range(1, HELPER_MIN_RECORDS * 2)]
    flusher._closing = True
    try:
        check_encoded(flusher._encode(flat(records)).items(), records)
        assert flusher.encoder_process.batches == 0 and flusher.encoder_process.pid is None
    finally:
        flusher.close(timeout=1)


def test_toggle_bench_compares_adjacent_windows_only():
    """bench/toggle.py's arithmetic: each adjacent pair (0-1, 2-3, ...) with one on and one off window gives
    one on/off ratio; windows without requests are skipped; the bootstrap interval is seeded and brackets
    the median."""
    import importlib.util
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "bench"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location("bench_toggle", bench / "toggle.py")
        toggle = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(toggle)
    finally:
        sys.path.remove(str(bench))

    def window(index: int, on: bool, rate: float, cpu_us: float = 200) -> dict:
        n = int(rate * 2)
        t0 = 3.0 * index
        return {
            "index": index,
            "on": on,
            "t0": t0,
            "t1": t0 + 2,
            "cpu0": 0.0,
            "cpu1": n * cpu_us / 1e6,
            "n0": 0,
            "n1": n,
        }

    # ABBA with a drift: the machine gets slower every window, the sink costs 2 %
    pattern = [True, False, False, True] * 2
    windows = [window(i, on, 5000 * (1 - 0.01 * i) * (0.98 if on else 1.0)) for i, on in enumerate(pattern)]
    summary = toggle.summarize_windows(windows)
    ratios = toggle.pair_ratios(toggle.window_rates(windows))
    assert len(ratios) == summary["pairs"] == 4
    # each pair's windows are one step of drift apart: 0.98 * (1 -/+ 0.01 ...) around 0.98, never the drift itself
    assert all(0.96 < r < 1.0 for r in ratios)
    assert summary["ratio_median"] == pytest.approx(0.98, abs=0.002)
    low, high = summary["ratio_ci95"]
    assert low <= summary["ratio_median"] <= high
    assert toggle.bootstrap_median(ratios) == (low, high)  # seeded
    assert summary["cpu_us_on"] == pytest.approx(200, rel=0.01)

    # a pair of two off windows gives no ratio; a window without requests is skipped and its partner with it,
    # and the pairs after it stay aligned
    odd = [window(0, False, 4000), window(1, False, 4000), {**window(2, True, 3900), "n1": 0}, window(3, False, 4000)]
    odd += [window(4, True, 3920), window(5, False, 4000)]
    assert toggle.pair_ratios(toggle.window_rates(odd)) == [pytest.approx(3920 / 4000, rel=1e-3)]
    assert toggle.summarize_windows(odd)["windows_off"] == 4


CTRL_C_SCRIPT = r"""
import os, signal, sys, time
import gevent
from locust_sink.plugin import route_ctrl_c_to_main_greenlet

assert route_ctrl_c_to_main_greenlet() and route_ctrl_c_to_main_greenlet()  # idempotent
caught = []

def worker(kills, yield_between):
    try:
        for _ in range(kills):
            os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler here, in this greenlet
            for _ in range(1000):
                pass
            if yield_between:
                gevent.sleep(0)
        caught.append("worker finished")
        gevent.sleep(5)
    except KeyboardInterrupt:
        caught.append("worker interrupted")

for kills, yield_between in ((1, True), (3, False)):
    caught.clear()
    g = gevent.spawn(worker, kills, yield_between)
    try:
        gevent.sleep(5)
        caught.append("main slept")
    except KeyboardInterrupt:
        caught.append("main interrupted")
    g.kill()
    print(kills, ",".join(sorted(caught)))
"""


def test_ctrl_c_is_routed_to_the_main_greenlet(tmp_path):
    """A Ctrl-C that arrives while a user greenlet runs reaches the main greenlet (where Locust waits for it)
    and not that greenlet; three Ctrl-Cs without the loop running in between interrupt where they land."""
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # one Ctrl-C: the worker carries on, the main greenlet gets the interrupt
    assert lines[0] == "1 main interrupted,worker finished", out
    # three Ctrl-Cs, the worker never yields: the third interrupts the worker, the main greenlet sleeps on
    assert lines[1] == "3 main slept,worker interrupted", out
    assert "Traceback" not in out.stderr, out.stderr  # no interrupt left over for later
