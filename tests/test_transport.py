"""The `_bulk` path against a real Elasticsearch: per-item outcomes, and the response shape the client's
shortcut relies on (an error-free filtered bulk response starts with `{"errors":false,`)."""

from __future__ import annotations

import urllib.request
import uuid

import orjson
from helpers import count, es_client

from locust_sink.bulk import BulkItem, BulkOutcome, encode_body, sort_items
from locust_sink.config import EsConfig
from locust_sink.records import dumps
from locust_sink.rest import BULK_FILTER_PATH, NO_ERRORS_PREFIX
from locust_sink.transport import ElasticsearchBackend


def send_bulk(backend: ElasticsearchBackend, items: list[BulkItem]) -> BulkOutcome:
    return sort_items(items, backend.bulk(encode_body(items)))


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
    assert ok.startswith(NO_ERRORS_PREFIX), ok[:80]
    assert len(orjson.loads(ok)["items"]) == 3
    # the same ids again: every create is a 409, so errors is true and the items must be read
    again = _raw_bulk(es_url, encode_body(_items(index, 3, run_id)))
    assert again.startswith(b'{"errors":true,'), again[:80]
    assert [next(iter(i.values()))["status"] for i in orjson.loads(again)["items"]] == [409, 409, 409]


def test_bulk_outcomes_are_sorted_item_by_item(es_url):
    index = f"transport-mixed-{uuid.uuid4().hex[:8]}"
    es_admin = es_client(es_url)
    es_admin.indices.create(index=index, mappings={"properties": {"n": {"type": "long"}}})
    es = ElasticsearchBackend(EsConfig(urls=[es_url]))
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


def test_bulk_bodies_reach_the_wire_without_copies():
    """The client's NDJSON serializer would copy each ~300 kB bulk body twice; ours hands an encoded body
    (bytes ending in a newline) through as the same object, and still serializes anything else."""
    from locust_sink.config import EsConfig
    from locust_sink.transport import BulkBodySerializer, SinkSerializer, make_client

    es = make_client(EsConfig(urls=["http://127.0.0.1:9"]))
    collection = es.transport.serializers
    ndjson = collection.get_serializer("application/x-ndjson")
    assert isinstance(ndjson, BulkBodySerializer)
    assert isinstance(collection.get_serializer("application/json"), SinkSerializer)
    body = b'{"create":{"_index":"i","_id":"1"}}\n{"a":1}\n'
    assert ndjson.dumps(body) is body
    assert ndjson.dumps([{"create": {}}, {"a": 1}]) == b'{"create":{}}\n{"a":1}\n'
    assert ndjson.dumps(b'{"a":1}') == b'{"a":1}\n'
