"""Small helpers shared by the tests (no fixtures here: see conftest.py)."""

from __future__ import annotations

import socket
from typing import Any

from elasticsearch import Elasticsearch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def es_client(url: str, **kwargs: Any) -> Elasticsearch:
    kwargs.setdefault("request_timeout", 30)
    return Elasticsearch(url, **kwargs)


def count(es: Elasticsearch, index: str, query: dict | None = None) -> int:
    es.indices.refresh(index=index)
    return es.count(index=index, query=query or {"match_all": {}})["count"]
