"""records.py: the request document, its timestamp, values JSON cannot carry."""

from __future__ import annotations

import datetime as dt

import orjson
from unit_util import record

from locust_sink.records import dumps, iso_timestamp, request_document


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
