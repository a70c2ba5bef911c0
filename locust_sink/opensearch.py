"""OpenSearch through `opensearch-py` (`pip install 'locust-sink[opensearch]'`): the same Backend shape as
transport.ElasticsearchBackend (`check`, `bulk`, `request`, `describe`), so the delivery engine, the schema
and the CLI work unchanged. What differs is measured in docs/opensearch.md: no `flattened` (`flat_object`,
without options, so long free-form leaves are cut before sending), no `ignore_missing_component_templates`,
`GET /` answers with `version.distribution == "opensearch"`, and opensearch-py takes a `timeout` query
parameter as its socket timeout unless `request_timeout` is given too.
No Locust import here.
"""

from __future__ import annotations

import logging
from typing import Any

import opensearchpy
import orjson
from opensearchpy import OpenSearch
from opensearchpy.serializer import JSONSerializer

from .bulk import RETRYABLE_STATUS, TEMPORARY_ERRORS, ErrorKind, SinkTransportError
from .config import EsConfig, redact_url, url_problem
from .rest import BULK_FILTER_PATH, NO_ERRORS_PREFIX, RestError, is_opensearch, reason_of

# opensearch-py logs every request (INFO) and every HTTP error (WARNING, e.g. an expected "already exists"):
# the sink says itself, once and clearly, what went wrong
logging.getLogger("opensearch").setLevel(logging.ERROR)

FREE_FORM_LEAF_CHARS = 1024  # flat_object has no ignore_above; Lucene refuses terms over 32,766 bytes


class _Serializer(JSONSerializer):
    """orjson for what the client parses, and no item-by-item parsing of an error-free bulk response."""

    def loads(self, s: Any) -> Any:
        raw = s.encode() if isinstance(s, str) else s
        if raw[:16] == NO_ERRORS_PREFIX:
            return {"errors": False}
        return orjson.loads(raw)


def make_client(config: EsConfig) -> OpenSearch:
    """An opensearch-py client that does no retries of its own: the sink decides (and counts) them."""
    for url in config.urls:
        problem = url_problem(url)
        if problem:
            raise ValueError(problem)
    if config.api_key:
        raise ValueError("OpenSearch takes no Elasticsearch API key: use --es-username / --es-password")
    kwargs: dict[str, Any] = {
        "timeout": config.request_timeout,
        "max_retries": 0,
        "retry_on_timeout": False,
        "verify_certs": config.verify_certs,
        "serializer": _Serializer(),
    }
    if not config.verify_certs:
        kwargs["ssl_show_warn"] = False
    if config.ca_certs:
        kwargs["ca_certs"] = config.ca_certs
    if config.username or config.password:
        kwargs["http_auth"] = (config.username or "", config.password or "")
    return OpenSearch(hosts=list(config.urls), **kwargs)


def classify(exc: BaseException) -> SinkTransportError:
    """Turn any opensearch-py exception into one clear SinkTransportError."""
    if isinstance(exc, SinkTransportError):
        return exc
    if isinstance(exc, opensearchpy.SSLError):
        return SinkTransportError(
            ErrorKind.TLS,
            f"TLS failure talking to OpenSearch ({_short(exc)}); check the URL scheme, --es-ca-certs "
            "or --es-verify-certs",
        )
    if isinstance(exc, opensearchpy.ConnectionError):  # ConnectionTimeout too
        return SinkTransportError(ErrorKind.UNREACHABLE, f"OpenSearch unreachable: {_short(exc)}")
    if isinstance(exc, opensearchpy.TransportError):
        status = exc.status_code if isinstance(exc.status_code, int) else None
        body = exc.info if isinstance(exc.info, dict) else None
        err_type = body["error"].get("type") if body and isinstance(body.get("error"), dict) else None
        if err_type in TEMPORARY_ERRORS:
            return SinkTransportError(
                ErrorKind.OVERLOADED, f"OpenSearch refuses writes for now ({status} {reason_of(body)})", status
            )
        if status in (401, 403):
            what = "authentication failed (401)" if status == 401 else "permission denied (403)"
            return SinkTransportError(ErrorKind.AUTH, f"OpenSearch {what}: check --es-username/--es-password", status)
        if status == 413:
            return SinkTransportError(ErrorKind.TOO_LARGE, "OpenSearch refused the bulk request as too large", 413)
        if status in RETRYABLE_STATUS:
            return SinkTransportError(ErrorKind.OVERLOADED, f"OpenSearch answered {status} ({err_type})", status)
        return SinkTransportError(ErrorKind.BAD_REQUEST, f"OpenSearch answered {status}: {_short(exc)}", status)
    if isinstance(exc, (ValueError, opensearchpy.ImproperlyConfigured)):
        return SinkTransportError(ErrorKind.CONFIG, f"bad OpenSearch settings: {_short(exc)}")
    return SinkTransportError(ErrorKind.INTERNAL, f"unexpected failure: {type(exc).__name__}: {exc}")


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:300] + "..."


class OpenSearchBackend:
    """An OpenSearch cluster through opensearch-py."""

    product = "OpenSearch"
    schema_flavor = "opensearch"  # schema.FLAVORS: `flat_object`, the @custom component created empty
    max_free_form_leaf: int | None = FREE_FORM_LEAF_CHARS

    def __init__(self, config: EsConfig) -> None:
        self.config = config
        self.client = make_client(config)
        self.version: str | None = None

    def describe(self) -> str:
        return f"{self.product} at {', '.join(redact_url(u) for u in self.config.urls)}"

    def check(self) -> str | None:
        """Reachable, authenticated, really OpenSearch; the server's version."""
        root = self.request("GET", "/")
        if not is_opensearch(root):
            raise SinkTransportError(
                ErrorKind.PRODUCT, "the server is not OpenSearch: use --es-backend elasticsearch (or auto)"
            )
        self.request("GET", "/_cluster/health", params={"timeout": "5s"})
        self.version = str(root["version"].get("number"))
        return self.version

    def bulk(self, body: bytes) -> dict[str, Any]:
        try:
            return self.client.bulk(body=body, params={"filter_path": BULK_FILTER_PATH})
        except Exception as exc:
            raise classify(exc) from exc

    def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        """One JSON request: RestError for an HTTP error, SinkTransportError when there was no answer."""
        query = dict(params or {})
        query["request_timeout"] = self.config.request_timeout  # else a `timeout` parameter is taken as it
        try:
            return self.client.transport.perform_request(method, path, params=query, body=body)
        except opensearchpy.TransportError as exc:
            if isinstance(exc.status_code, int):
                raise RestError(exc.status_code, exc.info) from exc
            raise classify(exc) from exc
        except Exception as exc:
            raise classify(exc) from exc
