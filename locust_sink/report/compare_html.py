"""A comparison as one self-contained HTML file: delta tables with the regressions highlighted, and each
run's Total (and busiest endpoints') series overlaid on seconds since its start."""

from __future__ import annotations

from typing import Any

from bokeh.models import ColumnDataSource

from . import charts, fmt
from .compare import Comparison
from .html import page, section
from .htmltable import Cell, Table
from .model import TOTAL, RunFigures
from .tables import verdict_table

MAX_OVERLAID_ENDPOINTS = 6


def _relative(fig: RunFigures, key: str) -> ColumnDataSource:
    cols = dict(fig.series.get(key) or {"t": [], "rps": [], "p95": [], "fail_s": []})
    start = fig.start or (cols["t"][0] / 1000.0 if cols.get("t") else 0.0)
    cols["x"] = [t / 1000.0 - start for t in cols.get("t", [])]
    return ColumnDataSource(cols)


def delta_table(result: Comparison, cand: RunFigures, index: int) -> Table:
    table = Table(
        f"deltas_{index}",
        (
            "Endpoint",
            "p50 (ms)",
            "Δ p50",
            "p95 (ms)",
            "Δ p95",
            "p99 (ms)",
            "Δ p99",
            "RPS",
            "Δ RPS",
            "Fail %",
            "Δ fail (pp)",
            "Requests",
        ),
        left=frozenset({0}),
    )
    for row in result.deltas(cand):
        b, c, d = row["baseline"], row["candidate"], row.get("change")
        if b is None or c is None or d is None:
            table.add([row["endpoint"], Cell("only in " + ("candidate" if b is None else "baseline"))] + [""] * 10)
            continue
        cells: list[Any] = [row["endpoint"]]
        for col in ("p50", "p95", "p99"):
            cells += [f"{fmt.ms(b[col])} → {fmt.ms(c[col])}", _pct_cell(d[f"{col}_pct"])]
        cells += [f"{fmt.num(b['rps'], 2)} → {fmt.num(c['rps'], 2)}", _pct_cell(d["rps_pct"])]
        cells += [
            f"{fmt.num(b['failure_pct'], 2)} → {fmt.num(c['failure_pct'], 2)}",
            Cell(f"{d['failure_pp']:+.2f}", d["failure_pp"]),
        ]
        cells.append(f"{b['requests']:,} / {c['requests']:,}")
        table.add(cells, cls="regressed" if row["regressed"] else "")
    return table


def _pct_cell(value: float | None) -> Cell:
    return Cell("new" if value is None else f"{value:+.1f} %", value if value is not None else 1e9)


def render(result: Comparison) -> str:
    runs = [result.baseline, *result.candidates]
    labels = [f"baseline {result.baseline.run_id}", *(f"candidate {c.run_id}" for c in result.candidates)]
    x_range = charts.time_range()
    roots = []
    names = []
    for column, title, unit in (
        ("rps", "Total requests per second", "requests/s"),
        ("p95", "Total p95 per window", "ms"),
        ("fail_s", "Total failures per second", "failures/s"),
    ):
        sources = [(label, _relative(fig, TOTAL)) for label, fig in zip(labels, runs, strict=True)]
        chart = charts.overlay_chart(sources, column, title, unit, x_range)
        chart.name = f"total_{column}"
        roots.append(chart)
        names.append(chart.name)
    busiest = sorted(result.baseline.endpoints, key=lambda r: -r.requests)[:MAX_OVERLAID_ENDPOINTS]
    for i, row in enumerate(busiest):
        sources = [(label, _relative(fig, row.key)) for label, fig in zip(labels, runs, strict=True)]
        chart = charts.overlay_chart(sources, "p95", f"p95 per window: {row.key}", "ms", x_range)
        chart.name = f"endpoint_{i}"
        roots.append(chart)
        names.append(chart.name)
    sections = []
    warnings = [f"baseline: {w}" for w in result.baseline.warnings]
    for i, cand in enumerate(result.candidates):
        warnings += [f"{cand.run_id}: {w}" for w in cand.warnings]
        verdicts = result.verdicts.get(cand.run_id, [])
        notes = "; ".join(result.setup_differences(cand))
        tables = [delta_table(result, cand, i)] + ([verdict_table(verdicts)] if verdicts else [])
        failed = sum(not v.passed for v in verdicts)
        verdict = f"{failed} breach(es) of --fail-on" if failed else ("all --fail-on rules pass" if verdicts else "")
        note = " · ".join(x for x in (verdict, f"different setup: {notes}" if notes else "") if x)
        sections.append(
            section(f"{cand.run_id} vs baseline {result.baseline.run_id}", f"candidate_{i}", tables=tables, note=note)
        )
    sections.append(
        section(
            "Overlaid, on seconds since each run's start",
            "overlay",
            charts=names,
            note="dashed: the baseline. Drag to zoom; click a legend entry to hide a run.",
        )
    )
    heading = f"locust-sink comparison: {result.baseline.run_id} vs {', '.join(c.run_id for c in result.candidates)}"
    note = "rows in red regressed (a --fail-on breach, or without rules p95 +10 % or failure rate +1 pp)"
    return page(heading, heading, note, warnings, sections, roots)
