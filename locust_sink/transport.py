"""Elasticsearch through the official client: construction, server checks, `_bulk`, error classification.

`ElasticsearchBackend` is what the delivery engine talks to (delivery/link.py): `check()` and `bulk(body)`,
both raising only `SinkTransportError`. Another cluster product plugs in with an object of the same shape.
Retries are decided by the caller (delivery/retry.py); this module only classifies what happened.
No Locust import here: the `locust-sink` CLI uses this module too.
"""

from __future__ import annotations

from typing import Any

import elastic_transport
import elasticsearch
from elasticsearch import Elasticsearch
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer

from .bulk import RETRYABLE_STATUS, TEMPORARY_ERRORS, ErrorKind, SinkTransportError
from .config import EsConfig, redact_url, url_problem
from .rest import BULK_FILTER_PATH, NO_ERRORS_PREFIX, RestError, error_type, is_opensearch


class SinkSerializer(OrjsonSerializer):
    """orjson, and one shortcut: a bulk response (filtered with BULK_FILTER_PATH, so `errors` comes first)
    that reports no errors is not parsed item by item: parsing a thousand `{"create":{"status":201}}` items
    costs the load test's CPU (and garbage collections) to learn nothing that `"errors":false` did not say."""

    def loads(self, data: bytes) -> Any:
        if data[:16] == NO_ERRORS_PREFIX:
            return {"errors": False}
        return super().loads(data)


class BulkBodySerializer(NdjsonSerializer):
    """NDJSON that passes an already encoded bulk body through as it is (the client's own serializer copies
    every body into a growing bytearray and back: two copies of a ~300 kB body per request)."""

    def dumps(self, data: Any) -> bytes:
        if type(data) is bytes and data.endswith(b"\n"):
            return data
        return super().dumps(data)


def make_client(config: EsConfig) -> Elasticsearch:
    """An `Elasticsearch` client that does no retries of its own: the sink decides (and counts) them."""
    if not config.urls:
        raise ValueError("no Elasticsearch URL given")
    for url in config.urls:
        problem = url_problem(url)
        if problem:
            raise ValueError(problem)
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
            ErrorKind.TLS,
            f"TLS failure talking to Elasticsearch ({_short(exc)}); check the URL scheme, --es-ca-certs "
            "or --es-verify-certs",
        )
    if isinstance(exc, (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout)):
        return SinkTransportError(ErrorKind.UNREACHABLE, f"Elasticsearch unreachable: {_short(exc)}")
    if isinstance(exc, elasticsearch.UnsupportedProductError):
        what = "OpenSearch" if is_opensearch(exc.body) else "not Elasticsearch"
        return SinkTransportError(
            ErrorKind.PRODUCT,
            f"the server is {what}, which the official Elasticsearch client refuses: use --es-backend opensearch "
            "(or auto) with pip install 'locust-sink[opensearch]'",
        )
    if isinstance(exc, elasticsearch.ApiError):
        status = exc.meta.status if exc.meta is not None else None
        err_type = error_type(exc.body)
        if err_type in TEMPORARY_ERRORS:
            return SinkTransportError(
                ErrorKind.OVERLOADED, f"Elasticsearch refuses writes for now ({status} {_reason(exc.body)})", status
            )
        if status in (401, 403):
            what = "authentication failed (401)" if status == 401 else "permission denied (403)"
            return SinkTransportError(
                ErrorKind.AUTH, f"Elasticsearch {what}: check --es-username/--es-password or --es-api-key", status
            )
        if err_type == "media_type_header_exception" or (status == 400 and "compatible-with" in str(exc.body)):
            return SinkTransportError(ErrorKind.VERSION, version_mismatch_message(), status)
        if status == 413:
            return SinkTransportError(ErrorKind.TOO_LARGE, "Elasticsearch refused the bulk request as too large", 413)
        if status in RETRYABLE_STATUS:
            return SinkTransportError(ErrorKind.OVERLOADED, f"Elasticsearch answered {status} ({err_type})", status)
        return SinkTransportError(ErrorKind.BAD_REQUEST, f"Elasticsearch answered {status}: {_short(exc)}", status)
    if isinstance(exc, ValueError):  # the client refuses a setting (a URL, a CA bundle)
        return SinkTransportError(ErrorKind.CONFIG, f"bad Elasticsearch settings: {_short(exc)}")
    return SinkTransportError(ErrorKind.INTERNAL, f"unexpected failure: {type(exc).__name__}: {exc}")


def version_mismatch_message(server_version: str | None = None) -> str:
    server = f"Elasticsearch {server_version}" if server_version else "this Elasticsearch"
    return (
        f"the installed elasticsearch client {elasticsearch.__versionstr__} cannot talk to {server}: "
        "client 9.x only talks to Elasticsearch 9; for Elasticsearch 8 run "
        "`pip install 'elasticsearch>=8.19,<9'` (client 8.19 talks to both 8 and 9)"
    )


def _reason(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return f"{error.get('type')}: {str(error.get('reason'))[:300]}"
    return str(body)[:300]


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
            raise SinkTransportError(ErrorKind.VERSION, version_mismatch_message(version))
    return version


def bulk_request(es: Elasticsearch, body: bytes) -> dict[str, Any]:
    """One `_bulk` request with an encoded body; its (filtered) result, or SinkTransportError."""
    try:
        resp = es.bulk(operations=body, filter_path=BULK_FILTER_PATH)
    except Exception as exc:
        raise classify(exc) from exc
    return resp.body if hasattr(resp, "body") else resp


class ClientRest:
    """JSON requests through the official client (`perform_request`): RestError for an HTTP error,
    SinkTransportError when the request did not get an answer."""

    def __init__(self, client: Elasticsearch) -> None:
        self.client = client

    def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        try:
            return self.client.perform_request(method, path, body=body, params=params, headers=headers).body
        except elasticsearch.ApiError as exc:
            raise RestError(exc.meta.status if exc.meta is not None else None, exc.body) from exc
        except Exception as exc:
            raise classify(exc) from exc


class ElasticsearchBackend:
    """An Elasticsearch cluster through the official client: what the delivery engine (delivery/link.py:
    `check`, `bulk`), the schema (`request`, `schema_flavor`) and the CLI use."""

    product = "Elasticsearch"
    schema_flavor = "elasticsearch"  # schema.FLAVORS: `flattened`, an optional @custom component
    max_free_form_leaf: int | None = None  # `flattened` skips long leaves itself (ignore_above)

    def __init__(self, config: EsConfig) -> None:
        self.config = config
        self.client = make_client(config)  # ValueError for a setting the client cannot use
        self._rest = ClientRest(self.client)

    def describe(self) -> str:
        return f"{self.product} at {', '.join(redact_url(u) for u in self.config.urls)}"

    def check(self) -> str | None:
        """Reachable, authenticated, a major the client can talk to; the server's version."""
        return check_server(self.client)

    def bulk(self, body: bytes) -> dict[str, Any]:
        return bulk_request(self.client, body)

    def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        return self._rest.request(method, path, body, params)


def connect(config: EsConfig) -> Any:
    """The backend for `config.backend`: Elasticsearch, OpenSearch, or (`auto`) whichever the server says it
    is. The official client refuses anything that is not Elasticsearch (its product check) with the server's
    own `GET /` answer in hand: `version.distribution == "opensearch"` picks the OpenSearch backend."""
    if config.backend == "opensearch":
        return _opensearch(config)
    backend = ElasticsearchBackend(config)
    if config.backend == "elasticsearch":
        return backend
    try:
        backend.client.perform_request("GET", "/", headers={"accept": "application/json"})
    except elasticsearch.UnsupportedProductError as exc:
        if is_opensearch(exc.body):
            return _opensearch(config)
        raise classify(exc) from exc
    except elasticsearch.ApiError:
        pass  # e.g. 405 from a stripped Elasticsearch build: it is Elasticsearch (the product header said so)
    except Exception as exc:
        raise classify(exc) from exc
    return backend


def _opensearch(config: EsConfig) -> Any:
    try:
        from .opensearch import OpenSearchBackend
    except ImportError as exc:
        raise SinkTransportError(
            ErrorKind.CONFIG,
            f"the server is OpenSearch, which needs opensearch-py: pip install 'locust-sink[opensearch]' ({exc})",
        ) from None
    return OpenSearchBackend(config)
