"""A comparison as a terminal table: per endpoint, baseline -> candidate with the changes."""

from __future__ import annotations

from . import fmt
from .compare import Comparison
from .text import table


def _pct(value: float | None) -> str:
    return "new" if value is None else f"{value:+.1f}%"


def render(result: Comparison) -> str:
    out = [f"baseline {result.baseline.run_id}"]
    for w in result.baseline.warnings:
        out.append(f"WARNING (baseline): {w}")
    for cand in result.candidates:
        out.append("")
        out.append(f"candidate {cand.run_id}")
        out.extend(f"WARNING: {w}" for w in cand.warnings)
        out.extend(f"note: different setup: {d}" for d in result.setup_differences(cand))
        rows = []
        for row in result.deltas(cand):
            b, c, d = row["baseline"], row["candidate"], row.get("change")
            if b is None or c is None or d is None:
                rows.append((row["endpoint"], "only in " + ("candidate" if b is None else "baseline"), *[""] * 5))
                continue
            rows.append(
                (
                    ("! " if row["regressed"] else "  ") + row["endpoint"],
                    f"{fmt.ms(b['p50'])} -> {fmt.ms(c['p50'])} ({_pct(d['p50_pct'])})",
                    f"{fmt.ms(b['p95'])} -> {fmt.ms(c['p95'])} ({_pct(d['p95_pct'])})",
                    f"{fmt.ms(b['p99'])} -> {fmt.ms(c['p99'])} ({_pct(d['p99_pct'])})",
                    f"{fmt.num(b['rps'], 2)} -> {fmt.num(c['rps'], 2)} ({_pct(d['rps_pct'])})",
                    f"{fmt.num(b['failure_pct'], 2)} -> {fmt.num(c['failure_pct'], 2)} ({d['failure_pp']:+.2f}pp)",
                    f"{b['requests']} / {c['requests']}",
                )
            )
        out.append(table(("Endpoint", "p50 ms", "p95 ms", "p99 ms", "RPS", "Fail %", "Requests"), rows))
        verdicts = result.verdicts.get(cand.run_id, [])
        out.extend(v.line() for v in verdicts)
    out.append("")
    out.append("(! = regressed: a --fail-on breach, or without rules p95 +10 % / failure rate +1 pp)")
    return "\n".join(out) + "\n"
