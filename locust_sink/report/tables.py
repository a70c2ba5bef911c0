"""The HTML tables of the report pages (built from `RunFigures`, escaped by `htmltable.Table`)."""

from __future__ import annotations

from collections.abc import Sequence

from . import fmt
from .htmltable import Cell, Table
from .model import TOTAL, RunFigures
from .rules import Verdict

ENDPOINT_COLUMNS = (
    "Type",
    "Name",
    "# Requests",
    "# Fails",
    "Fail %",
    "RPS",
    "Avg (ms)",
    "Min (ms)",
    "Max (ms)",
    "p50",
    "p90",
    "p95",
    "p99",
    "p99.9",
    "Avg size (B)",
)


def endpoint_table(fig: RunFigures, table_id: str = "endpoints") -> Table:
    table = Table(table_id, ENDPOINT_COLUMNS, left=frozenset({0, 1}))
    for r in [*fig.endpoints, fig.total]:
        cells = [
            r.method,
            r.name,
            Cell(f"{r.requests:,}", r.requests),
            Cell(f"{r.failures:,}", r.failures),
            Cell(fmt.num(r.failure_pct, 2), r.failure_pct),
            Cell(fmt.num(r.rps, 2), r.rps),
            Cell(fmt.ms(r.avg_ms), r.avg_ms),
            Cell(fmt.ms(r.min_ms), r.min_ms),
            Cell(fmt.ms(r.max_ms), r.max_ms),
            *(Cell(fmt.ms(getattr(r, p)), getattr(r, p)) for p in ("p50", "p90", "p95", "p99", "p99_9")),
            Cell(fmt.num(r.avg_size, 0), r.avg_size),
        ]
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


def worker_table(fig: RunFigures) -> Table:
    table = Table(
        "workers",
        ("Worker", "# Requests", "# Fails", "RPS", "Avg (ms)", "p50", "p95", "p99", "Max (ms)"),
        left=frozenset({0}),
    )
    for r in fig.workers:
        table.add(
            [
                r.key,
                Cell(f"{r.requests:,}", r.requests),
                Cell(f"{r.failures:,}", r.failures),
                Cell(fmt.num(r.rps, 2), r.rps),
                Cell(fmt.ms(r.avg_ms), r.avg_ms),
                Cell(fmt.ms(r.p50), r.p50),
                Cell(fmt.ms(r.p95), r.p95),
                Cell(fmt.ms(r.p99), r.p99),
                Cell(fmt.ms(r.max_ms), r.max_ms),
            ]
        )
    return table


def error_table(fig: RunFigures) -> Table:
    table = Table(
        "errors_table", ("Method", "Name", "Error", "Count", "First seen", "Last seen"), left=frozenset({0, 1, 2})
    )
    for e in fig.errors[:200]:
        table.add(
            [
                e["method"] or "",
                e["name"] or "",
                Cell(e["error"], cls="wrap"),
                Cell(f"{e['count']:,}", e["count"]),
                Cell(fmt.when(e["first_seen"]), e["first_seen"]),
                Cell(fmt.when(e["last_seen"]), e["last_seen"]),
            ]
        )
    return table


def slowest_table(fig: RunFigures) -> Table:
    table = Table(
        "slowest_table",
        ("Time", "Node", "Method", "Name", "URL", "Status", "Response time (ms)"),
        left=frozenset({0, 1, 2, 3, 4}),
    )
    for s in fig.slowest:
        table.add(
            [
                Cell(fmt.when(s["time"]), s["time"]),
                s["node"] or "",
                s["method"] or "",
                s["name"] or "",
                Cell(s["url"] or "", cls="wrap"),
                s["status"] if s["status"] is not None else "",
                Cell(fmt.ms(s["response_time"]), s["response_time"]),
            ]
        )
    return table


def accounting_table(fig: RunFigures) -> Table:
    fields = ("emitted", "indexed", "written", "spooled", "dead_lettered", "dropped", "queued", "in_flight")
    table = Table(
        "accounting_table", ("Node", *fields, "sampled out", "state", "balanced", "from"), left=frozenset({0})
    )
    for a in fig.accounting:
        d = a.as_dict()
        table.add(
            [
                a.node,
                *(Cell(f"{d[f]:,}", d[f]) for f in fields),
                d["sampled_out"],
                d["state"] or "",
                Cell("yes" if a.balanced else "NO", cls="ok" if a.balanced else "bad"),
                d["from"],
            ],
            cls="" if a.balanced else "regressed",
        )
    return table


def loadgen_table(fig: RunFigures) -> Table:
    """Per load generator node: mean and highest CPU, highest memory, time CPU-saturated."""
    from .loadgen import summary_rows

    columns = ("Node", "CPU mean %", "CPU max %", "Waiting for a CPU, mean %", "Memory max (MB)", "Saturated (s)")
    table = Table("loadgen", columns, left=frozenset({0}))
    for r in summary_rows(fig.load_generators, fig.saturation):
        values = (r["cpu_mean"], r["cpu_max"], r["wait_mean"], r["memory_max_mb"], r["saturated_s"])
        table.add([r["node"], *(Cell(fmt.num(v), v) for v in values)])
    return table
