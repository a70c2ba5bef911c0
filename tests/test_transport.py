"""The `_bulk` path against a real Elasticsearch: per-item outcomes, and the response shape the client's
shortcut relies on (an error-free filtered bulk response starts with `{"errors":false,`)."""

from __future__ import annotations

import urllib.request
import uuid

import orjson
from helpers import count, es_client

from locust_sink.records import dumps
from locust_sink.transport import (
    _NO_ERRORS,
    BULK_FILTER_PATH,
    BulkItem,
    EsConfig,
    encode_body,
    make_client,
    send_bulk,
)


def _items(index: str, n: int, run_id: str, start: int = 0) -> list[BulkItem]:
    return [
        BulkItem("create", index, f"{run_id}:t:{i}", dumps({"run_id": run_id, "n": i}), True, run_id)
        for i in range(start, start + n)
    ]


def _raw_bulk(es_url: str, body: bytes) -> bytes:
    request = urllib.request.Request(
        f"{es_url}/_bulk?filter_path={BULK_FILTER_PATH}",
        data=body,
        headers={"Content-Type": "application/x-ndjson"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def test_filtered_bulk_responses_put_errors_first(es_url):
    index = f"transport-raw-{uuid.uuid4().hex[:8]}"
    run_id = "raw"
    ok = _raw_bulk(es_url, encode_body(_items(index, 3, run_id)))
    assert ok.startswith(_NO_ERRORS), ok[:80]
    assert len(orjson.loads(ok)["items"]) == 3
    # the same ids again: every create is a 409, so errors is true and the items must be read
    again = _raw_bulk(es_url, encode_body(_items(index, 3, run_id)))
    assert again.startswith(b'{"errors":true,'), again[:80]
    assert [next(iter(i.values()))["status"] for i in orjson.loads(again)["items"]] == [409, 409, 409]


def test_send_bulk_sorts_every_item(es_url):
    index = f"transport-mixed-{uuid.uuid4().hex[:8]}"
    es_admin = es_client(es_url)
    es_admin.indices.create(index=index, mappings={"properties": {"n": {"type": "long"}}})
    es = make_client(EsConfig(urls=[es_url]))
    run_id = "mixed"

    first = send_bulk(es, _items(index, 5, run_id))
    assert (len(first.indexed), len(first.retry), len(first.rejected)) == (5, 0, 0)

    bad = BulkItem("create", index, f"{run_id}:t:bad", dumps({"run_id": run_id, "n": "not a number"}), True, run_id)
    mixed = _items(index, 2, run_id, start=4) + [bad]  # #4 exists already (409 = indexed), #5 is new
    outcome = send_bulk(es, mixed)
    assert [i.doc_id for i in outcome.indexed] == [f"{run_id}:t:4", f"{run_id}:t:5"]
    assert len(outcome.rejected) == 1
    item, status, error = outcome.rejected[0]
    assert item.doc_id == f"{run_id}:t:bad" and status == 400
    assert error["type"] == "document_parsing_exception"
    assert count(es_admin, index) == 6
