"""The compatibility matrix of docs/opensearch.md: one probe per mapping type, template feature, delivery call
and query that locust-sink relies on, sent to a real server over plain HTTP.

Each probe returns what it observed: a verdict (`works`, `differs` or `missing`) and a detail (the error type
and reason, or how the answer differs). tests/test_opensearch_compat.py runs every probe against the real
Elasticsearch and OpenSearch servers of the test session and asserts the verdicts and details recorded in
docs/opensearch.md; run this file directly to print what the servers of your choice answer today:

    python3 tests/opensearch_compat.py es=http://127.0.0.1:9200 os2=http://127.0.0.1:9250

Plain HTTP (urllib3) rather than a client, so a probe sees exactly what the server answers; the probes
about clients (the official client's product check, opensearch-py's `timeout`) use those clients.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from locust_sink import schema  # noqa: E402
from locust_sink.rest import BULK_FILTER_PATH  # noqa: E402

WORKS, DIFFERS, MISSING = "works", "differs", "missing"
DOC = Path(__file__).resolve().parents[1] / "docs" / "opensearch.md"
QUERIES_DOC = Path(__file__).resolve().parents[1] / "docs" / "queries.md"


@dataclass
class Observed:
    verdict: str
    detail: str = ""


@dataclass
class Answer:
    status: int
    body: Any
    raw: bytes
    headers: dict[str, str]

    def error(self) -> str:
        """`type: reason` of an error answer (innermost cause appended)."""
        err = self.body.get("error") if isinstance(self.body, dict) else None
        if not isinstance(err, dict):
            return f"HTTP {self.status} {self.raw[:200].decode(errors='replace')}"
        parts = [f"{err.get('type')}: {err.get('reason')}"]
        cause = err.get("caused_by")
        while isinstance(cause, dict):
            parts.append(f"{cause.get('type')}: {cause.get('reason')}")
            cause = cause.get("caused_by")
        return f"HTTP {self.status} " + " / ".join(parts)


class Server:
    """One server: plain HTTP calls and a unique index prefix for this probe run."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http = urllib3.PoolManager(timeout=urllib3.Timeout(total=30), retries=False)
        self.prefix = f"compat-{uuid.uuid4().hex[:8]}"
        self._distribution: str | None = None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        if isinstance(body, bytes):
            data, ctype = body, "application/x-ndjson"
        else:
            data, ctype = (json.dumps(body).encode() if body is not None else None), "application/json"
        hdrs = {"Content-Type": ctype, "Accept": "application/json", **(headers or {})}
        url = self.url + path
        if params:
            url += "?" + urlencode(params)
        resp = self.http.request(method, url, body=data, headers=hdrs, preload_content=True)
        raw = resp.data
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return Answer(resp.status, parsed, raw, {k.lower(): v for k, v in resp.headers.items()})

    def ok(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        answer = self.call(method, path, body, params)
        assert answer.status < 300, f"{method} {path}: {answer.error()}"
        return answer.body

    @property
    def distribution(self) -> str:
        if self._distribution is None:
            root = self.call("GET", "/")
            dist = (root.body or {}).get("version", {}).get("distribution") if root.status == 200 else None
            self._distribution = dist or "elasticsearch"
        return self._distribution

    def free_form(self) -> dict[str, Any]:
        """The mapping a backend would use for context/tags/details on this server."""
        return {"type": "flat_object"} if self.distribution == "opensearch" else schema._free_form(True)

    def index(self, family: str, suffix: str = "") -> str:
        return f"{self.prefix}-{family}{suffix}"

    def cleanup(self) -> None:
        for kind in ("_index_template", "_component_template"):
            listed = self.call("GET", f"/{kind}/{self.prefix}-*")
            items = (listed.body or {}).get("index_templates" if kind == "_index_template" else "component_templates")
            for item in items or []:
                self.call("DELETE", f"/{kind}/{item['name']}")
        found = self.call("GET", f"/{self.prefix}-*", params={"expand_wildcards": "all"})
        if found.status == 200 and found.body:
            self.call("DELETE", "/" + ",".join(sorted(found.body)))


def _put_index(server: Server, name: str, mappings: dict[str, Any], settings: dict[str, Any] | None = None) -> Answer:
    body: dict[str, Any] = {"mappings": mappings}
    if settings:
        body["settings"] = settings
    return server.call("PUT", f"/{name}", body)


def _mapping_probe(server: Server, properties: dict[str, Any]) -> Observed:
    answer = _put_index(server, server.index("m", f"-{uuid.uuid4().hex[:6]}"), {"properties": properties})
    return Observed(WORKS) if answer.status == 200 else Observed(MISSING, answer.error())


# ----------------------------------------------------------------------------------------- the server itself


def probe_get_root(server: Server) -> Observed:
    answer = server.call("GET", "/")
    if answer.status != 200:
        return Observed(DIFFERS, f"HTTP {answer.status} (the stripped build has no GET /; use _nodes/_local)")
    version = answer.body.get("version", {})
    return Observed(WORKS, f"distribution={version.get('distribution', '(none)')} number={version.get('number')}")


def probe_nodes_version(server: Server) -> Observed:
    body = server.ok("GET", "/_nodes/_local", params={"filter_path": "nodes.*.version"})
    versions = [n.get("version") for n in (body.get("nodes") or {}).values()]
    return Observed(WORKS, f"version={versions[0]}") if versions else Observed(DIFFERS, json.dumps(body))


def probe_cluster_health(server: Server) -> Observed:
    """Health of one fresh index without replicas: green on any cluster, whatever other tests left behind (an
    index with a replica on a single node turns the cluster-wide answer yellow)."""
    name = server.index("h", f"-{uuid.uuid4().hex[:6]}")
    server.ok("PUT", f"/{name}", {"settings": {"number_of_shards": 1, "number_of_replicas": 0}})
    body = server.ok("GET", f"/_cluster/health/{name}", params={"timeout": "5s", "wait_for_status": "green"})
    return Observed(WORKS, f"status={body['status']}") if "status" in body else Observed(DIFFERS, json.dumps(body))


def probe_ilm_status(server: Server) -> Observed:
    answer = server.call("GET", "/_ilm/status")
    if answer.status == 200:
        return Observed(WORKS, json.dumps(answer.body))
    return Observed(MISSING, answer.error())


def probe_product_header(server: Server) -> Observed:
    """The official elasticsearch client refuses a server without `X-Elastic-Product: Elasticsearch`."""
    answer = server.call("GET", "/_cluster/health")
    product = answer.headers.get("x-elastic-product")
    return Observed(WORKS, f"X-Elastic-Product={product}") if product else Observed(MISSING, "no X-Elastic-Product")


def probe_es_client(server: Server) -> Observed:
    import elasticsearch

    es = elasticsearch.Elasticsearch(server.url, request_timeout=10)
    try:
        es.cluster.health(timeout="5s")
    except elasticsearch.UnsupportedProductError as exc:
        return Observed(MISSING, f"UnsupportedProductError: {str(exc)[:120]}")
    finally:
        es.close()
    return Observed(WORKS, f"elasticsearch {elasticsearch.__versionstr__}")


def probe_compat_accept_header(server: Server) -> Observed:
    """What the official client 8.x sends: `Accept: application/vnd.elasticsearch+json; compatible-with=8`."""
    mime = "application/vnd.elasticsearch+json; compatible-with=8"
    answer = server.call("GET", "/_cluster/health", headers={"Accept": mime, "Content-Type": mime})
    return Observed(WORKS) if answer.status == 200 else Observed(MISSING, answer.error())


def probe_opensearch_py_timeout(server: Server) -> Observed:
    """opensearch-py takes a `timeout` query parameter as its own socket timeout unless request_timeout is given."""
    import opensearchpy

    client = opensearchpy.OpenSearch(server.url)
    quiet = logging.getLogger("opensearch")  # it logs the failed call with a traceback: expected here
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        client.cluster.health(timeout="5s")
    except opensearchpy.exceptions.ConnectionError as exc:
        client.cluster.health(params={"timeout": "5s"}, request_timeout=10)  # the way that works
        return Observed(DIFFERS, f"ConnectionError: {str(exc.info)[:80]}")
    finally:
        quiet.setLevel(level)
        client.close()
    return Observed(WORKS)


def probe_opensearch_py_bulk(server: Server) -> Observed:
    """opensearch-py's bulk with an encoded NDJSON body (bytes) and the sink's filter_path."""
    import opensearchpy

    client = opensearchpy.OpenSearch(server.url)
    index = server.index("pybulk")
    body = b'{"create":{"_index":"%s","_id":"1"}}\n{"a":1}\n' % index.encode()
    try:
        resp = client.bulk(body=body, params={"filter_path": BULK_FILTER_PATH})
    finally:
        client.close()
    return Observed(WORKS, json.dumps(resp)) if resp.get("errors") is False else Observed(DIFFERS, json.dumps(resp))


# ----------------------------------------------------------------------------------------------- templates


def _real_bodies(server: Server, flattened: bool = False) -> dict[str, tuple[str, dict[str, Any]]]:
    return schema.template_bodies(server.prefix, replicas=0, flattened=flattened)


def _put_template(server: Server, kind: str, name: str, body: dict[str, Any], create: bool = True) -> Answer:
    path = f"/_component_template/{name}" if kind == "component" else f"/_index_template/{name}"
    return server.call("PUT", path, body, params={"create": "true"} if create else None)


def probe_component_template(server: Server) -> Observed:
    """The settings component (shards, replicas, refresh, index.mapping.ignore_malformed) with version + _meta."""
    name = schema.settings_component_name(server.prefix)
    kind, body = _real_bodies(server)[name]
    answer = _put_template(server, kind, name, body)
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    stored = server.ok("GET", f"/_component_template/{name}")["component_templates"][0]["component_template"]
    if stored.get("version") != body["version"] or stored.get("_meta") != body["_meta"]:
        return Observed(DIFFERS, f"stored version/_meta: {stored.get('version')} {stored.get('_meta')}")
    return Observed(WORKS)


def probe_component_create_twice(server: Server) -> Observed:
    """`create=true` on an existing template: the sink reads "already exists" as installed concurrently."""
    name = f"{server.prefix}-twice"
    body = {"template": {"settings": {"index": {"number_of_shards": 1}}}}
    server.ok("PUT", f"/_component_template/{name}", body)
    answer = _put_template(server, "component", name, body)
    if answer.status == 400 and "already exists" in answer.error():
        return Observed(WORKS, answer.error())
    return Observed(DIFFERS, answer.error())


def probe_index_template_as_is(server: Server) -> Observed:
    """template_bodies() unchanged (flattened off): composed_of + ignore_missing_component_templates."""
    bodies = _real_bodies(server)
    for name, (kind, body) in bodies.items():
        answer = _put_template(server, kind, name, body, create=False)
        if answer.status != 200:
            return Observed(MISSING, f"{kind} {name.removeprefix(server.prefix)}: {answer.error()}")
    return Observed(WORKS)


def probe_missing_component(server: Server) -> Observed:
    """An index template composed of a component that does not exist (no ignore_missing_component_templates)."""
    body = {
        "index_patterns": [f"{server.prefix}-nocomp*"],
        "composed_of": [f"{server.prefix}-does-not-exist"],
        "priority": schema.TEMPLATE_PRIORITY,
    }
    answer = server.call("PUT", f"/_index_template/{server.prefix}-nocomp", body)
    return Observed(WORKS) if answer.status == 200 else Observed(MISSING, answer.error())


def probe_empty_custom_component(server: Server) -> Observed:
    """The way without ignore_missing_component_templates: create an empty `@custom` once (create=true never
    overwrites the user's), then compose it like the others."""
    custom = schema.custom_component_name(server.prefix)
    answer = _put_template(server, "component", custom, {"template": {}})
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    for name, (kind, body) in _real_bodies(server).items():
        body = {k: v for k, v in body.items() if k != "ignore_missing_component_templates"}
        if kind == "index":  # patterns of their own: two templates of one priority must not overlap
            name, body["index_patterns"] = (
                f"{name}-c",
                [p.replace(server.prefix, f"{server.prefix}-c") for p in body["index_patterns"]],
            )
        answer = _put_template(server, kind, name, body, create=False)
        if answer.status != 200:
            return Observed(MISSING, f"{name}: {answer.error()}")
    return Observed(WORKS)


def probe_index_template_version_meta(server: Server) -> Observed:
    """An index template's `version`, `_meta` and `priority` come back from GET as they were written."""
    name = f"{server.prefix}-vm"
    body = {
        "index_patterns": [f"{server.prefix}-vm*"],
        "priority": schema.TEMPLATE_PRIORITY,
        "version": schema.SCHEMA_VERSION,
        "_meta": {"managed_by": schema.MANAGED_BY, "fingerprint": "abc"},
        "template": {"settings": {"index": {"number_of_shards": 1}}},
    }
    server.ok("PUT", f"/_index_template/{name}", body)
    stored = server.ok("GET", f"/_index_template/{name}")["index_templates"][0]["index_template"]
    if (stored.get("version"), stored.get("_meta"), stored.get("priority")) != (
        body["version"],
        body["_meta"],
        body["priority"],
    ):
        return Observed(DIFFERS, json.dumps(stored))
    return Observed(WORKS)


def probe_template_applies(server: Server) -> Observed:
    """An index created under the templates gets the composed settings and the family mapping (dynamic false)."""
    settings_name = schema.settings_component_name(server.prefix)
    mappings_name = schema.mappings_component_name(server.prefix)
    bodies = _real_bodies(server)
    for name in (settings_name, mappings_name):
        kind, body = bodies[name]
        _put_template(server, kind, name, body, create=False)
    family_mapping = schema.family_mappings("requests", flattened=False)
    family_mapping["properties"]["context"] = server.free_form()
    server.ok(
        "PUT",
        f"/_index_template/{server.prefix}-applies",
        {
            "index_patterns": [f"{server.prefix}-applies*"],
            "composed_of": [settings_name, mappings_name],
            "priority": schema.TEMPLATE_PRIORITY,
            "template": {"mappings": family_mapping},
        },
    )
    index = f"{server.prefix}-applies"
    server.ok("PUT", f"/{index}")
    got = server.ok("GET", f"/{index}")[index]
    ignore_malformed = got["settings"]["index"].get("mapping", {}).get("ignore_malformed")
    mapping = got["mappings"]
    problems = []
    if ignore_malformed != "true":
        problems.append(f"ignore_malformed={ignore_malformed}")
    if str(mapping.get("dynamic")) != "false":
        problems.append(f"dynamic={mapping.get('dynamic')}")
    if mapping.get("_meta", {}).get("managed_by") != schema.MANAGED_BY:
        problems.append("no _meta")
    if "@timestamp" not in mapping.get("properties", {}):
        problems.append("no shared @timestamp from the mappings component")
    return Observed(DIFFERS, ", ".join(problems)) if problems else Observed(WORKS)


def probe_simulate(server: Server) -> Observed:
    """`_index_template/_simulate` with a body (the sink's capability probe), with a known type."""
    body = {
        "index_patterns": ["locust-sink-capability-probe*"],
        "template": {"mappings": {"properties": {"probe": {"type": "keyword"}}}},
    }
    answer = server.call("POST", "/_index_template/_simulate", body)
    return Observed(WORKS) if answer.status == 200 else Observed(MISSING, answer.error())


def probe_simulate_unknown_type(server: Server) -> Observed:
    """`_simulate` with `flattened`: the answer schema.supports_field_type() reads (`[type]` + `does not exist`)."""
    body = {
        "index_patterns": ["locust-sink-capability-probe*"],
        "template": {"mappings": {"properties": {"probe": {"type": "flattened"}}}},
    }
    answer = server.call("POST", "/_index_template/_simulate", body)
    if answer.status == 200:
        return Observed(WORKS, "flattened known")
    reason = answer.error()
    recognised = "[flattened]" in reason and "does not exist" in reason
    return Observed(WORKS if recognised else DIFFERS, reason)


# ------------------------------------------------------------------------------------------------ mappings


def probe_flattened(server: Server) -> Observed:
    return _mapping_probe(server, {"context": schema._free_form(True)})


def probe_flat_object(server: Server) -> Observed:
    return _mapping_probe(server, {"context": {"type": "flat_object"}})


def probe_flat_object_depth_limit(server: Server) -> Observed:
    return _mapping_probe(server, {"context": {"type": "flat_object", "depth_limit": 64}})


def probe_flat_object_ignore_above(server: Server) -> Observed:
    return _mapping_probe(server, {"context": {"type": "flat_object", "ignore_above": schema.KEYWORD_LONG_TEXT}})


def probe_free_form_queries(server: Server) -> Observed:
    """A document with a nested context: `term` on `context.user.id` and an `exists` on `context` find it."""
    index = server.index("ff")
    mapping = server.free_form()
    if mapping["type"] == "flat_object" and probe_flat_object(server).verdict != WORKS:
        return Observed(MISSING, "no flat_object")
    server.ok("PUT", f"/{index}", {"mappings": {"dynamic": False, "properties": {"context": mapping}}})
    deep: dict[str, Any] = {"leaf": "deep"}
    for _ in range(30):
        deep = {"d": deep}
    docs = [
        {"context": {"user": {"id": "u-1"}, "tenant": "t1"}},
        {"context": {"user": {"id": "u-2"}, "deep": deep, "long": "x" * 2000}},
    ]
    results = [server.call("POST", f"/{index}/_doc", d, params={"refresh": "true"}) for d in docs]
    rejected = [r.error() for r in results if r.status >= 300]
    found = server.ok("POST", f"/{index}/_count", {"query": {"term": {"context.user.id": "u-1"}}})["count"]
    exists = server.ok("POST", f"/{index}/_count", {"query": {"exists": {"field": "context"}}})["count"]
    detail = f"{mapping['type']}: term context.user.id={found}, exists={exists}"
    if rejected:
        return Observed(DIFFERS, f"{detail}; deep/long document rejected: {rejected[0][:160]}")
    return Observed(WORKS if (found, exists) == (1, 2) else DIFFERS, detail)


def probe_free_form_immense_leaf(server: Server) -> Observed:
    """A context value longer than Lucene's term limit (32,766 bytes): `flattened` skips it (ignore_above)."""
    index = server.index("immense")
    server.ok("PUT", f"/{index}", {"mappings": {"properties": {"context": server.free_form()}}})
    answer = server.call("POST", f"/{index}/_doc", {"context": {"k": "x" * 40_000}}, params={"refresh": "true"})
    if answer.status < 300:
        return Observed(WORKS, server.free_form()["type"])
    return Observed(MISSING, answer.error())


def probe_dynamic_false(server: Server) -> Observed:
    index = server.index("dyn")
    server.ok("PUT", f"/{index}", {"mappings": {"dynamic": False, "properties": {"a": {"type": "keyword"}}}})
    server.ok("POST", f"/{index}/_doc/1", {"a": "x", "unknown": {"deep": 1}}, params={"refresh": "true"})
    props = server.ok("GET", f"/{index}/_mapping")[index]["mappings"]["properties"]
    source = server.ok("GET", f"/{index}/_doc/1")["_source"]
    if "unknown" in props or source.get("unknown") != {"deep": 1}:
        return Observed(DIFFERS, f"mapping {sorted(props)}, source {source}")
    return Observed(WORKS)


def probe_ignore_malformed(server: Server) -> Observed:
    """`index.mapping.ignore_malformed`: a string in an integer field is skipped and listed in `_ignored`."""
    index = server.index("malformed")
    server.ok(
        "PUT",
        f"/{index}",
        {
            "settings": {"index": {"mapping": {"ignore_malformed": True}}},
            "mappings": {"properties": {"status_code": {"type": "integer"}, "name": {"type": "keyword"}}},
        },
    )
    answer = server.call("POST", f"/{index}/_doc/1", {"status_code": "abc", "name": "n"}, params={"refresh": "true"})
    if answer.status >= 300:
        return Observed(MISSING, answer.error())
    hit = server.ok("POST", f"/{index}/_search", {"query": {"term": {"name": "n"}}})["hits"]["hits"][0]
    found = server.ok("POST", f"/{index}/_count", {"query": {"term": {"_ignored": "status_code"}}})["count"]
    detail = f"hit _ignored={hit.get('_ignored')}, term _ignored:status_code={found}"
    return Observed(WORKS, detail) if found == 1 else Observed(DIFFERS, detail)


def probe_keyword_ignore_above(server: Server) -> Observed:
    index = server.index("ia")
    server.ok("PUT", f"/{index}", {"mappings": {"properties": {"k": {"type": "keyword", "ignore_above": 5}}}})
    for i, value in enumerate(["short", "much too long"]):
        server.ok("POST", f"/{index}/_doc/{i}", {"k": value}, params={"refresh": "true"})
    aggs = server.ok("POST", f"/{index}/_search", {"size": 0, "aggs": {"k": {"terms": {"field": "k"}}}})
    keys = [b["key"] for b in aggs["aggregations"]["k"]["buckets"]]
    return Observed(WORKS) if keys == ["short"] else Observed(DIFFERS, f"keys {keys}")


def probe_index_false_numbers(server: Server) -> Observed:
    """`index: false` numbers: aggregations from doc values, and `terms` with `missing` (test_stats)."""
    index = server.index("nf")
    props = {"d": schema._DOUBLE_AGG, "l": schema._LONG_AGG, "i": schema._INT_AGG}
    server.ok("PUT", f"/{index}", {"mappings": {"properties": props}})
    server.ok("POST", f"/{index}/_doc/1", {"d": 1.5, "l": 10, "i": 3}, params={"refresh": "true"})
    server.ok("POST", f"/{index}/_doc/2", {"l": 20}, params={"refresh": "true"})
    body = {
        "size": 0,
        "aggs": {
            "d": {"sum": {"field": "d"}},
            "l": {"sum": {"field": "l"}},
            "i": {"max": {"field": "i"}},
            "m": {"terms": {"field": "d", "missing": -1}},
        },
    }
    aggs = server.ok("POST", f"/{index}/_search", body)["aggregations"]
    got = (aggs["d"]["value"], aggs["l"]["value"], aggs["i"]["value"], sorted(b["key"] for b in aggs["m"]["buckets"]))
    return Observed(WORKS) if got == (1.5, 30.0, 3.0, [-1.0, 1.5]) else Observed(DIFFERS, str(got))


def probe_index_false_range(server: Server) -> Observed:
    """A `range` query on an `index: false` number (served from doc values, slower)."""
    index = server.index("nfr")
    server.ok("PUT", f"/{index}", {"mappings": {"properties": {"l": schema._LONG_AGG}}})
    server.ok("POST", f"/{index}/_doc/1", {"l": 10}, params={"refresh": "true"})
    answer = server.call("POST", f"/{index}/_count", {"query": {"range": {"l": {"gte": 5}}}})
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    return Observed(WORKS) if answer.body["count"] == 1 else Observed(DIFFERS, str(answer.body))


def probe_text_keyword(server: Server) -> Observed:
    """`text` + `keyword` multi-field (exception, message) and `keyword` + `text` (url)."""
    index = server.index("tk")
    props = {"exception": schema._text_with_keyword(), "url": schema._family_properties("requests", False)["url"]}
    server.ok("PUT", f"/{index}", {"mappings": {"properties": props}})
    doc = {"exception": "ConnectionResetError(104, 'Connection reset by peer')", "url": "http://h/delay/1"}
    server.ok("POST", f"/{index}/_doc/1", doc, params={"refresh": "true"})
    match = server.ok("POST", f"/{index}/_count", {"query": {"match": {"exception": "connectionreseterror"}}})
    url_text = server.ok("POST", f"/{index}/_count", {"query": {"match": {"url.text": "delay"}}})
    terms = server.ok(
        "POST", f"/{index}/_search", {"size": 0, "aggs": {"e": {"terms": {"field": "exception.keyword"}}}}
    )
    keys = [b["key"] for b in terms["aggregations"]["e"]["buckets"]]
    got = (match["count"], url_text["count"], keys)
    return Observed(WORKS) if got == (1, 1, [doc["exception"]]) else Observed(DIFFERS, str(got))


def probe_disabled_object(server: Server) -> Observed:
    """`{"type": "object", "enabled": false}` (response_times histogram): kept in _source, no mapping fields."""
    index = server.index("dis")
    server.ok(
        "PUT", f"/{index}", {"mappings": {"properties": {"response_times": {"type": "object", "enabled": False}}}}
    )
    server.ok("POST", f"/{index}/_doc/1", {"response_times": {"12": 3, "140": 1}}, params={"refresh": "true"})
    mapping = server.ok("GET", f"/{index}/_mapping")[index]["mappings"]["properties"]["response_times"]
    source = server.ok("GET", f"/{index}/_doc/1")["_source"]
    ok = "properties" not in mapping and source["response_times"] == {"12": 3, "140": 1}
    return Observed(WORKS) if ok else Observed(DIFFERS, f"{mapping} {source}")


def probe_family_mappings(server: Server) -> Observed:
    """All four families' mappings (free-form fields as this server needs them) in one index each."""
    for family in schema.FAMILIES:
        mapping = schema.family_mappings(family, flattened=False)
        for key, prop in mapping["properties"].items():
            if prop == {"type": "object", "enabled": False} and key in ("context", "tags", "details"):
                mapping["properties"][key] = server.free_form()
        answer = _put_index(server, server.index(f"fam-{family}"), mapping)
        if answer.status != 200:
            return Observed(MISSING, f"{family}: {answer.error()}")
    return Observed(WORKS)


def probe_put_mapping_upgrade(server: Server) -> Observed:
    """schema._check_existing: an additive `PUT _mapping` with dynamic, _meta and properties."""
    index = server.index("upg")
    server.ok("PUT", f"/{index}", {"mappings": {"dynamic": False, "properties": {"a": {"type": "keyword"}}}})
    body = {"dynamic": False, "_meta": {"managed_by": schema.MANAGED_BY, "schema_version": 2}, "properties": {
        "a": {"type": "keyword"}, "b": {"type": "double"}}}  # fmt: skip
    answer = server.call("PUT", f"/{index}/_mapping", body)
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    mapping = server.ok("GET", f"/{index}/_mapping")[index]["mappings"]
    ok = "b" in mapping["properties"] and mapping.get("_meta", {}).get("schema_version") == 2
    return Observed(WORKS) if ok else Observed(DIFFERS, str(mapping))


def probe_create_existing_index(server: Server) -> Observed:
    index = server.index("exists")
    server.ok("PUT", f"/{index}")
    answer = server.call("PUT", f"/{index}")
    kind = (answer.body or {}).get("error", {}).get("type")
    return (
        Observed(WORKS, answer.error())
        if kind == "resource_already_exists_exception"
        else Observed(DIFFERS, answer.error())
    )


# ------------------------------------------------------------------------------------------------ delivery


def _bulk(server: Server, lines: list[dict[str, Any]]) -> Answer:
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    return server.call("POST", "/_bulk", body, params={"filter_path": BULK_FILTER_PATH})


def probe_bulk_filter_path(server: Server) -> Observed:
    """A successful `_bulk` with the sink's filter_path answers exactly `{"errors":false}` (raw bytes)."""
    index = server.index("bulk")
    answer = _bulk(server, [{"create": {"_index": index, "_id": "a"}}, {"n": 1}])
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    raw = answer.raw.decode()
    # transport.SinkSerializer reads a body that starts like this as "no errors" without parsing it
    return Observed(WORKS, raw) if raw.startswith('{"errors":false,') else Observed(DIFFERS, raw)


def probe_bulk_items(server: Server) -> Observed:
    """Item results: create 201, create again 409 (version_conflict_engine_exception), index 200/201, and a
    document ES/OpenSearch cannot parse (an object field given a number) 400."""
    index = server.index("items")
    server.ok(
        "PUT", f"/{index}", {"mappings": {"properties": {"percentiles": {"properties": {"p50": {"type": "double"}}}}}}
    )
    answer = _bulk(
        server,
        [
            {"create": {"_index": index, "_id": "a"}}, {"n": 1},
            {"create": {"_index": index, "_id": "a"}}, {"n": 1},
            {"index": {"_index": index, "_id": "r"}}, {"n": 2},
            {"create": {"_index": index, "_id": "bad"}}, {"percentiles": 5},
        ],
    )  # fmt: skip
    items = [next(iter(i.values())) for i in answer.body["items"]]
    statuses = [i["status"] for i in items]
    types = [i.get("error", {}).get("type") for i in items]
    detail = f"statuses {statuses}, errors {types[1]}, {types[3]}"
    keys = sorted({k for i in answer.body["items"] for k in next(iter(i.values()))})
    if statuses[:3] == [201, 409, 201] and statuses[3] == 400 and types[1] == "version_conflict_engine_exception":
        return Observed(WORKS, f"{detail}; item keys {keys}")
    return Observed(DIFFERS, detail)


def probe_read_only_block(server: Server) -> Observed:
    """`index.blocks.read_only_allow_delete` (what the flood-stage disk watermark sets): the item answer."""
    index = server.index("ro")
    server.ok("PUT", f"/{index}")
    server.ok("PUT", f"/{index}/_settings", {"index.blocks.read_only_allow_delete": True})
    try:
        answer = _bulk(server, [{"create": {"_index": index, "_id": "a"}}, {"n": 1}])
        item = next(iter(answer.body["items"][0].values()))
        whole = server.call("POST", f"/{index}/_doc", {"n": 1})
    finally:
        server.ok("PUT", f"/{index}/_settings", {"index.blocks.read_only_allow_delete": None})
    after = _bulk(server, [{"create": {"_index": index, "_id": "a"}}, {"n": 1}])
    detail = f"bulk item {item['status']} {item['error']['type']}; single doc HTTP {whole.status}"
    detail += f"; lifted: {after.raw.decode()}"
    return Observed(WORKS if item["status"] == 429 else DIFFERS, detail)


def probe_count_missing_index(server: Server) -> Observed:
    """`_refresh` and `_count` with ignore_unavailable + allow_no_indices on a missing index (tests' count())."""
    params = {"ignore_unavailable": "true", "allow_no_indices": "true"}
    server.ok("POST", f"/{server.prefix}-nothing-*/_refresh", params=params)
    body = server.ok("POST", f"/{server.prefix}-nothing/_count", {"query": {"match_all": {}}}, params=params)
    return Observed(WORKS) if body["count"] == 0 else Observed(DIFFERS, str(body))


# ------------------------------------------------------------------------------------------------- queries

N_DOCS = 600  # below ES's exact-percentile limit (1,999 values per bucket)
RUN, OTHER_RUN = "run-a", "run-b"
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def _response_time(i: int) -> float:
    return round(5 + (i * 7919 % 1000) * 0.731 + (i % 7) * 0.001, 3)


def _docs() -> list[dict[str, Any]]:
    docs = []
    names = ["/get", "/status/500", "/delay/[n]"]
    for i in range(N_DOCS):
        name = names[i % 3]
        fail = name == "/status/500"
        seconds = i // 100 if i < 300 else i // 100 + 2  # two empty seconds in the middle
        doc = {
            "@timestamp": (T0 + timedelta(seconds=seconds, milliseconds=i % 100)).isoformat().replace("+00:00", "Z"),
            "run_id": RUN if i % 10 else OTHER_RUN,
            "node": f"n{i % 2}",
            "request_type": "GET",
            "name": name,
            "url": f"http://127.0.0.1:1{name}",
            "status_code": 500 if fail else 200,
            "response_time": _response_time(i),
            "response_length": i,
            "success": not fail,
        }
        if fail:
            doc["exception"] = "HTTPError('500 Server Error')" if i % 2 else "x" * 1500
        docs.append(doc)
    return docs


def _query_index(server: Server) -> str:
    index = server.index("qdata")  # outside the templates' patterns
    if server.call("HEAD", f"/{index}").status == 200:
        return index
    mapping = schema.family_mappings("requests", flattened=False)
    mapping["properties"].update(schema._common_properties())
    mapping["properties"]["context"] = server.free_form()
    server.ok(
        "PUT",
        f"/{index}",
        {"settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0}}, "mappings": mapping},
    )
    lines: list[dict[str, Any]] = []
    for i, doc in enumerate(_docs()):
        lines += [{"create": {"_index": index, "_id": str(i)}}, doc]
    answer = _bulk(server, lines)
    assert answer.raw.startswith(b'{"errors":false,'), answer.raw[:300]
    server.ok("POST", f"/{index}/_refresh")
    return index


def _mine(run: str = RUN) -> list[dict[str, Any]]:
    return [d for d in _docs() if d["run_id"] == run]


def _documented(number: int, **variables: str) -> dict[str, Any]:
    """The JSON body of question `number` of docs/queries.md (the heredoc of its curl block, `$VAR`s filled in
    as the shell would; tests/test_queries.py runs the same commands against a real Locust run)."""
    sections = re.split(r"^## (\d+)\. .*$", QUERIES_DOC.read_text(), flags=re.M)
    text = dict(zip(sections[1::2], sections[2::2], strict=True))[str(number)]
    match = re.search(r"-d @- <<EOF\n(.*?)\nEOF\n", text, flags=re.S)
    assert match, f"question {number}: no heredoc body"
    values = {"RUN": RUN, **variables}
    return json.loads(re.sub(r"\$([A-Z_][A-Z0-9_]*)", lambda m: values[m.group(1)], match.group(1)))


def _search(server: Server, body: dict[str, Any]) -> Answer:
    return server.call("POST", f"/{_query_index(server)}/_search", body)


def _linear_percentile(values: list[float], percent: float) -> float:
    """numpy's default (linear) percentile: what ES 8.19's TDigest answers exactly below 2,000 values."""
    ordered = sorted(values)
    pos = percent / 100 * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def probe_q1_slowest(server: Server) -> Observed:
    answer = _search(server, _documented(1))
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    times = [h["_source"]["response_time"] for h in answer.body["hits"]["hits"]]
    want = sorted((d["response_time"] for d in _mine()), reverse=True)[:10]
    return Observed(WORKS) if times == want else Observed(DIFFERS, f"{times[:3]} vs {want[:3]}")


def probe_q2_counts(server: Server) -> Observed:
    """terms on a boolean (`key_as_string`) and composite with a boolean source (its key's type)."""
    answer = _search(server, _documented(2))
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    aggs = answer.body["aggregations"]
    outcome = {b["key_as_string"]: b["doc_count"] for b in aggs["outcome"]["buckets"]}
    rows = {(b["key"]["name"], b["key"]["success"]): b["doc_count"] for b in aggs["rows"]["buckets"]}
    mine = _mine()
    want_outcome = {"true": sum(d["success"] for d in mine), "false": sum(not d["success"] for d in mine)}
    want_rows: dict[tuple[str, bool], int] = {}
    for d in mine:
        want_rows[(d["name"], d["success"])] = want_rows.get((d["name"], d["success"]), 0) + 1
    key_type = type(aggs["rows"]["buckets"][0]["key"]["success"]).__name__
    if outcome == want_outcome and rows == want_rows:
        return Observed(WORKS, f"composite boolean key: {key_type}")
    return Observed(DIFFERS, f"{outcome} {rows} (composite boolean key: {key_type})")


def probe_q3_avg_ordered(server: Server) -> Observed:
    answer = _search(server, _documented(3))
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    buckets = answer.body["aggregations"]["by_name"]["buckets"]
    got = [(b["key"], b["doc_count"], round(b["avg_ms"]["value"], 6)) for b in buckets]
    want = []
    for name in {d["name"] for d in _mine()}:
        times = [d["response_time"] for d in _mine() if d["name"] == name]
        want.append((name, len(times), round(sum(times) / len(times), 6)))
    want.sort(key=lambda w: -w[2])
    return Observed(WORKS) if got == want else Observed(DIFFERS, f"{got} vs {want}")


def _percentile_error(server: Server, body: dict[str, Any]) -> tuple[float, str] | Observed:
    answer = _search(server, body)
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    worst, where = 0.0, ""
    for b in answer.body["aggregations"]["by_name"]["buckets"]:
        times = [d["response_time"] for d in _mine() if d["name"] == b["key"]]
        for key, value in b["ms"]["values"].items():
            exact = _linear_percentile(times, float(key))
            error = abs(value - exact) / exact
            if error > worst:
                worst, where = error, f"p{key} of {len(times)} values: {value:.3f} vs {exact:.3f}"
    return worst, where


def probe_q4_percentiles_exact(server: Server) -> Observed:
    """percentiles (TDigest, default compression) vs the exact linear-interpolation percentile."""
    body = _documented(4)
    result = _percentile_error(server, body)
    if isinstance(result, Observed):
        return result
    worst, where = result
    answer = _search(server, body)
    keys = list(answer.body["aggregations"]["by_name"]["buckets"][0]["ms"]["values"])
    if worst <= 1e-9:
        return Observed(WORKS, f"exact; keys {keys[-3:]}")
    return Observed(DIFFERS, f"max relative error {worst:.2%} ({where}); keys {keys[-3:]}")


def probe_q4_percentiles_compression(server: Server) -> Observed:
    """The docs' remedy for exactness: `"tdigest": {"compression": 1000}`."""
    body = _documented(4)
    body["aggs"]["by_name"]["aggs"]["ms"]["percentiles"]["tdigest"] = {"compression": 1000}
    result = _percentile_error(server, body)
    if isinstance(result, Observed):
        return result
    worst, where = result
    return Observed(WORKS) if worst <= 1e-9 else Observed(DIFFERS, f"max relative error {worst:.2%} ({where})")


def probe_hdr_percentiles(server: Server) -> Observed:
    """docs/stats.md's alternative: `"hdr": {"number_of_significant_value_digits": 3}`. HDR answers a value of
    the nearest rank (no interpolation) to 3 significant digits: it must lie between the two values around the
    exact position, widened by 0.1 %."""
    body = _documented(4)
    body["aggs"]["by_name"]["aggs"]["ms"]["percentiles"]["hdr"] = {"number_of_significant_value_digits": 3}
    answer = _search(server, body)
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    outside = []
    for b in answer.body["aggregations"]["by_name"]["buckets"]:
        ordered = sorted(d["response_time"] for d in _mine() if d["name"] == b["key"])
        for key, value in b["ms"]["values"].items():
            pos = float(key) / 100 * (len(ordered) - 1)
            low, high = ordered[max(math.floor(pos) - 1, 0)], ordered[min(math.ceil(pos) + 1, len(ordered) - 1)]
            if not low * 0.999 <= value <= high * 1.001:
                outside.append(f"p{key} {value:.3f} not in [{low}, {high}]")
    return Observed(DIFFERS, "; ".join(outside[:3])) if outside else Observed(WORKS)


def probe_q5_extended_stats(server: Server) -> Observed:
    answer = _search(server, _documented(5, NAME="/delay/[n]"))
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    stats = answer.body["aggregations"]["ms"]
    times = [d["response_time"] for d in _mine() if d["name"] == "/delay/[n]"]
    mean = sum(times) / len(times)
    variance = sum((t - mean) ** 2 for t in times) / len(times)
    ok = (
        stats["count"] == len(times)
        and stats["min"] == min(times)
        and stats["max"] == max(times)
        and math.isclose(stats["sum"], sum(times), rel_tol=1e-12)
        and math.isclose(stats["variance"], variance, rel_tol=1e-9)
        and {"upper", "lower"} <= set(stats["std_deviation_bounds"])
    )
    return Observed(WORKS) if ok else Observed(DIFFERS, json.dumps(stats)[:300])


def probe_q6_date_histogram(server: Server) -> Observed:
    """1 s buckets with the empty seconds in between (doc_count 0) and a `filter` sub-aggregation."""
    answer = _search(server, _documented(6))
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    buckets = answer.body["aggregations"]["per_second"]["buckets"]
    counts = [b["doc_count"] for b in buckets]
    mine = _mine()
    want: dict[int, int] = {}
    for d in mine:
        second = int(datetime.fromisoformat(d["@timestamp"].replace("Z", "+00:00")).timestamp())
        want[second] = want.get(second, 0) + 1
    first, last = min(want), max(want)
    want_counts = [want.get(s, 0) for s in range(first, last + 1)]
    failures = sum(b["failures"]["doc_count"] for b in buckets)
    if counts == want_counts and failures == sum(not d["success"] for d in mine):
        return Observed(WORKS, f"counts {counts}")
    return Observed(DIFFERS, f"counts {counts} vs {want_counts}")


def probe_q7_errors_missing(server: Server) -> Observed:
    """terms on `exception.keyword` with `missing` (messages over ignore_above) and a nested terms."""
    answer = _search(server, _documented(7))
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    buckets = {b["key"]: b["doc_count"] for b in answer.body["aggregations"]["errors"]["buckets"]}
    failures = [d for d in _mine() if not d["success"]]
    long_ones = sum(1 for d in failures if len(d["exception"]) > schema.KEYWORD_LONG_TEXT)
    want = {
        "HTTPError('500 Server Error')": len(failures) - long_ones,
        "(message longer than 1024 characters)": long_ones,
    }
    return Observed(WORKS) if buckets == want else Observed(DIFFERS, f"{buckets} vs {want}")


def probe_q8_compare_runs(server: Server) -> Observed:
    answer = _search(server, _documented(8, RUN_A=RUN, RUN_B=OTHER_RUN))
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    seen = {
        (b["key"], r["key"]): r["doc_count"]
        for b in answer.body["aggregations"]["by_name"]["buckets"]
        for r in b["by_run"]["buckets"]
    }
    want: dict[tuple[str, str], int] = {}
    for d in _docs():
        want[(d["name"], d["run_id"])] = want.get((d["name"], d["run_id"]), 0) + 1
    return Observed(WORKS) if seen == want else Observed(DIFFERS, f"{seen} vs {want}")


def probe_stats_md_window(server: Server) -> Observed:
    """docs/stats.md's window query: range on @timestamp, terms on node, percentiles per name and per 10 s."""
    percentiles = {"percentiles": {"field": "response_time", "percents": [50, 95, 99, 99.9]}}
    body = {
        "size": 0,
        "query": {"bool": {"filter": [
            {"term": {"run_id": RUN}},
            {"range": {"@timestamp": {"gte": "2026-01-01T12:00:01Z", "lt": "2026-01-01T12:00:04Z"}}},
            {"terms": {"node": ["n0", "n1"]}},
        ]}},
        "aggs": {
            "per_endpoint": {"terms": {"field": "name", "size": 100}, "aggs": {"rt": percentiles}},
            "over_time": {"date_histogram": {"field": "@timestamp", "fixed_interval": "10s"},
                          "aggs": {"rt": {"percentiles": {"field": "response_time", "percents": [95]}}}},
        },
    }  # fmt: skip
    answer = _search(server, body)
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    total = sum(b["doc_count"] for b in answer.body["aggregations"]["per_endpoint"]["buckets"])
    want = sum(1 for d in _mine() if "12:00:01" <= d["@timestamp"][11:19] < "12:00:04")
    return Observed(WORKS) if total == want else Observed(DIFFERS, f"{total} vs {want}")


def probe_composite_paging(server: Server) -> Observed:
    """e2e_util.es_landed: composite of three terms sources with sum sub-aggregations, paged by after_key."""
    after, pages, total = None, 0, 0
    while True:
        comp: dict[str, Any] = {"size": 2, "sources": [
            {"t": {"terms": {"field": "request_type"}}}, {"n": {"terms": {"field": "name"}}},
            {"s": {"terms": {"field": "success"}}}]}  # fmt: skip
        if after:
            comp["after"] = after
        body = {
            "size": 0,
            "aggs": {
                "g": {
                    "composite": comp,
                    "aggs": {"rt": {"sum": {"field": "response_time"}}, "len": {"sum": {"field": "response_length"}}},
                }
            },
        }
        answer = _search(server, body)
        if answer.status != 200:
            return Observed(MISSING, answer.error())
        agg = answer.body["aggregations"]["g"]
        total += sum(b["doc_count"] for b in agg["buckets"])
        pages += 1
        after = agg.get("after_key")
        if not agg["buckets"] or not after or pages > 10:
            break
    return Observed(WORKS) if total == N_DOCS else Observed(DIFFERS, f"{total} docs in {pages} pages")


def probe_top_hits(server: Server) -> Observed:
    """The slowest request per name with `top_hits` (sorted, `_source` filtered)."""
    top = {"top_hits": {"size": 1, "sort": [{"response_time": "desc"}], "_source": ["response_time"]}}
    body = {"size": 0, "query": {"term": {"run_id": RUN}},
            "aggs": {"by_name": {"terms": {"field": "name"}, "aggs": {"slowest": top}}}}  # fmt: skip
    answer = _search(server, body)
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    got = {
        b["key"]: b["slowest"]["hits"]["hits"][0]["_source"]["response_time"]
        for b in answer.body["aggregations"]["by_name"]["buckets"]
    }
    want = {n: max(d["response_time"] for d in _mine() if d["name"] == n) for n in got}
    return Observed(WORKS) if got == want and len(got) == 3 else Observed(DIFFERS, f"{got} vs {want}")


def probe_terms_on_index(server: Server) -> Observed:
    """test_stats.indices_with: terms on `_index` over a pattern."""
    index = _query_index(server)
    answer = server.call("POST", f"/{index[:-2]}*/_search", {"size": 0, "aggs": {"i": {"terms": {"field": "_index"}}}})
    if answer.status != 200:
        return Observed(MISSING, answer.error())
    keys = [b["key"] for b in answer.body["aggregations"]["i"]["buckets"]]
    return Observed(WORKS) if keys == [index] else Observed(DIFFERS, str(keys))


PROBES: dict[str, Callable[[Server], Observed]] = {
    "get-root": probe_get_root,
    "nodes-version": probe_nodes_version,
    "cluster-health": probe_cluster_health,
    "product-header": probe_product_header,
    "es-client": probe_es_client,
    "compat-accept-header": probe_compat_accept_header,
    "opensearch-py-timeout": probe_opensearch_py_timeout,
    "opensearch-py-bulk": probe_opensearch_py_bulk,
    "ilm-status": probe_ilm_status,
    "component-template": probe_component_template,
    "component-create-twice": probe_component_create_twice,
    "index-template-version-meta": probe_index_template_version_meta,
    "template-bodies-as-is": probe_index_template_as_is,
    "missing-component": probe_missing_component,
    "empty-custom-component": probe_empty_custom_component,
    "template-applies": probe_template_applies,
    "simulate": probe_simulate,
    "simulate-unknown-type": probe_simulate_unknown_type,
    "flattened": probe_flattened,
    "flat_object": probe_flat_object,
    "flat_object-depth_limit": probe_flat_object_depth_limit,
    "flat_object-ignore_above": probe_flat_object_ignore_above,
    "free-form-queries": probe_free_form_queries,
    "free-form-immense-leaf": probe_free_form_immense_leaf,
    "dynamic-false": probe_dynamic_false,
    "ignore-malformed": probe_ignore_malformed,
    "keyword-ignore_above": probe_keyword_ignore_above,
    "index-false-numbers": probe_index_false_numbers,
    "index-false-range": probe_index_false_range,
    "text-keyword": probe_text_keyword,
    "disabled-object": probe_disabled_object,
    "family-mappings": probe_family_mappings,
    "put-mapping-upgrade": probe_put_mapping_upgrade,
    "create-existing-index": probe_create_existing_index,
    "bulk-filter-path": probe_bulk_filter_path,
    "bulk-items": probe_bulk_items,
    "read-only-block": probe_read_only_block,
    "count-missing-index": probe_count_missing_index,
    "q1-slowest": probe_q1_slowest,
    "q2-counts": probe_q2_counts,
    "q3-avg-ordered": probe_q3_avg_ordered,
    "q4-percentiles": probe_q4_percentiles_exact,
    "q4-compression-1000": probe_q4_percentiles_compression,
    "hdr-percentiles": probe_hdr_percentiles,
    "q5-extended-stats": probe_q5_extended_stats,
    "q6-date-histogram": probe_q6_date_histogram,
    "q7-errors-missing": probe_q7_errors_missing,
    "q8-compare-runs": probe_q8_compare_runs,
    "stats-md-window": probe_stats_md_window,
    "composite-paging": probe_composite_paging,
    "top-hits": probe_top_hits,
    "terms-on-index": probe_terms_on_index,
}


def run_all(url: str) -> dict[str, Observed]:
    server = Server(url)
    results: dict[str, Observed] = {}
    try:
        for key, probe in PROBES.items():
            try:
                results[key] = probe(server)
            except Exception as exc:  # a probe that breaks is a finding too: show it, never hide it
                results[key] = Observed("error", f"{type(exc).__name__}: {str(exc)[:300]}")
    finally:
        server.cleanup()
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    targets = dict(arg.split("=", 1) for arg in sys.argv[1:])
    observed = {label: run_all(url) for label, url in targets.items()}
    for key in PROBES:
        print(f"## {key}")
        for label in targets:
            o = observed[label][key]
            print(f"   {label:5} {o.verdict:8} {o.detail}")
