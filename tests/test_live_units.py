"""The live feed, its windows, health and routes, without servers: snapshot documents made by the stats
package from real Locust `RequestStats`, checked against Locust's own percentile function over only the
requests of each window."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from typing import Any

import pytest
from flask import Flask
from locust.stats import RequestStats, StatsEntry

from locust_sink.live import LiveFeed
from locust_sink.live.figures import LiveCache, payload
from locust_sink.live.health import HealthBook
from locust_sink.live.page import MISSING_BOKEH, LivePage
from locust_sink.live.web import DATA_PATH, PAGE_PATH, TAB_KEY, LiveRoutes
from locust_sink.stats import SnapshotCursor, snapshot_documents

T0 = 1_800_000_000.0
ENDPOINTS = (("GET", "/a"), ("GET", "/b"), ("POST", "/c"))


def feed_snapshot(
    feed: LiveFeed, stats: RequestStats, cursor: SnapshotCursor, now: float, run_id: str = "r1", **kw: Any
) -> None:
    for _doc_id, doc in snapshot_documents(
        stats,
        cursor,
        run_id=run_id,
        node=kw.pop("node", "local"),
        source=kw.pop("source", "local"),
        now=now,
        run_start=T0,
        user_count=kw.pop("user_count", 3),
        final=kw.pop("final", False),
    ):
        feed.on_snapshot(doc)


def test_windows_are_exact_for_their_requests() -> None:
    """Each row covers (base, t]: its counts and p50/p95/p99 equal Locust's own figures over exactly the
    requests logged in that window (a separate StatsEntry), never a mix of cumulative percentiles."""
    rng = random.Random(7)
    stats, cursor, feed = RequestStats(), SnapshotCursor(), LiveFeed(window_s=9.0)
    logged: list[list[tuple[str, str, int, bool]]] = []
    for step in range(1, 11):
        batch = []
        for _ in range(rng.randint(50, 300)):
            method, name = rng.choice(ENDPOINTS)
            rt = int(rng.lognormvariate(3 + step / 5, 0.8))
            ok = rng.random() > 0.1
            stats.log_request(method, name, rt, 10)
            if not ok:
                stats.log_error(method, name, "boom")
            batch.append((method, name, rt, ok))
        logged.append(batch)
        feed_snapshot(feed, stats, cursor, T0 + 3 * step)
    data = payload(feed, "GET /b")
    total = data["total"]
    assert len(total["t"]) == 10
    for i, (t, t0) in enumerate(zip(total["t"], total["t0"], strict=True)):
        # a full window is 3 snapshots (9 s) back; the first ones start at the run's start
        first = max(0, i - 2)
        assert t0 == round((T0 + 3 * first) * 1000), i
        assert t == round((T0 + 3 * (i + 1)) * 1000)
        window = [r for batch in logged[first : i + 1] for r in batch]
        for key, cols in (("Total", total), ("GET /b", data["series"])):
            reqs = [r for r in window if key == "Total" or f"{r[0]} {r[1]}" == key]
            entry = StatsEntry(RequestStats(), key, "")
            for _m, _n, rt, _ok in reqs:
                entry.log(rt, 10)
            assert cols["requests"][i] == len(reqs), (key, i)
            assert cols["failures"][i] == sum(1 for r in reqs if not r[3]), (key, i)
            for col, pct in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                assert cols[col][i] == entry.get_response_time_percentile(pct), (key, i, col)
            seconds = (t - t0) / 1000
            assert cols["rps"][i] == pytest.approx(len(reqs) / seconds, abs=0.001)
    table = data["endpoints"]
    assert table["key"] == ["Total", "GET /a", "GET /b", "POST /c"]
    assert table["requests"][0] == stats.total.num_requests
    for key, requests, failures in zip(table["key"][1:], table["requests"][1:], table["failures"][1:], strict=True):
        method, name = key.split(" ", 1)
        assert (requests, failures) == (stats.get(name, method).num_requests, stats.get(name, method).num_failures)
    assert data["options"] == ["Total", "GET /a", "GET /b", "POST /c"]
    assert data["selected"] == "GET /b"


def test_rings_are_bounded() -> None:
    feed = LiveFeed(max_points=20, max_endpoints=5, max_workers=2)
    stats, cursor = RequestStats(), SnapshotCursor()
    worker_stats = {w: (RequestStats(), SnapshotCursor()) for w in ("w1", "w2", "w3")}
    for step in range(1, 61):
        for i in range(8):
            stats.log_request("GET", f"/e{i}", step, 1)
        feed_snapshot(feed, stats, cursor, T0 + 3 * step, source="master", node="master")
        for node, (ws, wc) in worker_stats.items():
            ws.log_request("GET", "/e0", step, 1)
            feed_snapshot(feed, ws, wc, T0 + 3 * step, source="worker", node=node)
    assert len(feed.total.samples) == 20
    assert len(feed.endpoints) == 5 and len(feed.untracked) == 3
    assert all(len(s.samples) == 20 for s in feed.endpoints.values())
    assert sorted(feed.workers) == ["w1", "w2"]  # the third worker is past the bound
    data = payload(feed)
    assert data["untracked"] == 3
    assert len(data["total"]["t"]) == 20
    assert data["workers"]["node"] == ["w1", "w2"]
    assert data["workers"]["requests"] == [60, 60]
    assert all(len(xs) == 20 for xs in data["workers"]["xs"])
    # rows are computed once per sample: asking again adds none and changes none
    before = list(feed.total.rows)
    payload(feed)
    assert list(feed.total.rows) == before


def test_a_stats_reset_and_a_new_run_start_from_zero() -> None:
    feed, stats, cursor = LiveFeed(window_s=6.0), RequestStats(), SnapshotCursor()
    for step in range(1, 4):
        for _ in range(10):
            stats.log_request("GET", "/a", 100, 1)
        feed_snapshot(feed, stats, cursor, T0 + 3 * step)
    stats.reset_all()
    cursor.reset()
    for _ in range(4):
        stats.log_request("GET", "/a", 500, 1)
    feed_snapshot(feed, stats, cursor, T0 + 12)
    total = payload(feed)["total"]
    assert total["requests"][-1] == 4 and total["p50"][-1] == 500
    assert total["t0"][-1] == round((T0 + 9) * 1000)  # from the snapshot before the reset
    feed_snapshot(feed, stats, SnapshotCursor(), T0 + 15, run_id="r2")
    data = payload(feed)
    assert data["run_id"] == "r2" and len(data["total"]["t"]) == 1


def test_health_lag_is_waiting_records_over_the_emission_rate() -> None:
    now = [T0]
    book = HealthBook(clock=lambda: now[0])
    own = {"state": "up", "requests": {"emitted": 1000, "queued": 0, "in_flight": 0, "indexed": 1000},
           "retries": {"items_carried": 7}, "trouble": []}  # fmt: skip
    book.update("master", own)
    book.update("w1", {"state": "down", "requests": {"emitted": 300, "queued": 0, "in_flight": 0}})
    now[0] += 3
    book.update("w1", {"state": "down", "requests": {"emitted": 1200, "queued": 400, "in_flight": 50},
                       "trouble": ["Elasticsearch unreachable"]})  # fmt: skip
    now[0] += 1
    cols = book.columns()
    assert cols["node"] == ["master", "w1"]
    assert cols["lag_s"] == [0.0, 1.5]  # 450 waiting / (900 emitted in 3 s)
    assert cols["retried"] == [7, None]  # a worker does not report it: no made-up zero
    assert cols["state"] == ["up", "down"]
    assert cols["trouble"] == ["", "Elasticsearch unreachable"]
    assert cols["age_s"] == [4.0, 1.0]


def test_cache_answers_until_the_feed_changes() -> None:
    feed, stats, cursor = LiveFeed(), RequestStats(), SnapshotCursor()
    stats.log_request("GET", "/a", 10, 1)
    feed_snapshot(feed, stats, cursor, T0 + 3)
    cache = LiveCache(feed)
    first = cache.get(None)
    assert cache.get(None) is first  # no new snapshot: the same bytes
    assert json.loads(first)["endpoints"]["requests"] == [1, 1]
    stats.log_request("GET", "/a", 10, 1)
    feed_snapshot(feed, stats, cursor, T0 + 6)
    assert json.loads(cache.get(None))["endpoints"]["requests"] == [2, 2]


def app_with(routes: LiveRoutes) -> Flask:
    app = Flask("test")
    routes.add_to(app)
    return app


def test_routes_serve_the_figures_and_say_what_to_install_without_bokeh(monkeypatch) -> None:
    feed, stats, cursor = LiveFeed(), RequestStats(), SnapshotCursor()
    stats.log_request("GET", "/a", 10, 1)
    feed_snapshot(feed, stats, cursor, T0 + 3)
    routes = LiveRoutes(feed, builder=lambda build: build())  # in process, where Bokeh is hidden below
    for name in [m for m in sys.modules if m == "bokeh" or m.startswith("bokeh.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "bokeh", None)
    client = app_with(routes).test_client()
    answer = client.get(PAGE_PATH)
    assert answer.status_code == 503
    assert answer.get_data(as_text=True) == MISSING_BOKEH + "\n"
    data = client.get(DATA_PATH + "?endpoint=GET%20/a").get_json()
    assert data["selected"] == "GET /a" and data["series"]["requests"] == [1]


def test_page_is_built_once_with_bokeh_inline() -> None:
    calls = []
    page = LivePage()

    def builder(build):
        calls.append(1)
        return build()

    html = page.html(builder)
    assert page.html(builder) is html and len(calls) == 1
    assert "AjaxDataSource" in html and "live/data" in html
    assert "<script src=" not in html.replace('<script src="data:', "")  # BokehJS inline, nothing fetched
    assert "cdn.bokeh.org" not in html


def test_sink_tab_rows_and_template_arguments() -> None:
    feed = LiveFeed()
    feed.on_status("local", {"state": "up", "requests": {"emitted": 5, "queued": 1, "in_flight": 0, "written": 4}})
    routes = LiveRoutes(feed)

    class WebUI:
        app = Flask("ui")
        template_args: dict[str, Any] = {"extended_tabs": [{"title": "Mine", "key": "mine"}]}

    @WebUI.app.route("/stats/requests")
    def stats_requests():
        return {"stats": [], "extended_stats": [{"key": "mine", "data": []}]}

    routes.add_tab(WebUI)
    assert [t["key"] for t in WebUI.template_args["extended_tabs"]] == ["mine", TAB_KEY]
    client = WebUI.app.test_client()
    extended = client.get("/stats/requests").get_json()["extended_stats"]
    assert [e["key"] for e in extended] == ["mine", TAB_KEY]
    rows = extended[1]["data"]
    assert rows[0]["node"] == "live charts" and rows[0]["trouble"].endswith(PAGE_PATH)
    assert rows[1]["node"] == "local" and rows[1]["queued"] == 1 and rows[1]["indexed"] == "-"


def test_importing_the_live_feed_pulls_in_neither_locust_flask_nor_bokeh() -> None:
    code = (
        "import sys, locust_sink.live, locust_sink.live.figures, locust_sink.live.page; "
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'locust', 'flask', 'bokeh', 'gevent'}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_headless_server_on_a_taken_port_says_so_once_and_starts_nothing(caplog) -> None:
    import socket

    from locust_sink.live.web import LiveServer

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = LiveServer(LiveRoutes(LiveFeed()), "127.0.0.1", port)
        with caplog.at_level("ERROR", logger="locust_sink"):
            assert server.start() is False
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0].getMessage()
