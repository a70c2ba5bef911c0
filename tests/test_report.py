"""Issue 19: `locust-sink report`, `compare` and `runs` on REAL runs, checked against Locust's own final stats
(`--json-file`), and the HTML reports opened in Debian's headless Chromium.

Four real Locust runs, made once for the module (two at a time) from tests/locustfiles/report_run.py:
A standalone in file mode; B the same setup in es mode; C standalone in file mode with `/api/slow` 4 times
slower (the regression planted for `compare`); D distributed (master + 2 workers) in file mode, then loaded
into Elasticsearch with `locust-sink load` (so D is read from both sources).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser import Browser
from helpers import ROOT, es_client, headless_args, run_locust, run_locust_distributed, subprocess_env
from locust.stats import calculate_response_time_percentile

from locust_sink.report import histogram as h
from locust_sink.report.es import read_es_run
from locust_sink.report.files import read_run_folder
from locust_sink.report.model import TOTAL, RunFigures

pytestmark = pytest.mark.slow

LOCUSTFILE = Path(__file__).parent / "locustfiles" / "report_run.py"
RUN_ARGS = ("--exit-code-on-error", "0", "--sink-stats-interval", "1", "--run-tag", "suite=report")
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p99_9": 0.999}


@dataclass
class Run:
    label: str
    run_id: str
    truth: Path  # Locust's --json-file
    folder: Path | None = None  # file mode results folder
    prefix: str | None = None  # index prefix in Elasticsearch


def _run_id(log: str) -> str:
    match = re.search(r"locust-sink: run (\S+): ", log)
    assert match, log[-3000:]
    return match.group(1)


def _standalone(tmp: Path, label: str, host: str, *extra: str, env: dict[str, str] | None = None) -> Run:
    work = tmp / label
    work.mkdir()
    args = headless_args(LOCUSTFILE, host, 6, "6s", work / "stats", *RUN_ARGS, "--sink-dir", str(tmp / "results"),
                         "--run-tag", f"run={label}", *extra)  # fmt: skip
    proc = run_locust(args, env=env, cwd=work, timeout=120)
    log = proc.stdout + proc.stderr
    # (the locustfile's own ValueError tracebacks are logged by Locust on purpose)
    assert proc.returncode == 0 and not re.search(r"/(ERROR|WARNING)/locust_sink", log), log[-3000:]
    run_id = _run_id(log)
    return Run(label, run_id, work / "stats.json", folder=tmp / "results" / run_id)


def _distributed(tmp: Path, label: str, host: str) -> Run:
    work = tmp / label
    master_args = ["-f", str(LOCUSTFILE), "--headless", "-u", "6", "-r", "6", "-t", "6s", "--host", host,
                   "--json-file", str(work / "stats"), *RUN_ARGS, "--sink-dir", str(tmp / "results-dist")]  # fmt: skip
    run = run_locust_distributed(master_args, ["-f", str(LOCUSTFILE)], 2, cwd=work, timeout=120)
    log = run.master.stdout + run.master.stderr
    assert run.returncodes == [0, 0, 0], log[-3000:]
    run_id = _run_id(log)
    return Run(label, run_id, work / "stats.json", folder=tmp / "results-dist" / run_id)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = subprocess_env({"PYTHONPATH": str(ROOT)})
    env = {k: v for k, v in env.items() if not k.startswith("LOCUST_ES")}
    return subprocess.run([sys.executable, "-m", "locust_sink.cli", *args], capture_output=True, text=True,
                          timeout=180, cwd=cwd, env=env)  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory, httpbin_url, es_url) -> dict[str, Run]:
    tmp = tmp_path_factory.mktemp("report-runs")
    prefix = f"t19-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(_standalone, tmp, "A", httpbin_url, env={"REPORT_SLOW_S": "0.1"})
        b = pool.submit(_standalone, tmp, "B", httpbin_url, "--es-url", es_url, "--es-index-prefix", prefix,
                        env={"REPORT_SLOW_S": "0.1"})  # fmt: skip
        found = {"A": a.result(), "B": b.result()}
        c = pool.submit(_standalone, tmp, "C", httpbin_url, env={"REPORT_SLOW_S": "0.4"})
        d = pool.submit(_distributed, tmp, "D", httpbin_url)
        found["C"], found["D"] = c.result(), d.result()
    found["B"].folder, found["B"].prefix = None, prefix
    # D's files into Elasticsearch, under this module's prefix: rewrite the index names while copying
    d_es = tmp / "d-es" / found["D"].run_id
    d_es.mkdir(parents=True)
    for path in sorted(found["D"].folder.glob("*.ndjson")):
        (d_es / path.name).write_text(path.read_text().replace('"_index":"locust-', f'"_index":"{prefix}-'))
    loaded = cli("load", str(d_es), "--es-url", es_url)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    found["D-es"] = Run("D-es", found["D"].run_id, found["D"].truth, prefix=prefix)
    yield found
    es = es_client(es_url)
    for family in ("requests", "stats", "runs", "events"):
        es.indices.delete(index=f"{prefix}-{family}", ignore_unavailable=True)


def figures(run: Run, es_url: str) -> RunFigures:
    if run.prefix:
        return read_es_run(es_client(es_url), run.run_id, prefix=run.prefix)
    assert run.folder is not None
    return read_run_folder(run.folder)


def truth(run: Run) -> dict[str, dict[str, Any]]:
    """Locust's own final figures per row ("METHOD name" and Total): counts, failures, its percentiles."""
    rows: dict[str, dict[str, Any]] = {}
    total_hist: dict[int, int] = {}
    total = {"requests": 0, "failures": 0, "valid": 0}
    for e in json.loads(run.truth.read_text()):
        hist = {int(k): v for k, v in e["response_times"].items()}
        valid = e["num_requests"] - e["num_none_requests"]
        rows[f"{e['method']} {e['name']}"] = {
            "requests": e["num_requests"], "failures": e["num_failures"], "max": e["max_response_time"],
            **{p: calculate_response_time_percentile(hist, valid, f) for p, f in PERCENTILES.items()},
        }  # fmt: skip
        h.add(total_hist, hist)
        total["requests"] += e["num_requests"]
        total["failures"] += e["num_failures"]
        total["valid"] += valid
    rows[TOTAL] = {
        "requests": total["requests"], "failures": total["failures"],
        **{p: calculate_response_time_percentile(total_hist, total["valid"], f) for p, f in PERCENTILES.items()},
    }  # fmt: skip
    return rows


def shown(fig: RunFigures) -> dict[str, dict[str, Any]]:
    return {
        r.key: {"requests": r.requests, "failures": r.failures, **{p: getattr(r, p) for p in PERCENTILES}}
        for r in [*fig.endpoints, fig.total]
    }


def assert_equals_locust(fig: RunFigures, run: Run) -> None:
    expected = truth(run)
    got = shown(fig)
    assert set(got) == set(expected)
    for key, want in expected.items():
        assert {k: got[key][k] for k in ("requests", "failures", *PERCENTILES)} == {
            k: want[k] for k in ("requests", "failures", *PERCENTILES)
        }, key
    assert expected[TOTAL]["requests"] > 150 and expected[TOTAL]["failures"] > 0


@pytest.mark.parametrize("label", ["A", "B", "D", "D-es"])
def test_report_figures_equal_locusts_final_stats(runs, es_url, label):
    """Counts and failures exactly, percentiles exactly Locust's (the same histogram): file and ES sources,
    standalone and distributed; a complete run has no warning, and every time series adds up."""
    run = runs[label]
    fig = figures(run, es_url)
    assert fig.run_id == run.run_id
    assert_equals_locust(fig, run)
    assert fig.warnings == []
    assert fig.request_documents == fig.total.requests
    total = fig.series[TOTAL]
    assert len(total["t"]) >= 4 and sum(total["requests"]) == fig.total.requests
    for row in fig.endpoints:
        assert sum(fig.series[row.key]["failures"]) == row.failures
        assert sum(fig.histograms[row.key]["count"]) == row.requests
    assert fig.run["tags"]["suite"] == "report" and fig.run["status"] == "stopped"
    assert sum(sum(v) for k, v in fig.status_codes.items() if k.startswith("s")) > 0
    statuses = {k for k in fig.status_codes if k.startswith("s")}
    assert {"s200", "s404"} <= statuses
    errors = {(e["name"], e["count"]) for e in fig.errors}
    assert ("/status/[missing]", next(r.failures for r in fig.endpoints if r.name == "/status/[missing]")) in errors
    assert fig.user_errors and "boom on purpose" in fig.user_errors[0]["message"]
    # the slowest request is Locust's Max of its endpoint, and they come slowest first
    slowest = fig.slowest[0]
    assert slowest["response_time"] == pytest.approx(max(r.max_ms for r in fig.endpoints), abs=0.01)
    assert slowest["response_time"] == pytest.approx(fig.row(f"GET {slowest['name']}").max_ms, abs=0.01)
    assert [s["response_time"] for s in fig.slowest] == sorted((s["response_time"] for s in fig.slowest), reverse=True)
    assert all(a.balanced for a in fig.accounting) and sum(a.counts["emitted"] for a in fig.accounting) == (
        fig.total.requests
    )


def test_distributed_run_has_per_worker_figures(runs, es_url):
    for label in ("D", "D-es"):
        fig = figures(runs[label], es_url)
        assert len(fig.workers) == 2 and len(fig.worker_series) == 2
        assert sum(w.requests for w in fig.workers) == fig.total.requests
        assert sum(w.failures for w in fig.workers) == fig.total.failures
        assert {a.node for a in fig.accounting} == {"master", *(w.key for w in fig.workers)}
        events = set(fig.events["event"])
        assert {"test_start", "spawning_complete", "test_stop", "worker_joined"} <= events


def test_cli_report_in_three_formats_and_with_last(runs, es_url, tmp_path):
    a = runs["A"]
    out = tmp_path / "a.html"
    proc = cli("report", str(a.folder), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"report written to {out}" in proc.stderr
    text = out.read_text()
    assert a.run_id in text and "<script" in text and "Bokeh" in text  # no network fetch: see the Chromium test
    doc = json.loads(cli("report", str(a.folder), "--format", "json").stdout)
    assert doc["run_id"] == a.run_id and doc["total"]["requests"] == truth(a)[TOTAL]["requests"]
    assert set(doc["series"][TOTAL]) == {"t", "t0", "rps", "fail_s", "requests", "failures", "p50", "p95", "p99",
                                         "avg", "users"}  # fmt: skip
    table = cli("report", str(a.folder), "--format", "text").stdout
    assert re.search(rf"GET\s+/api/slow\s+{truth(a)['GET /api/slow']['requests']}\s", table), table
    # --last: the newest run of a results root, and of an index prefix in Elasticsearch
    last = cli("report", str(a.folder.parent), "--last", "--format", "json")
    assert json.loads(last.stdout)["run_id"] == max(a.run_id, runs["C"].run_id)
    last_es = cli("report", "--last", "--es-url", es_url, "--es-index-prefix", runs["B"].prefix, "--format", "json")
    assert json.loads(last_es.stdout)["run_id"] == runs["D"].run_id, last_es.stderr
    missing = cli("report", str(tmp_path / "nope"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "--es-url" in missing.stderr


def test_slo_verdicts_give_the_exit_status(runs):
    a = runs["A"]
    ok = cli("report", str(a.folder), "--format", "text", "--slo", "GET /api/slow p95<10s", "--slo", "p99.9<60s")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS GET /api/slow p95<10s [GET /api/slow]" in ok.stdout
    bad = cli("report", str(a.folder), "-o", "-", "--format", "json", "--slo", "/api/slow p95<5ms",
              "--slo", "failure_rate<1%")  # fmt: skip
    assert bad.returncode == 1
    lines = [line for line in bad.stderr.splitlines() if "FAIL" in line]
    assert len(lines) == 2 and "[GET /api/slow]" in lines[0] and "[Total]" in lines[1], bad.stderr
    assert len(json.loads(bad.stdout)["verdicts"]) == 2
    wrong = cli("report", str(a.folder), "--slo", "p95 under 3")
    assert wrong.returncode == 2 and "cannot read rule" in wrong.stderr


def test_compare_catches_the_planted_regression_and_passes_the_same_setup(runs, es_url, tmp_path):
    a, b, c = runs["A"], runs["B"], runs["C"]
    rules = ("--fail-on", "/api/slow p95>+100%", "--fail-on", "* failure_rate>+5pp")
    planted = cli("compare", str(a.folder), str(c.folder), "--format", "text", *rules)
    assert planted.returncode == 1, planted.stdout + planted.stderr
    fails = [line for line in planted.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1 and fails[0].startswith("FAIL /api/slow p95>+100% [GET /api/slow]"), planted.stdout
    breach = [line for line in planted.stderr.splitlines() if line.startswith("locust-sink: FAIL")]
    assert len(breach) == 1 and "GET /api/slow" in breach[0]
    # the same setup twice (baseline from files, candidate from Elasticsearch): no breach
    same = cli("compare", str(a.folder), b.run_id, "--es-url", es_url, "--es-index-prefix", b.prefix, "--format",
               "json", *rules)  # fmt: skip
    assert same.returncode == 0, same.stdout + same.stderr
    doc = json.loads(same.stdout)
    assert doc["failed"] == 0 and doc["candidates"][0]["run_id"] == b.run_id
    assert {row["endpoint"] for row in doc["candidates"][0]["endpoints"]} == set(truth(a))
    html = tmp_path / "compare.html"
    assert cli("compare", str(a.folder), str(c.folder), "-o", str(html), *rules).returncode == 1
    assert html.stat().st_size > 100_000


def test_runs_lists_newest_first(runs, es_url):
    root = runs["A"].folder.parent
    listed = cli("runs", str(root))
    assert listed.returncode == 0
    ids = [line.split()[0] for line in listed.stdout.splitlines()[2:]]
    assert ids == sorted([runs["A"].run_id, runs["C"].run_id], reverse=True)
    assert "run=A" in listed.stdout and "stopped" in listed.stdout
    es_rows = json.loads(cli("runs", "--es-url", es_url, "--es-index-prefix", runs["B"].prefix, "--format",
                             "json").stdout)  # fmt: skip
    assert [r["run_id"] for r in es_rows] == [runs["D"].run_id, runs["B"].run_id]
    want = truth(runs["B"])[TOTAL]
    assert es_rows[1]["requests"] == want["requests"] and es_rows[1]["p95"] == want["p95"]


def _cut(run: Run, dest: Path, share: float) -> Path:
    """A copy of a run folder whose files end early, as if the process had been killed."""
    assert run.folder is not None
    folder = dest / run.run_id
    folder.mkdir(parents=True)
    for path in run.folder.glob("*.ndjson"):
        lines = path.read_text().splitlines(keepends=True)
        keep = int(len(lines) * share) // 2 * 2
        (folder / path.name).write_text("".join(lines[:keep]))
    return folder


def test_incomplete_run_shows_warnings(runs, tmp_path):
    fig = read_run_folder(_cut(runs["A"], tmp_path, 0.6))
    text = " | ".join(fig.warnings)
    assert "no end" in text and "no final stats snapshot" in text and "no sink accounting" in text, text
    assert re.search(r"\d+ request documents found, but Locust counted \d+ requests", text), text


def test_reports_in_chromium(runs, es_url, tmp_path):
    """As a person sees them: each report opens offline, requests nothing outside file://, logs no console
    error, Bokeh rendered every chart (models in its document, painted canvases), and the per-endpoint table
    shown equals Locust's own final stats; an incomplete run shows its warning; a comparison opens too."""
    from locust_sink.report import compare_html, html
    from locust_sink.report.compare import compare

    pages = {}
    for label in ("A", "B", "D", "D-es"):
        pages[label] = tmp_path / f"{label}.html"
        pages[label].write_text(html.render(figures(runs[label], es_url)))
    pages["cut"] = tmp_path / "cut.html"
    pages["cut"].write_text(html.render(read_run_folder(_cut(runs["A"], tmp_path / "cut", 0.6))))
    pages["compare"] = tmp_path / "compare.html"
    result = compare(figures(runs["A"], es_url), [figures(runs["C"], es_url)], ["/api/slow p95>+100%"])
    pages["compare"].write_text(compare_html.render(result))
    with Browser() as browser:
        for label, page in pages.items():
            state = browser.open(page.as_uri())
            assert state.get("roots", 0) >= 3 and state["models"] > 200, (label, state)
            assert len(browser.painted()) >= state["figures"] >= 3, (label, state, browser.canvases())
            assert browser.errors() == [], (label, browser.errors())
            outside = [u for u in browser.requests if not u.startswith(("file://", "data:", "blob:", "about:"))]
            assert outside == [], (label, outside)
            if label in ("D", "cut", "compare"):
                browser.screenshot(tmp_path / f"{label}.png")
            warnings = browser.driver.find_elements("id", "warnings")
            if label == "cut":
                assert warnings and warnings[0].is_displayed() and "incomplete" in warnings[0].text
                continue
            assert not warnings, label
            if label == "compare":
                rows = browser.table("deltas_0")
                regressed = browser.driver.find_elements("css selector", "#deltas_0 tr.regressed td")
                assert any(cell.text == "GET /api/slow" for cell in regressed), [r[0] for r in rows]
                continue
            expected = truth(runs[label])
            cells = browser.table("endpoints") + browser.table("endpoints", "tfoot")
            table = {(f"{r[0]} {r[1]}" if r[0] else r[1]): r for r in cells}
            assert set(table) == set(expected), label
            for key, want in expected.items():
                row = table[key]
                assert (int(row[2]), int(row[3])) == (want["requests"], want["failures"]), (label, key)
                got = dict(zip(PERCENTILES, map(float, row[9:14]), strict=True))
                assert got == {p: float(want[p]) for p in PERCENTILES}, (label, key)
    assert (tmp_path / "D.png").stat().st_size > 50_000
