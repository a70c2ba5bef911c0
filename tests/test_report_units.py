"""Units of `locust_sink.report` that need no server: Locust's histogram math reproduced without Locust,
exact windows from cumulative snapshots, rules, and the import path (no Bokeh, no Locust in the CLI)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from locust.stats import RequestStats, bucket_response_time, calculate_response_time_percentile

from locust_sink.report import histogram as h
from locust_sink.report.collect import RunCollector
from locust_sink.report.commands import NEEDS_BOKEH
from locust_sink.report.model import TOTAL, EndpointRow, RunFigures
from locust_sink.report.requests import RequestFigures
from locust_sink.report.rules import Rule, RuleError, check_regressions, check_slos
from locust_sink.report.series import Clock, Series

ROOT = Path(__file__).resolve().parents[1]
PERCENTS = [0.0, 0.5, 0.66, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0]


def _random_times(rng: random.Random, n: int) -> list[float]:
    return [rng.choice([rng.uniform(0.2, 60), rng.uniform(60, 2500), rng.lognormvariate(6, 1.5)]) for _ in range(n)]


def test_bucket_and_percentiles_equal_locusts_own_functions():
    rng = random.Random(19)
    for _ in range(400):
        times = _random_times(rng, rng.randint(1, 400))
        hist: dict[int, int] = {}
        for t in times:
            assert h.bucket(t) == bucket_response_time(t)
            hist[h.bucket(t)] = hist.get(h.bucket(t), 0) + 1
        n = len(times)
        together = h.percentiles(hist, n, [(str(p), p) for p in PERCENTS])
        for p in PERCENTS:
            expected = calculate_response_time_percentile(hist, n, p)
            assert h.percentile(hist, n, p) == expected == together[str(p)], (p, n)


def _snapshot(stats: RequestStats, t: float, final: bool = False) -> dict:
    e = stats.total
    return {
        "@timestamp": t, "run_id": "r", "node": "local", "source": "local", "is_aggregated": True, "name": "Aggregated",
        "final": final, "num_requests": e.num_requests, "num_failures": e.num_failures,
        "num_none_requests": e.num_none_requests, "total_response_time": e.total_response_time,
        "response_times": {str(k): v for k, v in e.response_times.items()}, "user_count": 5,
    }  # fmt: skip


@pytest.mark.parametrize("max_points", [1000, 3])
def test_windows_from_cumulative_snapshots_are_exact_even_when_thinned(max_points):
    """Each window's p50/p95/p99 from the difference of two cumulative histograms equals Locust's percentile of
    that window's requests alone; thinning the series (few points kept) merges windows and stays exact."""
    rng = random.Random(max_points)
    stats = RequestStats(use_response_times_cache=False)
    series = Series(Clock(max_points))
    t0 = 1_000_000.0
    per_window: list[list[float]] = []
    for i in range(1, 21):
        times = _random_times(rng, rng.randint(20, 200))
        for rt in times:
            stats.log_request("GET", "/x", rt, 10)
        per_window.append(times)
        series.add(t0 + 3 * i, _snapshot(stats, t0 + 3 * i, final=i == 20))
    windows = series.windows(t0)
    kept_ends = [round((w.end - t0) / 3) for w in windows]
    assert kept_ends[-1] == 20 and sum(w.requests for w in windows) == stats.total.num_requests
    if max_points == 3:
        assert len(windows) <= 2 * 3 + 2
    start = 0
    for w, end in zip(windows, kept_ends, strict=True):
        own = RequestStats(use_response_times_cache=False)
        for times in per_window[start:end]:
            for rt in times:
                own.log_request("GET", "/x", rt, 10)
        start = end
        assert w.requests == own.total.num_requests
        for p in (0.5, 0.95, 0.99):
            assert h.percentile(w.hist, w.valid, p) == own.total.get_response_time_percentile(p)


def _figures(rows: dict[str, tuple[float, float, int, int]]) -> RunFigures:
    """A RunFigures with rows {key: (p95, failure_pct, requests, failures)}."""
    fig = RunFigures(run_id="x", source="test")
    for key, (p95, fail_pct, n, f) in rows.items():
        method, _, name = key.partition(" ")
        row = EndpointRow(key, method if name else "", name or key, requests=n, failures=f, failure_pct=fail_pct)
        row.p95 = p95
        if key == TOTAL:
            fig.total = row
        else:
            fig.endpoints.append(row)
    return fig


def test_slo_and_fail_on_rules():
    base = _figures({"GET /api": (100, 0.5, 1000, 5), "POST /api": (40, 0.0, 10, 0), TOTAL: (90, 0.5, 1010, 5)})
    cand = _figures({"GET /api": (125, 2.0, 1000, 20), "POST /api": (41, 0.0, 10, 0), TOTAL: (95, 2.0, 1010, 20)})
    slo = check_slos(cand, ["GET /api p95<200ms", "/api p95<0.1s", "failure_rate<1%", "GET /nope p95<1s"])
    assert [(v.endpoint, v.passed) for v in slo] == [
        ("GET /api", True), ("GET /api", False), ("POST /api", True), (TOTAL, False), ("GET /nope", False),
    ]  # fmt: skip
    reg = check_regressions(base, cand, ["* p95>+10%", "failure_rate>+1pp", "GET /api p95>+30ms"])
    assert [(v.endpoint, v.passed) for v in reg] == [
        ("GET /api", False), ("POST /api", True), (TOTAL, False), ("GET /api", True),
    ]  # fmt: skip
    assert "100 ms -> 125 ms (+25.0 %" in reg[0].line()
    for bad in ("p95", "p95<", "latency<3ms", "p95<+10%", "rps<5ms", "p95<10%", "failure_rate<2pp"):
        with pytest.raises(RuleError):
            Rule.parse(bad, change=False)
    with pytest.raises(RuleError):
        Rule.parse("p95>+10 apples", change=True)


def test_run_document_written_several_times_the_newest_wins_and_incomplete_runs_warn():
    collector = RunCollector(None)
    start = {"run_id": "r1", "status": "running", "start_time": "2026-01-01T00:00:00.000Z", "sample_rate": 1.0}
    collector.add("runs", start)
    fig = collector.build(RequestFigures(documents=3), "test")
    assert fig.run_id == "r1"
    assert any("no end" in w for w in fig.warnings) and any("no stats snapshot" in w for w in fig.warnings)
    final = {**start, "status": "stopped", "end_time": "2026-01-01T00:00:09.000Z", "sink_final_flush_complete": False,
             "sink": {"emitted": 10, "written": 7, "spooled": 3}}  # fmt: skip
    collector.add("runs", final)
    collector.add("runs", start)  # a late copy of the start document (replayed from the spool) does not win
    fig = collector.build(RequestFigures(), "test")
    assert fig.run["status"] == "stopped"
    assert any("3 request records were spooled" in w for w in fig.warnings)
    assert any("final flush did not complete" in w for w in fig.warnings)


def _run_python(code: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=60, cwd=ROOT)  # fmt: skip


def test_import_locust_sink_and_the_cli_import_neither_bokeh_nor_locust():
    proc = _run_python(
        """
        import sys, locust_sink, locust_sink.cli, locust_sink.report.commands, locust_sink.report.es
        import locust_sink.report.text, locust_sink.report.compare_text
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("bokeh", "locust")))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


BLOCK_BOKEH = """
import sys
class _NoBokeh:
    def find_spec(self, name, path=None, target=None):
        if name == "bokeh" or name.startswith("bokeh."):
            raise ImportError("No module named 'bokeh' (blocked by the test)")
sys.meta_path.insert(0, _NoBokeh())
from locust_sink.cli import main
"""


def test_without_bokeh_text_and_json_work_and_html_says_what_to_install(tmp_path):
    run = tmp_path / "20260101T000000Z-abcdef"
    run.mkdir()
    lines = [
        {"index": {"_index": "locust-runs", "_id": run.name}},
        {"run_id": run.name, "status": "stopped", "start_time": "2026-01-01T00:00:00.000Z",
         "end_time": "2026-01-01T00:00:04.000Z", "duration_s": 4.0, "sink": {"emitted": 1, "written": 1}},
        {"create": {"_index": "locust-requests", "_id": f"{run.name}:local:1"}},
        {"@timestamp": "2026-01-01T00:00:01.000Z", "run_id": run.name, "node": "local", "request_type": "GET",
         "name": "/a", "url": "http://127.0.0.1/a", "status_code": 200, "response_time": 12.5,
         "response_length": 3, "success": True},
    ]  # fmt: skip
    (run / "local.ndjson").write_text("".join(json.dumps(x) + "\n" for x in lines))
    for fmt, code in (("text", 0), ("json", 0), ("html", 2)):
        proc = _run_python(BLOCK_BOKEH + f"sys.exit(main(['report', {str(run)!r}, '--format', '{fmt}', '-o', '-']))")
        assert proc.returncode == code, (fmt, proc.stdout, proc.stderr)
        if fmt == "html":
            assert proc.stderr.strip().splitlines() == [NEEDS_BOKEH]
        elif fmt == "json":
            doc = json.loads(proc.stdout)
            assert doc["total"]["requests"] == 1 and doc["endpoints"][0]["p50"] == 12
        else:
            assert "GET   /a" in proc.stdout


def test_html_escapes_every_recorded_string():
    from locust_sink.report import html

    fig = RunFigures(run_id="<i>r</i>", source="<b>src</b>")
    fig.endpoints = [EndpointRow("GET <script>x()</script>", "GET", "<script>x()</script>", requests=1)]
    fig.warnings = ["<script>warn()</script>"]
    fig.errors = [{"method": "GET", "name": "<script>e()</script>", "error": "<img src=x onerror=y()>", "count": 1,
                   "first_seen": None, "last_seen": None}]  # fmt: skip
    fig.user_errors = [{"count": 1, "message": "<script>m()</script>", "traceback": "<tb>", "nodes": ["<n>"]}]
    out = html.render(fig)
    for raw in ("<script>x()</script>", "<script>warn()</script>", "<img src=x", "<script>m()</script>", "<tb>",
                "<i>r</i>", "<b>src</b>", "<script>e()</script>", "<n>"):  # fmt: skip
        assert raw not in out, raw
    assert "&lt;script&gt;warn()&lt;/script&gt;" in out and 'id="warnings"' in out


def test_html_stays_small_with_many_endpoints_and_a_long_run():
    """120 endpoints and 2,000 snapshots (a run of 100 minutes at 3 s): the series are thinned to at most
    480 points, 50 endpoints are selectable and 12 charted; the table has them all."""
    from locust_sink.report import html

    collector = RunCollector("long")
    collector.add("runs", {"run_id": "long", "status": "stopped", "start_time": 0, "end_time": 6000.0,
                           "duration_s": 6000.0, "sink": {}})  # fmt: skip
    for i in range(1, 2001):
        for e in range(120):
            n = i * (e + 1)
            collector.add(
                "stats",
                {
                    "@timestamp": 3.0 * i,
                    "source": "local",
                    "node": "local",
                    "run_id": "long",
                    "request_type": "GET",
                    "name": f"/e{e}",
                    "num_requests": n,
                    "num_failures": 0,
                    "total_response_time": 5.0 * n,
                    "response_times": {"5": n},
                    "final": i == 2000,
                },
            )
        collector.add("stats", {"@timestamp": 3.0 * i, "source": "local", "node": "local", "run_id": "long",
                                "is_aggregated": True, "name": "Aggregated", "num_requests": i * 7260,
                                "response_times": {"5": i * 7260}, "final": i == 2000})  # fmt: skip
    fig = collector.build(RequestFigures(), "test")
    assert len(fig.endpoints) == 120 and fig.total.requests == 2000 * 7260
    assert all(len(cols["t"]) <= 480 for cols in fig.series.values())
    assert sum(fig.series[TOTAL]["requests"]) == fig.total.requests
    out = html.render(fig)
    assert len(out.encode()) < 3_000_000, len(out.encode())
    assert out.count("<tr") >= 120
