"""Records and checks shared by the unit tests (no fixtures here)."""

from __future__ import annotations

import orjson

from locust_sink.records import RequestRecord, dumps, request_document


class Wake:
    """Counts wake-ups (a stand-in for the delivery loop's notify)."""

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
    """Records as the buffer hands them to the delivery engine: their fields in one flat list."""
    return [field for rec in records for field in rec]


ODD_RECORDS = [
    record(1),
    record(2, exception="HTTPError('500')", status_code=500, context={"user": 3, 4: b"\xff", "s": {"b", "a"}}),
    record(3, status_code=None, url=None, run_id='we"ird\\id', sample_rate=0.25),
    record(4, start_time=1700000000.9999, name="/ü/\n", response_time=float("nan")),
    record(5, request_type=7, name=None, response_length=2**70, context={"n": (1, 2.5, None)}),
]


def check_encoded(items, records) -> None:
    """Items must be exactly document_id / action_line / dumps of request_document of each record."""
    from locust_sink.bulk import action_line, encode_body
    from locust_sink.records import document_id

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
