"""Issue 6 (schema): templates, mappings and installation against a real Elasticsearch (no mocks).

Every test uses its own index prefix and removes its indices and templates afterwards.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from helpers import es_client

from locust_sink import schema
from locust_sink.bulk import SinkTransportError
from locust_sink.schema import FAMILIES, SCHEMA_VERSION, SchemaError, index_name

RUN = "20250101T000000Z-abcd"


@pytest.fixture
def es(es_url: str) -> Elasticsearch:
    return es_client(es_url)


@pytest.fixture
def prefix(es: Elasticsearch) -> Iterator[str]:
    name = f"test-schema-{uuid.uuid4().hex[:8]}"
    yield name
    es.indices.delete(index=",".join(index_name(name, f) for f in FAMILIES), ignore_unavailable=True)
    es.options(ignore_status=404).indices.delete_index_template(name=f"{name}-*")
    es.options(ignore_status=404).cluster.delete_component_template(name=f"{name}-sink@*")


def setup(es: Elasticsearch, prefix: str, **kwargs: Any) -> None:
    schema.install_templates(es, prefix=prefix, **kwargs)
    schema.create_indices(es, prefix)


def mapping(es: Elasticsearch, prefix: str, family: str) -> dict[str, Any]:
    name = index_name(prefix, family)
    return es.indices.get_mapping(index=name)[name]["mappings"]


def index_and_fetch(es: Elasticsearch, index: str, doc: dict[str, Any]) -> dict[str, Any]:
    resp = es.index(index=index, document=doc, refresh=True)
    assert resp["result"] == "created"
    return es.get(index=index, id=resp["_id"])


REQUEST_DOC = {
    "@timestamp": "2025-01-01T00:00:00.123Z",
    "run_id": RUN,
    "node": "local",
    "request_type": "GET",
    "name": "/items/[id]",
    "url": "http://127.0.0.1:8080/items/42?x=1",
    "status_code": 500,
    "response_time": 123.456,
    "response_length": 2048,
    "success": False,
    "exception": "HTTPError('500 Server Error: INTERNAL SERVER ERROR for url: /items/42')",
    "context": {"user": {"id": 7, "tier": "gold"}, "tenant": "acme"},
    "sample_rate": 0.5,
}
STATS_DOC = {
    "@timestamp": "2025-01-01T00:00:03.000Z",
    "run_id": RUN,
    "node": "master",
    "source": "master",
    "request_type": "GET",
    "name": "/items/[id]",
    "is_aggregated": False,
    "final": False,
    "interval_s": 3.0,
    "interval_requests": 30,
    "interval_failures": 1,
    "num_requests": 300,
    "num_failures": 3,
    "current_rps": 10.5,
    "current_fail_per_sec": 0.3,
    "min_response_time": 1.5,
    "avg_response_time": 20.25,
    "max_response_time": 400.0,
    "percentiles": {p: 10.0 for p in ("p50", "p66", "p75", "p80", "p90", "p95", "p98", "p99", "p99_9", "p99_99")}
    | {"p100": 400.0},
    "avg_content_length": 512.0,
    "user_count": 10,
    "response_times": {"10": 200, "20": 90, "400": 10},
}
RUN_DOC = {
    "@timestamp": "2025-01-01T00:00:00.000Z",
    "run_id": RUN,
    "status": "finished",
    "start_time": "2025-01-01T00:00:00.000Z",
    "end_time": "2025-01-01T00:01:00.000Z",
    "duration_s": 60.0,
    "locustfile": "locustfile.py",
    "host": "http://127.0.0.1:8080",
    "user_classes": [{"name": "WebUser", "weight": 1, "fixed_count": 0}],
    "users": 10,
    "spawn_rate": 2.5,
    "run_time_limit": 60,
    "tags": {"env": "ci", "build": {"number": 17}},
    "description": "nightly smoke",
    "locust_version": "2.31.0",
    "sink_version": "0.1.0",
    "git_commit": "abc123",
    "hostname": "runner-1",
    "exit_code": 0,
    "totals": {"requests": 600, "failures": 6, "rps": 10.0, "p50": 10.0, "p95": 100.0, "p99": 300.0},
    "sink": {"emitted": 600, "indexed": 600, "written": 0, "spooled": 0, "dead_lettered": 0, "dropped": 0},
    "sink_trouble_nodes": ["worker-2"],
}
EVENT_DOC = {
    "@timestamp": "2025-01-01T00:00:05.000Z",
    "run_id": RUN,
    "node": "master",
    "event": "failure_group",
    "user_count": 10,
    "message": "3 failures of GET /items/[id]",
    "request_type": "GET",
    "name": "/items/[id]",
    "error": "HTTPError('500 Server Error')",
    "occurrences": 3,
    "traceback": "Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'id'",
    "details": {"worker": "w1", "extra": {"a": 1}},
}
DOCS = {"requests": REQUEST_DOC, "stats": STATS_DOC, "runs": RUN_DOC, "events": EVENT_DOC}

EXPECTED_TYPES = {
    "requests": {
        "@timestamp": "date",
        "run_id": "keyword",
        "node": "keyword",
        "request_type": "keyword",
        "name": "keyword",
        "url": "keyword",
        "status_code": "integer",
        "response_time": "double",
        "response_length": "long",
        "success": "boolean",
        "exception": "text",
        "context": "flattened",
        "sample_rate": "double",
    },
    "stats": {
        "@timestamp": "date",
        "run_id": "keyword",
        "node": "keyword",
        "source": "keyword",
        "request_type": "keyword",
        "name": "keyword",
        "is_aggregated": "boolean",
        "final": "boolean",
        "interval_s": "double",
        "interval_requests": "long",
        "interval_failures": "long",
        "num_requests": "long",
        "num_failures": "long",
        "num_none_requests": "long",
        "total_content_length": "long",
        "total_response_time": "double",
        "current_rps": "double",
        "current_fail_per_sec": "double",
        "min_response_time": "double",
        "avg_response_time": "double",
        "max_response_time": "double",
        "percentiles": "object",
        "avg_content_length": "double",
        "user_count": "integer",
        "cpu_percent": "double",
        "cpu_wait_percent": "double",
        "memory_rss_bytes": "long",
        "response_times": "object",
    },
    "runs": {
        "@timestamp": "date",
        "run_id": "keyword",
        "node": "keyword",
        "status": "keyword",
        "start_time": "date",
        "end_time": "date",
        "duration_s": "double",
        "locustfile": "keyword",
        "host": "keyword",
        "user_classes": "object",
        "users": "integer",
        "spawn_rate": "double",
        "run_time_limit": "double",
        "tags": "flattened",
        "description": "text",
        "locust_version": "keyword",
        "sink_version": "keyword",
        "git_commit": "keyword",
        "hostname": "keyword",
        "exit_code": "integer",
        "totals": "object",
        "sink": "object",
        "sink_trouble_nodes": "keyword",
        "sink_final_flush_complete": "boolean",
        "sample_rate": "double",
        "mode": "keyword",
        "workers": "keyword",
        "failure_groups": "long",
        "user_errors": "long",
    },
    "events": {
        "@timestamp": "date",
        "run_id": "keyword",
        "node": "keyword",
        "event": "keyword",
        "user_count": "integer",
        "message": "text",
        "request_type": "keyword",
        "name": "keyword",
        "error": "text",
        "occurrences": "long",
        "cpu_percent": "double",
        "traceback": "text",
        "details": "flattened",
    },
}


def test_index_names() -> None:
    assert [index_name("locust", f) for f in FAMILIES] == [
        "locust-requests",
        "locust-stats",
        "locust-runs",
        "locust-events",
    ]
    with pytest.raises(ValueError):
        index_name("locust", "nope")


def test_install_twice_is_a_noop_the_second_time(es: Elasticsearch, prefix: str) -> None:
    first = schema.install_templates(es, prefix=prefix)
    assert len(first) == 2 + len(FAMILIES)
    assert set(first.values()) == {"created"}
    assert f"_index_template/{prefix}-requests" in first
    assert f"_component_template/{prefix}-sink@settings" in first

    stored = es.indices.get_index_template(name=f"{prefix}-requests")["index_templates"][0]["index_template"]
    assert stored["version"] == SCHEMA_VERSION
    assert stored["_meta"]["schema_version"] == SCHEMA_VERSION
    assert stored["index_patterns"] == [f"{prefix}-requests*"]
    assert stored["priority"] >= 200
    assert stored["composed_of"] == [f"{prefix}-sink@settings", f"{prefix}-sink@mappings", f"{prefix}-sink@custom"]
    assert stored["ignore_missing_component_templates"] == [f"{prefix}-sink@custom"]

    assert set(schema.install_templates(es, prefix=prefix).values()) == {"unchanged"}

    # another replica count is a parameter change within the same version: only the settings component changes
    third = schema.install_templates(es, prefix=prefix, replicas=1)
    assert third.pop(f"_component_template/{prefix}-sink@settings") == "updated"
    assert set(third.values()) == {"unchanged"}
    comp = es.cluster.get_component_template(name=f"{prefix}-sink@settings")["component_templates"][0]
    assert comp["component_template"]["template"]["settings"]["index"]["number_of_replicas"] in (1, "1")


def test_older_template_is_upgraded(es: Elasticsearch, prefix: str) -> None:
    schema.install_templates(es, prefix=prefix)
    # what an older locust-sink (or a hand-made template without version) would have left behind
    es.indices.put_index_template(
        name=f"{prefix}-requests",
        index_patterns=[f"{prefix}-requests*"],
        priority=200,
        template={"mappings": {"properties": {"status_code": {"type": "keyword"}}}},
        version=SCHEMA_VERSION - 1,
        meta={"managed_by": "locust-sink", "schema_version": SCHEMA_VERSION - 1},
    )
    es.cluster.put_component_template(
        name=f"{prefix}-sink@mappings", template={"mappings": {"properties": {"run_id": {"type": "text"}}}}
    )
    result = schema.install_templates(es, prefix=prefix)
    assert result[f"_index_template/{prefix}-requests"] == f"upgraded from v{SCHEMA_VERSION - 1}"
    assert result[f"_component_template/{prefix}-sink@mappings"] == "upgraded from v0"
    assert result[f"_index_template/{prefix}-stats"] == "unchanged"

    stored = es.indices.get_index_template(name=f"{prefix}-requests")["index_templates"][0]["index_template"]
    assert stored["version"] == SCHEMA_VERSION
    assert stored["composed_of"] == [f"{prefix}-sink@settings", f"{prefix}-sink@mappings", f"{prefix}-sink@custom"]
    assert stored["ignore_missing_component_templates"] == [f"{prefix}-sink@custom"]
    schema.create_indices(es, prefix)
    props = mapping(es, prefix, "requests")["properties"]
    assert props["status_code"]["type"] == "integer"
    assert props["run_id"]["type"] == "keyword"


def test_newer_template_is_left_alone(es: Elasticsearch, prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    schema.install_templates(es, prefix=prefix)
    newer = SCHEMA_VERSION + 1
    es.indices.put_index_template(
        name=f"{prefix}-events",
        index_patterns=[f"{prefix}-events*"],
        composed_of=[f"{prefix}-sink@settings", f"{prefix}-sink@mappings"],
        priority=200,
        template={"mappings": {"properties": {"brand_new": {"type": "keyword"}}}},
        version=newer,
        meta={"managed_by": "locust-sink", "schema_version": newer},
    )
    with caplog.at_level(logging.WARNING, logger="locust_sink.schema"):
        result = schema.install_templates(es, prefix=prefix, replicas=1)
    assert result[f"_index_template/{prefix}-events"] == f"kept newer v{newer}"
    assert result[f"_component_template/{prefix}-sink@settings"].startswith("left alone")
    assert any("newer than this locust-sink" in r.getMessage() for r in caplog.records)

    stored = es.indices.get_index_template(name=f"{prefix}-events")["index_templates"][0]["index_template"]
    assert stored["version"] == newer
    assert "brand_new" in stored["template"]["mappings"]["properties"]
    comp = es.cluster.get_component_template(name=f"{prefix}-sink@settings")["component_templates"][0]
    assert comp["component_template"]["template"]["settings"]["index"]["number_of_replicas"] in (0, "0")


def test_each_family_gets_the_explicit_mapping(es: Elasticsearch, prefix: str) -> None:
    setup(es, prefix)
    for family, doc in DOCS.items():
        index_and_fetch(es, index_name(prefix, family), doc)
        props = mapping(es, prefix, family)["properties"]
        got = {field: spec.get("type", "object") for field, spec in props.items()}
        assert got == EXPECTED_TYPES[family], family
        assert mapping(es, prefix, family)["dynamic"] in (False, "false")

    req = mapping(es, prefix, "requests")["properties"]
    assert req["url"]["ignore_above"] == 2048 and req["url"]["fields"]["text"]["type"] == "text"
    assert req["exception"]["fields"]["keyword"]["type"] == "keyword"
    assert req["response_length"]["index"] is False  # aggregation only, doc_values kept
    stats = mapping(es, prefix, "stats")["properties"]
    assert {k: v["type"] for k, v in stats["percentiles"]["properties"].items()} == {
        p: "double" for p in ("p50", "p66", "p75", "p80", "p90", "p95", "p98", "p99", "p99_9", "p99_99", "p100")
    }
    assert stats["response_times"] == {"type": "object", "enabled": False}
    runs = mapping(es, prefix, "runs")["properties"]
    assert runs["totals"]["properties"]["p95"]["type"] == "double"
    assert runs["sink"]["properties"]["dead_lettered"]["type"] == "long"
    assert runs["user_classes"]["properties"]["name"]["type"] == "keyword"
    events = mapping(es, prefix, "events")["properties"]
    assert events["message"]["fields"]["keyword"]["type"] == "keyword"

    # the fields answer the queries they are meant for
    rq = index_name(prefix, "requests")
    hits = es.search(index=rq, query={"bool": {"filter": [{"term": {"run_id": RUN}}, {"term": {"success": False}}]}})
    assert hits["hits"]["total"]["value"] == 1
    assert es.count(index=rq, query={"term": {"context.user.tier": "gold"}})["count"] == 1
    assert es.count(index=rq, query={"match": {"exception": "internal server error"}})["count"] == 1
    assert es.count(index=rq, query={"match": {"url.text": "items"}})["count"] == 1
    assert es.count(index=rq, query={"range": {"@timestamp": {"gte": "2025-01-01", "lt": "2025-01-02"}}})["count"] == 1
    runs_index = index_name(prefix, "runs")
    assert es.count(index=runs_index, query={"term": {"tags.build.number": "17"}})["count"] == 1
    ev = index_name(prefix, "events")
    assert es.count(index=ev, query={"match": {"traceback": "KeyError"}})["count"] == 1


def test_unknown_field_does_not_reject_the_document(es: Elasticsearch, prefix: str) -> None:
    setup(es, prefix)
    for family, doc in DOCS.items():
        before = mapping(es, prefix, family)
        future = {**doc, "field_from_a_newer_sink": {"nested": [1, 2]}, "another": "x"}
        got = index_and_fetch(es, index_name(prefix, family), future)
        assert got["_source"]["field_from_a_newer_sink"] == {"nested": [1, 2]}  # kept in _source
        assert mapping(es, prefix, family) == before  # ... but no mapping field added


def test_malformed_value_is_ignored_not_rejected(es: Elasticsearch, prefix: str) -> None:
    setup(es, prefix)
    rq = index_name(prefix, "requests")
    es.index(index=rq, document={**REQUEST_DOC, "response_time": "not-a-number"}, refresh=True)
    hit = es.search(index=rq, query={"exists": {"field": "_ignored"}})["hits"]["hits"][0]
    assert hit["_ignored"] == ["response_time"]
    assert hit["_source"]["response_time"] == "not-a-number"


def test_deep_and_wide_free_form_objects_add_no_mapping_fields(es: Elasticsearch, prefix: str) -> None:
    setup(es, prefix)
    deep: dict[str, Any] = {"leaf": "bottom"}
    for level in range(40):
        deep = {f"level{level}": deep}
    wide = {f"key_{i}": i for i in range(3000)}
    context = {"deep": deep, "wide": wide, "huge": "x" * 40000, "list": [{"a": 1}, {"b": "two"}]}
    for family, field in (("requests", "context"), ("runs", "tags"), ("events", "details")):
        before = mapping(es, prefix, family)
        got = index_and_fetch(es, index_name(prefix, family), {**DOCS[family], field: context})
        assert got["_source"][field]["wide"]["key_2999"] == 2999
        assert mapping(es, prefix, family) == before, family
    rq = index_name(prefix, "requests")
    assert es.count(index=rq, query={"term": {"context.wide.key_1234": "1234"}})["count"] == 1
    fields = es.field_caps(index=rq, fields="*")["fields"]
    assert len(fields) < 60  # the 3000 keys did not become fields


def test_flattened_fallback_is_a_disabled_object(es: Elasticsearch, prefix: str) -> None:
    assert schema.supports_field_type(es, "flattened") is True
    assert schema.supports_field_type(es, "no_such_field_type") is False
    setup(es, prefix, flattened=False)
    props = mapping(es, prefix, "requests")["properties"]
    assert props["context"] == {"type": "object", "enabled": False}
    before = mapping(es, prefix, "requests")
    got = index_and_fetch(es, index_name(prefix, "requests"), {**REQUEST_DOC, "context": {"a": {"b": {"c": 1}}}})
    assert got["_source"]["context"] == {"a": {"b": {"c": 1}}}
    assert mapping(es, prefix, "requests") == before
    # the cluster has flattened: a normal install switches the template back (same version, other parameter)
    result = schema.install_templates(es, prefix=prefix)
    assert result[f"_index_template/{prefix}-requests"] == "updated"


def test_single_node_cluster_stays_green(es: Elasticsearch, prefix: str) -> None:
    setup(es, prefix, replicas=0)
    names = ",".join(index_name(prefix, f) for f in FAMILIES)
    health = es.cluster.health(index=names, wait_for_status="green", timeout="30s")
    assert health["status"] == "green" and not health["timed_out"]
    for family in FAMILIES:
        name = index_name(prefix, family)
        settings = es.indices.get_settings(index=name)[name]["settings"]["index"]
        assert settings["number_of_replicas"] == "0"
        assert settings["number_of_shards"] == "1"
        assert settings["refresh_interval"] == "5s"


def test_create_indices_is_idempotent_and_upgrades_old_mappings(
    es: Elasticsearch, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # an index that was there before any template (e.g. the seed's dynamic mapping)
    es.indices.create(index=index_name(prefix, "events"), mappings={"properties": {"message": {"type": "keyword"}}})
    schema.install_templates(es, prefix=prefix)
    with caplog.at_level(logging.WARNING, logger="locust_sink.schema"):
        first = schema.create_indices(es, prefix)
    assert first[index_name(prefix, "requests")] == "created"
    assert first[index_name(prefix, "events")] == "exists (not from locust-sink templates)"
    assert any("not created from locust-sink templates" in r.getMessage() for r in caplog.records)
    second = schema.create_indices(es, prefix)
    assert second[index_name(prefix, "requests")] == "exists"

    # an index created by an older schema gets the additive mapping changes
    stats = index_name(prefix, "stats")
    es.indices.put_mapping(index=stats, meta={"managed_by": "locust-sink", "schema_version": SCHEMA_VERSION - 1})
    third = schema.create_indices(es, prefix)
    assert third[stats] == f"mapping upgraded from v{SCHEMA_VERSION - 1}"
    assert mapping(es, prefix, "stats")["_meta"]["schema_version"] == SCHEMA_VERSION


def test_percentiles_and_extended_stats_on_response_time(es: Elasticsearch, prefix: str) -> None:
    setup(es, prefix)
    rq = index_name(prefix, "requests")
    ops: list[dict[str, Any]] = []
    for i in range(1, 101):
        ops.append({"create": {"_index": rq, "_id": f"{RUN}:local:{i}"}})
        ops.append({**REQUEST_DOC, "response_time": i + 0.123, "success": True, "status_code": 200})
    resp = es.bulk(operations=ops, refresh=True)
    assert not resp["errors"]
    aggs = es.search(
        index=rq,
        size=0,
        query={"term": {"run_id": RUN}},
        aggs={
            "pct": {"percentiles": {"field": "response_time", "percents": [50, 95, 99]}},
            "ext": {"extended_stats": {"field": "response_time"}},
            "per_name": {"terms": {"field": "name"}, "aggs": {"avg": {"avg": {"field": "response_time"}}}},
            "slowest": {"top_hits": {"size": 1, "sort": [{"response_time": "desc"}]}},
        },
    )["aggregations"]
    ext = aggs["ext"]
    assert ext["count"] == 100
    assert ext["min"] == 1.123 and ext["max"] == 100.123  # double: the exact values from _source
    assert ext["sum"] == pytest.approx(5062.3)
    assert ext["std_deviation"] == pytest.approx(28.866, abs=0.01)
    assert aggs["pct"]["values"]["50.0"] == pytest.approx(50.623, abs=1)
    assert aggs["pct"]["values"]["95.0"] == pytest.approx(95.623, abs=1)
    assert aggs["per_name"]["buckets"][0]["avg"]["value"] == pytest.approx(50.623)
    assert aggs["slowest"]["hits"]["hits"][0]["_source"]["response_time"] == 100.123


def test_failures_raise_schema_error_with_the_reason(es: Elasticsearch, prefix: str) -> None:
    with pytest.raises(SchemaError, match="invalid_index_template_exception.*lower cased"):
        schema.install_templates(es, prefix=prefix.upper())
    # no answer at all is not a schema problem: the caller (the delivery link) tries again on its next probe
    unreachable = Elasticsearch("http://127.0.0.1:9", request_timeout=2, max_retries=0)
    with pytest.raises(SinkTransportError, match="unreachable") as caught:
        schema.install_templates(unreachable, prefix=prefix)
    assert caught.value.retryable


def test_concurrent_installs_all_succeed(es: Elasticsearch, prefix: str) -> None:
    """Several nodes may install at once: `create=true` races must end as "created" or "unchanged"."""
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: schema.install_templates(es, prefix=prefix), range(4)))
    for key in results[0]:
        actions = [r[key] for r in results]
        assert actions.count("created") <= 1, (key, actions)
        assert all(a == "created" or a.startswith("unchanged") for a in actions), (key, actions)
    assert set(schema.install_templates(es, prefix=prefix).values()) == {"unchanged"}


def test_user_custom_component_template_wins_and_survives_upgrades(es_url):
    """`<prefix>-sink@custom` (e.g. an ILM policy on clusters that have ILM) is composed last and never
    overwritten; without it, the templates install fine (ignore_missing_component_templates)."""
    import uuid

    from helpers import es_client

    from locust_sink import schema

    es = es_client(es_url)
    prefix = f"test-schema-{uuid.uuid4().hex[:8]}"
    try:
        schema.install_templates(es, prefix=prefix)  # no @custom yet: must not fail
        es.cluster.put_component_template(
            name=schema.custom_component_name(prefix),
            template={"settings": {"index": {"refresh_interval": "17s"}}},
        )
        result = schema.install_templates(es, prefix=prefix)
        assert not any(schema.custom_component_name(prefix) in key for key in result)
        es.index(index=f"{prefix}-requests", document={"run_id": "r", "@timestamp": "2026-01-01T00:00:00Z"})
        settings = es.indices.get_settings(index=f"{prefix}-requests")[f"{prefix}-requests"]["settings"]["index"]
        assert settings["refresh_interval"] == "17s"
        assert es.cluster.get_component_template(name=schema.custom_component_name(prefix))
    finally:
        for family in FAMILIES:
            es.options(ignore_status=404).indices.delete(index=f"{prefix}-{family}")
            es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-{family}")
        es.options(ignore_status=404).cluster.delete_component_template(name=f"{prefix}-sink@*")


def test_ilm_policy_is_detected_and_skipped_where_the_cluster_has_no_ilm(es_url, caplog):
    """--es-ilm-policy: put into the settings when `_ilm/status` answers; this stripped ES has no ILM, so the
    sink says so once and installs the templates without it (the template body with it is checked too)."""
    import logging
    import uuid

    from helpers import es_client

    from locust_sink import schema

    body = schema.template_bodies("p", ilm_policy="keep-30d")["p-sink@settings"][1]
    assert body["template"]["settings"]["index"]["lifecycle"] == {"name": "keep-30d"}
    assert "lifecycle" not in schema.template_bodies("p")["p-sink@settings"][1]["template"]["settings"]["index"]

    es = es_client(es_url)
    assert schema.ilm_available(es) is False
    prefix = f"test-schema-{uuid.uuid4().hex[:8]}"
    try:
        with caplog.at_level(logging.WARNING):
            schema.install_templates(es, prefix=prefix, ilm_policy="keep-30d")
        assert [r for r in caplog.records if "has no ILM" in r.getMessage()]
        stored = es.cluster.get_component_template(name=schema.settings_component_name(prefix))
        settings = stored["component_templates"][0]["component_template"]["template"]["settings"]["index"]
        assert "lifecycle" not in settings
    finally:
        for family in FAMILIES:
            es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-{family}")
        es.options(ignore_status=404).cluster.delete_component_template(name=f"{prefix}-sink@*")
