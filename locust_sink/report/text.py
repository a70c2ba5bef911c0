"""Terminal renderings: one run's table, a comparison's delta table, the runs list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import fmt
from .model import RunFigures
from .rules import Verdict


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    """A plain aligned table: the first `left` columns left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(fig: RunFigures, verdicts: Sequence[Verdict] = ()) -> str:
    run = fig.run
    out = [
        f"run {fig.run_id}  {run.get('status', '')}  {fmt.when(run.get('start_epoch'))}  "
        f"{fmt.duration(run.get('duration_s'))}  users {run.get('users', '')}  host {run.get('host', '')}",
        f"source: {fig.source}",
    ]
    if run.get("tags"):
        out.append(f"tags: {fmt.tags(run.get('tags'))}")
    for w in fig.warnings:
        out.append(f"WARNING: {w}")
    for sentence in fig.bottleneck:
        out.append(f"BOTTLENECK: {sentence}")
    out.append("")
    headers = ("Type", "Name", "Reqs", "Fails", "Fail%", "RPS", "Avg", "Min", "Max", "p50", "p90", "p95", "p99",
               "p99.9", "Size")  # fmt: skip
    rows = [
        (r.method, r.name, r.requests, r.failures, fmt.num(r.failure_pct, 2), fmt.num(r.rps, 2), fmt.ms(r.avg_ms),
         fmt.ms(r.min_ms), fmt.ms(r.max_ms), fmt.ms(r.p50), fmt.ms(r.p90), fmt.ms(r.p95), fmt.ms(r.p99),
         fmt.ms(r.p99_9), fmt.num(r.avg_size, 0))
        for r in [*fig.endpoints, fig.total]
    ]  # fmt: skip
    out.append(table(headers, rows, left=2))
    out.append("(times in ms; percentiles from Locust's histogram)")
    if fig.workers:
        out.append("")
        out.append(table(("Worker", "Reqs", "Fails", "RPS", "p50", "p95", "p99"),
                         [(w.key, w.requests, w.failures, fmt.num(w.rps, 2), fmt.ms(w.p50), fmt.ms(w.p95),
                           fmt.ms(w.p99)) for w in fig.workers]))  # fmt: skip
    out.extend(health_lines(fig))
    if fig.errors:
        out.append("")
        out.append(table(("Method", "Name", "Error", "Count"),
                         [(e["method"], e["name"], str(e["error"])[:80], e["count"]) for e in fig.errors[:10]],
                         left=3))  # fmt: skip
    if verdicts:
        out.append("")
        out.extend(v.line() for v in verdicts)
    return "\n".join(out) + "\n"


def health_lines(fig: RunFigures) -> list[str]:
    """The load generators' CPU/memory and the hosts' figures, one table each."""
    from .loadgen import summary_rows

    out: list[str] = []
    if fig.load_generators:
        rows = summary_rows(fig.load_generators, fig.saturation)
        out += ["", table(("Load generator", "CPU mean %", "CPU max %", "CPU wait mean %", "Memory max MB",
                           "Saturated s"),
                          [(r["node"], fmt.num(r["cpu_mean"]), fmt.num(r["cpu_max"]), fmt.num(r["wait_mean"]),
                            fmt.num(r["memory_max_mb"]), fmt.num(r["saturated_s"])) for r in rows])]  # fmt: skip
    if fig.hosts is not None and fig.hosts.columns:
        rows = []
        for host, cols in fig.hosts.columns.items():
            cpu = [v for v in cols["cpu"] if v is not None]
            mem = [v for v in cols["memory"] if v is not None]
            net = [v for v in cols["net_in"] if v is not None]
            rows.append((host, fmt.num(sum(cpu) / len(cpu) if cpu else None), fmt.num(max(cpu) if cpu else None),
                         fmt.num(max(mem) if mem else None), fmt.num(max(net) / 1e6 if net else None, 2)))  # fmt: skip
        out += ["", table(("Host", "CPU mean %", "CPU max %", "Memory max %", "Net in max MB/s"), rows),
                f"(host metrics from {fig.hosts.source}, windows of {fig.hosts.window_s} s)"]  # fmt: skip
    return out


def runs_table(rows: Sequence[dict[str, Any]]) -> str:
    headers = ("Run id", "Start", "Duration", "Users", "Requests", "Fail%", "p95", "Tags", "Status")
    body = [
        (r["run_id"], fmt.when(r.get("start")), fmt.duration(r.get("duration_s")), r.get("users"), r.get("requests"),
         fmt.num(r.get("failure_pct"), 2), fmt.ms(r.get("p95")), fmt.tags(r.get("tags")), r.get("status"))
        for r in rows
    ]  # fmt: skip
    return table(headers, body, left=2) + "\n"
