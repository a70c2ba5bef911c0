"""Index names, component + composable index templates, and their idempotent installation.

Layout: one plain index per family (`<prefix>-requests`, `-stats`, `-runs`, `-events`), each created from a
composable index template with the pattern `<prefix>-<family>*`. Why plain indices:

- per-run drill-down is a `term` filter on `run_id` (keyword), cross-run comparison is a `terms` aggregation
  on `run_id` over the same index, so one index per family answers both with one query;
- the same index name works on every cluster: the test ES (and many dev clusters) have neither ILM nor the
  `_data_stream` API, and data streams would also forbid the `_id`-based `create` that makes retries
  and replays idempotent for the run document (`index` op on `_id` = run_id);
- retention is `_delete_by_query` on `@timestamp`/`run_id` today; the `*` in the patterns leaves room for a
  date-suffixed layout (`<prefix>-requests-2025.01`) behind the same templates later;
- clusters with ILM: `--es-ilm-policy NAME` puts `index.lifecycle.name` into the settings component when
  `GET _ilm/status` answers (detected at install; otherwise one warning and no policy). The index templates
  also compose `<prefix>-sink@custom`, a component template that
  locust-sink never writes and that is ignored while missing; a user's ILM policy or shard settings go
  there and survive template upgrades.

Only features present in both Elasticsearch 8.x and 9.x are used: `_component_template`, `_index_template`,
`_index_template/_simulate`, typeless mappings, `flattened` (probed; a disabled object is the fallback).

Upgrades: every template carries `version` = SCHEMA_VERSION and `_meta` {managed_by, schema_version,
fingerprint}. A template is written only when it is missing, older, or the same version with different
parameters (e.g. replicas); a template from a newer locust-sink is never downgraded (we log instead).
Existing indices keep their mapping when a template changes, so `create_indices` also applies additive
mapping changes to indices created by an older schema.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Protocol

from .rest import RestError
from .transport import ClientRest

SCHEMA_VERSION: int = 3
"""Bump on ANY change of a template body below: it is what lets a newer locust-sink replace older templates."""

FAMILIES: tuple[str, ...] = ("requests", "stats", "runs", "events")
TEMPLATE_PRIORITY = 200  # above ES built-ins (100 for logs-*-*, metrics-*-*, ...) and the default 0
MANAGED_BY = "locust-sink"
REFRESH_INTERVAL = "5s"  # ingest-friendly; readers that need fresh data call _refresh
KEYWORD_LONG_TEXT = 1024  # ignore_above for keyword copies of messages (Locust errors often exceed 256 chars)

logger = logging.getLogger(__name__)


class SchemaError(Exception):
    """Templates or indices could not be installed; the message carries Elasticsearch's reason."""


def index_name(prefix: str, family: str) -> str:
    """The index (and template) name of one family, e.g. `locust-requests`."""
    if family not in FAMILIES:
        raise ValueError(f"unknown index family {family!r}; expected one of {', '.join(FAMILIES)}")
    return f"{prefix}-{family}"


def settings_component_name(prefix: str) -> str:
    """Component template with index settings (`-sink` keeps clear of ES's own `logs@settings` & co)."""
    return f"{prefix}-sink@settings"


def mappings_component_name(prefix: str) -> str:
    """Component template with the fields every family shares."""
    return f"{prefix}-sink@mappings"


def custom_component_name(prefix: str) -> str:
    """The user's optional component template, never written by locust-sink: put an ILM policy
    (`index.lifecycle.name`), shard counts or extra mappings there and they survive every upgrade."""
    return f"{prefix}-sink@custom"


# ---------------------------------------------------------------------------------------------- mappings

_KEYWORD: dict[str, Any] = {"type": "keyword"}
_BOOL: dict[str, Any] = {"type": "boolean"}
_DATE: dict[str, Any] = {"type": "date"}
# double, not float: aggregations then return exactly the values in _source and in Locust's own stats
# (a float turns 123.456 into 123.45600128173828), and sums over millions of requests stay exact enough.
_DOUBLE: dict[str, Any] = {"type": "double"}
# Aggregation/sort-only numbers: no inverted index (smaller, faster ingest); doc_values still serve
# aggregations, sorting and (slower) range/term queries.
_DOUBLE_AGG: dict[str, Any] = {"type": "double", "index": False}
_LONG_AGG: dict[str, Any] = {"type": "long", "index": False}
_INT_AGG: dict[str, Any] = {"type": "integer", "index": False}
_LONG: dict[str, Any] = {"type": "long"}
_INT: dict[str, Any] = {"type": "integer"}


def _text_with_keyword(ignore_above: int = KEYWORD_LONG_TEXT) -> dict[str, Any]:
    """Full-text search plus a keyword copy for terms aggregations (values longer than ignore_above skip it)."""
    return {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": ignore_above}}}


def _free_form(kind: str | bool) -> dict[str, Any]:
    """User-supplied objects (context, tags, details): must never add mapping fields.

    `flattened` (Elasticsearch) indexes every leaf as a keyword under ONE field (queryable as `context.key`),
    so any number of keys cannot explode the mapping; the depth limit is raised so a deep object is not
    rejected, and long leaves are skipped instead of failing on Lucene's term size limit. `flat_object`
    (OpenSearch) is the same idea without options (the sink cuts long leaves before sending). `disabled`
    keeps the object in _source only (a cluster with neither type).
    """
    kind = {True: "flattened", False: "disabled"}.get(kind, kind)  # type: ignore[call-overload]
    if kind == "flattened":
        return {"type": "flattened", "depth_limit": 64, "ignore_above": KEYWORD_LONG_TEXT}
    if kind == "flat_object":
        return {"type": "flat_object"}
    return {"type": "object", "enabled": False}


def _common_properties() -> dict[str, Any]:
    return {"@timestamp": _DATE, "run_id": _KEYWORD, "node": _KEYWORD}


def _family_properties(family: str, flattened: str | bool) -> dict[str, Any]:
    """Explicit mappings for the fields listed in docs/DESIGN.md (the shared ones come from a component)."""
    if family == "requests":
        return {
            "request_type": _KEYWORD,
            "name": _KEYWORD,
            "url": {"type": "keyword", "ignore_above": 2048, "fields": {"text": {"type": "text"}}},
            "status_code": _INT,  # integer, not short: non-HTTP users report arbitrary codes
            "response_time": _DOUBLE,  # indexed: "slower than X ms" range filters are common
            "response_length": _LONG_AGG,
            "success": _BOOL,
            "exception": _text_with_keyword(),
            "context": _free_form(flattened),
            "sample_rate": _DOUBLE_AGG,
        }
    if family == "stats":
        percentiles = ("p50", "p66", "p75", "p80", "p90", "p95", "p98", "p99", "p99_9", "p99_99", "p100")
        return {
            "source": _KEYWORD,
            "request_type": _KEYWORD,
            "name": _KEYWORD,
            "is_aggregated": _BOOL,
            "final": _BOOL,
            "interval_s": _DOUBLE_AGG,
            "interval_requests": _LONG_AGG,
            "interval_failures": _LONG_AGG,
            "num_requests": _LONG_AGG,
            "num_failures": _LONG_AGG,
            "num_none_requests": _LONG_AGG,
            "total_content_length": _LONG_AGG,
            "total_response_time": _DOUBLE_AGG,
            "current_rps": _DOUBLE_AGG,
            "current_fail_per_sec": _DOUBLE_AGG,
            "min_response_time": _DOUBLE_AGG,
            "avg_response_time": _DOUBLE_AGG,
            "max_response_time": _DOUBLE_AGG,
            "percentiles": {"properties": {p: _DOUBLE_AGG for p in percentiles}},
            "avg_content_length": _DOUBLE_AGG,
            "user_count": _INT_AGG,
            # the node's process on its Aggregated rows (stats/health.py): CPU % of one core, resident memory
            "cpu_percent": _DOUBLE,  # indexed: "snapshots where a node ran hot" is a range filter
            "cpu_wait_percent": _DOUBLE,  # its main thread's run-queue wait: CPU it wanted and did not get
            "memory_rss_bytes": _LONG_AGG,
            # Locust's {rounded_ms: count} histogram: numeric keys would be a mapping explosion; keep in _source.
            "response_times": {"type": "object", "enabled": False},
        }
    if family == "runs":
        return {
            "status": _KEYWORD,
            "start_time": _DATE,
            "end_time": _DATE,
            "duration_s": _DOUBLE,
            "locustfile": _KEYWORD,
            "host": _KEYWORD,
            "user_classes": {"properties": {"name": _KEYWORD, "weight": _INT, "fixed_count": _INT}},
            "users": _INT,
            "spawn_rate": _DOUBLE,
            "run_time_limit": _DOUBLE,
            "tags": _free_form(flattened),
            "description": _text_with_keyword(),
            "locust_version": _KEYWORD,
            "sink_version": _KEYWORD,
            "git_commit": _KEYWORD,
            "hostname": _KEYWORD,
            "exit_code": _INT,
            "totals": {
                "properties": {
                    "requests": _LONG,
                    "failures": _LONG,
                    "rps": _DOUBLE,
                    "p50": _DOUBLE,
                    "p95": _DOUBLE,
                    "p99": _DOUBLE,
                    "avg_response_time": _DOUBLE,
                    "max_response_time": _DOUBLE,
                }
            },
            "sink": {
                "properties": {
                    k: _LONG
                    for k in (
                        "emitted",
                        "indexed",
                        "written",
                        "spooled",
                        "dead_lettered",
                        "dropped",
                        "sampled_out",
                        "queued",
                        "in_flight",
                    )
                }
            },
            "sink_trouble_nodes": _KEYWORD,
            "sink_final_flush_complete": _BOOL,
            "sample_rate": _DOUBLE,
            "mode": _KEYWORD,
            "workers": _KEYWORD,
            "failure_groups": _LONG,
            "user_errors": _LONG,
        }
    if family == "events":
        return {
            "event": _KEYWORD,
            "user_count": _INT,
            "message": _text_with_keyword(),
            "request_type": _KEYWORD,
            "name": _KEYWORD,
            "error": _text_with_keyword(),
            "occurrences": _LONG,
            "cpu_percent": _DOUBLE,  # cpu_saturated / cpu_recovered
            "traceback": {"type": "text"},  # events are few: searching tracebacks for "KeyError" is worth it
            "details": _free_form(flattened),
        }
    raise ValueError(f"unknown index family {family!r}")


def family_mappings(family: str, flattened: str | bool = True) -> dict[str, Any]:
    """The mapping an index of this family gets (as in the index template, without the shared component)."""
    return {
        # false, not strict: a field written by a newer locust-sink (or a typo) stays in _source instead of
        # rejecting the whole document; it simply is not searchable until a schema adds it.
        "dynamic": False,
        "_meta": {"managed_by": MANAGED_BY, "family": family, "schema_version": SCHEMA_VERSION},
        "properties": _family_properties(family, flattened),
    }


def template_bodies(
    prefix: str,
    replicas: int = 0,
    flattened: str | bool = True,
    ilm_policy: str | None = None,
    flavor: str = "elasticsearch",
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Everything to install: `{key: (kind, body)}`, kind `component` or `index`, components first.

    `flattened`: the free-form fields' type (`_free_form`); `flavor` "opensearch": the index templates do not
    list `@custom` as optional (OpenSearch has no `ignore_missing_component_templates`: install_templates
    creates it empty instead). The bodies carry `version` and `_meta` (with a fingerprint of the rest).
    """
    if replicas < 0:
        raise ValueError("replicas must be >= 0")
    settings_name, mappings_name = settings_component_name(prefix), mappings_component_name(prefix)
    raw: list[tuple[str, str, dict[str, Any]]] = [
        (
            "component",
            settings_name,
            {
                "template": {
                    "settings": {
                        "index": {
                            "number_of_shards": 1,
                            "number_of_replicas": replicas,
                            "refresh_interval": REFRESH_INTERVAL,
                            # a malformed value (e.g. a string in a number field) is skipped and listed in
                            # `_ignored` instead of rejecting the document: recording must not lose requests.
                            "mapping": {"ignore_malformed": True},
                            **({"lifecycle": {"name": ilm_policy}} if ilm_policy else {}),
                        }
                    }
                }
            },
        ),
        (
            "component",
            mappings_name,
            {"template": {"mappings": {"dynamic": False, "properties": _common_properties()}}},
        ),
    ]
    for family in FAMILIES:
        raw.append(
            (
                "index",
                index_name(prefix, family),
                {
                    "index_patterns": [f"{prefix}-{family}*"],
                    # `@custom` is the user's own, optional component template (ILM policy, shards, ...):
                    # listed last so it wins, ignored while it does not exist (ES >= 8.7, and 9.x).
                    "composed_of": [settings_name, mappings_name, custom_component_name(prefix)],
                    **(
                        {"ignore_missing_component_templates": [custom_component_name(prefix)]}
                        if flavor == "elasticsearch"
                        else {}
                    ),
                    "priority": TEMPLATE_PRIORITY,
                    "template": {"mappings": family_mappings(family, flattened)},
                },
            )
        )
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for kind, name, body in raw:
        body["version"] = SCHEMA_VERSION
        body["_meta"] = {"managed_by": MANAGED_BY, "schema_version": SCHEMA_VERSION, "fingerprint": _fingerprint(body)}
        out[name] = (kind, body)
    return out


def _fingerprint(body: dict[str, Any]) -> str:
    """Detects a parameter change (replicas, flattened fallback) within one schema version."""
    payload = {k: v for k, v in body.items() if k not in ("version", "_meta")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ REST helpers


class Rest(Protocol):
    """JSON requests to the cluster (transport.ClientRest, or a backend's `request`): RestError for an HTTP
    error; SinkTransportError when there was no answer (the caller retries later)."""

    def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any: ...


def _rest(target: Any) -> tuple[Rest, str]:
    """A Rest and the schema flavor for a backend (transport/opensearch) or an Elasticsearch client."""
    flavor = getattr(target, "schema_flavor", None)
    if flavor is not None:
        return target, flavor
    return ClientRest(target), "elasticsearch"


def _call(what: str, rest: Rest, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
    try:
        return rest.request(method, path, body, params)
    except RestError as exc:
        raise SchemaError(f"{what} failed: {exc}") from exc


def supports_field_type(target: Any, field_type: str) -> bool:
    """Capability probe: does the cluster know this mapping type? (`_simulate` stores nothing.)"""
    rest, _flavor = _rest(target)
    body = {
        "index_patterns": ["locust-sink-capability-probe*"],
        "template": {"mappings": {"properties": {"probe": {"type": field_type}}}},
    }
    try:
        rest.request("POST", "/_index_template/_simulate", body)
    except RestError as exc:
        reason = str(exc)
        if f"[{field_type}]" in reason and ("does not exist" in reason or "No handler for type" in reason):
            return False
        raise SchemaError(f"probing for the {field_type!r} field type failed: {reason}") from exc
    return True


def _get_template(rest: Rest, kind: str, name: str) -> dict[str, Any] | None:
    """The stored body, or None when missing."""
    what = "component_template" if kind == "component" else "index_template"
    try:
        resp = rest.request("GET", f"/_{what}/{name}")
    except RestError as exc:
        if exc.status == 404:
            return None
        raise SchemaError(f"reading {kind} template {name!r} failed: {exc}") from exc
    items = (resp or {}).get(f"{what}s", [])
    return next((t[what] for t in items if t["name"] == name), None)


def _put_template(rest: Rest, kind: str, name: str, body: dict[str, Any], create: bool) -> None:
    what = "component_template" if kind == "component" else "index_template"
    rest.request("PUT", f"/_{what}/{name}", body, {"create": "true" if create else "false"})


def _stored_version(stored: dict[str, Any]) -> int:
    version = stored.get("version")
    return version if isinstance(version, int) else 0


# --------------------------------------------------------------------------------------------- install


def ilm_available(target: Any) -> bool:
    """Whether the cluster has ILM (`GET _ilm/status` answers); stripped builds and OpenSearch do not."""
    rest, _flavor = _rest(target)
    try:
        rest.request("GET", "/_ilm/status")
    except RestError:
        return False
    return True


def _free_form_kind(target: Any, rest: Rest, flavor: str, flattened: bool | None, log: logging.Logger) -> str:
    if flattened is False:
        return "disabled"
    if flavor == "opensearch":
        return "flat_object"
    if flattened is None and not supports_field_type(target, "flattened"):
        log.warning("locust-sink: this Elasticsearch has no 'flattened' type; context/tags/details are stored only")
        return "disabled"
    return "flattened"


def install_templates(
    target: Any,
    prefix: str = "locust",
    replicas: int = 0,
    log: logging.Logger = logger,
    flattened: bool | None = None,
    ilm_policy: str | None = None,
) -> dict[str, str]:
    """Install or upgrade the component and index templates; safe to call at every start.

    `target`: a backend (transport.ElasticsearchBackend, opensearch.OpenSearchBackend) or an Elasticsearch
    client. Returns `{"_component_template/<name>" | "_index_template/<name>": action}` with action one of
    `created`, `upgraded from vN`, `updated` (same version, other parameters), `unchanged`,
    `kept newer vN` (plus `left alone ...` / `not installed ...` for the others when a newer schema is
    present: nothing is written then). `flattened=None` probes the cluster (Elasticsearch).
    Raises SchemaError with the cluster's reason; SinkTransportError when the cluster did not answer.
    """
    rest, flavor = _rest(target)
    free_form = _free_form_kind(target, rest, flavor, flattened, log)
    if ilm_policy and not ilm_available(target):
        log.warning(
            "locust-sink: this cluster has no ILM (index lifecycle management); --es-ilm-policy %r is "
            "ignored and the indices are kept until deleted",
            ilm_policy,
        )
        ilm_policy = None
    wanted = template_bodies(prefix, replicas=replicas, flattened=free_form, ilm_policy=ilm_policy, flavor=flavor)
    stored = {name: _get_template(rest, kind, name) for name, (kind, _) in wanted.items()}

    def key(name: str) -> str:
        return f"_{wanted[name][0]}_template/{name}"

    # A newer locust-sink owns the schema: leave all of it alone (mixing versions could break composition).
    newest = max((_stored_version(s) for s in stored.values() if s is not None), default=0)
    if newest > SCHEMA_VERSION:
        log.warning(
            "locust-sink: templates for prefix %r have schema v%d, newer than this locust-sink's v%d; "
            "leaving them unchanged (upgrade locust-sink to get matching templates)",
            prefix,
            newest,
            SCHEMA_VERSION,
        )
        result: dict[str, str] = {}
        for name, current in stored.items():
            if current is None:
                result[key(name)] = f"not installed (newer schema v{newest} present)"
            elif _stored_version(current) > SCHEMA_VERSION:
                result[key(name)] = f"kept newer v{_stored_version(current)}"
            else:
                result[key(name)] = f"left alone (newer schema v{newest} present)"
        return result

    result = {}
    if flavor == "opensearch":
        result.update(_ensure_custom_component(rest, prefix))
    for name, (kind, body) in wanted.items():
        current = stored[name]
        if current is None:
            action, create = "created", True
        elif _stored_version(current) < SCHEMA_VERSION:
            action, create = f"upgraded from v{_stored_version(current)}", False
            log.info("locust-sink: upgrading %s template %s to schema v%d", kind, name, SCHEMA_VERSION)
        elif (current.get("_meta") or {}).get("fingerprint") != body["_meta"]["fingerprint"]:
            action, create = "updated", False
        else:
            result[key(name)] = "unchanged"
            continue
        try:
            _put_template(rest, kind, name, body, create=create)
        except RestError as exc:
            if create and "already exists" in str(exc):
                action = "unchanged (created concurrently)"  # another node installed the same schema
            else:
                raise SchemaError(f"installing {kind} template {name!r} failed: {exc}") from exc
        result[key(name)] = action
    return result


def _ensure_custom_component(rest: Rest, prefix: str) -> dict[str, str]:
    """OpenSearch: the user's `@custom` component must exist before an index template composes it; create it
    empty once (`create=true` never overwrites what the user put there)."""
    name = custom_component_name(prefix)
    try:
        rest.request("PUT", f"/_component_template/{name}", {"template": {}}, {"create": "true"})
    except RestError as exc:
        if "already exists" in str(exc):
            return {f"_component_template/{name}": "unchanged (yours)"}
        raise SchemaError(f"creating the empty component template {name!r} failed: {exc}") from exc
    return {f"_component_template/{name}": "created empty (yours to fill)"}


def create_indices(
    target: Any,
    prefix: str = "locust",
    log: logging.Logger = logger,
    flattened: bool | None = None,
    ilm_policy: str | None = None,
) -> dict[str, str]:
    """Create the four indices if missing (after install_templates) so the first bulks do not race on auto-create.

    An existing index created by an older schema gets the additive mapping changes (plain indices never roll
    over, so a template upgrade alone would not reach them). Returns `{index: action}`: `created`, `exists`,
    `mapping upgraded from vN`, `exists (newer schema vN)`, or `exists (not from locust-sink templates)`.
    """
    rest, _flavor = _rest(target)
    result: dict[str, str] = {}
    for family in FAMILIES:
        name = index_name(prefix, family)
        try:
            rest.request("PUT", f"/{name}")
            result[name] = "created"
            continue
        except RestError as exc:
            if exc.error_type != "resource_already_exists_exception":
                raise SchemaError(f"creating index {name!r} failed: {exc}") from exc
        result[name] = _check_existing(target, name, family, log, flattened)
    return result


def _check_existing(target: Any, name: str, family: str, log: logging.Logger, flattened: bool | None) -> str:
    rest, flavor = _rest(target)
    resp = _call(f"reading the mapping of {name!r}", rest, "GET", f"/{name}/_mapping")
    # `name` may be an alias: take whichever concrete index answered.
    mappings = next(iter(resp.values()), {}).get("mappings", {}) if resp else {}
    meta = mappings.get("_meta") or {}
    if meta.get("managed_by") != MANAGED_BY:
        log.warning(
            "locust-sink: index %r exists but was not created from locust-sink templates; field types may differ "
            "(delete it, or use another --es-index-prefix)",
            name,
        )
        return "exists (not from locust-sink templates)"
    version = meta.get("schema_version") if isinstance(meta.get("schema_version"), int) else 0
    if version > SCHEMA_VERSION:
        return f"exists (newer schema v{version})"
    if version == SCHEMA_VERSION:
        return "exists"
    new = family_mappings(family, _free_form_kind(target, rest, flavor, flattened, log))
    properties = {**_common_properties(), **new["properties"]}
    body = {"dynamic": new["dynamic"], "_meta": new["_meta"], "properties": properties}
    try:
        rest.request("PUT", f"/{name}/_mapping", body)
    except RestError as exc:
        log.warning("locust-sink: could not upgrade the mapping of %r to schema v%d: %s", name, SCHEMA_VERSION, exc)
        return f"exists (mapping v{version}; upgrade failed: {exc})"
    return f"mapping upgraded from v{version}"
