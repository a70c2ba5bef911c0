"""Elasticsearch transport: client construction, server checks and `_bulk` with per-item results.

No Locust import here: the `locust-sink` CLI uses this module too. Retries are decided by the caller
(the flusher or the replay loop); this module only classifies what happened, so that every failure is
either retryable, a configuration problem (stop trying, spool, tell the user once) or a permanent
rejection of single documents (dead-letter with ES's reason).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import elastic_transport
import elasticsearch
import orjson
from elasticsearch import Elasticsearch
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer


class SinkSerializer(OrjsonSerializer):
    """orjson, and one shortcut: a bulk response (filtered with BULK_FILTER_PATH, so `errors` comes first)
    that reports no errors is not parsed item by item.

    Parsing 500 `{"create":{"status":201}}` items costs 0.2-0.7 ms of the load test's CPU per request
    (the objects also trigger garbage collections) to learn nothing that `"errors":false` did not say.
    """

    def loads(self, data: bytes) -> Any:
        if data[:16] == _NO_ERRORS:
            return {"errors": False}
        return super().loads(data)


class BulkBodySerializer(NdjsonSerializer):
    """NDJSON that passes an already encoded bulk body through as it is.

    The client's own NDJSON serializer copies every body into a growing bytearray and back (two copies of a
    ~300 kB body, ~0.3 ms of the load test's CPU per bulk request, sampled); ours end with a newline already.
    """

    def dumps(self, data: Any) -> bytes:
        if type(data) is bytes and data.endswith(b"\n"):
            return data
        return super().dumps(data)


_NO_ERRORS = b'{"errors":false,'
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
BULK_FILTER_PATH = "errors,items.*.status,items.*.error"
DEFAULT_CLI_ES_URL = "http://127.0.0.1:9200"  # the `locust-sink` CLI's --es-url without the flag or LOCUST_ES_URL


class BulkItem(NamedTuple):
    """One bulk operation: `op` is `create` (append-only records) or `index` (run documents).

    `action` is the encoded action line when the producer already has it (request records, lines read
    back from files): a batch can be sent, retried, spooled and replayed without re-encoding it.
    """

    op: str
    index: str
    doc_id: str | None
    source: bytes
    is_request: bool = True  # request records and other documents are accounted separately
    run_id: str = ""
    action: bytes = b""

    def action_line(self) -> bytes:
        return self.action or action_line(self.op, self.index, self.doc_id)

    def document_id(self) -> str | None:
        """The `_id`; request records leave `doc_id` None and carry it in their action line only (building
        the string per record would cost Locust's process ~0.15 µs each, and it is needed only for reports)."""
        if self.doc_id is not None or not self.action:
            return self.doc_id
        return orjson.loads(self.action)[self.op].get("_id")


_ACTION_PREFIXES: dict[tuple[str, str], bytes] = {}


def action_prefix(op: str, index: str) -> bytes:
    """`{"create":{"_index":"..."`: the constant part of an action line, built once per (op, index)."""
    prefix = _ACTION_PREFIXES.get((op, index))
    if prefix is None:
        prefix = _ACTION_PREFIXES[(op, index)] = orjson.dumps({op: {"_index": index}})[:-2]
    return prefix


def action_line(op: str, index: str, doc_id: str | None) -> bytes:
    """`{"create":{"_index":...,"_id":...}}` (this runs once per record, so the prefix is cached)."""
    if doc_id is None:
        return action_prefix(op, index) + b"}}"
    return action_prefix(op, index) + b',"_id":' + orjson.dumps(doc_id) + b"}}"


@dataclass
class BulkOutcome:
    """Per-item result of one `_bulk` request."""

    indexed: list[BulkItem] = field(default_factory=list)
    retry: list[BulkItem] = field(default_factory=list)
    rejected: list[tuple[BulkItem, int, Any]] = field(default_factory=list)  # (item, status, error)
    retry_statuses: dict[int, int] = field(default_factory=dict)


class SinkTransportError(Exception):
    """A whole `_bulk` (or check) request failed.

    kind: `unreachable` (connection refused/reset, DNS, timeout), `overloaded` (429/5xx), `auth` (401/403),
    `tls`, `version` (client/server majors do not fit), `product` (not Elasticsearch), `too_large` (413),
    `bad_request` (other 4xx).
    """

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.kind in ("unreachable", "overloaded")

    @property
    def config_problem(self) -> bool:
        return self.kind in ("auth", "tls", "version", "product")


@dataclass
class EsConfig:
    """Connection settings; secrets stay in here and are never part of `describe()`."""

    urls: list[str]
    username: str | None = None
    password: str | None = None
    api_key: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    request_timeout: float = 10.0

    def describe(self) -> str:
        return ", ".join(redact_url(u) for u in self.urls)

    def cli_args(self) -> list[str]:
        """The `locust-sink` CLI arguments that reach the same cluster, without secrets: the CLI reads a
        password or API key from LOCUST_ES_PASSWORD / LOCUST_ES_API_KEY."""
        args = ["--es-url", ",".join(redact_url(u) for u in self.urls)]
        username = self.username or next((urlsplit(u).username for u in self.urls if urlsplit(u).username), None)
        if username:
            args += ["--es-username", username]
        if self.ca_certs:
            args += ["--es-ca-certs", self.ca_certs]
        if not self.verify_certs:
            args += ["--es-verify-certs", "false"]
        return args

    def secret_env_hint(self) -> str:
        """Which environment variable the CLI needs set for the secret this config uses, if any."""
        if self.api_key:
            return " (with the API key in LOCUST_ES_API_KEY)"
        if self.password or any(urlsplit(u).password for u in self.urls):
            return " (with the password in LOCUST_ES_PASSWORD)"
        return ""

    def secrets(self) -> list[str]:
        found = [s for s in (self.password, self.api_key) if s]
        for url in self.urls:
            parts = urlsplit(url)
            if parts.password:
                found.append(parts.password)
        return found


def cli_command(*args: str) -> str:
    """A `locust-sink` command line, quoted for a POSIX shell, that runs as printed."""
    return shlex.join(["locust-sink", *args])


def split_urls(values: str | Sequence[str] | None) -> list[str]:
    """`--es-url` takes one URL, a comma-separated list, or is repeated."""
    if not values:
        return []
    if isinstance(values, str):
        values = [values]
    urls: list[str] = []
    for value in values:
        urls.extend(u.strip() for u in str(value).split(",") if u.strip())
    return urls


def redact_url(url: str) -> str:
    """The URL without user info: safe for logs and documents."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact(text: str, secrets: Sequence[str]) -> str:
    """Remove secret values (and URL user info) from a message before it is logged or stored."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return re.sub(r"(https?://)[^/@\s]+@", r"\1***@", text)


def make_client(config: EsConfig) -> Elasticsearch:
    """An `Elasticsearch` client that does no retries of its own: the sink decides (and counts) them."""
    if not config.urls:
        raise ValueError("no Elasticsearch URL given")
    for url in config.urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{redact_url(url)!r} is not an http(s)://host:port URL")
    kwargs: dict[str, Any] = {
        "request_timeout": config.request_timeout,
        "max_retries": 0,
        "retry_on_timeout": False,
        "verify_certs": config.verify_certs,
    }
    if not config.verify_certs:
        kwargs["ssl_show_warn"] = False
    if config.ca_certs:
        kwargs["ca_certs"] = config.ca_certs
    if config.api_key:
        kwargs["api_key"] = config.api_key
    elif config.username or config.password:
        kwargs["basic_auth"] = (config.username or "", config.password or "")
    # orjson for the (de)serialisation the client does itself: bulk responses are parsed ~10x faster
    serializers = {SinkSerializer.mimetype: SinkSerializer(), BulkBodySerializer.mimetype: BulkBodySerializer()}
    return Elasticsearch(config.urls, serializers=serializers, **kwargs)


def client_major() -> int:
    return int(elasticsearch.__versionstr__.split(".")[0])


def classify(exc: BaseException) -> SinkTransportError:
    """Turn any client exception into one clear SinkTransportError."""
    if isinstance(exc, SinkTransportError):
        return exc
    if isinstance(exc, elastic_transport.TlsError):
        return SinkTransportError(
            "tls",
            f"TLS failure talking to Elasticsearch ({_short(exc)}); check the URL scheme, --es-ca-certs "
            "or --es-verify-certs",
        )
    if isinstance(exc, (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout)):
        return SinkTransportError("unreachable", f"Elasticsearch unreachable: {_short(exc)}")
    if isinstance(exc, elasticsearch.UnsupportedProductError):
        return SinkTransportError(
            "product", "the server is not Elasticsearch (the official client refuses e.g. OpenSearch)"
        )
    if isinstance(exc, elasticsearch.ApiError):
        status = exc.meta.status if exc.meta is not None else None
        err_type = _error_type(exc.body)
        if status in (401, 403):
            what = "authentication failed (401)" if status == 401 else "permission denied (403)"
            return SinkTransportError(
                "auth", f"Elasticsearch {what}: check --es-username/--es-password or --es-api-key", status
            )
        if err_type == "media_type_header_exception" or (status == 400 and "compatible-with" in str(exc.body)):
            return SinkTransportError("version", version_mismatch_message(), status)
        if status == 413:
            return SinkTransportError("too_large", "Elasticsearch refused the bulk request as too large", 413)
        if status in RETRYABLE_STATUS:
            return SinkTransportError("overloaded", f"Elasticsearch answered {status} ({err_type})", status)
        return SinkTransportError("bad_request", f"Elasticsearch answered {status}: {_short(exc)}", status)
    return SinkTransportError("internal", f"unexpected failure: {type(exc).__name__}: {exc}")


def version_mismatch_message(server_version: str | None = None) -> str:
    server = f"Elasticsearch {server_version}" if server_version else "this Elasticsearch"
    return (
        f"the installed elasticsearch client {elasticsearch.__versionstr__} cannot talk to {server}: "
        "client 9.x only talks to Elasticsearch 9; for Elasticsearch 8 run "
        "`pip install 'elasticsearch>=8.19,<9'` (client 8.19 talks to both 8 and 9)"
    )


def _error_type(body: Any) -> str | None:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return err.get("type")
        return None
    return None


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:300] + "..."


def server_version(es: Elasticsearch) -> str | None:
    """The server's version from `_nodes` (the stripped test build answers 405 to `GET /`)."""
    resp = es.perform_request(
        "GET",
        "/_nodes/_local",
        params={"filter_path": "nodes.*.version"},
        headers={"accept": "application/json"},
    )
    nodes = (resp.body or {}).get("nodes") or {}
    for node in nodes.values():
        return str(node.get("version"))
    return None


def check_server(es: Elasticsearch) -> str | None:
    """Fail early and clearly: reachable, authenticated, a major the client can talk to."""
    try:
        es.cluster.health(timeout="5s")
        version = server_version(es)
    except Exception as exc:
        raise classify(exc) from exc
    if version:
        major = int(version.split(".")[0])
        if client_major() > major:
            raise SinkTransportError("version", version_mismatch_message(version))
    return version


def encode_body(items: Sequence[BulkItem]) -> bytes:
    parts: list[bytes] = []
    for item in items:
        parts.append(item.action_line())
        parts.append(item.source)
    parts.append(b"")
    return b"\n".join(parts)


def bulk_request(es: Elasticsearch, body: bytes) -> dict[str, Any]:
    """One `_bulk` request with an encoded body; its (filtered) result, or SinkTransportError."""
    try:
        resp = es.bulk(operations=body, filter_path=BULK_FILTER_PATH)
    except Exception as exc:
        raise classify(exc) from exc
    return resp.body if hasattr(resp, "body") else resp


def sort_items(items: Sequence[BulkItem], result: dict[str, Any]) -> BulkOutcome:
    """Sort the items of one `_bulk` request into indexed / retry / rejected by its result.

    A 409 on `create` means the document is already there (an earlier attempt succeeded), so it counts
    as indexed: that is what makes retries and replays idempotent.
    """
    outcome = BulkOutcome()
    if not result.get("errors"):
        outcome.indexed.extend(items)
        return outcome
    results = result.get("items") or []
    if len(results) != len(items):
        raise SinkTransportError("bad_request", "Elasticsearch answered a bulk request with a wrong item count")
    for item, entry in zip(items, results, strict=True):
        detail = next(iter(entry.values()))
        status = int(detail.get("status", 500))
        if status < 300 or (status == 409 and item.op == "create"):
            outcome.indexed.append(item)
        elif status in RETRYABLE_STATUS:
            outcome.retry.append(item)
            outcome.retry_statuses[status] = outcome.retry_statuses.get(status, 0) + 1
        else:
            outcome.rejected.append((item, status, detail.get("error")))
    return outcome


def send_bulk(es: Elasticsearch, items: Sequence[BulkItem], body: bytes | None = None) -> BulkOutcome:
    """One `_bulk` request of `items` (`body`: their encoding, if already made), sorted by sort_items."""
    if not items:
        return BulkOutcome()
    return sort_items(items, bulk_request(es, body if body is not None else encode_body(items)))
