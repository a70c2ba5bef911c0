"""`locust-sink runs`: the recorded runs, newest first, one line each (from Elasticsearch or a results root)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .files import last_run_document, run_folders
from .requests import epoch

RUN_SOURCE = ["run_id", "start_time", "duration_s", "users", "totals", "tags", "status", "exit_code", "end_time"]


def summary(doc: dict[str, Any], fallback_id: str = "") -> dict[str, Any]:
    totals = doc.get("totals") or {}
    requests = totals.get("requests")
    failures = totals.get("failures")
    status = doc.get("status") or "unknown"
    if status == "running" and "end_time" not in doc:
        status = "running (or died)"
    return {
        "run_id": doc.get("run_id") or fallback_id,
        "start": epoch(doc.get("start_time")),
        "duration_s": doc.get("duration_s"),
        "users": doc.get("users"),
        "requests": requests,
        "failure_pct": round(100.0 * failures / requests, 3) if requests else None,
        "p95": totals.get("p95"),
        "tags": doc.get("tags"),
        "status": status,
    }


def from_es(source: Any, prefix: str, limit: int) -> list[dict[str, Any]]:
    """The runs of `<prefix>-runs`; `source` as for `es.read_es_run`."""
    from .es import refresh
    from .search import search_for

    es = search_for(source)
    refresh(es, prefix)
    body = {"size": limit, "sort": [{"start_time": {"order": "desc", "unmapped_type": "date"}}], "_source": RUN_SOURCE}
    resp = es.search(f"{prefix}-runs", body, ignore_unavailable=True, allow_no_indices=True)
    return [summary(hit["_source"], hit["_id"]) for hit in resp["hits"]["hits"]]


def from_folder(root: Path, limit: int) -> list[dict[str, Any]]:
    rows = []
    for folder in run_folders(root):
        doc = last_run_document(folder) or {}
        row = summary(doc, folder.name)
        row["folder"] = str(folder)
        rows.append(row)
    rows.sort(key=lambda r: (r["start"] or 0.0, r["run_id"]), reverse=True)
    return rows[:limit]
