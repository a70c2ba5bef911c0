"""A baseline and one or more candidates, endpoint by endpoint: figures side by side and their changes.

`deltas()` is the table (`--format json` prints it); regressions are the `--fail-on` breaches
(`rules.check_regressions`), and without rules a row is marked when its p95 rose more than 10 % or its
failure rate more than 1 percentage point (a highlight, never an exit status).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .model import TOTAL, EndpointRow, RunFigures
from .rules import Verdict, check_regressions, pct_change

COMPARED = ("p50", "p95", "p99", "rps", "failure_pct")
HIGHLIGHT_P95_PCT = 10.0
HIGHLIGHT_FAILURE_PP = 1.0
SETUP_FIELDS = ("locustfile", "host", "users", "spawn_rate", "run_time_limit", "mode")


@dataclass
class Comparison:
    baseline: RunFigures
    candidates: list[RunFigures]
    verdicts: dict[str, list[Verdict]] = field(default_factory=dict)  # candidate run id -> its breaches / passes

    @property
    def failed(self) -> list[Verdict]:
        return [v for vs in self.verdicts.values() for v in vs if not v.passed]

    def keys(self) -> list[str]:
        keys = {r.key for r in self.baseline.endpoints}
        for cand in self.candidates:
            keys |= {r.key for r in cand.endpoints}
        return [*sorted(keys), TOTAL]

    def deltas(self, candidate: RunFigures) -> list[dict[str, Any]]:
        rows = []
        for key in self.keys():
            base, cand = self.baseline.row(key), candidate.row(key)
            row: dict[str, Any] = {"endpoint": key, "baseline": _figures(base), "candidate": _figures(cand)}
            if base is not None and cand is not None:
                row["change"] = {
                    "p50_pct": _pct(base.p50, cand.p50),
                    "p95_pct": _pct(base.p95, cand.p95),
                    "p99_pct": _pct(base.p99, cand.p99),
                    "rps_pct": _pct(base.rps, cand.rps),
                    "failure_pp": round(cand.failure_pct - base.failure_pct, 3),
                }
            row["regressed"] = _regressed(row, self.verdicts.get(candidate.run_id, []))
            rows.append(row)
        return rows

    def setup_differences(self, candidate: RunFigures) -> list[str]:
        """Settings that differ between the runs: a comparison of different setups says less."""
        out = []
        for name in SETUP_FIELDS:
            a, b = self.baseline.run.get(name), candidate.run.get(name)
            if a != b:
                out.append(f"{name}: {a} (baseline) vs {b} ({candidate.run_id})")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline.run_id,
            "candidates": [
                {
                    "run_id": c.run_id,
                    "setup_differences": self.setup_differences(c),
                    "warnings": c.warnings,
                    "endpoints": self.deltas(c),
                    "verdicts": [v.__dict__ for v in self.verdicts.get(c.run_id, [])],
                }
                for c in self.candidates
            ],
            "baseline_warnings": self.baseline.warnings,
            "failed": len(self.failed),
        }


def compare(baseline: RunFigures, candidates: Sequence[RunFigures], fail_on: Sequence[str] = ()) -> Comparison:
    comparison = Comparison(baseline, list(candidates))
    for cand in candidates:
        comparison.verdicts[cand.run_id] = check_regressions(baseline, cand, fail_on) if fail_on else []
    return comparison


def _figures(row: EndpointRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"requests": row.requests, "failures": row.failures, **{k: getattr(row, k) for k in COMPARED}}


def _pct(base: float, cand: float) -> float | None:
    value = pct_change(float(base), float(cand))
    return round(value, 2) if math.isfinite(value) else None


def _regressed(row: dict[str, Any], verdicts: Sequence[Verdict]) -> bool:
    if verdicts:
        return any(not v.passed and v.endpoint == row["endpoint"] for v in verdicts)
    delta = row.get("change") or {}
    p95 = delta.get("p95_pct")
    return bool((p95 is not None and p95 > HIGHLIGHT_P95_PCT) or delta.get("failure_pp", 0) > HIGHLIGHT_FAILURE_PP)
