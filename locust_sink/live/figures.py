"""What the live page's JSON route serves: the feed's windows as the report's column layouts.

`payload(feed, selected)` builds one JSON-ready dict (the layouts of `report/model.py` where they exist):

- `total`, `series`: `SERIES_COLUMNS` of Total and of the selected endpoint (or Total);
- `endpoints`: one row per endpoint, Total first: `requests` / `failures` cumulative since the start (the
  latest snapshot's, as Locust counts them), `rps`, `fail_s`, `p50`, `p95`, `p99` over the latest window;
- `workers`: per worker, its Total's `xs` (window ends), `rps` and `p95` lists (one line each) and the latest
  figures (`requests`, `last_rps`, `last_p95`);
- `health`: `health.HEALTH_COLUMNS`;
- `options` (the endpoint selector's choices), `selected`, `run_id`, `final`, `updated` (the latest
  snapshot's @timestamp), `window_s`, `untracked` (endpoints past the feed's bound).

`LiveCache` keeps the encoded answer per selected endpoint until the feed changes, so polls between two
snapshots cost one dict look-up.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..report.model import SERIES_COLUMNS, TOTAL, endpoint_key
from ..report.timeline import columns
from .feed import LiveFeed
from .series import LiveSeries

ENDPOINT_COLUMNS = ("key", "requests", "failures", "rps", "fail_s", "p50", "p95", "p99")
WORKER_COLUMNS = ("node", "xs", "rps", "p95", "color", "requests", "last_rps", "last_p95")
# Category10: one color per worker line (the report's palette, without importing Bokeh here)
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _series_columns(series: LiveSeries, window_s: float) -> dict[str, list]:
    return columns(list(series.update(window_s)), SERIES_COLUMNS)


def _latest(key: str, series: LiveSeries, window_s: float) -> dict[str, Any]:
    rows = series.update(window_s)
    last = series.last
    row = rows[-1] if rows else {}
    return {
        "key": key,
        "requests": last.requests if last else 0,
        "failures": last.failures if last else 0,
        **{name: row.get(name, 0) for name in ("rps", "fail_s", "p50", "p95", "p99")},
    }


def payload(feed: LiveFeed, selected: str | None = None) -> dict[str, Any]:
    w = feed.window_s
    keyed = {endpoint_key(method, name): series for (method, name), series in feed.endpoints.items()}
    order = sorted(keyed)
    chosen = selected if selected in keyed else TOTAL
    table = [_latest(TOTAL, feed.total, w)] + [_latest(key, keyed[key], w) for key in order]
    workers: list[dict[str, Any]] = []
    for i, (node, series) in enumerate(sorted(feed.workers.items())):
        rows = list(series.update(w))
        last = series.last
        workers.append(
            {
                "node": node,
                "xs": [r["t"] for r in rows],
                "rps": [r["rps"] for r in rows],
                "p95": [r["p95"] for r in rows],
                "color": COLORS[i % len(COLORS)],
                "requests": last.requests if last else 0,
                "last_rps": rows[-1]["rps"] if rows else 0,
                "last_p95": rows[-1]["p95"] if rows else 0,
            }
        )
    return {
        "run_id": feed.run_id,
        "final": feed.final,
        "updated": feed.last_stamp,
        "window_s": w,
        "selected": chosen,
        "options": [TOTAL, *order],
        "untracked": len(feed.untracked),
        "total": _series_columns(feed.total, w),
        "series": _series_columns(keyed[chosen], w) if chosen != TOTAL else _series_columns(feed.total, w),
        "endpoints": columns(table, ENDPOINT_COLUMNS),
        "workers": columns(workers, WORKER_COLUMNS),
        "health": feed.health.columns(),
    }


class LiveCache:
    """The encoded payload per selected endpoint, valid while the feed's version does not change."""

    MAX_ENTRIES = 16

    def __init__(self, feed: LiveFeed) -> None:
        self.feed = feed
        self.version = -1
        self.answers: dict[str, bytes] = {}

    def get(self, selected: str | None) -> bytes:
        if self.feed.version != self.version:
            self.version, self.answers = self.feed.version, {}
        key = selected or TOTAL
        answer = self.answers.get(key)
        if answer is None:
            answer = orjson.dumps(payload(self.feed, selected))
            if len(self.answers) < self.MAX_ENTRIES:
                self.answers[key] = answer
        return answer
