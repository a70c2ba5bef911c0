"""Comparisons between what landed (ES or NDJSON files) and Locust's own final stats (--json-file)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson

Key = tuple[str, str, bool]


def locust_truth(json_path: Path) -> dict[str, Any]:
    """Per (method, name): requests, failures, sum of response times and content lengths."""
    entries = json.loads(json_path.read_text())
    truth: dict[str, Any] = {"counts": Counter(), "rt_sum": defaultdict(float), "len_sum": defaultdict(int)}
    for e in entries:
        key = (e["method"], e["name"])
        truth["counts"][(*key, True)] = e["num_requests"] - e["num_failures"]
        truth["counts"][(*key, False)] = e["num_failures"]
        truth["rt_sum"][key] = e["total_response_time"]
        truth["len_sum"][key] = e["total_content_length"]
    truth["counts"] = +truth["counts"]  # drop zero entries
    return truth


def es_landed(es: Any, index: str, run_id: str | None = None) -> dict[str, Any]:
    """The same figures from the request documents in ES, with one composite aggregation."""
    es.indices.refresh(index=index)
    query = {"term": {"run_id": run_id}} if run_id else {"match_all": {}}
    landed: dict[str, Any] = {"counts": Counter(), "rt_sum": defaultdict(float), "len_sum": defaultdict(int)}
    after = None
    while True:
        comp: dict[str, Any] = {
            "size": 500,
            "sources": [
                {"t": {"terms": {"field": "request_type"}}},
                {"n": {"terms": {"field": "name"}}},
                {"s": {"terms": {"field": "success"}}},
            ],
        }
        if after:
            comp["after"] = after
        resp = es.search(
            index=index,
            size=0,
            query=query,
            aggs={
                "g": {
                    "composite": comp,
                    "aggs": {"rt": {"sum": {"field": "response_time"}}, "len": {"sum": {"field": "response_length"}}},
                }
            },
        )
        agg = resp["aggregations"]["g"]
        for b in agg["buckets"]:
            k = b["key"]
            success = k["s"] in (True, 1, "true")
            landed["counts"][(k["t"], k["n"], success)] += b["doc_count"]
            landed["rt_sum"][(k["t"], k["n"])] += b["rt"]["value"]
            landed["len_sum"][(k["t"], k["n"])] += int(b["len"]["value"])
        after = agg.get("after_key")
        if not agg["buckets"] or not after:
            break
    return landed


def file_landed(paths: list[Path]) -> tuple[dict[str, Any], set[str], int]:
    """Figures from NDJSON bulk files; also the run ids seen and the number of duplicate ids."""
    landed: dict[str, Any] = {"counts": Counter(), "rt_sum": defaultdict(float), "len_sum": defaultdict(int)}
    run_ids: set[str] = set()
    ids: Counter = Counter()
    for path in paths:
        lines = path.read_bytes().splitlines()
        for action, source in zip(lines[0::2], lines[1::2], strict=True):
            meta = next(iter(orjson.loads(action).values()))
            if not meta["_index"].endswith("-requests"):
                continue
            ids[meta["_id"]] += 1
            doc = orjson.loads(source)
            run_ids.add(doc["run_id"])
            key = (doc["request_type"], doc["name"])
            landed["counts"][(*key, doc["success"])] += 1
            landed["rt_sum"][key] += doc["response_time"]
            landed["len_sum"][key] += doc["response_length"]
    duplicates = sum(n - 1 for n in ids.values() if n > 1)
    return landed, run_ids, duplicates


def assert_matches(truth: dict[str, Any], landed: dict[str, Any]) -> None:
    assert dict(landed["counts"]) == dict(truth["counts"])
    for key, total in truth["rt_sum"].items():
        # ES sums floats as doubles; Locust sums the same floats: equal up to rounding
        assert abs(landed["rt_sum"][key] - total) <= max(0.01, 1e-6 * total), key
    assert dict(landed["len_sum"]) == {k: v for k, v in truth["len_sum"].items() if v or k in landed["len_sum"]}
