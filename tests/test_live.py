"""The live page during real runs, opened in Debian's headless Chromium: standalone with Locust's web UI
(file mode), headless with --sink-live-port (Elasticsearch), and a master with 2 workers (file mode).

What is checked, each time: Bokeh's document holds its models and the charts are painted; no console error
and no request outside 127.0.0.1; while the test runs, every figure the JSON route served lies between
Locust's own counts just before and just after that snapshot was taken (`/stats/requests`, or Locust's
per-second `--csv-full-history` rows headless), and the page's table shows one of those answers; at the end
the final figures equal Locust's (`/stats/requests` and `--json-file`) exactly. Screenshots go to the test's
folder (and to $LOCUST_SINK_SCREENSHOTS if set).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
import uuid
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser import Browser
from helpers import ROOT, free_port, headless_args, run_locust_distributed, start_locust, wait_until

from locust_sink.live.web import DATA_PATH, PAGE_PATH
from locust_sink.report.requests import epoch

XDIST_SPREAD = True  # its tests share only session fixtures: spread them over the workers (conftest.py)

pytestmark = pytest.mark.slow

LOCUSTFILE = ROOT / "tests" / "locustfiles" / "live.py"
CACHE_S = 2.5  # Locust memoizes /stats/requests for 2 s: an answer fetched at `a` may show its stats at a - 2 s
PAGE_TABLE_JS = """
const doc = Bokeh.documents[0];
const data = doc.get_model_by_name(arguments[0]).source.data;
const get = (k) => Array.from(data instanceof Map ? data.get(k) : data[k]);
return {key: get("key"), requests: get("requests"), failures: get("failures")};
"""
VISIBLE_JS = "return Bokeh.documents[0].get_model_by_name(arguments[0]).visible;"

Counts = dict[str, tuple[int, int]]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def try_json(url: str) -> Any:
    """The answer, or None while the server is not up yet (or already gone)."""
    try:
        return get_json(url)
    except (OSError, ValueError):
        return None


def snapshots_served(url: str, n: int = 3) -> bool:
    data = try_json(url)
    return bool(data) and len(data["total"]["t"]) >= n


def final_served(url: str) -> Any:
    data = try_json(url)
    return data if data and data["final"] else None


@dataclass
class Seen:
    a: float  # before the request was sent (or the row's second)
    b: float  # after the answer arrived (or the row's second + 1)
    counts: Counts


def locust_counts(stats: dict[str, Any]) -> Counts:
    out: Counts = {}
    for e in stats["stats"]:
        key = "Total" if e["name"] == "Aggregated" else f"{e['method']} {e['name']}"
        out[key] = (e["num_requests"], e["num_failures"])
    return out


def live_counts(data: dict[str, Any]) -> Counts:
    t = data["endpoints"]
    return {k: (r, f) for k, r, f in zip(t["key"], t["requests"], t["failures"], strict=True)}


class Poller:
    """A background poll of one URL every `every` s, keeping what each answer said and when."""

    def __init__(self, url: str, every: float = 0.3) -> None:
        self.url, self.every = url, every
        self.seen: list[tuple[float, float, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            a = time.time()
            with suppress(OSError, ValueError):
                data = get_json(self.url)
                self.seen.append((a, time.time(), data))
            self._stop.wait(self.every)


def check_bracketed(live: list[tuple[float, float, Any]], truth: list[Seen], lag: float) -> int:
    """Every live answer (snapshot at T) lies between Locust's counts before T and after T (+ lag); returns
    how many answers could be bracketed (an answer without a Locust reading on both sides is skipped)."""
    checked = 0
    answers = {d["updated"]: d for _a, _b, d in live if d.get("updated") and not d["final"]}
    for stamp, data in answers.items():
        t = epoch(stamp)
        assert t is not None
        before = [s for s in truth if s.b <= t]
        after = [s for s in truth if s.a >= t + lag]
        if not before or not after:
            continue
        low, high = before[-1].counts, after[0].counts
        for key, (requests, failures) in live_counts(data).items():
            lo, hi = low.get(key, (0, 0)), high.get(key, (0, 0))
            assert lo[0] <= requests <= hi[0], (stamp, key, lo, requests, hi)
            assert lo[1] <= failures <= hi[1], (stamp, key, lo, failures, hi)
        checked += 1
    return checked


def json_file_counts(path: Path) -> Counts:
    out: Counts = {}
    total = [0, 0]
    for e in json.loads(path.read_text()):
        out[f"{e['method']} {e['name']}"] = (e["num_requests"], e["num_failures"])
        total[0] += e["num_requests"]
        total[1] += e["num_failures"]
    out["Total"] = (total[0], total[1])
    return out


def keep_screenshot(path: Path) -> None:
    target = os.environ.get("LOCUST_SINK_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def look_at_page(browser: Browser, url: str, shot: Path, min_painted: int) -> dict[str, Any]:
    """Open the live page, let it poll a few times, check it as a person would; returns its table."""
    state = browser.open(url, min_painted=min_painted)
    assert state.get("models", 0) > 100 and state["roots"] == 1, state
    time.sleep(3)  # a few polls
    painted = browser.painted()
    assert len(painted) >= min_painted, (state, browser.canvases())
    browser.collect_logs()
    assert browser.errors() == [], browser.errors()
    outside = [u for u in browser.requests if not u.startswith(("http://127.0.0.1:", "data:", "blob:", "about:"))]
    assert outside == [], outside
    status = browser.driver.execute_script("return Bokeh.documents[0].get_model_by_name('live_status').text;")
    assert "run <b>" in status and "(not started)" not in status, status
    browser.screenshot(shot)
    keep_screenshot(shot)
    return browser.driver.execute_script(PAGE_TABLE_JS, "endpoints_table")


def table_counts(table: dict[str, Any]) -> Counts:
    """The page's endpoint table (read from Bokeh's document) as counts."""
    return {k: (r, f) for k, r, f in zip(table["key"], table["requests"], table["failures"], strict=True)}


def page_shows_a_served_answer(table: dict[str, Any], live: list[tuple[float, float, Any]]) -> None:
    shown = table_counts(table)
    assert shown and shown["Total"][0] > 0, table
    served = [live_counts(d) for _a, _b, d in live]
    assert shown in served, (shown, served[-3:])


def web_ui_run_checks(base: str, tmp_path: Path, label: str, min_painted: int) -> tuple[Counts, dict[str, Any]]:
    """While a web-UI run goes on: page, Sink tab, bracketing; then the final figures == /stats/requests."""
    data_url = base + DATA_PATH
    wait_until(lambda: snapshots_served(data_url), 60, what="three snapshots on the live route")
    with Poller(data_url) as live, Poller(base + "/stats/requests") as ui, Browser(width=1300) as browser:
        table = look_at_page(browser, base + PAGE_PATH, tmp_path / f"live-{label}.png", min_painted)
        page_shows_a_served_answer(table, live.seen)
        # Locust's own UI: the Sink tab lists each node's health and the page's address
        browser.driver.get(base + "/?tab=locust-sink")
        wait_until(lambda: "live charts" in browser.driver.find_element("tag name", "body").text, 20, what="Sink tab")
        text = browser.driver.find_element("tag name", "body").text
        assert "\nSINK\n" in text.upper() and base + PAGE_PATH in text, text[:2000]
        browser.screenshot(tmp_path / f"sink-tab-{label}.png", 700)
        keep_screenshot(tmp_path / f"sink-tab-{label}.png")
        browser.collect_logs()
        assert [e for e in browser.errors() if "favicon" not in e["message"]] == [], browser.errors()

        def bracketed() -> int:
            truth = [Seen(a, b, locust_counts(d)) for a, b, d in list(ui.seen)]
            return check_bracketed(list(live.seen), truth, CACHE_S) >= 3

        wait_until(bracketed, 30, what="three live answers with Locust's counts on both sides")
        final = wait_until(lambda: final_served(data_url), 60, what="the final snapshot")
        browser.driver.get(base + PAGE_PATH)
        time.sleep(CACHE_S + 1)  # the page polls the final figures; Locust's cached answer expires
        page_final = browser.driver.execute_script(PAGE_TABLE_JS, "endpoints_table")
    expected = live_counts(final)
    assert locust_counts(get_json(base + "/stats/requests")) == expected
    assert table_counts(page_final) == expected
    return expected, final


def test_live_page_standalone_web_ui(httpbin_url, tmp_path):
    port = free_port()
    args = [
        "-f", str(LOCUSTFILE), "--autostart", "-u", "6", "-r", "6", "-t", "24s", "--autoquit", "12",
        "--web-host", "127.0.0.1", "--web-port", str(port), "--host", httpbin_url,
        "--json-file", str(tmp_path / "stats"), "--sink-dir", str(tmp_path / "results"),
    ]  # fmt: skip
    proc = start_locust(args, cwd=tmp_path)
    try:
        expected, final = web_ui_run_checks(f"http://127.0.0.1:{port}", tmp_path, "standalone", 3)
        health = final["health"]
        assert health["node"] == ["local"] and health["state"] == ["up"] and health["written"][0] > 0
    finally:
        code = proc.wait(90).returncode
    assert code in (0, 1), (tmp_path / "locust.stderr").read_text()[-3000:]
    assert json_file_counts(tmp_path / "stats.json") == expected


def csv_truth(path: Path) -> list[Seen]:
    """Locust's --csv-full-history rows: every second, each endpoint's cumulative counts."""
    by_second: dict[int, Counts] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            key = "Total" if row["Name"] == "Aggregated" else f"{row['Type']} {row['Name']}"
            counts = (int(row["Total Request Count"]), int(row["Total Failure Count"]))
            by_second.setdefault(int(row["Timestamp"]), {})[key] = counts
    return [Seen(float(s), float(s) + 1, c) for s, c in sorted(by_second.items())]


def test_live_page_headless_with_live_port(httpbin_url, es_url, tmp_path):
    port = free_port()
    prefix = f"live-{uuid.uuid4().hex[:8]}"
    args = headless_args(
        LOCUSTFILE, httpbin_url, 6, "22s", tmp_path / "stats",
        "--sink-live-port", str(port), "--es-url", es_url, "--es-index-prefix", prefix,
        "--csv", str(tmp_path / "csv"), "--csv-full-history", "--sink-dir", str(tmp_path / "results"),
    )  # fmt: skip
    proc = start_locust(args, {"LIVE_LINGER_S": "8"}, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: snapshots_served(base + DATA_PATH), 60, what="three snapshots")
        with Poller(base + DATA_PATH) as live, Browser(width=1300) as browser:
            table = look_at_page(browser, base + PAGE_PATH, tmp_path / "live-headless.png", 3)
            page_shows_a_served_answer(table, live.seen)
            final = wait_until(lambda: final_served(base + DATA_PATH), 60, what="final snapshot")
            time.sleep(2)  # the page polls the final figures
            page_final = browser.driver.execute_script(PAGE_TABLE_JS, "endpoints_table")
            health = get_json(base + DATA_PATH)["health"]
    finally:
        code = proc.wait(90).returncode
    assert code in (0, 1), (tmp_path / "locust.stderr").read_text()[-3000:]
    assert check_bracketed(live.seen, csv_truth(tmp_path / "csv_stats_history.csv"), 0.0) >= 3
    expected = json_file_counts(tmp_path / "stats.json")
    assert live_counts(final) == expected
    assert table_counts(page_final) == expected
    assert health["node"] == ["local"] and health["state"] == ["up"] and health["indexed"][0] > 0, health


def test_live_page_distributed_master_and_two_workers(httpbin_url, tmp_path):
    port = free_port()
    master_args = [
        "-f", str(LOCUSTFILE), "--autostart", "-u", "6", "-r", "6", "-t", "24s", "--autoquit", "14",
        "--web-host", "127.0.0.1", "--web-port", str(port), "--host", httpbin_url,
        "--json-file", str(tmp_path / "stats"), "--sink-dir", str(tmp_path / "results"),
    ]  # fmt: skip
    worker_args = ["-f", str(LOCUSTFILE), "--sink-dir", str(tmp_path / "results")]
    result: dict[str, Any] = {}

    def run() -> None:
        result["run"] = run_locust_distributed(master_args, worker_args, 2, timeout=150, cwd=tmp_path)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    expected, final = web_ui_run_checks(f"http://127.0.0.1:{port}", tmp_path, "distributed", 5)
    runner.join(200)
    run = result["run"]
    assert all(code in (0, 1) for code in run.returncodes), run.master.stderr[-3000:]
    assert json_file_counts(tmp_path / "stats.json") == expected
    workers = final["workers"]
    assert len(workers["node"]) == 2 and sum(workers["requests"]) == expected["Total"][0], workers
    assert all(len(xs) >= 3 for xs in workers["xs"])
    health = final["health"]
    assert health["node"][0] == "master" and sorted(health["node"][1:]) == sorted(workers["node"]), health
    assert all(state == "up" for state in health["state"]), health
