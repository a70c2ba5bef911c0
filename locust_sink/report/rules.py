"""Pass/fail rules: service-level objectives on one run (`--slo`) and regression limits between a baseline
and a candidate (`--fail-on`).

    [ENDPOINT ]METRIC OP VALUE[UNIT]

ENDPOINT: omitted or `Total` for the Total row, `*` for every endpoint, `GET /api` (method and name) or
`/api` (that name with any method). METRIC: p50 p90 p95 p99 p99.9 avg min max (ms), rps, failure_rate
(percent of requests), requests, failures. OP: < <= > >=.

- `--slo 'GET /api p95<200ms'`: the objective; it is breached when it does not hold. Units: ms or s for
  times, % for failure_rate, /s for rps.
- `--fail-on 'p95>+10%'`: the breach; VALUE is a change from baseline to candidate: `%` relative to the
  baseline, `pp` percentage points (failure_rate), `ms`/`s` or no unit an absolute change.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .model import TOTAL, EndpointRow, RunFigures

METRICS = {
    "p50": "p50", "p90": "p90", "p95": "p95", "p99": "p99", "p99.9": "p99_9", "p99_9": "p99_9",
    "avg": "avg_ms", "min": "min_ms", "max": "max_ms", "rps": "rps", "failure_rate": "failure_pct",
    "fail_rate": "failure_pct", "requests": "requests", "failures": "failures",
}  # fmt: skip
TIME_METRICS = {"p50", "p90", "p95", "p99", "p99_9", "avg_ms", "min_ms", "max_ms"}
_RULE = re.compile(
    r"^\s*(?:(?P<endpoint>.+?)\s+)?(?P<metric>[A-Za-z_][A-Za-z0-9_.]*)\s*(?P<op><=|>=|<|>)\s*"
    r"(?P<value>[+-]?\d+(?:\.\d+)?)\s*(?P<unit>%|pp|ms|s|/s)?\s*$"
)
_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


class RuleError(ValueError):
    """A rule that cannot be parsed: the message says what is wrong and shows the syntax."""


@dataclass(frozen=True)
class Rule:
    text: str
    endpoint: str  # "" = Total, "*" = every endpoint
    metric: str  # an EndpointRow attribute
    op: str
    value: float
    unit: str
    relative_change: bool  # fail-on: a change from the baseline

    @classmethod
    def parse(cls, text: str, change: bool) -> Rule:
        m = _RULE.match(text)
        if not m:
            example = "'p95>+10%'" if change else "'GET /api p95<200ms'"
            raise RuleError(f"cannot read rule {text!r}: expected [ENDPOINT ]METRIC OP VALUE[UNIT], e.g. {example}")
        metric = METRICS.get(m["metric"].lower())
        if metric is None:
            raise RuleError(f"unknown metric {m['metric']!r} in {text!r}: one of {', '.join(sorted(set(METRICS)))}")
        unit = m["unit"] or ""
        value = float(m["value"])
        if not change and m["value"].startswith("+"):
            raise RuleError(f"{text!r}: an objective takes an absolute value (a change like +10% is for --fail-on)")
        if unit == "pp" and (not change or metric != "failure_pct"):
            raise RuleError(f"{text!r}: pp (percentage points) is a change of failure_rate, for --fail-on")
        if unit == "s" and metric in TIME_METRICS:
            value, unit = value * 1000.0, "ms"
        if not change and unit == "%" and metric != "failure_pct":
            raise RuleError(f"{text!r}: % in an objective is for failure_rate; a time takes ms or s")
        if unit == "/s" and metric != "rps":
            raise RuleError(f"{text!r}: /s is the unit of rps")
        if unit in ("ms", "s") and metric not in TIME_METRICS:
            raise RuleError(f"{text!r}: {unit} is a unit of response times, not of {m['metric']}")
        endpoint = (m["endpoint"] or "").strip()
        endpoint = "" if endpoint.lower() == TOTAL.lower() else endpoint
        return cls(text.strip(), endpoint, metric, m["op"], value, unit, change and unit == "%")

    def rows(self, fig: RunFigures) -> list[EndpointRow]:
        if not self.endpoint:
            return [fig.total]
        if self.endpoint == "*":
            return list(fig.endpoints)
        exact = [r for r in fig.endpoints if r.key == self.endpoint]
        return exact or [r for r in fig.endpoints if r.name == self.endpoint]


@dataclass(frozen=True)
class Verdict:
    rule: str
    endpoint: str
    passed: bool
    shown: str  # the measured value(s), for tables and the one-line report

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.rule} [{self.endpoint}]: {self.shown}"


def _show(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric in TIME_METRICS:
        return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"
    if metric == "failure_pct":
        return f"{value:.2f} %"
    if metric == "rps":
        return f"{value:.2f}/s"
    return f"{value:.0f}"


def _value(row: EndpointRow, metric: str) -> float:
    v = getattr(row, metric)
    return float(v) if v is not None else math.nan


def check_slos(fig: RunFigures, texts: Sequence[str]) -> list[Verdict]:
    """Each objective on each row it names; a rule naming no existing endpoint is a breach."""
    verdicts = []
    for text in texts:
        rule = Rule.parse(text, change=False)
        rows = rule.rows(fig)
        if not rows:
            verdicts.append(Verdict(rule.text, rule.endpoint, False, f"no endpoint {rule.endpoint!r} in the run"))
        for row in rows:
            v = _value(row, rule.metric)
            ok = not math.isnan(v) and _OPS[rule.op](v, rule.value)
            limit = f"{rule.op} {_show(rule.metric, rule.value)}"
            verdicts.append(Verdict(rule.text, row.key, ok, f"{_show(rule.metric, v)} (objective {limit})"))
    return verdicts


def pct_change(base: float, cand: float) -> float:
    """Percent of the baseline; from 0 to anything else is an infinite change."""
    if base == 0:
        return 0.0 if cand == 0 else math.copysign(math.inf, cand)
    return 100.0 * (cand - base) / base


def change(base: float, cand: float, rule: Rule) -> float:
    """The change a fail-on rule measures: percent of the baseline, or an absolute difference."""
    return pct_change(base, cand) if rule.relative_change else cand - base


def check_regressions(baseline: RunFigures, candidate: RunFigures, texts: Sequence[str]) -> list[Verdict]:
    """Each fail-on rule on each row it names in the candidate, against the same row of the baseline."""
    verdicts = []
    for text in texts:
        rule = Rule.parse(text, change=True)
        rows = rule.rows(candidate)
        if not rows:
            verdicts.append(Verdict(rule.text, rule.endpoint, False, f"no endpoint {rule.endpoint!r} in the candidate"))
        for row in rows:
            base_row = baseline.row(row.key)
            if base_row is None:
                if rule.endpoint not in ("*",):
                    verdicts.append(Verdict(rule.text, row.key, False, "not in the baseline"))
                continue
            base, cand = _value(base_row, rule.metric), _value(row, rule.metric)
            delta = change(base, cand, rule)
            breach = _OPS[rule.op](delta, rule.value)
            unit = "%" if rule.relative_change else (rule.unit or "")
            shown = (
                f"{_show(rule.metric, base)} -> {_show(rule.metric, cand)} ({delta:+.1f}{' ' + unit if unit else ''}; "
                f"fails if {rule.op} {rule.value:+g}{' ' + unit if unit else ''})"
            )
            verdicts.append(Verdict(rule.text, row.key, not breach, shown))
    return verdicts
