"""What both cluster backends (transport.py: Elasticsearch, opensearch.py: OpenSearch) share about the REST
answers they read: the `_bulk` response filter, an HTTP error with the cluster's own reason, and telling an
OpenSearch `GET /` answer apart. No client library is imported here."""

from __future__ import annotations

from typing import Any

BULK_FILTER_PATH = "errors,items.*.status,items.*.error"
NO_ERRORS_PREFIX = b'{"errors":false,'


def error_type(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("type")
    return None


class RestError(Exception):
    """The cluster answered a request with an HTTP error: `status` and its JSON `body`."""

    def __init__(self, status: int | None, body: Any) -> None:
        super().__init__(f"HTTP {status} {reason_of(body)}")
        self.status = status
        self.body = body

    @property
    def error_type(self) -> str:
        return error_type(self.body) or ""


def reason_of(body: Any) -> str:
    """The cluster's own `type: reason`, innermost cause included, rather than a client's generic message."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        parts = [f"{err.get('type')}: {err.get('reason')}"]
        cause = err.get("caused_by")
        while isinstance(cause, dict):
            parts.append(f"{cause.get('type')}: {cause.get('reason')}")
            cause = cause.get("caused_by")
        return " / caused by ".join(parts)
    return str(body)[:500]


def is_opensearch(root: Any) -> bool:
    """Whether a `GET /` answer is OpenSearch's."""
    version = root.get("version") if isinstance(root, dict) else None
    return isinstance(version, dict) and version.get("distribution") == "opensearch"
