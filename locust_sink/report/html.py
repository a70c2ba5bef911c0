"""One run's report as one self-contained HTML file: Bokeh charts with BokehJS inline (`bokeh.resources.INLINE`),
the data inline, no network fetch. Needs the `report` extra (`pip install 'locust-sink[report]'`)."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources as pkg_resources
from typing import Any

from bokeh.core.templates import get_env
from bokeh.embed import file_html
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div
from bokeh.resources import INLINE

from . import charts, fmt
from .htmltable import Cell, Table
from .model import SERIES_COLUMNS, TOTAL, RunFigures
from .rules import Verdict

MAX_CHART_ENDPOINTS = 12
ENDPOINT_COLUMNS = (
    "Type", "Name", "# Requests", "# Fails", "Fail %", "RPS", "Avg (ms)", "Min (ms)", "Max (ms)",
    "p50", "p90", "p95", "p99", "p99.9", "Avg size (B)",
)  # fmt: skip


def template() -> Any:
    text = pkg_resources.files(__package__).joinpath("templates/report.html.jinja").read_text(encoding="utf-8")
    return get_env().from_string(text)


def page(title: str, heading: str, note: str, warnings: Sequence[str], sections: list[dict], roots: list) -> str:
    """The HTML page: `sections` (title, note, tables, details, charts = names of `roots`) in order."""
    return file_html(
        roots,
        resources=INLINE,
        title=title,
        template=template(),
        template_variables={"heading": heading, "note": note, "warnings": list(warnings), "sections": sections},
    )


def endpoint_table(fig: RunFigures, table_id: str = "endpoints") -> Table:
    table = Table(table_id, ENDPOINT_COLUMNS, left=frozenset({0, 1}))
    for r in [*fig.endpoints, fig.total]:
        cells = [
            r.method, r.name, Cell(f"{r.requests:,}", r.requests), Cell(f"{r.failures:,}", r.failures),
            Cell(fmt.num(r.failure_pct, 2), r.failure_pct), Cell(fmt.num(r.rps, 2), r.rps),
            Cell(fmt.ms(r.avg_ms), r.avg_ms), Cell(fmt.ms(r.min_ms), r.min_ms), Cell(fmt.ms(r.max_ms), r.max_ms),
            *(Cell(fmt.ms(getattr(r, p)), getattr(r, p)) for p in ("p50", "p90", "p95", "p99", "p99_9")),
            Cell(fmt.num(r.avg_size, 0), r.avg_size),
        ]  # fmt: skip
        table.add(cells, foot=r.key == TOTAL)
    return table


def header_table(fig: RunFigures) -> Table:
    run = fig.run
    users = run.get("users")
    rows = [
        ("Run id", fig.run_id),
        ("Status", run.get("status", "")),
        ("Start", fmt.when(run.get("start_epoch"))),
        ("End", fmt.when(run.get("end_epoch"))),
        ("Duration", fmt.duration(run.get("duration_s"))),
        ("Host", run.get("host", "")),
        ("Locustfile", run.get("locustfile", "")),
        ("Users / spawn rate", f"{users if users is not None else ''} / {run.get('spawn_rate', '')}"),
        ("Mode", f"{run.get('mode', '')}" + (f", {len(fig.workers)} workers" if fig.workers else "")),
        ("Tags", fmt.tags(run.get("tags"))),
        ("Description", run.get("description", "")),
        ("Git commit", run.get("git_commit", "")),
        ("Locust / sink", f"{run.get('locust_version', '')} / {run.get('sink_version', '')}"),
        ("Exit code", run.get("exit_code", "")),
        ("Source", fig.source),
    ]
    table = Table("run", ("", ""), sortable=False, left=frozenset({0, 1}))
    for label, value in rows:
        table.add([label, "" if value is None else value])
    return table


def verdict_table(verdicts: Sequence[Verdict]) -> Table:
    table = Table("verdicts", ("Rule", "Endpoint", "Value", "Verdict"), left=frozenset({0, 1}))
    for v in verdicts:
        table.add([v.rule, v.endpoint, v.shown, Cell("PASS" if v.passed else "FAIL", cls="ok" if v.passed else "bad")])
    return table


def chart_keys(fig: RunFigures) -> list[str]:
    """Endpoints charted one line each: the busiest ones (all of them are in the table and the selector)."""
    ranked = sorted(fig.endpoints, key=lambda r: (-r.requests, r.key))
    return [r.key for r in ranked[:MAX_CHART_ENDPOINTS]]


def run_charts(fig: RunFigures) -> tuple[list, dict[str, list[str]]]:
    """The Bokeh roots of one run and, per report section, the names of its charts."""
    x_range = charts.time_range()
    series = {key: ColumnDataSource(cols, name=f"series:{key}") for key, cols in fig.series.items()}
    empty = {c: [] for c in SERIES_COLUMNS}
    total = series.get(TOTAL) or ColumnDataSource(empty)
    hists = {key: ColumnDataSource(cols) for key, cols in fig.histograms.items()}
    options = [TOTAL, *sorted(k for k in fig.series if k != TOTAL)]
    selected = ColumnDataSource(dict(total.data))
    selected_hist = ColumnDataSource(
        dict(hists[TOTAL].data) if TOTAL in hists else {"ms": [], "left": [], "right": [], "count": []}
    )
    rt = charts.response_time_chart(selected, x_range, f"Response time per window: {TOTAL}")
    hist = charts.histogram_chart(selected_hist, f"Response time distribution (whole run): {TOTAL}")
    select = charts.endpoint_selector(options, selected, series, selected_hist, hists, [rt.title, hist.title])
    keys = chart_keys(fig)
    per_ep = {k: series[k] for k in keys if k in series}
    throughput = charts.throughput_chart(total, x_range)
    failures = charts.per_endpoint_chart(per_ep, x_range, "fail_s", "Failures per second by endpoint", "failures/s")
    p95 = charts.per_endpoint_chart(per_ep, x_range, "p95", "p95 per window by endpoint", "ms")
    rps = charts.per_endpoint_chart(per_ep, x_range, "rps", "Requests per second by endpoint", "requests/s")
    time_charts = [throughput, rt, failures, p95, rps]
    roots: dict[str, Any] = {
        "throughput": throughput,
        "rt": column(select, rt, sizing_mode="stretch_width", name="rt"),
        "failures": failures,
        "p95": p95,
        "rps": rps,
        "hist": hist,
    }
    sections = {"load": ["throughput", "rt", "hist", "p95", "rps", "failures"]}
    if fig.worker_series:
        wsources = {k: ColumnDataSource(v) for k, v in sorted(fig.worker_series.items())}
        roots["workers_rps"] = charts.per_endpoint_chart(
            wsources, x_range, "rps", "Requests per second by worker", "requests/s"
        )
        roots["workers_p95"] = charts.per_endpoint_chart(wsources, x_range, "p95", "p95 per window by worker", "ms")
        time_charts += [roots["workers_rps"], roots["workers_p95"]]
        sections["workers"] = ["workers_rps", "workers_p95"]
    codes = [c for c in fig.status_codes if c.startswith("s")]
    if codes:
        roots["status"] = charts.status_chart(ColumnDataSource(fig.status_codes), codes, x_range)
        time_charts.append(roots["status"])
        sections["status"] = ["status"]
    if fig.events.get("t"):
        events = ColumnDataSource(fig.events)
        for chart in time_charts:
            charts.add_events(chart, events, fig.events["event"], fig.events["t"])
    for name, root in roots.items():
        root.name = name
    return list(roots.values()), sections


def render(fig: RunFigures, verdicts: Sequence[Verdict] = ()) -> str:
    roots, chart_sections = run_charts(fig)
    sections: list[dict[str, Any]] = [{"title": "Run", "id": "run", "tables": [header_table(fig).html()], "charts": []}]
    if verdicts:
        failed = sum(not v.passed for v in verdicts)
        note = f"{failed} of {len(verdicts)} objectives breached" if failed else f"all {len(verdicts)} objectives met"
        sections.append(
            {
                "title": "Service-level objectives",
                "id": "slo",
                "note": note,
                "tables": [verdict_table(verdicts).html()],
                "charts": [],
            }
        )
    sections.append(
        {"title": "Requests per endpoint", "id": "endpoints", "tables": [endpoint_table(fig).html()], "charts": [],
         "note": "Locust's final figures; percentiles in ms from Locust's histogram (equal to Locust's own). Click a column to sort."}
    )  # fmt: skip
    window = f"{fig.window_s:.0f} s" if fig.window_s else "one snapshot interval"
    sections.append(
        {"title": "Over time", "id": "charts", "charts": chart_sections["load"], "tables": [],
         "note": f"Windows of about {window}: each window's percentiles are exact for that window (from the difference "
                 "of Locust's cumulative histograms). Drag to zoom (all time charts move together), click a legend entry to hide a line."}
    )  # fmt: skip
    if "workers" in chart_sections:
        sections.append(
            {
                "title": "Per worker",
                "id": "workers",
                "charts": chart_sections["workers"],
                "tables": [worker_table(fig).html()],
            }
        )
    if "status" in chart_sections:
        sections.append({"title": "Status codes", "id": "status", "charts": chart_sections["status"], "tables": []})
    sections.append(
        {
            "title": "Errors",
            "id": "errors",
            "tables": [error_table(fig).html()],
            "charts": [],
            "note": "" if fig.errors else "no failed requests",
        }
    )
    if fig.user_errors:
        sections.append(
            {
                "title": "User errors (exceptions in user code)",
                "id": "user_errors",
                "charts": [],
                "tables": [],
                "details": [
                    {
                        "summary": f"{u['count']} x {u['message']} (nodes: {', '.join(map(str, u['nodes']))})",
                        "text": u["traceback"],
                    }
                    for u in fig.user_errors
                ],
            }
        )
    sections.append(
        {
            "title": f"The {len(fig.slowest)} slowest requests",
            "id": "slowest",
            "tables": [slowest_table(fig).html()],
            "charts": [],
        }
    )
    sections.append(
        {
            "title": "The sink's accounting per node",
            "id": "accounting",
            "tables": [accounting_table(fig).html()],
            "charts": [],
            "note": "where every request record went: emitted = indexed + written + spooled + dead-lettered + dropped + queued + in flight",
        }
    )
    heading = f"locust-sink report: {fig.run_id}"
    note = f"{fig.total.requests:,} requests, {fig.total.failures:,} failures ({fig.total.failure_pct:.2f} %), p95 {fmt.ms(fig.total.p95)} ms"
    return page(heading, heading, note, fig.warnings, sections, roots)


def worker_table(fig: RunFigures) -> Table:
    table = Table(
        "workers",
        ("Worker", "# Requests", "# Fails", "RPS", "Avg (ms)", "p50", "p95", "p99", "Max (ms)"),
        left=frozenset({0}),
    )
    for r in fig.workers:
        table.add([r.key, Cell(f"{r.requests:,}", r.requests), Cell(f"{r.failures:,}", r.failures), Cell(fmt.num(r.rps, 2), r.rps),
                   Cell(fmt.ms(r.avg_ms), r.avg_ms), Cell(fmt.ms(r.p50), r.p50), Cell(fmt.ms(r.p95), r.p95),
                   Cell(fmt.ms(r.p99), r.p99), Cell(fmt.ms(r.max_ms), r.max_ms)])  # fmt: skip
    return table


def error_table(fig: RunFigures) -> Table:
    table = Table(
        "errors_table", ("Method", "Name", "Error", "Count", "First seen", "Last seen"), left=frozenset({0, 1, 2})
    )
    for e in fig.errors[:200]:
        table.add([e["method"] or "", e["name"] or "", Cell(e["error"], cls="wrap"), Cell(f"{e['count']:,}", e["count"]),
                   Cell(fmt.when(e["first_seen"]), e["first_seen"]), Cell(fmt.when(e["last_seen"]), e["last_seen"])])  # fmt: skip
    return table


def slowest_table(fig: RunFigures) -> Table:
    table = Table(
        "slowest_table",
        ("Time", "Node", "Method", "Name", "URL", "Status", "Response time (ms)"),
        left=frozenset({0, 1, 2, 3, 4}),
    )
    for s in fig.slowest:
        table.add([Cell(fmt.when(s["time"]), s["time"]), s["node"] or "", s["method"] or "", s["name"] or "",
                   Cell(s["url"] or "", cls="wrap"), s["status"] if s["status"] is not None else "",
                   Cell(fmt.ms(s["response_time"]), s["response_time"])])  # fmt: skip
    return table


def accounting_table(fig: RunFigures) -> Table:
    fields = ("emitted", "indexed", "written", "spooled", "dead_lettered", "dropped", "queued", "in_flight")
    table = Table(
        "accounting_table", ("Node", *fields, "sampled out", "state", "balanced", "from"), left=frozenset({0})
    )
    for a in fig.accounting:
        d = a.as_dict()
        table.add([a.node, *(Cell(f"{d[f]:,}", d[f]) for f in fields), d["sampled_out"], d["state"] or "",
                   Cell("yes" if a.balanced else "NO", cls="ok" if a.balanced else "bad"), d["from"]],
                  cls="" if a.balanced else "regressed")  # fmt: skip
    return table
