"""delivery/encoding.py and delivery/helper.py: records -> bulk lines, in process or in the helper process."""

from __future__ import annotations

import os
import signal

import gevent
import orjson
from unit_util import ODD_RECORDS, check_encoded, flat, record

from locust_sink.accounting import Accounting, Ledger
from locust_sink.delivery.encoding import HELPER_MIN_RECORDS, BatchEncoder
from locust_sink.filesink import FileWriter
from locust_sink.records import RequestEncoder


def encoder(use_helper: bool, files: FileWriter | None = None, ledger: Ledger | None = None) -> BatchEncoder:
    return BatchEncoder(
        "w-1",
        "pfx-requests",
        ledger or Ledger(Accounting()),
        lambda: 0.0,
        0.5,
        use_helper=use_helper,
        file_for=files.prepare if files is not None else None,
    )


def in_process_body(enc: BatchEncoder, records) -> bytes:
    lines: list[bytes] = []
    enc.encoder.encode(flat(records), 0, len(records), lines)
    return RequestEncoder.body(lines)


def test_in_process_encoding_equals_the_reference_shapes():
    """In-process encoding produces exactly the reference shapes, for plain records and for the odd ones
    (failures, context with bytes / non-str keys / sets, sampling, no response, NaN, huge ints)."""
    items = encoder(use_helper=False).encode(flat(ODD_RECORDS), yielding=False).items()
    check_encoded(items, ODD_RECORDS)
    assert orjson.loads(items[1].source)["context"] == {"user": 3, "4": "\ufffd", "s": ["a", "b"]}
    assert orjson.loads(items[3].source)["response_time"] is None


def test_encoder_process_gives_the_same_bytes_and_falls_back_per_batch():
    """The helper process encodes a batch to exactly the in-process bytes; a batch it cannot take (a custom
    object in a context: marshal refuses it) is encoded in-process, and the helper stays in use."""
    enc = encoder(use_helper=True)
    helper = enc.helper
    assert helper is not None
    try:
        records = [r._replace(seq=i * 10 + r.seq) for i in range(HELPER_MIN_RECORDS) for r in ODD_RECORDS]
        check_encoded(enc.encode(flat(records)).items(), records)
        assert helper.batches == 1 and helper.fallbacks == 0 and helper.pid is not None

        class Custom:
            def __str__(self) -> str:
                return "custom!"

        odd = records[:-1] + [record(999, context={"obj": Custom()})]
        items = enc.encode(flat(odd)).items()
        check_encoded(items, odd)
        assert orjson.loads(items[-1].source)["context"] == {"obj": "custom!"}
        assert helper.batches == 1 and helper.fallbacks == 1 and not helper.broken
        check_encoded(enc.encode(flat(records)).items(), records)
        assert helper.batches == 2
    finally:
        enc.close()
    assert helper.pid is None


def test_encoder_process_that_dies_is_replaced_by_in_process_encoding(caplog):
    """A helper that is killed (or crashes) costs nothing but one warning: the batch and every later one are
    encoded in Locust's process, nothing is lost, nothing is encoded twice."""
    enc = encoder(use_helper=True)
    helper = enc.helper
    records = [record(i, run_id=f"r{i % 2}") for i in range(HELPER_MIN_RECORDS)]
    try:
        check_encoded(enc.encode(flat(records)).items(), records)
        os.kill(helper.pid, signal.SIGKILL)
        with caplog.at_level("WARNING", logger="locust_sink"):
            for _ in range(3):
                check_encoded(enc.encode(flat(records)).items(), records)
        warnings = [r.getMessage() for r in caplog.records if "encoder helper" in r.getMessage()]
        assert len(warnings) == 1, warnings
        assert "exited" in warnings[0] or "Broken pipe" in warnings[0], warnings
        assert helper.broken and helper.batches == 1 and helper.fallbacks == 3 and helper.pid is None
    finally:
        enc.close()


def test_encoder_process_appends_file_mode_batches_itself(tmp_path):
    """File mode: the helper writes a batch of one run to that run's file, byte for byte what Locust's process
    would have written, and Locust's process writes its other documents to the same file in between. A batch
    of two runs comes back as bytes; a file the helper cannot write means that batch (and every later one)
    is encoded in Locust's process, and the file is as it was."""
    files = FileWriter(tmp_path, "w-1")
    enc = encoder(use_helper=True, files=files)
    helper = enc.helper
    records = [record(i) for i in range(HELPER_MIN_RECORDS)]
    path = tmp_path / "r1" / "w-1.ndjson"
    try:
        encoded = enc.encode(flat(records))
        assert encoded.written and len(encoded) == len(records) and encoded.ndjson == b""
        assert path.read_bytes() == in_process_body(enc, records)
        other = b'{"create":{}}\n{"other":1}\n'  # e.g. a stats snapshot
        files.write_body("r1", other)
        more = [record(i + 1000) for i in range(HELPER_MIN_RECORDS)]
        assert enc.encode(flat(more)).written
        expected = in_process_body(enc, records) + other + in_process_body(enc, more)
        assert path.read_bytes() == expected
        assert helper.batches == 2 and helper.file_batches == 2 and helper.fallbacks == 0

        mixed = [record(i, run_id=f"r{i % 2}") for i in range(HELPER_MIN_RECORDS)]
        encoded = enc.encode(flat(mixed))
        assert not encoded.written and encoded.ndjson == in_process_body(enc, mixed)
        assert helper.batches == 3 and helper.file_batches == 2

        blocked = tmp_path / "r2" / "w-1.ndjson"
        blocked.mkdir(parents=True)  # a folder where the file should be: the helper's open() fails
        doomed = [record(i, run_id="r2") for i in range(HELPER_MIN_RECORDS)]
        encoded = enc.encode(flat(doomed))
        assert not encoded.written and encoded.ndjson == in_process_body(enc, doomed)
        assert helper.fallbacks == 1 and "IsADirectoryError" in helper.broken
        assert path.read_bytes() == expected  # the other run's file is untouched
    finally:
        enc.close()
        files.close()


def test_killed_file_exchange_writes_each_record_once(tmp_path):
    """The delivery loop killed while the helper has a batch to write (final deadline, second Ctrl-C): the
    file's size says whether the helper wrote it. Here the helper is stopped (SIGSTOP), so it did not: the
    records are left to the caller and the file is as it was. Then each outcome of
    `after_interrupted_file_exchange`: written (settled, nothing left to write), not written, torn (cut back)."""
    files = FileWriter(tmp_path, "w-1")
    acc = Accounting()
    enc = encoder(use_helper=True, files=files, ledger=Ledger(acc))
    helper = enc.helper
    records = [record(i) for i in range(HELPER_MIN_RECORDS)]
    path = tmp_path / "r1" / "w-1.ndjson"
    try:
        assert enc.encode(flat(records)).written  # starts the helper
        before = path.read_bytes()
        os.kill(helper.pid, signal.SIGSTOP)
        batch = flat([record(i + 100) for i in range(HELPER_MIN_RECORDS)])
        job = gevent.spawn(enc.encode, batch)
        gevent.sleep(0.5)
        job.kill(block=True, timeout=10)  # EncoderProcess gives up and kills the stopped helper
        assert job.dead and helper.broken and helper.pid is None
        assert path.read_bytes() == before and len(batch) == HELPER_MIN_RECORDS * 12  # left to the caller

        body = in_process_body(enc, records)
        for grown, expect_cleared, expect_size in ((body, True, 2 * len(body)), (b"", False, len(body)),
                                                    (body[:100], False, len(body))):  # fmt: skip
            path.write_bytes(body + grown)
            acc.in_flight, acc.written = len(records), 0
            batch = flat(records)
            enc.after_interrupted_file_exchange(batch, path, len(body))
            assert (batch == []) is expect_cleared
            assert path.stat().st_size == expect_size
            assert (acc.written, acc.in_flight) == ((len(records), 0) if expect_cleared else (0, len(records)))
    finally:
        enc.close()
        files.close()


def test_final_flush_encodes_in_process():
    """The final flush (maybe from an atexit hook during interpreter shutdown) neither starts nor uses the
    helper process: encoding there costs the finished load test nothing, and a child process started during
    shutdown could hang until the flush deadline."""
    enc = encoder(use_helper=True)
    records = [record(i) for i in range(1, HELPER_MIN_RECORDS * 2)]
    try:
        check_encoded(enc.encode(flat(records), final=True).items(), records)
        assert enc.helper.batches == 0 and enc.helper.pid is None
    finally:
        enc.close()
