"""One run's report as one self-contained HTML file: Bokeh charts with BokehJS inline (`bokeh.resources.INLINE`),
the data inline, no network fetch. Needs the `report` extra (`pip install 'locust-sink[report]'`)."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources as pkg_resources
from typing import Any

from bokeh.core.templates import get_env
from bokeh.embed import file_html
from bokeh.layouts import column
from bokeh.models import ColumnDataSource
from bokeh.resources import INLINE

from . import charts, fmt, health_charts
from .model import SERIES_COLUMNS, TOTAL, RunFigures
from .rules import Verdict
from .tables import (
    accounting_table,
    endpoint_table,
    error_table,
    header_table,
    loadgen_table,
    slowest_table,
    verdict_table,
    worker_table,
)

MAX_CHART_ENDPOINTS = 12
MAX_SELECTABLE_ENDPOINTS = 50  # the report's size grows with each: their series and histograms are inline


def template() -> Any:
    text = pkg_resources.files(__package__).joinpath("templates/report.html.jinja").read_text(encoding="utf-8")
    return get_env().from_string(text)


def page(
    title: str,
    heading: str,
    note: str,
    warnings: Sequence[str],
    sections: list[dict],
    roots: list,
    notices: Sequence[str] = (),
) -> str:
    """The HTML page: `sections` (title, note, tables, details, charts = names of `roots`) in order; `notices`
    (the load generators' saturation) in a box of their own at the top."""
    return file_html(
        roots,
        resources=INLINE,
        title=title,
        template=template(),
        template_variables={
            "heading": heading,
            "note": note,
            "warnings": list(warnings),
            "sections": sections,
            "notices": list(notices),
        },  # fmt: skip
    )


def chart_keys(fig: RunFigures, limit: int) -> list[str]:
    """The busiest endpoints: charted one line each (12), or selectable (50); all of them are in the table."""
    ranked = sorted(fig.endpoints, key=lambda r: (-r.requests, r.key))
    return [r.key for r in ranked[:limit]]


def run_charts(fig: RunFigures) -> tuple[list, dict[str, list[str]]]:
    """The Bokeh roots of one run and, per report section, the names of its charts."""
    x_range = charts.time_range()
    selectable = {TOTAL, *chart_keys(fig, MAX_SELECTABLE_ENDPOINTS)}
    series = {key: ColumnDataSource(cols) for key, cols in fig.series.items() if key in selectable}
    empty = {c: [] for c in SERIES_COLUMNS}
    total = series.get(TOTAL) or ColumnDataSource(empty)
    hists = {key: ColumnDataSource(cols) for key, cols in fig.histograms.items() if key in selectable}
    options = [TOTAL, *sorted(k for k in series if k != TOTAL)]
    selected = ColumnDataSource(dict(total.data))
    selected_hist = ColumnDataSource(
        dict(hists[TOTAL].data) if TOTAL in hists else {"ms": [], "left": [], "right": [], "count": []}
    )
    rt = charts.response_time_chart(selected, x_range, f"Response time per window: {TOTAL}")
    hist = charts.histogram_chart(selected_hist, f"Response time distribution (whole run): {TOTAL}")
    select = charts.endpoint_selector(options, selected, series, selected_hist, hists, [rt.title, hist.title])
    per_ep = {k: series[k] for k in chart_keys(fig, MAX_CHART_ENDPOINTS) if k in series}
    throughput = charts.throughput_chart(total, x_range)
    time_charts = [throughput, rt]
    roots: dict[str, Any] = {
        "throughput": throughput,
        "rt": column(select, rt, sizing_mode="stretch_width", name="rt"),
        "hist": hist,
    }
    if per_ep:
        for name, column_name, title, unit in (
            ("p95", "p95", "p95 per window by endpoint", "ms"),
            ("rps", "rps", "Requests per second by endpoint", "requests/s"),
            ("failures", "fail_s", "Failures per second by endpoint", "failures/s"),
        ):
            roots[name] = charts.per_endpoint_chart(per_ep, x_range, column_name, title, unit)
            time_charts.append(roots[name])
    sections = {"load": list(roots)}
    if fig.worker_series:
        wsources = {k: ColumnDataSource(v) for k, v in sorted(fig.worker_series.items())}
        roots["workers_rps"] = charts.per_endpoint_chart(
            wsources, x_range, "rps", "Requests per second by worker", "requests/s"
        )
        roots["workers_p95"] = charts.per_endpoint_chart(wsources, x_range, "p95", "p95 per window by worker", "ms")
        time_charts += [roots["workers_rps"], roots["workers_p95"]]
        sections["workers"] = ["workers_rps", "workers_p95"]
    hosts = fig.hosts.columns if fig.hosts is not None else {}
    if fig.load_generators or hosts:
        sections["health"] = []
        if fig.load_generators:
            roots["loadgen_cpu"] = health_charts.loadgen_cpu_chart(fig.load_generators, fig.saturation, x_range)
            roots["loadgen_memory"] = health_charts.loadgen_memory_chart(fig.load_generators, x_range)
            sections["health"] += ["loadgen_cpu", "loadgen_memory"]
        if hosts:
            roots["host_cpu"] = health_charts.host_cpu_chart(hosts, fig.saturation, x_range)
            roots["host_io"] = health_charts.host_io_chart(hosts, x_range)
            sections["health"] += ["host_cpu", "host_io"]
        time_charts += [roots[name] for name in sections["health"]]
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


def section(
    title: str,
    sid: str,
    *,
    tables: Sequence = (),
    charts: Sequence[str] = (),
    note: str = "",
    details: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    """One part of a report page (see the template): a heading, a note, tables, collapsible texts, charts."""
    return {"title": title, "id": sid, "tables": [t.html() for t in tables], "charts": list(charts), "note": note,
            "details": list(details)}  # fmt: skip


ENDPOINTS_NOTE = (
    "Locust's final figures; percentiles in ms from Locust's histogram (equal to Locust's own). Click a column "
    "header to sort."
)
CHARTS_NOTE = (
    "Windows of about {window}: each window's percentiles are exact for that window (from the difference of "
    "Locust's cumulative histograms). Drag to zoom (all time charts move together); click a legend entry to hide "
    "a line; the triangles at the bottom are events (hover for what happened)."
)
ACCOUNTING_NOTE = (
    "Where every request record went: emitted = indexed + written + spooled + dead-lettered + dropped + queued + "
    "in flight."
)


def render(fig: RunFigures, verdicts: Sequence[Verdict] = ()) -> str:
    roots, charted = run_charts(fig)
    sections = [section("Run", "run", tables=[header_table(fig)])]
    if verdicts:
        failed = sum(not v.passed for v in verdicts)
        note = f"{failed} of {len(verdicts)} objectives breached" if failed else f"all {len(verdicts)} objectives met"
        sections.append(section("Service-level objectives", "slo", tables=[verdict_table(verdicts)], note=note))
    sections.append(section("Requests per endpoint", "endpoints", tables=[endpoint_table(fig)], note=ENDPOINTS_NOTE))
    window = f"{fig.window_s:.0f} s" if fig.window_s else "one snapshot interval"
    sections.append(section("Over time", "charts", charts=charted["load"], note=CHARTS_NOTE.format(window=window)))
    if "workers" in charted:
        sections.append(section("Per worker", "workers", tables=[worker_table(fig)], charts=charted["workers"]))
    if "health" in charted:
        sections.append(section("Who is the bottleneck: load generators and hosts", "health",
                                tables=[loadgen_table(fig)] if fig.load_generators else [],
                                charts=charted["health"], note=health_note(fig)))  # fmt: skip
    if "status" in charted:
        sections.append(section("Status codes", "status", charts=charted["status"], note="by request start time"))
    sections.append(section("Errors", "errors", tables=[error_table(fig)], note="" if fig.errors else "none"))
    if fig.user_errors:
        details = [
            {"summary": f"{u['count']} x {u['message']} (nodes: {', '.join(map(str, u['nodes']))})",
             "text": u["traceback"]}
            for u in fig.user_errors
        ]  # fmt: skip
        sections.append(section("User errors (exceptions in user code)", "user_errors", details=details))
    sections.append(section(f"The {len(fig.slowest)} slowest requests", "slowest", tables=[slowest_table(fig)]))
    sections.append(
        section("The sink's accounting per node", "accounting", tables=[accounting_table(fig)], note=ACCOUNTING_NOTE)
    )
    heading = f"locust-sink report: {fig.run_id}"
    t = fig.total
    note = f"{t.requests:,} requests, {t.failures:,} failures ({t.failure_pct:.2f} %), p95 {fmt.ms(t.p95)} ms"
    return page(heading, heading, note, fig.warnings, sections, roots, fig.bottleneck)


def health_note(fig: RunFigures) -> str:
    parts = []
    if fig.load_generators:
        parts.append(
            " ".join(fig.bottleneck) if fig.bottleneck else "No load generator reached 90 % CPU: the results measure "
            "the system under test, as far as Locust's CPU goes."
        )  # fmt: skip
    if fig.hosts is not None and fig.hosts.columns:
        parts.append(f"Host metrics from {fig.hosts.source}, in windows of {fig.hosts.window_s} s.")
    elif fig.hosts is not None:
        parts.append(f"No host metrics for the run's time range in {fig.hosts.source}.")
    return " ".join(parts)
