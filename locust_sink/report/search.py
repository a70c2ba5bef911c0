"""The few read calls the report's cluster source makes, through either official client.

`es.py` and `runs.py` send REST bodies (the JSON of `_search`) and read plain dicts back; this module turns
them into calls of the client the backend was built with: the `elasticsearch` client (`search(body=...)`,
`options(ignore_status=404).get`) or `opensearch-py` (`search(body=..., params=...)`, `get(..., ignore=404)`).
Which one is decided by `transport.connect` (the server's `GET /` answer or `--es-backend`), never here.
Every failure of a read becomes a `SourceError`: one line for the user, the cluster's own reason in it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

from ..rest import reason_of
from .source_error import SourceError

SCROLL_KEEP = "2m"


class Search(Protocol):
    """What the report reads a cluster with; `params` are the endpoint's query parameters."""

    product: str

    def search(self, index: str, body: dict[str, Any], **params: Any) -> dict[str, Any]: ...

    def get_source(self, index: str, doc_id: str) -> dict[str, Any] | None: ...

    def scroll(self, scroll_id: str) -> dict[str, Any]: ...

    def clear_scroll(self, scroll_id: str) -> None: ...

    def refresh(self, index: str) -> None: ...


def _failed(product: str, what: str, exc: Exception) -> SourceError:
    info = getattr(exc, "info", None) or getattr(exc, "body", None)
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "meta", None), "status", None)
    reason = reason_of(info) if isinstance(info, dict) else str(exc)[:300]
    prefix = f"HTTP {status} " if isinstance(status, int) else ""
    return SourceError(f"{product} refused {what}: {prefix}{reason}")


class ElasticsearchSearch:
    """Reads through the official `elasticsearch` client."""

    product = "Elasticsearch"

    def __init__(self, client: Any) -> None:
        self.client = client

    def search(self, index: str, body: dict[str, Any], **params: Any) -> dict[str, Any]:
        try:
            return dict(self.client.search(index=index, body=body, **params))
        except Exception as exc:
            raise _failed(self.product, f"a search of {index}", exc) from exc

    def get_source(self, index: str, doc_id: str) -> dict[str, Any] | None:
        try:
            found = self.client.options(ignore_status=404).get(index=index, id=doc_id)
        except Exception as exc:
            raise _failed(self.product, f"reading {index}/{doc_id}", exc) from exc
        return dict(found["_source"]) if found.get("found") else None

    def scroll(self, scroll_id: str) -> dict[str, Any]:
        try:
            return dict(self.client.scroll(scroll_id=scroll_id, scroll=SCROLL_KEEP))
        except Exception as exc:
            raise _failed(self.product, "a scroll", exc) from exc

    def clear_scroll(self, scroll_id: str) -> None:
        with contextlib.suppress(Exception):  # the scroll expires by itself
            self.client.clear_scroll(scroll_id=scroll_id)

    def refresh(self, index: str) -> None:
        self.client.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)


class OpenSearchSearch:
    """Reads through `opensearch-py` (its API methods take the body and query parameters as they are)."""

    product = "OpenSearch"

    def __init__(self, client: Any) -> None:
        self.client = client

    def search(self, index: str, body: dict[str, Any], **params: Any) -> dict[str, Any]:
        try:
            return dict(self.client.search(index=index, body=body, params=_query(params)))
        except Exception as exc:
            raise _failed(self.product, f"a search of {index}", exc) from exc

    def get_source(self, index: str, doc_id: str) -> dict[str, Any] | None:
        try:
            found = self.client.get(index=index, id=doc_id, params={"ignore": 404})
        except Exception as exc:
            raise _failed(self.product, f"reading {index}/{doc_id}", exc) from exc
        return dict(found["_source"]) if found.get("found") else None

    def scroll(self, scroll_id: str) -> dict[str, Any]:
        try:
            return dict(self.client.scroll(body={"scroll_id": scroll_id, "scroll": SCROLL_KEEP}))
        except Exception as exc:
            raise _failed(self.product, "a scroll", exc) from exc

    def clear_scroll(self, scroll_id: str) -> None:
        with contextlib.suppress(Exception):  # the scroll expires by itself
            self.client.clear_scroll(body={"scroll_id": [scroll_id]})

    def refresh(self, index: str) -> None:
        self.client.indices.refresh(index=index, params={"ignore_unavailable": "true", "allow_no_indices": "true"})


def _query(params: dict[str, Any]) -> dict[str, Any]:
    """Query parameters as the URL needs them: opensearch-py sends a `params` dict as it is (True as `True`,
    which OpenSearch refuses: only `true` / `false`)."""
    return {k: ("true" if v else "false") if isinstance(v, bool) else v for k, v in params.items()}


def search_for(source: Any) -> Search:
    """The reader for a backend of `transport.connect` (by its `product`), or for a bare client of either
    library (the tests and the Python API pass one); a `Search` is returned as it is."""
    if isinstance(source, (ElasticsearchSearch, OpenSearchSearch)):
        return source
    product = getattr(source, "product", None)
    if product in ("Elasticsearch", "OpenSearch"):  # a backend: it holds its client
        client = source.client
    else:
        client, product = source, _client_product(source)
    return OpenSearchSearch(client) if product == "OpenSearch" else ElasticsearchSearch(client)


def _client_product(client: Any) -> str:
    module = type(client).__module__.split(".")[0]
    return "OpenSearch" if module == "opensearchpy" else "Elasticsearch"
