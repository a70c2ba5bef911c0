"""Series, status-code and event columns on the report's time axis (layouts in `model.py`)."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Mapping
from typing import Any

from . import histogram as h
from .model import EVENT_COLUMNS, SERIES_COLUMNS, TOTAL
from .requests import RequestFigures, epoch
from .series import Series, Window

MAX_STATUS_POINTS = 240


def window_row(w: Window) -> dict[str, Any]:
    pct = h.percentiles(w.hist, w.valid, (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)))
    return {
        "t": round(w.end * 1000),
        "t0": round(w.start * 1000),
        "rps": round(w.requests / w.seconds, 3),
        "fail_s": round(w.failures / w.seconds, 3),
        "requests": w.requests,
        "failures": w.failures,
        "p50": pct["p50"],
        "p95": pct["p95"],
        "p99": pct["p99"],
        "avg": round(w.total_rt / w.valid, 3) if w.valid else 0.0,
        "users": w.users,
    }


def columns(rows: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, list]:
    return {name: [row[name] for row in rows] for name in names}


def build_series(series: Mapping[str, Series], start: float | None) -> tuple[dict[str, dict[str, list]], float]:
    """Columns per series key, and the median window length in seconds (of Total, or of any series)."""
    out: dict[str, dict[str, list]] = {}
    lengths: list[float] = []
    for key, s in series.items():
        windows = s.windows(start)
        out[key] = columns([window_row(w) for w in windows], SERIES_COLUMNS)
        if key == TOTAL or not lengths:
            lengths = sorted(w.seconds for w in windows)
    return out, (lengths[len(lengths) // 2] if lengths else 0.0)


def status_columns(requests: RequestFigures, total: Mapping[str, list] | None) -> dict[str, list]:
    """Requests per second per HTTP status, on Total's windows (or evenly spaced ones without snapshots)."""
    if not requests.status:
        return {"t": [], "t0": []}
    size = requests.status_bucket_s
    buckets = sorted(requests.status)
    if total and total.get("t"):
        edges = [(t0 / 1000.0, t / 1000.0) for t0, t in zip(total["t0"], total["t"], strict=True)]
    else:
        first, last = buckets[0] * size, (buckets[-1] + 1) * size
        step = max(size, (last - first) / MAX_STATUS_POINTS)
        n = max(1, int((last - first) / step + 0.999))
        edges = [(first + i * step, min(last, first + (i + 1) * step)) for i in range(n)]
    codes = sorted({code for counts in requests.status.values() for code in counts})
    starts = [b * size for b in buckets]
    rows: list[Counter] = []
    for lo, hi in edges:
        counts: Counter = Counter()
        # a bucket belongs to the window its start falls in; the last window also takes what is at its end
        i = bisect.bisect_left(starts, lo)
        while i < len(starts) and (starts[i] < hi or (hi == edges[-1][1] and starts[i] <= hi)):
            counts.update(requests.status[buckets[i]])
            i += 1
        rows.append(counts)
    out: dict[str, list] = {"t": [round(hi * 1000) for _, hi in edges], "t0": [round(lo * 1000) for lo, _ in edges]}
    for code in codes:
        out[f"s{code}"] = [
            round(c.get(code, 0) / max(hi - lo, 1e-9), 3) for c, (lo, hi) in zip(rows, edges, strict=True)
        ]
    return out


def event_columns(events: list[dict[str, Any]]) -> dict[str, list]:
    rows = []
    for doc in events:
        t = epoch(doc.get("@timestamp"))
        if t is None:
            continue
        message = doc.get("message") or doc.get("event")
        if doc.get("user_count") is not None and doc.get("event") in ("user_count", "spawning_complete", "test_start"):
            message = f"{doc.get('event')}: {doc.get('user_count')} users"
        rows.append({"t": round(t * 1000), "event": doc.get("event"), "node": doc.get("node"), "message": message})
    rows.sort(key=lambda r: r["t"])
    return columns(rows, EVENT_COLUMNS)
